// Fuzzing the wire decoder: ≥100,000 hostile inputs (mutated valid frames of every message
// type, random msgpack values, random bytes, structural bombs, oversized frames). The rule:
// decodeMessage never throws, whatever it is fed, and memory does not grow with the inputs.
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { Packr } from 'msgpackr'
import { describe, expect, it } from 'vitest'
import { decodeMessage, encodeMessage } from '../../src/protocol/codec.ts'
import { MAX_DIRECT_BYTES, MAX_GOSSIP_BYTES, MessageType, type MessageTypeName } from '../../src/protocol/messages.ts'

const SEED = Number(process.env.BIDMESH_FUZZ_SEED ?? 0xb1d5eed)
const TOTAL = Number(process.env.BIDMESH_FUZZ_INPUTS ?? 120_000)

// A real collector when the runtime lets us have one (flags set before first use).
setFlagsFromString('--expose-gc')
const gc: (() => void) | undefined = (() => { try { return runInNewContext('gc') as () => void } catch { return undefined } })()

function mulberry32 (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6D2B79F5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
const rnd = mulberry32(SEED)
const int = (n: number): number => Math.floor(rnd() * n)
const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]

// ---- one valid body per message type ---------------------------------------------------------
const P1 = '12D3KooWPeerOne00000000000000000000000000000000001'
const P2 = '12D3KooWPeerTwo00000000000000000000000000000000002'
const spec = { image: 'bidmesh/busybox:latest', command: ['/bin/sh', '-c', 'echo hi'], env: { A: '1' }, cpuMilli: 500, memoryBytes: 67108864, pidsLimit: 64, timeoutMs: 60000, retries: 1, constraints: { zone: 'a' }, network: 'none' }
const capacity = { peerId: P1, totalCpuMilli: 4000, freeCpuMilli: 2000, totalMemoryBytes: 8e9, freeMemoryBytes: 4e9, runningJobs: 2, labels: { zone: 'a' }, draining: false, seq: 7, sentAtMs: 1700000000000, addrs: ['/ip4/127.0.0.1/tcp/7701'] }
const record = {
  id: 'j-0001', spec, owner: P1, publisher: P1, state: 'running', epoch: 2, term: 0, version: 5, replicas: [P2],
  attempts: [{ epoch: 1, node: P2, state: 'exited', awardedAtMs: 1, startedAtMs: 2, finishedAtMs: 3, exitCode: 1, reason: 'exit' }, { epoch: 2, node: P1, state: 'running', awardedAtMs: 4 }],
  createdAtMs: 1, updatedAtMs: 5,
  explanation: { consideredNodes: 2, filtered: { memory: 1 }, top: [{ node: P1, score: 0.5, components: { binpack: 0.5 } }], candidates: [P1], winner: P1, decidedAtMs: 4 }
}
const summary = { id: 'j-0001', image: 'bidmesh/busybox:latest', owner: P1, state: 'running', node: P1, epoch: 2, term: 0, createdAtMs: 1, updatedAtMs: 5 }
const event = { atMs: 5, type: 'attempt:started', epoch: 2, node: P1, detail: 'ok' }
const samples: Record<MessageTypeName, unknown> = {
  CapacityAdvert: capacity,
  BidRequest: { jobId: 'j-0001', epoch: 1, owner: P1, spec },
  Bid: { jobId: 'j-0001', epoch: 1, score: 0.7, components: { binpack: 0.7 }, capacity },
  BidRefused: { jobId: 'j-0001', epoch: 1, reason: 'memory', capacity },
  Award: { jobId: 'j-0001', epoch: 1, owner: P1, replicas: [P2], spec, leaseMs: 3000 },
  AwardAck: { jobId: 'j-0001', epoch: 1 },
  AwardDeclined: { jobId: 'j-0001', epoch: 1, reason: 'full' },
  ReservationRelease: { jobId: 'j-0001', epoch: 1 },
  AttemptUpdate: { jobId: 'j-0001', epoch: 1, node: P2, state: 'exited', startedAtMs: 2, finishedAtMs: 3, exitCode: 0, reason: 'exit' },
  AttemptUpdateAck: { jobId: 'j-0001', epoch: 1, accepted: true, stop: false, owner: P1 },
  JobQuery: { id: 'j-00' },
  JobQueryReply: { job: record, events: [event], matches: ['j-0001'] },
  LogQuery: { jobId: 'j-0001', afterSeq: 0, limit: 100 },
  LogReply: { chunks: [{ seq: 1, epoch: 1, stream: 'stdout', atMs: 3, data: 'hello\n' }] },
  CancelRequest: { jobId: 'j-0001' },
  CancelAttempt: { jobId: 'j-0001', epoch: 1 },
  Ack: { ok: false, code: 'ERR_X', message: 'no' },
  JobSummaries: { from: P1, summaries: [summary] },
  JobListQuery: { state: 'running', limit: 10 },
  JobListReply: { summaries: [summary, { ...summary, id: 'j-0002' }] },
  LogAppend: { jobId: 'j-0001', epoch: 1, chunks: [{ stream: 'stderr', atMs: 3, data: 'oops\n' }] },
  JobReplicate: { from: P1, jobs: [{ job: record, events: [event] }] },
  MemberLeave: { peerId: P1 },
  AttemptRenewals: { node: P2, renewals: [{ jobId: 'j-0001', epoch: 1, state: 'running', startedAtMs: 2 }, { jobId: 'j-0002', epoch: 3, state: 'starting' }] },
  AttemptRenewalsAck: { acks: [{ jobId: 'j-0001', epoch: 1, accepted: true, stop: false, owner: P1 }], unanswered: [{ jobId: 'j-0002', epoch: 3 }] }
}

