// The owner's auction, event by event with explicit times: offers, bid rounds, awards, acks,
// leases, fencing by epoch, retries and cancellation. No clock and no timers: a tick at a
// chosen time is how time passes.
import { describe, expect, it } from 'vitest'
import type { JobSpec } from '../../src/protocol/job-spec.ts'
import type { JobRecord, NodeCapacity } from '../../src/protocol/job.ts'
import { type AttemptUpdate, type Message, MessageType } from '../../src/protocol/messages.ts'
import { type OwnerEffect, type OwnerEvent, type OwnerState, createOwner, ownerNextTimerMs, ownerStep, planOffer } from '../../src/scheduler/auction.ts'
import { GiB, capacity, jobRecord, ownerConfig, spec } from './harness.ts'

const CONFIG = ownerConfig('owner', {
  bidWindowMs: 500,
  awardAckTimeoutMs: 2000,
  leaseMs: 3000,
  // The lease tests below time the lease alone; 'leases' has one test with the grace.
  leaseGraceMs: 0,
  extraCandidates: 2,
  retryBackoffBaseMs: 1000,
  retryBackoffMaxMs: 30_000,
  sweepIntervalMs: 2000,
  suspectAfterMs: 3000,
  goneAfterMs: 6000
})
const NODES = ['n1', 'n2', 'n3']

let seq = 0
function advert (s: OwnerState, peer: string, nowMs: number, over: Partial<NodeCapacity> = {}): OwnerEffect[] {
  return ownerStep(s, { type: 'advert:received', capacity: capacity(peer, { totalCpuMilli: 4000, totalMemoryBytes: 8 * GiB, seq: ++seq, ...over }) }, nowMs)
}

/** An owner that has heard from `peers` (4 cores, 8 GiB each) at time 0. */
function owner (peers: string[] = NODES, over: Partial<NodeCapacity> = {}): OwnerState {
  const s = createOwner(CONFIG)
  for (const p of peers) advert(s, p, 0, over)
  return s
}

const submit = (s: OwnerState, id: string, nowMs: number, j: JobSpec = spec()): OwnerEffect[] =>
  ownerStep(s, { type: 'job:submitted', job: jobRecord(id, 'owner', j, nowMs) }, nowMs)
const step = (s: OwnerState, e: OwnerEvent, nowMs: number): OwnerEffect[] => ownerStep(s, e, nowMs)
const tick = (s: OwnerState, nowMs: number): OwnerEffect[] => ownerStep(s, { type: 'tick' }, nowMs)
const job = (s: OwnerState, id: string): JobRecord => s.jobs.get(id)!.record

const sends = (fx: OwnerEffect[]): Array<{ to: string, message: Message }> => fx.flatMap(f => f.type === 'send' ? [{ to: f.to, message: f.message }] : [])
const sent = (fx: OwnerEffect[], type: Message['type']): Array<{ to: string, epoch: number }> =>
  sends(fx).flatMap(m => m.message.type === type && 'epoch' in m.message.body ? [{ to: m.to, epoch: m.message.body.epoch }] : [])
const bidRequests = (fx: OwnerEffect[]) => sent(fx, MessageType.BidRequest)
const awards = (fx: OwnerEffect[]) => sent(fx, MessageType.Award)
const releases = (fx: OwnerEffect[]) => sent(fx, MessageType.ReservationRelease)
const replies = (fx: OwnerEffect[]) => fx.flatMap(f => f.type === 'reply' ? [f.message] : [])
const events = (fx: OwnerEffect[]) => fx.flatMap(f => f.type === 'job:changed' ? f.events.map(e => e.type) : [])
const changed = (fx: OwnerEffect[]) => fx.filter(f => f.type === 'job:changed')

const bidFrom = (s: OwnerState, from: string, jobId: string, epoch: number, score: number, nowMs: number): OwnerEffect[] =>
  step(s, { type: 'bid:received', from, jobId, epoch, score, components: { binpack: score }, capacity: capacity(from, { totalCpuMilli: 4000, totalMemoryBytes: 8 * GiB, seq: ++seq }) }, nowMs)
const refuseFrom = (s: OwnerState, from: string, jobId: string, epoch: number, reason: string, nowMs: number): OwnerEffect[] =>
  step(s, { type: 'bid:refused', from, jobId, epoch, reason }, nowMs)

let replyId = 0
function update (s: OwnerState, u: Omit<AttemptUpdate, 'node'> & { node?: string }, nowMs: number): { fx: OwnerEffect[], ack: Message } {
  const fx = step(s, { type: 'attempt:update', replyId: ++replyId, update: { node: s.jobs.get(u.jobId)?.record.node ?? 'n1', ...u } }, nowMs)
  const r = replies(fx)
  expect(r).toHaveLength(1)
  return { fx, ack: r[0] }
}

/** Offer, every candidate bids (n2 best), award, ack: the job is scheduled on n2 at epoch 1 by t=20. */
function scheduled (s: OwnerState, id: string, j: JobSpec = spec()): void {
  submit(s, id, 0, j)
  const e = job(s, id).epoch
  bidFrom(s, 'n1', id, e, 0.2, 10)
  bidFrom(s, 'n2', id, e, 0.9, 10)
  bidFrom(s, 'n3', id, e, 0.5, 10)
  step(s, { type: 'award:acked', from: 'n2', jobId: id, epoch: e }, 20)
}

/** Runs the current epoch to its exit: award to whoever answers best, ack, running, exited. */
function runEpoch (s: OwnerState, id: string, atMs: number, result: { exitCode: number | null, reason: AttemptUpdate['reason'] }): Message {
  const e = job(s, id).epoch
  for (const n of NODES) bidFrom(s, n, id, e, n === 'n1' ? 0.9 : 0.1, atMs)
  step(s, { type: 'award:acked', from: 'n1', jobId: id, epoch: e }, atMs + 1)
  update(s, { jobId: id, epoch: e, state: 'running', startedAtMs: atMs + 2 }, atMs + 2)
  return update(s, { jobId: id, epoch: e, state: 'exited', finishedAtMs: atMs + 100, ...result }, atMs + 100).ack
}

describe('offers', () => {
  it('with no nodes known, a job waits as unplaceable, with its explanation', () => {
    const s = owner([])
    const fx = submit(s, 'j1', 0)
    expect(sends(fx)).toEqual([])
    expect(job(s, 'j1')).toMatchObject({ state: 'pending', reason: 'unplaceable', epoch: 0 })
    expect(job(s, 'j1').explanation).toMatchObject({ consideredNodes: 0, filtered: {}, candidates: [] })
    expect(changed(fx)).toHaveLength(1)
    expect(events(fx)).toEqual(['job:submitted', 'job:pending'])
    expect(fx.flatMap(f => f.type === 'job:changed' ? f.events.map(e => e.detail) : [])).toContain('no nodes known')
  })

  it('a job larger than every node waits as unplaceable, filtered as "memory (larger than node)"', () => {
    const s = owner()
    const fx = submit(s, 'j1', 0, spec({ memoryBytes: 16 * GiB }))
    expect(sends(fx)).toEqual([])
    expect(job(s, 'j1')).toMatchObject({ state: 'pending', reason: 'unplaceable' })
    expect(job(s, 'j1').explanation).toMatchObject({ consideredNodes: 3, filtered: { 'memory (larger than node)': 3 } })
    expect(fx.flatMap(f => f.type === 'job:changed' ? f.events.map(e => e.detail) : [])).toContain('memory (larger than node): 3 nodes')
  })

  it('a job takes a new epoch and asks 1 + extraCandidates nodes to bid', () => {
    const s = owner(['n1', 'n2', 'n3', 'n4', 'n5'])
    const fx = submit(s, 'j1', 0)
    expect(job(s, 'j1').epoch).toBe(1)
    expect(bidRequests(fx)).toHaveLength(3)
    expect(new Set(bidRequests(fx).map(r => r.epoch))).toEqual(new Set([1]))
    const req = sends(fx)[0].message
    expect(req).toMatchObject({ type: MessageType.BidRequest, body: { jobId: 'j1', epoch: 1, owner: 'owner', spec: job(s, 'j1').spec } })
  })

  it('an open round claims the job on its likeliest winner, so the next job looks elsewhere', () => {
    const s = owner(['n1', 'n2'], { totalCpuMilli: 1000, freeCpuMilli: 1000 })
    const a = submit(s, 'j1', 0, spec({ cpuMilli: 1000, placement: 'spread' }))
    const b = submit(s, 'j2', 0, spec({ cpuMilli: 1000, placement: 'spread' }))
    expect(bidRequests(a)[0].to).not.toBe(bidRequests(b)[0].to)
  })
})

