// The mesh over libp2p 2.x: TCP, (pnet), noise, yamux, identify, gossipsub. Direct requests
// go over one long-lived channel per peer (rpc-mux.ts), or one short stream each to a peer
// that does not speak it; length-prefixed msgpackr frames in both directions. Every limit
// is in constants.ts with its reason; a private mesh (swarm key) is set up in security.ts.
import { readFile, writeFile, mkdir, rename } from 'node:fs/promises'
import { join } from 'node:path'
import { gossipsub } from '@chainsafe/libp2p-gossipsub'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { identify } from '@libp2p/identify'
import { preSharedKey } from '@libp2p/pnet'
import { peerIdFromString } from '@libp2p/peer-id'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { lpStream } from 'it-length-prefixed-stream'
import { createLibp2p, type Libp2p } from 'libp2p'
import type { PrivateKey } from '@libp2p/interface'
import { decodeMessage, encodeMessage } from '../protocol/codec.ts'
import { MAX_DIRECT_BYTES, MAX_GOSSIP_BYTES, type Message, MessageType } from '../protocol/messages.ts'
import { rendezvous } from '../scheduler/hash.ts'
import { CONNECTION_LIMITS, GOSSIP_LIMITS, GOSSIP_SCORE_PARAMS, GOSSIP_SCORE_THRESHOLDS, MESH_DEFAULTS } from './constants.ts'
import { InvalidResponseError, type Mesh, MeshEmitter, PeerUnreachableError, type RequestHandler, Topic, type TopicName } from './mesh.ts'
import { type RpcClient, createRpcClient, serveRpc } from './rpc-mux.ts'
import { deadline, untilAborted } from './deadline.ts'
import { resolveSwarmKey } from './security.ts'

export { SwarmKeyRequiredError, InvalidSwarmKeyError } from './security.ts'

/** How an agent keeps itself joined to the mesh (MESH_DEFAULTS explains each). */
export interface TopUpSettings { minPeers: number, silentPeerDialMs: number, maxSilentDialsPerTopUp: number, candidatePeerTtlMs: number }

export interface Libp2pMeshInit {
  dataDir: string
  listen: string[]
  bootstrap?: string[]
  requestTimeoutMs?: number
  /** Content of a libp2p pnet key file (see `bidmesh keygen`). With it, only peers holding
   *  the same key can connect. A key that does not parse is an error, never "no key". */
  swarmKey?: Uint8Array
  /** Refuse to start without a valid swarm key (SwarmKeyRequiredError), checked before the
   *  node or its identity is created. Set whenever a swarm key is expected. */
  requirePrivate?: boolean
  /** Overrides of the connection limits, for tests that probe them (e.g. to let 100 dials
   *  from one host reach the handshake instead of the per-host rate limit). */
  connectionLimits?: Partial<typeof CONNECTION_LIMITS>
  /** Overrides of how the agent keeps itself joined (MESH_DEFAULTS.minPeers and what follows
   *  it), for tests that isolate one rule. */
  topUp?: Partial<TopUpSettings>
  logger?: { warn: (obj: object, msg?: string) => void, debug: (obj: object, msg?: string) => void }
}

/** Loads the agent's persistent identity, creating it on first start. */
export async function loadOrCreateKey (dataDir: string): Promise<PrivateKey> {
  const path = join(dataDir, 'peer.key')
  try {
    return privateKeyFromProtobuf(await readFile(path)) as unknown as PrivateKey
  } catch (err: any) {
    if (err?.code !== 'ENOENT') throw err
  }
  await mkdir(dataDir, { recursive: true })
  const key = await generateKeyPair('Ed25519')
  // Write-then-rename: a crash never leaves a half-written identity behind.
  await writeFile(`${path}.tmp`, privateKeyToProtobuf(key), { mode: 0o600 })
  await rename(`${path}.tmp`, path)
  return key as unknown as PrivateKey
}

/** The libp2p node behind a mesh made by createLibp2pMesh: for tests and diagnostics only. */
const nodes = new WeakMap<Mesh, Libp2p<any>>()
export function libp2pNodeOf (mesh: Mesh): Libp2p<any> | undefined {
  return nodes.get(mesh)
}

