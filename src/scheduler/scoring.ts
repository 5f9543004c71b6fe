// Scorers: each adds one named component in [0, 1]; the score is their weighted sum.
import type { JobSpec } from '../protocol/job-spec.ts'
import type { NodeSnapshot } from './feasibility.ts'

export type Scorer = (node: NodeSnapshot, job: JobSpec) => number

/** Mean of CPU and memory utilization after placing the job: fuller is better (best fit). */
export const binpack: Scorer = (n, job) => {
  const c = n.capacity
  const cpu = c.totalCpuMilli > 0 ? (c.totalCpuMilli - n.freeCpuMilli + job.cpuMilli) / c.totalCpuMilli : 1
  const mem = c.totalMemoryBytes > 0 ? (c.totalMemoryBytes - n.freeMemoryBytes + job.memoryBytes) / c.totalMemoryBytes : 1
  return clamp01((cpu + mem) / 2)
}

/** The opposite of binpack: emptier is better, so load spreads across nodes. */
export const spread: Scorer = (n, job) => 1 - binpack(n, job)

export interface WeightedScorer { name: string, weight: number, score: Scorer }

export function scorersFor (job: JobSpec): WeightedScorer[] {
  return job.placement === 'spread'
    ? [{ name: 'spread', weight: 1, score: spread }]
    : [{ name: 'binpack', weight: 1, score: binpack }]
}

function clamp01 (x: number): number {
  return x < 0 ? 0 : x > 1 ? 1 : x
}
