// The bidder: reservations from bids, allocations from awards, fencing on the executor side,
// and its half of the lease. Driven event by event with explicit times; no clock, no timers.
import { describe, expect, it } from 'vitest'
import { test as propTest, fc } from '@fast-check/vitest'
import type { JobSpec } from '../../src/protocol/job-spec.ts'
import { MessageType } from '../../src/protocol/messages.ts'
import { type BidderEffect, type BidderState, advertIsNews, advertPublished, bidderNextTimerMs, bidderStep, capacityOf, createBidder, usedResources } from '../../src/scheduler/bidder.ts'
import { GiB, bidderConfig, spec } from './harness.ts'

const OWNER = 'owner-1'
const CONFIG = bidderConfig({ reservationTtlMs: 3000, leaseMs: 3000, leaseRenewMs: 750, reportRetryMs: 1000 })

/** A node of 2 cores and 4 GiB. */
function bidder (over: { labels?: Record<string, string> } = {}): BidderState {
  return createBidder({ peerId: 'node-1', totalCpuMilli: 2000, totalMemoryBytes: 4 * GiB, labels: over.labels ?? {}, seq: 10, config: CONFIG })
}

let replyIds = 0
const bid = (s: BidderState, jobId: string, epoch: number, nowMs: number, j: JobSpec = spec({ cpuMilli: 1000, memoryBytes: 1 * GiB })): BidderEffect[] =>
  bidderStep(s, { type: 'bid:requested', from: OWNER, replyId: ++replyIds, jobId, epoch, spec: j }, nowMs)
const award = (s: BidderState, jobId: string, epoch: number, nowMs: number, j: JobSpec = spec({ cpuMilli: 1000, memoryBytes: 1 * GiB })): BidderEffect[] =>
  bidderStep(s, { type: 'award:received', from: OWNER, replyId: ++replyIds, jobId, epoch, spec: j }, nowMs)
const tick = (s: BidderState, nowMs: number): BidderEffect[] => bidderStep(s, { type: 'tick' }, nowMs)

const replies = (fx: BidderEffect[]) => fx.flatMap(f => f.type === 'reply' ? [f.message] : [])
const sends = (fx: BidderEffect[]) => fx.flatMap(f => f.type === 'send' ? [f] : [])
const stops = (fx: BidderEffect[]) => fx.flatMap(f => f.type === 'attempt:stop' ? [{ jobId: f.jobId, epoch: f.epoch, reason: f.reason }] : [])
const starts = (fx: BidderEffect[]) => fx.filter(f => f.type === 'attempt:start')
const of = (fx: BidderEffect[], type: BidderEffect['type']) => fx.filter(f => f.type === type)

/** Awarded and running since `atMs`, with the running update sent at that time. */
function running (s: BidderState, jobId: string, epoch: number, atMs: number): void {
  bid(s, jobId, epoch, atMs)
  award(s, jobId, epoch, atMs)
  bidderStep(s, { type: 'attempt:started', jobId, epoch, startedAtMs: atMs }, atMs)
}

