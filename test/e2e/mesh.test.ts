// End to end: three agents as separate OS processes on loopback, real libp2p, real Docker.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type AgentProcess, TEST_IMAGE, api, startAgentProcess, stopAgentProcess, waitAllSeeAlive, waitFor } from '../support/cluster.ts'
import { requireDocker } from '../support/docker.ts'

const TERMINAL = new Set(['succeeded', 'failed', 'cancelled'])

describe('three-agent mesh on loopback', () => {
  const agents: AgentProcess[] = []
  let a: AgentProcess, b: AgentProcess, c: AgentProcess

  beforeAll(async () => {
    await requireDocker()
    a = await startAgentProcess({ name: 'a', cpus: 1, memory: '1g', labels: { zone: 'a' } })
    agents.push(a)
    ;[b, c] = await Promise.all([
      startAgentProcess({ name: 'b', cpus: 1, memory: '1g', labels: { zone: 'b' }, bootstrap: a.addrs }),
      startAgentProcess({ name: 'c', cpus: 1, memory: '1g', labels: { zone: 'c' }, bootstrap: a.addrs })
    ])
    agents.push(b, c)
    // Every agent sees all three as alive: capacity gossip works.
    await waitAllSeeAlive(agents, 3)
  }, 90_000)

  afterAll(async () => {
    await Promise.all(agents.map(async x => await stopAgentProcess(x, 'SIGTERM', { removeData: true })))
  })

  async function submit (via: AgentProcess, spec: unknown): Promise<string> {
    const r = await api(via.api, '/v1/jobs', { method: 'POST', body: spec })
    expect(r.status, JSON.stringify(r.body)).toBe(201)
    return r.body.id
  }

  async function finished (via: AgentProcess, id: string, timeoutMs = 30_000): Promise<any> {
    return await waitFor(`job ${id} to finish`, async () => {
      const r = await api(via.api, `/v1/jobs/${id}`)
      return r.status === 200 && TERMINAL.has(r.body.state) ? r.body : undefined
    }, timeoutMs)
  }

  it('prints full listen multiaddrs with the peer id', () => {
    for (const x of agents) {
      expect(x.addrs.length).toBeGreaterThan(0)
      for (const addr of x.addrs) expect(addr).toMatch(new RegExp(`^/ip4/127\\.0\\.0\\.1/tcp/\\d+/p2p/${x.peerId}$`))
    }
  })

  it('runs jobs published from different agents on more than one agent', async () => {
    // 0.6 CPU each on 1-CPU nodes: no two fit one node at once, so they must spread.
    const spec = { image: TEST_IMAGE, command: 'echo out-$0; sleep 1', resources: { cpus: 0.6, memory: '64m' } }
    const ids = await Promise.all([a, b, c, a, b, c].map(async via => await submit(via, spec)))
    const results = await Promise.all(ids.map(async (id, i) => await finished(agents[(i + 1) % 3], id)))
    for (const r of results) {
      expect(r.state).toBe('succeeded')
      expect(r.exitCode).toBe(0)
      expect(r.reason).toBe('exit')
    }
    const nodes = new Set(results.map(r => r.node))
    expect(nodes.size).toBeGreaterThan(1)
    const owners = new Set(results.map(r => r.owner))
    expect(owners.size).toBe(3)
  }, 60_000)

  it('answers status and logs of any job from any agent', async () => {
    const id = await submit(a, { image: TEST_IMAGE, command: 'echo hello-stdout; echo hello-stderr >&2; exit 3', resources: { memory: '32m' } })
    for (const via of [a, b, c]) {
      const r = await finished(via, id)
      expect(r).toMatchObject({ id, state: 'failed', reason: 'exit', exitCode: 3, owner: a.peerId })
      const logs = await api(via.api, `/v1/jobs/${id}/logs`)
      expect(logs.status).toBe(200)
      expect(logs.body).toContain('hello-stdout')
      expect(logs.body).toContain('hello-stderr')
    }
    // A unique prefix works as an id.
    const byPrefix = await api(c.api, `/v1/jobs/${id.slice(0, 10)}`)
    expect(byPrefix.body.id).toBe(id)
  }, 60_000)

  it('places by label constraint', async () => {
    const id = await submit(c, { image: TEST_IMAGE, command: 'true', constraints: { zone: 'b' }, resources: { memory: '32m' } })
    const r = await finished(a, id)
    expect(r.state).toBe('succeeded')
    expect(r.node).toBe(b.peerId)
  }, 30_000)

  it('keeps a job larger than any agent pending, with the reason, and cancels it', async () => {
    const id = await submit(b, { image: TEST_IMAGE, command: 'true', resources: { memory: '64g' } })
    const r = await waitFor('pending with an explanation', async () => {
      const s = await api(a.api, `/v1/jobs/${id}`)
      return s.body.state === 'pending' && s.body.explanation !== null ? s.body : undefined
    })
    expect(r.reason).toBe('unplaceable')
    expect(r.explanation.filtered).toEqual({ 'memory (larger than node)': 3 })
    expect(r.explanation.consideredNodes).toBe(3)
    const cancelled = await api(c.api, `/v1/jobs/${id}`, { method: 'DELETE' })
    expect(cancelled.status).toBe(200)
    expect(cancelled.body.state).toBe('cancelled')
  }, 30_000)

  it('reports an out-of-memory kill as oom, and a timeout as timeout', async () => {
    const oom = await submit(a, { image: TEST_IMAGE, command: 'x=a; while true; do x=$x$x; done', resources: { memory: '16m' } })
    const slow = await submit(c, { image: TEST_IMAGE, command: 'sleep 60', timeout: '2s', resources: { memory: '16m' } })
    const [o, t] = await Promise.all([finished(b, oom), finished(b, slow)])
    expect(o).toMatchObject({ state: 'failed', reason: 'oom' })
    expect(t).toMatchObject({ state: 'failed', reason: 'timeout' })
  }, 60_000)

  it('offers a pending job again when a new agent that fits joins', async () => {
    const id = await submit(a, { image: TEST_IMAGE, command: 'echo joined', constraints: { zone: 'd' }, resources: { memory: '32m' } })
    const pending = await waitFor('pending', async () => {
      const s = await api(a.api, `/v1/jobs/${id}`)
      return s.body.state === 'pending' && s.body.explanation !== null ? s.body : undefined
    })
    expect(pending.explanation.filtered).toEqual({ 'label zone=d': 3 })
    const d = await startAgentProcess({ name: 'd', cpus: 1, memory: '1g', labels: { zone: 'd' }, bootstrap: b.addrs })
    agents.push(d)
    const r = await finished(c, id)
    expect(r.state).toBe('succeeded')
    expect(r.node).toBe(d.peerId)
  }, 60_000)

  it('rejects a bad spec with the field named, and an unknown id with 404', async () => {
    const bad = await api(a.api, '/v1/jobs', { method: 'POST', body: { image: TEST_IMAGE, resources: { memory: 'lots' } } })
    expect(bad.status).toBe(400)
    expect(bad.body.error.issues.map((i: any) => i.path)).toContain('resources.memory')
    const before = await api(a.api, '/v1/jobs')
    const missing = await api(b.api, '/v1/jobs/zzzzzzzzzzzzzzzz')
    expect(missing.status).toBe(404)
    const after = await api(a.api, '/v1/jobs')
    expect(after.body.jobs.length).toBe(before.body.jobs.length)
  })
})
