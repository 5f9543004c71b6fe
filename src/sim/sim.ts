// The simulator's shell: the second shell over the scheduler's pure machines (the first is
// src/agent/agent.ts). Each simulated agent holds one owner state and one bidder state from
// src/scheduler and nothing else that decides; this file only carries their effects out
// over a virtual clock (engine.ts), a simulated network (network.ts), partial-view capacity
// gossip (gossip.ts) and simulated executors, as the agent carries them out over libp2p,
// timers and Docker:
//   owner  send BidRequest   → bidder 'bid:requested' → reply Bid | BidRefused → owner 'bid:received' | 'bid:refused'
//   owner  send Award        → bidder 'award:received' → reply AwardAck | AwardDeclined → owner 'award:acked' | 'award:declined'
//   owner  notify ReservationRelease → bidder (no reply); send CancelAttempt → bidder (the reply is ignored)
//   bidder send AttemptUpdate → owner 'attempt:update' → reply AttemptUpdateAck → bidder 'update:acked' (with the state it answers)
//   a request that fails (lost, timed out, dead peer) → 'bid:refused' (reason unreachable) | 'update:failed';
//   a failed Award is no event, as in the agent: its answer may be what was lost, so the
//   award's acknowledgement deadline decides
//   bidder 'capacity:changed' → an advert 10 ms later (coalesced); periodic adverts every advertIntervalMs
//   attempt:start / attempt:stop → a simulated container that runs for the job's duration
//   ticks: one timer per machine, set from ownerNextTimerMs / bidderNextTimerMs
// Differences from the agent, on purpose:
// - capacity gossip uses partial views (gossip.ts); with them, periodic adverts are heartbeats
//   and adverts that only shrink capacity wait up to minGapMs (see scheduleAdvert);
// - no peer:gone from gossip silence: with partial views, not hearing a peer says nothing
//   about it; leases detect dead executors;
// - not modelled: job replication and takeover by replicas, the quorum check before a result
//   is accepted, MemberLeave, container reattach after a restart (all in the agent shell),
//   logs and job summaries. A crashed agent's jobs come back when it restarts, from its
//   "store": the job records as last persisted (see restart()).
import { agentTimings } from '../agent/agent.ts'
import { SCHEDULER_DEFAULTS } from '../constants.ts'
import { encodeMessage } from '../protocol/codec.ts'
import type { JobSpec } from '../protocol/job-spec.ts'
import { type JobEvent, type JobRecord, type NodeCapacity, TERMINAL_STATES } from '../protocol/job.ts'
import { MAX_GOSSIP_BYTES, type Message, MessageType } from '../protocol/messages.ts'
import { type OwnerConfig, type OwnerEvent, type OwnerState, createOwner, ownerNextTimerMs, ownerStep } from '../scheduler/auction.ts'
import { type BidderConfig, type BidderEvent, type BidderState, advertIsNews, advertPublished, bidderNextTimerMs, bidderStep, capacityOf, createBidder, key, renewalsAnswer, renewalsOutcome, usedResources } from '../scheduler/bidder.ts'
import { pruneView } from '../scheduler/view.ts'
import { capacityMilliMs } from './central.ts'
import { Engine } from './engine.ts'
import { PARTIAL_VIEW_DEFAULTS, type PartialViewConfig, PartialViews } from './gossip.ts'
import { AdvertFeed, type LazyView, MAX_LAZY_MS } from './lazy-view.ts'
import { NETWORK_DEFAULTS, Network, type NetworkConfig, type TakeOver, checkWire } from './network.ts'
import { Rng, fakePeerId } from './rng.ts'
import type { NodeSpec, SimJob, Workload } from './workload.ts'

export interface SimConfig {
  seed: number
  network: NetworkConfig
  views: PartialViewConfig
  /** probability that a run exits 1 instead of 0 */
  failureRate: number
  /** spec.retries of every job */
  retries: number
  /** from award to the container running */
  startDelayMs: number
  /** lease on a running attempt; default the agent's */
  leaseMs?: number
  /** the run stops here even if jobs remain; default: last arrival + 2 × longest job + 2 min */
  maxVirtualMs?: number
  /** cut `fraction` of the agents off from the rest during [atMs, atMs + durationMs) */
  partition?: { atMs: number, durationMs: number, fraction: number }
  /** false: step every advert delivery and every renewal ack at its own arrival event (no
   *  lazy views, see lazy-view.ts; slower; the run is the same, which a test checks) */
  batchQuietSteps?: boolean
}

export const SIM_DEFAULTS: Omit<SimConfig, 'seed'> = {
  network: NETWORK_DEFAULTS,
  views: PARTIAL_VIEW_DEFAULTS,
  failureRate: 0,
  retries: 2,
  startDelayMs: 0
}

/** The agent's coalescing delay for change-driven adverts (agent.ts scheduleAdvert). */
const ADVERT_COALESCE_MS = 10
/** The agent's reportRetryMs and maxLostAttempts (agent.ts constructor). */
const REPORT_RETRY_MS = 1000
const MAX_LOST_ATTEMPTS = 10
const TICK = { type: 'tick' } as const
/** How often a leaving agent checks whether it is idle and may go. */
const LEAVE_POLL_MS = 1000

