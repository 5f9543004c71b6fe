import { spawn } from 'node:child_process'
import { mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest'
import type { FastifyInstance } from 'fastify'
import { createApiServer } from '../../src/api/server.ts'
import { cannotBePlaced, exitCodeFor, runCli, specFromRunFlags } from '../../src/cli/main.ts'
import { normalizeApiUrl, resolveApiUrl } from '../../src/cli/client.ts'
import { filteredSummary, formatNodes, shortPeer, table } from '../../src/cli/format.ts'
import { FakeAgent, FAKE_PEER, OTHER_PEER } from '../fakes/fake-agent.ts'

// `bidmesh agent` would start a real agent; here only the options it is given matter.
const runAgent = vi.hoisted(() => vi.fn(async (_options: unknown) => {}))
vi.mock('../../src/cli/run-agent.ts', () => ({ runAgentCommand: runAgent }))

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const BIN = join(ROOT, 'bin', 'bidmesh.js')

interface Result { code: number, stdout: string, stderr: string }

let agent: FakeAgent
let app: FastifyInstance
let base: string
let dir: string
/** Status reads answered over HTTP (not the agent's internal reads), to know what a client has seen. */
let statusResponses = 0

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bidmesh-cli-'))
})
afterAll(async () => { await rm(dir, { recursive: true, force: true }) })

// One server per test, over a fresh fake agent.
beforeEach(async () => {
  agent = new FakeAgent()
  app = createApiServer({ agent, closeGraceMs: 100 })
  statusResponses = 0
  app.addHook('onResponse', async (request) => {
    if (request.method === 'GET' && request.routeOptions.url === '/v1/jobs/:id') statusResponses++
  })
  await app.listen({ host: '127.0.0.1', port: 0 })
  const address = app.server.address()
  if (address === null || typeof address === 'string') throw new Error('no address')
  base = `http://127.0.0.1:${address.port}`
})
afterEach(async () => { await app.close() })

/** Runs a command line in-process with captured output. */
async function cli (args: string[], options: { stdin?: string, env?: Record<string, string> } = {}): Promise<Result> {
  let stdout = ''
  let stderr = ''
  const code = await runCli(['node', 'bidmesh', ...args], {
    stdout: { write: (s: string) => { stdout += s; return true } },
    stderr: { write: (s: string) => { stderr += s; return true } },
    env: { BIDMESH_API: base, ...options.env },
    readStdin: async () => options.stdin ?? ''
  })
  return { code, stdout, stderr }
}

/** Runs the real executable, the way a user does: exit codes and streams are the process's. */
function spawnCli (args: string[], env: Record<string, string> = {}): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd: ROOT,
      env: { ...process.env, BIDMESH_API: base, ...env },
      stdio: ['ignore', 'pipe', 'pipe']
    })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (s: string) => { stdout += s })
    child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s })
    child.once('error', reject)
    child.once('close', (code, signal) => resolve({ code: code ?? (signal !== null ? 128 : -1), stdout, stderr }))
  })
}

async function specFile (name: string, text: string): Promise<string> {
  const path = join(dir, name)
  await writeFile(path, text)
  return path
}

/** A port nothing listens on: bind one, then let it go. */
async function closedPort (): Promise<number> {
  const server = createServer()
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise<void>(resolve => server.close(() => resolve()))
  return port
}

