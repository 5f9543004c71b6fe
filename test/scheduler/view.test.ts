// The owner's capacity view: which adverts win, when pending jobs are offered again
// (freedVersion), liveness thresholds, pruning, and claims.
import { fc, test } from '@fast-check/vitest'
import { describe, expect, it } from 'vitest'
import type { NodeCapacity } from '../../src/protocol/job.ts'
import { type ViewEntry, applyAdvert, claim, createView, countHeardWithin, halfHeardAgeMs, liveness, pruneView, releaseInView, unclaim } from '../../src/scheduler/view.ts'
import { capacity } from './harness.ts'

const LIVENESS = { suspectAfterMs: 3000, goneAfterMs: 6000 }

describe('applyAdvert', () => {
  it('a new node joins: stored, and freedVersion bumps', () => {
    const v = createView()
    expect(applyAdvert(v, capacity('a'), 100)).toBe(true)
    expect(v.freedVersion).toBe(1)
    expect(v.entries.get('a')).toMatchObject({ heardAtMs: 100, claimedCpuMilli: 0, claimedMemoryBytes: 0 })
  })

  it('a lower seq is stale: ignored, entry and heardAtMs unchanged', () => {
    const v = createView()
    applyAdvert(v, capacity('a', { seq: 5, freeCpuMilli: 1000 }), 100)
    const before = structuredClone(v.entries.get('a'))
    expect(applyAdvert(v, capacity('a', { seq: 4, freeCpuMilli: 4000 }), 200)).toBe(false)
    expect(v.entries.get('a')).toEqual(before)
    expect(v.freedVersion).toBe(1)
  })

  // From an advert of 2000 mcpu / 2000 B free, not draining, at seq 1:
  const base: Partial<NodeCapacity> = { seq: 1, freeCpuMilli: 2000, freeMemoryBytes: 2000, draining: false }
  it.each([
    { name: 'more free cpu', next: { freeCpuMilli: 2001 }, freed: true },
    { name: 'more free memory', next: { freeMemoryBytes: 2001 }, freed: true },
    { name: 'drain lifted', from: { draining: true }, next: { draining: false }, freed: true },
    { name: 'same capacity', next: {}, freed: false },
    { name: 'less free cpu', next: { freeCpuMilli: 1000 }, freed: false },
    { name: 'less free memory', next: { freeMemoryBytes: 1000 }, freed: false },
    { name: 'draining starts', next: { draining: true }, freed: false },
    { name: 'less cpu, more memory', next: { freeCpuMilli: 1000, freeMemoryBytes: 3000 }, freed: true }
  ])('$name → freed: $freed', ({ from, next, freed }) => {
    const v = createView()
    applyAdvert(v, capacity('a', { ...base, ...from }), 0)
    const version = v.freedVersion
    expect(applyAdvert(v, capacity('a', { ...base, ...from, ...next, seq: 2 }), 10)).toBe(freed)
    expect(v.freedVersion).toBe(version + (freed ? 1 : 0))
    expect(v.entries.get('a')!.capacity.seq).toBe(2)
    expect(v.entries.get('a')!.heardAtMs).toBe(10)
  })

  it('an equal seq is taken (a bid snapshot repeats the advert) and refreshes heardAtMs', () => {
    const v = createView()
    applyAdvert(v, capacity('a', { seq: 3 }), 0)
    expect(applyAdvert(v, capacity('a', { seq: 3 }), 500)).toBe(false)
    expect(v.entries.get('a')!.heardAtMs).toBe(500)
  })

  it('claims survive a newer advert', () => {
    const v = createView()
    applyAdvert(v, capacity('a', { seq: 1 }), 0)
    claim(v, 'a', 500, 1000)
    applyAdvert(v, capacity('a', { seq: 2 }), 10)
    expect(v.entries.get('a')).toMatchObject({ claimedCpuMilli: 500, claimedMemoryBytes: 1000 })
  })
})

describe('liveness', () => {
  const entry = (heardAtMs: number): ViewEntry => ({ capacity: capacity('a'), heardAtMs, claimedCpuMilli: 0, claimedMemoryBytes: 0 })
  it.each([
    { ageMs: 0, state: 'alive' },
    { ageMs: 2999, state: 'alive' },
    { ageMs: 3000, state: 'suspect' },
    { ageMs: 5999, state: 'suspect' },
    { ageMs: 6000, state: 'gone' },
    { ageMs: 600_000, state: 'gone' }
  ])('heard $ageMs ms ago → $state', ({ ageMs, state }) => {
    expect(liveness(entry(10_000), 10_000 + ageMs, LIVENESS)).toBe(state)
  })
})

describe('pruneView', () => {
  it('drops entries gone for longer than keepGoneMs, keeps the rest', () => {
    const v = createView()
    applyAdvert(v, capacity('old'), 0)
    applyAdvert(v, capacity('edge'), 1)
    applyAdvert(v, capacity('new'), 50_000)
    // goneAfterMs 6000 + keep 60000: an entry heard at t is dropped once now - t > 66000
    expect(pruneView(v, 66_001, 6000, 60_000)).toEqual(['old'])
    expect([...v.entries.keys()]).toEqual(['edge', 'new'])
  })
})

