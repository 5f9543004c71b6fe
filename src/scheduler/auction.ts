// The owner: runs each job's auction and keeps its books. A pure state machine of the form
// (state, event, nowMs) → effects: it never awaits, reads a clock or sends. The agent and the
// simulator are two shells that carry out its effects. The state object is owned by the
// machine and updated in place (at 100,000 jobs, copying it per event would dominate).
//
// A job's life at its owner:
//   pending ──offer──▶ (view|bids) ──award──▶ scheduled ──update:running──▶ running ──update:exited──▶ succeeded | failed
//      ▲                    │ no bids              │ ack timeout / declined      │ lease expired (lost)
//      └────────────────────┴──────────────────────┴─────────────────────────────┘   (and retries, with backoff)
// An offer awards the job straight to the best node in the view when that node's advert is
// fresh ('view': the node's advert is its standing bid, and it declines what no longer fits),
// and otherwise asks the best few to bid ('bids'). A declined award goes to the view's next
// best, and a second decline in a row to bids.
// Every offer takes a new epoch. Epochs fence: an update carrying any epoch but the
// job's current one is refused, and its sender told to stop.
import type { Explanation, JobEvent, JobReason, JobRecord, NodeCapacity } from '../protocol/job.ts'
import { TERMINAL_STATES } from '../protocol/job.ts'
import type { JobSpec } from '../protocol/job-spec.ts'
import { type AttemptUpdate, MessageType, type Message } from '../protocol/messages.ts'
import { type BidView, chooseWinner, formatFiltered, selectFromView } from './placement.ts'
import { backoffMs, isFailure, isRetryable } from './retry.ts'
import { type CapacityView, type LivenessConfig, applyAdvert, claim, createView, debit, liveness, markDisconnected, markFull, releaseInView, unclaim } from './view.ts'

export interface OwnerConfig extends LivenessConfig {
  selfId: string
  bidWindowMs: number
  /** an award not acknowledged (nor reported on) this long is given up on; at least leaseMs
   *  in effect (see decide) */
  awardAckTimeoutMs: number
  /** the owner declares an attempt lost when no renewal arrived for this long */
  leaseMs: number
  /** ...and only this much after its lease lapsed. An executor that cannot reach its owner
   *  renews with the job's replicas. A replica cut off with it acknowledges on its evidence of
   *  the mesh from before the cut (AttemptUpdateAck.quorumAgeMs), so the executor's lease runs
   *  out at most a lease after the cut; the cut came at most one renewal interval after the
   *  owner's last renewal: grace = leaseRenewMs + a margin (AGENT_DEFAULTS.leaseGraceMarginMs).
   *  The executor then stops before the owner re-runs its job. An award's acknowledgement
   *  deadline waits it out too. (An owner cut off with its executor is not this owner: the
   *  majority side re-runs only after a takeover, and a lease from it.) Longer: a dead
   *  executor's job is re-run later; shorter: a cut-off executor and the owner's re-run
   *  overlap. */
  leaseGraceMs: number
  extraCandidates: number
  /** A pending job goes straight to the view's best node, with no bid round, when that node's
   *  entry is at most this old, has no award unanswered for over a bid window, and the job's
   *  last attempt was not lost nor its last directAwardDeclinesBeforeBids declined (see
   *  directAward): the award is the node's reservation, and the node declines it unless the
   *  job fits its exact books, so the view's staleness costs a decline (then the next best, or
   *  a bid round), never an overcommit. 0: always bid.
   *  Higher: more jobs skip the round (3 bid requests, 2 releases and a round trip fewer),
   *  and more awards meet a view that is out of date and are declined. (The agent's default:
   *  agentTimings.directAwardMaxViewAgeMs.) */
  directAwardMaxViewAgeMs: number
  /** A job whose awards were declined this many times in a row is offered with a bid round
   *  next (see directAward; SCHEDULER_DEFAULTS has the trade-off). 0 and 1 alike: a round
   *  after every decline. */
  directAwardDeclinesBeforeBids: number
  explainTop: number
  retryBackoffBaseMs: number
  retryBackoffMaxMs: number
  /** pending jobs are offered again at least this often, even with no capacity news */
  sweepIntervalMs: number
  /** attempts lost to dead or cut-off executors before the job fails with reason `lost` */
  maxLostAttempts: number
}

interface Round {
  epoch: number
  candidates: string[]
  answered: Set<string>
  bids: BidView[]
  refused: Record<string, number>
  deadlineMs: number
  /** the node whose view entry carries this round's optimistic claim */
  claimedOn?: string
  explanation: Explanation
}

export interface OwnerJob {
  record: JobRecord
  round?: Round
  /** awarded, waiting for the winner's acknowledgement */
  award?: { node: string, epoch: number, deadlineMs: number }
  leaseExpiresAtMs?: number
  lastOfferAtMs: number
  lastOfferVersion: number
  /** summary of the last pending explanation, to record a pending event only when it changes */
  lastPendingSummary?: string
  /** the record's replicas changed since the current attempt's award named them: its
   *  executor hears the new ones in the acknowledgements of its reports */
  replicasChanged?: boolean
}

export interface OwnerState {
  config: OwnerConfig
  view: CapacityView
  jobs: Map<string, OwnerJob>
  /** ids of jobs waiting for an offer, oldest first (insertion order) */
  pending: Set<string>
  /** ids of jobs with a round, an award or a lease open */
  active: Set<string>
  /** what the shell last said in a 'tick' (see its mayOffer): no job is offered while false */
  mayOffer: boolean
  /** jobs not to offer for now ('offers:held'): a healed owner is asking whether the majority
   *  took them over */
  heldOffers: Set<string>
}

