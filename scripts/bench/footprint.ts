// Footprint of idle agents: 5 agents (the default Docker executor, nothing submitted) form a
// mesh and settle 10 s. Then two CPU windows of 60 s each: each agent's CPU is the growth of
// utime+stime in /proc/<pid>/stat, summed over the agent's node process and the processes it
// spawned. The first window starts once the mesh has settled: it includes V8's warm-up
// (TurboFan compiling functions that only slowly get hot on an idle agent, on V8's worker
// thread). The second starts once the agents are STEADY_AFTER_MS old (counted from the start
// of the first agent), when that has died down: it is what an agent left idle on a host
// costs, and what the CPU target is judged on. Both are printed, each with its start.
// RSS (VmRSS from /proc/<pid>/status, same processes) is sampled every second from the first
// window's start to the second's end, gap included. Capacity-gossip traffic (the growth of
// bidmesh_gossip_bytes{topic="bidmesh/capacity/1",direction="received"} on GET /metrics) and
// bytes read are over the first window.
import { readFileSync } from 'node:fs'
import { AGENT_DEFAULTS } from '../../src/constants.ts'
import { type BenchAgent, startCluster, stopCluster } from './agents.ts'
import { cpuSeconds, descendants, heading, jsonLine, loadAverage, mean, request, round, rssAnonBytes, rssBytes, sleep, table, verdict } from './util.ts'

export const FOOTPRINT_TARGETS = { idleRssMB: 100, idleCpuPercentOfCore: 2 }

const AGENTS = 5
const CAPACITY_TOPIC = 'bidmesh/capacity/1'
const MB = 1024 * 1024
/** Age of the agents when the steady-state window starts (measured: idle CPU falls over the
 *  first ~2 min, 2.3 → 1.5 % of a core, as V8 stops compiling; it is flat after). */
const STEADY_AFTER_MS = 120_000

export interface FootprintOptions { quick: boolean }

/** bidmesh_gossip_bytes{topic,direction} from a Prometheus text page. */
function gossipBytes (text: string, topic: string, direction: string): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith('bidmesh_gossip_bytes{')) continue
    const labels = line.slice(line.indexOf('{') + 1, line.indexOf('}'))
    if (labels.includes(`topic="${topic}"`) && labels.includes(`direction="${direction}"`)) return Number(line.slice(line.indexOf('}') + 1).trim())
  }
  return undefined
}

interface Scrape { ok: boolean, status: number, received?: number, sent?: number }

async function scrape (a: BenchAgent): Promise<Scrape> {
  try {
    const r = await request(a.api, '/metrics')
    if (r.status !== 200) return { ok: false, status: r.status }
    return { ok: true, status: 200, received: gossipBytes(r.text, CAPACITY_TOPIC, 'received'), sent: gossipBytes(r.text, CAPACITY_TOPIC, 'sent') }
  } catch {
    return { ok: false, status: 0 }
  }
}

