// Signed jobs and authorized publishers. Pure functions, no I/O and no clock.
//
// A job is signed once, by its publisher (the agent whose API accepted it), over a canonical
// encoding of what an executor is asked to run: the job id, the spec, the publisher, the
// creation time and a random nonce. The publisher's public key is the one embedded in its
// Ed25519 peer id, so anyone can verify a job from its record alone, without a key directory.
// An executor refuses a job whose signature does not verify or whose publisher is not on its
// allowlist ('unauthorized publisher'), whoever sent the bid request or the award: a member
// of the mesh that is not an authorized publisher cannot make others run containers.
import { type KeyObject, createHash, createPrivateKey, createPublicKey, randomBytes, sign as cryptoSign, verify as cryptoVerify } from 'node:crypto'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import { Packr } from 'msgpackr'
import type { JobSpec } from '../protocol/job-spec.ts'
import type { Store } from '../store/store.ts'

/** Domain separation: a signature over a job can never be taken for one over anything else,
 *  and a later format (…/2) can never be confused with this one. */
export const JOB_SIGNATURE_DOMAIN = 'bidmesh/job/1'
/** Ed25519 signatures are 64 bytes; base64url without padding, 86 characters. */
export const JOB_SIGNATURE_BYTES = 64
export const JOB_NONCE_BYTES = 16
const MAX_FIELD_CHARS = 128

/** What the signature covers. Everything an executor acts on is in it; the owner, epoch and
 *  replicas are not (they change with retries and takeovers and are fenced by epochs). */
export interface SignedJobFields {
  id: string
  spec: JobSpec
  /** peer id (Ed25519) of the signer */
  publisher: string
  createdAtMs: number
  /** random, base64url; makes every submission distinct even with equal id and time */
  nonce: string
}

export class JobSigningError extends Error {
  static readonly code = 'ERR_JOB_SIGNING'
  readonly code = JobSigningError.code
  constructor (readonly problem: 'key-type' | 'publisher-mismatch' | 'not-canonical' | 'async-key', message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'JobSigningError'
  }
}

// ---- canonical encoding ------------------------------------------------------------------

// Fixed settings: the canonical bytes must not change with a caller's Packr defaults.
// Maps are msgpack maps written in the order given (we sort keys); floats are float64.
const canonicalPackr = new Packr({ useRecords: false, moreTypes: false, variableMapSize: true, useFloat32: 0 })

/** Plain data → a value whose msgpack encoding is canonical: object keys sorted by UTF-16
 *  code unit, undefined-valued keys dropped (absent and undefined are the same field), -0 as 0.
 *  Anything that has no single encoding (NaN, Infinity, undefined in an array, bigint,
 *  functions, class instances) is refused. */
function canonicalize (value: unknown, depth = 0): unknown {
  if (depth > 32) throw new JobSigningError('not-canonical', 'value nested too deeply to sign')
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return value
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new JobSigningError('not-canonical', 'non-finite number cannot be signed')
    return Object.is(value, -0) ? 0 : value
  }
  if (Array.isArray(value)) {
    return value.map(v => {
      if (v === undefined) throw new JobSigningError('not-canonical', 'undefined in an array cannot be signed')
      return canonicalize(v, depth + 1)
    })
  }
  if (typeof value === 'object' && (Object.getPrototypeOf(value) === Object.prototype || Object.getPrototypeOf(value) === null)) {
    const keys = Object.keys(value).filter(k => (value as Record<string, unknown>)[k] !== undefined).sort()
    return new Map(keys.map(k => [k, canonicalize((value as Record<string, unknown>)[k], depth + 1)]))
  }
  throw new JobSigningError('not-canonical', `a ${typeof value} cannot be signed`)
}

/** The exact bytes that are signed: msgpack of [domain, id, spec, publisher, createdAtMs, nonce]. */
export function canonicalJobBytes (job: SignedJobFields): Uint8Array {
  return canonicalPackr.pack(canonicalize([JOB_SIGNATURE_DOMAIN, job.id, job.spec, job.publisher, job.createdAtMs, job.nonce]))
}

