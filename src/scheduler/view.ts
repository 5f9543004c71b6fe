// The owner's capacity view: the latest advert heard from each peer, when it was heard,
// and claims the owner itself has made but no advert reflects yet. Pure data + functions.
import type { NodeCapacity } from '../protocol/job.ts'
import { hash32 } from './hash.ts'

export type Liveness = 'alive' | 'suspect' | 'gone'

export interface ViewEntry {
  capacity: NodeCapacity
  /** receiver's clock when the newest advert arrived */
  heardAtMs: number
  /** resources this owner has asked the node to reserve in rounds still open */
  claimedCpuMilli: number
  claimedMemoryBytes: number
  /** when this owner sent the node an award that it has not answered (nor anything else since):
   *  a node silent on direct requests for a while gets bids, not awards from the view */
  unansweredAwardSinceMs?: number
  /** this owner lost its direct connection to the node, and has had no direct answer from it
   *  since: it gets bids, not awards from the view (see 'peer:disconnected' in
   *  src/scheduler/auction.ts). Adverts do not clear it: an idle node's adverts repeat its
   *  last capacity, and one sent just before a crash may arrive after the drop. */
  disconnected?: boolean
  /** hash32 of the peer id, for placement's rendezvous tie-break (computed once per entry) */
  peerHash?: number
}

export interface CapacityView {
  entries: Map<string, ViewEntry>
  /** increments whenever a node joins or its free capacity grows: pending jobs are offered again */
  freedVersion: number
}

export interface LivenessConfig {
  suspectAfterMs: number
  goneAfterMs: number
}

export function createView (): CapacityView {
  return { entries: new Map(), freedVersion: 0 }
}

/** Applies an advert (or a bid's capacity snapshot). Returns true when it freed capacity or added a node. */
export function applyAdvert (view: CapacityView, capacity: NodeCapacity, nowMs: number): boolean {
  const prev = view.entries.get(capacity.peerId)
  if (prev === undefined) {
    view.entries.set(capacity.peerId, { capacity, heardAtMs: nowMs, claimedCpuMilli: 0, claimedMemoryBytes: 0, peerHash: hash32(capacity.peerId) })
    view.freedVersion++
    return true
  }
  const old = prev.capacity
  if (capacity.seq < old.seq) return false // stale: an older version overtook a newer one
  // Updated in place: an owner hears ~50 adverts a second, and nobody keeps an entry across
  // steps (snapshots copy what they read), so a new object per advert would only feed the GC.
  prev.capacity = capacity
  prev.heardAtMs = nowMs
  const freed = capacity.freeCpuMilli > old.freeCpuMilli ||
    capacity.freeMemoryBytes > old.freeMemoryBytes ||
    (old.draining && !capacity.draining)
  if (freed) view.freedVersion++
  return freed
}

export function liveness (entry: ViewEntry, nowMs: number, config: LivenessConfig): Liveness {
  const age = nowMs - entry.heardAtMs
  if (age < config.suspectAfterMs) return 'alive'
  if (age < config.goneAfterMs) return 'suspect'
  return 'gone'
}

/** Drops entries gone for longer than keepGoneMs; returns the peers dropped. */
export function pruneView (view: CapacityView, nowMs: number, goneAfterMs: number, keepGoneMs: number): string[] {
  const dropped: string[] = []
  for (const [peer, e] of view.entries) {
    if (nowMs - e.heardAtMs > goneAfterMs + keepGoneMs) {
      view.entries.delete(peer)
      dropped.push(peer)
    }
  }
  return dropped
}

export function claim (view: CapacityView, peer: string, cpuMilli: number, memoryBytes: number): void {
  const e = view.entries.get(peer)
  if (e === undefined) return
  e.claimedCpuMilli += cpuMilli
  e.claimedMemoryBytes += memoryBytes
}

export function unclaim (view: CapacityView, peer: string, cpuMilli: number, memoryBytes: number): void {
  const e = view.entries.get(peer)
  if (e === undefined) return
  e.claimedCpuMilli = Math.max(0, e.claimedCpuMilli - cpuMilli)
  e.claimedMemoryBytes = Math.max(0, e.claimedMemoryBytes - memoryBytes)
}

