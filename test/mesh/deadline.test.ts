// A request's deadline: aborts at its time, or with its parent, and once cleared leaves no
// timer behind (AbortSignal.timeout's cannot be cleared: it fires after the work is done).
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { deadline } from '../../src/mesh/deadline.ts'

describe('deadline', () => {
  beforeEach(() => { vi.useFakeTimers() })
  afterEach(() => { vi.useRealTimers() })

  it('aborts with a TimeoutError at its time, not before', () => {
    const d = deadline(1000)
    vi.advanceTimersByTime(999)
    expect(d.signal.aborted).toBe(false)
    vi.advanceTimersByTime(1)
    expect(d.signal.aborted).toBe(true)
    expect((d.signal.reason as Error).name).toBe('TimeoutError')
  })

  it('cleared, it never fires and leaves no timer', () => {
    const d = deadline(1000)
    expect(vi.getTimerCount()).toBe(1)
    d.clear()
    expect(vi.getTimerCount()).toBe(0)
    vi.advanceTimersByTime(5000)
    expect(d.signal.aborted).toBe(false)
  })

  it('follows its parent: aborted with the parent\'s reason, its own timer gone', () => {
    const parent = new AbortController()
    const d = deadline(1000, parent.signal)
    const reason = new Error('caller gave up')
    parent.abort(reason)
    expect(d.signal.aborted).toBe(true)
    expect(d.signal.reason).toBe(reason)
    expect(vi.getTimerCount()).toBe(0)
  })

  it('a parent already aborted aborts it at once', () => {
    const parent = new AbortController()
    parent.abort(new Error('already'))
    const d = deadline(1000, parent.signal)
    expect(d.signal.aborted).toBe(true)
    expect((d.signal.reason as Error).message).toBe('already')
  })

  it('cleared, the parent\'s later abort no longer reaches it', () => {
    const parent = new AbortController()
    const d = deadline(1000, parent.signal)
    d.clear()
    parent.abort(new Error('late'))
    expect(d.signal.aborted).toBe(false)
  })
})