describe('bidmesh run (spawned)', () => {
  it('shows progress, streams the output to the right streams, and exits with the job\'s code', async () => {
    agent.onSubmit = job => {
      // Still synchronous: the answer to the POST already carries this explanation.
      agent.unplaceable(job.id, { memory: 3, 'label zone=a': 2 })
      void (async () => {
        // Start only once the CLI follows the output, and write only once it has seen the
        // job running, so every progress line is certain to be observed.
        await agent.waitFor(() => agent.readLogsCalls.includes(job.id))
        const polls = statusResponses
        agent.start(job.id, OTHER_PEER)
        // The second status answer after the start comes from a request made after it.
        await vi.waitFor(() => { expect(statusResponses).toBeGreaterThanOrEqual(polls + 2) }, { timeout: 10_000, interval: 20 })
        agent.appendLog(job.id, 'stdout', 'hello from the job\n')
        agent.appendLog(job.id, 'stderr', 'a warning\n')
        agent.appendLog(job.id, 'stdout', 'bye\n')
        agent.finish(job.id, { state: 'failed', reason: 'exit', exitCode: 3 })
      })()
    }
    const result = await spawnCli(['run', '--memory', '64m', 'busybox', 'sh', '-c', 'echo hi; exit 3'])
    expect(result.stderr).toContain('pending: memory: 3 nodes, label zone=a: 2 nodes')
    expect(result.stderr).toContain(`running on ${OTHER_PEER.slice(-8)}`)
    expect(result.stdout).toBe('hello from the job\nbye\n')
    expect(result.stderr).toContain('a warning\n')
    expect(result.code).toBe(3)
    // Flags after IMAGE belong to the command.
    const [job] = agent.jobs.values()
    expect(job.spec.command).toEqual(['sh', '-c', 'echo hi; exit 3'])
    expect(job.spec.memoryBytes).toBe(64 * 1024 * 1024)
  })

  it('prints a clear line and exits 125 when the agent is unreachable', async () => {
    const port = await closedPort()
    const result = await spawnCli(['jobs'], { BIDMESH_API: `127.0.0.1:${port}` })
    expect(result.code).toBe(125)
    expect(result.stderr).toContain(`cannot reach the bidmesh agent at http://127.0.0.1:${port}: ECONNREFUSED`)
    expect(result.stderr).toContain('BIDMESH_API')
    expect(result.stderr).not.toMatch(/\n\s+at /) // no stack trace
    expect(result.stderr.trim().split('\n')).toHaveLength(1)
  })

  it('exits 2 on a usage error', async () => {
    const result = await spawnCli(['run'])
    expect(result.code).toBe(2)
    expect(result.stderr).toContain('image')
  })
})

describe('bidmesh agent (spawned)', () => {
  it('refuses an SSH DOCKER_HOST at start, naming it (exit 2, nothing written)', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'bidmesh-cli-agent-'))
    try {
      const result = await spawnCli(['agent', '--data-dir', dataDir, '--listen', '/ip4/127.0.0.1/tcp/0', '--api', '127.0.0.1:0'], { DOCKER_HOST: 'ssh://builder@10.0.0.9' })
      expect(result.code).toBe(2)
      expect(result.stderr).toContain('DOCKER_HOST')
      expect(readdirSync(dataDir)).toEqual([])
    } finally {
      rmSync(dataDir, { recursive: true, force: true })
    }
  })
})