export interface SimResult {
  agents: number
  jobs: number
  virtualMs: number
  stoppedBy: 'done' | 'idle' | 'deadline'
  /** direct messages on the wire (requests and responses) for bids, awards, releases, updates */
  messages: number
  messagesByType: Record<string, number>
  localRequests: number
  droppedMessages: number
  advertsPublished: number
  advertsDelivered: number
  gossipBytesReceived: number
  /** Σ over agents of the time each was up, s */
  agentSeconds: number
  /** publish → the first award a winner took (acknowledged), ms, one per placed job */
  schedulingDelaysMs: number[]
  firstArrivalMs: number
  lastFinishMs: number
  busyMilliMs: number
  capacityMilliMs: number
  succeeded: number
  /** failed for the job's own reasons (non-zero exits past its retries) */
  failed: number
  /** never finished, or failed because its attempts kept being lost */
  lostJobs: number
  /** jobs with more than one accepted successful result, or more than one terminal transition */
  duplicateResults: number
  /** jobs whose work ran to exit 0 more than once (only one result is accepted) */
  duplicateRuns: number
  lostAttempts: number
  reschedules: number
  events: number
}

interface Container {
  jobId: string
  epoch: number
  cpuMilli: number
  startedAtMs: number
  stopped: boolean
}

interface SimAgent {
  idx: number
  id: string
  addrs: string[]
  node: NodeSpec
  up: boolean
  /** bumps on every crash and restart: what was sent to or scheduled for an old one is dropped */
  inc: number
  leaving: boolean
  owner: OwnerState
  bidder: BidderState
  ownerTimerAtMs: number
  ownerTimerToken: number
  /** a pending job waits out a retry backoff (seen when the owner timer was last set) */
  backoffPending: boolean
  lastOwnerTickMs: number
  bidderTimerAtMs: number
  bidderTimerToken: number
  lastBidderTickMs: number
  advertScheduled: boolean
  lastAdvertMs: number
  /** what the last advert carried */
  lastAdvertSeq: number
  lastAdvertFreeCpuMilli: number
  lastAdvertFreeMemoryBytes: number
  lastAdvertDraining: boolean
  advertAtMs: number
  advertToken: number
  containers: Map<string, Container>
  upSinceMs: number
}

interface JobStat {
  job: SimJob
  owner: number
  publishedAtMs: number
  /** when a winner first took an award (acknowledged it, or reported first): an owner's
   *  decision alone is no placement, since an award from the view can still be declined */
  firstAcceptedAwardAtMs: number
  terminalAtMs: number
  terminal: string | undefined
  terminalReason: string | undefined
  terminalCount: number
  acceptedSuccesses: number
  successfulRuns: number
  /** the epoch in the owner's last persisted record (what a restarted owner reads back) */
  persistedEpoch: number
}

