// The history of a chaos run, rebuilt from what every agent process logged (killed ones
// included: keep each AgentProcess object, its `logs` survive the process) and, when a
// ContainerWatcher ran, from the Docker engine's own container events.
//
//  - executions: one per container, keyed by (jobId, epoch, node): start and end come from the
//    engine's 'start'/'die' events when watched (ground truth, also for a container whose agent
//    was SIGKILLed and never logged 'container:exited'), else from the executor's
//    'container:started' / 'container:exited' log lines. A container still running when the
//    history is checked ends "now".
//  - accepted results: an owner's 'result:accepted' lines (its acknowledgement of an attempt's
//    final report once a quorum of the job's group holds it; with epoch, and the job's state
//    after it) whose state is terminal, and 'job:failed' lines (a job failed as lost too often
//    has no executor report, so no 'result:accepted'). 'job:failed' carries no epoch today, so
//    the epoch is the one of the 'attempt:exited' (or 'attempt:lost') line the same process
//    logged last for the job (in the same step, just before). A bare 'job:succeeded' line is not
//    counted: an owner cut off by a partition may record a success it can never get
//    acknowledged; the job is then re-run and accepted on the majority side. Counted as
//    distinct (jobId, epoch, state).
//
// checkHistory(agents, statuses) checks, for the jobs in `statuses` (final statuses read from a
// surviving agent):
//  (a) one accepted result per job: never two distinct (jobId, epoch) accepted, never both
//      succeeded and failed;
//  (b) no stale-epoch result accepted: an accepted result's epoch is the job's final epoch
//      (checked for jobs whose status is terminal);
//  (c) no two executions of one job overlap longer than lease + grace (3 s + 2 s);
//  (d) an accepted result is backed by an execution of that epoch.
// It prints a summary (jobs, executions, executions per job, max overlap) and returns it.
import type Docker from 'dockerode'
import type { AgentProcess } from './cluster.ts'

export const LEASE_MS = 3000
export const GRACE_MS = 2000

export interface Execution {
  jobId: string
  epoch: number
  node: string
  /** name of the agent process(es) that logged it */
  agent?: string
  containerId?: string
  startMs: number
  /** undefined: still running when the history was built */
  endMs?: number
  /** where start/end came from */
  source: 'docker' | 'log' | 'docker+log'
  /** 'container:exited' was logged by the executor */
  loggedExit: boolean
  reason?: string
  exitCode?: number | null
}

export interface AcceptedResult {
  jobId: string
  epoch: number | undefined
  state: 'succeeded' | 'failed'
  /** agent process that logged it */
  agent: string
  atMs: number
  /** the log line it came from: 'job:succeeded' / 'job:failed' (epoch inferred) or 'result:accepted' */
  source: string
}

export interface JobEventLine {
  jobId: string
  type: string
  epoch?: number
  node?: string
  detail?: string
  agent: string
  atMs: number
}

export interface History {
  executions: Execution[]
  accepted: AcceptedResult[]
  events: JobEventLine[]
  /** agents whose kept log may be truncated (cluster.ts keeps the last 5000 lines, netns.ts 50 000) */
  truncatedLogs: string[]
}

export interface StatusLike {
  id: string
  state: string
  epoch: number
  node?: string | null
  owner?: string
}

export interface HistoryReport {
  jobs: number
  executions: number
  /** executions of a job → number of jobs with that many, e.g. { 1: 98, 2: 4 } */
  executionsPerJob: Record<string, number>
  acceptedResults: number
  maxOverlapMs: number
  maxOverlap?: { jobId: string, a: string, b: string, overlapMs: number }
  /** executions still running when checked (e.g. orphans of a SIGKILLed agent) */
  stillRunning: number
  violations: { a: string[], b: string[], c: string[], d: string[] }
  warnings: string[]
}

// ---- Docker engine events ---------------------------------------------------------------

interface ContainerRecord {
  containerId: string
  jobId: string
  epoch: number
  node: string
  startMs?: number
  dieMs?: number
  exitCode?: number
}