describe('an award from the view (directAwardMaxViewAgeMs > 0)', () => {
  const DIRECT = { ...CONFIG, directAwardMaxViewAgeMs: 1500 }
  function directOwner (peers: string[] = NODES, over: Partial<NodeCapacity> = {}, atMs = 0): OwnerState {
    const s = createOwner(DIRECT)
    for (const p of peers) advert(s, p, atMs, over)
    return s
  }

  it('a job with a fresh best node is awarded to it at once: no bid request, no release, explained as decided from the view', () => {
    const s = directOwner(['n1', 'n2', 'n3'])
    // binpack: n2 is the fullest that still fits, so the best.
    advert(s, 'n2', 0, { freeCpuMilli: 1000 })
    const fx = submit(s, 'j1', 100)
    expect(bidRequests(fx)).toEqual([])
    expect(awards(fx)).toEqual([{ to: 'n2', epoch: 1 }])
    expect(events(fx)).toContain('job:awarded')
    const j = job(s, 'j1')
    expect(j.attempts).toMatchObject([{ epoch: 1, node: 'n2', state: 'awarded' }])
    expect(j.explanation).toMatchObject({ decidedFrom: 'view', winner: 'n2', candidates: [], consideredNodes: 3, decidedAtMs: 100 })
    expect(j.explanation!.top[0].node).toBe('n2')
    // Acknowledged as any award is.
    const ack = step(s, { type: 'award:acked', from: 'n2', jobId: 'j1', epoch: 1 }, 110)
    expect(events(ack)).toContain('job:scheduled')
    expect(releases(ack)).toEqual([])
  })

  it('the award counts the job in the view until the node says otherwise, so the next job goes elsewhere', () => {
    const s = directOwner(['n1', 'n2'], { totalCpuMilli: 1000, freeCpuMilli: 1000 })
    const a = awards(submit(s, 'j1', 0, spec({ cpuMilli: 1000 })))
    const b = awards(submit(s, 'j2', 0, spec({ cpuMilli: 1000 })))
    expect(a).toHaveLength(1)
    expect(b).toHaveLength(1)
    expect(a[0].to).not.toBe(b[0].to)
    // Both nodes full in the view: a third job waits, asks nobody.
    const c = submit(s, 'j3', 0, spec({ cpuMilli: 1000 }))
    expect(sends(c)).toEqual([])
    expect(job(s, 'j3')).toMatchObject({ state: 'pending', reason: 'unplaceable' })
  })

  it('a node whose advert is older than the limit is asked to bid instead', () => {
    const s = directOwner(['n1', 'n2', 'n3'], {}, 0)
    const fx = submit(s, 'j1', 1501)
    expect(awards(fx)).toEqual([])
    expect(bidRequests(fx)).toHaveLength(3)
    expect(job(s, 'j1').explanation?.decidedFrom).toBeUndefined()
  })

  it('a declined award goes to the view\'s next best; after directAwardDeclinesBeforeBids declines in a row, to a bid round', () => {
    const s = directOwner()
    expect(DIRECT.directAwardDeclinesBeforeBids).toBe(2)
    const [first] = awards(submit(s, 'j1', 0))
    // The decliner shows full in the view now, so the next award, from the view at a new
    // epoch, goes elsewhere.
    const fx = step(s, { type: 'award:declined', from: first.to, jobId: 'j1', epoch: 1, reason: 'cpu' }, 20)
    expect(job(s, 'j1').attempts[0]).toMatchObject({ epoch: 1, state: 'declined', error: 'cpu' })
    expect(bidRequests(fx)).toEqual([])
    const [second] = awards(fx)
    expect(second).toMatchObject({ epoch: 2 })
    expect(second.to).not.toBe(first.to)
    expect(job(s, 'j1').explanation).toMatchObject({ decidedFrom: 'view', winner: second.to })
    // The second decline in a row: a bid round at a new epoch, asking only the node that has
    // not declined (both decliners show full until their next adverts).
    const fx2 = step(s, { type: 'award:declined', from: second.to, jobId: 'j1', epoch: 2, reason: 'cpu' }, 30)
    expect(awards(fx2)).toEqual([])
    const third = NODES.find(n => n !== first.to && n !== second.to)!
    expect(bidRequests(fx2)).toEqual([{ to: third, epoch: 3 }])
    // The round decides on the bids as before, and says so.
    bidFrom(s, third, 'j1', 3, 0.9, 40)
    expect(job(s, 'j1').explanation).toMatchObject({ winner: third, candidates: [third] })
    expect(job(s, 'j1').explanation?.decidedFrom).toBeUndefined()
  })

  it('declines after a lost attempt do not bring awards from the view back: still bids', () => {
    const s = directOwner()
    const [first] = awards(submit(s, 'j1', 0))
    // The award lapses unanswered (lost): the next offer is a round.
    const deadlineMs = Math.max(DIRECT.awardAckTimeoutMs, DIRECT.leaseMs) + DIRECT.leaseGraceMs
    for (const n of NODES) advert(s, n, deadlineMs)
    const lapse = tick(s, deadlineMs + 1)
    expect(job(s, 'j1').attempts[0]).toMatchObject({ node: first.to, state: 'lost' })
    expect(awards(lapse)).toEqual([])
    const round = bidRequests(lapse)
    expect(round.length).toBeGreaterThan(0)
    // Its winner declines (its reservation lapsed, say): bids again, not the view.
    const winner = round[0].to
    for (const r of round) bidFrom(s, r.to, 'j1', r.epoch, r.to === winner ? 0.9 : 0.1, deadlineMs + 10)
    expect(job(s, 'j1').attempts[1]).toMatchObject({ node: winner, state: 'awarded' })
    const fx = step(s, { type: 'award:declined', from: winner, jobId: 'j1', epoch: round[0].epoch, reason: 'cpu' }, deadlineMs + 20)
    expect(awards(fx)).toEqual([])
    expect(bidRequests(fx).length).toBeGreaterThan(0)
  })

  it('with directAwardDeclinesBeforeBids 1, a bid round follows every decline', () => {
    const s = createOwner({ ...DIRECT, directAwardDeclinesBeforeBids: 1 })
    for (const p of NODES) advert(s, p, 0)
    const [first] = awards(submit(s, 'j1', 0))
    const fx = step(s, { type: 'award:declined', from: first.to, jobId: 'j1', epoch: 1, reason: 'cpu' }, 20)
    expect(awards(fx)).toEqual([])
    const round = bidRequests(fx)
    expect(round.map(r => r.to).sort()).toEqual(NODES.filter(n => n !== first.to))
    // The round's winner declines too: another round.
    for (const r of round) bidFrom(s, r.to, 'j1', r.epoch, r.to === round[0].to ? 0.9 : 0.1, 30)
    const fx2 = step(s, { type: 'award:declined', from: round[0].to, jobId: 'j1', epoch: round[0].epoch, reason: 'cpu' }, 40)
    expect(awards(fx2)).toEqual([])
    expect(bidRequests(fx2).length).toBeGreaterThan(0)
  })

  it('a decliner shows full only until its next advert', () => {
    const s = directOwner(['n1', 'n2'])
    advert(s, 'n2', 0, { freeCpuMilli: 1000 }) // binpack: n2 is the best
    const [first] = awards(submit(s, 'j1', 0))
    expect(first.to).toBe('n2')
    // The job's next award, and another job's meanwhile, go to n1, although n2 would be the
    // better fit by its last advert.
    expect(awards(step(s, { type: 'award:declined', from: 'n2', jobId: 'j1', epoch: 1, reason: 'cpu' }, 10)).map(a => a.to)).toEqual(['n1'])
    expect(awards(submit(s, 'j2', 20)).map(a => a.to)).toEqual(['n1'])
    // n2's next advert replaces the entry: it is the best again.
    advert(s, 'n2', 30, { freeCpuMilli: 1000 })
    expect(awards(submit(s, 'j3', 40)).map(a => a.to)).toEqual(['n2'])
  })

  it('a retry after a failure goes from the view again', () => {
    const s = directOwner()
    submit(s, 'j1', 0, spec({ retries: 1 }))
    const node = job(s, 'j1').node!
    update(s, { jobId: 'j1', epoch: 1, node, state: 'running' }, 10)
    update(s, { jobId: 'j1', epoch: 1, node, state: 'exited', exitCode: 1, reason: 'exit' }, 20)
    // Past the backoff, fresh adverts (the first that shows room again offers it).
    const fx = NODES.flatMap(n => advert(s, n, 20 + CONFIG.retryBackoffBaseMs))
    expect(bidRequests(fx)).toEqual([])
    expect(awards(fx).map(a => a.epoch)).toEqual([2])
  })

  it('an unacknowledged award is given up on at its deadline, as after a round', () => {
    const s = directOwner()
    const [a] = awards(submit(s, 'j1', 0))
    const deadlineMs = Math.max(DIRECT.awardAckTimeoutMs, DIRECT.leaseMs) + DIRECT.leaseGraceMs
    expect(events(tick(s, deadlineMs - 1))).not.toContain('award:timeout')
    // The others are still heard from; the silent winner is not.
    for (const n of NODES) if (n !== a.to) advert(s, n, deadlineMs)
    const fx = tick(s, deadlineMs)
    expect(events(fx)).toContain('award:timeout')
    expect(job(s, 'j1').epoch).toBe(2)
    expect([...awards(fx), ...bidRequests(fx)].every(m => m.to !== a.to)).toBe(true)
  })

  it('an award that lapsed unanswered is followed by a bid round, not another award to the same node', () => {
    const s = directOwner()
    const [a] = awards(submit(s, 'j1', 0))
    const deadlineMs = Math.max(DIRECT.awardAckTimeoutMs, DIRECT.leaseMs) + DIRECT.leaseGraceMs
    // Its adverts still come (its direct requests are what fail): it stays the view's best.
    for (const n of NODES) advert(s, n, deadlineMs - 10)
    const fx = tick(s, deadlineMs)
    expect(events(fx)).toContain('award:timeout')
    expect(awards(fx)).toEqual([])
    expect(bidRequests(fx).map(r => r.to)).toContain(a.to)
  })

  it('a node that has left an award unanswered for longer than a bid window gets bids for the next jobs, until it answers', () => {
    const s = directOwner(['n1'])
    const [first] = awards(submit(s, 'j1', 0))
    expect(first.to).toBe('n1')
    // Within the bid window, the next job may still go to it from the view...
    expect(awards(submit(s, 'j2', DIRECT.bidWindowMs)).map(a => a.to)).toEqual(['n1'])
    // ...past it, no longer: a bid round, which the silent node cannot hold up past its window.
    advert(s, 'n1', DIRECT.bidWindowMs + 1)
    const third = submit(s, 'j3', DIRECT.bidWindowMs + 1)
    expect(awards(third)).toEqual([])
    expect(bidRequests(third).map(r => r.to)).toEqual(['n1'])
    const target = 'n1'
    // A bid request that failed ('unreachable', as both shells report it) is no answer...
    step(s, { type: 'bid:refused', from: target, jobId: 'j3', epoch: job(s, 'j3').epoch, reason: 'unreachable' }, DIRECT.bidWindowMs + 2)
    const fourth = submit(s, 'j4', DIRECT.bidWindowMs + 2)
    expect(awards(fourth)).toEqual([])
    expect(bidRequests(fourth).map(r => r.to)).toEqual([target])
    // ...any direct answer from it (here, the first award's acknowledgement) is, and clears that.
    step(s, { type: 'award:acked', from: target, jobId: 'j1', epoch: 1 }, DIRECT.bidWindowMs + 3)
    expect(awards(submit(s, 'j5', DIRECT.bidWindowMs + 4))).toHaveLength(1)
  })

  it('a node this owner lost its connection to gets bids, not awards from the view, until it answers directly', () => {
    const s = directOwner(['n1', 'n2', 'n3'])
    advert(s, 'n2', 0, { freeCpuMilli: 3000 }) // binpack: n2 is the best
    step(s, { type: 'peer:disconnected', peer: 'n2' }, 10)
    // Its advert is fresh, but its process may have ended: a round, which decides without it
    // after the bid window, rather than an award that waits out the award deadline.
    const first = submit(s, 'j1', 20)
    expect(awards(first)).toEqual([])
    expect(bidRequests(first).map(r => r.to).sort()).toEqual(['n1', 'n2', 'n3'])
    // Adverts do not clear it, newer ones neither: an idle node's repeat its last capacity,
    // and one sent just before a crash may arrive after the drop.
    const last = s.view.entries.get('n2')!.capacity
    ownerStep(s, { type: 'advert:received', capacity: { ...last } }, 30)
    advert(s, 'n2', 40, { freeCpuMilli: 3000 })
    expect(awards(submit(s, 'j2', 50))).toEqual([])
    // A direct answer does (here, the refusal of j1's bid request, which carries no capacity).
    step(s, { type: 'bid:refused', from: 'n2', jobId: 'j1', epoch: job(s, 'j1').epoch, reason: 'cpu' }, 60)
    expect(awards(submit(s, 'j3', 70)).map(a => a.to)).toEqual(['n2'])
    // A failed request is no answer: 'unreachable', as both shells report it, clears nothing.
    step(s, { type: 'peer:disconnected', peer: 'n2' }, 80)
    step(s, { type: 'bid:refused', from: 'n2', jobId: 'j2', epoch: job(s, 'j2').epoch, reason: 'unreachable' }, 90)
    expect(awards(submit(s, 'j4', 100))).toEqual([])
  })

  it('a dry run (planOffer) says what an offer would do, and changes nothing', () => {
    const s = directOwner(['n1', 'n2', 'n3'])
    advert(s, 'n2', 0, { freeCpuMilli: 1000 })
    const before = structuredClone(s.view)
    const fresh = planOffer(s, spec(), 100)
    expect(fresh).toMatchObject({ decidedFrom: 'view', winner: 'n2', candidates: [], consideredNodes: 3 })
    expect(fresh.top[0].node).toBe('n2')
    // An old view: the bid round's candidates, no winner yet.
    const old = planOffer(s, spec(), 1501)
    expect(old.decidedFrom).toBeUndefined()
    expect(old.winner).toBeUndefined()
    expect(old.candidates).toHaveLength(3)
    expect(s.view).toEqual(before)
    expect(s.jobs.size).toBe(0)
  })

  it('with the limit at 0 every job is bid for', () => {
    const s = owner()
    const fx = submit(s, 'j1', 0)
    expect(awards(fx)).toEqual([])
    expect(bidRequests(fx)).toHaveLength(3)
  })
})

