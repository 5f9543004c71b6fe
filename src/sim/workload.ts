// Workloads: the nodes, the jobs (arrival, duration, resources, constraints) and node
// events (joins, graceful leaves, kills, restarts) of one run. Synthetic scenarios are drawn
// from a seeded PRNG; a trace replay reads the Alibaba 2018 batch_task table. The same
// workload object feeds the distributed simulation and the central baseline.
import { Rng } from './rng.ts'

const MiB = 1024 ** 2
const GiB = 1024 ** 3

export interface NodeSpec {
  cpuMilli: number
  memoryBytes: number
  labels: Record<string, string>
}

export interface SimJob {
  id: string
  /** virtual time the job is published, ms */
  arrivalMs: number
  /** how long one attempt runs before it exits 0, ms */
  durationMs: number
  cpuMilli: number
  memoryBytes: number
  constraints: Record<string, string>
}

export type NodeEventKind =
  | 'join' // a node absent at the start comes up
  | 'leave' // graceful: drain, then go once idle
  | 'kill' // crash: running work is lost, nothing is said
  | 'restart' // a killed node's process comes back and adopts the jobs it owned

export interface NodeEvent { atMs: number, kind: NodeEventKind, node: number }

export interface Workload {
  name: string
  /** one line: what the workload is, for the report */
  description: string
  nodes: NodeSpec[]
  /** nodes up at time 0 (the others join through a 'join' event) */
  initiallyUp: boolean[]
  /** by arrival time */
  jobs: SimJob[]
  /** by time */
  nodeEvents: NodeEvent[]
}

export const SCENARIOS = ['steady', 'burst', 'mixed', 'churn', 'kill10'] as const
export type ScenarioName = typeof SCENARIOS[number]

export interface ScenarioOptions {
  agents: number
  jobs: number
  seed: number
  /** kill10: a killed agent's process restarts after this long; 0 = never */
  restartAfterMs?: number
  /** offered CPU load as a fraction of the mesh's CPU (steady, mixed, churn, kill10) */
  load?: number
}

export const SCENARIO_DEFAULTS = { load: 0.6, restartAfterMs: 5_000, burstSpreadMs: 2000, churnFraction: 0.1, killFraction: 0.1 } as const

/** The standard node of the synthetic scenarios. */
const STANDARD_NODE = { cpuMilli: 8000, memoryBytes: 32 * GiB }
const ZONES = ['a', 'b', 'c'] as const

type Shape = Omit<SimJob, 'id' | 'arrivalMs'>

/** Small-to-medium CPU jobs of 3–15 s: 0.5, 1 or 2 cores with 1–3 GiB per core. Short, so that
 *  a 10,000-agent run covers little virtual time (its cost is agents × virtual seconds). */
function standardShape (r: Rng): Shape {
  const cpuMilli = r.weighted([[500, 0.5], [1000, 0.35], [2000, 0.15]] as const)
  return {
    cpuMilli,
    memoryBytes: Math.round(cpuMilli / 1000 * r.uniform(1, 3) * GiB / MiB) * MiB,
    durationMs: Math.round(r.uniform(3_000, 15_000)),
    constraints: {}
  }
}