/** Watches the engine's container events for bidmesh-managed containers. Start it before the
 *  agents so every container's start and death is seen, even when its agent dies. */
export class ContainerWatcher {
  readonly containers = new Map<string, ContainerRecord>()
  private stream?: NodeJS.ReadableStream & { destroy?: () => void }
  private buffer = ''

  constructor (private readonly docker: Docker) {}

  async start (): Promise<void> {
    this.stream = await this.docker.getEvents({ filters: { type: ['container'], label: ['bidmesh.managed=true'], event: ['start', 'die'] } }) as any
    this.stream!.on('data', (chunk: Buffer) => {
      this.buffer += chunk.toString('utf8')
      let i
      while ((i = this.buffer.indexOf('\n')) >= 0) {
        const line = this.buffer.slice(0, i).trim()
        this.buffer = this.buffer.slice(i + 1)
        if (line !== '') this.onEvent(line)
      }
    })
    this.stream!.on('error', () => {})
  }

  private onEvent (line: string): void {
    let e: any
    try { e = JSON.parse(line) } catch { return }
    const id: string | undefined = e.id ?? e.Actor?.ID
    const attrs = e.Actor?.Attributes ?? {}
    if (id === undefined) return
    const atMs = typeof e.timeNano === 'number' ? Math.round(e.timeNano / 1e6) : (e.time ?? 0) * 1000
    let r = this.containers.get(id)
    if (r === undefined) {
      r = { containerId: id, jobId: attrs['bidmesh.job'] ?? '', epoch: Number(attrs['bidmesh.epoch'] ?? NaN), node: attrs['bidmesh.node'] ?? '' }
      this.containers.set(id, r)
    }
    const action: string = e.Action ?? e.status
    if (action === 'start') r.startMs = atMs
    else if (action === 'die') {
      r.dieMs = atMs
      if (attrs.exitCode !== undefined) r.exitCode = Number(attrs.exitCode)
    }
  }

  /** Containers of this node that started and have not died. */
  running (node?: string): ContainerRecord[] {
    return [...this.containers.values()].filter(r => r.startMs !== undefined && r.dieMs === undefined && (node === undefined || r.node === node))
  }

  stop (): void {
    try { this.stream?.destroy?.() } catch {}
  }
}

// ---- building the history ------------------------------------------------------------------

function parse (line: string): any {
  if (line.length === 0 || line[0] !== '{') return undefined
  try { return JSON.parse(line) } catch { return undefined }
}

