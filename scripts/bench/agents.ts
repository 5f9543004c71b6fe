// Starts real agents as separate OS processes on loopback for the benchmarks. Unlike the test
// helper, an agent's stderr (its JSON log) goes straight to a file, so a busy agent's logging
// costs the load generator nothing; the file is kept when a benchmark fails.
import { type ChildProcess, spawn } from 'node:child_process'
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { AGENT_NODE_FLAGS } from '../../src/constants.ts'
import { cleanup } from './cleanup.ts'
import { request, sleep, waitFor } from './util.ts'

/** The CLI entry point; BIDMESH_BENCH_BIN may point at another checkout's bin/bidmesh.js. */
export const BIN = process.env.BIDMESH_BENCH_BIN ?? resolve(import.meta.dirname, '../../bin/bidmesh.js')
export const IMAGE = process.env.BIDMESH_TEST_IMAGE ?? 'bidmesh/busybox:latest'

/** What the agents run, by the rule bin/bidmesh.js applies when each one starts: the bundle
 *  while dist/BUILT is newer than every file under src/, else the TypeScript sources through
 *  tsx (slower and larger; figures from such a run are not comparable). */
export function agentCode (): 'bundle' | 'sources' {
  if (process.env.BIDMESH_FROM_SOURCE === '1') return 'sources'
  const root = resolve(BIN, '../..')
  const newest = (dir: string): number => readdirSync(dir, { withFileTypes: true })
    .reduce((m, e) => Math.max(m, e.isDirectory() ? newest(join(dir, e.name)) : statSync(join(dir, e.name)).mtimeMs), 0)
  try {
    return statSync(join(root, 'dist', 'BUILT')).mtimeMs >= newest(join(root, 'src')) ? 'bundle' : 'sources'
  } catch {
    return 'sources'
  }
}

export interface AgentOptions {
  name: string
  cpus: number
  memory: string
  executor: 'docker' | 'noop'
  bootstrap?: string[]
}

export interface BenchAgent {
  name: string
  peerId: string
  addrs: string[]
  api: string
  pid: number
  dataDir: string
  logFile: string
  proc: ChildProcess
  exited: Promise<number | null>
}

/** An agent starts in about a second on a quiet machine; a starved one can take minutes. */
const START_TIMEOUT_MS = 180_000

const workDir = mkdtempSync(join(tmpdir(), 'bidmesh-bench-'))
export const LOG_DIR = join(workDir, 'logs')
mkdirSync(LOG_DIR, { recursive: true })
const running = new Set<BenchAgent>()
const stopping = new WeakSet<ChildProcess>()
/** Agents that died while a benchmark used them (crash, OOM, someone else's kill). */
export const unexpectedExits: string[] = []
// BIDMESH_BENCH_KEEP_LOGS=1 keeps them after a run that went well too (to count or read them).
let keepLogs = process.env.BIDMESH_BENCH_KEEP_LOGS === '1'

/** Keep agent logs (the work dir) after the run, e.g. because something failed. */
export function keepAgentLogs (): void { keepLogs = true }

cleanup.add('agents', async () => {
  await Promise.all([...running].map(async a => await stopAgent(a)))
  if (!keepLogs) rmSync(workDir, { recursive: true, force: true })
  else console.error(`agent logs kept in ${LOG_DIR}`)
})

