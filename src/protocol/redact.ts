// Secret redaction for anything that may be logged, shown or reported: error messages from
// the engine, job-level failure texts, the spec in status output. Pure; imports nothing of
// ours but the spec type.
import type { JobSpec } from './job-spec.ts'

export const REDACTED = '[REDACTED]'

export interface RedactOptions {
  /** Secrets shorter than this are left alone: redacting every "1" or "true" would destroy
   *  the text and such values are not secrets. Default 1 (redact every non-empty secret). */
  minLength?: number
}

/**
 * Replaces every occurrence of every secret in `text` with [REDACTED]. Longer secrets are
 * replaced first, so a secret that contains another is not left half-visible. Also catches
 * the secret as it appears JSON-escaped (an engine error that quotes the request body).
 */
export function redactSecrets (text: string, secrets: Iterable<string>, options: RedactOptions = {}): string {
  const min = Math.max(1, options.minLength ?? 1)
  const forms = new Set<string>()
  for (const s of secrets) {
    if (typeof s !== 'string' || s.length < min) continue
    forms.add(s)
    const escaped = JSON.stringify(s).slice(1, -1)
    if (escaped !== s) forms.add(escaped)
  }
  if (forms.size === 0 || text.length === 0) return text
  let out = text
  for (const s of [...forms].sort((a, b) => b.length - a.length)) {
    if (out.includes(s)) out = out.split(s).join(REDACTED)
  }
  return out
}

/** The values of an env map, as secrets to redact (keys are not secret). */
export function envSecrets (env: Record<string, string> | undefined): string[] {
  return env === undefined ? [] : Object.values(env).filter(v => typeof v === 'string')
}

/** The values a job marked secret (spec.secretEnv), non-empty ones only. These are redacted
 *  whatever their length: the user said they are secret. */
export function specSecrets (spec: Pick<JobSpec, 'env' | 'secretEnv'>): string[] {
  const out: string[] = []
  for (const key of spec.secretEnv ?? []) {
    const v = Object.hasOwn(spec.env ?? {}, key) ? spec.env[key] : undefined
    if (typeof v === 'string' && v.length > 0) out.push(v)
  }
  return out
}

/** The spec as it may be shown (status, CLI, dashboard): each secret env value replaced by
 *  [REDACTED]. The keys stay, so a user can see the variable is set. A new object; the input
 *  is not changed. */
export function redactSpec (spec: JobSpec): JobSpec {
  const secret = spec.secretEnv ?? []
  if (secret.length === 0) return spec
  const env: Record<string, string> = {}
  for (const [k, v] of Object.entries(spec.env)) env[k] = secret.includes(k) ? REDACTED : v
  return { ...spec, env }
}
