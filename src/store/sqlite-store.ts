// The Store on better-sqlite3. One file per agent; records are msgpackr-encoded blobs so
// the stored form is exactly what travels between agents, while the few fields queries
// need (state, creation time, sequence numbers) live in their own columns.
import { closeSync, existsSync, fdatasync, mkdirSync, openSync, realpathSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import Database from 'better-sqlite3'
import { pack, unpack } from 'msgpackr'
import { type JobEvent, type JobRecord, type LogChunk, TERMINAL_STATES } from '../protocol/job.ts'
import type { Admission, RunningAttempt, Store } from './store.ts'
import { StoreClosedError, StoreCorruptError, StoreFlushError, StoreInvalidRecordError, StoreVersionError } from './errors.ts'

export interface SqliteStoreInit {
  /** File path, or ':memory:' for a throwaway store (tests). */
  path: string
  /** Flushes one open file to stable storage; sync() calls it for the write-ahead log (and
   *  once for its directory). Default: fdatasync(2) on libuv's thread pool, so the event loop
   *  goes on while the disk works. Tests pass a counting wrapper. */
  flushFile?: (fd: number) => Promise<void>
}

function fdatasyncAsync (fd: number): Promise<void> {
  return new Promise((resolve, reject) => { fdatasync(fd, err => { if (err === null) resolve(); else reject(err) }) })
}

type Db = Database.Database

/** How long a statement waits for another connection's lock before failing with SQLITE_BUSY. */
const BUSY_TIMEOUT_MS = 5000
const DEFAULT_LIST_LIMIT = 1000
const DEFAULT_LOG_LIMIT = 10_000

export interface Migration {
  /** 1-based and contiguous: migration n moves the schema from version n-1 to n. */
  version: number
  description: string
  up (db: Db): void
}

/**
 * The schema's history. Append only: a released migration is never edited, because
 * databases in the field have already run it and would not run it again.
 */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'jobs, events, logs, running attempts, meta',
    up (db) {
      // No foreign keys from events/logs/running to jobs, on purpose: an executor stores
      // the output of attempts for jobs another agent owns (it may never hold the job
      // record), and a replica may hear of events before the record arrives. deleteJob
      // removes the dependent rows explicitly instead.
      //
      // The indexes carry (created_at_ms, id) after their leading column so listJobs'
      // ORDER BY created_at_ms DESC, id DESC can walk an index backwards and stop at
      // LIMIT, rather than sorting every matching job.
      db.exec(`
        CREATE TABLE jobs (
          id TEXT PRIMARY KEY NOT NULL,
          state TEXT NOT NULL,
          created_at_ms INTEGER NOT NULL,
          updated_at_ms INTEGER NOT NULL,
          record BLOB NOT NULL
        );
        CREATE INDEX jobs_state ON jobs (state, created_at_ms, id);
        CREATE INDEX jobs_created ON jobs (created_at_ms, id);

        CREATE TABLE events (
          seq INTEGER PRIMARY KEY AUTOINCREMENT,
          job_id TEXT NOT NULL,
          record BLOB NOT NULL
        );
        CREATE INDEX events_job ON events (job_id, seq);

        CREATE TABLE logs (
          job_id TEXT NOT NULL,
          seq INTEGER NOT NULL,
          epoch INTEGER NOT NULL,
          stream TEXT NOT NULL CHECK (stream IN ('stdout', 'stderr')),
          at_ms INTEGER NOT NULL,
          data TEXT NOT NULL,
          PRIMARY KEY (job_id, seq)
        );

        CREATE TABLE running (
          job_id TEXT NOT NULL,
          epoch INTEGER NOT NULL,
          record BLOB NOT NULL,
          PRIMARY KEY (job_id, epoch)
        );

        CREATE TABLE meta (
          key TEXT PRIMARY KEY NOT NULL,
          value TEXT NOT NULL
        );
      `)
    }
  },
  {
    version: 2,
    description: 'admissions: the executor replay guard\'s book',
    up (db) {
      // One row per (job, nonce) an executor admitted an award of: the highest epoch
      // admitted and the job's creation time, by which the row expires (src/agent/signing.ts).
      // On disk rather than in memory so that a restarted executor still refuses an award it
      // ran before, and so that the book can hold a week of awards without holding the RAM.
      // WITHOUT ROWID: the key is the table's only lookup, so the rows live in its b-tree.
      db.exec(`
        CREATE TABLE admissions (
          key TEXT PRIMARY KEY NOT NULL,
          created_at_ms INTEGER NOT NULL,
          epoch INTEGER NOT NULL
        ) WITHOUT ROWID;
        CREATE INDEX admissions_created ON admissions (created_at_ms);
      `)
    }
  }
]

