// Retry policy: which attempt outcomes count as failures, and the backoff between attempts.
import type { AttemptRecord } from '../protocol/job.ts'

export interface RetryConfig { retryBackoffBaseMs: number, retryBackoffMaxMs: number }

/** An attempt failed when it exited non-zero, was OOM-killed, timed out, or could not start.
 *  An OOM or timeout is a failure even when the process's exit status was 0. */
export function isFailure (a: Pick<AttemptRecord, 'reason' | 'exitCode'>): boolean {
  return !(a.reason === 'exit' && a.exitCode === 0)
}

/** Failures that a retry cannot fix: the image is missing. */
export function isRetryable (a: Pick<AttemptRecord, 'reason'>): boolean {
  return a.reason !== 'image' && a.reason !== 'cancelled'
}

/** min(max, base × 2^(failures-1)): 1 s, 2 s, 4 s … 30 s with the defaults. */
export function backoffMs (failures: number, c: RetryConfig): number {
  return Math.min(c.retryBackoffMaxMs, c.retryBackoffBaseMs * 2 ** Math.max(0, failures - 1))
}
