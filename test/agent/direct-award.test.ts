// Awards from the owner's capacity view, with no bid round: real agents on the in-memory mesh,
// virtual time. What a round used to give for free has to hold here too: the job's first copy
// leaves before its award, and a node whose books say no declines.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { MessageType } from '../../src/protocol/messages.ts'
import { type RecordedRun, type VirtualAgents, createVirtualAgents, recordingExecutor } from '../support/virtual-agents.ts'

const JOB = { image: 'bidmesh/busybox:latest', command: 'true', resources: { cpus: 0.1, memory: '16m' } }

describe('an award from the view', () => {
  let v: VirtualAgents
  beforeEach(() => { v = createVirtualAgents() })
  afterEach(async () => { await v.stop() })

  it('places a job with one message to its winner: no bid requests, no releases, explained as decided from the view', async () => {
    const sent: number[] = []
    const runs: RecordedRun[] = []
    await v.start(5, {
      executorFor: id => recordingExecutor(id, runs, 60_000),
      wrapMesh: (mesh, i) => {
        if (i !== 0) return mesh
        const request = mesh.request.bind(mesh)
        const notify = mesh.notify.bind(mesh)
        mesh.request = async (to, message, options) => { sent.push(message.type); return await request(to, message, options) }
        mesh.notify = async (to, message) => { sent.push(message.type); await notify(to, message) }
        return mesh
      }
    })
    const job = await v.nodes[0].agent.submit(JOB)
    await v.advanceUntil('the job to start', () => runs.length === 1, 2000)
    expect(sent.filter(t => t === MessageType.Award)).toHaveLength(1)
    expect(sent.filter(t => t === MessageType.BidRequest || t === MessageType.ReservationRelease)).toEqual([])
    const record = (await v.nodes[0].agent.getJob(job.id)).job!
    expect(record.explanation).toMatchObject({ decidedFrom: 'view', candidates: [], winner: runs[0].node, consideredNodes: 5 })
    expect(record.explanation!.top[0].node).toBe(runs[0].node)
    expect(runs.map(r => r.jobId)).toEqual([job.id])
  })

  it('is sent only once the job\'s first copy is on its way: an owner that dies just after it leaves replicas that keep the attempt, and the job runs once', async () => {
    const runs: RecordedRun[] = []
    const order: string[] = []
    let dead = false
    await v.start(5, {
      executorFor: id => recordingExecutor(id, runs, 20_000),
      // The owner cannot run the job itself: it runs on another node.
      cpuMilliFor: i => i === 0 ? 50 : 1000,
      wrapMesh: (mesh, i) => {
        if (i !== 0) return mesh
        const request = mesh.request.bind(mesh)
        mesh.request = async (to, message, options) => {
          // The process dies right after it hands over its award: nothing asked later leaves.
          if (dead) throw new Error('not sent: the owner died')
          if (message.type === MessageType.JobReplicate) order.push('copy')
          if (message.type === MessageType.Award) {
            order.push('award')
            dead = true
            setTimeout(() => { v.net.partition([v.nodes[0].id], v.nodes.slice(1).map(n => n.id)) }, 0)
          }
          return await request(to, message, options)
        }
        return mesh
      }
    })
    const [owner, ...others] = v.nodes
    const submitted = owner.agent.submit(JOB).catch(() => undefined)
    await v.advanceUntil('the job to start', () => runs.length === 1, 10_000)
    await submitted
    // The submit's copies (which record the award) went before the award itself.
    expect(order.indexOf('copy')).toBeGreaterThanOrEqual(0)
    expect(order.indexOf('copy')).toBeLessThan(order.indexOf('award'))
    const jobId = runs[0].jobId
    for (const n of others) expect(n.store.getJob(jobId)?.attempts).toMatchObject([{ epoch: 1, node: runs[0].node, state: 'awarded' }])
    // A replica takes the job over, keeps the running attempt, and records its one result.
    const judge = others.find(n => n.id !== runs[0].node)!
    for (let t = 0; t < 40 && judge.store.getJob(jobId)?.state !== 'succeeded'; t++) await vi.advanceTimersByTimeAsync(1000)
    expect(runs.filter(r => r.jobId === jobId).map(r => r.node)).toEqual([runs[0].node])
    expect(judge.store.getJob(jobId)).toMatchObject({ state: 'succeeded', term: 1, node: runs[0].node, epoch: 1 })
  }, 120_000)

  it('a node whose books say no declines it, and the job is placed by a bid round', async () => {
    const runs: RecordedRun[] = []
    // Node 0 is the small one, so binpack ranks it first for a 1-core job in every view.
    await v.start(3, { executorFor: id => recordingExecutor(id, runs, 60_000), cpuMilliFor: i => i === 0 ? 1000 : 4000 })
    // Three such jobs from three owners in one instant: each owner's view shows node 0 empty,
    // so all three are awarded to it; it takes one and declines two.
    const big = { ...JOB, resources: { cpus: 1, memory: '16m' } }
    const jobs = await Promise.all(v.nodes.map(async n => await n.agent.submit(big)))
    await v.advanceUntil('all three to start', () => runs.length === 3, 10_000)
    // Never past capacity: node 0 runs one of them.
    expect(runs.filter(r => r.node === v.nodes[0].id)).toHaveLength(1)
    const records = await Promise.all(jobs.map(async j => (await v.nodes.find(n => n.id === j.owner)!.agent.getJob(j.id)).job!))
    const declined = records.filter(r => r.attempts.some(a => a.state === 'declined'))
    expect(declined).toHaveLength(2)
    for (const r of declined) {
      expect(r.attempts[0]).toMatchObject({ epoch: 1, node: v.nodes[0].id, state: 'declined' })
      // After the decline, a bid round at a new epoch, explained by its bids.
      expect(r.explanation?.decidedFrom).toBeUndefined()
      expect(r.explanation?.candidates.length).toBeGreaterThan(0)
      expect(r.attempts[1]).toMatchObject({ epoch: 2 })
      expect(r.attempts[1].node).not.toBe(v.nodes[0].id)
    }
    const direct = records.find(r => !declined.includes(r))!
    expect(direct.explanation).toMatchObject({ decidedFrom: 'view', winner: v.nodes[0].id })
    expect(runs.map(r => r.jobId).sort()).toEqual(jobs.map(j => j.id).sort())
  })
})