/** The schema version this build writes. */
export const SCHEMA_VERSION = MIGRATIONS.length

/**
 * Brings the database up to the newest migration in `migrations`. The schema version is
 * SQLite's user_version header field: it is written inside the same transaction as the
 * migration's DDL, so a crash leaves either the old schema and old version or both new.
 * Returns the resulting version.
 */
export function migrate (db: Db, migrations: readonly Migration[] = MIGRATIONS): number {
  migrations.forEach((m, i) => {
    if (m.version !== i + 1) throw new Error(`migration at index ${i} has version ${m.version}; versions must be 1, 2, 3, ...`)
  })
  const latest = migrations.length
  const readVersion = (): number => db.pragma('user_version', { simple: true }) as number

  for (const m of migrations) {
    // IMMEDIATE takes the write lock before reading the version, so two processes opening
    // the same file at once cannot both decide to run the same migration.
    db.transaction(() => {
      const current = readVersion()
      if (current > latest) throw new StoreVersionError(current, latest)
      if (current >= m.version) return
      m.up(db)
      db.pragma(`user_version = ${m.version}`)
    }).immediate()
  }
  const found = readVersion()
  if (found > latest) throw new StoreVersionError(found, latest)
  return found
}

export function openSqliteStore (init: SqliteStoreInit): Store {
  return new SqliteStore(init.path, init.flushFile ?? fdatasyncAsync)
}

// Row shapes as better-sqlite3 returns them.
interface JobRow { id: string, record: unknown }
interface EventRow { seq: number, record: unknown }
interface RunningRow { job_id: string, epoch: number, record: unknown }
interface LogRow { seq: number, epoch: number, stream: LogChunk['stream'], at_ms: number, data: string }

