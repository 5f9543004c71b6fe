// A replayed award sent to an executor that ran it and has restarted since. Two real agents
// (in-process: libp2p mesh with a swarm key, SQLite stores on disk, the no-op executor wrapped
// to record every run) and a hostile member with the same key. A job runs; the agent that ran
// it stops and starts again on its data directory (same key, same store); the hostile member
// then sends it the captured award, at the same epoch, over the direct protocol.
// Shown: the restarted executor refuses it as a replayed award (its replay guard's book is in
// its store), and runs nothing. Before the book was kept on disk the guard came back empty,
// and only the executor's knowing that the job had ended (a reason that needs the job's
// record or summary) stood in the way.
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { ScreenVerdict } from '../../src/agent/signing.ts'
import { generateSwarmKeyFile } from '../../src/mesh/security.ts'
import type { JobRecord } from '../../src/protocol/job.ts'
import { type Message, MessageType } from '../../src/protocol/messages.ts'
import type { Executor } from '../../src/runtime/executor.ts'
import { noopExecutor } from '../../src/runtime/noop-executor.ts'
import { waitFor } from '../support/cluster.ts'
import { type PrivateAgent, startPrivateAgent, stopPrivateAgents, waitPrivateAgentsAlive } from '../support/private-agent.ts'
import { type RawGossipNode, directRequest, startRawGossipNode } from '../support/raw-gossip-node.ts'

const REPLAYED: Extract<ScreenVerdict, { ok: false }>['reason'] = 'replayed award'

describe('a replayed award sent to an executor that restarted since it ran it', () => {
  const swarmKey = generateSwarmKeyFile()
  const logger = pino({ level: 'silent' })
  const runs: Array<{ node: string, jobId: string, epoch: number }> = []
  const agents: PrivateAgent[] = []
  let hostile: RawGossipNode | undefined

  const start = async (bootstrap: string[], dir?: string): Promise<PrivateAgent> => await startPrivateAgent({
    swarmKey,
    bootstrap,
    logger,
    dirPrefix: 'bidmesh-replay-restart-',
    ...(dir !== undefined ? { dir } : {}),
    executor: (mesh): Executor => {
      const inner = noopExecutor()
      return { ...inner, async run (attempt, options) { runs.push({ node: mesh.peerId, jobId: attempt.jobId, epoch: attempt.epoch }); return await inner.run(attempt, options) } }
    }
  })

  beforeAll(async () => {
    const a = await start([])
    agents.push(a, await start(a.agent.listenAddrs()))
    await waitPrivateAgentsAlive(agents)
    hostile = await startRawGossipNode({ swarmKey })
  }, 60_000)

  afterAll(async () => {
    await hostile?.stop()
    await stopPrivateAgents(agents)
  })

  it('is refused as a replay, and nothing runs', async () => {
    const [a] = agents
    const { id } = await a.agent.submit({ image: 'bidmesh/busybox:latest', command: 'true', resources: { memory: '32m' } })
    const job: JobRecord = await waitFor(`job ${id} to succeed`, async () => {
      const { job } = await a.agent.getJob(id)
      return job.state === 'succeeded' ? job : undefined
    }, 20_000, 20)
    expect(runs.filter(r => r.jobId === id)).toHaveLength(1)

    // The executor stops and starts again on the same data directory.
    const i = agents.findIndex(x => x.agent.peerId === job.node)
    expect(i).toBeGreaterThanOrEqual(0)
    const before = agents[i]
    await before.agent.stop()
    const other = agents[1 - i]
    const after = await start(other.agent.listenAddrs(), before.dir)
    agents[i] = after
    expect(after.agent.peerId).toBe(before.agent.peerId)
    await waitPrivateAgentsAlive(agents)
    await hostile!.dial(after.agent.listenAddrs())

    const award: Message = {
      type: MessageType.Award,
      body: {
        jobId: job.id,
        epoch: job.epoch,
        owner: hostile!.peerId,
        replicas: [],
        spec: job.spec,
        leaseMs: 3000,
        term: job.term,
        publisher: job.publisher,
        createdAtMs: job.createdAtMs,
        nonce: job.nonce!,
        signature: job.signature!
      }
    }
    const runsBefore = runs.length
    const reply = await directRequest(hostile!, after.agent.peerId, award)
    expect({ type: reply.type, reason: (reply.body as { reason?: string }).reason }).toEqual({ type: MessageType.AwardDeclined, reason: REPLAYED })
    // An award accepted would have called the executor before its acknowledgement left.
    expect(runs.slice(runsBefore)).toEqual([])
  }, 60_000)
})