// ---- sign and verify ---------------------------------------------------------------------

/** Signs a job with the publisher's key. The publisher must be the key's own peer id: a job
 *  signed "for" someone else would never verify, so that is a bug, reported at once. */
export function signJob (privateKey: PrivateKey, job: SignedJobFields): Uint8Array {
  if (privateKey.type !== 'Ed25519') throw new JobSigningError('key-type', `jobs are signed with Ed25519 keys, not ${privateKey.type}`)
  const { peerId: own, keyObject } = signingKey(privateKey)
  if (own !== job.publisher) throw new JobSigningError('publisher-mismatch', `publisher ${job.publisher} is not the signing key's peer id ${own}`)
  const bytes = canonicalJobBytes(job)
  if (keyObject !== undefined) return new Uint8Array(cryptoSign(null, bytes, keyObject))
  const sig = privateKey.sign(bytes)
  if (sig instanceof Promise) throw new JobSigningError('async-key', 'the signing key signs asynchronously; use a local Ed25519 key')
  return sig
}

// ---- node key objects --------------------------------------------------------------------
// libp2p's Ed25519 keys import themselves into node's crypto (from JWK) on every sign and
// verify, ~35 µs a call; a job is signed once and verified by each executor it reaches. The
// key objects are made once per key instead, from the raw keys in their standard DER wrapping
// (RFC 8410). Ed25519 signatures are deterministic: the same key and bytes give the same
// signature either way (test/agent/signing.test.ts checks both directions).

/** DER of an Ed25519 SubjectPublicKeyInfo before its 32 raw key bytes. */
const SPKI_ED25519_PREFIX = Buffer.from('302a300506032b6570032100', 'hex')
/** DER of an Ed25519 PKCS #8 private key before its 32-byte seed. */
const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex')

/** A signing key's peer id and node key object, worked out once per key. */
const signingKeys = new WeakMap<PrivateKey, { peerId: string, keyObject?: KeyObject }>()

/** keyObject undefined: not a local Ed25519 key with its seed at hand (libp2p's own sign is used). */
function signingKey (privateKey: PrivateKey): { peerId: string, keyObject?: KeyObject } {
  let key = signingKeys.get(privateKey)
  if (key !== undefined) return key
  key = { peerId: peerIdFromPrivateKey(privateKey).toString() }
  // libp2p keeps an Ed25519 private key as the seed followed by the public key (64 bytes).
  const raw: unknown = (privateKey as { raw?: unknown }).raw
  if (raw instanceof Uint8Array && raw.byteLength === 64) {
    key.keyObject = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, raw.subarray(0, 32)]), format: 'der', type: 'pkcs8' })
  }
  signingKeys.set(privateKey, key)
  return key
}

/** Publishers' public keys, by peer id; the oldest goes first past PUBLIC_KEYS_MAX. */
const publicKeyObjects = new Map<string, KeyObject>()
const PUBLIC_KEYS_MAX = 1024

/** undefined: the peer id embeds no Ed25519 key. Throws on a malformed peer id. */
function publicKeyObject (publisher: string): KeyObject | undefined {
  let keyObject = publicKeyObjects.get(publisher)
  if (keyObject !== undefined) return keyObject
  const publicKey = peerIdFromString(publisher).publicKey
  if (publicKey === undefined || publicKey.type !== 'Ed25519' || publicKey.raw.byteLength !== 32) return undefined
  keyObject = createPublicKey({ key: Buffer.concat([SPKI_ED25519_PREFIX, publicKey.raw]), format: 'der', type: 'spki' })
  if (publicKeyObjects.size >= PUBLIC_KEYS_MAX) publicKeyObjects.delete(publicKeyObjects.keys().next().value!)
  publicKeyObjects.set(publisher, keyObject)
  return keyObject
}

/**
 * True when `signature` is the publisher's signature over exactly these fields. Never throws:
 * a malformed peer id, a peer id without an embedded key (RSA), a non-Ed25519 key, a signature
 * of the wrong size or encoding, or fields that cannot be encoded all verify as false.
 */
