// Real agents (the whole composition root, SQLite included) on the in-memory mesh under fake
// timers: a partition is cut and healed at exact virtual times, so the heal-time race the
// process-level chaos test can only hit by chance is replayed on every run.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import type { AttemptResult } from '../../src/runtime/executor.ts'
import { type RecordedRun as Run, type VirtualAgents, createVirtualAgents, recordingExecutor } from '../support/virtual-agents.ts'

describe('agents healing from a partition (in-memory mesh, virtual time)', () => {
  let v: VirtualAgents
  beforeEach(() => { v = createVirtualAgents() })
  afterEach(async () => { await v.stop() })

  it.each([
    ['once the owner heard that it runs', true],
    // The owner cannot tell a winner that started from one that never got the award: it must
    // not take its failed award request for a decline, nor time the award out once cut off.
    ['between the award and its acknowledgement', false]
  ])('an owner that regains a majority does not re-run an attempt the majority side took over (cut %s)', async (_when, waitForOwner) => {
    const runs: Run[] = []
    // Node 0 publishes and owns the job but has too little CPU to run it, so the attempt
    // runs elsewhere, on the side of the partition that keeps the majority.
    await v.start(5, { executorFor: id => recordingExecutor(id, runs, 40_000), cpuMilliFor: i => i === 0 ? 100 : 1000 })
    const owner = v.nodes[0]
    const job = await owner.agent.submit({ image: 'bidmesh/busybox:latest', command: 'true', resources: { cpus: 0.6, memory: '64m' } })
    await v.advanceUntil('the attempt to start', () => runs.length === 1, 10_000)
    for (let t = 0; waitForOwner && (await owner.agent.getJob(job.id)).job.state !== 'running'; t += 50) {
      if (t > 10_000) throw new Error('the owner never heard that the attempt runs')
      await vi.advanceTimersByTimeAsync(50)
    }
    const executor = runs[0].node
    // Cut the owner off with one agent that is neither the executor: 2 against 3.
    const minority = [owner.id, v.nodes.find(n => n.id !== owner.id && n.id !== executor)!.id]
    const majority = v.nodes.map(n => n.id).filter(id => !minority.includes(id))
    v.net.partition(minority, majority)
    await vi.advanceTimersByTimeAsync(12_000)
    // The majority side took the job over under a higher term, and the executor renewed its
    // lease there, so the owner's lease on the attempt lapsed while it was cut off.
    const onMajority = await v.nodes.find(n => n.id === executor)!.agent.getJob(job.id)
    expect(onMajority.job.term).toBeGreaterThan(job.term)
    expect(majority).toContain(onMajority.job.owner)

    v.net.heal()
    await vi.advanceTimersByTimeAsync(10_000)
    // The healed owner saw a majority again, asked the replicas, and let the job go.
    expect(runs).toHaveLength(1)
    await v.advanceUntil('the job to finish', () => runs[0].reason !== undefined, 40_000)
    await vi.advanceTimersByTimeAsync(3_000) // the result's summary reaches every agent
    for (const n of v.nodes) {
      const d = await n.agent.getJob(job.id)
      expect(d.job.state, `read on ${n.id}`).toBe('succeeded')
      expect(d.job.attempts.filter(a => a.state !== 'lost')).toHaveLength(1)
    }
    expect(runs).toHaveLength(1)
  }, 60_000)

  it('a container another agent removed is a lost attempt: re-run without using up a retry', async () => {
    const runs: Run[] = []
    // The first run ends as the Docker executor reports a container that engine fencing
    // removed; later runs exit 0.
    const gone = (): Partial<AttemptResult> => runs.length === 1
      ? { reason: 'error', exitCode: null, error: { name: 'ContainerGoneError', code: 'ERR_CONTAINER_GONE', message: 'removed by another agent', retryable: true } }
      : {}
    await v.start(3, { executorFor: id => recordingExecutor(id, runs, 1_000, gone) })
    const job = await v.nodes[0].agent.submit({ image: 'bidmesh/busybox:latest', command: 'true', resources: { cpus: 0.5, memory: '64m' }, retries: 0 })
    await v.advanceUntil('the job to finish', () => runs.length === 2 && runs[1].reason !== undefined, 20_000)
    await vi.advanceTimersByTimeAsync(1_000)
    const { job: done } = await v.nodes[0].agent.getJob(job.id)
    expect(done.state).toBe('succeeded')
    expect(done.attempts.map(a => a.state)).toEqual(['lost', 'exited'])
  }, 60_000)
})
