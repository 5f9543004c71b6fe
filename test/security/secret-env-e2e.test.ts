// Secret env values end to end: three agents as OS processes (real libp2p, real Docker) and a
// listening member that records every gossip payload raw. A job with a secret runs; the
// secret reaches the container (its md5 is in the job's output) and appears nowhere else a
// user or the mesh at large can see: the API (job, list, events, the POST answer), the CLI
// (text and --json), the agents' own logs, and any gossip payload.
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { resolve } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { decodeMessage } from '../../src/protocol/codec.ts'
import { MAX_GOSSIP_BYTES, MessageType } from '../../src/protocol/messages.ts'
import { type AgentProcess, TEST_IMAGE, api, startAgentProcess, stopAgentProcess, waitAllSeeAlive, waitFor } from '../support/cluster.ts'
import { requireDocker } from '../support/docker.ts'
import { type RawGossipNode, startRawGossipNode } from '../support/raw-gossip-node.ts'

const BIN = resolve(import.meta.dirname, '../../bin/bidmesh.js')
const SECRET = `s3cr3t-${createHash('sha256').update(String(process.pid) + String(Date.now())).digest('hex').slice(0, 24)}`
const TERMINAL = new Set(['succeeded', 'failed', 'cancelled'])

describe('secret env values, end to end', () => {
  const agents: AgentProcess[] = []
  let spy: RawGossipNode | undefined

  beforeAll(async () => {
    await requireDocker()
    const env = { BIDMESH_LOG_LEVEL: 'debug' }
    const a = await startAgentProcess({ name: 'sa', cpus: 1, memory: '1g', env })
    agents.push(a)
    agents.push(...await Promise.all(['sb', 'sc'].map(async name => await startAgentProcess({ name, cpus: 1, memory: '1g', bootstrap: a.addrs, env }))))
    spy = await startRawGossipNode()
    await spy.dial(agents.flatMap(x => x.addrs))
    await waitAllSeeAlive(agents, 3)
  }, 90_000)

  afterAll(async () => {
    await spy?.stop()
    await Promise.all(agents.map(async x => await stopAgentProcess(x, 'SIGTERM', { removeData: true })))
  })

  it('runs with the secret in the container and shows it nowhere else', async () => {
    const [a, b, c] = agents
    const posted = await api(a.api, '/v1/jobs', {
      method: 'POST',
      body: {
        image: TEST_IMAGE,
        name: 'secret-e2e',
        // Prints a digest of the secret (proof the container got it) and something else.
        command: 'printf %s "$API_TOKEN" | md5sum; echo job-done "$REGION"',
        env: { API_TOKEN: SECRET, REGION: 'eu-west-1' },
        secretEnv: ['API_TOKEN'],
        resources: { memory: '32m' }
      }
    })
    expect(posted.status, JSON.stringify(posted.body)).toBe(201)
    const id: string = posted.body.id
    expect(posted.body.spec.env).toEqual({ API_TOKEN: '[REDACTED]', REGION: 'eu-west-1' })

    const done = await waitFor(`job ${id} to finish`, async () => {
      const r = await api(b.api, `/v1/jobs/${id}`)
      return r.status === 200 && TERMINAL.has(r.body.state) ? r.body : undefined
    }, 60_000)
    expect(done.state).toBe('succeeded')
    const output = await api(c.api, `/v1/jobs/${id}/logs`)
    expect(output.body).toContain(createHash('md5').update(SECRET).digest('hex'))
    expect(output.body).toContain('job-done eu-west-1')
    // The last summary (succeeded) reached the listening member: gossip capture works.
    await waitFor('the final job summary on gossip', () => spy!.received.some(g => {
      const r = decodeMessage(g.data, MAX_GOSSIP_BYTES)
      return r.ok && r.message.type === MessageType.JobSummaries && r.message.body.summaries.some(s => s.id === id && s.state === 'succeeded')
    }) ? true : undefined, 10_000)

    // Everything a user or a mesh member without the job can see.
    const views: Array<{ what: string, text: string }> = [{ what: 'POST /v1/jobs answer', text: JSON.stringify(posted.body) }]
    let events = 0
    for (const x of agents) {
      const job = await api(x.api, `/v1/jobs/${id}`)
      expect(job.status).toBe(200)
      events += job.body.events.length
      views.push({ what: `GET /v1/jobs/:id via ${x.name}`, text: JSON.stringify(job.body) })
      views.push({ what: `events via ${x.name}`, text: JSON.stringify(job.body.events) })
      views.push({ what: `GET /v1/jobs via ${x.name}`, text: JSON.stringify((await api(x.api, '/v1/jobs')).body) })
    }
    const cli = async (...args: string[]): Promise<string> => (await promisify(execFile)(process.execPath, [BIN, ...args, '--api', a.api], { timeout: 20_000 })).stdout
    views.push({ what: 'CLI status', text: await cli('status', id) })
    views.push({ what: 'CLI status --json', text: await cli('status', id, '--json') })
    views.push({ what: 'CLI jobs --json', text: await cli('jobs', '--json') })

    const gossip = spy!.received
    const jobsGossip = gossip.filter(g => {
      const r = decodeMessage(g.data, MAX_GOSSIP_BYTES)
      return r.ok && r.message.type === MessageType.JobSummaries && r.message.body.summaries.some(s => s.id === id)
    })
    const gossipLeaks = gossip.filter(g => Buffer.from(g.data).includes(SECRET)).length

    // The agents' logs, including their shutdown (drain) lines.
    await Promise.all(agents.map(async x => await stopAgentProcess(x, 'SIGTERM')))
    const logLines = agents.reduce((n, x) => n + x.logs.length, 0)
    const logLeaks = agents.flatMap(x => x.logs).filter(l => l.includes(SECRET)).length
    const jobLogLines = agents.flatMap(x => x.logs).filter(l => l.includes(id)).length

    const leaks = views.filter(v => v.text.includes(SECRET)).map(v => v.what)
    console.log(`secret-env e2e: ${views.length} API/CLI views (${events} events) checked, ${leaks.length} leaks; ` +
      `${gossip.length} gossip payloads (${jobsGossip.length} with this job's summary), ${gossipLeaks} leaks; ` +
      `${logLines} agent log lines (${jobLogLines} about the job), ${logLeaks} leaks`)
    expect(leaks).toEqual([])
    expect(gossipLeaks).toBe(0)
    expect(logLeaks).toBe(0)
    expect(jobsGossip.length).toBeGreaterThan(0)
    expect(jobLogLines).toBeGreaterThan(0)
    expect(events).toBeGreaterThan(0)
  }, 120_000)
})
