// The bidder: what every agent runs for the work offered to it. A pure state machine of the
// form (state, event, nowMs) → effects. It owns this node's exact free capacity: reservations
// made by bids, allocations made by awards, and the executor's side of each attempt's lease.
// The state object is owned by the machine and updated in place; callers must not share it.
import type { JobSpec } from '../protocol/job-spec.ts'
import type { NodeCapacity } from '../protocol/job.ts'
import { type AttemptRenewal, type AttemptUpdate, type Bodies, MAX_RENEWALS_PER_MESSAGE, MessageType, type Message } from '../protocol/messages.ts'
import type { NodeSnapshot } from './feasibility.ts'
import { CHECKS } from './placement.ts'
import { scorersFor } from './scoring.ts'

export interface BidderConfig {
  /** a bid's reservation lapses after this long without an award */
  reservationTtlMs: number
  /** lease on a running attempt: the executor stops its container when no renewal was
   *  acknowledged for this long (it has been cut off, and the owner will re-run the job) */
  leaseMs: number
  /** how often the executor renews a lease: leaseMs / 4 tolerates three lost renewals */
  leaseRenewMs: number
  /** how often an unacknowledged final result is sent again */
  reportRetryMs: number
}

export interface Reservation { jobId: string, epoch: number, owner: string, cpuMilli: number, memoryBytes: number, expiresAtMs: number }

export interface Allocation {
  jobId: string
  epoch: number
  /** where updates go; changes when a replica takes the job over */
  owner: string
  /** agents to report to when the owner cannot be reached */
  replicas: string[]
  spec: JobSpec
  phase: 'starting' | 'running' | 'exited'
  startedAtMs?: number
  awardedAtMs: number
  lastLeaseAckMs: number
  lastUpdateSentMs: number
  /** after the exit: when the next renewal beside the undelivered final is due (see 'tick');
   *  undefined once the owner answered one with stop (it holds the result, or gave the attempt
   *  up): no lease is left to keep, only the final to deliver */
  nextRenewalAtMs?: number
  /** the final result, kept until the owner acknowledges it */
  final?: AttemptUpdate
  /** a stop was asked for; the shell is stopping the container */
  stopRequested?: boolean
}

export interface BidderState {
  peerId: string
  totalCpuMilli: number
  totalMemoryBytes: number
  labels: Record<string, string>
  draining: boolean
  /** capacity version: increases on every change of free capacity, across restarts too */
  seq: number
  reservations: Map<string, Reservation>
  allocations: Map<string, Allocation>
  config: BidderConfig
  /** what the mesh was last told of this node's capacity (see advertIsNews); unset until the
   *  shell publishes its first advert */
  advertMemory?: { content: string, shownSince: boolean }
}

export type BidderEvent =
  | { type: 'bid:requested', from: string, replyId: number, jobId: string, epoch: number, spec: JobSpec }
  | { type: 'award:received', from: string, replyId: number, jobId: string, epoch: number, spec: JobSpec, replicas?: string[] }
  /** from: who sent the release; only the owner that asked for the bid frees its reservation */
  | { type: 'reservation:released', from: string, jobId: string, epoch: number }
  | { type: 'attempt:cancel', from: string, replyId: number, jobId: string, epoch: number }
  | { type: 'attempt:started', jobId: string, epoch: number, startedAtMs: number }
  | { type: 'attempt:exited', jobId: string, epoch: number, update: Omit<AttemptUpdate, 'jobId' | 'epoch' | 'node' | 'state'> }
  /** state: which update this answers, when the shell knows; a renewal's ack is no ack of the final */
  /** quorumAgeMs: the lease runs from that long before now (see AttemptUpdateAck) */
  | { type: 'update:acked', jobId: string, epoch: number, accepted: boolean, stop: boolean, owner?: string, replicas?: string[], quorumAgeMs?: number, state?: AttemptUpdate['state'] }
  | { type: 'update:failed', jobId: string, epoch: number }
  | { type: 'drain:set', draining: boolean }
  /** after a restart: an attempt whose container is still there, taken up again */
  | { type: 'attempt:recovered', jobId: string, epoch: number, owner: string, replicas: string[], spec: JobSpec, startedAtMs?: number }
  | { type: 'tick' }
  /** This agent's event loop was held up for stalledMs (see the case). */
  | { type: 'clock:stalled', stalledMs: number }

