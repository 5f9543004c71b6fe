// The composition root: one agent = the owner and bidder state machines, carried out over
// the mesh, the store and the executor. This shell holds all the I/O; every decision is
// made by the pure machines in src/scheduler.
import { cpus as osCpus, totalmem } from 'node:os'
import { join } from 'node:path'
import { AGENT_DEFAULTS, SCHEDULER_DEFAULTS } from '../constants.ts'
import { createDirectory } from './directory.ts'
import { type JobSpec, parseJobSpec } from '../protocol/job-spec.ts'
import { redactSecrets, specSecrets } from '../protocol/redact.ts'
import { type Explanation, type JobEvent, type JobRecord, type JobSummary, JobStates, type LogChunk, type NodeCapacity, summarize, TERMINAL_STATES } from '../protocol/job.ts'
import { type AttemptRenewal, type Bodies, type Message, MessageType } from '../protocol/messages.ts'
import { type BidderEffect, type BidderEvent, type BidderState, advertIsNews, advertPublished, bidderStep, capacityOf, createBidder, renewalsAnswer, renewalsOutcome } from '../scheduler/bidder.ts'
import { type OwnerEffect, type OwnerEvent, type OwnerJob, type OwnerState, createOwner, ownerStep, planOffer, viewLiveness } from '../scheduler/auction.ts'
import { type CopyAnswer, type StandbyRenewal, decideTakeover, groupMajority, newerRecord, newerSummary, rankReplicas, replacementReplicas, replicaQuorum, takeInRenewedAttempt, takeoverDueAtMs } from '../scheduler/takeover.ts'
import { type ViewEntry, countHeardWithin, halfHeardAgeMs, liveness, pruneView } from '../scheduler/view.ts'
import type { AttemptUpdate } from '../protocol/messages.ts'
import type { Mesh } from '../mesh/mesh.ts'
import { Topic } from '../mesh/mesh.ts'
import type { Executor } from '../runtime/executor.ts'
import type { Store } from '../store/store.ts'
import { type AgentApi, AmbiguousJobIdError, type JobDetail, type NodeView, type SubmittedJob, UnknownJobError } from './agent-api.ts'
import { newJobId } from './ids.ts'
import { EXECUTOR_REPLAY_DEFAULTS, type PublisherAllowlist, type ReplayGuard, type SignedJobFields, createReplayGuard, newJobNonce, screenJobMessage, signatureToString, storeReplayBook } from './signing.ts'
import type { Logger } from './logger.ts'
import { durableMesh } from './durable-mesh.ts'
import { type TickTimer, setTickTimer } from './tick-timer.ts'
import { type PendingChunk, splitLogChunks } from './log-batches.ts'
import { AgentMetrics } from './metrics.ts'

export interface AgentInit {
  /** total CPU offered, in millicores; default: host cores less a reserve */
  cpuMilli?: number
  /** total memory offered; default: host memory less a reserve */
  memoryBytes?: number
  labels?: Record<string, string>
  /** scheduler timings; defaults in src/constants.ts */
  scheduler?: { [K in keyof typeof SCHEDULER_DEFAULTS]?: number } & {
    /** overrides agentTimings' limit; 0: every job gets a bid round */
    directAwardMaxViewAgeMs?: number
  }
  timings?: Partial<Pick<typeof AGENT_DEFAULTS, 'advertIntervalMs' | 'suspectAfterMs' | 'goneAfterMs' | 'sweepIntervalMs' | 'finishedJobRetentionMs' | 'historyRetentionMs'>> & { replayWindowMs?: number }
  leaseMs?: number
  /** whose jobs this agent runs; default: any member (an explicit choice for a trusted LAN) */
  publishers?: PublisherAllowlist
  /** refuses replayed awards and expired jobs; default: EXECUTOR_REPLAY_DEFAULTS, its book in the store */
  replayGuard?: ReplayGuard
}

export interface AgentComponents {
  mesh: Mesh
  store: Store
  executor: Executor
  logger: Logger
  /** signs jobs this agent publishes with its peer key; unsigned jobs are refused by executors */
  signJob?: (fields: SignedJobFields) => Uint8Array
}

export interface Agent extends AgentApi {
  listenAddrs (): string[]
  drain (): Promise<void>
  stop (): Promise<void>
}

/** Every job in the store that has not finished, whatever the store's history: listed by
 *  state (an index), not as the newest N of all jobs, which a long history of finished ones
 *  would crowd live ones out of. */
export function unfinishedJobs (store: Store): JobRecord[] {
  return JobStates.filter(state => !TERMINAL_STATES.has(state))
    .flatMap(state => store.listJobs({ state, limit: Number.MAX_SAFE_INTEGER }))
}

/** The agent's timing constants, derived in one place (see docs/operations.md). */
export function agentTimings (init: AgentInit) {
  const advertIntervalMs = init.timings?.advertIntervalMs ?? AGENT_DEFAULTS.advertIntervalMs
  const leaseMs = init.leaseMs ?? 3000
  const leaseRenewMs = Math.max(50, Math.floor(leaseMs / 4))
  const replayWindowMs = init.timings?.replayWindowMs ?? EXECUTOR_REPLAY_DEFAULTS.windowMs
  const quorumFreshMs = Math.min(AGENT_DEFAULTS.quorumFreshAdvertIntervals * advertIntervalMs, leaseMs - leaseRenewMs)
  const finishedJobRetentionMs = Math.max(AGENT_DEFAULTS.minFinishedJobRetentionMs, init.timings?.finishedJobRetentionMs ?? AGENT_DEFAULTS.finishedJobRetentionMs)
  return {
    advertIntervalMs,
    suspectAfterMs: init.timings?.suspectAfterMs ?? AGENT_DEFAULTS.suspectAfterMs,
    goneAfterMs: init.timings?.goneAfterMs ?? AGENT_DEFAULTS.goneAfterMs,
    sweepIntervalMs: init.timings?.sweepIntervalMs ?? AGENT_DEFAULTS.sweepIntervalMs,
    finishedJobRetentionMs,
    /** how long after its publication an executor still runs a signed job (the default replay
     *  guard's window, EXECUTOR_REPLAY_DEFAULTS.windowMs) */
    replayWindowMs,
    // Never shorter than the in-memory retention, nor than the replay window: a job deleted
    // from the stores is then too old to run anywhere, so a replayed award of it is refused as
    // expired even by an executor that no longer knows it finished (jobFinished reads the
    // directory and the store).
    historyRetentionMs: Math.max(init.timings?.historyRetentionMs ?? AGENT_DEFAULTS.historyRetentionMs, finishedJobRetentionMs, replayWindowMs),
    leaseMs,
    /** four renewals per lease: three may be lost before the lease lapses (a replica's
     *  acknowledgement counts from its evidence of the mesh: AttemptUpdateAck.quorumAgeMs) */
    leaseRenewMs,
    /** see AGENT_DEFAULTS.quorumFreshAdvertIntervals */
    quorumFreshMs,
    /** see SCHEDULER_DEFAULTS.directAwardViewAgeMarginMs: an entry is an advert interval old at most */
    directAwardMaxViewAgeMs: init.scheduler?.directAwardMaxViewAgeMs ?? advertIntervalMs + (init.scheduler?.directAwardViewAgeMarginMs ?? SCHEDULER_DEFAULTS.directAwardViewAgeMarginMs),
    /** see OwnerConfig.leaseGraceMs: a replica's acknowledgement's lease runs from its
     *  evidence of the mesh (AttemptUpdateAck.quorumAgeMs), never from after a cut */
    leaseGraceMs: leaseRenewMs + AGENT_DEFAULTS.leaseGraceMarginMs,
    /** The machines' clock while work is in flight (an auction, an award, a lease, a
     *  reservation; see hasWorkInFlight): timeouts fire at most tickMs late. */
    tickMs: 50,
    /** The clock of an agent with nothing in flight: only membership (a peer gone after
     *  goneAfterMs) is checked, so a quarter second late costs nothing, and an idle agent wakes
     *  4 times a second instead of 20. Any event that can start work brings tickMs back at once. */
    idleTickMs: 250,
    /** Pending job summaries go out in one gossip message at most this often. Every agent
     *  receives each message, and in a small mesh a copy from every forwarder too, so under
     *  load it is their count that costs: at 20 jobs/s on 5 agents, 1000 ms instead of 250
     *  took 10–19 % off the agents' CPU per job (docs/benchmarks.md). Lower: listings and
     *  waits on agents other than a job's owner follow sooner (the owner's own are at once);
     *  higher: fewer gossip messages. */
    summaryFlushMs: 1000,
    /** Takeovers and view pruning are checked this often. */
    housekeepingMs: 500,
    logFlushMs: 100
  }
}

export function defaultCapacity (): { cpuMilli: number, memoryBytes: number } {
  const cores = osCpus().length * 1000
  const mem = totalmem()
  const cpuReserve = Math.max(AGENT_DEFAULTS.reserveCpuMinMilli, cores * AGENT_DEFAULTS.reserveCpuFraction)
  const memReserve = Math.max(AGENT_DEFAULTS.reserveMemoryMinBytes, mem * AGENT_DEFAULTS.reserveMemoryFraction)
  return { cpuMilli: Math.max(0, Math.floor(cores - cpuReserve)), memoryBytes: Math.max(0, Math.floor(mem - memReserve)) }
}

type AttemptResultLike = Awaited<ReturnType<Executor['run']>>

/** A member gone (silent goneAfterMs) is forgotten this much later: it no longer counts
 *  towards a majority, so a mesh that lost members for good can decide again (and a side of
 *  a cut that lasts longer may count itself a majority: docs/operations.md). */
const FORGET_GONE_MS = 60_000

/** Replicas per job: the job's group is its owner and these. A result is accepted, and a job
 *  taken over, only by a majority of the group, so the two sides of a partition never both
 *  do; with 4 replicas (a group of 5) any two agents of the group may die. */
const REPLICAS_PER_JOB = 4

/** What an owner knows of one replica's copy of a job. */
interface ReplicaCopy {
  /** how many of the job's events the replica acknowledged holding: a replication sends it
   *  only the events after those (docs/protocol.md, JobReplicate) */
  eventsHeld: number
  /** the last copy sent to it (record version, events up to), in flight or answered: kept
   *  resolves with whether the replica kept it. Forgotten when it was not kept. */
  last?: SentCopy
}

interface SentCopy {
  version: number
  eventsThrough: number
  kept: Promise<boolean>
  /** its request was handed to the mesh (it waits behind the request before it otherwise);
   *  whenHanded: who waits for that */
  handed: boolean
  whenHanded: Array<() => void>
}

/** One job's copy on its way to one replica (see sendCopies). */
interface CopyToSend {
  job: JobRecord
  events: JobEvent[]
  eventsFrom: number
  sent: SentCopy
  settle: (kept: boolean) => void
}

interface RunningContainer {
  abort: AbortController
  owner: string
  logBuffer: PendingChunk[]
  flushing?: Promise<void>
}

export async function startAgent (c: AgentComponents, init: AgentInit = {}): Promise<Agent> {
  const agent = new BidmeshAgent(c, init)
  await agent.start()
  return agent
}

class BidmeshAgent implements Agent {
  readonly peerId: string
  private readonly metrics_ = new AgentMetrics({ defaultMetrics: true })
  private readonly owner: OwnerState
  private readonly bidder: BidderState
  private readonly t: ReturnType<typeof agentTimings>
  private readonly startedAtMs = Date.now()
  // Every job this agent hears of passes through here (its own at once, others' with their
  // owners' summaries), so this is where a wait for a job to finish ends (getJob's waitMs).
  private readonly directory = createDirectory({ maxSummaries: AGENT_DEFAULTS.directoryMaxSummaries, onSet: s => { if (TERMINAL_STATES.has(s.state)) this.endFinishWaits(s.id) } })
  /** getJob calls waiting for a job to finish, by job id */
  private readonly finishWaits = new Map<string, Set<() => void>>()
  private finishWaitCount = 0
  /** The owner's term of each award this executor received (`jobId#epoch`), until the attempt
   *  starts: it labels the container, for fencing by (term, epoch). Bounded: a declined award
   *  never starts, so the oldest entries are dropped past 10,000. */
  private readonly awardTerms = new Map<string, number>()
  /** The listen addresses each peer last advertised (joined), to skip unchanged ones. */
  private readonly knownAddrs = new Map<string, string>()
  private lastAdvertAtMs = 0
  private readonly running = new Map<string, RunningContainer>()
  private readonly replies = new Map<number, (m: Message) => void>()
  private readonly summaryQueue = new Map<string, JobSummary>()
  private readonly gonePeers = new Set<string>()
  /** copies of jobs other agents own, for which this agent is a replica */
  private readonly standby = new Map<string, JobRecord>()
  /** last lease renewal an executor sent here while the owner was unreachable: when, and which
   *  attempt (see adopt) */
  private readonly standbyRenewals = new Map<string, StandbyRenewal>()
  private readonly replicateQueue = new Set<string>()
  /** jobs whose replication failed, by failures in a row: the store failed to read their
   *  copies, or no quorum of their replicas acknowledged them (see replicate) */
  private readonly replicationFailures = new Map<string, number>()
  /** jobs with a retry of a failed replication scheduled */
  private readonly replicationRetryPending = new Set<string>()
  private replicationTimer: ReturnType<typeof setTimeout> | undefined
  /** jobs whose last change reached only a quorum of their replicas: the rest get it next
   *  (queueLaggards) */
  private readonly laggardsQueue = new Set<string>()
  private laggardsTimer: ReturnType<typeof setTimeout> | undefined
  /** jobs with a replica whose copy failed: tries so far, and the timer of the next
   *  (see noteCopyForRetries) */
  private readonly laggardRetries = new Map<string, { tries: number, timer?: ReturnType<typeof setTimeout> }>()
  /** jobs whose copy must reach a quorum before someone is answered (replicateNow), with
   *  those waiting on each, for the next replication round */
  private readonly urgentReplication = new Map<string, Array<(kept: boolean) => void>>()
  /** Awards of just-submitted jobs, held until the job's first copy is on its way to its
   *  replicas (see submit): job id → the sends waiting. */
  private readonly awardsAfterFirstCopy = new Map<string, Array<{ to: string, message: Extract<Message, { type: typeof MessageType.Award }> }>>()
  private replicationRoundRunning = false
  private readonly acceptedResults = new Set<string>()
  /** finished jobs brought back from the store by a late report (ownedJob), and when: their
   *  result was accepted before they left memory, so a resent final is not logged as accepted
   *  again; and each stays a full retention from then, so that no sweep takes it away while
   *  the report it came back for is being answered */
  private readonly restoredJobs = new Map<string, number>()
  /** a history deletion is under way (see deleteOldHistory) */
  private deletingHistory = false
  private tickTimer: TickTimer | undefined
  private nextTickAtMs = Infinity
  private lastHousekeepingAtMs = 0
  private summaryTimer: ReturnType<typeof setTimeout> | undefined
  /** The fresh majority was lost since the last ownership check (see ownerQuorum). */
  private quorumLost = false
  /** Set while the owner asks its jobs' replicas whether another agent took them over. */
  private ownershipCheck: Promise<void> | undefined
  private readonly publishers: PublisherAllowlist
  private readonly replayGuard: ReplayGuard
  private nextReplyId = 1
  private timers: Array<ReturnType<typeof setInterval>> = []
  private advertScheduled = false
  private stopped = false