export function verifyJob (job: SignedJobFields, signature: Uint8Array | string): boolean {
  try {
    const sig = typeof signature === 'string' ? signatureFromString(signature) : signature
    if (sig === undefined || sig.byteLength !== JOB_SIGNATURE_BYTES) return false
    if (typeof job.publisher !== 'string' || job.publisher.length > MAX_FIELD_CHARS) return false
    const bytes = canonicalJobBytes(job)
    // One job reaches an executor several times (bid requests of each round, the award):
    // the same signature over the same bytes verified before verifies again, so comparing a
    // digest of the bytes replaces the signature check. Only successes are remembered.
    const cacheKey = `${job.publisher}\n${Buffer.from(sig).toString('base64')}`
    const digest = createHash('sha256').update(bytes).digest('base64')
    if (VERIFIED.get(cacheKey) === digest) return true
    const publicKey = publicKeyObject(job.publisher)
    if (publicKey === undefined || !cryptoVerify(null, bytes, publicKey, sig)) return false
    if (VERIFIED.size >= VERIFIED_MAX) VERIFIED.delete(VERIFIED.keys().next().value!)
    VERIFIED.set(cacheKey, digest)
    return true
  } catch {
    return false
  }
}

/** Signatures that verified, by publisher and signature, with the SHA-256 of the bytes they
 *  cover; the oldest entry goes first past VERIFIED_MAX (~0.5 MB when full). */
const VERIFIED = new Map<string, string>()
const VERIFIED_MAX = 2048

/** A fresh nonce: 16 random bytes, base64url. */
export function newJobNonce (): string {
  return randomBytes(JOB_NONCE_BYTES).toString('base64url')
}

/** Signatures travel and are stored as base64url text (JSON- and SQLite-safe). */
export function signatureToString (sig: Uint8Array): string {
  return Buffer.from(sig.buffer, sig.byteOffset, sig.byteLength).toString('base64url')
}

export function signatureFromString (text: string): Uint8Array | undefined {
  if (text.length !== 86 || !/^[A-Za-z0-9_-]+$/.test(text)) return undefined
  const bytes = Buffer.from(text, 'base64url')
  return bytes.byteLength === JOB_SIGNATURE_BYTES ? Uint8Array.from(bytes) : undefined
}

// ---- authorization -----------------------------------------------------------------------

/** Who may publish jobs this agent runs: anyone in the mesh, or the listed peer ids. */
export type PublisherAllowlist = { any: true } | { peers: string[] }

export function isAuthorizedPublisher (publisher: string, allowlist: PublisherAllowlist): boolean {
  if ('any' in allowlist) return allowlist.any === true
  return Array.isArray(allowlist.peers) && allowlist.peers.includes(publisher)
}

export class InvalidPublisherAllowlistError extends Error {
  static readonly code = 'ERR_INVALID_PUBLISHER_ALLOWLIST'
  readonly code = InvalidPublisherAllowlistError.code
  constructor (readonly entry: string, options?: ErrorOptions) {
    super(`not an Ed25519 peer id: ${entry}`, options)
    this.name = 'InvalidPublisherAllowlistError'
  }
}

/** Builds an allowlist from flag values: none or `*` → any; else each must be an Ed25519
 *  peer id (one whose key is embedded, so its jobs can be verified). */
export function parsePublisherAllowlist (values: readonly string[] | undefined): PublisherAllowlist {
  if (values === undefined || values.length === 0 || (values.length === 1 && values[0] === '*')) return { any: true }
  const peers: string[] = []
  for (const raw of values) {
    const v = raw.trim()
    let ok = false
    try { ok = peerIdFromString(v).publicKey?.type === 'Ed25519' } catch {}
    if (!ok) throw new InvalidPublisherAllowlistError(raw)
    peers.push(v)
  }
  return { peers: [...new Set(peers)] }
}

/** The refusal reason executors show (BidRefused / AwardDeclined), whatever the detail. */
export const UNAUTHORIZED_PUBLISHER = 'unauthorized publisher'

