// Shared pieces of the fault-injection suite: a cluster of agent OS processes that remembers
// every process it ever started (killed ones too, for the history), job submission and
// status look-ups against surviving agents, clean-up, and figure printing.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type Docker from 'dockerode'
import { expect, it } from 'vitest'
import { type AgentProcess, type AgentProcessOptions, TEST_IMAGE, api, waitFor } from '../support/cluster.ts'
import { requireDocker } from '../support/docker.ts'
import { type HistoryReport, type StatusLike, ContainerWatcher, buildHistory, checkHistory } from '../support/history.ts'
import { spawnAgentProcess } from '../support/netns.ts'

export const TERMINAL = new Set(['succeeded', 'failed', 'cancelled'])

export type Spawner = (o: AgentProcessOptions) => Promise<AgentProcess>

export interface Submitted {
  id: string
  via: string
  acceptedAtMs: number
  /** a quorum of the job's replicas held it when it was answered (201; 202 when not) */
  replicated: boolean
  /** the peer ids of the job's replicas, as the answer named them */
  replicas: string[]
}

export function spec (command: string, o: { cpus?: number, memory?: string, constraints?: Record<string, string>, name?: string } = {}): unknown {
  return {
    image: TEST_IMAGE,
    command,
    ...(o.name !== undefined ? { name: o.name } : {}),
    resources: { ...(o.cpus !== undefined ? { cpus: o.cpus } : {}), memory: o.memory ?? '32m' },
    ...(o.constraints !== undefined ? { constraints: o.constraints } : {})
  }
}

export class ChaosCluster {
  /** every process ever started, killed and restarted ones included (their logs are the history) */
  readonly all: AgentProcess[] = []
  readonly killedAt = new Map<AgentProcess, number>()
  /** how long each accepted POST /v1/jobs took */
  readonly postMs: number[] = []
  docker!: Docker
  watcher!: ContainerWatcher
  private readonly options = new Map<AgentProcess, AgentProcessOptions>()
  private readonly spawners = new Map<AgentProcess, Spawner>()
  /** set by shutdown(): a test body that outlived its timeout must not start agents any more */
  private closed = false

  constructor (readonly title: string, private readonly spawn: Spawner = async o => await spawnAgentProcess(o, { timeoutMs: 90_000 })) {}

  async init (): Promise<void> {
    this.docker = await requireDocker()
    this.watcher = new ContainerWatcher(this.docker)
    await this.watcher.start()
  }

  async start (o: AgentProcessOptions, spawn: Spawner = this.spawn): Promise<AgentProcess> {
    if (this.closed) throw new Error(`cluster ${this.title} is shut down; not starting ${o.name}`)
    const a = await spawn(o)
    if (this.closed) { a.proc.kill('SIGKILL'); await a.exited; throw new Error(`cluster ${this.title} was shut down while ${o.name} started`) }
    this.all.push(a)
    this.options.set(a, o)
    this.spawners.set(a, spawn)
    return a
  }

  live (): AgentProcess[] {
    return this.all.filter(a => a.proc.exitCode === null && a.proc.signalCode === null)
  }

  /** The newest process of an agent by name (a restarted agent keeps its name and peer id). */
  byName (name: string): AgentProcess {
    const found = this.all.filter(a => a.name === name)
    return found[found.length - 1]
  }

  nameOf (peerId: string | null | undefined): string {
    if (peerId === null || peerId === undefined) return '-'
    return this.all.find(a => a.peerId === peerId)?.name ?? peerId.slice(-6)
  }

  /** SIGKILL: no drain, no clean-up; returns the time the signal was sent. */
  async kill (a: AgentProcess): Promise<number> {
    const t = Date.now()
    a.proc.kill('SIGKILL')
    await a.exited
    this.killedAt.set(a, t)
    return t
  }

  /** Starts the agent again with the same data dir (so the same peer id and store). */
  async restart (a: AgentProcess, o: Partial<AgentProcessOptions> = {}): Promise<AgentProcess> {
    if (a.proc.exitCode === null && a.proc.signalCode === null) throw new Error(`${a.name} still runs`)
    const prev = this.options.get(a)!
    const b = await this.start({ ...prev, ...o, name: a.name, dataDir: a.dataDir }, this.spawners.get(a))
    expect(b.peerId, 'a restart with the same data dir keeps the peer id').toBe(a.peerId)
    return b
  }