  constructor (private readonly c: AgentComponents, init: AgentInit) {
    // Every direct message waits for the writes before it to be durable (see durable-mesh.ts).
    this.c = { ...c, mesh: durableMesh(c.mesh, c.store) }
    this.peerId = c.mesh.peerId
    this.t = agentTimings(init)
    this.publishers = init.publishers ?? { any: true }
    // In the store, so that a restarted executor still refuses the awards it ran before.
    this.replayGuard = init.replayGuard ?? createReplayGuard({ ...EXECUTOR_REPLAY_DEFAULTS, windowMs: this.t.replayWindowMs, book: storeReplayBook(this.c.store) })
    const s = { ...SCHEDULER_DEFAULTS, ...init.scheduler }
    const def = defaultCapacity()
    this.owner = createOwner({
      selfId: this.peerId,
      bidWindowMs: s.bidWindowMs,
      awardAckTimeoutMs: s.awardAckTimeoutMs,
      leaseMs: this.t.leaseMs,
      leaseGraceMs: this.t.leaseGraceMs,
      extraCandidates: s.extraCandidates,
      directAwardMaxViewAgeMs: this.t.directAwardMaxViewAgeMs,
      directAwardDeclinesBeforeBids: s.directAwardDeclinesBeforeBids,
      explainTop: s.explainTop,
      retryBackoffBaseMs: s.retryBackoffBaseMs,
      retryBackoffMaxMs: s.retryBackoffMaxMs,
      sweepIntervalMs: this.t.sweepIntervalMs,
      suspectAfterMs: this.t.suspectAfterMs,
      goneAfterMs: this.t.goneAfterMs,
      maxLostAttempts: 10
    })
    // The capacity version starts from the clock so it keeps increasing across restarts.
    this.bidder = createBidder({
      peerId: this.peerId,
      totalCpuMilli: init.cpuMilli ?? def.cpuMilli,
      totalMemoryBytes: init.memoryBytes ?? def.memoryBytes,
      labels: init.labels ?? {},
      seq: Date.now() * 1000,
      config: { reservationTtlMs: s.reservationTtlMs, leaseMs: this.t.leaseMs, leaseRenewMs: this.t.leaseRenewMs, reportRetryMs: 1000 }
    })
  }

  // ---- lifecycle -------------------------------------------------------------------------

  async start (): Promise<void> {
    const { mesh } = this.c
    mesh.handle(async (from, message) => {
      this.metrics_.requestsServed.inc({ type: MESSAGE_TYPE_NAMES.get(message.type) ?? String(message.type) })
      return await this.onRequest(from, message)
    })
    mesh.addEventListener('gossip:received', ({ from, message }) => this.onGossip(from, message))
    // A peer whose connection dropped (its process ended, most likely) gets bids rather than
    // awards from the view until it answers a request again: see 'peer:disconnected' in the owner.
    mesh.addEventListener('peer:disconnected', ({ peer }) => { this.ownerDo({ type: 'peer:disconnected', peer }) })
    mesh.addEventListener('message:invalid', ({ channel, rejection }) => this.metrics_.invalidMessages.inc({ channel, rejection }))
    await this.recoverContainers()
    // After a restart: jobs we hold replicas of go back on standby. Jobs we owned are taken
    // up again only after asking their replicas, since one may have taken a job over while
    // we were down (a higher term); until then they wait on standby too, so an executor's
    // renewals are still acknowledged.
    const owned: JobRecord[] = []
    for (const job of unfinishedJobs(this.c.store)) {
      if (job.owner === this.peerId) owned.push(job)
      if (job.owner === this.peerId || job.replicas.includes(this.peerId)) this.standby.set(job.id, job)
    }
    if (owned.length > 0) {
      // Wait for a couple of adverts so the replicas' addresses are known again.
      const t = setTimeout(() => { void this.reclaim(owned) }, 2 * this.t.advertIntervalMs + 500)
      this.timers.push(t as unknown as ReturnType<typeof setInterval>)
    }
    this.publishAdvert()
    this.scheduleTick(this.t.tickMs)
    this.timers.push(setInterval(() => this.publishAdvert(), this.t.advertIntervalMs))
    // A tenth of the retention: a finished job leaves memory at most 10% after its time.
    this.timers.push(setInterval(() => {
      const now = Date.now()
      this.evictFinishedJobs(now)
      // (Also here: a peer found gone while this agent saw no majority was left in place.)
      this.replaceGoneReplicas(now)
      void this.auditStandby(now)
    }, Math.max(1000, this.t.finishedJobRetentionMs / 10)))
    const historyCheckMs = Math.max(1000, Math.min(3_600_000, this.t.historyRetentionMs / 10))
    // Also once soon after start: an agent restarted more often than every check would
    // otherwise never delete anything.
    this.timers.push(setTimeout(() => { void this.deleteOldHistory() }, Math.min(60_000, historyCheckMs)) as unknown as ReturnType<typeof setInterval>)
    this.timers.push(setInterval(() => { void this.deleteOldHistory() }, historyCheckMs))
  }

  /** Deletes finished jobs older than historyRetentionMs from the store, a batch at a time
   *  with the event loop free in between, so a long backlog does not hold up the agent. */
  private async deleteOldHistory (): Promise<void> {
    if (this.deletingHistory) return
    this.deletingHistory = true
    try {
      const beforeMs = Date.now() - this.t.historyRetentionMs
      let deleted = 0
      for (;;) {
        if (this.stopped) return
        const n = this.c.store.deleteFinishedJobs({ beforeMs, limit: AGENT_DEFAULTS.historyDeleteBatch })
        deleted += n
        if (n < AGENT_DEFAULTS.historyDeleteBatch) break
        await new Promise(resolve => setImmediate(resolve))
      }
      if (deleted > 0) this.c.logger.info({ deleted, beforeMs }, 'history:deleted')
    } catch (err) {
      this.c.logger.warn({ err }, 'deleting old finished jobs failed; tried again at the next check')
    } finally {
      this.deletingHistory = false
    }
  }

  /** Finished jobs whose last change is older than finishedJobRetentionMs leave the owner's
   *  memory; the store keeps them (see ownedJob for how a late report finds one). */
  private evictFinishedJobs (nowMs: number): void {
    for (const [id, oj] of this.owner.jobs) {
      const job = oj.record
      const sinceMs = Math.max(job.updatedAtMs, this.restoredJobs.get(id) ?? -Infinity)
      if (!TERMINAL_STATES.has(job.state) || nowMs - sinceMs < this.t.finishedJobRetentionMs) continue
      // Still on its way to the store or the replicas (or waiting out a failed replication's
      // backoff, see replicate): it goes on a later sweep.
      if (this.replicateQueue.has(id) || this.laggardsQueue.has(id) || this.laggardRetries.get(id)?.timer !== undefined || this.urgentReplication.has(id) || this.summaryQueue.has(id) || this.replicationFailures.has(id)) continue
      this.ownerDo({ type: 'job:evicted', jobId: id })
      if (this.owner.jobs.has(id)) continue
      this.replicaCopies.delete(id)
      this.laggardRetries.delete(id)
      this.restoredJobs.delete(id)
      for (let epoch = 0; epoch <= job.epoch; epoch++) this.acceptedResults.delete(`${id}#${epoch}`)
    }
  }

  /** When each standby copy was last checked against its owner's (auditStandby). */
  private readonly standbyAuditedAtMs = new Map<string, number>()
  private auditingStandby = false

  /**
   * A replica that was down or cut off when its job's owner replicated a change holds an old
   * copy. The owner resends while it holds the job, but a finished job leaves its memory after
   * finishedJobRetentionMs; a copy that missed the final then stayed "running" on standby for
   * good, in memory, and on disk past the history retention (which deletes finished jobs only).
   * So a standby copy unchanged for finishedJobRetentionMs is checked against its owner's, and
   * again after max(finishedJobRetentionMs, min(half its age, historyRetentionMs / 4)): a
   * missed final is caught within the retention and a sweep at first, and always well before
   * the owner deletes the finished job (historyRetentionMs after it ended), while a
   * long-running job costs each replica one query per doubling of its age, then four per
   * history retention. A newer copy is taken in as a replication would be (events included).
   * An owner that is gone is left to the takeover, which asks a majority of the group instead.
   */
  private async auditStandby (nowMs: number): Promise<void> {
    if (this.auditingStandby || this.stopped) return
    this.auditingStandby = true
    try {
      for (const id of this.standbyAuditedAtMs.keys()) if (!this.standby.has(id)) this.standbyAuditedAtMs.delete(id)
      const due: JobRecord[] = []
      for (const job of this.standby.values()) {
        if (job.owner === this.peerId || !this.isAlive(job.owner, nowMs)) continue
        const ageMs = nowMs - job.updatedAtMs
        if (ageMs < this.t.finishedJobRetentionMs) continue
        const last = this.standbyAuditedAtMs.get(job.id)
        const recheckMs = Math.max(this.t.finishedJobRetentionMs, Math.min(ageMs / 2, this.t.historyRetentionMs / 4))
        if (last !== undefined && nowMs - last < recheckMs) continue
        due.push(job)
        if (due.length >= AGENT_DEFAULTS.standbyAuditBatch) break
      }
      for (const job of due) {
        if (this.stopped) return
        this.standbyAuditedAtMs.set(job.id, nowMs)
        await this.auditStandbyCopy(job, nowMs)
      }
    } catch (err) {
      this.c.logger.warn({ err }, 'checking standby copies failed; tried again at the next sweep')
    } finally {
      this.auditingStandby = false
    }
  }

  /** One standby copy against its owner's (see auditStandby). An owner that handed the job on
   *  names the next one in its copy, which is asked in turn (a few hops at most). */
  private async auditStandbyCopy (job: JobRecord, nowMs: number): Promise<void> {
    let ask = job.owner
    for (let hop = 0; hop < 3; hop++) {
      let reply: Message
      try {
        reply = await this.c.mesh.request(ask, { type: MessageType.JobQuery, body: { id: job.id } }, { timeoutMs: 2000 })
      } catch {
        return // asked again after the interval
      }
      const own = this.standby.get(job.id)
      if (this.stopped || own === undefined || reply.type !== MessageType.JobQueryReply) return
      const copy = reply.body.job
      if (copy?.id !== job.id) {
        // The owner does not know the job. Once the job is older than the replay window no
        // executor will run it any more, and the owner has deleted it with its history: our
        // copy is all that is left of it, and nothing will ever finish it. Younger, the
        // owner lost its store, and the copy stays (see docs/operations.md).
        if (hop === 0 && ask === own.owner && nowMs - own.createdAtMs > this.t.replayWindowMs) {
          this.c.logger.info({ jobId: job.id, owner: own.owner, state: own.state }, 'standby:forgotten')
          this.forgetStandbyCopy(job.id)
        } else {
          this.c.logger.warn({ jobId: job.id, asked: ask, state: own.state }, 'standby: the owner does not know this job')
        }
        return
      }
      if (newerRecord(copy, own)) {
        this.c.logger.info({ jobId: job.id, owner: copy.owner, state: copy.state, had: own.state }, 'standby:caught-up')
        this.onReplicate([{ job: copy, events: reply.body.events, eventsFrom: 0 }])
        // A live copy that no longer lists us: we have no part in the job any more, and a
        // live record on disk that no restart loads and no history deletes would stay for good.
        if (!TERMINAL_STATES.has(copy.state) && copy.owner !== this.peerId && !copy.replicas.includes(this.peerId)) this.forgetStandbyCopy(job.id)
        return
      }
      // The one asked handed the job on: its copy names the owner after it.
      if (copy.owner === ask || copy.owner === this.peerId || !this.isAlive(copy.owner, nowMs)) return
      ask = copy.owner
    }
  }

  private forgetStandbyCopy (id: string): void {
    this.standby.delete(id)
    this.standbyRenewals.delete(id)
    this.c.store.deleteJob(id)
  }

  /** The job if this agent owns it: from memory, or, for a finished job evicted from memory,
   *  brought back from the store (as the machine's job:adopted: a finished job is only held,
   *  never offered or leased), so that a late report is answered as it was before. */
  private ownedJob (id: string): OwnerJob | undefined {
    const held = this.owner.jobs.get(id)
    if (held !== undefined) return held
    const stored = this.c.store.getJob(id)
    if (stored === undefined || stored.owner !== this.peerId || !TERMINAL_STATES.has(stored.state)) return undefined
    this.ownerDo({ type: 'job:adopted', job: stored })
    this.restoredJobs.set(id, Date.now())
    return this.owner.jobs.get(id)
  }

  /** Another agent owns this job now. Our copy keeps its own (lower) term: it is stale, and
   *  readers that compare copies by (term, version) must prefer the new owner's. Stamping the
   *  new term on our old content would let it win over the real record (a pending job that
   *  succeeded). Stored with the new owner's name, so that a late report is not answered here. */
  private releaseJob (ours: JobRecord, newOwner: string): void {
    this.c.logger.info({ jobId: ours.id, term: ours.term, owner: newOwner }, 'job:released')
    if (this.owner.jobs.has(ours.id)) this.ownerDo({ type: 'job:released', jobId: ours.id })
    this.c.store.putJob({ ...ours, owner: newOwner })
  }

  listenAddrs (): string[] { return this.c.mesh.listenAddrs() }

  private drainPromise?: Promise<void>
  /** set once the leave is announced: no more adverts, or peers would take us back */
  private left = false

  /** Stop bidding; let running attempts finish until the deadline, then hand the rest back
   *  (their owners run them elsewhere without using up a retry); make sure replicas hold the
   *  latest copy of every job this agent owns; then tell the mesh we leave, so replicas take
   *  our jobs over at once instead of after the failure-detection timeout. */
  async drain (options: { deadlineMs?: number } = {}): Promise<void> {
    this.drainPromise ??= this.runDrain(options.deadlineMs ?? 30_000)
    await this.drainPromise
  }

  private async runDrain (deadlineMs: number): Promise<void> {
    this.c.logger.info({ deadlineMs }, 'agent:draining')
    this.bidderDo({ type: 'drain:set', draining: true })
    this.publishAdvert()
    const until = async (cond: () => boolean, ms: number): Promise<void> => {
      const end = Date.now() + ms
      while (!cond() && Date.now() < end && !this.stopped) await new Promise(r => setTimeout(r, 100))
    }
    await until(() => this.running.size === 0, deadlineMs)
    for (const rc of this.running.values()) rc.abort.abort('drain')
    // Every final report acknowledged (or given up on) before we go.
    await until(() => this.bidder.allocations.size === 0, 10_000)
    const owned = [...this.owner.jobs.values()].filter(oj => !TERMINAL_STATES.has(oj.record.state)).map(oj => oj.record.id)
    // To every replica, laggards too: they are about to decide without us. The jobs waiting
    // for the laggards' flush go with them (a final accepted in the last moments).
    const lagging = [...this.laggardsQueue]
    this.laggardsQueue.clear()
    await this.replicate([...owned, ...lagging], undefined, undefined, true)
    this.left = true
    await this.c.mesh.publish(Topic.Capacity, { type: MessageType.MemberLeave, body: { peerId: this.peerId } })
    this.c.logger.info({ handedOver: owned.length }, 'agent:left')
  }

  async metrics (): Promise<{ contentType: string, body: string }> {
    // Unfinished jobs only, read by state: finished ones are counted as they finish
    // (jobsFinished), since reading a long history on every scrape would cost seconds of CPU.
    this.metrics_.jobs.reset()
    for (const state of JobStates) if (!TERMINAL_STATES.has(state)) this.metrics_.jobs.set({ state }, 0)
    for (const j of unfinishedJobs(this.c.store)) if (j.owner === this.peerId) this.metrics_.jobs.inc({ state: j.state })
    this.metrics_.jobsInMemory.set(this.owner.jobs.size)
    this.metrics_.peers.set(this.c.mesh.connectedPeers().length)
    for (const [topic, st] of Object.entries(this.c.mesh.gossipStats())) {
      this.metrics_.gossipBytes.set({ topic, direction: 'sent' }, st.sentBytes)
      this.metrics_.gossipBytes.set({ topic, direction: 'received' }, st.receivedBytes)
    }
    return { contentType: this.metrics_.registry.contentType, body: await this.metrics_.registry.metrics() }
  }

