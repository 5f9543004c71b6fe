// The Compose demo end to end: the agent image built offline, a seed and two agents in
// containers on this host's engine, jobs published from different agents, one agent added
// (its capacity is used) and one removed (no job is lost), and everything torn down.
// It never skips: without a Docker engine or Compose every test fails and says what to do.
// As root on Debian it installs docker-compose (1.29) when no Compose is present.
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { resolve } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { TEST_IMAGE, api, waitFor } from '../support/cluster.ts'

const ROOT = resolve(import.meta.dirname, '../..')
const AGENT_IMAGE = 'bidmesh/agent:local'
/** Unique per run, so a demo or another run on the same engine is never touched. */
const PROJECT = `bmtest${randomBytes(4).toString('hex')}`
const TERMINAL = new Set(['succeeded', 'failed', 'cancelled'])

interface Run { code: number | null, stdout: string, stderr: string }

/** Runs a command from the repository root; resolves with its output whatever the exit code. */
async function run (cmd: string, args: string[], options: { env?: NodeJS.ProcessEnv, timeoutMs?: number } = {}): Promise<Run> {
  return await new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: ROOT, env: options.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    const timer = setTimeout(() => { child.kill('SIGKILL') }, options.timeoutMs ?? 60_000)
    child.once('error', err => { clearTimeout(timer); reject(err) })
    child.once('close', code => { clearTimeout(timer); resolve({ code, stdout, stderr }) })
  })
}

function must (what: string, r: Run): Run {
  if (r.code !== 0) throw new Error(`${what} failed (exit ${String(r.code)}):\n${r.stderr.slice(-4000)}\n${r.stdout.slice(-2000)}`)
  return r
}

async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const srv = createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port
      srv.close(() => resolve(port))
    })
  })
}

/** A Compose that works (v2 plugin or docker-compose 1.x); installs Debian's when missing. */
async function ensureCompose (): Promise<void> {
  const works = async (): Promise<boolean> =>
    (await run('docker', ['compose', 'version']).catch(() => ({ code: 1 }))).code === 0 ||
    (await run('docker-compose', ['version']).catch(() => ({ code: 1 }))).code === 0
  if (await works()) return
  if (process.getuid?.() === 0 && existsSync('/usr/bin/apt-get')) {
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
    await run('apt-get', ['update', '-qq'], { env, timeoutMs: 300_000 })
    const r = await run('apt-get', ['install', '-y', '-qq', '-o', 'DPkg::Lock::Timeout=300', 'docker-compose'], { env, timeoutMs: 600_000 })
    if (r.code === 0 && await works()) return
    throw new Error(`Compose is missing and 'apt-get install docker-compose' failed:\n${r.stderr.slice(-2000)}`)
  }
  throw new Error("Compose is missing: install docker-compose (apt-get install docker-compose) or the Compose v2 plugin; this suite does not skip.")
}

