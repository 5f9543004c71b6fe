// Embedded persistence for one agent: jobs it owns or replicates, their events, and the
// output of attempts it ran. Synchronous on purpose: better-sqlite3 commits in-process,
// so a record the agent has acknowledged is on disk before the acknowledgement leaves.
import type { JobEvent, JobRecord, LogChunk } from '../protocol/job.ts'

export interface RunningAttempt {
  jobId: string
  epoch: number
  /** owner to report to */
  owner: string
  /** where to report when the owner cannot be reached */
  replicas?: string[]
  containerId?: string
  spec: unknown
  startedAtMs?: number
}

/** What an executor's replay guard remembers of one admitted award (src/agent/signing.ts). */
export interface Admission {
  /** when the job was created: the entry is useless, and deleted, once that is outside the
   *  replay window */
  createdAtMs: number
  /** the highest epoch admitted (-1 for a plain once-only admission) */
  epoch: number
}

export interface Store {
  /** Insert or replace a job record (the whole record, atomically). */
  putJob (job: JobRecord): void
  getJob (id: string): JobRecord | undefined
  /** Newest first. `prefix` matches the start of the id. */
  listJobs (options?: { limit?: number, state?: string, prefix?: string }): JobRecord[]
  deleteJob (id: string): void
  /** Deletes up to `limit` finished jobs (succeeded, failed, cancelled) created and last
   *  changed before `beforeMs`, with their events and logs, in one transaction; returns how
   *  many. Live jobs are never touched. */
  deleteFinishedJobs (options: { beforeMs: number, limit: number }): number

  appendEvent (jobId: string, event: JobEvent): void
  /** In append order; `from` skips the first events (0-based), `limit` caps the count. */
  events (jobId: string, options?: { from?: number, limit?: number }): JobEvent[]
  /** How many events the job has: events(jobId).length, without reading them. */
  eventCount (jobId: string): number

  /** Appends output; returns the chunk's seq (increasing per job). */
  appendLog (jobId: string, chunk: Omit<LogChunk, 'seq'>): number
  /** Chunks with seq > afterSeq, oldest first, at most `limit`. */
  readLogs (jobId: string, options?: { afterSeq?: number, limit?: number }): LogChunk[]

  /** Attempts this agent executes, so a restarted agent can find its containers again. */
  putRunning (attempt: RunningAttempt): void
  deleteRunning (jobId: string, epoch: number): void
  listRunning (): RunningAttempt[]

  /** The executor's replay guard's book, kept here so that it survives a restart. */
  getAdmission (key: string): Admission | undefined
  /** Insert; for a key already there, set its epoch (its createdAtMs stays the first one's). */
  putAdmission (key: string, admission: Admission): void
  /** Deletes up to `limit` entries created before `beforeMs`, oldest first; returns how many. */
  deleteAdmissionsBefore (options: { beforeMs: number, limit: number }): number
  /** How many entries (a scan: for start-up), and the oldest one's createdAtMs (undefined when none). */
  admissionStats (): { count: number, oldestCreatedAtMs: number | undefined }
  /** The oldest entry's createdAtMs (an index seek). */
  oldestAdmission (): number | undefined

  /** Small key/value settings (e.g. the advert sequence number). */
  getMeta (key: string): string | undefined
  setMeta (key: string, value: string): void

  /** Runs fn in one transaction. */
  transaction<T> (fn: () => T): T
  /** Resolves once every commit made before the call is on stable storage. Commits return
   *  before they are (they survive a crash of the process at once, a power loss only after
   *  this), so a caller that promises a write to someone else calls this first. Callers in
   *  the same tick share one flush. */
  sync (): Promise<void>
  close (): void
}
