// Lease renewals of one owner's attempts on one executor travel together (AttemptRenewals):
// jobs submitted as a batch from one agent do not cost their owner one request per job every
// leaseRenewMs. Real agents on the in-memory mesh under fake timers.
import { afterEach, describe, expect, it } from 'vitest'
import type { Mesh } from '../../src/mesh/mesh.ts'
import { RequestRefusedError } from '../../src/mesh/rpc-mux.ts'
import type { JobRecord } from '../../src/protocol/job.ts'
import { type Bodies, type Message, MessageType } from '../../src/protocol/messages.ts'
import { noopExecutor } from '../../src/runtime/noop-executor.ts'
import { type VirtualAgents, createVirtualAgents, untilJobState } from '../support/virtual-agents.ts'

const RUN_MS = 6000
const JOBS = 12
const JOB = { image: 'bidmesh/busybox:latest', command: 'true', resources: { cpus: 0.1, memory: '16m' } }

/** bidmesh_requests_served_total by type, summed over the agents */
async function served (v: VirtualAgents): Promise<Record<string, number>> {
  const out: Record<string, number> = {}
  for (const n of v.nodes) {
    for (const m of (await n.agent.metrics()).body.matchAll(/^bidmesh_requests_served_total\{type="(\w+)"\} (\d+)$/gm)) out[m[1]] = (out[m[1]] ?? 0) + Number(m[2])
  }
  return out
}

describe('lease renewals', () => {
  let v: VirtualAgents
  afterEach(async () => { await v.stop() })

  /** Submits JOBS jobs to agent 0 and waits until all succeeded; the requests the agents served meanwhile, by type. */
  async function runBatch (count = JOBS): Promise<{ jobs: JobRecord[], delta: (type: string) => number }> {
    const owner = v.nodes[0].agent
    const before = await served(v)
    // (virtual time goes on meanwhile: a submit waits for a flush, which may take time)
    let submitted: string[] | undefined
    void Promise.all(Array.from({ length: count }, async () => (await owner.submit(JOB)).id)).then(x => { submitted = x })
    await v.advanceUntil('the submits to be answered', () => submitted !== undefined, 30_000)
    const ids = submitted!
    const jobs = new Map<string, JobRecord>()
    await v.advanceUntil('every job to succeed', () => {
      for (const id of ids) void owner.getJob(id).then(d => { jobs.set(id, d.job) })
      return ids.every(id => jobs.get(id)?.state === 'succeeded')
    }, 60_000)
    const after = await served(v)
    return { jobs: ids.map(id => jobs.get(id)!), delta: type => (after[type] ?? 0) - (before[type] ?? 0) }
  }

  it('go to the owner one message per executor and interval, not one per job, and keep every lease', async () => {
    v = createVirtualAgents()
    await v.start(3, { executorFor: () => noopExecutor({ runMs: RUN_MS }), cpuMilliFor: () => 4000 })
    const { jobs, delta } = await runBatch()

    // Each job ran once: no lease lapsed, nothing was run again.
    for (const job of jobs) expect(job.attempts).toHaveLength(1)
    // Each job renews ~RUN_MS / 750 = 8 times. One by one that is ~8 × 12 = 96 AttemptUpdate
    // requests beside the 2 × 12 reports (running, exited); together, a handful per executor
    // and interval.
    const renewalMessages = delta('AttemptUpdate') - 2 * JOBS + delta('AttemptRenewals')
    console.log(`renewals: ${delta('AttemptRenewals')} AttemptRenewals, ${delta('AttemptUpdate')} AttemptUpdate for ${JOBS} jobs of ${RUN_MS} ms`)
    expect(delta('AttemptRenewals')).toBeGreaterThan(0)
    expect(renewalMessages).toBeLessThan(JOBS * (RUN_MS / 750) / 3)
  })

  it('go one by one, to the owner first, when the owner refuses them together (an older agent)', async () => {
    v = createVirtualAgents()
    // The owner answers AttemptRenewals as an agent that does not know the message does.
    const older = (mesh: Mesh, i: number): Mesh => i !== 0
      ? mesh
      : new Proxy(mesh, {
        get (target, prop) {
          if (prop === 'handle') {
            return (handler: Parameters<Mesh['handle']>[0]) => {
              target.handle(async (from, m, o) => {
                if (m.type === MessageType.AttemptRenewals) throw new RequestRefusedError('unknown message type')
                return await handler(from, m, o)
              })
            }
          }
          const value = Reflect.get(target, prop, target)
          return typeof value === 'function' ? value.bind(target) : value
        }
      })
    await v.start(3, { executorFor: () => noopExecutor({ runMs: RUN_MS }), cpuMilliFor: () => 4000, wrapMesh: older })
    const { jobs, delta } = await runBatch()
    // The owner heard every renewal: no lease lapsed on it, nothing ran twice. (Sent to the
    // replicas first instead, the renewals would keep the executors going while the owner
    // gave their attempts up and ran the jobs again.)
    for (const job of jobs) expect(job.attempts).toHaveLength(1)
    expect(delta('AttemptUpdate')).toBeGreaterThan(2 * JOBS + JOBS * (RUN_MS / 750) / 2)
  })

  it('the owner answers only plain acknowledgements together, so that its reply never waits for a flush; a stop or a refusal is left to be asked again alone', async () => {
    v = createVirtualAgents()
    await v.start(3, { executorFor: () => noopExecutor({ runMs: RUN_MS }), cpuMilliFor: () => 4000 })
    const owner = v.nodes[0]
    const { id } = await owner.agent.submit(JOB)
    const job = await untilJobState(v, 0, id, 'running', 20_000)
    const executor = v.nodes.find(n => n.id === job!.node)!
    const ask = async (from: Mesh, body: Bodies[typeof MessageType.AttemptRenewals]): Promise<Message> => {
      let answer: Message | undefined
      void from.request(owner.id, { type: MessageType.AttemptRenewals, body }).then(r => { answer = r })
      await v.advanceUntil('the owner to answer', () => answer !== undefined, 5000)
      return answer!
    }
    // A member that is not the executor: the attempt is not its to renew (a renewal it sent
    // alone would be refused with stop). Together with a renewal of an unknown attempt.
    const other = v.net.createMesh('12D3KooWNotTheExecutor000000000000000000000000000')
    try {
      const wrong = await ask(other, { node: other.peerId, renewals: [{ jobId: id, epoch: job!.epoch, state: 'running' }, { jobId: 'no-such-job', epoch: 1, state: 'running' }] })
      expect(wrong).toEqual({ type: MessageType.AttemptRenewalsAck, body: { acks: [], unanswered: [{ jobId: id, epoch: job!.epoch }, { jobId: 'no-such-job', epoch: 1 }] } })
      // Naming another node than the sender is refused as a whole.
      const forged = await ask(other, { node: executor.id, renewals: [{ jobId: id, epoch: job!.epoch, state: 'running' }] })
      expect(forged.type === MessageType.Ack && forged.body.code).toBe('ERR_NOT_EXECUTOR')
    } finally {
      await other.stop()
    }
  })
})
