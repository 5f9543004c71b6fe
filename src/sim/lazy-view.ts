// Lazy capacity views: how the simulator shell delivers adverts to owners with nothing pending.
//
// At 10,000 agents a run has ~15 M advert deliveries (each advert reaches the ~32 owners whose
// sample holds its sender), and each delivery touched a random owner's view: the simulator
// was memory-bound on them. But an advert to an owner with no pending job changes only the
// owner's view (the machine's handler applies it, then offers pending jobs, of which there are
// none), and the view matters only when the machine reads it. So such adverts are not
// delivered: each publication is logged once, on its publisher, with its arrival (time and
// place in the order of actions); an owner's view (a LazyView, which the shell sets into the
// owner's state) applies what has arrived since it last looked the moment the machine reads
// it, with the machine's own applyAdvert, at the arrival times. Reading one entry (a bid's
// capacity, a claim) brings that entry up to date; reading them all (an offer) or
// freedVersion brings the whole view. Nothing the machine reads differs from stepping every
// advert at its arrival (tests compare whole runs with --no-batch, and views one read at a time):
// - entries are independent of each other; one sender's adverts are applied in arrival order;
// - a run of one sender's adverts that arrived consecutively and in publication order is
//   applied as its first advert (stale or not, freeing room or not, against whatever the entry
//   holds) and then its last: capacity versions only grow along a sender's adverts, so the
//   entry ends the same, and freedVersion still moves if an advert in between showed more room
//   than the one before it (a flag per publication). freedVersion is only ever compared with a
//   value read earlier ("has room been freed since?"), and every read of it brings the whole
//   view up to date first, so counting such a run once changes no answer.
//
// What made a delivery happen at its arrival still decides it: the sample at that time (a
// peer leaving an owner's sample is read up to then, one joining it is read from then on), the
// receiver being up (a restarted owner reads only what arrived after its start) and the
// network (receivers that were up but that loss or a partition kept the advert from are
// recorded on the publication). Pruning (the sample refresh) reads first the entries it may
// drop, and the whole view if it was not read for a refresh period, which bounds how long
// publications are kept.
import type { NodeCapacity } from '../protocol/job.ts'
import { type CapacityView, type ViewEntry, applyAdvert } from '../scheduler/view.ts'
import type { Engine } from './engine.ts'

/** (virtual time, insertion number) as one number, ordered as the actions are: exact in a
 *  double while times stay below MAX_LAZY_MS and insertion numbers below 2^32. */
const SEQS = 2 ** 32
/** Runs longer than this (35 virtual minutes) step every advert instead. */
export const MAX_LAZY_MS = 2 ** 21 - 1000
export const orderKey = (atMs: number, seq: number): number => atMs * SEQS + seq

/** One publisher's recent adverts, in publication order, as parallel arrays. */
class PublisherLog {
  /** logical index of position 0 (positions shift as old publications are dropped) */
  base = 0
  readonly caps: NodeCapacity[] = []
  /** arrival order key of each */
  readonly keys: number[] = []
  /** 1 when the advert shows more room than the publisher's previous one (applyAdvert's "freed") */
  readonly frees: number[] = []
  /** receivers that were up and subscribed but that the advert did not reach, by logical index */
  missed: Map<number, number[]> | undefined
  /** latest arrival dropped */
  droppedKey = -Infinity
}

/** Each publisher's last RING adverts are also kept packed (keys, flags and capacities of all
 *  publishers side by side, one cache line each): a view that reads often needs only those. */
const RING = 8

export class AdvertFeed {
  private readonly logs: PublisherLog[]
  /** latest arrival per publisher */
  private readonly lastKey: Float64Array
  /** publications so far per publisher (logical index of the next) */
  private readonly count: Float64Array
  private readonly ringKeys: Float64Array
  private readonly ringFrees: Uint8Array
  private readonly ringCaps: NodeCapacity[]
  /** 1 once some advert of this publisher missed a receiver: its runs are read from the log */
  private readonly anyMissed: Uint8Array
  private readonly spreadKey: number
  /** for the "freed" flag of each publication: the machine's applyAdvert on a one-entry view
   *  (whatever the peer) holding the publisher's previous advert */
  private readonly scratchEntry: ViewEntry = { capacity: undefined as unknown as NodeCapacity, heardAtMs: 0, claimedCpuMilli: 0, claimedMemoryBytes: 0 }
  private readonly scratch: CapacityView = { entries: { get: () => this.scratchEntry } as unknown as Map<string, ViewEntry>, freedVersion: 0 }