export async function createLibp2pMesh (init: Libp2pMeshInit): Promise<Mesh> {
  // Fail closed, first: no identity, socket or node exists before the key is settled.
  // (libp2p's own LIBP2P_FORCE_PNET check is not relied on: it is an environment variable.)
  const psk = resolveSwarmKey(init)
  const privateKey = await loadOrCreateKey(init.dataDir)
  const limits = { ...CONNECTION_LIMITS, ...init.connectionLimits }
  const node = await createLibp2p({
    privateKey,
    addresses: { listen: init.listen },
    transports: [tcp({ maxConnections: limits.tcpMaxConnections })],
    ...(psk !== undefined ? { connectionProtector: preSharedKey({ psk }) } : {}),
    connectionEncrypters: [noise()],
    streamMuxers: [yamux({
      maxInboundStreams: limits.muxerMaxStreams,
      maxOutboundStreams: limits.muxerMaxStreams,
      maxStreamWindowSize: limits.muxerMaxStreamWindowBytes
    })],
    connectionManager: {
      maxConnections: limits.maxConnections,
      inboundConnectionThreshold: limits.inboundConnectionThreshold,
      maxIncomingPendingConnections: limits.maxIncomingPendingConnections,
      inboundUpgradeTimeout: limits.inboundUpgradeTimeoutMs,
      dialTimeout: limits.dialTimeoutMs,
      maxParallelDials: limits.maxParallelDials,
      maxDialQueueLength: limits.maxDialQueueLength,
      maxPeerAddrsToDial: limits.maxPeerAddrsToDial,
      inboundStreamProtocolNegotiationTimeout: limits.streamNegotiationTimeoutMs,
      outboundStreamProtocolNegotiationTimeout: limits.streamNegotiationTimeoutMs
    },
    services: {
      identify: identify(),
      pubsub: gossipsub({
        // Every message is signed by its origin and carries its key and a sequence number;
        // unsigned or badly signed messages are dropped before validation. StrictSign is
        // gossipsub's default; it is spelled out so nobody relaxes it by accident: the
        // agent trusts `from` (an advert must be about its signer).
        globalSignaturePolicy: 'StrictSign',
        // Drop copies of a message before checking its signature. With every agent in every
        // topic mesh, each message reaches an agent once from its origin and once from each
        // other forwarder, and gossipsub verifies a copy's signature before its message id
        // is compared (~10 % of a busy agent's CPU went to verifying copies). The fast id is
        // what the StrictSign message id is made of (signer, sequence number); an id only
        // enters this cache once its message passed verification, so a forged copy sent
        // first is still checked, and rejected, and does not shadow the real one.
        fastMsgIdFn: gossipFastMessageId,
        // Capacity adverts must go out even before a topic mesh has formed.
        allowPublishToZeroTopicPeers: true,
        emitSelf: false,
        // Subscriptions and messages for any other topic are ignored: no state for them.
        allowedTopics: Object.values(Topic),
        // No peer exchange: a PRUNE cannot hand us a list of peers to dial.
        doPX: false,
        maxInboundDataLength: GOSSIP_LIMITS.maxInboundDataLength,
        maxOutboundBufferSize: GOSSIP_LIMITS.maxOutboundBufferSize,
        decodeRpcLimits: { ...GOSSIP_LIMITS.decodeRpcLimits },
        maxInboundStreams: GOSSIP_LIMITS.maxStreams,
        maxOutboundStreams: GOSSIP_LIMITS.maxStreams,
        scoreParams: {
          topics: structuredClone(GOSSIP_SCORE_PARAMS.topics),
          topicScoreCap: GOSSIP_SCORE_PARAMS.topicScoreCap,
          appSpecificScore: () => 0,
          appSpecificWeight: GOSSIP_SCORE_PARAMS.appSpecificWeight,
          IPColocationFactorWeight: GOSSIP_SCORE_PARAMS.IPColocationFactorWeight,
          IPColocationFactorThreshold: GOSSIP_SCORE_PARAMS.IPColocationFactorThreshold,
          IPColocationFactorWhitelist: new Set(GOSSIP_SCORE_PARAMS.IPColocationFactorWhitelist),
          behaviourPenaltyWeight: GOSSIP_SCORE_PARAMS.behaviourPenaltyWeight,
          behaviourPenaltyThreshold: GOSSIP_SCORE_PARAMS.behaviourPenaltyThreshold,
          behaviourPenaltyDecay: GOSSIP_SCORE_PARAMS.behaviourPenaltyDecay,
          decayInterval: GOSSIP_SCORE_PARAMS.decayIntervalMs,
          decayToZero: GOSSIP_SCORE_PARAMS.decayToZero,
          retainScore: GOSSIP_SCORE_PARAMS.retainScoreMs
        },
        scoreThresholds: { ...GOSSIP_SCORE_THRESHOLDS }
      })
    }
  })
  const mesh = new Libp2pMesh(node, init)
  nodes.set(mesh, node)
  await mesh.start()
  return mesh
}