/** Heterogeneous: small, CPU-heavy, memory-heavy and label-constrained jobs. */
function mixedShape (r: Rng): Shape {
  const kind = r.weighted([['small', 0.5], ['cpu', 0.2], ['mem', 0.1], ['zone', 0.1], ['ssd', 0.1]] as const)
  const mib = (lo: number, hi: number): number => Math.round(r.uniform(lo, hi) / MiB) * MiB
  switch (kind) {
    case 'cpu': {
      const cpuMilli = r.pick([4000, 8000, 16000])
      return { cpuMilli, memoryBytes: mib(cpuMilli / 1000 * GiB, cpuMilli / 1000 * 2 * GiB), durationMs: Math.round(r.uniform(10_000, 30_000)), constraints: {} }
    }
    case 'mem':
      return { cpuMilli: r.pick([1000, 2000]), memoryBytes: mib(48 * GiB, 160 * GiB), durationMs: Math.round(r.uniform(5_000, 20_000)), constraints: {} }
    case 'zone':
      return { cpuMilli: r.pick([250, 500, 1000]), memoryBytes: mib(256 * MiB, 2 * GiB), durationMs: Math.round(r.uniform(2_000, 10_000)), constraints: { zone: r.pick(ZONES) } }
    case 'ssd':
      return { cpuMilli: r.pick([500, 1000, 2000]), memoryBytes: mib(1 * GiB, 4 * GiB), durationMs: Math.round(r.uniform(3_000, 15_000)), constraints: { disk: 'ssd' } }
    default:
      return { cpuMilli: r.pick([250, 500, 1000]), memoryBytes: mib(256 * MiB, 2 * GiB), durationMs: Math.round(r.uniform(2_000, 10_000)), constraints: {} }
  }
}

function standardNodes (n: number): NodeSpec[] {
  return Array.from({ length: n }, (_, i) => ({ ...STANDARD_NODE, labels: { zone: ZONES[i % 3] } }))
}

/** 60% 8-core/32 GiB, 25% 32-core/128 GiB, 15% 16-core/256 GiB; zones round-robin; one in five with an SSD. */
function mixedNodes (n: number, r: Rng): NodeSpec[] {
  return Array.from({ length: n }, (_, i) => {
    const kind = r.weighted([['std', 0.6], ['big', 0.25], ['highmem', 0.15]] as const)
    const labels: Record<string, string> = { zone: ZONES[i % 3], tier: kind }
    if (r.chance(0.2)) labels.disk = 'ssd'
    if (kind === 'big') return { cpuMilli: 32_000, memoryBytes: 128 * GiB, labels }
    if (kind === 'highmem') return { cpuMilli: 16_000, memoryBytes: 256 * GiB, labels }
    return { ...STANDARD_NODE, labels }
  })
}

/** Poisson arrivals whose rate offers `load` × the mesh's CPU, given the jobs' own demand. */
function poissonArrivals (shapes: Shape[], nodes: NodeSpec[], load: number, r: Rng): number[] {
  let coreMs = 0
  for (const s of shapes) coreMs += s.cpuMilli * s.durationMs
  let meshMilli = 0
  for (const n of nodes) meshMilli += n.cpuMilli
  // span over which the jobs' CPU·time equals load × the mesh's CPU·time
  const spanMs = coreMs / (load * meshMilli)
  const meanGapMs = spanMs / Math.max(1, shapes.length)
  const out: number[] = []
  let t = 0
  for (let i = 0; i < shapes.length; i++) { out.push(Math.round(t)); t += r.exponential(meanGapMs) }
  return out
}

function jobId (i: number): string { return `j${String(i).padStart(7, '0')}` }

