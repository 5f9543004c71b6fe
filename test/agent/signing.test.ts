// Signed jobs, publisher allowlists and the replay guard: pure functions, table and property tests.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { test as propTest, fc } from '@fast-check/vitest'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import {
  authorizeJob, authorizeJobMessage, canonicalJobBytes, jobEnvelope, createReplayGuard, isAuthorizedPublisher, memoryReplayBook, newJobNonce, parsePublisherAllowlist, type ReplayBook,
  screenJobMessage, signatureFromString, signatureToString, signJob, type SignedJobFields, storeReplayBook, UNAUTHORIZED_PUBLISHER, verifyJob
} from '../../src/agent/signing.ts'
import { openSqliteStore } from '../../src/store/sqlite-store.ts'
import type { Store } from '../../src/store/store.ts'
import type { JobSpec } from '../../src/protocol/job-spec.ts'

const key = await generateKeyPair('Ed25519') as unknown as PrivateKey
const other = await generateKeyPair('Ed25519') as unknown as PrivateKey
const secp = await generateKeyPair('secp256k1') as unknown as PrivateKey
const publisher = peerIdFromPrivateKey(key).toString()
const otherPeer = peerIdFromPrivateKey(other).toString()

const spec: JobSpec = {
  image: 'bidmesh/busybox:latest', command: ['/bin/sh', '-c', 'echo hi'], env: { B: '2', A: '1' }, cpuMilli: 500,
  memoryBytes: 64 * 1024 * 1024, pidsLimit: 64, timeoutMs: 60_000, retries: 0, constraints: { zone: 'a' }, network: 'none'
}
const job = (over: Partial<SignedJobFields> = {}): SignedJobFields => ({ id: 'j-1', spec, publisher, createdAtMs: 1_700_000_000_000, nonce: 'n0nce-AAAA', ...over })