export type JobAuthorization =
  | { ok: true }
  | { ok: false, reason: typeof UNAUTHORIZED_PUBLISHER, detail: 'unsigned' | 'bad-signature' | 'not-allowed' }

/** Everything an executor checks before bidding on or accepting a job: the job is signed, the
 *  signature verifies against the publisher's own key, and the publisher is allowed. */
export function authorizeJob (
  job: Partial<SignedJobFields> & { id: string, spec: JobSpec, signature?: Uint8Array | string },
  allowlist: PublisherAllowlist
): JobAuthorization {
  const { publisher, createdAtMs, nonce, signature } = job
  if (publisher === undefined || createdAtMs === undefined || nonce === undefined || signature === undefined) {
    return { ok: false, reason: UNAUTHORIZED_PUBLISHER, detail: 'unsigned' }
  }
  // Allowlist first: it is cheap, and an outsider's job is refused without crypto work.
  if (!isAuthorizedPublisher(publisher, allowlist)) return { ok: false, reason: UNAUTHORIZED_PUBLISHER, detail: 'not-allowed' }
  if (!verifyJob({ id: job.id, spec: job.spec, publisher, createdAtMs, nonce }, signature)) {
    return { ok: false, reason: UNAUTHORIZED_PUBLISHER, detail: 'bad-signature' }
  }
  return { ok: true }
}

/** authorizeJob for a BidRequest or Award body (jobId instead of id). */
export function authorizeJobMessage (
  body: { jobId: string, spec: JobSpec, publisher?: string, createdAtMs?: number, nonce?: string, signature?: string | Uint8Array },
  allowlist: PublisherAllowlist
): JobAuthorization {
  return authorizeJob({
    id: body.jobId,
    spec: body.spec,
    ...(body.publisher !== undefined ? { publisher: body.publisher } : {}),
    ...(body.createdAtMs !== undefined ? { createdAtMs: body.createdAtMs } : {}),
    ...(body.nonce !== undefined ? { nonce: body.nonce } : {}),
    ...(body.signature !== undefined ? { signature: body.signature } : {})
  }, allowlist)
}

// ---- replay guard ------------------------------------------------------------------------

export type ReplayVerdict =
  | { ok: true }
  | { ok: false, reason: 'replayed' | 'expired' | 'future' | 'full' | 'malformed' }

export interface ReplayGuard {
  /** Admits a (jobId, nonce) once, if created within the window; remembers it when admitted. */
  admit (entry: { jobId: string, nonce: string, createdAtMs: number }, nowMs: number): ReplayVerdict
  /** For executors, where one job legitimately arrives again (a retry, a takeover) with a
   *  higher epoch: admits (jobId, nonce, epoch) only when epoch is above every epoch admitted
   *  for that (jobId, nonce) before, within the same window. A replayed or stale award is
   *  'replayed'. Epochs are kept apart from admit()'s entries. With check, only the verdict:
   *  nothing is remembered (the caller admits once it has taken the award). */
  admitEpoch (entry: { jobId: string, nonce: string, createdAtMs: number, epoch: number }, nowMs: number, options?: { check?: boolean }): ReplayVerdict
  /** True when a job created at createdAtMs is inside the window now (no state kept). */
  isFresh (createdAtMs: number, nowMs: number): boolean
  /** Entries remembered now. */
  size (): number
}

/** Where a replay guard keeps what it admitted: per key, the creation time of the job it is
 *  about (the entry is useless once that is outside the window) and the highest epoch
 *  admitted (-1 for admit()). memoryReplayBook for tests and tools; an agent keeps its book
 *  in its store (storeReplayBook), so that a restart forgets nothing it admitted. */
export interface ReplayBook {
  /** the highest epoch admitted for key, if any */
  epochOf (key: string): number | undefined
  /** a key not in the book */
  add (key: string, createdAtMs: number, epoch: number): void
  /** a higher epoch for a key already in the book */
  raise (key: string, createdAtMs: number, epoch: number): void
  size (): number
  /** Forgets entries created before cutoffMs. It may leave some for a later call (a stored
   *  book deletes a bounded batch per call); the guard never reads them (it refuses a job
   *  created before the cutoff first), so they only count towards size() meanwhile. */
  expire (cutoffMs: number): void
}

