// End to end with real containers: 3 agents with the Docker executor share this machine's
// engine with the two baselines, measured in the same run:
//   direct: `docker run --rm <bidmesh's isolation flags> bidmesh/busybox:latest true`, the same
//           container bidmesh starts (the engine's floor; ISOLATION_ARGS in docker.ts); a bare
//           `docker run --rm --network none` is timed beside it for information
//   swarm:  a replicated-job service running the same task
// latency:    N trivial jobs one after another, submit → exit recorded. The N iterations
//             interleave the three systems (bidmesh, direct, swarm, bidmesh, ...) so a burst
//             of load from elsewhere hits all three alike.
// throughput: M trivial jobs submitted at once, time until all are terminal; the direct floor
//             runs them with parallelism 2 and 4 and keeps the better.
import { parseJobSpec } from '../../src/protocol/job-spec.ts'
import { dockerExecutor } from '../../src/runtime/docker-executor.ts'
import { type BenchAgent, IMAGE, startCluster, stopCluster } from './agents.ts'
import { cleanup } from './cleanup.ts'
import { DOCKER_RUN_ARGS, RUN_ID, docker, dockerRun, dockerRunBatch, ensureSwarm, removeAgentContainers, removeRunContainers, removeRunServices, swarmJob } from './docker.ts'
import { heading, jsonLine, loadAverage, mapLimit, percentile, ratio, request, round, sleep, summarize, type Summary, table, verdict } from './util.ts'

export const E2E_TARGETS = {
  latencyVsDirect: 1.15,
  latencyVsSwarm: 0.75,
  throughputVsDirect: 1.10,
  throughputVsSwarm: 1.0
}

const AGENTS = 3
const AGENT_CAPACITY = { cpus: 2, memory: '2g' }
const SPEC = { image: IMAGE, command: ['true'], resources: { cpus: 0.1, memory: '16m' } }
const TERMINAL = new Set(['succeeded', 'failed', 'cancelled'])
/** Generous: on a starved machine a submit (which waits for a replica) can take seconds. */
const SUBMIT_TIMEOUT_MS = 120_000

export interface E2eOptions { quick: boolean }

function terminalAt (status: any): number {
  const ev = status.events.find((e: any) => e.type === `job:${String(status.state)}`)
  return ev !== undefined ? ev.atMs : Date.parse(status.updatedAt)
}

/** How the benchmark waits for a job to end. By default one long poll (`?waitMs`) per job: the
 *  agent answers when the job is over, as `docker run` returns when its container exits, so the
 *  waiting costs the agents nothing while the engine works. BIDMESH_BENCH_POLL=1 polls instead
 *  (every 10 ms for the latency runs, every 100 ms for the burst: what this benchmark did before
 *  the long poll existed), to measure what polling clients cost. */
const POLL = process.env.BIDMESH_BENCH_POLL === '1'

async function waitTerminal (via: BenchAgent, id: string, pollMs: number, timeoutMs = 120_000): Promise<any> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const waitMs = Math.max(0, Math.min(60_000, deadline - Date.now()))
    const r = await request(via.api, POLL ? `/v1/jobs/${id}` : `/v1/jobs/${id}?waitMs=${waitMs}`, { timeoutMs: waitMs + 30_000 })
    if (r.status === 200 && TERMINAL.has(r.body.state)) return r.body
    if (Date.now() > deadline) throw new Error(`job ${id} not terminal after ${timeoutMs} ms (state ${String(r.body?.state)})`)
    if (POLL || r.status !== 200) await sleep(pollMs)
  }
}

/** One job: from just before POST (client) to the owner's terminal event (agent), ms. */
async function bidmeshOne (via: BenchAgent): Promise<{ ms: number, state: string, phases: Phases }> {
  const t0 = Date.now()
  const r = await request(via.api, '/v1/jobs', { method: 'POST', body: SPEC, timeoutMs: SUBMIT_TIMEOUT_MS })
  if (r.status !== 201) throw new Error(`submit failed: ${r.status} ${r.text.slice(0, 300)}`)
  const s = await waitTerminal(via, r.body.id, 10)
  return { ms: terminalAt(s) - t0, state: s.state, phases: phasesOf(s, t0) }
}

/** Informational: the agent's Docker executor called in-process (the same hardened container
 *  config, the same engine calls, removal included) with no mesh, auction or report. The gap
 *  to `docker run` is the executor's own cost; the gap to bidmesh is the orchestration's. */
