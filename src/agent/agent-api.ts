// The surface the HTTP API and CLI use. The agent implements it; tests may fake it.
import type { Explanation, JobEvent, JobRecord, JobSummary, LogChunk, NodeCapacity } from '../protocol/job.ts'

export interface NodeView extends NodeCapacity {
  liveness: 'alive' | 'suspect' | 'gone'
  /** ms since the last advert was heard, by the answering agent's clock */
  lastSeenAgoMs: number
  self: boolean
}

export interface JobDetail {
  job: JobRecord
  events: JobEvent[]
}

/** A job just submitted. replicated: a quorum of its replicas holds it (with the owner, a
 *  majority of its group), its group is as large as the agents alive allow, and the owner sees
 *  a majority of the mesh: it outlives the agent that took it. False otherwise (too few
 *  answered in time, or the agent is cut off): it is on that agent's disk, and its copies are
 *  sent again until a quorum holds them. */
export type SubmittedJob = JobRecord & { replicated: boolean }

export interface AgentApi {
  readonly peerId: string
  /** Validates (throws InvalidJobSpecError), persists, and starts the auction. */
  submit (input: unknown, options?: { signal?: AbortSignal }): Promise<SubmittedJob>
  /** Dry run: what the auction would do now, without reserving anything. */
  plan (input: unknown): Promise<Explanation>
  /** Full id or unique prefix; from any agent (asks peers when not local). Throws UnknownJobError / AmbiguousJobIdError.
   *  With waitMs, a job not yet finished is waited for (up to waitMs, or until the signal) and
   *  returned as it then is: a client waits for a job without polling it. */
  getJob (idOrPrefix: string, options?: { signal?: AbortSignal, waitMs?: number }): Promise<JobDetail>
  listJobs (options?: { state?: string, limit?: number, signal?: AbortSignal }): Promise<JobSummary[]>
  /** Output chunks with seq > afterSeq. */
  readLogs (id: string, options?: { afterSeq?: number, signal?: AbortSignal }): Promise<LogChunk[]>
  cancel (idOrPrefix: string, options?: { signal?: AbortSignal }): Promise<JobRecord>
  nodes (): NodeView[]
  health (): { ok: boolean, peerId: string, peers: number, draining: boolean, uptimeMs: number }
  /** Prometheus text exposition of this agent's metrics. */
  metrics (): Promise<{ contentType: string, body: string }>
  /** Stop bidding, finish or hand back running jobs, then leave. Resolves when drained. */
  drain (options?: { deadlineMs?: number }): Promise<void>
}

export class UnknownJobError extends Error {
  static readonly code = 'ERR_UNKNOWN_JOB'
  readonly code = UnknownJobError.code
  constructor (readonly jobId: string, options?: ErrorOptions) {
    super(`no job ${jobId}`, options)
    this.name = 'UnknownJobError'
  }
}

export class AmbiguousJobIdError extends Error {
  static readonly code = 'ERR_AMBIGUOUS_JOB_ID'
  readonly code = AmbiguousJobIdError.code
  constructor (readonly prefix: string, readonly matches: string[], options?: ErrorOptions) {
    super(`job id prefix ${prefix} matches ${matches.length} jobs: ${matches.slice(0, 5).join(', ')}`, options)
    this.name = 'AmbiguousJobIdError'
  }
}