export interface ReplayGuardInit {
  /** A job created more than windowMs before now is refused; so only this long needs remembering. */
  windowMs: number
  /** Hard bound on the book. When full of unexpired entries, new ones are refused ('full'):
   *  forgetting one early would let it be replayed. */
  maxEntries: number
  /** Tolerated clock skew into the future. Default min(windowMs, 60 s). A job dated further
   *  ahead would stay admissible past its window. */
  maxFutureSkewMs?: number
  /** Default: a memoryReplayBook, lost with the process. */
  book?: ReplayBook
}

/** A book in memory: a map, and a min-heap of [createdAtMs, key] so that the oldest entry is
 *  the next to expire. O(log n) per entry, ~150 B each. */
export function memoryReplayBook (): ReplayBook {
  const epochs = new Map<string, number>()
  const heap: Array<[number, string]> = []
  const push = (item: [number, string]): void => {
    heap.push(item)
    let i = heap.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (heap[parent][0] <= heap[i][0]) break
      ;[heap[parent], heap[i]] = [heap[i], heap[parent]]
      i = parent
    }
  }
  const pop = (): void => {
    const last = heap.pop()!
    if (heap.length === 0) return
    heap[0] = last
    let i = 0
    for (;;) {
      const l = 2 * i + 1
      const r = l + 1
      let m = i
      if (l < heap.length && heap[l][0] < heap[m][0]) m = l
      if (r < heap.length && heap[r][0] < heap[m][0]) m = r
      if (m === i) break
      ;[heap[m], heap[i]] = [heap[i], heap[m]]
      i = m
    }
  }
  return {
    epochOf: key => epochs.get(key),
    add (key, createdAtMs, epoch) {
      epochs.set(key, epoch)
      push([createdAtMs, key])
    },
    raise (key, _createdAtMs, epoch) { epochs.set(key, epoch) },
    size: () => epochs.size,
    expire (cutoffMs) {
      while (heap.length > 0 && heap[0][0] < cutoffMs) {
        epochs.delete(heap[0][1])
        pop()
      }
    }
  }
}

/** Entries a stored book deletes per expire() call, at most: each admission adds one, so any
 *  backlog of expired entries shrinks quickly, while no single award waits on a long delete. */
const STORED_BOOK_EXPIRE_BATCH = 256

/** Job ids and nonces are ASCII; anything with a UTF-16 surrogate is malformed. */
const SURROGATE = /[\uD800-\uDFFF]/

/** A book in the agent's store (its `admissions` table). Its count and oldest entry are kept
 *  in memory, so an expire() with nothing to expire costs no query, and one that deletes
 *  costs the delete and an index seek, never a count (a scan of up to maxEntries rows:
 *  ~50 ms at 2,000,000, on every award of a book a week old). Writes are the store's
 *  ordinary commits: an award's acknowledgement waits for the flush that covers them
 *  (src/agent/durable-mesh.ts), so an award acknowledged is an award remembered. */
export function storeReplayBook (store: Pick<Store, 'getAdmission' | 'putAdmission' | 'deleteAdmissionsBefore' | 'admissionStats' | 'oldestAdmission'>): ReplayBook {
  let { count, oldestCreatedAtMs } = store.admissionStats()
  return {
    epochOf: key => store.getAdmission(key)?.epoch,
    add (key, createdAtMs, epoch) {
      store.putAdmission(key, { createdAtMs, epoch })
      count++
      if (oldestCreatedAtMs === undefined || createdAtMs < oldestCreatedAtMs) oldestCreatedAtMs = createdAtMs
    },
    raise (key, createdAtMs, epoch) { store.putAdmission(key, { createdAtMs, epoch }) }, // the first createdAtMs stays
    size: () => count,
    expire (cutoffMs) {
      if (oldestCreatedAtMs === undefined || oldestCreatedAtMs >= cutoffMs) return
      count -= store.deleteAdmissionsBefore({ beforeMs: cutoffMs, limit: STORED_BOOK_EXPIRE_BATCH })
      oldestCreatedAtMs = store.oldestAdmission()
    }
  }
}

