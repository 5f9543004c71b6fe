// A deadline as an AbortSignal that costs nothing more once the work it bounds is done.
// AbortSignal.timeout(ms) cannot be cancelled: its timer fires after the work has ended all
// the same, and then makes a TimeoutError (a DOMException, stack trace included) and
// dispatches an abort nobody listens to any more. One per request on each end, at a few
// hundred requests a second, that was ~5 % of a busy agent's CPU (docs/benchmarks.md).

export interface Deadline {
  /** aborts with a TimeoutError after the time given, or with the parent's reason */
  readonly signal: AbortSignal
  /** The work is done: the timer goes, and the parent forgets this deadline. */
  clear: () => void
}

export function deadline (ms: number, parent?: AbortSignal): Deadline {
  const controller = new AbortController()
  let onParentAbort: (() => void) | undefined
  const timer = setTimeout(() => { controller.abort(new DOMException(`timed out after ${ms} ms`, 'TimeoutError')) }, ms)
  // Like AbortSignal.timeout's, the timer alone keeps no process alive.
  ;(timer as { unref?: () => void }).unref?.()
  const clear = (): void => {
    clearTimeout(timer)
    if (onParentAbort !== undefined) parent?.removeEventListener('abort', onParentAbort)
    onParentAbort = undefined
  }
  if (parent?.aborted === true) {
    clear()
    controller.abort(parent.reason)
  } else if (parent !== undefined) {
    onParentAbort = () => { clear(); controller.abort(parent.reason) }
    parent.addEventListener('abort', onParentAbort, { once: true })
  }
  return { signal: controller.signal, clear }
}

/** p, or a rejection with the signal's reason once it aborts first; onAbort runs then (to
 *  withdraw what p was waiting on). */
export async function untilAborted<T> (p: Promise<T>, signal: AbortSignal, onAbort?: () => void): Promise<T> {
  signal.throwIfAborted()
  let listener: (() => void) | undefined
  try {
    return await Promise.race([p, new Promise<never>((_resolve, reject) => {
      listener = () => { onAbort?.(); reject(signal.reason) }
      signal.addEventListener('abort', listener, { once: true })
    })])
  } finally {
    if (listener !== undefined) signal.removeEventListener('abort', listener)
  }
}
