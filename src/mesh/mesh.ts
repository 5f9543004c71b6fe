// The mesh as the agent sees it: soft-state gossip on two topics, and direct
// request/response streams for everything that must be acknowledged. Implemented over
// libp2p (libp2p-mesh.ts) and in memory for tests (memory-mesh.ts).
import type { Message } from '../protocol/messages.ts'

export const Topic = {
  /** capacity adverts: soft state, periodic, latest wins */
  Capacity: 'bidmesh/capacity/1',
  /** job summaries: soft state for mesh-wide job lists */
  Jobs: 'bidmesh/jobs/1'
} as const
export type TopicName = typeof Topic[keyof typeof Topic]

export interface MeshEvents {
  'gossip:received': { topic: TopicName, from: string, message: Message }
  'peer:connected': { peer: string }
  'peer:disconnected': { peer: string }
  /** a frame failed to decode or validate and was dropped */
  'message:invalid': { from: string, channel: 'gossip' | 'direct', rejection: string }
}

export type RequestHandler = (from: string, message: Message, options: { signal: AbortSignal }) => Promise<Message>

export interface Mesh {
  readonly peerId: string
  /** full multiaddrs including /p2p/<peer id> */
  listenAddrs (): string[]
  connectedPeers (): string[]
  publish (topic: TopicName, message: Message): Promise<void>
  /** Sends a request over a direct stream and waits for its one response. */
  request (to: string, message: Message, options?: { signal?: AbortSignal, timeoutMs?: number }): Promise<Message>
  /** Sends a message that wants no answer, best effort: one that is lost is as if never sent,
   *  so it suits only what the receiver can do without (a reservation release: reservations
   *  lapse anyway). The receiver's handler runs as for a request; its answer goes nowhere.
   *  Resolves once the message is on its way; rejects if the peer cannot be reached. */
  notify (to: string, message: Message): Promise<void>
  handle (handler: RequestHandler): void
  /** Learn where a peer listens (from its adverts), so it can be dialled directly. */
  addPeerAddrs (peer: string, addrs: string[]): Promise<void>
  addEventListener<K extends keyof MeshEvents>(type: K, listener: (detail: MeshEvents[K]) => void): void
  /** bytes of gossip payload sent and received per topic since start (for metrics and benchmarks) */
  gossipStats (): Record<string, { sentBytes: number, receivedBytes: number, sent: number, received: number }>
  stop (): Promise<void>
}

export class PeerUnreachableError extends Error {
  static readonly code = 'ERR_PEER_UNREACHABLE'
  readonly code = PeerUnreachableError.code
  constructor (readonly peer: string, options?: ErrorOptions) {
    super(`peer ${peer} could not be reached`, options)
    this.name = 'PeerUnreachableError'
  }
}

export class InvalidResponseError extends Error {
  static readonly code = 'ERR_INVALID_RESPONSE'
  readonly code = InvalidResponseError.code
  constructor (readonly peer: string, readonly rejection: string, options?: ErrorOptions) {
    super(`peer ${peer} sent an invalid response (${rejection})`, options)
    this.name = 'InvalidResponseError'
  }
}

/** A tiny typed event emitter shared by the mesh implementations. */
export class MeshEmitter {
  private readonly listeners = new Map<string, Array<(d: any) => void>>()
  addEventListener<K extends keyof MeshEvents>(type: K, listener: (detail: MeshEvents[K]) => void): void {
    const list = this.listeners.get(type) ?? []
    list.push(listener)
    this.listeners.set(type, list)
  }

  emit<K extends keyof MeshEvents>(type: K, detail: MeshEvents[K]): void {
    for (const l of this.listeners.get(type) ?? []) l(detail)
  }
}
