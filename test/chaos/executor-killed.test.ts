// Fault injection: an executor that runs jobs it does not own is SIGKILLed (4 jobs of 0.5 CPU
// published on one agent of a 5-agent mesh of 1-CPU agents). Its jobs must run
// again elsewhere; the figure is the time from the kill to the new container running
// (issue target: median ≤ 5 s; printed, not asserted, since this 2-core machine is noisy).
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { AgentProcess } from '../support/cluster.ts'
import { waitFor } from '../support/cluster.ts'
import { ChaosCluster, TERMINAL, historyChecks, median, printFigures, spec } from './kit.ts'

const TARGET_MEDIAN_MS = 5000
const JOBS = 4

function logged (agents: AgentProcess[], pred: (l: any) => boolean): any | undefined {
  for (const a of agents) {
    for (const line of a.logs) {
      if (line[0] !== '{') continue
      let l: any
      try { l = JSON.parse(line) } catch { continue }
      if (pred(l)) return { ...l, agent: a.name }
    }
  }
  return undefined
}

describe('chaos: executor killed', () => {
  const cluster = new ChaosCluster('executor-killed')
  const ctx: { ids: string[], statuses?: Map<string, any> } = { ids: [] }
  let a: AgentProcess

  beforeAll(async () => {
    await cluster.init()
    a = await cluster.start({ name: 'a', cpus: 1, memory: '1g' })
    await Promise.all(['b', 'c', 'd', 'e'].map(async name => await cluster.start({ name, cpus: 1, memory: '1g', bootstrap: a.addrs })))
    await cluster.waitSees(cluster.all, cluster.all, 'alive', 45_000)
  }, 120_000)

  afterAll(async () => { await cluster.shutdown() }, 60_000)

  it('re-runs the jobs of a SIGKILLed executor elsewhere, and every job succeeds', async () => {
    // Each job runs until one wall-clock deadline, 40 s after submission: the first attempt is
    // a long sleep (placement on a loaded machine can take a while), a re-run after the kill
    // sleeps only what is left, so the test stays short.
    const deadline = Math.ceil(Date.now() / 1000) + 40
    const cmd = `d=${deadline}; n=$(date +%s); if [ "$n" -lt "$d" ]; then sleep $((d - n)); fi`
    for (let i = 0; i < JOBS; i++) ctx.ids.push((await cluster.submit(a, spec(cmd, { cpus: 0.5, memory: '32m', name: `ek-${i}` }))).id)

    // Kill once every job was placed and started (all running, or on a slow machine some
    // already done) and some job runs on an agent other than the publisher.
    const placed = await waitFor(`all ${JOBS} jobs placed and started`, async () => {
      const ss = await Promise.all(ctx.ids.map(async id => await cluster.status(id, [a])))
      const ok = ss.every(s => s?.state === 'running' || TERMINAL.has(s?.state)) && ss.some(s => s.state === 'running' && s.node !== a.peerId)
      return ok ? ss : undefined
    }, 40_000, 200)
    const running = placed.filter(s => s.state === 'running')
    console.log(`${running.length} of ${placed.length} jobs running at the kill`)
    const perNode = new Map<string, string[]>()
    for (const s of running) perNode.set(s.node, [...(perNode.get(s.node) ?? []), s.id])
    console.log(`placement: ${[...perNode].map(([n, ids]) => `${cluster.nameOf(n)}=${ids.length}`).join(' ')}`)
    // The victim executes jobs but owns none: every job was published on (and is owned by) a.
    const [victimId, victimJobs] = [...perNode].filter(([n]) => n !== a.peerId).sort((x, y) => y[1].length - x[1].length)[0] ?? []
    expect(victimId, 'some job runs on an agent other than the publisher').toBeDefined()
    const victim = cluster.all.find(x => x.peerId === victimId)!
    const before = new Map(placed.map(s => [s.id, s]))

    const killAt = await cluster.kill(victim)
    const survivors = cluster.live()

    // Per re-run job: owner noticed (attempt:lost), re-awarded, new container running.
    const reruns = await Promise.all(victimJobs!.map(async id => {
      const oldEpoch = before.get(id).epoch
      const started = await waitFor(`job ${id} to run again after the kill`, () =>
        logged(survivors, l => l.msg === 'container:started' && l.jobId === id && l.epoch > oldEpoch), 30_000, 100
      ).catch(err => { throw new Error(`${String(err)}\n${cluster.jobLog(id)}`) })
      const lost = logged([a], l => l.msg === 'attempt:lost' && l.jobId === id && l.epoch === oldEpoch)
      const awarded = logged([a], l => l.msg === 'job:awarded' && l.jobId === id && l.epoch === started.epoch)
      return {
        id,
        oldEpoch,
        newEpoch: started.epoch as number,
        node: started.node as string,
        lostMs: lost !== undefined ? lost.time - killAt : NaN,
        lostDetail: lost?.detail ?? '',
        awardedMs: awarded !== undefined ? awarded.time - killAt : NaN,
        startedMs: (started.startedAtMs as number) - killAt
      }
    }))

    const { pending } = await cluster.waitTerminal(ctx.ids, 40_000)
    expect(pending, `jobs not finished:\n${pending.map(id => `  ${id}\n${cluster.jobLog(id)}`).join('\n')}`).toEqual([])
    ctx.statuses = await cluster.finalStatuses(ctx.ids)
    const orphans = cluster.watcher.running(victim.peerId).length
    // The killed agent's own containers: nobody stops them; how long did they run on?
    const orphanRunOnMs = (id: string): number | string => {
      const c = [...cluster.watcher.containers.values()].find(r => r.jobId === id && r.node === victim.peerId)
      return c === undefined ? '?' : c.dieMs !== undefined ? c.dieMs - killAt : `running (${Date.now() - killAt}+)`
    }

    const med = median(reruns.map(r => r.startedMs))
    printFigures('executor-killed: kill → re-run container running',
      ['job', 'from', 'to', 'epoch', 'lost seen (ms)', 'awarded (ms)', 'running (ms)', 'lost because', 'old container ran on (ms)'],
      reruns.map(r => [r.id, victim.name, cluster.nameOf(r.node), `${r.oldEpoch}→${r.newEpoch}`, r.lostMs, r.awardedMs, r.startedMs, r.lostDetail, orphanRunOnMs(r.id)]),
      {
        agents: 5,
        jobs: ctx.ids.length,
        rerunJobs: reruns.length,
        killToRunningMs: reruns.map(r => r.startedMs),
        medianKillToRunningMs: med,
        targetMedianMs: TARGET_MEDIAN_MS,
        targetMet: med <= TARGET_MEDIAN_MS,
        killToLostMs: reruns.map(r => r.lostMs),
        orphanContainersOfKilledAgentStillRunning: orphans,
        orphanRanOnAfterKillMs: reruns.map(r => orphanRunOnMs(r.id)),
        finalStates: [...ctx.statuses.values()].map(s => s.state)
      })
    for (const r of reruns) console.log(`timeline of ${r.id} (kill at ${new Date(killAt).toISOString().slice(11, 23)}):\n${cluster.jobLog(r.id, 40)}`)
    console.log(`median kill → re-run running: ${med} ms (target ≤ ${TARGET_MEDIAN_MS} ms: ${med <= TARGET_MEDIAN_MS ? 'met' : 'MISSED'}); containers of the killed agent still running: ${orphans}`)

    for (const r of reruns) expect(r.node).not.toBe(victim.peerId)
    for (const id of ctx.ids) {
      const s = ctx.statuses.get(id)
      expect(s?.state, `job ${id}\n${cluster.jobLog(id)}`).toBe('succeeded')
    }
    // Jobs that were not on the victim ran exactly once.
    for (const s of placed.filter(s => !victimJobs!.includes(s.id))) expect(ctx.statuses.get(s.id).epoch).toBe(s.epoch)
  }, 120_000)

  historyChecks(() => cluster, ctx)
})
