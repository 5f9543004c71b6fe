// The scheduler's safety and liveness rules, checked over random meshes, jobs, message
// delays, drops and node kills in the deterministic harness. A failing case prints its
// seed and its shrunk inputs; replaying them reproduces the run exactly.
import { fc, test } from '@fast-check/vitest'
import { describe, expect, it } from 'vitest'
import type { JobRecord } from '../../src/protocol/job.ts'
import { TERMINAL_STATES } from '../../src/protocol/job.ts'
import { MessageType } from '../../src/protocol/messages.ts'
import { usedResources } from '../../src/scheduler/bidder.ts'
import { type ExecOutcome, GiB, Harness, MiB, type NodeInit, spec } from './harness.ts'

// ---- arbitraries ------------------------------------------------------------------------

interface NodeArb { cpuMilli: number, memoryBytes: number, zone: string | undefined }
interface OutcomeArb { durationMs: number, result: 'ok' | 'fail' | 'oom' | 'timeout' }
interface JobArb {
  owner: number
  cpuMilli: number
  memoryBytes: number
  zone: string | undefined
  retries: number
  placement: 'binpack' | 'spread'
  submitAtMs: number
  outcomes: OutcomeArb[]
}
interface NetArb { maxDelayMs: number, dropRate: number }
interface KillArb { node: number, atMs: number }

const arbNode: fc.Arbitrary<NodeArb> = fc.record({
  cpuMilli: fc.constantFrom(1000, 2000, 4000),
  memoryBytes: fc.constantFrom(1 * GiB, 2 * GiB, 4 * GiB),
  zone: fc.constantFrom('a', 'b', undefined)
})
const arbMesh = fc.array(arbNode, { minLength: 1, maxLength: 6 })

const arbOutcome: fc.Arbitrary<OutcomeArb> = fc.record({
  durationMs: fc.integer({ min: 50, max: 3000 }),
  result: fc.constantFrom('ok', 'ok', 'fail', 'oom', 'timeout')
})
const arbJob: fc.Arbitrary<JobArb> = fc.record({
  owner: fc.nat({ max: 31 }),
  cpuMilli: fc.constantFrom(250, 500, 1000, 2000, 8000),
  memoryBytes: fc.constantFrom(128 * MiB, 512 * MiB, 1 * GiB, 3 * GiB, 16 * GiB),
  zone: fc.constantFrom('a', 'b', 'c', undefined, undefined),
  retries: fc.integer({ min: 0, max: 2 }),
  placement: fc.constantFrom('binpack', 'spread'),
  submitAtMs: fc.integer({ min: 0, max: 5000 }),
  outcomes: fc.array(arbOutcome, { minLength: 1, maxLength: 3 })
})
const arbJobs = fc.array(arbJob, { minLength: 1, maxLength: 8 })

/** Delays stay under a quarter of the bid window, so a round can hear every candidate. */
const arbNet: fc.Arbitrary<NetArb> = fc.record({
  maxDelayMs: fc.integer({ min: 0, max: 120 }),
  dropRate: fc.constantFrom(0, 0.02, 0.1, 0.25)
})
const arbKills = fc.array(fc.record({ node: fc.nat({ max: 31 }), atMs: fc.integer({ min: 0, max: 20_000 }) }), { maxLength: 2 })

// ---- the scenario -----------------------------------------------------------------------

interface Scenario {
  seed: number
  mesh: NodeArb[]
  jobs: JobArb[]
  net: NetArb
  kills: KillArb[]
  /** owners award from their views when they can (directAwardMaxViewAgeMs 1500), or always
   *  hold bid rounds (0): both must keep every rule */
  direct: boolean
  /** virtual time to run after the last submission or kill */
  horizonMs: number
  afterEvent?: (h: Harness) => void
  /** stop early once this holds; by default, once every job has ended */
  done?: (h: Harness, ids: string[]) => boolean
}

const nodeId = (i: number): string => `node-${i}`

function labelsOf (zone: string | undefined): Record<string, string> {
  return zone !== undefined ? { zone } : {}
}

function outcomeOf (o: OutcomeArb): Partial<ExecOutcome> {
  switch (o.result) {
    case 'ok': return { durationMs: o.durationMs, exitCode: 0, reason: 'exit' }
    case 'fail': return { durationMs: o.durationMs, exitCode: 1, reason: 'exit' }
    // An OOM kill or a timeout may leave exit status 0 behind: it still must not succeed.
    case 'oom': return { durationMs: o.durationMs, exitCode: 0, reason: 'oom' }
    case 'timeout': return { durationMs: o.durationMs, exitCode: 0, reason: 'timeout' }
  }
}

