// A deterministic in-memory cluster for scheduler tests. N agents, each with the real owner
// and bidder state machines, driven over a virtual clock and a virtual network whose delays
// and drops come from a seeded PRNG. The shell mirrors src/agent/agent.ts (ownerSend,
// bidderSend, onRequest, tick, publishAdvert) without any I/O, so a rule that breaks here
// breaks in the real agent. No real timers: time moves only when a test advances it.
// Not modelled: job replication and takeover by replicas (jobs carry no replicas here), logs.
import { decodeMessage, encodeMessage } from '../../src/protocol/codec.ts'
import type { JobSpec } from '../../src/protocol/job-spec.ts'
import type { JobEvent, JobRecord, NodeCapacity } from '../../src/protocol/job.ts'
import { type AttemptUpdate, MAX_DIRECT_BYTES, MAX_GOSSIP_BYTES, type Message, MessageType } from '../../src/protocol/messages.ts'
import { type OwnerConfig, type OwnerEffect, type OwnerEvent, type OwnerState, createOwner, ownerStep } from '../../src/scheduler/auction.ts'
import { type BidderConfig, type BidderEffect, type BidderEvent, type BidderState, bidderStep, capacityOf, createBidder } from '../../src/scheduler/bidder.ts'
import { seededRandom } from '../../src/scheduler/hash.ts'
import { liveness } from '../../src/scheduler/view.ts'

export const MiB = 1024 * 1024
export const GiB = 1024 * MiB

// ---- builders shared by the scheduler tests ----------------------------------------------

/** A normalized job spec with small defaults: 0.5 core, 256 MiB, no retries. */
export function spec (over: Partial<JobSpec> = {}): JobSpec {
  return {
    image: 'bidmesh/busybox:latest',
    command: ['true'],
    env: {},
    cpuMilli: 500,
    memoryBytes: 256 * MiB,
    pidsLimit: 256,
    timeoutMs: 3_600_000,
    retries: 0,
    constraints: {},
    network: 'none',
    ...over
  }
}

export function ownerConfig (selfId: string, over: Partial<OwnerConfig> = {}): OwnerConfig {
  return {
    selfId,
    bidWindowMs: 500,
    awardAckTimeoutMs: 2000,
    leaseMs: 3000,
    leaseGraceMs: 1000, // agentTimings: leaseRenewMs (750) + leaseGraceMarginMs (250)
    extraCandidates: 2,
    // Bid rounds, which most table tests are about; the direct-award tests set it.
    directAwardMaxViewAgeMs: 0,
    directAwardDeclinesBeforeBids: 2,
    explainTop: 5,
    retryBackoffBaseMs: 1000,
    retryBackoffMaxMs: 30_000,
    sweepIntervalMs: 2000,
    maxLostAttempts: 10,
    suspectAfterMs: 3000,
    goneAfterMs: 6000,
    ...over
  }
}

export function bidderConfig (over: Partial<BidderConfig> = {}): BidderConfig {
  return { reservationTtlMs: 3000, leaseMs: 3000, leaseRenewMs: 750, reportRetryMs: 1000, ...over }
}

/** A capacity advert; free defaults to total. */
export function capacity (peerId: string, over: Partial<NodeCapacity> = {}): NodeCapacity {
  const totalCpuMilli = over.totalCpuMilli ?? 4000
  const totalMemoryBytes = over.totalMemoryBytes ?? 8 * GiB
  return {
    peerId,
    totalCpuMilli,
    freeCpuMilli: totalCpuMilli,
    totalMemoryBytes,
    freeMemoryBytes: totalMemoryBytes,
    runningJobs: 0,
    labels: {},
    draining: false,
    seq: 1,
    sentAtMs: 0,
    ...over
  }
}

export function jobRecord (id: string, owner: string, s: JobSpec = spec(), nowMs = 0): JobRecord {
  return { id, spec: s, owner, publisher: owner, state: 'pending', epoch: 0, term: 0, version: 0, replicas: [], attempts: [], createdAtMs: nowMs, updatedAtMs: nowMs }
}

// ---- the harness ------------------------------------------------------------------------