  /**
   * @param sampleOf the publishers agent i hears now
   * @param indexOf the agent with this peer id
   * @param keepMs how long a publication is kept: every view is read in full at least this often
   * @param spreadMs the width of the latency range: one publisher's adverts arrive in
   *   publication order to within it
   */
  constructor (
    agents: number,
    private readonly engine: Engine,
    private readonly sampleOf: (i: number) => readonly number[],
    private readonly indexOf: (peerId: string) => number | undefined,
    private readonly keepMs: number,
    spreadMs: number
  ) {
    this.logs = Array.from({ length: agents }, () => new PublisherLog())
    this.lastKey = new Float64Array(agents).fill(-Infinity)
    this.count = new Float64Array(agents)
    this.ringKeys = new Float64Array(agents * RING).fill(-Infinity)
    this.ringFrees = new Uint8Array(agents * RING)
    this.ringCaps = new Array<NodeCapacity>(agents * RING)
    this.anyMissed = new Uint8Array(agents)
    this.spreadKey = spreadMs * SEQS
  }

  /** A view for agent i's owner that has read everything that arrived before now. */
  view (i: number): LazyView {
    const v = new LazyView(i, this)
    v.syncKey = this.nowKey()
    return v
  }

  private nowKey (): number { return orderKey(this.engine.nowMs, this.engine.seq) }

  /** Logs a publication from `from`, arriving at (atMs, seq); returns its index for missed(). */
  publish (from: number, capacity: NodeCapacity, atMs: number, seq: number): number {
    const log = this.logs[from]
    const oldest = orderKey(this.engine.nowMs - this.keepMs, 0)
    let drop = 0
    while (drop < log.keys.length && log.keys[drop] < oldest) {
      if (log.keys[drop] > log.droppedKey) log.droppedKey = log.keys[drop]
      drop++
    }
    if (drop > 0) {
      log.caps.splice(0, drop); log.keys.splice(0, drop); log.frees.splice(0, drop)
      if (log.missed !== undefined) for (const k of log.missed.keys()) if (k < log.base + drop) log.missed.delete(k)
      log.base += drop
    }
    const n = log.caps.length
    let frees = 0
    if (n > 0) {
      this.scratchEntry.capacity = log.caps[n - 1]
      frees = applyAdvert(this.scratch, capacity, 0) ? 1 : 0
    }
    log.caps.push(capacity)
    const key = orderKey(atMs, seq)
    log.keys.push(key)
    log.frees.push(frees)
    if (key > this.lastKey[from]) this.lastKey[from] = key
    const index = log.base + n
    const r = from * RING + index % RING
    this.ringKeys[r] = key
    this.ringFrees[r] = frees
    this.ringCaps[r] = capacity
    this.count[from] = index + 1
    return index
  }

  /** The publication `index` of `from` did not reach `to`. */
  missed (from: number, index: number, to: number): void {
    this.anyMissed[from] = 1
    const log = this.logs[from]
    log.missed ??= new Map()
    const list = log.missed.get(index)
    if (list === undefined) log.missed.set(index, [to]); else list.push(to)
  }

  /** Brings all of v up to date with what arrived before the action running now. */
  syncAll (v: LazyView): void {
    const bound = this.nowKey()
    if (v.syncKey >= bound) return
    const from = v.syncKey
    const overrides = v.ahead
    v.busy = true
    try {
      for (const j of this.sampleOf(v.owner)) {
        const since = overrides === undefined ? from : Math.max(from, overrides.get(j) ?? from)
        if (this.lastKey[j] >= since) this.apply(v, j, since, bound)
      }
    } finally { v.busy = false }
    v.syncKey = bound
    if (overrides !== undefined) {
      for (const [j, k] of overrides) if (k <= bound) overrides.delete(j)
      if (overrides.size === 0) v.ahead = undefined
    }
  }

  /** Brings v's entry for one peer up to date. */
  syncEntry (v: LazyView, peerId: string): void {
    if (v.syncKey >= this.nowKey()) return
    const j = this.indexOf(peerId)
    if (j !== undefined) this.syncMember(v, j)
  }