function run (sc: Scenario): { h: Harness, ids: string[] } {
  const nodes: NodeInit[] = sc.mesh.map((n, i) => ({ id: nodeId(i), cpuMilli: n.cpuMilli, memoryBytes: n.memoryBytes, labels: labelsOf(n.zone) }))
  const byId = new Map<string, JobArb>()
  const h = new Harness({
    seed: sc.seed,
    nodes,
    network: { delayMs: { min: 0, max: sc.net.maxDelayMs }, dropRate: sc.net.dropRate },
    owner: { directAwardMaxViewAgeMs: sc.direct ? 1500 : 0 },
    exec: ({ jobId, start }) => {
      const j = byId.get(jobId)!
      return outcomeOf(j.outcomes[(start - 1) % j.outcomes.length])
    },
    afterEvent: sc.afterEvent
  })
  type Action = { atMs: number, order: number, go: () => void }
  const actions: Action[] = []
  const ids: string[] = []
  sc.jobs.forEach((j, i) => {
    const id = `job-${i}`
    byId.set(id, j)
    actions.push({
      atMs: j.submitAtMs,
      order: i,
      go: () => {
        // Submit at the chosen owner, or the next live one.
        for (let k = 0; k < nodes.length; k++) {
          const owner = nodes[(j.owner + k) % nodes.length].id
          if (!h.node(owner).alive) continue
          h.submit(owner, spec({ cpuMilli: j.cpuMilli, memoryBytes: j.memoryBytes, retries: j.retries, placement: j.placement, constraints: labelsOf(j.zone) }), id)
          ids.push(id)
          return
        }
      }
    })
  })
  sc.kills.forEach((k, i) => actions.push({ atMs: k.atMs, order: 1000 + i, go: () => h.kill(nodeId(k.node % nodes.length)) }))
  actions.sort((a, b) => a.atMs - b.atMs || a.order - b.order)
  for (const a of actions) {
    h.advance(a.atMs - h.nowMs)
    a.go()
  }
  const done = sc.done ?? ((x: Harness) => ids.every(id => TERMINAL_STATES.has(x.job(id)!.state)))
  h.runUntil(x => done(x, ids), sc.horizonMs)
  return { h, ids }
}

/** A node that could ever hold the job: labels match and the job is no larger than the node. */
function fitsSomeNode (mesh: NodeArb[], j: JobArb): boolean {
  return mesh.some(n => n.cpuMilli >= j.cpuMilli && n.memoryBytes >= j.memoryBytes && (j.zone === undefined || n.zone === j.zone))
}

function capacityInvariant (h: Harness): void {
  for (const n of h.nodes.values()) {
    const used = usedResources(n.bidder)
    if (used.cpuMilli > n.bidder.totalCpuMilli || used.memoryBytes > n.bidder.totalMemoryBytes) {
      throw new Error(`over capacity on ${n.id} at ${h.nowMs} ms: ${used.cpuMilli}/${n.bidder.totalCpuMilli} mcpu, ${used.memoryBytes}/${n.bidder.totalMemoryBytes} B`)
    }
  }
}

/** Modest by default so the file stays fast; raise BIDMESH_PROP_RUNS to search harder. */
const RUNS = Number(process.env.BIDMESH_PROP_RUNS ?? 40)
const PROPS = { numRuns: RUNS }

// ---- the properties ---------------------------------------------------------------------