// Prepared once per store: preparing parses and plans the SQL, which costs more than
// running these small statements.
function prepareStatements (db: Db) {
  return {
    putJob: db.prepare<[string, string, number, number, Buffer]>(`
      INSERT INTO jobs (id, state, created_at_ms, updated_at_ms, record) VALUES (?, ?, ?, ?, ?)
      ON CONFLICT (id) DO UPDATE SET
        state = excluded.state, created_at_ms = excluded.created_at_ms,
        updated_at_ms = excluded.updated_at_ms, record = excluded.record`),
    getJob: db.prepare<[string], JobRow>('SELECT id, record FROM jobs WHERE id = ?'),
    deleteJob: db.prepare<[string]>('DELETE FROM jobs WHERE id = ?'),
    // jobs_state (state, created_at_ms, id) narrows to old jobs of one state; a job is last
    // changed after it was created, so updated_at_ms only filters what the index found.
    oldFinished: db.prepare<[string, number, number, number], string>(
      'SELECT id FROM jobs WHERE state = ? AND created_at_ms < ? AND updated_at_ms < ? LIMIT ?').pluck(),
    deleteEvents: db.prepare<[string]>('DELETE FROM events WHERE job_id = ?'),
    deleteLogs: db.prepare<[string]>('DELETE FROM logs WHERE job_id = ?'),
    appendEvent: db.prepare<[string, Buffer]>('INSERT INTO events (job_id, record) VALUES (?, ?)'),
    events: db.prepare<[string, number, number], EventRow>('SELECT seq, record FROM events WHERE job_id = ? ORDER BY seq LIMIT ? OFFSET ?'),
    eventCount: db.prepare<[string], number>('SELECT count(*) FROM events WHERE job_id = ?').pluck(),
    nextLogSeq: db.prepare<[string], number>('SELECT COALESCE(MAX(seq), 0) + 1 FROM logs WHERE job_id = ?').pluck(),
    appendLog: db.prepare<[string, number, number, string, number, string]>(
      'INSERT INTO logs (job_id, seq, epoch, stream, at_ms, data) VALUES (?, ?, ?, ?, ?, ?)'),
    readLogs: db.prepare<[string, number, number], LogRow>(
      'SELECT seq, epoch, stream, at_ms, data FROM logs WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?'),
    putRunning: db.prepare<[string, number, Buffer]>(`
      INSERT INTO running (job_id, epoch, record) VALUES (?, ?, ?)
      ON CONFLICT (job_id, epoch) DO UPDATE SET record = excluded.record`),
    deleteRunning: db.prepare<[string, number]>('DELETE FROM running WHERE job_id = ? AND epoch = ?'),
    listRunning: db.prepare<[], RunningRow>('SELECT job_id, epoch, record FROM running ORDER BY job_id, epoch'),
    getAdmission: db.prepare<[string], { created_at_ms: number, epoch: number }>('SELECT created_at_ms, epoch FROM admissions WHERE key = ?'),
    putAdmission: db.prepare<[string, number, number]>(`
      INSERT INTO admissions (key, created_at_ms, epoch) VALUES (?, ?, ?)
      ON CONFLICT (key) DO UPDATE SET epoch = excluded.epoch`),
    // Oldest first, through admissions_created, so a bounded delete removes what expired first.
    deleteAdmissionsBefore: db.prepare<[number, number]>(
      'DELETE FROM admissions WHERE key IN (SELECT key FROM admissions WHERE created_at_ms < ? ORDER BY created_at_ms LIMIT ?)'),
    countAdmissions: db.prepare<[], number>('SELECT count(*) FROM admissions').pluck(),
    oldestAdmission: db.prepare<[], number | null>('SELECT min(created_at_ms) FROM admissions').pluck(),
    getMeta: db.prepare<[string], string>('SELECT value FROM meta WHERE key = ?').pluck(),
    /** rows changed by this connection since it opened: a cheap "anything new?" for sync() */
    totalChanges: db.prepare<[], number>('SELECT total_changes()').pluck(),
    setMeta: db.prepare<[string, string]>(
      'INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value')
  }
}

type ListKey = `${'state' | 'any'}:${'none' | 'range' | 'from'}`

class SqliteStore implements Store {
  private readonly db: Db
  private readonly stmt: ReturnType<typeof prepareStatements>
  private readonly listStmts: Map<ListKey, Database.Statement<[Record<string, unknown>], JobRow>>
  private readonly appendLogTx: Database.Transaction<(jobId: string, chunk: Omit<LogChunk, 'seq'>) => number>
  private readonly deleteJobTx: Database.Transaction<(id: string) => void>
  private readonly deleteFinishedTx: Database.Transaction<(beforeMs: number, limit: number) => number>
  private readonly runInTx: Database.Transaction<(fn: () => unknown) => unknown>

  /** the write-ahead log sync() flushes; undefined when there is none to flush (in memory, or
   *  a file system without WAL, where every commit is synchronous=FULL instead) */
  private readonly walPath: string | undefined
  private walFd: number | undefined
  private dirFlushed = false
  private readonly flushFile: (fd: number) => Promise<void>

