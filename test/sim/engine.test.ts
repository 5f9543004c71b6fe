// The simulator's building blocks: the event queue's order and the partial views' invariants.
import { describe, expect, it } from 'vitest'
import { Engine, EventQueue } from '../../src/sim/engine.ts'
import { PartialViews } from '../../src/sim/gossip.ts'
import { Rng } from '../../src/sim/rng.ts'

describe('event queue', () => {
  it('pops by time, and in scheduling order at equal times', () => {
    const r = new Rng(1, 'test')
    const q = new EventQueue()
    const pushed: Array<[number, number]> = []
    for (let i = 0; i < 2000; i++) {
      const t = r.int(50)
      pushed.push([t, i])
      q.push(t, () => {})
    }
    const order: number[] = []
    const times: number[] = []
    while (q.size > 0) { times.push(q.peekTime()!); q.pop(); order.push(order.length) }
    const expected = [...pushed].sort((a, b) => a[0] - b[0] || a[1] - b[1]).map(p => p[0])
    expect(times).toEqual(expected)
  })

  it('runs actions at their virtual time, never in the past, and stops when done', () => {
    const e = new Engine()
    const seen: Array<[string, number]> = []
    e.at(10, () => { seen.push(['a', e.nowMs]); e.at(5, () => seen.push(['late', e.nowMs])) })
    e.at(10, () => seen.push(['b', e.nowMs]))
    e.at(30, () => seen.push(['c', e.nowMs]))
    expect(e.run({ untilMs: 20, done: () => false })).toBe('deadline')
    expect(seen).toEqual([['a', 10], ['b', 10], ['late', 10]])
    expect(e.run({ untilMs: 100, done: () => false })).toBe('idle')
    expect(seen.at(-1)).toEqual(['c', 30])
  })
})

describe('reserved insertion numbers', () => {
  it('a reserved number takes the place an action pushed then would have had, and seq names the running action', () => {
    const e = new Engine()
    const seen: Array<[string, number]> = []
    let reserved = -1
    e.at(10, () => {
      e.at(20, () => seen.push(['pushed before', e.seq]))
      reserved = e.reserveSeq() // an action at 20 kept by the caller
      e.at(20, () => seen.push(['pushed after', e.seq]))
    })
    e.run({ untilMs: 100, done: () => false })
    expect(seen.map(s => s[0])).toEqual(['pushed before', 'pushed after'])
    // the kept action sits between the two: it runs before an action iff its number is lower
    expect(seen[0][1]).toBeLessThan(reserved)
    expect(seen[1][1]).toBeGreaterThan(reserved)
  })
})

describe('partial views', () => {
  const check = (v: PartialViews, n: number, k: number): void => {
    const up = new Set(v.upAgents())
    const hearers = new Map<number, number[]>()
    for (const i of up) {
      const s = v.sampleOf(i)
      const ok = new Set(s).size === s.length && !s.includes(i) && s.length <= k // distinct, not itself, bounded
      if (!ok) expect.fail(`bad sample for ${i}: ${s.join()}`)
      for (const j of s) hearers.set(j, [...(hearers.get(j) ?? []), i])
    }
    // whoever samples j hears j's adverts, and nobody else does
    const mismatched: number[] = []
    for (let j = 0; j < n; j++) {
      const got = [...v.receiversOf(j)].filter(i => up.has(i)).sort((a, b) => a - b)
      if (got.join() !== (hearers.get(j) ?? []).sort((a, b) => a - b).join()) mismatched.push(j)
    }
    expect(mismatched).toEqual([])
  }

  it('bootstraps full samples, and keeps samples and receivers consistent through churn', () => {
    const n = 300
    const k = 16
    const v = new PartialViews(n, new Rng(2, 'views'), { viewSize: k, refreshMs: 1000, rotate: 2, heartbeat: true, minGapMs: 250 })
    v.bootstrap(Array.from({ length: 250 }, (_, i) => i))
    for (const i of v.upAgents()) expect(v.sampleOf(i)).toHaveLength(k)
    check(v, n, k)
    for (let i = 250; i < 300; i++) v.join(i)
    for (let i = 0; i < 40; i++) v.leave(i * 3)
    for (const i of [...v.upAgents()]) v.refresh(i)
    check(v, n, k)
    // after a refresh nobody samples an agent that is down
    const up = new Set(v.upAgents())
    expect(v.upAgents().every(i => v.sampleOf(i).every(j => up.has(j)))).toBe(true)
    // joiners are heard by about k agents each
    const heard = Array.from({ length: 50 }, (_, d) => [...v.receiversOf(250 + d)].length)
    expect(heard.reduce((a, b) => a + b, 0) / heard.length).toBeGreaterThan(k / 2)
  })

  it('is full gossip when the view is at least the mesh', () => {
    const v = new PartialViews(10, new Rng(2, 'views'), { viewSize: 32, refreshMs: 1000, rotate: 4, heartbeat: true, minGapMs: 250 })
    v.bootstrap([0, 1, 2, 3])
    expect(v.full).toBe(true)
    expect([...v.receiversOf(0)].sort()).toEqual([0, 1, 2, 3])
  })
})
