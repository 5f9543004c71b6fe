// Human output for the CLI: aligned tables and short renderings of ids, ages and
// explanations. Pure functions, so they are easy to test and reuse.
import type { NodeView } from '../agent/agent-api.ts'
import type { Explanation, JobSummary } from '../protocol/job.ts'
import { formatBytes } from '../protocol/units.ts'
import type { JobStatus } from '../api/status.ts'

/** Columns separated by two spaces, each padded to its widest cell; the last column is
 *  not padded so lines carry no trailing blanks. */
export function table (header: string[], rows: string[][]): string {
  const all = [header, ...rows]
  const columns = Math.max(...all.map(r => r.length))
  const widths: number[] = []
  for (let c = 0; c < columns; c++) widths.push(Math.max(...all.map(r => (r[c] ?? '').length)))
  return all.map(r => {
    const cells: string[] = []
    for (let c = 0; c < columns; c++) {
      const cell = r[c] ?? ''
      cells.push(c === columns - 1 ? cell : cell.padEnd(widths[c]))
    }
    return cells.join('  ').trimEnd()
  }).join('\n') + '\n'
}

/** `key:  value` lines with the values aligned. */
export function keyValues (pairs: Array<[string, string]>): string {
  const width = Math.max(...pairs.map(([k]) => k.length)) + 1
  return pairs.map(([k, v]) => `${(k + ':').padEnd(width)}  ${v}`.trimEnd()).join('\n') + '\n'
}

/** Peer ids are long and share a prefix (12D3KooW...): the tail is what tells them apart. */
export function shortPeer (peerId: string | null | undefined): string {
  if (peerId == null || peerId === '') return '-'
  return peerId.length <= 8 ? peerId : peerId.slice(-8)
}

export function formatAge (ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '-'
  const s = Math.floor(ms / 1000)
  if (s < 60) return `${s}s`
  const m = Math.floor(s / 60)
  if (m < 60) return `${m}m`
  const h = Math.floor(m / 60)
  if (h < 48) return `${h}h`
  return `${Math.floor(h / 24)}d`
}

function plural (n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`
}

/** `memory: 3 nodes, label zone=a: 2 nodes`; empty string when nothing was filtered. */
export function filteredSummary (filtered: Record<string, number> | undefined): string {
  return Object.entries(filtered ?? {})
    .sort((a, b) => b[1] - a[1])
    .map(([reason, n]) => `${reason}: ${plural(n, 'node')}`)
    .join(', ')
}

export function stateText (state: string, reason: string | null | undefined, exitCode?: number | null): string {
  if (reason == null) return state
  if (reason === 'exit' && exitCode != null) return `${state} (exit ${exitCode})`
  return `${state} (${reason})`
}

/** Up to three decimals, trailing zeros dropped: 0.5, 0.825, 3. */
export function formatScore (n: number): string {
  return Number.isFinite(n) ? String(Number(n.toFixed(3))) : String(n)
}

export function formatExplanation (e: Explanation): string {
  const pairs: Array<[string, string]> = [
    ['considered', plural(e.consideredNodes, 'node')],
    ['filtered', filteredSummary(e.filtered) || 'none']
  ]
  if (e.refused !== undefined && Object.keys(e.refused).length > 0) {
    pairs.push(['refused', Object.entries(e.refused).map(([r, n]) => `${r}: ${plural(n, 'bid')}`).join(', ')])
  }
  pairs.push(['candidates', e.decidedFrom === 'view'
    ? 'none: from the capacity view, no bid round'
    : e.candidates.length > 0 ? e.candidates.map(shortPeer).join(', ') : 'none'])
  pairs.push(['winner', e.winner !== undefined ? shortPeer(e.winner) : 'none'])
  if (Number.isFinite(e.decidedAtMs)) pairs.push(['decided', new Date(e.decidedAtMs).toISOString()])
  let out = keyValues(pairs)
  if (e.top.length > 0) {
    out += 'top scores:\n'
    const rows = e.top.map(s => [
      shortPeer(s.node),
      formatScore(s.score),
      Object.entries(s.components).map(([k, v]) => `${k}=${formatScore(v)}`).join(' ')
    ])
    out += indent(table(['NODE', 'SCORE', 'COMPONENTS'], rows), '  ')
  } else {
    out += 'top scores: none (no feasible node)\n'
  }
  return out
}

function indent (text: string, prefix: string): string {
  return text.split('\n').map(l => (l === '' ? l : prefix + l)).join('\n')
}

export function formatJobs (jobs: JobSummary[], nowMs = Date.now()): string {
  if (jobs.length === 0) return 'no jobs\n'
  return table(['ID', 'NAME', 'IMAGE', 'STATE', 'NODE', 'AGE'], jobs.map(j => [
    j.id,
    j.name ?? '-',
    j.image,
    stateText(j.state, j.reason),
    shortPeer(j.node),
    formatAge(nowMs - j.createdAtMs)
  ]))
}

function percent (part: number, whole: number): string {
  return whole > 0 ? `${Math.round((part / whole) * 100)}%` : '-'
}

const cores = (milli: number): string => formatScore(Math.round(milli) / 1000)

/** One row per node with what is used and what is free, then a total over the alive nodes
 *  (the ones that can take work now). Used is total minus free as the node advertises it. */
export function formatNodes (nodes: NodeView[]): string {
  if (nodes.length === 0) return 'no nodes\n'
  // A node can advertise less than nothing free (over-committed): it reads as full.
  const used = (total: number, free: number): number => Math.max(0, total - Math.max(0, free))
  const out = table(['NODE', 'STATE', 'JOBS', 'CPU USED', 'CPU FREE', 'MEMORY USED', 'MEMORY FREE', 'SEEN', 'LABELS'], nodes.map(n => {
    const cpuUsed = used(n.totalCpuMilli, n.freeCpuMilli)
    const memUsed = used(n.totalMemoryBytes, n.freeMemoryBytes)
    return [
      shortPeer(n.peerId) + (n.self ? '*' : ''),
      n.liveness + (n.draining ? ',draining' : ''),
      String(n.runningJobs),
      `${cores(cpuUsed)}/${cores(n.totalCpuMilli)} (${percent(cpuUsed, n.totalCpuMilli)})`,
      cores(Math.max(0, n.freeCpuMilli)),
      `${formatBytes(memUsed)}/${formatBytes(n.totalMemoryBytes)} (${percent(memUsed, n.totalMemoryBytes)})`,
      formatBytes(Math.max(0, n.freeMemoryBytes)),
      n.self ? '-' : formatAge(n.lastSeenAgoMs) + ' ago',
      Object.entries(n.labels).map(([k, v]) => `${k}=${v}`).join(',') || '-'
    ]
  }))
  const alive = nodes.filter(n => n.liveness === 'alive')
  const sum = (f: (n: NodeView) => number): number => alive.reduce((total, n) => total + f(n), 0)
  const cpuTotal = sum(n => n.totalCpuMilli)
  const cpuFree = sum(n => Math.max(0, n.freeCpuMilli))
  const memTotal = sum(n => n.totalMemoryBytes)
  const memFree = sum(n => Math.max(0, n.freeMemoryBytes))
  return out + `\n${alive.length} of ${plural(nodes.length, 'node')} alive; ` +
    `cpu ${cores(used(cpuTotal, cpuFree))} used, ${cores(cpuFree)} free of ${cores(cpuTotal)}; ` +
    `memory ${formatBytes(used(memTotal, memFree))} used, ${formatBytes(memFree)} free of ${formatBytes(memTotal)}\n`
}

/** Quotes argv for display the way a POSIX shell would need it. */
export function shellQuote (argv: string[]): string {
  return argv.map(a => /^[A-Za-z0-9_@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`).join(' ')
}