  /** Waits until every observer sees every expected agent with the given liveness. */
  async waitSees (observers: AgentProcess[], expected: AgentProcess[], liveness: 'alive' | 'gone' | 'not-alive' = 'alive', timeoutMs = 30_000): Promise<number> {
    const t0 = Date.now()
    await Promise.all(observers.map(async o => await waitFor(`${o.name} to see ${expected.map(e => e.name).join(',')} ${liveness}`, async () => {
      const r = await api(o.api, '/v1/nodes')
      const by = new Map<string, string>(r.body.nodes.map((n: any) => [n.peerId, n.liveness]))
      const ok = expected.every(e => {
        const l = by.get(e.peerId)
        if (liveness === 'alive') return l === 'alive'
        if (liveness === 'gone') return l === 'gone' || l === undefined
        return l !== 'alive'
      })
      return ok ? true : undefined
    }, timeoutMs, 200)))
    return Date.now() - t0
  }

  async submit (via: AgentProcess, body: unknown): Promise<Submitted> {
    const t = Date.now()
    let r: { status: number, body: any }
    try {
      // Not api(): its 10 s deadline is too short for a loaded 2-core machine; never retried
      // (a retried POST would be a second job).
      const res = await fetch(`${via.api}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), signal: AbortSignal.timeout(30_000) })
      const text = await res.text()
      r = { status: res.status, body: text }
      try { r.body = JSON.parse(text) } catch {}
    } catch (err) {
      const tail = via.logs.slice(-15).map(l => { try { const j = JSON.parse(l); return `    ${new Date(j.time).toISOString().slice(11, 23)} ${String(j.msg)} ${j.jobId ?? ''} ${j.err ?? j.detail ?? ''}` } catch { return `    ${l}` } })
      throw new Error(`POST /v1/jobs on ${via.name} failed after ${Date.now() - t} ms: ${String(err)}; its last log lines:\n${tail.join('\n')}`)
    }
    // 202: accepted without a quorum of replicas (a side of a partition that is cut off).
    expect([201, 202], `POST /v1/jobs on ${via.name}: ${JSON.stringify(r.body)}`).toContain(r.status)
    expect(r.body.replicated, `POST /v1/jobs on ${via.name}: ${r.status} says replicated`).toBe(r.status === 201)
    this.postMs.push(Date.now() - t)
    return { id: r.body.id, via: via.name, acceptedAtMs: Date.now(), replicated: r.body.replicated, replicas: r.body.replicas }
  }

  /** The job's status as the surviving agents answer it: every agent is asked, the answer with
   *  the highest epoch wins, then a terminal one, then the newest. (After a takeover, the old
   *  and the new owner may disagree; the higher epoch is the later truth.) `answers` counts the
   *  distinct (state, epoch) answers, so a disagreement is visible. undefined: no one knows it. */
  async status (id: string, agents: AgentProcess[] = this.live()): Promise<any | undefined> {
    const answers = (await Promise.all(agents.map(async a => {
      try {
        const r = await api(a.api, `/v1/jobs/${id}`)
        return r.status === 200 ? { ...r.body, answeredBy: a.name } : undefined
      } catch { return undefined }
    }))).filter(x => x !== undefined)
    if (answers.length === 0) return undefined
    // The newest copy: a higher term (the owner after a takeover) first, then a terminal
    // state, then the latest update. Not the highest epoch: a cut-off owner may have run
    // auction rounds (epochs) the new owner never heard of.
    answers.sort((x, y) => ((y.term ?? 0) - (x.term ?? 0)) || (Number(TERMINAL.has(y.state)) - Number(TERMINAL.has(x.state))) || (Date.parse(y.updatedAt) - Date.parse(x.updatedAt)))
    return { ...answers[0], answers: new Set(answers.map(x => `${String(x.state)}@${String(x.epoch)}`)).size }
  }

  /** Job summaries as the live agents list them (directory of gossiped summaries + own store);
   *  per job the one with the highest term, then a terminal one, then the newest. */
  async summaries (agents: AgentProcess[] = this.live()): Promise<Map<string, any>> {
    const out = new Map<string, any>()
    await Promise.all(agents.map(async a => {
      try {
        const r = await api(a.api, '/v1/jobs?limit=10000')
        if (r.status !== 200) return
        for (const s of r.body.jobs) {
          const prev = out.get(s.id)
          if (prev === undefined || s.term > prev.term || (s.term === prev.term && (Number(TERMINAL.has(s.state)) - Number(TERMINAL.has(prev.state)) || s.updatedAtMs - prev.updatedAtMs) > 0)) out.set(s.id, s)
        }
      } catch {}
    }))
    return out
  }

  /** Waits until every id is terminal on some surviving agent; returns the ids that are not. */
  async waitTerminal (ids: string[], timeoutMs: number): Promise<{ pending: string[], ms: number }> {
    const t0 = Date.now()
    let pending = [...ids]
    try {
      await waitFor(`${ids.length} jobs to finish`, async () => {
        const sums = await this.summaries()
        pending = ids.filter(id => !TERMINAL.has(sums.get(id)?.state))
        // Unknown to every list: ask for it directly (a new owner may not have gossiped yet).
        if (pending.length > 0 && pending.length <= 10) {
          const still: string[] = []
          for (const id of pending) {
            const s = await this.status(id)
            if (s === undefined || !TERMINAL.has(s.state)) still.push(id)
          }
          pending = still
        }
        return pending.length === 0 ? true : undefined
      }, timeoutMs, 500)
    } catch {}
    return { pending, ms: Date.now() - t0 }
  }

  /** Final statuses from surviving agents; ids no one knows are left out. A terminal summary
   *  in a job list (gossiped by the job's owner, or the owner's own) is final; every other job
   *  is asked for with GET /v1/jobs/:id. Each status has id, state, epoch, owner, node,
   *  createdAt, finishedAt. */
  async finalStatuses (ids: string[], options: { lists?: boolean } = {}): Promise<Map<string, any>> {
    const out = new Map<string, any>()
    const sums = options.lists === false ? new Map<string, any>() : await this.summaries()
    const ask: string[] = []
    for (const id of ids) {
      const s = sums.get(id)
      if (s !== undefined && TERMINAL.has(s.state)) {
        out.set(id, { id, state: s.state, epoch: s.epoch, owner: s.owner, node: s.node ?? null, createdAt: new Date(s.createdAtMs).toISOString(), finishedAt: new Date(s.updatedAtMs).toISOString(), answeredBy: 'list' })
      } else ask.push(id)
    }
    for (let i = 0; i < ask.length; i += 8) {
      const batch = ask.slice(i, i + 8)
      const rs = await Promise.all(batch.map(async id => await this.status(id)))
      batch.forEach((id, j) => { if (rs[j] !== undefined) out.set(id, rs[j]) })
    }
    return out
  }

  /** The log lines that mention a job, from every process, in time order, compacted. */
  jobLog (id: string, max = 25): string {
    const lines: Array<{ t: number, s: string }> = []
    for (const a of this.all) {
      for (const l of a.logs) {
        if (!l.includes(id)) continue
        try {
          const j = JSON.parse(l)
          lines.push({ t: j.time, s: `${new Date(j.time).toISOString().slice(11, 23)} ${a.name.padEnd(4)} ${String(j.msg).padEnd(22)} ${j.epoch !== undefined ? `e${String(j.epoch)}` : ''} ${j.node !== undefined ? `node=${this.nameOf(j.node)}` : ''} ${j.detail ?? j.reason ?? j.err ?? ''}` })
        } catch {}
      }
    }
    return lines.sort((x, y) => x.t - y.t).slice(-max).map(x => `    ${x.s}`).join('\n')
  }

  /** Containers of this cluster's nodes (other runs may share the engine). */
  async managedContainers (): Promise<Docker.ContainerInfo[]> {
    const mine = new Set(this.all.map(a => a.peerId))
    const list = await this.docker.listContainers({ all: true, filters: { label: ['bidmesh.managed=true'] } })
    return list.filter(c => mine.has(c.Labels?.['bidmesh.node'] ?? ''))
  }

  /** Stops every process (SIGTERM, SIGKILL after 5 s), removes data dirs and our containers. */
  async shutdown (): Promise<void> {
    this.closed = true
    await Promise.all(this.live().map(async a => {
      a.proc.kill('SIGTERM')
      const t = setTimeout(() => a.proc.kill('SIGKILL'), 5000)
      await a.exited
      clearTimeout(t)
    }))
    for (const a of this.all) {
      if (a.proc.exitCode === null && a.proc.signalCode === null) a.proc.kill('SIGKILL')
    }
    this.dumpLogs()
    for (const dir of new Set(this.all.map(a => a.dataDir))) rmSync(dir, { recursive: true, force: true })
    if (this.docker !== undefined) {
      try {
        for (const c of await this.managedContainers()) await this.docker.getContainer(c.Id).remove({ force: true }).catch(() => {})
      } catch {}
    }
    this.watcher?.stop()
  }

  /** Executions per job id (engine events and executor logs merged, see history.ts). */
  executionCounts (): Map<string, number> {
    const out = new Map<string, number>()
    for (const e of buildHistory(this.all, { watcher: this.watcher }).executions) out.set(e.jobId, (out.get(e.jobId) ?? 0) + 1)
    return out
  }

  /** Every process's log, one file per process, in /tmp/bidmesh-chaos-logs/<title>/ (replaced
   *  on each run), for reading after a failure. */
  dumpLogs (): void {
    try {
      const dir = join(tmpdir(), 'bidmesh-chaos-logs', this.title)
      rmSync(dir, { recursive: true, force: true })
      mkdirSync(dir, { recursive: true })
      const seen = new Map<string, number>()
      for (const a of this.all) {
        const n = (seen.get(a.name) ?? 0) + 1
        seen.set(a.name, n)
        writeFileSync(join(dir, `${a.name}${n > 1 ? `.${n}` : ''}.ndjson`), a.logs.join('\n') + '\n')
      }
      writeFileSync(join(dir, 'peers.json'), JSON.stringify(this.all.map(a => ({ name: a.name, peerId: a.peerId, killedAtMs: this.killedAt.get(a) ?? null })), null, 2))
      console.log(`agent logs of ${this.title}: ${dir}`)
    } catch {}
  }

  history (statuses: Iterable<StatusLike>, title = this.title, print = true): HistoryReport {
    return checkHistory(this.all, statuses, { watcher: this.watcher, title, print })
  }
}

export function median (xs: number[]): number {
  if (xs.length === 0) return NaN
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2
}

export function percentile (xs: number[], p: number): number {
  if (xs.length === 0) return NaN
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]
}

/** Prints a small aligned table and a JSON line (tag CHAOS-FIGURES) with the same figures. */
export function printFigures (title: string, headers: string[], rows: Array<Array<string | number>>, json: Record<string, unknown>): void {
  const cells = [headers, ...rows.map(r => r.map(c => typeof c === 'number' ? (Number.isInteger(c) ? String(c) : c.toFixed(2)) : c))]
  const widths = headers.map((_, i) => Math.max(...cells.map(r => String(r[i] ?? '').length)))
  const line = (r: string[]): string => '  ' + r.map((c, i) => String(c ?? '').padEnd(widths[i])).join('  ')
  const out = [`== ${title} ==`, line(cells[0]), '  ' + widths.map(w => '-'.repeat(w)).join('  '), ...cells.slice(1).map(line)]
  console.log(out.join('\n'))
  console.log(`CHAOS-FIGURES ${JSON.stringify({ title, ...json })}`)
}

/** Registers the history checks, run after the file's scenario tests. The statuses are the
 *  ones the scenario collected, else they are read now from surviving agents. */
export function historyChecks (cluster: () => ChaosCluster, ctx: { ids: string[], statuses?: Map<string, any> }): void {
  let report: HistoryReport | undefined
  const get = async (): Promise<HistoryReport> => {
    if (report !== undefined) return report
    const statuses = ctx.statuses ?? await cluster().finalStatuses(ctx.ids)
    report = cluster().history([...statuses.values()])
    return report
  }
  it('history (a): at most one accepted result per job', async () => {
    const r = await get()
    expect(r.violations.a, r.violations.a.join('\n')).toEqual([])
  }, 60_000)
  it('history (b): no stale-epoch result accepted, and every accepted result is backed by an execution of its epoch', async () => {
    const r = await get()
    expect([...r.violations.b, ...r.violations.d], [...r.violations.b, ...r.violations.d].join('\n')).toEqual([])
  }, 60_000)
  it('history (c): no two executions of one job overlap longer than lease + grace (5 s)', async () => {
    const r = await get()
    expect(r.violations.c, r.violations.c.join('\n')).toEqual([])
  }, 60_000)
}