describe('bids and reservations', () => {
  it('a bid reserves the job on the node and answers with a score and the new capacity', () => {
    const s = bidder()
    const fx = bid(s, 'j1', 1, 0)
    const [reply] = replies(fx)
    expect(reply.type).toBe(MessageType.Bid)
    if (reply.type !== MessageType.Bid) return
    expect(reply.body).toMatchObject({ jobId: 'j1', epoch: 1, components: { binpack: expect.any(Number) } })
    expect(reply.body.capacity).toMatchObject({ freeCpuMilli: 1000, freeMemoryBytes: 3 * GiB, seq: 11 })
    expect(s.reservations.get('j1#1')).toMatchObject({ cpuMilli: 1000, memoryBytes: 1 * GiB, owner: OWNER, expiresAtMs: 3000 })
    expect(of(fx, 'capacity:changed')).toHaveLength(1)
    expect(usedResources(s)).toEqual({ cpuMilli: 1000, memoryBytes: 1 * GiB })
  })

  it('the score describes the node before the reservation', () => {
    const s = bidder()
    const [reply] = replies(bid(s, 'j1', 1, 0))
    // 1000/2000 cpu and 1/4 GiB after placing the job on an empty node
    if (reply.type === MessageType.Bid) expect(reply.body.score).toBeCloseTo((0.5 + 0.25) / 2, 10)
  })

  it.each([
    { name: 'full (cpu)', setup: (s: BidderState) => { bid(s, 'other', 1, 0, spec({ cpuMilli: 1500, memoryBytes: 1 * GiB })) }, job: spec({ cpuMilli: 1000, memoryBytes: 1 * GiB }), reason: 'cpu' },
    { name: 'full (memory)', setup: (s: BidderState) => { bid(s, 'other', 1, 0, spec({ cpuMilli: 100, memoryBytes: 3.5 * GiB })) }, job: spec({ cpuMilli: 1000, memoryBytes: 1 * GiB }), reason: 'memory' },
    { name: 'larger than the node', setup: () => {}, job: spec({ memoryBytes: 8 * GiB }), reason: 'memory (larger than node)' },
    { name: 'more cores than the node', setup: () => {}, job: spec({ cpuMilli: 3000 }), reason: 'cpu (larger than node)' },
    { name: 'draining', setup: (s: BidderState) => { bidderStep(s, { type: 'drain:set', draining: true }, 0) }, job: spec(), reason: 'draining' },
    { name: 'labels', setup: () => {}, job: spec({ constraints: { zone: 'b' } }), reason: 'label zone=b' }
  ])('refuses when $name, with the feasibility reason "$reason"', ({ setup, job, reason }) => {
    const s = bidder({ labels: { zone: 'a' } })
    setup(s)
    const before = usedResources(s)
    const fx = bid(s, 'j1', 1, 10, job)
    const [reply] = replies(fx)
    expect(reply).toMatchObject({ type: MessageType.BidRefused, body: { jobId: 'j1', epoch: 1, reason, capacity: { peerId: 'node-1' } } })
    expect(s.reservations.has('j1#1')).toBe(false)
    expect(usedResources(s)).toEqual(before)
    expect(of(fx, 'capacity:changed')).toHaveLength(0)
  })

  it('a repeated bid request keeps one reservation and refreshes its expiry', () => {
    const s = bidder()
    bid(s, 'j1', 1, 0)
    const fx = bid(s, 'j1', 1, 1000)
    expect(replies(fx)[0].type).toBe(MessageType.Bid)
    expect(s.reservations.size).toBe(1)
    expect(s.reservations.get('j1#1')!.expiresAtMs).toBe(4000)
    expect(usedResources(s)).toEqual({ cpuMilli: 1000, memoryBytes: 1 * GiB })
    expect(of(fx, 'capacity:changed')).toHaveLength(0)
  })

  it('a bid request for an attempt already allocated is refused', () => {
    const s = bidder()
    bid(s, 'j1', 1, 0)
    award(s, 'j1', 1, 10)
    expect(replies(bid(s, 'j1', 1, 20))[0]).toMatchObject({ type: MessageType.BidRefused, body: { reason: 'already awarded' } })
  })

  it('a reservation expires on the tick at its TTL and frees its capacity', () => {
    const s = bidder()
    bid(s, 'j1', 1, 0)
    bid(s, 'j2', 1, 0)
    expect(replies(bid(s, 'j3', 1, 0))[0]).toMatchObject({ type: MessageType.BidRefused, body: { reason: 'cpu' } })
    expect(bidderNextTimerMs(s)).toBe(3000)
    expect(of(tick(s, 2999), 'capacity:changed')).toHaveLength(0)
    expect(s.reservations.size).toBe(2)
    const fx = tick(s, 3000)
    expect(s.reservations.size).toBe(0)
    expect(of(fx, 'capacity:changed')).toHaveLength(1)
    expect(capacityOf(s, 3000)).toMatchObject({ freeCpuMilli: 2000, freeMemoryBytes: 4 * GiB })
    expect(replies(bid(s, 'j3', 1, 3001))[0].type).toBe(MessageType.Bid)
  })

  it('a release frees the reservation at once; releasing twice changes nothing', () => {
    const s = bidder()
    bid(s, 'j1', 1, 0)
    expect(of(bidderStep(s, { type: 'reservation:released', from: OWNER, jobId: 'j1', epoch: 1 }, 5), 'capacity:changed')).toHaveLength(1)
    expect(usedResources(s)).toEqual({ cpuMilli: 0, memoryBytes: 0 })
    expect(bidderStep(s, { type: 'reservation:released', from: OWNER, jobId: 'j1', epoch: 1 }, 6)).toEqual([])
  })

  it('only the owner that asked for a bid releases its reservation', () => {
    const s = bidder()
    bid(s, 'j1', 1, 0)
    expect(bidderStep(s, { type: 'reservation:released', from: 'someone-else', jobId: 'j1', epoch: 1 }, 5)).toEqual([])
    expect(usedResources(s)).toEqual({ cpuMilli: 1000, memoryBytes: 1 * GiB })
    expect(of(bidderStep(s, { type: 'reservation:released', from: OWNER, jobId: 'j1', epoch: 1 }, 6), 'capacity:changed')).toHaveLength(1)
  })

  it('a repeated bid request from a new owner (a takeover that reused the epoch) makes it the one that releases', () => {
    const s = bidder()
    bid(s, 'j1', 1, 0)
    bidderStep(s, { type: 'bid:requested', from: 'owner-b', replyId: ++replyIds, jobId: 'j1', epoch: 1, spec: spec({ cpuMilli: 1000, memoryBytes: 1 * GiB }) }, 10)
    expect(s.reservations.size).toBe(1)
    expect(bidderStep(s, { type: 'reservation:released', from: OWNER, jobId: 'j1', epoch: 1 }, 11)).toEqual([])
    expect(of(bidderStep(s, { type: 'reservation:released', from: 'owner-b', jobId: 'j1', epoch: 1 }, 12), 'capacity:changed')).toHaveLength(1)
    expect(usedResources(s)).toEqual({ cpuMilli: 0, memoryBytes: 0 })
  })
})