/** Which message types each topic carries, and whom each one speaks for: the body must name
 *  its gossip signer (StrictSign makes the signer unforgeable), so no peer can publish an
 *  advert, a leave or summaries on another's behalf. A new gossip message type is one line. */
const GOSSIP_TYPES: Record<TopicName, Partial<Record<number, (m: Message) => string | undefined>>> = {
  [Topic.Capacity]: {
    [MessageType.CapacityAdvert]: m => m.type === MessageType.CapacityAdvert ? m.body.peerId : undefined,
    [MessageType.MemberLeave]: m => m.type === MessageType.MemberLeave ? m.body.peerId : undefined
  },
  [Topic.Jobs]: {
    [MessageType.JobSummaries]: m => m.type === MessageType.JobSummaries ? m.body.from : undefined
  }
}

/** Gossip acceptance, pure: the frame decodes, its type belongs on the topic, and the body
 *  names its signer. A rejection penalises the peer that sent it (P4 in GOSSIP_SCORE_PARAMS). */
export function validateGossip (topic: string, signer: string | undefined, data: Uint8Array):
{ ok: true, message: Message } | { ok: false, rejection: string } {
  const allowed = Object.hasOwn(GOSSIP_TYPES, topic) ? GOSSIP_TYPES[topic as TopicName] : undefined
  if (allowed === undefined) return { ok: false, rejection: 'unknown-topic' }
  let r: ReturnType<typeof decodeMessage>
  try {
    r = decodeMessage(data, MAX_GOSSIP_BYTES)
  } catch {
    // The codec promises never to throw; if it ever does, the frame is still refused here
    // rather than escaping into gossipsub's validation pipeline.
    return { ok: false, rejection: 'malformed' }
  }
  if (!r.ok) return { ok: false, rejection: r.rejection }
  const speaksFor = allowed[r.message.type]
  if (speaksFor === undefined) return { ok: false, rejection: 'wrong-topic' }
  if (signer === undefined || speaksFor(r.message) !== signer) return { ok: false, rejection: 'not-signer' }
  return { ok: true, message: r.message }
}

class Libp2pMesh extends MeshEmitter implements Mesh {
  readonly peerId: string
  private handler?: RequestHandler
  private readonly bootstrap: string[]
  private redialTimer?: ReturnType<typeof setInterval>
  private readonly timeoutMs: number
  private readonly topUp: TopUpSettings
  /** Messages the topic validator decoded, by payload object (dropped with the payload). */
  private readonly validated = new WeakMap<Uint8Array, Message>()
  private readonly stats: Record<string, { sentBytes: number, receivedBytes: number, sent: number, received: number }> = {}
  /** one open request channel per peer, and the ones being opened */
  private readonly channels = new Map<string, RpcClient>()
  private readonly openingChannels = new Map<string, Promise<RpcClient | undefined>>()
  /** peers that do not speak the channel protocol, and when we found out */
  private readonly legacyPeers = new Map<string, number>()
  /** Peers learned from adverts (addPeerAddrs): top-up candidates, each with when it was
   *  last heard on gossip (or learned), least recently first. */
  private readonly candidatePeers = new Map<string, number>()
  /** peers whose top-up dial failed, and until when they are not tried again */
  private readonly dialBackoffUntil = new Map<string, number>()
  private toppingUp = false

  private stat (topic: string) {
    return (this.stats[topic] ??= { sentBytes: 0, receivedBytes: 0, sent: 0, received: 0 })
  }

