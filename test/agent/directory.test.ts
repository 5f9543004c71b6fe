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

  // Each row: the summaries set, in order, into a directory of 2; what it holds after.
  it.each<[string, Array<[string, JobState, number?]>, string[]]>([
    ['a changed job counts as the most recent',
      [['a', 'succeeded'], ['b', 'succeeded'], ['a', 'succeeded', 1], ['c', 'succeeded']], ['a', 'c']],
    ['a job that finishes moves to the finished ones, and goes before any live job',
      [['a', 'running'], ['b', 'running'], ['b', 'succeeded', 1], ['c', 'pending']], ['a', 'c']],
    ['with only live jobs past the bound, the least recently changed go',
      [['a', 'running'], ['b', 'running'], ['c', 'running']], ['b', 'c']]
  ])('%s', (_name, sets, held) => {
    const d = createDirectory({ maxSummaries: 2 })
    for (const [id, state, version] of sets) d.set(summary(id, state, version))
    expect(ids(d).sort()).toEqual(held)
    // the newest summary of each job held
    for (const id of held) expect(d.get(id)?.updatedAtMs).toBe(Math.max(...sets.filter(x => x[0] === id).map(x => x[2] ?? 0)))
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