  constructor (path: string, flushFile: (fd: number) => Promise<void>) {
    this.flushFile = flushFile
    const memory = path === ':memory:' || path === ''
    if (!memory) mkdirSync(dirname(resolve(path)), { recursive: true })
    const db = new Database(path, { timeout: BUSY_TIMEOUT_MS })
    try {
      // Set before anything that takes a lock (the WAL switch does), so a second process
      // opening the same file waits instead of failing at once.
      db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`)
      // WAL: readers never block the writer and a commit is one sequential append.
      const wal = db.pragma('journal_mode = WAL', { simple: true }) === 'wal'
      // NORMAL: in WAL mode a commit is appended to the WAL without an fsync, so it survives
      // a crash of the process at once but could vanish on power loss until the WAL is
      // flushed. sync() flushes it (fdatasync of the WAL file, off the event loop), and the
      // agent calls it before anything leaves the process that promises a write (an
      // acknowledgement, an award, a reply to a submit). One flush then covers all the
      // commits made before it, where FULL on every commit cost an fsync each, on the event
      // loop: ~3 ms apiece, which capped an owner at ~35 jobs/s (docs/benchmarks.md).
      // Checkpoints stay safe: under NORMAL, SQLite syncs the WAL before a checkpoint and the
      // database file after it, before the WAL is reused.
      // Without WAL (a file system that lacks it keeps the rollback journal), every commit is
      // FULL and sync() has nothing left to do.
      db.pragma(wal ? 'synchronous = NORMAL' : 'synchronous = FULL')
      // Beside the database file itself: SQLite follows a symlinked path to the real file.
      this.walPath = wal && !memory ? `${realpathSync(resolve(path))}-wal` : undefined
      // No table declares a foreign key yet (see migration 1), but later migrations may;
      // SQLite ignores them unless this is on for each connection.
      db.pragma('foreign_keys = ON')
      migrate(db)
    } catch (err) {
      db.close()
      throw err
    }
    this.db = db

    this.stmt = prepareStatements(db)

    // One statement per filter combination, so each gets a plan that uses the right index
    // (a single statement with "(@state IS NULL OR state = @state)" would not).
    this.listStmts = new Map()
    for (const state of ['state', 'any'] as const) {
      for (const prefix of ['none', 'range', 'from'] as const) {
        const where: string[] = []
        if (state === 'state') where.push('state = @state')
        if (prefix !== 'none') where.push('id >= @lower')
        if (prefix === 'range') where.push('id < @upper')
        const sql = `SELECT id, record FROM jobs ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}
          ORDER BY created_at_ms DESC, id DESC LIMIT @limit`
        this.listStmts.set(`${state}:${prefix}`, db.prepare<[Record<string, unknown>], JobRow>(sql))
      }
    }

    // Transactions are called with .immediate(): they take the write lock up front. A
    // deferred transaction that reads and then writes fails with SQLITE_BUSY_SNAPSHOT
    // (which busy_timeout cannot wait out) if another connection committed in between.
    // Inside an outer transaction better-sqlite3 uses a savepoint instead, so these nest.
    this.appendLogTx = db.transaction((jobId: string, chunk: Omit<LogChunk, 'seq'>): number => {
      const seq = this.stmt.nextLogSeq.get(jobId) as number
      this.stmt.appendLog.run(jobId, seq, chunk.epoch, chunk.stream, chunk.atMs, chunk.data)
      return seq
    })
    const deleteJobRows = (id: string): void => {
      this.stmt.deleteJob.run(id)
      this.stmt.deleteEvents.run(id)
      this.stmt.deleteLogs.run(id)
      // Rows in `running` stay: they track containers this agent may still be running,
      // which it must be able to find and stop even after the job record is gone.
    }
    this.deleteJobTx = db.transaction(deleteJobRows)
    this.runInTx = db.transaction((fn: () => unknown) => fn())
    this.deleteFinishedTx = db.transaction((beforeMs: number, limit: number) => {
      let deleted = 0
      for (const state of TERMINAL_STATES) {
        for (const id of this.stmt.oldFinished.all(state, beforeMs, beforeMs, limit - deleted)) {
          deleteJobRows(id)
          deleted++
        }
        if (deleted >= limit) break
      }
      return deleted
    })
  }

  putJob (job: JobRecord): void {
    this.live()
    if (!isObject(job)) throw new StoreInvalidRecordError('job', 'not an object')
    requireId('job', 'id', job.id)
    if (typeof job.state !== 'string' || (job.state as string) === '') throw new StoreInvalidRecordError('job', 'state must be a non-empty string')
    requireWellFormed('job', 'state', job.state)
    requireFinite('job', 'createdAtMs', job.createdAtMs)
    requireFinite('job', 'updatedAtMs', job.updatedAtMs)
    const record = encode('job', job) // before any write, so a failure writes nothing
    this.stmt.putJob.run(job.id, job.state, job.createdAtMs, job.updatedAtMs, record)
  }

  getJob (id: string): JobRecord | undefined {
    this.live()
    const row = this.stmt.getJob.get(id)
    return row === undefined ? undefined : decodeJob(row)
  }

  listJobs (options: { limit?: number, state?: string, prefix?: string } = {}): JobRecord[] {
    this.live()
    const limit = nonNegativeInt('limit', options.limit, DEFAULT_LIST_LIMIT)
    const params: Record<string, unknown> = { limit }
    let prefixMode: 'none' | 'range' | 'from' = 'none'
    if (options.prefix !== undefined && options.prefix !== '') {
      // A key range instead of LIKE: LIKE would read % and _ in the prefix as wildcards
      // and, worse, compares ASCII case-insensitively, so "ab" would match "AB...".
      const range = prefixRange(options.prefix)
      if (range === undefined) return [] // no well-formed id can start with this prefix
      params.lower = range.lower
      if (range.upper === undefined) {
        prefixMode = 'from'
      } else {
        prefixMode = 'range'
        params.upper = range.upper
      }
    }
    const stateKey = options.state === undefined ? 'any' : 'state'
    if (options.state !== undefined) params.state = options.state
    const stmt = this.listStmts.get(`${stateKey}:${prefixMode}`)!
    return stmt.all(params).map(decodeJob)
  }

  deleteJob (id: string): void {
    this.live()
    this.deleteJobTx.immediate(id)
  }

  deleteFinishedJobs (options: { beforeMs: number, limit: number }): number {
    this.live()
    if (!Number.isFinite(options.beforeMs)) throw new RangeError(`beforeMs must be a finite number, got ${String(options.beforeMs)}`)
    const limit = nonNegativeInt('limit', options.limit, 0)
    return limit === 0 ? 0 : this.deleteFinishedTx.immediate(options.beforeMs, limit)
  }

  appendEvent (jobId: string, event: JobEvent): void {
    this.live()
    requireId('event', 'jobId', jobId)
    if (!isObject(event)) throw new StoreInvalidRecordError('event', 'not an object')
    requireFinite('event', 'atMs', event.atMs)
    if (typeof event.type !== 'string') throw new StoreInvalidRecordError('event', 'type must be a string')
    this.stmt.appendEvent.run(jobId, encode('event', event))
  }

  events (jobId: string, options: { from?: number, limit?: number } = {}): JobEvent[] {
    this.live()
    // LIMIT -1: no limit, in SQLite.
    return this.stmt.events.all(jobId, options.limit ?? -1, options.from ?? 0).map(row => {
      const key = `${jobId} #${row.seq}`
      const v = decode('events', key, row.record)
      if (!isObject(v) || typeof v.atMs !== 'number' || typeof v.type !== 'string') {
        throw new StoreCorruptError('events', key, 'record is not an event')
      }
      return v as unknown as JobEvent
    })
  }

  eventCount (jobId: string): number {
    this.live()
    return this.stmt.eventCount.get(jobId) as number
  }

  appendLog (jobId: string, chunk: Omit<LogChunk, 'seq'>): number {
    this.live()
    requireId('log chunk', 'jobId', jobId)
    if (!isObject(chunk)) throw new StoreInvalidRecordError('log chunk', 'not an object')
    requireSafeInt('log chunk', 'epoch', chunk.epoch)
    if (chunk.stream !== 'stdout' && chunk.stream !== 'stderr') {
      throw new StoreInvalidRecordError('log chunk', 'stream must be stdout or stderr')
    }
    requireFinite('log chunk', 'atMs', chunk.atMs)
    if (typeof chunk.data !== 'string') throw new StoreInvalidRecordError('log chunk', 'data must be a string')
    // Output is best-effort text: rather than refuse a chunk (and lose output), replace
    // lone surrogates with U+FFFD, as any UTF-8 encoder would, so what readLogs returns
    // is exactly what was stored.
    const data = LONE_SURROGATE.test(chunk.data) ? chunk.data.replace(LONE_SURROGATE_G, '\uFFFD') : chunk.data
    return this.appendLogTx.immediate(jobId, { ...chunk, data })
  }

  readLogs (jobId: string, options: { afterSeq?: number, limit?: number } = {}): LogChunk[] {
    this.live()
    const afterSeq = nonNegativeInt('afterSeq', options.afterSeq, 0)
    const limit = nonNegativeInt('limit', options.limit, DEFAULT_LOG_LIMIT)
    return this.stmt.readLogs.all(jobId, afterSeq, limit).map(row => ({
      seq: row.seq,
      epoch: row.epoch,
      stream: row.stream,
      atMs: row.at_ms,
      data: row.data
    }))
  }

  putRunning (attempt: RunningAttempt): void {
    this.live()
    if (!isObject(attempt)) throw new StoreInvalidRecordError('running attempt', 'not an object')
    requireId('running attempt', 'jobId', attempt.jobId)
    requireSafeInt('running attempt', 'epoch', attempt.epoch)
    if (typeof attempt.owner !== 'string') throw new StoreInvalidRecordError('running attempt', 'owner must be a string')
    this.stmt.putRunning.run(attempt.jobId, attempt.epoch, encode('running attempt', attempt))
  }

  deleteRunning (jobId: string, epoch: number): void {
    this.live()
    this.stmt.deleteRunning.run(jobId, epoch)
  }

  listRunning (): RunningAttempt[] {
    this.live()
    return this.stmt.listRunning.all().map(row => {
      const key = `${row.job_id} epoch ${row.epoch}`
      const v = decode('running', key, row.record)
      if (!isObject(v) || v.jobId !== row.job_id || v.epoch !== row.epoch || typeof v.owner !== 'string') {
        throw new StoreCorruptError('running', key, 'record is not this running attempt')
      }
      return v as unknown as RunningAttempt
    })
  }

  getAdmission (key: string): Admission | undefined {
    this.live()
    const row = this.stmt.getAdmission.get(key)
    return row === undefined ? undefined : { createdAtMs: row.created_at_ms, epoch: row.epoch }
  }

  putAdmission (key: string, admission: Admission): void {
    this.live()
    requireId('admission', 'key', key)
    if (!isObject(admission)) throw new StoreInvalidRecordError('admission', 'not an object')
    requireSafeInt('admission', 'createdAtMs', admission.createdAtMs)
    requireSafeInt('admission', 'epoch', admission.epoch)
    this.stmt.putAdmission.run(key, admission.createdAtMs, admission.epoch)
  }

  deleteAdmissionsBefore (options: { beforeMs: number, limit: number }): number {
    this.live()
    if (!Number.isFinite(options.beforeMs)) throw new RangeError(`beforeMs must be a finite number, got ${String(options.beforeMs)}`)
    const limit = nonNegativeInt('limit', options.limit, 0)
    return limit === 0 ? 0 : this.stmt.deleteAdmissionsBefore.run(options.beforeMs, limit).changes
  }

  admissionStats (): { count: number, oldestCreatedAtMs: number | undefined } {
    this.live()
    return { count: this.stmt.countAdmissions.get() as number, oldestCreatedAtMs: this.oldestAdmission() }
  }

  oldestAdmission (): number | undefined {
    this.live()
    return this.stmt.oldestAdmission.get() ?? undefined
  }

  getMeta (key: string): string | undefined {
    this.live()
    return this.stmt.getMeta.get(key)
  }

  setMeta (key: string, value: string): void {
    this.live()
    if (typeof key !== 'string') throw new StoreInvalidRecordError('meta', 'key must be a string')
    if (typeof value !== 'string') throw new StoreInvalidRecordError('meta', 'value must be a string')
    requireWellFormed('meta', 'key', key)
    requireWellFormed('meta', 'value', value)
    this.stmt.setMeta.run(key, value)
  }

  transaction<T> (fn: () => T): T {
    this.live()
    // better-sqlite3 rolls back when fn throws and refuses a fn that returns a promise
    // (work after an await would run outside the transaction).
    return this.runInTx.immediate(fn) as T
  }

  /** the flush in flight, if any */
  private flushing: Promise<void> | undefined
  /** total_changes() when the latest flush started: every commit counted there is covered by
   *  it once it resolves (a commit's write() has returned before the flush starts) */
  private flushStartedAtChanges = -1
  /** the next flush, queued behind the one in flight and the end of the current tick */
  private nextFlush: Promise<void> | undefined

  /** set once a flush failed: every later sync() fails (see StoreFlushError) */
  private flushFailed: StoreFlushError | undefined

  async sync (): Promise<void> {
    if (this.walPath === undefined || !this.db.open) return
    if (this.flushFailed !== undefined) throw this.flushFailed
    // Covered by the latest flush: wait for it if it is still in flight (its failure is
    // reported as every failed flush is, see queueFlush).
    if (this.stmt.totalChanges.get() === this.flushStartedAtChanges) {
      await this.flushing?.catch(() => {})
      if (this.flushFailed !== undefined) throw this.flushFailed
      return
    }
    this.nextFlush ??= this.queueFlush()
    await this.nextFlush
  }

  private async queueFlush (): Promise<void> {
    // Wait for the end of this tick, so commits made by the rest of it share the flush, and
    // for the flush in flight: one at a time, and each covers everything committed before it.
    await new Promise<void>(resolve => setImmediate(resolve))
    while (this.flushing !== undefined) await this.flushing.catch(() => {})
    this.nextFlush = undefined
    if (!this.db.open) return
    this.flushStartedAtChanges = this.stmt.totalChanges.get() as number
    const flushing = this.flushWal()
    this.flushing = flushing
    try {
      await flushing
    } catch (err) {
      this.flushFailed ??= err instanceof StoreFlushError ? err : new StoreFlushError(this.walPath!, { cause: err })
      throw this.flushFailed
    } finally {
      if (this.flushing === flushing) this.flushing = undefined
    }
  }

  private async flushWal (): Promise<void> {
    const walPath = this.walPath!
    if (this.walFd === undefined) {
      // Created with the first write in WAL mode; SQLite keeps the same file (it only
      // truncates or rewinds it) for as long as this connection is open. Commits to flush
      // and no WAL would mean they went somewhere this store does not know: never "done".
      if (!existsSync(walPath)) throw new StoreFlushError(walPath, { cause: new Error('the write-ahead log file is missing') })
      this.walFd = openSync(walPath, 'r')
    }
    await this.flushFile(this.walFd)
    if (!this.dirFlushed) {
      // The WAL's directory entry, once: a file flushed but not yet named could be lost too.
      const dirFd = openSync(dirname(walPath), 'r')
      try { await this.flushFile(dirFd) } finally { closeSync(dirFd) }
      this.dirFlushed = true
    }
  }

  close (): void {
    // Idempotent: shutdown paths (signal handler, error path, test teardown) may all call it.
    if (this.db.open) this.db.close()
    const fd = this.walFd
    this.walFd = undefined
    if (fd !== undefined) {
      // A flush in flight still uses it.
      if (this.flushing === undefined) closeSync(fd)
      else void this.flushing.catch(() => {}).finally(() => closeSync(fd))
    }
  }

  private live (): void {
    if (!this.db.open) throw new StoreClosedError()
  }
}