describe('a bid round', () => {
  it('the losers\' room comes back in the view with their releases; the winner\'s stays taken', () => {
    const s = owner()
    submit(s, 'j1', 0, spec({ cpuMilli: 1000, memoryBytes: 1 * GiB }))
    // Each bid carries the node's capacity with the job reserved (3 of 4 cores, 7 of 8 GiB).
    const reserved = { totalCpuMilli: 4000, totalMemoryBytes: 8 * GiB, freeCpuMilli: 3000, freeMemoryBytes: 7 * GiB }
    for (const [n, score] of [['n1', 0.2], ['n2', 0.9], ['n3', 0.5]] as const) {
      step(s, { type: 'bid:received', from: n, jobId: 'j1', epoch: 1, score, components: { binpack: score }, capacity: capacity(n, { ...reserved, seq: ++seq }) }, 10)
    }
    const free = (n: string) => [s.view.entries.get(n)!.capacity.freeCpuMilli, s.view.entries.get(n)!.capacity.freeMemoryBytes]
    expect(free('n1')).toEqual([4000, 8 * GiB])
    expect(free('n3')).toEqual([4000, 8 * GiB])
    expect(free('n2')).toEqual([3000, 7 * GiB])
  })

  it('awards the best bid and releases the other reservations', () => {
    const s = owner()
    submit(s, 'j1', 0)
    expect(awards(bidFrom(s, 'n1', 'j1', 1, 0.2, 10))).toEqual([])
    expect(awards(bidFrom(s, 'n2', 'j1', 1, 0.9, 11))).toEqual([])
    const fx = bidFrom(s, 'n3', 'j1', 1, 0.5, 12)
    expect(awards(fx)).toEqual([{ to: 'n2', epoch: 1 }])
    expect(releases(fx).sort((a, b) => a.to < b.to ? -1 : 1)).toEqual([{ to: 'n1', epoch: 1 }, { to: 'n3', epoch: 1 }])
    const award = sends(fx).find(m => m.message.type === MessageType.Award)!.message
    expect(award).toMatchObject({ body: { jobId: 'j1', epoch: 1, owner: 'owner', leaseMs: 3000 } })
    expect(job(s, 'j1')).toMatchObject({ state: 'pending', node: 'n2', attempts: [{ epoch: 1, node: 'n2', state: 'awarded', awardedAtMs: 12 }] })
    expect(job(s, 'j1').explanation).toMatchObject({ winner: 'n2', refused: {}, decidedAtMs: 12 })
    expect(events(fx)).toEqual(['job:awarded'])

    const acked = step(s, { type: 'award:acked', from: 'n2', jobId: 'j1', epoch: 1 }, 20)
    expect(job(s, 'j1').state).toBe('scheduled')
    expect(events(acked)).toEqual(['job:scheduled'])
  })

  it('decides early once every candidate has answered; otherwise at the bid window deadline', () => {
    const s = owner()
    submit(s, 'j1', 0)
    bidFrom(s, 'n1', 'j1', 1, 0.2, 10)
    bidFrom(s, 'n3', 'j1', 1, 0.5, 10)
    expect(ownerNextTimerMs(s)).toBe(500)
    expect(awards(tick(s, 499))).toEqual([])
    const fx = tick(s, 500)
    expect(awards(fx)).toEqual([{ to: 'n3', epoch: 1 }])
    expect(releases(fx)).toEqual([{ to: 'n1', epoch: 1 }])
    // The silent candidate's late bid is released at once.
    const late = bidFrom(s, 'n2', 'j1', 1, 0.99, 600)
    expect(releases(late)).toEqual([{ to: 'n2', epoch: 1 }])
    expect(awards(late)).toEqual([])
    expect(job(s, 'j1').node).toBe('n3')
  })

  it('a refused candidate counts as an answer; its reason goes into the explanation', () => {
    const s = owner()
    submit(s, 'j1', 0)
    bidFrom(s, 'n1', 'j1', 1, 0.2, 10)
    refuseFrom(s, 'n2', 'j1', 1, 'cpu', 10)
    const fx = refuseFrom(s, 'n3', 'j1', 1, 'memory', 10)
    expect(awards(fx)).toEqual([{ to: 'n1', epoch: 1 }])
    expect(job(s, 'j1').explanation).toMatchObject({ refused: { cpu: 1, memory: 1 }, winner: 'n1' })
  })

  it('bids for another epoch are not counted', () => {
    const s = owner()
    submit(s, 'j1', 0)
    const fx = bidFrom(s, 'n1', 'j1', 7, 0.9, 10)
    expect(releases(fx)).toEqual([{ to: 'n1', epoch: 7 }])
    expect(awards(tick(s, 499))).toEqual([])
  })
})

