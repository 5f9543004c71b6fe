import { describe, expect, it } from 'vitest'
import { createDirectory } from '../../src/agent/directory.ts'
import type { JobState, JobSummary } from '../../src/protocol/job.ts'

const summary = (id: string, state: JobState, version = 0): JobSummary =>
  ({ id, image: 'i', owner: 'o', state, epoch: 0, term: 0, createdAtMs: 0, updatedAtMs: version })
const ids = (d: ReturnType<typeof createDirectory>): string[] => [...d.values()].map(s => s.id)

describe('directory', () => {
  it('stays within its bound, forgetting the least recently changed finished jobs first', () => {
    const d = createDirectory({ maxSummaries: 3 })
    d.set(summary('live-old', 'running'))
    d.set(summary('done-1', 'succeeded'))
    d.set(summary('done-2', 'failed'))
    d.set(summary('new', 'pending'))
    expect(d.size).toBe(3)
    expect(ids(d).sort()).toEqual(['done-2', 'live-old', 'new'])
    d.set(summary('newer', 'pending'))
    expect(ids(d).sort()).toEqual(['live-old', 'new', 'newer'])
  })

  it('a changed job counts as the most recent', () => {
    const d = createDirectory({ maxSummaries: 2 })
    d.set(summary('a', 'succeeded'))
    d.set(summary('b', 'succeeded'))
    d.set(summary('a', 'succeeded', 1))
    d.set(summary('c', 'succeeded'))
    expect(ids(d).sort()).toEqual(['a', 'c'])
    expect(d.get('a')?.updatedAtMs).toBe(1)
  })

  it('a job that finishes moves to the finished ones, and goes before any live job', () => {
    const d = createDirectory({ maxSummaries: 2 })
    d.set(summary('a', 'running'))
    d.set(summary('b', 'running'))
    d.set(summary('b', 'succeeded', 1))
    d.set(summary('c', 'pending'))
    expect(ids(d).sort()).toEqual(['a', 'c'])
  })

  it('with only live jobs past the bound, the least recently changed go', () => {
    const d = createDirectory({ maxSummaries: 2 })
    for (const id of ['a', 'b', 'c']) d.set(summary(id, 'running'))
    expect(ids(d).sort()).toEqual(['b', 'c'])
  })

  it('keeps every live job while finished ones fill the default bound', async () => {
    const { AGENT_DEFAULTS } = await import('../../src/constants.ts')
    const d = createDirectory({ maxSummaries: AGENT_DEFAULTS.directoryMaxSummaries })
    for (let i = 0; i < 3 * AGENT_DEFAULTS.directoryMaxSummaries; i++) d.set(summary(`j${i}`, i % 10 === 0 ? 'running' : 'succeeded'))
    expect(d.size).toBe(AGENT_DEFAULTS.directoryMaxSummaries)
    // every live job kept
    expect([...d.values()].filter(s => s.state === 'running')).toHaveLength(3 * AGENT_DEFAULTS.directoryMaxSummaries / 10)
  })
})
