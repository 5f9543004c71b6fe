// The mesh in memory, for tests: every mesh created on one network reaches every other one,
// unless stopped or cut off by a partition. Frames go through the same codec as over libp2p,
// so size caps, versions and schemas apply, and an invalid frame is reported as
// 'message:invalid' and dropped, never delivered. Delivery is asynchronous (a microtask
// later), as on a real network, yet needs no timers: only a request's timeout uses one.
import { decodeMessage, encodeMessage } from '../protocol/codec.ts'
import { MAX_DIRECT_BYTES, MAX_GOSSIP_BYTES, type Message } from '../protocol/messages.ts'
import { MESH_DEFAULTS } from './constants.ts'
import { InvalidResponseError, type Mesh, MeshEmitter, PeerUnreachableError, type RequestHandler, type TopicName } from './mesh.ts'

export interface MemoryNetworkInit {
  /** a request waits this long for its response; default MESH_DEFAULTS.requestTimeoutMs */
  requestTimeoutMs?: number
}

export interface MemoryNetwork {
  createMesh (peerId: string): Mesh
  /** Cuts every peer in `a` off from every peer in `b`, both ways. Cuts add up until heal(). */
  partition (a: string[], b: string[]): void
  /** Removes every cut. */
  heal (): void
  /** Resolves once every gossip frame and connection event already sent has been delivered. */
  settled (): Promise<void>
}

export class DuplicatePeerError extends Error {
  static readonly code = 'ERR_DUPLICATE_PEER'
  readonly code = DuplicatePeerError.code
  constructor (readonly peer: string, options?: ErrorOptions) {
    super(`a running mesh already has peer id ${peer}`, options)
    this.name = 'DuplicatePeerError'
  }
}

export function createMemoryNetwork (init: MemoryNetworkInit = {}): MemoryNetwork {
  const net = new Network(init.requestTimeoutMs ?? MESH_DEFAULTS.requestTimeoutMs)
  return {
    createMesh: (peerId) => net.createMesh(peerId),
    partition: (a, b) => net.partition(a, b),
    heal: () => net.heal(),
    settled: async () => await net.settled()
  }
}

class Network {
  readonly meshes = new Map<string, MemoryMesh>()
  private readonly cuts = new Set<string>()
  /** who each mesh was last told it is connected to */
  private readonly links = new Map<string, Set<string>>()
  private inFlight = 0
  private waiters: Array<() => void> = []

  constructor (readonly requestTimeoutMs: number) {}

  createMesh (peerId: string): Mesh {
    if (this.meshes.get(peerId)?.running === true) throw new DuplicatePeerError(peerId)
    const mesh = new MemoryMesh(peerId, this)
    this.meshes.set(peerId, mesh)
    this.reconcile()
    return mesh
  }

  partition (a: string[], b: string[]): void {
    for (const x of a) {
      for (const y of b) {
        if (x === y) continue
        this.cuts.add(`${x}\n${y}`)
        this.cuts.add(`${y}\n${x}`)
      }
    }
    this.reconcile()
  }

  heal (): void {
    this.cuts.clear()
    this.reconcile()
  }

  canReach (from: string, to: string): boolean {
    return from !== to && this.meshes.get(from)?.running === true && this.meshes.get(to)?.running === true && !this.cuts.has(`${from}\n${to}`)
  }

  reachableFrom (peer: string): string[] {
    return [...this.meshes.keys()].filter(p => this.canReach(peer, p))
  }

  /** Runs `fn` a microtask later, counted until it has run (see settled()). */
  later (fn: () => void): void {
    this.inFlight++
    queueMicrotask(() => {
      try {
        fn()
      } finally {
        if (--this.inFlight === 0) for (const w of this.waiters.splice(0)) w()
      }
    })
  }

  async settled (): Promise<void> {
    // A delivery may schedule another; wait until none is left.
    while (this.inFlight > 0) await new Promise<void>(resolve => this.waiters.push(resolve))
  }

  /** Tells each running mesh about peers it gained or lost since it was last told. */
  reconcile (): void {
    for (const [peer, mesh] of this.meshes) {
      const before = this.links.get(peer) ?? new Set<string>()
      const now = new Set(mesh.running ? this.reachableFrom(peer) : [])
      this.links.set(peer, now)
      if (!mesh.running) continue
      for (const p of now) if (!before.has(p)) this.later(() => { if (mesh.running) mesh.emit('peer:connected', { peer: p }) })
      for (const p of before) if (!now.has(p)) this.later(() => { if (mesh.running) mesh.emit('peer:disconnected', { peer: p }) })
    }
  }
}

type GossipStats = Record<string, { sentBytes: number, receivedBytes: number, sent: number, received: number }>

class MemoryMesh extends MeshEmitter implements Mesh {
  running = true
  private handler?: RequestHandler
  private readonly stats: GossipStats = {}

  constructor (readonly peerId: string, private readonly net: Network) {
    super()
  }

  listenAddrs (): string[] {
    return this.running ? [`/memory/${this.peerId}/p2p/${this.peerId}`] : []
  }

  connectedPeers (): string[] {
    return this.running ? this.net.reachableFrom(this.peerId) : []
  }

  /** As the libp2p mesh: one send per publish, one receive per valid frame delivered. */
  gossipStats (): GossipStats {
    return structuredClone(this.stats)
  }

  private stat (topic: string): GossipStats[string] {
    return (this.stats[topic] ??= { sentBytes: 0, receivedBytes: 0, sent: 0, received: 0 })
  }