describe('when every candidate refuses', () => {
  function allRefused (): OwnerState {
    const s = owner()
    submit(s, 'j1', 0)
    for (const n of NODES) refuseFrom(s, n, 'j1', 1, 'cpu', 10)
    return s
  }

  it('the job waits as unplaceable, with the refusals explained', () => {
    const s = allRefused()
    expect(job(s, 'j1')).toMatchObject({ state: 'pending', reason: 'unplaceable', epoch: 1 })
    expect(job(s, 'j1').explanation).toMatchObject({ refused: { cpu: 3 } })
    expect(s.pending.has('j1')).toBe(true)
    expect(s.active.has('j1')).toBe(false)
  })

  it('an advert that frees capacity offers it again at once; one that does not, does not', () => {
    const s = allRefused()
    expect(bidRequests(advert(s, 'n1', 100))).toEqual([]) // same capacity, newer seq
    expect(bidRequests(advert(s, 'n1', 150, { freeCpuMilli: 3000 }))).toEqual([]) // less free
    const version = s.view.freedVersion
    const fx = advert(s, 'n1', 200, { freeCpuMilli: 3500 })
    expect(s.view.freedVersion).toBe(version + 1)
    expect(bidRequests(fx).map(r => r.epoch)).toEqual([2, 2, 2])
    expect(job(s, 'j1').epoch).toBe(2)
  })

  it('a node joining offers it again', () => {
    const s = allRefused()
    expect(bidRequests(advert(s, 'n4', 100)).length).toBeGreaterThan(0)
  })

  it('the sweep offers it again every sweepIntervalMs, even with no capacity news', () => {
    const s = allRefused()
    expect(ownerNextTimerMs(s)).toBe(2000) // offered at 0
    expect(bidRequests(tick(s, 1999))).toEqual([])
    expect(bidRequests(tick(s, 2000)).map(r => r.epoch)).toEqual([2, 2, 2])
  })
})

describe('a final report that overtakes the rest', () => {
  it('an exit reported before any ack or running report still records that the attempt started', () => {
    const s = owner()
    submit(s, 'j1', 0)
    for (const n of NODES) bidFrom(s, n, 'j1', 1, n === 'n2' ? 0.9 : 0.1, 10)
    const { fx, ack } = update(s, { jobId: 'j1', epoch: 1, node: 'n2', state: 'exited', startedAtMs: 12, finishedAtMs: 14, exitCode: 0, reason: 'exit' }, 15)
    expect(ack.body).toMatchObject({ accepted: true })
    expect(events(fx)).toEqual(['attempt:started', 'attempt:exited', 'job:succeeded'])
    expect(job(s, 'j1').attempts[0]).toMatchObject({ state: 'exited', startedAtMs: 12, finishedAtMs: 14 })
    // The late acknowledgement changes nothing.
    expect(step(s, { type: 'award:acked', from: 'n2', jobId: 'j1', epoch: 1 }, 16)).toEqual([])
  })

  it('an exit with no start time (it never ran) records no start', () => {
    const s = owner()
    submit(s, 'j1', 0)
    for (const n of NODES) bidFrom(s, n, 'j1', 1, n === 'n2' ? 0.9 : 0.1, 10)
    const { fx } = update(s, { jobId: 'j1', epoch: 1, node: 'n2', state: 'exited', finishedAtMs: 14, exitCode: null, reason: 'error', error: 'image missing' }, 15)
    expect(events(fx)).not.toContain('attempt:started')
  })
})

describe('adopting a job (a takeover, or a restart)', () => {
  /** The record as another owner left it: awarded to n2 at epoch 1, no acknowledgement yet. */
  function awardedCopy (): JobRecord {
    const first = owner()
    submit(first, 'j1', 0)
    for (const n of NODES) bidFrom(first, n, 'j1', 1, n === 'n2' ? 0.9 : 0.1, 10)
    const copy = structuredClone(job(first, 'j1'))
    expect(copy).toMatchObject({ state: 'pending', epoch: 1, attempts: [{ epoch: 1, node: 'n2', state: 'awarded' }] })
    return copy
  }

  it('a pending job waiting out a retry\'s backoff is offered only once the backoff is over', () => {
    const s = owner()
    const copy: JobRecord = { ...jobRecord('j1', 'owner', spec(), 0), notBeforeMs: 5000 }
    expect(bidRequests(step(s, { type: 'job:adopted', job: copy }, 1000))).toEqual([])
    // Fresh adverts that show room do not offer it early either.
    for (const n of NODES) expect(bidRequests(advert(s, n, 4999, { freeCpuMilli: 4000 }))).toEqual([])
    expect(bidRequests(tick(s, 4999))).toEqual([])
    expect(bidRequests(tick(s, 5000))).toHaveLength(3)
  })

  it('a pending job with no award is offered at once', () => {
    const s = owner()
    const fx = step(s, { type: 'job:adopted', job: jobRecord('j1', 'owner', spec(), 0) }, 100)
    expect(bidRequests(fx)).toHaveLength(3)
  })

  it('an award not yet acknowledged counts as in flight: no new round while its lease runs, and a renewal keeps it', () => {
    const s = owner()
    expect(bidRequests(step(s, { type: 'job:adopted', job: awardedCopy() }, 100))).toEqual([])
    expect(ownerNextTimerMs(s)).toBe(3100)
    const { ack } = update(s, { jobId: 'j1', epoch: 1, node: 'n2', state: 'running', startedAtMs: 50 }, 1000)
    expect(ack.body).toMatchObject({ accepted: true, stop: false })
    expect(job(s, 'j1')).toMatchObject({ state: 'running', epoch: 1, attempts: [{ epoch: 1, node: 'n2', state: 'running' }] })
    expect(bidRequests(tick(s, 3100))).toEqual([]) // renewed at 1000: the lease runs to 4000
  })

  it('an award whose winner never reports is given up on when the lease lapses, and offered again', () => {
    const s = owner()
    step(s, { type: 'job:adopted', job: awardedCopy() }, 100)
    expect(bidRequests(tick(s, 3099))).toEqual([])
    for (const n of NODES) advert(s, n, 3000) // still alive, as far as the view knows
    const fx = tick(s, 3100)
    expect(job(s, 'j1').attempts[0]).toMatchObject({ epoch: 1, node: 'n2', state: 'lost', reason: 'lost' })
    expect(bidRequests(fx).map(r => r.epoch)).toEqual([2, 2, 2])
  })
})

