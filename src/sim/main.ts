// `npm run sim -- --agents N --jobs M --seed S [--scenario NAME] [--trace PATH] …`
// Builds the workload, runs the distributed simulation and the central best-fit baseline on
// it, and prints a summary followed by one JSON line (the last line of stdout).
import { readFileSync } from 'node:fs'
import { performance } from 'node:perf_hooks'
import { Command, InvalidArgumentError, Option } from 'commander'
import { centralBestFit } from './central.ts'
import { PARTIAL_VIEW_DEFAULTS } from './gossip.ts'
import { NETWORK_DEFAULTS } from './network.ts'
import { buildReport, formatSummary, type Report } from './report.ts'
import { SIM_DEFAULTS, type SimConfig, runSimulation } from './sim.ts'
import { SCENARIO_DEFAULTS, SCENARIOS, type ScenarioName, TRACE_DEFAULTS, type Workload, parseTrace, scenarioWorkload, traceWorkload } from './workload.ts'

export interface SimOptions {
  agents: number
  jobs?: number
  seed: number
  scenario: ScenarioName
  trace?: string
  windowStart: number
  windowSeconds: number
  timeScale: number
  maxInstancesPerTask: number
  nodeCpus: number
  load: number
  restartAfterMs: number
  latencyMs: number
  jitterMs: number
  loss: number
  viewSize: number
  viewRefreshMs: number
  heartbeat: boolean
  advertGapMs: number
  failureRate: number
  retries: number
  leaseMs?: number
  partitionAtMs?: number
  partitionMs: number
  partitionFraction: number
  maxVirtualS?: number
  central: boolean
  /** round-trip every message through the real codec (slow; for tests) */
  checkWire?: boolean
  /** false: no lazy views for owners with nothing pending, no batched renewal acks (slower, same run; for tests) */
  batch?: boolean
}

export const DEFAULT_OPTIONS: SimOptions = {
  agents: 100,
  seed: 1,
  scenario: 'steady',
  windowStart: TRACE_DEFAULTS.windowStartS,
  windowSeconds: TRACE_DEFAULTS.windowSeconds,
  timeScale: TRACE_DEFAULTS.timeScale,
  maxInstancesPerTask: TRACE_DEFAULTS.maxInstancesPerTask,
  nodeCpus: TRACE_DEFAULTS.nodeCpus,
  load: SCENARIO_DEFAULTS.load,
  restartAfterMs: SCENARIO_DEFAULTS.restartAfterMs,
  latencyMs: NETWORK_DEFAULTS.latencyMs,
  jitterMs: NETWORK_DEFAULTS.jitterMs,
  loss: NETWORK_DEFAULTS.loss,
  viewSize: PARTIAL_VIEW_DEFAULTS.viewSize,
  viewRefreshMs: PARTIAL_VIEW_DEFAULTS.refreshMs,
  heartbeat: PARTIAL_VIEW_DEFAULTS.heartbeat,
  advertGapMs: PARTIAL_VIEW_DEFAULTS.minGapMs,
  failureRate: SIM_DEFAULTS.failureRate,
  retries: SIM_DEFAULTS.retries,
  partitionMs: 10_000,
  partitionFraction: 0.5,
  central: true
}

export function buildWorkload (o: SimOptions, traceText?: string): Workload {
  if (o.trace !== undefined || traceText !== undefined) {
    const text = traceText ?? readFileSync(o.trace!, 'utf8')
    return traceWorkload(parseTrace(text), {
      agents: o.agents,
      windowStartS: o.windowStart,
      windowSeconds: o.windowSeconds,
      timeScale: o.timeScale,
      maxInstancesPerTask: o.maxInstancesPerTask,
      maxJobs: o.jobs ?? Infinity,
      nodeCpus: o.nodeCpus
    })
  }
  return scenarioWorkload(o.scenario, { agents: o.agents, jobs: o.jobs ?? 10 * o.agents, seed: o.seed, load: o.load, restartAfterMs: o.restartAfterMs })
}

export function simConfig (o: SimOptions): SimConfig {
  return {
    seed: o.seed,
    network: { ...NETWORK_DEFAULTS, latencyMs: o.latencyMs, jitterMs: o.jitterMs, loss: o.loss, ...(o.checkWire === true ? { checkWire: true } : {}) },
    views: { viewSize: o.viewSize, refreshMs: o.viewRefreshMs, rotate: Math.max(1, Math.ceil(o.viewSize / 8)), heartbeat: o.heartbeat, minGapMs: o.advertGapMs },
    failureRate: o.failureRate,
    retries: o.retries,
    startDelayMs: SIM_DEFAULTS.startDelayMs,
    ...(o.leaseMs !== undefined ? { leaseMs: o.leaseMs } : {}),
    ...(o.maxVirtualS !== undefined ? { maxVirtualMs: o.maxVirtualS * 1000 } : {}),
    ...(o.batch === false ? { batchQuietSteps: false } : {}),
    ...(o.partitionAtMs !== undefined ? { partition: { atMs: o.partitionAtMs, durationMs: o.partitionMs, fraction: o.partitionFraction } } : {})
  }
}

