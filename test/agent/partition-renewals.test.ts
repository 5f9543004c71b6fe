// An executor cut off from its job's owner by a partition must stop before the side that can
// re-run the job does so. Real agents (the whole composition root, SQLite included) on the
// in-memory mesh under fake timers, so each cut lands at an exact virtual time.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { type RecordedRun as Run, type VirtualAgents, createVirtualAgents, recordingExecutor } from '../support/virtual-agents.ts'

/** The longest time two of these runs were under way at once (0: never). */
function longestOverlapMs (runs: Run[], nowMs: number): number {
  let longest = 0
  for (const a of runs) {
    for (const b of runs) {
      if (a === b) continue
      const overlap = Math.min(a.finishedAtMs ?? nowMs, b.finishedAtMs ?? nowMs) - Math.max(a.startedAtMs, b.startedAtMs)
      longest = Math.max(longest, overlap)
    }
  }
  return longest
}

describe('renewals across a partition (in-memory mesh, virtual time)', () => {
  let v: VirtualAgents
  beforeEach(() => { v = createVirtualAgents() })
  afterEach(async () => { await v.stop() })

  it.each([
    // A replica on the executor's side answered its renewals for as long as the cut lasted,
    // while the owner, on the majority side, re-ran the job once the lease lapsed.
    ['the owner keeps the majority; the executor is cut off with one of the job\'s replicas', 'owner-in-majority'],
    // The cut-off owner answered them, while the majority side took the job over and re-ran it.
    ['the owner is cut off with the executor; the majority takes the job over', 'owner-with-executor']
  ] as const)('%s: the executor stops before the job runs again, and it runs once to the end', async (_what, cut) => {
    const runs: Run[] = []
    // Node 0 owns the job but has too little CPU to run it: it runs elsewhere.
    await v.start(5, { executorFor: id => recordingExecutor(id, runs, 60_000), cpuMilliFor: i => i === 0 ? 100 : 1000 })
    const owner = v.nodes[0]
    const job = await owner.agent.submit({ image: 'bidmesh/busybox:latest', command: 'true', resources: { cpus: 0.6, memory: '64m' } })
    await v.advanceUntil('the owner to hear that the attempt runs', () => {
      void owner.agent.getJob(job.id).then(d => { state = d.job.state })
      return state === 'running'
    }, 10_000)
    const executor = runs[0].node
    const bystander = v.nodes.find(n => n.id !== owner.id && n.id !== executor)!.id
    // Every agent but the owner is one of the job's 4 replicas.
    const minority = cut === 'owner-in-majority' ? [executor, bystander] : [owner.id, executor]
    const majority = v.nodes.map(n => n.id).filter(id => !minority.includes(id))
    v.net.partition(minority, majority)
    await v.advanceUntil('the job to run again on the majority side', () => runs.length === 2, 30_000)
    expect(majority).toContain(runs[1].node)
    // The executor on the cut-off side stopped before the second run began.
    expect(runs[0].finishedAtMs).toBeDefined()
    expect(runs[0].reason).toBe('cancelled')
    expect(longestOverlapMs(runs, Date.now())).toBe(0)

    v.net.heal()
    await v.advanceUntil('the second run to finish', () => runs[1].reason !== undefined, 70_000)
    await v.advanceUntil('every agent to read the job as succeeded', () => {
      for (const n of v.nodes) void n.agent.getJob(job.id).then(d => { states.set(n.id, d.job.state) })
      return v.nodes.every(n => states.get(n.id) === 'succeeded')
    }, 10_000)
    expect(runs).toHaveLength(2)
    expect(longestOverlapMs(runs, Date.now())).toBe(0)
  }, 120_000)

  it('a cut of the link between owner and executor alone: the replicas tell the executor to stop once the owner offered the job again', async () => {
    // The replicas hear both sides and acknowledge the executor's renewals, while the owner,
    // hearing none, gives the lease up and runs the job again. Its new epoch reaches the
    // replicas, whose answer to the old attempt's next renewal is stop: a short overlap, not a
    // lease's worth. (Only a relay of the renewals through a replica would avoid the overlap.)
    const runs: Run[] = []
    await v.start(5, { executorFor: id => recordingExecutor(id, runs, 60_000), cpuMilliFor: i => i === 0 ? 100 : 1000 })
    const owner = v.nodes[0]
    await owner.agent.submit({ image: 'bidmesh/busybox:latest', command: 'true', resources: { cpus: 0.6, memory: '64m' } })
    await v.advanceUntil('the attempt to start', () => runs.length === 1, 10_000)
    await vi.advanceTimersByTimeAsync(2_000)
    v.net.partition([owner.id], [runs[0].node])
    await v.advanceUntil('the job to run again', () => runs.length === 2, 30_000)
    await v.advanceUntil('the first run to stop', () => runs[0].reason !== undefined, 10_000)
    expect(runs[0].reason).toBe('cancelled')
    // a renewal interval, the wait on the owner (1.5 intervals) and the replicas' round trip
    expect(longestOverlapMs(runs, Date.now())).toBeLessThan(2_000)
    expect(runs).toHaveLength(2)
  }, 120_000)

  it('replicas that are a majority of the job\'s group but not of the mesh do not take it over', async () => {
    // 7 agents: the job's group is its owner and 4 of the other 6. Three of its replicas are
    // cut off from the rest of the mesh: a majority of the group, a minority of the mesh. The
    // owner, on the majority side, is alive; they must not take the job over.
    const runs: Run[] = []
    await v.start(7, { executorFor: id => recordingExecutor(id, runs, 40_000), cpuMilliFor: i => i === 0 ? 100 : 1000 })
    const owner = v.nodes[0]
    const job = await owner.agent.submit({ image: 'bidmesh/busybox:latest', command: 'true', resources: { cpus: 0.6, memory: '64m' } })
    await v.advanceUntil('the attempt to start', () => runs.length === 1, 10_000)
    const executor = runs[0].node
    // The copies beyond the quorum's lag (replicationLaggardsMs): every replica holds one first.
    await v.advanceUntil('every replica to hold a copy', () => job.replicas.every(r => v.nodes.find(n => n.id === r)!.store.getJob(job.id) !== undefined), 5_000)
    const minority = job.replicas.filter(r => r !== executor).slice(0, 3)
    expect(minority).toHaveLength(3)
    const majority = v.nodes.map(n => n.id).filter(id => !minority.includes(id))
    v.net.partition(minority, majority)
    await vi.advanceTimersByTimeAsync(15_000)
    for (const id of minority) {
      const copy = v.nodes.find(n => n.id === id)!.store.getJob(job.id)
      expect(copy?.owner, `the copy on ${id}`).toBe(owner.id)
      expect(copy?.term, `the copy on ${id}`).toBe(0)
    }
    v.net.heal()
    await v.advanceUntil('the run to finish', () => runs[0].reason !== undefined, 40_000)
    await v.advanceUntil('the owner to read the job as succeeded', () => {
      void owner.agent.getJob(job.id).then(d => { state = d.job.state })
      return state === 'succeeded'
    }, 10_000)
    expect(runs).toHaveLength(1)
  }, 120_000)

  it('an even split stops neither side: two agents cut apart keep their jobs running, and each runs new ones', async () => {
    // Neither side can hold a majority, so neither can take a job over or re-run one: its
    // executors may go on, and its jobs be offered.
    const runs: Run[] = []
    await v.start(2, { executorFor: id => recordingExecutor(id, runs, 40_000) })
    const [a, b] = v.nodes
    const first = await a.agent.submit({ image: 'bidmesh/busybox:latest', command: 'true', resources: { cpus: 0.6, memory: '64m' } })
    await v.advanceUntil('the attempt to start', () => runs.length === 1, 10_000)
    v.net.partition([a.id], [b.id])
    await vi.advanceTimersByTimeAsync(15_000)
    expect(runs[0].reason).toBeUndefined() // still running
    const during = await a.agent.submit({ image: 'bidmesh/busybox:latest', command: 'true', resources: { cpus: 0.3, memory: '64m' } })
    await v.advanceUntil('the job submitted during the cut to start', () => runs.some(r => r.jobId === during.id), 10_000)
    v.net.heal()
    await v.advanceUntil('both jobs to finish', () => runs.every(r => r.reason !== undefined), 60_000)
    await vi.advanceTimersByTimeAsync(3_000)
    for (const id of [first.id, during.id]) expect((await a.agent.getJob(id)).job.state).toBe('succeeded')
    expect(runs.map(r => r.jobId).sort()).toEqual([first.id, during.id].sort())
  }, 120_000)

  let state: string | undefined
  const states = new Map<string, string>()
  beforeEach(() => { state = undefined; states.clear() })
})