describe('bidmesh run / submit (in-process)', () => {
  it('run -d prints the job id and returns at once', async () => {
    const result = await cli(['run', '-d', '--cpus', '2', '--env', 'A=1', '--env', 'B=x=y', '--label-constraint', 'zone=a',
      '--name', 'n1', '--network', 'bridge', '--timeout', '5m', '--retries', '2', 'busybox', 'ls', '-l', '--all'])
    expect(result.code).toBe(0)
    const id = result.stdout.trim()
    const job = agent.jobs.get(id)!
    expect(job.spec).toMatchObject({
      image: 'busybox', command: ['ls', '-l', '--all'], cpuMilli: 2000, env: { A: '1', B: 'x=y' },
      constraints: { zone: 'a' }, name: 'n1', network: 'bridge', timeoutMs: 300_000, retries: 2
    })
  })

  it('run -d warns on stderr, and still prints only the id on stdout, when the job is not yet on a quorum of replicas', async () => {
    let result = await cli(['run', '-d', 'busybox'])
    expect(result.stderr).toBe('')
    agent.replicated = false
    result = await cli(['run', '-d', 'busybox'])
    expect(result.code).toBe(0)
    const id = result.stdout.trim()
    expect(agent.jobs.has(id)).toBe(true)
    expect(result.stderr).toMatch(/^warning: job \S+ is stored only on the agent that took it/)
    expect(result.stderr).toContain(id)
  })

  it.each([
    [{ state: 'failed', reason: 'oom' }, 137],
    [{ state: 'failed', reason: 'timeout' }, 124],
    [{ state: 'failed', reason: 'image' }, 125],
    [{ state: 'cancelled', reason: 'cancelled' }, 130],
    [{ state: 'succeeded', exitCode: 0 }, 0]
  ] as const)('run exits with the mapped code for %o', async (outcome, code) => {
    agent.onSubmit = job => {
      void agent.waitFor(() => agent.readLogsCalls.includes(job.id)).then(() => {
        agent.start(job.id)
        agent.finish(job.id, outcome)
      })
    }
    const result = await cli(['run', 'busybox'])
    expect(result.code).toBe(code)
  })

  it('submit -f reads YAML from a file and from stdin', async () => {
    const file = await specFile('job.yaml', 'image: busybox\nname: from-file\ncommand: [echo, hi]\n')
    let result = await cli(['submit', '-d', '-f', file])
    expect(result.code).toBe(0)
    expect(agent.jobs.get(result.stdout.trim())!.spec.name).toBe('from-file')

    result = await cli(['submit', '-d', '-f', '-'], { stdin: '{"image": "busybox", "name": "from-stdin"}' })
    expect(result.code).toBe(0)
    expect(agent.jobs.get(result.stdout.trim())!.spec.name).toBe('from-stdin')
  })

  it('submit without -d waits like run', async () => {
    const file = await specFile('wait.json', JSON.stringify({ image: 'busybox' }))
    agent.onSubmit = job => {
      void agent.waitFor(() => agent.readLogsCalls.includes(job.id)).then(() => {
        agent.start(job.id)
        agent.appendLog(job.id, 'stdout', 'out\n')
        agent.finish(job.id, { state: 'succeeded', exitCode: 0 })
      })
    }
    const result = await cli(['submit', '-f', file])
    expect(result).toMatchObject({ code: 0, stdout: 'out\n' })
  })

  it('exits 2 with the explanation, and cancels, when no known node can ever fit the job', async () => {
    agent.onSubmit = job => { agent.unplaceable(job.id, { 'memory (larger than node)': 3, 'label gpu=yes': 2 }) }
    const result = await cli(['run', '--memory', '64g', 'busybox', 'echo', 'hi'])
    expect(result.code).toBe(2)
    expect(result.stderr).toContain('pending: memory (larger than node): 3 nodes, label gpu=yes: 2 nodes')
    expect(result.stderr).toContain('cannot be placed: it does not fit any known node')
    expect(result.stderr).toMatch(/^ {2}considered: +5 nodes$/m)
    expect(result.stderr).toContain('--wait')
    const [job] = agent.jobs.values()
    expect(job.state).toBe('cancelled')
    expect(result.stdout).toBe('')
  })

  it('notices a job that turns out unplaceable while it waits (submit)', async () => {
    const file = await specFile('huge.yaml', 'image: busybox\nresources:\n  cpus: 512\n')
    agent.onSubmit = job => {
      void agent.waitFor(() => agent.readLogsCalls.includes(job.id)).then(() => {
        agent.unplaceable(job.id, { 'cpu (larger than node)': 5 })
      })
    }
    const result = await cli(['submit', '-f', file])
    expect(result.code).toBe(2)
    expect(result.stderr).toContain('cpu (larger than node): 5 nodes')
    expect([...agent.jobs.values()][0].state).toBe('cancelled')
  })

  it('--wait keeps waiting for a node that fits', async () => {
    agent.onSubmit = job => {
      agent.unplaceable(job.id, { 'memory (larger than node)': 5 })
      void (async () => {
        await agent.waitFor(() => agent.readLogsCalls.includes(job.id))
        // Two status polls later, the CLI has certainly seen it unplaceable and stayed.
        const polls = statusResponses
        await vi.waitFor(() => { expect(statusResponses).toBeGreaterThanOrEqual(polls + 2) }, { timeout: 10_000, interval: 20 })
        agent.start(job.id)
        agent.appendLog(job.id, 'stdout', 'a big node joined\n')
        agent.finish(job.id, { state: 'succeeded', exitCode: 0 })
      })()
    }
    const result = await cli(['run', '--wait', '--memory', '64g', 'busybox'])
    expect(result).toMatchObject({ code: 0, stdout: 'a big node joined\n' })
    expect(result.stderr).toContain('pending: memory (larger than node): 5 nodes')
    expect(result.stderr).not.toContain('cannot be placed')
  })

  it('a bad spec file prints each bad field and exits 1', async () => {
    const file = await specFile('bad.yaml', 'image: busybox\nresources:\n  memory: lots\nretries: -2\n')
    const result = await cli(['submit', '-f', file])
    expect(result.code).toBe(1)
    expect(result.stderr).toMatch(/^ {2}resources\.memory: /m)
    expect(result.stderr).toMatch(/^ {2}retries: /m)
    expect(agent.jobs.size).toBe(0)
  })

  it('a missing spec file is a one-line error', async () => {
    const result = await cli(['submit', '-f', join(dir, 'nope.yaml')])
    expect(result.code).toBe(1)
    expect(result.stderr).toContain('ENOENT')
  })

  it('rejects bad flag values as usage errors before any request', async () => {
    for (const args of [['run', '--cpus', 'many', 'busybox'], ['run', '--memory', 'big', 'busybox'], ['run', '--env', 'NOEQUALS', 'busybox'], ['run', '--network', 'host', 'busybox']]) {
      const result = await cli(args)
      expect(result.code, args.join(' ')).toBe(2)
    }
    expect(agent.jobs.size).toBe(0)
  })
})

