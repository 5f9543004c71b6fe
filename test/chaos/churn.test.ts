// Fault injection under churn: 100 short jobs published round robin over the live agents while
// two agents are SIGKILLed, one of them comes back with its data dir, and a new agent joins.
// Every accepted job must end succeeded on some surviving agent, none lost, none with two
// accepted results; the figures include how often each job ran.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { AgentProcess } from '../support/cluster.ts'
import { waitFor } from '../support/cluster.ts'
import { startsPerJob } from '../support/history.ts'
import { ChaosCluster, type Submitted, TERMINAL, historyChecks, median, percentile, printFigures, spec } from './kit.ts'

const TOTAL = 100
const BATCH = 5
/** submission pauses while this many job containers of ours run (the machine has 2 cores) */
const MAX_RUNNING = 8
const TEST_TIMEOUT_MS = 360_000

describe('chaos: churn', () => {
  const cluster = new ChaosCluster('churn')
  const ctx: { ids: string[], statuses?: Map<string, any> } = { ids: [] }

  beforeAll(async () => {
    await cluster.init()
    const a = await cluster.start({ name: 'a', cpus: 1, memory: '1g' })
    await Promise.all(['b', 'c', 'd', 'e'].map(async name => await cluster.start({ name, cpus: 1, memory: '1g', bootstrap: a.addrs })))
    await cluster.waitSees(cluster.all, cluster.all, 'alive', 45_000)
  }, 120_000)

  afterAll(async () => { await cluster.shutdown() }, 60_000)

  it(`runs ${TOTAL} short jobs to success through 2 kills, 1 restart and 1 join`, async () => {
    const t0 = Date.now()
    const submitted: Submitted[] = []
    const actions: Array<[string, number, string]> = [] // what, ms since start, detail
    const ours = (): Set<string> => new Set(cluster.all.map(x => x.peerId))
    let rr = 0

    const submitBatch = async (n: number): Promise<void> => {
      await waitFor(`fewer than ${MAX_RUNNING} job containers running`, () => {
        const mine = ours()
        return cluster.watcher.running().filter(r => mine.has(r.node)).length < MAX_RUNNING ? true : undefined
      }, 60_000, 50)
      // A batch is published concurrently, round robin over the live agents.
      const live = cluster.live()
      const count = Math.min(n, TOTAL - submitted.length)
      const batch = await Promise.all(Array.from({ length: count }, async (_, i) =>
        await cluster.submit(live[(rr + i) % live.length], spec('sleep 0.2', { cpus: 0.1, memory: '16m', name: `churn-${submitted.length + i}` }))))
      rr += count
      for (const s of batch) { submitted.push(s); ctx.ids.push(s.id) }
    }
    const submitUntil = async (count: number): Promise<void> => {
      while (submitted.length < count) await submitBatch(Math.min(BATCH, count - submitted.length))
      const sums = await cluster.summaries()
      const done = ctx.ids.filter(id => TERMINAL.has(sums.get(id)?.state)).length
      console.log(`${Date.now() - t0} ms: ${submitted.length} submitted (POST p50 ${median(cluster.postMs)} ms), ${done} terminal, ${cluster.live().length} agents live`)
    }
    /** SIGKILL while the victim has work in flight: a job container running, or a job it owns unfinished. */
    const killBusy = async (victim: AgentProcess): Promise<void> => {
      const hit = await waitFor(`${victim.name} to have work in flight`, async () => {
        const running = cluster.watcher.running(victim.peerId).length
        const owned = submitted.filter(s => s.via === victim.name).map(s => s.id)
        const sums = await cluster.summaries([victim])
        const open = owned.filter(id => !TERMINAL.has(sums.get(id)?.state)).length
        return running > 0 || open > 0 ? { running, open } : undefined
      }, 15_000, 100).catch(() => ({ running: 0, open: 0 }))
      const at = await cluster.kill(victim)
      actions.push([`SIGKILL ${victim.name}`, at - t0, `after ${submitted.length} jobs; ${hit.running} container(s) running on it, ${hit.open} job(s) it owns unfinished`])
      console.log(`${at - t0} ms: ${actions[actions.length - 1][0]} ${actions[actions.length - 1][2]}`)
    }

    await submitUntil(25)
    await killBusy(cluster.byName('b'))
    await submitUntil(45)
    await killBusy(cluster.byName('c'))
    await submitUntil(65)
    const r0 = Date.now()
    const b2 = await cluster.restart(cluster.byName('b'))
    await cluster.waitSees(cluster.live(), cluster.live(), 'alive', 30_000)
    actions.push(['restart b (same data dir)', r0 - t0, `after ${submitted.length} jobs; back in the mesh after ${Date.now() - r0} ms`])
    await submitUntil(80)
    const j0 = Date.now()
    await cluster.start({ name: 'f', cpus: 1, memory: '1g', bootstrap: [...cluster.byName('a').addrs, ...b2.addrs] })
    await cluster.waitSees(cluster.live(), cluster.live(), 'alive', 30_000)
    actions.push(['join f', j0 - t0, `after ${submitted.length} jobs; in the mesh after ${Date.now() - j0} ms`])
    await submitUntil(TOTAL)
    const submitDoneMs = Date.now() - t0

    // Whatever is left of the test's budget, less time to report: the figures always print.
    const { pending } = await cluster.waitTerminal(ctx.ids, Math.max(20_000, Math.min(150_000, t0 + TEST_TIMEOUT_MS - 45_000 - Date.now())))
    const wallMs = Date.now() - t0
    ctx.statuses = await cluster.finalStatuses(ctx.ids)
    const lost = ctx.ids.filter(id => !TERMINAL.has(ctx.statuses!.get(id)?.state))
    const notSucceeded = ctx.ids.filter(id => ctx.statuses!.get(id)?.state !== 'succeeded')
    const hist = startsPerJob(cluster.all, ctx.ids)
    const counts = cluster.executionCounts()
    const histAll: Record<string, number> = {}
    for (const id of ctx.ids) { const n = counts.get(id) ?? 0; histAll[n] = (histAll[n] ?? 0) + 1 }
    const report = cluster.history([...ctx.statuses.values()], 'churn history', false)
    const latencies = [...ctx.statuses.values()].filter(s => s.finishedAt !== null).map(s => Date.parse(s.finishedAt) - Date.parse(s.createdAt))
    const byOwnerState = new Map<string, number>()
    for (const id of lost) {
      const s = ctx.statuses.get(id)
      const sub = submitted.find(x => x.id === id)!
      const k = `published on ${sub.via}: ${s === undefined ? 'unknown to every survivor' : `${String(s.state)} (owner ${cluster.nameOf(s.owner)})`}`
      byOwnerState.set(k, (byOwnerState.get(k) ?? 0) + 1)
    }
    const perAgent: Record<string, number> = {}
    for (const s of submitted) perAgent[s.via] = (perAgent[s.via] ?? 0) + 1

    printFigures('churn: faults injected', ['action', 'at (ms)', 'detail'], actions.map(([w, t, d]) => [w, t, d]), { actions })
    printFigures('churn: outcome', ['figure', 'value'], [
      ['jobs accepted', submitted.length],
      ['published per agent', Object.entries(perAgent).map(([k, v]) => `${k}=${v}`).join(' ')],
      ['succeeded', ctx.ids.length - notSucceeded.length],
      ['lost (not terminal on any survivor)', lost.length],
      ['two accepted results', report.violations.a.length],
      ['executions per job (container:started)', Object.entries(hist).map(([k, v]) => `${k}×: ${v}`).join(', ')],
      ['executions per job (engine events + logs)', Object.entries(histAll).map(([k, v]) => `${k}×: ${v}`).join(', ')],
      ['POST /v1/jobs p50 / max (ms)', `${median(cluster.postMs)} / ${Math.max(...cluster.postMs)}`],
      ['job latency p50 / p95 (ms)', `${median(latencies)} / ${percentile(latencies, 95)}`],
      ['submission done / all terminal (ms)', `${submitDoneMs} / ${wallMs}`]
    ], {
      jobs: submitted.length,
      succeeded: ctx.ids.length - notSucceeded.length,
      lost: lost.length,
      lostBreakdown: Object.fromEntries(byOwnerState),
      twoAcceptedResults: report.violations.a.length,
      executionsPerJob: hist,
      executionsPerJobEngine: histAll,
      postP50Ms: median(cluster.postMs),
      postMaxMs: Math.max(...cluster.postMs),
      latencyP50Ms: median(latencies),
      latencyP95Ms: percentile(latencies, 95),
      wallMs
    })
    for (const [k, v] of byOwnerState) console.log(`  lost: ${v} job(s) ${k}`)
    for (const id of lost.slice(0, 5)) console.log(`timeline of lost job ${id}:\n${cluster.jobLog(id, 30)}`)
    // Why jobs ran more than once: each re-run should trace back to a kill (its executor's or
    // its award's), never to a takeover that forgot an attempt.
    for (const id of ctx.ids.filter(i => (counts.get(i) ?? 0) > 1).slice(0, 4)) console.log(`timeline of job ${id}, run ${counts.get(id) ?? 0} times:\n${cluster.jobLog(id, 30)}`)

    expect(pending.length === 0 && lost.length === 0, `${lost.length} of ${submitted.length} jobs lost: ${[...byOwnerState].map(([k, v]) => `${v} ${k}`).join('; ')}`).toBe(true)
    expect(notSucceeded.map(id => `${id}: ${String(ctx.statuses!.get(id)?.state)}`)).toEqual([])
    expect(report.violations.a).toEqual([])
  }, TEST_TIMEOUT_MS)

  historyChecks(() => cluster, ctx)
})