describe('awards', () => {
  it('an award converts the reservation into an allocation: same capacity, one attempt:start', () => {
    const s = bidder()
    bid(s, 'j1', 1, 0)
    const seq = s.seq
    const fx = award(s, 'j1', 1, 100)
    expect(replies(fx)).toEqual([{ type: MessageType.AwardAck, body: { jobId: 'j1', epoch: 1 } }])
    expect(starts(fx)).toEqual([expect.objectContaining({ jobId: 'j1', epoch: 1, owner: OWNER })])
    expect(s.reservations.size).toBe(0)
    expect(s.allocations.get('j1#1')).toMatchObject({ phase: 'starting', owner: OWNER, awardedAtMs: 100 })
    expect(usedResources(s)).toEqual({ cpuMilli: 1000, memoryBytes: 1 * GiB })
    // Free capacity did not change, so neither does the advert.
    expect(of(fx, 'capacity:changed')).toHaveLength(0)
    expect(s.seq).toBe(seq)
  })

  it('an award without a reservation is accepted when the job fits now', () => {
    const s = bidder()
    const fx = award(s, 'j1', 1, 5000)
    expect(replies(fx)[0].type).toBe(MessageType.AwardAck)
    expect(starts(fx)).toHaveLength(1)
    expect(of(fx, 'capacity:changed')).toHaveLength(1)
  })

  it.each([
    { name: 'the node filled up', setup: (s: BidderState) => { award(s, 'other', 1, 0, spec({ cpuMilli: 1500 })) }, reason: 'cpu' },
    { name: 'the node is draining', setup: (s: BidderState) => { bidderStep(s, { type: 'drain:set', draining: true }, 0) }, reason: 'draining' }
  ])('an award without a reservation is declined when $name ("$reason")', ({ setup, reason }) => {
    const s = bidder()
    setup(s)
    const before = usedResources(s)
    const fx = award(s, 'j1', 1, 5000)
    expect(replies(fx)).toEqual([{ type: MessageType.AwardDeclined, body: { jobId: 'j1', epoch: 1, reason } }])
    expect(starts(fx)).toHaveLength(0)
    expect(s.allocations.has('j1#1')).toBe(false)
    expect(usedResources(s)).toEqual(before)
  })

  it('a duplicate award is acknowledged again and starts nothing more', () => {
    const s = bidder()
    bid(s, 'j1', 1, 0)
    const first = award(s, 'j1', 1, 100)
    const second = award(s, 'j1', 1, 150)
    expect(starts([...first, ...second])).toHaveLength(1)
    expect(replies(second)).toEqual([{ type: MessageType.AwardAck, body: { jobId: 'j1', epoch: 1 } }])
    expect(s.allocations.size).toBe(1)
    expect(usedResources(s)).toEqual({ cpuMilli: 1000, memoryBytes: 1 * GiB })
  })

  it('an award of a newer epoch fences the older allocation of the same job, once', () => {
    const s = bidder()
    running(s, 'j1', 1, 0)
    running(s, 'other', 1, 0) // another job is not touched
    bidderStep(s, { type: 'attempt:exited', jobId: 'other', epoch: 1, update: { finishedAtMs: 10, exitCode: 0, reason: 'exit' } }, 10)
    const fx = award(s, 'j1', 2, 500, spec({ cpuMilli: 100, memoryBytes: 100 }))
    expect(stops(fx)).toEqual([{ jobId: 'j1', epoch: 1, reason: 'fenced' }])
    expect(starts(fx)).toEqual([expect.objectContaining({ jobId: 'j1', epoch: 2 })])
    // The fenced attempt holds its capacity until its container is gone.
    expect(usedResources(s).cpuMilli).toBe(1100)
    // Its lease running out later stops nothing twice.
    expect(stops(tick(s, 10_000)).filter(x => x.epoch === 1)).toEqual([])
    bidderStep(s, { type: 'attempt:exited', jobId: 'j1', epoch: 1, update: { finishedAtMs: 600, exitCode: null, reason: 'cancelled' } }, 600)
    expect(usedResources(s).cpuMilli).toBe(100)
  })

  it('a newer epoch that no longer fits beside the fenced attempt is declined, and the old one still stops', () => {
    const s = bidder()
    running(s, 'j1', 1, 0)
    running(s, 'other', 1, 0)
    const fx = award(s, 'j1', 2, 500)
    expect(stops(fx)).toEqual([{ jobId: 'j1', epoch: 1, reason: 'fenced' }])
    expect(replies(fx)).toEqual([{ type: MessageType.AwardDeclined, body: { jobId: 'j1', epoch: 2, reason: 'cpu' } }])
    expect(usedResources(s).cpuMilli).toBe(2000)
  })

  it('an award of an older epoch fences nothing', () => {
    const s = bidder()
    running(s, 'j1', 3, 0)
    expect(stops(award(s, 'j1', 2, 100, spec({ cpuMilli: 100, memoryBytes: 100 })))).toEqual([])
  })

  it('cancel stops the attempt once and acknowledges every request', () => {
    const s = bidder()
    running(s, 'j1', 1, 0)
    const first = bidderStep(s, { type: 'attempt:cancel', from: OWNER, replyId: 1, jobId: 'j1', epoch: 1 }, 10)
    const second = bidderStep(s, { type: 'attempt:cancel', from: OWNER, replyId: 2, jobId: 'j1', epoch: 1 }, 20)
    expect(stops([...first, ...second])).toEqual([{ jobId: 'j1', epoch: 1, reason: 'cancelled' }])
    expect(replies(second)).toEqual([{ type: MessageType.Ack, body: { ok: true } }])
  })

  it('cancel of a reservation frees it', () => {
    const s = bidder()
    bid(s, 'j1', 1, 0)
    const fx = bidderStep(s, { type: 'attempt:cancel', from: OWNER, replyId: 1, jobId: 'j1', epoch: 1 }, 10)
    expect(of(fx, 'capacity:changed')).toHaveLength(1)
    expect(s.reservations.size).toBe(0)
  })
})