const wire = new Packr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number', moreTypes: false })

// ---- generators ------------------------------------------------------------------------------
const KEYS = ['jobId', 'epoch', 'spec', 'owner', 'peerId', 'image', 'env', 'a', '', '__proto__', 'constructor', 'toString', 'valueOf', 'hasOwnProperty', 'then', 'x'.repeat(300)]
const STRINGS = ['', 'a', 'j-0001', P1, 'none', 'bridge', 'exit', '\u0000', '\uD800', '💥'.repeat(10), 'x'.repeat(70_000)]
const NUMBERS = [0, -0, 1, -1, 0.5, 2 ** 31, 2 ** 53, -(2 ** 63), Number.MAX_VALUE, Number.MIN_VALUE, Number.NaN, Infinity, -Infinity, 23, 24, 255]

function randomValue (depth: number): unknown {
  const r = int(depth > 5 ? 6 : 10)
  switch (r) {
    case 0: return null
    case 1: return rnd() < 0.5
    case 2: return pick(NUMBERS)
    case 3: return (rnd() - 0.5) * 10 ** int(20)
    case 4: return pick(STRINGS)
    case 5: return Buffer.from(Array.from({ length: int(40) }, () => int(256)))
    case 6: case 7: return Array.from({ length: int(5) }, () => randomValue(depth + 1))
    default: {
      const o: Record<string, unknown> = {}
      for (let i = int(5); i > 0; i--) Object.defineProperty(o, pick(KEYS), { value: randomValue(depth + 1), enumerable: true, configurable: true, writable: true })
      return o
    }
  }
}

/** A frame shape with a random part: version, type or body (or all) replaced. */
function randomFrame (): unknown {
  const names = Object.keys(samples) as MessageTypeName[]
  const name = pick(names)
  const version = rnd() < 0.7 ? 1 : randomValue(4)
  const type = rnd() < 0.7 ? MessageType[name] : randomValue(4)
  let body: unknown = structuredClone(samples[name])
  if (rnd() < 0.5) body = randomValue(1)
  else if (body !== null && typeof body === 'object') {
    // replace one field with a random value
    const keys = Object.keys(body as object)
    ;(body as Record<string, unknown>)[pick(keys)] = randomValue(2)
  }
  const frame: unknown[] = [version, type, body]
  if (rnd() < 0.1) frame.push(randomValue(3))
  if (rnd() < 0.05) frame.pop()
  return frame
}

const VALID = (Object.keys(samples) as MessageTypeName[]).map(name => Buffer.from(encodeMessage({ type: MessageType[name], body: samples[name] } as any)))
const INTERESTING = [0x00, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xcb, 0xcc, 0xcd, 0xce, 0xcf, 0xd0, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0xe0, 0xff]

function mutate (src: Buffer): Buffer {
  let b = Buffer.from(src)
  for (let k = 1 + int(4); k > 0; k--) {
    switch (int(8)) {
      case 0: { // flip bits
        if (b.length === 0) break
        const i = int(b.length)
        b[i] ^= 1 << int(8)
        break
      }
      case 1: { // overwrite with a type byte that matters to msgpack
        if (b.length === 0) break
        b[int(b.length)] = pick(INTERESTING)
        break
      }
      case 2: { // insert random bytes
        const at = int(b.length + 1)
        b = Buffer.concat([b.subarray(0, at), Buffer.from(Array.from({ length: 1 + int(8) }, () => int(256))), b.subarray(at)])
        break
      }
      case 3: { // delete a range
        const at = int(b.length + 1)
        b = Buffer.concat([b.subarray(0, at), b.subarray(Math.min(b.length, at + 1 + int(16)))])
        break
      }
      case 4: // truncate
        b = b.subarray(0, int(b.length + 1))
        break
      case 5: { // duplicate a range
        const at = int(b.length + 1)
        const len = int(64)
        b = Buffer.concat([b.subarray(0, at), b.subarray(at, at + len), b.subarray(at)])
        break
      }
      case 6: { // splice with another message
        const other = pick(VALID)
        const at = int(b.length + 1)
        b = Buffer.concat([b.subarray(0, at), other.subarray(int(other.length + 1))])
        break
      }
      default: { // a huge length field: array32/map32/str32/bin32 claiming 2^32-1
        const at = int(b.length + 1)
        b = Buffer.concat([b.subarray(0, at), Buffer.from([pick([0xdd, 0xdf, 0xdb, 0xc6, 0xc9]), 0xff, 0xff, 0xff, 0xff]), b.subarray(at)])
      }
    }
  }
  return b
}