function isObject (v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function requireId (kind: string, field: string, v: unknown): void {
  if (typeof v !== 'string' || v === '') throw new StoreInvalidRecordError(kind, `${field} must be a non-empty string`)
  requireWellFormed(kind, field, v)
}

// A lone UTF-16 surrogate has no UTF-8 form: SQLite would keep a mangled copy in the
// key column while the msgpack record kept the original, and lookups by the original
// would miss. Keys and other indexed text must therefore be well-formed.
function requireWellFormed (kind: string, field: string, v: string): void {
  if (LONE_SURROGATE.test(v)) throw new StoreInvalidRecordError(kind, `${field} contains a lone UTF-16 surrogate`)
}

function requireFinite (kind: string, field: string, v: unknown): void {
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new StoreInvalidRecordError(kind, `${field} must be a finite number`)
}

function requireSafeInt (kind: string, field: string, v: unknown): void {
  if (!Number.isSafeInteger(v)) throw new StoreInvalidRecordError(kind, `${field} must be an integer`)
}

function nonNegativeInt (name: string, v: number | undefined, fallback: number): number {
  if (v === undefined) return fallback
  // SQLite reads a negative LIMIT as "no limit"; refuse it rather than return everything.
  if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`${name} must be a non-negative integer, got ${String(v)}`)
  return v
}

