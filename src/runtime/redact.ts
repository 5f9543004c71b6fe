// Secret redaction for anything that may be logged or reported: error messages from the
// engine, job-level failure texts. Pure.

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