describe('awards that do not take', () => {
  it('no acknowledgement within max(awardAckTimeoutMs, leaseMs): the attempt is lost and a new epoch is offered', () => {
    const s = owner()
    submit(s, 'j1', 0)
    for (const n of NODES) bidFrom(s, n, 'j1', 1, n === 'n2' ? 0.9 : 0.1, 10)
    // 2000 ms configured, but never sooner than a lease (3000) would lapse.
    expect(ownerNextTimerMs(s)).toBe(3010)
    expect(bidRequests(tick(s, 3009))).toEqual([])
    for (const n of NODES) advert(s, n, 3000) // still alive, as far as the view knows
    const fx = tick(s, 3010)
    expect(events(fx)).toContain('award:timeout')
    expect(job(s, 'j1').attempts[0]).toMatchObject({ epoch: 1, node: 'n2', state: 'lost', reason: 'lost', error: 'award not acknowledged' })
    expect(bidRequests(fx).map(r => r.epoch)).toEqual([2, 2, 2])
    // The late ack of the superseded award changes nothing.
    expect(step(s, { type: 'award:acked', from: 'n2', jobId: 'j1', epoch: 1 }, 3020)).toEqual([])
    expect(job(s, 'j1')).toMatchObject({ state: 'pending', epoch: 2 })
  })

  it.each([
    { name: 'stopped because it was superseded (cancelled)', result: { reason: 'cancelled' as const, exitCode: null }, taken: false },
    { name: 'failed before the job ran (error)', result: { reason: 'error' as const, exitCode: null }, taken: false },
    { name: 'ran to an exit after all', result: { reason: 'exit' as const, exitCode: 0 }, taken: true }
  ])('a timed-out award whose job has no new round yet: a late exit report $name is taken: $taken', ({ result, taken }) => {
    const s = owner()
    submit(s, 'j1', 0)
    for (const n of NODES) bidFrom(s, n, 'j1', 1, n === 'n2' ? 0.9 : 0.1, 10)
    // No adverts since: at the deadline every node is suspect, so no new round opens and
    // the job stays at epoch 1, pending.
    const fx = tick(s, 3010)
    expect(events(fx)).toContain('award:timeout')
    expect(bidRequests(fx)).toEqual([])
    expect(job(s, 'j1')).toMatchObject({ state: 'pending', epoch: 1 })
    const { ack } = update(s, { jobId: 'j1', epoch: 1, node: 'n2', state: 'exited', finishedAtMs: 3020, ...result }, 3030)
    expect(ack).toMatchObject({ body: { accepted: taken, stop: !taken } })
    expect(job(s, 'j1').state).toBe(taken ? 'succeeded' : 'pending')
  })

  it('without a majority an unacknowledged award is neither timed out nor given up when its winner left', () => {
    const s = owner()
    submit(s, 'j1', 0)
    for (const n of NODES) bidFrom(s, n, 'j1', 1, n === 'n2' ? 0.9 : 0.1, 10)
    // Cut off: the winner may be running the job on the majority's side.
    expect(changed(step(s, { type: 'tick', quorum: false }, 5000))).toEqual([])
    expect(changed(step(s, { type: 'peer:left', peer: 'n2', quorum: false }, 7000))).toEqual([])
    expect(job(s, 'j1').attempts[0]).toMatchObject({ epoch: 1, node: 'n2', state: 'awarded' })
    // A majority again: the passed deadline fires.
    for (const n of NODES) advert(s, n, 8000)
    const fx = step(s, { type: 'tick', quorum: true }, 8000)
    expect(events(fx)).toContain('award:timeout')
    expect(bidRequests(fx).map(r => r.epoch)).toEqual([2, 2, 2])
  })

  it('declined: the attempt is marked declined and a new round starts at once', () => {
    const s = owner()
    submit(s, 'j1', 0)
    for (const n of NODES) bidFrom(s, n, 'j1', 1, n === 'n2' ? 0.9 : 0.1, 10)
    const fx = step(s, { type: 'award:declined', from: 'n2', jobId: 'j1', epoch: 1, reason: 'cpu' }, 20)
    expect(events(fx)).toContain('award:declined')
    expect(job(s, 'j1').attempts[0]).toMatchObject({ epoch: 1, state: 'declined', error: 'cpu' })
    // n2 said it has no room: until its next advert it is not asked again.
    expect(bidRequests(fx).map(r => r.epoch)).toEqual([2, 2])
    expect(bidRequests(fx).map(r => r.to)).not.toContain('n2')
  })

  it('a decline from anyone but the winner, or for another epoch, is ignored', () => {
    const s = owner()
    submit(s, 'j1', 0)
    for (const n of NODES) bidFrom(s, n, 'j1', 1, n === 'n2' ? 0.9 : 0.1, 10)
    expect(step(s, { type: 'award:declined', from: 'n1', jobId: 'j1', epoch: 1, reason: 'cpu' }, 20)).toEqual([])
    expect(step(s, { type: 'award:declined', from: 'n2', jobId: 'j1', epoch: 0, reason: 'cpu' }, 20)).toEqual([])
    expect(job(s, 'j1').epoch).toBe(1)
  })
})

