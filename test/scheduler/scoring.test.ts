// Scorers: binpack prefers the fuller node, spread the emptier; both stay in [0, 1].
import { describe, expect, it } from 'vitest'
import type { NodeSnapshot } from '../../src/scheduler/feasibility.ts'
import { binpack, scorersFor, spread } from '../../src/scheduler/scoring.ts'
import { GiB, capacity, spec } from './harness.ts'

function snap (totalCpuMilli: number, freeCpuMilli: number, totalMemoryBytes: number, freeMemoryBytes: number): NodeSnapshot {
  return { capacity: capacity('n', { totalCpuMilli, totalMemoryBytes, freeCpuMilli, freeMemoryBytes }), freeCpuMilli, freeMemoryBytes, liveness: 'alive' }
}

describe('binpack', () => {
  const job = spec({ cpuMilli: 1000, memoryBytes: 1 * GiB })
  it.each([
    { name: 'empty node', node: snap(4000, 4000, 4 * GiB, 4 * GiB), score: 0.25 },
    { name: 'half-full node', node: snap(4000, 2000, 4 * GiB, 2 * GiB), score: 0.75 },
    { name: 'exact fit', node: snap(4000, 1000, 4 * GiB, 1 * GiB), score: 1 },
    { name: 'cpu full, memory empty', node: snap(4000, 1000, 4 * GiB, 4 * GiB), score: (1 + 0.25) / 2 },
    { name: 'over-committed view clamps to 1', node: snap(4000, 0, 4 * GiB, 0), score: 1 },
    { name: 'zero-size node counts as full', node: snap(0, 0, 0, 0), score: 1 }
  ])('$name → $score', ({ node, score }) => {
    expect(binpack(node, job)).toBeCloseTo(score, 10)
  })
})

describe('spread', () => {
  it('is 1 - binpack', () => {
    const job = spec({ cpuMilli: 1000, memoryBytes: 1 * GiB })
    for (const n of [snap(4000, 4000, 4 * GiB, 4 * GiB), snap(4000, 2000, 4 * GiB, 2 * GiB), snap(4000, 1000, 4 * GiB, 1 * GiB)]) {
      expect(spread(n, job)).toBeCloseTo(1 - binpack(n, job), 10)
    }
  })
})

describe('scorersFor', () => {
  it.each([
    { placement: undefined, name: 'binpack' },
    { placement: 'binpack' as const, name: 'binpack' },
    { placement: 'spread' as const, name: 'spread' }
  ])('placement $placement → one scorer named $name, weight 1', ({ placement, name }) => {
    const s = scorersFor(spec(placement !== undefined ? { placement } : {}))
    expect(s.map(x => ({ name: x.name, weight: x.weight }))).toEqual([{ name, weight: 1 }])
  })
})
