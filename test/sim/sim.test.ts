// The simulator end to end at small scale: the real owner and bidder machines over the
// virtual clock and network. Every assertion is on counts and virtual times, never on wall
// time, so they hold on a loaded machine.
import { describe, expect, it } from 'vitest'
import { DEFAULT_OPTIONS, type SimOptions, runOnce } from '../../src/sim/main.ts'
import type { Report } from '../../src/sim/report.ts'

const run = (over: Partial<SimOptions>): Report => runOnce({ ...DEFAULT_OPTIONS, ...over }).report
const withoutWall = (r: Report): Omit<Report, 'wallMs'> => { const { wallMs: _, ...rest } = r; return rest }

describe('simulator', () => {
  it('is deterministic: the same seed gives the same report (wallMs aside), another seed another', () => {
    // loss and jitter exercise the network's randomness, the kills the membership paths
    const o: Partial<SimOptions> = { agents: 20, jobs: 150, seed: 7, scenario: 'kill10', restartAfterMs: 3000, loss: 0.01, central: false }
    const a = run(o)
    const b = run(o)
    expect(JSON.stringify(withoutWall(b))).toBe(JSON.stringify(withoutWall(a)))
    const c = run({ ...o, seed: 8 })
    expect(JSON.stringify(withoutWall(c))).not.toBe(JSON.stringify(withoutWall(a)))
  })

  it('batching quiet steps (lazy views for owners with nothing pending, renewal acks) changes no run', () => {
    for (const o of [
      { agents: 40, jobs: 300, seed: 7, scenario: 'kill10', restartAfterMs: 3000, loss: 0.01, failureRate: 0.1, central: false },
      { agents: 30, jobs: 200, seed: 4, scenario: 'churn', partitionAtMs: 3000, partitionMs: 4000, partitionFraction: 0.3, central: false },
      { agents: 30, jobs: 200, seed: 5, scenario: 'kill10', restartAfterMs: 0, maxVirtualS: 15, central: false }
    ] satisfies Array<Partial<SimOptions>>) {
      const batched = run(o)
      const unbatched = run({ ...o, batch: false })
      expect(JSON.stringify(withoutWall(batched))).toBe(JSON.stringify(withoutWall(unbatched)))
    }
  })

  it('lazy views (adverts read when the owner reads its view) give the same run as stepping every delivery', () => {
    // more agents than the view size, so views are partial; failures put jobs in retry backoff,
    // the burst keeps owners with pending jobs (stepped with each advert), loss and a partition
    // make adverts miss receivers, churn changes samples
    for (const o of [
      { agents: 150, jobs: 1200, seed: 9, failureRate: 0.2, loss: 0.01, central: false },
      { agents: 120, jobs: 1000, seed: 6, scenario: 'burst', central: false },
      { agents: 120, jobs: 900, seed: 8, scenario: 'churn', partitionAtMs: 2000, partitionMs: 3000, partitionFraction: 0.4, central: false }
    ] satisfies Array<Partial<SimOptions>>) {
      const lazy = run(o)
      const eager = run({ ...o, batch: false })
      expect(JSON.stringify(withoutWall(lazy))).toBe(JSON.stringify(withoutWall(eager)))
    }
  })

  for (const [scenario, agents] of [['steady', 50], ['mixed', 50], ['kill10', 50], ['churn', 30], ['burst', 30]] as const) {
    it(`${scenario}: every job finishes exactly once (${agents} agents, ${10 * agents} jobs)`, () => {
      const r = run({ agents, jobs: 10 * agents, seed: 3, scenario })
      expect(r.stoppedBy).toBe('done')
      expect(r.lostJobs).toBe(0)
      expect(r.duplicateResults).toBe(0)
      expect(r.succeeded).toBe(10 * agents)
      if (scenario === 'kill10') expect(r.lostAttempts).toBeGreaterThan(0) // the killed agents' runs were re-run
      if (scenario === 'steady') expect(r.makespanVsCentralBestFit).toBeLessThanOrEqual(1.1)
    })
  }

  it('kill10 without restarts: only jobs whose owner died are lost, never run twice', () => {
    const r = run({ agents: 30, jobs: 300, seed: 3, scenario: 'kill10', restartAfterMs: 0, central: false })
    expect(r.duplicateResults).toBe(0)
    expect(r.lostJobs).toBeGreaterThan(0)
    expect(r.lostJobs).toBeLessThan(300 * 0.2)
  })

  it('sends only what the real codec accepts (schemas, size caps)', () => {
    const r = run({ agents: 20, jobs: 100, seed: 2, scenario: 'mixed', checkWire: true, central: false, failureRate: 0.1 })
    expect(r.succeeded + r.failed).toBe(100)
  })

  it('keeps results unique across a partition and message loss', () => {
    const r = run({ agents: 30, jobs: 300, seed: 5, loss: 0.02, partitionAtMs: 4000, partitionMs: 6000, partitionFraction: 0.3, central: false })
    expect(r.duplicateResults).toBe(0)
    expect(r.lostJobs).toBe(0)
  })

  it('messages per job stay flat from 20 to 200 agents, and gossip bytes per agent with them', () => {
    // five jobs per agent in each: the same load per agent
    const small = run({ agents: 20, jobs: 100, seed: 11, central: false })
    const mid = run({ agents: 40, jobs: 200, seed: 11, central: false })
    const large = run({ agents: 200, jobs: 1000, seed: 11, central: false })
    const ratio = large.messagesPerJob / small.messagesPerJob
    expect(ratio).toBeGreaterThan(1 / 1.2)
    expect(ratio).toBeLessThan(1.2)
    // 20 agents are fewer than the view size (full gossip); from 50 up, partial views
    expect(large.capacityBytesPerAgentPerSec / mid.capacityBytesPerAgentPerSec).toBeLessThan(1.5)
  })
})
