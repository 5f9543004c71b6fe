// Protocol-level defaults and caps. Changing a cap is a protocol change: peers on an
// older version drop what exceeds their own caps.

export const JOB_DEFAULTS = {
  cpus: 0.5,
  memory: '256m',
  pids: 256,
  timeout: '1h'
} as const

export const JOB_LIMITS = {
  maxCpus: 1024,
  maxPids: 65_536,
  maxRetries: 20,
  /** secret env names per job: as many as env keys can sensibly be */
  maxSecretEnv: 1024,
  /** Docker refuses memory limits under 6 MiB. */
  minMemoryBytes: 6 * 1024 * 1024
} as const
