// Mesh defaults and limits. Each says why, and, where one value follows from others, the
// formula. Changing a limit changes how much an unfriendly peer can make us hold.
import { MAX_DIRECT_BYTES, MAX_GOSSIP_BYTES } from '../protocol/messages.ts'
import { Topic } from './mesh.ts'

export const MESH_DEFAULTS = {
  /** direct request/response protocol id; the version is in the frame too */
  rpcProtocol: '/bidmesh/rpc/1.0.0',
  /** a request waits this long for its response before the peer counts as unreachable */
  requestTimeoutMs: 5000,
  /** bootstrap peers are re-dialled this often while not connected (a restarted seed comes back),
   *  and the agent tops its connections up to minPeers this often */
  redialIntervalMs: 2000,
  /** Peers an agent keeps connections to at least, chosen among those it learned of from
   *  adverts. Without it, agents that all bootstrapped from one seed hear each other only
   *  through it, and the mesh falls apart into single agents when the seed leaves. 2: an
   *  agent keeps a path besides any one peer. More: more duplicate gossip (each connection
   *  carries every advert once or twice), which idle agents pay for in CPU (at 5 agents, 3
   *  cost about 0.7 % of a core more than 2; docs/benchmarks.md). */
  minPeers: 2,
  /** A learned peer unheard on gossip this long, and not connected, is dialled: if it is on
   *  the far side of a split (agents that still have minPeers connections each, but no path
   *  to it), the dial joins the two sides again. Equal to goneAfterMs (6 s): a peer that
   *  stops for a moment is not dialled; a split lasts at most this plus redialIntervalMs. */
  silentPeerDialMs: 6000,
  /** Silent peers dialled per top-up (each dial that fails backs its peer off). */
  maxSilentDialsPerTopUp: 2,
  /** A peer whose top-up dial failed is not tried again for this long (it may be gone for good). */
  peerDialBackoffMs: 30_000,
  /** A learned peer unheard this long is forgotten as a top-up candidate. */
  candidatePeerTtlMs: 10 * 60_000,
  /** Top-up candidates remembered at most, the most recently heard kept. */
  maxCandidatePeers: 1024,
  /** Direct streams served at once per connection (one per request). A busy executor has about
   *  two in flight per running job to the same owner (a log flush and a lease renewal), so
   *  64 running jobs × 2 = 128. More: one peer can make us run more handlers at once; fewer:
   *  a busy pair of agents gets streams reset and retries them. */
  maxInboundStreams: 128,
  maxOutboundStreams: 128,
  /** Many requests over one long-lived stream per pair of agents (src/mesh/rpc-mux.ts). Peers
   *  that do not speak it are asked over rpcProtocol, one stream per request. */
  rpcMuxProtocol: '/bidmesh/rpc-mux/1.0.0',
  /** Channels a peer may hold open to us at once. It keeps one; a few more cover the moments
   *  when it replaces a failed one before we notice the old one closed. */
  maxMuxChannels: 4,
  /** Requests served at once on one channel; past it we stop reading from it until one is
   *  answered (TCP back-pressure, not a reset). Same reasoning and value as maxInboundStreams. */
  maxConcurrentPerChannel: 128,
  /** How long a peer that does not speak rpcMuxProtocol is asked over rpcProtocol before
   *  we try the channel again (it may have been upgraded). */
  legacyPeerRetryMs: 60_000
} as const

