// The executor interface: what the agent needs from a container runtime.
import type { JobSpec } from '../protocol/job-spec.ts'

export interface AttemptRef {
  jobId: string
  epoch: number
  /** the awarding owner's term (0 if unknown); with epoch, it orders attempts of one job */
  term?: number
  spec: JobSpec
}

export interface AttemptResult {
  reason: 'exit' | 'oom' | 'timeout' | 'cancelled' | 'image' | 'error'
  /** null when the process never ran or its exit code is unknown */
  exitCode: number | null
  startedAtMs?: number
  finishedAtMs: number
  error?: { name: string, code?: string, message: string, retryable: boolean }
}

/** Abort reasons after which another attempt of the same job may already be starting
 *  elsewhere: the owner gave this attempt up (`lost`: its lease lapsed here) or awarded a
 *  newer epoch (`fenced`). Such a container is killed at once. A graceful stop (SIGTERM, then
 *  SIGKILL after the executor's stop grace) would let it run on for that grace beside its
 *  replacement, and the owner's lease grace does not cover it. */
export const SUPERSEDED_ABORT_REASONS: ReadonlySet<unknown> = new Set(['lost', 'fenced'])

export interface RunOptions {
  /** aborting stops the container and the result's reason is then `cancelled`: killed at
   *  once when the signal's reason is one of SUPERSEDED_ABORT_REASONS, else stopped with the
   *  stop grace (SIGTERM first, so the job can flush) */
  signal?: AbortSignal
  /** called once the container is running */
  onStarted?: (info: { containerId: string, startedAtMs: number }) => void
  /** called for every chunk of output, in order */
  onOutput?: (stream: 'stdout' | 'stderr', chunk: Uint8Array) => void
}

export interface ManagedContainer {
  containerId: string
  jobId: string
  epoch: number
  /** the term of the owner that awarded it (label bidmesh.term; 0 when absent) */
  term: number
  /** the agent that created it (label bidmesh.node) */
  node: string
  running: boolean
}

export interface Executor {
  /** Runs one attempt to completion. Never throws for job-level failures: those come back as a result. */
  run (attempt: AttemptRef, options?: RunOptions): Promise<AttemptResult>
  /** Picks up an attempt's container after an agent restart: waits for it if it still runs
   *  (output from now on), or reads the result if it already exited; removes it after.
   *  Resolves with reason 'error' and code ERR_CONTAINER_GONE when the container is gone. */
  reattach (attempt: AttemptRef & { containerId: string, startedAtMs: number }, options?: RunOptions): Promise<AttemptResult>
  /** Containers labelled as bidmesh's, for reattach and cleanup after a restart. */
  listManaged (options?: { signal?: AbortSignal }): Promise<ManagedContainer[]>
  /** Removes a managed container (force). */
  remove (containerId: string, options?: { signal?: AbortSignal }): Promise<void>
  /** Rejects with a named error when the runtime cannot be reached. */
  ping (options?: { signal?: AbortSignal }): Promise<void>
}
