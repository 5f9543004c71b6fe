// Placement: ranking, the deterministic tie-break, candidate selection, the winner, and the
// explanation that travels with every decision.
import { fc, test } from '@fast-check/vitest'
import { describe, expect, it } from 'vitest'
import type { NodeSnapshot } from '../../src/scheduler/feasibility.ts'
import { chooseWinner, compareScores, formatFiltered, rankNodes, selectCandidates, selectFromView, snapshots } from '../../src/scheduler/placement.ts'
import { applyAdvert, claim, createView } from '../../src/scheduler/view.ts'
import { GiB, capacity, spec } from './harness.ts'

function snap (peerId: string, freeCpuMilli: number, freeMemoryBytes: number, labels: Record<string, string> = {}): NodeSnapshot {
  const c = capacity(peerId, { totalCpuMilli: 4000, totalMemoryBytes: 8 * GiB, freeCpuMilli, freeMemoryBytes, labels })
  return { capacity: c, freeCpuMilli, freeMemoryBytes, liveness: 'alive' }
}

const OPTS = { extraCandidates: 2, explainTop: 5, nowMs: 1000 }

describe('binpack and spread', () => {
  const busy = snap('busy', 1000, 2 * GiB)
  const idle = snap('idle', 4000, 8 * GiB)

  it.each([
    { placement: 'binpack' as const, first: 'busy', second: 'idle' },
    { placement: 'spread' as const, first: 'idle', second: 'busy' }
  ])('$placement ranks $first first', ({ placement, first, second }) => {
    const r = rankNodes('job-1', spec({ placement, cpuMilli: 500, memoryBytes: 1 * GiB }), [busy, idle])
    expect(r.ranked.map(s => s.node)).toEqual([first, second])
    expect(Object.keys(r.ranked[0].components)).toEqual([placement])
  })

  it('the two pick opposite nodes for the same job', () => {
    const pick = (placement: 'binpack' | 'spread'): string => selectCandidates('job-1', spec({ placement }), [busy, idle], { ...OPTS, extraCandidates: 0 }).candidates[0]
    expect(pick('binpack')).toBe('busy')
    expect(pick('spread')).toBe('idle')
  })
})

describe('deterministic tie-break', () => {
  const equal = Array.from({ length: 10 }, (_, i) => snap(`node-${i}`, 4000, 8 * GiB))

  it('same inputs give the same candidates, whatever order the view lists nodes in', () => {
    const a = selectCandidates('job-42', spec(), equal, OPTS)
    const b = selectCandidates('job-42', spec(), [...equal].reverse(), OPTS)
    const c = selectCandidates('job-42', spec(), [...equal.slice(5), ...equal.slice(0, 5)], OPTS)
    expect(a.candidates).toHaveLength(3)
    expect(b.candidates).toEqual(a.candidates)
    expect(c.candidates).toEqual(a.candidates)
    expect(b.explanation).toEqual(a.explanation)
  })

  it('equal nodes spread across job ids instead of every job picking the same node', () => {
    const firsts = new Map<string, number>()
    for (let i = 0; i < 200; i++) {
      const first = selectCandidates(`job-${i}`, spec(), equal, OPTS).candidates[0]
      firsts.set(first, (firsts.get(first) ?? 0) + 1)
    }
    // Ten equal nodes, 200 jobs: every node is picked first by some job, none by most.
    expect(firsts.size).toBe(10)
    expect(Math.max(...firsts.values())).toBeLessThan(60)
  })

  it('compareScores: a higher score wins before any hash', () => {
    const hi = { node: 'a', score: 0.9, components: {} }
    const lo = { node: 'b', score: 0.1, components: {} }
    expect(compareScores('j', hi, lo)).toBeLessThan(0)
    expect(compareScores('j', lo, hi)).toBeGreaterThan(0)
    expect(compareScores('j', hi, { ...hi })).toBe(0)
  })

  it('chooseWinner takes the best bid, with ties broken as in ranking', () => {
    const bids = [
      { node: 'a', score: 0.2, components: {} },
      { node: 'b', score: 0.7, components: {} },
      { node: 'c', score: 0.5, components: {} }
    ]
    expect(chooseWinner('j', bids)?.node).toBe('b')
    expect(chooseWinner('j', [])).toBeUndefined()
    const tied = equal.map(n => ({ node: n.capacity.peerId, score: 0.5, components: {} }))
    const ranked = rankNodes('job-7', spec(), equal).ranked
    expect(chooseWinner('job-7', tied)?.node).toBe(ranked[0].node)
    expect(chooseWinner('job-7', [...tied].reverse())?.node).toBe(ranked[0].node)
  })
})