/** Refuses a (jobId, nonce) seen before and any job created outside [now − window, now + skew].
 *  Clock-free (the caller passes nowMs); its book bounded by maxEntries. */
export function createReplayGuard (init: ReplayGuardInit): ReplayGuard {
  if (!(init.windowMs > 0) || !Number.isInteger(init.maxEntries) || init.maxEntries <= 0) {
    throw new RangeError('createReplayGuard: windowMs must be > 0 and maxEntries a positive integer')
  }
  const skew = init.maxFutureSkewMs ?? Math.min(init.windowMs, 60_000)
  const book = init.book ?? memoryReplayBook()

  /** Common checks; returns the key, or a refusal. The length prefix keeps ("ab", "c") and
   *  ("a", "bc") apart; the space letter keeps admit()'s entries apart from admitEpoch()'s. */
  const prepare = (space: 'n' | 'e', jobId: string, nonce: string, createdAtMs: number, nowMs: number): string | ReplayVerdict => {
    // Integers and surrogate-free strings only, so that both books hold exactly what they are
    // given (a store refuses a fractional time, and would not find a lone surrogate again).
    if (typeof jobId !== 'string' || typeof nonce !== 'string' || jobId.length === 0 || nonce.length === 0 ||
      jobId.length > MAX_FIELD_CHARS || nonce.length > MAX_FIELD_CHARS || SURROGATE.test(jobId) || SURROGATE.test(nonce) ||
      !Number.isSafeInteger(createdAtMs) || !Number.isFinite(nowMs)) {
      return { ok: false, reason: 'malformed' }
    }
    const cutoff = nowMs - init.windowMs
    if (createdAtMs < cutoff) return { ok: false, reason: 'expired' }
    if (createdAtMs > nowMs + skew) return { ok: false, reason: 'future' }
    book.expire(cutoff)
    return `${space}${jobId.length}:${jobId}/${nonce}`
  }

  return {
    admit ({ jobId, nonce, createdAtMs }, nowMs) {
      const key = prepare('n', jobId, nonce, createdAtMs, nowMs)
      if (typeof key !== 'string') return key
      if (book.epochOf(key) !== undefined) return { ok: false, reason: 'replayed' }
      if (book.size() >= init.maxEntries) return { ok: false, reason: 'full' }
      book.add(key, createdAtMs, -1)
      return { ok: true }
    },
    admitEpoch ({ jobId, nonce, createdAtMs, epoch }, nowMs, options = {}) {
      if (!Number.isSafeInteger(epoch) || epoch < 0) return { ok: false, reason: 'malformed' }
      const key = prepare('e', jobId, nonce, createdAtMs, nowMs)
      if (typeof key !== 'string') return key
      const last = book.epochOf(key)
      if (last !== undefined && epoch <= last) return { ok: false, reason: 'replayed' }
      if (options.check === true) return last === undefined && book.size() >= init.maxEntries ? { ok: false, reason: 'full' } : { ok: true }
      if (last === undefined) {
        if (book.size() >= init.maxEntries) return { ok: false, reason: 'full' }
        book.add(key, createdAtMs, epoch)
      } else {
        book.raise(key, createdAtMs, epoch)
      }
      return { ok: true }
    },
    isFresh: (createdAtMs, nowMs) => Number.isFinite(createdAtMs) && createdAtMs >= nowMs - init.windowMs && createdAtMs <= nowMs + skew,
    size: () => book.size()
  }
}

// ---- the executor's screen ------------------------------------------------------------------

