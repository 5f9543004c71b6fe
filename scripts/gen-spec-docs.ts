// Generates docs/job-spec.md from the job spec's JSON Schema (jobSpecJsonSchema(), made from
// the same zod schema the agent validates with), so the reference cannot drift from the code.
//
//   node --import tsx scripts/gen-spec-docs.ts > docs/job-spec.md
//
// Defaults are read from a schema `default` when there is one, else from the "Default X."
// sentence of the field's description (where job-spec.ts states them from JOB_DEFAULTS).
import { pathToFileURL } from 'node:url'
import { JOB_DEFAULTS, JOB_LIMITS } from '../src/protocol/limits.ts'
import { jobSpecJsonSchema } from '../src/protocol/job-spec.ts'

export interface Schema {
  type?: string | string[]
  description?: string
  properties?: Record<string, Schema>
  required?: string[]
  items?: Schema
  anyOf?: Schema[]
  oneOf?: Schema[]
  enum?: unknown[]
  const?: unknown
  default?: unknown
  additionalProperties?: boolean | Schema
  propertyNames?: Schema
  minLength?: number
  maxLength?: number
  minimum?: number
  maximum?: number
  exclusiveMinimum?: number
  exclusiveMaximum?: number
  minItems?: number
  maxItems?: number
  pattern?: string
}

interface Row { path: string, type: string, required: boolean, default: string, limits: string, description: string }

/** JavaScript's largest safe integer: zod's bound for "any integer", not a real limit. */
const UNBOUNDED = Number.MAX_SAFE_INTEGER

function code (text: string): string {
  return `\`${text.replace(/`/g, "'")}\``
}

/** Table cells cannot hold a raw pipe or a line break. */
function cell (text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\n+/g, ' ').trim()
}

function typeOf (s: Schema): string {
  const alternatives = s.anyOf ?? s.oneOf
  if (alternatives !== undefined) return [...new Set(alternatives.map(typeOf))].join(' or ')
  if (s.enum !== undefined) return `one of ${s.enum.map(v => code(typeof v === 'string' ? v : JSON.stringify(v))).join(', ')}`
  if (s.const !== undefined) return code(JSON.stringify(s.const))
  const t = Array.isArray(s.type) ? s.type.join(' or ') : s.type
  if (t === 'array') return `array of ${s.items !== undefined ? typeOf(s.items) : 'any'}`
  if (t === 'object' && s.properties === undefined && typeof s.additionalProperties === 'object') {
    return `map of string → ${typeOf(s.additionalProperties)}`
  }
  return t ?? 'any'
}

/** Bounds of a schema and of its alternatives, in words. */
function limitsOf (s: Schema): string[] {
  const out: string[] = []
  const alternatives = s.anyOf ?? s.oneOf
  if (alternatives !== undefined) {
    for (const a of alternatives) {
      const inner = limitsOf(a)
      if (inner.length > 0) out.push(`${typeOf(a)}: ${inner.join(', ')}`)
    }
    return out
  }
  if (s.minLength === 1) out.push('non-empty')
  else if (s.minLength !== undefined && s.minLength > 1) out.push(`at least ${s.minLength} chars`)
  if (s.maxLength !== undefined) out.push(`at most ${s.maxLength} chars`)
  if (s.exclusiveMinimum !== undefined) out.push(`> ${s.exclusiveMinimum}`)
  if (s.minimum !== undefined && !(s.minimum === 0 && s.type === 'integer' && s.maximum === UNBOUNDED)) out.push(`≥ ${s.minimum}`)
  if (s.exclusiveMaximum !== undefined) out.push(`< ${s.exclusiveMaximum}`)
  if (s.maximum !== undefined && s.maximum !== UNBOUNDED) out.push(`≤ ${s.maximum}`)
  if (s.minItems !== undefined && s.minItems > 0) out.push(`at least ${s.minItems} items`)
  if (s.maxItems !== undefined) out.push(`at most ${s.maxItems} items`)
  if (s.pattern !== undefined) out.push(`matches ${code(s.pattern)}`)
  if (s.propertyNames !== undefined) {
    const keys = limitsOf(s.propertyNames)
    if (keys.length > 0) out.push(`keys: ${keys.join(', ')}`)
  }
  if (typeof s.additionalProperties === 'object') {
    const values = limitsOf(s.additionalProperties)
    if (values.length > 0) out.push(`values: ${values.join(', ')}`)
  }
  if (s.type === 'array' && s.items !== undefined) {
    const items = limitsOf(s.items)
    if (items.length > 0) out.push(`items: ${items.join(', ')}`)
  }
  return out
}

const DEFAULT_SENTENCE = /\s*Default:?\s+(.+?)\.(?=\s|$)/
/** "`binpack` (default) fills ..." names its default in passing. */
const DEFAULT_INLINE = /(`[^`]+`) \(default\)/

function describe (s: Schema): { description: string, default: string } {
  const text = s.description ?? ''
  if (s.default !== undefined) return { description: text, default: code(JSON.stringify(s.default)) }
  const inline = DEFAULT_INLINE.exec(text)
  if (inline !== null) return { description: text, default: inline[1] }
  const m = DEFAULT_SENTENCE.exec(text)
  if (m === null) return { description: text, default: '' }
  const value = m[1].trim()
  return { description: text.replace(m[0], '').trim(), default: value.startsWith('`') ? value : code(value) }
}