export interface NodeInit { id: string, cpuMilli: number, memoryBytes: number, labels?: Record<string, string> }

/** What the simulated executor does with one attempt. */
export interface ExecOutcome {
  /** from attempt:start to the container running */
  startDelayMs: number
  /** from running to exit */
  durationMs: number
  exitCode: number | null
  reason: NonNullable<AttemptUpdate['reason']>
}

export interface ExecContext {
  jobId: string
  epoch: number
  node: string
  spec: JobSpec
  /** 1-based: attempts of this job the harness has started so far, this one included */
  start: number
}

/** One message on its way: a request, the response to one, or a gossip frame. */
export interface Leg {
  kind: 'request' | 'response' | 'gossip'
  from: string
  to: string
  message: Message
  /** for a response: the request it answers */
  request?: Message
}

export interface NetworkConfig {
  /** one-way delay of each message: fixed, uniform in [min, max] from the seeded PRNG, or chosen per message */
  delayMs?: number | { min: number, max: number } | ((leg: Leg) => number)
  /** chance that any one leg (request, response or gossip) is lost */
  dropRate?: number
  /** loses exactly the messages a test picks, on top of dropRate */
  drop?: (leg: Leg) => boolean
  /** a request with no response after this long fails, as mesh.request rejects */
  requestTimeoutMs?: number
}

export interface HarnessInit {
  seed?: number
  nodes: NodeInit[]
  owner?: Partial<Omit<OwnerConfig, 'selfId'>>
  bidder?: Partial<BidderConfig>
  /** the agent's tick (agentTimings.tickMs) */
  tickMs?: number
  /** periodic capacity adverts; 0 turns them off (then feedAdverts() is the only source) */
  advertIntervalMs?: number
  /** a change of free capacity is advertised this soon (coalesced), as the agent's scheduleAdvert */
  advertDebounceMs?: number
  network?: NetworkConfig
  exec?: (c: ExecContext) => Partial<ExecOutcome>
  /** how long a stopped container takes to exit */
  stopDelayMs?: number
  /** round-trip every message through the codec, so schema and size caps apply (default true) */
  wire?: boolean
  /** called after every processed event and every direct call: the place for invariants */
  afterEvent?: (h: Harness) => void
}

export interface AttemptHistory {
  jobId: string
  epoch: number
  node: string
  startMs: number
  runningAtMs?: number
  endMs?: number
  result?: { exitCode: number | null, reason: string }
}

/** A final AttemptUpdate the owner answered with accepted: true. */
export interface AcceptedFinal {
  jobId: string
  epoch: number
  node: string
  owner: string
  atMs: number
  exitCode: number | null
  reason: string | undefined
}

export interface History {
  attempts: AttemptHistory[]
  finals: AcceptedFinal[]
}

export interface SimNode {
  readonly id: string
  readonly owner: OwnerState
  readonly bidder: BidderState
  alive: boolean
  replies: Map<number, Message | undefined>
  nextReplyId: number
  running: Map<string, RunningExec>
  advertScheduled: boolean
  gonePeers: Set<string>
}

interface RunningExec {
  history: AttemptHistory
  timers: QueuedEvent[]
  stopping: boolean
}

interface QueuedEvent {
  atMs: number
  seq: number
  /** network events (deliveries, responses, request timeouts) are what deliverAll drains */
  net: boolean
  cancelled: boolean
  run: () => void
}

/** A binary min-heap on (atMs, seq): equal times run in scheduling order. */
class EventQueue {
  private readonly heap: QueuedEvent[] = []
  peek (): QueuedEvent | undefined { return this.heap[0] }
  push (e: QueuedEvent): void {
    const h = this.heap
    h.push(e)
    let i = h.length - 1
    while (i > 0) {
      const p = (i - 1) >> 1
      if (!before(h[i], h[p])) break
      ;[h[i], h[p]] = [h[p], h[i]]
      i = p
    }
  }

