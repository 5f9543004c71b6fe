// Real network partitions for the chaos suite: every agent runs in its own Linux network
// namespace, attached by a veth pair to one host bridge. A partition is a set of iptables
// DROP rules inside the namespaces, so each side keeps talking to itself and the host
// (the bridge address) still reaches every agent's API. The Docker socket is a unix socket,
// so agents in a namespace still reach the engine.
//
//   host: bridge bmchaos0 10.213.0.1/24, host veth ends bmcN-h
//   netns bmchaos-N: bmcN-n 10.213.0.(10+N)/24, lo up
//
// Needs root, `ip` and `iptables` (scripts/setup.sh installs them). It never skips.
import { execFile, execFileSync, spawn } from 'node:child_process'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { AGENT_NODE_FLAGS } from '../../src/constants.ts'
import type { AgentProcess, AgentProcessOptions } from './cluster.ts'

const BIN = resolve(import.meta.dirname, '../../bin/bidmesh.js')

export const BRIDGE = 'bmchaos0'
export const SUBNET_PREFIX = '10.213.0'
export const HOST_IP = `${SUBNET_PREFIX}.1`
const NS_PREFIX = 'bmchaos-'
const FORWARD_RULE = ['FORWARD', '-i', BRIDGE, '-o', BRIDGE, '-j', 'ACCEPT']

export interface NetNode {
  index: number
  ns: string
  ip: string
  hostVeth: string
}

function run (cmd: string, args: string[], options: { quiet?: boolean } = {}): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
  } catch (err: any) {
    if (options.quiet === true) return ''
    throw new Error(`${cmd} ${args.join(' ')} failed: ${String(err.stderr ?? err.message).trim()}`)
  }
}

function has (cmd: string): boolean {
  try { execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }); return true } catch { return false }
}

/** Fails loudly (never skips) when the test cannot build namespaces here. */
export function requireNetns (): void {
  const missing: string[] = []
  if (process.getuid?.() !== 0) missing.push('root')
  if (!has('ip')) missing.push('ip (iproute2)')
  if (!has('iptables')) missing.push('iptables')
  if (missing.length > 0) {
    throw new Error(`the partition test needs ${missing.join(', ')}${process.env.CI === 'true' ? ' (CI=true)' : ''}. Run 'bash scripts/setup.sh' as root.`)
  }
}

/** Removes everything this module may have created, including leftovers of a crashed run. */
export function cleanupNetns (): void {
  for (const line of run('ip', ['netns', 'list'], { quiet: true }).split('\n')) {
    const ns = line.split(' ')[0]
    if (ns.startsWith(NS_PREFIX)) {
      // Processes still inside would keep the namespace alive: kill them first.
      for (const pid of run('ip', ['netns', 'pids', ns], { quiet: true }).split('\n').filter(Boolean)) {
        try { process.kill(Number(pid), 'SIGKILL') } catch {}
      }
      run('ip', ['netns', 'del', ns], { quiet: true })
    }
  }
  for (const line of run('ip', ['-o', 'link', 'show'], { quiet: true }).split('\n')) {
    const m = /^\d+:\s+(bmc\d+-h)[@:]/.exec(line)
    if (m !== null) run('ip', ['link', 'del', m[1]], { quiet: true })
  }
  run('ip', ['link', 'del', BRIDGE], { quiet: true })
  // -D removes one copy per call; remove every copy.
  for (let i = 0; i < 20; i++) {
    try { execFileSync('iptables', ['-C', ...FORWARD_RULE], { stdio: 'ignore' }) } catch { break }
    run('iptables', ['-D', ...FORWARD_RULE], { quiet: true })
  }
}

/** Creates the bridge and `count` namespaces. Call cleanupNetns() in afterAll. */
export function createNetwork (count: number): NetNode[] {
  requireNetns()
  cleanupNetns()
  run('ip', ['link', 'add', BRIDGE, 'type', 'bridge'])
  run('ip', ['addr', 'add', `${HOST_IP}/24`, 'dev', BRIDGE])
  run('ip', ['link', 'set', BRIDGE, 'up'])
  // Docker sets the FORWARD policy to DROP; with br_netfilter, bridged frames pass through it.
  run('iptables', ['-I', ...FORWARD_RULE])
  const nodes: NetNode[] = []
  for (let i = 0; i < count; i++) {
    const ns = `${NS_PREFIX}${i}`
    const hostVeth = `bmc${i}-h`
    const nsVeth = `bmc${i}-n`
    const ip = `${SUBNET_PREFIX}.${10 + i}`
    run('ip', ['netns', 'add', ns])
    run('ip', ['link', 'add', hostVeth, 'type', 'veth', 'peer', 'name', nsVeth])
    run('ip', ['link', 'set', nsVeth, 'netns', ns])
    run('ip', ['link', 'set', hostVeth, 'master', BRIDGE])
    run('ip', ['link', 'set', hostVeth, 'up'])
    run('ip', ['netns', 'exec', ns, 'ip', 'addr', 'add', `${ip}/24`, 'dev', nsVeth])
    run('ip', ['netns', 'exec', ns, 'ip', 'link', 'set', nsVeth, 'up'])
    run('ip', ['netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up'])
    nodes.push({ index: i, ns, ip, hostVeth })
  }
  return nodes
}

async function runAsync (cmd: string, args: string[]): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    execFile(cmd, args, { timeout: 30_000 }, (err, _stdout, stderr) => {
      if (err === null) resolve()
      else reject(new Error(`${cmd} ${args.join(' ')} failed: ${String(stderr).trim() || err.message}`))
    })
  })
}

/** Cuts every link between the two sides (both directions), keeping each side and the host.
 *  One shell per namespace, all at once: the cut is complete when this resolves. */