function rows (s: Schema, prefix = ''): Row[] {
  const out: Row[] = []
  const required = new Set(s.required ?? [])
  for (const [name, field] of Object.entries(s.properties ?? {})) {
    const path = `${prefix}${name}`
    const { description, default: def } = describe(field)
    const nested = field.type === 'object' && field.properties !== undefined
    // A list of objects (e.g. mounts) gets a row per item field: `list[].field`.
    const items = field.type === 'array' && field.items?.properties !== undefined ? field.items : undefined
    const limits = nested
      ? (field.additionalProperties === false ? 'no other keys' : '')
      : items !== undefined
        ? limitsOf({ ...field, items: undefined }).join('; ')
        : limitsOf(field).join('; ')
    out.push({
      path,
      type: nested ? 'object' : items !== undefined ? 'array of object' : typeOf(field),
      required: required.has(name),
      default: def,
      limits,
      description: description !== '' ? description : (nested ? `See the ${code(path + '.*')} rows.` : '')
    })
    if (nested) out.push(...rows(field, `${path}.`))
    if (items !== undefined) out.push(...rows(items, `${path}[].`))
  }
  return out
}

export function renderSpecDocs (schema: Schema): string {
  const lines: string[] = []
  const push = (...l: string[]): void => { lines.push(...l) }
  push(
    '<!-- Generated by scripts/gen-spec-docs.ts from jobSpecJsonSchema() in src/protocol/job-spec.ts.',
    '     Do not edit: change the schema, then run',
    '     node --import tsx scripts/gen-spec-docs.ts > docs/job-spec.md -->',
    '',
    '# Job spec reference',
    '',
    'A job spec is what `bidmesh submit -f FILE` reads (YAML or JSON), what `POST /v1/jobs` takes, and',
    'what `bidmesh run` builds from its flags. Unknown fields are an error, and every error names the',
    'field that failed. The agent serves this schema at `GET /v1/schema/job`.',
    '',
    '```yaml',
    'image: bidmesh/busybox:latest',
    'name: example',
    'command: echo hello            # a string runs through /bin/sh -c; an array runs as is',
    'env: { GREETING: hi }',
    `resources: { cpus: ${JOB_DEFAULTS.cpus}, memory: ${JOB_DEFAULTS.memory}, pids: ${JOB_DEFAULTS.pids} }`,
    `timeout: ${JOB_DEFAULTS.timeout}`,
    'retries: 2',
    'constraints: { zone: a }       # node labels',
    'network: none                  # or bridge',
    'placement: binpack             # or spread',
    '```',
    '',
    '## Fields',
    '',
    '| Field | Type | Required | Default | Limits | Description |',
    '|---|---|---|---|---|---|'
  )
  for (const r of rows(schema)) {
    push(`| ${code(r.path)} | ${cell(r.type)} | ${r.required ? 'yes' : 'no'} | ${cell(r.default)} | ${cell(r.limits)} | ${cell(r.description)} |`)
  }
  if (schema.additionalProperties === false) push('', 'No other top-level fields are accepted.')
  push(
    '',
    '## Units',
    '',
    '- **Sizes** (`resources.memory`): a byte count, or a number with a unit. Single letters and',
    '  `Ki`/`Mi`/`Gi`/`Ti` (and `KiB`…) are binary, as in Docker: `512m` = 512 × 1024² bytes;',
    '  `kb`/`mb`/`gb`/`tb` are decimal. Fractions are allowed: `1.5g`.',
    `  The smallest memory limit is ${JOB_LIMITS.minMemoryBytes / 1024 / 1024}m (Docker's floor).`,
    '- **Durations** (`timeout`): a number of seconds, or units `ms`, `s`, `m`, `h`, `d` combined',
    '  without spaces: `90s`, `1h30m`. The shortest timeout is 1s.',
    '',
    '## How a spec is normalized',
    '',
    'The agent turns the input into the wire form every agent reads (`JobSpec` in',
    '`src/protocol/job-spec.ts`): `command` becomes an argv (a string becomes `["/bin/sh", "-c", string]`;',
    "none runs the image's default command), `resources.cpus` becomes millicores (at least 1),",
    '`resources.memory` bytes, `timeout` milliseconds, and every default above is filled in.',
    'Placement compares these normalized numbers with what nodes advertise.',
    '',
    '## JSON Schema',
    '',
    '```json',
    JSON.stringify(schema, null, 2),
    '```',
    ''
  )
  return lines.join('\n')
}

// Run as a script (not when imported, e.g. by a test of the rendering).
if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  process.stdout.write(renderSpecDocs(jobSpecJsonSchema() as Schema))
}