/** The libp2p connection manager, muxer and transport limits (see MESH_LIMITS). */
export const CONNECTION_LIMITS = {
  /** Connections kept before pruning the least useful. An agent needs its gossip mesh (gossipsub
   *  D_hi = 12 per topic, shared between the two topics) plus the peers it is auctioning with or
   *  running jobs for: bid candidates per job (needed + extraCandidates ≈ 3) × auctions in flight
   *  (≈ 50) + replicas + owners of running jobs ≈ 200, rounded up to 256. More: more memory per
   *  idle connection (muxer windows, identify, gossip state); fewer: direct requests keep
   *  re-dialling peers the pruner just dropped. */
  maxConnections: 256,
  /** New inbound connections per second per remote IP (a token bucket). Several agents behind
   *  one NAT address, each dialling once at start-up and re-dialling every redialIntervalMs,
   *  stay far below it; a host that connects in a loop (to burn our handshakes) is refused
   *  before any crypto. Lower: agents behind one NAT may be refused at start-up and wait for
   *  the next redial; higher: one host can make us do more handshakes per second. */
  inboundConnectionThreshold: 10,
  /** Inbound connections still in their handshake (pnet nonce, noise, muxer) at once. With
   *  inboundUpgradeTimeoutMs, an attacker holding every slot must open
   *  maxIncomingPendingConnections / (inboundUpgradeTimeoutMs / 1000) = 6.4 connections/s,
   *  which inboundConnectionThreshold allows from one host only just; from many hosts it is a
   *  DoS that no per-host limit can stop (firewall it). More: more half-open state held. */
  maxIncomingPendingConnections: 32,
  /** A handshake that has not finished by then is dropped (libp2p default 10 s). Loopback and
   *  LAN handshakes take milliseconds; a 5 s bound still covers a slow WAN link. */
  inboundUpgradeTimeoutMs: 5000,
  /** An outbound dial (socket + handshake) gives up after this long: the same as a request's
   *  timeout, so a dead peer frees its dial slot before the request itself gives up. */
  dialTimeoutMs: 5000,
  /** Dials in flight at once, and dials allowed to wait for a slot. An owner dials at most
   *  its bid candidates at once; the rest wait. Bounded so a burst of requests to dead peers
   *  cannot grow the queue without bound (a full queue fails the dial at once). */
  maxParallelDials: 50,
  maxDialQueueLength: 200,
  /** Addresses tried per peer. An advert carries at most 16 (the schema's cap); trying all of
   *  them is fine, trying more than an advert can name never is. */
  maxPeerAddrsToDial: 16,
  /** Protocol negotiation on a new stream (multistream-select) must finish in this long. */
  streamNegotiationTimeoutMs: 5000,
  /** Muxer (yamux) streams per connection: the rpc limit (128) + gossipsub (2 each way) +
   *  identify (1) + headroom, doubled: 256. Yamux resets streams beyond it before any protocol
   *  handler runs. Default 1000. */
  muxerMaxStreams: 256,
  /** Per-stream receive window ceiling: a sender may have this much in flight on one stream
   *  before it must wait for us to read. 2 × MAX_DIRECT_BYTES lets one maximal direct frame go
   *  out without a window stall; yamux's default (16 MiB) would let each of 256 streams hold
   *  16 MiB of ours. */
  muxerMaxStreamWindowBytes: 2 * MAX_DIRECT_BYTES,
  /** OS-level accept cap on the TCP listener: maxConnections + maxIncomingPendingConnections,
   *  so the kernel refuses what libp2p would refuse anyway, without handing it a socket. */
  tcpMaxConnections: 256 + 32
} as const

/** Gossipsub limits. Gossip is soft state: whatever these drop, the next periodic advert or
 *  summary repairs, so every limit errs on the side of dropping. */
export const GOSSIP_LIMITS = {
  /** Largest inbound RPC frame. One RPC carries our message (≤ MAX_GOSSIP_BYTES) plus signature,
   *  key and control entries (< 1 KiB); an IWANT reply batches the messages asked for. 16 full
   *  messages: 16 × 64 KiB = 1 MiB. A larger frame ends the peer's inbound stream (gossipsub
   *  opens a new one). Default 4 MiB. */
  maxInboundDataLength: 16 * MAX_GOSSIP_BYTES,
  /** Bytes queued for one slow peer before further sends to it fail (and are dropped): 16 full
   *  messages. Worst case held for slow peers: maxConnections × 1 MiB = 256 MiB, but only if
   *  every peer stops reading at once. Default unbounded. */
  maxOutboundBufferSize: 16 * MAX_GOSSIP_BYTES,
  /** Bounds on one decoded RPC (protobuf), checked while decoding: an RPC beyond any of them is
   *  dropped whole. Gossipsub's defaults are all Infinity. We use 2 topics; subscriptions allow
   *  for topics added by later versions. Messages per RPC: an IWANT reply fits 16 full-size
   *  ones, and small adverts batch more. IHAVE/IWANT/IDONTWANT ids: gossipsub's own IHAVE
   *  length cap (5000). Control entries (GRAFT/PRUNE, one per topic). Peer infos in a PRUNE:
   *  we do not use peer exchange. */
  decodeRpcLimits: {
    maxSubscriptions: 64,
    maxMessages: 256,
    maxIhaveMessageIDs: 5000,
    maxIwantMessageIDs: 5000,
    maxIdontwantMessageIDs: 5000,
    maxControlMessages: 64,
    maxPeerInfos: 16
  },
  /** Gossipsub streams per connection: one each way is what the protocol uses; 2 lets a
   *  replacement open before the old one is gone. */
  maxStreams: 2
} as const

