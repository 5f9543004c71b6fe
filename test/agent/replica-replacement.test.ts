// A job's group must not only shrink: when replicas of a running job are gone for good, its
// owner lists other agents in their places, so that the job can still be taken over when the
// owner goes too. Real agents (the whole composition root, SQLite included) on the in-memory
// mesh under fake timers.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import type { Agent } from '../../src/agent/agent.ts'
import { type RecordedRun as Run, type VirtualAgents, createVirtualAgents, recordingExecutor } from '../support/virtual-agents.ts'

describe('a job\'s group of replicas kept whole (in-memory mesh, virtual time)', () => {
  let v: VirtualAgents
  beforeEach(() => { v = createVirtualAgents() })
  afterEach(async () => { await v.stop() })

  it('an owner replaces its running job\'s gone replicas, and the job outlives the owner too', async () => {
    const runs: Run[] = []
    // 6 agents: the owner (too small to run the job), its job's 4 replicas, and one spare.
    await v.start(6, { executorFor: id => recordingExecutor(id, runs, 150_000), cpuMilliFor: i => i === 0 ? 100 : 1000 })
    const owner = v.nodes[0]
    const job = await owner.agent.submit({ image: 'bidmesh/busybox:latest', command: 'true', resources: { cpus: 0.6, memory: '64m' } })
    expect(job.replicas).toHaveLength(4)
    await v.advanceUntil('the attempt to start', () => runs.length === 1, 10_000)
    const executor = runs[0].node
    const spare = v.nodes.map(n => n.id).find(id => id !== owner.id && !job.replicas.includes(id))!
    // Two replicas (not the executor) leave for good.
    const dead = job.replicas.filter(r => r !== executor).slice(0, 2)
    const living = v.nodes.map(n => n.id).filter(id => !dead.includes(id))
    v.net.partition(dead, living)
    await v.advanceUntil('the owner to list the spare among the job\'s replicas', () => owner.store.getJob(job.id)?.replicas.includes(spare) === true, 15_000)
    const record = owner.store.getJob(job.id)!
    // One spare for two places: one gone replica stays listed (it may come back).
    expect(record.replicas.filter(r => dead.includes(r))).toHaveLength(1)
    expect(owner.store.events(job.id).map(e => e.type)).toContain('job:replicas')
    // The spare holds the copy, and stands by for the job.
    await vi.advanceTimersByTimeAsync(1_000)
    expect(v.nodes.find(n => n.id === spare)!.store.getJob(job.id)?.replicas).toEqual(record.replicas)

    // A minute later the dead are forgotten (they no longer count towards a majority); then the
    // owner goes too. Its group: the two living old replicas and the spare, 3 of 5: a majority.
    await vi.advanceTimersByTimeAsync(70_000)
    v.net.partition([...dead, owner.id], living.filter(id => id !== owner.id))
    await v.advanceUntil('a living replica to take the job over', () => {
      const copies = living.filter(id => id !== owner.id).map(id => v.nodes.find(n => n.id === id)!.store.getJob(job.id))
      return copies.some(c => c !== undefined && c.term > job.term && c.owner !== owner.id)
    }, 30_000)
    await v.advanceUntil('the run to finish', () => runs[0].reason !== undefined, 120_000)
    await vi.advanceTimersByTimeAsync(3_000)
    const executorNode = v.nodes.find(n => n.id === executor)!
    const { job: done } = await executorNode.agent.getJob(job.id)
    expect(done.state).toBe('succeeded')
    expect(runs).toHaveLength(1)
  }, 120_000)

  it('the executor hears the new group, and renews with it when the owner goes after every replica the award named', async () => {
    const runs: Run[] = []
    // 9 agents; only the last can run jobs, so it runs them all. A job's group is its owner
    // (agent 0) and 4 of the other 8, by its id: submit until one's group leaves the
    // executor out (each does with probability 1/2; 16 tries).
    await v.start(9, { executorFor: id => recordingExecutor(id, runs, 200_000), cpuMilliFor: i => i === 8 ? 1000 : 10 })
    const owner = v.nodes[0]
    const executor = v.nodes[8].id
    let job: Awaited<ReturnType<Agent['submit']>> | undefined
    for (let i = 0; i < 16 && job === undefined; i++) {
      const j = await owner.agent.submit({ image: 'bidmesh/busybox:latest', command: 'true', resources: { cpus: 0.05, memory: '16m' } })
      if (!j.replicas.includes(executor)) job = j
    }
    if (job === undefined) throw new Error('16 jobs in a row had the executor in their group (p = 2^-16)')
    const chosen = job
    const runsOf = (): Run[] => runs.filter(r => r.jobId === chosen.id)
    await v.advanceUntil('the attempt to start', () => runsOf().length === 1, 10_000)
    expect(runsOf()[0].node).toBe(executor)
    // Every replica the award named leaves for good (5 of 9 stay: a majority).
    const living = v.nodes.map(n => n.id).filter(id => !chosen.replicas.includes(id))
    v.net.partition(chosen.replicas, living)
    await v.advanceUntil('the owner to replace all four', () => owner.store.getJob(chosen.id)?.replicas.every(r => living.includes(r)) === true, 15_000)
    // The executor's next renewals are answered with the new group. A minute later the dead
    // are forgotten; then the owner goes too.
    await vi.advanceTimersByTimeAsync(70_000)
    v.net.partition([...chosen.replicas, owner.id], living.filter(id => id !== owner.id))
    await vi.advanceTimersByTimeAsync(20_000)
    // The executor renewed with the new group: the run goes on, the only one; one of the new
    // group took the job over.
    expect(runsOf()).toHaveLength(1)
    expect(runsOf()[0].reason).toBeUndefined()
    const copies = living.filter(id => id !== owner.id).map(id => v.nodes.find(n => n.id === id)!.store.getJob(chosen.id))
    expect(copies.some(c => c !== undefined && c.term > chosen.term)).toBe(true)
  }, 120_000)

  it('a job submitted while the mesh was small gets a full group once more agents are alive', async () => {
    const runs: Run[] = []
    await v.start(2, { executorFor: id => recordingExecutor(id, runs, 300_000) })
    const owner = v.nodes[0]
    const job = await owner.agent.submit({ image: 'bidmesh/busybox:latest', command: 'true', resources: { cpus: 0.6, memory: '64m' } })
    expect(job.replicas).toEqual([v.nodes[1].id])
    expect(job.replicated).toBe(true)
    await v.start(3, { executorFor: id => recordingExecutor(id, runs, 300_000) })
    // The owner's sweep (a tenth of the finished-job retention: 1 min) tops the group up.
    await v.advanceUntil('the job to have 4 replicas', () => owner.store.getJob(job.id)?.replicas.length === 4, 70_000)
    await vi.advanceTimersByTimeAsync(1_000)
    const record = owner.store.getJob(job.id)!
    expect(record.replicas[0]).toBe(v.nodes[1].id)
    expect(new Set(record.replicas)).toEqual(new Set(v.nodes.slice(1).map(n => n.id)))
    for (const n of v.nodes.slice(1)) expect(n.store.getJob(job.id)?.replicas, `the copy on ${n.id}`).toEqual(record.replicas)
    expect(runs).toHaveLength(1)
  }, 120_000)
})
