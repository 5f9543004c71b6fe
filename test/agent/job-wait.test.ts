// getJob's waitMs: a long poll that ends when the agent hears the job finished (its own job at
// once, another owner's through that owner's summaries), when waitMs runs out, when the caller
// gives up, or when the agent stops. Real agents on the in-memory mesh under fake timers.
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { JobDetail } from '../../src/agent/agent-api.ts'
import { noopExecutor } from '../../src/runtime/noop-executor.ts'
import { type VirtualAgents, createVirtualAgents } from '../support/virtual-agents.ts'

const RUN_MS = 3000
const JOB = { image: 'bidmesh/busybox:latest', command: 'true', resources: { cpus: 0.1, memory: '16m' } }

describe('getJob with waitMs', () => {
  let v: VirtualAgents
  beforeEach(async () => {
    v = createVirtualAgents()
    await v.start(3, { executorFor: () => noopExecutor({ runMs: RUN_MS }) })
  })
  afterEach(async () => { await v.stop() })

  /** Starts a wait and tracks when (virtual time) it answered, and with what. */
  function waitOn (via: number, id: string, waitMs: number, signal?: AbortSignal): { answer?: JobDetail, error?: unknown, answeredAtMs?: number } {
    const w: { answer?: JobDetail, error?: unknown, answeredAtMs?: number } = {}
    v.nodes[via].agent.getJob(id, { waitMs, ...(signal !== undefined ? { signal } : {}) })
      .then(a => { w.answer = a }, err => { w.error = err })
      .finally(() => { w.answeredAtMs = Date.now() })
    return w
  }

  it.each([
    ['on the owner', 0],
    ['on another agent (through the owner\'s summaries)', 1]
  ])('answers when the job finishes, %s', async (_name, via) => {
    const { id } = await v.nodes[0].agent.submit(JOB)
    const w = waitOn(via, id, 60_000)
    let finishedAtMs: number | undefined
    await v.advanceUntil('the wait to answer', () => {
      if (finishedAtMs === undefined && v.nodes[0].store.getJob(id)?.state === 'succeeded') finishedAtMs = Date.now()
      return w.answeredAtMs !== undefined
    }, 30_000)
    expect(w.error).toBeUndefined()
    expect(w.answer!.job.state).toBe('succeeded')
    // answered once the job was over (not before), and long before the wait ran out
    expect(finishedAtMs).toBeDefined()
    expect(w.answeredAtMs! - finishedAtMs!).toBeLessThan(2000)
    expect(w.answer!.events.map(e => e.type)).toContain('job:succeeded')
  })

  it('answers a finished job at once, and an unfinished one as it is when waitMs runs out', async () => {
    const { id } = await v.nodes[0].agent.submit(JOB)
    const short = waitOn(0, id, 500)
    const startedAtMs = Date.now()
    await v.advanceUntil('the short wait to answer', () => short.answeredAtMs !== undefined, 5000)
    expect(short.answeredAtMs! - startedAtMs).toBeGreaterThanOrEqual(500)
    expect(short.answer!.job.state).not.toBe('succeeded')

    await v.advanceUntil('the job to finish', () => v.nodes[0].store.getJob(id)?.state === 'succeeded', 30_000)
    const done = waitOn(0, id, 60_000)
    await v.advanceUntil('the wait on a finished job to answer', () => done.answeredAtMs !== undefined, 100)
    expect(done.answer!.job.state).toBe('succeeded')
  })

  it('ends when the caller gives up, and when the agent stops; an unknown job is an error at once', async () => {
    const { id } = await v.nodes[0].agent.submit({ ...JOB, constraints: { zone: 'nowhere' } })
    const ac = new AbortController()
    const abandoned = waitOn(0, id, 60_000, ac.signal)
    const stopping = waitOn(1, id, 60_000)
    const unknown = waitOn(0, 'no-such-job', 60_000)
    await v.advanceUntil('the unknown job to be an error', () => unknown.answeredAtMs !== undefined, 5000)
    expect((unknown.error as Error).name).toBe('UnknownJobError')

    ac.abort()
    await v.advanceUntil('the abandoned wait to end', () => abandoned.answeredAtMs !== undefined, 1000)
    expect(abandoned.answer!.job.state).toBe('pending')

    let stopped = false
    void v.nodes[1].agent.stop().then(() => { stopped = true })
    await v.advanceUntil('the stopped agent\'s wait to end', () => stopped && stopping.answeredAtMs !== undefined, 10_000)
    // with the job as it was when the wait began: the agent has nothing newer to tell
    expect(stopping.error).toBeUndefined()
    expect(stopping.answer!.job.state).toBe('pending')
  })
})