  gossipStats (): Record<string, { sentBytes: number, receivedBytes: number, sent: number, received: number }> {
    return structuredClone(this.stats)
  }

  constructor (private readonly node: Libp2p<any>, private readonly init: Libp2pMeshInit) {
    super()
    this.peerId = node.peerId.toString()
    this.bootstrap = init.bootstrap ?? []
    this.timeoutMs = init.requestTimeoutMs ?? MESH_DEFAULTS.requestTimeoutMs
    const { minPeers, silentPeerDialMs, maxSilentDialsPerTopUp, candidatePeerTtlMs } = MESH_DEFAULTS
    this.topUp = { minPeers, silentPeerDialMs, maxSilentDialsPerTopUp, candidatePeerTtlMs, ...init.topUp }
  }

  private get pubsub (): any { return (this.node.services as any).pubsub }

  async start (): Promise<void> {
    const pubsub = this.pubsub
    for (const topic of Object.values(Topic)) {
      // Validate before gossipsub forwards anything: an invalid frame is rejected (and its
      // sender penalised by peer scoring), never relayed.
      pubsub.topicValidators.set(topic, (from: any, msg: any) => {
        const signer = msg.type === 'signed' ? msg.from.toString() : undefined
        const r = validateGossip(topic, signer, msg.data)
        if (!r.ok) {
          this.emit('message:invalid', { from: from.toString(), channel: 'gossip', rejection: r.rejection })
          return 'reject'
        }
        // Gossipsub hands the same payload object to the 'message' listener: keep the decoded,
        // validated message so it is not decoded and schema-checked a second time there.
        this.validated.set(msg.data, r.message)
        return 'accept'
      })
      pubsub.subscribe(topic)
    }
    pubsub.addEventListener('message', (evt: any) => {
      const m = evt.detail
      const known = this.validated.get(m.data)
      const r = known !== undefined ? { ok: true as const, message: known } : decodeMessage(m.data, MAX_GOSSIP_BYTES)
      if (!r.ok) return // already counted by the validator
      const st = this.stat(m.topic)
      st.received++
      st.receivedBytes += m.data.byteLength
      const from = m.type === 'signed' ? m.from.toString() : 'unknown'
      // Only peers already learned from adverts are candidates: no dials to anyone on hearsay.
      if (this.candidatePeers.has(from)) this.heardFrom(from, Date.now())
      this.emit('gossip:received', { topic: m.topic as TopicName, from, message: r.message })
    })
    this.node.addEventListener('peer:connect', (evt: any) => this.emit('peer:connected', { peer: evt.detail.toString() }))
    this.node.addEventListener('peer:disconnect', (evt: any) => this.emit('peer:disconnected', { peer: evt.detail.toString() }))
    await this.node.handle(MESH_DEFAULTS.rpcProtocol, ({ stream, connection }: any) => {
      void this.serve(stream, connection.remotePeer.toString())
    }, { maxInboundStreams: MESH_DEFAULTS.maxInboundStreams, maxOutboundStreams: MESH_DEFAULTS.maxOutboundStreams })
    await this.node.handle(MESH_DEFAULTS.rpcMuxProtocol, ({ stream, connection }: any) => {
      void this.serveChannel(stream, connection.remotePeer.toString())
    }, { maxInboundStreams: MESH_DEFAULTS.maxMuxChannels, maxOutboundStreams: MESH_DEFAULTS.maxMuxChannels })
    await this.dialBootstrap()
    this.redialTimer = setInterval(() => { void this.dialBootstrap().then(async () => await this.topUpPeers()) }, MESH_DEFAULTS.redialIntervalMs)
    this.redialTimer.unref?.()
  }

  /** Keeps this agent joined to the mesh (see MESH_DEFAULTS.minPeers and silentPeerDialMs):
   *  dials learned peers while it has fewer than minPeers connections, and dials peers it no
   *  longer hears on gossip. Each agent ranks candidates by rendezvous hash with its own id as
   *  the key, so agents that bootstrapped from the same seed choose different peers and the
   *  graph spreads out. A failed dial backs its peer off. */
  private async topUpPeers (): Promise<void> {
    // Dials may outlast the interval (dialTimeoutMs 5 s > 2 s): one top-up at a time, or a
    // silent peer would be dialled again before its first dial failed and backed it off.
    if (this.toppingUp) return
    this.toppingUp = true
    try {
      await this.topUpOnce()
    } finally {
      this.toppingUp = false
    }
  }