export type OwnerEvent =
  | { type: 'job:submitted', job: JobRecord }
  | { type: 'job:adopted', job: JobRecord }
  | { type: 'job:cancel', jobId: string }
  /** another agent owns the job now (a higher term): stop acting for it */
  | { type: 'job:released', jobId: string }
  /** a finished job leaves memory (the store keeps it): only a terminal job is forgotten, and
   *  one the shell hears of again comes back with its stored record as job:adopted */
  | { type: 'job:evicted', jobId: string }
  /** the shell replaced replicas of the job that are gone (see the agent's replaceGoneReplicas):
   *  the record lists the new ones from now on, and the change is replicated to them */
  | { type: 'job:replicas', jobId: string, replicas: string[], detail: string }
  | { type: 'advert:received', capacity: NodeCapacity }
  | { type: 'bid:received', from: string, jobId: string, epoch: number, score: number, components: Record<string, number>, capacity: NodeCapacity }
  | { type: 'bid:refused', from: string, jobId: string, epoch: number, reason: string, capacity?: NodeCapacity }
  | { type: 'award:acked', from: string, jobId: string, epoch: number }
  | { type: 'award:declined', from: string, jobId: string, epoch: number, reason: string }
  | { type: 'attempt:update', replyId: number, update: AttemptUpdate }
  /** The shell stopped hearing the peer (goneAfterMs without an advert). Only its bid rounds
   *  end early: its running attempts and unacknowledged awards wait for their lease or award
   *  deadline and its grace (see 'peer:gone' in ownerStep). */
  | { type: 'peer:gone', peer: string }
  /** The shell lost its last direct connection to the peer: its process ended, or the link
   *  went. Its adverts may be fresh still (a crashed agent's for up to an advert interval), so
   *  until it answers a direct request again it gets no awards from the view: a bid round,
   *  which decides without it after the bid window, rather than an award that waits out the
   *  award deadline. (A live node is asked in the round when it is among the best, and its
   *  bid clears this: a dropped link costs it one round.) Nothing else changes: its attempts
   *  and the awards already sent to it wait for their leases and deadlines, as a cut link may
   *  come back. */
  | { type: 'peer:disconnected', peer: string }
  /** The peer announced it leaves (MemberLeave, after draining: its attempts have ended and
   *  reported). quorum (default true): whether the owner's shell sees a majority of the mesh.
   *  See 'tick'. */
  | { type: 'peer:left', peer: string, quorum?: boolean }
  /** quorum (default true): whether the owner's shell sees a majority of the mesh. Without
   *  one, a running attempt whose lease lapses is not re-run: the owner may be the side of a
   *  partition that is cut off, while the executor runs on in the majority, where the job's
   *  replicas take it over and keep the attempt (a re-run here would be a duplicate the
   *  majority never asked for). The check resumes once a majority is back, or the job is
   *  released to the majority's owner. */
  /** mayOffer (default true): whether no other side of a partition can hold a majority of the
   *  mesh: the shell sees at least half of the members it knows. Otherwise this owner may be
   *  the cut-off side, whose jobs' replicas take them over on the majority side and offer them
   *  there: a job offered here too would run twice. An even split stops neither side: neither
   *  can take a job over. */
  | { type: 'tick', quorum?: boolean, mayOffer?: boolean }
  /** a healed owner asks these jobs' replicas whether the majority took them over: none is
   *  offered until the shell resumes it (a pending job may be on offer on the majority side) */
  | { type: 'offers:held', jobIds: string[] }
  | { type: 'offers:resumed', jobIds: string[] }
  /** This agent's event loop was held up for stalledMs (see the case). */
  | { type: 'clock:stalled', stalledMs: number }

export type OwnerEffect =
  | { type: 'send', to: string, message: Message }
  | { type: 'reply', replyId: number, message: Message }
  /** the record changed: persist it (with these events) before acting on anything else */
  | { type: 'job:changed', job: JobRecord, events: JobEvent[] }

export function createOwner (config: OwnerConfig): OwnerState {
  return { config, view: createView(), jobs: new Map(), pending: new Set(), active: new Set(), mayOffer: true, heldOffers: new Set() }
}