export function buildHistory (agents: AgentProcess[], options: { watcher?: ContainerWatcher } = {}): History {
  const byKey = new Map<string, Execution>()
  const key = (jobId: string, epoch: number, node: string): string => `${jobId}#${epoch}@${node}`
  const accepted: AcceptedResult[] = []
  const events: JobEventLine[] = []
  const truncatedLogs: string[] = []
  const seen = new Set<AgentProcess>()

  for (const a of agents) {
    if (seen.has(a)) continue
    seen.add(a)
    if (a.logs.length === 5000 || a.logs.length >= 50_000) truncatedLogs.push(a.name) // the caps of cluster.ts and netns.ts
    const lastExitedEpoch = new Map<string, number>()
    for (const line of a.logs) {
      const l = parse(line)
      if (l === undefined || typeof l.msg !== 'string') continue
      const atMs: number = typeof l.time === 'number' ? l.time : 0
      if (l.msg === 'container:started' && typeof l.jobId === 'string') {
        const k = key(l.jobId, l.epoch, l.node)
        const e = byKey.get(k)
        if (e === undefined) byKey.set(k, { jobId: l.jobId, epoch: l.epoch, node: l.node, agent: a.name, containerId: l.containerId, startMs: l.startedAtMs ?? atMs, source: 'log', loggedExit: false })
        else { e.containerId ??= l.containerId; e.startMs = Math.min(e.startMs, l.startedAtMs ?? atMs) }
      } else if (l.msg === 'container:exited' && typeof l.jobId === 'string') {
        const k = key(l.jobId, l.epoch, l.node)
        const e = byKey.get(k)
        if (l.startedAtMs === undefined && e === undefined) continue // never started (cancelled, image error)
        if (e === undefined) {
          byKey.set(k, { jobId: l.jobId, epoch: l.epoch, node: l.node, agent: a.name, startMs: l.startedAtMs, endMs: l.finishedAtMs, source: 'log', loggedExit: true, reason: l.reason, exitCode: l.exitCode })
        } else {
          e.endMs = Math.max(e.endMs ?? 0, l.finishedAtMs ?? atMs)
          e.loggedExit = true
          e.reason = l.reason
          e.exitCode = l.exitCode
        }
      } else if (l.msg === 'result:accepted' && typeof l.jobId === 'string') {
        // the owner's explicit acceptance of an attempt's final report (with its epoch); it is a
        // job's result when the job's state after it is terminal
        if (l.state === 'succeeded' || l.state === 'failed') {
          accepted.push({ jobId: l.jobId, epoch: typeof l.epoch === 'number' ? l.epoch : undefined, state: l.state, agent: a.name, atMs, source: 'result:accepted' })
        }
      } else if (typeof l.jobId === 'string' && typeof l.event === 'string' && l.event === l.msg) {
        // one line per job event, written by the job's owner
        const ev: JobEventLine = { jobId: l.jobId, type: l.event, agent: a.name, atMs, ...(typeof l.epoch === 'number' ? { epoch: l.epoch } : {}), ...(l.node !== undefined ? { node: l.node } : {}), ...(l.detail !== undefined ? { detail: l.detail } : {}) }
        events.push(ev)
        if ((l.event === 'attempt:exited' || l.event === 'attempt:lost') && typeof l.epoch === 'number') lastExitedEpoch.set(l.jobId, l.epoch)
        // A success counts once the owner acknowledged it with a quorum ('result:accepted'):
        // an owner cut off by a partition may record one it can never get acknowledged, and
        // the job is then re-run and accepted on the majority side. A failure without an
        // executor's report (lost too often) has no 'result:accepted' line, so it counts here.
        if (l.event === 'job:failed') {
          accepted.push({
            jobId: l.jobId,
            epoch: typeof l.epoch === 'number' ? l.epoch : lastExitedEpoch.get(l.jobId),
            state: 'failed',
            agent: a.name,
            atMs,
            source: l.event
          })
        }
      }
    }
  }

  // The engine's view: start/die of every managed container, whichever agent ran it.
  for (const r of options.watcher?.containers.values() ?? []) {
    if (r.startMs === undefined || r.jobId === '') continue
    const k = key(r.jobId, r.epoch, r.node)
    const e = byKey.get(k)
    if (e === undefined) {
      byKey.set(k, { jobId: r.jobId, epoch: r.epoch, node: r.node, containerId: r.containerId, startMs: r.startMs, ...(r.dieMs !== undefined ? { endMs: r.dieMs } : {}), source: 'docker', loggedExit: false, ...(r.exitCode !== undefined ? { exitCode: r.exitCode } : {}) })
    } else {
      e.containerId ??= r.containerId
      e.startMs = r.startMs
      if (r.dieMs !== undefined) e.endMs = r.dieMs
      else if (e.loggedExit) e.endMs = e.endMs ?? Date.now()
      else delete e.endMs // the engine says it still runs
      e.source = 'docker+log'
    }
  }
  return { executions: [...byKey.values()], accepted, events, truncatedLogs }
}

function short (id: string | undefined): string {
  return id === undefined ? '?' : id.length > 10 ? id.slice(-6) : id
}

function describe (e: Execution, nodeNames: Map<string, string>): string {
  const end = e.endMs === undefined ? 'still running' : `${e.endMs}${e.loggedExit ? '' : ' (engine only: its agent never logged the exit)'}`
  return `epoch ${e.epoch} on ${nodeNames.get(e.node) ?? short(e.node)} [${e.startMs} → ${end}]`
}