  private async topUpOnce (): Promise<void> {
    const now = Date.now()
    for (const [p, heardAtMs] of this.candidatePeers) {
      if (now - heardAtMs <= this.topUp.candidatePeerTtlMs) break // the rest were heard later
      this.candidatePeers.delete(p)
      this.dialBackoffUntil.delete(p)
    }
    const connected = new Set(this.connectedPeers())
    const dialable = [...this.candidatePeers.keys()]
      .filter(p => !connected.has(p) && (this.dialBackoffUntil.get(p) ?? 0) <= now)
      .sort((a, b) => rendezvous(this.peerId, b) - rendezvous(this.peerId, a) || (a < b ? -1 : 1))
    const short = dialable.slice(0, Math.max(0, this.topUp.minPeers - connected.size))
    const silent = dialable
      .filter(p => !short.includes(p) && now - (this.candidatePeers.get(p) ?? now) > this.topUp.silentPeerDialMs)
      .slice(0, this.topUp.maxSilentDialsPerTopUp)
    await Promise.all([...short, ...silent].map(async p => {
      try {
        await this.node.dial(peerIdFromString(p), { signal: AbortSignal.timeout(this.timeoutMs) })
        this.dialBackoffUntil.delete(p)
      } catch (err) {
        this.dialBackoffUntil.set(p, Date.now() + MESH_DEFAULTS.peerDialBackoffMs)
        this.init.logger?.debug({ peer: p, err: String(err) }, 'top-up dial failed')
      }
    }))
  }

  private async dialBootstrap (): Promise<void> {
    const connected = new Set(this.connectedPeers())
    await Promise.all(this.bootstrap.map(async addr => {
      try {
        const ma = multiaddr(addr)
        const id = ma.getPeerId()
        if (id === this.peerId || (id != null && connected.has(id))) return
        await this.node.dial(ma, { signal: AbortSignal.timeout(this.timeoutMs) })
      } catch (err) {
        this.init.logger?.debug({ addr, err: String(err) }, 'bootstrap dial failed')
      }
    }))
  }

  /** A candidate was heard from (or learned): it moves to the most recent end. */
  private heardFrom (peer: string, now: number): void {
    this.candidatePeers.delete(peer)
    this.candidatePeers.set(peer, now)
    if (this.candidatePeers.size > MESH_DEFAULTS.maxCandidatePeers) {
      const oldest = this.candidatePeers.keys().next().value as string
      this.candidatePeers.delete(oldest)
      this.dialBackoffUntil.delete(oldest)
    }
  }

  /** Answers one request, whichever way it came: decoded and checked like any frame. A
   *  notification (wantsAnswer false) is handled the same, and its answer never encoded. */
  private async answer (from: string, frame: Uint8Array, signal: AbortSignal, wantsAnswer = true): Promise<Uint8Array | undefined> {
    const r = decodeMessage(frame, MAX_DIRECT_BYTES)
    if (!r.ok) {
      this.emit('message:invalid', { from, channel: 'direct', rejection: r.rejection })
      throw new Error(`invalid request: ${r.rejection}`)
    }
    if (this.handler === undefined) throw new Error('no handler')
    const answer = await this.handler(from, r.message, { signal })
    if (!wantsAnswer) return undefined
    const response = encodeMessage(answer)
    // Refused alone, rather than sent and failing the requester's whole channel at its cap.
    if (response.byteLength > MAX_DIRECT_BYTES) throw new Error(`response of ${response.byteLength} bytes is over the ${MAX_DIRECT_BYTES}-byte cap`)
    return response
  }