export function ownerStep (s: OwnerState, e: OwnerEvent, nowMs: number): OwnerEffect[] {
  const fx: OwnerEffect[] = []
  switch (e.type) {
    case 'job:submitted':
    case 'job:adopted': {
      if (s.jobs.has(e.job.id)) break
      const oj: OwnerJob = { record: e.job, lastOfferAtMs: -Infinity, lastOfferVersion: -1 }
      s.jobs.set(e.job.id, oj)
      if (TERMINAL_STATES.has(e.job.state)) break
      if (e.type === 'job:submitted') changedJob(fx, oj, nowMs, { type: 'job:submitted' })
      // An adopted job in flight keeps its lease; one still pending is offered now. A job
      // whose last award is not yet acknowledged counts as in flight: its winner may be
      // running it already (a copy taken right after the award says only "awarded"), and a
      // new round would run it twice. The winner's next renewal keeps the lease; without
      // one the lease lapses and the attempt is given up on, as for any silent executor.
      const award = currentAttempt(oj)
      const inFlight = e.job.state !== 'pending' || award?.state === 'awarded'
      if (!inFlight) {
        s.pending.add(e.job.id)
        // A retry's backoff holds across a takeover or restart: the tick offers it once due.
        if ((e.job.notBeforeMs ?? 0) <= nowMs) offer(s, oj, nowMs, fx)
      } else {
        oj.leaseExpiresAtMs = nowMs + s.config.leaseMs
        s.active.add(e.job.id)
      }
      break
    }
    case 'job:released': {
      const oj = s.jobs.get(e.jobId)
      if (oj === undefined) break
      if (oj.round !== undefined && oj.round.claimedOn !== undefined) unclaim(s.view, oj.round.claimedOn, oj.record.spec.cpuMilli, oj.record.spec.memoryBytes)
      s.jobs.delete(e.jobId)
      s.pending.delete(e.jobId)
      s.active.delete(e.jobId)
      s.heldOffers.delete(e.jobId)
      break
    }
    case 'job:evicted': {
      const oj = s.jobs.get(e.jobId)
      // A job still live keeps its place, whatever the shell thought: only an outcome is final.
      if (oj === undefined || !TERMINAL_STATES.has(oj.record.state)) break
      if (oj.round !== undefined && oj.round.claimedOn !== undefined) unclaim(s.view, oj.round.claimedOn, oj.record.spec.cpuMilli, oj.record.spec.memoryBytes)
      s.jobs.delete(e.jobId)
      s.pending.delete(e.jobId)
      s.active.delete(e.jobId)
      s.heldOffers.delete(e.jobId)
      break
    }
    case 'job:cancel': {
      const oj = s.jobs.get(e.jobId)
      if (oj === undefined || TERMINAL_STATES.has(oj.record.state)) break
      closeRound(s, oj, fx)
      const node = oj.record.node
      if (oj.award !== undefined || oj.record.state === 'scheduled' || oj.record.state === 'running' || currentAttempt(oj)?.state === 'awarded') {
        if (node !== undefined) fx.push({ type: 'send', to: node, message: { type: MessageType.CancelAttempt, body: { jobId: oj.record.id, epoch: oj.record.epoch } } })
      }
      oj.award = undefined
      oj.leaseExpiresAtMs = undefined
      const cur = currentAttempt(oj)
      if (cur !== undefined && (cur.state === 'awarded' || cur.state === 'running')) { cur.state = 'cancelled'; cur.finishedAtMs = nowMs; cur.reason = 'cancelled' }
      finish(s, oj, 'cancelled', 'cancelled', oj.record.exitCode ?? null, nowMs, fx, { type: 'job:cancelled' })
      break
    }
    case 'job:replicas': {
      const oj = s.jobs.get(e.jobId)
      if (oj === undefined) break
      oj.record.replicas = [...e.replicas]
      oj.replicasChanged = true
      changedJob(fx, oj, nowMs, { type: 'job:replicas', detail: e.detail })
      break
    }
    case 'offers:held': {
      for (const id of e.jobIds) if (s.jobs.has(id)) s.heldOffers.add(id)
      break
    }
    case 'offers:resumed': {
      // Offered at the next tick: their last offers are older than the sweep interval, or a
      // capacity change since makes them due.
      for (const id of e.jobIds) s.heldOffers.delete(id)
      break
    }
    case 'advert:received': {
      const freed = applyAdvert(s.view, e.capacity, nowMs)
      if (freed) offerPending(s, nowMs, fx, false)
      break
    }
    case 'bid:received':
    case 'bid:refused': {
      // A bid is a fresh, direct probe of the node: fresher than any advert.
      if (e.capacity !== undefined) applyAdvert(s.view, e.capacity, nowMs)
      // A request that failed comes back as a refusal 'unreachable': that is no answer.
      if (e.type === 'bid:received' || e.reason !== 'unreachable') heardDirectly(s, e.from)
      const oj = s.jobs.get(e.jobId)
      const round = oj?.round
      if (oj === undefined || round === undefined || round.epoch !== e.epoch) {
        // A late bid for a round already decided: free the reservation it made.
        if (e.type === 'bid:received') fx.push({ type: 'send', to: e.from, message: { type: MessageType.ReservationRelease, body: { jobId: e.jobId, epoch: e.epoch } } })
        break
      }
      round.answered.add(e.from)
      if (e.type === 'bid:received') round.bids.push({ node: e.from, score: e.score, components: e.components, capacitySeq: e.capacity.seq })
      else round.refused[e.reason] = (round.refused[e.reason] ?? 0) + 1
      if (round.answered.size >= round.candidates.length) decide(s, oj, nowMs, fx)
      break
    }
    case 'award:acked': {
      heardDirectly(s, e.from)
      const oj = s.jobs.get(e.jobId)
      if (oj?.award === undefined || oj.award.epoch !== e.epoch || oj.award.node !== e.from) break
      oj.award = undefined
      oj.leaseExpiresAtMs = nowMs + s.config.leaseMs
      if (oj.record.state === 'pending') setState(oj, 'scheduled')
      changedJob(fx, oj, nowMs, { type: 'job:scheduled', epoch: e.epoch, node: e.from })
      break
    }
    case 'award:declined': {
      heardDirectly(s, e.from)
      const oj = s.jobs.get(e.jobId)
      if (oj?.award === undefined || oj.award.epoch !== e.epoch || oj.award.node !== e.from) break
      const cur = currentAttempt(oj)
      if (cur !== undefined) { cur.state = 'declined'; cur.finishedAtMs = nowMs; cur.error = e.reason }
      oj.award = undefined
      markFull(s.view, e.from)
      requeue(s, oj, nowMs, fx, { type: 'award:declined', epoch: e.epoch, node: e.from, detail: e.reason }, 0)
      break
    }
    case 'attempt:update': {
      heardDirectly(s, e.update.node)
      onUpdate(s, e.replyId, e.update, nowMs, fx)
      break
    }
    case 'peer:disconnected':
      markDisconnected(s.view, e.peer)
      break
    case 'peer:gone':
    case 'peer:left': {
      // A peer that left drained first, so nothing of it runs on: its attempts and awards are
      // given up at once, faster than waiting for a lease. A peer that only fell silent may be
      // cut off rather than dead, its container running until its own lease check stops it;
      // the lease and the award deadline, with their grace, are what is sized for that (and
      // after a crash they fire first anyway: last renewal + leaseMs + leaseGraceMs, against
      // last advert + goneAfterMs). Either way its bid rounds end now: an unanswered bid
      // request starts nothing.
      const left = e.type === 'peer:left'
      const quorum = e.type !== 'peer:left' || e.quorum !== false
      for (const id of s.active) {
        const oj = s.jobs.get(id)!
        if (left && oj.record.node === e.peer && oj.leaseExpiresAtMs !== undefined) {
          if (quorum) loseAttempt(s, oj, nowMs, fx, 'peer left')
        } else if (left && oj.award?.node === e.peer) {
          // As for a lease: without a majority the winner may be running on the other side.
          if (!quorum) continue
          const cur = currentAttempt(oj)
          if (cur !== undefined) { cur.state = 'lost'; cur.finishedAtMs = nowMs; cur.reason = 'lost' }
          oj.award = undefined
          requeue(s, oj, nowMs, fx, { type: 'award:lost', epoch: oj.record.epoch, node: e.peer }, 0)
        } else if (oj.round?.candidates.includes(e.peer) === true && !oj.round.answered.has(e.peer)) {
          oj.round.answered.add(e.peer)
          oj.round.refused.unreachable = (oj.round.refused.unreachable ?? 0) + 1
          if (oj.round.answered.size >= oj.round.candidates.length) decide(s, oj, nowMs, fx)
        }
      }
      break
    }
    case 'clock:stalled': {
      // While this agent could not run, it could not hear renewals or acknowledgements it
      // would have heard (an attempt it runs itself, or an executor held up on the same
      // machine, sent none): the stall does not count against its leases and award deadlines,
      // up to a lease. A dead executor's job is re-run that much later; nothing runs twice.
      const creditMs = Math.max(0, Math.min(e.stalledMs, s.config.leaseMs))
      for (const id of s.active) {
        const oj = s.jobs.get(id)!
        if (oj.leaseExpiresAtMs !== undefined) oj.leaseExpiresAtMs += creditMs
        if (oj.award !== undefined) oj.award.deadlineMs += creditMs
      }
      break
    }
    case 'tick': {
      if (e.mayOffer !== undefined) s.mayOffer = e.mayOffer
      for (const id of [...s.active]) {
        const oj = s.jobs.get(id)!
        if (oj.round !== undefined && nowMs >= oj.round.deadlineMs) decide(s, oj, nowMs, fx)
        else if (oj.award !== undefined && nowMs >= oj.award.deadlineMs && e.quorum !== false) {
          // No acknowledgement: the winner may be dead, or may have started. Either way a new
          // epoch supersedes it; if it did start, its first update is refused and it stops.
          // Not without a majority (as for leases below): the winner may be running the job
          // on the majority's side, which takes it over; the award waits for the heal.
          const cur = currentAttempt(oj)
          if (cur !== undefined) { cur.state = 'lost'; cur.finishedAtMs = nowMs; cur.reason = 'lost'; cur.error = 'award not acknowledged' }
          const node = oj.award.node
          oj.award = undefined
          requeue(s, oj, nowMs, fx, { type: 'award:timeout', epoch: oj.record.epoch, node }, 0)
        } else if (oj.leaseExpiresAtMs !== undefined && nowMs >= oj.leaseExpiresAtMs + s.config.leaseGraceMs && e.quorum !== false) {
          loseAttempt(s, oj, nowMs, fx, 'lease expired')
        }
      }
      offerPending(s, nowMs, fx, true)
      break
    }
  }
  return fx
}