export async function startAgent (o: AgentOptions, timeoutMs = START_TIMEOUT_MS): Promise<BenchAgent> {
  const dataDir = join(workDir, `${o.name}-${Date.now().toString(36)}`)
  mkdirSync(dataDir, { recursive: true })
  const logFile = join(LOG_DIR, `${o.name}-${Date.now().toString(36)}.log`)
  const logFd = openSync(logFile, 'a')
  const args = [BIN, 'agent', '--data-dir', dataDir, '--listen', '/ip4/127.0.0.1/tcp/0', '--api', '127.0.0.1:0',
    '--cpus', String(o.cpus), '--memory', o.memory]
  // The no-op executor is only ever selected explicitly (it is never the default).
  if (o.executor === 'noop') args.push('--executor', 'noop')
  for (const b of o.bootstrap ?? []) args.push('--bootstrap', b)
  // BIDMESH_BENCH_NODE_FLAGS: extra flags for the agents' node, e.g. "--cpu-prof
  // --cpu-prof-dir=/tmp/prof" to profile them (node refuses --cpu-prof in NODE_OPTIONS).
  const nodeFlags = (process.env.BIDMESH_BENCH_NODE_FLAGS ?? '').split(/\s+/).filter(f => f !== '')
  // The agents run with the flags every launcher gives them (AGENT_NODE_FLAGS).
  const proc = spawn(process.execPath, [...AGENT_NODE_FLAGS, ...nodeFlags, ...args], { stdio: ['ignore', 'pipe', logFd], env: { ...process.env } })
  closeSync(logFd)
  const exited = new Promise<number | null>(res => proc.once('exit', code => res(code)))
  proc.once('exit', (code, signal) => {
    if (stopping.has(proc)) return
    const what = `agent ${o.name} (pid ${String(proc.pid)}) exited unexpectedly: code ${String(code)}, signal ${String(signal)}; log ${logFile}`
    unexpectedExits.push(what)
    keepLogs = true
    console.error(`!! ${what}`)
  })
  const tail = (): string => { try { return readFileSync(logFile, 'utf8').split('\n').slice(-15).join('\n') } catch { return '' } }
  const info = await new Promise<{ peerId: string, addrs: string[], api: string }>((res, rej) => {
    let peerId = ''
    const addrs: string[] = []
    const timer = setTimeout(() => { stopping.add(proc); proc.kill('SIGKILL'); rej(new Error(`agent ${o.name} did not start within ${timeoutMs} ms; log:\n${tail()}`)) }, timeoutMs)
    void exited.then(code => { clearTimeout(timer); rej(new Error(`agent ${o.name} exited with ${String(code)}; log:\n${tail()}`)) })
    createInterface({ input: proc.stdout! }).on('line', line => {
      const [word, value] = line.split(' ')
      if (line.startsWith('bidmesh agent ')) peerId = line.slice('bidmesh agent '.length)
      else if (word === 'listening') addrs.push(value)
      else if (word === 'api') { clearTimeout(timer); res({ peerId, addrs, api: value }) }
    })
  })
  const agent: BenchAgent = { name: o.name, ...info, pid: proc.pid!, dataDir, logFile, proc, exited }
  running.add(agent)
  return agent
}

export async function stopAgent (a: BenchAgent): Promise<void> {
  stopping.add(a.proc)
  if (a.proc.exitCode === null && a.proc.signalCode === null) {
    a.proc.kill('SIGTERM')
    const t = setTimeout(() => a.proc.kill('SIGKILL'), 15_000)
    await a.exited
    clearTimeout(t)
  }
  running.delete(a)
  rmSync(a.dataDir, { recursive: true, force: true })
}

/** n agents: the first one alone, the rest bootstrapping from it; resolves once every agent
 *  sees all n as alive, plus a short settle so gossipsub's mesh has formed. On failure it
 *  stops the agents it did start before rethrowing. */
export async function startCluster (n: number, o: Omit<AgentOptions, 'name' | 'bootstrap'>, prefix: string, settleMs = 2000): Promise<BenchAgent[]> {
  const agents: BenchAgent[] = []
  try {
    agents.push(await startAgent({ ...o, name: `${prefix}0` }))
    const rest = await Promise.allSettled(Array.from({ length: n - 1 }, async (_, i) => await startAgent({ ...o, name: `${prefix}${i + 1}`, bootstrap: agents[0].addrs })))
    for (const r of rest) if (r.status === 'fulfilled') agents.push(r.value)
    const failed = rest.find((r): r is PromiseRejectedResult => r.status === 'rejected')
    if (failed !== undefined) throw failed.reason
    for (const a of agents) {
      await waitFor(`${a.name} to see ${n} alive agents`, async () => {
        const r = await request(a.api, '/v1/nodes')
        return r.status === 200 && r.body.nodes.filter((x: any) => x.liveness === 'alive').length === n ? true : undefined
      }, START_TIMEOUT_MS, 200)
    }
  } catch (err) {
    // A half-started cluster must not linger (and load the machine) until the very end.
    await stopCluster(agents)
    throw err
  }
  await sleep(settleMs)
  return agents
}

export async function stopCluster (agents: BenchAgent[]): Promise<void> {
  await Promise.all(agents.map(async a => await stopAgent(a)))
}
