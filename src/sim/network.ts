// The simulated network: one-way latency (base + uniform jitter), independent loss per
// message, and partitions. Direct requests behave like the real mesh's request(): the
// caller hears either the one response or, after the request timeout, a failure (lost
// request, lost response, dead or partitioned peer all look the same from the caller).
// A request to oneself is a local call, as in libp2p-mesh.ts, and never touches the wire.
import { MESH_DEFAULTS } from '../mesh/constants.ts'
import { decodeMessage, encodeMessage } from '../protocol/codec.ts'
import { MAX_DIRECT_BYTES, type Message } from '../protocol/messages.ts'
import type { Engine } from './engine.ts'
import type { Rng } from './rng.ts'

export interface NetworkConfig {
  /** one-way latency is latencyMs + uniform(0, jitterMs) */
  latencyMs: number
  jitterMs: number
  /** probability that any one message (a request, a response, one gossip delivery) is lost */
  loss: number
  /** a request unanswered this long fails (the real mesh's requestTimeoutMs) */
  requestTimeoutMs: number
  /** round-trip every direct message through the real codec (size caps and schemas); for tests */
  checkWire?: boolean
}

export const NETWORK_DEFAULTS: NetworkConfig = {
  latencyMs: 2,
  jitterMs: 3,
  loss: 0,
  requestTimeoutMs: MESH_DEFAULTS.requestTimeoutMs
}

/** What the network needs to know about the hosts: whether one is up, and which incarnation
 *  of it (a crashed and restarted process never receives what was sent to the old one). */
export interface Hosts {
  isUp: (host: number) => boolean
  incarnation: (host: number) => number
}

export interface TakeOver {
  wants: (request: Message, response: Message) => boolean
  take: (request: Message, response: Message, from: number, atMs: number, seq: number, fromInc: number) => void
}

export class Network {
  /** direct messages put on the wire, by protocol message type (requests and responses) */
  readonly byType = new Float64Array(32)
  /** direct messages put on the wire */
  messages = 0
  /** requests an agent made to itself: local calls, not on the wire */
  localRequests = 0
  /** direct messages that never arrived (loss, partition, dead peer) */
  dropped = 0
  /** partition side per host while a partition lasts */
  private side: Uint8Array | undefined

  constructor (
    private readonly engine: Engine,
    private readonly rng: Rng,
    readonly config: NetworkConfig,
    private readonly hosts: Hosts
  ) {}

  /** Cuts the hosts with side 1 off from those with side 0; undefined heals. */
  setPartition (side: Uint8Array | undefined): void { this.side = side }

  get partitioned (): boolean { return this.side !== undefined }

  /** Whole milliseconds, so every virtual time is an integer: times that travel in messages
   *  (sentAtMs, startedAtMs …) are integers on the wire, as the schemas require. */
  latencyMs (): number {
    const c = this.config
    return Math.round(c.jitterMs > 0 ? c.latencyMs + this.rng.next() * c.jitterMs : c.latencyMs)
  }

  /** Whether one message from a to b gets through the partition and the loss. */
  passes (a: number, b: number): boolean {
    if (this.side !== undefined && this.side[a] !== this.side[b]) return false
    return !(this.config.loss > 0 && this.rng.next() < this.config.loss)
  }

  private count (message: Message): void {
    this.messages++
    this.byType[message.type]++
    if (this.config.checkWire === true) checkWire(message, MAX_DIRECT_BYTES)
  }

  private alive (host: number, incarnation: number): boolean {
    return this.hosts.isUp(host) && this.hosts.incarnation(host) === incarnation
  }

  /**
   * Sends a request and calls `done` with the response, or with undefined once the request
   * times out. `serve` runs at the receiver when the request arrives and returns its response.
   * `done` is dropped if the caller crashed meanwhile.
   */
  request (
    from: number, to: number, message: Message, serve: (m: Message) => Message, done: (response: Message | undefined) => void,
    /** The caller may take over a response that passed (`wants`) instead of having `done` run
     *  at its arrival: `take` gets the arrival time and the insertion number the arrival would
     *  have had, and runs it in that place itself if `from` is still the incarnation that asked. */
    takeOver?: TakeOver
  ): void {
    const e = this.engine
    const fromInc = this.hosts.incarnation(from)
    if (from === to) {
      this.localRequests++
      e.after(0, () => { if (this.alive(from, fromInc)) done(serve(message)) })
      return
    }
    this.count(message)
    const sentAtMs = e.nowMs
    const fail = (): void => {
      this.dropped++
      e.at(sentAtMs + this.config.requestTimeoutMs, () => { if (this.alive(from, fromInc)) done(undefined) })
    }
    if (!this.hosts.isUp(to) || !this.passes(from, to)) { fail(); return }
    const toInc = this.hosts.incarnation(to)
    e.after(this.latencyMs(), () => {
      if (!this.alive(to, toInc)) { fail(); return }
      const response = serve(message)
      this.count(response)
      if (!this.passes(to, from)) { fail(); return }
      const latencyMs = this.latencyMs()
      if (takeOver?.wants(message, response) === true) { takeOver.take(message, response, from, e.nowMs + latencyMs, e.reserveSeq(), fromInc); return }
      e.after(latencyMs, () => { if (this.alive(from, fromInc)) done(response) })
    })
  }

  /** A message that wants no answer (the real mesh's notify()): `serve` runs at the receiver
   *  when it arrives, and its answer goes nowhere. Lost like any message, unnoticed. */
  notify (from: number, to: number, message: Message, serve: (m: Message) => unknown): void {
    const e = this.engine
    if (from === to) {
      this.localRequests++
      const fromInc = this.hosts.incarnation(from)
      e.after(0, () => { if (this.alive(from, fromInc)) serve(message) })
      return
    }
    this.count(message)
    if (!this.hosts.isUp(to) || !this.passes(from, to)) { this.dropped++; return }
    const toInc = this.hosts.incarnation(to)
    e.after(this.latencyMs(), () => { if (this.alive(to, toInc)) serve(message); else this.dropped++ })
  }

  /**
   * One gossip publication: after one latency, `deliver` runs for each receiver that is up and
   * that the message reaches, and `missed` (if given) for each receiver that is up but that the
   * message does not reach (loss, partition). Receivers are read at delivery time (the mesh at
   * that moment). Returns when the publication arrives: its virtual time and the insertion
   * number of its arrival action (every receiver gets it in that place of the order).
   */
  gossip (from: number, receivers: () => Iterable<number>, deliver: (to: number) => void, missed?: (to: number) => void): { atMs: number, seq: number } {
    const atMs = this.engine.nowMs + this.latencyMs()
    const seq = this.engine.at(atMs, () => {
      for (const to of receivers()) {
        if (to === from || !this.hosts.isUp(to)) continue
        if (this.passes(from, to)) deliver(to)
        else if (missed !== undefined) missed(to)
      }
    })
    return { atMs, seq }
  }
}

/** Throws when a message would not survive the real codec: what the simulator sends must be
 *  what a real agent would accept. */
export function checkWire (message: Message, maxBytes: number): void {
  const r = decodeMessage(encodeMessage(message), maxBytes)
  if (!r.ok) throw new Error(`message type ${message.type} fails the codec: ${r.rejection} ${r.detail ?? ''}`)
}
