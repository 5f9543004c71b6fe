// Lazy views against eager ones: a view that reads its adverts from the publishers' logs when
// read must show what applying every advert at its arrival shows (entries, and whether
// freedVersion moved between two reads), with jitter reordering arrivals, runs longer than
// the packed ring, bid snapshots newer than adverts still in flight, and lost adverts.
import { describe, expect, it } from 'vitest'
import type { NodeCapacity } from '../../src/protocol/job.ts'
import { applyAdvert, createView } from '../../src/scheduler/view.ts'
import { Engine } from '../../src/sim/engine.ts'
import { AdvertFeed } from '../../src/sim/lazy-view.ts'
import { Rng } from '../../src/sim/rng.ts'

const PUBLISHERS = 4
const id = (j: number): string => `peer-${j}`

function capacity (j: number, seq: number, freeCpuMilli: number, nowMs: number): NodeCapacity {
  return {
    peerId: id(j), totalCpuMilli: 8000, totalMemoryBytes: 8e9, freeCpuMilli, freeMemoryBytes: 4e9,
    runningJobs: 0, labels: {}, draining: false, seq, sentAtMs: nowMs
  }
}

function compare (seed: number): number {
  const rng = new Rng(seed, 'lazy-view-test')
  const engine = new Engine()
  // agent 0 is the owner; it hears publishers 1..PUBLISHERS
  const sample = Array.from({ length: PUBLISHERS }, (_, k) => k + 1)
  const feed = new AdvertFeed(PUBLISHERS + 1, engine, () => sample, p => Number(p.slice(5)), 60_000, 9)
  const lazy = feed.view(0)
  const eager = createView()
  const seqs = new Array<number>(PUBLISHERS + 1).fill(0)
  let checks = 0
  let lazyVersion = lazy.freedVersion
  let eagerVersion = eager.freedVersion
  // odd seeds read often (short runs, from the ring), even seeds rarely (runs longer than the ring)
  const bidP = seed % 2 === 1 ? 0.75 : 0.96
  for (let step = 0; step < 400; step++) {
    const atMs = step * 3 + rng.int(3)
    engine.at(atMs, () => {
      const r = rng.next()
      const j = 1 + rng.int(PUBLISHERS)
      if (r < 0.6) {
        // an advert: sometimes a new capacity version, sometimes a heartbeat of the same one
        if (rng.chance(0.7)) seqs[j]++
        const cap = capacity(j, seqs[j], 1000 * rng.int(8), engine.nowMs)
        // publishers 1 and 2 lose adverts (their runs are read from the log), 3 and 4 do not
        const lost = j <= 2 && rng.chance(0.1)
        // arrival after 1–9 ms: adverts a few ms apart arrive out of order
        const arrival = engine.nowMs + 1 + rng.int(9)
        const seq = engine.at(arrival, () => { if (!lost) applyAdvert(eager, cap, engine.nowMs) })
        const index = feed.publish(j, cap, arrival, seq)
        if (lost) feed.missed(j, index, 0)
      } else if (r < bidP) {
        // a bid's capacity: the node's state now, possibly newer than adverts in flight
        const cap = capacity(j, seqs[j], 1000 * rng.int(8), engine.nowMs)
        applyAdvert(eager, cap, engine.nowMs)
        applyAdvert(lazy, cap, engine.nowMs)
      } else {
        // the owner reads its whole view (an offer)
        const lazyMoved = lazy.freedVersion > lazyVersion
        const eagerMoved = eager.freedVersion > eagerVersion
        expect(lazyMoved).toBe(eagerMoved)
        lazyVersion = lazy.freedVersion
        eagerVersion = eager.freedVersion
        const seen = [...lazy.entries].map(([k, e]) => [k, e.capacity, e.heardAtMs] as const).sort()
        const want = [...eager.entries].map(([k, e]) => [k, e.capacity, e.heardAtMs] as const).sort()
        expect(seen.length).toBe(want.length)
        for (let i = 0; i < want.length; i++) {
          expect(seen[i][0]).toBe(want[i][0])
          expect(seen[i][1]).toBe(want[i][1]) // the very advert object
          expect(seen[i][2]).toBe(want[i][2])
        }
        checks++
      }
    })
  }
  engine.run({ untilMs: Infinity, done: () => false })
  return checks
}

describe('lazy capacity views', () => {
  it('read what eager delivery applied: entries, and whether freedVersion moved', () => {
    let checks = 0
    for (let seed = 1; seed <= 30; seed++) checks += compare(seed)
    expect(checks).toBeGreaterThan(500)
  })
})