  pop (): QueuedEvent | undefined {
    const h = this.heap
    if (h.length === 0) return undefined
    const top = h[0]
    const last = h.pop()!
    if (h.length > 0) {
      h[0] = last
      let i = 0
      for (;;) {
        const l = 2 * i + 1
        const r = l + 1
        let m = i
        if (l < h.length && before(h[l], h[m])) m = l
        if (r < h.length && before(h[r], h[m])) m = r
        if (m === i) break
        ;[h[i], h[m]] = [h[m], h[i]]
        i = m
      }
    }
    return top
  }

  hasNet (): boolean { return this.heap.some(e => e.net && !e.cancelled) }
}

function before (a: QueuedEvent, b: QueuedEvent): boolean {
  return a.atMs < b.atMs || (a.atMs === b.atMs && a.seq < b.seq)
}

export class Harness {
  nowMs = 0
  readonly nodes = new Map<string, SimNode>()
  readonly history: History = { attempts: [], finals: [] }
  /** every job event the owners persisted, per job */
  readonly jobEvents = new Map<string, JobEvent[]>()
  /** messages put on the network, dropped, and delivered */
  readonly stats = { sent: 0, dropped: 0, delivered: 0, events: 0 }
  private readonly queue = new EventQueue()
  private readonly rng: () => number
  private readonly startsPerJob = new Map<string, number>()
  private seq = 0
  private jobCounter = 0
  private readonly tickMs: number
  private readonly advertIntervalMs: number
  private readonly advertDebounceMs: number
  private readonly net: Required<NetworkConfig>
  private readonly wire: boolean
  private readonly stopDelayMs: number

  constructor (private readonly init: HarnessInit) {
    this.rng = seededRandom(init.seed ?? 1)
    this.tickMs = init.tickMs ?? 50
    this.advertIntervalMs = init.advertIntervalMs ?? 1000
    this.advertDebounceMs = init.advertDebounceMs ?? 10
    this.net = { delayMs: init.network?.delayMs ?? 1, dropRate: init.network?.dropRate ?? 0, drop: init.network?.drop ?? (() => false), requestTimeoutMs: init.network?.requestTimeoutMs ?? 1000 }
    this.wire = init.wire ?? true
    this.stopDelayMs = init.stopDelayMs ?? 10
    const bc = bidderConfig(init.bidder)
    for (const n of init.nodes) {
      if (this.nodes.has(n.id)) throw new Error(`duplicate node id ${n.id}`)
      this.nodes.set(n.id, {
        id: n.id,
        owner: createOwner(ownerConfig(n.id, init.owner)),
        bidder: createBidder({ peerId: n.id, totalCpuMilli: n.cpuMilli, totalMemoryBytes: n.memoryBytes, labels: n.labels ?? {}, seq: 1, config: bc }),
        alive: true,
        replies: new Map(),
        nextReplyId: 1,
        running: new Map(),
        advertScheduled: false,
        gonePeers: new Set()
      })
    }
    for (const node of this.nodes.values()) {
      if (this.advertIntervalMs > 0) {
        this.publishAdvert(node)
        this.every(node, this.advertIntervalMs, () => this.publishAdvert(node))
      }
      this.every(node, this.tickMs, () => this.tick(node))
    }
  }

  // ---- the test's controls -------------------------------------------------------------

  node (id: string): SimNode {
    const n = this.nodes.get(id)
    if (n === undefined) throw new Error(`unknown node ${id}`)
    return n
  }

  /** Submits a job at an owner, as the agent's submit does. Returns its id. */
  submit (ownerId: string, s: JobSpec, id = `j${(++this.jobCounter).toString().padStart(4, '0')}`): string {
    const node = this.node(ownerId)
    if (!node.alive) throw new Error(`node ${ownerId} is dead`)
    this.ownerDo(node, { type: 'job:submitted', job: jobRecord(id, ownerId, s, this.nowMs) })
    this.checked()
    return id
  }

  cancel (ownerId: string, jobId: string): void {
    this.ownerDo(this.node(ownerId), { type: 'job:cancel', jobId })
    this.checked()
  }

  setDraining (nodeId: string, draining: boolean): void {
    this.bidderDo(this.node(nodeId), { type: 'drain:set', draining })
    this.checked()
  }

