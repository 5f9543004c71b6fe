// Placement: feasibility checks, then scorers, then the choice. The one place that orders
// the stages. Pure: same inputs, same decision, with its explanation.
import type { JobSpec } from '../protocol/job-spec.ts'
import type { Explanation, NodeCapacity, NodeScore } from '../protocol/job.ts'
import { type Check, type NodeSnapshot, allowsNetwork, fitsCpu, fitsMemory, fitsTotalCpu, fitsTotalMemory, isAlive, matchesLabels, notDraining } from './feasibility.ts'
import { hash32, rendezvous, rendezvousOfHashes } from './hash.ts'
import { type WeightedScorer, scorersFor } from './scoring.ts'
import { type CapacityView, type LivenessConfig, type ViewEntry, liveness } from './view.ts'

// The order matters. Cheap, high-rejection checks come first, and liveness comes before
// fit, so a stale advert never earns a bid request. Total-size checks come before free-size
// checks, so a job that can never fit a node is reported as such rather than as "full".
export const CHECKS: Check[] = [notDraining, isAlive, matchesLabels, allowsNetwork, fitsTotalMemory, fitsTotalCpu, fitsMemory, fitsCpu]

export interface Ranking {
  considered: number
  filtered: Record<string, number>
  /** feasible nodes, best first */
  ranked: NodeScore[]
}

/** Deterministic order: score, then a per-job rendezvous hash (so equal nodes spread across
 *  jobs instead of every owner picking the same one), then the peer id. */
export function compareScores (jobId: string, a: NodeScore, b: NodeScore): number {
  if (a.score !== b.score) return b.score - a.score
  const ha = rendezvous(jobId, a.node)
  const hb = rendezvous(jobId, b.node)
  if (ha !== hb) return hb - ha
  return a.node < b.node ? -1 : a.node > b.node ? 1 : 0
}

export function rankNodes (jobId: string, job: JobSpec, nodes: Iterable<NodeSnapshot>): Ranking {
  const filtered: Record<string, number> = {}
  const ranked: NodeScore[] = []
  const scorers = scorersFor(job)
  let considered = 0
  for (const node of nodes) {
    considered++
    let rejected: string | undefined
    for (const check of CHECKS) {
      rejected = check(node, job)
      if (rejected !== undefined) break
    }
    if (rejected !== undefined) {
      filtered[rejected] = (filtered[rejected] ?? 0) + 1
      continue
    }
    const components: Record<string, number> = {}
    let score = 0
    for (const s of scorers) {
      const v = s.score(node, job)
      components[s.name] = v
      score += s.weight * v
    }
    ranked.push({ node: node.capacity.peerId, score, components })
  }
  ranked.sort((a, b) => compareScores(jobId, a, b))
  return { considered, filtered, ranked }
}

/** Snapshots of a view, with this owner's open claims subtracted from each node's free capacity. */
export function* snapshots (view: CapacityView, nowMs: number, config: LivenessConfig): Generator<NodeSnapshot> {
  for (const e of view.entries.values()) yield snapshotInto(newSnapshot(), e, nowMs, config)
}

/** Writes the snapshot of one view entry into `target` (claims subtracted) and returns it. */
function snapshotInto (target: NodeSnapshot, e: ViewEntry, nowMs: number, config: LivenessConfig): NodeSnapshot {
  target.capacity = e.capacity
  target.freeCpuMilli = e.capacity.freeCpuMilli - e.claimedCpuMilli
  target.freeMemoryBytes = e.capacity.freeMemoryBytes - e.claimedMemoryBytes
  target.liveness = liveness(e, nowMs, config)
  return target
}

function newSnapshot (): NodeSnapshot {
  return { capacity: undefined as unknown as NodeCapacity, freeCpuMilli: 0, freeMemoryBytes: 0, liveness: 'alive' }
}

export interface CandidateSelection {
  candidates: string[]
  explanation: Explanation
}

/** Picks who is asked to bid: the best `1 + extraCandidates` feasible nodes. The extra ones
 *  cover a node that filled up since its advert; the count is constant in mesh size.
 *  Same result as ranking every node (rankNodes) and taking the head, but only the head is
 *  kept in order: an owner does this for every offer, over a view of ~100 nodes. */
export function selectCandidates (
  jobId: string, job: JobSpec, nodes: Iterable<NodeSnapshot>,
  options: { extraCandidates: number, explainTop: number, nowMs: number }
): CandidateSelection {
  const top = new TopK<NodeSnapshot>(jobId, job, options)
  for (const node of nodes) top.add(node, node, undefined)
  return top.selection(n => n, options)
}