const EXECUTOR_NODE = `executor-${RUN_ID}`
const executor = dockerExecutor()({ docker, nodeId: EXECUTOR_NODE })
let executorSeq = 0
async function executorOne (): Promise<number> {
  const spec = parseJobSpec(SPEC)
  const t0 = performance.now()
  const r = await executor.run({ jobId: `${RUN_ID}-${executorSeq++}`, epoch: 1, spec })
  const ms = performance.now() - t0
  if (r.reason !== 'exit' || r.exitCode !== 0) throw new Error(`executor run ended ${r.reason} ${String(r.exitCode)}: ${r.error?.message ?? ''}`)
  return ms
}

/** Where one job's time went, from its status (all stamps on the same host clock). */
interface Phases {
  /** client POST → owner's createdAt */
  submit: number
  /** createdAt → job:awarded: the auction */
  auction: number
  /** job:awarded → container started: award round trip, executor preparation, create, start */
  awardToStart: number
  /** container started → executor saw it exit (wait + inspect) */
  run: number
  /** exit seen → owner recorded the terminal state: container removal, then the report */
  exitToRecorded: number
}

function phasesOf (s: any, t0: number): Phases {
  const created = Date.parse(s.createdAt)
  const awarded = s.events.find((e: any) => e.type === 'job:awarded')?.atMs ?? NaN
  const last = s.attempts[s.attempts.length - 1] ?? {}
  const started = Date.parse(last.startedAt ?? '')
  const finished = Date.parse(last.finishedAt ?? '')
  return { submit: created - t0, auction: awarded - created, awardToStart: started - awarded, run: finished - started, exitToRecorded: terminalAt(s) - finished }
}

/** count jobs submitted at once, round-robin over the agents; until the last is terminal, ms. */
async function bidmeshBatch (agents: BenchAgent[], count: number): Promise<{ ms: number, failed: number, nodes: Record<string, number> }> {
  const t0 = Date.now()
  const ids = await Promise.all(Array.from({ length: count }, async (_, i) => {
    const via = agents[i % agents.length]
    const r = await request(via.api, '/v1/jobs', { method: 'POST', body: SPEC, timeoutMs: SUBMIT_TIMEOUT_MS })
    if (r.status !== 201) throw new Error(`submit failed: ${r.status} ${r.text.slice(0, 300)}`)
    return { id: r.body.id as string, via }
  }))
  const done = new Map<string, any>()
  if (POLL) {
    const deadline = Date.now() + 300_000
    while (done.size < ids.length) {
      if (Date.now() > deadline) throw new Error(`only ${done.size}/${ids.length} jobs terminal after 300 s`)
      await sleep(100)
      await mapLimit(ids.filter(j => !done.has(j.id)), 4, async j => {
        const r = await request(j.via.api, `/v1/jobs/${j.id}`)
        if (r.status === 200 && TERMINAL.has(r.body.state)) done.set(j.id, r.body)
      })
    }
  } else {
    await Promise.all(ids.map(async j => { done.set(j.id, await waitTerminal(j.via, j.id, 100, 300_000)) }))
  }
  const statuses = [...done.values()]
  const names = new Map(agents.map(a => [a.peerId, a.name]))
  const nodes: Record<string, number> = {}
  for (const s of statuses) { const n = names.get(s.node) ?? String(s.node); nodes[n] = (nodes[n] ?? 0) + 1 }
  return { ms: Math.max(...statuses.map(terminalAt)) - t0, failed: statuses.filter(s => s.state !== 'succeeded').length, nodes }
}

export interface E2eResult {
  agents: number
  image: string
  swarm: string
  latency: { iterations: number, bidmeshMs: Summary, directMs: Summary, plainDirectMs: Summary, swarmMs: Summary | null, vsDirect: number, vsSwarm: number, bidmeshPhasesMedianMs: Phases, executorAloneMs: Summary }
  throughput: {
    jobs: number
    bidmeshMs: number
    bidmeshFailed: number
    bidmeshNodes: Record<string, number>
    directMsByParallelism: Record<string, number>
    directFloorMs: number
    swarmMs: number | null
    swarmFailed: number | null
    vsDirect: number
    vsSwarm: number
  }
  targets: typeof E2E_TARGETS
  met: { latencyVsDirect: boolean, latencyVsSwarm: boolean | undefined, throughputVsDirect: boolean, throughputVsSwarm: boolean | undefined }
  loadAvg: number[]
}