describe('scheduler safety', () => {
  test.prop([fc.integer(), arbMesh, arbJobs, arbNet, arbKills, fc.boolean()], PROPS)('(a) a bidder never holds more than its capacity, at any step', (seed, mesh, jobs, net, kills, direct) => {
    let checks = 0
    const { ids } = run({ seed, mesh, jobs, net, kills, direct, horizonMs: 20_000, afterEvent: h => { checks++; capacityInvariant(h) } })
    // Not vacuous: a job was submitted, so there were steps to check. (None is when every
    // node was killed before the first submit: seed -364630387 drew one node, killed at 0 ms.)
    expect(checks > 0 || ids.length === 0).toBe(true)
  })

  test.prop([fc.integer(), arbMesh, arbJobs, arbNet, arbKills, fc.boolean()], PROPS)('(b) an owner accepts at most one final result per attempt, and at most one success per job', (seed, mesh, jobs, net, kills, direct) => {
    const { h } = run({ seed, mesh, jobs, net, kills, direct, horizonMs: 20_000 })
    const byJob = new Map<string, typeof h.history.finals>()
    for (const f of h.history.finals) byJob.set(f.jobId, [...(byJob.get(f.jobId) ?? []), f])
    for (const [jobId, finals] of byJob) {
      const events = h.jobEvents.get(jobId) ?? []
      for (const epoch of new Set(finals.map(f => f.epoch))) {
        // A final resent because its ack was lost may be acknowledged again, but it is one
        // result, and the owner records it once.
        const same = finals.filter(f => f.epoch === epoch).map(f => ({ node: f.node, exitCode: f.exitCode, reason: f.reason }))
        expect(new Set(same.map(x => JSON.stringify(x))).size, `${jobId}#${epoch}: ${JSON.stringify(same)}`).toBe(1)
        const recorded = events.filter(e => e.type === 'attempt:exited' && e.epoch === epoch)
        expect(recorded.length, `${jobId}#${epoch} recorded ${JSON.stringify(recorded)}`).toBeLessThanOrEqual(1)
      }
      const successEpochs = new Set(finals.filter(f => f.reason === 'exit' && f.exitCode === 0).map(f => f.epoch))
      expect(successEpochs.size).toBeLessThanOrEqual(1)
      const job = h.job(jobId)!
      for (const epoch of successEpochs) {
        // A success is the job's outcome, and nothing is accepted after it.
        expect(job.state).toBe('succeeded')
        expect(job.epoch).toBe(epoch)
        expect(finals[finals.length - 1].epoch).toBe(epoch)
      }
    }
    for (const job of h.jobs()) {
      // The record agrees: one success at most, and no more failures than the retry budget.
      const exited = job.attempts.filter(a => a.state === 'exited')
      expect(exited.filter(a => a.reason === 'exit' && a.exitCode === 0).length).toBeLessThanOrEqual(1)
      expect(exited.filter(a => !(a.reason === 'exit' && a.exitCode === 0)).length).toBeLessThanOrEqual(job.spec.retries + 1)
    }
  })

  test.prop([fc.integer(), arbMesh, arbJobs, fc.integer({ min: 0, max: 120 }), fc.boolean()], PROPS)('(c) without kills or drops, every job that fits a node ends, and one that fits none waits as unplaceable', (seed, mesh, jobs, maxDelayMs, direct) => {
    const fits = (id: string): boolean => fitsSomeNode(mesh, jobs[Number(id.slice('job-'.length))])
    const { h, ids } = run({
      seed, mesh, jobs, net: { maxDelayMs, dropRate: 0 }, kills: [], direct, horizonMs: 600_000,
      done: (x, ids) => ids.every(id => !fits(id) || TERMINAL_STATES.has(x.job(id)!.state))
    })
    ids.forEach(id => {
      const job = h.job(id)!
      const i = Number(id.slice('job-'.length))
      if (fitsSomeNode(mesh, jobs[i])) {
        expect(TERMINAL_STATES.has(job.state), `${id} is ${job.state} (${job.reason ?? ''})`).toBe(true)
        const expected = expectedOutcome(jobs[i])
        expect({ id, state: job.state, reason: job.reason }).toEqual({ id, ...expected })
      } else {
        expect({ id, state: job.state, reason: job.reason }).toEqual({ id, state: 'pending', reason: 'unplaceable' })
        expect(job.attempts).toHaveLength(0)
      }
    })
    // Nothing lost: every attempt that started also ended and was reported.
    for (const a of h.history.attempts) expect(a.result, `${a.jobId}#${a.epoch}`).toBeDefined()
  })

  test.prop([fc.integer(), arbMesh, arbJobs, arbNet, arbKills, fc.boolean()], { numRuns: Math.ceil(RUNS / 3) })('(d) the same seed gives the same history', (seed, mesh, jobs, net, kills, direct) => {
    const a = run({ seed, mesh, jobs, net, kills, direct, horizonMs: 20_000 })
    const b = run({ seed, mesh, jobs, net, kills, direct, horizonMs: 20_000 })
    expect(b.h.history).toEqual(a.h.history)
    expect(b.h.jobs()).toEqual(a.h.jobs())
    expect(b.h.stats).toEqual(a.h.stats)
  })
})

/** With no drops and no kills, a job runs its outcomes in order until one succeeds or the
 *  retry budget is spent. */
function expectedOutcome (j: JobArb): Pick<JobRecord, 'state' | 'reason'> {
  for (let attempt = 0; attempt <= j.retries; attempt++) {
    const o = j.outcomes[attempt % j.outcomes.length]
    if (o.result === 'ok') return { state: 'succeeded', reason: 'exit' }
    if (attempt === j.retries) return { state: 'failed', reason: o.result === 'fail' ? 'exit' : o.result }
  }
  throw new Error('unreachable')
}