/** Peer scoring (gossipsub v1.1). A peer's score is
 *    min(topicScoreCap, Σ_topics topicWeight × (P1 + P2 + P4)) + P6 + P7
 *  P1 time in mesh: timeInMeshWeight × min(meshTime / quantum, cap)            (≤ +1)
 *  P2 first deliveries: firstMessageDeliveriesWeight × min(count, cap)         (≤ +10)
 *  P4 invalid messages: invalidMessageDeliveriesWeight × count²                 (≤ 0)
 *  P3/P3b (mesh delivery deficit) are off: our topics are quiet (one advert per agent per
 *  second, job summaries only on change), so an honest peer in a quiet mesh would be
 *  penalised for not delivering what nobody sent.
 *  "Invalid" means our topic validator rejected it: undecodable, wrong type for the topic,
 *  or the body names a peer other than the signer (see libp2p-mesh.ts). */
const topicScore = (topicWeight: number) => ({
  topicWeight,
  /** +1 after an hour in our mesh: a small bonus for stable peers that never outweighs one
   *  invalid message (−20). */
  timeInMeshWeight: 1 / 3600,
  timeInMeshQuantum: 1000,
  timeInMeshCap: 3600,
  /** Rewards peers that deliver messages first. Decay 0.9/s: at one advert per second the
   *  count settles at 1 / (1 − 0.9) = 10, so the cap (20) is twice the steady state and the
   *  bonus is at most +10. */
  firstMessageDeliveriesWeight: 0.5,
  firstMessageDeliveriesDecay: 0.9,
  firstMessageDeliveriesCap: 20,
  meshMessageDeliveriesWeight: 0,
  meshMessageDeliveriesDecay: 0.5,
  meshMessageDeliveriesCap: 100,
  meshMessageDeliveriesThreshold: 1,
  meshMessageDeliveriesWindow: 10,
  meshMessageDeliveriesActivation: 5000,
  meshFailurePenaltyWeight: 0,
  meshFailurePenaltyDecay: 0.5,
  /** Strongly negative and squared: 1 invalid message → −20 (below gossipThreshold: we stop
   *  gossiping with it), 2 → −80, 3 → −180 (below graylistThreshold: everything it sends is
   *  ignored). Decay 0.99/s (half-life ln 0.5 / ln 0.99 ≈ 69 s): 3 invalid messages keep a
   *  peer graylisted for ln(2/3) / ln(0.99) ≈ 40 s, 10 for ≈ 160 s. The cost: a peer on a
   *  newer protocol version whose frames we cannot decode is cut off too; that is what the
   *  append-only message types and version range are for. */
  invalidMessageDeliveriesWeight: -20,
  invalidMessageDeliveriesDecay: 0.99
})

export const GOSSIP_SCORE_PARAMS = {
  topics: {
    [Topic.Capacity]: topicScore(1),
    [Topic.Jobs]: topicScore(1)
  },
  /** The positive part is capped, so a long-lived peer cannot bank credit against misbehaviour:
   *  2 topics × (1 + 10) = 22 at most, capped at 10. */
  topicScoreCap: 10,
  appSpecificWeight: 0,
  /** P6 (Sybil resistance): beyond 10 peers from one IP, each extra one costs quadratically
   *  (11 peers: −5, 15: −125). Loopback is exempt: peers on our own host are already inside
   *  our trust boundary, and local clusters (tests, demo) run every agent on 127.0.0.1. */
  IPColocationFactorWeight: -5,
  IPColocationFactorThreshold: 10,
  IPColocationFactorWhitelist: new Set(['127.0.0.1', '::1']),
  /** P7 (protocol misbehaviour, e.g. GRAFT during backoff, broken IWANT promises). */
  behaviourPenaltyWeight: -10,
  behaviourPenaltyThreshold: 0,
  behaviourPenaltyDecay: 0.2,
  decayIntervalMs: 1000,
  decayToZero: 0.01,
  /** A disconnected peer's score is kept this long, so a graylisted peer cannot reconnect to
   *  start from zero. */
  retainScoreMs: 3600 * 1000
} as const

export const GOSSIP_SCORE_THRESHOLDS = {
  /** Below it: no IHAVE/IWANT with the peer (one invalid message puts it there). */
  gossipThreshold: -10,
  /** Below it: our own publishes skip the peer. */
  publishThreshold: -50,
  /** Below it: every RPC from the peer is ignored (three invalid messages in a row). */
  graylistThreshold: -80,
  /** Peer exchange is off (doPX false); if turned on, only from peers with a clean record. */
  acceptPXThreshold: 100,
  /** Mesh members below the median score are swapped for peers above this one. */
  opportunisticGraftThreshold: 5
} as const