describe('lease, executor side', () => {
  it('sends a running update when the container starts, then renews every leaseRenewMs', () => {
    const s = bidder()
    bid(s, 'j1', 1, 0)
    award(s, 'j1', 1, 0)
    const started = bidderStep(s, { type: 'attempt:started', jobId: 'j1', epoch: 1, startedAtMs: 100 }, 100)
    expect(sends(started)).toEqual([{ type: 'send', to: OWNER, message: { type: MessageType.AttemptUpdate, body: { jobId: 'j1', epoch: 1, node: 'node-1', state: 'running', startedAtMs: 100 } } }])
    const renewals: number[] = []
    for (let t = 150; t <= 3000; t += 50) {
      for (const f of sends(tick(s, t))) {
        expect(f.message).toMatchObject({ type: MessageType.AttemptUpdate, body: { state: 'running' } })
        renewals.push(t)
        bidderStep(s, { type: 'update:acked', jobId: 'j1', epoch: 1, accepted: true, stop: false, state: 'running' }, t)
      }
    }
    expect(renewals).toEqual([850, 1600, 2350])
    expect(bidderNextTimerMs(s)).toBe(3100)
  })

  it('takes the replicas an acknowledgement names as the ones to renew with; a refusal changes nothing', () => {
    const s = bidder()
    bid(s, 'j1', 1, 0)
    bidderStep(s, { type: 'award:received', from: OWNER, replyId: ++replyIds, jobId: 'j1', epoch: 1, spec: spec({ cpuMilli: 1000, memoryBytes: 1 * GiB }), replicas: ['r1', 'r2', 'r3', 'r4'] }, 0)
    const a = s.allocations.get('j1#1')!
    bidderStep(s, { type: 'update:acked', jobId: 'j1', epoch: 1, accepted: true, stop: false, state: 'running' }, 750)
    expect(a.replicas).toEqual(['r1', 'r2', 'r3', 'r4'])
    bidderStep(s, { type: 'update:acked', jobId: 'j1', epoch: 1, accepted: true, stop: false, replicas: ['r1', 'r5', 'r3', 'r6'], state: 'running' }, 1500)
    expect(a.replicas).toEqual(['r1', 'r5', 'r3', 'r6'])
    bidderStep(s, { type: 'update:acked', jobId: 'j1', epoch: 1, accepted: false, stop: true, replicas: ['x'], state: 'running' }, 2250)
    expect(a.replicas).toEqual(['r1', 'r5', 'r3', 'r6'])
  })

  it('renews while the container is still starting, as "starting"', () => {
    const s = bidder()
    bid(s, 'j1', 1, 0)
    award(s, 'j1', 1, 0)
    const fx = tick(s, 750)
    expect(sends(fx).map(f => f.message)).toEqual([{ type: MessageType.AttemptUpdate, body: { jobId: 'j1', epoch: 1, node: 'node-1', state: 'starting' } }])
  })

  it('with no ack for leaseMs, stops the attempt as lost exactly once', () => {
    const s = bidder()
    running(s, 'j1', 1, 0)
    const stopped: Array<{ t: number, reason: string }> = []
    for (let t = 50; t <= 10_000; t += 50) {
      for (const x of stops(tick(s, t))) stopped.push({ t, reason: x.reason })
    }
    // lastLeaseAckMs = 0 (the award); lost once more than leaseMs has passed
    expect(stopped).toEqual([{ t: 3050, reason: 'lost' }])
  })

  it('acks keep the lease; a refused update fences; a stop request cancels', () => {
    const s = bidder()
    running(s, 'j1', 1, 0)
    running(s, 'j2', 1, 0)
    for (let t = 750; t <= 9000; t += 750) {
      tick(s, t)
      bidderStep(s, { type: 'update:acked', jobId: 'j1', epoch: 1, accepted: true, stop: false, state: 'running' }, t)
      bidderStep(s, { type: 'update:acked', jobId: 'j2', epoch: 1, accepted: true, stop: false, state: 'running' }, t)
    }
    expect(stops(tick(s, 9050))).toEqual([])
    expect(stops(bidderStep(s, { type: 'update:acked', jobId: 'j1', epoch: 1, accepted: false, stop: true }, 9100))).toEqual([{ jobId: 'j1', epoch: 1, reason: 'fenced' }])
    expect(stops(bidderStep(s, { type: 'update:acked', jobId: 'j2', epoch: 1, accepted: true, stop: true }, 9100))).toEqual([{ jobId: 'j2', epoch: 1, reason: 'cancelled' }])
    // already stopping: no second stop
    expect(stops(bidderStep(s, { type: 'update:acked', jobId: 'j1', epoch: 1, accepted: false, stop: true }, 9200))).toEqual([])
  })

  it.each([
    // No renewal could go out during the stall, so no ack could come back: credited a renewal
    // interval, time for the renewals now due to be answered.
    ['a stall of 500 ms is credited: no stop at 3.4 s', 500, 3400, false],
    ['a stall of 2 s is credited a renewal interval (750 ms): no stop at 3.7 s', 2000, 3700, false],
    // No more: the owner gives the lease up a renewal interval and a margin after it lapses.
    ['a stall of 2 s: stop at 3.751 s', 2000, 3751, true],
    ['a stall of 60 s: stop at 3.751 s', 60_000, 3751, true]
  ])('%s', (_what, stalledMs, tickAtMs, stopped) => {
    const s = bidder()
    running(s, 'j1', 1, 0)
    expect(bidderStep(s, { type: 'clock:stalled', stalledMs }, 3000)).toEqual([])
    expect(s.allocations.get('j1#1')!.lastLeaseAckMs).toBe(Math.min(stalledMs, 750))
    expect(stops(tick(s, tickAtMs)).length > 0).toBe(stopped)
  })

  it.each([
    // Counted from the answer: lapses a lease after it.
    ['no quorumAgeMs (an older agent)', undefined, 5001],
    // From the acknowledging agent's evidence of the mesh: 1.5 s before the answer.
    ['quorumAgeMs 1500', 1500, 3501],
    // An older acknowledgement that arrives late takes nothing back.
    ['quorumAgeMs older than the last acknowledgement', 5000, 3001]
  ])('an acknowledgement with %s: the lease runs from then', (_what, quorumAgeMs, lostAtMs) => {
    const s = bidder()
    running(s, 'j1', 1, 0)
    bidderStep(s, { type: 'update:acked', jobId: 'j1', epoch: 1, accepted: true, stop: false, state: 'running', ...(quorumAgeMs !== undefined ? { quorumAgeMs } : {}) }, 2000)
    expect(stops(tick(s, lostAtMs - 1))).toEqual([])
    expect(stops(tick(s, lostAtMs))).toEqual([{ jobId: 'j1', epoch: 1, reason: 'lost' }])
  })

  it('failed updates do not extend the lease', () => {
    const s = bidder()
    running(s, 'j1', 1, 0)
    bidderStep(s, { type: 'update:failed', jobId: 'j1', epoch: 1 }, 1000)
    expect(stops(tick(s, 3001))).toEqual([{ jobId: 'j1', epoch: 1, reason: 'lost' }])
  })
})