export async function runE2e (o: E2eOptions): Promise<E2eResult> {
  const iterations = o.quick ? 5 : 20
  const batch = o.quick ? 20 : 40
  heading(`end to end with real containers: ${AGENTS} agents (docker executor, --cpus ${AGENT_CAPACITY.cpus} --memory ${AGENT_CAPACITY.memory}) vs docker run vs Swarm${o.quick ? ' [quick]' : ''}`)
  console.log(`   job: ${JSON.stringify(SPEC)}`)
  console.log(`   direct: docker ${DOCKER_RUN_ARGS.join(' ')}`)

  const swarm = await ensureSwarm()
  const swarmNote = typeof swarm === 'string' ? `unavailable: ${swarm}` : swarm.initialisedByUs ? 'single-node swarm initialised for this run (left at the end)' : 'existing swarm (left as it was)'
  console.log(`   swarm: ${swarmNote}`)
  const useSwarm = typeof swarm !== 'string'
  if (useSwarm) cleanup.add('swarm services', removeRunServices)
  cleanup.add('docker run containers', removeRunContainers)

  const agents = await startCluster(AGENTS, { ...AGENT_CAPACITY, executor: 'docker' }, 'e2e')
  const peerIds = agents.map(a => a.peerId)
  const undoAgents = cleanup.add('e2e agents and their containers', async () => { await stopCluster(agents); await removeAgentContainers([...peerIds, EXECUTOR_NODE]) })
  console.log(`   3 agents up (pids ${agents.map(a => a.pid).join(' ')})`)
  try {
    // Warm-up, not measured: the first container of a run pays for page cache and the
    // agents' first Docker connections; Swarm's first task pays for its own set-up.
    await bidmeshOne(agents[0])
    await dockerRun()
    await executorOne()
    if (useSwarm) await swarmJob(1)

    console.log(`   latency: ${iterations} jobs one after another on each system, interleaved`)
    const lat = { bidmesh: [] as number[], direct: [] as number[], plain: [] as number[], swarm: [] as number[], executor: [] as number[] }
    const phases: Phases[] = []
    for (let i = 0; i < iterations; i++) {
      const b = await bidmeshOne(agents[i % agents.length])
      if (b.state !== 'succeeded') throw new Error(`bidmesh latency job ended ${b.state}`)
      lat.bidmesh.push(b.ms)
      phases.push(b.phases)
      lat.direct.push(round(await dockerRun(), 1))
      lat.plain.push(round(await dockerRun({ plain: true }), 1))
      lat.executor.push(round(await executorOne(), 1))
      if (useSwarm) {
        const s = await swarmJob(1)
        if (s.failed > 0) throw new Error('swarm latency task failed')
        lat.swarm.push(s.ms)
      }
      process.stdout.write(`\r   ${i + 1}/${iterations}`)
    }
    process.stdout.write('\n')

    console.log(`   throughput: ${batch} jobs at once`)
    const bt = await bidmeshBatch(agents, batch)
    await sleep(1000)
    const direct: Record<string, number> = {}
    for (const p of [2, 4]) { direct[`p${p}`] = round(await dockerRunBatch(batch, p), 0); await sleep(1000) }
    let sw: { ms: number, failed: number } | undefined
    if (useSwarm) sw = await swarmJob(batch)
    const loadAvg = loadAverage()

    const bl = summarize(lat.bidmesh)
    const dl = summarize(lat.direct)
    const pl = summarize(lat.plain)
    const el = summarize(lat.executor)
    const sl = useSwarm ? summarize(lat.swarm) : null
    const floor = Math.min(...Object.values(direct))
    const medianPhases = Object.fromEntries((Object.keys(phases[0]) as Array<keyof Phases>).map(k => [k, percentile(phases.map(p => p[k]).filter(Number.isFinite), 50)])) as unknown as Phases
    const result: E2eResult = {
      agents: AGENTS,
      image: IMAGE,
      swarm: swarmNote,
      latency: { iterations, bidmeshMs: bl, directMs: dl, plainDirectMs: pl, swarmMs: sl, vsDirect: ratio(bl.p50, dl.p50), vsSwarm: sl !== null ? ratio(bl.p50, sl.p50) : NaN, bidmeshPhasesMedianMs: medianPhases, executorAloneMs: el },
      throughput: {
        jobs: batch,
        bidmeshMs: bt.ms,
        bidmeshFailed: bt.failed,
        bidmeshNodes: bt.nodes,
        directMsByParallelism: direct,
        directFloorMs: floor,
        swarmMs: sw?.ms ?? null,
        swarmFailed: sw?.failed ?? null,
        vsDirect: ratio(bt.ms, floor),
        vsSwarm: sw !== undefined ? ratio(bt.ms, sw.ms) : NaN
      },
      targets: E2E_TARGETS,
      met: {
        latencyVsDirect: ratio(bl.p50, dl.p50) <= E2E_TARGETS.latencyVsDirect,
        latencyVsSwarm: sl !== null ? ratio(bl.p50, sl.p50) <= E2E_TARGETS.latencyVsSwarm : undefined,
        throughputVsDirect: ratio(bt.ms, floor) <= E2E_TARGETS.throughputVsDirect,
        throughputVsSwarm: sw !== undefined ? bt.ms <= sw.ms : undefined
      },
      loadAvg
    }
    const t = result.throughput
    console.log(`\n   latency, submit → exit recorded, ms (${iterations} each; ratios on medians)`)
    console.log(table([
      ['   system', 'p50', 'mean', 'p90', 'min', 'max'],
      ['   bidmesh (POST → owner\'s job:succeeded)', bl.p50, bl.mean, bl.p90, bl.min, bl.max],
      ['   docker run, same isolation (command wall time)', dl.p50, dl.mean, dl.p90, dl.min, dl.max],
      ['   (info) docker run, no isolation flags', pl.p50, pl.mean, pl.p90, pl.min, pl.max],
      ...(sl !== null ? [['   swarm replicated-job (create → task complete)', sl.p50, sl.mean, sl.p90, sl.min, sl.max]] : []),
      ['   (info) agent\'s Docker executor alone, in-process', el.p50, el.mean, el.p90, el.min, el.max]
    ]))
    console.log(`   bidmesh phases (medians, ms): ${Object.entries(medianPhases).map(([k, v]) => `${k} ${String(v)}`).join(', ')}`)
    console.log(`   bidmesh / docker run = ${result.latency.vsDirect}× (target ≤ ${E2E_TARGETS.latencyVsDirect}×: ${verdict(result.met.latencyVsDirect)}); ` +
      `bidmesh / swarm = ${result.latency.vsSwarm}× (target ≤ ${E2E_TARGETS.latencyVsSwarm}×: ${verdict(result.met.latencyVsSwarm)})`)
    console.log(`\n   throughput, ${batch} jobs at once → all terminal, ms`)
    console.log(table([
      ['   system', 'ms', 'jobs/s'],
      [`   bidmesh (spread ${Object.entries(t.bidmeshNodes).map(([k, v]) => `${k}:${v}`).join(' ')}; failed ${t.bidmeshFailed})`, t.bidmeshMs, round(batch / t.bidmeshMs * 1000, 1)],
      ...Object.entries(direct).map(([k, v]) => [`   docker run, parallelism ${k.slice(1)}`, v, round(batch / v * 1000, 1)]),
      ...(t.swarmMs !== null ? [[`   swarm replicated-job (max-concurrent ${batch}; failed ${String(t.swarmFailed)})`, t.swarmMs, round(batch / t.swarmMs * 1000, 1)]] : [])
    ]))
    console.log(`   bidmesh / direct floor = ${t.vsDirect}× (target ≤ ${E2E_TARGETS.throughputVsDirect}×: ${verdict(result.met.throughputVsDirect)}); ` +
      `bidmesh / swarm = ${t.vsSwarm}× (target ≤ 1×: ${verdict(result.met.throughputVsSwarm)})`)
    console.log(jsonLine({ benchmark: 'e2e', quick: o.quick, ...result }))
    return result
  } finally {
    undoAgents()
    await stopCluster(agents)
    const left = await removeAgentContainers([...peerIds, EXECUTOR_NODE])
    if (left > 0) console.log(`   removed ${left} container(s) the agents left behind`)
    await removeRunContainers()
    if (typeof swarm !== 'string') {
      await removeRunServices()
      // Leave the swarm now (only if this run made it), not at the very end: an idle
      // swarm manager is load the next benchmark should not carry.
      await swarm.release()
    }
  }
}
