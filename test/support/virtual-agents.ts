// Real agents (the whole composition root, SQLite included) on the in-memory mesh under fake
// timers, for tests that replay races at exact virtual times. Call create() in beforeEach and
// stop() in afterEach.
import { fdatasyncSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import pino from 'pino'
import { vi } from 'vitest'
import { type Agent, type AgentInit, startAgent } from '../../src/agent/agent.ts'
import { signJob } from '../../src/agent/signing.ts'
import { type MemoryNetwork, createMemoryNetwork } from '../../src/mesh/memory-mesh.ts'
import type { AttemptRef, AttemptResult, Executor, RunOptions } from '../../src/runtime/executor.ts'
import type { Mesh } from '../../src/mesh/mesh.ts'
import type { JobRecord } from '../../src/protocol/job.ts'
import { openSqliteStore } from '../../src/store/sqlite-store.ts'
import type { Store } from '../../src/store/store.ts'

/** mesh: the agent's own mesh, for tests that send as that agent would (say, an executor resending a report) */
export interface VirtualNode { id: string, agent: Agent, store: Store, mesh: Mesh }

export interface VirtualAgents {
  readonly net: MemoryNetwork
  readonly nodes: VirtualNode[]
  /** Starts `count` agents (more, on a second call) and waits (in virtual time) until each
   *  sees all the others alive.
   *  `wrapStore` may replace a store's methods before its agent starts; `wrapMesh` may stand
   *  in for an agent's mesh (say, to make it answer some requests as another version would). */
  start: (count: number, options: { executorFor: (id: string) => Executor, cpuMilliFor?: (i: number) => number, wrapStore?: (store: Store, i: number) => void, wrapMesh?: (mesh: Mesh, i: number) => Mesh, timings?: AgentInit['timings'], scheduler?: AgentInit['scheduler'] }) => Promise<void>
  /** Stops agent `i` (advancing virtual time while it stops), then starts it again on the
   *  same store, key and options, as a restarted process would be, after `downMs` of virtual
   *  time; `wrapMesh` may stand in for its new mesh. Its VirtualNode is replaced. */
  restart: (i: number, options?: { downMs?: number, wrapMesh?: (mesh: Mesh) => Mesh }) => Promise<void>
  /** Advances virtual time in 50 ms steps until `done`, failing after `maxMs`. */
  advanceUntil: (what: string, done: () => boolean, maxMs: number) => Promise<void>
  /** Stops every agent (advancing virtual time while requests in flight time out), restores
   *  real timers and removes the stores. */
  stop: () => Promise<void>
}

export function createVirtualAgents (): VirtualAgents {
  // Only timers and the clock are virtual; the mesh delivers on microtasks, which stay real.
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'] })
  const dir = mkdtempSync(join(tmpdir(), 'bidmesh-virtual-'))
  const net = createMemoryNetwork()
  const nodes: VirtualNode[] = []
  const logger = pino({ level: 'silent' })
  /** per node: how to start its agent again (restart) */
  const starters: Array<(wrapMesh?: (mesh: Mesh) => Mesh) => Promise<VirtualNode>> = []

  const advanceUntil = async (what: string, done: () => boolean, maxMs: number): Promise<void> => {
    for (let t = 0; t < maxMs; t += 50) {
      if (done()) return
      await vi.advanceTimersByTimeAsync(50)
    }
    if (!done()) throw new Error(`timed out waiting for ${what}`)
  }

  return {
    net,
    nodes,
    advanceUntil,
    async start (count, { executorFor, cpuMilliFor = () => 1000, wrapStore, wrapMesh, timings, scheduler }) {
      // Numbered across calls: a second start() adds agents to the mesh (joining it).
      for (let i = nodes.length, end = nodes.length + count; i < end; i++) {
        // The same cast loadOrCreateKey makes: @libp2p/crypto and libp2p pin different copies
        // of @libp2p/interface, whose PrivateKey types TypeScript sees as unrelated.
        const key = await generateKeyPair('Ed25519') as unknown as PrivateKey
        const id = peerIdFromPrivateKey(key).toString()
        const startNode = async (wrapAgain?: (mesh: Mesh) => Mesh): Promise<VirtualNode> => {
          // Flushed on the calling thread: a flush then ends within virtual time, as it would
          // within real time, instead of on libuv's pool while virtual time jumps ahead.
          const store = openSqliteStore({ path: join(dir, `${i}.db`), flushFile: async fd => { fdatasyncSync(fd) } })
          wrapStore?.(store, i)
          const mesh = net.createMesh(id)
          const wrapped = wrapAgain !== undefined ? wrapAgain(mesh) : wrapMesh?.(mesh, i) ?? mesh
          const agent = await startAgent({ mesh: wrapped, store, executor: executorFor(id), logger, signJob: f => signJob(key, f) },
            { cpuMilli: cpuMilliFor(i), memoryBytes: 1024 ** 3, ...(timings !== undefined ? { timings } : {}), ...(scheduler !== undefined ? { scheduler } : {}) })
          return { id, agent, store, mesh }
        }
        starters.push(startNode)
        nodes.push(await startNode())
      }
      await advanceUntil('every agent to see all the others alive', () => nodes.every(n => n.agent.nodes().filter(v => v.liveness === 'alive').length === nodes.length), 20_000)
    },
    async restart (i, options = {}) {
      let stopped = false
      const stopping = nodes[i].agent.stop().finally(() => { stopped = true })
      for (let k = 0; k < 200 && !stopped; k++) await vi.advanceTimersByTimeAsync(100)
      await stopping
      await vi.advanceTimersByTimeAsync(options.downMs ?? 0)
      nodes[i] = await starters[i](options.wrapMesh)
    },
    async stop () {
      let stopped = false
      const stopping = Promise.all(nodes.map(async n => await n.agent.stop())).finally(() => { stopped = true })
      for (let i = 0; i < 200 && !stopped; i++) await vi.advanceTimersByTimeAsync(100)
      await stopping
      vi.useRealTimers()
      rmSync(dir, { recursive: true, force: true })
    }
  }
}

/** One run of a job on the recording executor. */
export interface RecordedRun { node: string, jobId: string, epoch: number, startedAtMs: number, finishedAtMs?: number, reason?: string }

/** Runs nothing; each "container" lasts runMs of virtual time unless stopped. Records every run. */
export function recordingExecutor (node: string, runs: RecordedRun[], runMs: number, result: () => Partial<AttemptResult> = () => ({})): Executor {
  return {
    async run (attempt: AttemptRef, options: RunOptions = {}): Promise<AttemptResult> {
      const run: RecordedRun = { node, jobId: attempt.jobId, epoch: attempt.epoch, startedAtMs: Date.now() }
      runs.push(run)
      options.onStarted?.({ containerId: `fake-${node}-${attempt.jobId}-${attempt.epoch}`, startedAtMs: run.startedAtMs })
      const stopped = await new Promise<boolean>(resolve => {
        const timer = setTimeout(() => resolve(false), runMs)
        options.signal?.addEventListener('abort', () => { clearTimeout(timer); resolve(true) }, { once: true })
      })
      run.finishedAtMs = Date.now()
      const out: AttemptResult = stopped
        ? { reason: 'cancelled', exitCode: null, startedAtMs: run.startedAtMs, finishedAtMs: run.finishedAtMs }
        : { reason: 'exit', exitCode: 0, startedAtMs: run.startedAtMs, finishedAtMs: run.finishedAtMs, ...result() }
      run.reason = out.reason
      return out
    },
    async reattach (): Promise<AttemptResult> { return { reason: 'exit', exitCode: 0, finishedAtMs: Date.now() } },
    async listManaged () { return [] },
    async remove () {},
    async ping () {}
  }
}

/** Advances virtual time until agent number `via` reports job `id` in `state`; the job then. */
export async function untilJobState (v: VirtualAgents, via: number, id: string, state: JobRecord['state'], maxMs: number): Promise<JobRecord> {
  let job: JobRecord | undefined
  await v.advanceUntil(`job ${id} to be ${state}`, () => {
    void v.nodes[via].agent.getJob(id).then(d => { job = d.job })
    return job?.state === state
  }, maxMs)
  return job!
}