/** Earliest time a tick has work to do. */
export function ownerNextTimerMs (s: OwnerState): number | undefined {
  let next: number | undefined
  const at = (t: number): void => { if (next === undefined || t < next) next = t }
  for (const id of s.active) {
    const oj = s.jobs.get(id)!
    if (oj.round !== undefined) at(oj.round.deadlineMs)
    if (oj.award !== undefined) at(oj.award.deadlineMs)
    if (oj.leaseExpiresAtMs !== undefined) at(oj.leaseExpiresAtMs + s.config.leaseGraceMs)
  }
  for (const id of s.pending) {
    const oj = s.jobs.get(id)!
    // Capacity freed since the last offer makes the job due as soon as its backoff ends, as in
    // offerPending; otherwise the sweep decides.
    const dueMs = oj.lastOfferVersion < s.view.freedVersion ? oj.lastOfferAtMs : oj.lastOfferAtMs + s.config.sweepIntervalMs
    at(Math.max(oj.record.notBeforeMs ?? 0, dueMs))
  }
  return next
}

// ---- internals -------------------------------------------------------------------------

/** The publisher's signed fields travel with every offer: executors check them themselves. */
function envelope (job: JobRecord): { publisher: string, createdAtMs: number, nonce: string, signature: string } | Record<string, never> {
  if (job.nonce === undefined || job.signature === undefined) return {}
  return { publisher: job.publisher, createdAtMs: job.createdAtMs, nonce: job.nonce, signature: job.signature }
}

