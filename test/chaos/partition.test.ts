// Fault injection: a real network partition. Each agent runs in its own network namespace on
// one bridge; iptables DROP rules inside the namespaces cut 2 agents off from the other 3 for
// ~10 s (each side still talks to itself, the host reaches every API), then the cut heals.
// Jobs are submitted on both sides before and during the partition. Every job must succeed,
// with one accepted result each, no stale result accepted, no long overlapping executions.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { AgentProcess } from '../support/cluster.ts'
import { api, waitFor } from '../support/cluster.ts'
import { type NetNode, canConnect, cleanupNetns, createNetwork, heal, partition, requireNetns, startAgentInNetns } from '../support/netns.ts'
import { replicaQuorum } from '../../src/scheduler/takeover.ts'
import { ChaosCluster, type Submitted, TERMINAL, historyChecks, printFigures, spec } from './kit.ts'

const HOLD_MS = 10_000

describe('chaos: network partition 2 | 3', () => {
  const cluster = new ChaosCluster('partition')
  const ctx: { ids: string[], statuses?: Map<string, any> } = { ids: [] }
  let net: NetNode[] = []
  const agents: AgentProcess[] = []

  beforeAll(async () => {
    requireNetns()
    await cluster.init()
    net = createNetwork(5)
    // Seeds: n0 and n2, one on each side of the coming cut, so each side keeps direct
    // connections inside itself.
    const start = async (i: number, bootstrap: string[]): Promise<AgentProcess> =>
      await cluster.start({ name: `n${i}`, cpus: 1, memory: '1g', labels: { side: i < 2 ? 'minority' : 'majority' }, bootstrap }, async o => await startAgentInNetns(net[i], o, { timeoutMs: 90_000 }))
    const n0 = await start(0, [])
    const n2 = await start(2, n0.addrs)
    const [n1, n3, n4] = await Promise.all([1, 3, 4].map(async i => await start(i, [...n0.addrs, ...n2.addrs])))
    agents.push(n0, n1, n2, n3, n4)
    for (const [i, a] of agents.entries()) expect(a.api).toContain(net[i].ip)
    await cluster.waitSees(agents, agents, 'alive', 60_000)
  }, 180_000)

  afterAll(async () => {
    try { await cluster.shutdown() } finally { cleanupNetns() }
  }, 60_000)

  it('keeps every job to one accepted result through a 2|3 partition and its healing', async () => {
    const minority = agents.slice(0, 2)
    const majority = agents.slice(2)
    const subs: Array<Submitted & { phase: string }> = []
    const submit = async (via: AgentProcess, phase: string, cmd: string, side?: 'minority' | 'majority'): Promise<void> => {
      const s = await cluster.submit(via, spec(cmd, { cpus: 0.5, memory: '32m', name: `pt-${phase}-${via.name}`, ...(side !== undefined ? { constraints: { side } } : {}) }))
      subs.push({ ...s, phase })
      ctx.ids.push(s.id)
    }

    // Before: long enough to be running when the cut comes. Two of them have owner and
    // executor on different sides of the coming cut (placed there by label constraints).
    await submit(agents[0], 'before-cross', 'sleep 20', 'majority')
    await submit(agents[1], 'before', 'sleep 20')
    await submit(agents[3], 'before-cross', 'sleep 20', 'minority')
    await submit(agents[4], 'before', 'sleep 20')
    // Cut when all four run at once (or, if placement is slow, once all have started and some
    // still run). Placement of the constrained jobs can take long on a loaded machine.
    const t0 = Date.now()
    const beforeRunning = await waitFor('the jobs submitted before the cut to run', async () => {
      const ss = await Promise.all(ctx.ids.map(async id => await cluster.status(id)))
      if (ss.every(s => s?.state === 'running')) return ss
      return Date.now() - t0 > 20_000 && ss.every(s => s?.state === 'running' || TERMINAL.has(s?.state)) && ss.some(s => s.state === 'running') ? ss : undefined
    }, 90_000, 200)
    console.log(`the jobs submitted before the cut: ${beforeRunning.filter(s => s.state === 'running').length} of 4 running after ${Date.now() - t0} ms`)
    const crossing = beforeRunning.filter(s => s.state === 'running' && (minority.some(m => m.peerId === s.owner)) !== (minority.some(m => m.peerId === s.node))).length
    console.log(`before the cut: ${beforeRunning.map(s => `${String(s.id)} owner=${cluster.nameOf(s.owner)} node=${cluster.nameOf(s.node)} ${String(s.state)}`).join('; ')}`)

    // Cut. From here on the cut holds HOLD_MS, whatever else the test does meanwhile.
    const cutStart = Date.now()
    await partition(net.slice(0, 2), net.slice(2))
    const cutAt = Date.now() // every rule in place
    const cutInstallMs = cutAt - cutStart
    // The heal is on a timer, so the cut lasts HOLD_MS however slow the work below is.
    let healAt = 0
    const healed = new Promise<void>(resolve => setTimeout(() => {
      // (a failed test may have removed the namespaces already)
      void heal(net).catch(() => {}).finally(() => { healAt = Date.now(); resolve() })
    }, HOLD_MS))
    const stateAtCut = await cluster.summaries()
    // How soon each side stops seeing the other as alive (polled while the cut holds).
    let minoritySeesCutMs: number | undefined
    let majoritySeesCutMs: number | undefined
    const notAlive = async (observer: AgentProcess, others: AgentProcess[]): Promise<boolean> => {
      const r = await api(observer.api, '/v1/nodes')
      return others.every(m => r.body.nodes.find((n: any) => n.peerId === m.peerId)?.liveness !== 'alive')
    }
    const watch = (async () => {
      while (Date.now() - cutAt < HOLD_MS && (minoritySeesCutMs === undefined || majoritySeesCutMs === undefined)) {
        try {
          if (minoritySeesCutMs === undefined && await notAlive(agents[0], majority)) minoritySeesCutMs = Date.now() - cutAt
          if (majoritySeesCutMs === undefined && await notAlive(agents[3], minority)) majoritySeesCutMs = Date.now() - cutAt
        } catch {}
        await new Promise(r => setTimeout(r, 100))
      }
    })()

    const port = (a: AgentProcess): number => Number(new URL(a.api).port)
    const [insideMinority, insideMajority, acrossAtoB, acrossBtoA] = await Promise.all([
      canConnect(net[0], net[1].ip, port(agents[1])),
      canConnect(net[2], net[4].ip, port(agents[4])),
      canConnect(net[0], net[3].ip, port(agents[3])),
      canConnect(net[3], net[1].ip, port(agents[1]))
    ])
    const reach = { insideMinority, insideMajority, acrossAtoB, acrossBtoA }
    const hostReachesAll = (await Promise.all(agents.map(async a => (await api(a.api, '/healthz')).status === 200))).every(Boolean)
    console.log(`partition installed: ${JSON.stringify(reach)}, host reaches every API: ${String(hostReachesAll)}`)
    expect(reach).toEqual({ insideMinority: true, insideMajority: true, acrossAtoB: false, acrossBtoA: false })
    expect(hostReachesAll).toBe(true)

    // During: on both sides. How long the 201 takes is a figure too (replication may wait).
    // A POST that is answered only after the heal is reported as such.
    const postMs: Record<string, number | string> = {}
    for (const [via, phase] of [[agents[1], 'during-minority'], [agents[0], 'during-minority'], [agents[4], 'during-majority'], [agents[2], 'during-majority']] as const) {
      const t = Date.now()
      await submit(via, phase, 'sleep 2')
      postMs[`${via.name} (${phase})`] = healAt === 0 ? Date.now() - t : `${Date.now() - t} (answered after the heal)`
    }

    await watch
    await healed // the partition is held HOLD_MS on purpose
    const midStates = await cluster.summaries()
    const heldMs = healAt - cutAt
    const convergedMs = await cluster.waitSees(agents, agents, 'alive', 40_000).then(ms => ms).catch(() => NaN)

    const { pending } = await cluster.waitTerminal(ctx.ids, 60_000)
    ctx.statuses = await cluster.finalStatuses(ctx.ids, { lists: false })

    const execs = cluster.executionCounts()
    const rows = subs.map(s => {
      const st = ctx.statuses!.get(s.id)
      const starts = execs.get(s.id) ?? 0
      return [s.id, s.phase, s.via, stateAtCut.get(s.id) !== undefined ? `${String(stateAtCut.get(s.id).state)}@${cluster.nameOf(stateAtCut.get(s.id).node)}` : '-', midStates.get(s.id)?.state ?? '?', st?.state ?? 'unknown', cluster.nameOf(st?.owner), cluster.nameOf(st?.node), st?.epoch ?? '-', starts, st?.finishedAt != null ? Date.parse(st.finishedAt) - healAt : '-']
    })
    printFigures('partition: jobs', ['job', 'phase', 'published on', 'state at cut', 'state at heal', 'final', 'owner', 'node', 'epoch', 'executions', 'finished after heal (ms)'], rows, {
      agents: 5,
      sides: [minority.map(a => a.name), majority.map(a => a.name)],
      heldMs,
      cutInstallMs,
      runningAtCut: beforeRunning.filter(s => s.state === 'running').length,
      crossingJobsAtCut: crossing,
      minoritySeesMajorityNotAliveMs: minoritySeesCutMs ?? null,
      majoritySeesMinorityNotAliveMs: majoritySeesCutMs ?? null,
      healToAllAliveMs: convergedMs,
      postDuringPartitionMs: postMs,
      finalStates: Object.fromEntries(rows.map(r => [r[0], r[5]]))
    })
    console.log(`cut installed in ${cutInstallMs} ms, complete at ${new Date(cutAt).toISOString().slice(11, 23)}, healed at ${new Date(healAt).toISOString().slice(11, 23)}; POST during the cut: ${JSON.stringify(postMs)}`)
    console.log(`partition held ${heldMs} ms; minority saw the cut after ${String(minoritySeesCutMs)} ms, majority after ${String(majoritySeesCutMs)} ms; all 5 alive again ${convergedMs} ms after healing; ${crossing} running job(s) had owner and executor on different sides`)
    for (const id of pending) console.log(`timeline of unfinished job ${id}:\n${cluster.jobLog(id, 40)}`)

    expect(convergedMs, 'the mesh heals: every agent sees all 5 alive').not.toBeNaN()
    for (const s of subs) expect(ctx.statuses.get(s.id)?.state, `job ${s.id} (${s.phase}, published on ${s.via})\n${cluster.jobLog(s.id, 40)}`).toBe('succeeded')
    // A 201 (replicated) promises a quorum of the job's replicas holds it: during the cut, the
    // replicas it could reach are those on its side. (Which answer each submit gets depends
    // on when it came: a group chosen while the other side still looked alive has 4 replicas,
    // 1 of them on the cut-off side, so 202 there; a group chosen while the other side looked
    // suspect is smaller than the members not known gone, so 202 on either side.)
    for (const s of subs.filter(s => s.phase.startsWith('during-'))) {
      const side = new Set((s.phase === 'during-majority' ? majority : minority).map(a => a.peerId))
      const reachable = s.replicas.filter(r => side.has(r)).length
      console.log(`${s.phase} on ${s.via}: ${s.replicated ? 201 : 202}, replicas ${s.replicas.map(r => cluster.nameOf(r)).join(' ')}`)
      if (s.replicated) expect(reachable, `${s.phase} on ${s.via} answered 201`).toBeGreaterThanOrEqual(replicaQuorum(s.replicas.length))
    }
  }, 300_000)

  historyChecks(() => cluster, ctx)
})
