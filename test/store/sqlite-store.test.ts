// The embedded store: round trips, ordering, transactions, corruption handling, and that
// a write which has returned survives the process being killed.
import { spawnSync } from 'node:child_process'
import { existsSync, fdatasyncSync, mkdirSync, mkdtempSync, readlinkSync, realpathSync, rmSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import Database from 'better-sqlite3'
import fc from 'fast-check'
import { pack } from 'msgpackr'
import { afterEach, describe, expect, it } from 'vitest'
import type { JobRecord, LogChunk } from '../../src/protocol/job.ts'
import { StoreClosedError, StoreCorruptError, StoreFlushError, StoreInvalidRecordError, StoreVersionError } from '../../src/store/errors.ts'
import { MIGRATIONS, SCHEMA_VERSION, migrate, openSqliteStore, prefixRange } from '../../src/store/sqlite-store.ts'
import type { Store } from '../../src/store/store.ts'

const projectRoot = fileURLToPath(new URL('../../', import.meta.url))
const storeModule = pathToFileURL(join(projectRoot, 'src/store/sqlite-store.ts')).href

const tempDirs: string[] = []
const openStores: Store[] = []

function tempDir (): string {
  const dir = mkdtempSync(join(tmpdir(), 'bidmesh-store-'))
  tempDirs.push(dir)
  return dir
}

function open (path = ':memory:'): Store {
  const store = openSqliteStore({ path })
  openStores.push(store)
  return store
}

afterEach(() => {
  // close() is idempotent, so stores a test already closed can be closed again here.
  for (const s of openStores.splice(0)) s.close()
  for (const d of tempDirs.splice(0)) rmSync(d, { recursive: true, force: true })
})

function job (id: string, createdAtMs: number, overrides: Partial<JobRecord> = {}): JobRecord {
  return {
    id,
    spec: {
      image: 'bidmesh/busybox:latest',
      name: `job ${id}`,
      command: ['/bin/sh', '-c', 'echo "hi" && exit 3'],
      env: { GREETING: 'héllo wörld ✓', EMPTY: '' },
      cpuMilli: 1500,
      memoryBytes: 256 * 1024 * 1024,
      pidsLimit: 128,
      timeoutMs: 300_000,
      retries: 2,
      constraints: { zone: 'a', 'disk/type': 'ssd' },
      network: 'none'
    },
    owner: '12D3KooWOwner',
    publisher: '12D3KooWPublisher',
    state: 'pending',
    epoch: 0,
    term: 0,
    version: 0,
    replicas: [],
    attempts: [],
    createdAtMs,
    updatedAtMs: createdAtMs,
    ...overrides
  }
}

function fullJob (): JobRecord {
  return job('01JOBFULL', 1_700_000_000_123, {
    state: 'failed',
    reason: 'exit',
    exitCode: 3,
    node: '12D3KooWNodeB',
    epoch: 2,
    attempts: [
      { epoch: 1, node: '12D3KooWNodeA', state: 'lost', awardedAtMs: 1_700_000_000_200, startedAtMs: 1_700_000_000_300, reason: 'lost', error: 'lease expired' },
      { epoch: 2, node: '12D3KooWNodeB', state: 'exited', awardedAtMs: 1_700_000_010_000, startedAtMs: 1_700_000_010_500, finishedAtMs: 1_700_000_020_000, exitCode: 3, reason: 'exit' }
    ],
    updatedAtMs: 1_700_000_020_001,
    notBeforeMs: 1_700_000_030_000,
    explanation: {
      consideredNodes: 5,
      filtered: { memory: 2, 'label zone=a': 1 },
      // fractional scores catch an encoder that narrows floats to 32 bits
      top: [
        { node: '12D3KooWNodeB', score: 0.8234567891, components: { binpack: 0.82, labels: 0 } },
        { node: '12D3KooWNodeC', score: 0.1, components: { binpack: 0.1, labels: -0.5 } }
      ],
      candidates: ['12D3KooWNodeB', '12D3KooWNodeC'],
      refused: { draining: 1 },
      winner: '12D3KooWNodeB',
      decidedAtMs: 1_700_000_009_999
    }
  })
}

function chunk (epoch: number, data: string, stream: LogChunk['stream'] = 'stdout'): Omit<LogChunk, 'seq'> {
  return { epoch, stream, atMs: 1000 + data.length, data }
}

describe('jobs', () => {
  it('round-trips a full record with attempts, explanation and spec', () => {
    const store = open()
    const original = fullJob()
    store.putJob(original)
    const got = store.getJob(original.id)
    expect(got).toEqual(original)
    expect(got).not.toBe(original)
    expect(got!.attempts[1].exitCode).toBe(3)
    expect(got!.explanation!.top[0].score).toBe(0.8234567891)
  })

  it('keeps null exit codes distinct from absent ones', () => {
    const store = open()
    store.putJob(job('n', 1, { exitCode: null }))
    const got = store.getJob('n')!
    expect(got.exitCode).toBeNull()
    expect('reason' in got).toBe(false)
  })

  it('returns undefined for an unknown id', () => {
    expect(open().getJob('nope')).toBeUndefined()
  })

  it('upsert replaces the whole record and its indexed columns', () => {
    const store = open()
    store.putJob(fullJob())
    const replaced = job('01JOBFULL', 5, { state: 'running', epoch: 3 })
    store.putJob(replaced)
    expect(store.getJob('01JOBFULL')).toEqual(replaced)
    expect(store.getJob('01JOBFULL')!.explanation).toBeUndefined()
    expect(store.listJobs()).toHaveLength(1)
    expect(store.listJobs({ state: 'failed' })).toEqual([])
    expect(store.listJobs({ state: 'running' }).map(j => j.id)).toEqual(['01JOBFULL'])
  })

  it('lists newest first, breaking ties by id descending, with a default limit of 1000', () => {
    const store = open()
    store.putJob(job('b', 100))
    store.putJob(job('a', 300))
    store.putJob(job('c', 200))
    store.putJob(job('d', 300))
    expect(store.listJobs().map(j => j.id)).toEqual(['d', 'a', 'c', 'b'])
    expect(store.listJobs({ limit: 2 }).map(j => j.id)).toEqual(['d', 'a'])
    expect(store.listJobs({ limit: 0 })).toEqual([])

    store.transaction(() => {
      for (let i = 0; i < 1005; i++) store.putJob(job(`bulk-${i}`, 1000 + i))
    })
    const page = store.listJobs()
    expect(page).toHaveLength(1000)
    expect(page[0].id).toBe('bulk-1004')
  })

  it('rejects a limit SQLite would read as "no limit"', () => {
    const store = open()
    expect(() => store.listJobs({ limit: -1 })).toThrow(RangeError)
    expect(() => store.listJobs({ limit: 1.5 })).toThrow(RangeError)
    expect(() => store.readLogs('x', { limit: -1 })).toThrow(RangeError)
  })

  it('filters by state', () => {
    const store = open()
    store.putJob(job('p1', 1, { state: 'pending' }))
    store.putJob(job('r1', 2, { state: 'running' }))
    store.putJob(job('p2', 3, { state: 'pending' }))
    expect(store.listJobs({ state: 'pending' }).map(j => j.id)).toEqual(['p2', 'p1'])
    expect(store.listJobs({ state: 'running' }).map(j => j.id)).toEqual(['r1'])
    expect(store.listJobs({ state: 'cancelled' })).toEqual([])
  })

  it('filters by id prefix literally: % and _ are not wildcards, case matters', () => {
    const store = open()
    const ids = ['ab%c_1', 'ab%c_2', 'abXc_3', 'ab%cZ4', 'AB%c_5', 'ab%', 'ab', 'ab\\%c_6', 'b', 'ab%c_']
    ids.forEach((id, i) => store.putJob(job(id, i)))
    const byPrefix = (prefix: string, state?: string): string[] =>
      store.listJobs({ prefix, ...(state !== undefined ? { state } : {}) }).map(j => j.id).sort()

    // LIKE 'ab%c_%' would also match abXc_3, ab%cZ4 and (case-insensitively) AB%c_5.
    expect(byPrefix('ab%c_')).toEqual(['ab%c_', 'ab%c_1', 'ab%c_2'])
    expect(byPrefix('ab%')).toEqual(['ab%', 'ab%cZ4', 'ab%c_', 'ab%c_1', 'ab%c_2'])
    expect(byPrefix('_')).toEqual([])
    expect(byPrefix('%')).toEqual([])
    expect(byPrefix('AB')).toEqual(['AB%c_5'])
    expect(byPrefix('ab\\')).toEqual(['ab\\%c_6'])
    expect(byPrefix('ab%c_1')).toEqual(['ab%c_1'])
    expect(byPrefix('ab%c_1x')).toEqual([])
    expect(byPrefix('')).toHaveLength(ids.length)
    expect(byPrefix('ab%c_', 'pending')).toHaveLength(3)
    expect(byPrefix('ab%c_', 'running')).toEqual([])
    // newest first within the prefix, too
    expect(store.listJobs({ prefix: 'ab%c_' }).map(j => j.id)).toEqual(['ab%c_', 'ab%c_2', 'ab%c_1'])
  })

  it('matches prefixes by code point, including astral characters and U+10FFFF', () => {
    const store = open()
    const ids = ['a😀1', 'a😁2', 'a\u{FFFF}', 'a\u{10FFFF}', 'a\u{10FFFF}\u{10FFFF}z', 'b', 'é1', 'éé']
    ids.forEach((id, i) => store.putJob(job(id, i)))
    const byPrefix = (prefix: string): string[] => store.listJobs({ prefix }).map(j => j.id).sort()
    for (const prefix of ['a', 'a😀', 'a\uD83D', 'a\u{10FFFF}', '\u{10FFFF}', 'é', 'a\u{FFFF}']) {
      // The reference: what JavaScript's startsWith says.
      expect(byPrefix(prefix), JSON.stringify(prefix)).toEqual(ids.filter(id => id.startsWith(prefix)).sort())
    }
    expect(prefixRange('a\uDC00b')).toBeUndefined()
    expect(byPrefix('a\uDC00')).toEqual([])
  })

  it('deleteJob removes the job, its events and its logs, and no other job\'s', () => {
    const store = open()
    for (const id of ['gone', 'kept']) {
      store.putJob(job(id, 1))
      store.appendEvent(id, { atMs: 1, type: 'created' })
      store.appendLog(id, chunk(1, `${id} output`))
    }
    store.putRunning({ jobId: 'gone', epoch: 1, owner: 'o', spec: { image: 'x' } })
    store.deleteJob('gone')

    expect(store.getJob('gone')).toBeUndefined()
    expect(store.events('gone')).toEqual([])
    expect(store.readLogs('gone')).toEqual([])
    // A container this agent runs must stay findable until it is stopped.
    expect(store.listRunning().map(r => r.jobId)).toEqual(['gone'])
    expect(store.getJob('kept')).toBeDefined()
    expect(store.events('kept')).toHaveLength(1)
    expect(store.readLogs('kept')).toHaveLength(1)

    // Log seqs restart after deletion; nothing of the old job leaks into the new one.
    expect(store.appendLog('gone', chunk(1, 'fresh'))).toBe(1)
    store.deleteJob('never-existed')
  })
})

describe('deleteFinishedJobs (history retention)', () => {
  function history (store: Store): void {
    const rows: Array<[string, JobRecord['state'], number, number]> = [
      ['old-succeeded', 'succeeded', 10, 20],
      ['old-failed', 'failed', 11, 21],
      ['old-cancelled', 'cancelled', 12, 22],
      ['old-but-changed-late', 'succeeded', 13, 500], // created long ago, finished recently
      ['old-pending', 'pending', 14, 24],
      ['old-running', 'running', 15, 25],
      ['old-scheduled', 'scheduled', 16, 26],
      ['new-succeeded', 'succeeded', 600, 610]
    ]
    for (const [id, state, createdAtMs, updatedAtMs] of rows) {
      store.putJob(job(id, createdAtMs, { state, updatedAtMs }))
      store.appendEvent(id, { atMs: createdAtMs, type: 'created' })
      store.appendLog(id, chunk(1, `${id} output`))
    }
  }

  it('deletes finished jobs last changed before the cutoff, with their events and logs; never a live one', () => {
    const store = open()
    history(store)
    expect(store.deleteFinishedJobs({ beforeMs: 100, limit: 1000 })).toBe(3)
    for (const id of ['old-succeeded', 'old-failed', 'old-cancelled']) {
      expect(store.getJob(id)).toBeUndefined()
      expect(store.events(id)).toEqual([])
      expect(store.readLogs(id)).toEqual([])
    }
    const left = store.listJobs({ limit: 100 }).map(j => j.id).sort()
    expect(left).toEqual(['new-succeeded', 'old-but-changed-late', 'old-pending', 'old-running', 'old-scheduled'])
    for (const id of left) expect(store.readLogs(id)).toHaveLength(1)
    expect(store.deleteFinishedJobs({ beforeMs: 100, limit: 1000 })).toBe(0)
  })

  it('deletes at most limit per call, so a long history goes in short transactions', () => {
    const store = open()
    history(store)
    expect(store.deleteFinishedJobs({ beforeMs: 100, limit: 2 })).toBe(2)
    expect(store.deleteFinishedJobs({ beforeMs: 100, limit: 2 })).toBe(1)
    expect(store.deleteFinishedJobs({ beforeMs: 100, limit: 0 })).toBe(0)
  })

  it.each([
    [{ beforeMs: Number.NaN, limit: 1 }],
    [{ beforeMs: 100, limit: -1 }],
    [{ beforeMs: 100, limit: 1.5 }]
  ])('refuses %j and deletes nothing', (options) => {
    const store = open()
    history(store)
    expect(() => store.deleteFinishedJobs(options)).toThrow(RangeError)
    expect(store.listJobs({ limit: 100 })).toHaveLength(8)
  })
})

describe('events', () => {
  it('returns a job\'s events in append order, separate per job', () => {
    const store = open()
    store.appendEvent('j1', { atMs: 30, type: 'created' })
    store.appendEvent('j2', { atMs: 10, type: 'created' })
    // Deliberately out of time order: order is append order, not atMs.
    store.appendEvent('j1', { atMs: 20, type: 'awarded', epoch: 1, node: 'n1' })
    store.appendEvent('j1', { atMs: 40, type: 'exited', epoch: 1, node: 'n1', detail: 'exit code 0' })
    expect(store.events('j1')).toEqual([
      { atMs: 30, type: 'created' },
      { atMs: 20, type: 'awarded', epoch: 1, node: 'n1' },
      { atMs: 40, type: 'exited', epoch: 1, node: 'n1', detail: 'exit code 0' }
    ])
    expect(store.events('j2')).toEqual([{ atMs: 10, type: 'created' }])
    expect(store.events('none')).toEqual([])
    expect(['j1', 'j2', 'none'].map(id => store.eventCount(id))).toEqual([3, 1, 0])
  })
})

describe('logs', () => {
  it('numbers chunks 1, 2, 3... per job and reads them oldest first', () => {
    const store = open()
    expect(store.appendLog('a', chunk(1, 'one\n'))).toBe(1)
    expect(store.appendLog('b', chunk(1, 'other'))).toBe(1)
    expect(store.appendLog('a', chunk(1, 'oops\n', 'stderr'))).toBe(2)
    // seqs run on across attempts: a reader following the log does not restart
    expect(store.appendLog('a', chunk(2, 'two\n'))).toBe(3)
    expect(store.readLogs('a')).toEqual([
      { seq: 1, epoch: 1, stream: 'stdout', atMs: 1004, data: 'one\n' },
      { seq: 2, epoch: 1, stream: 'stderr', atMs: 1005, data: 'oops\n' },
      { seq: 3, epoch: 2, stream: 'stdout', atMs: 1004, data: 'two\n' }
    ])
  })

  it('honours afterSeq and limit', () => {
    const store = open()
    for (let i = 1; i <= 10; i++) store.appendLog('a', chunk(1, `line ${i}`))
    const seqs = (opts: { afterSeq?: number, limit?: number }): number[] => store.readLogs('a', opts).map(c => c.seq)
    expect(seqs({ afterSeq: 7 })).toEqual([8, 9, 10])
    expect(seqs({ limit: 3 })).toEqual([1, 2, 3])
    expect(seqs({ afterSeq: 4, limit: 2 })).toEqual([5, 6])
    expect(seqs({ afterSeq: 10 })).toEqual([])
    expect(seqs({ limit: 0 })).toEqual([])
    expect(store.readLogs('a', { afterSeq: 2, limit: 1 })[0].data).toBe('line 3')
  })

  it('applies the default limit of 10000', () => {
    const store = open()
    store.transaction(() => {
      for (let i = 0; i < 10_005; i++) store.appendLog('big', chunk(1, 'x'))
    })
    const read = store.readLogs('big')
    expect(read).toHaveLength(10_000)
    expect(read.at(-1)!.seq).toBe(10_000)
    expect(store.readLogs('big', { afterSeq: 10_000 }).map(c => c.seq)).toEqual([10_001, 10_002, 10_003, 10_004, 10_005])
  })

  it('keeps NUL and non-ASCII text, and replaces lone surrogates with U+FFFD', () => {
    const store = open()
    store.appendLog('t', chunk(1, 'a\u0000b ✓ 😀'))
    store.appendLog('t', chunk(1, 'x\uD800y'))
    expect(store.readLogs('t').map(c => c.data)).toEqual(['a\u0000b ✓ 😀', 'x\uFFFDy'])
  })

  it('rejects a malformed chunk without consuming a seq', () => {
    const store = open()
    expect(() => store.appendLog('a', { epoch: 1, stream: 'stdin' as 'stdout', atMs: 1, data: 'x' })).toThrow(StoreInvalidRecordError)
    expect(() => store.appendLog('a', { epoch: 1, stream: 'stdout', atMs: 1, data: 42 as unknown as string })).toThrow(StoreInvalidRecordError)
    expect(() => store.appendLog('', chunk(1, 'x'))).toThrow(StoreInvalidRecordError)
    expect(store.appendLog('a', chunk(1, 'ok'))).toBe(1)
  })

  it('property: for any interleaving of appends across jobs, each job reads back its chunks in order with seqs 1..n', () => {
    const jobIds = ['j1', 'j2', 'j%_', 'J1']
    const append = fc.record({
      jobId: fc.constantFrom(...jobIds),
      epoch: fc.integer({ min: 0, max: 5 }),
      stream: fc.constantFrom<LogChunk['stream']>('stdout', 'stderr'),
      atMs: fc.integer({ min: 0, max: 2 ** 45 }),
      data: fc.string({ unit: 'binary', maxLength: 40 })
    })
    fc.assert(
      fc.property(fc.array(append, { maxLength: 60 }), fc.nat({ max: 70 }), fc.nat({ max: 70 }), (appends, afterSeq, limit) => {
        const store = openSqliteStore({ path: ':memory:' })
        try {
          const model = new Map<string, LogChunk[]>(jobIds.map(id => [id, []]))
          for (const { jobId, ...c } of appends) {
            const expected = model.get(jobId)!
            const seq = store.appendLog(jobId, c)
            expect(seq).toBe(expected.length + 1)
            expected.push({ seq, ...c })
          }
          for (const [jobId, expected] of model) {
            const got = store.readLogs(jobId)
            expect(got.map(c => c.seq)).toEqual(expected.map((_, i) => i + 1))
            expect(got).toEqual(expected)
            expect(store.readLogs(jobId, { afterSeq, limit })).toEqual(expected.filter(c => c.seq > afterSeq).slice(0, limit))
          }
        } finally {
          store.close()
        }
      }),
      { numRuns: 150 }
    )
  })
})

describe('running attempts', () => {
  it('puts, replaces, lists and deletes by (job, epoch)', () => {
    const store = open()
    const a1 = { jobId: 'a', epoch: 1, owner: 'o1', containerId: 'c-a1', spec: { image: 'x', command: ['true'] }, startedAtMs: 5 }
    const a2 = { jobId: 'a', epoch: 2, owner: 'o1', spec: { image: 'x' } }
    const b1 = { jobId: 'b', epoch: 1, owner: 'o2', spec: null }
    store.putRunning(b1)
    store.putRunning(a2)
    store.putRunning(a1)
    expect(store.listRunning()).toEqual([a1, a2, b1])

    const a2started = { ...a2, containerId: 'c-a2', startedAtMs: 9 }
    store.putRunning(a2started)
    expect(store.listRunning()).toEqual([a1, a2started, b1])

    store.deleteRunning('a', 1)
    store.deleteRunning('a', 7) // absent: a no-op
    expect(store.listRunning()).toEqual([a2started, b1])
  })
})

describe('meta', () => {
  it('gets, sets and overwrites string values', () => {
    const store = open()
    expect(store.getMeta('advertSeq')).toBeUndefined()
    store.setMeta('advertSeq', '1')
    store.setMeta('advertSeq', '2')
    store.setMeta('empty', '')
    expect(store.getMeta('advertSeq')).toBe('2')
    expect(store.getMeta('empty')).toBe('')
  })
})

describe('transactions', () => {
  it('rolls back everything when fn throws', () => {
    const store = open()
    store.putJob(job('before', 1))
    const boom = new Error('boom')
    expect(() => store.transaction(() => {
      store.putJob(job('inside', 2))
      store.putJob(job('before', 1, { state: 'running' }))
      store.appendEvent('inside', { atMs: 1, type: 'created' })
      store.appendLog('inside', chunk(1, 'x'))
      store.putRunning({ jobId: 'inside', epoch: 1, owner: 'o', spec: {} })
      store.setMeta('k', 'v')
      store.deleteJob('before')
      throw boom
    })).toThrow(boom)

    expect(store.getJob('inside')).toBeUndefined()
    expect(store.getJob('before')!.state).toBe('pending')
    expect(store.events('inside')).toEqual([])
    expect(store.readLogs('inside')).toEqual([])
    expect(store.listRunning()).toEqual([])
    expect(store.getMeta('k')).toBeUndefined()
    // The seq taken inside the rolled-back transaction is free again.
    expect(store.appendLog('inside', chunk(1, 'y'))).toBe(1)
  })

  it('commits and returns fn\'s value; nests', () => {
    const store = open()
    const result = store.transaction(() => {
      store.putJob(job('a', 1))
      try {
        store.transaction(() => {
          store.putJob(job('b', 2))
          throw new Error('inner')
        })
      } catch {}
      return store.appendLog('a', chunk(1, 'x'))
    })
    expect(result).toBe(1)
    expect(store.getJob('a')).toBeDefined()
    // the inner transaction rolled back on its own; the outer one committed
    expect(store.getJob('b')).toBeUndefined()
  })

  it('refuses an async fn, whose awaited part would run outside the transaction', () => {
    const store = open()
    expect(() => store.transaction((async () => { store.putJob(job('a', 1)) }) as () => unknown)).toThrow(TypeError)
    expect(store.getJob('a')).toBeUndefined()
  })
})

describe('bad input', () => {
  it('throws a named error and writes nothing when a record cannot be encoded', () => {
    const store = open()
    store.putJob(job('x', 1))
    const cyclic = job('x', 1, { state: 'running' }) as JobRecord & { self?: unknown }
    cyclic.self = cyclic
    const err = (() => { try { store.putJob(cyclic) } catch (e) { return e } })()
    expect(err).toBeInstanceOf(StoreInvalidRecordError)
    expect(err).toMatchObject({ name: 'StoreInvalidRecordError', code: 'ERR_STORE_INVALID_RECORD' })
    expect((err as Error).cause).toBeDefined()
    expect(store.getJob('x')!.state).toBe('pending')

    const huge = job('y', 1, { spec: { ...job('y', 1).spec, extra: 2n ** 70n } as unknown as JobRecord['spec'] })
    expect(() => store.putJob(huge)).toThrow(StoreInvalidRecordError)
    expect(store.getJob('y')).toBeUndefined()

    expect(() => store.appendEvent('x', { atMs: 1, type: 't', detail: Symbol('s') as unknown as string })).toThrow(StoreInvalidRecordError)
    expect(store.events('x')).toEqual([])
    expect(() => store.putRunning({ jobId: 'x', epoch: 1, owner: 'o', spec: { n: 2n ** 70n } })).toThrow(StoreInvalidRecordError)
    expect(store.listRunning()).toEqual([])

    // the encoder is usable again after a failure
    store.putJob(job('z', 3))
    expect(store.getJob('z')!.id).toBe('z')
  })

  it('rejects records whose key fields are missing or of the wrong type', () => {
    const store = open()
    const bad: unknown[] = [
      null,
      job('', 1),
      { ...job('a', 1), id: 7 },
      { ...job('a', 1), state: undefined },
      { ...job('a', 1), createdAtMs: Number.NaN },
      { ...job('a', 1), updatedAtMs: '5' },
      job('a\uD800', 1)
    ]
    for (const b of bad) expect(() => store.putJob(b as JobRecord), JSON.stringify(b)).toThrow(StoreInvalidRecordError)
    expect(() => store.appendEvent('a', { atMs: 1 } as never)).toThrow(StoreInvalidRecordError)
    expect(() => store.putRunning({ jobId: 'a', epoch: 1.5, owner: 'o', spec: {} })).toThrow(StoreInvalidRecordError)
    expect(() => store.setMeta('k', 5 as unknown as string)).toThrow(StoreInvalidRecordError)
    expect(store.listJobs()).toEqual([])
  })
})

describe('corrupt rows', () => {
  function corrupt (sql: string, ...params: unknown[]): Store {
    const path = join(tempDir(), 'agent.db')
    const store = openSqliteStore({ path })
    store.putJob(job('j', 1))
    store.appendEvent('j', { atMs: 1, type: 'created' })
    store.putRunning({ jobId: 'j', epoch: 1, owner: 'o', spec: {} })
    store.close()
    const db = new Database(path)
    db.prepare(sql).run(...params)
    db.close()
    return open(path)
  }

  function caught (fn: () => unknown): unknown {
    try { fn() } catch (e) { return e }
    throw new Error('expected a throw')
  }

  it('throws StoreCorruptError with the decoder error as cause for an undecodable job blob', () => {
    const store = corrupt('UPDATE jobs SET record = ?', Buffer.from('garbage'))
    const err = caught(() => store.getJob('j'))
    expect(err).toBeInstanceOf(StoreCorruptError)
    expect(err).toMatchObject({ name: 'StoreCorruptError', code: 'ERR_STORE_CORRUPT', table: 'jobs', key: 'j' })
    expect((err as Error).cause).toBeInstanceOf(Error)
    expect(() => store.listJobs()).toThrow(StoreCorruptError)
  })

  it('throws StoreCorruptError for a blob that decodes to something other than the job', () => {
    for (const blob of [Buffer.from([0xc1]), pack(42), pack({ ...job('other', 1) }), Buffer.alloc(0)]) {
      const store = corrupt('UPDATE jobs SET record = ?', blob)
      expect(() => store.getJob('j'), blob.toString('hex')).toThrow(StoreCorruptError)
    }
    const store = corrupt("UPDATE jobs SET record = 'text, not a blob'")
    expect(() => store.getJob('j')).toThrow(StoreCorruptError)
  })

  it('throws StoreCorruptError for corrupt events and running rows', () => {
    expect(() => corrupt('UPDATE events SET record = ?', Buffer.from([0xd9, 0xff])).events('j')).toThrow(StoreCorruptError)
    expect(() => corrupt('UPDATE events SET record = ?', pack('str')).events('j')).toThrow(StoreCorruptError)
    expect(() => corrupt('UPDATE running SET record = ?', Buffer.from('zz')).listRunning()).toThrow(StoreCorruptError)
    expect(() => corrupt('UPDATE running SET epoch = 2').listRunning()).toThrow(StoreCorruptError)
  })
})

describe('admissions (the replay guard\'s book)', () => {
  it('keeps one entry per key, whose epoch a later put sets (its creation time stays), and reports the count and the oldest', () => {
    const store = open()
    expect(store.admissionStats()).toEqual({ count: 0, oldestCreatedAtMs: undefined })
    expect(store.oldestAdmission()).toBeUndefined()
    expect(store.getAdmission('a')).toBeUndefined()
    store.putAdmission('a', { createdAtMs: 10, epoch: 0 })
    store.putAdmission('b', { createdAtMs: 5, epoch: -1 })
    store.putAdmission('a', { createdAtMs: 99, epoch: 3 })
    expect(store.getAdmission('a')).toEqual({ createdAtMs: 10, epoch: 3 })
    expect(store.oldestAdmission()).toBe(5)
    expect(store.getAdmission('b')).toEqual({ createdAtMs: 5, epoch: -1 })
    expect(store.admissionStats()).toEqual({ count: 2, oldestCreatedAtMs: 5 })
  })

  it('deletes entries created before a time, oldest first, at most limit at a time', () => {
    const store = open()
    for (const [k, t] of [['c', 30], ['a', 10], ['d', 40], ['b', 20]] as const) store.putAdmission(k, { createdAtMs: t, epoch: 0 })
    expect(store.deleteAdmissionsBefore({ beforeMs: 35, limit: 2 })).toBe(2)
    expect([store.getAdmission('a'), store.getAdmission('b')]).toEqual([undefined, undefined])
    expect(store.deleteAdmissionsBefore({ beforeMs: 35, limit: 0 })).toBe(0)
    expect(store.deleteAdmissionsBefore({ beforeMs: 35, limit: 10 })).toBe(1)
    expect(store.admissionStats()).toEqual({ count: 1, oldestCreatedAtMs: 40 })
    expect(() => store.deleteAdmissionsBefore({ beforeMs: NaN, limit: 1 })).toThrow(RangeError)
    expect(() => store.deleteAdmissionsBefore({ beforeMs: 1, limit: -1 })).toThrow(RangeError)
  })

  it.each([
    ['an empty key', '', { createdAtMs: 1, epoch: 0 }],
    ['a key with a lone surrogate', 'a\uD800', { createdAtMs: 1, epoch: 0 }],
    ['a fractional epoch', 'k', { createdAtMs: 1, epoch: 0.5 }],
    ['a non-finite creation time', 'k', { createdAtMs: Infinity, epoch: 0 }],
    ['no entry', 'k', undefined]
  ])('refuses %s and writes nothing', (_name, key, admission) => {
    const store = open()
    let thrown: unknown
    try { store.putAdmission(key, admission as any) } catch (err) { thrown = err }
    expect(thrown).toBeInstanceOf(StoreInvalidRecordError)
    expect(store.admissionStats().count).toBe(0)
  })
})

describe('schema and lifecycle', () => {
  it('creates parent directories, leaves the file in WAL mode, and records the schema version', () => {
    const path = join(tempDir(), 'nested', 'deeper', 'agent.db')
    open(path).close()
    expect(existsSync(path)).toBe(true)
    const db = new Database(path)
    try {
      expect(db.pragma('journal_mode', { simple: true })).toBe('wal')
      expect(db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION)
    } finally {
      db.close()
    }
    // synchronous is a per-connection setting, invisible from another connection; the
    // durability and sync tests below cover what it is for.
  })

  it('applies appended migrations in order, once, and keeps data across reopen', () => {
    const path = join(tempDir(), 'agent.db')
    const store = open(path)
    store.putJob(job('keep', 1))
    store.close()

    const applied: number[] = []
    const next = [
      ...MIGRATIONS,
      { version: SCHEMA_VERSION + 1, description: 'test: add a table', up: (db: Database.Database) => { applied.push(SCHEMA_VERSION + 1); db.exec('CREATE TABLE t2 (x)') } },
      { version: SCHEMA_VERSION + 2, description: 'test: use it', up: (db: Database.Database) => { applied.push(SCHEMA_VERSION + 2); db.exec('INSERT INTO t2 VALUES (1)') } }
    ]
    const db = new Database(path)
    try {
      expect(migrate(db, next)).toBe(SCHEMA_VERSION + 2)
      expect(migrate(db, next)).toBe(SCHEMA_VERSION + 2)
      expect(applied).toEqual([SCHEMA_VERSION + 1, SCHEMA_VERSION + 2])
      expect(db.prepare('SELECT x FROM t2').pluck().all()).toEqual([1])
      expect(() => migrate(db, [next[0], next[2]])).toThrow(/versions must be/)
      // this build only knows up to SCHEMA_VERSION; the file is now two past it
      expect(() => migrate(db)).toThrow(StoreVersionError)
    } finally {
      db.close()
    }
    expect(() => openSqliteStore({ path })).toThrow(StoreVersionError)
  })

  it('rolls back a migration that fails, leaving the version where it was', () => {
    const db = new Database(':memory:')
    try {
      migrate(db)
      const failing = [...MIGRATIONS, { version: SCHEMA_VERSION + 1, description: 'fails', up: (d: Database.Database) => { d.exec('CREATE TABLE half (x)'); throw new Error('nope') } }]
      expect(() => migrate(db, failing)).toThrow('nope')
      expect(db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION)
      expect(db.prepare("SELECT name FROM sqlite_master WHERE name = 'half'").get()).toBeUndefined()
    } finally {
      db.close()
    }
  })

  it('a file written by the first schema is brought up to date with its jobs kept, and gains the admissions book', () => {
    const path = join(tempDir(), 'agent.db')
    const db = new Database(path)
    try {
      expect(migrate(db, MIGRATIONS.slice(0, 1))).toBe(1)
    } finally {
      db.close()
    }
    // a job row as a version-1 build wrote it
    const raw = new Database(path)
    try {
      raw.prepare('INSERT INTO jobs (id, state, created_at_ms, updated_at_ms, record) VALUES (?, ?, ?, ?, ?)').run('old', 'succeeded', 1, 2, pack(job('old', 1)))
    } finally {
      raw.close()
    }
    const store = open(path)
    try {
      expect(store.getJob('old')?.id).toBe('old')
      store.putAdmission('k', { createdAtMs: 5, epoch: 0 })
      expect(store.getAdmission('k')).toEqual({ createdAtMs: 5, epoch: 0 })
    } finally {
      store.close()
    }
  })

  it('close() is idempotent and later calls throw StoreClosedError', () => {
    const store = open()
    store.close()
    store.close()
    expect(() => store.getJob('a')).toThrow(StoreClosedError)
    expect(() => store.putJob(job('a', 1))).toThrow(StoreClosedError)
    expect(() => store.transaction(() => 1)).toThrow(StoreClosedError)
  })
})

describe('durability', () => {
  it('a job whose putJob returned survives SIGKILL of the writing process', () => {
    const path = join(tempDir(), 'state', 'agent.db')
    // The parent writes first and closes cleanly, so the child reopens an existing file.
    const first = open(path)
    first.putJob(job('parent', 1))
    first.close()

    const survivor = fullJob()
    survivor.id = 'child'
    // The child is killed immediately after putJob returns: no close(), no checkpoint, no
    // exit handlers. (SIGKILL only proves the commit happened before returning; surviving
    // power loss additionally relies on sync()'s flush of the WAL, which a test cannot cut.)
    const script = [
      `import { openSqliteStore } from ${JSON.stringify(storeModule)}`,
      `const store = openSqliteStore({ path: ${JSON.stringify(path)} })`,
      `store.putJob(${JSON.stringify(survivor)})`,
      "process.kill(process.pid, 'SIGKILL')"
    ].join('\n')
    const child = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: projectRoot,
      encoding: 'utf8',
      timeout: 25_000
    })
    // Killed by its own SIGKILL means putJob returned; an exception would exit with code 1.
    expect(child.signal, child.stderr).toBe('SIGKILL')
    // The commit is only in the write-ahead log; reopening must recover it from there.
    expect(existsSync(`${path}-wal`)).toBe(true)

    const reopened = open(path)
    expect(reopened.getJob('child')).toEqual(survivor)
    expect(reopened.getJob('parent')).toEqual(job('parent', 1))
    expect(reopened.listJobs().map(j => j.id)).toEqual(['child', 'parent'])
  })
})