describe('signJob / verifyJob', () => {
  it('a signature verifies with the key embedded in the publisher id', () => {
    const sig = signJob(key, job())
    expect(sig.byteLength).toBe(64)
    expect(verifyJob(job(), sig)).toBe(true)
    expect(verifyJob(job(), signatureToString(sig))).toBe(true)
  })

  it('signs and verifies exactly as libp2p\'s own Ed25519 keys do (key objects made once per key)', async () => {
    for (const [i, k] of [key, other].entries()) {
      const fields = job({ id: `j-${i}`, publisher: peerIdFromPrivateKey(k).toString() })
      const bytes = canonicalJobBytes(fields)
      // Deterministic signatures: the same bytes under the same key give the same signature.
      const ours = signJob(k, fields)
      expect(Buffer.from(ours).toString('hex')).toBe(Buffer.from(await k.sign(bytes)).toString('hex'))
      expect(await k.publicKey.verify(bytes, ours)).toBe(true)
      expect(verifyJob(fields, await k.sign(bytes))).toBe(true)
      // The key object, once made, still answers for that key only.
      expect(verifyJob({ ...fields, publisher: i === 0 ? otherPeer : publisher }, ours)).toBe(false)
    }
  })

  it('the encoding is canonical: key order and undefined fields do not matter', () => {
    const reordered = { ...spec, env: { A: '1', B: '2' }, name: undefined } as unknown as JobSpec
    const shuffled = Object.fromEntries(Object.entries(reordered).reverse()) as unknown as JobSpec
    expect(Buffer.from(canonicalJobBytes(job({ spec: shuffled })))).toEqual(Buffer.from(canonicalJobBytes(job())))
    expect(verifyJob(job({ spec: shuffled }), signJob(key, job()))).toBe(true)
  })

  const tampered: Array<[string, Partial<SignedJobFields>]> = [
    ['id', { id: 'j-2' }],
    ['createdAtMs', { createdAtMs: 1_700_000_000_001 }],
    ['nonce', { nonce: 'n0nce-AAAB' }],
    ['publisher (another valid peer)', { publisher: otherPeer }],
    ['spec.image', { spec: { ...spec, image: 'evil:latest' } }],
    ['spec.command', { spec: { ...spec, command: ['/bin/sh', '-c', 'rm -rf /work'] } }],
    ['spec.env', { spec: { ...spec, env: { ...spec.env, C: '3' } } }],
    ['spec.network', { spec: { ...spec, network: 'bridge' } }],
    ['spec.memoryBytes', { spec: { ...spec, memoryBytes: spec.memoryBytes * 2 } }]
  ]
  it.each(tampered)('a change to %s breaks the signature', (_name, change) => {
    expect(verifyJob(job(change), signJob(key, job()))).toBe(false)
  })

  const badInputs: Array<[string, SignedJobFields, Uint8Array | string]> = [
    ['signature too short', job(), new Uint8Array(63)],
    ['signature all zeros', job(), new Uint8Array(64)],
    ['signature text garbage', job(), '!!!'],
    ['publisher not a peer id', job({ publisher: 'not-a-peer' }), new Uint8Array(64)],
    ['publisher a secp256k1 peer', job({ publisher: peerIdFromPrivateKey(secp).toString() }), new Uint8Array(64)],
    ['spec with NaN', job({ spec: { ...spec, cpuMilli: Number.NaN } }), new Uint8Array(64)]
  ]
  it.each(badInputs)('verifyJob never throws: %s → false', (_name, j, sig) => {
    expect(verifyJob(j, sig)).toBe(false)
  })

  it('a signature verified once still refuses other bytes under it (the verified cache is per content)', () => {
    const sig = signJob(key, job({ id: 'j-cache' }))
    expect(verifyJob(job({ id: 'j-cache' }), sig)).toBe(true)
    expect(verifyJob(job({ id: 'j-cache' }), sig)).toBe(true) // from the cache
    expect(verifyJob(job({ id: 'j-cache', spec: { ...spec, cpuMilli: 4000 } }), sig)).toBe(false)
    expect(verifyJob(job({ id: 'j-cache', publisher: otherPeer }), sig)).toBe(false)
    expect(verifyJob(job({ id: 'j-cache', nonce: 'other-nonce' }), sig)).toBe(false)
  })

  it('refuses to sign for another publisher or with a non-Ed25519 key', () => {
    expect(() => signJob(key, job({ publisher: otherPeer }))).toThrow(expect.objectContaining({ name: 'JobSigningError', problem: 'publisher-mismatch' }))
    expect(() => signJob(secp, job({ publisher: peerIdFromPrivateKey(secp).toString() }))).toThrow(expect.objectContaining({ name: 'JobSigningError', problem: 'key-type' }))
  })

  it('signature text round-trips and rejects anything else', () => {
    const sig = signJob(key, job())
    expect(Buffer.from(signatureFromString(signatureToString(sig))!)).toEqual(Buffer.from(sig))
    expect(signatureFromString('')).toBeUndefined()
    expect(signatureFromString('a'.repeat(85))).toBeUndefined()
    expect(signatureFromString('+'.repeat(86))).toBeUndefined()
  })

  it('nonces are distinct and short', () => {
    const n = new Set(Array.from({ length: 1000 }, () => newJobNonce()))
    expect(n.size).toBe(1000)
    for (const x of n) expect(x).toMatch(/^[A-Za-z0-9_-]{22}$/)
  })

  propTest.prop([fc.string({ maxLength: 64 }), fc.dictionary(fc.string({ minLength: 1, maxLength: 8 }), fc.string({ maxLength: 16 }), { maxKeys: 6 }), fc.integer({ min: 0, max: 2 ** 45 })], { numRuns: 200 })(
    'any job signs and verifies; flipping any signature bit fails', (id, env, createdAtMs) => {
      const j = job({ id, spec: { ...spec, env }, createdAtMs })
      const sig = signJob(key, j)
      expect(verifyJob(j, sig)).toBe(true)
      const bad = Uint8Array.from(sig)
      bad[createdAtMs % 64] ^= 1 << (createdAtMs % 8)
      expect(verifyJob(j, bad)).toBe(false)
    })
})

