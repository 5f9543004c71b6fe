// Replication waits for a quorum of a job's replicas, not for all of them: real agents (the
// composition root, SQLite) on the in-memory mesh under fake timers, with some replicas'
// disk flushes held back so they cannot answer.
import { fdatasyncSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import pino from 'pino'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { type Agent, startAgent } from '../../src/agent/agent.ts'
import { signJob } from '../../src/agent/signing.ts'
import { type MemoryNetwork, createMemoryNetwork } from '../../src/mesh/memory-mesh.ts'
import { noopExecutor } from '../../src/runtime/noop-executor.ts'
import { openSqliteStore } from '../../src/store/sqlite-store.ts'
import type { Store } from '../../src/store/store.ts'

interface Node { id: string, agent: Agent, store: Store, holdFlushes: () => void, releaseFlushes: () => void }

describe('replication to a job\'s replicas', () => {
  let dir: string
  let net: MemoryNetwork
  let nodes: Node[]
  const logger = pino({ level: 'silent' })

  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'] })
    dir = mkdtempSync(join(tmpdir(), 'bidmesh-replication-'))
    net = createMemoryNetwork()
    nodes = []
  })

  afterEach(async () => {
    for (const n of nodes) n.releaseFlushes()
    // Stopping waits for requests in flight, whose timeouts run on virtual time.
    let stopped = false
    const stopping = Promise.all(nodes.map(async n => await n.agent.stop())).finally(() => { stopped = true })
    for (let i = 0; i < 200 && !stopped; i++) await vi.advanceTimersByTimeAsync(100)
    await stopping
    vi.useRealTimers()
    rmSync(dir, { recursive: true, force: true })
  })

  async function startNodes (count: number): Promise<void> {
    for (let i = 0; i < count; i++) {
      const key = await generateKeyPair('Ed25519') as unknown as PrivateKey
      const id = peerIdFromPrivateKey(key).toString()
      // Flushed on the calling thread: a flush then ends within virtual time, as it would
      // within real time, instead of on libuv's pool while virtual time jumps ahead.
      const store = openSqliteStore({ path: join(dir, `${i}.db`), flushFile: async fd => { fdatasyncSync(fd) } })
      // While held, this agent's flushes do not finish: nothing it must flush first (a
      // replica's acknowledgement among them) leaves it.
      let held: Promise<void> | undefined
      let release = (): void => {}
      const realSync = store.sync.bind(store)
      store.sync = async () => { if (held !== undefined) await held; await realSync() }
      const holdFlushes = (): void => { held = new Promise(resolve => { release = resolve }) }
      const releaseFlushes = (): void => { held = undefined; release() }
      const agent = await startAgent({ mesh: net.createMesh(id), store, executor: noopExecutor({ runMs: 60_000 }), logger, signJob: f => signJob(key, f) },
        { cpuMilli: 1000, memoryBytes: 1024 ** 3 })
      nodes.push({ id, agent, store, holdFlushes, releaseFlushes })
    }
    for (let t = 0; t < 20_000; t += 50) {
      if (nodes.every(n => n.agent.nodes().filter(v => v.liveness === 'alive').length === count)) return
      await vi.advanceTimersByTimeAsync(50)
    }
    throw new Error('the agents did not all see each other')
  }

  /** Lets real I/O (flushes, the tick's setImmediate) run, with no virtual time passing. */
  async function turns (until: () => boolean): Promise<void> {
    for (let i = 0; i < 200 && !until(); i++) {
      await new Promise(resolve => setImmediate(resolve))
      await vi.advanceTimersByTimeAsync(0)
    }
  }

  const JOB = { image: 'bidmesh/busybox:latest', command: 'true', resources: { cpus: 0.1, memory: '16m' } }

  it('a submit is answered once a quorum of replicas holds the job, not after the slowest', async () => {
    await startNodes(5)
    const [owner, ...others] = nodes
    // Every other agent is one of the job's 4 replicas; 2 of them (with the owner, a
    // majority of the 5) suffice. Hold the other 2.
    others[0].holdFlushes()
    others[1].holdFlushes()
    let answered: Awaited<ReturnType<Agent['submit']>> | undefined
    void owner.agent.submit(JOB).then(j => { answered = j })
    await turns(() => answered !== undefined)
    // No virtual time passed: not a timeout of the held replicas' requests.
    expect(answered?.replicas).toHaveLength(4)
    // The two that answered hold the job in their stores.
    expect(others.slice(2).map(n => n.store.getJob(answered!.id)?.id)).toEqual([answered!.id, answered!.id])
  })

  it('without a quorum the submit waits until the held replicas\' requests time out', async () => {
    await startNodes(5)
    const [owner, ...others] = nodes
    for (const n of others.slice(0, 3)) n.holdFlushes()
    let answered = false
    void owner.agent.submit(JOB).then(() => { answered = true })
    await turns(() => answered)
    expect(answered).toBe(false)
    await vi.advanceTimersByTimeAsync(2_500) // the replication request's 2 s timeout
    expect(answered).toBe(true)
  })
})
