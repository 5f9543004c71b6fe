// The mesh's deliberate limits: the gossip score parameters are ones gossipsub accepts and
// behave as their comments say, every limit is finite, and gossip validation refuses frames
// that are on the wrong topic or speak for someone other than their signer.
import { describe, expect, it } from 'vitest'
import { createPeerScoreParams, createPeerScoreThresholds, validatePeerScoreParams, validatePeerScoreThresholds } from '@chainsafe/libp2p-gossipsub/score'
import { CONNECTION_LIMITS, GOSSIP_LIMITS, GOSSIP_SCORE_PARAMS, GOSSIP_SCORE_THRESHOLDS, MESH_DEFAULTS } from '../../src/mesh/constants.ts'
import { validateGossip } from '../../src/mesh/libp2p-mesh.ts'
import { Topic } from '../../src/mesh/mesh.ts'
import { encodeMessage } from '../../src/protocol/codec.ts'
import { MAX_GOSSIP_BYTES, MessageType } from '../../src/protocol/messages.ts'

const A = '12D3KooWPeerA0000000000000000000000000000000000000A'
const B = '12D3KooWPeerB0000000000000000000000000000000000000B'
const advert = (peerId: string) => encodeMessage({ type: MessageType.CapacityAdvert, body: { peerId, totalCpuMilli: 1, freeCpuMilli: 1, totalMemoryBytes: 1, freeMemoryBytes: 1, runningJobs: 0, labels: {}, draining: false, seq: 1, sentAtMs: 1 } })
const summaries = (from: string) => encodeMessage({ type: MessageType.JobSummaries, body: { from, summaries: [] } })

describe('gossip validation', () => {
  it.each([
    ['an advert about its signer', Topic.Capacity, A, advert(A), 'ok'],
    ['an advert about another peer', Topic.Capacity, A, advert(B), 'not-signer'],
    ['an unsigned advert', Topic.Capacity, undefined, advert(A), 'not-signer'],
    ['summaries on the capacity topic', Topic.Capacity, A, summaries(A), 'wrong-topic'],
    ['summaries from their signer', Topic.Jobs, A, summaries(A), 'ok'],
    ['summaries claiming another sender', Topic.Jobs, A, summaries(B), 'not-signer'],
    ['an advert on the jobs topic', Topic.Jobs, A, advert(A), 'wrong-topic'],
    ['a frame on an unknown topic', 'other/1', A, advert(A), 'unknown-topic'],
    ['a leave by its signer', Topic.Capacity, A, encodeMessage({ type: MessageType.MemberLeave, body: { peerId: A } }), 'ok'],
    ['a leave on behalf of another peer', Topic.Capacity, A, encodeMessage({ type: MessageType.MemberLeave, body: { peerId: B } }), 'not-signer'],
    ['a direct-only message on a gossip topic', Topic.Capacity, A, encodeMessage({ type: MessageType.Ack, body: { ok: true } }), 'wrong-topic'],
    ['a frame on a prototype-named topic', '__proto__', A, advert(A), 'unknown-topic'],
    ['garbage', Topic.Capacity, A, Uint8Array.from([0xc1]), 'malformed'],
    ['an oversized frame', Topic.Capacity, A, new Uint8Array(MAX_GOSSIP_BYTES + 1), 'too-large']
  ])('%s → %s', (_name, topic, signer, data, expected) => {
    const r = validateGossip(topic, signer, data)
    expect(r.ok ? 'ok' : r.rejection).toBe(expected)
  })
})

describe('gossipsub scoring parameters', () => {
  const params = createPeerScoreParams({
    ...GOSSIP_SCORE_PARAMS,
    topics: structuredClone(GOSSIP_SCORE_PARAMS.topics),
    IPColocationFactorWhitelist: new Set(GOSSIP_SCORE_PARAMS.IPColocationFactorWhitelist),
    decayInterval: GOSSIP_SCORE_PARAMS.decayIntervalMs,
    retainScore: GOSSIP_SCORE_PARAMS.retainScoreMs
  })
  const thresholds = createPeerScoreThresholds({ ...GOSSIP_SCORE_THRESHOLDS })

  it('are accepted by gossipsub own validation', () => {
    expect(() => validatePeerScoreParams(params)).not.toThrow()
    expect(() => validatePeerScoreThresholds(thresholds)).not.toThrow()
    expect(Object.keys(params.topics).sort()).toEqual(Object.values(Topic).sort())
  })

  it('invalid messages drive a peer past the thresholds as documented', () => {
    const t = GOSSIP_SCORE_PARAMS.topics[Topic.Capacity]
    const score = (invalid: number) => t.topicWeight * t.invalidMessageDeliveriesWeight * invalid * invalid
    const best = GOSSIP_SCORE_PARAMS.topicScoreCap
    // Even a peer at the positive cap falls below gossipThreshold with one invalid message
    // on each topic, and is graylisted after three on one topic.
    expect(best + score(1) * 2).toBeLessThan(GOSSIP_SCORE_THRESHOLDS.gossipThreshold)
    expect(score(1)).toBeLessThan(GOSSIP_SCORE_THRESHOLDS.gossipThreshold)
    expect(best + score(3)).toBeLessThan(GOSSIP_SCORE_THRESHOLDS.graylistThreshold)
    // Positive bonuses never outweigh one invalid message.
    const maxBonus = t.timeInMeshWeight * t.timeInMeshCap + t.firstMessageDeliveriesWeight * t.firstMessageDeliveriesCap
    expect(Math.min(maxBonus * 2, best)).toBeLessThan(-score(1))
    // 3 invalid messages keep a peer graylisted ~40 s: count² × 20 > 80 while count > 2.
    const secondsGraylisted = Math.log(2 / 3) / Math.log(t.invalidMessageDeliveriesDecay)
    expect(secondsGraylisted).toBeGreaterThan(30)
    expect(secondsGraylisted).toBeLessThan(60)
  })
})

describe('limits are finite and consistent', () => {
  it('every gossip RPC decode limit is finite (gossipsub defaults are Infinity)', () => {
    for (const [k, v] of Object.entries(GOSSIP_LIMITS.decodeRpcLimits)) expect(Number.isFinite(v), k).toBe(true)
    expect(GOSSIP_LIMITS.maxInboundDataLength).toBeGreaterThanOrEqual(MAX_GOSSIP_BYTES * 2)
    expect(Number.isFinite(GOSSIP_LIMITS.maxOutboundBufferSize)).toBe(true)
  })

  it('connection limits hold their formulas', () => {
    expect(CONNECTION_LIMITS.tcpMaxConnections).toBe(CONNECTION_LIMITS.maxConnections + CONNECTION_LIMITS.maxIncomingPendingConnections)
    expect(CONNECTION_LIMITS.muxerMaxStreams).toBeGreaterThanOrEqual(MESH_DEFAULTS.maxInboundStreams + 2 * GOSSIP_LIMITS.maxStreams + 1)
    expect(CONNECTION_LIMITS.dialTimeoutMs).toBeLessThanOrEqual(MESH_DEFAULTS.requestTimeoutMs)
    for (const [k, v] of Object.entries(CONNECTION_LIMITS)) expect(Number.isFinite(v) && v > 0, k).toBe(true)
  })
})
