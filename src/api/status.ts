// The job status object the HTTP API returns and the CLI prints. One mapping, so that
// `GET /v1/jobs/:id`, `POST /v1/jobs`, `DELETE /v1/jobs/:id` and `bidmesh status --json`
// all show the same JSON.
import type { JobDetail } from '../agent/agent-api.ts'
import type { AttemptRecord, Explanation, JobEvent, JobReason, JobState } from '../protocol/job.ts'
import { TERMINAL_STATES } from '../protocol/job.ts'
import type { JobSpec } from '../protocol/job-spec.ts'
import { redactSecrets, redactSpec, specSecrets } from '../protocol/redact.ts'

export interface AttemptStatus {
  epoch: number
  node: string
  state: AttemptRecord['state']
  awardedAt: string | null
  startedAt: string | null
  finishedAt: string | null
  exitCode: number | null
  reason: JobReason | null
  error: string | null
}

export interface JobStatus {
  id: string
  name: string | null
  state: JobState
  reason: JobReason | null
  exitCode: number | null
  node: string | null
  owner: string
  publisher: string
  epoch: number
  /** ownership generation: increases when a replica takes the job over */
  term: number
  /** agents holding a replica of the record */
  replicas: string[]
  /** every attempt, oldest first: where it ran, when, and how it ended */
  attempts: AttemptStatus[]
  createdAt: string
  updatedAt: string
  startedAt: string | null
  finishedAt: string | null
  spec: JobSpec
  explanation: Explanation | null
  events: JobEvent[]
}

function iso (ms: number | undefined): string | null {
  // A corrupt or missing timestamp must not turn a status read into a 500 (toISOString
  // throws a RangeError on an invalid date), so anything not finite maps to null.
  if (ms === undefined || !Number.isFinite(ms)) return null
  return new Date(ms).toISOString()
}

/** The attempt the status describes: the one of the current epoch when there is one
 *  (a retry in progress), else the last one made. */
function currentAttempt (attempts: AttemptRecord[], epoch: number): AttemptRecord | undefined {
  return attempts.find(a => a.epoch === epoch) ?? attempts[attempts.length - 1]
}

/** The status of a job, as the API, the CLI (`--json` too) and the dashboard show it. The
 *  values of secret env variables (spec.secretEnv) are replaced by [REDACTED] in the spec,
 *  and removed from every free text (attempt errors, event details) in case one quotes them:
 *  this mapping is the one door through which a job record leaves the agent for a user. */
export function toJobStatus (detail: JobDetail): JobStatus {
  const { job } = detail
  const secrets = specSecrets(job.spec)
  const clean = (text: string): string => secrets.length === 0 ? text : redactSecrets(text, secrets)
  const events = secrets.length === 0
    ? detail.events
    : detail.events.map(e => e.detail === undefined ? e : { ...e, detail: clean(e.detail) })
  const attempt = currentAttempt(job.attempts, job.epoch)
  const last = job.attempts[job.attempts.length - 1]
  const terminal = TERMINAL_STATES.has(job.state)
  return {
    id: job.id,
    name: job.spec.name ?? null,
    state: job.state,
    reason: job.reason ?? null,
    exitCode: job.exitCode ?? null,
    node: job.node ?? null,
    owner: job.owner,
    publisher: job.publisher,
    epoch: job.epoch,
    term: job.term ?? 0,
    replicas: job.replicas ?? [],
    attempts: job.attempts.map(a => ({
      epoch: a.epoch,
      node: a.node,
      state: a.state,
      awardedAt: iso(a.awardedAtMs),
      startedAt: iso(a.startedAtMs),
      finishedAt: iso(a.finishedAtMs),
      exitCode: a.exitCode ?? null,
      reason: a.reason ?? null,
      error: a.error !== undefined ? clean(a.error) : null
    })),
    createdAt: iso(job.createdAtMs) ?? new Date(0).toISOString(),
    updatedAt: iso(job.updatedAtMs) ?? new Date(0).toISOString(),
    startedAt: iso(attempt?.startedAtMs),
    // Only a terminal job is finished: a failed attempt that will be retried has a
    // finishedAtMs too, but the job as a whole has not finished.
    finishedAt: terminal ? iso(last?.finishedAtMs) : null,
    spec: redactSpec(job.spec),
    explanation: job.explanation ?? null,
    events
  }
}
