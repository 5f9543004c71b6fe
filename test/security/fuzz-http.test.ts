// Fuzzing the HTTP API in process (app.inject): ≥10,000 malformed, hostile or oversized
// requests. The rule: a bad request is never a 5xx (nothing in it reaches an unexpected code
// path), and the server still answers /healthz afterwards.
import { afterAll, describe, expect, it } from 'vitest'
import { createApiServer, PUBLIC_ROUTES } from '../../src/api/server.ts'
import { FakeAgent } from '../fakes/fake-agent.ts'

const SEED = Number(process.env.BIDMESH_FUZZ_SEED ?? 0x4774)
const TOTAL = Number(process.env.BIDMESH_FUZZ_HTTP ?? 12_000)
const BODY_LIMIT = 64 * 1024

function mulberry32 (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6D2B79F5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
const rnd = mulberry32(SEED)
const int = (n: number): number => Math.floor(rnd() * n)
const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]
const randomBytes = (n: number): Buffer => Buffer.from(Array.from({ length: n }, () => int(256)))
const randomString = (n: number): string => Array.from({ length: n }, () => String.fromCharCode(pick([int(128), int(0x10000), 0, 0x2f, 0x25, 0x3f, 0x23]))).join('')

const agent = new FakeAgent()
// Submitted jobs finish at once, so a followed log stream of any of them ends.
agent.onSubmit = job => { agent.finish(job.id, { state: 'succeeded', reason: 'exit', exitCode: 0 }) }
const app = createApiServer({ agent, logger: false, bodyLimitBytes: BODY_LIMIT })
const secured = createApiServer({ agent, logger: false, bodyLimitBytes: BODY_LIMIT, token: 'fuzz-token-0123456789abcdef' })
afterAll(async () => { await app.close(); await secured.close() })

const METHODS = ['GET', 'POST', 'DELETE', 'PUT', 'PATCH', 'OPTIONS', 'HEAD'] as const
const ROUTES = ['/', '/openapi.json', '/healthz', '/metrics', '/v1/drain', '/v1/jobs', '/v1/jobs/j', '/v1/jobs/j0000001', '/v1/jobs/j0000001/logs', '/v1/nodes', '/v1/plan', '/v1/schema/job']
const CONTENT_TYPES = [
  'application/json', 'application/json; charset=utf-8', 'application/json; charset=utf-7', 'application/yaml', 'text/yaml',
  'application/x-yaml', 'text/plain', 'application/octet-stream', 'multipart/form-data; boundary=x', 'application/x-www-form-urlencoded',
  ';;;', 'application/json;;', '*/*', '', 'application/JSON', 'application/json; charset=', 'text/yaml; charset=latin1'
]
const SPEC_KEYS = ['image', 'name', 'command', 'env', 'resources', 'timeout', 'retries', 'constraints', 'network', 'placement', '__proto__', 'constructor', 'prototype', 'toString', 'cpus', 'memory', 'pids']
const VALUES: unknown[] = [null, true, false, 0, -1, 1e309, 1.5, 2 ** 53 + 1, '', 'x', 'bidmesh/busybox:latest', '256m', '-1g', '1e99', 'bridge', 'host', '10y', [], {}, [[]], { cpus: -1 }, { memory: '1t' }, { pids: 1e9 }, 'a'.repeat(70_000), '\u0000', '💥']

function randomJson (depth = 0): unknown {
  switch (int(depth > 3 ? 3 : 6)) {
    case 0: return pick(VALUES)
    case 1: return randomString(int(20))
    case 2: return int(1e6) - 5e5
    case 3: return Array.from({ length: int(4) }, () => randomJson(depth + 1))
    default: {
      const o: Record<string, unknown> = {}
      for (let i = int(6); i > 0; i--) define(o, pick(SPEC_KEYS), randomJson(depth + 1))
      return o
    }
  }
}

/** An own property even for "__proto__", so JSON.stringify sends it as a key. */
function define (o: Record<string, unknown>, k: string, v: unknown): void {
  Object.defineProperty(o, k, { value: v, enumerable: true, configurable: true, writable: true })
}

function randomSpecish (): Record<string, unknown> {
  const spec: Record<string, unknown> = { image: 'bidmesh/busybox:latest' }
  for (let i = int(4); i > 0; i--) define(spec, pick(SPEC_KEYS), rnd() < 0.5 ? pick(VALUES) : randomJson(1))
  return spec
}

const YAML_BOMBS = [
  // billion laughs
  'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n',
  '[' .repeat(5000) + ']'.repeat(5000),
  '- '.repeat(3000) + 'x',
  'image: !!js/function "function(){}"',
  'image: !!binary aGVsbG8=',
  '<<: *undefined',
  'image: &x busybox\n<<: {image: *x}\n',
  '%YAML 9.9\n---\nimage: x',
  '? [a, b]\n: c',
  'image: "\\x00\\uD800"',
  '---\n---\n---\n',
  'image: x\nimage: y\n'
]