export type BidderEffect =
  | { type: 'send', to: string, message: Message }
  | { type: 'reply', replyId: number, message: Message }
  | { type: 'attempt:start', jobId: string, epoch: number, owner: string, spec: JobSpec }
  | { type: 'attempt:stop', jobId: string, epoch: number, reason: 'cancelled' | 'lost' | 'fenced' }
  /** the owner has the final result: the shell may forget the attempt */
  | { type: 'attempt:reported', jobId: string, epoch: number }
  | { type: 'capacity:changed' }

export const key = (jobId: string, epoch: number): string => `${jobId}#${epoch}`

export function createBidder (init: { peerId: string, totalCpuMilli: number, totalMemoryBytes: number, labels: Record<string, string>, seq: number, config: BidderConfig }): BidderState {
  return { ...init, draining: false, reservations: new Map(), allocations: new Map() }
}

export function usedResources (s: BidderState): { cpuMilli: number, memoryBytes: number } {
  let cpuMilli = 0
  let memoryBytes = 0
  for (const r of s.reservations.values()) { cpuMilli += r.cpuMilli; memoryBytes += r.memoryBytes }
  for (const a of s.allocations.values()) {
    if (a.phase !== 'exited') { cpuMilli += a.spec.cpuMilli; memoryBytes += a.spec.memoryBytes }
  }
  return { cpuMilli, memoryBytes }
}

export function capacityOf (s: BidderState, nowMs: number): NodeCapacity {
  const used = usedResources(s)
  let running = 0
  for (const a of s.allocations.values()) if (a.phase !== 'exited') running++
  return {
    peerId: s.peerId,
    totalCpuMilli: s.totalCpuMilli,
    totalMemoryBytes: s.totalMemoryBytes,
    freeCpuMilli: s.totalCpuMilli - used.cpuMilli,
    freeMemoryBytes: s.totalMemoryBytes - used.memoryBytes,
    runningJobs: running,
    labels: s.labels,
    draining: s.draining,
    seq: s.seq,
    sentAtMs: nowMs
  }
}

function selfSnapshot (s: BidderState, nowMs: number): NodeSnapshot {
  const capacity = capacityOf(s, nowMs)
  return { capacity, freeCpuMilli: capacity.freeCpuMilli, freeMemoryBytes: capacity.freeMemoryBytes, liveness: 'alive' }
}

/** Runs the same checks the owner ran, against this node's exact state. */
function refusal (s: BidderState, spec: JobSpec, nowMs: number): string | undefined {
  const snap = selfSnapshot(s, nowMs)
  for (const check of CHECKS) {
    const r = check(snap, spec)
    if (r !== undefined) return r
  }
  return undefined
}

function score (s: BidderState, spec: JobSpec, nowMs: number): { score: number, components: Record<string, number> } {
  const snap = selfSnapshot(s, nowMs)
  const components: Record<string, number> = {}
  let total = 0
  for (const sc of scorersFor(spec)) {
    const v = sc.score(snap, spec)
    components[sc.name] = v
    total += sc.weight * v
  }
  return { score: total, components }
}

// ---- which adverts are news --------------------------------------------------------------
//
// Every change of free capacity sets off an advert (the shell coalesces them within its
// minimum gap), and every peer verifies and processes each one. Many say nothing new by the
// time they go: a bid's reservation released because the bid lost, a short job started and
// ended. Such an advert is skipped, unless a bid's answer showed someone a capacity that
// differs from the last advert in more than the asker's own reservation (which the asker
// adds back itself when it releases it: releaseInView in view.ts). The periodic advert always
// goes: peers judge liveness by it.

/** What an advert says, apart from its sequence number and time. */
function capacityContent (c: NodeCapacity): string {
  return JSON.stringify([c.totalCpuMilli, c.freeCpuMilli, c.totalMemoryBytes, c.freeMemoryBytes, c.runningJobs, c.draining, c.labels])
}

/** The shell calls this for every advert it publishes. */
export function advertPublished (s: BidderState, capacity: NodeCapacity): void {
  s.advertMemory = { content: capacityContent(capacity), shownSince: false }
}

/** Whether an advert set off by a change would tell anyone anything now. */
export function advertIsNews (s: BidderState, nowMs: number): boolean {
  const m = s.advertMemory
  if (m === undefined || m.shownSince) return true
  return capacityContent(capacityOf(s, nowMs)) !== m.content
}

/** A bid's answer carries the node's capacity to its asker; `own` is the asker's reservation
 *  in it, if any. */
