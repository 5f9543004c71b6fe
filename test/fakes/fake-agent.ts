// An in-memory AgentApi for API and CLI tests. It validates specs like the real agent
// (parseJobSpec) but schedules nothing: a test moves jobs through their states and appends
// their output itself. Every change and every read of logs notifies waiters, so tests wait
// on conditions instead of sleeping.
import type { AgentApi, JobDetail, NodeView, SubmittedJob } from '../../src/agent/agent-api.ts'
import { AmbiguousJobIdError, UnknownJobError } from '../../src/agent/agent-api.ts'
import type { Explanation, JobEvent, JobReason, JobRecord, JobState, JobSummary, LogChunk } from '../../src/protocol/job.ts'
import { summarize, TERMINAL_STATES } from '../../src/protocol/job.ts'
import { parseJobSpec } from '../../src/protocol/job-spec.ts'

export const FAKE_PEER = '12D3KooWFakeSelfPeer000000000000000000000000selfAAAA'
export const OTHER_PEER = '12D3KooWFakeOtherPeer00000000000000000000000otherBBBB'

export class FakeAgent implements AgentApi {
  readonly peerId = FAKE_PEER
  readonly jobs = new Map<string, JobRecord>()
  readonly events = new Map<string, JobEvent[]>()
  readonly logs = new Map<string, LogChunk[]>()
  /** Ids passed to readLogs, in call order: lets a test wait until a follower is polling. */
  readonly readLogsCalls: string[] = []
  /** Ids passed to getJob, in call order: lets a test wait until a client has looked. */
  readonly getJobCalls: string[] = []
  nodeViews: NodeView[] = [
    {
      peerId: FAKE_PEER, totalCpuMilli: 4000, freeCpuMilli: 3500, totalMemoryBytes: 8 * 1024 ** 3, freeMemoryBytes: 6 * 1024 ** 3,
      runningJobs: 1, labels: { zone: 'a' }, draining: false, seq: 7, sentAtMs: Date.now(), liveness: 'alive', lastSeenAgoMs: 0, self: true
    },
    {
      peerId: OTHER_PEER, totalCpuMilli: 2000, freeCpuMilli: 2000, totalMemoryBytes: 4 * 1024 ** 3, freeMemoryBytes: 4 * 1024 ** 3,
      runningJobs: 0, labels: { zone: 'b', gpu: 'none' }, draining: false, seq: 3, sentAtMs: Date.now(), liveness: 'suspect', lastSeenAgoMs: 3500, self: false
    }
  ]
  /** Set by drain(); health() and this agent's own node view report it. */
  draining = false
  /** Options passed to drain(), in call order. */
  readonly drainCalls: Array<{ deadlineMs?: number } | undefined> = []
  /** Called after each accepted submission, e.g. to script the job's life. */
  onSubmit?: (job: JobRecord) => void
  private counter = 0
  private logSeq = 0
  private waiters = new Set<() => void>()

  // ---- AgentApi ----

  /** What submit answers as `replicated`: a test sets false to play an agent whose replicas
   *  did not answer in time. */
  replicated = true

  async submit (input: unknown): Promise<SubmittedJob> {
    const spec = parseJobSpec(input)
    const id = `j${(++this.counter).toString(16).padStart(7, '0')}`
    const job = this.insert(id, spec)
    this.onSubmit?.(structuredClone(job))
    return { ...structuredClone(job), replicated: this.replicated }
  }

  async plan (input: unknown): Promise<Explanation> {
    parseJobSpec(input)
    return {
      consideredNodes: 2,
      filtered: { memory: 1 },
      top: [{ node: FAKE_PEER, score: 0.75, components: { binpack: 0.5, spread: 0.25 } }],
      candidates: [FAKE_PEER],
      winner: FAKE_PEER,
      decidedAtMs: Date.now()
    }
  }

  async getJob (idOrPrefix: string, _options?: { signal?: AbortSignal, waitMs?: number }): Promise<JobDetail> {
    this.getJobCalls.push(idOrPrefix)
    const id = this.resolve(idOrPrefix)
    this.notify()
    return { job: structuredClone(this.jobs.get(id)!), events: structuredClone(this.events.get(id) ?? []) }
  }

