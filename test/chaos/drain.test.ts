// Drain: `POST /v1/drain` (what `bidmesh drain` and SIGTERM do) makes an agent stop bidding,
// hand back a job it cannot finish within the deadline, and leave the mesh: membership
// shrinks at once and the job runs to success elsewhere, without using up a retry.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type AgentProcess, TEST_IMAGE, api, startAgentProcess, stopAgentProcess, waitFor, waitAllSeeAlive } from '../support/cluster.ts'
import { requireDocker } from '../support/docker.ts'

describe('drain', () => {
  const agents: AgentProcess[] = []

  beforeAll(async () => {
    await requireDocker()
    const a = await startAgentProcess({ name: 'drain-a', cpus: 1, memory: '1g', labels: { role: 'front' } })
    agents.push(a)
    agents.push(...await Promise.all([
      startAgentProcess({ name: 'drain-b', cpus: 1, memory: '1g', labels: { role: 'worker' }, bootstrap: a.addrs }),
      startAgentProcess({ name: 'drain-c', cpus: 1, memory: '1g', labels: { role: 'worker' }, bootstrap: a.addrs })
    ]))
    await waitAllSeeAlive(agents, 3, 60_000)
  }, 120_000)

  afterAll(async () => {
    await Promise.all(agents.map(async x => await stopAgentProcess(x, 'SIGKILL', { removeData: true })))
  })

  it('hands a running job back, leaves the mesh, and the job succeeds elsewhere', async () => {
    const [a] = agents
    const r = await api(a.api, '/v1/jobs', { method: 'POST', body: { image: TEST_IMAGE, command: 'sleep 8; echo finished', constraints: { role: 'worker' }, resources: { memory: '16m', cpus: 0.1 } } })
    expect(r.status).toBe(201)
    const id = r.body.id
    const running = await waitFor('running on a worker', async () => {
      const s = await api(a.api, `/v1/jobs/${id}`)
      return s.body.state === 'running' ? s.body : undefined
    }, 60_000)
    const drained = agents.find(x => x.peerId === running.node)!
    const other = agents.find(x => x.peerId !== running.node && x !== a)!
    const t0 = Date.now()
    const d = await api(drained.api, '/v1/drain', { method: 'POST', body: { deadlineMs: 1000 } })
    expect(d.status).toBe(202)
    // Membership shrinks: the others forget the drained agent without waiting for a timeout.
    const leftMs = await waitFor('the drained agent to leave the others\' view', async () => {
      const n = (await api(a.api, '/v1/nodes')).body.nodes
      return n.some((x: any) => x.peerId === drained.peerId) ? undefined : Date.now() - t0
    }, 30_000)
    const done = await waitFor('the job to finish', async () => {
      const s = await api(a.api, `/v1/jobs/${id}`)
      return ['succeeded', 'failed', 'cancelled'].includes(s.body.state) ? s.body : undefined
    }, 60_000)
    const figures = { handedBackAfterMs: Date.now() - t0, leftMs, attempts: done.attempts.map((x: any) => `${x.state}${x.error !== null ? ` (${String(x.error)})` : ''}`), state: done.state }
    console.log('drain:', figures)
    expect(done.state).toBe('succeeded')
    expect(done.node).toBe(other.peerId)
    expect(done.attempts[0]).toMatchObject({ node: drained.peerId, state: 'lost' })
    expect(done.spec.retries).toBe(0) // a hand-back is not a failure: no retry was needed
  }, 180_000)
})