function noteShown (s: BidderState, capacity: NodeCapacity, own?: { cpuMilli: number, memoryBytes: number }): void {
  const m = s.advertMemory
  if (m === undefined || m.shownSince) return
  const asSeen = own === undefined ? capacity : { ...capacity, freeCpuMilli: capacity.freeCpuMilli + own.cpuMilli, freeMemoryBytes: capacity.freeMemoryBytes + own.memoryBytes }
  if (capacityContent(asSeen) !== m.content) m.shownSince = true
}

function changed (s: BidderState, effects: BidderEffect[]): void {
  s.seq++
  effects.push({ type: 'capacity:changed' })
}

/** A lease renewal: 'starting' while the container is being prepared (pulling an image or
 *  creating a container can take longer than a lease), 'running' once it runs, and after the
 *  exit while the final result is on its way ('starting' if it never ran). */
function renewalOf (a: Allocation): AttemptRenewal {
  const ran = a.phase === 'running' || (a.phase === 'exited' && a.startedAtMs !== undefined)
  return { jobId: a.jobId, epoch: a.epoch, state: ran ? 'running' : 'starting', ...(a.startedAtMs !== undefined ? { startedAtMs: a.startedAtMs } : {}) }
}

function runningUpdate (s: BidderState, a: Allocation): Message {
  return { type: MessageType.AttemptUpdate, body: { ...renewalOf(a), node: s.peerId } }
}

/** An acknowledgement that neither refuses nor stops the attempt: it rests on nothing just
 *  written, so it need not wait for a flush (src/agent/durable-mesh.ts). */
export const isPlainAck = (ack: Bodies[typeof MessageType.AttemptUpdateAck]): boolean => ack.accepted && !ack.stop

/**
 * The owner's answer to renewals sent together (AttemptRenewals), from what it answered to
 * each as if sent alone (`answers`, in the same order). Only plain acknowledgements (accepted,
 * not stop) go in it: a refusal or a stop may rest on what the owner just wrote, so its answer
 * waits for a flush (up to 3 s on a busy disk), which would hold up every healthy renewal
 * beside it past the executor's wait. The rest are listed unanswered, and come again alone.
 */
export function renewalsAnswer (renewals: AttemptRenewal[], answers: Message[]): Bodies[typeof MessageType.AttemptRenewalsAck] {
  const acks: Array<Bodies[typeof MessageType.AttemptUpdateAck]> = []
  const unanswered: Array<{ jobId: string, epoch: number }> = []
  renewals.forEach((r, i) => {
    const answer = answers[i]
    if (answer?.type === MessageType.AttemptUpdateAck && isPlainAck(answer.body)) acks.push(answer.body)
    else unanswered.push({ jobId: r.jobId, epoch: r.epoch })
  })
  return { acks, unanswered }
}

/** What the executor makes of that answer: an 'update:acked' per renewal acknowledged (each
 *  with the state it renewed, once), and the renewals to send again alone (all others). */
export function renewalsOutcome (renewals: AttemptRenewal[], answer: Bodies[typeof MessageType.AttemptRenewalsAck]): { acked: BidderEvent[], again: AttemptRenewal[] } {
  const sent = new Map(renewals.map(r => [key(r.jobId, r.epoch), r]))
  const acked: BidderEvent[] = []
  for (const ack of answer.acks) {
    const r = sent.get(key(ack.jobId, ack.epoch))
    if (r === undefined) continue // not one we sent, or answered twice
    sent.delete(key(ack.jobId, ack.epoch))
    acked.push({ type: 'update:acked', ...ack, state: r.state })
  }
  return { acked, again: [...sent.values()] }
}