/** One whole run: workload, simulation, baseline, report. */
export function runOnce (o: SimOptions, traceText?: string): { report: Report, workload: Workload } {
  const started = performance.now()
  const workload = buildWorkload(o, traceText)
  const sim = runSimulation(workload, simConfig(o))
  const central = o.central ? centralBestFit(workload) : undefined
  const report = buildReport({ workload, seed: o.seed, viewSize: o.viewSize, sim, ...(central !== undefined ? { central } : {}), wallMs: performance.now() - started })
  return { report, workload }
}

const int = (name: string) => (v: string): number => {
  const n = Number(v)
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`${name} must be a non-negative integer`)
  return n
}
const num = (name: string, lo = -Infinity, hi = Infinity) => (v: string): number => {
  const n = Number(v)
  if (!Number.isFinite(n) || n < lo || n > hi) throw new InvalidArgumentError(`${name} must be a number in [${lo}, ${hi}]`)
  return n
}

export function parseArgs (argv: string[]): SimOptions {
  const d = DEFAULT_OPTIONS
  const program = new Command('sim')
    .description('Simulate a bidmesh mesh: the real owner and bidder machines over a virtual clock and network.')
    .option('--agents <n>', 'agents (nodes) in the mesh', int('--agents'), d.agents)
    .option('--jobs <m>', 'jobs to run (scenarios: default 10 × agents; trace: cap on instances replayed)', int('--jobs'))
    .option('--seed <s>', 'PRNG seed: the same seed gives the same run', int('--seed'), d.seed)
    .addOption(new Option('--scenario <name>', 'synthetic workload').choices(SCENARIOS).default(d.scenario))
    .option('--trace <path>', 'replay the Alibaba 2018 batch_task CSV instead of a scenario')
    .option('--window-start <s>', 'trace: first task_create_time replayed, s', num('--window-start'), d.windowStart)
    .option('--window-seconds <s>', 'trace: length of the replayed window, s', num('--window-seconds', 0), d.windowSeconds)
    .option('--time-scale <f>', 'trace: divide arrivals and durations by this', num('--time-scale', 1e-6), d.timeScale)
    .option('--max-instances-per-task <n>', 'trace: instances replayed per task', int('--max-instances-per-task'), d.maxInstancesPerTask)
    .option('--node-cpus <n>', 'trace: cores per simulated node (memory scales with it: cores/96 × 512 GiB)', int('--node-cpus'), d.nodeCpus)
    .option('--load <f>', 'scenarios: offered CPU load, fraction of the mesh', num('--load', 0.01, 10), d.load)
    .option('--restart-after-ms <ms>', 'kill10: killed agents restart after this long; 0 = never', num('--restart-after-ms', 0), d.restartAfterMs)
    .option('--latency-ms <ms>', 'one-way network latency, base', num('--latency-ms', 0), d.latencyMs)
    .option('--jitter-ms <ms>', 'one-way network latency, uniform jitter added to the base', num('--jitter-ms', 0), d.jitterMs)
    .option('--loss <p>', 'probability a message is lost', num('--loss', 0, 1), d.loss)
    .option('--view-size <k>', 'peers whose capacity adverts each agent hears; 0 = all', int('--view-size'), d.viewSize)
    .option('--view-refresh-ms <ms>', 'how often an agent refreshes its gossip sample', num('--view-refresh-ms', 1), d.viewRefreshMs)
    .option('--no-heartbeat', 'partial views: send every periodic advert, as the agent does, not only as a heartbeat')
    .option('--advert-gap-ms <ms>', 'partial views: an advert showing less room waits this long after the previous one', num('--advert-gap-ms', 0), d.advertGapMs)
    .option('--failure-rate <p>', 'probability a run exits 1', num('--failure-rate', 0, 1), d.failureRate)
    .option('--retries <n>', 'spec.retries of every job', int('--retries'), d.retries)
    .option('--lease-ms <ms>', 'attempt lease (default: the agent\'s)', num('--lease-ms', 1))
    .option('--partition-at-ms <ms>', 'cut the mesh in two at this virtual time', num('--partition-at-ms', 0))
    .option('--partition-ms <ms>', 'how long the partition lasts', num('--partition-ms', 0), d.partitionMs)
    .option('--partition-fraction <f>', 'share of agents on the cut-off side', num('--partition-fraction', 0, 1), d.partitionFraction)
    .option('--max-virtual-s <s>', 'stop at this virtual time even if jobs remain', num('--max-virtual-s', 0))
    .option('--no-central', 'skip the central best-fit baseline')
    .option('--check-wire', 'round-trip every message through the real codec (slow)')
    .option('--no-batch', 'step every advert delivery and renewal ack at its arrival: no lazy views (slower, same run)')
    .exitOverride()
  program.parse(argv, { from: 'user' })
  const o = program.opts()
  return { ...d, ...o } as SimOptions
}

function main (): void {
  const o = parseArgs(process.argv.slice(2).filter(a => a !== '--'))
  const { report, workload } = runOnce(o)
  process.stdout.write(formatSummary(report, workload) + '\n')
  process.stdout.write(JSON.stringify(report) + '\n')
}

if (import.meta.url === `file://${process.argv[1]}`) {
  try {
    main()
  } catch (err) {
    if ((err as { code?: string }).code?.startsWith('commander.') === true) process.exit((err as { exitCode?: number }).exitCode ?? 1)
    throw err
  }
}