describe('bidmesh status / jobs / logs / cancel / nodes / plan / explain', () => {
  beforeEach(() => {
    agent.addJob('abc123', { image: 'busybox', name: 'first', command: 'echo one' })
    agent.addJob('abc456', { image: 'alpine:3' })
    agent.addJob('def789', { image: 'busybox', constraints: { zone: 'a' } })
    agent.start('abc123', OTHER_PEER)
    agent.appendLog('abc123', 'stdout', 'line one\n')
    agent.appendLog('abc123', 'stderr', 'oops\n')
    agent.finish('abc123', { state: 'failed', reason: 'exit', exitCode: 3 })
    agent.unplaceable('def789', { memory: 3, 'label zone=a': 2 })
  })

  it('status --json prints the API status object', async () => {
    const result = await cli(['status', 'abc1', '--json'])
    expect(result.code).toBe(0)
    const api = await (await fetch(`${base}/v1/jobs/abc123`)).json()
    expect(JSON.parse(result.stdout)).toEqual(api)
    expect(JSON.parse(result.stdout)).toMatchObject({ id: 'abc123', state: 'failed', exitCode: 3 })
  })

  it('status prints a readable summary', async () => {
    const result = await cli(['status', 'abc123'])
    expect(result.code).toBe(0)
    expect(result.stdout).toMatch(/^state: +failed \(exit 3\)$/m)
    expect(result.stdout).toMatch(/^command: +\/bin\/sh -c 'echo one'$/m)
    expect(result.stdout).toContain('events:')
  })

  it('an unknown id exits 1 with "no job X"; an ambiguous prefix lists the matches', async () => {
    let result = await cli(['status', 'nope'])
    expect(result.code).toBe(1)
    expect(result.stderr.trim()).toBe('no job nope')
    result = await cli(['logs', 'abc'])
    expect(result.code).toBe(1)
    expect(result.stderr).toContain('abc123')
    expect(result.stderr).toContain('abc456')
  })

  it('jobs prints an aligned table, and --json the raw list', async () => {
    let result = await cli(['jobs'])
    expect(result.code).toBe(0)
    const lines = result.stdout.trim().split('\n')
    expect(lines[0]).toMatch(/^ID +NAME +IMAGE +STATE +NODE +AGE$/)
    expect(lines).toHaveLength(4)
    const row = lines.find(l => l.startsWith('abc123'))!
    expect(row).toContain('failed (exit)')
    expect(row).toContain(OTHER_PEER.slice(-8))
    // Columns line up: every row's STATE column starts where the header's does.
    const stateCol = lines[0].indexOf('STATE')
    for (const line of lines.slice(1)) expect(line.slice(stateCol)).toMatch(/^(pending|failed)/)

    result = await cli(['jobs', '--json', '--state', 'pending'])
    expect(JSON.parse(result.stdout).jobs.map((j: { id: string }) => j.id).sort()).toEqual(['abc456', 'def789'])

    result = await cli(['jobs', '--state', 'sleeping'])
    expect(result.code).toBe(2)
  })

  it('logs splits stdout and stderr; -f ends when the job is terminal', async () => {
    let result = await cli(['logs', 'abc123'])
    expect(result).toMatchObject({ code: 0, stdout: 'line one\n', stderr: 'oops\n' })

    agent.start('abc456')
    const following = cli(['logs', '-f', 'abc456'])
    await agent.waitFor(() => agent.readLogsCalls.includes('abc456'))
    agent.appendLog('abc456', 'stdout', 'late\n')
    agent.finish('abc456', { state: 'succeeded', exitCode: 0 })
    result = await following
    expect(result).toMatchObject({ code: 0, stdout: 'late\n' })
  })

  it('cancel cancels', async () => {
    const result = await cli(['cancel', 'abc4'])
    expect(result.code).toBe(0)
    expect(result.stdout.trim()).toBe('abc456 cancelled (cancelled)')
    expect(agent.jobs.get('abc456')!.state).toBe('cancelled')
  })

  it('nodes prints each node\'s capacity used and free, and a total over the alive ones', async () => {
    let result = await cli(['nodes'])
    expect(result.code).toBe(0)
    const lines = result.stdout.trim().split('\n')
    expect(lines[0]).toMatch(/^NODE +STATE +JOBS +CPU USED +CPU FREE +MEMORY USED +MEMORY FREE +SEEN +LABELS$/)
    expect(lines[1]).toMatch(new RegExp(`^${FAKE_PEER.slice(-8)}\\* +alive +1 +0\\.5/4 \\(13%\\) +3\\.5 +2\\.0GiB/8\\.0GiB \\(25%\\) +6\\.0GiB +- +zone=a$`))
    expect(lines[2]).toMatch(new RegExp(`^${OTHER_PEER.slice(-8)} +suspect +0 +0/2 \\(0%\\) +2 +0B/4\\.0GiB \\(0%\\) +4\\.0GiB +3s ago +zone=b,gpu=none$`))
    // Columns line up under their headers.
    const col = lines[0].indexOf('CPU FREE')
    expect(lines[1].slice(col)).toMatch(/^3\.5 /)
    expect(lines[2].slice(col)).toMatch(/^2 /)
    expect(lines[4]).toBe('1 of 2 nodes alive; cpu 0.5 used, 3.5 free of 4; memory 2.0GiB used, 6.0GiB free of 8.0GiB')
    result = await cli(['nodes', '--json'])
    expect(JSON.parse(result.stdout).nodes).toHaveLength(2)
  })

  it('formats a draining node, an over-committed one, and none', () => {
    const [self] = agent.nodes()
    const out = formatNodes([{ ...self, draining: true, freeCpuMilli: -500, freeMemoryBytes: 0 }])
    expect(out).toContain('alive,draining')
    expect(out).toMatch(/4\/4 \(100%\) +0 +8\.0GiB\/8\.0GiB \(100%\) +0B /)
    expect(formatNodes([])).toBe('no nodes\n')
  })

  it('every read command has --json', async () => {
    const file = await specFile('read.yaml', 'image: busybox\n')
    for (const args of [['status', 'abc123'], ['jobs'], ['nodes'], ['explain', 'abc123'], ['plan', '-f', file]]) {
      const result = await cli([...args, '--json'])
      expect(result.code, args.join(' ')).toBe(0)
      expect(() => JSON.parse(result.stdout), args.join(' ')).not.toThrow()
    }
  })

  it('logs --json prints one chunk per line, both streams on stdout', async () => {
    const result = await cli(['logs', 'abc1', '--json'])
    expect(result.code).toBe(0)
    expect(result.stderr).toBe('')
    const chunks = result.stdout.trim().split('\n').map(l => JSON.parse(l))
    expect(chunks.map(c => [c.stream, c.data])).toEqual([['stdout', 'line one\n'], ['stderr', 'oops\n']])
    expect(chunks[0].seq).toBeLessThan(chunks[1].seq)

    agent.start('abc456')
    const following = cli(['logs', '-f', '--json', 'abc456'])
    await agent.waitFor(() => agent.readLogsCalls.includes('abc456'))
    agent.appendLog('abc456', 'stderr', 'late\n')
    agent.finish('abc456', { state: 'succeeded', exitCode: 0 })
    const followed = await following
    expect(followed.code).toBe(0)
    expect(JSON.parse(followed.stdout)).toMatchObject({ stream: 'stderr', data: 'late\n' })
  })

  it('drain drains the agent', async () => {
    let result = await cli(['drain'])
    expect(result.code).toBe(0)
    expect(result.stdout).toContain(`draining agent ${FAKE_PEER}`)
    expect(agent.drainCalls).toEqual([undefined])
    result = await cli(['drain', '--deadline', '30s', '--json'])
    expect(result.code).toBe(0)
    expect(JSON.parse(result.stdout)).toMatchObject({ peerId: FAKE_PEER, draining: true })
    expect(agent.drainCalls[1]).toEqual({ deadlineMs: 30_000 })
    result = await cli(['drain', '--deadline', 'whenever'])
    expect(result.code).toBe(2)
    expect(agent.drainCalls).toHaveLength(2)
    result = await cli(['nodes'])
    expect(result.stdout).toContain('alive,draining')
  })

  it('explain prints the filter reasons, scores and winner', async () => {
    let result = await cli(['explain', 'def'])
    expect(result.code).toBe(0)
    expect(result.stdout).toContain('memory: 3 nodes, label zone=a: 2 nodes')
    expect(result.stdout).toMatch(/^considered: +5 nodes$/m)

    result = await cli(['explain', 'abc123'])
    expect(result.stdout).toMatch(new RegExp(`^winner: +${OTHER_PEER.slice(-8)}$`, 'm'))
    expect(result.stdout).toMatch(/binpack=1/)

    expect(result.stdout).toMatch(new RegExp(`^candidates: +${OTHER_PEER.slice(-8)}$`, 'm'))

    // An award from the owner's view says no node was asked to bid.
    agent.jobs.get('abc123')!.explanation = { ...agent.jobs.get('abc123')!.explanation!, candidates: [], decidedFrom: 'view' }
    result = await cli(['explain', 'abc123'])
    expect(result.stdout).toMatch(/^candidates: +none: from the capacity view, no bid round$/m)

    result = await cli(['explain', 'abc456', '--json'])
    expect(JSON.parse(result.stdout)).toBeNull()
  })

  it('plan -f prints the dry-run explanation without submitting', async () => {
    const file = await specFile('plan.yaml', 'image: busybox\n')
    const before = agent.jobs.size
    let result = await cli(['plan', '-f', file])
    expect(result.code).toBe(0)
    expect(result.stdout).toContain('memory: 1 node')
    expect(result.stdout).toMatch(/binpack=0\.5 spread=0\.25/)
    result = await cli(['plan', '-f', file, '--json'])
    expect(JSON.parse(result.stdout)).toMatchObject({ consideredNodes: 2, winner: FAKE_PEER })
    expect(agent.jobs.size).toBe(before)
  })

  it('accepts --api as host:port without a scheme', async () => {
    const result = await cli(['jobs', '--json', '--api', base.replace('http://', '')], { env: { BIDMESH_API: 'http://127.0.0.1:1' } })
    expect(result.code).toBe(0)
    expect(JSON.parse(result.stdout).jobs).toHaveLength(3)
  })

  it('sends the token from BIDMESH_TOKEN', async () => {
    const secured = createApiServer({ agent, token: 'tok', closeGraceMs: 100 })
    await secured.listen({ host: '127.0.0.1', port: 0 })
    const { port } = secured.server.address() as { port: number }
    try {
      let result = await cli(['jobs', '--api', `127.0.0.1:${port}`])
      expect(result.code).toBe(1)
      expect(result.stderr).toContain('BIDMESH_TOKEN')
      result = await cli(['jobs', '--api', `127.0.0.1:${port}`], { env: { BIDMESH_TOKEN: 'tok' } })
      expect(result.code).toBe(0)
    } finally {
      await secured.close()
    }
  })
})