describe('leases', () => {
  it('renewals keep the lease; without one for leaseMs the attempt is lost and a new epoch offered', () => {
    const s = owner()
    scheduled(s, 'j1')
    update(s, { jobId: 'j1', epoch: 1, state: 'running', startedAtMs: 30 }, 30)
    expect(job(s, 'j1').state).toBe('running')
    for (let t = 780; t <= 6000; t += 750) {
      for (const n of NODES) advert(s, n, t)
      expect(update(s, { jobId: 'j1', epoch: 1, state: 'running' }, t).ack).toMatchObject({ body: { accepted: true, stop: false } })
    }
    for (const n of NODES) advert(s, n, 8000)
    // last renewal at 5280: lease until 8280
    expect(ownerNextTimerMs(s)).toBe(8280)
    expect(bidRequests(tick(s, 8279))).toEqual([])
    const fx = tick(s, 8280)
    expect(events(fx)).toContain('attempt:lost')
    expect(job(s, 'j1').attempts[0]).toMatchObject({ epoch: 1, state: 'lost', reason: 'lost', error: 'lease expired' })
    expect(bidRequests(fx).map(r => r.epoch)).toEqual([2, 2, 2])
    expect(job(s, 'j1')).toMatchObject({ state: 'pending', epoch: 2 })
  })

  it('names the job\'s replicas in its acknowledgements once they changed since the award, and not before', () => {
    const s = owner()
    scheduled(s, 'j1')
    const ackBody = (t: number) => { const a = update(s, { jobId: 'j1', epoch: 1, state: 'running', startedAtMs: 30 }, t).ack; return a.type === MessageType.AttemptUpdateAck ? a.body : undefined }
    expect(ackBody(30)).not.toHaveProperty('replicas')
    const before = job(s, 'j1').replicas
    step(s, { type: 'job:replicas', jobId: 'j1', replicas: ['n9', ...before.slice(1)], detail: 'replaced' }, 100)
    expect(ackBody(780)).toMatchObject({ accepted: true, replicas: ['n9', ...before.slice(1)] })
    // A new award names them itself: its acknowledgements name none.
    step(s, { type: 'peer:left', peer: 'n2' }, 1000)
    expect(job(s, 'j1').epoch).toBe(2)
    bidFrom(s, 'n1', 'j1', 2, 0.9, 1010)
    bidFrom(s, 'n3', 'j1', 2, 0.5, 1010)
    expect(s.jobs.get('j1')!.award).toMatchObject({ node: 'n1', epoch: 2 })
    const again = update(s, { jobId: 'j1', epoch: 2, node: 'n1', state: 'running', startedAtMs: 1100 }, 1100).ack
    expect(again).toMatchObject({ type: MessageType.AttemptUpdateAck, body: { epoch: 2, accepted: true } })
    expect(again.body).not.toHaveProperty('replicas')
  })

  it('with a grace, an unacknowledged award is given up on only once the grace too has passed', () => {
    // The winner may have started and renew through a replica, its acknowledgement lost to a cut.
    const s = createOwner({ ...CONFIG, leaseGraceMs: 2750 })
    for (const n of NODES) advert(s, n, 0)
    submit(s, 'j1', 0)
    bidFrom(s, 'n1', 'j1', 1, 0.2, 10)
    bidFrom(s, 'n2', 'j1', 1, 0.9, 10)
    bidFrom(s, 'n3', 'j1', 1, 0.5, 10)
    expect(s.jobs.get('j1')!.award).toMatchObject({ node: 'n2', epoch: 1 })
    // deadline: the award (10) + max(ack timeout 2 s, lease 3 s) + grace 2.75 s
    expect(s.jobs.get('j1')!.award!.deadlineMs).toBe(10 + 3000 + 2750)
    for (const n of NODES) advert(s, n, 3000)
    for (const n of NODES) advert(s, n, 5000)
    expect(events(tick(s, 5759))).toEqual([])
    expect(events(tick(s, 5760))).toContain('award:timeout')
  })

  it('with a grace, a lapsed lease is given up on only once the grace too has passed', () => {
    // A replica may have acknowledged the executor's renewals for up to the grace after the
    // owner's last one (OwnerConfig.leaseGraceMs): the executor runs that much longer.
    const s = createOwner({ ...CONFIG, leaseGraceMs: 2750 })
    for (const n of NODES) advert(s, n, 0)
    scheduled(s, 'j1')
    update(s, { jobId: 'j1', epoch: 1, state: 'running', startedAtMs: 30 }, 30)
    for (const n of NODES) advert(s, n, 3000)
    // lease until 3030, given up on at 5780
    expect(ownerNextTimerMs(s)).toBe(5780)
    for (const n of NODES) advert(s, n, 5000)
    expect(events(tick(s, 5779))).toEqual([])
    expect(job(s, 'j1').attempts[0].state).toBe('running')
    const fx = tick(s, 5780)
    expect(job(s, 'j1').attempts[0]).toMatchObject({ state: 'lost', error: 'lease expired' })
    expect(bidRequests(fx).map(r => r.epoch)).toEqual([2, 2, 2])
  })

  it.each([
    // The stall credit moves the lease on by the stall, so the tick right after it keeps it.
    ['a stall of 2 s', 2000, 5280 + 3000 + 2000],
    // Never more than a lease: a longer stall (or a bad clock) delays a re-run by 3 s at most.
    ['a stall of 60 s (capped at a lease)', 60_000, 5280 + 3000 + 3000]
  ])('the owner does not count %s against a lease', (_what, stalledMs, expiresAtMs) => {
    const s = owner()
    scheduled(s, 'j1')
    update(s, { jobId: 'j1', epoch: 1, state: 'running', startedAtMs: 30 }, 30)
    for (let t = 780; t <= 6000; t += 750) update(s, { jobId: 'j1', epoch: 1, state: 'running' }, t)
    for (const n of NODES) advert(s, n, 8000)
    expect(step(s, { type: 'clock:stalled', stalledMs }, 8500)).toEqual([])
    expect(ownerNextTimerMs(s)).toBe(expiresAtMs)
    expect(events(tick(s, expiresAtMs - 1))).toEqual([])
  })

  it('the owner does not count a stall against an award\'s acknowledgement deadline either', () => {
    const s = owner()
    submit(s, 'j1', 0)
    bidFrom(s, 'n1', 'j1', 1, 0.2, 10)
    bidFrom(s, 'n2', 'j1', 1, 0.9, 10)
    bidFrom(s, 'n3', 'j1', 1, 0.5, 10)
    const before = s.jobs.get('j1')!.award!.deadlineMs
    step(s, { type: 'clock:stalled', stalledMs: 1500 }, 2000)
    expect(s.jobs.get('j1')!.award!.deadlineMs).toBe(before + 1500)
  })

  it('a lost attempt with no node to offer it to waits as unplaceable at the same epoch', () => {
    const s = owner()
    scheduled(s, 'j1')
    update(s, { jobId: 'j1', epoch: 1, state: 'running' }, 30)
    tick(s, 3030) // the adverts from t=0 are suspect by now
    expect(job(s, 'j1')).toMatchObject({ state: 'pending', reason: 'unplaceable', epoch: 1 })
    expect(job(s, 'j1').explanation?.filtered).toEqual({ 'not alive': 3 })
    // the executor, cut off, still renews: refused, so it stops
    expect(update(s, { jobId: 'j1', epoch: 1, node: 'n2', state: 'running' }, 3100).ack).toMatchObject({ body: { accepted: false, stop: true } })
    expect(job(s, 'j1').state).toBe('pending')
  })

  it('a lost attempt does not use up a retry', () => {
    const s = owner()
    scheduled(s, 'j1', spec({ retries: 1 }))
    update(s, { jobId: 'j1', epoch: 1, state: 'running' }, 30)
    for (const n of NODES) advert(s, n, 3000)
    const lost = tick(s, 3030)
    expect(bidRequests(lost).map(r => r.epoch)).toEqual([2, 2, 2])
    expect(job(s, 'j1').notBeforeMs).toBeUndefined()
    // epoch 2 fails: the one retry is still there
    expect(runEpoch(s, 'j1', 3100, { exitCode: 1, reason: 'exit' })).toMatchObject({ body: { accepted: true } })
    expect(job(s, 'j1')).toMatchObject({ state: 'pending', notBeforeMs: 3200 + 1000 })
  })

  it('peer:left loses a running attempt without waiting for its lease', () => {
    const s = owner()
    scheduled(s, 'j1')
    update(s, { jobId: 'j1', epoch: 1, state: 'running' }, 30)
    s.view.entries.delete('n2') // as the agent does on MemberLeave
    const fx = step(s, { type: 'peer:left', peer: 'n2' }, 1000)
    expect(job(s, 'j1').attempts[0]).toMatchObject({ state: 'lost', error: 'peer left' })
    expect(bidRequests(fx).map(r => r.epoch)).toEqual([2, 2])
    expect(bidRequests(fx).map(r => r.to)).not.toContain('n2')
  })

  // A silent executor may be cut off and still running until its own lease check stops it.
  it('peer:gone leaves a running attempt to its lease and grace', () => {
    const s = createOwner({ ...CONFIG, leaseGraceMs: 3000 })
    for (const n of NODES) advert(s, n, 0)
    scheduled(s, 'j1')
    update(s, { jobId: 'j1', epoch: 1, state: 'running' }, 30)
    update(s, { jobId: 'j1', epoch: 1, state: 'running' }, 2900) // its last renewal: lease until 5900
    for (const n of ['n1', 'n3']) advert(s, n, 5900)
    expect(step(s, { type: 'peer:gone', peer: 'n2' }, 6000)).toEqual([])
    expect(changed(tick(s, 8890))).toEqual([])
    expect(job(s, 'j1').attempts[0].state).toBe('running')
    // lease (5900) + grace (3000)
    const fx = tick(s, 8900)
    expect(job(s, 'j1').attempts[0]).toMatchObject({ state: 'lost', error: 'lease expired' })
    expect(bidRequests(fx).map(r => r.to)).not.toContain('n2')
  })

  it('peer:gone leaves an unacknowledged award to its deadline, and ends a bid round at once', () => {
    const s = owner()
    submit(s, 'j1', 0)
    for (const n of NODES) bidFrom(s, n, 'j1', 1, n === 'n2' ? 0.9 : 0.1, 10)
    expect(s.jobs.get('j1')!.award).toMatchObject({ node: 'n2', epoch: 1 })
    submit(s, 'j2', 20) // its round waits for n1, n2 and n3
    bidFrom(s, 'n1', 'j2', 1, 0.5, 30)
    bidFrom(s, 'n3', 'j2', 1, 0.4, 30)
    const fx = step(s, { type: 'peer:gone', peer: 'n2' }, 40)
    expect(awards(fx)).toEqual([{ to: 'n1', epoch: 1 }]) // j2: decided without n2's answer
    expect(s.jobs.get('j1')!.award).toMatchObject({ node: 'n2', epoch: 1 })
    expect(job(s, 'j1').attempts[0].state).toBe('awarded')
  })
})

describe('an owner without a majority in view (a cut-off side of a partition)', () => {
  it('keeps a running attempt whose lease lapsed, and loses it once a majority is back', () => {
    const s = owner()
    scheduled(s, 'j1')
    update(s, { jobId: 'j1', epoch: 1, state: 'running' }, 30)
    for (const n of NODES) advert(s, n, 3000)
    // lease until 3030; the shell sees no majority: nothing is re-run
    const cut = ownerStep(s, { type: 'tick', quorum: false }, 3030)
    expect(events(cut)).not.toContain('attempt:lost')
    expect(bidRequests(cut)).toEqual([])
    expect(job(s, 'j1')).toMatchObject({ state: 'running', epoch: 1 })
    expect(job(s, 'j1').attempts[0].state).toBe('running')
    expect(step(s, { type: 'peer:left', peer: 'n2', quorum: false }, 3100)).not.toContainEqual(expect.objectContaining({ type: 'send' }))
    expect(job(s, 'j1')).toMatchObject({ state: 'running', epoch: 1 })
    // the majority is back and the executor is still silent: now the attempt is lost
    for (const n of NODES) advert(s, n, 4000)
    const back = ownerStep(s, { type: 'tick', quorum: true }, 4000)
    expect(job(s, 'j1').attempts[0]).toMatchObject({ state: 'lost', error: 'lease expired' })
    expect(bidRequests(back).map(r => r.epoch)).toEqual([2, 2, 2])
  })

  it.each([
    ['pending when the majority went', true],
    ['submitted without a majority', false]
  ])('offers no job (%s) while the shell says other sides may hold a majority, and says why it waits', (_when, before) => {
    // A job pending on a cut-off owner is taken over by its replicas on the majority side,
    // which offer it there: offered on both sides, it would run twice.
    const s = owner()
    ownerStep(s, { type: 'tick', quorum: before, mayOffer: before }, 10)
    const first = submit(s, 'j2', 20)
    if (before) {
      // offered at once with a majority; it finds no room, then the majority goes
      for (const r of bidRequests(first)) step(s, { type: 'bid:refused', from: r.to, jobId: 'j2', epoch: r.epoch, reason: 'no-capacity' }, 30)
      expect(job(s, 'j2').state).toBe('pending')
    } else expect(bidRequests(first)).toEqual([])
    const epoch = job(s, 'j2').epoch
    const cut: OwnerEffect[] = []
    for (let t = 100; t <= 10_000; t += 100) {
      cut.push(...ownerStep(s, { type: 'tick', quorum: false, mayOffer: false }, t))
      if (t % 1000 === 0) for (const n of NODES) cut.push(...advert(s, n, t))
    }
    expect(bidRequests(cut)).toEqual([])
    expect(job(s, 'j2').epoch).toBe(epoch)
    expect(events([...first, ...cut]).filter(e => e === 'job:pending')).toHaveLength(1)
    expect(s.jobs.get('j2')!.lastPendingSummary).toMatch(/half of the mesh/)
    // the majority is back: offered at the next tick
    const back = ownerStep(s, { type: 'tick', quorum: true, mayOffer: true }, 10_050)
    expect(bidRequests(back).map(r => r.epoch)).toEqual([epoch + 1, epoch + 1, epoch + 1])
  })
})