describe('publisher allowlist', () => {
  it.each([
    [{ any: true } as const, publisher, true],
    [{ peers: [publisher] }, publisher, true],
    [{ peers: [publisher] }, otherPeer, false],
    [{ peers: [] }, publisher, false]
  ])('isAuthorizedPublisher(%j, …) = %s', (list, who, expected) => {
    expect(isAuthorizedPublisher(who, list)).toBe(expected)
  })

  it('parses flags: none or * means any; entries must be Ed25519 peer ids', () => {
    expect(parsePublisherAllowlist(undefined)).toEqual({ any: true })
    expect(parsePublisherAllowlist(['*'])).toEqual({ any: true })
    expect(parsePublisherAllowlist([publisher, publisher, otherPeer])).toEqual({ peers: [publisher, otherPeer] })
    expect(() => parsePublisherAllowlist(['nope'])).toThrow(expect.objectContaining({ name: 'InvalidPublisherAllowlistError' }))
    expect(() => parsePublisherAllowlist([peerIdFromPrivateKey(secp).toString()])).toThrow(expect.objectContaining({ name: 'InvalidPublisherAllowlistError' }))
  })

  it('authorizeJob: signed by an allowed publisher → ok; otherwise the one visible reason', () => {
    const j = job()
    const signature = signatureToString(signJob(key, j))
    expect(authorizeJob({ ...j, signature }, { peers: [publisher] })).toEqual({ ok: true })
    expect(authorizeJob({ ...j, signature }, { peers: [otherPeer] })).toEqual({ ok: false, reason: UNAUTHORIZED_PUBLISHER, detail: 'not-allowed' })
    expect(authorizeJob({ id: j.id, spec: j.spec }, { any: true })).toEqual({ ok: false, reason: UNAUTHORIZED_PUBLISHER, detail: 'unsigned' })
    // An allowed publisher's name on a job someone else signed.
    const forged = signatureToString(new Uint8Array(64).fill(7))
    expect(authorizeJob({ ...j, signature: forged }, { any: true })).toEqual({ ok: false, reason: UNAUTHORIZED_PUBLISHER, detail: 'bad-signature' })
    expect(UNAUTHORIZED_PUBLISHER).toBe('unauthorized publisher')
    // The same for a BidRequest / Award body.
    expect(authorizeJobMessage({ jobId: j.id, spec: j.spec, publisher, createdAtMs: j.createdAtMs, nonce: j.nonce, signature }, { peers: [publisher] })).toEqual({ ok: true })
    expect(authorizeJobMessage({ jobId: 'j-other', spec: j.spec, publisher, createdAtMs: j.createdAtMs, nonce: j.nonce, signature }, { any: true })).toMatchObject({ ok: false, detail: 'bad-signature' })
  })
})

// Every guard test runs against both books: the verdicts must not depend on where they are kept.
const BOOKS: Array<[string, () => ReplayBook]> = [
  ['book in memory', () => memoryReplayBook()],
  ['book in a store', () => storeReplayBook(openSqliteStore({ path: ':memory:' }))]
]