function bombs (): Buffer[] {
  const out: Buffer[] = []
  // deep nesting: fixarray(1) repeated, as version, type, body
  for (const depth of [100, 1000, 10_000, 100_000, 500_000]) {
    const nest = Buffer.alloc(depth, 0x91)
    out.push(Buffer.concat([Buffer.from([0x93, 0x01, 0x02]), nest, Buffer.from([0xc0])]))
    out.push(Buffer.concat([nest, Buffer.from([0xc0])]))
    out.push(Buffer.concat([Buffer.alloc(depth, 0x81).map((_, i) => (i % 2 === 0 ? 0x81 : 0xa0)), Buffer.from([0xc0])]))
  }
  // declared lengths far beyond the data
  for (const head of [[0xdc, 0xff, 0xff], [0xdd, 0xff, 0xff, 0xff, 0xff], [0xde, 0xff, 0xff], [0xdf, 0xff, 0xff, 0xff, 0xff], [0xdb, 0x7f, 0xff, 0xff, 0xff], [0xc6, 0xff, 0xff, 0xff, 0xff], [0xc9, 0xff, 0xff, 0xff, 0xff, 0x01]]) {
    out.push(Buffer.from([0x93, 0x01, 0x01, ...head, 0x00]))
    out.push(Buffer.from(head))
  }
  // every extension type, a few payload sizes (msgpackr has its own meanings for some)
  for (let t = -128; t < 128; t++) {
    for (const size of [1, 2, 4, 8, 16]) {
      const code = { 1: 0xd4, 2: 0xd5, 4: 0xd6, 8: 0xd7, 16: 0xd8 }[size]!
      out.push(Buffer.from([0x93, 0x01, 0x05, code, t & 0xff, ...Array.from({ length: size }, () => int(256))]))
    }
    out.push(Buffer.from([0x93, 0x01, 0x05, 0xc7, 0x03, t & 0xff, 0x93, 0x01, 0x02]))
  }
  // a body with 60,000 keys and an array of 200,000 nils, both within 1 MiB
  const many: Record<string, number> = {}
  for (let i = 0; i < 60_000; i++) many[`k${i}`] = i
  out.push(Buffer.from(wire.pack([1, MessageType.CapacityAdvert, many])))
  out.push(Buffer.from(wire.pack([1, MessageType.LogReply, { chunks: new Array(200_000).fill(null) }])))
  // toString/valueOf traps in the frame header
  out.push(Buffer.from(wire.pack([{ toString: 'x' }, 1, {}])))
  out.push(Buffer.from(wire.pack([1, { toString: 'x' }, {}])))
  out.push(Buffer.from(wire.pack([1, { valueOf: 1, toString: 2 }, {}])))
  return out
}

type Outcome = 'ok' | 'too-large' | 'malformed' | 'version' | 'unknown-type' | 'schema' | 'THROW'

