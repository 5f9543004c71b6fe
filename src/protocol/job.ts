// Job state, attempts, events and placement explanations: the records that the owner
// keeps, replicates and serves. Plain data, safe to encode with msgpackr.
import type { JobSpec } from './job-spec.ts'

export const JobStates = ['pending', 'scheduled', 'running', 'succeeded', 'failed', 'cancelled'] as const
export type JobState = typeof JobStates[number]
export const TERMINAL_STATES: ReadonlySet<JobState> = new Set(['succeeded', 'failed', 'cancelled'])

/** Why a job or an attempt ended, or why a job waits. */
export type JobReason =
  | 'exit' // the process exited; see exitCode
  | 'oom' // killed by the kernel's OOM killer (Docker's OOMKilled flag)
  | 'timeout' // ran past spec.timeoutMs and was killed
  | 'cancelled' // a user cancelled it
  | 'unplaceable' // no known node can fit it now; it stays pending
  | 'lost' // the executor stopped renewing its lease
  | 'image' // the image is missing and cannot be pulled
  | 'error' // the runtime failed to start it

export type AttemptState = 'awarded' | 'running' | 'exited' | 'lost' | 'declined' | 'cancelled'

export interface AttemptRecord {
  /** Fencing token: strictly increasing per job. A message carrying an older epoch is stale. */
  epoch: number
  node: string
  state: AttemptState
  awardedAtMs: number
  startedAtMs?: number
  finishedAtMs?: number
  exitCode?: number | null
  reason?: JobReason
  error?: string
}

export interface NodeScore {
  node: string
  score: number
  /** named scorer components, e.g. { binpack: 0.82, labels: 0 } */
  components: Record<string, number>
}

/** Why a placement came out as it did. Every decision carries one. */
export interface Explanation {
  /** nodes the owner's view held when it decided */
  consideredNodes: number
  /** reason label → nodes filtered for it, e.g. { memory: 3, 'label zone=a': 2 } */
  filtered: Record<string, number>
  /** best-scored feasible nodes, best first */
  top: NodeScore[]
  /** nodes asked to bid (none when the award came from the view) */
  candidates: string[]
  /** 'view': awarded to the view's best node with no bid round (the node could still decline);
   *  absent: decided on the bids */
  decidedFrom?: 'view'
  /** bids refused by the bidder itself, by reason */
  refused?: Record<string, number>
  winner?: string
  decidedAtMs: number
}

export interface JobEvent {
  atMs: number
  type: string
  epoch?: number
  node?: string
  detail?: string
}

export interface JobRecord {
  id: string
  spec: JobSpec
  /** peer id of the agent that runs the job's auction and bookkeeping */
  owner: string
  /** peer id of the agent whose API accepted the job */
  publisher: string
  state: JobState
  reason?: JobReason
  exitCode?: number | null
  /** executor of the current or last attempt */
  node?: string
  epoch: number
  /** ownership generation: increases when a replica takes the job over; the higher term wins */
  term: number
  /** increases with every change, so replicas keep only the newest copy */
  version: number
  /** agents holding a copy of this record, able to take the job over if the owner dies */
  replicas: string[]
  attempts: AttemptRecord[]
  createdAtMs: number
  updatedAtMs: number
  /** random, unique per job: part of what the publisher signs, so a job cannot be replayed */
  nonce?: string
  /** the publisher's Ed25519 signature (base64url) over id, spec, publisher, createdAtMs, nonce */
  signature?: string
  /** earliest time the next offer may be made (retry backoff) */
  notBeforeMs?: number
  explanation?: Explanation
}

/** A short summary, small enough to gossip and list. */
export interface JobSummary {
  id: string
  name?: string
  image: string
  owner: string
  state: JobState
  reason?: JobReason
  node?: string
  epoch: number
  term: number
  createdAtMs: number
  updatedAtMs: number
}

export function summarize (job: JobRecord): JobSummary {
  return {
    id: job.id,
    ...(job.spec.name !== undefined ? { name: job.spec.name } : {}),
    image: job.spec.image,
    owner: job.owner,
    state: job.state,
    ...(job.reason !== undefined ? { reason: job.reason } : {}),
    ...(job.node !== undefined ? { node: job.node } : {}),
    epoch: job.epoch,
    term: job.term,
    createdAtMs: job.createdAtMs,
    updatedAtMs: job.updatedAtMs
  }
}

/** Capacity one node advertises. */
export interface NodeCapacity {
  peerId: string
  totalCpuMilli: number
  freeCpuMilli: number
  totalMemoryBytes: number
  freeMemoryBytes: number
  runningJobs: number
  labels: Record<string, string>
  draining: boolean
  /** per-sender sequence number; a lower one is stale */
  seq: number
  /** sender's clock when it made the advert; informational only */
  sentAtMs: number
  /** where the sender listens, so any member can open a direct stream to it */
  addrs?: string[]
}

export interface LogChunk {
  seq: number
  epoch: number
  stream: 'stdout' | 'stderr'
  atMs: number
  data: string
}
