// An executor that runs nothing. FOR BENCHMARKS ONLY (measuring the scheduler and mesh
// without container start-up cost); never the default, never in production: it reports
// success for any job without running it.
import type { AttemptRef, AttemptResult, Executor, ManagedContainer, RunOptions } from './executor.ts'

export interface NoopExecutorInit {
  /** how long each "run" takes before it reports exit 0; default 0 */
  runMs?: number
}

/**
 * For benchmarks only: calls onStarted at once, then resolves `{ reason: 'exit', exitCode: 0 }`
 * after `runMs` (or `cancelled` when the signal aborts first). Produces no output.
 */
export function noopExecutor (init: NoopExecutorInit = {}): Executor {
  const runMs = init.runMs ?? 0
  return {
    async run (attempt: AttemptRef, options: RunOptions = {}): Promise<AttemptResult> {
      const { signal, onStarted } = options
      if (signal?.aborted === true) return { reason: 'cancelled', exitCode: null, finishedAtMs: Date.now() }
      const startedAtMs = Date.now()
      onStarted?.({ containerId: `noop-${attempt.jobId}-${attempt.epoch}`, startedAtMs })
      const cancelled = await new Promise<boolean>(resolve => {
        const onAbort = (): void => {
          clearTimeout(timer)
          resolve(true)
        }
        const timer = setTimeout(() => {
          signal?.removeEventListener('abort', onAbort)
          resolve(false)
        }, runMs)
        signal?.addEventListener('abort', onAbort, { once: true })
      })
      return cancelled
        ? { reason: 'cancelled', exitCode: null, startedAtMs, finishedAtMs: Date.now() }
        : { reason: 'exit', exitCode: 0, startedAtMs, finishedAtMs: Date.now() }
    },
    async reattach (): Promise<AttemptResult> {
      // Nothing survives a restart of a no-op run.
      return { reason: 'error', exitCode: null, finishedAtMs: Date.now(), error: { name: 'ContainerGoneError', code: 'ERR_CONTAINER_GONE', message: 'no-op attempts do not survive a restart', retryable: true } }
    },
    async listManaged (): Promise<ManagedContainer[]> { return [] },
    async remove (): Promise<void> {},
    async ping (): Promise<void> {}
  }
}
