// Starts real agents as separate OS processes on loopback, for end-to-end tests, chaos tests
// and the demo. Each agent gets its own data dir, a free TCP port and a free API port.
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { AGENT_NODE_FLAGS } from '../../src/constants.ts'

const BIN = resolve(import.meta.dirname, '../../bin/bidmesh.js')

export interface AgentProcessOptions {
  name: string
  cpus?: number
  memory?: string
  labels?: Record<string, string>
  bootstrap?: string[]
  executor?: 'docker' | 'noop'
  dataDir?: string
  env?: Record<string, string>
  extraArgs?: string[]
}

export interface AgentProcess {
  name: string
  peerId: string
  addrs: string[]
  api: string
  dataDir: string
  proc: ChildProcess
  /** stderr lines (JSON logs), kept for debugging failures */
  logs: string[]
  exited: Promise<number | null>
}

export async function startAgentProcess (o: AgentProcessOptions, options: { timeoutMs?: number } = {}): Promise<AgentProcess> {
  const dataDir = o.dataDir ?? mkdtempSync(join(tmpdir(), `bidmesh-${o.name}-`))
  const args = [BIN, 'agent', '--data-dir', dataDir, '--listen', '/ip4/127.0.0.1/tcp/0', '--api', '127.0.0.1:0']
  if (o.cpus !== undefined) args.push('--cpus', String(o.cpus))
  if (o.memory !== undefined) args.push('--memory', o.memory)
  for (const [k, v] of Object.entries(o.labels ?? {})) args.push('--label', `${k}=${v}`)
  for (const b of o.bootstrap ?? []) args.push('--bootstrap', b)
  if (o.executor !== undefined) args.push('--executor', o.executor)
  args.push(...(o.extraArgs ?? []))
  const proc = spawn(process.execPath, [...AGENT_NODE_FLAGS, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, BIDMESH_LOG_LEVEL: process.env.BIDMESH_LOG_LEVEL ?? 'info', ...o.env } })
  const logs: string[] = []
  createInterface({ input: proc.stderr! }).on('line', l => { logs.push(l); if (logs.length > 5000) logs.shift() })
  const exited = new Promise<number | null>(res => proc.once('exit', code => res(code)))
  const info = await new Promise<{ peerId: string, addrs: string[], api: string }>((res, rej) => {
    let peerId = ''
    const addrs: string[] = []
    const timer = setTimeout(() => rej(new Error(`agent ${o.name} did not start in time; stderr:\n${logs.slice(-20).join('\n')}`)), options.timeoutMs ?? 30_000)
    void exited.then(code => { clearTimeout(timer); rej(new Error(`agent ${o.name} exited with ${String(code)}; stderr:\n${logs.slice(-20).join('\n')}`)) })
    createInterface({ input: proc.stdout! }).on('line', line => {
      const [word, value] = line.split(' ')
      if (word === 'bidmesh' && line.startsWith('bidmesh agent ')) peerId = line.slice('bidmesh agent '.length)
      else if (word === 'listening') addrs.push(value)
      else if (word === 'api') { clearTimeout(timer); res({ peerId, addrs, api: value }) }
    })
  })
  return { name: o.name, ...info, dataDir, proc, logs, exited }
}

export async function stopAgentProcess (a: AgentProcess, signal: NodeJS.Signals = 'SIGTERM', options: { removeData?: boolean } = {}): Promise<void> {
  if (a.proc.exitCode === null && a.proc.signalCode === null) {
    a.proc.kill(signal)
    const t = setTimeout(() => a.proc.kill('SIGKILL'), 10_000)
    await a.exited
    clearTimeout(t)
  }
  if (options.removeData === true) rmSync(a.dataDir, { recursive: true, force: true })
}

/** Polls fn until it returns a value that is not undefined, or fails after timeoutMs. */
export async function waitFor<T> (what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs = 20_000, intervalMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let lastErr: unknown
  while (Date.now() < deadline) {
    try {
      const v = await fn()
      if (v !== undefined) return v
    } catch (err) { lastErr = err }
    await new Promise(r => setTimeout(r, intervalMs))
  }
  throw new Error(`timed out waiting for ${what}${lastErr !== undefined ? `: ${String(lastErr)}` : ''}`)
}

/** Waits until every one of `agents` sees `count` nodes as alive: capacity gossip works. */
export async function waitAllSeeAlive (agents: AgentProcess[], count = agents.length, timeoutMs = 20_000): Promise<void> {
  for (const x of agents) {
    await waitFor(`${x.name} to see ${count} alive nodes`, async () => {
      const r = await api(x.api, '/v1/nodes')
      return r.body.nodes.filter((n: any) => n.liveness === 'alive').length === count ? true : undefined
    }, timeoutMs)
  }
}

export async function api<T = any> (base: string, path: string, init: { method?: string, body?: unknown, headers?: Record<string, string> } = {}): Promise<{ status: number, body: T }> {
  const res = await fetch(`${base}${path}`, {
    method: init.method ?? 'GET',
    headers: { ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}), ...init.headers },
    ...(init.body !== undefined ? { body: typeof init.body === 'string' ? init.body : JSON.stringify(init.body) } : {}),
    signal: AbortSignal.timeout(10_000)
  })
  const text = await res.text()
  let body: any = text
  try { body = JSON.parse(text) } catch {}
  return { status: res.status, body }
}

export const TEST_IMAGE = process.env.BIDMESH_TEST_IMAGE ?? 'bidmesh/busybox:latest'