  /** Feeds every live bidder's exact capacity to every live owner, with no network in between. */
  feedAdverts (): void {
    for (const from of this.nodes.values()) {
      if (!from.alive) continue
      const c = capacityOf(from.bidder, this.nowMs)
      for (const to of this.nodes.values()) if (to.alive) this.ownerDo(to, { type: 'advert:received', capacity: c })
    }
    this.checked()
  }

  /** Kills a node: it stops ticking, its executions stop, everything to or from it is lost. */
  kill (nodeId: string): void {
    const node = this.node(nodeId)
    node.alive = false
    for (const r of node.running.values()) for (const t of r.timers) t.cancelled = true
    node.running.clear()
  }

  /** Delivers messages (and request timeouts) until none is in flight. The clock follows them,
   *  so timers falling due on the way (ticks, executions) run too, in time order. */
  deliverAll (maxEvents = 100_000): void {
    let n = 0
    while (this.queue.hasNet()) {
      if (++n > maxEvents) throw new Error('deliverAll: the network never went quiet')
      const e = this.queue.pop()!
      if (e.cancelled) continue
      this.runEvent(e)
    }
  }

  /** Runs everything due in the next `ms`: deliveries, executions, ticks and adverts. */
  advance (ms: number): void {
    const until = this.nowMs + ms
    for (;;) {
      const e = this.queue.peek()
      if (e === undefined || e.atMs > until) break
      this.queue.pop()
      if (e.cancelled) continue
      this.runEvent(e)
    }
    this.nowMs = until
  }

  /** Advances one tick at a time until `done` holds or `maxMs` have passed. Returns whether it held. */
  runUntil (done: (h: Harness) => boolean, maxMs: number): boolean {
    const until = this.nowMs + maxMs
    while (!done(this)) {
      if (this.nowMs >= until) return false
      this.advance(Math.min(this.tickMs, until - this.nowMs))
    }
    return true
  }

  job (jobId: string): JobRecord | undefined {
    for (const n of this.nodes.values()) {
      const oj = n.owner.jobs.get(jobId)
      if (oj !== undefined) return oj.record
    }
    return undefined
  }

  jobs (): JobRecord[] {
    const all: JobRecord[] = []
    for (const n of this.nodes.values()) for (const oj of n.owner.jobs.values()) all.push(oj.record)
    return all
  }

  // ---- the shell: mirrors src/agent/agent.ts -------------------------------------------

  private tick (node: SimNode): void {
    this.bidderDo(node, { type: 'tick' })
    // Membership, as the agent's tick: a peer whose adverts stopped is gone; tell the owner once.
    for (const e of node.owner.view.entries.values()) {
      const peer = e.capacity.peerId
      if (peer === node.id) continue
      const l = liveness(e, this.nowMs, node.owner.config)
      if (l === 'gone' && !node.gonePeers.has(peer)) {
        node.gonePeers.add(peer)
        this.ownerDo(node, { type: 'peer:gone', peer })
      } else if (l !== 'gone') node.gonePeers.delete(peer)
    }
    this.ownerDo(node, { type: 'tick' })
  }

  private ownerDo (node: SimNode, event: OwnerEvent): void {
    const effects = ownerStep(node.owner, event, this.nowMs)
    this.runOwnerEffects(node, effects)
  }

  private bidderDo (node: SimNode, event: BidderEvent): void {
    const effects = bidderStep(node.bidder, event, this.nowMs)
    this.runBidderEffects(node, effects)
  }

  private runOwnerEffects (node: SimNode, effects: OwnerEffect[]): void {
    for (const fx of effects) {
      if (fx.type !== 'job:changed') continue
      const list = this.jobEvents.get(fx.job.id) ?? []
      list.push(...fx.events)
      this.jobEvents.set(fx.job.id, list)
    }
    for (const fx of effects) {
      if (fx.type === 'send') this.ownerSend(node, fx.to, fx.message)
      else if (fx.type === 'reply') this.reply(node, fx.replyId, fx.message)
    }
  }