  async stop (): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    for (const t of this.timers) clearInterval(t)
    this.tickTimer?.clear()
    clearTimeout(this.summaryTimer)
    if (this.replicationTimer !== undefined) clearTimeout(this.replicationTimer)
    if (this.laggardsTimer !== undefined) clearTimeout(this.laggardsTimer)
    for (const r of this.laggardRetries.values()) clearTimeout(r.timer)
    for (const r of this.running.values()) r.abort.abort()
    for (const id of [...this.finishWaits.keys()]) this.endFinishWaits(id)
    await this.c.mesh.stop().catch(() => {})
    this.c.store.close()
  }

  /** After a restart: reattach to containers of attempts this agent was running, record
   *  the result of those that finished meanwhile, and remove containers that are ours but
   *  belong to no attempt we know (left by a crash between create and record). */
  private async recoverContainers (): Promise<void> {
    let managed: Awaited<ReturnType<Executor['listManaged']>>
    try {
      managed = await this.c.executor.listManaged()
    } catch (err) {
      this.c.logger.warn({ err: String(err) }, 'could not list managed containers')
      return
    }
    const running = this.c.store.listRunning()
    const known = new Set(running.map(r => `${r.jobId}#${r.epoch}`))
    for (const ct of managed) {
      if (ct.node === this.peerId && !known.has(`${ct.jobId}#${ct.epoch}`)) await this.c.executor.remove(ct.containerId).catch(() => {})
    }
    for (const r of running) {
      const ct = managed.find(m => m.containerId === r.containerId || (m.jobId === r.jobId && m.epoch === r.epoch))
      const spec = r.spec as JobSpec
      if (ct === undefined || r.startedAtMs === undefined) {
        // Never started (or its container is gone): hand it back so the owner runs it elsewhere.
        this.bidderDo({ type: 'attempt:recovered', jobId: r.jobId, epoch: r.epoch, owner: r.owner, replicas: r.replicas ?? [], spec, ...(r.startedAtMs !== undefined ? { startedAtMs: r.startedAtMs } : {}) })
        if (ct !== undefined) await this.c.executor.remove(ct.containerId).catch(() => {})
        this.bidderDo({ type: 'attempt:exited', jobId: r.jobId, epoch: r.epoch, update: { finishedAtMs: Date.now(), exitCode: null, reason: 'lost', error: 'container lost in an agent restart' } })
        continue
      }
      this.c.logger.info({ jobId: r.jobId, epoch: r.epoch, containerId: ct.containerId, running: ct.running }, 'container:reattached')
      this.bidderDo({ type: 'attempt:recovered', jobId: r.jobId, epoch: r.epoch, owner: r.owner, replicas: r.replicas ?? [], spec, startedAtMs: r.startedAtMs })
      this.watchAttempt(r.jobId, r.epoch, r.owner, spec, signal => this.c.executor.reattach({ jobId: r.jobId, epoch: r.epoch, spec, containerId: ct.containerId, startedAtMs: r.startedAtMs! }, { signal, onOutput: this.outputSink(`${r.jobId}#${r.epoch}`) }))
    }
  }

  /** The next tick comes within delayMs: an earlier one already due stays, a later one is
   *  brought forward. One timer, so an idle agent's clock costs one wakeup per idleTickMs. */
  private scheduleTick (delayMs: number): void {
    if (this.stopped) return
    const at = Date.now() + delayMs
    if (this.tickTimer !== undefined && this.nextTickAtMs <= at) return
    this.tickTimer?.clear()
    this.nextTickAtMs = at
    this.tickTimer = setTickTimer(delayMs, stalledMs => {
      this.tickTimer = undefined
      this.nextTickAtMs = Infinity
      try {
        if (stalledMs > 0) {
          if (stalledMs >= 1000) this.c.logger.warn({ stalledMs }, 'clock:stalled')
          this.ownerDo({ type: 'clock:stalled', stalledMs })
          this.bidderDo({ type: 'clock:stalled', stalledMs })
        }
        this.tick()
      } finally {
        this.scheduleTick(this.hasWorkInFlight() ? this.t.tickMs : this.t.idleTickMs)
      }
    }, { stallMs: AGENT_DEFAULTS.stallMs })
  }

  /** Anything whose timeouts the machines must see on time (see agentTimings.tickMs): the
   *  owner's pending jobs (retry backoff, the sweep) and open rounds, awards and leases; the
   *  bidder's reservations (their TTL) and allocations (renewals, reports to retry). A replica
   *  on standby has no deadline of its own (takeovers are checked every housekeepingMs), nor
   *  do replication (its own timer) and an ownership check (its answer reaches the owner at
   *  the next tick, idle or not). */
  private hasWorkInFlight (): boolean {
    return this.owner.pending.size > 0 || this.owner.active.size > 0 ||
      this.bidder.reservations.size > 0 || this.bidder.allocations.size > 0 // a running container holds an allocation
  }

  private tick (): void {
    const now = Date.now()
    this.bidderDo({ type: 'tick' })
    let someGone = false
    // Membership: a peer whose adverts stopped for goneAfterMs is gone. Tell the owner once.
    for (const e of this.owner.view.entries.values()) {
      const peer = e.capacity.peerId
      if (peer === this.peerId) continue
      const l = liveness(e, now, this.owner.config)
      if (l === 'gone' && !this.gonePeers.has(peer)) {
        this.gonePeers.add(peer)
        this.knownAddrs.delete(peer)
        this.c.logger.info({ peer }, 'peer:gone')
        this.ownerDo({ type: 'peer:gone', peer })
        someGone = true
      } else if (l !== 'gone') this.gonePeers.delete(peer)
    }
    const quorum = this.ownerQuorum(now)
    this.ownerDo({ type: 'tick', quorum, mayOffer: this.freshHalf(now) })
    if (someGone) this.replaceGoneReplicas(now)
    // (or the clock stepped back: housekeeping must not stop until it catches up)
    if (now - this.lastHousekeepingAtMs >= this.t.housekeepingMs || now < this.lastHousekeepingAtMs) {
      this.lastHousekeepingAtMs = now
      // Forget peers gone for a minute: they no longer count towards a majority.
      pruneView(this.owner.view, now, this.owner.config.goneAfterMs, FORGET_GONE_MS)
      this.checkTakeovers(now)
    }
  }

  // ---- replication and takeover ------------------------------------------------------------

  /** This agent sees a majority of the members it knows as alive. A side of a partition that
   *  does not, neither takes jobs over nor accepts final results, so two sides never both do. */
  private meshMajority (now = Date.now()): boolean {
    return this.majorityOfView(e => liveness(e, now, this.owner.config) === 'alive')
  }

  /** A majority of the known members heard from within quorumFreshMs (this agent counts).
   *  Stricter than meshMajority: it is what an owner needs before re-running an attempt whose
   *  lease lapsed (see AGENT_DEFAULTS.quorumFreshAdvertIntervals for why the window is shorter than a lease). */
  private freshMajority (now = Date.now()): boolean {
    const { members, heard } = countHeardWithin(this.owner.view, this.peerId, now, this.t.quorumFreshMs)
    return heard * 2 > members
  }

  /** At least half of the known members heard from within quorumFreshMs (this agent counts):
   *  then no other side of a partition can hold a majority, which re-running, taking over or
   *  accepting anything needs. What an owner needs to offer jobs, and an owner or a replica to
   *  acknowledge a lease renewal: an even split (two agents, one gone) stops neither side. */
  private freshHalf (now = Date.now()): boolean {
    // The same as halfHeardAgeMs(...) <= quorumFreshMs (the age a replica's acknowledgement
    // reports), without a sort of the view on every update served.
    const { members, heard } = countHeardWithin(this.owner.view, this.peerId, now, this.t.quorumFreshMs)
    return heard * 2 >= members
  }

  /** What the owner machine gets as `quorum`: a fresh majority, and, when that majority has
   *  just come back (a partition healed), not before this owner has asked its jobs' replicas
   *  whether the other side took any of them over. Without that check, a healed owner re-runs
   *  a lease that lapsed while it was cut off (its executor kept renewing with the new owner)
   *  in the instant between hearing the majority's adverts and hearing of the takeover. */
  private ownerQuorum (now: number): boolean {
    if (!this.freshMajority(now)) {
      this.quorumLost = true
      return false
    }
    if (this.quorumLost) {
      this.quorumLost = false
      const check = this.checkOwnership().finally(() => { if (this.ownershipCheck === check) this.ownershipCheck = undefined })
      this.ownershipCheck = check
    }
    return this.ownershipCheck === undefined
  }

  /** Asks the replicas of each unfinished job this agent owns (one with an attempt under way
   *  would be re-run once its lease lapsed, a pending one offered) for their copy, and lets go
   *  of each job someone else now holds under a higher term. Fails closed: a job counts as checked only once enough
   *  replicas answered that, with this owner, they are a majority of its group (a takeover
   *  needs such a majority, so it would show in one of them); unanswered jobs are asked again
   *  every second while the majority lasts. Replicas this agent no longer sees alive cannot
   *  answer: a job with too few alive ones is checked against those it has. */
  private async checkOwnership (): Promise<void> {
    let todo = [...this.owner.jobs.values()]
      .filter(oj => !TERMINAL_STATES.has(oj.record.state))
      .map(oj => oj.record.id)
    // The jobs under check are not offered until checked (a pending one may have been taken
    // over); jobs submitted meanwhile are, as are those checked already. A job left unchecked
    // (the majority went again) stays held: the next check, once a majority is back, holds
    // every unfinished job again and lets each go as it is checked. A check replaced by a
    // newer one lets nothing go.
    const generation = ++this.ownershipCheckGeneration
    this.ownerDo({ type: 'offers:held', jobIds: todo })
    while (todo.length > 0 && !this.stopped) {
      const unsettled: string[] = []
      // At most 32 jobs at once: a heal must not flood the replicas it has just found again.
      for (let i = 0; i < todo.length; i += 32) {
        const batch = todo.slice(i, i + 32)
        const settled = await Promise.all(batch.map(async id => {
          try {
            return await this.checkOwnershipOf(id)
          } catch (err) {
            this.c.logger.warn({ jobId: id, err: String(err) }, 'ownership check failed; asked again')
            return false
          }
        }))
        batch.forEach((id, k) => { if (!settled[k]) unsettled.push(id) })
        if (this.stopped || generation !== this.ownershipCheckGeneration) return
        this.ownerDo({ type: 'offers:resumed', jobIds: batch.filter((_, k) => settled[k]) })
      }
      todo = unsettled
      if (todo.length === 0 || !this.freshMajority(Date.now())) return
      await new Promise(resolve => setTimeout(resolve, 1000))
    }
  }

  private ownershipCheckGeneration = 0

  /** true when settled: released, no longer ours, or a majority of the group confirmed it. */
  private async checkOwnershipOf (id: string): Promise<boolean> {
    const mine = this.owner.jobs.get(id)?.record
    if (mine === undefined || TERMINAL_STATES.has(mine.state)) return true
    const now = Date.now()
    const asked = mine.replicas.filter(r => r !== this.peerId && this.isAlive(r, now))
    const answers = await this.askForCopies(id, asked)
    if (this.stopped) return true
    let newer: JobRecord | undefined
    for (const { copy: c } of answers) if (c !== undefined && c.owner !== mine.owner && newerRecord(c, mine) && (newer === undefined || newerRecord(c, newer))) newer = c
    if (!this.owner.jobs.has(id)) return true
    if (newer !== undefined) {
      this.ownerDo({ type: 'job:released', jobId: id })
      this.followNewerCopy(newer)
      return true
    }
    return 1 + answers.length >= Math.min(groupMajority(mine.replicas.length), 1 + asked.length)
  }

  /** Another agent owns this job now (newer is its copy): keep that copy, and stand by for
   *  it when this agent is one of its replicas. */
  private followNewerCopy (newer: JobRecord): void {
    this.c.logger.info({ jobId: newer.id, owner: newer.owner, term: newer.term }, 'job:released')
    this.c.store.putJob(newer)
    if (!TERMINAL_STATES.has(newer.state) && newer.replicas.includes(this.peerId)) this.standby.set(newer.id, newer)
  }

  /** Asks each peer for its copy of a job (2 s each, all at once): one answer per peer that
   *  answered at all, with the copy it holds, if any. */
  private async askForCopies (id: string, peers: string[]): Promise<CopyAnswer[]> {
    const answers: CopyAnswer[] = []
    await Promise.all(peers.map(async peer => {
      try {
        const r = await this.c.mesh.request(peer, { type: MessageType.JobQuery, body: { id } }, { timeoutMs: 2000 })
        if (r.type !== MessageType.JobQueryReply) return
        answers.push(r.body.job?.id === id ? { peer, copy: r.body.job } : { peer })
      } catch {}
    }))
    return answers
  }

  /** Whether more than half of the members in this agent's view pass `counts`. */
  private majorityOfView (counts: (e: ViewEntry) => boolean): boolean {
    let known = 0
    let yes = 0
    for (const e of this.owner.view.entries.values()) {
      known++
      if (counts(e)) yes++
    }
    return yes * 2 > known
  }

  private isAlive (peer: string, now = Date.now()): boolean {
    if (peer === this.peerId) return true
    const e = this.owner.view.entries.get(peer)
    return e !== undefined && liveness(e, now, this.owner.config) === 'alive'
  }

  /** Gives the unfinished jobs this agent owns new replicas in place of gone ones, and up to
   *  REPLICAS_PER_JOB for those with fewer (replacementReplicas in scheduler/takeover.ts):
   *  checked when a peer is found gone, and at each sweep. Not without a fresh majority in
   *  view, nor during an ownership check: a cut-off owner would move its jobs' groups to its
   *  own side of the partition, where its replicas would never hear that the majority side
   *  took the jobs over, and its ownership check after the heal would ask only them. Finished
   *  jobs keep their groups: their copies are only read. */
  private replaceGoneReplicas (now: number): void {
    // Checked once for the sweep, not per job: a count over the whole view.
    if (!this.mayMoveGroups(now)) return
    for (const oj of this.owner.jobs.values()) if (!TERMINAL_STATES.has(oj.record.state)) this.replaceGoneReplicasOf(oj, now)
  }

  /** A peer as replica choices see it: alive, gone, or neither (suspect, or not heard yet
   *  since this agent started: that counts as gone only once `unheardGoneAfterMs` has passed,
   *  goneAfterMs unless a caller needs more certainty). A peer not in the view was forgotten
   *  (gone a minute, see pruneView). */
  private peerStatus (peer: string, now: number, unheardGoneAfterMs = this.owner.config.goneAfterMs): 'alive' | 'gone' | 'other' {
    const e = this.owner.view.entries.get(peer)
    if (e === undefined) return now - this.startedAtMs >= unheardGoneAfterMs ? 'gone' : 'other'
    const l = liveness(e, now, this.owner.config)
    return l === 'suspect' ? 'other' : l
  }

  private mayMoveGroups (now: number): boolean {
    return this.freshMajority(now) && this.ownershipCheck === undefined
  }

  /** One job's part of replaceGoneReplicas; the caller checked mayMoveGroups. */
  private replaceGoneReplicasOf (oj: OwnerJob, now: number): void {
    const job = oj.record
    const change = replacementReplicas(job.id, job.replicas, this.owner.view.entries.keys(), peer => this.peerStatus(peer, now), this.peerId, REPLICAS_PER_JOB)
    if (change === undefined) return
    const copies = this.replicaCopies.get(job.id)
    for (const r of change.removed) copies?.delete(r)
    this.c.logger.info({ jobId: job.id, removed: change.removed, added: change.added }, 'job:replicas')
    const detail = change.removed.length > 0
      ? `replicas ${change.removed.join(', ')} gone; ${change.added.join(', ')} in their place`
      : `replicas ${change.added.join(', ')} added (the group had ${job.replicas.length})`
    this.ownerDo({ type: 'job:replicas', jobId: job.id, replicas: change.replicas, detail })
  }

  /** Replicas: the alive peers ranked highest by rendezvous hashing on the job id, so any
   *  agent can tell who holds a job from the id and the membership alone. */
  private chooseReplicas (jobId: string, exclude: string[], count = REPLICAS_PER_JOB): string[] {
    const now = Date.now()
    return rankReplicas(jobId, [...this.owner.view.entries.keys()], p => p !== this.peerId && !exclude.includes(p) && this.isAlive(p, now)).slice(0, count)
  }

  /** jobId → replica → what the owner knows of that replica's copy (ReplicaCopy) */
  private readonly replicaCopies = new Map<string, Map<string, ReplicaCopy>>()

  /** What we know of a replica's copy of a job; a fresh entry when nothing yet. */
  private replicaCopy (jobId: string, replica: string): ReplicaCopy {
    let copies = this.replicaCopies.get(jobId)
    if (copies === undefined) {
      copies = new Map()
      this.replicaCopies.set(jobId, copies)
    }
    let copy = copies.get(replica)
    if (copy === undefined) {
      copy = { eventsHeld: 0 }
      copies.set(replica, copy)
    }
    return copy
  }

  /** A job's replicas in the order its copies go to them: the best-ranked (rankReplicas) of
   *  those that look reachable (alive, connection not known dropped) first, then the rest.
   *  The first replicaQuorum of them are sent each change at once; the others lag (see
   *  AGENT_DEFAULTS.replicationLaggardsMs) and stand in for a quorum copy that fails. */
  private replicaOrder (job: JobRecord, now: number): string[] {
    const reachable = (peer: string): boolean => this.isAlive(peer, now) && this.owner.view.entries.get(peer)?.disconnected !== true
    const first = rankReplicas(job.id, job.replicas, reachable)
    return [...first, ...rankReplicas(job.id, job.replicas, peer => !first.includes(peer))]
  }

  /** Sends the current record of each job to a quorum of its replicas (the first of
   *  replicaOrder; all of them when toAll); resolves with the ids that a quorum of replicas
   *  acknowledged (with the owner, a majority of the job's group), as soon as every job has its
   *  quorum or has heard from every replica sent a copy. The others, behind, get theirs from
   *  the laggards' flush (queueLaggards), or at once in place of a quorum copy that failed or
   *  was not acknowledged within replicationHedgeMs. The slower replicas' answers still arrive
   *  and are handled after that: a caller waits for the quorum's disk flushes, not for the
   *  slowest of the group's. onDecided hears of each job as soon as it is decided (kept: it
   *  has its quorum), for a caller that answers per job (replicateNow). onHanded hears of each
   *  job once every quorum copy of it is on its way (its requests handed to the mesh, or a
   *  copy of this very version already out), or at once if it has no replicas; a job whose
   *  copies could not be read never is. */
  private async replicate (jobIds: string[], onDecided?: (jobId: string, kept: boolean) => void, onHanded?: (jobId: string) => void, toAll = false): Promise<Set<string>> {
    type Plan = { replica: string, copy: ReplicaCopy, from: number, events: JobEvent[] }
    const byPeer = new Map<string, CopyToSend[]>()
    /** jobs still waiting for their quorum: acknowledgements so far, copies yet to answer */
    const waiting = new Map<string, { acks: number, unanswered: number }>()
    /** per job still waiting: the replicas behind that were not sent a copy, in order (their
     *  events are read only if one is sent: most never are, and get the laggards' flush) */
    const spares = new Map<string, Array<{ replica: string, copy: ReplicaCopy }>>()
    const done = new Set<string>()
    /** jobs with copies not yet handed to the mesh: how many */
    const unhanded = new Map<string, number>()
    const handedOne = (id: string): void => {
      const left = (unhanded.get(id) ?? 0) - 1
      if (left > 0) { unhanded.set(id, left); return }
      if (unhanded.delete(id)) onHanded?.(id)
    }
    const toSend = (job: JobRecord, plan: Plan): CopyToSend => {
      let settle!: (kept: boolean) => void
      const sent: SentCopy = { version: job.version, eventsThrough: plan.from + plan.events.length, kept: new Promise<boolean>(resolve => { settle = resolve }), handed: false, whenHanded: [] }
      plan.copy.last = sent
      return { job, events: plan.events, eventsFrom: plan.from, sent, settle }
    }
    let allDecided!: () => void
    const decided = new Promise<void>(resolve => { allDecided = resolve })
    const now = Date.now()
    for (const id of new Set(jobIds)) {
      const job = this.owner.jobs.get(id)?.record
      if (job === undefined) continue
      if (job.replicas.length === 0) { done.add(id); onHanded?.(id); continue }
      const order = toAll ? job.replicas : this.replicaOrder(job, now)
      const quorumCopies = toAll ? order.length : replicaQuorum(order.length)
      // Read everything this job's copies need before any bookkeeping changes: a store that
      // fails a read (a disk error) leaves no copy marked as on its way that never leaves.
      let plans: Array<{ last: NonNullable<ReplicaCopy['last']> } | Plan | { replica: string, copy: ReplicaCopy, behind: true }>
      try {
        const total = this.c.store.eventCount(id)
        // Replicas usually hold the same events: read each starting point once.
        const read = new Map<number, JobEvent[]>()
        plans = order.map((replica, rank) => {
          const copy = this.replicaCopy(id, replica)
          // This very copy went to the replica already, or is on its way: its answer is this
          // one's. A submit's and a result's own replication cross the batched one that the
          // same change queued; sending the copy again would only be a second write of it.
          const last = copy.last
          if (last !== undefined && last.version === job.version && last.eventsThrough >= total) return { last }
          if (rank >= quorumCopies) return { replica, copy, behind: true as const }
          return this.planCopy(id, replica, copy, total, read)
        })
      } catch (err) {
        // Not sent now, so not kept: a waiting submit or result is answered so at once.
        this.retryReplication(id, 'replication: could not read the job from the store', err)
        onDecided?.(id, false)
        continue
      }
      const w = { acks: 0, unanswered: 0 }
      waiting.set(id, w)
      let toHand = 0
      const behind: Array<{ replica: string, copy: ReplicaCopy }> = []
      plans.forEach((plan, rank) => {
        if ('last' in plan) {
          // A laggard's copy already out counts as it answers; only the quorum's waits to be handed.
          w.unanswered++
          void plan.last.kept.then(kept => { answered(job, kept) })
          if (rank < quorumCopies && !plan.last.handed) { toHand++; plan.last.whenHanded.push(() => { handedOne(id) }) }
          return
        }
        if ('behind' in plan) { behind.push(plan); return }
        w.unanswered++
        toHand++
        const list = byPeer.get(plan.replica) ?? []
        list.push(toSend(job, plan))
        byPeer.set(plan.replica, list)
      })
      if (behind.length > 0) {
        spares.set(id, behind)
        this.queueLaggards(id)
      }
      if (toHand === 0) onHanded?.(id)
      else unhanded.set(id, toHand)
    }
    /** spares due, by replica: sent together at the end of the step (one request per
     *  replica, not per job, when a request of many jobs fails or a round is hedged) */
    const sparesDue = new Map<string, CopyToSend[]>()
    /** Sends a waiting job's copy to its next replica behind (all of them: `count` Infinity),
     *  in place of one that failed or is slow. */
    const sendSpares = (id: string, count: number): void => {
      const behind = spares.get(id)
      const w = waiting.get(id)
      // Released meanwhile (a replica named it stale): not ours to copy.
      const job = this.owner.jobs.get(id)?.record
      if (behind === undefined || w === undefined || job === undefined) return
      let total: number
      try { total = this.c.store.eventCount(id) } catch (err) { this.retryReplication(id, 'replication: could not read the job from the store', err); return }
      const read = new Map<number, JobEvent[]>()
      for (let sent = 0; sent < count && behind.length > 0;) {
        const { replica, copy } = behind.shift()!
        // The laggards' flush (or another call) got this copy, or a newer one, out meanwhile:
        // its answer is this one's, and a second write of it would only cost.
        const last = copy.last
        if (last !== undefined && last.version >= job.version && last.eventsThrough >= total) {
          w.unanswered++
          sent++
          void last.kept.then(kept => { answered(job, kept) })
          continue
        }
        let plan: Plan
        try { plan = this.planCopy(id, replica, copy, total, read) } catch (err) { this.retryReplication(id, 'replication: could not read the job from the store', err); continue }
        w.unanswered++
        sent++
        if (sparesDue.size === 0) queueMicrotask(sendSparesDue)
        const list = sparesDue.get(replica) ?? []
        list.push(toSend(job, plan))
        sparesDue.set(replica, list)
      }
    }
    const sendSparesDue = (): void => {
      const due = [...sparesDue]
      sparesDue.clear()
      for (const [peer, copies] of due) void this.sendCopies(peer, copies, answered)
    }
    const answered = (job: JobRecord, ok: boolean): void => {
      const w = waiting.get(job.id)
      if (w === undefined) return // decided already
      if (ok) w.acks++
      w.unanswered--
      const quorum = replicaQuorum(job.replicas.length)
      if (w.acks >= quorum) done.add(job.id)
      // A copy failed, and the ones still out cannot make the quorum: the next replica stands in.
      else if (!ok && w.acks + w.unanswered < quorum) sendSpares(job.id, 1)
      if (done.has(job.id) || w.unanswered === 0) {
        waiting.delete(job.id)
        spares.delete(job.id)
        if (done.has(job.id)) this.replicationFailures.delete(job.id)
        // Every replica answered and too few kept it: until a later change happens to carry
        // it, no quorum would hold this record (a submit answered meanwhile, a result).
        else this.retryReplication(job.id, 'replication: no quorum of the job\'s replicas holds it')
        onDecided?.(job.id, done.has(job.id))
        if (waiting.size === 0) allDecided()
      }
    }
    if (waiting.size === 0) allDecided()
    // The hedge: a job still short of its quorum after replicationHedgeMs is sent to every
    // replica behind as well (as if it had no laggards): a dead replica not yet known gone
    // then holds no one for the request timeout.
    const hedge = spares.size === 0
      ? undefined
      : setTimeout(() => {
        if (this.stopped) return
        for (const id of [...waiting.keys()]) sendSpares(id, Infinity)
      }, AGENT_DEFAULTS.replicationHedgeMs)
    for (const [peer, copies] of byPeer) void this.sendCopies(peer, copies, answered, handedOne)
    try {
      await decided
    } finally {
      clearTimeout(hedge)
    }
    return done
  }

  /** What a replica is sent of a job: the events after those it acknowledged holding (a
   *  store read, shared through `read` by the replicas that start at the same event). */
  private planCopy (jobId: string, replica: string, copy: ReplicaCopy, total: number, read: Map<number, JobEvent[]>): { replica: string, copy: ReplicaCopy, from: number, events: JobEvent[] } {
    const from = Math.min(copy.eventsHeld, total)
    let events = read.get(from)
    if (events === undefined) { events = this.c.store.events(jobId, { from, limit: 1000 }); read.set(from, events) }
    return { replica, copy, from, events }
  }

  /** Sends copies to one replica, in requests of up to 100 jobs, and books its answers. */
  private async sendCopies (peer: string, copies: CopyToSend[], answered: (job: JobRecord, kept: boolean) => void, handedOne?: (jobId: string) => void): Promise<void> {
    for (let i = 0; i < copies.length; i += 100) {
      const batch = copies.slice(i, i + 100)
      let ok = false
      let stale: string[] = []
      let gaps: string[] = []
      try {
        const jobs = batch.map(({ job, events, eventsFrom }) => ({ job, events, eventsFrom }))
        const request = this.c.mesh.request(peer, { type: MessageType.JobReplicate, body: { from: this.peerId, jobs } }, { timeoutMs: 2000 })
        for (const { job, sent } of batch) {
          sent.handed = true
          for (const waiter of sent.whenHanded.splice(0)) waiter()
          handedOne?.(job.id)
        }
        const r = await request
        // A replica that knows a higher term for a job: someone took it over while we were
        // cut off. Stop acting for it; readers find the newer copy by term. Its answer is
        // no acknowledgement of our copy.
        stale = r.type === MessageType.Ack ? r.body.staleJobs ?? [] : []
        for (const id of stale) {
          const mine = this.owner.jobs.get(id)
          if (mine !== undefined) this.releaseJob(mine.record, peer)
        }
        ok = r.type === MessageType.Ack && r.body.ok
        gaps = r.type === MessageType.Ack ? r.body.eventGaps ?? [] : []
      } catch (err) {
        this.c.logger.debug({ peer, err: String(err) }, 'replication failed')
      }
      for (const j of batch) {
        const kept = ok && !stale.includes(j.job.id)
        const gap = kept && gaps.includes(j.job.id)
        // Only for a job still held: one evicted or released meanwhile keeps no bookkeeping
        // (a late answer must not bring its entry back for good).
        const copy = this.owner.jobs.has(j.job.id) ? this.replicaCopy(j.job.id, peer) : undefined
        if (copy !== undefined) {
          // The replica kept the record; its events run to ours, or (a gap: it lost some, or
          // never had them) are resent from the first next time.
          if (kept) copy.eventsHeld = gap ? 0 : Math.max(copy.eventsHeld, j.eventsFrom + j.events.length)
          // Not kept (or kept with a gap): the next replication sends it again, in full
          // (unless a newer copy went out meanwhile).
          if ((!kept || gap) && copy.last === j.sent) copy.last = undefined
          if (gap) this.queueReplication(j.job.id)
          // A copy the replica named stale is not retried: the job is no longer ours.
          if (!stale.includes(j.job.id)) this.noteCopyForRetries(j.job.id, peer, kept)
        }
        j.settle(kept)
        answered(j.job, kept)
      }
    }
  }

  /** The replicas a job's last change did not go to get it within
   *  AGENT_DEFAULTS.replicationLaggardsMs, with every other job changed meanwhile. */
  private queueLaggards (jobId: string): void {
    this.laggardsQueue.add(jobId)
    if (this.laggardsTimer !== undefined || this.stopped) return
    this.laggardsTimer = setTimeout(() => {
      this.laggardsTimer = undefined
      if (this.laggardsQueue.size === 0 || this.stopped) return
      // Jobs in a failed replication's backoff wait for their retry (which sends to the
      // quorum and queues them here again): a send now would be outside the backoff.
      const ids = [...this.laggardsQueue].filter(id => !this.replicationRetryPending.has(id))
      this.laggardsQueue.clear()
      void this.replicate(ids, undefined, undefined, true)
    }, AGENT_DEFAULTS.replicationLaggardsMs)
  }

  /** Books a copy's answer for the laggards' retries. A copy that failed (a laggard's, or a
   *  quorum replica's that a spare stood in for) leaves its replica behind until the job's
   *  next change, and a finished job has none: the job goes to the laggards' flush again
   *  after replicationLaggardsMs × 2^(tries − 1), up to AGENT_DEFAULTS.laggardRetries times,
   *  which sends every replica without a copy on record. A replica known gone is not retried
   *  (an unfinished job's is replaced, replaceGoneReplicas; a finished job's stays without
   *  it). Once every replica holds a copy again, the job counts afresh; until then, a job
   *  that used up its tries gets no more (its next change still goes to every replica). */
  private noteCopyForRetries (jobId: string, peer: string, kept: boolean): void {
    const retry = this.laggardRetries.get(jobId)
    const now = Date.now()
    if (kept) {
      if (retry === undefined || retry.timer !== undefined) return
      const copies = this.replicaCopies.get(jobId)
      const job = this.owner.jobs.get(jobId)?.record
      if (job === undefined || job.replicas.every(r => copies?.get(r)?.last !== undefined || this.peerStatus(r, now) === 'gone')) this.laggardRetries.delete(jobId)
      return
    }
    if (this.stopped || this.peerStatus(peer, now) === 'gone') return
    if (retry?.timer !== undefined) return // one retry at a time; it sends whatever is newest
    const tries = (retry?.tries ?? 0) + 1
    if (tries > AGENT_DEFAULTS.laggardRetries) {
      // Given up, and kept so (until every replica holds a copy, or the job leaves memory):
      // the other replicas that failed in the same flush must not start a chain of their own.
      if (tries > AGENT_DEFAULTS.laggardRetries + 1) return
      this.laggardRetries.set(jobId, { tries })
      // Debug, not warn: a replica that fails every request while it looks alive (a broken
      // disk) would otherwise log a line per job it lags on.
      this.c.logger.debug({ jobId, peer, tries: tries - 1 }, 'replication: a replica still behind after every retry')
      return
    }
    const timer = setTimeout(() => {
      const r = this.laggardRetries.get(jobId)
      if (r !== undefined) r.timer = undefined
      if (this.stopped || !this.owner.jobs.has(jobId)) { this.laggardRetries.delete(jobId); return }
      this.queueLaggards(jobId)
    }, AGENT_DEFAULTS.replicationLaggardsMs * 2 ** (tries - 1))
    timer.unref?.()
    this.laggardRetries.set(jobId, { tries, timer })
  }

  /** Sends a job's copies again after a backoff (replicationBatchMs × 2^(failures − 1), at
   *  most replicationRetryMaxMs), until a quorum of its replicas holds them: a disk that failed
   *  a read is likely to fail the next one too, and replicas that did not answer are likely
   *  still away; a retry every batch (25 ms) with a warning each time would flood the log
   *  while changing nothing. */
  private retryReplication (id: string, message: string, err?: unknown): void {
    if (!this.owner.jobs.has(id) || this.stopped) return // released or evicted: no longer ours to copy
    const failures = (this.replicationFailures.get(id) ?? 0) + 1
    this.replicationFailures.set(id, failures)
    const retryInMs = Math.min(AGENT_DEFAULTS.replicationRetryMaxMs, AGENT_DEFAULTS.replicationBatchMs * 2 ** (failures - 1))
    if (failures === 1 || failures % 10 === 0) this.c.logger.warn({ jobId: id, failures, retryInMs, ...(err !== undefined ? { err: String(err) } : {}) }, message)
    // One retry per job at a time: a change made meanwhile rides on it rather than starting
    // a second chain of retries.
    if (this.replicationRetryPending.has(id)) return
    this.replicationRetryPending.add(id)
    const retry = setTimeout(() => {
      this.replicationRetryPending.delete(id)
      if (this.stopped) return
      const oj = this.owner.jobs.get(id)
      if (oj === undefined) {
        this.replicationFailures.delete(id)
        return
      }
      // Replicas gone for good would never answer: others take their places (a finished
      // job's too, here, or it would be retried, and kept in memory, for ever).
      const now = Date.now()
      if (this.mayMoveGroups(now)) this.replaceGoneReplicasOf(oj, now)
      this.queueReplication(id)
    }, retryInMs)
    retry.unref?.()
  }

  /** Replicates a job's record now, for a caller that answers someone once a quorum holds it
   *  (a submit's client, a final result's executor); resolves true when a quorum did.
   *
   *  Group commit: one round of replication is out at a time, and everything asked for while
   *  it is out goes together in the next, one request per replica. Alone, a job goes out at
   *  once (after the current synchronous step); under load, N jobs arriving during a round
   *  trip share one request per replica instead of N each, at the price of waiting for the
   *  round before theirs (one round trip and a replica's disk flush, usually). Changes queued
   *  for the batched flush ride along in the same requests. Each caller is answered as soon as
   *  its own job is decided, and the next round waits at most replicationRoundMaxWaitMs for
   *  the one before: a job whose replicas are slow (down, and not yet known to be gone) holds
   *  up no one else's answer. */
  private async replicateNow (jobId: string): Promise<boolean> {
    this.replicateQueue.delete(jobId)
    const kept = new Promise<boolean>(resolve => {
      const waiting = this.urgentReplication.get(jobId)
      if (waiting !== undefined) waiting.push(resolve)
      else this.urgentReplication.set(jobId, [resolve])
    })
    if (!this.replicationRoundRunning) {
      this.replicationRoundRunning = true
      queueMicrotask(() => { void this.runReplicationRounds() })
    }
    return await kept
  }

  private async runReplicationRounds (): Promise<void> {
    try {
      while (this.urgentReplication.size > 0 && !this.stopped) {
        const round = new Map(this.urgentReplication)
        this.urgentReplication.clear()
        const ids = [...round.keys(), ...this.replicateQueue]
        this.replicateQueue.clear()
        const settle = (id: string, kept: boolean): void => {
          // A quorum holds the copy (which records the award): the award may go, even if a
          // copy to a slower replica still waits behind an earlier request.
          if (kept) this.sendAwardsHeldFor(id)
          for (const resolve of round.get(id) ?? []) resolve(kept)
          round.delete(id)
        }
        const decided = this.replicate(ids, settle, id => { this.sendAwardsHeldFor(id) })
          .catch(err => {
            this.c.logger.warn({ err: String(err), jobs: round.size }, 'replication round failed')
            return new Set<string>()
          })
          // Jobs never sent (released or evicted meanwhile) are decided here: not kept.
          .then(done => { for (const id of [...round.keys()]) settle(id, done.has(id)) })
        let timer: ReturnType<typeof setTimeout> | undefined
        try {
          await Promise.race([decided, new Promise<void>(resolve => { timer = setTimeout(resolve, AGENT_DEFAULTS.replicationRoundMaxWaitMs) })])
        } finally {
          clearTimeout(timer)
        }
      }
    } finally {
      this.replicationRoundRunning = false
      // Stopped with jobs still waiting: no quorum was reached for them.
      for (const waiting of this.urgentReplication.values()) for (const settle of waiting) settle(false)
      this.urgentReplication.clear()
    }
  }

  /** The job's first copy is on its way: its held award goes, if it is still the job's award
   *  (not cancelled, declined or given up on meanwhile). send false: drop it instead (no copy
   *  left; the award's deadline offers the job again, after the copies are sent again). */
  private sendAwardsHeldFor (jobId: string, send = true): void {
    const held = this.awardsAfterFirstCopy.get(jobId)
    if (held === undefined) return
    this.awardsAfterFirstCopy.delete(jobId)
    if (!send) return
    const award = this.owner.jobs.get(jobId)?.award
    for (const { to, message } of held) {
      if (award?.node === to && award.epoch === message.body.epoch) void this.ownerSend(to, message)
    }
  }

  /** Replicates a job's record within AGENT_DEFAULTS.replicationBatchMs: changes made meanwhile (a whole
   *  auction's worth, or many jobs') go out in one request per replica. A timer runs only
   *  while something waits, so an idle agent does not wake up for it. */
  private queueReplication (jobId: string): void {
    this.replicateQueue.add(jobId)
    if (this.replicationTimer !== undefined || this.stopped) return
    this.replicationTimer = setTimeout(() => {
      this.replicationTimer = undefined
      void this.flushReplication()
    }, AGENT_DEFAULTS.replicationBatchMs)
  }

  private async flushReplication (): Promise<void> {
    if (this.replicateQueue.size === 0 || this.stopped) return
    const ids = [...this.replicateQueue]
    this.replicateQueue.clear()
    await this.replicate(ids)
  }

  /** Stores newer copies; returns the ids the sender sent under a lower term than we know
   *  (stale), and those whose events started past the ones we hold (gaps). */
  private onReplicate (jobs: Array<{ job: JobRecord, events: JobEvent[], eventsFrom?: number }>): { stale: string[], gaps: string[] } {
    // One commit (one fsync) for the whole batch rather than one per job.
    return this.c.store.transaction(() => this.storeReplicas(jobs))
  }

  private storeReplicas (jobs: Array<{ job: JobRecord, events: JobEvent[], eventsFrom?: number }>): { stale: string[], gaps: string[] } {
    const stale: string[] = []
    const gaps: string[] = []
    for (const { job, events, eventsFrom = 0 } of jobs) {
      const mine = this.owner.jobs.get(job.id)
      if (mine !== undefined) {
        if (job.owner === this.peerId) continue // our own record, come back
        // An older owner's copy, or a rival's that took the job over under our term but ranks
        // below us: ignore it, and tell that owner it was superseded.
        if (!newerRecord(job, mine.record)) { stale.push(job.id); continue }
        this.c.logger.info({ jobId: job.id, term: job.term, owner: job.owner }, 'job:released')
        this.ownerDo({ type: 'job:released', jobId: job.id })
      }
      const local = this.c.store.getJob(job.id)
      // A copy older than ours: by term, or by owner within a term (a rival that loses), is
      // stale; an older version from the same owner is a resend that crossed a newer one.
      if (local !== undefined && newerRecord(local, job)) {
        if (local.term > job.term || local.owner !== job.owner) stale.push(job.id)
        continue
      }
      this.c.store.transaction(() => {
        this.c.store.putJob(job)
        const have = this.c.store.eventCount(job.id)
        // The sender's list starts at its event number eventsFrom: append what we lack, in
        // order, and never leave a hole (a gap is reported; the sender resends from the first).
        if (eventsFrom > have) gaps.push(job.id)
        else for (const ev of events.slice(have - eventsFrom)) this.c.store.appendEvent(job.id, ev)
      })
      const sum = summarize(job)
      this.directory.set(sum)
      if (TERMINAL_STATES.has(job.state) || job.owner === this.peerId) {
        this.standby.delete(job.id)
        this.standbyRenewals.delete(job.id)
      } else this.standby.set(job.id, job)
    }
    return { stale, gaps }
  }

  /** A replica takes a job over when its owner is gone, it sees a majority of the job's group
   *  alive, and, of the replicas it sees alive, it is the best-ranked one that holds a copy
   *  (scheduler/takeover.ts). Replicas ask one after another (takeoverStaggerMs apart, by
   *  rank), so the best-ranked one usually settles it alone. The new owner's term is higher,
   *  which settles any conflict. */
  private readonly adopting = new Set<string>()

  private checkTakeovers (now: number): void {
    if (this.standby.size === 0) return
    // Not without a fresh majority of the mesh, whatever the job's group: replicas that are a
    // majority of a group may be a minority of the mesh, cut off from an owner that is alive
    // on the other side and keeps the job (its leases, its re-runs). Their new owner could not
    // offer the job anyway (it needs that majority too), and after the heal it would hold a
    // higher term over an attempt the old owner kept running: a second run.
    if (!this.freshMajority(now)) return
    for (const job of [...this.standby.values()]) {
      if (job.owner === this.peerId || this.adopting.has(job.id) || this.isAlive(job.owner, now)) continue
      const ownerEntry = this.owner.view.entries.get(job.owner)
      // When the owner was found gone: goneAfterMs after it was last heard (the instant at
      // which liveness() calls it gone), or after this agent started if it never heard it.
      const ownerGoneAtMs = (ownerEntry?.heardAtMs ?? this.startedAtMs) + this.owner.config.goneAfterMs
      if (now < ownerGoneAtMs) continue
      const ranked = rankReplicas(job.id, job.replicas, r => this.isAlive(r, now))
      // A majority of the job's group (owner and replicas) must be alive on our side; the
      // owner relied on a record only once a majority held it, so the two majorities share an
      // agent that holds the newest record, and we read it before taking over.
      if (ranked.length < groupMajority(job.replicas.length)) continue
      if (now < takeoverDueAtMs(ownerGoneAtMs, ranked.indexOf(this.peerId), AGENT_DEFAULTS.takeoverStaggerMs)) continue
      this.adopting.add(job.id)
      void this.adopt(job, ranked.filter(r => r !== this.peerId)).finally(() => this.adopting.delete(job.id))
    }
  }

  private async adopt (job: JobRecord, others: string[]): Promise<void> {
    const answers = await this.askForCopies(job.id, others)
    const own = this.standby.get(job.id)
    if (this.stopped || own === undefined || own.owner !== job.owner) return
    const decision = decideTakeover({ selfId: this.peerId, own, asked: others, answers })
    if (decision.kind === 'no-quorum' || decision.kind === 'defer') return // asked again at the next housekeeping
    const newest = decision.newest
    if (decision.kind === 'follow' || decision.kind === 'finished') {
      // Standby goes on for a job taken over that lists this agent among its replicas again.
      this.c.store.putJob(newest)
      if (decision.kind === 'follow' && newest.replicas.includes(this.peerId)) this.standby.set(job.id, newest)
      else {
        this.standby.delete(job.id)
        this.standbyRenewals.delete(job.id)
      }
      return
    }
    const now = Date.now()
    const previous = newest.owner
    const record: JobRecord = structuredClone(newest)
    record.owner = this.peerId
    record.term++
    record.version++
    record.updatedAtMs = now
    record.replicas = this.chooseReplicas(job.id, [previous])
    const renewed = this.standbyRenewals.get(job.id)
    this.standbyRenewals.delete(job.id)
    const takenIn = takeInRenewedAttempt(record, renewed) ? `; attempt ${record.epoch} on ${record.node} taken in from its renewals (its award reached no replica)` : ''
    const event: JobEvent = { atMs: now, type: 'job:adopted', detail: `owner ${previous} gone; term ${record.term}${takenIn}` }
    this.c.store.transaction(() => {
      this.c.store.putJob(record)
      this.c.store.appendEvent(record.id, event)
    })
    this.standby.delete(job.id)
    this.c.logger.info({ jobId: job.id, previous, term: record.term, state: record.state }, 'job:adopted')
    this.ownerDo({ type: 'job:adopted', job: record })
    // The attempt in flight gets a full lease from now (the machine's default), so its
    // executor's next renewal or result, sent to the replicas it has been reaching, finds the
    // new owner. Only an executor last heard more than a lease ago is given up on at once: it
    // renewed with us until it went silent.
    const oj = this.owner.jobs.get(job.id)
    if (oj !== undefined && oj.leaseExpiresAtMs !== undefined && renewed !== undefined && renewed.atMs + this.owner.config.leaseMs < now) oj.leaseExpiresAtMs = renewed.atMs + this.owner.config.leaseMs
    const sum = summarize(record)
    this.directory.set(sum)
    this.queueSummary(sum)
    this.queueReplication(record.id)
  }

  /** After a restart: takes up again each unfinished job this agent owned, once enough of its
   *  replicas answered that none holds a newer copy (a replica that took the job over while
   *  this agent was down has one, under a higher term, and is then followed instead). Fails
   *  closed: with this agent, the replicas that answered must be a majority of the group,
   *  or all of it but those known gone. A job without those answers stays on standby (its
   *  executor's renewals are still acknowledged) and is asked about again every second.
   *  Reclaimed without answers, it would have two owners, and the one whose lease lapses
   *  would run it again. */
  private async reclaim (owned: JobRecord[]): Promise<void> {
    let todo = owned
    while (todo.length > 0 && !this.stopped) {
      const unsettled: JobRecord[] = []
      // At most 32 jobs at once, as checkOwnership: a restart must not flood the replicas.
      for (let i = 0; i < todo.length && !this.stopped; i += 32) {
        const batch = todo.slice(i, i + 32)
        const settled = await Promise.all(batch.map(async job => await this.reclaimOne(job)))
        batch.forEach((job, k) => { if (!settled[k]) unsettled.push(job) })
      }
      todo = unsettled
      if (todo.length > 0) await new Promise(resolve => setTimeout(resolve, 1000))
    }
  }

  /** true when settled: reclaimed, or a newer copy followed. */
  private async reclaimOne (job: JobRecord): Promise<boolean> {
    // A replication brought newer news meanwhile (another owner's copy, which lists this agent).
    if (this.standby.get(job.id)?.owner !== this.peerId) return true
    const now = Date.now()
    const others = job.replicas.filter(r => r !== this.peerId)
    const asked = others.filter(r => this.isAlive(r, now))
    const answers = await this.askForCopies(job.id, asked)
    if (this.stopped) return true
    let newest = job
    for (const { copy: c } of answers) if (c !== undefined && newerRecord(c, newest)) newest = c
    if (newest.term > job.term || newest.owner !== this.peerId) {
      this.standby.delete(job.id)
      this.followNewerCopy(newest)
      return true
    }
    // A replica is excused from answering only once it is known gone: heard, then silent for
    // goneAfterMs; or never heard since this agent started, for as long as a gone member is
    // remembered (FORGET_GONE_MS later), since an agent that restarts into a partition may
    // not hear the replica that took the job over for a while.
    const excused = others.filter(r => this.peerStatus(r, now, this.owner.config.goneAfterMs + FORGET_GONE_MS) === 'gone').length
    if (1 + answers.length < Math.min(groupMajority(job.replicas.length), 1 + others.length - excused)) return false
    this.standby.delete(job.id)
    this.c.logger.info({ jobId: job.id, term: job.term }, 'job:reclaimed')
    this.ownerDo({ type: 'job:adopted', job: newest })
    this.queueReplication(job.id)
    return true
  }

  private async onAttemptUpdate (u: AttemptUpdate): Promise<Message> {
    if (this.ownedJob(u.jobId) === undefined) return this.standbyUpdate(u)
    // Checked before the owner machine sees the result, so a cut-off owner does not even
    // record it: the executor keeps the result and retries until a majority is back.
    // Also while a healed owner is still asking whether the majority took its jobs over.
    if (u.state === 'exited' && (!this.meshMajority() || this.ownershipCheck !== undefined)) {
      // The executor is alive and holds the result: that renews its lease, so the attempt is
      // not given up on (and re-run) the moment a majority is back, before the result's next
      // delivery gets through.
      this.noteRenewalWithoutAck(u)
      return ack(false, 'ERR_NO_QUORUM')
    }
    if (u.state !== 'exited' && !this.freshHalf()) {
      // A renewal, to an owner that sees fewer than half of the mesh: it may be the cut-off
      // side of a partition, and the majority side takes the job over and runs it again.
      // Unacknowledged, the executor stops a lease after its last acknowledgement, at most
      // quorumFreshMs + a lease after the cut: before the majority re-runs it, which waits
      // until this owner is gone (goneAfterMs) and takes the job over, then a lease and the
      // grace.
      // The executor is alive, though: the renewal still counts here, so this owner does not
      // give it up on a majority's return before its next renewal can be answered.
      this.noteRenewalWithoutAck(u)
      return ack(false, 'ERR_NO_QUORUM')
    }
    const versionBefore = this.owner.jobs.get(u.jobId)?.record.version
    const reply = await this.ask(replyId => this.ownerDo({ type: 'attempt:update', replyId, update: u }))
    if (reply.type !== MessageType.AttemptUpdateAck) return reply
    if (u.state === 'exited' && reply.body.accepted) {
      // A final result is accepted only once a majority is visible and the record that
      // holds it is on a replica: an owner cut off from the mesh cannot accept one, and an
      // owner that dies right after accepting does not take the result with it.
      if (!this.meshMajority()) return ack(false, 'ERR_NO_QUORUM')
      // Except a resent final of a finished job brought back from the store, when the owner
      // machine changed nothing for it: the record is the one that left memory, and the
      // report adds nothing the replicas could need. Asking them again would only keep the
      // executor waiting, and resending for good, if they have died since.
      const unchanged = this.restoredJobs.has(u.jobId) && this.owner.jobs.get(u.jobId)?.record.version === versionBefore
      if (!unchanged && !(await this.replicateNow(u.jobId))) return ack(false, 'ERR_NOT_REPLICATED')
      // Released meanwhile (a replica knew a newer owner): not ours to accept. Evicted
      // meanwhile (finished, and its retention ran out while this answer waited on the
      // replicas): still ours, and brought back from the store to answer.
      if (this.ownedJob(u.jobId) === undefined) return ack(false, 'ERR_NOT_OWNER')
      const k = `${u.jobId}#${u.epoch}`
      if (!this.acceptedResults.has(k) && !this.restoredJobs.has(u.jobId)) {
        this.acceptedResults.add(k)
        const job = this.owner.jobs.get(u.jobId)?.record
        this.c.logger.info({ jobId: u.jobId, epoch: u.epoch, node: u.node, state: job?.state, reason: u.reason, exitCode: u.exitCode }, 'result:accepted')
      }
    }
    // Without quorumAgeMs (a replica's acknowledgement has it: standbyUpdate): the lease runs
    // from this answer. An owner cut off with its executor keeps the attempt alive at most
    // quorumFreshMs + a lease after the cut, and the majority side re-runs it only after it
    // takes the job over (this owner gone: goneAfterMs), then a lease and the grace. Counting
    // from the evidence here would only cost leases when this owner dies: the executor
    // reaches the replicas only after a wait on it (1.5 renewal intervals).
    return { type: MessageType.AttemptUpdateAck, body: { ...reply.body, owner: this.peerId } }
  }

  /** The owner's lease on the attempt runs from now, without acknowledging the report: its
   *  executor is alive (see onAttemptUpdate). */
  private noteRenewalWithoutAck (u: AttemptUpdate): void {
    const oj = this.owner.jobs.get(u.jobId)
    if (oj?.leaseExpiresAtMs !== undefined && oj.record.epoch === u.epoch && oj.record.node === u.node) oj.leaseExpiresAtMs = Date.now() + this.owner.config.leaseMs
  }

  /** An executor that cannot reach the owner renews its lease with a replica. A final result
   *  is refused (only an owner accepts one, with a majority), yet it renews the lease too: the
   *  executor is alive and holds the result, and the replica that takes the job over must wait
   *  for it rather than re-run the job. */
  private standbyUpdate (u: AttemptUpdate): Message {
    const local = this.standby.get(u.jobId)
    if (local === undefined) return ack(false, 'ERR_NOT_OWNER')
    // The owner has given this attempt up and offered the job again (its copy here says so):
    // stop, as the owner would answer. Unanswered, the executor would run on for a lease beside
    // the new attempt, when only its link to the owner is cut and this replica still hears both.
    if (u.epoch < local.epoch) return { type: MessageType.AttemptUpdateAck, body: { jobId: u.jobId, epoch: u.epoch, accepted: false, stop: true } }
    // The newest attempt's: a fenced-off executor's renewal does not stand for the live one.
    const last = this.standbyRenewals.get(u.jobId)
    if (last === undefined || u.epoch >= last.epoch) this.standbyRenewals.set(u.jobId, { atMs: Date.now(), epoch: u.epoch, node: u.node, ...(u.startedAtMs !== undefined ? { startedAtMs: u.startedAtMs } : {}) })
    if (u.state === 'exited') return ack(false, 'ERR_NOT_OWNER')
    // Acknowledged only while this replica sees at least half of the mesh (freshHalf), and
    // with the age of that evidence (quorumAgeMs). The executor comes here when it cannot
    // reach the owner, and the owner may be alive on the other side of a partition: a replica
    // cut off with the executor would keep it running for as long as the cut lasts, while the
    // owner re-runs the job. Its lease counted from the evidence, the executor stops within a
    // lease of the cut, which the owner waits out before a re-run (OwnerConfig.leaseGraceMs).
    // A dead owner's replicas still see the majority, and keep its executors running until one
    // of them takes the jobs over.
    // The age of the evidence this acknowledgement rests on: how long ago this agent last
    // heard from at least half of the members it knows.
    const quorumAgeMs = halfHeardAgeMs(this.owner.view, this.peerId, Date.now())
    if (quorumAgeMs > this.t.quorumFreshMs) return ack(false, 'ERR_NO_QUORUM')
    return { type: MessageType.AttemptUpdateAck, body: { jobId: u.jobId, epoch: u.epoch, accepted: true, stop: false, owner: local.owner, quorumAgeMs } }
  }

  // ---- the two machines ------------------------------------------------------------------

  private ownerDo (event: OwnerEvent): void {
    if (event.type === 'job:released') {
      this.replicaCopies.delete(event.jobId)
      clearTimeout(this.laggardRetries.get(event.jobId)?.timer)
      this.laggardRetries.delete(event.jobId)
      this.restoredJobs.delete(event.jobId)
    }
    const effects = ownerStep(this.owner, event, Date.now())
    // An advert alone starts no work (pending jobs already keep the clock fast); anything
    // else may open a timeout the machine must see on time.
    if (event.type !== 'tick' && event.type !== 'advert:received') this.scheduleTick(this.t.tickMs)
    this.runOwnerEffects(effects)
  }

  private bidderDo (event: BidderEvent): void {
    const effects = bidderStep(this.bidder, event, Date.now())
    if (event.type !== 'tick') this.scheduleTick(this.t.tickMs)
    this.runBidderEffects(effects)
  }

  /** A job's summary goes out with the next batch (see agentTimings.summaryFlushMs). */
  private queueSummary (sum: JobSummary): void {
    this.summaryQueue.set(sum.id, sum)
    if (this.summaryTimer !== undefined || this.stopped) return
    this.summaryTimer = setTimeout(() => {
      this.summaryTimer = undefined
      void this.flushSummaries()
    }, this.t.summaryFlushMs)
  }

  private runOwnerEffects (effects: OwnerEffect[]): void {
    // Persist first: nothing leaves this agent about a job before its record is on disk.
    // One transaction (one fsync) for everything a step changed.
    const changed = effects.filter((fx): fx is Extract<OwnerEffect, { type: 'job:changed' }> => fx.type === 'job:changed')
    if (changed.length > 0) {
      this.c.store.transaction(() => {
        for (const fx of changed) {
          this.c.store.putJob(fx.job)
          for (const ev of fx.events) this.c.store.appendEvent(fx.job.id, ev)
        }
      })
    }
    for (const fx of changed) {
      for (const ev of fx.events) this.onJobEvent(fx.job, ev)
      // The step that finished the job names its outcome (a cancel names it twice: its cause
      // and its outcome); later changes to a finished job (a late report's history) do not.
      if (TERMINAL_STATES.has(fx.job.state) && fx.events.some(ev => ev.type === `job:${fx.job.state}`)) this.metrics_.jobsFinished.inc({ state: fx.job.state })
      const sum = summarize(fx.job)
      this.directory.set(sum)
      this.queueSummary(sum)
      if (fx.job.replicas.length > 0) this.queueReplication(fx.job.id)
    }
    for (const fx of effects) {
      if (fx.type === 'send') {
        const held = fx.message.type === MessageType.Award ? this.awardsAfterFirstCopy.get(fx.message.body.jobId) : undefined
        if (held !== undefined && fx.message.type === MessageType.Award) held.push({ to: fx.to, message: fx.message })
        else void this.ownerSend(fx.to, fx.message)
      } else if (fx.type === 'reply') this.reply(fx.replyId, fx.message)
    }
  }

  private runBidderEffects (effects: BidderEffect[]): void {
    for (const fx of effects) {
      switch (fx.type) {
        case 'reply': this.reply(fx.replyId, fx.message); break
        case 'send': void this.bidderSend(fx.to, fx.message); break
        case 'attempt:start': this.startAttempt(fx.jobId, fx.epoch, fx.owner, fx.spec); break
        case 'attempt:stop': {
          this.c.logger.info({ jobId: fx.jobId, epoch: fx.epoch, reason: fx.reason }, 'attempt:stop')
          this.running.get(`${fx.jobId}#${fx.epoch}`)?.abort.abort(fx.reason)
          break
        }
        case 'attempt:reported': this.c.store.deleteRunning(fx.jobId, fx.epoch); break
        case 'capacity:changed': this.scheduleAdvert(); break
      }
    }
  }

  private onJobEvent (job: JobRecord, ev: JobEvent): void {
    // An executor's error text may quote the job's secrets (an older or careless executor).
    const detail = ev.detail !== undefined && job.spec.secretEnv !== undefined ? redactSecrets(ev.detail, specSecrets(job.spec)) : ev.detail
    this.c.logger.info({ jobId: job.id, event: ev.type, epoch: ev.epoch, node: ev.node, detail }, ev.type)
    switch (ev.type) {
      case 'job:awarded': this.metrics_.awards.inc(); break
      case 'attempt:lost': case 'award:timeout': case 'award:declined': this.metrics_.reschedules.inc(); break
      case 'attempt:started': {
        const a = job.attempts.find(x => x.epoch === ev.epoch)
        if (a !== undefined) this.metrics_.schedulingLatency.observe((a.startedAtMs ?? Date.now()) / 1000 - job.createdAtMs / 1000)
        break
      }
    }
  }

  private async ownerSend (to: string, message: Message): Promise<void> {
    const m = message
    if (m.type === MessageType.BidRequest) this.metrics_.bidRequests.inc()
    try {
      // A release wants no answer (nothing is done with one): half the frames of a request.
      if (m.type === MessageType.ReservationRelease) { await this.c.mesh.notify(to, m); return }
      const response = await this.c.mesh.request(to, m)
      if (this.stopped) return
      if (m.type === MessageType.BidRequest) {
        if (response.type === MessageType.Bid) this.ownerDo({ type: 'bid:received', from: to, ...response.body })
        else if (response.type === MessageType.BidRefused) this.ownerDo({ type: 'bid:refused', from: to, ...response.body })
      } else if (m.type === MessageType.Award) {
        if (response.type === MessageType.AwardAck) this.ownerDo({ type: 'award:acked', from: to, ...response.body })
        else if (response.type === MessageType.AwardDeclined) this.ownerDo({ type: 'award:declined', from: to, ...response.body })
      }
    } catch (err) {
      if (this.stopped) return
      this.c.logger.debug({ to, type: m.type, err: String(err) }, 'request failed')
      if (m.type === MessageType.BidRequest) this.ownerDo({ type: 'bid:refused', from: to, jobId: m.body.jobId, epoch: m.body.epoch, reason: 'unreachable' })
      // A failed award is not a decline: the request may have arrived and only its answer
      // been lost (a cut, a timeout), with the winner running the job already. Offering it
      // again at once would run it twice; the award's acknowledgement deadline decides
      // instead, and the winner's first report counts as its acknowledgement meanwhile.
      // Releases and cancels are best effort: reservations expire and leases lapse anyway.
    }
  }

  /** ownerAsked: the owner was just asked (renewals sent together) and did not answer in time:
   *  the replicas come first, or the renewal would reach them only after two waits on the owner,
   *  past the lease (1.1 s + 1.1 s from a renewal sent up to 0.75 s after the last ack). */
  private async bidderSend (to: string, message: Message, options: { ownerAsked?: boolean } = {}): Promise<void> {
    if (message.type === MessageType.AttemptRenewals) return await this.sendRenewals(to, message.body)
    if (message.type !== MessageType.AttemptUpdate) return
    const u = message.body
    // Output first: when the owner hears "exited", it already has every line.
    if (u.state === 'exited') await this.flushLogs(`${u.jobId}#${u.epoch}`)
    // The owner first; when it cannot be reached, the job's replicas, one of which takes the
    // job over if the owner is dead and answers as the new owner.
    // A renewal must get through within a lease: an owner cut off by a partition does not
    // refuse, it just never answers. So the owner gets a short wait (1.5 renewal intervals), then the
    // replicas this agent sees alive are asked all at once, and only then anyone left.
    const replicas = (this.bidder.allocations.get(`${u.jobId}#${u.epoch}`)?.replicas ?? []).filter(r => r !== to)
    const now = Date.now()
    const acked = (response: Message): boolean => {
      if (response.type !== MessageType.AttemptUpdateAck) return false
      this.bidderDo({ type: 'update:acked', ...response.body, state: u.state })
      return true
    }
    const ask = async (target: string, timeoutMs: number): Promise<boolean> => {
      try {
        return acked(await this.c.mesh.request(target, message, { timeoutMs }))
      } catch {
        return false
      }
    }
    const ownerAlive = this.isAlive(to, now)
    // (A final result has no lease to keep, and the owner replicates it to a quorum before it
    // answers: it gets the owner's full request timeout.)
    if (ownerAlive && options.ownerAsked !== true && await ask(to, u.state === 'exited' ? 5000 : Math.ceil(this.t.leaseRenewMs * 1.5))) return
    if (this.stopped) return
    const aliveReplicas = replicas.filter(r => this.isAlive(r, now))
    if (aliveReplicas.length > 0) {
      const first = await Promise.any(aliveReplicas.map(async r => {
        if (await ask(r, 2000)) return true
        throw new Error('no acknowledgement')
      })).catch(() => false)
      if (first) return
    }
    for (const target of [...(ownerAlive ? [] : [to]), ...replicas.filter(r => !aliveReplicas.includes(r))]) {
      if (this.stopped) return
      if (await ask(target, 2000)) return
    }
    if (!this.stopped) this.bidderDo({ type: 'update:failed', jobId: u.jobId, epoch: u.epoch })
  }

  /** Several lease renewals for one owner, in one request. Whatever it does not settle (the
   *  owner is not seen alive, the request fails, or the owner left some unanswered) goes one
   *  by one through bidderSend, which also tries the jobs' replicas: the owner first if it
   *  answered or failed within half a renewal interval (an older agent refuses the message at
   *  once, and must hear the renewals), the replicas first if it took longer (asking it again
   *  would put a second wait before the replicas, past the lease). */
  private async sendRenewals (to: string, body: Bodies[typeof MessageType.AttemptRenewals]): Promise<void> {
    const single = (r: AttemptRenewal): Message => ({ type: MessageType.AttemptUpdate, body: { ...r, node: body.node } })
    let left: AttemptRenewal[] = body.renewals
    let ownerAsked = false
    if (this.isAlive(to)) {
      const askedAtMs = Date.now()
      try {
        const response = await this.c.mesh.request(to, { type: MessageType.AttemptRenewals, body }, { timeoutMs: Math.ceil(this.t.leaseRenewMs * 1.5) })
        if (this.stopped) return
        if (response.type === MessageType.AttemptRenewalsAck) {
          const { acked, again } = renewalsOutcome(body.renewals, response.body)
          for (const event of acked) this.bidderDo(event)
          left = again
        }
      } catch {}
      ownerAsked = Date.now() - askedAtMs > this.t.leaseRenewMs / 2
    }
    await Promise.all(left.map(async r => await this.bidderSend(to, single(r), { ownerAsked })))
  }

  private reply (replyId: number, message: Message): void {
    const r = this.replies.get(replyId)
    if (r !== undefined) { this.replies.delete(replyId); r(message) }
  }

  /** Runs a machine step for an inbound request and waits for the reply effect it makes. */
  private async ask (make: (replyId: number) => void): Promise<Message> {
    const replyId = this.nextReplyId++
    const p = new Promise<Message>(resolve => this.replies.set(replyId, resolve))
    make(replyId)
    if (this.replies.has(replyId)) {
      this.replies.delete(replyId)
      return { type: MessageType.Ack, body: { ok: false, code: 'ERR_NO_REPLY' } }
    }
    return await p
  }

  // ---- inbound ---------------------------------------------------------------------------

  /** A job this agent has heard ended (its owner's gossip, a replica's copy, its own record):
   *  no honest owner awards it again, so a bid request or award for it is a replay. */
  private readonly jobFinished = (jobId: string): boolean => {
    const state = this.directory.get(jobId)?.state ?? this.c.store.getJob(jobId)?.state
    return state !== undefined && TERMINAL_STATES.has(state)
  }

  private async onRequest (from: string, m: Message): Promise<Message> {
    switch (m.type) {
      case MessageType.AttemptRenewals: {
        // Only the executor renews its own attempts (it sends these to owners alone; replicas
        // get its renewals one by one): a member cannot keep others' leases alive.
        if (from !== m.body.node) return ack(false, 'ERR_NOT_EXECUTOR')
        // Each renewal answered as its own AttemptUpdate would be (see renewalsAnswer for what
        // the reply holds). They are independent: one that fails is left unanswered.
        const answers: Message[] = []
        for (const r of m.body.renewals) {
          answers.push(await this.onAttemptUpdate({ ...r, node: m.body.node }).catch(() => ack(false, 'ERR_INTERNAL')))
        }
        return { type: MessageType.AttemptRenewalsAck, body: renewalsAnswer(m.body.renewals, answers) }
      }
      case MessageType.BidRequest: {
        this.metrics_.bidsReceived.inc()
        // Who asked for this job, not who forwards it: the publisher's signature and our allowlist.
        const v = screenJobMessage('bid', m.body, { allowlist: this.publishers, guard: this.replayGuard, finished: this.jobFinished }, Date.now())
        if (!v.ok) {
          this.c.logger.warn({ jobId: m.body.jobId, from, reason: v.reason, detail: v.detail }, 'bid:refused')
          return { type: MessageType.BidRefused, body: { jobId: m.body.jobId, epoch: m.body.epoch, reason: v.reason } }
        }
        return await this.ask(replyId => this.bidderDo({ type: 'bid:requested', from, replyId, jobId: m.body.jobId, epoch: m.body.epoch, spec: m.body.spec }))
      }
      case MessageType.Award: {
        // The guard is only asked here; the award enters it once the bidder has taken it, so
        // awards declined (no room, a lapsed reservation, a finished job) fill no entries.
        const v = screenJobMessage('award', m.body, { allowlist: this.publishers, guard: this.replayGuard, finished: this.jobFinished }, Date.now())
        if (!v.ok) {
          this.c.logger.warn({ jobId: m.body.jobId, from, reason: v.reason, detail: v.detail }, 'award:refused')
          return { type: MessageType.AwardDeclined, body: { jobId: m.body.jobId, epoch: m.body.epoch, reason: v.reason } }
        }
        this.awardTerms.set(`${m.body.jobId}#${m.body.epoch}`, m.body.term ?? 0)
        if (this.awardTerms.size > 10_000) this.awardTerms.delete(this.awardTerms.keys().next().value!)
        return await this.ask(replyId => {
          this.bidderDo({ type: 'award:received', from, replyId, jobId: m.body.jobId, epoch: m.body.epoch, spec: m.body.spec, replicas: m.body.replicas })
          // Taken (or taken before): admitted in the same step, so no other award of the job
          // is screened in between, and written before the acknowledgement leaves (it waits for
          // the flush that covers it). A repeat of an award already taken is admitted once.
          if (!this.bidder.allocations.has(`${m.body.jobId}#${m.body.epoch}`)) return
          try {
            this.replayGuard.admitEpoch({ jobId: m.body.jobId, nonce: m.body.nonce!, createdAtMs: m.body.createdAtMs!, epoch: m.body.epoch }, Date.now())
          } catch (err) {
            this.c.logger.warn({ jobId: m.body.jobId, err }, 'could not record the award in the replay guard')
          }
        })
      }
      case MessageType.ReservationRelease:
        this.bidderDo({ type: 'reservation:released', from, ...m.body })
        return ack()
      case MessageType.CancelAttempt:
        return await this.ask(replyId => this.bidderDo({ type: 'attempt:cancel', from, replyId, ...m.body }))
      case MessageType.AttemptUpdate:
        // Only an attempt's executor reports on it (to its owner, or to a replica): another
        // member naming the executor could otherwise renew a dead executor's lease, or hand in
        // a result the job never produced.
        if (from !== m.body.node) return ack(false, 'ERR_NOT_EXECUTOR')
        return await this.onAttemptUpdate(m.body)
      case MessageType.JobReplicate: {
        const { stale, gaps } = this.onReplicate(m.body.jobs)
        return stale.length > 0 || gaps.length > 0
          ? { type: MessageType.Ack, body: { ok: true, ...(stale.length > 0 ? { staleJobs: stale } : {}), ...(gaps.length > 0 ? { eventGaps: gaps } : {}) } }
          : ack()
      }
      case MessageType.LogAppend: {
        const oj = this.ownedJob(m.body.jobId)
        if (oj === undefined) return ack(false, 'ERR_UNKNOWN_JOB')
        this.c.store.transaction(() => { for (const ch of m.body.chunks) this.c.store.appendLog(m.body.jobId, { ...ch, epoch: m.body.epoch }) })
        return ack()
      }
      case MessageType.JobQuery: {
        const local = this.localJob(m.body.id)
        return { type: MessageType.JobQueryReply, body: local }
      }
      case MessageType.LogQuery: {
        const chunks = this.c.store.readLogs(m.body.jobId, { afterSeq: m.body.afterSeq, limit: m.body.limit })
        return { type: MessageType.LogReply, body: { chunks } }
      }
      case MessageType.CancelRequest: {
        const oj = this.ownedJob(m.body.jobId)
        if (oj === undefined) return ack(false, 'ERR_UNKNOWN_JOB')
        this.ownerDo({ type: 'job:cancel', jobId: m.body.jobId })
        return ack()
      }
      case MessageType.JobListQuery: {
        const summaries = this.c.store.listJobs({ limit: m.body.limit, ...(m.body.state !== undefined ? { state: m.body.state } : {}) }).map(summarize)
        return { type: MessageType.JobListReply, body: { summaries } }
      }
      default:
        return ack(false, 'ERR_UNEXPECTED_MESSAGE')
    }
  }

  private onGossip (from: string, m: Message): void {
    if (m.type === MessageType.CapacityAdvert) {
      // The gossip signature names the sender; an advert about someone else is refused.
      if (m.body.peerId !== from || from === this.peerId) return
      // Into the peer store only when they changed: a merge takes the store's write lock and
      // rewrites the peer's record, and adverts arrive every second from every peer.
      const addrs = m.body.addrs?.join(' ')
      if (addrs !== undefined && this.knownAddrs.get(from) !== addrs) {
        this.knownAddrs.set(from, addrs)
        void this.c.mesh.addPeerAddrs(from, m.body.addrs!)
      }
      this.ownerDo({ type: 'advert:received', capacity: m.body })
    } else if (m.type === MessageType.MemberLeave) {
      if (m.body.peerId !== from || from === this.peerId) return
      // A clean leave: membership shrinks now, and replicas take its jobs over at once.
      this.owner.view.entries.delete(from)
      this.gonePeers.add(from)
      this.knownAddrs.delete(from)
      this.c.logger.info({ peer: from }, 'peer:left')
      this.ownerDo({ type: 'peer:left', peer: from, quorum: this.meshMajority() })
      this.checkTakeovers(Date.now())
    } else if (m.type === MessageType.JobSummaries) {
      if (m.body.from !== from) return
      for (const s of m.body.summaries) {
        if (s.owner !== from) continue
        const prev = this.directory.get(s.id)
        // Our record of it: held in memory, or, for a finished job of ours that has left memory
        // (evictFinishedJobs), stored; our directory entry tells us it was ours without a
        // store read per summary.
        const ours = this.owner.jobs.get(s.id)?.record ??
          (prev?.owner === this.peerId && newerSummary(s, prev) ? this.c.store.getJob(s.id) : undefined)
        // Another agent took this job over while we were cut off (or under our term, and it
        // ranks better for the job): it owns it now.
        if (ours?.owner === this.peerId && newerSummary(s, ours)) this.releaseJob(ours, s.owner)
        if (prev === undefined || newerSummary(s, prev)) this.directory.set(s)
      }
    }
  }

  // ---- gossip out ------------------------------------------------------------------------

  private scheduleAdvert (): void {
    // Coalesce bursts of changes into one advert, and at most one per advertMinGapMs.
    if (this.advertScheduled) return
    this.advertScheduled = true
    const delayMs = Math.max(10, this.lastAdvertAtMs + AGENT_DEFAULTS.advertMinGapMs - Date.now())
    setTimeout(() => { this.advertScheduled = false; this.publishAdvert({ onlyIfChanged: true }) }, delayMs)
  }

  /** The periodic advert always goes (peers judge liveness by it); one set off by a change is
   *  skipped when it would be news to no one (advertIsNews in src/scheduler/bidder.ts). */
  private publishAdvert (options: { onlyIfChanged?: boolean } = {}): void {
    if (this.stopped || this.left) return
    const nowMs = Date.now()
    if (options.onlyIfChanged === true && !advertIsNews(this.bidder, nowMs)) return
    this.lastAdvertAtMs = nowMs
    const base = capacityOf(this.bidder, nowMs)
    advertPublished(this.bidder, base)
    const capacity: NodeCapacity = { ...base, addrs: this.c.mesh.listenAddrs().slice(0, 16) }
    this.metrics_.capacity.set({ resource: 'cpu_milli', kind: 'free' }, capacity.freeCpuMilli)
    this.metrics_.capacity.set({ resource: 'memory_bytes', kind: 'free' }, capacity.freeMemoryBytes)
    this.metrics_.capacity.set({ resource: 'cpu_milli', kind: 'total' }, capacity.totalCpuMilli)
    this.metrics_.capacity.set({ resource: 'memory_bytes', kind: 'total' }, capacity.totalMemoryBytes)
    this.ownerDo({ type: 'advert:received', capacity })
    void this.c.mesh.publish(Topic.Capacity, { type: MessageType.CapacityAdvert, body: capacity })
  }

  private async flushSummaries (): Promise<void> {
    if (this.summaryQueue.size === 0 || this.stopped) return
    const all = [...this.summaryQueue.values()]
    this.summaryQueue.clear()
    // Receivers act on summaries (a higher term releases a job): what they tell must be durable.
    await this.c.store.sync()
    for (let i = 0; i < all.length; i += 200) {
      await this.c.mesh.publish(Topic.Jobs, { type: MessageType.JobSummaries, body: { from: this.peerId, summaries: all.slice(i, i + 200) } })
    }
  }

  // ---- execution -------------------------------------------------------------------------

  private startAttempt (jobId: string, epoch: number, owner: string, spec: JobSpec): void {
    const k = `${jobId}#${epoch}`
    const replicas = this.bidder.allocations.get(k)?.replicas ?? []
    const term = this.awardTerms.get(k) ?? 0
    this.awardTerms.delete(k)
    this.c.store.putRunning({ jobId, epoch, owner, replicas, spec })
    this.watchAttempt(jobId, epoch, owner, spec, async signal => {
      // Fencing on the engine: an older attempt of this job still running on this engine
      // (its agent died without stopping it, e.g. agents sharing one Docker engine) is
      // superseded by this attempt and stopped before the new one starts.
      if (epoch > 1 || term > 0) await this.stopOlderContainers(jobId, term, epoch)
      return await this.runAttempt(jobId, epoch, term, owner, replicas, spec, signal)
    })
  }

  /** Older means a lower (term, epoch): after a partition, the owners on its two sides may
   *  both have issued the same epoch, and the one with the higher term is the job's owner. */
  private async stopOlderContainers (jobId: string, term: number, epoch: number): Promise<void> {
    // Only with a majority in view: agents sharing an engine may sit on the two sides of a
    // partition, and the engine must not become a channel through which a cut-off side
    // kills an attempt the majority still counts on.
    if (!this.meshMajority()) {
      this.c.logger.info({ jobId, term, epoch }, 'engine fencing skipped: no majority in view')
      return
    }
    try {
      for (const ct of await this.c.executor.listManaged()) {
        const older = ct.term < term || (ct.term === term && ct.epoch < epoch)
        if (ct.jobId === jobId && older && ct.node !== this.peerId) {
          this.c.logger.info({ jobId, epoch: ct.epoch, node: ct.node, containerId: ct.containerId }, 'container:fenced')
          await this.c.executor.remove(ct.containerId)
        }
      }
    } catch (err) {
      this.c.logger.warn({ jobId, err: String(err) }, 'could not check for older containers')
    }
  }

  private async runAttempt (jobId: string, epoch: number, term: number, owner: string, replicas: string[], spec: JobSpec, signal: AbortSignal): Promise<AttemptResultLike> {
    const k = `${jobId}#${epoch}`
    return await this.c.executor.run({ jobId, epoch, term, spec }, {
      signal,
      onStarted: ({ containerId, startedAtMs }) => {
        // History for the fault-injection suite: every execution, as the executor saw it.
        this.c.logger.info({ jobId, epoch, node: this.peerId, containerId, startedAtMs }, 'container:started')
        this.c.store.putRunning({ jobId, epoch, owner, replicas, spec, containerId, startedAtMs })
        this.bidderDo({ type: 'attempt:started', jobId, epoch, startedAtMs })
      },
      onOutput: this.outputSink(k)
    })
  }

  private outputSink (k: string): (stream: 'stdout' | 'stderr', chunk: Uint8Array) => void {
    const decoder = { stdout: new TextDecoder(), stderr: new TextDecoder() }
    return (stream, chunk) => {
      this.running.get(k)?.logBuffer.push({ stream, atMs: Date.now(), data: decoder[stream].decode(chunk, { stream: true }) })
    }
  }

  /** Runs (or reattaches to) an attempt and reports its end to the bidder machine. */
  private watchAttempt (jobId: string, epoch: number, owner: string, spec: JobSpec, execute: (signal: AbortSignal) => Promise<AttemptResultLike>): void {
    const k = `${jobId}#${epoch}`
    if (this.running.has(k)) return
    const rc: RunningContainer = { abort: new AbortController(), owner, logBuffer: [] }
    this.running.set(k, rc)
    this.metrics_.containersRunning.inc()
    const flushTimer = setInterval(() => { void this.flushLogs(k) }, this.t.logFlushMs)
    void execute(rc.abort.signal).then(result => {
      this.c.logger.info({ jobId, epoch, node: this.peerId, startedAtMs: result.startedAtMs, finishedAtMs: result.finishedAtMs, reason: result.reason, exitCode: result.exitCode }, 'container:exited')
      // A container we stopped because we were cut off or drained is handed back, not failed.
      const handedBack = result.reason === 'cancelled' && (rc.abort.signal.reason === 'lost' || rc.abort.signal.reason === 'drain')
      // A container another agent removed (engine fencing after a partition, where two owners
      // issued attempts) is a lost attempt, like a dead executor's: re-run it without using up
      // one of the job's retries. The job itself did nothing wrong.
      const gone = result.error?.code === 'ERR_CONTAINER_GONE'
      this.bidderDo({
        type: 'attempt:exited',
        jobId,
        epoch,
        update: {
          ...(result.startedAtMs !== undefined ? { startedAtMs: result.startedAtMs } : {}),
          finishedAtMs: result.finishedAtMs,
          exitCode: result.exitCode,
          reason: handedBack || gone ? 'lost' : result.reason,
          ...(handedBack ? { error: rc.abort.signal.reason === 'drain' ? 'handed back: agent draining' : 'stopped: lease lost' } : {}),
          ...(result.error !== undefined ? { error: redactSecrets(`${result.error.name}: ${result.error.message}`, specSecrets(spec)).slice(0, 4000) } : {})
        }
      })
    }).catch(err => {
      // Error texts leave the agent (logs, the owner's record): never with a secret in them.
      const error = redactSecrets(String(err), specSecrets(spec))
      this.c.logger.error({ jobId, epoch, err: error }, 'executor failed')
      this.bidderDo({ type: 'attempt:exited', jobId, epoch, update: { finishedAtMs: Date.now(), exitCode: null, reason: 'error', error: error.slice(0, 4000) } })
    }).finally(() => {
      clearInterval(flushTimer)
      this.metrics_.containersRunning.dec()
      // Keep the entry until the final flush is done; the bidder reports after it.
      void this.flushLogs(k).finally(() => this.running.delete(k))
    })
  }

  /** Sends buffered output to the job's owner, in order, one batch at a time. */
  private async flushLogs (k: string): Promise<void> {
    const rc = this.running.get(k)
    if (rc === undefined) return
    while (rc.flushing !== undefined) await rc.flushing
    if (rc.logBuffer.length === 0) return
    const chunks = rc.logBuffer.splice(0, rc.logBuffer.length)
    const [jobId, epochText] = k.split('#')
    const epoch = Number(epochText)
    rc.flushing = (async () => {
      // In order, each batch within the message limits (see log-batches.ts).
      for (const batch of splitLogChunks(chunks)) {
        if (!await this.sendLogBatch(k, jobId, epoch, rc.owner, batch)) {
          this.c.logger.warn({ jobId, epoch }, 'could not deliver output to the owner')
          if (this.stopped) return
        }
      }
    })()
    try { await rc.flushing } finally { rc.flushing = undefined }
  }

  private async sendLogBatch (k: string, jobId: string, epoch: number, firstOwner: string, chunks: PendingChunk[]): Promise<boolean> {
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        const owner = this.bidder.allocations.get(k)?.owner ?? firstOwner
        const r = await this.c.mesh.request(owner, { type: MessageType.LogAppend, body: { jobId, epoch, chunks } })
        if (r.type === MessageType.Ack) return true
      } catch {
        if (this.stopped) return false
      }
    }
    return false
  }

  // ---- AgentApi --------------------------------------------------------------------------

  async submit (input: unknown): Promise<SubmittedJob> {
    const spec = parseJobSpec(input)
    const now = Date.now()
    const id = newJobId(now)
    const nonce = newJobNonce()
    const signed = this.c.signJob !== undefined
      ? { nonce, signature: signatureToString(this.c.signJob({ id, spec, publisher: this.peerId, createdAtMs: now, nonce })) }
      : {}
    const job: JobRecord = { id, spec, owner: this.peerId, publisher: this.peerId, state: 'pending', epoch: 0, term: 0, version: 0, replicas: this.chooseReplicas(id, []), attempts: [], createdAtMs: now, updatedAtMs: now, ...signed }
    this.metrics_.auctions.inc()
    // A job awarded at once from the view (no bid round to wait for) would send its award in
    // the same instant as its first copy: an owner that died then would leave a job running
    // that no replica knows of. Its award waits until that copy, which records the award, is
    // on its way (sendAwardsHeldFor): a replica that takes the job over then keeps the attempt.
    this.awardsAfterFirstCopy.set(id, [])
    try {
      this.ownerDo({ type: 'job:submitted', job })
      return await this.answerSubmit(id, job)
    } finally {
      // Still held once the submit is answered: no quorum took the copy and not every copy
      // left (its store read failed, or the agent stops). The award is dropped, not sent: its
      // deadline gives the job up and offers it again (with bids), after the copies are sent
      // again.
      this.sendAwardsHeldFor(id, false)
    }
  }

  private async answerSubmit (id: string, job: JobRecord): Promise<SubmittedJob> {
    // The reply promises the job exists: on stable storage here, not only in the WAL (the
    // replication request waits for that flush), and, when `replicated`, held by a quorum of
    // a full group of replicas, so that it outlives this agent. Without that quorum (too few
    // answered in time), or with a group smaller than the members this agent knows allow
    // (those it chose from were all it saw alive: it may be cut off, or just started), the
    // caller is told so; the copies are sent again until a quorum holds them, and the group
    // is topped up once more members are alive (replaceGoneReplicas).
    const quorum = await this.replicateNow(id)
    // And only with a fresh majority of the mesh in view: a cut-off agent's group is what it
    // sees alive (as few as none), and a quorum of that promises nothing. With it, the group
    // must be as large as the others alive allow (it was chosen from them: fewer, if some
    // came back meanwhile); a member gone (still in the view for a minute) does not count.
    const nowMs = Date.now()
    let othersAlive = 0
    for (const peer of this.owner.view.entries.keys()) if (peer !== this.peerId && this.isAlive(peer, nowMs)) othersAlive++
    const replicated = quorum && this.freshMajority(nowMs) && job.replicas.length >= Math.min(REPLICAS_PER_JOB, othersAlive)
    if (!replicated) this.c.logger.warn({ jobId: id, replicas: job.replicas, quorum, othersAlive }, 'job accepted without a quorum of a full group of replicas: its copies are sent again')
    await this.c.store.sync()
    const record = this.owner.jobs.get(id)?.record ?? this.c.store.getJob(id)!
    return { ...structuredClone(record), replicated }
  }

  async plan (input: unknown): Promise<Explanation> {
    const spec = parseJobSpec(input)
    const now = Date.now()
    return planOffer(this.owner, spec, now)
  }

  private localJob (idOrPrefix: string): { job?: JobRecord, events: JobEvent[], matches?: string[] } {
    const found = this.c.store.listJobs({ prefix: idOrPrefix, limit: 2 })
    if (found.length > 1) return { events: [], matches: found.map(j => j.id) }
    if (found.length === 0) return { events: [] }
    const live = this.owner.jobs.get(found[0].id)?.record ?? found[0]
    return { job: structuredClone(live), events: this.c.store.events(found[0].id) }
  }

  async getJob (idOrPrefix: string, options: { signal?: AbortSignal, waitMs?: number } = {}): Promise<JobDetail> {
    const found = await this.findJob(idOrPrefix, options)
    const waitMs = options.waitMs ?? 0
    if (waitMs <= 0 || TERMINAL_STATES.has(found.job.state) || this.stopped) return found
    if (this.finishWaitCount >= AGENT_DEFAULTS.maxFinishWaits) return found // the client asks again
    await this.untilFinished(found.job.id, waitMs, options.signal)
    return this.stopped || options.signal?.aborted === true ? found : await this.findJob(found.job.id, options)
  }

  /** Resolves when this agent hears that the job finished, after waitMs, on the signal, or
   *  when the agent stops, whichever is first. */
  private async untilFinished (id: string, waitMs: number, signal?: AbortSignal): Promise<void> {
    let end!: () => void
    const ended = new Promise<void>(resolve => { end = resolve })
    let waits = this.finishWaits.get(id)
    if (waits === undefined) this.finishWaits.set(id, waits = new Set())
    waits.add(end)
    this.finishWaitCount++
    const timer = setTimeout(end, waitMs)
    signal?.addEventListener('abort', end, { once: true })
    try {
      // It may have finished while findJob asked around.
      if (TERMINAL_STATES.has(this.directory.get(id)?.state ?? 'pending')) return
      await ended
    } finally {
      clearTimeout(timer)
      signal?.removeEventListener('abort', end)
      this.finishWaitCount--
      const left = this.finishWaits.get(id)
      left?.delete(end)
      if (left?.size === 0) this.finishWaits.delete(id)
    }
  }

  private endFinishWaits (id: string): void {
    const waits = this.finishWaits.get(id)
    if (waits === undefined) return
    this.finishWaits.delete(id)
    for (const end of waits) end()
  }

  private async findJob (idOrPrefix: string, options: { signal?: AbortSignal }): Promise<JobDetail> {
    const local = this.localJob(idOrPrefix)
    if (local.matches !== undefined) throw new AmbiguousJobIdError(idOrPrefix, local.matches)
    if (local.job !== undefined && local.job.owner === this.peerId) return { job: local.job, events: local.events }
    // Not ours: ask the owner named in the directory, else every peer we know of.
    const known = [...this.directory.values()].filter(s => s.id.startsWith(idOrPrefix))
    if (known.length > 1 && !known.some(s => s.id === idOrPrefix)) throw new AmbiguousJobIdError(idOrPrefix, known.map(s => s.id))
    // Who may hold it: the owner we last heard of and its replicas; failing them, everyone.
    const likely = new Set<string>()
    if (local.job !== undefined) { likely.add(local.job.owner); for (const r of local.job.replicas) likely.add(r) }
    if (known.length > 0) likely.add(known[0].owner)
    likely.delete(this.peerId)
    const reachable = [...likely].filter(p => this.isAlive(p))
    const owners = reachable.length > 0 ? reachable : this.otherPeers()
    const replies = await Promise.all(owners.map(async peer => {
      try {
        const r = await this.c.mesh.request(peer, { type: MessageType.JobQuery, body: { id: idOrPrefix } }, { signal: options.signal })
        return r.type === MessageType.JobQueryReply ? r.body : undefined
      } catch { return undefined }
    }))
    const matches = new Set<string>()
    let best: JobDetail | undefined = local.job !== undefined ? { job: local.job, events: local.events } : undefined
    for (const r of replies) {
      if (r?.job !== undefined) {
        matches.add(r.job.id)
        // The newest copy wins: higher term (a takeover), then higher version.
        if (best === undefined || newerRecord(r.job, best.job)) best = { job: r.job, events: r.events }
      }
      for (const m of r?.matches ?? []) matches.add(m)
    }
    if (local.job !== undefined) matches.add(local.job.id)
    if (matches.size > 1) throw new AmbiguousJobIdError(idOrPrefix, [...matches])
    if (best !== undefined) return best
    throw new UnknownJobError(idOrPrefix)
  }

  private otherPeers (): string[] {
    const peers = new Set<string>(this.c.mesh.connectedPeers())
    for (const p of this.owner.view.entries.keys()) peers.add(p)
    peers.delete(this.peerId)
    return [...peers]
  }

  async listJobs (options: { state?: string, limit?: number } = {}): Promise<JobSummary[]> {
    const limit = options.limit ?? 1000
    const byId = new Map<string, JobSummary>()
    for (const s of this.directory.values()) byId.set(s.id, s)
    for (const j of this.c.store.listJobs({ limit, ...(options.state !== undefined ? { state: options.state } : {}) })) {
      const live = this.owner.jobs.get(j.id)?.record ?? j
      const sum = summarize(live)
      // A copy we hold for another owner (a replica, or a job we were relieved of) may be
      // older than what its owner gossiped since.
      const heard = byId.get(j.id)
      if (heard === undefined || live.owner === this.peerId || !newerSummary(heard, sum)) byId.set(j.id, sum)
    }
    return [...byId.values()]
      .filter(s => options.state === undefined || s.state === options.state)
      .sort((a, b) => b.createdAtMs - a.createdAtMs || (a.id < b.id ? 1 : -1))
      .slice(0, limit)
  }

  async readLogs (id: string, options: { afterSeq?: number, signal?: AbortSignal } = {}): Promise<LogChunk[]> {
    const { job } = await this.getJob(id, options)
    if (job.owner === this.peerId) return this.c.store.readLogs(job.id, { afterSeq: options.afterSeq ?? 0 })
    const r = await this.c.mesh.request(job.owner, { type: MessageType.LogQuery, body: { jobId: job.id, afterSeq: options.afterSeq ?? 0, limit: 10_000 } }, { signal: options.signal })
    return r.type === MessageType.LogReply ? r.body.chunks : []
  }

  async cancel (idOrPrefix: string, options: { signal?: AbortSignal } = {}): Promise<JobRecord> {
    const { job } = await this.getJob(idOrPrefix, options)
    if (job.owner === this.peerId) {
      this.ownerDo({ type: 'job:cancel', jobId: job.id })
      await this.c.store.sync()
    } else await this.c.mesh.request(job.owner, { type: MessageType.CancelRequest, body: { jobId: job.id } }, { signal: options.signal })
    return (await this.getJob(job.id, options)).job
  }

  nodes (): NodeView[] {
    const now = Date.now()
    return viewLiveness(this.owner, now)
      .map(v => ({ ...v.capacity, liveness: v.liveness, lastSeenAgoMs: now - v.heardAtMs, self: v.capacity.peerId === this.peerId }))
      .sort((a, b) => (a.peerId < b.peerId ? -1 : 1))
  }

  health (): { ok: boolean, peerId: string, peers: number, draining: boolean, uptimeMs: number } {
    return { ok: !this.stopped, peerId: this.peerId, peers: this.c.mesh.connectedPeers().length, draining: this.bidder.draining, uptimeMs: Date.now() - this.startedAtMs }
  }
}

const MESSAGE_TYPE_NAMES = new Map<number, string>(Object.entries(MessageType).map(([name, n]) => [n, name]))

function ack (ok = true, code?: string): Message {
  return { type: MessageType.Ack, body: { ok, ...(code !== undefined ? { code } : {}) } }
}

export function joinDataPath (dataDir: string, name: string): string {
  return join(dataDir, name)
}