function currentAttempt (oj: OwnerJob) {
  const a = oj.record.attempts[oj.record.attempts.length - 1]
  return a !== undefined && a.epoch === oj.record.epoch ? a : undefined
}

function setState (oj: OwnerJob, state: JobRecord['state'], reason?: JobReason): void {
  oj.record.state = state
  if (reason === undefined) delete oj.record.reason
  else oj.record.reason = reason
}

function changedJob (fx: OwnerEffect[], oj: OwnerJob, nowMs: number, event?: Omit<JobEvent, 'atMs'>): void {
  oj.record.updatedAtMs = nowMs
  oj.record.version++
  const events = event === undefined ? [] : [{ atMs: nowMs, ...event }]
  // Coalesce: one persisted change per job per step is enough.
  const last = fx[fx.length - 1]
  if (last?.type === 'job:changed' && last.job === oj.record) { last.events.push(...events); return }
  fx.push({ type: 'job:changed', job: oj.record, events })
}

function offerPending (s: OwnerState, nowMs: number, fx: OwnerEffect[], sweep: boolean): void {
  if (s.pending.size === 0) return // the common case, on every advert that shows more room
  for (const id of [...s.pending]) {
    const oj = s.jobs.get(id)!
    if (oj.round !== undefined) continue
    if ((oj.record.notBeforeMs ?? 0) > nowMs) continue
    const due = sweep
      ? nowMs - oj.lastOfferAtMs >= s.config.sweepIntervalMs || oj.lastOfferVersion < s.view.freedVersion
      : oj.lastOfferVersion < s.view.freedVersion
    if (due) offer(s, oj, nowMs, fx)
  }
}

/** Starts a bid round for a pending job, or records why it must wait. */
function offer (s: OwnerState, oj: OwnerJob, nowMs: number, fx: OwnerEffect[]): void {
  const c = s.config
  const job = oj.record
  if (!s.mayOffer || s.heldOffers.has(job.id)) {
    // This owner may be the cut-off side of a partition (see the tick's mayOffer), or has
    // just healed from one ('offers:held'). The job waits; the first tick that allows offers
    // offers it (its last offer is older than the sweep interval). Said once, so a reader
    // sees why it waits.
    const summary = !s.mayOffer
      ? 'fewer than half of the mesh in view: waiting for the rest before offering'
      : 'asking its replicas whether the majority took it over while this owner was cut off'
    if (oj.lastPendingSummary !== summary) {
      oj.lastPendingSummary = summary
      changedJob(fx, oj, nowMs, { type: 'job:pending', detail: summary })
    }
    return
  }
  oj.lastOfferAtMs = nowMs
  oj.lastOfferVersion = s.view.freedVersion
  const selection = rankForOffer(s, job.id, job.spec, nowMs)
  if (selection.candidates.length === 0) {
    job.explanation = selection.explanation
    const summary = formatFiltered(selection.explanation.filtered) || 'no nodes known'
    if (job.reason !== 'unplaceable' || oj.lastPendingSummary !== summary) {
      oj.lastPendingSummary = summary
      setState(oj, 'pending', 'unplaceable')
      changedJob(fx, oj, nowMs, { type: 'job:pending', detail: summary })
    }
    return
  }
  // Every offer takes a new epoch; the job is in flight from here until it is decided.
  job.epoch++
  s.pending.delete(job.id)
  s.active.add(job.id)
  const best = selection.candidates[0]
  if (directAward(s, oj, best, nowMs)) {
    // The node's next advert will count the job; until then the view counts it here, so the
    // next jobs offered meanwhile do not all land on one slot.
    debit(s.view, best, job.spec.cpuMilli, job.spec.memoryBytes)
    const explanation: Explanation = { ...selection.explanation, candidates: [], decidedFrom: 'view', decidedAtMs: nowMs, winner: best }
    award(s, oj, best, job.epoch, explanation, nowMs, fx, `score ${(selection.explanation.top[0]?.score ?? 0).toFixed(3)} from the view, no bid round`)
    return
  }
  const round: Round = {
    epoch: job.epoch,
    candidates: selection.candidates,
    answered: new Set(),
    bids: [],
    refused: {},
    deadlineMs: nowMs + c.bidWindowMs,
    explanation: selection.explanation
  }
  // Claim the job's resources on the likeliest winner until the round closes, so the next
  // jobs offered in the same instant look elsewhere instead of all bidding for one slot.
  round.claimedOn = best
  claim(s.view, best, job.spec.cpuMilli, job.spec.memoryBytes)
  oj.round = round
  for (const to of round.candidates) {
    fx.push({ type: 'send', to, message: { type: MessageType.BidRequest, body: { jobId: job.id, epoch: job.epoch, owner: c.selfId, spec: job.spec, ...envelope(job) } } })
  }
}