  async publish (topic: TopicName, message: Message): Promise<void> {
    // Gossip is soft state: a publish that reaches no one is not an error, as over libp2p.
    if (!this.running) return
    const bytes = encodeMessage(message)
    const st = this.stat(topic)
    st.sent++
    st.sentBytes += bytes.byteLength
    for (const to of this.net.reachableFrom(this.peerId)) {
      this.net.later(() => {
        if (!this.net.canReach(this.peerId, to)) return
        this.net.meshes.get(to)!.receiveGossip(this.peerId, topic, bytes)
      })
    }
  }

  receiveGossip (from: string, topic: TopicName, bytes: Uint8Array): void {
    const r = decodeMessage(bytes, MAX_GOSSIP_BYTES)
    if (!r.ok) {
      this.emit('message:invalid', { from, channel: 'gossip', rejection: r.rejection })
      return
    }
    const st = this.stat(topic)
    st.received++
    st.receivedBytes += bytes.byteLength
    this.emit('gossip:received', { topic, from, message: r.message })
  }

  handle (handler: RequestHandler): void {
    this.handler = handler
  }

  async request (to: string, message: Message, options: { signal?: AbortSignal, timeoutMs?: number } = {}): Promise<Message> {
    if (!this.running) throw new PeerUnreachableError(to)
    const timeoutMs = options.timeoutMs ?? this.net.requestTimeoutMs
    const handlerAbort = new AbortController()
    return await new Promise<Message>((resolve, reject) => {
      let done = false
      const finish = (settle: () => void): void => {
        if (done) return
        done = true
        clearTimeout(timer)
        options.signal?.removeEventListener('abort', onAbort)
        settle()
      }
      const onAbort = (): void => {
        const reason = options.signal?.reason
        handlerAbort.abort(reason)
        finish(() => reject(new PeerUnreachableError(to, { cause: reason })))
      }
      const timer = setTimeout(() => {
        const reason = new Error(`no response within ${timeoutMs} ms`)
        handlerAbort.abort(reason)
        finish(() => reject(new PeerUnreachableError(to, { cause: reason })))
      }, timeoutMs)
      if (options.signal?.aborted === true) { onAbort(); return }
      options.signal?.addEventListener('abort', onAbort, { once: true })
      this.exchange(to, message, handlerAbort.signal).then(
        response => finish(() => resolve(response)),
        (err: unknown) => finish(() => reject(err))
      )
    })
  }

  async notify (to: string, message: Message): Promise<void> {
    if (!this.running) throw new PeerUnreachableError(to)
    // As the libp2p mesh: to oneself, straight to one's own handler.
    if (to === this.peerId) { await this.exchange(to, message, new AbortController().signal); return }
    if (!this.net.canReach(this.peerId, to)) throw new PeerUnreachableError(to)
    const bytes = encodeMessage(message)
    // On its way once sent: the receiver handles it under the request deadline, as the
    // libp2p mesh's server does, and no answer is made.
    void (async () => {
      await nextMicrotask()
      const target = this.net.meshes.get(to)
      if (target === undefined || !this.net.canReach(this.peerId, to)) return
      const handlerAbort = new AbortController()
      const timer = setTimeout(() => handlerAbort.abort(new Error(`not handled within ${this.net.requestTimeoutMs} ms`)), this.net.requestTimeoutMs)
      try {
        await target.serve(this.peerId, bytes, handlerAbort.signal, false)
      } catch {
        // nobody waits for it
      } finally {
        clearTimeout(timer)
      }
    })()
  }

  private async exchange (to: string, message: Message, signal: AbortSignal): Promise<Message> {
    if (to === this.peerId) {
      // As the libp2p mesh: a request to oneself goes straight to one's own handler.
      if (this.handler === undefined) throw new PeerUnreachableError(to)
      return await this.handler(to, message, { signal })
    }
    if (!this.net.canReach(this.peerId, to)) throw new PeerUnreachableError(to)
    const requestBytes = encodeMessage(message)
    await nextMicrotask()
    const target = this.net.meshes.get(to)
    if (target === undefined || !this.net.canReach(this.peerId, to)) throw new PeerUnreachableError(to)
    const responseBytes = await target.serve(this.peerId, requestBytes, signal)
    await nextMicrotask()
    if (!this.net.canReach(this.peerId, to)) throw new PeerUnreachableError(to)
    const r = decodeMessage(responseBytes, MAX_DIRECT_BYTES)
    if (!r.ok) {
      this.emit('message:invalid', { from: to, channel: 'direct', rejection: r.rejection })
      throw new InvalidResponseError(to, r.rejection)
    }
    return r.message
  }

  /** The serving side of one request; any failure reaches the caller as an unreachable peer,
   *  as an aborted stream does over libp2p. */
  async serve (from: string, bytes: Uint8Array, signal: AbortSignal, wantsAnswer = true): Promise<Uint8Array> {
    const r = decodeMessage(bytes, MAX_DIRECT_BYTES)
    if (!r.ok) {
      this.emit('message:invalid', { from, channel: 'direct', rejection: r.rejection })
      throw new PeerUnreachableError(this.peerId, { cause: new Error(`invalid request: ${r.rejection}`) })
    }
    if (this.handler === undefined) throw new PeerUnreachableError(this.peerId, { cause: new Error('no handler') })
    try {
      const answer = await this.handler(from, r.message, { signal })
      return wantsAnswer ? encodeMessage(answer) : new Uint8Array(0)
    } catch (err) {
      throw new PeerUnreachableError(this.peerId, { cause: err })
    }
  }

  async addPeerAddrs (): Promise<void> {
    // Every mesh on the network can reach every other by peer id: nothing to learn.
  }

  async stop (): Promise<void> {
    if (!this.running) return
    this.running = false
    this.net.reconcile()
  }
}

async function nextMicrotask (): Promise<void> {
  await new Promise<void>(resolve => queueMicrotask(resolve))
}