const JSON_BOMBS = [
  '['.repeat(100_000) + ']'.repeat(100_000),
  '{"a":'.repeat(20_000) + '1' + '}'.repeat(20_000),
  '{"__proto__": {"polluted": true}, "image": "x"}',
  '{"constructor": {"prototype": {"polluted": true}}, "image": "x"}',
  '{"image": "x", "env": {"__proto__": "y"}}',
  '1e999999', '"\\ud800"', '{"image": "\\u0000"}', 'null', '[]', '""', '0', '{', '{"image":}', '\ufeff{"image":"x"}', '{"image":"x"}garbage'
]

type Req = { method: (typeof METHODS)[number], url: string, headers?: Record<string, string>, payload?: string | Buffer, cls: string, secured?: boolean }

function nextRequest (i: number): Req {
  const r = int(100)
  if (r < 5) {
    // oversized bodies (over the 64 KiB limit; a few far over)
    const size = BODY_LIMIT + 1 + (rnd() < 0.1 ? 4 * 1024 * 1024 : int(100_000))
    return { cls: 'oversized body', method: 'POST', url: pick(['/v1/jobs', '/v1/plan', '/v1/drain']), headers: { 'content-type': pick(['application/json', 'application/yaml']) }, payload: Buffer.alloc(size, 0x20) }
  }
  if (r < 12) return { cls: 'yaml bombs', method: 'POST', url: pick(['/v1/jobs', '/v1/plan']), headers: { 'content-type': pick(['application/yaml', 'text/yaml']) }, payload: pick(YAML_BOMBS) }
  if (r < 18) return { cls: 'json bombs', method: 'POST', url: pick(['/v1/jobs', '/v1/plan', '/v1/drain']), headers: { 'content-type': 'application/json' }, payload: pick(JSON_BOMBS) }
  if (r < 35) {
    // random bytes / mangled JSON under any content type
    const base = JSON.stringify(randomSpecish())
    const payload = rnd() < 0.5 ? randomBytes(int(2000)) : base.slice(0, int(base.length + 1)) + randomString(int(5))
    return { cls: 'malformed bodies', method: pick(['POST', 'POST', 'PUT', 'DELETE']), url: pick(ROUTES), headers: { 'content-type': pick(CONTENT_TYPES) }, payload }
  }
  if (r < 60) {
    // well-formed JSON or YAML, hostile content
    const yaml = rnd() < 0.2
    const body = randomSpecish()
    return { cls: 'hostile specs', method: 'POST', url: pick(['/v1/jobs', '/v1/plan', '/v1/drain']), headers: { 'content-type': yaml ? 'application/yaml' : 'application/json' }, payload: yaml ? `image: ${JSON.stringify(body.image) ?? 'null'}\nretries: ${JSON.stringify(body.retries) ?? 0}\nenv: ${JSON.stringify(body.env) ?? '{}'}\n` : JSON.stringify(body) }
  }
  if (r < 80) {
    // URLs: bad escapes, long and odd ids, query abuse
    const id = pick([randomString(int(40)), 'j', 'j0', '%zz', '%00', '%ff%fe', '..%2f..%2fetc', 'a'.repeat(257), 'a'.repeat(100_000), '\u202e', ' ', '%20', 'j0000001%0a'])
    const q = pick(['', '?limit=0', '?limit=-1', '?limit=1e309', '?limit=99999999999999999999', '?limit=1&limit=2', '?limit[]=1', '?state=__proto__', '?state=running&state=failed',
      '?format=xml', '?format=ndjson&after=-1', '?follow=maybe', '?follow=1&format=ndjson', '?after=18446744073709551616', '?%zz=1', '?' + 'a=1&'.repeat(2000), `?state=${randomString(10)}`])
    const url = pick([`/v1/jobs/${id}`, `/v1/jobs/${id}/logs`, `/v1/jobs${q}`, `/v1/jobs/${id}/logs${q}`, `/${id}`, `/v1/${id}`, `//v1//jobs//${id}`, `/v1/jobs/${id}${q}`])
    return { cls: 'hostile urls', method: pick(['GET', 'GET', 'DELETE', 'HEAD']), url }
  }
  if (r < 90) {
    // methods and headers
    const headers: Record<string, string> = {}
    if (rnd() < 0.5) headers.accept = pick(['*/*', 'application/xml', 'text/html', '', 'application/json;q=abc'])
    if (rnd() < 0.3) headers['content-type'] = pick(CONTENT_TYPES)
    if (rnd() < 0.3) headers['accept-encoding'] = pick(['gzip', 'br', 'identity;q=0', '*;q=0'])
    return { cls: 'methods and headers', method: pick(METHODS), url: pick(ROUTES), headers, ...(rnd() < 0.3 ? { payload: JSON.stringify(randomJson()) } : {}) }
  }
  // the token-protected server with wrong, malformed or missing credentials
  // (one variant is the right token in another spelling: it must be accepted)
  const auth = pick(['', 'Bearer', 'Bearer ', 'Bearer x', 'bearer fuzz-token-0123456789abcdef ', 'Basic Zm9vOmJhcg==', 'Bearer ' + 'x'.repeat(10_000), randomString(30), 'Bearer fuzz-token-0123456789abcdeF', 'Bearer fuzz-token-0123456789abcde', 'Bearer  fuzz-token-0123456789abcdef\u0000'])
  return { cls: 'bad credentials', secured: true, method: pick(METHODS), url: pick(ROUTES), headers: auth === '' ? {} : { authorization: auth } }
}