describe('candidates and explanation', () => {
  const nodes = [
    snap('fit-1', 4000, 8 * GiB, { zone: 'a' }),
    snap('fit-2', 3000, 6 * GiB, { zone: 'a' }),
    snap('fit-3', 2000, 4 * GiB, { zone: 'a' }),
    snap('fit-4', 1000, 2 * GiB, { zone: 'a' }),
    snap('full-1', 4000, 100, { zone: 'a' }),
    snap('full-2', 4000, 100, { zone: 'a' }),
    snap('full-3', 4000, 100, { zone: 'a' }),
    snap('zone-b-1', 4000, 8 * GiB, { zone: 'b' }),
    snap('zone-b-2', 4000, 8 * GiB, { zone: 'b' })
  ]
  const job = spec({ cpuMilli: 500, memoryBytes: 1 * GiB, constraints: { zone: 'a' } })

  it('asks the best 1 + extraCandidates feasible nodes', () => {
    const s = selectCandidates('job-1', job, nodes, OPTS)
    expect(s.candidates).toEqual(['fit-4', 'fit-3', 'fit-2']) // binpack: fullest first
  })

  it('counts every filtered node by reason', () => {
    const { explanation } = selectCandidates('job-1', job, nodes, { ...OPTS, explainTop: 2 })
    expect(explanation).toMatchObject({
      consideredNodes: 9,
      filtered: { memory: 3, 'label zone=a': 2 },
      candidates: ['fit-4', 'fit-3', 'fit-2'],
      decidedAtMs: 1000
    })
    expect(explanation.top.map(t => t.node)).toEqual(['fit-4', 'fit-3'])
    expect(formatFiltered(explanation.filtered)).toBe('memory: 3 nodes, label zone=a: 2 nodes')
  })

  it('with no feasible node there are no candidates, and the explanation says why', () => {
    const s = selectCandidates('job-1', spec({ memoryBytes: 64 * GiB }), nodes, OPTS)
    expect(s.candidates).toEqual([])
    expect(s.explanation.filtered).toEqual({ 'memory (larger than node)': 9 })
    expect(selectCandidates('job-1', spec(), [], OPTS).explanation).toMatchObject({ consideredNodes: 0, filtered: {}, candidates: [] })
  })

  it('the candidate count does not grow with the mesh', () => {
    const many = Array.from({ length: 500 }, (_, i) => snap(`n-${i}`, 4000, 8 * GiB))
    expect(selectCandidates('job-1', spec(), many, OPTS).candidates).toHaveLength(3)
    expect(selectCandidates('job-1', spec(), many.slice(0, 3), OPTS).candidates).toHaveLength(3)
  })
})

describe('formatFiltered', () => {
  it.each<{ filtered: Record<string, number>, text: string }>([
    { filtered: {}, text: '' },
    { filtered: { memory: 1 }, text: 'memory: 1 node' },
    { filtered: { memory: 3, 'label zone=a': 2 }, text: 'memory: 3 nodes, label zone=a: 2 nodes' },
    // most nodes first; equal counts by name
    { filtered: { cpu: 2, draining: 5, 'not alive': 2 }, text: 'draining: 5 nodes, cpu: 2 nodes, not alive: 2 nodes' }
  ])('$text', ({ filtered, text }) => {
    expect(formatFiltered(filtered)).toBe(text)
  })
})

describe('snapshots', () => {
  it("subtract this owner's open claims and carry liveness", () => {
    const view = createView()
    applyAdvert(view, capacity('a', { totalCpuMilli: 4000, totalMemoryBytes: 8 * GiB }), 0)
    applyAdvert(view, capacity('b', { totalCpuMilli: 4000, totalMemoryBytes: 8 * GiB }), 5000)
    claim(view, 'a', 1500, 2 * GiB)
    const config = { suspectAfterMs: 3000, goneAfterMs: 6000 }
    const byId = new Map([...snapshots(view, 5000, config)].map(s => [s.capacity.peerId, s]))
    expect(byId.get('a')).toMatchObject({ freeCpuMilli: 2500, freeMemoryBytes: 6 * GiB, liveness: 'suspect' })
    expect(byId.get('b')).toMatchObject({ freeCpuMilli: 4000, freeMemoryBytes: 8 * GiB, liveness: 'alive' })
  })
})

describe('selection keeps only the head of the ranking', () => {
  // Few distinct capacities, so equal scores (and the hash tie-break) are common.
  const arbNode = fc.record({
    free: fc.constantFrom(0, 500, 1000, 2000, 4000),
    mem: fc.constantFrom(100, 1 * GiB, 4 * GiB, 8 * GiB),
    zone: fc.constantFrom('a', 'b'),
    heardAtMs: fc.constantFrom(0, 900, 1000),
    claimed: fc.constantFrom(0, 500)
  })
  const arbCase = fc.record({
    nodes: fc.array(arbNode, { maxLength: 40 }),
    job: fc.integer({ min: 0, max: 99 }),
    extra: fc.integer({ min: 0, max: 4 }),
    top: fc.integer({ min: 0, max: 8 }),
    placement: fc.constantFrom('binpack' as const, 'spread' as const),
    zone: fc.constantFrom(undefined, 'a')
  })

  test.prop([arbCase])('selectCandidates and selectFromView equal the head of rankNodes', (c) => {
    const jobId = `job-${c.job}`
    const job = spec({ placement: c.placement, constraints: c.zone !== undefined ? { zone: c.zone } : {} })
    const opts = { extraCandidates: c.extra, explainTop: c.top, nowMs: 4000 }
    const config = { suspectAfterMs: 3000, goneAfterMs: 6000 }
    const view = createView()
    c.nodes.forEach((n, i) => {
      applyAdvert(view, capacity(`n-${i}`, { totalCpuMilli: 4000, totalMemoryBytes: 8 * GiB, freeCpuMilli: n.free, freeMemoryBytes: n.mem, labels: { zone: n.zone } }), n.heardAtMs)
      claim(view, `n-${i}`, n.claimed, 0)
    })
    const r = rankNodes(jobId, job, snapshots(view, opts.nowMs, config))
    const candidates = r.ranked.slice(0, 1 + c.extra).map(s => s.node)
    const expected = { candidates, explanation: { consideredNodes: r.considered, filtered: r.filtered, top: r.ranked.slice(0, c.top), candidates, decidedAtMs: opts.nowMs } }
    expect(selectCandidates(jobId, job, snapshots(view, opts.nowMs, config), opts)).toEqual(expected)
    expect(selectFromView(jobId, job, view, config, opts)).toEqual(expected)
  })
})