  private runBidderEffects (node: SimNode, effects: BidderEffect[]): void {
    for (const fx of effects) {
      switch (fx.type) {
        case 'reply': this.reply(node, fx.replyId, fx.message); break
        case 'send': this.bidderSend(node, fx.to, fx.message); break
        case 'attempt:start': this.startAttempt(node, fx.jobId, fx.epoch, fx.spec); break
        case 'attempt:stop': this.stopAttempt(node, fx.jobId, fx.epoch, fx.reason); break
        case 'attempt:reported': break
        case 'capacity:changed': this.scheduleAdvert(node); break
      }
    }
  }

  private ownerSend (node: SimNode, to: string, m: Message): void {
    this.request(node, to, m, response => {
      if (m.type === MessageType.BidRequest) {
        if (response.type === MessageType.Bid) this.ownerDo(node, { type: 'bid:received', from: to, ...response.body })
        else if (response.type === MessageType.BidRefused) this.ownerDo(node, { type: 'bid:refused', from: to, ...response.body })
      } else if (m.type === MessageType.Award) {
        if (response.type === MessageType.AwardAck) this.ownerDo(node, { type: 'award:acked', from: to, ...response.body })
        else if (response.type === MessageType.AwardDeclined) this.ownerDo(node, { type: 'award:declined', from: to, ...response.body })
      }
    }, () => {
      if (m.type === MessageType.BidRequest) this.ownerDo(node, { type: 'bid:refused', from: to, jobId: m.body.jobId, epoch: m.body.epoch, reason: 'unreachable' })
      // As in the agent: a failed award is left to its acknowledgement deadline (its answer
      // may be what was lost). Releases and cancels are best effort: reservations expire and
      // leases lapse anyway.
    })
  }

  private bidderSend (node: SimNode, to: string, message: Message): void {
    if (message.type !== MessageType.AttemptUpdate) return
    const u = message.body
    this.request(node, to, message, response => {
      if (response.type === MessageType.AttemptUpdateAck) this.bidderDo(node, { type: 'update:acked', ...response.body, state: u.state })
    }, () => this.bidderDo(node, { type: 'update:failed', jobId: u.jobId, epoch: u.epoch }))
  }

  private onRequest (node: SimNode, from: string, m: Message): Message {
    switch (m.type) {
      case MessageType.BidRequest:
        return this.ask(node, replyId => this.bidderDo(node, { type: 'bid:requested', from, replyId, ...m.body }))
      case MessageType.Award:
        return this.ask(node, replyId => this.bidderDo(node, { type: 'award:received', from, replyId, jobId: m.body.jobId, epoch: m.body.epoch, spec: m.body.spec, replicas: m.body.replicas }))
      case MessageType.ReservationRelease:
        this.bidderDo(node, { type: 'reservation:released', from, ...m.body })
        return ack()
      case MessageType.CancelAttempt:
        return this.ask(node, replyId => this.bidderDo(node, { type: 'attempt:cancel', from, replyId, ...m.body }))
      case MessageType.AttemptUpdate:
        return this.onAttemptUpdate(node, m.body)
      default:
        return ack(false, 'ERR_UNEXPECTED_MESSAGE')
    }
  }

  /** As the agent's onAttemptUpdate, less replication: a final result is accepted only while
   *  the owner sees a majority of the mesh alive. */
  private onAttemptUpdate (node: SimNode, u: AttemptUpdate): Message {
    if (!node.owner.jobs.has(u.jobId)) return ack(false, 'ERR_NOT_OWNER')
    const reply = this.ask(node, replyId => this.ownerDo(node, { type: 'attempt:update', replyId, update: u }))
    if (reply.type !== MessageType.AttemptUpdateAck) return reply
    if (u.state === 'exited' && reply.body.accepted) {
      if (!this.meshMajority(node)) return ack(false, 'ERR_NO_QUORUM')
      this.history.finals.push({ jobId: u.jobId, epoch: u.epoch, node: u.node, owner: node.id, atMs: this.nowMs, exitCode: u.exitCode ?? null, reason: u.reason })
    }
    return { type: MessageType.AttemptUpdateAck, body: { ...reply.body, owner: node.id } }
  }

