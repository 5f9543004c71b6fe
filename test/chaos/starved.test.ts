// A CPU-starved agent is not a dead agent. The executor is frozen (SIGSTOP) for 2 s out of
// every 2.5 s, about a fifth of a core's time, while it runs a job. Its lease (3 s, renewed
// every 750 ms) must hold: no false death, no second execution.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type AgentProcess, TEST_IMAGE, api, startAgentProcess, stopAgentProcess, waitFor, waitAllSeeAlive } from '../support/cluster.ts'
import { requireDocker } from '../support/docker.ts'

describe('failure detection under CPU starvation', () => {
  const agents: AgentProcess[] = []

  beforeAll(async () => {
    await requireDocker()
    const a = await startAgentProcess({ name: 'starve-a', cpus: 1, memory: '1g', labels: { role: 'owner' } })
    agents.push(a)
    agents.push(...await Promise.all([
      startAgentProcess({ name: 'starve-b', cpus: 1, memory: '1g', labels: { role: 'spare' }, bootstrap: a.addrs }),
      startAgentProcess({ name: 'starve-c', cpus: 1, memory: '1g', labels: { role: 'starved' }, bootstrap: a.addrs })
    ]))
    await waitAllSeeAlive(agents, 3, 30_000)
  }, 90_000)

  afterAll(async () => {
    for (const x of agents) x.proc.kill('SIGCONT')
    await Promise.all(agents.map(async x => await stopAgentProcess(x, 'SIGKILL', { removeData: true })))
  })

  it('keeps the lease of a starved executor: one attempt, never declared gone', async () => {
    const [a, , c] = agents
    const r = await api(a.api, '/v1/jobs', { method: 'POST', body: { image: TEST_IMAGE, command: 'sleep 12; echo done', constraints: { role: 'starved' }, resources: { memory: '16m', cpus: 0.1 } } })
    expect(r.status).toBe(201)
    const id = r.body.id
    await waitFor('running on the starved node', async () => {
      const s = await api(a.api, `/v1/jobs/${id}`)
      return s.body.state === 'running' ? true : undefined
    }, 30_000)

    let pauses = 0
    let worstLiveness = 'alive'
    const rank: Record<string, number> = { alive: 0, suspect: 1, gone: 2 }
    const endAt = Date.now() + 12_000
    while (Date.now() < endAt) {
      c.proc.kill('SIGSTOP')
      pauses++
      const stoppedAt = Date.now()
      while (Date.now() - stoppedAt < 2000) {
        const view = (await api(a.api, '/v1/nodes')).body.nodes.find((n: any) => n.peerId === c.peerId)
        const l = view?.liveness ?? 'gone'
        if (rank[l] > rank[worstLiveness]) worstLiveness = l
        await new Promise(res => setTimeout(res, 250))
      }
      c.proc.kill('SIGCONT')
      await new Promise(res => setTimeout(res, 500))
    }
    const done = await waitFor('job finished', async () => {
      const s = await api(a.api, `/v1/jobs/${id}`)
      return ['succeeded', 'failed', 'cancelled'].includes(s.body.state) ? s.body : undefined
    }, 30_000)
    const lostEvents = done.events.filter((e: any) => e.type === 'attempt:lost' || e.type === 'award:timeout').length
    const figures = { pauses, pauseMs: 2000, runMs: 500, cpuShare: 0.2, worstLiveness, attempts: done.attempts.length, lostEvents, state: done.state }
    console.log('starved executor:', figures)
    console.log(JSON.stringify({ bench: 'starved-executor', ...figures }))
    expect(done.state).toBe('succeeded')
    expect(done.attempts.length).toBe(1)
    expect(lostEvents).toBe(0)
    expect(worstLiveness).not.toBe('gone')
  }, 120_000)
})
