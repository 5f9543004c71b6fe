// The run's report: a human summary, then one JSON object as the last line. Every figure
// but wallMs comes from virtual time and counts, so the same seed gives the same JSON.
import type { CentralResult } from './central.ts'
import type { SimResult } from './sim.ts'
import type { Workload } from './workload.ts'

export interface Report {
  scenario: string
  seed: number
  agents: number
  jobs: number
  viewSize: number
  /** direct messages (requests and responses) for bids, awards, releases and attempt
   *  updates, lease renewals included, per job; capacity gossip excluded */
  messagesPerJob: number
  /** encoded capacity-advert bytes received per agent per virtual second */
  capacityBytesPerAgentPerSec: number
  advertsReceivedPerAgentPerSec: number
  /** publish → the first award a winner took (acknowledged), virtual ms */
  schedulingDelayP50Ms: number
  schedulingDelayP99Ms: number
  /** CPU·time of runs / CPU·time of the agents up between first arrival and last finish */
  utilization: number
  /** first arrival → last job finished, virtual seconds */
  makespan: number
  centralMakespan: number | null
  makespanVsCentralBestFit: number | null
  centralUtilization: number | null
  lostJobs: number
  duplicateResults: number
  succeeded: number
  failed: number
  duplicateRuns: number
  lostAttempts: number
  reschedules: number
  messages: number
  messagesByType: Record<string, number>
  localRequests: number
  stoppedBy: string
  virtualSeconds: number
  events: number
  wallMs: number
}

/** Nearest-rank percentile of an ascending array; 0 when empty. */
export function percentile (sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0
  const rank = Math.ceil(p / 100 * sorted.length)
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]
}

const round = (x: number, digits = 3): number => {
  const f = 10 ** digits
  return Math.round(x * f) / f
}

export function buildReport (args: { workload: Workload, seed: number, viewSize: number, sim: SimResult, central?: CentralResult, wallMs: number }): Report {
  const { sim, central } = args
  const delays = [...sim.schedulingDelaysMs].sort((a, b) => a - b)
  const makespanMs = Math.max(0, sim.lastFinishMs - sim.firstArrivalMs)
  const perAgentSec = sim.agentSeconds > 0 ? 1 / sim.agentSeconds : 0
  return {
    scenario: args.workload.name,
    seed: args.seed,
    agents: sim.agents,
    jobs: sim.jobs,
    viewSize: args.viewSize,
    messagesPerJob: round(sim.jobs > 0 ? sim.messages / sim.jobs : 0, 2),
    capacityBytesPerAgentPerSec: round(sim.gossipBytesReceived * perAgentSec, 1),
    advertsReceivedPerAgentPerSec: round(sim.advertsDelivered * perAgentSec, 2),
    schedulingDelayP50Ms: round(percentile(delays, 50), 1),
    schedulingDelayP99Ms: round(percentile(delays, 99), 1),
    utilization: round(sim.capacityMilliMs > 0 ? sim.busyMilliMs / sim.capacityMilliMs : 0),
    makespan: round(makespanMs / 1000),
    centralMakespan: central !== undefined ? round(central.makespanMs / 1000) : null,
    makespanVsCentralBestFit: central !== undefined && central.makespanMs > 0 ? round(makespanMs / central.makespanMs, 4) : null,
    centralUtilization: central !== undefined ? round(central.utilization) : null,
    lostJobs: sim.lostJobs,
    duplicateResults: sim.duplicateResults,
    succeeded: sim.succeeded,
    failed: sim.failed,
    duplicateRuns: sim.duplicateRuns,
    lostAttempts: sim.lostAttempts,
    reschedules: sim.reschedules,
    messages: sim.messages,
    messagesByType: sim.messagesByType,
    localRequests: sim.localRequests,
    stoppedBy: sim.stoppedBy,
    virtualSeconds: round(sim.virtualMs / 1000),
    events: sim.events,
    wallMs: Math.round(args.wallMs)
  }
}

export function formatSummary (r: Report, workload: Workload): string {
  const lines = [
    `bidmesh simulation: ${r.scenario}, ${r.agents} agents, ${r.jobs} jobs, seed ${r.seed}, view ${r.viewSize === 0 ? 'full' : r.viewSize} peers`,
    `  workload      ${workload.description}`,
    `  outcome       ${r.succeeded} succeeded, ${r.failed} failed, ${r.lostJobs} lost, ${r.duplicateResults} duplicate results` +
      ` (${r.lostAttempts} attempts lost, ${r.reschedules} reschedules, ${r.duplicateRuns} jobs ran to exit 0 more than once)`,
    `  makespan      ${r.makespan.toFixed(1)} s` +
      (r.centralMakespan !== null ? ` vs ${r.centralMakespan.toFixed(1)} s central best-fit (×${r.makespanVsCentralBestFit?.toFixed(3)})` : ''),
    `  utilization   ${(r.utilization * 100).toFixed(1)}%` + (r.centralUtilization !== null ? ` (central ${(r.centralUtilization * 100).toFixed(1)}%)` : ''),
    `  sched. delay  p50 ${r.schedulingDelayP50Ms} ms, p99 ${r.schedulingDelayP99Ms} ms (publish → award acknowledged)`,
    `  messages      ${r.messagesPerJob} per job (${r.messages} direct; ${r.localRequests} local calls not counted)`,
    `                ${Object.entries(r.messagesByType).map(([k, v]) => `${k} ${v}`).join(', ')}`,
    `  gossip        ${r.capacityBytesPerAgentPerSec} B/s and ${r.advertsReceivedPerAgentPerSec} adverts/s received per agent`,
    `  run           ${r.virtualSeconds} virtual s, ${r.events} events, stopped: ${r.stoppedBy}, ${r.wallMs} ms wall`
  ]
  return lines.join('\n')
}