export function formatStatus (s: JobStatus, nowMs = Date.now()): string {
  const since = (iso: string | null): string => {
    if (iso === null) return '-'
    return `${iso} (${formatAge(nowMs - Date.parse(iso))} ago)`
  }
  const spec = s.spec
  const pairs: Array<[string, string]> = [
    ['id', s.id],
    ['name', s.name ?? '-'],
    ['state', stateText(s.state, s.reason, s.exitCode)],
    ['exit code', s.exitCode == null ? '-' : String(s.exitCode)],
    ['node', s.node ?? '-'],
    ['owner', s.owner],
    ['image', spec.image],
    ['command', spec.command.length > 0 ? shellQuote(spec.command) : '(image default)'],
    ['resources', `${formatScore(spec.cpuMilli / 1000)} cpu, ${formatBytes(spec.memoryBytes)} memory, ${spec.pidsLimit} pids, timeout ${formatAge(spec.timeoutMs)}`],
    ['attempts', `${s.attempts.length} (epoch ${s.epoch}, retries allowed ${spec.retries})`],
    ['created', since(s.createdAt)],
    ['started', since(s.startedAt)],
    ['finished', since(s.finishedAt)]
  ]
  if (Object.keys(spec.constraints).length > 0) {
    pairs.splice(8, 0, ['constraints', Object.entries(spec.constraints).map(([k, v]) => `${k}=${v}`).join(',')])
  }
  if (s.state === 'pending' && s.explanation !== null) {
    pairs.push(['waiting', filteredSummary(s.explanation.filtered) || 'for placement'])
  }
  let out = keyValues(pairs)
  if (s.attempts.length > 0) {
    out += '\nattempts:\n'
    out += indent(table(['EPOCH', 'NODE', 'STATE', 'STARTED', 'FINISHED', 'RESULT'], s.attempts.map(a => [
      String(a.epoch),
      shortPeer(a.node),
      a.state,
      a.startedAt ?? '-',
      a.finishedAt ?? '-',
      a.reason === null ? (a.error ?? '-') : `${a.reason}${a.exitCode !== null ? ` ${a.exitCode}` : ''}${a.error !== null ? ` (${a.error})` : ''}`
    ])), '  ')
  }
  if (s.events.length > 0) {
    out += '\nevents:\n'
    out += indent(table(['TIME', 'TYPE', 'EPOCH', 'NODE', 'DETAIL'], s.events.map(e => [
      Number.isFinite(e.atMs) ? new Date(e.atMs).toISOString() : '-',
      e.type,
      e.epoch === undefined ? '-' : String(e.epoch),
      shortPeer(e.node),
      e.detail ?? ''
    ])), '  ')
  }
  return out
}