/** The owner awarded a job to the node without a bid (no capacity snapshot counts it yet): its
 *  entry counts the job until the node's next advert, which replaces the entry and counts the
 *  job itself. (An advert already on its way when the node took the award shows the room
 *  once more, for the few milliseconds until the advert after it: at worst a declined award.) */
export function debit (view: CapacityView, peer: string, cpuMilli: number, memoryBytes: number): void {
  const e = view.entries.get(peer)
  if (e === undefined) return
  const c = e.capacity
  e.capacity = { ...c, freeCpuMilli: Math.max(0, c.freeCpuMilli - cpuMilli), freeMemoryBytes: Math.max(0, c.freeMemoryBytes - memoryBytes) }
}

/** This owner lost its direct connection to the node (see ViewEntry.disconnected). */
export function markDisconnected (view: CapacityView, peer: string): void {
  const e = view.entries.get(peer)
  if (e !== undefined) e.disconnected = true
}

/** The node declined an award that the view said fits: the view is wrong about it. Its entry
 *  shows no free room until the node's next advert replaces it, so this owner's next jobs do
 *  not go the same way, nor does the declined job's next offer. (It costs this owner at most
 *  an advert interval of placements on a node that may have had room for a smaller job.) */
export function markFull (view: CapacityView, peer: string): void {
  const e = view.entries.get(peer)
  if (e !== undefined) debit(view, peer, e.capacity.freeCpuMilli, e.capacity.freeMemoryBytes)
}

/**
 * The owner releases a losing bid's reservation: the capacity that bid carried counted the
 * reservation, and so does anything newer the owner has heard from the node: the room
 * comes back in the view at once. The node does not advertise a change it has undone since
 * its last advert (src/agent/agent.ts publishAdvert), so without this the owner would see
 * the node short by the job until the node's next periodic advert. Returns true when room
 * came back.
 */
export function releaseInView (view: CapacityView, peer: string, bidSeq: number, cpuMilli: number, memoryBytes: number): boolean {
  const e = view.entries.get(peer)
  // Every capacity the node made from the bid on (seq ≥ the bid's) counts the reservation:
  // the release is only now on its way. (A reservation the node dropped on its own, after
  // its time to live, would be added back twice: that overstates the node by one job until
  // its next advert, and costs at most a refused bid, since a bidder checks its exact room.)
  if (e === undefined || e.capacity.seq < bidSeq) return false
  const c = e.capacity
  e.capacity = {
    ...c,
    freeCpuMilli: Math.min(c.totalCpuMilli, c.freeCpuMilli + cpuMilli),
    freeMemoryBytes: Math.min(c.totalMemoryBytes, c.freeMemoryBytes + memoryBytes)
  }
  view.freedVersion++
  return true
}

/** How long ago this agent last heard from at least half of the members in its view (selfId
 *  counts, as heard now): the ceil(n/2)-th smallest age. What a replica's acknowledgement of
 *  a lease renewal reports (AttemptUpdateAck.quorumAgeMs). Sorts the view: for a yes/no
 *  question count instead (countHeardWithin). */
export function halfHeardAgeMs (view: CapacityView, selfId: string, nowMs: number): number {
  const ages: number[] = []
  for (const e of view.entries.values()) ages.push(e.capacity.peerId === selfId ? 0 : Math.max(0, nowMs - e.heardAtMs))
  if (ages.length === 0) return 0
  ages.sort((a, b) => a - b)
  return ages[Math.ceil(ages.length / 2) - 1]
}

/** The members in the view, and how many of them were heard from within maxAgeMs (selfId
 *  counts, as heard now), in one pass. At least half were (heard × 2 ≥ members) exactly when
 *  halfHeardAgeMs(view, selfId, nowMs) ≤ maxAgeMs: the ceil(n/2)-th smallest age is within
 *  maxAgeMs when at least ceil(n/2) ages are. The agent asks on every attempt update it
 *  serves, where a sort of the view would cost O(n log n) each time. */
export function countHeardWithin (view: CapacityView, selfId: string, nowMs: number, maxAgeMs: number): { members: number, heard: number } {
  let members = 0
  let heard = 0
  for (const e of view.entries.values()) {
    members++
    if (e.capacity.peerId === selfId || nowMs - e.heardAtMs <= maxAgeMs) heard++
  }
  return { members, heard }
}