  private async serveChannel (stream: any, from: string): Promise<void> {
    try {
      const io = lpStream(stream, { maxDataLength: MAX_DIRECT_BYTES + 5 })
      await serveRpc({
        io,
        maxConcurrent: MESH_DEFAULTS.maxConcurrentPerChannel,
        handle: async (frame, { wantsAnswer }) => {
          const d = deadline(this.timeoutMs)
          try {
            return await this.answer(from, frame, d.signal, wantsAnswer)
          } catch (err) {
            // A failed notification has no requester to be told: it is logged here instead.
            if (!wantsAnswer) this.init.logger?.debug({ from, err: String(err) }, 'notification failed')
            throw err
          } finally {
            d.clear()
          }
        }
      })
      await stream.close().catch(() => {})
    } catch (err) {
      this.init.logger?.debug({ from, err: String(err) }, 'request channel failed')
      stream.abort(err as Error)
    }
  }

  private async serve (stream: any, from: string): Promise<void> {
    const d = deadline(this.timeoutMs)
    const signal = d.signal
    try {
      const lp = lpStream(stream, { maxDataLength: MAX_DIRECT_BYTES })
      const frame = await lp.read({ signal })
      const response = await this.answer(from, frame.subarray(), signal)
      if (response === undefined) throw new Error('no answer')
      await lp.write(response, { signal })
      await stream.close({ signal })
    } catch (err) {
      this.init.logger?.debug({ from, err: String(err) }, 'direct request failed')
      stream.abort(err as Error)
    } finally {
      d.clear()
    }
  }

  listenAddrs (): string[] {
    return this.node.getMultiaddrs().map(a => a.toString())
  }

  connectedPeers (): string[] {
    return this.node.getPeers().map(p => p.toString())
  }

  async publish (topic: TopicName, message: Message): Promise<void> {
    try {
      const data = encodeMessage(message)
      const st = this.stat(topic)
      st.sent++
      st.sentBytes += data.byteLength
      await this.pubsub.publish(topic, data)
    } catch (err) {
      // Gossip is soft state: a failed publish is retried by the next periodic one.
      this.init.logger?.debug({ topic, err: String(err) }, 'publish failed')
    }
  }

  handle (handler: RequestHandler): void {
    this.handler = handler
  }

  /** A message to oneself: straight to one's own handler, under the request deadline. */
  private async local (message: Message, signal?: AbortSignal): Promise<Message> {
    if (this.handler === undefined) throw new PeerUnreachableError(this.peerId)
    const d = deadline(this.timeoutMs, signal)
    try {
      return await this.handler(this.peerId, message, { signal: d.signal })
    } finally {
      d.clear()
    }
  }

  async request (to: string, message: Message, options: { signal?: AbortSignal, timeoutMs?: number } = {}): Promise<Message> {
    if (to === this.peerId) return await this.local(message, options.signal)
    const payload = encodeMessage(message)
    // Over the cap the peer would refuse it: fail this request alone, not the channel it shares.
    if (payload.byteLength > MAX_DIRECT_BYTES) throw new PeerUnreachableError(to, { cause: new Error(`request of ${payload.byteLength} bytes is over the ${MAX_DIRECT_BYTES}-byte cap`) })
    const d = deadline(options.timeoutMs ?? this.timeoutMs, options.signal)
    const signal = d.signal
    let frame: Uint8Array
    try {
      // The opening is shared (and has its own timeout); this caller waits for it only as
      // long as its own deadline allows.
      const channel = await untilAborted(this.channelTo(to), signal)
      frame = channel !== undefined ? await channel.request(payload, { signal }) : await this.requestOnStream(to, payload, signal)
    } catch (err) {
      if (err instanceof PeerUnreachableError) throw err
      throw new PeerUnreachableError(to, { cause: err })
    } finally {
      d.clear()
    }
    const r = decodeMessage(frame, MAX_DIRECT_BYTES)
    if (!r.ok) {
      this.emit('message:invalid', { from: to, channel: 'direct', rejection: r.rejection })
      throw new InvalidResponseError(to, r.rejection)
    }
    return r.message
  }