describe('bidmesh agent', () => {
  it('passes defaults and flags to runAgent', async () => {
    runAgent.mockClear()
    let result = await cli(['agent'], { env: { BIDMESH_DATA_DIR: '/tmp/bm-data' } })
    expect(result.code).toBe(0)
    expect(runAgent).toHaveBeenLastCalledWith({
      dataDir: '/tmp/bm-data', listen: ['/ip4/0.0.0.0/tcp/7701'], api: '127.0.0.1:7700', bootstrap: [], labels: {}
    })
    result = await cli(['agent', '--data-dir', '/d', '--listen', '/ip4/127.0.0.1/tcp/1', '--listen', '/ip4/127.0.0.1/tcp/2',
      '--api', '0.0.0.0:8000', '--bootstrap', '/ip4/10.0.0.1/tcp/7701/p2p/x', '--cpus', '1.5', '--memory', '2g',
      '--label', 'zone=a', '--label', 'disk=ssd', '--executor', 'noop'])
    expect(result.code).toBe(0)
    expect(runAgent).toHaveBeenLastCalledWith({
      dataDir: '/d', listen: ['/ip4/127.0.0.1/tcp/1', '/ip4/127.0.0.1/tcp/2'], api: '0.0.0.0:8000',
      bootstrap: ['/ip4/10.0.0.1/tcp/7701/p2p/x'], cpus: 1.5, memory: '2g', labels: { zone: 'a', disk: 'ssd' }, executor: 'noop'
    })
    expect((await cli(['agent', '--executor', 'podman'])).code).toBe(2)
    runAgent.mockRejectedValueOnce(Object.assign(new Error('--api must be HOST:PORT, got x'), { code: 'ERR_AGENT_CONFIG' }))
    result = await cli(['agent', '--api', 'x'])
    expect(result.code).toBe(2)
    expect(result.stderr).toContain('--api must be HOST:PORT')
  })
})

