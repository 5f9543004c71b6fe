// An owner that dies right after an award, before any replica holds it: the replica that takes
// the job over must not run it a second time. Real agents on the in-memory mesh, virtual time.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { MessageType } from '../../src/protocol/messages.ts'
import { type RecordedRun, type VirtualAgents, createVirtualAgents, recordingExecutor } from '../support/virtual-agents.ts'

describe('an owner that dies between an award and its replication', () => {
  let v: VirtualAgents
  beforeEach(() => { v = createVirtualAgents() })
  afterEach(async () => { await v.stop() })

  it('the job is taken over and runs once, on the executor that had it', async () => {
    const runs: RecordedRun[] = []
    // Node 0 owns the job but has too little CPU to run it: it runs on another node. Its
    // copies that carry the award never get out (it is about to die, and the batch that
    // carries them is 25 ms away).
    await v.start(5, {
      executorFor: id => recordingExecutor(id, runs, 20_000),
      cpuMilliFor: i => i === 0 ? 50 : 1000,
      // A bid round puts time between the submit's copy and the award's; an award from the
      // view has none (its case is in direct-award.test.ts).
      scheduler: { directAwardMaxViewAgeMs: 0 },
      wrapMesh: (mesh, i) => {
        if (i !== 0) return mesh
        const request = mesh.request.bind(mesh)
        mesh.request = async (to, message, options) => {
          // Bids take a few ms: the submit's own copies are out before the award.
          if (message.type === MessageType.BidRequest) await new Promise(resolve => setTimeout(resolve, 5))
          if (message.type === MessageType.JobReplicate && message.body.jobs.some(j => j.job.attempts.length > 0)) throw new Error('not sent: the owner is about to die')
          return await request(to, message, options)
        }
        return mesh
      }
    })
    const [owner, ...others] = v.nodes
    const job = await owner.agent.submit({ image: 'bidmesh/busybox:latest', command: 'true', resources: { cpus: 0.1, memory: '16m' } })
    await v.advanceUntil('the job to start', () => runs.length === 1, 10_000)
    // The submit's copy reached a quorum of the replicas (the others lag, and their copies
    // carry the award, which never gets out); none holds the award.
    const copies = others.map(n => n.store.getJob(job.id)).filter(c => c !== undefined)
    expect(copies.length).toBeGreaterThanOrEqual(2)
    for (const c of copies) expect(c.attempts).toEqual([])
    v.net.partition([owner.id], others.map(n => n.id)) // the owner dies
    const judge = others.find(n => n.id !== runs[0].node)!
    for (let t = 0; t < 40 && judge.store.getJob(job.id)?.state !== 'succeeded'; t++) await vi.advanceTimersByTimeAsync(1000)
    expect(runs.filter(r => r.jobId === job.id).map(r => r.node)).toEqual([runs[0].node])
    expect(judge.store.getJob(job.id)).toMatchObject({ state: 'succeeded', term: 1, node: runs[0].node })
  }, 120_000)
})