/** selectCandidates over a capacity view, with this owner's open claims subtracted (as
 *  snapshots() does), without a snapshot object per node. */
export function selectFromView (
  jobId: string, job: JobSpec, view: CapacityView, config: LivenessConfig,
  options: { extraCandidates: number, explainTop: number, nowMs: number }
): CandidateSelection {
  const top = new TopK<ViewEntry>(jobId, job, options)
  // One scratch snapshot: checks and scorers read it and keep nothing of it.
  const scratch = newSnapshot()
  for (const e of view.entries.values()) top.add(snapshotInto(scratch, e, options.nowMs, config), e, e.peerHash)
  return top.selection(e => snapshotInto(newSnapshot(), e, options.nowMs, config), options)
}

interface Ranked<T> { node: string, score: number, hash: number, source: T }

/** The best k feasible nodes in compareScores order, and the filter counts of all the others. */
class TopK<T> {
  private readonly k: number
  private readonly keyHash: number
  private readonly scorers: WeightedScorer[]
  readonly filtered: Record<string, number> = {}
  considered = 0
  /** best first, at most k */
  readonly best: Array<Ranked<T>> = []

  constructor (jobId: string, private readonly job: JobSpec, options: { extraCandidates: number, explainTop: number }) {
    this.k = Math.max(1 + options.extraCandidates, options.explainTop)
    this.keyHash = hash32(jobId)
    this.scorers = scorersFor(job)
  }

  add (node: NodeSnapshot, source: T, peerHash: number | undefined): void {
    this.considered++
    const job = this.job
    for (const check of CHECKS) {
      const rejected = check(node, job)
      if (rejected !== undefined) {
        this.filtered[rejected] = (this.filtered[rejected] ?? 0) + 1
        return
      }
    }
    if (this.k <= 0) return
    let score = 0
    for (const s of this.scorers) score += s.weight * s.score(node, job)
    const best = this.best
    const peer = node.capacity.peerId
    const hash = rendezvousOfHashes(this.keyHash, peerHash ?? hash32(peer))
    if (best.length >= this.k && !ranksBefore(score, hash, peer, best[best.length - 1])) return
    let i = best.length < this.k ? best.length : best.length - 1
    while (i > 0 && ranksBefore(score, hash, peer, best[i - 1])) {
      best[i] = best[i - 1]
      i--
    }
    best[i] = { node: peer, score, hash, source }
  }

  selection (snapshotOf: (source: T) => NodeSnapshot, options: { extraCandidates: number, explainTop: number, nowMs: number }): CandidateSelection {
    const candidates = this.best.slice(0, 1 + options.extraCandidates).map(r => r.node)
    const top: NodeScore[] = this.best.slice(0, options.explainTop).map(r => {
      // The components of the few nodes shown, computed as rankNodes does.
      const snap = snapshotOf(r.source)
      const components: Record<string, number> = {}
      let score = 0
      for (const s of this.scorers) {
        const v = s.score(snap, this.job)
        components[s.name] = v
        score += s.weight * v
      }
      return { node: r.node, score, components }
    })
    return {
      candidates,
      explanation: { consideredNodes: this.considered, filtered: this.filtered, top, candidates, decidedAtMs: options.nowMs }
    }
  }
}

/** compareScores(jobId, a, b) < 0, for a given as its parts and its rendezvous hash. */
function ranksBefore<T> (score: number, hash: number, node: string, b: Ranked<T>): boolean {
  if (score !== b.score) return score > b.score
  if (hash !== b.hash) return hash > b.hash
  return node < b.node
}

export interface BidView {
  node: string
  score: number
  components: Record<string, number>
  /** seq of the capacity the bid carried (it counts the bid's reservation); see releaseInView */
  capacitySeq?: number
}

/** The award: the best bid wins; ties are broken as in compareScores. */
export function chooseWinner (jobId: string, bids: BidView[]): BidView | undefined {
  let best: BidView | undefined
  for (const b of bids) {
    if (best === undefined || compareScores(jobId, b, best) < 0) best = b
  }
  return best
}

/** "memory: 3 nodes, label zone=a: 2 nodes" */
export function formatFiltered (filtered: Record<string, number>): string {
  const parts = Object.entries(filtered).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
  return parts.map(([reason, n]) => `${reason}: ${n} node${n === 1 ? '' : 's'}`).join(', ')
}