describe('the final report', () => {
  function exited (s: BidderState, atMs: number): BidderEffect[] {
    return bidderStep(s, { type: 'attempt:exited', jobId: 'j1', epoch: 1, update: { startedAtMs: 0, finishedAtMs: atMs, exitCode: 0, reason: 'exit' } }, atMs)
  }
  const FINAL = { type: MessageType.AttemptUpdate, body: { jobId: 'j1', epoch: 1, node: 'node-1', state: 'exited', startedAtMs: 0, finishedAtMs: 2000, exitCode: 0, reason: 'exit' } }

  it('is sent on exit, frees the capacity, and is resent every reportRetryMs until acknowledged', () => {
    const s = bidder()
    running(s, 'j1', 1, 0)
    const fx = exited(s, 2000)
    expect(sends(fx).map(f => f.message)).toEqual([FINAL])
    expect(of(fx, 'capacity:changed')).toHaveLength(1)
    expect(usedResources(s)).toEqual({ cpuMilli: 0, memoryBytes: 0 })
    const resent: number[] = []
    const renewed: number[] = []
    for (let t = 2050; t <= 5000; t += 50) {
      const out = tick(s, t)
      for (const f of sends(out)) {
        if (f.message.type === MessageType.AttemptUpdate && f.message.body.state === 'exited') {
          expect(f.message).toEqual(FINAL)
          resent.push(t)
        } else renewed.push(t)
      }
      // no lease loss for an attempt that has exited
      expect(stops(out)).toEqual([])
    }
    expect(resent).toEqual([3000, 4000, 5000])
    // Beside them, renewals every leaseRenewMs from the exit keep the lease while the final is
    // on its way.
    expect(renewed).toEqual([2750, 3500, 4250, 5000])
    const acked = bidderStep(s, { type: 'update:acked', jobId: 'j1', epoch: 1, accepted: true, stop: false, state: 'exited' }, 5100)
    expect(acked).toEqual([{ type: 'attempt:reported', jobId: 'j1', epoch: 1 }])
    expect(s.allocations.size).toBe(0)
    expect(tick(s, 10_000)).toEqual([])
    expect(bidderNextTimerMs(s)).toBeUndefined()
  })

  it.each([
    ['running', 0],
    // failed before its container ran (say, the image is missing): no "running" to claim
    ['starting', undefined]
  ] as const)('renewals beside the final say %s, keep the lease (their acks are not the final\'s), and keep to leaseRenewMs', (state, startedAtMs) => {
    const s = bidder()
    if (startedAtMs !== undefined) running(s, 'j1', 1, 0)
    else { bid(s, 'j1', 1, 0); award(s, 'j1', 1, 0) }
    bidderStep(s, { type: 'attempt:exited', jobId: 'j1', epoch: 1, update: { ...(startedAtMs !== undefined ? { startedAtMs } : {}), finishedAtMs: 2000, exitCode: startedAtMs !== undefined ? 0 : null, reason: startedAtMs !== undefined ? 'exit' : 'error' } }, 2000)
    expect(bidderNextTimerMs(s)).toBe(2750)
    const renewal = sends(tick(s, 2750))
    expect(renewal.map(f => f.message)).toEqual([{ type: MessageType.AttemptUpdate, body: { jobId: 'j1', epoch: 1, node: 'node-1', state, ...(startedAtMs !== undefined ? { startedAtMs } : {}) } }])
    expect(bidderStep(s, { type: 'update:acked', jobId: 'j1', epoch: 1, accepted: true, stop: false, state }, 2760)).toEqual([])
    expect(s.allocations.get('j1#1')?.final).toBeDefined()
    expect(bidderNextTimerMs(s)).toBe(3000) // the final's retry comes first
    expect(sends(tick(s, 3000)).map(f => f.message.type === MessageType.AttemptUpdate && f.message.body.state)).toEqual(['exited'])
    expect(bidderNextTimerMs(s)).toBe(3500) // and the renewals keep to their own clock
  })

  it('renewals beside the final stop once the owner answers one with stop (it holds the result): the final goes on alone', () => {
    const s = bidder()
    running(s, 'j1', 1, 0)
    exited(s, 2000)
    expect(sends(tick(s, 2750)).map(f => f.message.type === MessageType.AttemptUpdate && f.message.body.state)).toEqual(['running'])
    // the owner recorded the exit already; the final's own ack waits for its replication
    expect(bidderStep(s, { type: 'update:acked', jobId: 'j1', epoch: 1, accepted: false, stop: true, state: 'running' }, 2760)).toEqual([])
    expect(s.allocations.get('j1#1')?.final).toBeDefined()
    const states: Array<string | false> = []
    for (let t = 2800; t <= 5000; t += 50) for (const f of sends(tick(s, t))) states.push(f.message.type === MessageType.AttemptUpdate && f.message.body.state)
    expect(states).toEqual(['exited', 'exited', 'exited'])
    expect(bidderNextTimerMs(s)).toBe(6000)
  })

  it('with a lease of 8 s the renewals beside the final still go out every leaseRenewMs (2 s), not only between retries', () => {
    const s = createBidder({ peerId: 'node-1', totalCpuMilli: 4000, totalMemoryBytes: 8 * GiB, labels: {}, seq: 0, config: bidderConfig({ leaseMs: 8000, leaseRenewMs: 2000, reportRetryMs: 1000 }) })
    running(s, 'j1', 1, 0)
    bidderStep(s, { type: 'attempt:exited', jobId: 'j1', epoch: 1, update: { startedAtMs: 0, finishedAtMs: 2000, exitCode: 0, reason: 'exit' } }, 2000)
    const renewed: number[] = []
    for (let t = 2100; t <= 8000; t += 100) for (const f of sends(tick(s, t))) if (f.message.type === MessageType.AttemptUpdate && f.message.body.state !== 'exited') renewed.push(t)
    expect(renewed).toEqual([4000, 6000, 8000])
  })

  it('an attempt handed back after a restart as never started renews as starting, not running', () => {
    const s = bidder()
    const fx = bidderStep(s, { type: 'attempt:recovered', jobId: 'j1', epoch: 1, owner: 'owner-1', replicas: [], spec: spec() }, 0)
    expect(sends(fx).map(f => f.message.type === MessageType.AttemptUpdate && f.message.body.state)).toEqual(['starting'])
    bidderStep(s, { type: 'attempt:exited', jobId: 'j1', epoch: 1, update: { finishedAtMs: 10, exitCode: null, reason: 'lost' } }, 10)
    expect(sends(tick(s, 760)).map(f => f.message.type === MessageType.AttemptUpdate && f.message.body.state)).toEqual(['starting'])
  })

  it('a refusal of the final (stale epoch) also ends the report: the owner has heard it', () => {
    const s = bidder()
    running(s, 'j1', 1, 0)
    exited(s, 2000)
    expect(bidderStep(s, { type: 'update:acked', jobId: 'j1', epoch: 1, accepted: false, stop: true, state: 'exited' }, 2100)).toEqual([{ type: 'attempt:reported', jobId: 'j1', epoch: 1 }])
  })

  it("a late ack of a renewal is not taken for the final's ack", () => {
    const s = bidder()
    running(s, 'j1', 1, 0)
    tick(s, 750) // renewal in flight
    exited(s, 800)
    expect(bidderStep(s, { type: 'update:acked', jobId: 'j1', epoch: 1, accepted: true, stop: false, state: 'running' }, 810)).toEqual([])
    expect(s.allocations.has('j1#1')).toBe(true)
    // the final goes out again (beside a renewal: the lease is kept while it is on its way)
    expect(sends(tick(s, 1800)).map(f => f.message.type === MessageType.AttemptUpdate && f.message.body.state)).toEqual(['exited', 'running'])
  })

  it('a second exit of the same attempt is ignored', () => {
    const s = bidder()
    running(s, 'j1', 1, 0)
    exited(s, 2000)
    expect(exited(s, 2100)).toEqual([])
  })
})

