// The job spec: one zod schema gives the TypeScript type, validation with the failing
// field named, and the JSON Schema used for docs and the OpenAPI description.
import { z } from 'zod'
import { parseDurationMs, parseSize } from './units.ts'
import { JOB_DEFAULTS, JOB_LIMITS } from './limits.ts'

const size = z.union([z.string().max(32), z.number().int().nonnegative()])
  .refine(v => parseSize(v) !== undefined, { message: 'must be a size such as 256m, 1g or a byte count' })
const duration = z.union([z.string().max(32), z.number().nonnegative()])
  .refine(v => parseDurationMs(v) !== undefined, { message: 'must be a duration such as 30s, 5m or 1h' })

const envName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be a valid environment variable name').max(256)
const labelKey = z.string().min(1).max(63).regex(/^[A-Za-z0-9][A-Za-z0-9._/-]*$/, 'must be letters, digits, . _ / -')
const labelValue = z.string().max(63).regex(/^[A-Za-z0-9._/-]*$/, 'must be letters, digits, . _ / -')

export const JobSpecInputSchema = z.object({
  image: z.string().min(1).max(512).regex(/^[^\s]+$/, 'must not contain spaces')
    .describe('Container image, e.g. `bidmesh/busybox:latest`. Pulled when missing and a registry is reachable.'),
  name: z.string().max(128).optional().describe('A human name; not unique.'),
  command: z.union([z.string().max(65_536), z.array(z.string().max(65_536)).max(1024)]).optional()
    .describe('Command to run. A string runs through `/bin/sh -c`; an array runs as is.'),
  env: z.record(envName, z.string().max(32_768)).optional()
    .describe('Environment variables for the container.'),
  secretEnv: z.array(envName).max(JOB_LIMITS.maxSecretEnv).optional()
    .describe('Names of `env` keys whose values are secret; each must be a key of `env`. The container gets them as usual, and they travel only over the encrypted direct streams to the agents that run or replicate the job. Status (API, CLI, dashboard) shows `[REDACTED]`, and events, error texts, agent logs and gossip never carry them. The job\'s own output is not filtered: a job that prints a secret shows it in its logs.'),
  resources: z.object({
    cpus: z.number().positive().max(JOB_LIMITS.maxCpus).optional().describe(`CPU cores (fractional allowed). Default ${JOB_DEFAULTS.cpus}.`),
    memory: size.optional().describe(`Memory limit; also the swap limit (no swap). Default ${JOB_DEFAULTS.memory}.`),
    pids: z.number().int().min(8).max(JOB_LIMITS.maxPids).optional().describe(`Process limit. Default ${JOB_DEFAULTS.pids}.`)
  }).strict().optional(),
  timeout: duration.optional().describe(`Wall-clock limit of one attempt; past it the job is killed with reason \`timeout\`. Default ${JOB_DEFAULTS.timeout}.`),
  retries: z.number().int().min(0).max(JOB_LIMITS.maxRetries).optional().describe('Extra attempts after a failed one (exit code ≠ 0, oom, timeout, lost node). Default 0.'),
  constraints: z.record(labelKey, labelValue).optional().describe('Node labels the executor must have, e.g. `{ zone: a }`.'),
  network: z.enum(['none', 'bridge']).optional().describe('Container network. Default `none`.'),
  placement: z.enum(['binpack', 'spread']).optional().describe('Scoring: `binpack` (default) fills the busiest node that fits; `spread` prefers the emptiest.')
}).strict()

export type JobSpecInput = z.input<typeof JobSpecInputSchema>

/** The normalized spec: what travels on the wire and what the scheduler reads. */
export interface JobSpec {
  image: string
  name?: string
  /** argv; empty means the image's default command */
  command: string[]
  env: Record<string, string>
  /** keys of env whose values are secret: never shown, logged or gossiped (sorted, unique;
   *  absent when none, so a spec without secrets encodes and signs as before) */
  secretEnv?: string[]
  cpuMilli: number
  memoryBytes: number
  pidsLimit: number
  timeoutMs: number
  retries: number
  constraints: Record<string, string>
  network: 'none' | 'bridge'
  placement?: 'binpack' | 'spread'
}

export interface SpecIssue { path: string, message: string }

export class InvalidJobSpecError extends Error {
  static readonly code = 'ERR_INVALID_JOB_SPEC'
  readonly code = InvalidJobSpecError.code
  constructor (readonly issues: SpecIssue[], options?: ErrorOptions) {
    super(`invalid job spec: ${issues.map(i => `${i.path === '' ? '(root)' : i.path}: ${i.message}`).join('; ')}`, options)
    this.name = 'InvalidJobSpecError'
  }
}

/** Validates and normalizes user input. Throws InvalidJobSpecError naming each bad field. */
export function parseJobSpec (input: unknown): JobSpec {
  const r = JobSpecInputSchema.safeParse(input)
  if (!r.success) {
    throw new InvalidJobSpecError(r.error.issues.map(i => ({ path: i.path.map(String).join('.'), message: i.message })))
  }
  const v = r.data
  const command = v.command === undefined ? [] : typeof v.command === 'string' ? ['/bin/sh', '-c', v.command] : v.command
  const memoryBytes = parseSize(v.resources?.memory ?? JOB_DEFAULTS.memory)!
  if (memoryBytes < JOB_LIMITS.minMemoryBytes) {
    throw new InvalidJobSpecError([{ path: 'resources.memory', message: `must be at least ${JOB_LIMITS.minMemoryBytes / 1024 / 1024}m (Docker's floor)` }])
  }
  const env = v.env ?? {}
  const secretEnv = [...new Set(v.secretEnv ?? [])].sort()
  // A secret name that is not an env key is almost always a typo, and the value the user
  // meant to hide would then be shown: refuse it.
  const missing = (v.secretEnv ?? []).findIndex(k => !Object.hasOwn(env, k))
  if (missing >= 0) throw new InvalidJobSpecError([{ path: `secretEnv.${missing}`, message: 'must be a key of env' }])
  const timeoutMs = parseDurationMs(v.timeout ?? JOB_DEFAULTS.timeout)!
  if (timeoutMs < 1000) throw new InvalidJobSpecError([{ path: 'timeout', message: 'must be at least 1s' }])
  return {
    image: v.image,
    ...(v.name !== undefined ? { name: v.name } : {}),
    command,
    env,
    ...(secretEnv.length > 0 ? { secretEnv } : {}),
    cpuMilli: Math.max(1, Math.round((v.resources?.cpus ?? JOB_DEFAULTS.cpus) * 1000)),
    memoryBytes,
    pidsLimit: v.resources?.pids ?? JOB_DEFAULTS.pids,
    timeoutMs,
    retries: v.retries ?? 0,
    constraints: v.constraints ?? {},
    network: v.network ?? 'none',
    ...(v.placement !== undefined ? { placement: v.placement } : {})
  }
}

export function jobSpecJsonSchema (): unknown {
  return z.toJSONSchema(JobSpecInputSchema, { io: 'input', unrepresentable: 'any' })
}