export function runSimulation (w: Workload, c: SimConfig): SimResult {
  const engine = new Engine()
  const N = w.nodes.length
  const t = agentTimings(c.leaseMs !== undefined ? { leaseMs: c.leaseMs } : {})
  const s = SCHEDULER_DEFAULTS
  const ownerBase: Omit<OwnerConfig, 'selfId'> = {
    bidWindowMs: s.bidWindowMs,
    awardAckTimeoutMs: s.awardAckTimeoutMs,
    leaseMs: t.leaseMs,
    leaseGraceMs: t.leaseGraceMs,
    extraCandidates: s.extraCandidates,
    directAwardMaxViewAgeMs: t.directAwardMaxViewAgeMs,
    directAwardDeclinesBeforeBids: s.directAwardDeclinesBeforeBids,
    explainTop: s.explainTop,
    retryBackoffBaseMs: s.retryBackoffBaseMs,
    retryBackoffMaxMs: s.retryBackoffMaxMs,
    sweepIntervalMs: t.sweepIntervalMs,
    suspectAfterMs: t.suspectAfterMs,
    goneAfterMs: t.goneAfterMs,
    maxLostAttempts: MAX_LOST_ATTEMPTS
  }
  const bidderConfig: BidderConfig = { reservationTtlMs: s.reservationTtlMs, leaseMs: t.leaseMs, leaseRenewMs: t.leaseRenewMs, reportRetryMs: REPORT_RETRY_MS }

  const idRng = new Rng(c.seed, 'peer-ids')
  const phaseRng = new Rng(c.seed, 'phases')
  const execRng = new Rng(c.seed, 'executors')
  const submitRng = new Rng(c.seed, 'submit')
  const partitionRng = new Rng(c.seed, 'partition')

  const agents: SimAgent[] = w.nodes.map((node, idx) => {
    const id = fakePeerId(idRng)
    return {
      idx,
      id,
      addrs: [`/ip4/10.${(idx >> 16) & 255}.${(idx >> 8) & 255}.${idx & 255}/tcp/7701/p2p/${id}`],
      node,
      up: false,
      inc: 0,
      leaving: false,
      owner: undefined as unknown as OwnerState, // newOwner(), below: the views need the gossip
      bidder: newBidder(id, node, 0),
      ownerTimerAtMs: Infinity,
      ownerTimerToken: 0,
      backoffPending: false,
      lastOwnerTickMs: -Infinity,
      bidderTimerAtMs: Infinity,
      bidderTimerToken: 0,
      lastBidderTickMs: -Infinity,
      advertScheduled: false,
      lastAdvertMs: -Infinity,
      lastAdvertSeq: -1,
      lastAdvertFreeCpuMilli: -Infinity,
      lastAdvertFreeMemoryBytes: -Infinity,
      lastAdvertDraining: false,
      advertAtMs: Infinity,
      advertToken: 0,
      containers: new Map(),
      upSinceMs: 0
    }
  })
  const byId = new Map(agents.map(a => [a.id, a]))

  function newBidder (id: string, node: NodeSpec, seq: number): BidderState {
    return createBidder({ peerId: id, totalCpuMilli: node.cpuMilli, totalMemoryBytes: node.memoryBytes, labels: node.labels, seq, config: bidderConfig })
  }

  /** agents[i].up and .inc, dense: the network reads them for every delivery */
  const upFlags = new Uint8Array(N)
  const incs = new Int32Array(N)
  const net = new Network(engine, new Rng(c.seed, 'network'), c.network, {
    isUp: h => upFlags[h] === 1,
    incarnation: h => incs[h]
  })
  const views = new PartialViews(N, new Rng(c.seed, 'gossip'), c.views)
  /** periodic adverts only as heartbeats (partial views only; full gossip is the agent's) */
  const heartbeat = c.views.heartbeat && !views.full
  // The mesh runs for one advert interval before the workload starts, so every agent has
  // heard its view once (a real mesh is warm long before jobs arrive). Workload times are
  // shifted by it; every figure is measured from the first arrival.
  const warmupMs = t.advertIntervalMs + 100
  let maxDurationMs = 0
  for (const j of w.jobs) maxDurationMs = Math.max(maxDurationMs, j.durationMs)
  const lastArrivalMs = w.jobs.length > 0 ? w.jobs[w.jobs.length - 1].arrivalMs : 0
  const lastNodeEventMs = w.nodeEvents.length > 0 ? w.nodeEvents[w.nodeEvents.length - 1].atMs : 0
  /** the run stops here at the latest */
  const untilMs = warmupMs + (c.maxVirtualMs ?? Math.max(lastArrivalMs, lastNodeEventMs) + 2 * maxDurationMs + 120_000)

  // ---- bookkeeping -----------------------------------------------------------------------
  const stats = new Map<string, JobStat>()
  let terminalJobs = 0
  let lastFinishMs = 0
  let busyMilliMs = 0
  let advertsPublished = 0
  let advertsDelivered = 0
  let gossipBytes = 0
  let lostAttempts = 0
  let reschedules = 0
  const upIntervals: Array<[number, number, number]> = []

  function onJobEvent (job: JobRecord, ev: JobEvent): void {
    const st = stats.get(job.id)
    if (st === undefined) return
    switch (ev.type) {
      case 'job:scheduled': case 'attempt:started':
        if (Number.isNaN(st.firstAcceptedAwardAtMs)) st.firstAcceptedAwardAtMs = engine.nowMs
        break
      case 'attempt:lost': lostAttempts++; reschedules++; break
      case 'award:timeout': case 'award:declined': case 'award:lost': reschedules++; break
      case 'job:succeeded': case 'job:failed': case 'job:cancelled':
        st.terminalCount++
        if (st.terminal === undefined) {
          st.terminal = ev.type.slice(4)
          st.terminalReason = job.reason
          st.terminalAtMs = engine.nowMs
          terminalJobs++
          if (engine.nowMs > lastFinishMs) lastFinishMs = engine.nowMs
        }
        break
    }
  }

  // ---- the two machines --------------------------------------------------------------------
  /** the reply made by the step being run for the request being served (the agent's ask()):
   *  steps never run inside each other, so one request is served at a time */
  let askedReplyId = 0
  let reply: Message | undefined
  let nextReplyId = 1

  // Adverts delivered to an owner with nothing pending change only its view, and the owner's
  // view matters only when the machine reads it: such owners hold a lazy view (lazy-view.ts)
  // that reads, from its publishers' logs, what arrived since it last looked whenever the
  // machine reads it. Owners with something pending are stepped with each advert at its arrival.
  const batching = c.batchQuietSteps ?? true
  /** 1 while agent i's owner has no pending job (nor one in backoff): adverts to it are read lazily */
  const quiet = new Uint8Array(N)
  const feed = batching && !views.full && untilMs < MAX_LAZY_MS
    ? new AdvertFeed(N, engine, i => views.sampleOf(i), id => byId.get(id)?.idx,
      // a view is read in full at least every other sample refresh (see refresh, below)
      3 * c.views.refreshMs + 2000, Math.ceil(c.network.jitterMs) + 1)
    : undefined
  // A view reads what reached it under the sample it had: a peer leaving the sample is read up
  // to now, one joining it is read from now on.
  if (feed !== undefined) {
    views.beforeChange = (i, removed, added) => {
      if (!agents[i].up) return
      const view = agents[i].owner.view as LazyView
      if (removed !== undefined) feed.syncMember(view, removed)
      if (added !== undefined) feed.subscribed(view, added)
    }
  }

  /** A fresh owner (at start and at every restart); its view reads what arrives from now on. */
  function newOwner (a: SimAgent): OwnerState {
    const owner = createOwner({ ...ownerBase, selfId: a.id })
    if (feed !== undefined) owner.view = feed.view(a.idx)
    return owner
  }

  function ownerDo (a: SimAgent, event: OwnerEvent): void {
    ownerRun(a, event)
    updateQuiet(a)
  }

  function updateQuiet (a: SimAgent): void {
    quiet[a.idx] = a.up && a.owner.pending.size === 0 && !a.backoffPending ? 1 : 0
  }

  function ownerRun (a: SimAgent, event: OwnerEvent): void {
    // read only when it matters: reading a lazy view's freedVersion brings the view up to date
    const freedVersion = a.backoffPending ? a.owner.view.freedVersion : 0
    const fx = ownerStep(a.owner, event, engine.nowMs)
    if (fx.length === 0) {
      // Nothing changed that could bring a timer forward, except news of freed capacity,
      // which makes a pending job in retry backoff due as soon as its backoff ends.
      if (a.backoffPending && a.owner.view.freedVersion !== freedVersion) armOwnerTimer(a)
      return
    }
    // Replies alone (lease renewals, fenced updates) only push deadlines later.
    let onlyReplies = true
    for (const f of fx) {
      if (f.type !== 'reply') onlyReplies = false
      switch (f.type) {
        case 'job:changed': {
          const st = stats.get(f.job.id)
          if (st !== undefined) st.persistedEpoch = f.job.epoch
          for (const ev of f.events) onJobEvent(f.job, ev)
          break
        }
        case 'send': ownerSend(a, f.to, f.message); break
        case 'reply': if (f.replyId === askedReplyId) reply = f.message; break
      }
    }
    if (!onlyReplies || a.ownerTimerAtMs === Infinity) armOwnerTimer(a)
  }

  // Lease renewal acks that accept the renewal change one timestamp on the executor's
  // allocation: no effect, no timer moved (the executor's next renewal is due anyway). The
  // shell takes them over from the network and steps each, at its arrival time, just before
  // the next step of that bidder that comes after the arrival in (time, insertion) order,
  // instead of running an event for it: a renewal costs one event fewer, and the bidder's
  // state is brought into the cache once for the ack and the renewal that follows it.
  /** per agent: event, arrival time, insertion number, incarnation asked from, … */
  const acks: Array<Array<BidderEvent | number>> = Array.from({ length: N }, () => [])
  /** taken-over acks stepped or dropped so far: each stands for an event the engine would have run */
  let acksRun = 0
  /** arrival time and insertion number of acks dropped with their agent, for the final count */
  const droppedAcks: number[] = []

  const renewalAcks: TakeOver = {
    wants: (m, r) => m.type === MessageType.AttemptUpdate && m.body.state !== 'exited' &&
      r.type === MessageType.AttemptUpdateAck && r.body.accepted && !r.body.stop,
    take: (m, r, from, atMs, seq, fromInc) => {
      if (m.type !== MessageType.AttemptUpdate || r.type !== MessageType.AttemptUpdateAck) return
      acks[from].push({ type: 'update:acked', ...r.body, state: m.body.state }, atMs, seq, fromInc)
    }
  }

  /** Steps the acks that arrived before the action running now, oldest first. */
  function flushAcks (a: SimAgent): void {
    const q = acks[a.idx]
    const now = engine.nowMs
    const cur = engine.seq
    for (;;) {
      let best = -1
      for (let i = 0; i < q.length; i += 4) {
        const t = q[i + 1] as number
        const sq = q[i + 2] as number
        if (t > now || (t === now && sq > cur)) continue
        if (best < 0 || t < (q[best + 1] as number) || (t === q[best + 1] && sq < (q[best + 2] as number))) best = i
      }
      if (best < 0) return
      const event = q[best] as BidderEvent
      const atMs = q[best + 1] as number
      const inc = q[best + 3] as number
      q.splice(best, 4)
      acksRun++
      // as the network's arrival: dropped if the executor crashed (or restarted) since it asked
      if (inc !== a.inc || !a.up) continue
      const fx = bidderStep(a.bidder, event, atMs)
      if (fx.length !== 0) throw new Error('a taken-over ack had effects')
    }
  }

  function bidderDo (a: SimAgent, event: BidderEvent): void {
    if (acks[a.idx].length !== 0) flushAcks(a)
    const fx = bidderStep(a.bidder, event, engine.nowMs)
    if (fx.length === 0) return
    for (const f of fx) {
      switch (f.type) {
        case 'reply': if (f.replyId === askedReplyId) reply = f.message; break
        case 'send': bidderSend(a, f.to, f.message); break
        case 'attempt:start': startContainer(a, f.jobId, f.epoch, f.spec); break
        case 'attempt:stop': stopContainer(a, f.jobId, f.epoch, f.reason); break
        case 'attempt:reported': break
        case 'capacity:changed': scheduleAdvert(a); break
      }
    }
    armBidderTimer(a)
  }

  /** Runs a step for an inbound request and returns the reply it made. */
  function ask (run: (replyId: number) => void): Message {
    const replyId = nextReplyId++
    askedReplyId = replyId
    reply = undefined
    run(replyId)
    const r = reply
    askedReplyId = 0
    reply = undefined
    return r ?? { type: MessageType.Ack, body: { ok: false, code: 'ERR_NO_REPLY' } }
  }

  // ---- timers: one per machine, at the machine's own next deadline --------------------------
  function armOwnerTimer (a: SimAgent): void {
    const next = ownerNextTimerMs(a.owner)
    a.backoffPending = false
    for (const id of a.owner.pending) {
      if ((a.owner.jobs.get(id)?.record.notBeforeMs ?? 0) > engine.nowMs) { a.backoffPending = true; break }
    }
    if (next === undefined) return
    let at = Math.max(next, engine.nowMs)
    if (at <= a.lastOwnerTickMs) at = a.lastOwnerTickMs + 1
    if (at >= a.ownerTimerAtMs) return // an earlier tick is already set; it re-arms
    a.ownerTimerAtMs = at
    const token = ++a.ownerTimerToken
    const inc = a.inc
    engine.at(at, () => {
      if (a.inc !== inc || a.ownerTimerToken !== token) return
      a.ownerTimerAtMs = Infinity
      a.lastOwnerTickMs = engine.nowMs
      ownerDo(a, TICK)
      armOwnerTimer(a)
      updateQuiet(a)
    })
  }

  function armBidderTimer (a: SimAgent): void {
    const next = bidderNextTimerMs(a.bidder)
    if (next === undefined) return
    let at = Math.max(next, engine.nowMs)
    if (at <= a.lastBidderTickMs) at = a.lastBidderTickMs + 1
    if (at >= a.bidderTimerAtMs) return
    a.bidderTimerAtMs = at
    const token = ++a.bidderTimerToken
    const inc = a.inc
    engine.at(at, () => {
      if (a.inc !== inc || a.bidderTimerToken !== token) return
      a.bidderTimerAtMs = Infinity
      a.lastBidderTickMs = engine.nowMs
      bidderDo(a, TICK)
      armBidderTimer(a)
    })
  }

  // ---- direct messages ---------------------------------------------------------------------
  /** What agent b does with a request from `from` (agent.ts onRequest). */
  function serve (b: SimAgent, from: string): (m: Message) => Message {
    return (m: Message): Message => {
      switch (m.type) {
        case MessageType.BidRequest:
          return ask(replyId => bidderDo(b, { type: 'bid:requested', from, replyId, jobId: m.body.jobId, epoch: m.body.epoch, spec: m.body.spec }))
        case MessageType.Award:
          return ask(replyId => bidderDo(b, { type: 'award:received', from, replyId, jobId: m.body.jobId, epoch: m.body.epoch, spec: m.body.spec, replicas: m.body.replicas }))
        case MessageType.ReservationRelease:
          bidderDo(b, { type: 'reservation:released', from, jobId: m.body.jobId, epoch: m.body.epoch })
          return { type: MessageType.Ack, body: { ok: true } }
        case MessageType.CancelAttempt:
          return ask(replyId => bidderDo(b, { type: 'attempt:cancel', from, replyId, jobId: m.body.jobId, epoch: m.body.epoch }))
        case MessageType.AttemptUpdate: {
          const r = ask(replyId => ownerDo(b, { type: 'attempt:update', replyId, update: m.body }))
          const u = m.body
          if (u.state === 'exited' && u.reason === 'exit' && u.exitCode === 0 && r.type === MessageType.AttemptUpdateAck && r.body.accepted && !r.body.stop) {
            const st = stats.get(u.jobId)
            if (st !== undefined) st.acceptedSuccesses++
          }
          return r
        }
        case MessageType.AttemptRenewals: {
          const answers = m.body.renewals.map(u => ask(replyId => ownerDo(b, { type: 'attempt:update', replyId, update: { ...u, node: m.body.node } })))
          return { type: MessageType.AttemptRenewalsAck, body: renewalsAnswer(m.body.renewals, answers) }
        }
        default:
          return { type: MessageType.Ack, body: { ok: false, code: 'ERR_UNEXPECTED_MESSAGE' } }
      }
    }
  }

  function ownerSend (a: SimAgent, to: string, m: Message): void {
    const b = byId.get(to)
    if (b === undefined) return
    const handle = serve(b, a.id)
    switch (m.type) {
      case MessageType.BidRequest: {
        const { jobId, epoch } = m.body
        net.request(a.idx, b.idx, m, handle, r => {
          if (r === undefined) ownerDo(a, { type: 'bid:refused', from: to, jobId, epoch, reason: 'unreachable' })
          else if (r.type === MessageType.Bid) ownerDo(a, { type: 'bid:received', from: to, ...r.body })
          else if (r.type === MessageType.BidRefused) ownerDo(a, { type: 'bid:refused', from: to, ...r.body })
        })
        break
      }
      case MessageType.Award: {
        net.request(a.idx, b.idx, m, handle, r => {
          if (r === undefined) return
          if (r.type === MessageType.AwardAck) ownerDo(a, { type: 'award:acked', from: to, ...r.body })
          else if (r.type === MessageType.AwardDeclined) ownerDo(a, { type: 'award:declined', from: to, ...r.body })
        })
        break
      }
      case MessageType.ReservationRelease: // a notification, as agent.ts sends it: no answer
        net.notify(a.idx, b.idx, m, handle)
        break
      default: // cancels are best effort: leases lapse anyway
        net.request(a.idx, b.idx, m, handle, () => {})
    }
  }

  function bidderSend (a: SimAgent, to: string, m: Message): void {
    if (m.type === MessageType.AttemptRenewals) {
      const b = byId.get(to)
      if (b === undefined) return
      const { node, renewals } = m.body
      net.request(a.idx, b.idx, m, serve(b, a.id), r => {
        if (r?.type !== MessageType.AttemptRenewalsAck) {
          for (const u of renewals) bidderDo(a, { type: 'update:failed', jobId: u.jobId, epoch: u.epoch })
          return
        }
        // as agent.ts: what the owner did not acknowledge goes again alone
        const { acked, again } = renewalsOutcome(renewals, r.body)
        for (const event of acked) bidderDo(a, event)
        for (const u of again) bidderSend(a, to, { type: MessageType.AttemptUpdate, body: { ...u, node } })
      })
      return
    }
    if (m.type !== MessageType.AttemptUpdate) return
    const b = byId.get(to)
    if (b === undefined) return
    const { jobId, epoch, state } = m.body
    net.request(a.idx, b.idx, m, serve(b, a.id), r => {
      if (r === undefined) bidderDo(a, { type: 'update:failed', jobId, epoch })
      // the shell knows which update this answers: a renewal's ack is no ack of the final
      else if (r.type === MessageType.AttemptUpdateAck) bidderDo(a, { type: 'update:acked', ...r.body, state })
    }, batching ? renewalAcks : undefined)
  }

  // ---- simulated executors -------------------------------------------------------------------
  function startContainer (a: SimAgent, jobId: string, epoch: number, spec: JobSpec): void {
    const k = key(jobId, epoch)
    if (a.containers.has(k)) return
    const st = stats.get(jobId)
    const ct: Container = { jobId, epoch, cpuMilli: spec.cpuMilli, startedAtMs: NaN, stopped: false }
    a.containers.set(k, ct)
    const inc = a.inc
    engine.after(c.startDelayMs, () => {
      if (a.inc !== inc || ct.stopped) return
      const startedAtMs = engine.nowMs
      ct.startedAtMs = startedAtMs
      bidderDo(a, { type: 'attempt:started', jobId, epoch, startedAtMs })
      const exitCode = execRng.chance(c.failureRate) ? 1 : 0
      engine.after(st?.job.durationMs ?? 0, () => {
        if (a.inc !== inc || ct.stopped) return
        endContainer(a, k, ct)
        if (exitCode === 0 && st !== undefined) st.successfulRuns++
        bidderDo(a, { type: 'attempt:exited', jobId, epoch, update: { startedAtMs, finishedAtMs: engine.nowMs, exitCode, reason: 'exit' } })
      })
    })
  }

  function stopContainer (a: SimAgent, jobId: string, epoch: number, why: 'cancelled' | 'lost' | 'fenced'): void {
    const k = key(jobId, epoch)
    const ct = a.containers.get(k)
    if (ct === undefined || ct.stopped) return
    endContainer(a, k, ct)
    const inc = a.inc
    // As the agent: an aborted run ends `cancelled`; one stopped for a lost lease is handed back.
    engine.after(0, () => {
      if (a.inc !== inc) return
      const started = Number.isNaN(ct.startedAtMs) ? {} : { startedAtMs: ct.startedAtMs }
      const end = why === 'lost' ? { reason: 'lost' as const, error: 'stopped: lease lost' } : { reason: 'cancelled' as const }
      bidderDo(a, { type: 'attempt:exited', jobId, epoch, update: { ...started, finishedAtMs: engine.nowMs, exitCode: null, ...end } })
    })
  }

  function endContainer (a: SimAgent, k: string, ct: Container): void {
    ct.stopped = true
    if (!Number.isNaN(ct.startedAtMs)) busyMilliMs += ct.cpuMilli * (engine.nowMs - ct.startedAtMs)
    a.containers.delete(k)
  }

  // ---- capacity gossip -----------------------------------------------------------------------
  function scheduleAdvert (a: SimAgent): void {
    // The agent: one advert 10 ms after a change (coalesced). Partial views (heartbeat mode):
    // news of more room goes out as promptly, since pending jobs wait for it; less room waits
    // until minGapMs after the last advert (owners that probe the node learn it from the bid).
    let atMs = engine.nowMs + ADVERT_COALESCE_MS
    if (heartbeat && !grewSinceAdvert(a)) atMs = Math.max(atMs, a.lastAdvertMs + c.views.minGapMs)
    if (a.advertScheduled && a.advertAtMs <= atMs) return
    a.advertScheduled = true
    a.advertAtMs = atMs
    const token = ++a.advertToken
    const inc = a.inc
    engine.at(atMs, () => {
      if (a.inc !== inc || a.advertToken !== token) return
      a.advertScheduled = false
      // A periodic advert may have carried the change already; and, as in the agent, one that
      // would be news to no one is skipped (advertIsNews in src/scheduler/bidder.ts).
      if (a.bidder.seq !== a.lastAdvertSeq && advertIsNews(a.bidder, engine.nowMs)) publishAdvert(a)
    })
  }

  function grewSinceAdvert (a: SimAgent): boolean {
    const used = usedResources(a.bidder)
    return a.bidder.totalCpuMilli - used.cpuMilli > a.lastAdvertFreeCpuMilli ||
      a.bidder.totalMemoryBytes - used.memoryBytes > a.lastAdvertFreeMemoryBytes ||
      a.bidder.draining !== a.lastAdvertDraining
  }

  function publishAdvert (a: SimAgent): void {
    if (!a.up) return
    a.lastAdvertMs = engine.nowMs
    a.lastAdvertSeq = a.bidder.seq
    const capacity: NodeCapacity = capacityOf(a.bidder, engine.nowMs)
    capacity.addrs = a.addrs
    a.lastAdvertFreeCpuMilli = capacity.freeCpuMilli
    a.lastAdvertFreeMemoryBytes = capacity.freeMemoryBytes
    a.lastAdvertDraining = capacity.draining
    advertPublished(a.bidder, capacity)
    // one event object for every receiver: the machine neither keeps nor changes it
    const event: OwnerEvent = { type: 'advert:received', capacity }
    ownerDo(a, event)
    // One encoding per distinct advert; every receiver gets the same bytes.
    const advert: Message = { type: MessageType.CapacityAdvert, body: capacity }
    const bytes = encodeMessage(advert).byteLength
    if (c.network.checkWire === true) checkWire(advert, MAX_GOSSIP_BYTES)
    advertsPublished++
    const counted = engine.nowMs >= warmupMs
    let index = -1 // in the feed's log of this publisher
    const arrival = net.gossip(a.idx, () => views.receiversOf(a.idx), to => {
      if (counted) { advertsDelivered++; gossipBytes += bytes }
      if (feed === undefined) { ownerDo(agents[to], event); return }
      if (quiet[to] === 1) return // its view reads it from the feed when the machine reads the view
      // Something pending: the advert may start an offer, so the owner is stepped with it now.
      const b = agents[to]
      ownerDo(b, event)
      feed.stepped(b.owner.view as LazyView, a.idx)
    }, feed === undefined ? undefined : to => feed.missed(a.idx, index, to))
    if (feed !== undefined) index = feed.publish(a.idx, capacity, arrival.atMs, arrival.seq)
  }

  function startLoops (a: SimAgent): void {
    const inc = a.inc
    const periodic = (): void => {
      if (a.inc !== inc) return
      // heartbeat mode: a change-driven advert went out less than an interval ago, so the
      // receivers heard from this agent recently enough; wait until an interval after it
      const dueMs = a.lastAdvertMs + t.advertIntervalMs
      if (heartbeat && engine.nowMs < dueMs) { engine.at(dueMs, periodic); return }
      publishAdvert(a)
      engine.after(t.advertIntervalMs, periodic)
    }
    engine.after(Math.round(phaseRng.uniform(0, t.advertIntervalMs)), periodic)
    if (views.full) return
    const refresh = (): void => {
      if (a.inc !== inc) return
      views.refresh(a.idx)
      // Entries of peers no longer sampled and not heard for a while: forget them.
      if (feed === undefined) pruneView(a.owner.view, engine.nowMs, t.goneAfterMs, t.goneAfterMs)
      else feed.prune(a.owner.view as LazyView, Math.min(c.views.refreshMs, 2 * t.goneAfterMs), () => pruneView(a.owner.view, engine.nowMs, t.goneAfterMs, t.goneAfterMs))
      engine.after(c.views.refreshMs, refresh)
    }
    engine.after(c.views.refreshMs + Math.round(phaseRng.uniform(0, c.views.refreshMs)), refresh)
  }

  // ---- membership: start, join, leave, kill, restart ------------------------------------------
  function markUp (a: SimAgent): void {
    a.up = true
    upFlags[a.idx] = 1
    a.upSinceMs = engine.nowMs
  }

  function markDown (a: SimAgent): void {
    if (!a.up) return
    const q = acks[a.idx]
    if (q.length !== 0) {
      flushAcks(a)
      for (let i = 0; i < q.length; i += 4) droppedAcks.push(q[i + 1] as number, q[i + 2] as number)
      q.length = 0
    }
    a.up = false
    upFlags[a.idx] = 0
    quiet[a.idx] = 0
    incs[a.idx] = ++a.inc
    upIntervals.push([a.upSinceMs, engine.nowMs, a.node.cpuMilli])
    for (const [k, ct] of [...a.containers]) endContainer(a, k, ct)
    a.ownerTimerAtMs = Infinity
    a.bidderTimerAtMs = Infinity
    a.lastOwnerTickMs = -Infinity
    a.lastBidderTickMs = -Infinity
    a.advertScheduled = false
    a.advertAtMs = Infinity
    views.leave(a.idx)
  }

  /** A fresh process: new machines (the capacity version keeps rising, as the agent's
   *  clock-based seq does), a place in the gossip, then the jobs it owned, adopted from its
   *  store as last persisted. */
  function bootAgent (a: SimAgent, adopt: JobRecord[]): void {
    markUp(a)
    incs[a.idx] = ++a.inc
    a.leaving = false
    a.bidder = newBidder(a.id, a.node, Math.max(engine.nowMs * 1000, a.bidder.seq + 1))
    a.owner = newOwner(a)
    views.join(a.idx)
    for (const job of adopt) ownerDo(a, { type: 'job:adopted', job })
    publishAdvert(a)
    startLoops(a)
  }

  function restart (a: SimAgent): void {
    if (a.up) return
    const adopt: JobRecord[] = []
    for (const oj of a.owner.jobs.values()) {
      if (TERMINAL_STATES.has(oj.record.state)) continue
      const st = stats.get(oj.record.id)
      // the store holds the record as of its last persisted change: an epoch taken by an
      // offer that was never persisted is taken again
      if (st !== undefined) oj.record.epoch = st.persistedEpoch
      adopt.push(oj.record)
    }
    bootAgent(a, adopt)
  }

  function leave (a: SimAgent): void {
    if (!a.up || a.leaving) return
    a.leaving = true
    bidderDo(a, { type: 'drain:set', draining: true })
    const inc = a.inc
    const poll = (): void => {
      if (a.inc !== inc) return
      const idle = a.bidder.allocations.size === 0 && a.bidder.reservations.size === 0 && a.owner.pending.size === 0 && a.owner.active.size === 0
      if (idle) markDown(a); else engine.after(LEAVE_POLL_MS, poll)
    }
    engine.after(LEAVE_POLL_MS, poll)
  }

  // ---- jobs arrive -----------------------------------------------------------------------------
  const jobs = w.jobs
  const J = jobs.length
  for (const job of jobs) {
    stats.set(job.id, {
      job, owner: -1, publishedAtMs: NaN, firstAcceptedAwardAtMs: NaN, terminalAtMs: NaN, terminal: undefined, terminalReason: undefined,
      terminalCount: 0, acceptedSuccesses: 0, successfulRuns: 0, persistedEpoch: 0
    })
  }

  /** The agent a client submits to: any agent that is up and not leaving. */
  function submitter (): SimAgent | undefined {
    for (let tries = 0; tries < 16; tries++) {
      const i = views.upAgents()[submitRng.int(views.upCount)]
      if (i !== undefined && !agents[i].leaving) return agents[i]
    }
    return agents.find(a => a.up && !a.leaving)
  }

  function publish (job: SimJob): void {
    const a = submitter()
    if (a === undefined) { engine.after(1000, () => publish(job)); return }
    const st = stats.get(job.id)!
    st.owner = a.idx
    st.publishedAtMs = engine.nowMs
    const spec: JobSpec = {
      image: 'bidmesh/sim:latest', command: [], env: {}, cpuMilli: job.cpuMilli, memoryBytes: job.memoryBytes,
      pidsLimit: 256, timeoutMs: 24 * 3_600_000, retries: c.retries, constraints: job.constraints, network: 'none'
    }
    const now = engine.nowMs
    // no replicas: replication and takeover are the agent shell's, not modelled here (see the header)
    ownerDo(a, { type: 'job:submitted', job: { id: job.id, spec, owner: a.id, publisher: a.id, state: 'pending', epoch: 0, term: 0, version: 0, replicas: [], attempts: [], createdAtMs: now, updatedAtMs: now } })
  }

  let nextJob = 0
  const arrivals = (): void => {
    while (nextJob < J && warmupMs + jobs[nextJob].arrivalMs <= engine.nowMs) publish(jobs[nextJob++])
    if (nextJob < J) engine.at(warmupMs + jobs[nextJob].arrivalMs, arrivals)
  }
  if (J > 0) engine.at(warmupMs + jobs[0].arrivalMs, arrivals)

  // ---- start ---------------------------------------------------------------------------------
  for (const a of agents) a.owner = newOwner(a)
  const initial = agents.filter((_, i) => w.initiallyUp[i])
  views.bootstrap(initial.map(a => a.idx))
  for (const a of initial) {
    markUp(a)
    a.bidder.seq = 0
    startLoops(a)
  }
  // first adverts (the agent's start()): every agent knows itself at once
  for (const a of initial) ownerDo(a, { type: 'advert:received', capacity: { ...capacityOf(a.bidder, 0), addrs: a.addrs } })

  for (const ev of w.nodeEvents) {
    engine.at(warmupMs + ev.atMs, () => {
      const a = agents[ev.node]
      switch (ev.kind) {
        case 'join': if (!a.up) bootAgent(a, []); break
        case 'leave': leave(a); break
        case 'kill': markDown(a); break
        case 'restart': restart(a); break
      }
    })
  }

  if (c.partition !== undefined) {
    const p = c.partition
    engine.at(warmupMs + p.atMs, () => {
      const side = new Uint8Array(N)
      for (let i = 0; i < N; i++) side[i] = partitionRng.chance(p.fraction) ? 1 : 0
      net.setPartition(side)
    })
    engine.at(warmupMs + p.atMs + p.durationMs, () => net.setPartition(undefined))
  }

  let stoppedBy = engine.run({ untilMs, done: () => terminalJobs >= J })
  // Taken-over acks still waiting would have run as events before the stop, as no-ops.
  let endMs = engine.nowMs
  let acksDue = 0
  let acksBeyond = false
  const countAck = (atMs: number, seq: number): void => {
    const due = stoppedBy === 'done' ? atMs < endMs || (atMs === endMs && seq < engine.seq) : atMs <= untilMs
    if (due) acksDue++
    else if (atMs > untilMs) acksBeyond = true
  }
  for (let i = 0; i < droppedAcks.length; i += 2) countAck(droppedAcks[i], droppedAcks[i + 1])
  for (const q of acks) for (let i = 0; i < q.length; i += 4) countAck(q[i + 1] as number, q[i + 2] as number)
  if (stoppedBy !== 'done') {
    for (const q of [droppedAcks]) for (let i = 0; i < q.length; i += 2) if (q[i] <= untilMs) endMs = Math.max(endMs, q[i])
    for (const q of acks) for (let i = 0; i < q.length; i += 4) if ((q[i + 1] as number) <= untilMs) endMs = Math.max(endMs, q[i + 1] as number)
    if (stoppedBy === 'idle' && acksBeyond) stoppedBy = 'deadline'
  }

  // ---- results -------------------------------------------------------------------------------
  for (const a of agents) if (a.up) upIntervals.push([a.upSinceMs, endMs, a.node.cpuMilli])
  let firstArrivalMs = Infinity
  const schedulingDelaysMs: number[] = []
  let succeeded = 0
  let failed = 0
  let lostJobs = 0
  let duplicateResults = 0
  let duplicateRuns = 0
  for (const st of stats.values()) {
    if (!Number.isNaN(st.publishedAtMs)) firstArrivalMs = Math.min(firstArrivalMs, st.publishedAtMs)
    if (!Number.isNaN(st.firstAcceptedAwardAtMs)) schedulingDelaysMs.push(st.firstAcceptedAwardAtMs - st.publishedAtMs)
    if (st.terminal === 'succeeded') succeeded++
    else if (st.terminal === 'failed' && st.terminalReason !== 'lost') failed++
    else lostJobs++
    if (st.acceptedSuccesses > 1 || st.terminalCount > 1) duplicateResults++
    if (st.successfulRuns > 1) duplicateRuns++
  }
  if (firstArrivalMs === Infinity) firstArrivalMs = 0
  const messagesByType: Record<string, number> = {}
  for (const [name, num] of Object.entries(MessageType)) if (net.byType[num] > 0) messagesByType[name] = net.byType[num]
  return {
    agents: N,
    jobs: J,
    virtualMs: endMs,
    stoppedBy,
    messages: net.messages,
    messagesByType,
    localRequests: net.localRequests,
    droppedMessages: net.dropped,
    advertsPublished,
    advertsDelivered,
    gossipBytesReceived: gossipBytes,
    agentSeconds: capacityMilliMs(upIntervals.map(([from, to]) => [from, to, 1] as const), warmupMs, endMs) / 1000,
    schedulingDelaysMs,
    firstArrivalMs,
    lastFinishMs,
    busyMilliMs,
    // CPU of the agents that were up during [first arrival, last finish]
    capacityMilliMs: capacityMilliMs(upIntervals, firstArrivalMs, lastFinishMs),
    succeeded,
    failed,
    lostJobs,
    duplicateResults,
    duplicateRuns,
    lostAttempts,
    reschedules,
    events: engine.executed + acksRun + acksDue
  }
}