export function scenarioWorkload (name: ScenarioName, o: ScenarioOptions): Workload {
  const r = new Rng(o.seed, `workload:${name}`)
  const load = o.load ?? SCENARIO_DEFAULTS.load
  const nodes = name === 'mixed' ? mixedNodes(o.agents, r) : standardNodes(o.agents)
  const shapes = Array.from({ length: o.jobs }, () => name === 'mixed' ? mixedShape(r) : standardShape(r))
  const arrivals = name === 'burst'
    ? shapes.map(() => Math.round(r.uniform(0, SCENARIO_DEFAULTS.burstSpreadMs))).sort((a, b) => a - b)
    : poissonArrivals(shapes, nodes, load, r)
  const jobs = shapes.map((s, i) => ({ id: jobId(i), arrivalMs: arrivals[i], ...s }))
  const lastArrivalMs = arrivals.length > 0 ? arrivals[arrivals.length - 1] : 0
  const initiallyUp = nodes.map(() => true)
  const nodeEvents: NodeEvent[] = []
  let description: string
  const order = r.shuffle(Array.from({ length: o.agents }, (_, i) => i))
  switch (name) {
    case 'steady':
      description = `Poisson arrivals at ${Math.round(load * 100)}% CPU load; 0.5–2 cores, 1–3 GiB/core, 3–15 s; 8-core/32 GiB nodes`
      break
    case 'burst':
      description = `all jobs published within ${SCENARIO_DEFAULTS.burstSpreadMs} ms; 0.5–2 cores, 3–15 s; 8-core/32 GiB nodes`
      break
    case 'mixed':
      description = `Poisson at ${Math.round(load * 100)}% CPU load; small, CPU-heavy (≤16 cores), memory-heavy (48–160 GiB), zone- and disk=ssd-constrained jobs on 8/16/32-core nodes`
      break
    case 'churn': {
      // A tenth of the agents join during the arrivals; another tenth leave (drain, then go).
      const k = Math.floor(o.agents * SCENARIO_DEFAULTS.churnFraction)
      for (let i = 0; i < k; i++) {
        const node = order[i]
        initiallyUp[node] = false
        nodeEvents.push({ atMs: Math.round(r.uniform(0, lastArrivalMs)), kind: 'join', node })
      }
      for (let i = k; i < 2 * k; i++) {
        nodeEvents.push({ atMs: Math.round(r.uniform(0.2, 0.8) * lastArrivalMs), kind: 'leave', node: order[i] })
      }
      description = `steady workload; ${k} agents join during the run and ${k} leave gracefully`
      break
    }
    case 'kill10': {
      // A tenth of the agents crash at once, half-way through the arrivals.
      const k = Math.max(1, Math.floor(o.agents * SCENARIO_DEFAULTS.killFraction))
      const killAtMs = Math.round(lastArrivalMs / 2)
      const restartAfterMs = o.restartAfterMs ?? SCENARIO_DEFAULTS.restartAfterMs
      for (let i = 0; i < k; i++) {
        nodeEvents.push({ atMs: killAtMs, kind: 'kill', node: order[i] })
        if (restartAfterMs > 0) nodeEvents.push({ atMs: killAtMs + restartAfterMs, kind: 'restart', node: order[i] })
      }
      description = `steady workload; ${k} agents (10%) crash at ${(killAtMs / 1000).toFixed(1)} s` +
        (restartAfterMs > 0 ? ` and restart ${restartAfterMs / 1000} s later` : ' and never return')
      break
    }
  }
  nodeEvents.sort((a, b) => a.atMs - b.atMs || a.node - b.node)
  return { name, description, nodes, initiallyUp, jobs, nodeEvents }
}

// ---- the Alibaba 2018 batch_task trace -------------------------------------------------

/** One row of the trace (see /work/shared/traces/README.md). NaN where a field is empty. */
export interface TraceTask {
  createS: number
  endS: number
  jobId: number
  taskId: number
  instances: number
  status: string
  /** hundredths of a core per instance */
  cpus: number
  /** memory per instance as a fraction of one 96-core machine's memory */
  memoryNormalized: number
}

/** The Alibaba machine the trace's normalized memory refers to. */
export const ALIBABA_NODE = { cores: 96, memoryBytes: 512 * GiB } as const

const num = (s: string | undefined): number => {
  const t = s?.trim() ?? ''
  return t === '' ? NaN : Number(t)
}

/** Parses one CSV line; undefined for the header, blank or malformed lines. */
export function parseTraceLine (line: string): TraceTask | undefined {
  const f = line.split(',')
  if (f.length < 8) return undefined
  const createS = num(f[0])
  if (Number.isNaN(createS)) return undefined // the header, or garbage
  return {
    createS,
    endS: num(f[1]),
    jobId: num(f[2]),
    taskId: num(f[3]),
    instances: num(f[4]),
    status: f[5].trim(),
    cpus: num(f[6]),
    memoryNormalized: num(f[7])
  }
}

export function parseTrace (text: string): TraceTask[] {
  const out: TraceTask[] = []
  for (const line of text.split('\n')) {
    const t = parseTraceLine(line)
    if (t !== undefined) out.push(t)
  }
  return out
}