describe('helpers', () => {
  it('normalizes API addresses', () => {
    expect(normalizeApiUrl('localhost:7700')).toBe('http://localhost:7700')
    expect(normalizeApiUrl('http://10.0.0.1:7700/')).toBe('http://10.0.0.1:7700')
    expect(normalizeApiUrl('https://agent.example/base/')).toBe('https://agent.example/base')
    expect(() => normalizeApiUrl('ftp://x')).toThrow()
    expect(resolveApiUrl(undefined, {})).toBe('http://127.0.0.1:7700')
    expect(resolveApiUrl(undefined, { BIDMESH_API: '1.2.3.4:9' })).toBe('http://1.2.3.4:9')
    expect(resolveApiUrl('5.6.7.8:1', { BIDMESH_API: '1.2.3.4:9' })).toBe('http://5.6.7.8:1')
  })

  it('maps job outcomes to exit codes', () => {
    expect(exitCodeFor({ state: 'succeeded', reason: null, exitCode: 0 })).toBe(0)
    expect(exitCodeFor({ state: 'failed', reason: 'exit', exitCode: 3 })).toBe(3)
    expect(exitCodeFor({ state: 'failed', reason: 'exit', exitCode: null })).toBe(1)
    expect(exitCodeFor({ state: 'failed', reason: 'lost', exitCode: null })).toBe(1)
    expect(exitCodeFor({ state: 'failed', reason: 'error', exitCode: null })).toBe(125)
  })

  it('tells a job that can never be placed from one that waits for room', () => {
    const explanation = (filtered: Record<string, number>, considered = 3) => ({ consideredNodes: considered, filtered, top: [], candidates: [], decidedAtMs: 0 })
    const pending = (filtered: Record<string, number>, considered?: number) => ({ state: 'pending' as const, reason: 'unplaceable' as const, explanation: explanation(filtered, considered) })
    expect(cannotBePlaced(pending({ 'memory (larger than node)': 3 }))).toBe(true)
    expect(cannotBePlaced(pending({ 'cpu (larger than node)': 1, 'label zone=x': 2 }))).toBe(true)
    // Full, draining or silent nodes may take it later.
    expect(cannotBePlaced(pending({ 'memory (larger than node)': 2, memory: 1 }))).toBe(false)
    expect(cannotBePlaced(pending({ 'memory (larger than node)': 2, draining: 1 }))).toBe(false)
    expect(cannotBePlaced(pending({ 'memory (larger than node)': 2, 'not alive': 1 }))).toBe(false)
    // Some node was not filtered at all, or none is known yet.
    expect(cannotBePlaced(pending({ 'memory (larger than node)': 2 }))).toBe(false)
    expect(cannotBePlaced(pending({}, 0))).toBe(false)
    expect(cannotBePlaced({ state: 'pending', reason: null, explanation: explanation({ 'memory (larger than node)': 3 }) })).toBe(false)
    expect(cannotBePlaced({ state: 'scheduled', reason: 'unplaceable', explanation: explanation({ 'memory (larger than node)': 3 }) })).toBe(false)
    expect(cannotBePlaced({ state: 'pending', reason: 'unplaceable', explanation: null })).toBe(false)
  })

  it('builds only the spec fields that were given', () => {
    expect(specFromRunFlags('img', [], {})).toEqual({ image: 'img' })
    expect(specFromRunFlags('img', ['a'], { memory: '1g' })).toEqual({ image: 'img', command: ['a'], resources: { memory: '1g' } })
  })

  it('takes --secret-env values from its own environment and marks them secret', () => {
    expect(specFromRunFlags('img', [], { env: { A: '1' }, secretEnv: ['TOKEN', 'TOKEN'] }, { TOKEN: 'hunter2' }))
      .toEqual({ image: 'img', env: { A: '1', TOKEN: 'hunter2' }, secretEnv: ['TOKEN'] })
    expect(() => specFromRunFlags('img', [], { secretEnv: ['MISSING'] }, {})).toThrow(expect.objectContaining({ name: 'CliError', exitCode: 2 }))
  })

  it('formats tables and summaries', () => {
    expect(table(['A', 'LONG'], [['xxx', 'y'], ['z', '']])).toBe('A    LONG\nxxx  y\nz\n')
    expect(shortPeer('12D3KooWabcdefgh12345678')).toBe('12345678')
    expect(filteredSummary({ 'label zone=a': 2, memory: 3, cpu: 1 })).toBe('memory: 3 nodes, label zone=a: 2 nodes, cpu: 1 node')
  })
})
