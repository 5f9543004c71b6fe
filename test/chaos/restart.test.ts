// Fault injection: an agent that owns jobs and runs jobs is SIGKILLed, then restarted with its
// data dir. Nothing is lost (the jobs it owned and the jobs it ran all end succeeded) and, once
// every agent is stopped, no bidmesh-managed container of this cluster is left on the engine.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { AgentProcess } from '../support/cluster.ts'
import { waitFor } from '../support/cluster.ts'
import { ChaosCluster, type Submitted, TERMINAL, historyChecks, printFigures, spec } from './kit.ts'

describe('chaos: agent SIGKILLed and restarted with its data dir', () => {
  const cluster = new ChaosCluster('restart')
  const ctx: { ids: string[], statuses?: Map<string, any> } = { ids: [] }
  let a: AgentProcess, b: AgentProcess

  beforeAll(async () => {
    await cluster.init()
    a = await cluster.start({ name: 'a', cpus: 1, memory: '1g' })
    ;[b] = await Promise.all(['b', 'c'].map(async name => await cluster.start({ name, cpus: 1, memory: '1g', bootstrap: a.addrs })))
    await cluster.waitSees(cluster.all, cluster.all, 'alive', 45_000)
  }, 120_000)

  afterAll(async () => { await cluster.shutdown() }, 60_000)

  it('loses nothing the killed agent owned or ran, and leaves no container behind', async () => {
    // 6 jobs of 0.5 CPU on three 1-CPU agents: every agent runs two. b owns three of them.
    const subs: Submitted[] = []
    for (let i = 0; i < 3; i++) {
      subs.push(await cluster.submit(b, spec('sleep 5', { cpus: 0.5, memory: '32m', name: `rs-b-${i}` })))
      subs.push(await cluster.submit(a, spec('sleep 5', { cpus: 0.5, memory: '32m', name: `rs-a-${i}` })))
    }
    ctx.ids.push(...subs.map(s => s.id))
    const ownedByB = subs.filter(s => s.via === 'b').map(s => s.id)

    // Kill b while it runs a job container and owns unfinished jobs.
    const inFlight = await waitFor('b to run a job and own unfinished jobs', async () => {
      const running = cluster.watcher.running(b.peerId).map(r => r.jobId)
      const sums = await cluster.summaries([b])
      const open = ownedByB.filter(id => !TERMINAL.has(sums.get(id)?.state))
      return running.length > 0 && open.length > 0 ? { running, open } : undefined
    }, 30_000, 50)
    const killAt = await cluster.kill(b)
    const ranOnB = [...new Set(inFlight.running)]
    console.log(`killed b: running ${ranOnB.length} job container(s), owning ${inFlight.open.length} unfinished job(s)`)

    const b2 = await cluster.restart(b)
    const restartedMs = Date.now() - killAt
    await cluster.waitSees(cluster.live(), cluster.live(), 'alive', 30_000)
    const rejoinedMs = Date.now() - killAt
    // The restarted agent removes the containers its predecessor left running.
    const orphans = [...cluster.watcher.containers.values()].filter(r => r.node === b.peerId && (r.startMs ?? Infinity) < killAt).map(r => r.containerId)
    const orphansLeft = async (): Promise<number> => (await cluster.managedContainers()).filter(c => orphans.includes(c.Id)).length
        const leftAfterRestart = await waitFor('containers of the killed b to be removed', async () => (await orphansLeft()) === 0 ? 0 : undefined, 20_000, 200).catch(orphansLeft)
    const orphansRemovedMs = leftAfterRestart === 0 ? Date.now() - killAt : NaN

    const { pending } = await cluster.waitTerminal(ctx.ids, 60_000)
    ctx.statuses = await cluster.finalStatuses(ctx.ids)

    const execs = cluster.executionCounts()
    const rows = ctx.ids.map(id => {
      const s = ctx.statuses!.get(id)
      const starts = execs.get(id) ?? 0
      return [id, subs.find(x => x.id === id)!.via, ownedByB.includes(id) ? 'yes' : '', ranOnB.includes(id) ? 'yes' : '', s?.state ?? 'unknown', s?.epoch ?? '-', cluster.nameOf(s?.node), starts, s?.finishedAt != null ? Date.parse(s.finishedAt) - killAt : '-']
    })

    // Stop every agent (SIGTERM, as an operator would), then look for leftovers on the engine.
    await Promise.all(cluster.live().map(async x => { x.proc.kill('SIGTERM'); await x.exited }))
    const left = await cluster.managedContainers()

    printFigures('restart: b SIGKILLed and restarted', ['job', 'published on', 'owned by b', 'ran on b', 'state', 'epoch', 'final node', 'executions', 'finished after kill (ms)'], rows, {
      restartedMs,
      rejoinedMs,
      ownedByB: inFlight.open.length,
      ranOnB: ranOnB.length,
      containersOfKilledAgentLeftAfterRestart: leftAfterRestart,
      orphansRemovedAfterKillMs: orphansRemovedMs,
      containersLeftAfterStop: left.length,
      states: Object.fromEntries(rows.map(r => [r[0], r[4]]))
    })
    console.log(`b restarted ${restartedMs} ms after the kill, back in the mesh at ${rejoinedMs} ms; containers left after all agents stopped: ${left.length}`)
    for (const id of pending) console.log(`timeline of unfinished job ${id}:\n${cluster.jobLog(id, 30)}`)

    expect(b2.peerId).toBe(b.peerId)
    expect(ranOnB.length).toBeGreaterThan(0)
    for (const id of ctx.ids) expect(ctx.statuses.get(id)?.state, `job ${id} (owned by b: ${String(ownedByB.includes(id))}, ran on b: ${String(ranOnB.includes(id))})\n${cluster.jobLog(id, 30)}`).toBe('succeeded')
    expect(left.map(c => `${c.Names.join(',')} ${c.State}`), 'containers labelled bidmesh.managed=true left after all agents stopped').toEqual([])
  }, 180_000)

  historyChecks(() => cluster, ctx)
})
