// Takeover of a dead owner's jobs by replicas that do not all hold a copy: real agents (the
// composition root, SQLite) on the in-memory mesh under fake timers. The churn chaos test
// hit this by chance: an owner sent jobs to a replica it still counted alive but that had
// just been killed; once the owner died too, the jobs waited forever on a replica with no
// copy (the best-ranked one, or the one whose "no copy" answer was not counted). And two
// replicas that both take a job over under one term settle on one owner.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { rankReplicas } from '../../src/scheduler/takeover.ts'
import { type RecordedRun, type VirtualAgents, createVirtualAgents, recordingExecutor } from '../support/virtual-agents.ts'

describe('takeover of a dead owner\'s jobs (in-memory mesh, virtual time)', () => {
  let v: VirtualAgents
  beforeEach(() => { v = createVirtualAgents() })
  afterEach(async () => { await v.stop() })

  it.each([
    // Some replicas hold no copy.
    // With one replica missing its copy, the job is left for the best-ranked replica that
    // holds one (the test makes sure some jobs have the one without ranked best).
    ['one replica', 1],
    // With two, the holders' own copies are no majority of the group of 5: the "no copy"
    // answers of the other two make it.
    ['two replicas', 2]
  ])('an owner that dies after sending jobs past %s it counted alive: every job is taken over and runs once', async (_what, missing) => {
    const runs: RecordedRun[] = []
    // Node 0 owns the jobs but has too little CPU to run any, so they run on the others.
    await v.start(5, { executorFor: id => recordingExecutor(id, runs, 5_000), cpuMilliFor: i => i === 0 ? 50 : 1000 })
    const [owner, ...others] = v.nodes
    const withoutCopy = others.slice(0, missing)
    const holders = others.slice(missing)
    // Cut off right before the jobs are sent: the owner still sees them alive (for
    // suspectAfterMs), so it names them replicas; a quorum of the others answers its submits.
    v.net.partition([owner.id], withoutCopy.map(n => n.id))
    const ids: string[] = []
    const bestRankedHasNoCopy = (id: string): boolean => withoutCopy.some(n => n.id === rankReplicas(id, others.map(o => o.id), () => true)[0])
    // 8 jobs, and more until 2 have a copyless replica ranked best (1 in 4 each with one).
    while (ids.length < 8 || (ids.filter(bestRankedHasNoCopy).length < 2 && ids.length < 40)) {
      const job = await owner.agent.submit({ image: 'bidmesh/busybox:latest', command: 'true', resources: { cpus: 0.1, memory: '16m' } })
      expect(job.replicas).toHaveLength(4)
      ids.push(job.id)
    }
    expect(ids.filter(bestRankedHasNoCopy).length).toBeGreaterThanOrEqual(2)
    for (const n of withoutCopy) for (const id of ids) expect(n.store.getJob(id)).toBeUndefined()
    // The jobs get under way on the agents the owner reaches, then the owner dies (cut off
    // from all) while the copyless replicas come back.
    await v.advanceUntil('every job to start', () => new Set(runs.map(r => r.jobId)).size === ids.length, 10_000)
    v.net.heal()
    v.net.partition([owner.id], others.map(n => n.id))

    const judge = holders[0]
    const states = async (): Promise<string[]> => await Promise.all(ids.map(async id => (await judge.agent.getJob(id)).job.state))
    let last: string[] = []
    await v.advanceUntil('every job to succeed on the majority side', () => {
      void states().then(s => { last = s })
      return last.length === ids.length && last.every(s => s === 'succeeded')
    }, 60_000)
    for (const id of ids) {
      const { job } = await judge.agent.getJob(id)
      expect(job.term, id).toBe(1)
      // Only a replica holding a copy may have adopted it.
      expect(holders.map(n => n.id), id).toContain(job.owner)
      if (runs.filter(r => r.jobId === id).length !== 1) console.log(JSON.stringify({ runs: runs.filter(r => r.jobId === id), attempts: job.attempts, events: (await judge.agent.getJob(id)).events, nodes: v.nodes.map(n => n.id) }, null, 1))
      expect(runs.filter(r => r.jobId === id), id).toHaveLength(1)
    }
  }, 60_000)

  it('two replicas cut off from each other both take a job over under one term: every agent settles on the better-ranked one, and the job runs once', async () => {
    const runs: RecordedRun[] = []
    await v.start(5, { executorFor: id => recordingExecutor(id, runs, 20_000), cpuMilliFor: i => i === 0 ? 50 : 1000 })
    const [owner, ...others] = v.nodes
    const job = await owner.agent.submit({ image: 'bidmesh/busybox:latest', command: 'true', resources: { cpus: 0.1, memory: '16m' } })
    await v.advanceUntil('the job to start', () => runs.length === 1, 10_000)
    const [best, second] = job.replicas // best first
    // The owner dies (cut off from all); the two best-ranked replicas lose sight of each
    // other, so each sees itself as the best alive replica with a majority (itself and the
    // other two): both adopt under term 1.
    v.net.partition([owner.id], others.map(n => n.id))
    v.net.partition([best], [second])
    const owners = async (): Promise<string[]> => await Promise.all(others.map(async n => {
      const local = n.store.getJob(job.id)
      return local === undefined ? '' : `${local.owner}@${local.term}`
    }))
    await v.advanceUntil('the other replicas to hold the better-ranked owner\'s copy', () => {
      void owners().then(o => { last = o })
      return last.filter(o => o === `${best}@1`).length >= 3
    }, 30_000)
    v.net.heal()
    v.net.partition([owner.id], others.map(n => n.id))
    await v.advanceUntil('the job to succeed', () => runs[0].reason !== undefined, 40_000)
    await vi.advanceTimersByTimeAsync(5_000)
    // Both did take it over (the case is real, not avoided)...
    for (const id of [best, second]) expect(v.nodes.find(n => n.id === id)!.store.events(job.id).map(e => e.type), id).toContain('job:adopted')
    // ...and every agent reads one owner, the better-ranked, and one result.
    for (const n of others) {
      const { job: read } = await n.agent.getJob(job.id)
      expect({ owner: read.owner, term: read.term, state: read.state }, n.id).toEqual({ owner: best, term: 1, state: 'succeeded' })
      expect(read.attempts.filter(x => x.state === 'exited'), n.id).toHaveLength(1)
    }
    expect(runs).toHaveLength(1)
  }, 60_000)
  let last: string[] = []
})