describe('claim and unclaim', () => {
  it('add up, never go below zero, and ignore unknown peers', () => {
    const v = createView()
    applyAdvert(v, capacity('a'), 0)
    claim(v, 'a', 500, 100)
    claim(v, 'a', 250, 50)
    expect(v.entries.get('a')).toMatchObject({ claimedCpuMilli: 750, claimedMemoryBytes: 150 })
    unclaim(v, 'a', 1000, 1000)
    expect(v.entries.get('a')).toMatchObject({ claimedCpuMilli: 0, claimedMemoryBytes: 0 })
    claim(v, 'nobody', 1, 1)
    unclaim(v, 'nobody', 1, 1)
    expect(v.entries.has('nobody')).toBe(false)
  })
})

describe('releaseInView', () => {
  // The node's bid carried seq 7 with the job's 1000 mcpu / 1000 B reserved.
  const bidCapacity = capacity('a', { seq: 7, totalCpuMilli: 4000, freeCpuMilli: 3000, totalMemoryBytes: 8000, freeMemoryBytes: 7000 })
  it.each([
    { name: 'the bid is the newest news: the room comes back', heard: 7, back: true, free: [4000, 8000] },
    { name: 'a newer advert (made before the release landed) counts the reservation too', heard: 9, back: true, free: [4000, 8000] },
    { name: 'an older capacity than the bid: nothing to give back', heard: 6, back: false, free: [3000, 7000] }
  ])('$name', ({ heard, back, free }) => {
    const v = createView()
    applyAdvert(v, { ...bidCapacity, seq: heard }, 0)
    const version = v.freedVersion
    expect(releaseInView(v, 'a', 7, 1000, 1000)).toBe(back)
    expect([v.entries.get('a')!.capacity.freeCpuMilli, v.entries.get('a')!.capacity.freeMemoryBytes]).toEqual(free)
    expect(v.freedVersion).toBe(back ? version + 1 : version)
    expect(v.entries.get('a')!.capacity.seq).toBe(heard)
  })

  it('never shows more room than the node has', () => {
    const v = createView()
    applyAdvert(v, { ...bidCapacity, freeCpuMilli: 3500 }, 0)
    releaseInView(v, 'a', 7, 1000, 1000)
    expect(v.entries.get('a')!.capacity.freeCpuMilli).toBe(4000)
  })

  it('an unknown node is left alone', () => {
    const v = createView()
    expect(releaseInView(v, 'nobody', 1, 1, 1)).toBe(false)
    expect(v.entries.size).toBe(0)
  })
})

describe('half of the members heard (the quorum\'s freshness)', () => {
  function viewHeardAt (heardAtMs: number[]): ReturnType<typeof createView> {
    const v = createView()
    heardAtMs.forEach((at, i) => applyAdvert(v, capacity(`p${i}`), at))
    return v
  }

  it.each([
    // heard at (p0 is this agent), now, the age of the freshest half, within 1000 ms?, how
    // many were heard within 1000 ms (this agent counts)
    { heard: [], nowMs: 5000, ageMs: 0, within: true, heardWithin: 0 },
    { heard: [0], nowMs: 5000, ageMs: 0, within: true, heardWithin: 1 },
    { heard: [0, 0], nowMs: 5000, ageMs: 0, within: true, heardWithin: 1 }, // two agents, one silent: half is enough
    { heard: [0, 0, 0], nowMs: 5000, ageMs: 5000, within: false, heardWithin: 1 },
    { heard: [0, 4500, 0], nowMs: 5000, ageMs: 500, within: true, heardWithin: 2 },
    { heard: [0, 1000, 2000, 3000], nowMs: 5000, ageMs: 2000, within: false, heardWithin: 1 },
    { heard: [0, 4000, 4500, 0, 0], nowMs: 5000, ageMs: 1000, within: true, heardWithin: 3 },
    { heard: [0, 6000, 0], nowMs: 5000, ageMs: 0, within: true, heardWithin: 2 } // heard "after" now: age 0
  ])('heard at $heard, now $nowMs: $ageMs ms, within 1000: $within', ({ heard, nowMs, ageMs, within, heardWithin }) => {
    const v = viewHeardAt(heard)
    expect(halfHeardAgeMs(v, 'p0', nowMs)).toBe(ageMs)
    const counted = countHeardWithin(v, 'p0', nowMs, 1000)
    expect(counted).toEqual({ members: heard.length, heard: heardWithin })
    expect(counted.heard * 2 >= counted.members).toBe(within)
  })

  test.prop([fc.array(fc.integer({ min: 0, max: 10_000 }), { maxLength: 40 }), fc.integer({ min: 0, max: 10_000 }), fc.integer({ min: 0, max: 10_000 }), fc.boolean()])(
    'the counting pass answers as the sorted age does', (heard, nowMs, maxAgeMs, selfInView) => {
      const v = viewHeardAt(heard)
      const self = selfInView ? 'p0' : 'not-in-view'
      const counted = countHeardWithin(v, self, nowMs, maxAgeMs)
      expect(counted.members).toBe(heard.length)
      expect(counted.heard * 2 >= counted.members).toBe(halfHeardAgeMs(v, self, nowMs) <= maxAgeMs)
    })
})