function closeRound (s: OwnerState, oj: OwnerJob, fx: OwnerEffect[], keep?: string): void {
  const round = oj.round
  if (round === undefined) return
  if (round.claimedOn !== undefined) unclaim(s.view, round.claimedOn, oj.record.spec.cpuMilli, oj.record.spec.memoryBytes)
  for (const b of round.bids) {
    if (b.node === keep) continue
    fx.push({ type: 'send', to: b.node, message: { type: MessageType.ReservationRelease, body: { jobId: oj.record.id, epoch: round.epoch } } })
    if (b.capacitySeq !== undefined) releaseInView(s.view, b.node, b.capacitySeq, oj.record.spec.cpuMilli, oj.record.spec.memoryBytes)
  }
  oj.round = undefined
}

function decide (s: OwnerState, oj: OwnerJob, nowMs: number, fx: OwnerEffect[]): void {
  const round = oj.round!
  const job = oj.record
  const winner = chooseWinner(job.id, round.bids)
  const explanation: Explanation = { ...round.explanation, refused: round.refused, decidedAtMs: nowMs, ...(winner !== undefined ? { winner: winner.node } : {}) }
  job.explanation = explanation
  closeRound(s, oj, fx, winner?.node)
  if (winner === undefined) {
    // Every candidate refused or stayed silent: wait for fresher capacity news or the sweep.
    s.active.delete(job.id)
    s.pending.add(job.id)
    const summary = `candidates refused: ${formatFiltered(round.refused)}`
    setState(oj, 'pending', 'unplaceable')
    if (oj.lastPendingSummary !== summary) {
      oj.lastPendingSummary = summary
      changedJob(fx, oj, nowMs, { type: 'job:pending', epoch: round.epoch, detail: summary })
    }
    return
  }
  award(s, oj, winner.node, round.epoch, explanation, nowMs, fx, `score ${winner.score.toFixed(3)} of ${round.bids.length} bid(s)`)
}

/** The view's ranking for an offer of jobId (a real one, or planOffer's dry run): the same
 *  candidates and explanation either way. */
function rankForOffer (s: OwnerState, jobId: string, spec: JobSpec, nowMs: number): ReturnType<typeof selectFromView> {
  const c = s.config
  return selectFromView(jobId, spec, s.view, c, { extraCandidates: c.extraCandidates, explainTop: c.explainTop, nowMs })
}

/** Whether a job may skip the bid round (see OwnerConfig.directAwardMaxViewAgeMs). */
function directAward (s: OwnerState, oj: OwnerJob, node: string, nowMs: number): boolean {
  // A lost attempt (an award or a lease that lapsed) says its node may be unreachable although
  // its adverts still come: the next offer asks with bids, which end after the bid window,
  // rather than trusting the view again. A decline says the view was wrong about one node,
  // and the view now shows that node full (markFull): the next best may still be awarded from
  // the view, but after directAwardDeclinesBeforeBids declines in a row the view is doubtful
  // (many owners are aiming at the same few nodes) and the job asks for bids, which carry the
  // bidders' exact capacity.
  const attempts = oj.record.attempts
  let i = attempts.length - 1
  while (i >= 0 && attempts[i].state === 'declined') i--
  const declinedInARow = attempts.length - 1 - i
  // Declines after a lost attempt do not make the view trustworthy again: still bids.
  if (i >= 0 && attempts[i].state === 'lost') return false
  if (declinedInARow > 0 && declinedInARow >= s.config.directAwardDeclinesBeforeBids) return false
  return mayAwardFromView(s, node, nowMs)
}

/** Whether the view may be trusted with node for an award with no bid round. */
function mayAwardFromView (s: OwnerState, node: string, nowMs: number): boolean {
  const maxAgeMs = s.config.directAwardMaxViewAgeMs
  if (maxAgeMs <= 0) return false
  const entry = s.view.entries.get(node)
  if (entry === undefined || nowMs - entry.heardAtMs > maxAgeMs || entry.disconnected === true) return false
  // A node that has left an award unanswered for longer than a bid window (dead since its
  // last advert, or its direct requests failing) gets no more awards from the view: a bid
  // round would have given up on it by then.
  return entry.unansweredAwardSinceMs === undefined || nowMs - entry.unansweredAwardSinceMs <= s.config.bidWindowMs
}

/** The node answered this owner directly (a bid, an award's answer, a report): whatever it
 *  left unanswered before is not for want of reaching it. */
function heardDirectly (s: OwnerState, node: string): void {
  const entry = s.view.entries.get(node)
  if (entry !== undefined) {
    entry.unansweredAwardSinceMs = undefined
    entry.disconnected = undefined
  }
}

/** Awards a job's attempt at epoch to node: the attempt, the deadline for its acknowledgement
 *  and the Award message. */
function award (s: OwnerState, oj: OwnerJob, node: string, epoch: number, explanation: Explanation, nowMs: number, fx: OwnerEffect[], detail: string): void {
  const job = oj.record
  job.explanation = explanation
  job.node = node
  job.attempts.push({ epoch, node, state: 'awarded', awardedAtMs: nowMs })
  // Never sooner than a lease would be given up: an owner cut off right after the award must
  // lose its majority (which stops the deadline, see 'tick') before the deadline can fire,
  // exactly as a lease is sized to (the quorum's freshness window is shorter than leaseMs);
  // and a winner that started, and renews through a replica because a cut lost its
  // acknowledgement, must have stopped, as for a lease (leaseGraceMs).
  oj.replicasChanged = false // the award names the replicas as they are now
  const entry = s.view.entries.get(node)
  if (entry !== undefined && entry.unansweredAwardSinceMs === undefined) entry.unansweredAwardSinceMs = nowMs
  oj.award = { node, epoch, deadlineMs: nowMs + Math.max(s.config.awardAckTimeoutMs, s.config.leaseMs) + s.config.leaseGraceMs }
  setState(oj, 'pending')
  changedJob(fx, oj, nowMs, { type: 'job:awarded', epoch, node, detail })
  fx.push({ type: 'send', to: node, message: { type: MessageType.Award, body: { jobId: job.id, epoch, owner: s.config.selfId, replicas: job.replicas, spec: job.spec, leaseMs: s.config.leaseMs, term: job.term, ...envelope(job) } } })
}