  private meshMajority (node: SimNode): boolean {
    let known = 0
    let alive = 0
    for (const e of node.owner.view.entries.values()) {
      known++
      if (liveness(e, this.nowMs, node.owner.config) === 'alive') alive++
    }
    return alive * 2 > known
  }

  private onGossip (node: SimNode, from: string, m: Message): void {
    if (m.type !== MessageType.CapacityAdvert) return
    if (m.body.peerId !== from || from === node.id) return
    this.ownerDo(node, { type: 'advert:received', capacity: m.body })
  }

  /** Runs a machine step for an inbound request and takes the reply effect it makes. */
  private ask (node: SimNode, make: (replyId: number) => void): Message {
    const replyId = node.nextReplyId++
    node.replies.set(replyId, undefined)
    make(replyId)
    const r = node.replies.get(replyId)
    node.replies.delete(replyId)
    return r ?? ack(false, 'ERR_NO_REPLY')
  }

  private reply (node: SimNode, replyId: number, message: Message): void {
    if (node.replies.has(replyId)) node.replies.set(replyId, message)
  }

  private scheduleAdvert (node: SimNode): void {
    if (node.advertScheduled || this.advertIntervalMs === 0) return
    node.advertScheduled = true
    this.at(this.nowMs + this.advertDebounceMs, false, () => {
      node.advertScheduled = false
      if (node.alive) this.publishAdvert(node)
    })
  }

  private publishAdvert (node: SimNode): void {
    const c = capacityOf(node.bidder, this.nowMs)
    this.ownerDo(node, { type: 'advert:received', capacity: c })
    const message: Message = { type: MessageType.CapacityAdvert, body: c }
    for (const to of this.nodes.values()) {
      if (to === node) continue
      this.stats.sent++
      const leg: Leg = { kind: 'gossip', from: node.id, to: to.id, message }
      if (this.lost(leg)) { this.stats.dropped++; continue }
      const m = this.onWire(message, MAX_GOSSIP_BYTES)
      this.at(this.nowMs + this.delay(leg), true, () => {
        if (!to.alive || !node.alive) { this.stats.dropped++; return }
        this.stats.delivered++
        this.onGossip(to, node.id, m)
      })
    }
  }

  // ---- the virtual network -------------------------------------------------------------

  /** A request with one response, as mesh.request: onFailure runs when either leg is lost,
   *  the target is dead, or no response came within the request timeout. */
  private request (from: SimNode, toId: string, message: Message, onResponse: (m: Message) => void, onFailure: () => void): void {
    const to = this.nodes.get(toId)
    let settled = false
    const fail = (): void => {
      if (settled || !from.alive) return
      settled = true
      onFailure()
    }
    const timeout = this.at(this.nowMs + this.net.requestTimeoutMs, true, fail)
    this.stats.sent++
    const leg: Leg = { kind: 'request', from: from.id, to: toId, message }
    if (to === undefined || this.lost(leg)) { this.stats.dropped++; return }
    const req = this.onWire(message, MAX_DIRECT_BYTES)
    this.at(this.nowMs + this.delay(leg), true, () => {
      if (!to.alive || !from.alive || settled) { this.stats.dropped++; return }
      this.stats.delivered++
      const response = this.onWire(this.onRequest(to, from.id, req), MAX_DIRECT_BYTES)
      this.stats.sent++
      const back: Leg = { kind: 'response', from: to.id, to: from.id, message: response, request: message }
      if (this.lost(back)) { this.stats.dropped++; return }
      this.at(this.nowMs + this.delay(back), true, () => {
        if (!from.alive || settled) { this.stats.dropped++; return }
        this.stats.delivered++
        settled = true
        timeout.cancelled = true
        onResponse(response)
      })
    })
  }

  private onWire (m: Message, maxBytes: number): Message {
    if (!this.wire) return structuredClone(m)
    const r = decodeMessage(encodeMessage(m), maxBytes)
    if (!r.ok) throw new Error(`the scheduler produced an invalid message (type ${m.type}): ${r.rejection} ${r.detail ?? ''}`)
    return r.message
  }