for (const [bookName, newBook] of BOOKS) describe(`createReplayGuard, ${bookName}`, () => {
  const t0 = 1_700_000_000_000
  it.each([
    ['fresh', { jobId: 'a', nonce: 'x', createdAtMs: t0 }, t0, { ok: true }],
    ['at the window edge', { jobId: 'a', nonce: 'x', createdAtMs: t0 - 60_000 }, t0, { ok: true }],
    ['older than the window', { jobId: 'a', nonce: 'x', createdAtMs: t0 - 60_001 }, t0, { ok: false, reason: 'expired' }],
    ['too far in the future', { jobId: 'a', nonce: 'x', createdAtMs: t0 + 10_001 }, t0, { ok: false, reason: 'future' }],
    ['empty nonce', { jobId: 'a', nonce: '', createdAtMs: t0 }, t0, { ok: false, reason: 'malformed' }],
    ['NaN time', { jobId: 'a', nonce: 'x', createdAtMs: Number.NaN }, t0, { ok: false, reason: 'malformed' }],
    ['fractional time', { jobId: 'a', nonce: 'x', createdAtMs: t0 + 0.5 }, t0, { ok: false, reason: 'malformed' }],
    ['a surrogate in the job id', { jobId: 'a\uD800', nonce: 'x', createdAtMs: t0 }, t0, { ok: false, reason: 'malformed' }]
  ])('%s', (_name, entry, now, expected) => {
    const g = createReplayGuard({ windowMs: 60_000, maxEntries: 10, maxFutureSkewMs: 10_000, book: newBook() })
    expect(g.admit(entry, now)).toEqual(expected)
  })

  it('refuses a seen (jobId, nonce), accepts a new nonce for the same job', () => {
    const g = createReplayGuard({ windowMs: 60_000, maxEntries: 10, book: newBook() })
    expect(g.admit({ jobId: 'a', nonce: 'x', createdAtMs: t0 }, t0)).toEqual({ ok: true })
    expect(g.admit({ jobId: 'a', nonce: 'x', createdAtMs: t0 }, t0 + 1000)).toEqual({ ok: false, reason: 'replayed' })
    expect(g.admit({ jobId: 'a', nonce: 'y', createdAtMs: t0 }, t0 + 1000)).toEqual({ ok: true })
    // No ambiguity from concatenation.
    expect(g.admit({ jobId: 'ax', nonce: '', createdAtMs: t0 }, t0).ok).toBe(false)
    expect(g.admit({ jobId: 'a', nonce: 'xy', createdAtMs: t0 }, t0)).toEqual({ ok: true })
  })

  it('forgets only what the window already refuses, and fails closed when full', () => {
    const g = createReplayGuard({ windowMs: 1000, maxEntries: 3, book: newBook() })
    for (let i = 0; i < 3; i++) expect(g.admit({ jobId: `j${i}`, nonce: 'n', createdAtMs: t0 + i }, t0 + i)).toEqual({ ok: true })
    expect(g.admit({ jobId: 'j3', nonce: 'n', createdAtMs: t0 + 3 }, t0 + 3)).toEqual({ ok: false, reason: 'full' })
    expect(g.size()).toBe(3)
    // Once j0 is older than the window it is forgotten (and a replay of it is 'expired').
    expect(g.admit({ jobId: 'j3', nonce: 'n', createdAtMs: t0 + 1001 }, t0 + 1001)).toEqual({ ok: true })
    expect(g.admit({ jobId: 'j0', nonce: 'n', createdAtMs: t0 }, t0 + 1001)).toEqual({ ok: false, reason: 'expired' })
    expect(g.size()).toBeLessThanOrEqual(3)
  })

  it('admitEpoch: retries and takeovers (higher epochs) pass, a replayed or stale award does not', () => {
    const g = createReplayGuard({ windowMs: 60_000, maxEntries: 10, book: newBook() })
    const e = (epoch: number, now = t0) => g.admitEpoch({ jobId: 'a', nonce: 'x', createdAtMs: t0, epoch }, now)
    expect(e(1)).toEqual({ ok: true })
    expect(e(1)).toEqual({ ok: false, reason: 'replayed' })
    expect(e(3)).toEqual({ ok: true })
    expect(e(2)).toEqual({ ok: false, reason: 'replayed' })
    expect(e(4, t0 + 60_001)).toEqual({ ok: false, reason: 'expired' })
    expect(g.admitEpoch({ jobId: 'a', nonce: 'x', createdAtMs: t0, epoch: -1 }, t0)).toEqual({ ok: false, reason: 'malformed' })
    // a check gives the verdict and remembers nothing
    expect(g.admitEpoch({ jobId: 'a', nonce: 'x', createdAtMs: t0, epoch: 5 }, t0, { check: true })).toEqual({ ok: true })
    expect(g.admitEpoch({ jobId: 'a', nonce: 'x', createdAtMs: t0, epoch: 2 }, t0, { check: true })).toEqual({ ok: false, reason: 'replayed' })
    expect(g.admitEpoch({ jobId: 'c', nonce: 'x', createdAtMs: t0, epoch: 0 }, t0, { check: true })).toEqual({ ok: true })
    expect(g.size()).toBe(1)
    expect(e(5)).toEqual({ ok: true })
    // admit() and admitEpoch() keep separate books
    expect(g.admit({ jobId: 'a', nonce: 'x', createdAtMs: t0 }, t0)).toEqual({ ok: true })
    expect(g.size()).toBe(2)
  })

  propTest.prop([fc.array(fc.record({ jobId: fc.constantFrom('a', 'b', 'c'), nonce: fc.constantFrom('1', '2'), age: fc.integer({ min: 0, max: 2000 }), step: fc.integer({ min: 0, max: 300 }) }), { maxLength: 200 })], { numRuns: 300 })(
    'never admits the same (jobId, nonce) twice within the window, never holds more than maxEntries', (ops) => {
      const g = createReplayGuard({ windowMs: 1000, maxEntries: 4, book: newBook() })
      let now = t0
      const admitted = new Map<string, number>()
      for (const op of ops) {
        now += op.step
        const createdAtMs = now - op.age
        const v = g.admit({ jobId: op.jobId, nonce: op.nonce, createdAtMs }, now)
        const k = `${op.jobId}/${op.nonce}`
        if (v.ok) {
          const prev = admitted.get(k)
          // admitted before and that admission is still inside the window: a replay got through
          if (prev !== undefined) expect(prev).toBeLessThan(now - 1000)
          expect(createdAtMs).toBeGreaterThanOrEqual(now - 1000)
          admitted.set(k, createdAtMs)
        }
        expect(g.size()).toBeLessThanOrEqual(4)
      }
    })
})