/** Checks the invariants for the jobs in `statuses`, prints the summary, returns the report. */
export function checkHistory (agents: AgentProcess[], statuses: Iterable<StatusLike>, options: { watcher?: ContainerWatcher, title?: string, print?: boolean } = {}): HistoryReport {
  const h = buildHistory(agents, options)
  const nowMs = Date.now()
  const nodeNames = new Map<string, string>()
  for (const a of agents) if (a.peerId !== '') nodeNames.set(a.peerId, a.name.replace(/#\d+$/, ''))
  const st = new Map<string, StatusLike>()
  for (const s of statuses) st.set(s.id, s)
  const jobIds = new Set(st.keys())
  const violations: HistoryReport['violations'] = { a: [], b: [], c: [], d: [] }
  const warnings: string[] = [...h.truncatedLogs.map(n => `log of ${n} was truncated; history may be incomplete`)]

  const execsOf = new Map<string, Execution[]>()
  for (const e of h.executions) {
    if (!jobIds.has(e.jobId)) continue
    const list = execsOf.get(e.jobId) ?? []
    list.push(e)
    execsOf.set(e.jobId, list)
  }

  // (a) and (b), (d)
  let acceptedCount = 0
  for (const id of jobIds) {
    const s = st.get(id)!
    const all = h.accepted.filter(r => r.jobId === id)
    // a line whose epoch could not be inferred is the same acceptance as a dated one of that state
    const acc = all.filter(r => r.epoch !== undefined || !all.some(x => x.epoch !== undefined && x.state === r.state))
    const distinct = new Map<string, AcceptedResult>()
    const sources = new Map<string, Set<string>>()
    for (const r of acc) {
      const k = `${String(r.epoch)}/${r.state}`
      if (!distinct.has(k)) distinct.set(k, r)
      sources.set(k, (sources.get(k) ?? new Set()).add(`${r.source} by ${r.agent}`))
    }
    acceptedCount += distinct.size
    if (distinct.size > 1) {
      violations.a.push(`job ${id}: ${distinct.size} distinct accepted results: ${[...distinct].map(([k, r]) => `${r.state}@epoch ${String(r.epoch)} (${[...sources.get(k)!].join('; ')})`).join(', ')}`)
    }
    if ((s.state === 'succeeded' || s.state === 'failed') && distinct.size === 0) warnings.push(`job ${id} is ${s.state} but no agent log holds its acceptance`)
    const final = s.state === 'succeeded' || s.state === 'failed' || s.state === 'cancelled'
    if (!final && distinct.size > 0) warnings.push(`job ${id} is ${s.state} in the status read, yet accepted in a log: the status was not final when read, or the job left a terminal state`)
    for (const r of distinct.values()) {
      if (r.epoch === undefined) { warnings.push(`job ${id}: accepted ${r.state} by ${r.agent} with no epoch in its log`); continue }
      // (b) compares with the final status only: a status read while the job still ran says nothing.
      if (!final) continue
      if (r.epoch !== s.epoch) violations.b.push(`job ${id}: ${r.agent} accepted ${r.state} of epoch ${r.epoch}, but the job's final epoch is ${s.epoch}`)
      if (r.state !== s.state) violations.b.push(`job ${id}: ${r.agent} accepted ${r.state} (epoch ${r.epoch}) but the final status is ${s.state}`)
      const backing = (execsOf.get(id) ?? []).filter(e => e.epoch === r.epoch)
      if (backing.length === 0) violations.d.push(`job ${id}: ${r.state} of epoch ${r.epoch} accepted by ${r.agent}, but no execution of that epoch was seen`)
    }
  }

  // (c) overlaps
  let maxOverlapMs = 0
  let maxOverlap: HistoryReport['maxOverlap']
  let stillRunning = 0
  for (const [id, list] of execsOf) {
    for (const e of list) if (e.endMs === undefined) stillRunning++
    for (let i = 0; i < list.length; i++) {
      for (let j = i + 1; j < list.length; j++) {
        const x = list[i]
        const y = list[j]
        const ov = Math.min(x.endMs ?? nowMs, y.endMs ?? nowMs) - Math.max(x.startMs, y.startMs)
        if (ov > maxOverlapMs) { maxOverlapMs = ov; maxOverlap = { jobId: id, a: describe(x, nodeNames), b: describe(y, nodeNames), overlapMs: ov } }
        if (ov > LEASE_MS + GRACE_MS) violations.c.push(`job ${id}: executions overlap ${(ov / 1000).toFixed(1)} s > ${(LEASE_MS + GRACE_MS) / 1000} s: ${describe(x, nodeNames)} and ${describe(y, nodeNames)}`)
      }
    }
  }

  const executionsPerJob: Record<string, number> = {}
  for (const id of jobIds) {
    const n = execsOf.get(id)?.length ?? 0
    executionsPerJob[n] = (executionsPerJob[n] ?? 0) + 1
  }
  const executions = [...execsOf.values()].reduce((n, l) => n + l.length, 0)
  const report: HistoryReport = { jobs: jobIds.size, executions, executionsPerJob, acceptedResults: acceptedCount, maxOverlapMs, ...(maxOverlap !== undefined ? { maxOverlap } : {}), stillRunning, violations, warnings }

  if (options.print !== false) {
    const title = options.title ?? 'history'
    const rows: Array<[string, string]> = [
      ['jobs', String(report.jobs)],
      ['executions', String(report.executions)],
      ['executions per job', Object.entries(executionsPerJob).map(([k, v]) => `${k}×: ${v}`).join(', ')],
      ['accepted results', String(acceptedCount)],
      ['max overlap', `${(maxOverlapMs / 1000).toFixed(2)} s${maxOverlap !== undefined ? ` (job ${maxOverlap.jobId})` : ''}`],
      ['still running', String(stillRunning)],
      ['(a) >1 accepted', String(violations.a.length)],
      ['(b) stale accepted', String(violations.b.length)],
      ['(c) overlap > lease+grace', String(violations.c.length)],
      ['(d) unbacked accepted', String(violations.d.length)]
    ]
    const w = Math.max(...rows.map(r => r[0].length))
    const lines = [`== ${title} ==`, ...rows.map(([k, v]) => `  ${k.padEnd(w)}  ${v}`)]
    for (const v of [...violations.a, ...violations.b, ...violations.c, ...violations.d].slice(0, 20)) lines.push(`  ! ${v}`)
    for (const v of warnings.slice(0, 10)) lines.push(`  ? ${v}`)
    console.log(lines.join('\n'))
    console.log(`CHAOS-HISTORY ${JSON.stringify({ title, jobs: report.jobs, executions, executionsPerJob, acceptedResults: acceptedCount, maxOverlapMs, stillRunning, violations: { a: violations.a.length, b: violations.b.length, c: violations.c.length, d: violations.d.length }, warnings: warnings.length })}`)
  }
  return report
}

/** Executions per job counted from the executors' 'container:started' lines only. */
export function startsPerJob (agents: AgentProcess[], jobIds: Iterable<string>): Record<string, number> {
  const ids = new Set(jobIds)
  const counts = new Map<string, Set<string>>()
  for (const a of new Set(agents)) {
    for (const line of a.logs) {
      const l = parse(line)
      if (l?.msg !== 'container:started' || !ids.has(l.jobId)) continue
      const s = counts.get(l.jobId) ?? new Set<string>()
      s.add(`${String(l.epoch)}@${String(l.node)}`)
      counts.set(l.jobId, s)
    }
  }
  const hist: Record<string, number> = {}
  for (const id of ids) {
    const n = counts.get(id)?.size ?? 0
    hist[n] = (hist[n] ?? 0) + 1
  }
  return hist
}