describe('sync', () => {
  /** a store whose WAL flushes are counted (and can be held back) */
  function counted (name: string): { store: Store, flushes: () => number, hold: () => () => void } {
    let n = 0
    let gate: Promise<void> | undefined
    const store = openSqliteStore({
      path: join(tempDir(), name),
      flushFile: async fd => { n++; if (gate !== undefined) await gate; fdatasyncSync(fd) }
    })
    openStores.push(store)
    return {
      store,
      flushes: () => n,
      hold: () => { let release!: () => void; gate = new Promise(resolve => { release = resolve }); return () => { gate = undefined; release() } }
    }
  }

  it('flushes once for all the commits of a tick, and not at all when nothing changed', async () => {
    const { store, flushes } = counted('sync.db')
    store.putJob(job('1m8sync', 999))
    await store.sync()
    const before = flushes()
    expect(before).toBeGreaterThan(0)
    await store.sync() // nothing written since: no flush
    expect(flushes()).toBe(before)
    for (let i = 0; i < 5; i++) store.putJob(job(`1m8sync${i}`, 1000 + i))
    await Promise.all(Array.from({ length: 10 }, async () => await store.sync()))
    expect(flushes()).toBe(before + 1)
  })

  it('a commit made while a flush is in flight waits for a flush of its own, started after that one', async () => {
    const { store, flushes, hold } = counted('sync2.db')
    store.putJob(job('1m8synca', 1000))
    await store.sync()
    const base = flushes()
    const release = hold()
    store.putJob(job('1m8syncb', 1001))
    let firstDone = false
    const first = store.sync().then(() => { firstDone = true })
    await new Promise(resolve => setImmediate(resolve))
    await new Promise(resolve => setImmediate(resolve))
    expect(flushes()).toBe(base + 1) // in flight, held
    // Committed after that flush started: it does not cover this one.
    store.putJob(job('1m8syncc', 1002))
    let secondDone = false
    const second = store.sync().then(() => { secondDone = true })
    // Another caller in the same tick shares that queued flush.
    const joined = store.sync()
    await new Promise(resolve => setImmediate(resolve))
    expect(firstDone || secondDone).toBe(false)
    expect(flushes()).toBe(base + 1) // one flush at a time
    release()
    await first
    await joined
    await second
    expect(flushes()).toBe(base + 2)
  })

  it('a failed flush fails its callers and every later sync, until the store is reopened', async () => {
    let n = 0
    const path = join(tempDir(), 'sync4.db')
    const store = openSqliteStore({ path, flushFile: async () => { n++; throw Object.assign(new Error('EIO'), { code: 'EIO' }) } })
    openStores.push(store)
    store.putJob(job('1m8syncd', 1000))
    await expect(store.sync()).rejects.toMatchObject({ name: 'StoreFlushError', code: StoreFlushError.code, cause: { code: 'EIO' } })
    // After a failed fdatasync the kernel may have dropped the pages: a later flush that
    // succeeded would prove nothing about these commits.
    store.putJob(job('1m8synce', 1001))
    await expect(store.sync()).rejects.toBeInstanceOf(StoreFlushError)
    expect(n).toBe(1)
    store.close()
    const reopened = open(path)
    expect(reopened.getJob('1m8syncd')?.id).toBe('1m8syncd')
    await reopened.sync()
  })

  it('flushes the WAL beside the real file when the database path is a symlink', async () => {
    const dir = tempDir()
    mkdirSync(join(dir, 'real'))
    const flushed: string[] = []
    const target = join(dir, 'real', 'agent.db')
    open(target).close()
    symlinkSync(target, join(dir, 'link.db'))
    const store = openSqliteStore({ path: join(dir, 'link.db'), flushFile: async fd => { flushed.push(readlinkSync(`/proc/self/fd/${fd}`)); fdatasyncSync(fd) } })
    openStores.push(store)
    store.putJob(job('1m8syncf', 1000))
    await store.sync()
    expect(flushed).toEqual([`${realpathSync(target)}-wal`, realpathSync(join(dir, 'real'))])
  })

  it('resolves after close without touching the closed database', async () => {
    const store = open(join(tempDir(), 'sync3.db'))
    store.putJob(job('1m8syncc', 1000))
    const pending = store.sync()
    store.close()
    await expect(pending).resolves.toBeUndefined()
  })
})