  async notify (to: string, message: Message): Promise<void> {
    if (to === this.peerId) { await this.local(message); return }
    const payload = encodeMessage(message)
    if (payload.byteLength > MAX_DIRECT_BYTES) throw new PeerUnreachableError(to, { cause: new Error(`notification of ${payload.byteLength} bytes is over the ${MAX_DIRECT_BYTES}-byte cap`) })
    const d = deadline(this.timeoutMs)
    try {
      const channel = await untilAborted(this.channelTo(to), d.signal)
      // A peer without the channel protocol gets a request of its own, whose answer is dropped.
      // Either way the caller waits no longer than for a request (a write can stall on a peer
      // that stopped reading), and a notification given up on before its turn is not sent.
      if (channel !== undefined) await channel.notify(payload, { signal: d.signal })
      else {
        const answer = decodeMessage(await this.requestOnStream(to, payload, d.signal), MAX_DIRECT_BYTES)
        if (!answer.ok) this.emit('message:invalid', { from: to, channel: 'direct', rejection: answer.rejection })
      }
    } catch (err) {
      if (err instanceof PeerUnreachableError) throw err
      throw new PeerUnreachableError(to, { cause: err })
    } finally {
      d.clear()
    }
  }

  /** The open channel to a peer, opened on first use; undefined for a peer that does not
   *  speak the channel protocol. Concurrent callers share one opening. */
  private async channelTo (to: string): Promise<RpcClient | undefined> {
    const open = this.channels.get(to)
    if (open !== undefined && !open.closed) return open
    const legacySince = this.legacyPeers.get(to)
    if (legacySince !== undefined && Date.now() - legacySince < MESH_DEFAULTS.legacyPeerRetryMs) return undefined
    let opening = this.openingChannels.get(to)
    if (opening === undefined) {
      opening = this.openChannel(to).finally(() => this.openingChannels.delete(to))
      this.openingChannels.set(to, opening)
    }
    return await opening
  }

  private async openChannel (to: string): Promise<RpcClient | undefined> {
    let stream: any
    try {
      // Its own timeout, not the first caller's signal: others wait on the same opening.
      stream = await this.node.dialProtocol(peerIdFromString(to), MESH_DEFAULTS.rpcMuxProtocol, { signal: AbortSignal.timeout(this.timeoutMs) })
    } catch (err: any) {
      if (err?.name === 'UnsupportedProtocolError') {
        this.legacyPeers.set(to, Date.now())
        return undefined
      }
      throw new PeerUnreachableError(to, { cause: err })
    }
    this.legacyPeers.delete(to)
    const client = createRpcClient({
      io: lpStream(stream, { maxDataLength: MAX_DIRECT_BYTES + 5 }),
      onClose: err => {
        if (this.channels.get(to) === client) this.channels.delete(to)
        this.init.logger?.debug({ peer: to, err: String(err) }, 'request channel closed')
        stream.abort?.(err instanceof Error ? err : new Error('request channel closed'))
      }
    })
    this.channels.set(to, client)
    return client
  }

  /** The response frame to one request sent on a stream of its own (rpcProtocol), for peers
   *  without the channel protocol; request() decodes it as it does a channel's. */
  private async requestOnStream (to: string, payload: Uint8Array, signal: AbortSignal): Promise<Uint8Array> {
    const stream: any = await this.node.dialProtocol(peerIdFromString(to), MESH_DEFAULTS.rpcProtocol, { signal })
    try {
      const lp = lpStream(stream, { maxDataLength: MAX_DIRECT_BYTES })
      await lp.write(payload, { signal })
      const frame = (await lp.read({ signal })).subarray()
      await stream.close({ signal }).catch(() => {})
      return frame
    } catch (err) {
      stream.abort?.(err as Error)
      throw err
    }
  }

  async addPeerAddrs (peer: string, addrs: string[]): Promise<void> {
    if (peer === this.peerId || addrs.length === 0) return
    try {
      await this.node.peerStore.merge(peerIdFromString(peer), { multiaddrs: addrs.map(a => multiaddr(a)) })
      this.heardFrom(peer, Date.now())
    } catch (err) {
      this.init.logger?.debug({ peer, err: String(err) }, 'bad peer address')
    }
  }

  async stop (): Promise<void> {
    if (this.redialTimer !== undefined) clearInterval(this.redialTimer)
    for (const c of this.channels.values()) c.close()
    await this.node.stop()
  }
}

/** Signer and sequence number of a gossip message, as one string (see fastMsgIdFn above). */
export function gossipFastMessageId (msg: { from?: Uint8Array, seqno?: Uint8Array }): string {
  const part = (b: Uint8Array | undefined): string => b === undefined ? '' : Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64')
  return `${part(msg.from)}/${part(msg.seqno)}`
}