describe('storeReplayBook: the agent\'s book, across restarts', () => {
  const t0 = 1_700_000_000_000
  const dir = mkdtempSync(join(tmpdir(), 'bidmesh-replay-'))
  afterAll(() => rmSync(dir, { recursive: true, force: true }))
  let n = 0
  const freshPath = (): string => join(dir, `agent-${n++}.db`)
  const guardOn = (store: Store, maxEntries = 100) => createReplayGuard({ windowMs: 60_000, maxEntries, book: storeReplayBook(store) })

  it('a guard on the reopened store refuses the awards the first one admitted, and admits higher epochs', () => {
    const path = freshPath()
    const first = openSqliteStore({ path })
    const g1 = guardOn(first)
    expect(g1.admitEpoch({ jobId: 'a', nonce: 'x', createdAtMs: t0, epoch: 2 }, t0)).toEqual({ ok: true })
    expect(g1.admit({ jobId: 'b', nonce: 'y', createdAtMs: t0 }, t0)).toEqual({ ok: true })
    first.close()

    const second = openSqliteStore({ path })
    try {
      const g2 = guardOn(second)
      expect(g2.size()).toBe(2)
      expect(g2.admitEpoch({ jobId: 'a', nonce: 'x', createdAtMs: t0, epoch: 2 }, t0 + 1000)).toEqual({ ok: false, reason: 'replayed' })
      expect(g2.admitEpoch({ jobId: 'a', nonce: 'x', createdAtMs: t0, epoch: 1 }, t0 + 1000)).toEqual({ ok: false, reason: 'replayed' })
      expect(g2.admit({ jobId: 'b', nonce: 'y', createdAtMs: t0 }, t0 + 1000)).toEqual({ ok: false, reason: 'replayed' })
      expect(g2.admitEpoch({ jobId: 'a', nonce: 'x', createdAtMs: t0, epoch: 3 }, t0 + 1000)).toEqual({ ok: true })
    } finally {
      second.close()
    }
  })

  it('a full book stays full across a restart, and its expired entries are deleted from disk as awards come', () => {
    const path = freshPath()
    const first = openSqliteStore({ path })
    const g1 = guardOn(first, 300)
    for (let i = 0; i < 300; i++) expect(g1.admitEpoch({ jobId: `j${i}`, nonce: 'n', createdAtMs: t0 + i, epoch: 0 }, t0 + i)).toEqual({ ok: true })
    expect(g1.admitEpoch({ jobId: 'late', nonce: 'n', createdAtMs: t0 + 300, epoch: 0 }, t0 + 300)).toEqual({ ok: false, reason: 'full' })
    first.close()

    const second = openSqliteStore({ path })
    try {
      const g2 = guardOn(second, 300)
      expect(g2.admitEpoch({ jobId: 'late', nonce: 'n', createdAtMs: t0 + 300, epoch: 0 }, t0 + 300)).toEqual({ ok: false, reason: 'full' })
      // A minute later every entry has expired: one award deletes a batch of them (256), the
      // next the rest, and both are admitted.
      const later = t0 + 60_000 + 300
      expect(g2.admitEpoch({ jobId: 'late', nonce: 'n', createdAtMs: later, epoch: 0 }, later)).toEqual({ ok: true })
      expect(second.admissionStats().count).toBe(300 - 256 + 1)
      expect(g2.admitEpoch({ jobId: 'later', nonce: 'n', createdAtMs: later, epoch: 0 }, later)).toEqual({ ok: true })
      expect(second.admissionStats()).toEqual({ count: 2, oldestCreatedAtMs: later })
      expect(g2.size()).toBe(2)
    } finally {
      second.close()
    }
  })

  propTest.prop([fc.array(fc.record({ jobId: fc.constantFrom('a', 'b', 'c'), age: fc.integer({ min: 0, max: 500 }), epoch: fc.integer({ min: 0, max: 4 }), step: fc.integer({ min: 0, max: 400 }), restart: fc.boolean() }), { maxLength: 60 })], { numRuns: 40 })(
    'restarts change no verdict: the same awards get the same answers as from one guard that never stopped', (ops) => {
      const path = freshPath()
      const continuous = createReplayGuard({ windowMs: 1000, maxEntries: 4, book: memoryReplayBook() })
      let store = openSqliteStore({ path })
      let restarted = createReplayGuard({ windowMs: 1000, maxEntries: 4, book: storeReplayBook(store) })
      try {
        let now = t0
        // A job's creation time is signed with it, so one (jobId, nonce) always comes with the
        // same one; once that is out of the window the id stands for a new job.
        const createdAt = new Map<string, number>()
        for (const op of ops) {
          now += op.step
          if ((createdAt.get(op.jobId) ?? -Infinity) < now - 1000) createdAt.set(op.jobId, now - op.age)
          if (op.restart) {
            store.close()
            store = openSqliteStore({ path })
            restarted = createReplayGuard({ windowMs: 1000, maxEntries: 4, book: storeReplayBook(store) })
          }
          const award = { jobId: op.jobId, nonce: 'n', createdAtMs: createdAt.get(op.jobId)!, epoch: op.epoch }
          expect(restarted.admitEpoch(award, now)).toEqual(continuous.admitEpoch(award, now))
        }
      } finally {
        store.close()
      }
    })
})

