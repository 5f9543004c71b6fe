// After a restart the agent takes up the jobs it had not finished. They must all be found
// however long the store's history of finished jobs is: the newest 100,000 of all jobs (what
// the agent used to read) leave out an old pending job behind that many finished ones.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { unfinishedJobs } from '../../src/agent/agent.ts'
import type { JobRecord, JobState } from '../../src/protocol/job.ts'
import { openSqliteStore } from '../../src/store/sqlite-store.ts'
import type { Store } from '../../src/store/store.ts'
import { jobRecord } from '../scheduler/harness.ts'

describe('unfinishedJobs', () => {
  let dir: string | undefined
  let store: Store | undefined
  afterEach(() => {
    store?.close()
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true })
  })

  const job = (id: string, state: JobState, createdAtMs: number): JobRecord => ({ ...jobRecord(id, 'me', undefined, createdAtMs), state })

  it('finds every live job behind a history of more than 100,000 finished ones', () => {
    dir = mkdtempSync(join(tmpdir(), 'bidmesh-unfinished-'))
    store = openSqliteStore({ path: join(dir, 'a.db') })
    const s = store
    s.transaction(() => {
      s.putJob(job('old-pending', 'pending', 1))
      for (let i = 0; i < 100_001; i++) s.putJob(job(`done-${i}`, i % 3 === 0 ? 'failed' : 'succeeded', 10 + i))
      s.putJob(job('mid-running', 'running', 50_000))
      s.putJob(job('new-scheduled', 'scheduled', 200_000))
      s.putJob(job('new-cancelled', 'cancelled', 200_001))
    })
    expect(unfinishedJobs(s).map(j => j.id).sort()).toEqual(['mid-running', 'new-scheduled', 'old-pending'])
  })
})