describe('compose demo: offline image, publish from any agent, scale up and down', () => {
  let apiPort = 0
  let seedApi = ''
  let failed = false
  /** the seed's API token (compose/api.token, made by up.sh) */
  let auth: Record<string, string> = {}
  /** set-up outcome: every test awaits it, so a broken set-up fails each test by name
   *  instead of leaving them skipped */
  let setup: Promise<void> = Promise.resolve()
  /** compose/up.sh was started: from then on there may be something to tear down */
  let upStarted = false
  /** every agent that took part, for removing their job containers at the end */
  const peersSeen = new Set<string>()
  /** every job this suite submitted: all must end succeeded */
  const submitted = new Set<string>()

  const env = (): NodeJS.ProcessEnv => ({
    ...process.env,
    COMPOSE_PROJECT_NAME: PROJECT,
    SEED_API_PORT: String(apiPort),
    BIDMESH_IMAGE: AGENT_IMAGE,
    // Each agent offers one core: four jobs of one core each need four agents.
    AGENT_CPUS: '1',
    AGENT_MEMORY: '512m',
    UP_TIMEOUT: '150'
  })

  const aliveNodes = async (): Promise<string[]> => {
    const r = await api(seedApi, '/v1/nodes', { headers: auth })
    if (r.status !== 200) return []
    const nodes: Array<{ peerId: string, liveness: string }> = r.body.nodes
    for (const n of nodes) peersSeen.add(n.peerId)
    return nodes.filter(n => n.liveness === 'alive').map(n => n.peerId)
  }

  const waitAlive = async (count: number, timeoutMs: number): Promise<string[]> =>
    await waitFor(`${count} alive agents`, async () => {
      const alive = await aliveNodes()
      return alive.length === count ? alive : undefined
    }, timeoutMs, 1000)

  const submit = async (spec: Record<string, unknown>): Promise<string> => {
    const r = await api(seedApi, '/v1/jobs', { method: 'POST', body: spec, headers: auth })
    expect(r.status, JSON.stringify(r.body)).toBe(201)
    submitted.add(r.body.id)
    return r.body.id
  }

  /** Waits until every job is terminal; fails at once when one ends in anything but success
   *  (waitFor would keep polling past a thrown error until its deadline). */
  const waitSucceeded = async (ids: Iterable<string>, timeoutMs: number): Promise<any[]> => {
    const pending = new Set(ids)
    const done = new Map<string, any>()
    const deadline = Date.now() + timeoutMs
    while (pending.size > 0) {
      for (const id of [...pending]) {
        const r = await api(seedApi, `/v1/jobs/${id}`, { headers: auth }).catch(() => undefined)
        if (r === undefined || r.status !== 200 || !TERMINAL.has(r.body.state)) continue
        if (r.body.state !== 'succeeded') throw new Error(`job ${id} ended ${String(r.body.state)} (${String(r.body.reason)}); attempts: ${JSON.stringify(r.body.attempts)}`)
        pending.delete(id)
        done.set(id, r.body)
      }
      if (pending.size === 0) break
      if (Date.now() > deadline) throw new Error(`jobs still not finished after ${timeoutMs} ms: ${[...pending].join(', ')}`)
      await new Promise(resolve => setTimeout(resolve, 1000))
    }
    return [...ids].map(id => done.get(id))
  }

  const publish = async (index: number, args: string[]): Promise<Run> =>
    await run('bash', ['compose/publish.sh', String(index), '--', ...args], { env: env(), timeoutMs: 120_000 })

  const setUp = async (): Promise<void> => {
    const info = await run('docker', ['info', '--format', '{{.ServerVersion}}']).catch(err => ({ code: 1, stdout: '', stderr: String(err) }))
    if (info.code !== 0) throw new Error(`Docker engine unreachable: ${info.stderr.trim()}. Run 'bash scripts/setup.sh' (installs docker.io and starts dockerd).`)
    await ensureCompose()
    const job = await run('docker', ['image', 'inspect', TEST_IMAGE])
    if (job.code !== 0) throw new Error(`job image ${TEST_IMAGE} is missing: run 'bash scripts/setup.sh'`)

    must('scripts/build-agent-image.sh', await run('bash', ['scripts/build-agent-image.sh', AGENT_IMAGE], { timeoutMs: 240_000 }))
    apiPort = await freePort()
    seedApi = `http://127.0.0.1:${apiPort}`
    upStarted = true
    must('compose/up.sh', await run('bash', ['compose/up.sh', '2', '--no-wait'], { env: env(), timeoutMs: 240_000 }))
    auth = { authorization: `Bearer ${readFileSync(resolve(ROOT, 'compose/api.token'), 'utf8').trim()}` }
  }

  beforeAll(async () => {
    setup = setUp()
    // Not thrown here: vitest would mark every test skipped. Each test awaits `setup` instead.
    await setup.catch(() => {})
  }, 420_000)

  afterEach((ctx) => {
    if (ctx.task.result?.state === 'fail') failed = true
  })

  afterAll(async () => {
    if (!upStarted) return
    if (failed) {
      const ps = await run('docker', ['ps', '-aq', '--filter', `label=com.docker.compose.project=${PROJECT}`])
      for (const id of ps.stdout.split('\n').filter(Boolean)) {
        const logs = await run('docker', ['logs', '--tail', '40', id])
        console.log(`--- logs of ${id} ---\n${logs.stdout}${logs.stderr}`)
      }
    }
    const down = await run('bash', ['compose/down.sh', '-v'], { env: env(), timeoutMs: 150_000 })
    if (down.code !== 0) console.warn(`compose/down.sh failed:\n${down.stderr}`)
    // Whatever Compose left (a failed down), and job containers of any agent seen here,
    // including one already scaled away (down.sh only knows the agents still there).
    const left = await run('docker', ['ps', '-aq', '--filter', `label=com.docker.compose.project=${PROJECT}`])
    const ids = left.stdout.split('\n').filter(Boolean)
    for (const peer of peersSeen) {
      const jobs = await run('docker', ['ps', '-aq', '--filter', 'label=bidmesh.managed=true', '--filter', `label=bidmesh.node=${peer}`])
      ids.push(...jobs.stdout.split('\n').filter(Boolean))
    }
    if (ids.length > 0) await run('docker', ['rm', '-f', ...ids])
    await run('docker', ['network', 'rm', `${PROJECT}_default`])
    await run('docker', ['volume', 'rm', `${PROJECT}_seed-data`])
  }, 200_000)

  it('builds an image whose CLI runs offline', async () => {
    await setup
    const r = must('docker run --help', await run('docker', ['run', '--rm', '--network', 'none', AGENT_IMAGE, '--help']))
    expect(r.stdout).toContain('agent')
    expect(r.stdout).toContain('run')
  }, 60_000)

  it('forms a mesh of three agents: the seed sees them all alive', async () => {
    await setup
    const alive = await waitAlive(3, 150_000)
    expect(alive).toHaveLength(3)
  }, 160_000)

  it('runs jobs published from different agents', async () => {
    await setup
    const results = await Promise.all([0, 1, 2].map(async i =>
      await publish(i, ['--memory', '32m', TEST_IMAGE, 'sh', '-c', `echo hello from agent ${i}`])))
    const ids: string[] = []
    results.forEach((r, i) => {
      must(`publish from agent ${i}`, r)
      expect(r.stdout).toContain(`hello from agent ${i}`)
      const id = /submitted (\S+)/.exec(r.stderr)?.[1]
      expect(id, r.stderr).toBeDefined()
      ids.push(id!)
      submitted.add(id!)
    })
    const jobs = await waitSucceeded(ids, 60_000)
    // Each was published through another agent's API: three publishers.
    expect(new Set(jobs.map(j => j.publisher)).size).toBe(3)
  }, 180_000)

  it('scales up by one agent, and its capacity is used', async () => {
    await setup
    const before = new Set(await aliveNodes())
    must('compose/up.sh 3', await run('bash', ['compose/up.sh', '3', '--no-wait'], { env: env(), timeoutMs: 180_000 }))
    const alive = await waitAlive(4, 150_000)
    const added = alive.filter(p => !before.has(p))
    expect(added).toHaveLength(1)
    // Four one-core jobs at once on four one-core agents: each agent runs one, so one of
    // them can only run on the new agent.
    const ids = await Promise.all([1, 2, 3, 4].map(async i => await submit({
      image: TEST_IMAGE, name: `fill-${i}`, command: 'sleep 8', resources: { cpus: 1, memory: '32m' }, retries: 2
    })))
    const jobs = await waitSucceeded(ids, 150_000)
    const ranOn = new Set(jobs.map(j => j.node))
    expect(ranOn.has(added[0]), `jobs ran on ${[...ranOn].join(', ')}; new agent ${added[0]}`).toBe(true)
  }, 330_000)

  it('scales down by one agent without losing a job', async () => {
    await setup
    // Work in flight when the agent goes: jobs owned by the seed, and jobs published from
    // the two newest agents (whichever is removed, the jobs it owns must be handed over).
    const ids = await Promise.all([1, 2, 3].map(async i => await submit({
      image: TEST_IMAGE, name: `drain-${i}`, command: 'sleep 4; echo ok', resources: { cpus: 0.5, memory: '32m' }, retries: 2
    })))
    for (const index of [2, 3]) {
      const r = must(`publish -d from agent ${index}`, await publish(index, ['-d', '--memory', '32m', '--retries', '2', TEST_IMAGE, 'sh', '-c', 'sleep 3; echo done']))
      const id = r.stdout.trim().split('\n').pop()!
      expect(id).toMatch(/^\S+$/)
      ids.push(id)
      submitted.add(id)
    }
    const before = await aliveNodes()
    must('compose/up.sh 2', await run('bash', ['compose/up.sh', '2', '--no-wait'], { env: env(), timeoutMs: 180_000 }))
    const ps = await run('docker', ['ps', '-q', '--filter', `label=com.docker.compose.project=${PROJECT}`, '--filter', 'label=com.docker.compose.service=agent'])
    expect(ps.stdout.split('\n').filter(Boolean)).toHaveLength(2)
    // Every job of the whole suite ends succeeded: none lost with the removed agent.
    const jobs = await waitSucceeded(submitted, 150_000)
    const after = await waitAlive(3, 60_000)
    const removed = before.filter(p => !after.includes(p))
    expect(removed).toHaveLength(1)
    // For the record: how the removed agent's work moved (owned jobs taken over by a replica
    // have a term above 0; attempts it ran or handed back show up among the attempts).
    console.log('scale-down:', JSON.stringify({
      removed: removed[0],
      jobs: jobs.length,
      takenOver: jobs.filter(j => j.publisher === removed[0] && j.term > 0).length,
      ranThere: jobs.filter(j => j.attempts.some((a: { node: string }) => a.node === removed[0])).length
    }))
  }, 400_000)
})
