// The directory: the summaries of the mesh's jobs this agent has heard of (its own and those
// other owners gossip), for listing jobs from any node and finding a job's owner. Bounded:
// every agent hears of every job, so a long-lived mesh would otherwise fill every agent's
// memory with its whole history (~1.5 KB a summary, measured).
import { type JobSummary, TERMINAL_STATES } from '../protocol/job.ts'

export interface Directory {
  get: (id: string) => JobSummary | undefined
  /** Records the newest summary of a job: it becomes the most recently changed. */
  set: (summary: JobSummary) => void
  values: () => IterableIterator<JobSummary>
  readonly size: number
}

export interface DirectoryInit {
  /** summaries kept; see AGENT_DEFAULTS.directoryMaxSummaries */
  maxSummaries: number
  /** called with every summary set, after it is recorded */
  onSet?: (summary: JobSummary) => void
}

export function createDirectory (init: DirectoryInit): Directory {
  // Each in order of last change, oldest first. Two maps, so that the finished job to forget
  // is always the first of one: O(1) however many live jobs there are.
  const live = new Map<string, JobSummary>()
  const finished = new Map<string, JobSummary>()
  return {
    get: id => live.get(id) ?? finished.get(id),
    set (summary) {
      live.delete(summary.id)
      finished.delete(summary.id)
      ;(TERMINAL_STATES.has(summary.state) ? finished : live).set(summary.id, summary)
      trim(live, finished, init.maxSummaries)
      init.onSet?.(summary)
    },
    * values () {
      yield * live.values()
      yield * finished.values()
    },
    get size () { return live.size + finished.size }
  }
}

/** Forgets the least recently changed finished jobs first: a live job stays listed however
 *  long it has been running. Only live jobs alone past the bound lose the least recently
 *  changed of them; their owners still answer for them. */
function trim (live: Map<string, JobSummary>, finished: Map<string, JobSummary>, max: number): void {
  for (const from of [finished, live]) {
    while (live.size + finished.size > max && from.size > 0) from.delete(from.keys().next().value!)
  }
}
