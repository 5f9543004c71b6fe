// Placement: feasibility checks, then scorers, then the choice. The one place that orders
// the stages. Pure: same inputs, same decision, with its explanation.
import type { JobSpec } from '../protocol/job-spec.ts'
import type { Explanation, NodeScore } from '../protocol/job.ts'
import { type Check, type NodeSnapshot, allowsNetwork, fitsCpu, fitsMemory, fitsTotalCpu, fitsTotalMemory, isAlive, matchesLabels, notDraining } from './feasibility.ts'
import { rendezvous } from './hash.ts'
import { scorersFor } from './scoring.ts'
import { type CapacityView, type LivenessConfig, liveness } from './view.ts'

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
  for (const e of view.entries.values()) {
    yield {
      capacity: e.capacity,
      freeCpuMilli: e.capacity.freeCpuMilli - e.claimedCpuMilli,
      freeMemoryBytes: e.capacity.freeMemoryBytes - e.claimedMemoryBytes,
      liveness: liveness(e, nowMs, config)
    }
  }
}

export interface CandidateSelection {
  candidates: string[]
  explanation: Explanation
}

/** Picks who is asked to bid: the best `1 + extraCandidates` feasible nodes. The extra ones
 *  cover a node that filled up since its advert; the count is constant in mesh size. */
export function selectCandidates (
  jobId: string, job: JobSpec, nodes: Iterable<NodeSnapshot>,
  options: { extraCandidates: number, explainTop: number, nowMs: number }
): CandidateSelection {
  const r = rankNodes(jobId, job, nodes)
  const candidates = r.ranked.slice(0, 1 + options.extraCandidates).map(s => s.node)
  return {
    candidates,
    explanation: {
      consideredNodes: r.considered,
      filtered: r.filtered,
      top: r.ranked.slice(0, options.explainTop),
      candidates,
      decidedAtMs: options.nowMs
    }
  }
}

export interface BidView { node: string, score: number, components: Record<string, number> }

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