describe('screenJobMessage (the executor-side hook)', () => {
  const now = 1_700_000_000_000
  const j = job({ createdAtMs: now - 1000 })
  const signed = { jobId: j.id, spec: j.spec, publisher, createdAtMs: j.createdAtMs, nonce: j.nonce, signature: signatureToString(signJob(key, j)) }
  const policy = () => ({ allowlist: { peers: [publisher] }, guard: createReplayGuard({ windowMs: 60_000, maxEntries: 100 }) })

  it.each([
    ['bid, signed and allowed', 'bid', { ...signed, epoch: 1 }, { ok: true }],
    ['bid, unsigned', 'bid', { jobId: j.id, spec: j.spec, epoch: 1 }, { ok: false, reason: 'unauthorized publisher', detail: 'unsigned' }],
    ['bid, by a publisher not on the list', 'bid', { ...signed, epoch: 1, publisher: otherPeer }, { ok: false, reason: 'unauthorized publisher', detail: 'not-allowed' }],
    ['award, spec swapped after signing', 'award', { ...signed, epoch: 1, spec: { ...spec, image: 'evil' } }, { ok: false, reason: 'unauthorized publisher', detail: 'bad-signature' }],
    ['award, signed and allowed', 'award', { ...signed, epoch: 1 }, { ok: true }]
  ] as const)('%s', (_name, kind, body, expected) => {
    expect(screenJobMessage(kind, body as any, policy(), now)).toEqual(expected)
  })

  it('an award is accepted once per epoch (once its executor admitted it); an old job is refused as expired', () => {
    const p = policy()
    /** screens an award and, when it passes, admits it as the executor does once it took it */
    const take = (epoch: number): ReturnType<typeof screenJobMessage> => {
      const v = screenJobMessage('award', { ...signed, epoch }, p, now)
      if (v.ok) p.guard.admitEpoch({ jobId: signed.jobId, nonce: signed.nonce, createdAtMs: signed.createdAtMs, epoch }, now)
      return v
    }
    // the screen itself only checks: an award not taken may come again
    expect(screenJobMessage('award', { ...signed, epoch: 1 }, p, now)).toEqual({ ok: true })
    expect(take(1)).toEqual({ ok: true })
    expect(take(1)).toEqual({ ok: false, reason: 'replayed award' })
    expect(take(2)).toEqual({ ok: true })
    expect(screenJobMessage('bid', { ...signed, epoch: 3 }, p, now + 120_000)).toEqual({ ok: false, reason: 'expired job' })
    expect(screenJobMessage('award', { ...signed, epoch: 3 }, p, now + 120_000)).toMatchObject({ ok: false, reason: 'expired job' })
  })

  it('a job the executor knows has ended is refused at any epoch, on any executor (the epoch is not signed)', () => {
    const ended = new Set([j.id])
    const p = { ...policy(), finished: (id: string) => ended.has(id) }
    // An executor that never saw the job: its guard admits the epoch, the job is over anyway.
    expect(screenJobMessage('award', { ...signed, epoch: 1 }, p, now)).toEqual({ ok: false, reason: 'finished job' })
    expect(screenJobMessage('award', { ...signed, epoch: 9 }, p, now)).toEqual({ ok: false, reason: 'finished job' })
    expect(screenJobMessage('bid', { ...signed, epoch: 10 }, p, now)).toEqual({ ok: false, reason: 'finished job' })
    // The signature and the window are checked first: a forgery is refused as what it is.
    expect(screenJobMessage('award', { ...signed, epoch: 11, spec: { ...spec, image: 'evil' } }, p, now)).toMatchObject({ ok: false, reason: 'unauthorized publisher' })
    expect(screenJobMessage('award', { ...signed, epoch: 12 }, p, now + 120_000)).toMatchObject({ ok: false, reason: 'expired job' })
    // A job still running is not refused: retries and takeovers come with higher epochs.
    ended.clear()
    expect(screenJobMessage('award', { ...signed, epoch: 13 }, p, now)).toEqual({ ok: true })
  })
})

describe('jobEnvelope', () => {
  it('copies the signed fields of a record into a message body, and nothing for an unsigned one', () => {
    const j = job()
    const signature = signatureToString(signJob(key, j))
    const env = jobEnvelope({ ...j, signature })
    expect(env).toEqual({ publisher, createdAtMs: j.createdAtMs, nonce: j.nonce, signature })
    expect(screenJobMessage('bid', { jobId: j.id, epoch: 1, spec: j.spec, ...env }, { allowlist: { any: true } }, j.createdAtMs)).toEqual({ ok: true })
    expect(jobEnvelope({ publisher, createdAtMs: 1 })).toEqual({})
  })
})