export function bidderStep (s: BidderState, e: BidderEvent, nowMs: number): BidderEffect[] {
  const effects: BidderEffect[] = []
  switch (e.type) {
    case 'bid:requested': {
      const k = key(e.jobId, e.epoch)
      if (s.allocations.has(k)) {
        effects.push({ type: 'reply', replyId: e.replyId, message: { type: MessageType.BidRefused, body: { jobId: e.jobId, epoch: e.epoch, reason: 'already awarded' } } })
        break
      }
      const existing = s.reservations.get(k)
      if (existing !== undefined) { // a repeated request: answer the same way, keep one reservation
        existing.expiresAtMs = nowMs + s.config.reservationTtlMs
        // The latest asker holds it, and only it may release it: a replica that took the job
        // over can reuse an epoch its predecessor's round had taken (rounds are not written).
        existing.owner = e.from
        const { score: sc, components } = score(s, e.spec, nowMs)
        const capacity = capacityOf(s, nowMs)
        noteShown(s, capacity, existing)
        effects.push({ type: 'reply', replyId: e.replyId, message: { type: MessageType.Bid, body: { jobId: e.jobId, epoch: e.epoch, score: sc, components, capacity } } })
        break
      }
      const reason = refusal(s, e.spec, nowMs)
      if (reason !== undefined) {
        const capacity = capacityOf(s, nowMs)
        noteShown(s, capacity)
        effects.push({ type: 'reply', replyId: e.replyId, message: { type: MessageType.BidRefused, body: { jobId: e.jobId, epoch: e.epoch, reason, capacity } } })
        break
      }
      // Score before reserving, so the score describes placing this job on the node as it is.
      const { score: sc, components } = score(s, e.spec, nowMs)
      s.reservations.set(k, { jobId: e.jobId, epoch: e.epoch, owner: e.from, cpuMilli: e.spec.cpuMilli, memoryBytes: e.spec.memoryBytes, expiresAtMs: nowMs + s.config.reservationTtlMs })
      changed(s, effects)
      const capacity = capacityOf(s, nowMs)
      noteShown(s, capacity, e.spec)
      effects.push({ type: 'reply', replyId: e.replyId, message: { type: MessageType.Bid, body: { jobId: e.jobId, epoch: e.epoch, score: sc, components, capacity } } })
      break
    }
    case 'award:received': {
      const k = key(e.jobId, e.epoch)
      const ack: Message = { type: MessageType.AwardAck, body: { jobId: e.jobId, epoch: e.epoch } }
      if (s.allocations.has(k)) { effects.push({ type: 'reply', replyId: e.replyId, message: ack }); break } // duplicate award
      // A newer epoch of a job supersedes any older attempt still here (fencing on the executor side).
      for (const a of s.allocations.values()) {
        if (a.jobId === e.jobId && a.epoch < e.epoch && a.phase !== 'exited' && a.stopRequested !== true) {
          a.stopRequested = true // one stop per attempt: no later 'lost' or second 'fenced' for it
          effects.push({ type: 'attempt:stop', jobId: a.jobId, epoch: a.epoch, reason: 'fenced' })
        }
      }
      const reservation = s.reservations.get(k)
      if (reservation !== undefined) {
        s.reservations.delete(k)
      } else {
        // The reservation lapsed (a slow award). Accept only if the job still fits right now.
        const reason = s.draining ? 'draining' : refusal(s, e.spec, nowMs)
        if (reason !== undefined) {
          effects.push({ type: 'reply', replyId: e.replyId, message: { type: MessageType.AwardDeclined, body: { jobId: e.jobId, epoch: e.epoch, reason } } })
          break
        }
      }
      s.allocations.set(k, { jobId: e.jobId, epoch: e.epoch, owner: e.from, replicas: e.replicas ?? [], spec: e.spec, phase: 'starting', awardedAtMs: nowMs, lastLeaseAckMs: nowMs, lastUpdateSentMs: nowMs })
      if (reservation === undefined) changed(s, effects)
      effects.push({ type: 'reply', replyId: e.replyId, message: ack })
      effects.push({ type: 'attempt:start', jobId: e.jobId, epoch: e.epoch, owner: e.from, spec: e.spec })
      break
    }
    case 'reservation:released': {
      const k = key(e.jobId, e.epoch)
      if (s.reservations.get(k)?.owner !== e.from) break
      s.reservations.delete(k)
      changed(s, effects)
      break
    }
    case 'attempt:cancel': {
      effects.push({ type: 'reply', replyId: e.replyId, message: { type: MessageType.Ack, body: { ok: true } } })
      const k = key(e.jobId, e.epoch)
      if (s.reservations.delete(k)) changed(s, effects)
      const a = s.allocations.get(k)
      if (a !== undefined && a.phase !== 'exited' && a.stopRequested !== true) {
        a.stopRequested = true
        effects.push({ type: 'attempt:stop', jobId: e.jobId, epoch: e.epoch, reason: 'cancelled' })
      }
      break
    }
    case 'attempt:started': {
      const a = s.allocations.get(key(e.jobId, e.epoch))
      if (a === undefined || a.phase !== 'starting') break
      a.phase = 'running'
      a.startedAtMs = e.startedAtMs
      a.lastUpdateSentMs = nowMs
      effects.push({ type: 'send', to: a.owner, message: runningUpdate(s, a) })
      break
    }
    case 'attempt:exited': {
      const a = s.allocations.get(key(e.jobId, e.epoch))
      if (a === undefined || a.phase === 'exited') break
      a.phase = 'exited'
      a.final = { ...e.update, jobId: e.jobId, epoch: e.epoch, node: s.peerId, state: 'exited' }
      a.lastUpdateSentMs = nowMs
      // renewals every leaseRenewMs from the exit, whatever the final's own retries do
      a.nextRenewalAtMs = nowMs + s.config.leaseRenewMs
      changed(s, effects)
      effects.push({ type: 'send', to: a.owner, message: { type: MessageType.AttemptUpdate, body: a.final } })
      break
    }
    case 'update:acked': {
      const k = key(e.jobId, e.epoch)
      const a = s.allocations.get(k)
      if (a === undefined) break
      // From when the acknowledging replica last heard half of the mesh (an owner's
      // acknowledgement carries no age: from now): a replica cut off with this executor
      // answers for up to quorumFreshMs after the cut, on evidence from before it, and must
      // not keep the lease alive past a lease after the cut.
      a.lastLeaseAckMs = Math.max(a.lastLeaseAckMs, nowMs - (e.quorumAgeMs ?? 0))
      // A replica that took the job over answers as its owner: report there from now on.
      if (e.owner !== undefined && e.owner !== a.owner) {
        if (!a.replicas.includes(a.owner)) a.replicas = [...a.replicas, a.owner]
        a.owner = e.owner
      }
      // The owner replaced replicas since the award named them: renew with the new ones when
      // it is away (the old ones may all be gone).
      if (e.replicas !== undefined && e.accepted) a.replicas = [...e.replicas]
      if (a.phase === 'exited') {
        // The ack of a renewal sent before the exit says nothing of the final result: keep it
        // until the final itself is acknowledged, or it is never delivered.
        if (e.state !== undefined && e.state !== 'exited') {
          if (e.stop) a.nextRenewalAtMs = undefined
          break
        }
        s.allocations.delete(k)
        effects.push({ type: 'attempt:reported', jobId: e.jobId, epoch: e.epoch })
      } else if ((!e.accepted || e.stop) && a.stopRequested !== true) {
        a.stopRequested = true
        effects.push({ type: 'attempt:stop', jobId: e.jobId, epoch: e.epoch, reason: e.accepted ? 'cancelled' : 'fenced' })
      }
      break
    }
    case 'update:failed':
      break // retried on tick; the lease clock keeps running
    case 'attempt:recovered': {
      const k = key(e.jobId, e.epoch)
      if (s.allocations.has(k)) break
      // Without a start time it never ran (as far as this agent wrote): it renews as 'starting'.
      const a: Allocation = { jobId: e.jobId, epoch: e.epoch, owner: e.owner, replicas: e.replicas, spec: e.spec, phase: e.startedAtMs !== undefined ? 'running' : 'starting', ...(e.startedAtMs !== undefined ? { startedAtMs: e.startedAtMs } : {}), awardedAtMs: nowMs, lastLeaseAckMs: nowMs, lastUpdateSentMs: nowMs }
      s.allocations.set(k, a)
      changed(s, effects)
      // Renew at once: if the owner gave the job away meanwhile, the answer fences us.
      effects.push({ type: 'send', to: a.owner, message: runningUpdate(s, a) })
      break
    }
    case 'drain:set': {
      if (s.draining !== e.draining) { s.draining = e.draining; changed(s, effects) }
      break
    }
    case 'clock:stalled': {
      // While this agent could not run it sent no renewals, so no acknowledgement could come
      // back: its leases get a renewal interval more, time for the renewals now due to be
      // answered. No more: the owner does not know of the stall, and gives a lease up a grace
      // of a renewal interval and a margin after it lapses (OwnerConfig.leaseGraceMs); a
      // longer credit would run on beside the re-run when the owner is cut off. If the owner
      // gave an attempt up meanwhile, its answer to the next renewal says stop.
      const leaseCreditMs = Math.max(0, Math.min(e.stalledMs, s.config.leaseRenewMs))
      for (const a of s.allocations.values()) {
        if (a.phase !== 'exited') a.lastLeaseAckMs = Math.min(nowMs, a.lastLeaseAckMs + leaseCreditMs)
      }
      // Reservations only hold capacity: up to a lease.
      const reservationCreditMs = Math.max(0, Math.min(e.stalledMs, s.config.leaseMs))
      for (const r of s.reservations.values()) r.expiresAtMs += reservationCreditMs
      break
    }
    case 'tick': {
      let freed = false
      for (const [k, r] of s.reservations) {
        if (r.expiresAtMs <= nowMs) { s.reservations.delete(k); freed = true }
      }
      if (freed) changed(s, effects)
      /** renewals due now, by owner: each owner gets them in one message (see renewAll) */
      let due: Map<string, Allocation[]> | undefined
      const renew = (a: Allocation): void => {
        due ??= new Map()
        const list = due.get(a.owner)
        if (list === undefined) due.set(a.owner, [a])
        else list.push(a)
      }
      for (const a of s.allocations.values()) {
        if (a.phase === 'exited') {
          if (nowMs - a.lastUpdateSentMs >= s.config.reportRetryMs && a.final !== undefined) {
            a.lastUpdateSentMs = nowMs
            effects.push({ type: 'send', to: a.owner, message: { type: MessageType.AttemptUpdate, body: a.final } })
          }
          if (a.nextRenewalAtMs !== undefined && nowMs >= a.nextRenewalAtMs) {
            // The final result waits for flushes on both sides (and its logs go first), which on
            // a busy disk took longer than the rest of the lease: the owner gave the attempt
            // up, and ran the job again, while its result was on the way. Renewals, which wait
            // for nothing, keep the lease until the result is in. Their answers are not the
            // result's: 'update:acked' keeps the final until the final itself is acknowledged.
            // Alone, not with the owner's other renewals: once the owner holds the result it
            // answers this one with stop, an answer that waits for a flush.
            a.nextRenewalAtMs = nowMs + s.config.leaseRenewMs
            effects.push({ type: 'send', to: a.owner, message: runningUpdate(s, a) })
          }
          continue
        }
        if (a.stopRequested !== true && nowMs - a.lastLeaseAckMs > s.config.leaseMs) {
          // Cut off from the owner for a whole lease: the owner has given the job to someone else.
          a.stopRequested = true
          effects.push({ type: 'attempt:stop', jobId: a.jobId, epoch: a.epoch, reason: 'lost' })
          continue
        }
        if (nowMs - a.lastUpdateSentMs >= s.config.leaseRenewMs) {
          a.lastUpdateSentMs = nowMs
          renew(a)
        }
      }
      if (due !== undefined) renewAll(s, due, nowMs, effects)
      break
    }
  }
  return effects
}