  async listJobs (options: { state?: string, limit?: number } = {}): Promise<JobSummary[]> {
    const all = [...this.jobs.values()]
      .filter(j => options.state === undefined || j.state === options.state)
      .sort((a, b) => b.createdAtMs - a.createdAtMs)
    return all.slice(0, options.limit ?? 100).map(summarize)
  }

  async readLogs (id: string, options: { afterSeq?: number, signal?: AbortSignal } = {}): Promise<LogChunk[]> {
    if (!this.jobs.has(id)) throw new UnknownJobError(id)
    this.readLogsCalls.push(id)
    const chunks = (this.logs.get(id) ?? []).filter(c => options.afterSeq === undefined || c.seq > options.afterSeq)
    this.notify()
    return structuredClone(chunks)
  }

  async cancel (idOrPrefix: string): Promise<JobRecord> {
    const id = this.resolve(idOrPrefix)
    const job = this.jobs.get(id)!
    if (!TERMINAL_STATES.has(job.state)) this.finish(id, { state: 'cancelled', reason: 'cancelled' })
    return structuredClone(this.jobs.get(id)!)
  }

  nodes (): NodeView[] {
    return structuredClone(this.nodeViews)
  }

  health (): { ok: boolean, peerId: string, peers: number, draining: boolean, uptimeMs: number } {
    return { ok: true, peerId: FAKE_PEER, peers: this.nodeViews.length - 1, draining: this.draining, uptimeMs: 1234 }
  }

  /** The real agent's metric names, with values from the fake's state. */
  async metrics (): Promise<{ contentType: string, body: string }> {
    const byState = new Map<string, number>()
    const finished = new Map<string, number>()
    for (const job of this.jobs.values()) {
      const counts = TERMINAL_STATES.has(job.state) ? finished : byState
      counts.set(job.state, (counts.get(job.state) ?? 0) + 1)
    }
    const lines = [
      '# HELP bidmesh_jobs Unfinished jobs this agent owns, by state',
      '# TYPE bidmesh_jobs gauge',
      ...[...byState].map(([state, n]) => `bidmesh_jobs{state="${state}"} ${n}`),
      '# HELP bidmesh_jobs_finished_total Jobs this agent owned that finished since it started, by outcome',
      '# TYPE bidmesh_jobs_finished_total counter',
      ...[...finished].map(([state, n]) => `bidmesh_jobs_finished_total{state="${state}"} ${n}`),
      '# HELP bidmesh_peers Connected mesh peers',
      '# TYPE bidmesh_peers gauge',
      `bidmesh_peers ${this.nodeViews.length - 1}`
    ]
    return { contentType: 'text/plain; version=0.0.4; charset=utf-8', body: lines.join('\n') + '\n' }
  }

  async drain (options?: { deadlineMs?: number }): Promise<void> {
    this.drainCalls.push(options)
    this.draining = true
    for (const n of this.nodeViews) if (n.self) n.draining = true
    this.notify()
  }

  // ---- test controls ----

  /** Adds a job under a chosen id (for prefix tests). */
  addJob (id: string, input: unknown = { image: 'busybox' }): JobRecord {
    return structuredClone(this.insert(id, parseJobSpec(input)))
  }

  schedule (id: string, node = FAKE_PEER): void {
    const job = this.mustGet(id)
    job.epoch += 1
    job.attempts.push({ epoch: job.epoch, node, state: 'awarded', awardedAtMs: Date.now() })
    job.explanation = { consideredNodes: 2, filtered: {}, top: [{ node, score: 1, components: { binpack: 1 } }], candidates: [node], winner: node, decidedAtMs: Date.now() }
    this.change(job, { state: 'scheduled', node }, 'awarded')
  }