/** Why a row was not replayed: not Terminated, a field missing, or end before create. */
export function usableTask (t: TraceTask): boolean {
  return t.status === 'Terminated' &&
    Number.isFinite(t.createS) && Number.isFinite(t.endS) && t.endS >= t.createS &&
    Number.isFinite(t.instances) && t.instances >= 1 &&
    Number.isFinite(t.cpus) && t.cpus > 0 &&
    Number.isFinite(t.memoryNormalized) && t.memoryNormalized > 0
}

export interface TraceOptions {
  agents: number
  /** replay tasks created in [windowStartS, windowStartS + windowSeconds) */
  windowStartS: number
  windowSeconds: number
  /** arrivals and durations are divided by this */
  timeScale: number
  maxInstancesPerTask: number
  /** at most this many jobs (instances), earliest first */
  maxJobs: number
  /** cores of a simulated node; its memory keeps the Alibaba machine's memory per core */
  nodeCpus: number
}

/** 12 h into the trace, one hour, ≤ 100 instances per task, time ÷ 200: about 40% of a
 *  1,000-agent mesh's CPU, with tasks of up to ~2 h (38 s here). See docs/benchmarks.md. */
export const TRACE_DEFAULTS = { windowStartS: 43_200, windowSeconds: 3600, timeScale: 200, maxInstancesPerTask: 100, nodeCpus: 16 } as const

/**
 * The mapping: one instance = one job. Arrival = (task_create_time − windowStart) / timeScale;
 * duration = (task_end_time − task_create_time) / timeScale; CPU = cpus / 100 cores;
 * memory = normalized × 512 GiB (the memory of the 96-core Alibaba machine). A simulated node
 * has nodeCpus cores and nodeCpus / 96 × 512 GiB, so jobs keep the size they had relative to
 * an Alibaba machine's per-core share. Tasks whose status is not Terminated, or with a field
 * missing, are skipped.
 */
export function traceWorkload (tasks: TraceTask[], o: TraceOptions): Workload {
  const lo = o.windowStartS
  const hi = o.windowStartS + o.windowSeconds
  const chosen = tasks.filter(t => usableTask(t) && t.createS >= lo && t.createS < hi)
  chosen.sort((a, b) => a.createS - b.createS || a.jobId - b.jobId || a.taskId - b.taskId)
  const jobs: SimJob[] = []
  outer: for (const t of chosen) {
    const n = Math.min(t.instances, o.maxInstancesPerTask)
    const arrivalMs = Math.round((t.createS - lo) * 1000 / o.timeScale)
    const durationMs = Math.round((t.endS - t.createS) * 1000 / o.timeScale)
    const cpuMilli = Math.round(t.cpus * 10)
    const memoryBytes = Math.max(MiB, Math.round(t.memoryNormalized * ALIBABA_NODE.memoryBytes))
    for (let i = 0; i < n; i++) {
      if (jobs.length >= o.maxJobs) break outer
      jobs.push({ id: jobId(jobs.length), arrivalMs, durationMs, cpuMilli, memoryBytes, constraints: {} })
    }
  }
  const node: NodeSpec = {
    cpuMilli: o.nodeCpus * 1000,
    memoryBytes: Math.round(o.nodeCpus / ALIBABA_NODE.cores * ALIBABA_NODE.memoryBytes),
    labels: {}
  }
  return {
    name: 'trace',
    description: `Alibaba 2018 batch_task, create time in [${lo}, ${hi}) s, ≤${o.maxInstancesPerTask} instances/task, time ÷${o.timeScale}, ` +
      `${o.nodeCpus}-core/${(node.memoryBytes / GiB).toFixed(1)} GiB nodes (memory = normalized × 512 GiB)`,
    nodes: Array.from({ length: o.agents }, () => ({ ...node, labels: {} })),
    initiallyUp: Array.from({ length: o.agents }, () => true),
    jobs,
    nodeEvents: []
  }
}