describe('offers held while a healed owner checks its jobs', () => {
  it('a held job is not offered, a job not held is; once resumed, the held one is offered at the next tick', () => {
    const s = owner()
    // j1 is pending, not yet offered: it came while the owner was cut off.
    step(s, { type: 'tick', quorum: false, mayOffer: false }, 0)
    expect(bidRequests(submit(s, 'j1', 10))).toEqual([])
    expect(job(s, 'j1').state).toBe('pending')
    // The majority is back; the owner checks its jobs.
    step(s, { type: 'offers:held', jobIds: ['j1', 'gone'] }, 100)
    step(s, { type: 'tick', quorum: false, mayOffer: true }, 100)
    expect(s.heldOffers).toEqual(new Set(['j1'])) // only jobs it holds
    const held: OwnerEffect[] = []
    for (let t = 200; t <= 5_000; t += 100) {
      if (t % 1000 === 0) for (const n of NODES) advert(s, n, t)
      held.push(...tick(s, t))
    }
    held.push(...submit(s, 'j2', 5_000))
    expect(bidRequests(held).every(r => r.epoch === 1)).toBe(true)
    expect(sends(held).filter(m => m.message.type === MessageType.BidRequest && m.message.body.jobId === 'j1')).toEqual([])
    expect(sends(held).filter(m => m.message.type === MessageType.BidRequest && m.message.body.jobId === 'j2')).not.toEqual([])
    expect(s.jobs.get('j1')!.lastPendingSummary).toMatch(/replicas/)
    step(s, { type: 'offers:resumed', jobIds: ['j1'] }, 5_100)
    const resumed = tick(s, 5_150)
    expect(sends(resumed).filter(m => m.message.type === MessageType.BidRequest && m.message.body.jobId === 'j1').length).toBeGreaterThan(0)
    step(s, { type: 'offers:held', jobIds: ['j2'] }, 5_200)
    step(s, { type: 'job:released', jobId: 'j2' }, 5_300)
    expect(s.heldOffers.size).toBe(0)
  })
})

describe('fencing by epoch', () => {
  /** j1 lost its epoch-1 attempt on n2 and is in a round at epoch 2. */
  function superseded (): OwnerState {
    const s = owner()
    scheduled(s, 'j1')
    step(s, { type: 'peer:left', peer: 'n2' }, 100)
    expect(job(s, 'j1').epoch).toBe(2)
    return s
  }

  it('a running update from an old epoch is refused and told to stop; the job is unchanged', () => {
    const s = superseded()
    const before = structuredClone(job(s, 'j1'))
    const { fx, ack } = update(s, { jobId: 'j1', epoch: 1, node: 'n2', state: 'running' }, 200)
    expect(ack).toEqual({ type: MessageType.AttemptUpdateAck, body: { jobId: 'j1', epoch: 1, accepted: false, stop: true } })
    expect(changed(fx)).toEqual([])
    expect(job(s, 'j1')).toEqual(before)
  })

  it("an old epoch's final result is refused too: it never moves the job", () => {
    const s = superseded()
    const { ack } = update(s, { jobId: 'j1', epoch: 1, node: 'n2', state: 'exited', exitCode: 0, reason: 'exit', finishedAtMs: 150 }, 200)
    expect(ack).toEqual({ type: MessageType.AttemptUpdateAck, body: { jobId: 'j1', epoch: 1, accepted: false, stop: true } })
    expect(job(s, 'j1')).toMatchObject({ state: 'pending', epoch: 2 })
    expect(job(s, 'j1').attempts[0]).toMatchObject({ epoch: 1, state: 'lost' })
  })

  it('an update from a node that does not hold the current attempt is refused', () => {
    const s = owner()
    scheduled(s, 'j1')
    expect(update(s, { jobId: 'j1', epoch: 1, node: 'n3', state: 'running' }, 30).ack).toMatchObject({ body: { accepted: false, stop: true } })
    expect(update(s, { jobId: 'nope', epoch: 1, node: 'n3', state: 'running' }, 30).ack).toMatchObject({ body: { accepted: false, stop: true } })
  })

  it('an update is as good as an ack: a running update clears the pending award', () => {
    const s = owner()
    submit(s, 'j1', 0)
    for (const n of NODES) bidFrom(s, n, 'j1', 1, n === 'n2' ? 0.9 : 0.1, 10)
    update(s, { jobId: 'j1', epoch: 1, node: 'n2', state: 'running' }, 20)
    expect(job(s, 'j1').state).toBe('running')
    // no award timeout later
    expect(events(tick(s, 2010))).toEqual([])
  })
})

describe('results and retries', () => {
  it.each([
    { name: 'exit 0', result: { exitCode: 0, reason: 'exit' as const }, state: 'succeeded', reason: 'exit' },
    { name: 'exit 1', result: { exitCode: 1, reason: 'exit' as const }, state: 'failed', reason: 'exit' },
    { name: 'oom with status 0', result: { exitCode: 0, reason: 'oom' as const }, state: 'failed', reason: 'oom' },
    { name: 'timeout with status 0', result: { exitCode: 0, reason: 'timeout' as const }, state: 'failed', reason: 'timeout' },
    { name: 'missing image', result: { exitCode: null, reason: 'image' as const }, state: 'failed', reason: 'image' }
  ])('$name → $state ($reason)', ({ result, state, reason }) => {
    const s = owner()
    submit(s, 'j1', 0)
    expect(runEpoch(s, 'j1', 10, result)).toMatchObject({ body: { accepted: true, stop: false } })
    expect(job(s, 'j1')).toMatchObject({ state, reason, exitCode: result.exitCode })
    expect(s.active.has('j1') || s.pending.has('j1')).toBe(false)
  })

  it.each(['oom', 'timeout'] as const)('%s never succeeds, on any attempt', (why) => {
    const s = owner()
    submit(s, 'j1', 0, spec({ retries: 2 }))
    runEpoch(s, 'j1', 10, { exitCode: 0, reason: why })
    for (let i = 1; i < 3; i++) {
      const t = ownerNextTimerMs(s)!
      for (const n of NODES) advert(s, n, t)
      expect(bidRequests(tick(s, t))).toHaveLength(3)
      runEpoch(s, 'j1', t, { exitCode: 0, reason: why })
    }
    expect(job(s, 'j1')).toMatchObject({ state: 'failed', reason: why })
    expect(job(s, 'j1').attempts.map(a => a.reason)).toEqual([why, why, why])
  })

  it('a failure with retries left waits notBeforeMs (the backoff), then is offered again', () => {
    const s = owner()
    submit(s, 'j1', 0, spec({ retries: 2 }))
    const fx = step(s, { type: 'tick' }, 0)
    expect(fx).toEqual([])
    runEpoch(s, 'j1', 10, { exitCode: 3, reason: 'exit' })
    // failure 1 at t=110: backoff 1000 ms
    expect(job(s, 'j1')).toMatchObject({ state: 'pending', notBeforeMs: 1110, exitCode: 3, epoch: 1 })
    // The executor's advert shows the capacity freed: that does not skip the backoff...
    advert(s, 'n1', 115, { freeCpuMilli: 3500 }) // an advert sent while the job ran
    const version = s.view.freedVersion
    expect(bidRequests(advert(s, 'n1', 120, { freeCpuMilli: 4000 }))).toEqual([])
    expect(s.view.freedVersion).toBe(version + 1)
    expect(ownerNextTimerMs(s)).toBe(1110)
    expect(bidRequests(tick(s, 1109))).toEqual([])
    // ...and the job is offered again the moment it ends.
    expect(bidRequests(tick(s, 1110)).map(r => r.epoch)).toEqual([2, 2, 2])
    runEpoch(s, 'j1', 1200, { exitCode: 3, reason: 'exit' })
    // failure 2 at t=1300: backoff 2000 ms
    expect(job(s, 'j1')).toMatchObject({ state: 'pending', notBeforeMs: 3300 })
    for (const n of NODES) advert(s, n, 3300, { seq: 2000 + seq })
    expect(bidRequests(tick(s, ownerNextTimerMs(s)!)).map(r => r.epoch)).toEqual([3, 3, 3])
    runEpoch(s, 'j1', 3400, { exitCode: 3, reason: 'exit' })
    expect(job(s, 'j1')).toMatchObject({ state: 'failed', reason: 'exit', exitCode: 3 })
  })

  it('a resent final (its ack was lost) is acknowledged again but counted once', () => {
    const s = owner()
    submit(s, 'j1', 0, spec({ retries: 1 }))
    runEpoch(s, 'j1', 10, { exitCode: 1, reason: 'exit' })
    const before = structuredClone(job(s, 'j1'))
    const { fx, ack } = update(s, { jobId: 'j1', epoch: 1, state: 'exited', exitCode: 1, reason: 'exit', finishedAtMs: 110 }, 900)
    expect(ack).toMatchObject({ body: { accepted: true, stop: true } })
    expect(changed(fx)).toEqual([])
    expect(job(s, 'j1')).toEqual(before)
  })

  it('a renewal overtaken by the final does not re-open the attempt or give back a retry', () => {
    const s = owner()
    submit(s, 'j1', 0, spec({ retries: 1 }))
    runEpoch(s, 'j1', 10, { exitCode: 1, reason: 'exit' })
    for (const state of ['running', 'starting'] as const) {
      const { fx, ack } = update(s, { jobId: 'j1', epoch: 1, state }, 150)
      expect(ack).toMatchObject({ body: { accepted: false, stop: true } })
      expect(changed(fx)).toEqual([])
    }
    expect(job(s, 'j1')).toMatchObject({ state: 'pending', notBeforeMs: 1110 })
    expect(job(s, 'j1').attempts[0]).toMatchObject({ state: 'exited', exitCode: 1 })
    expect(s.active.has('j1')).toBe(false)
    const t = ownerNextTimerMs(s)!
    for (const n of NODES) advert(s, n, t)
    expect(bidRequests(tick(s, t))).toHaveLength(3)
    runEpoch(s, 'j1', t, { exitCode: 1, reason: 'exit' })
    // two failures with one retry: failed
    expect(job(s, 'j1')).toMatchObject({ state: 'failed', reason: 'exit' })
  })

  it('a renewal from an attempt the owner gave up (declined) while no new round could start is refused', () => {
    const s = owner(['n1'])
    submit(s, 'j1', 0)
    bidFrom(s, 'n1', 'j1', 1, 0.5, 10)
    // the award's response was lost: the owner counts it declined, yet n1 started the job
    advert(s, 'n1', 15, { freeCpuMilli: 0 })
    step(s, { type: 'award:declined', from: 'n1', jobId: 'j1', epoch: 1, reason: 'unreachable' }, 20)
    expect(job(s, 'j1')).toMatchObject({ state: 'pending', epoch: 1, reason: 'unplaceable' })
    const { ack } = update(s, { jobId: 'j1', epoch: 1, node: 'n1', state: 'running' }, 30)
    expect(ack).toMatchObject({ body: { accepted: false, stop: true } })
    expect(job(s, 'j1')).toMatchObject({ state: 'pending' })
    expect(s.active.has('j1')).toBe(false)
  })
})