describe('harness scenarios', () => {
  const nodes: NodeInit[] = [
    { id: 'a', cpuMilli: 2000, memoryBytes: 2 * GiB },
    { id: 'b', cpuMilli: 2000, memoryBytes: 2 * GiB },
    { id: 'c', cpuMilli: 2000, memoryBytes: 2 * GiB }
  ]

  it('runs a job end to end: one attempt, one accepted final, succeeded', () => {
    const h = new Harness({ seed: 7, nodes })
    h.advance(100)
    const id = h.submit('a', spec())
    expect(h.runUntil(x => x.job(id)!.state === 'succeeded', 10_000)).toBe(true)
    expect(h.history.attempts).toHaveLength(1)
    expect(h.history.finals).toEqual([expect.objectContaining({ jobId: id, epoch: 1, reason: 'exit', exitCode: 0, owner: 'a' })])
  })

  it('re-runs the job of a killed executor elsewhere, in a new epoch, and the owner keeps one result', () => {
    const workers: NodeInit[] = [
      { id: 'a', cpuMilli: 2000, memoryBytes: 2 * GiB },
      { id: 'b', cpuMilli: 2000, memoryBytes: 2 * GiB, labels: { role: 'worker' } },
      { id: 'c', cpuMilli: 2000, memoryBytes: 2 * GiB, labels: { role: 'worker' } }
    ]
    const h = new Harness({ seed: 7, nodes: workers, exec: ({ start }) => ({ durationMs: start === 1 ? 60_000 : 1000 }) })
    h.advance(100)
    const id = h.submit('a', spec({ constraints: { role: 'worker' } }))
    expect(h.runUntil(x => x.job(id)!.state === 'running', 5000)).toBe(true)
    const first = h.job(id)!.node!
    h.kill(first)
    expect(h.runUntil(x => x.job(id)!.state === 'succeeded', 30_000)).toBe(true)
    const job = h.job(id)!
    expect(job.node).not.toBe(first)
    expect(job.epoch).toBeGreaterThan(1)
    expect(job.attempts[0]).toMatchObject({ node: first, state: 'lost', reason: 'lost' })
    expect(h.history.attempts.map(a => a.node)).toEqual([first, job.node])
    expect(h.history.finals).toEqual([expect.objectContaining({ jobId: id, epoch: job.epoch, node: job.node, exitCode: 0 })])
  })

  it('a final whose ack is lost is sent again; the owner acknowledges it again but records it once', () => {
    let dropped = 0
    const h = new Harness({
      seed: 11,
      nodes,
      network: {
        // the first ack of the final result
        drop: leg => leg.request?.type === MessageType.AttemptUpdate && leg.request.body.state === 'exited' && dropped++ === 0
      }
    })
    h.advance(100)
    const id = h.submit('a', spec())
    expect(h.runUntil(x => x.job(id)!.state === 'succeeded' && [...x.nodes.values()].every(n => n.bidder.allocations.size === 0), 10_000)).toBe(true)
    expect(dropped).toBe(2)
    expect(h.history.finals).toHaveLength(2)
    expect(h.history.finals[1]).toMatchObject({ ...h.history.finals[0], atMs: expect.any(Number) })
    expect((h.jobEvents.get(id) ?? []).filter(e => e.type === 'attempt:exited')).toHaveLength(1)
  })

  it('a renewal the final overtook does not re-open the attempt', () => {
    const h = new Harness({
      seed: 5,
      nodes,
      // every 'running' update is slow; everything else is quick
      network: { delayMs: leg => leg.message.type === MessageType.AttemptUpdate && leg.message.body.state === 'running' ? 400 : 1 },
      exec: ({ start }) => start === 1 ? { durationMs: 50, exitCode: 1, reason: 'exit' } : { durationMs: 50 }
    })
    h.advance(100)
    const id = h.submit('a', spec({ retries: 1 }))
    expect(h.runUntil(x => x.job(id)!.state === 'succeeded', 20_000)).toBe(true)
    const job = h.job(id)!
    expect(job.attempts.map(a => a.state)).toEqual(['exited', 'exited'])
    expect(job.attempts.map(a => a.exitCode)).toEqual([1, 0])
  })

  it('deliverAll drains the network and leaves the clock where the last message landed', () => {
    const h = new Harness({ seed: 3, nodes, advertIntervalMs: 0, network: { delayMs: 20 }, exec: () => ({ startDelayMs: 1000 }) })
    h.feedAdverts()
    const id = h.submit('a', spec())
    h.deliverAll()
    // bid request out and back (40 ms), award out and back (40 ms)
    expect(h.nowMs).toBe(80)
    expect(h.job(id)!.state).toBe('scheduled')
  })
})