  /** Brings v's entry for publisher j up to date (nothing if v does not hear j). */
  syncMember (v: LazyView, j: number): void {
    const bound = this.nowKey()
    if (v.syncKey >= bound) return
    let since = v.syncKey
    const ahead = v.ahead?.get(j)
    if (ahead !== undefined) { if (ahead >= bound) return; if (ahead > since) since = ahead }
    if (this.lastKey[j] < since || !this.sampleOf(v.owner).includes(j)) return
    v.busy = true
    try { this.apply(v, j, since, bound) } finally { v.busy = false }
    ;(v.ahead ??= new Map()).set(j, bound)
  }

  /** v's owner hears j from now on: what j published before is not for it. */
  subscribed (v: LazyView, j: number): void {
    ;(v.ahead ??= new Map()).set(j, this.nowKey())
  }

  /**
   * Prunes v with `prune` (pruneView) as if v had read everything: entries not heard for longer
   * than `quietMs` (pruneView drops only such) are brought up to date first, and a view that
   * has not been read in full for `quietMs` is read in full (which bounds how far back any view
   * reads: see keepMs).
   */
  prune (v: LazyView, quietMs: number, prune: () => void): void {
    const now = this.engine.nowMs
    if (v.syncKey < orderKey(now - quietMs, 0)) this.syncAll(v)
    else {
      const stale: number[] = []
      v.busy = true
      try {
        for (const e of v.entries.values()) {
          if (now - e.heardAtMs <= quietMs) continue
          const j = this.indexOf(e.capacity.peerId)
          if (j !== undefined) stale.push(j)
        }
      } finally { v.busy = false }
      for (const j of stale) this.syncMember(v, j)
    }
    v.busy = true
    try { prune() } finally { v.busy = false }
  }

  /** The owner was stepped with the advert from `from` arriving now (it had something
   *  pending): its entry has read everything up to and including it. */
  stepped (v: LazyView, from: number): void {
    ;(v.ahead ??= new Map()).set(from, this.nowKey() + 0.5)
  }

  /** The common case, from the ring alone: the adverts that arrived in [since, bound) are the
   *  last few, consecutive and in publication order; applied as applyRun does. Returns false
   *  (nothing done) when the ring does not show the case. */
  private applyRecent (v: LazyView, j: number, since: number, bound: number): boolean {
    const n = this.count[j]
    const keys = this.ringKeys
    const base = j * RING
    // arrivals before this were read: a publication arriving before it and all publications before that one
    const floor = since - this.spreadKey
    let first = -1
    let last = -1
    let prevKey = Infinity
    let complete = false
    let x = n - 1
    for (; x >= 0 && x >= n - RING; x--) {
      const key = keys[base + x % RING]
      if (key < floor) { complete = true; break }
      if (key < since || key >= bound) continue
      if (last >= 0 && (x !== first - 1 || key >= prevKey)) return false // a gap, or out of order
      if (last < 0) last = x
      first = x
      prevKey = key
    }
    if (x < 0) complete = true
    if (!complete) return false // the ring may not reach back far enough
    if (first < 0) return true // nothing new
    const caps = this.ringCaps
    const firstCap = caps[base + first % RING]
    const freed = applyAdvert(v, firstCap, Math.floor(keys[base + first % RING] / SEQS))
    if (first === last) return true
    if (v.rawEntry(firstCap.peerId)?.capacity !== firstCap) {
      // stale against the entry: the rest one by one (some of it may be stale too)
      for (let p = first + 1; p <= last; p++) applyAdvert(v, caps[base + p % RING], Math.floor(keys[base + p % RING] / SEQS))
      return true
    }
    const freedLast = applyAdvert(v, caps[base + last % RING], Math.floor(keys[base + last % RING] / SEQS))
    if (!freed && !freedLast) {
      for (let p = first + 1; p <= last; p++) {
        if (this.ringFrees[base + p % RING] === 1) { v.freedVersion++; break }
      }
    }
    return true
  }