  private lost (leg: Leg): boolean {
    return this.net.drop(leg) || (this.net.dropRate > 0 && this.rng() < this.net.dropRate)
  }

  private delay (leg: Leg): number {
    const d = this.net.delayMs
    if (typeof d === 'number') return d
    if (typeof d === 'function') return d(leg)
    return d.min + Math.floor(this.rng() * (d.max - d.min + 1))
  }

  // ---- the simulated executor ----------------------------------------------------------

  private startAttempt (node: SimNode, jobId: string, epoch: number, s: JobSpec): void {
    const k = `${jobId}#${epoch}`
    if (node.running.has(k)) return
    const start = (this.startsPerJob.get(jobId) ?? 0) + 1
    this.startsPerJob.set(jobId, start)
    const o: ExecOutcome = { startDelayMs: 10, durationMs: 1000, exitCode: 0, reason: 'exit', ...this.init.exec?.({ jobId, epoch, node: node.id, spec: s, start }) }
    const history: AttemptHistory = { jobId, epoch, node: node.id, startMs: this.nowMs }
    this.history.attempts.push(history)
    const r: RunningExec = { history, timers: [], stopping: false }
    node.running.set(k, r)
    const startedAtMs = this.nowMs + o.startDelayMs
    r.timers.push(this.at(startedAtMs, false, () => {
      if (!node.alive) return
      history.runningAtMs = this.nowMs
      this.bidderDo(node, { type: 'attempt:started', jobId, epoch, startedAtMs })
    }))
    r.timers.push(this.at(startedAtMs + o.durationMs, false, () => {
      if (!node.alive) return
      this.exitAttempt(node, k, { startedAtMs, finishedAtMs: this.nowMs, exitCode: o.exitCode, reason: o.reason })
    }))
  }

  private stopAttempt (node: SimNode, jobId: string, epoch: number, why: 'cancelled' | 'lost' | 'fenced'): void {
    const k = `${jobId}#${epoch}`
    const r = node.running.get(k)
    if (r === undefined || r.stopping) return
    r.stopping = true
    for (const t of r.timers) t.cancelled = true
    const startedAtMs = r.history.runningAtMs
    r.timers = [this.at(this.nowMs + this.stopDelayMs, false, () => {
      if (!node.alive) return
      // As the agent: an executor stopped for a lost lease reports `lost`, any other stop `cancelled`.
      this.exitAttempt(node, k, { ...(startedAtMs !== undefined ? { startedAtMs } : {}), finishedAtMs: this.nowMs, exitCode: null, reason: why === 'lost' ? 'lost' : 'cancelled' })
    })]
  }

  private exitAttempt (node: SimNode, k: string, update: { startedAtMs?: number, finishedAtMs: number, exitCode: number | null, reason: NonNullable<AttemptUpdate['reason']> }): void {
    const r = node.running.get(k)
    if (r === undefined) return
    node.running.delete(k)
    r.history.endMs = this.nowMs
    r.history.result = { exitCode: update.exitCode, reason: update.reason }
    this.bidderDo(node, { type: 'attempt:exited', jobId: r.history.jobId, epoch: r.history.epoch, update })
  }

  // ---- the clock -----------------------------------------------------------------------

  private at (atMs: number, net: boolean, run: () => void): QueuedEvent {
    const e: QueuedEvent = { atMs, seq: this.seq++, net, cancelled: false, run }
    this.queue.push(e)
    return e
  }

  /** A recurring per-node timer that stops when the node dies. */
  private every (node: SimNode, periodMs: number, run: () => void): void {
    const loop = (): void => {
      if (!node.alive) return
      run()
      this.at(this.nowMs + periodMs, false, loop)
    }
    this.at(this.nowMs + periodMs, false, loop)
  }

  private runEvent (e: QueuedEvent): void {
    if (e.atMs > this.nowMs) this.nowMs = e.atMs
    this.stats.events++
    e.run()
    this.checked()
  }

  private checked (): void {
    this.init.afterEvent?.(this)
  }
}

function ack (ok = true, code?: string): Message {
  return { type: MessageType.Ack, body: { ok, ...(code !== undefined ? { code } : {}) } }
}