/** Bytes a process has read through syscalls (sockets included), from /proc/<pid>/io. */
function readBytes (pid: number): number {
  try {
    const m = /^rchar:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/io`, 'utf8'))
    return m == null ? NaN : Number(m[1])
  } catch { return NaN }
}

/** Fallback when /metrics is missing: the size of each agent's own advert, encoded the way
 *  the mesh encodes it, times the advert rate: what each other agent receives. An estimate. */
async function estimatedCapacityBytesPerSec (agents: BenchAgent[]): Promise<number[]> {
  const { encodeMessage } = await import('../../src/protocol/codec.ts')
  const { MessageType } = await import('../../src/protocol/messages.ts')
  const sizes = await Promise.all(agents.map(async a => {
    const r = await request(a.api, '/v1/nodes')
    const self = r.body.nodes.find((n: any) => n.self === true)
    const { liveness: _l, lastSeenAgoMs: _s, self: _x, ...capacity } = self
    return encodeMessage({ type: MessageType.CapacityAdvert, body: capacity } as any).byteLength
  }))
  const perSec = 1000 / AGENT_DEFAULTS.advertIntervalMs
  return agents.map((_, i) => sizes.reduce((sum, s, j) => sum + (j === i ? 0 : s * perSec), 0))
}

export interface FootprintResult {
  agents: number
  executor: 'docker'
  /** length of each CPU window (the first is also gossip's and bytes read's) */
  windowSec: number
  /** seconds since the first agent started, at the first window's start */
  firstWindowStartsAtSec: number
  /** seconds from the first window's start to the second's end: what the RSS samples span */
  rssSampledSec: number
  /** processes per agent: the node process and its descendants (tsx's esbuild service, which
   *  only runs when tsx had to transpile something its cache did not hold) */
  processesPerAgent: number[]
  /** VmRSS summed over each agent's processes: mean over 1 s samples; max of any sample */
  rssMB: { mean: number, max: number, perAgent: number[] }
  /** mean of the agents' mean VmRSS; max of any sample */
  nodeProcessRssMB: { mean: number, max: number }
  /** anonymous memory of the node process (excludes the shared node binary and libraries) */
  nodeProcessRssAnonMB: { mean: number, max: number }
  /** utime+stime summed over each agent's processes, % of one core, in the steady window
   *  (agents STEADY_AFTER_MS old and older): what the target is judged on */
  cpuPercentOfCore: { mean: number, max: number, perAgent: number[] }
  nodeProcessCpuPercentOfCore: { mean: number, max: number }
  /** the same in the first window (from firstWindowStartsAtSec), V8's warm-up included */
  firstMinuteCpuPercentOfCore: { mean: number, max: number, perAgent: number[] }
  /** the node process's threads other than the main one (V8's compiler and GC worker, libuv's
   *  pool), % of one core: first window, steady window */
  nodeWorkerThreadsCpuPercentOfCore: { firstMinute: number, steady: number }
  /** seconds since the agents started at the steady window's start */
  steadyWindowStartsAtSec: number
  capacityGossip: {
    source: 'metrics' | 'estimate (no /metrics)'
    receivedBytesPerSecPerAgent: { mean: number, max: number }
    sentBytesPerSecPerAgent: { mean: number, max: number } | null
  }
  /** all bytes each agent read through syscalls (rchar: libp2p TCP incl. gossipsub control,
   *  noise and yamux framing, plus the few /metrics requests): an upper bound on wire cost */
  allReadBytesPerSecPerAgent: { mean: number, max: number }
  targets: typeof FOOTPRINT_TARGETS
  met: { rss: boolean, cpu: boolean }
  loadAvg: number[]
}

export async function runFootprint (o: FootprintOptions): Promise<FootprintResult> {
  const windowMs = o.quick ? 10_000 : 60_000
  const settleMs = o.quick ? 3000 : 10_000
  const steadyAfterMs = o.quick ? 20_000 : STEADY_AFTER_MS
  heading(`footprint: ${AGENTS} idle agents (docker executor, nothing submitted), two ${windowMs / 1000} s windows: once settled ${settleMs / 1000} s, and from ${steadyAfterMs / 1000} s after start${o.quick ? ' [quick]' : ''}`)
  const startedAt = performance.now()
  const agents = await startCluster(AGENTS, { cpus: 1, memory: '1g', executor: 'docker' }, 'idle', settleMs)
  try {
    console.log(`   5 agents up (pids ${agents.map(a => a.pid).join(' ')}); settled ${settleMs / 1000} s`)
    // Each agent is its node process plus what it spawned: bin/bidmesh.js runs the sources
    // through tsx, which keeps an esbuild service process alive. Both count.
    const trees = agents.map(a => [a.pid, ...descendants(a.pid)])
    const treeCpu = (i: number): number => trees[i].reduce((sum, pid) => sum + (Number.isFinite(cpuSeconds(pid)) ? cpuSeconds(pid) : 0), 0)
    const rss: number[][] = agents.map(() => [])
    const nodeRss: number[][] = agents.map(() => [])
    const nodeAnon: number[][] = agents.map(() => [])
    const sampleRss = (): void => agents.forEach((a, i) => {
      rss[i].push(trees[i].reduce((sum, pid) => sum + (Number.isFinite(rssBytes(pid)) ? rssBytes(pid) : 0), 0))
      nodeRss[i].push(rssBytes(a.pid))
      nodeAnon[i].push(rssAnonBytes(a.pid))
    })
    /** CPU over one window of windowMs, RSS sampled every second meanwhile. */
    const cpuWindow = async (): Promise<{ seconds: number, tree: number[], node: number[], main: number[] }> => {
      const tree0 = agents.map((_, i) => treeCpu(i))
      const node0 = agents.map(a => cpuSeconds(a.pid))
      const main0 = agents.map(a => cpuSeconds(a.pid, a.pid))
      const t0 = performance.now()
      while (performance.now() - t0 < windowMs) {
        sampleRss()
        await sleep(1000)
      }
      const seconds = (performance.now() - t0) / 1000
      const pct = (a: number[], b: number[]): number[] => a.map((x, i) => (b[i] - x) / seconds * 100)
      return { seconds, tree: pct(tree0, agents.map((_, i) => treeCpu(i))), node: pct(node0, agents.map(a => cpuSeconds(a.pid))), main: pct(main0, agents.map(a => cpuSeconds(a.pid, a.pid))) }
    }

    const firstWindowStartsAtSec = round((performance.now() - startedAt) / 1000, 0)
    const before = await Promise.all(agents.map(scrape))
    const io0 = agents.map(a => readBytes(a.pid))
    const first = await cpuWindow()
    const io1 = agents.map(a => readBytes(a.pid))
    const after = await Promise.all(agents.map(scrape))
    const seconds = first.seconds
    // Idle on, sampling RSS, until the agents are steadyAfterMs old.
    while (performance.now() - startedAt < steadyAfterMs) {
      sampleRss()
      await sleep(1000)
    }
    const steadyWindowStartsAtSec = round((performance.now() - startedAt) / 1000, 0)
    const steady = await cpuWindow()
    const loadAvg = loadAverage()

    const rssMean = rss.map(x => mean(x) / MB)
    const rssMax = rss.map(x => Math.max(...x) / MB)
    const nodeRssMean = nodeRss.map(x => mean(x) / MB)
    const nodeAnonMean = nodeAnon.map(x => mean(x) / MB)
    const cpuPct = steady.tree
    const nodeCpuPct = steady.node
    const workerPct = (w: typeof steady): number => round(mean(w.node.map((x, i) => x - w.main[i])), 2)
    const ioRate = agents.map((_, i) => (io1[i] - io0[i]) / seconds)
    const mm = (xs: number[], d = 1): { mean: number, max: number } => ({ mean: round(mean(xs), d), max: round(Math.max(...xs), d) })

    let source: FootprintResult['capacityGossip']['source'] = 'metrics'
    let received: number[]
    let sent: number[] | null = null
    const fromMetrics = before.every(s => s.ok && s.received !== undefined) && after.every(s => s.ok && s.received !== undefined)
    if (fromMetrics) {
      received = agents.map((_, i) => (after[i].received! - before[i].received!) / seconds)
      if (before.every(s => s.sent !== undefined) && after.every(s => s.sent !== undefined)) sent = agents.map((_, i) => (after[i].sent! - before[i].sent!) / seconds)
    } else {
      source = 'estimate (no /metrics)'
      console.log(`   GET /metrics answered ${after.map(s => s.status).join(', ')} (or lacks bidmesh_gossip_bytes): capacity gossip is ESTIMATED from advert size × advert rate`)
      received = await estimatedCapacityBytesPerSec(agents)
    }

    const met = { rss: Math.max(...rssMax) <= FOOTPRINT_TARGETS.idleRssMB, cpu: Math.max(...cpuPct) <= FOOTPRINT_TARGETS.idleCpuPercentOfCore }
    const result: FootprintResult = {
      agents: AGENTS,
      executor: 'docker',
      windowSec: round(seconds, 1),
      firstWindowStartsAtSec,
      rssSampledSec: round((performance.now() - startedAt) / 1000 - firstWindowStartsAtSec, 0),
      processesPerAgent: trees.map(t => t.length),
      rssMB: { mean: round(mean(rssMean), 1), max: round(Math.max(...rssMax), 1), perAgent: rssMean.map(x => round(x, 1)) },
      nodeProcessRssMB: { mean: round(mean(nodeRssMean), 1), max: round(Math.max(...nodeRss.flat()) / MB, 1) },
      nodeProcessRssAnonMB: { mean: round(mean(nodeAnonMean), 1), max: round(Math.max(...nodeAnon.flat()) / MB, 1) },
      cpuPercentOfCore: { mean: round(mean(cpuPct), 2), max: round(Math.max(...cpuPct), 2), perAgent: cpuPct.map(x => round(x, 2)) },
      nodeProcessCpuPercentOfCore: mm(nodeCpuPct, 2),
      firstMinuteCpuPercentOfCore: { mean: round(mean(first.tree), 2), max: round(Math.max(...first.tree), 2), perAgent: first.tree.map(x => round(x, 2)) },
      nodeWorkerThreadsCpuPercentOfCore: { firstMinute: workerPct(first), steady: workerPct(steady) },
      steadyWindowStartsAtSec,
      capacityGossip: {
        source,
        receivedBytesPerSecPerAgent: { mean: round(mean(received), 1), max: round(Math.max(...received), 1) },
        sentBytesPerSecPerAgent: sent === null ? null : { mean: round(mean(sent), 1), max: round(Math.max(...sent), 1) }
      },
      allReadBytesPerSecPerAgent: { mean: round(mean(ioRate), 0), max: round(Math.max(...ioRate), 0) },
      targets: FOOTPRINT_TARGETS,
      met,
      loadAvg
    }
    console.log(table([
      ['   per idle agent', 'mean', 'max', 'target', ''],
      [`   RSS MB (VmRSS, 1 s samples over ${result.rssSampledSec} s; ${Math.max(...result.processesPerAgent)} processes)`, result.rssMB.mean, result.rssMB.max, `≤ ${FOOTPRINT_TARGETS.idleRssMB}`, verdict(met.rss)],
      ['     of which the node process', result.nodeProcessRssMB.mean, result.nodeProcessRssMB.max, '', ''],
      ['     node process RssAnon (not shared)', result.nodeProcessRssAnonMB.mean, result.nodeProcessRssAnonMB.max, '', ''],
      [`   CPU % of one core (utime+stime), from ${steadyWindowStartsAtSec} s after start`, result.cpuPercentOfCore.mean, result.cpuPercentOfCore.max, `≤ ${FOOTPRINT_TARGETS.idleCpuPercentOfCore}`, verdict(met.cpu)],
      ['     of which the node process', result.nodeProcessCpuPercentOfCore.mean, result.nodeProcessCpuPercentOfCore.max, '', ''],
      ['     of which its threads other than the main one', result.nodeWorkerThreadsCpuPercentOfCore.steady, '', '', ''],
      [`   CPU % of one core, from ${firstWindowStartsAtSec} s after start (V8 warm-up)`, result.firstMinuteCpuPercentOfCore.mean, result.firstMinuteCpuPercentOfCore.max, '', ''],
      ['     of which the node process\'s other threads', result.nodeWorkerThreadsCpuPercentOfCore.firstMinute, '', '', ''],
      [`   capacity gossip received B/s (${source})`, result.capacityGossip.receivedBytesPerSecPerAgent.mean, result.capacityGossip.receivedBytesPerSecPerAgent.max, '', ''],
      ...(result.capacityGossip.sentBytesPerSecPerAgent !== null ? [['   capacity gossip sent B/s', result.capacityGossip.sentBytesPerSecPerAgent.mean, result.capacityGossip.sentBytesPerSecPerAgent.max, '', '']] : []),
      ['   all bytes read B/s (rchar, upper bound)', result.allReadBytesPerSecPerAgent.mean, result.allReadBytesPerSecPerAgent.max, '', '']
    ]))
    console.log(jsonLine({ benchmark: 'footprint', quick: o.quick, ...result }))
    return result
  } finally {
    await stopCluster(agents)
  }
}
