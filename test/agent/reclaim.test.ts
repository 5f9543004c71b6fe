// An agent that restarts takes up its unfinished jobs again only once enough of their replicas
// answered that none took a job over meanwhile. Real agents (the whole composition root,
// SQLite included) on the in-memory mesh under fake timers; the restart keeps the store.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { MessageType } from '../../src/protocol/messages.ts'
import { type RecordedRun as Run, type VirtualAgents, createVirtualAgents, recordingExecutor } from '../support/virtual-agents.ts'

describe('a restarted owner reclaiming its jobs (in-memory mesh, virtual time)', () => {
  let v: VirtualAgents
  beforeEach(() => { v = createVirtualAgents() })
  afterEach(async () => { await v.stop() })

  it.each([
    ['its replicas do not answer', 0],
    // Not heard from yet: not known gone either, so they must answer before it takes a job back.
    ['it has not heard from its replicas yet', 5_000],
    // Past the 6 s after which a member heard and then silent is gone: never heard is not gone.
    ['it has not heard from its replicas for 7 s', 7_000]
  ])('does not take back a job while %s: one of them took it over meanwhile', async (_why, deafMs) => {
    const runs: Run[] = []
    // Node 0 owns the job but is too small to run it.
    await v.start(5, { executorFor: id => recordingExecutor(id, runs, 60_000), cpuMilliFor: i => i === 0 ? 100 : 1000 })
    const job = await v.nodes[0].agent.submit({ image: 'bidmesh/busybox:latest', command: 'true', resources: { cpus: 0.6, memory: '64m' } })
    await v.advanceUntil('the attempt to start', () => runs.length === 1, 10_000)
    const others = v.nodes.slice(1)
    const newOwner = (): string | undefined => others.map(n => n.store.getJob(job.id)).find(c => c !== undefined && c.term > job.term)?.owner
    // The owner stops; its job's replicas take it over while it is down.
    let answering = false
    const restarting = v.restart(0, {
      downMs: 12_000,
      wrapMesh: mesh => {
        // Until `answering`, the restarted owner hears no answer from its jobs' replicas (slow,
        // or not reachable yet) to its copies, nor (when not deaf instead) to its questions.
        const request = mesh.request.bind(mesh)
        mesh.request = async (to, message, options) => {
          const blocked = message.type === MessageType.JobReplicate || (message.type === MessageType.JobQuery && deafMs === 0)
          if (blocked && !answering) throw Object.assign(new Error('no answer'), { code: 'ERR_TIMEOUT' })
          return await request(to, message, options)
        }
        // For its first deafMs, it hears no gossip: no adverts, so no replica looks alive.
        const startedAtMs = Date.now()
        const listen = mesh.addEventListener.bind(mesh) as (type: string, listener: (e: any) => void) => void
        ;(mesh as { addEventListener: unknown }).addEventListener = (type: string, listener: (e: any) => void) => {
          listen(type, type === 'gossip:received' ? e => { if (Date.now() - startedAtMs >= deafMs) listener(e) } : listener)
        }
        return mesh
      }
    })
    await restarting
    expect(newOwner()).toBeDefined()
    await vi.advanceTimersByTimeAsync(15_000)
    // Not reclaimed without answers: it runs once, on under the new owner.
    expect(runs).toHaveLength(1)
    answering = true
    await vi.advanceTimersByTimeAsync(3_000)
    const restarted = v.nodes[0]
    expect(restarted.store.getJob(job.id)?.owner).toBe(newOwner())
    await v.advanceUntil('the run to finish', () => runs[0].reason !== undefined, 60_000)
    await vi.advanceTimersByTimeAsync(3_000)
    const { job: done } = await restarted.agent.getJob(job.id)
    expect(done.state).toBe('succeeded')
    expect(runs).toHaveLength(1)
  }, 120_000)
})