describe('cancel', () => {
  it('a running job: CancelAttempt to its node for the current epoch, and the job is cancelled', () => {
    const s = owner()
    scheduled(s, 'j1')
    update(s, { jobId: 'j1', epoch: 1, state: 'running' }, 30)
    const fx = step(s, { type: 'job:cancel', jobId: 'j1' }, 40)
    expect(sends(fx)).toEqual([{ to: 'n2', message: { type: MessageType.CancelAttempt, body: { jobId: 'j1', epoch: 1 } } }])
    expect(job(s, 'j1')).toMatchObject({ state: 'cancelled', reason: 'cancelled' })
    expect(job(s, 'j1').attempts[0]).toMatchObject({ state: 'cancelled' })
    expect(events(fx)).toEqual(['job:cancelled', 'job:cancelled'])
    // its final report is taken for the history, and the executor told to stop
    expect(update(s, { jobId: 'j1', epoch: 1, state: 'exited', exitCode: null, reason: 'cancelled' }, 50).ack).toMatchObject({ body: { accepted: true, stop: true } })
    expect(job(s, 'j1').state).toBe('cancelled')
  })

  it('an awarded job not yet acknowledged is cancelled at the winner', () => {
    const s = owner()
    submit(s, 'j1', 0)
    for (const n of NODES) bidFrom(s, n, 'j1', 1, n === 'n3' ? 0.9 : 0.1, 10)
    expect(sent(step(s, { type: 'job:cancel', jobId: 'j1' }, 20), MessageType.CancelAttempt)).toEqual([{ to: 'n3', epoch: 1 }])
  })

  it('during a bid round: the reservations made so far are released, nothing is cancelled', () => {
    const s = owner()
    submit(s, 'j1', 0)
    bidFrom(s, 'n1', 'j1', 1, 0.5, 10)
    const fx = step(s, { type: 'job:cancel', jobId: 'j1' }, 20)
    expect(releases(fx)).toEqual([{ to: 'n1', epoch: 1 }])
    expect(sent(fx, MessageType.CancelAttempt)).toEqual([])
    expect(job(s, 'j1').state).toBe('cancelled')
    // the round's claim is gone from the view
    expect([...s.view.entries.values()].every(e => e.claimedCpuMilli === 0)).toBe(true)
  })

  it('a pending job sends nothing; a finished one cannot be cancelled', () => {
    const s = owner([])
    submit(s, 'j1', 0)
    expect(sends(step(s, { type: 'job:cancel', jobId: 'j1' }, 10))).toEqual([])
    expect(job(s, 'j1').state).toBe('cancelled')
    expect(step(s, { type: 'job:cancel', jobId: 'j1' }, 20)).toEqual([])
  })
})

describe('messages per job', () => {
  /** Every message the owner sends for one job from submission to success, every node bidding. */
  function sendsForOneJob (nodeCount: number): number {
    const peers = Array.from({ length: nodeCount }, (_, i) => `node-${i}`)
    const s = owner(peers)
    let count = 0
    const count$ = (fx: OwnerEffect[]): OwnerEffect[] => { count += sends(fx).length; return fx }
    const asked = bidRequests(count$(submit(s, 'j1', 0)))
    let winner: string | undefined
    asked.forEach((r, i) => {
      const fx = count$(bidFrom(s, r.to, 'j1', r.epoch, 0.1 + i / 10, 10))
      winner = awards(fx)[0]?.to ?? winner
    })
    expect(winner).toBeDefined()
    count$(step(s, { type: 'award:acked', from: winner!, jobId: 'j1', epoch: 1 }, 20))
    count$(update(s, { jobId: 'j1', epoch: 1, node: winner!, state: 'running' }, 30).fx)
    count$(update(s, { jobId: 'j1', epoch: 1, node: winner!, state: 'exited', exitCode: 0, reason: 'exit' }, 40).fx)
    for (let t = 50; t < 5000; t += 50) count$(tick(s, t))
    expect(job(s, 'j1').state).toBe('succeeded')
    return count
  }

  it('are bounded by the candidate count, not the mesh size', () => {
    const small = sendsForOneJob(3)
    const large = sendsForOneJob(300)
    // 3 bid requests, 2 releases, 1 award
    expect(small).toBe(1 + CONFIG.extraCandidates + CONFIG.extraCandidates + 1)
    expect(large).toBe(small)
  })
})

describe('a finished job leaving memory (job:evicted)', () => {
  it('forgets a finished job, and the same record adopted again answers as before', () => {
    const s = owner()
    submit(s, 'j1', 0)
    step(s, { type: 'job:cancel', jobId: 'j1' }, 10)
    const finished = structuredClone(job(s, 'j1'))
    expect(finished.state).toBe('cancelled')
    const before = update(s, { jobId: 'j1', epoch: finished.epoch, state: 'running' }, 20).ack
    expect(step(s, { type: 'job:evicted', jobId: 'j1' }, 30)).toEqual([])
    expect(s.jobs.has('j1')).toBe(false)
    expect(s.pending.has('j1') || s.active.has('j1')).toBe(false)
    // Back from the store: held only, nothing offered, no lease, and the same answer.
    expect(step(s, { type: 'job:adopted', job: finished }, 40)).toEqual([])
    expect(s.pending.has('j1') || s.active.has('j1')).toBe(false)
    expect(update(s, { jobId: 'j1', epoch: finished.epoch, state: 'running' }, 50).ack).toEqual(before)
  })

  it.each([
    ['pending', 'pending', (s: OwnerState) => { submit(s, 'j1', 0) }],
    ['in a bid round', 'pending', (s: OwnerState) => { submit(s, 'j1', 0); tick(s, 1) }],
    ['running', 'running', (s: OwnerState) => {
      submit(s, 'j1', 0)
      for (const n of NODES) bidFrom(s, n, 'j1', 1, n === 'n1' ? 0.9 : 0.1, 10)
      tick(s, 600)
      update(s, { jobId: 'j1', epoch: 1, state: 'running', startedAtMs: 700 }, 700)
    }]
  ])('keeps a live job (%s) and everything the machine tracks for it', (_name, state, setUp) => {
    const s = owner()
    setUp(s)
    expect(job(s, 'j1').state).toBe(state)
    const snapshot = structuredClone({ jobs: [...s.jobs.keys()], pending: [...s.pending], active: [...s.active], record: job(s, 'j1') })
    expect(step(s, { type: 'job:evicted', jobId: 'j1' }, 1000)).toEqual([])
    expect({ jobs: [...s.jobs.keys()], pending: [...s.pending], active: [...s.active], record: job(s, 'j1') }).toEqual(snapshot)
  })
})