/** Recommended executor replay window: a signed job can be run (first attempt, retries,
 *  takeovers) for a week after it was published; the owner should fail a job still pending
 *  by then, since no executor will take it. maxEntries bounds the agent's book, which is on
 *  disk (storeReplayBook; measured ~130 B per award, so ~250 MB when full, and a week of
 *  awards × 130 B before that): an executor refuses awards once it accepted this many within
 *  one window, so 2,000,000 caps it at ~285,000 awards a day (3.3 a second, every second of
 *  a week). More: a higher cap, more disk when reached; fewer: a busy executor of short jobs
 *  stops taking work (100,000, the cap while the book was in memory, was ~14,000 a day). */
export const EXECUTOR_REPLAY_DEFAULTS = { windowMs: 7 * 24 * 3600 * 1000, maxEntries: 2_000_000 } as const

export type ScreenVerdict =
  | { ok: true }
  | { ok: false, reason: typeof UNAUTHORIZED_PUBLISHER | 'expired job' | 'replayed award' | 'replay guard full' | 'finished job', detail?: string }

/**
 * What an executor checks before bidding (kind 'bid') or accepting an award (kind 'award'):
 * the job is signed by an allowed publisher (else 'unauthorized publisher'), it is within
 * the replay window, (awards only) its epoch is above every epoch this executor accepted
 * for it before, and it has not already ended as far as this executor knows ('finished job').
 * Bid requests keep no state: only an award commits the executor to run.
 */
export function screenJobMessage (
  kind: 'bid' | 'award',
  body: { jobId: string, epoch: number, spec: JobSpec, publisher?: string, createdAtMs?: number, nonce?: string, signature?: string | Uint8Array },
  policy: {
    allowlist: PublisherAllowlist
    guard?: ReplayGuard
    /** True when the executor knows the job has ended (succeeded, failed or cancelled). */
    finished?: (jobId: string) => boolean
  },
  nowMs: number
): ScreenVerdict {
  const auth = authorizeJobMessage(body, policy.allowlist)
  if (!auth.ok) return { ok: false, reason: auth.reason, detail: auth.detail }
  const guard = policy.guard
  // Signed, so these are present (authorizeJob refuses an unsigned job).
  const createdAtMs = body.createdAtMs!
  if (guard !== undefined && kind === 'bid' && !guard.isFresh(createdAtMs, nowMs)) return { ok: false, reason: 'expired job' }
  if (guard !== undefined && kind === 'award') {
    // Only checked: the caller admits the award once it has taken it, so an award it declines
    // takes no room in the guard.
    const v = guard.admitEpoch({ jobId: body.jobId, nonce: body.nonce!, createdAtMs, epoch: body.epoch }, nowMs, { check: true })
    if (!v.ok) return refusedByGuard(v.reason)
  }
  // The signature covers what to run, not the epoch, the owner or the executor: those change
  // with retries and takeovers. So the guard alone refuses a replayed award only on the
  // executor that took it before and only at the same or a lower epoch. Any member that reads
  // a finished job's record (JobQuery answers anyone) could send its award again to another
  // executor, or with a higher epoch, and have it run once more each time. No honest owner
  // awards a job that has ended, so an executor that knows the job ended refuses it.
  if (policy.finished?.(body.jobId) === true) return { ok: false, reason: 'finished job' }
  return { ok: true }
}

function refusedByGuard (reason: Extract<ReplayVerdict, { ok: false }>['reason']): ScreenVerdict {
  switch (reason) {
    case 'replayed': return { ok: false, reason: 'replayed award' }
    case 'full': return { ok: false, reason: 'replay guard full' }
    default: return { ok: false, reason: 'expired job', detail: reason }
  }
}

/** The signed fields of a job record, to copy into its BidRequest and Award bodies (empty
 *  for an unsigned record, which executors then refuse as 'unauthorized publisher'). */
export function jobEnvelope (job: { publisher: string, createdAtMs: number, nonce?: string, signature?: string }):
{ publisher: string, createdAtMs: number, nonce: string, signature: string } | Record<string, never> {
  if (job.nonce === undefined || job.signature === undefined) return {}
  return { publisher: job.publisher, createdAtMs: job.createdAtMs, nonce: job.nonce, signature: job.signature }
}
