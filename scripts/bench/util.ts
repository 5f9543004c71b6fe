// Small helpers shared by the benchmarks: a keep-alive HTTP client (lighter than fetch, so
// the load generator steals less of the two cores from the agents), statistics, /proc
// readers and formatting.
import { execFileSync } from 'node:child_process'
import http from 'node:http'
import { readdirSync, readFileSync } from 'node:fs'

export const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))

const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 256 })

export interface HttpResult<T> { status: number, body: T, text: string }

/** One HTTP request to an agent's API (JSON in, JSON out when it parses). */
export async function request<T = any> (base: string, path: string, init: { method?: string, body?: unknown, timeoutMs?: number } = {}): Promise<HttpResult<T>> {
  const url = new URL(path, base)
  const payload = init.body === undefined ? undefined : Buffer.from(JSON.stringify(init.body))
  return await new Promise<HttpResult<T>>((resolve, reject) => {
    const req = http.request(url, {
      method: init.method ?? 'GET',
      agent: keepAlive,
      headers: payload !== undefined ? { 'content-type': 'application/json', 'content-length': payload.length } : {},
      timeout: init.timeoutMs ?? 15_000
    }, res => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8')
        let body: any = text
        try { body = JSON.parse(text) } catch {}
        resolve({ status: res.statusCode ?? 0, body, text })
      })
      res.on('error', reject)
    })
    req.on('timeout', () => req.destroy(new Error(`timeout: ${req.method} ${url.href}`)))
    req.on('error', reject)
    req.end(payload)
  })
}

/** Polls fn until it returns something other than undefined; throws after timeoutMs. */
export async function waitFor<T> (what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs = 30_000, intervalMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let lastErr: unknown
  while (Date.now() < deadline) {
    try {
      const v = await fn()
      if (v !== undefined) return v
    } catch (err) { lastErr = err }
    await sleep(intervalMs)
  }
  throw new Error(`timed out waiting for ${what}${lastErr !== undefined ? `: ${String(lastErr)}` : ''}`)
}

/** Runs fn over items with at most `limit` at once; results keep the input order. */
export async function mapLimit<T, R> (items: T[], limit: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length)
  let next = 0
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++
      out[i] = await fn(items[i], i)
    }
  }))
  return out
}

// ---- statistics ---------------------------------------------------------------------------

/** Nearest-rank percentile (p in 0..100) of unsorted values; NaN when empty. */
export function percentile (values: number[], p: number): number {
  if (values.length === 0) return NaN
  const sorted = [...values].sort((a, b) => a - b)
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length))
  return sorted[Math.min(sorted.length, rank) - 1]
}

export function mean (values: number[]): number {
  return values.length === 0 ? NaN : values.reduce((a, b) => a + b, 0) / values.length
}

export function median (values: number[]): number { return percentile(values, 50) }

export interface Summary { n: number, p50: number, p90: number, p99: number, mean: number, min: number, max: number }

export function summarize (values: number[]): Summary {
  return {
    n: values.length,
    p50: percentile(values, 50),
    p90: percentile(values, 90),
    p99: percentile(values, 99),
    mean: round(mean(values), 1),
    min: values.length === 0 ? NaN : Math.min(...values),
    max: values.length === 0 ? NaN : Math.max(...values)
  }
}

export function round (x: number, digits = 2): number {
  if (!Number.isFinite(x)) return x
  const f = 10 ** digits
  return Math.round(x * f) / f
}

/** "1.23×" style ratio, or n/a. */
export function ratio (a: number, b: number): number {
  return Number.isFinite(a) && Number.isFinite(b) && b > 0 ? round(a / b, 2) : NaN
}

export function verdict (ok: boolean | undefined): string {
  return ok === undefined ? 'n/a' : ok ? 'MET' : 'MISSED'
}

/** JSON.stringify that writes NaN/Infinity as null (JSON has no NaN). */
export function jsonLine (value: unknown): string {
  return JSON.stringify(value, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v))
}

// ---- /proc ---------------------------------------------------------------------------------

export const CLK_TCK = (() => {
  try { return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100 } catch { return 100 }
})()

/** Resident set size of a process, in bytes (VmRSS), or NaN when it is gone. */
export function rssBytes (pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m == null ? NaN : Number(m[1]) * 1024
  } catch { return NaN }
}

/** CPU time (user + system) a process has used, in seconds, or NaN when it is gone; with
 *  `thread`, that one thread's (the main thread's id is the pid). */
export function cpuSeconds (pid: number, thread?: number): number {
  try {
    const stat = readFileSync(thread === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${thread}/stat`, 'utf8')
    // The command name (field 2) may contain spaces; everything after its ')' is fixed.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    // fields[0] is field 3 (state); utime is field 14, stime field 15.
    return (Number(fields[11]) + Number(fields[12])) / CLK_TCK
  } catch { return NaN }
}

/** RssAnon (anonymous resident memory, not shared file mappings such as the node binary), bytes. */
export function rssAnonBytes (pid: number): number {
  try {
    const m = /^RssAnon:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m == null ? NaN : Number(m[1]) * 1024
  } catch { return NaN }
}

/** The process ids of pid's children, grandchildren, ... (e.g. tsx's esbuild service). */
export function descendants (pid: number): number[] {
  const children = new Map<number, number[]>()
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      const list = children.get(ppid) ?? []
      list.push(Number(entry))
      children.set(ppid, list)
    } catch {} // gone meanwhile
  }
  const out: number[] = []
  const walk = (p: number): void => { for (const c of children.get(p) ?? []) { out.push(c); walk(c) } }
  walk(pid)
  return out
}

export function loadAverage (): number[] {
  try { return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).map(Number) } catch { return [] }
}

function sh (cmd: string, args: string[]): string {
  try { return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 15_000 }).trim() } catch { return 'unknown' }
}

export interface MachineInfo {
  nproc: string
  memoryTotalGiB: string
  kernel: string
  dockerServer: string
  dockerClient: string
  node: string
  loadAvgAtStart: number[]
}

export function machineInfo (): MachineInfo {
  const free = sh('free', ['-g'])
  const memLine = free.split('\n').find(l => l.startsWith('Mem:'))
  return {
    nproc: sh('nproc', []),
    memoryTotalGiB: memLine?.split(/\s+/)[1] ?? 'unknown',
    kernel: sh('uname', ['-r']),
    dockerServer: sh('docker', ['version', '--format', '{{.Server.Version}}']),
    dockerClient: sh('docker', ['version', '--format', '{{.Client.Version}}']),
    node: process.version,
    loadAvgAtStart: loadAverage()
  }
}

// ---- printing -------------------------------------------------------------------------------

export function table (rows: Array<Array<string | number>>): string {
  const cells = rows.map(r => r.map(c => typeof c === 'number' ? (Number.isFinite(c) ? String(c) : 'n/a') : c))
  const widths = cells[0].map((_, i) => Math.max(...cells.map(r => (r[i] ?? '').length)))
  return cells.map(r => r.map((c, i) => i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i])).join('  ')).join('\n')
}

export function heading (text: string): void {
  console.log(`\n== ${text}`)
}