describe('HTTP API under fuzzing', () => {
  it(`answers ${TOTAL.toLocaleString('en')} malformed or oversized requests without a 5xx`, async () => {
    const statuses = new Map<string, Map<number, number>>()
    const fives: Array<{ cls: string, method: string, url: string, status: number, body: string }> = []
    const crashes: string[] = []
    const bypasses: string[] = []
    const started = Date.now()
    // The YAML parser reports odd documents as process warnings; they are expected here.
    const emitWarning = process.emitWarning
    process.emitWarning = (() => {}) as typeof process.emitWarning
    try {
    for (let i = 0; i < TOTAL; i++) {
      const req = nextRequest(i)
      let status: number
      try {
        const res = await (req.secured === true ? secured : app).inject({
          method: req.method, url: req.url, ...(req.headers !== undefined ? { headers: req.headers } : {}), ...(req.payload !== undefined ? { payload: req.payload } : {})
        })
        status = res.statusCode
        const path = req.url.split('?')[0]
        if (req.secured === true && status !== 401 && !PUBLIC_ROUTES.has(path) && !/^Bearer[ ]+fuzz-token-0123456789abcdef\s*$/i.test(req.headers?.authorization ?? '')) {
          bypasses.push(`${req.method} ${req.url.slice(0, 60)} auth=${JSON.stringify(req.headers?.authorization ?? null).slice(0, 40)} → ${status}`)
        }
        if (status >= 500 && fives.length < 10) fives.push({ cls: req.cls, method: req.method, url: req.url.slice(0, 80), status, body: res.body.slice(0, 200) })
      } catch (err) {
        status = -1
        if (crashes.length < 10) crashes.push(`${req.cls} ${req.method} ${req.url.slice(0, 60)}: ${String(err).slice(0, 120)}`)
      }
      const m = statuses.get(req.cls) ?? new Map<number, number>()
      m.set(status, (m.get(status) ?? 0) + 1)
      statuses.set(req.cls, m)
    }
    } finally {
      process.emitWarning = emitWarning
    }
    const health = await app.inject({ method: 'GET', url: '/healthz' })
    const healthSecured = await secured.inject({ method: 'GET', url: '/healthz' })
    const okSubmit = await app.inject({ method: 'POST', url: '/v1/jobs', headers: { 'content-type': 'application/json' }, payload: JSON.stringify({ image: 'bidmesh/busybox:latest', command: 'true' }) })

    const total5xx = [...statuses.values()].reduce((s, m) => s + [...m].filter(([st]) => st >= 500).reduce((x, [, n]) => x + n, 0), 0)
    const lines = ['', `HTTP fuzz: ${TOTAL.toLocaleString('en')} requests in ${Date.now() - started} ms (seed ${SEED}, body limit ${BODY_LIMIT} B)`]
    for (const [cls, m] of statuses) lines.push(`  ${cls.padEnd(22)} ${[...m].sort((a, b) => a[0] - b[0]).map(([s, n]) => `${s}×${n}`).join('  ')}`)
    lines.push(`  responses ≥ 500: ${total5xx}; inject failures: ${crashes.length}; token bypasses: ${bypasses.length}; /healthz after: ${health.statusCode} (token server: ${healthSecured.statusCode}); a valid submit after: ${okSubmit.statusCode}`)
    for (const f of fives) lines.push(`  5xx: ${f.cls} ${f.method} ${f.url} → ${f.status} ${f.body}`)
    for (const c of crashes) lines.push(`  inject failed: ${c}`)
    console.log(lines.join('\n'))

    expect(fives).toEqual([])
    expect(bypasses.slice(0, 10)).toEqual([])
    expect(crashes).toEqual([])
    expect(total5xx).toBe(0)
    expect(health.statusCode).toBe(200)
    expect(healthSecured.statusCode).toBe(200)
    expect(okSubmit.statusCode).toBe(201)
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
  }, 300_000)
})