describe('renewals to one owner travel together', () => {
  /** A node big enough for many small attempts; each awarded by `owner` at `atMs` and running. */
  function big (): BidderState {
    return createBidder({ peerId: 'node-1', totalCpuMilli: 64_000, totalMemoryBytes: 64 * GiB, labels: {}, seq: 0, config: CONFIG })
  }
  const small = spec({ cpuMilli: 10, memoryBytes: 1024 ** 2 })
  function runningFor (s: BidderState, owner: string, jobId: string, atMs: number): void {
    bidderStep(s, { type: 'award:received', from: owner, replyId: ++replyIds, jobId, epoch: 1, spec: small }, atMs)
    bidderStep(s, { type: 'attempt:started', jobId, epoch: 1, startedAtMs: atMs }, atMs)
  }
  /** per send: the owner and the jobs it renews */
  const renewed = (fx: BidderEffect[]): Array<[string, string[]]> => sends(fx).map(f => [f.to,
    f.message.type === MessageType.AttemptRenewals ? f.message.body.renewals.map(r => r.jobId) : f.message.type === MessageType.AttemptUpdate ? [f.message.body.jobId] : []])

  it.each([
    { name: 'due together: one message', awards: [['a', 'j1', 0], ['a', 'j2', 0]], at: 750, want: [['a', ['j1', 'j2']]] },
    { name: 'one due, one half due: both go', awards: [['a', 'j1', 0], ['a', 'j2', 300]], at: 750, want: [['a', ['j1', 'j2']]] },
    { name: 'one due, one less than half due: it waits', awards: [['a', 'j1', 0], ['a', 'j2', 400]], at: 750, want: [['a', ['j1']]] },
    { name: 'two owners: one message each, a single renewal stays an AttemptUpdate', awards: [['a', 'j1', 0], ['b', 'j2', 0], ['a', 'j3', 100]], at: 750, want: [['a', ['j1', 'j3']], ['b', ['j2']]] },
    { name: 'nothing due: nothing goes, however many are half due', awards: [['a', 'j1', 300], ['a', 'j2', 300]], at: 750, want: [] }
  ] as const)('$name', ({ awards, at, want }) => {
    const s = big()
    for (const [owner, jobId, atMs] of awards) runningFor(s, owner, jobId, atMs)
    const fx = tick(s, at)
    expect(renewed(fx)).toEqual(want)
    for (const f of sends(fx)) {
      if (f.message.type === MessageType.AttemptRenewals) {
        expect(f.message.body.node).toBe('node-1')
        for (const r of f.message.body.renewals) expect(r).toEqual({ jobId: r.jobId, epoch: 1, state: 'running', startedAtMs: awards.find(x => x[1] === r.jobId)![2] })
      } else {
        expect(f.message.type).toBe(MessageType.AttemptUpdate)
      }
    }
  })

  it('a batch holds at most MAX_RENEWALS_PER_MESSAGE; more go in further messages', () => {
    const s = big()
    for (let i = 0; i < 300; i++) runningFor(s, 'a', `j${i}`, 0)
    const sizes = sends(tick(s, 750)).map(f => f.message.type === MessageType.AttemptRenewals ? f.message.body.renewals.length : 1)
    expect(sizes).toEqual([256, 44])
  })

  propTest.prop([
    fc.array(fc.record({ owner: fc.constantFrom('a', 'b', 'c'), atMs: fc.integer({ min: 0, max: 6000 }) }), { minLength: 1, maxLength: 30 })
  ], { numRuns: 100 })('every attempt is renewed within leaseRenewMs (and a tick), none lapses, and each owner gets at most 2 messages per interval once under way', (awards) => {
    const s = big()
    const pending = [...awards].map((a, i) => ({ ...a, jobId: `j${i}` })).sort((x, y) => x.atMs - y.atMs)
    const lastRenewal = new Map<string, number>()
    const perOwnerWindow = new Map<string, number[]>()
    for (let t = 0; t <= 12_000; t += 50) {
      while (pending.length > 0 && pending[0].atMs <= t) {
        const a = pending.shift()!
        runningFor(s, a.owner, a.jobId, t)
        lastRenewal.set(a.jobId, t)
      }
      const fx = tick(s, t)
      expect(stops(fx)).toEqual([])
      for (const [owner, jobs] of renewed(fx)) {
        ;(perOwnerWindow.get(owner) ?? perOwnerWindow.set(owner, []).get(owner)!).push(t)
        for (const jobId of jobs) {
          expect(t - lastRenewal.get(jobId)!).toBeLessThanOrEqual(750 + 50)
          lastRenewal.set(jobId, t)
          // the owner answers every renewal at once
          bidderStep(s, { type: 'update:acked', jobId, epoch: 1, accepted: true, stop: false, state: 'running' }, t)
        }
      }
      for (const [jobId, last] of lastRenewal) expect({ jobId, late: t - last > 750 + 50 }).toEqual({ jobId, late: false })
    }
    // After the last award, each owner's renewals settle into ≤ 2 messages per interval.
    const settledFrom = Math.max(...awards.map(a => a.atMs)) + 2 * 750
    for (const [owner, times] of perOwnerWindow) {
      const late = times.filter(t => t >= settledFrom)
      for (const t of late) expect({ owner, t, inInterval: late.filter(x => x >= t && x < t + 750).length <= 2 }).toEqual({ owner, t, inInterval: true })
    }
  })
})