  start (id: string, node = FAKE_PEER): void {
    const job = this.mustGet(id)
    if (job.attempts.length === 0 || job.attempts[job.attempts.length - 1].node !== node) this.schedule(id, node)
    const attempt = job.attempts[job.attempts.length - 1]
    attempt.state = 'running'
    attempt.startedAtMs = Date.now()
    this.change(job, { state: 'running', node }, 'started')
  }

  /** Leaves the job pending with an explanation of why nothing fits. */
  unplaceable (id: string, filtered: Record<string, number>): void {
    const job = this.mustGet(id)
    job.explanation = { consideredNodes: 5, filtered, top: [], candidates: [], decidedAtMs: Date.now() }
    this.change(job, { state: 'pending', reason: 'unplaceable' }, 'unplaceable')
  }

  finish (id: string, outcome: { state: JobState, reason?: JobReason, exitCode?: number | null }): void {
    const job = this.mustGet(id)
    const attempt = job.attempts[job.attempts.length - 1]
    if (attempt !== undefined) {
      attempt.state = outcome.state === 'cancelled' ? 'cancelled' : 'exited'
      attempt.finishedAtMs = Date.now()
      if (outcome.exitCode !== undefined) attempt.exitCode = outcome.exitCode
      if (outcome.reason !== undefined) attempt.reason = outcome.reason
    }
    this.change(job, {
      state: outcome.state,
      ...(outcome.reason !== undefined ? { reason: outcome.reason } : {}),
      ...(outcome.exitCode !== undefined ? { exitCode: outcome.exitCode } : {})
    }, outcome.state)
  }

  appendLog (id: string, stream: 'stdout' | 'stderr', data: string): LogChunk {
    const job = this.mustGet(id)
    const chunk: LogChunk = { seq: ++this.logSeq, epoch: job.epoch, stream, atMs: Date.now(), data }
    const list = this.logs.get(id) ?? []
    list.push(chunk)
    this.logs.set(id, list)
    this.notify()
    return chunk
  }

  /** Resolves once `predicate` holds, re-checking after every change and log read. */
  waitFor (predicate: () => boolean, timeoutMs = 10_000): Promise<void> {
    if (predicate()) return Promise.resolve()
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (!predicate()) return
        clearTimeout(timer)
        this.waiters.delete(check)
        resolve()
      }
      const timer = setTimeout(() => {
        this.waiters.delete(check)
        reject(new Error('FakeAgent.waitFor: condition not met in time'))
      }, timeoutMs)
      this.waiters.add(check)
    })
  }

  // ---- internals ----

  private insert (id: string, spec: JobRecord['spec']): JobRecord {
    const now = Date.now()
    const job: JobRecord = {
      id, spec, owner: FAKE_PEER, publisher: FAKE_PEER, state: 'pending', epoch: 0, term: 0, version: 0, replicas: [], attempts: [], createdAtMs: now, updatedAtMs: now
    }
    this.jobs.set(id, job)
    this.events.set(id, [{ atMs: now, type: 'submitted' }])
    this.notify()
    return job
  }

  private resolve (idOrPrefix: string): string {
    if (this.jobs.has(idOrPrefix)) return idOrPrefix
    const matches = [...this.jobs.keys()].filter(id => id.startsWith(idOrPrefix))
    if (matches.length === 0) throw new UnknownJobError(idOrPrefix)
    if (matches.length > 1) throw new AmbiguousJobIdError(idOrPrefix, matches)
    return matches[0]
  }

  private mustGet (id: string): JobRecord {
    const job = this.jobs.get(id)
    if (job === undefined) throw new UnknownJobError(id)
    return job
  }

  private change (job: JobRecord, patch: Partial<JobRecord>, event: string): void {
    Object.assign(job, patch)
    job.version += 1
    if (patch.reason === undefined && patch.state !== undefined && !TERMINAL_STATES.has(patch.state) && patch.state !== 'pending') delete job.reason
    job.updatedAtMs = Date.now()
    this.events.get(job.id)!.push({ atMs: job.updatedAtMs, type: event, epoch: job.epoch, ...(job.node !== undefined ? { node: job.node } : {}) })
    this.notify()
  }

  private notify (): void {
    for (const w of [...this.waiters]) w()
  }
}
