// Fault injection: a real network partition. Each agent runs in its own network namespace on
// one bridge; iptables DROP rules inside the namespaces cut 2 agents off from the other 3 for
// ~10 s (each side still talks to itself, the host reaches every API), then the cut heals.
// Jobs are submitted on both sides before and during the partition. Every job must succeed,
// with one accepted result each, no stale result accepted, no long overlapping executions.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { AgentProcess } from '../support/cluster.ts'
import { api, waitFor } from '../support/cluster.ts'
import { type NetNode, canConnect, cleanupNetns, createNetwork, heal, partition, requireNetns, startAgentInNetns } from '../support/netns.ts'
import { ChaosCluster, type Submitted, historyChecks, printFigures, spec } from './kit.ts'

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
    for (let i = 0; i < 5; i++) {
      // Every agent is given all earlier ones as seeds, so each side of the cut still has
      // direct connections inside itself.
      const node = net[i]
      const a = await cluster.start({ name: `n${i}`, cpus: 1, memory: '1g', bootstrap: agents.flatMap(x => x.addrs) }, async o => await startAgentInNetns(node, o, { timeoutMs: 90_000 }))
      expect(a.api).toContain(node.ip)
      agents.push(a)
    }
    await cluster.waitSees(agents, agents, 'alive', 60_000)
  }, 180_000)

  afterAll(async () => {
    try { await cluster.shutdown() } finally { cleanupNetns() }
  }, 60_000)

  it('keeps every job to one accepted result through a 2|3 partition and its healing', async () => {
    const minority = agents.slice(0, 2)
    const majority = agents.slice(2)
    const subs: Array<Submitted & { phase: string }> = []
    const submit = async (via: AgentProcess, phase: string, cmd: string): Promise<void> => {
      const s = await cluster.submit(via, spec(cmd, { cpus: 0.5, memory: '32m', name: `pt-${phase}-${via.name}` }))
      subs.push({ ...s, phase })
      ctx.ids.push(s.id)
    }

    // Before: long enough to be running when the cut comes.
    await submit(agents[0], 'before', 'sleep 8')
    await submit(agents[1], 'before', 'sleep 8')
    await submit(agents[3], 'before', 'sleep 8')
    await submit(agents[4], 'before', 'sleep 8')
    const beforeRunning = await waitFor('the jobs submitted before the cut to run', async () => {
      const ss = await Promise.all(ctx.ids.map(async id => await cluster.status(id)))
      return ss.every(s => s?.state === 'running') ? ss : undefined
    }, 30_000, 200)
    const crossing = beforeRunning.filter(s => (minority.some(m => m.peerId === s.owner)) !== (minority.some(m => m.peerId === s.node))).length

    // Cut.
    const cutAt = Date.now()
    partition(net.slice(0, 2), net.slice(2))
    const port = (a: AgentProcess): number => Number(new URL(a.api).port)
    const reach = {
      insideMinority: canConnect(net[0], net[1].ip, port(agents[1])),
      insideMajority: canConnect(net[2], net[4].ip, port(agents[4])),
      acrossAtoB: canConnect(net[0], net[3].ip, port(agents[3])),
      acrossBtoA: canConnect(net[3], net[1].ip, port(agents[1]))
    }
    const hostReachesAll = (await Promise.all(agents.map(async a => (await api(a.api, '/healthz')).status === 200))).every(Boolean)
    console.log(`partition installed: ${JSON.stringify(reach)}, host reaches every API: ${String(hostReachesAll)}`)
    expect(reach).toEqual({ insideMinority: true, insideMajority: true, acrossAtoB: false, acrossBtoA: false })
    expect(hostReachesAll).toBe(true)

    // During: on both sides.
    await submit(agents[1], 'during-minority', 'sleep 2')
    await submit(agents[0], 'during-minority', 'sleep 2')
    await submit(agents[4], 'during-majority', 'sleep 2')
    await submit(agents[2], 'during-majority', 'sleep 2')

    // How soon each side stops seeing the other as alive (polled while the cut holds).
    let minoritySeesCutMs: number | undefined
    let majoritySeesCutMs: number | undefined
    const watch = (async () => {
      while (Date.now() - cutAt < HOLD_MS) {
        try {
          if (minoritySeesCutMs === undefined) {
            const r = await api(agents[0].api, '/v1/nodes')
            if (majority.every(m => r.body.nodes.find((n: any) => n.peerId === m.peerId)?.liveness !== 'alive')) minoritySeesCutMs = Date.now() - cutAt
          }
          if (majoritySeesCutMs === undefined) {
            const r = await api(agents[3].api, '/v1/nodes')
            if (minority.every(m => r.body.nodes.find((n: any) => n.peerId === m.peerId)?.liveness !== 'alive')) majoritySeesCutMs = Date.now() - cutAt
          }
        } catch {}
        await new Promise(r => setTimeout(r, 200))
      }
    })()
    await watch // the partition is held for HOLD_MS on purpose
    const midStates = await cluster.summaries()

    heal(net)
    const healAt = Date.now()
    const heldMs = healAt - cutAt
    const convergedMs = await cluster.waitSees(agents, agents, 'alive', 40_000).then(ms => ms).catch(() => NaN)

    const { pending } = await cluster.waitTerminal(ctx.ids, 60_000)
    ctx.statuses = await cluster.finalStatuses(ctx.ids, { lists: false })

    const rows = subs.map(s => {
      const st = ctx.statuses!.get(s.id)
      const starts = new Set(cluster.all.flatMap(x => x.logs.filter(l => l.includes('"container:started"') && l.includes(s.id)).map(l => { const j = JSON.parse(l); return `${String(j.epoch)}@${String(j.node)}` }))).size
      return [s.id, s.phase, s.via, midStates.get(s.id)?.state ?? '?', st?.state ?? 'unknown', cluster.nameOf(st?.owner), cluster.nameOf(st?.node), st?.epoch ?? '-', starts, st?.finishedAt != null ? Date.parse(st.finishedAt) - healAt : '-']
    })
    printFigures('partition: jobs', ['job', 'phase', 'published on', 'state at heal', 'final', 'owner', 'node', 'epoch', 'executions', 'finished after heal (ms)'], rows, {
      agents: 5,
      sides: [minority.map(a => a.name), majority.map(a => a.name)],
      heldMs,
      crossingJobsAtCut: crossing,
      minoritySeesMajorityNotAliveMs: minoritySeesCutMs ?? null,
      majoritySeesMinorityNotAliveMs: majoritySeesCutMs ?? null,
      healToAllAliveMs: convergedMs,
      finalStates: Object.fromEntries(rows.map(r => [r[0], r[4]]))
    })
    console.log(`partition held ${heldMs} ms; minority saw the cut after ${String(minoritySeesCutMs)} ms, majority after ${String(majoritySeesCutMs)} ms; all 5 alive again ${convergedMs} ms after healing; ${crossing} running job(s) had owner and executor on different sides`)
    for (const id of pending) console.log(`timeline of unfinished job ${id}:\n${cluster.jobLog(id, 40)}`)

    expect(convergedMs, 'the mesh heals: every agent sees all 5 alive').not.toBeNaN()
    for (const s of subs) expect(ctx.statuses.get(s.id)?.state, `job ${s.id} (${s.phase}, published on ${s.via})\n${cluster.jobLog(s.id, 40)}`).toBe('succeeded')
  }, 240_000)

  historyChecks(() => cluster, ctx)
})