export async function partition (sideA: NetNode[], sideB: NetNode[]): Promise<void> {
  const jobs: Array<Promise<void>> = []
  for (const [mine, others] of [[sideA, sideB], [sideB, sideA]] as const) {
    for (const n of mine) {
      const script = others.map(o => `iptables -I INPUT -s ${o.ip} -j DROP && iptables -I OUTPUT -d ${o.ip} -j DROP`).join(' && ')
      jobs.push(runAsync('ip', ['netns', 'exec', n.ns, 'sh', '-c', script]))
    }
  }
  await Promise.all(jobs)
}

/** Removes every partition rule (the namespaces hold no other rules), all namespaces at once. */
export async function heal (nodes: NetNode[]): Promise<void> {
  await Promise.all(nodes.map(async n => await runAsync('ip', ['netns', 'exec', n.ns, 'sh', '-c', 'iptables -F INPUT && iptables -F OUTPUT'])))
}

/** Can `from` open a TCP connection to `to:port` (tried from inside from's namespace)? */
export async function canConnect (from: NetNode, toIp: string, port: number): Promise<boolean> {
  return await new Promise(resolve => {
    execFile('ip', ['netns', 'exec', from.ns, process.execPath, '-e',
      `const s=require('net').connect({host:${JSON.stringify(toIp)},port:${port},timeout:1000});s.on('connect',()=>process.exit(0));s.on('timeout',()=>process.exit(1));s.on('error',()=>process.exit(1))`],
    { timeout: 10_000 }, err => resolve(err === null))
  })
}

/** startAgentProcess (test/support/cluster.ts) with the agent run inside a namespace:
 *  `ip netns exec NS node bin/bidmesh.js agent --listen /ip4/IP/tcp/0 --api IP:0 ...`.
 *  `ip netns exec` execs the command, so the child pid is the agent's own and SIGKILL hits it. */
export async function startAgentInNetns (node: NetNode, o: AgentProcessOptions, options: { timeoutMs?: number } = {}): Promise<AgentProcess> {
  return await spawnAgentProcess(o, { ...options, netns: node })
}

/** A copy of startAgentProcess (test/support/cluster.ts) with three additions for the chaos
 *  suite: an optional network namespace (`netns`), a child that is killed when the start fails
 *  or times out (so no agent outlives a failed start), and logs kept up to 50 000 lines. */
export async function spawnAgentProcess (o: AgentProcessOptions, options: { timeoutMs?: number, netns?: NetNode } = {}): Promise<AgentProcess> {
  const dataDir = o.dataDir ?? mkdtempSync(join(tmpdir(), `bidmesh-${o.name}-`))
  const ip = options.netns?.ip ?? '127.0.0.1'
  const args = [BIN, 'agent', '--data-dir', dataDir, '--listen', `/ip4/${ip}/tcp/0`, '--api', `${ip}:0`]
  // In a test namespace the API is on the namespace's own address, reachable only from this
  // machine's test bridge: serving it without a token there is a deliberate choice.
  if (options.netns !== undefined) args.push('--insecure-api')
  if (o.cpus !== undefined) args.push('--cpus', String(o.cpus))
  if (o.memory !== undefined) args.push('--memory', o.memory)
  for (const [k, v] of Object.entries(o.labels ?? {})) args.push('--label', `${k}=${v}`)
  for (const b of o.bootstrap ?? []) args.push('--bootstrap', b)
  if (o.executor !== undefined) args.push('--executor', o.executor)
  args.push(...(o.extraArgs ?? []))
  const env = { ...process.env, BIDMESH_LOG_LEVEL: process.env.BIDMESH_LOG_LEVEL ?? 'info', ...o.env }
  const proc = options.netns !== undefined
    ? spawn('ip', ['netns', 'exec', options.netns.ns, process.execPath, ...AGENT_NODE_FLAGS, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env })
    : spawn(process.execPath, [...AGENT_NODE_FLAGS, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env })
  const logs: string[] = []
  const exited = new Promise<number | null>(res => proc.once('exit', code => res(code)))
  try {
    const info = await new Promise<{ peerId: string, addrs: string[], api: string }>((res, rej) => {
      let peerId = ''
      const addrs: string[] = []
      const timer = setTimeout(() => rej(new Error(`agent ${o.name} did not start in ${options.timeoutMs ?? 45_000} ms; stderr:\n${logs.slice(-20).join('\n')}`)), options.timeoutMs ?? 45_000)
      void exited.then(code => { clearTimeout(timer); rej(new Error(`agent ${o.name} exited with ${String(code)}; stderr:\n${logs.slice(-20).join('\n')}`)) })
      createInterface({ input: proc.stderr! }).on('line', l => {
        logs.push(l)
        if (logs.length > 50_000) logs.shift()
        // The CLI reports a fatal start-up error as one plain 'bidmesh: …' / 'bidmesh agent: …' line; do not wait out the timeout.
        if (/^bidmesh( agent)?: /.test(l)) { clearTimeout(timer); rej(new Error(`agent ${o.name} failed to start: ${l}`)) }
      })
      createInterface({ input: proc.stdout! }).on('line', line => {
        const [word, value] = line.split(' ')
        if (word === 'bidmesh' && line.startsWith('bidmesh agent ')) peerId = line.slice('bidmesh agent '.length)
        else if (word === 'listening') addrs.push(value)
        else if (word === 'api') { clearTimeout(timer); res({ peerId, addrs, api: value }) }
      })
    })
    return { name: o.name, ...info, dataDir, proc, logs, exited }
  } catch (err) {
    proc.kill('SIGKILL')
    await exited
    throw err
  }
}