/** Exit reasons that are the job's own outcome (it ran): the rest say why it did not finish. */
const JOB_OUTCOMES: ReadonlySet<string> = new Set(['exit', 'oom', 'timeout'])

function onUpdate (s: OwnerState, replyId: number, u: AttemptUpdate, nowMs: number, fx: OwnerEffect[]): void {
  const oj = s.jobs.get(u.jobId)
  const reply = (accepted: boolean, stop: boolean): void => {
    // The current attempt's executor renews with the job's replicas when the owner is away:
    // once they changed, it must know the new ones (only then, to keep acknowledgements small).
    const replicas = accepted && !stop && oj?.replicasChanged === true && u.epoch === oj.record.epoch ? { replicas: [...oj.record.replicas] } : {}
    fx.push({ type: 'reply', replyId, message: { type: MessageType.AttemptUpdateAck, body: { jobId: u.jobId, epoch: u.epoch, accepted, stop, ...replicas } } })
  }
  if (oj === undefined) { reply(false, true); return }
  const job = oj.record
  const attempt = job.attempts.find(a => a.epoch === u.epoch && a.node === u.node)
  if (u.epoch !== job.epoch || attempt === undefined) {
    // Fencing: only the current epoch's executor may move the job. A stale attempt's final
    // result is recorded on its own attempt for the history, never on the job.
    if (attempt !== undefined && u.state === 'exited' && attempt.finishedAtMs === undefined) {
      Object.assign(attempt, { finishedAtMs: u.finishedAtMs ?? nowMs, exitCode: u.exitCode ?? null, ...(u.reason !== undefined ? { reason: u.reason } : {}) })
      changedJob(fx, oj, nowMs, { type: 'attempt:stale-result', epoch: u.epoch, node: u.node, detail: u.reason })
    }
    reply(false, true)
    return
  }
  if (TERMINAL_STATES.has(job.state)) {
    // Cancelled (or already finished): take a final report, stop anything still running.
    if (u.state === 'exited' && attempt.finishedAtMs === undefined) {
      Object.assign(attempt, { finishedAtMs: u.finishedAtMs ?? nowMs, exitCode: u.exitCode ?? null, ...(u.reason !== undefined ? { reason: u.reason } : {}) })
      changedJob(fx, oj, nowMs, { type: 'attempt:exited', epoch: u.epoch, node: u.node, detail: u.reason })
    }
    reply(true, true)
    return
  }
  // Given up: its award or lease lapsed (lost) or it was declined, and the job waits for a new
  // round. Until that round opens the attempt is still the job's epoch.
  const givenUp = attempt.state !== 'awarded' && attempt.state !== 'running' && attempt.state !== 'exited'
  if (attempt.state === 'exited' || (givenUp && !(u.state === 'exited' && JOB_OUTCOMES.has(u.reason ?? 'error')))) {
    // The owner is done with this attempt: its final result is recorded already (a resent
    // final whose ack was lost, or a renewal the final overtook), or it was given up and this
    // report is no outcome of the job (a renewal; stopped because it was superseded; failed
    // before the job ran). Never re-open it or take a result twice. A given-up attempt that
    // did run to an outcome is taken below, so the job is not run again for nothing.
    if (givenUp && u.state === 'exited') changedJob(fx, oj, nowMs, { type: 'attempt:stale-result', epoch: u.epoch, node: u.node, detail: u.reason })
    reply(attempt.state === 'exited' && u.state === 'exited', true)
    return
  }
  if (oj.award !== undefined && oj.award.epoch === u.epoch) oj.award = undefined // an update is as good as an ack
  if (u.state === 'starting') {
    oj.leaseExpiresAtMs = nowMs + s.config.leaseMs
    s.active.add(job.id)
    if (job.state === 'pending') { setState(oj, 'scheduled'); changedJob(fx, oj, nowMs, { type: 'job:scheduled', epoch: u.epoch, node: u.node }) }
    reply(true, false)
    return
  }
  if (u.state === 'running') {
    oj.leaseExpiresAtMs = nowMs + s.config.leaseMs
    s.active.add(job.id)
    if (job.state !== 'running') {
      attempt.state = 'running'
      attempt.startedAtMs = u.startedAtMs ?? nowMs
      setState(oj, 'running')
      changedJob(fx, oj, nowMs, { type: 'attempt:started', epoch: u.epoch, node: u.node })
    }
    reply(true, false)
    return
  }
  // exited
  if (attempt.state === 'awarded' && u.startedAtMs !== undefined) {
    // It ran, but its final report overtook its "running" one (a short job; the executor
    // sends only its latest state): the history still says it started, and when.
    attempt.startedAtMs = u.startedAtMs
    changedJob(fx, oj, nowMs, { type: 'attempt:started', epoch: u.epoch, node: u.node })
  }
  attempt.state = 'exited'
  attempt.finishedAtMs = u.finishedAtMs ?? nowMs
  if (u.startedAtMs !== undefined && attempt.startedAtMs === undefined) attempt.startedAtMs = u.startedAtMs
  attempt.exitCode = u.exitCode ?? null
  attempt.reason = u.reason ?? 'error'
  if (u.error !== undefined) attempt.error = u.error
  oj.leaseExpiresAtMs = undefined
  s.active.delete(job.id)
  reply(true, false)
  const detail = attempt.reason === 'exit' ? `exit code ${String(attempt.exitCode)}` : attempt.reason
  if (attempt.reason === 'lost') {
    // Handed back by its executor (drain, or cut off): not the job's fault, run it elsewhere.
    attempt.state = 'lost'
    const lostCount = job.attempts.filter(a => a.state === 'lost').length
    if (lostCount > s.config.maxLostAttempts) {
      finish(s, oj, 'failed', 'lost', null, nowMs, fx, { type: 'attempt:lost', epoch: u.epoch, node: u.node, detail: u.error ?? 'handed back' })
      return
    }
    requeue(s, oj, nowMs, fx, { type: 'attempt:lost', epoch: u.epoch, node: u.node, detail: u.error ?? 'handed back' }, 0)
    return
  }
  if (!isFailure(attempt)) {
    finish(s, oj, 'succeeded', 'exit', attempt.exitCode ?? 0, nowMs, fx, { type: 'attempt:exited', epoch: u.epoch, node: u.node, detail })
    return
  }
  const failures = job.attempts.filter(a => a.state === 'exited' && isFailure(a)).length
  if (isRetryable(attempt) && failures <= job.spec.retries) {
    job.exitCode = attempt.exitCode
    requeue(s, oj, nowMs, fx, { type: 'attempt:exited', epoch: u.epoch, node: u.node, detail: `${detail}; retry ${failures} of ${job.spec.retries}` }, backoffMs(failures, s.config))
    return
  }
  finish(s, oj, 'failed', attempt.reason, attempt.exitCode, nowMs, fx, { type: 'attempt:exited', epoch: u.epoch, node: u.node, detail })
}

