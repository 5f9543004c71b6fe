// Feasibility checks: small named stages of the form (node, job) => reason | undefined.
// The order they run in is set in placement.ts.
import type { JobSpec } from '../protocol/job-spec.ts'
import type { NodeCapacity } from '../protocol/job.ts'

/** What a check sees of a node: its advert, with this owner's open claims already subtracted. */
export interface NodeSnapshot {
  capacity: NodeCapacity
  freeCpuMilli: number
  freeMemoryBytes: number
  liveness: 'alive' | 'suspect' | 'gone'
}

export const Reason = {
  Draining: 'draining',
  NotAlive: 'not alive',
  MemoryTotal: 'memory (larger than node)',
  CpuTotal: 'cpu (larger than node)',
  Memory: 'memory',
  Cpu: 'cpu'
} as const

export type Check = (node: NodeSnapshot, job: JobSpec) => string | undefined

/** Reserved label a node advertises when its config allows jobs on the bridge network. */
export const NETWORK_LABEL = 'bidmesh/network'

export const notDraining: Check = (n) => n.capacity.draining ? Reason.Draining : undefined

/** A suspect or gone node's advert may be stale: never spend a bid request on it. */
export const isAlive: Check = (n) => n.liveness === 'alive' ? undefined : Reason.NotAlive

/** Networking is off by default on every node; a job asking for it goes where it is allowed. */
export const allowsNetwork: Check = (n, job) =>
  job.network === 'bridge' && n.capacity.labels[NETWORK_LABEL] !== 'bridge' ? 'network bridge not allowed' : undefined

export const matchesLabels: Check = (n, job) => {
  // for-in over own keys (the order of Object.entries) without an array per node checked
  const constraints = job.constraints
  for (const k in constraints) {
    if (!Object.hasOwn(constraints, k)) continue
    const v = constraints[k]
    if (n.capacity.labels[k] !== v) return `label ${k}=${v}`
  }
  return undefined
}

/** Separate from fitsMemory so that `explain` can say "larger than any node" rather than "full". */
export const fitsTotalMemory: Check = (n, job) => n.capacity.totalMemoryBytes >= job.memoryBytes ? undefined : Reason.MemoryTotal
export const fitsTotalCpu: Check = (n, job) => n.capacity.totalCpuMilli >= job.cpuMilli ? undefined : Reason.CpuTotal
export const fitsMemory: Check = (n, job) => n.freeMemoryBytes >= job.memoryBytes ? undefined : Reason.Memory
export const fitsCpu: Check = (n, job) => n.freeCpuMilli >= job.cpuMilli ? undefined : Reason.Cpu