describe('which adverts are news', () => {
  const OTHER_OWNER = 'owner-2'
  const release = (s: BidderState, jobId: string, nowMs: number): void => {
    const from = s.reservations.get(`${jobId}#1`)?.owner ?? OWNER
    bidderStep(s, { type: 'reservation:released', from, jobId, epoch: 1 }, nowMs)
  }
  /** A node whose last advert went out at time 0, before anything below. */
  function advertised (): BidderState {
    const s = bidder()
    advertPublished(s, capacityOf(s, 0))
    return s
  }

  it.each([
    { name: 'no advert yet', run: (_s: BidderState) => {}, fresh: true, news: true },
    { name: 'nothing changed', run: (_s: BidderState) => {}, news: false },
    {
      name: 'a lost bid: reserved, then released (its asker adds the room back itself)',
      run: (s: BidderState) => { bid(s, 'j1', 1, 1); release(s, 'j1', 2) },
      news: false
    },
    { name: 'a reservation still held', run: (s: BidderState) => { bid(s, 'j1', 1, 1) }, news: true },
    {
      name: 'a short job: bid, award, start and end between adverts',
      run: (s: BidderState) => {
        running(s, 'j1', 1, 1)
        bidderStep(s, { type: 'attempt:exited', jobId: 'j1', epoch: 1, update: { startedAtMs: 1, finishedAtMs: 2, exitCode: 0, reason: 'exit' } }, 2)
      },
      news: false
    },
    { name: 'a job still running', run: (s: BidderState) => { running(s, 'j1', 1, 1) }, news: true },
    {
      name: 'a bid showed its asker another reservation (held then, released since)',
      run: (s: BidderState) => {
        bid(s, 'j1', 1, 1)
        bidderStep(s, { type: 'bid:requested', from: OTHER_OWNER, replyId: ++replyIds, jobId: 'j2', epoch: 1, spec: spec({ cpuMilli: 500, memoryBytes: 1 * GiB }) }, 2)
        release(s, 'j1', 3)
        release(s, 'j2', 3)
      },
      news: true
    },
    {
      name: 'a refusal showed its asker a reservation (released since)',
      run: (s: BidderState) => {
        bid(s, 'j1', 1, 1, spec({ cpuMilli: 1500, memoryBytes: 1 * GiB }))
        bidderStep(s, { type: 'bid:requested', from: OTHER_OWNER, replyId: ++replyIds, jobId: 'j2', epoch: 1, spec: spec({ cpuMilli: 1000, memoryBytes: 1 * GiB }) }, 2)
        release(s, 'j1', 3)
      },
      news: true
    },
    { name: 'a drain', run: (s: BidderState) => { bidderStep(s, { type: 'drain:set', draining: true }, 1) }, news: true }
  ])('$name → news: $news', ({ run, fresh, news }) => {
    const s = fresh === true ? bidder() : advertised()
    run(s)
    expect(advertIsNews(s, 10)).toBe(news)
  })

  it('an advert published resets what was shown', () => {
    const s = advertised()
    bid(s, 'j1', 1, 1)
    bidderStep(s, { type: 'bid:requested', from: OTHER_OWNER, replyId: ++replyIds, jobId: 'j2', epoch: 1, spec: spec({ cpuMilli: 500, memoryBytes: 1 * GiB }) }, 2)
    advertPublished(s, capacityOf(s, 3))
    expect(advertIsNews(s, 4)).toBe(false)
    release(s, 'j1', 5)
    expect(advertIsNews(s, 6)).toBe(true)
  })
})
