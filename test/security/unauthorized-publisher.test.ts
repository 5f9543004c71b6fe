// An unauthorized publisher, at process level: four agents as OS processes (real libp2p, real
// Docker), every one started with `--publisher <A>`. Agent D is a full member of the mesh but
// not an allowed publisher: the job it publishes is refused by every executor asked (reason
// 'unauthorized publisher'), no container is ever created for it (checked with the engine's
// own event log, by the job's label), and its status says why. A job A publishes meanwhile
// runs and succeeds.
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type Docker from 'dockerode'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { UNAUTHORIZED_PUBLISHER } from '../../src/agent/signing.ts'
import { SCHEDULER_DEFAULTS } from '../../src/constants.ts'
import { loadOrCreateKey } from '../../src/mesh/libp2p-mesh.ts'
import { type AgentProcess, TEST_IMAGE, api, startAgentProcess, stopAgentProcess, waitAllSeeAlive, waitFor } from '../support/cluster.ts'
import { requireDocker } from '../support/docker.ts'

/** Containers the engine created for a job since `sinceS` (its event log, so a container that
 *  was created and removed again still counts). */
async function containersCreated (docker: Docker, jobId: string, sinceS: number): Promise<number> {
  const stream = await docker.getEvents({
    since: sinceS,
    until: Math.ceil(Date.now() / 1000) + 1,
    filters: { type: ['container'], event: ['create'], label: [`bidmesh.job=${jobId}`] }
  }) as unknown as NodeJS.ReadableStream
  let text = ''
  for await (const chunk of stream) text += chunk.toString()
  return text.split('\n').filter(l => l.trim() !== '').length
}

/** Agents whose logs show them refusing to bid on (or accept) this job, and why. */
function refusals (agents: AgentProcess[], jobId: string): Map<string, string[]> {
  const out = new Map<string, string[]>()
  for (const x of agents) {
    for (const line of x.logs) {
      if (!line.includes(jobId)) continue
      let entry: any
      try { entry = JSON.parse(line) } catch { continue }
      if (entry.jobId === jobId && (entry.msg === 'bid:refused' || entry.msg === 'award:refused')) {
        out.set(x.name, [...(out.get(x.name) ?? []), entry.reason])
      }
    }
  }
  return out
}

describe('a member that is not an allowed publisher', () => {
  const agents: AgentProcess[] = []
  let docker: Docker
  let allowed: string

  beforeAll(async () => {
    docker = await requireDocker()
    // A's identity exists before any agent starts, so every agent can be told to trust it.
    const aDir = mkdtempSync(join(tmpdir(), 'bidmesh-pa-'))
    allowed = peerIdFromPrivateKey(await loadOrCreateKey(aDir) as any).toString()
    const only = ['--publisher', allowed]
    const a = await startAgentProcess({ name: 'pa', dataDir: aDir, cpus: 1, memory: '1g', extraArgs: only })
    expect(a.peerId).toBe(allowed)
    agents.push(a)
    agents.push(...await Promise.all(['pb', 'pc', 'pd'].map(async name =>
      await startAgentProcess({ name, cpus: 1, memory: '1g', bootstrap: a.addrs, extraArgs: only }))))
    await waitAllSeeAlive(agents, 4)
  }, 120_000)

  afterAll(async () => {
    await Promise.all(agents.map(async x => await stopAgentProcess(x, 'SIGTERM', { removeData: true })))
  })

  it('gets its job refused everywhere and run nowhere, while an allowed job runs', async () => {
    const [a, , , d] = agents
    const sinceS = Math.floor(Date.now() / 1000) - 1
    const spec = (what: string) => ({ image: TEST_IMAGE, command: `echo ${what}`, resources: { memory: '32m' } })
    const bad = await api(d.api, '/v1/jobs', { method: 'POST', body: spec('from-d') })
    const good = await api(a.api, '/v1/jobs', { method: 'POST', body: spec('from-a') })
    expect(bad.status, JSON.stringify(bad.body)).toBe(201)
    expect(good.status, JSON.stringify(good.body)).toBe(201)
    const badId: string = bad.body.id
    const goodId: string = good.body.id
    // Signed by its publisher all the same: the refusal is about who, not a missing signature.
    expect(bad.body.publisher).toBe(d.peerId)

    const goodDone = await waitFor('the allowed job to finish', async () => {
      const r = await api(d.api, `/v1/jobs/${goodId}`)
      return r.status === 200 && ['succeeded', 'failed', 'cancelled'].includes(r.body.state) ? r.body : undefined
    }, 60_000)
    expect(goodDone.state).toBe('succeeded')

    // Every candidate D asked has refused, in at least two bid rounds (a sweep re-offers it).
    const status = await waitFor('the refused job to show its refusals', async () => {
      // Read on its owner: a bid round that changes nothing but the epoch is not replicated.
      const r = await api(d.api, `/v1/jobs/${badId}`)
      // Each bid round takes a new epoch (a pending event is recorded only when the reason
      // changes, so rounds are counted by epoch).
      const refusedEvent = r.body.events?.some((e: any) => e.type === 'job:pending' && /unauthorized publisher/.test(e.detail ?? '')) === true
      return r.status === 200 && r.body.explanation?.refused?.[UNAUTHORIZED_PUBLISHER] > 0 && refusedEvent && r.body.epoch >= 2 && refusals(agents, badId).size >= 3 ? r.body : undefined
    }, 30_000)
    expect(status.state).toBe('pending')
    // D's first offers may be awards from its view (up to directAwardDeclinesBeforeBids in a
    // row): each declined for the same reason, and every later offer is a bid round. Nothing
    // ever ran.
    expect(status.attempts.length).toBeLessThanOrEqual(SCHEDULER_DEFAULTS.directAwardDeclinesBeforeBids)
    for (const attempt of status.attempts) expect(attempt).toMatchObject({ state: 'declined', error: UNAUTHORIZED_PUBLISHER, startedAt: null })
    expect(status.node).toBe(status.attempts.length > 0 ? status.attempts[status.attempts.length - 1].node : null)
    const refusedBy = refusals(agents, badId)
    for (const reasons of refusedBy.values()) expect(new Set(reasons)).toEqual(new Set([UNAUTHORIZED_PUBLISHER]))
    // The explanation's refusal counts hold nothing else.
    expect(Object.keys(status.explanation.refused)).toEqual([UNAUTHORIZED_PUBLISHER])

    const badContainers = await containersCreated(docker, badId, sinceS)
    const goodContainers = await containersCreated(docker, goodId, sinceS)
    const startedLines = agents.flatMap(x => x.logs).filter(l => l.includes(badId) && l.includes('container:started')).length
    const offered: number = status.epoch
    console.log(`unauthorized publisher: ${refusedBy.size} of ${agents.length} agents refused (${[...refusedBy].map(([n, r]) => `${n}×${r.length}`).join(', ')}), ` +
      `${status.explanation.refused[UNAUTHORIZED_PUBLISHER]} refusals in the last round, ${offered} rounds; ` +
      `executions: ${badContainers} containers created, ${startedLines} started; allowed job: ${goodDone.state} with ${goodContainers} container(s)`)
    expect(refusedBy.size).toBeGreaterThanOrEqual(3)
    expect(badContainers).toBe(0)
    expect(startedLines).toBe(0)
    expect(goodContainers).toBe(1)

    const cancelled = await api(d.api, `/v1/jobs/${badId}`, { method: 'DELETE' })
    expect(cancelled.body.state).toBe('cancelled')
  }, 120_000)
})