function loseAttempt (s: OwnerState, oj: OwnerJob, nowMs: number, fx: OwnerEffect[], why: string): void {
  const cur = currentAttempt(oj)
  if (cur !== undefined) { cur.state = 'lost'; cur.finishedAtMs = nowMs; cur.reason = 'lost'; cur.error = why }
  oj.leaseExpiresAtMs = undefined
  const lost = oj.record.attempts.filter(a => a.state === 'lost').length
  if (lost > s.config.maxLostAttempts) {
    finish(s, oj, 'failed', 'lost', null, nowMs, fx, { type: 'attempt:lost', epoch: oj.record.epoch, node: oj.record.node, detail: why })
    return
  }
  // A lost node is not the job's fault: it does not use up a retry.
  requeue(s, oj, nowMs, fx, { type: 'attempt:lost', epoch: oj.record.epoch, node: oj.record.node, detail: why }, 0)
}

function requeue (s: OwnerState, oj: OwnerJob, nowMs: number, fx: OwnerEffect[], event: Omit<JobEvent, 'atMs'>, delayMs: number): void {
  s.active.delete(oj.record.id)
  s.pending.add(oj.record.id)
  setState(oj, 'pending')
  if (delayMs > 0) oj.record.notBeforeMs = nowMs + delayMs
  else delete oj.record.notBeforeMs
  oj.lastPendingSummary = undefined
  changedJob(fx, oj, nowMs, event)
  if (delayMs === 0) offer(s, oj, nowMs, fx)
}

function finish (s: OwnerState, oj: OwnerJob, state: 'succeeded' | 'failed' | 'cancelled', reason: JobReason, exitCode: number | null, nowMs: number, fx: OwnerEffect[], event: Omit<JobEvent, 'atMs'>): void {
  s.active.delete(oj.record.id)
  s.pending.delete(oj.record.id)
  setState(oj, state, reason)
  oj.record.exitCode = exitCode
  delete oj.record.notBeforeMs
  changedJob(fx, oj, nowMs, event)
  changedJob(fx, oj, nowMs, { type: `job:${state}` })
}

/** What offering a new job with this spec would do now, for a dry run (`bidmesh plan`): the
 *  view's ranking, and either the node an award from the view would go to (decidedFrom
 *  'view', the winner) or the candidates a bid round would ask. Changes nothing. */
export function planOffer (s: OwnerState, spec: JobSpec, nowMs: number): Explanation {
  const selection = rankForOffer(s, 'plan', spec, nowMs)
  const best = selection.candidates[0]
  // An owner that may not offer now (cut off, or checking its jobs after a heal) would hold a
  // job instead: the ranking is all a plan can say then.
  if (best !== undefined && s.mayOffer && mayAwardFromView(s, best, nowMs)) return { ...selection.explanation, candidates: [], decidedFrom: 'view', winner: best }
  return selection.explanation
}

/** Nodes in the owner's view with their liveness, for status pages. */
export function viewLiveness (s: OwnerState, nowMs: number): Array<{ capacity: NodeCapacity, liveness: ReturnType<typeof liveness>, heardAtMs: number }> {
  return [...s.view.entries.values()].map(e => ({ capacity: e.capacity, liveness: liveness(e, nowMs, s.config), heardAtMs: e.heardAtMs }))
}