  /** Applies to v publisher j's adverts that arrived in [since, bound). */
  private apply (v: LazyView, j: number, since: number, bound: number): void {
    if (this.anyMissed[j] === 0 && this.applyRecent(v, j, since, bound)) return
    const log = this.logs[j]
    if (log.droppedKey >= since) throw new Error(`the advert log of agent ${j} dropped what the view of agent ${v.owner} had not read`)
    const keys = log.keys
    const n = keys.length
    // back to the first publication that may have arrived since (arrivals are in publication
    // order to within the latency spread)
    let k = n
    while (k > 0 && keys[k - 1] >= since - this.spreadKey) k--
    // every advert that reached this owner, in arrival order
    const owner = v.owner
    const missed = log.missed
    const order: number[] = []
    for (let p = k; p < n; p++) {
      const key = keys[p]
      if (key < since || key >= bound) continue
      if (missed !== undefined && missed.get(log.base + p)?.includes(owner) === true) continue
      order.push(p)
    }
    if (order.length === 0) return
    const caps = log.caps
    let run = true // consecutive, and arrived in publication order
    for (let i = 1; i < order.length && run; i++) run = order[i] === order[i - 1] + 1 && keys[order[i]] > keys[order[i - 1]]
    if (run) { this.applyRun(v, caps, keys, log.frees, order[0], order[order.length - 1]); return }
    order.sort((a, b) => keys[a] - keys[b])
    for (const p of order) applyAdvert(v, caps[p], Math.floor(keys[p] / SEQS))
  }

  /** Applies the run of one publisher's adverts at positions first…last of (caps, keys, frees)
   *  (consecutive, in publication order, every one of them arrived): the first is applied (it
   *  may be stale, or free room, against what the entry holds, say a bid's capacity), then the
   *  last alone for the rest of the run: seqs only grow along a publisher's adverts, so the
   *  entry ends the same, and freedVersion moves if an advert in between freed room. */
  private applyRun (v: LazyView, caps: readonly NodeCapacity[], keys: readonly number[], frees: readonly number[], first: number, last: number): void {
    const firstCap = caps[first]
    const freed = applyAdvert(v, firstCap, Math.floor(keys[first] / SEQS))
    if (first === last) return
    if (v.rawEntry(firstCap.peerId)?.capacity !== firstCap) {
      // stale against the entry: the rest one by one (some of it may be stale too)
      for (let p = first + 1; p <= last; p++) applyAdvert(v, caps[p], Math.floor(keys[p] / SEQS))
      return
    }
    const freedLast = applyAdvert(v, caps[last], Math.floor(keys[last] / SEQS))
    if (!freed && !freedLast) {
      for (let p = first + 1; p <= last; p++) {
        if (frees[p] === 1) { v.freedVersion++; break }
      }
    }
  }
}

/** An owner's capacity view that reads its adverts when the machine reads it. */
export class LazyView implements CapacityView {
  readonly entries: LazyEntries
  /** has read everything that arrived before this order key */
  syncKey = -Infinity
  /** publishers whose entry has read further than syncKey, and how far */
  ahead: Map<number, number> | undefined
  /** applying adverts: reads go straight to the entries */
  busy = false
  private version = 0

  constructor (readonly owner: number, readonly feed: AdvertFeed) {
    this.entries = new LazyEntries(this)
  }

  get freedVersion (): number {
    if (!this.busy) this.feed.syncAll(this)
    return this.version
  }

  set freedVersion (v: number) { this.version = v }

  /** the entry as it stands, without reading anything */
  rawEntry (peerId: string): ViewEntry | undefined { return this.entries.raw(peerId) }
}

/** The entries of a LazyView: a read of one entry brings that entry up to date first, any
 *  other read the whole view. */
class LazyEntries extends Map<string, ViewEntry> {
  constructor (private readonly view: LazyView) { super() }

  raw (key: string): ViewEntry | undefined { return super.get(key) }

  private one (key: string): void {
    const v = this.view
    if (!v.busy) v.feed.syncEntry(v, key)
  }

  private all (): void {
    const v = this.view
    if (!v.busy) v.feed.syncAll(v)
  }

  override get (key: string): ViewEntry | undefined { this.one(key); return super.get(key) }
  override has (key: string): boolean { this.one(key); return super.has(key) }
  override set (key: string, value: ViewEntry): this { this.one(key); return super.set(key, value) }
  override delete (key: string): boolean { this.one(key); return super.delete(key) }
  override clear (): void { this.all(); super.clear() }
  override get size (): number { this.all(); return super.size }
  override values (): MapIterator<ViewEntry> { this.all(); return super.values() }
  override keys (): MapIterator<string> { this.all(); return super.keys() }
  override entries (): MapIterator<[string, ViewEntry]> { this.all(); return super.entries() }
  override [Symbol.iterator] (): MapIterator<[string, ViewEntry]> { this.all(); return super[Symbol.iterator]() }
  override forEach (fn: (value: ViewEntry, key: string, map: Map<string, ViewEntry>) => void, thisArg?: unknown): void { this.all(); super.forEach(fn, thisArg) }
}