describe('decodeMessage under fuzzing', () => {
  it(`never throws and stays flat on ${TOTAL.toLocaleString('en')} hostile inputs`, () => {
    for (const [name, v] of Object.entries(samples)) {
      const r = decodeMessage(VALID[Object.keys(samples).indexOf(name)], MAX_DIRECT_BYTES)
      expect(r.ok, `sample ${name} must decode: ${JSON.stringify(r)}`).toBe(true)
      void v
    }
    expect(Object.keys(samples).sort()).toEqual(Object.keys(MessageType).sort())

    const byClass = new Map<string, Map<Outcome, number>>()
    const throws: Array<{ cls: string, hex: string, err: string }> = []
    let acceptedReencodeFailures = 0
    const feed = (cls: string, bytes: Uint8Array, max = MAX_DIRECT_BYTES): void => {
      let outcome: Outcome
      try {
        const r = decodeMessage(bytes, max)
        outcome = r.ok ? 'ok' : r.rejection
        if (r.ok) {
          // What is accepted can be sent on: it re-encodes and decodes to the same thing.
          const again = decodeMessage(encodeMessage(r.message), MAX_DIRECT_BYTES)
          if (!again.ok) acceptedReencodeFailures++
        }
      } catch (err) {
        outcome = 'THROW'
        if (throws.length < 10) throws.push({ cls, hex: Buffer.from(bytes.subarray(0, 48)).toString('hex'), err: String(err).slice(0, 120) })
      }
      const m = byClass.get(cls) ?? new Map<Outcome, number>()
      m.set(outcome, (m.get(outcome) ?? 0) + 1)
      byClass.set(cls, m)
    }

    const bombList = bombs()
    const oversized = Buffer.alloc(MAX_DIRECT_BYTES + 1, 0x90)
    const plan: Array<[string, number, () => void]> = [
      ['structural bombs', bombList.length, () => {}],
      ['oversized (> cap)', 500, () => {}],
      ['random bytes', Math.round(TOTAL * 0.1), () => {}],
      ['random msgpack values', Math.round(TOTAL * 0.25), () => {}],
      ['mutated valid frames', 0, () => {}]
    ]
    plan[4][1] = TOTAL - plan.slice(0, 4).reduce((s, p) => s + p[1], 0)
    let fed = 0
    const nextInput = (cls: string, i: number): void => {
      switch (cls) {
        case 'structural bombs': feed(cls, bombList[i]); break
        case 'oversized (> cap)': {
          oversized[int(oversized.length)] = int(256)
          if (i % 2 === 0) feed(cls, oversized)
          else feed(cls, oversized.subarray(0, MAX_GOSSIP_BYTES + 1 + int(1000)), MAX_GOSSIP_BYTES)
          break
        }
        case 'random bytes': feed(cls, Buffer.from(Array.from({ length: int(512) }, () => int(256)))); break
        case 'random msgpack values': feed(cls, wire.pack(rnd() < 0.7 ? randomFrame() : randomValue(0))); break
        default: feed(cls, mutate(pick(VALID)))
      }
      fed++
    }

    // Warm-up: the first 10,000 inputs settle JIT, zod and msgpackr caches; then measure.
    const schedule: Array<[string, number]> = []
    for (const [cls, count] of plan) for (let i = 0; i < count; i++) schedule.push([cls, i])
    // interleave classes so warm-up sees all of them
    for (let i = schedule.length - 1; i > 0; i--) { const j = int(i + 1); [schedule[i], schedule[j]] = [schedule[j], schedule[i]] }
    const bombIdx = new Map<number, number>()
    let bombCounter = 0
    schedule.forEach(([cls], i) => { if (cls === 'structural bombs') bombIdx.set(i, bombCounter++) })

    const WARMUP = 10_000
    const started = Date.now()
    for (let i = 0; i < WARMUP; i++) nextInput(schedule[i][0], bombIdx.get(i) ?? schedule[i][1])
    gc?.(); gc?.()
    const heapBefore = process.memoryUsage().heapUsed
    for (let i = WARMUP; i < schedule.length; i++) nextInput(schedule[i][0], bombIdx.get(i) ?? schedule[i][1])
    gc?.(); gc?.()
    const heapAfter = process.memoryUsage().heapUsed
    const elapsed = Date.now() - started

    const cols: Outcome[] = ['ok', 'too-large', 'malformed', 'version', 'unknown-type', 'schema', 'THROW']
    const lines = [
      '',
      `decoder fuzz: ${fed.toLocaleString('en')} inputs in ${elapsed} ms (seed ${SEED}), gc ${gc !== undefined ? 'forced' : 'not available: after warm-up'}`,
      `${'class'.padEnd(24)}${cols.map(c => c.padStart(13)).join('')}`
    ]
    for (const [cls, m] of byClass) lines.push(`${cls.padEnd(24)}${cols.map(c => String(m.get(c) ?? 0).padStart(13)).join('')}`)
    const totalThrows = [...byClass.values()].reduce((s, m) => s + (m.get('THROW') ?? 0), 0)
    lines.push(`throws: ${totalThrows}; accepted but not re-encodable: ${acceptedReencodeFailures}`)
    lines.push(`heapUsed after warm-up: ${(heapBefore / 2 ** 20).toFixed(1)} MiB; after all inputs: ${(heapAfter / 2 ** 20).toFixed(1)} MiB; growth ${((heapAfter - heapBefore) / 2 ** 20).toFixed(2)} MiB`)
    for (const t of throws) lines.push(`  THROW in ${t.cls}: ${t.err} — input ${t.hex}…`)
    console.log(lines.join('\n'))

    expect(fed).toBeGreaterThanOrEqual(100_000)
    expect(throws).toEqual([])
    expect(acceptedReencodeFailures).toBe(0)
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
    // Flat: no more than 16 MiB retained across ~110,000 inputs (a leak of even 150 bytes per
    // input would show as more).
    expect(heapAfter - heapBefore).toBeLessThan(16 * 2 ** 20)
  }, 300_000)
})