function encode (kind: string, value: unknown): Buffer {
  try {
    return pack(value)
  } catch (err) {
    throw new StoreInvalidRecordError(kind, `msgpack cannot encode it: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
  }
}

function decode (table: string, key: string, blob: unknown): unknown {
  if (!Buffer.isBuffer(blob)) {
    throw new StoreCorruptError(table, key, `record is ${blob === null ? 'NULL' : typeof blob}, not a blob`)
  }
  try {
    return unpack(blob)
  } catch (err) {
    throw new StoreCorruptError(table, key, 'record is not valid msgpack', { cause: err })
  }
}

function decodeJob (row: JobRow): JobRecord {
  const v = decode('jobs', row.id, row.record)
  // Some damage still decodes (msgpack has few invalid byte sequences), so check that
  // the result is at least this job's record before handing it out.
  if (!isObject(v) || v.id !== row.id || typeof v.state !== 'string') {
    throw new StoreCorruptError('jobs', row.id, 'record is not this job')
  }
  return v as unknown as JobRecord
}

const LONE_SURROGATE_SOURCE = '[\\uD800-\\uDBFF](?![\\uDC00-\\uDFFF])|(?<![\\uD800-\\uDBFF])[\\uDC00-\\uDFFF]'
const LONE_SURROGATE = new RegExp(LONE_SURROGATE_SOURCE)
const LONE_SURROGATE_G = new RegExp(LONE_SURROGATE_SOURCE, 'g')

/**
 * The key range [lower, upper) holding exactly the ids that start with `prefix` (as
 * String.prototype.startsWith sees it), in SQLite's BINARY order, which for UTF-8 text is
 * code point order. Undefined when no stored id can match. `upper` is undefined when the
 * range is open-ended.
 */
export function prefixRange (prefix: string): { lower: string, upper?: string } | undefined {
  const last = prefix.charCodeAt(prefix.length - 1)
  if (last >= 0xD800 && last <= 0xDBFF) {
    // The prefix ends in half a surrogate pair (say an id cut in the middle of an emoji):
    // it matches ids whose next code point has this high half, a contiguous block of 1024.
    const head = prefix.slice(0, -1)
    if (LONE_SURROGATE.test(head)) return undefined
    const first = 0x10000 + ((last - 0xD800) << 10)
    const lower = head + String.fromCodePoint(first)
    if (first + 0x400 <= 0x10FFFF) return { lower, upper: head + String.fromCodePoint(first + 0x400) }
    const upper = prefixUpperBound(head)
    return upper === undefined ? { lower } : { lower, upper }
  }
  // Stored ids are well-formed (requireId), so no id starts with a lone surrogate.
  if (LONE_SURROGATE.test(prefix)) return undefined
  const upper = prefixUpperBound(prefix)
  return upper === undefined ? { lower: prefix } : { lower: prefix, upper }
}

/**
 * The least string greater than every string that starts with `prefix`, in code point
 * order: drop trailing U+10FFFF code points, then increment the last one, skipping the
 * surrogate range. Undefined when the prefix is empty or all U+10FFFF, i.e. no upper
 * bound exists. `prefix` must be well-formed.
 */
function prefixUpperBound (prefix: string): string | undefined {
  const cps = Array.from(prefix, c => c.codePointAt(0)!)
  while (cps.length > 0) {
    const last = cps.pop()!
    if (last < 0x10FFFF) {
      let next = last + 1
      if (next >= 0xD800 && next <= 0xDFFF) next = 0xE000
      cps.push(next)
      return cps.map(cp => String.fromCodePoint(cp)).join('')
    }
  }
  return undefined
}
