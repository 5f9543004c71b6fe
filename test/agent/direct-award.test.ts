// Awards from the owner's capacity view, with no bid round: real agents on the in-memory mesh,
// virtual time. What a round used to give for free has to hold here too: the job's first copy
// leaves before its award, and a node whose books say no declines.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import type { Mesh } from '../../src/mesh/mesh.ts'
import { type Message, MessageType } from '../../src/protocol/messages.ts'
import { type RecordedRun, type VirtualAgents, createVirtualAgents, recordingExecutor } from '../support/virtual-agents.ts'

/** wrapMesh for start(): agent 0's direct requests go through `around`, which sends each with
 *  `send` (or does not); the other agents' meshes are left alone. */
function aroundOwnerRequests (around: (to: string, message: Message, send: () => Promise<Message>) => Promise<Message>): (mesh: Mesh, i: number) => Mesh {
  return (mesh, i) => {
    if (i !== 0) return mesh
    const request = mesh.request.bind(mesh)
    mesh.request = async (to, message, options) => await around(to, message, async () => await request(to, message, options))
    return mesh
  }
}

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
      wrapMesh: aroundOwnerRequests(async (_to, message, send) => {
        // The process dies right after it hands over its award: nothing asked later leaves.
        if (dead) throw new Error('not sent: the owner died')
        if (message.type === MessageType.JobReplicate) order.push('copy')
        if (message.type === MessageType.Award) {
          order.push('award')
          dead = true
          setTimeout(() => { v.net.partition([v.nodes[0].id], v.nodes.slice(1).map(n => n.id)) }, 0)
        }
        return await send()
      })
    })
    const [owner, ...others] = v.nodes
    const submitted = owner.agent.submit(JOB).catch(() => undefined)
    await v.advanceUntil('the job to start', () => runs.length === 1, 10_000)
    await submitted
    // The submit's copies (which record the award) went before the award itself.
    expect(order.indexOf('copy')).toBeGreaterThanOrEqual(0)
    expect(order.indexOf('copy')).toBeLessThan(order.indexOf('award'))
    const jobId = runs[0].jobId
    // The quorum (2 of the 4 replicas) holds the copy that records the award; the laggards'
    // copies were due later, after the owner's death.
    const copies = others.map(n => n.store.getJob(jobId)).filter(c => c !== undefined)
    expect(copies.length).toBeGreaterThanOrEqual(2)
    for (const c of copies) expect(c.attempts).toMatchObject([{ epoch: 1, node: runs[0].node, state: 'awarded' }])
    // A replica takes the job over, keeps the running attempt, and records its one result.
    const judge = others.find(n => n.id !== runs[0].node)!
    for (let t = 0; t < 40 && judge.store.getJob(jobId)?.state !== 'succeeded'; t++) await vi.advanceTimersByTimeAsync(1000)
    expect(runs.filter(r => r.jobId === jobId).map(r => r.node)).toEqual([runs[0].node])
    expect(judge.store.getJob(jobId)).toMatchObject({ state: 'succeeded', term: 1, node: runs[0].node, epoch: 1 })
  }, 120_000)

  it('goes only after the job\'s quorum copies are handed to the mesh, in a burst of more than a request\'s 100 jobs per replica too', async () => {
    const runs: RecordedRun[] = []
    /** per job: how many replicas its copy had been handed to when its award went */
    const copiedTo = new Map<string, Set<string>>()
    const copiesBeforeAward = new Map<string, number>()
    /** requests that carried the most jobs one may (100): the rest of the round followed */
    let fullRequests = 0
    // Three agents: every job's replicas are the two others; one of them (with the owner, a
    // majority of the three) is its quorum and is sent each change at once.
    await v.start(3, {
      executorFor: id => recordingExecutor(id, runs, 60_000),
      cpuMilliFor: () => 64_000,
      wrapMesh: aroundOwnerRequests(async (to, message, send) => {
        if (message.type === MessageType.Award && !copiesBeforeAward.has(message.body.jobId)) copiesBeforeAward.set(message.body.jobId, copiedTo.get(message.body.jobId)?.size ?? 0)
        if (message.type !== MessageType.JobReplicate) return await send()
        for (const j of message.body.jobs) copiedTo.set(j.job.id, (copiedTo.get(j.job.id) ?? new Set()).add(to))
        if (message.body.jobs.length === 100) fullRequests++
        // Replicas that take 50 ms to answer: submits pile up behind a round that is out.
        const answer = await send()
        await new Promise(resolve => setTimeout(resolve, 50))
        return answer
      })
    })
    const owner = v.nodes[0]
    const small = { ...JOB, resources: { cpus: 0.01, memory: '6m' } }
    const first = owner.agent.submit(small)
    await vi.advanceTimersByTimeAsync(1) // its round is out, waiting for the replicas
    // 250 submits while it waits: the next round carries them all, about 125 to each replica
    // (the jobs whose quorum it is), in two requests of up to 100.
    const burst = Promise.all(Array.from({ length: 250 }, async () => await owner.agent.submit(small)))
    let answered = false
    const all = Promise.all([first, burst]).then(([one, rest]) => { answered = true; return [one, ...rest] })
    await v.advanceUntil('all 251 to start and be answered', () => runs.length === 251 && answered, 20_000)
    const jobs = await all
    // Some replica was sent more than a request holds: the round split its copies.
    expect(fullRequests).toBeGreaterThan(0)
    // Each award went after its job's copy was handed to its quorum (a copy that records the
    // award itself).
    const early = jobs.filter(j => (copiesBeforeAward.get(j.id) ?? 0) < 1)
    expect(jobs.every(j => j.replicas.length === 2)).toBe(true)
    expect(early.map(j => ({ id: j.id, copiesBeforeAward: copiesBeforeAward.get(j.id) }))).toEqual([])
  }, 60_000)

  it('goes once a quorum holds the job, even while a copy to another replica still waits behind an earlier request', async () => {
    const runs: RecordedRun[] = []
    // Six agents: each job's 4 replicas are 4 of the 5 others, so a job can be in a replica's
    // first request of 100 and in another's second.
    await v.start(6, {
      executorFor: id => recordingExecutor(id, runs, 60_000),
      cpuMilliFor: () => 64_000,
      wrapMesh: aroundOwnerRequests(async (to, message, send) => {
        if (message.type !== MessageType.JobReplicate) return await send()
        // One replica answers slowly: the requests queued behind its first one wait.
        const answer = await send()
        if (to === v.nodes[1].id) await new Promise(resolve => setTimeout(resolve, 400))
        return answer
      })
    })
    const owner = v.nodes[0]
    const small = { ...JOB, resources: { cpus: 0.01, memory: '6m' } }
    const first = owner.agent.submit(small)
    await vi.advanceTimersByTimeAsync(1)
    const burst = Promise.all(Array.from({ length: 250 }, async () => await owner.agent.submit(small)))
    let answered = false
    const all = Promise.all([first, burst]).then(([one, rest]) => { answered = true; return [one, ...rest] })
    await v.advanceUntil('every job to start and every submit to be answered', () => runs.length === 251 && answered, 3000)
    const jobs = await all
    // Every job ran on its first award: none was held back until its award lapsed (4 s).
    const records = await Promise.all(jobs.map(async j => (await owner.agent.getJob(j.id)).job!))
    expect(records.filter(r => r.attempts.length !== 1).map(r => r.id)).toEqual([])
    expect(new Set(runs.map(r => r.jobId)).size).toBe(251)
  }, 60_000)

  it('a job cancelled while its award is held never gets it', async () => {
    const runs: RecordedRun[] = []
    const awarded: string[] = []
    await v.start(3, {
      executorFor: id => recordingExecutor(id, runs, 60_000),
      wrapMesh: aroundOwnerRequests(async (_to, message, send) => {
        if (message.type === MessageType.Award) awarded.push(message.body.jobId)
        const answer = await send()
        // Slow replicas: the second job's copies wait for the first job's round.
        if (message.type === MessageType.JobReplicate) await new Promise(resolve => setTimeout(resolve, 50))
        return answer
      })
    })
    const owner = v.nodes[0].agent
    const first = owner.submit(JOB)
    await vi.advanceTimersByTimeAsync(1)
    const second = owner.submit(JOB)
    // Decided, not yet sent: its copies have not left.
    const [held] = (await owner.listJobs()).filter(j => j.state === 'pending' && !awarded.includes(j.id))
    expect(held).toBeDefined()
    expect((await owner.getJob(held.id)).job?.attempts).toMatchObject([{ state: 'awarded' }])
    await owner.cancel(held.id)
    let answered = false
    void Promise.all([first, second]).then(() => { answered = true })
    await v.advanceUntil('both submits to be answered', () => answered, 5000)
    await vi.advanceTimersByTimeAsync(1000)
    expect(awarded).not.toContain(held.id)
    expect(runs.map(r => r.jobId)).not.toContain(held.id)
    expect((await owner.getJob(held.id)).job?.state).toBe('cancelled')
  })

  it('a node whose connection dropped gets a bid round, not an award that waits out the deadline', async () => {
    const runs: RecordedRun[] = []
    // Node 0 is the small one, so binpack ranks it first for a 1-core job in every view.
    await v.start(3, { executorFor: id => recordingExecutor(id, runs, 60_000), cpuMilliFor: i => i === 0 ? 1000 : 4000 })
    // Node 0's process ends: its connections drop at once, while its last advert stays fresh
    // in the others' views for up to an advert interval.
    await v.nodes[0].mesh.stop()
    await v.net.settled()
    const startedAtMs = Date.now()
    const job = await v.nodes[1].agent.submit({ ...JOB, resources: { cpus: 1, memory: '16m' } })
    await v.advanceUntil('the job to start', () => runs.length === 1, 10_000)
    expect(runs[0].node).not.toBe(v.nodes[0].id)
    const record = (await v.nodes[1].agent.getJob(job.id)).job!
    // Decided by a round, on the first try: nothing was awarded to node 0.
    expect(record.attempts).toHaveLength(1)
    expect(record.attempts[0].node).not.toBe(v.nodes[0].id)
    expect(record.explanation?.decidedFrom).toBeUndefined()
    // Within a bid window and a little, not the award deadline (4 s).
    expect(Date.now() - startedAtMs).toBeLessThan(2000)
  })

  // Three half-core jobs from three owners in one instant: each owner's view shows node 0 (the
  // small one, 1 core, so binpack ranks it first) empty, so all three are awarded to it; it
  // takes two and declines one. The decliner's owner still sees half a core free on node 0
  // (its own job debited from a whole one): only the decline's markFull keeps the next award
  // off node 0.
  for (const { declinesBeforeBids, then } of [
    { declinesBeforeBids: undefined, then: 'the view\'s next best' },
    { declinesBeforeBids: 1, then: 'a bid round' }
  ]) {
    it(`a node whose books say no declines it, and the job goes to ${then} (directAwardDeclinesBeforeBids ${declinesBeforeBids ?? 'default'})`, async () => {
      const runs: RecordedRun[] = []
      await v.start(3, {
        executorFor: id => recordingExecutor(id, runs, 60_000),
        cpuMilliFor: i => i === 0 ? 1000 : 4000,
        ...(declinesBeforeBids !== undefined ? { scheduler: { directAwardDeclinesBeforeBids: declinesBeforeBids } } : {})
      })
      const half = { ...JOB, resources: { cpus: 0.5, memory: '16m' } }
      const jobs = await Promise.all(v.nodes.map(async n => await n.agent.submit(half)))
      await v.advanceUntil('all three to start', () => runs.length === 3, 10_000)
      // Never past capacity: node 0 runs two of them.
      expect(runs.filter(r => r.node === v.nodes[0].id)).toHaveLength(2)
      const records = await Promise.all(jobs.map(async j => (await v.nodes.find(n => n.id === j.owner)!.agent.getJob(j.id)).job!))
      const declined = records.filter(r => r.attempts.some(a => a.state === 'declined'))
      expect(declined).toHaveLength(1)
      for (const r of declined) {
        expect(r.attempts[0]).toMatchObject({ epoch: 1, node: v.nodes[0].id, state: 'declined' })
        expect(r.attempts[1]).toMatchObject({ epoch: 2 })
        expect(r.attempts[1].node).not.toBe(v.nodes[0].id)
        if (declinesBeforeBids === 1) {
          // A bid round at a new epoch, explained by its bids.
          expect(r.explanation?.decidedFrom).toBeUndefined()
          expect(r.explanation?.candidates.length).toBeGreaterThan(0)
        } else {
          expect(r.explanation).toMatchObject({ decidedFrom: 'view', candidates: [] })
        }
      }
      for (const direct of records.filter(r => !declined.includes(r))) {
        expect(direct.explanation).toMatchObject({ decidedFrom: 'view', winner: v.nodes[0].id })
      }
      expect(runs.map(r => r.jobId).sort()).toEqual(jobs.map(j => j.id).sort())
    })
  }
})
