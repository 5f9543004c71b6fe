// Fault injection: the publisher of a job (its owner) is SIGKILLed (a) right after the POST
// answered 201, (b) right after the job shows it was awarded (scheduled/running). The job
// must still complete, as a surviving agent reports it. This needs the owner's record to be
// replicated before the 201 and a replica to take the job over.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { AgentProcess } from '../support/cluster.ts'
import { waitFor } from '../support/cluster.ts'
import { ChaosCluster, historyChecks, printFigures, spec } from './kit.ts'

function firstLog (agents: AgentProcess[], pred: (l: any) => boolean): any | undefined {
  for (const a of agents) {
    for (const line of a.logs) {
      if (line[0] !== '{') continue
      try {
        const l = JSON.parse(line)
        if (pred(l)) return { ...l, agent: a.name }
      } catch {}
    }
  }
  return undefined
}

describe('chaos: publisher (owner) killed', () => {
  const cluster = new ChaosCluster('publisher-killed')
  const ctx: { ids: string[], statuses?: Map<string, any> } = { ids: [], statuses: new Map() }
  const rows: Array<Array<string | number>> = []
  const figures: Record<string, unknown> = {}
  let p1: AgentProcess, p2: AgentProcess

  beforeAll(async () => {
    await cluster.init()
    // Publishers never execute (jobs are constrained to workers): killing one kills an owner only.
    p1 = await cluster.start({ name: 'p1', cpus: 1, memory: '1g', labels: { role: 'publisher' } })
    const rest = await Promise.all([
      cluster.start({ name: 'p2', cpus: 1, memory: '1g', labels: { role: 'publisher' }, bootstrap: p1.addrs }),
      ...['w1', 'w2', 'w3'].map(async name => await cluster.start({ name, cpus: 1, memory: '1g', labels: { role: 'worker' }, bootstrap: p1.addrs }))
    ])
    p2 = rest[0]
    await cluster.waitSees(cluster.all, cluster.all, 'alive', 45_000)
  }, 120_000)

  afterAll(async () => {
    if (rows.length > 0) {
      printFigures('publisher-killed: owner SIGKILLed, job seen from survivors',
        ['case', 'job', 'kill after', 'known on survivor (ms)', 'adopted (ms)', 'new owner', 'finished (ms)', 'state', 'epoch', 'executions'], rows, figures)
    }
    await cluster.shutdown()
  }, 60_000)

  async function followUp (label: string, publisher: AgentProcess, id: string, killAt: number, killedAfter: string): Promise<any> {
    const survivors = cluster.live()
    let knownAt: number | undefined
    let last: any
    const final = await waitFor(`job ${id} to finish on a surviving agent after its owner ${publisher.name} was killed`, async () => {
      const s = await cluster.status(id, survivors)
      if (s !== undefined) { knownAt ??= Date.now(); last = s }
      return s !== undefined && s.state === 'succeeded' ? s : (s !== undefined && (s.state === 'failed' || s.state === 'cancelled') ? s : undefined)
    }, 40_000, 250).catch(() => undefined)
    const adopted = firstLog(survivors, l => l.msg === 'job:adopted' && l.jobId === id)
    const executions = cluster.executionCounts().get(id) ?? 0
    const s = final ?? last
    rows.push([
      label, id, killedAfter,
      knownAt !== undefined ? knownAt - killAt : 'never',
      adopted !== undefined ? adopted.time - killAt : 'never',
      adopted !== undefined ? adopted.agent : (s?.owner !== undefined ? cluster.nameOf(s.owner) : '-'),
      final !== undefined && final.finishedAt !== null ? Date.parse(final.finishedAt) - killAt : 'never',
      s?.state ?? 'unknown', s?.epoch ?? '-', executions
    ])
    figures[label] = {
      jobId: id,
      knownOnSurvivorMs: knownAt !== undefined ? knownAt - killAt : null,
      adoptedMs: adopted !== undefined ? adopted.time - killAt : null,
      newOwner: adopted?.agent ?? null,
      finishedMs: final?.finishedAt != null ? Date.parse(final.finishedAt) - killAt : null,
      state: s?.state ?? null,
      executions
    }
    if (s !== undefined) ctx.statuses!.set(id, s)
    console.log(`timeline of ${id} (${label}, owner killed at ${new Date(killAt).toISOString().slice(11, 23)}):\n${cluster.jobLog(id, 40)}`)
    const why = `job ${id}: ${s === undefined ? 'no surviving agent knows it' : `last seen ${s.state} (epoch ${String(s.epoch)}, owner ${cluster.nameOf(s.owner)}) on ${String(s.answeredBy)}`}\n${cluster.jobLog(id, 40)}`
    expect(s, why).toBeDefined()
    expect(s.state, why).toBe('succeeded')
    expect(s.owner, 'the new owner is not the dead publisher').not.toBe(publisher.peerId)
    return s
  }

  it('(a) completes a job whose publisher was SIGKILLed right after the POST returned 201', async () => {
    const sub = await cluster.submit(p1, spec('sleep 4', { cpus: 0.5, memory: '32m', constraints: { role: 'worker' }, name: 'pk-accepted' }))
    const killAt = await cluster.kill(p1)
    ctx.ids.push(sub.id)
    console.log(`killed ${p1.name} ${killAt - sub.acceptedAtMs} ms after the 201`)
    await followUp('(a) after 201', p1, sub.id, killAt, '201')
  }, 90_000)

  it('(b) completes a job whose publisher was SIGKILLed right after the job was awarded', async () => {
    const sub = await cluster.submit(p2, spec('sleep 4', { cpus: 0.5, memory: '32m', constraints: { role: 'worker' }, name: 'pk-awarded' }))
    ctx.ids.push(sub.id)
    const awarded = await waitFor('job to be scheduled or running', async () => {
      const s = await cluster.status(sub.id, [p2])
      return s !== undefined && (s.state === 'scheduled' || s.state === 'running') ? s : undefined
    }, 20_000, 50)
    const killAt = await cluster.kill(p2)
    console.log(`killed ${p2.name} with the job ${String(awarded.state)} on ${cluster.nameOf(awarded.node)} (epoch ${String(awarded.epoch)})`)
    await followUp('(b) after award', p2, sub.id, killAt, String(awarded.state))
  }, 90_000)

  historyChecks(() => cluster, ctx)
})