/**
 * Sends the renewals due now, one message per owner: an executor running many jobs of one
 * owner (a batch submitted from one agent) would otherwise send that owner one request per
 * job every leaseRenewMs, and the owner of 1,000 running jobs would answer ~1,300 requests a
 * second. Renewals of the same owner's other attempts that are at least half due go along
 * (renewing early is harmless: it only restarts their interval), so after one interval an
 * executor's renewals to an owner fall due together and travel as one message. One renewal
 * alone stays an AttemptUpdate.
 */
function renewAll (s: BidderState, due: Map<string, Allocation[]>, nowMs: number, effects: BidderEffect[]): void {
  for (const a of s.allocations.values()) {
    if (a.phase === 'exited' || nowMs - a.lastUpdateSentMs < s.config.leaseRenewMs / 2) continue
    const list = due.get(a.owner)
    if (list === undefined) continue
    a.lastUpdateSentMs = nowMs
    list.push(a)
  }
  for (const [owner, list] of due) {
    if (list.length === 1) {
      effects.push({ type: 'send', to: owner, message: runningUpdate(s, list[0]) })
      continue
    }
    for (let i = 0; i < list.length; i += MAX_RENEWALS_PER_MESSAGE) {
      const renewals = list.slice(i, i + MAX_RENEWALS_PER_MESSAGE).map(renewalOf)
      effects.push({ type: 'send', to: owner, message: { type: MessageType.AttemptRenewals, body: { node: s.peerId, renewals } } })
    }
  }
}

/** Earliest time a tick has work to do, or undefined when nothing is pending. */
export function bidderNextTimerMs (s: BidderState): number | undefined {
  let next: number | undefined
  const at = (t: number): void => { if (next === undefined || t < next) next = t }
  for (const r of s.reservations.values()) at(r.expiresAtMs)
  for (const a of s.allocations.values()) {
    if (a.phase === 'exited') {
      at(a.lastUpdateSentMs + s.config.reportRetryMs)
      if (a.nextRenewalAtMs !== undefined) at(a.nextRenewalAtMs)
    }
    else if (a.stopRequested !== true) {
      at(a.lastLeaseAckMs + s.config.leaseMs + 1)
      at(a.lastUpdateSentMs + s.config.leaseRenewMs)
    }
  }
  return next
}
