// Retry policy: what counts as a failure, what may be retried, and the backoff between tries.
import { describe, expect, it } from 'vitest'
import { SCHEDULER_DEFAULTS } from '../../src/constants.ts'
import type { JobReason } from '../../src/protocol/job.ts'
import { backoffMs, isFailure, isRetryable } from '../../src/scheduler/retry.ts'

describe('isFailure', () => {
  it.each<{ reason: JobReason, exitCode: number | null, failure: boolean }>([
    { reason: 'exit', exitCode: 0, failure: false },
    { reason: 'exit', exitCode: 1, failure: true },
    { reason: 'exit', exitCode: 137, failure: true },
    { reason: 'exit', exitCode: null, failure: true },
    // OOM and timeout fail even when the process's status was 0
    { reason: 'oom', exitCode: 0, failure: true },
    { reason: 'timeout', exitCode: 0, failure: true },
    { reason: 'error', exitCode: null, failure: true },
    { reason: 'image', exitCode: null, failure: true },
    { reason: 'lost', exitCode: null, failure: true },
    { reason: 'cancelled', exitCode: null, failure: true }
  ])('$reason with exit code $exitCode → failure: $failure', ({ reason, exitCode, failure }) => {
    expect(isFailure({ reason, exitCode })).toBe(failure)
  })
})

describe('isRetryable', () => {
  it.each<{ reason: JobReason, retryable: boolean }>([
    { reason: 'exit', retryable: true },
    { reason: 'oom', retryable: true },
    { reason: 'timeout', retryable: true },
    { reason: 'error', retryable: true },
    { reason: 'lost', retryable: true },
    { reason: 'image', retryable: false },
    { reason: 'cancelled', retryable: false }
  ])('$reason → $retryable', ({ reason, retryable }) => {
    expect(isRetryable({ reason })).toBe(retryable)
  })
})

describe('backoffMs = min(max, base × 2^(failures-1))', () => {
  const c = { retryBackoffBaseMs: SCHEDULER_DEFAULTS.retryBackoffBaseMs, retryBackoffMaxMs: SCHEDULER_DEFAULTS.retryBackoffMaxMs }
  it('uses the documented defaults: 1 s base, 30 s cap', () => {
    expect(c).toEqual({ retryBackoffBaseMs: 1000, retryBackoffMaxMs: 30_000 })
  })
  it.each([
    { failures: 0, ms: 1000 },
    { failures: 1, ms: 1000 },
    { failures: 2, ms: 2000 },
    { failures: 3, ms: 4000 },
    { failures: 4, ms: 8000 },
    { failures: 5, ms: 16_000 },
    { failures: 6, ms: 30_000 },
    { failures: 20, ms: 30_000 },
    { failures: 2000, ms: 30_000 }
  ])('failure $failures → $ms ms', ({ failures, ms }) => {
    expect(backoffMs(failures, c)).toBe(ms)
  })
  it('never exceeds the cap, and never shrinks as failures grow', () => {
    let prev = 0
    for (let f = 0; f < 100; f++) {
      const ms = backoffMs(f, { retryBackoffBaseMs: 250, retryBackoffMaxMs: 10_000 })
      expect(ms).toBeLessThanOrEqual(10_000)
      expect(ms).toBeGreaterThanOrEqual(prev)
      prev = ms
    }
  })
})
