import http from 'node:http'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import fc from 'fast-check'
import type { FastifyInstance } from 'fastify'
import { createApiServer } from '../../src/api/server.ts'
import { FakeAgent, FAKE_PEER, OTHER_PEER } from '../fakes/fake-agent.ts'

function errorOf (res: { json: () => any }): { code: string, message: string, [k: string]: unknown } {
  const body = res.json()
  expect(typeof body.error.code).toBe('string')
  expect(typeof body.error.message).toBe('string')
  return body.error
}

describe('API server', () => {
  let agent: FakeAgent
  let app: FastifyInstance

  beforeEach(async () => {
    agent = new FakeAgent()
    app = createApiServer({ agent, bodyLimitBytes: 4096 })
    await app.ready()
  })
  afterEach(async () => { await app.close() })

  describe('POST /v1/jobs', () => {
    it('accepts a JSON spec and answers 201 with the job status', async () => {
      const res = await app.inject({ method: 'POST', url: '/v1/jobs', payload: { image: 'busybox', command: ['echo', 'hi'], name: 'greet' } })
      expect(res.statusCode).toBe(201)
      const body = res.json()
      expect(body).toMatchObject({ name: 'greet', state: 'pending', owner: FAKE_PEER, attempts: [], startedAt: null, finishedAt: null, reason: null })
      expect(body.spec).toMatchObject({ image: 'busybox', command: ['echo', 'hi'], network: 'none' })
      expect(agent.jobs.has(body.id)).toBe(true)
      expect(new Date(body.createdAt).toISOString()).toBe(body.createdAt)
      expect(body.replicated).toBe(true)
    })

    it('answers 202 with replicated: false when too few of the job\'s replicas answered in time', async () => {
      agent.replicated = false
      const res = await app.inject({ method: 'POST', url: '/v1/jobs', payload: { image: 'busybox', command: ['true'] } })
      expect(res.statusCode).toBe(202)
      const body = res.json()
      expect(body).toMatchObject({ state: 'pending', replicated: false })
      expect(agent.jobs.has(body.id)).toBe(true)
    })

    it.each(['application/yaml', 'application/x-yaml', 'text/yaml', 'application/yaml; charset=utf-8'])('accepts a YAML spec as %s', async (type) => {
      const yaml = 'image: busybox\ncommand: echo from yaml\nresources:\n  memory: 64m\n  cpus: 0.25\n'
      const res = await app.inject({ method: 'POST', url: '/v1/jobs', headers: { 'content-type': type }, payload: yaml })
      expect(res.statusCode).toBe(201)
      expect(res.json().spec).toMatchObject({ command: ['/bin/sh', '-c', 'echo from yaml'], memoryBytes: 64 * 1024 * 1024, cpuMilli: 250 })
    })

    it('answers 400 naming each bad field', async () => {
      const res = await app.inject({ method: 'POST', url: '/v1/jobs', payload: { image: 'busybox', resources: { memory: 'lots' }, retries: -1, bogus: 1 } })
      expect(res.statusCode).toBe(400)
      const error = errorOf(res)
      expect(error.code).toBe('ERR_INVALID_JOB_SPEC')
      const paths = (error.issues as Array<{ path: string }>).map(i => i.path)
      expect(paths).toEqual(expect.arrayContaining(['resources.memory', 'retries']))
      for (const issue of error.issues as Array<{ path: string, message: string }>) expect(typeof issue.message).toBe('string')
    })

    it('answers 400 for an invalid YAML spec too, naming the field', async () => {
      const res = await app.inject({ method: 'POST', url: '/v1/jobs', headers: { 'content-type': 'text/yaml' }, payload: 'image: busybox\ntimeout: forever\n' })
      expect(res.statusCode).toBe(400)
      expect((errorOf(res).issues as Array<{ path: string }>).map(i => i.path)).toContain('timeout')
    })

    it('answers 400 for a missing body', async () => {
      const res = await app.inject({ method: 'POST', url: '/v1/jobs' })
      expect(res.statusCode).toBe(400)
      expect(errorOf(res).code).toBe('ERR_INVALID_JOB_SPEC')
    })

    it('answers 400 for malformed JSON and YAML', async () => {
      const json = await app.inject({ method: 'POST', url: '/v1/jobs', headers: { 'content-type': 'application/json' }, payload: '{"image": "busybox",' })
      expect(json.statusCode).toBe(400)
      expect(errorOf(json).code).toBe('ERR_MALFORMED_BODY')
      const empty = await app.inject({ method: 'POST', url: '/v1/jobs', headers: { 'content-type': 'application/json' }, payload: '' })
      expect(empty.statusCode).toBe(400)
      const yaml = await app.inject({ method: 'POST', url: '/v1/jobs', headers: { 'content-type': 'application/yaml' }, payload: 'image: [unclosed\n  - : :' })
      expect(yaml.statusCode).toBe(400)
      expect(errorOf(yaml).code).toBe('ERR_MALFORMED_BODY')
    })

    it('answers 400 for JSON that tries prototype poisoning', async () => {
      const res = await app.inject({ method: 'POST', url: '/v1/jobs', headers: { 'content-type': 'application/json' }, payload: '{"image":"busybox","__proto__":{"x":1}}' })
      expect(res.statusCode).toBe(400)
      errorOf(res)
    })

    it('answers 413 for a body over the limit', async () => {
      const res = await app.inject({ method: 'POST', url: '/v1/jobs', payload: { image: 'busybox', command: 'x'.repeat(10_000) } })
      expect(res.statusCode).toBe(413)
      expect(errorOf(res).code).toBe('ERR_BODY_TOO_LARGE')
    })

    it('answers 415 for an unsupported media type', async () => {
      for (const type of ['text/plain', 'application/octet-stream', 'application/xml']) {
        const res = await app.inject({ method: 'POST', url: '/v1/jobs', headers: { 'content-type': type }, payload: 'image: busybox' })
        expect(res.statusCode).toBe(415)
        expect(errorOf(res).code).toBe('ERR_UNSUPPORTED_MEDIA_TYPE')
      }
    })
  })

  describe('GET /v1/jobs/:id', () => {
    it('maps the record to the status object', async () => {
      agent.addJob('abc123', { image: 'busybox', name: 'one' })
      agent.start('abc123', OTHER_PEER)
      let res = await app.inject({ url: '/v1/jobs/abc123' })
      expect(res.statusCode).toBe(200)
      let body = res.json()
      expect(body).toMatchObject({ id: 'abc123', state: 'running', node: OTHER_PEER, epoch: 1, finishedAt: null })
      expect(typeof body.startedAt).toBe('string')
      expect(body.explanation.winner).toBe(OTHER_PEER)
      expect(body.events.map((e: { type: string }) => e.type)).toEqual(['submitted', 'awarded', 'started'])

      agent.finish('abc123', { state: 'failed', reason: 'exit', exitCode: 3 })
      res = await app.inject({ url: '/v1/jobs/abc' })
      body = res.json()
      expect(body).toMatchObject({ id: 'abc123', state: 'failed', reason: 'exit', exitCode: 3 })
      expect(Date.parse(body.finishedAt)).toBeGreaterThanOrEqual(Date.parse(body.startedAt))
    })

    it('answers 404 for an unknown id and 409 for an ambiguous prefix', async () => {
      agent.addJob('abc123')
      agent.addJob('abc456')
      const unknown = await app.inject({ url: '/v1/jobs/zzz' })
      expect(unknown.statusCode).toBe(404)
      expect(errorOf(unknown).code).toBe('ERR_UNKNOWN_JOB')
      const ambiguous = await app.inject({ url: '/v1/jobs/abc' })
      expect(ambiguous.statusCode).toBe(409)
      const error = errorOf(ambiguous)
      expect(error.code).toBe('ERR_AMBIGUOUS_JOB_ID')
      expect((error.matches as string[]).sort()).toEqual(['abc123', 'abc456'])
      // the same mapping on every job route
      expect((await app.inject({ url: '/v1/jobs/zzz/logs' })).statusCode).toBe(404)
      expect((await app.inject({ method: 'DELETE', url: '/v1/jobs/abc' })).statusCode).toBe(409)
    })

    it('passes waitMs (a long poll) to the agent, and refuses a bad one', async () => {
      agent.addJob('abc123')
      const seen: Array<number | undefined> = []
      const getJob = agent.getJob.bind(agent)
      vi.spyOn(agent, 'getJob').mockImplementation(async (id, options) => {
        seen.push(options?.waitMs)
        return await getJob(id, options)
      })
      expect((await app.inject({ url: '/v1/jobs/abc123?waitMs=30000' })).statusCode).toBe(200)
      expect((await app.inject({ url: '/v1/jobs/abc123' })).statusCode).toBe(200)
      expect(seen).toEqual([30_000, undefined])
      for (const bad of ['-1', '300001', 'soon', '1.5']) {
        const res = await app.inject({ url: `/v1/jobs/abc123?waitMs=${bad}` })
        expect({ bad, status: res.statusCode, code: errorOf(res).code }).toEqual({ bad, status: 400, code: 'ERR_BAD_QUERY' })
      }
    })

    it('answers 400 for an over-long or undecodable id instead of an error page', async () => {
      const long = await app.inject({ url: '/v1/jobs/' + 'a'.repeat(5000) })
      expect(long.statusCode).toBeGreaterThanOrEqual(400)
      expect(long.statusCode).toBeLessThan(500)
      errorOf(long)
      const bad = await app.inject({ url: '/v1/jobs/%E0%A4%A' })
      expect(bad.statusCode).toBe(400)
      errorOf(bad)
    })
  })

  describe('GET /v1/jobs', () => {
    it('lists summaries, filtered by state', async () => {
      agent.addJob('a1')
      agent.addJob('b2')
      agent.start('b2')
      let res = await app.inject({ url: '/v1/jobs' })
      expect(res.statusCode).toBe(200)
      expect(res.json().jobs.map((j: { id: string }) => j.id).sort()).toEqual(['a1', 'b2'])
      res = await app.inject({ url: '/v1/jobs?state=&limit=' })
      expect(res.json().jobs).toHaveLength(2)
      res = await app.inject({ url: '/v1/jobs?state=running&limit=5' })
      expect(res.json().jobs).toMatchObject([{ id: 'b2', state: 'running', image: 'busybox' }])
    })

    it.each(['state=bogus', 'limit=0', 'limit=10001', 'limit=abc', 'limit=1.5', 'state=running&state=failed'])('answers 400 for %s', async (qs) => {
      const res = await app.inject({ url: `/v1/jobs?${qs}` })
      expect(res.statusCode).toBe(400)
      expect(errorOf(res).code).toBe('ERR_BAD_QUERY')
    })
  })

  describe('logs', () => {
    beforeEach(() => {
      agent.addJob('logjob')
      agent.start('logjob')
      agent.appendLog('logjob', 'stdout', 'one\n')
      agent.appendLog('logjob', 'stderr', 'two\n')
      agent.appendLog('logjob', 'stdout', 'three\n')
    })

    it('returns all output as text by default, in seq order', async () => {
      const res = await app.inject({ url: '/v1/jobs/logjob/logs' })
      expect(res.statusCode).toBe(200)
      expect(res.headers['content-type']).toMatch(/^text\/plain/)
      expect(res.body).toBe('one\ntwo\nthree\n')
    })

    it('returns one LogChunk per line as ndjson, and only chunks after `after`', async () => {
      const res = await app.inject({ url: '/v1/jobs/log/logs?format=ndjson' })
      const chunks = res.body.trim().split('\n').map(l => JSON.parse(l))
      expect(chunks.map(c => [c.stream, c.data])).toEqual([['stdout', 'one\n'], ['stderr', 'two\n'], ['stdout', 'three\n']])
      const after = await app.inject({ url: `/v1/jobs/logjob/logs?format=ndjson&after=${chunks[0].seq}` })
      expect(after.body.trim().split('\n')).toHaveLength(2)
    })

    it('rejects an unknown format', async () => {
      const res = await app.inject({ url: '/v1/jobs/logjob/logs?format=xml' })
      expect(res.statusCode).toBe(400)
    })

    it('ends a followed stream at once for a finished job', async () => {
      agent.finish('logjob', { state: 'succeeded', exitCode: 0 })
      const res = await app.inject({ url: '/v1/jobs/logjob/logs?follow=1' })
      expect(res.statusCode).toBe(200)
      expect(res.body).toBe('one\ntwo\nthree\n')
    })
  })

  describe('other routes', () => {
    it('DELETE cancels and answers the status', async () => {
      agent.addJob('c1')
      const res = await app.inject({ method: 'DELETE', url: '/v1/jobs/c1' })
      expect(res.statusCode).toBe(200)
      expect(res.json()).toMatchObject({ id: 'c1', state: 'cancelled', reason: 'cancelled' })
      expect(res.json().events.at(-1).type).toBe('cancelled')
    })

    it('lists nodes', async () => {
      const res = await app.inject({ url: '/v1/nodes' })
      expect(res.statusCode).toBe(200)
      expect(res.json().nodes.map((n: { peerId: string }) => n.peerId)).toEqual([FAKE_PEER, OTHER_PEER])
    })

    it('serves /healthz: 200 when ok, 503 otherwise', async () => {
      let res = await app.inject({ url: '/healthz' })
      expect(res.statusCode).toBe(200)
      expect(res.json()).toMatchObject({ ok: true, peerId: FAKE_PEER })
      vi.spyOn(agent, 'health').mockReturnValue({ ok: false, peerId: FAKE_PEER, peers: 0, draining: true, uptimeMs: 1 })
      res = await app.inject({ url: '/healthz' })
      expect(res.statusCode).toBe(503)
    })

    it('plans without submitting, and validates the spec', async () => {
      let res = await app.inject({ method: 'POST', url: '/v1/plan', payload: { image: 'busybox' } })
      expect(res.statusCode).toBe(200)
      expect(res.json()).toMatchObject({ consideredNodes: 2, winner: FAKE_PEER })
      expect(agent.jobs.size).toBe(0)
      res = await app.inject({ method: 'POST', url: '/v1/plan', payload: { image: '' } })
      expect(res.statusCode).toBe(400)
      expect((errorOf(res).issues as Array<{ path: string }>)[0].path).toBe('image')
    })

    it('serves the job spec JSON Schema', async () => {
      const res = await app.inject({ url: '/v1/schema/job' })
      expect(res.statusCode).toBe(200)
      expect(res.json().properties.image).toBeDefined()
    })

    it('answers 404 with the error shape for an unknown route', async () => {
      const res = await app.inject({ url: '/v2/nothing' })
      expect(res.statusCode).toBe(404)
      expect(errorOf(res).code).toBe('ERR_NOT_FOUND')
    })

    it('answers 500 ERR_INTERNAL for an unexpected failure, and logs it', async () => {
      const logged: unknown[] = []
      const logger = {
        level: 'info',
        info () {}, warn () {}, debug () {}, trace () {}, fatal () {}, silent () {},
        error (obj: unknown) { logged.push(obj) },
        child () { return logger }
      }
      const loud = createApiServer({ agent, logger: logger as any })
      vi.spyOn(agent, 'nodes').mockImplementation(() => { throw new Error('disk on fire') })
      const res = await loud.inject({ url: '/v1/nodes' })
      expect(res.statusCode).toBe(500)
      const error = errorOf(res)
      expect(error.code).toBe('ERR_INTERNAL')
      expect(error.message).not.toContain('disk on fire')
      expect(logged.length).toBeGreaterThan(0)
      await loud.close()
    })
  })

  describe('metrics and drain', () => {
    it('serves the agent\'s Prometheus text with its content type', async () => {
      agent.addJob('m1')
      const res = await app.inject({ url: '/metrics' })
      expect(res.statusCode).toBe(200)
      expect(res.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8')
      expect(res.body).toContain('bidmesh_jobs{state="pending"} 1')
      expect(res.body).toMatch(/^# TYPE bidmesh_peers gauge$/m)
    })

    it('maps a metrics failure like any other', async () => {
      vi.spyOn(agent, 'metrics').mockRejectedValue(Object.assign(new Error('closed'), { name: 'StoreClosedError', code: 'ERR_STORE_CLOSED' }))
      const res = await app.inject({ url: '/metrics' })
      expect(res.statusCode).toBe(503)
      expect(errorOf(res).code).toBe('ERR_SHUTTING_DOWN')
    })

    it('POST /v1/drain starts draining and answers 202 with the health', async () => {
      const res = await app.inject({ method: 'POST', url: '/v1/drain' })
      expect(res.statusCode).toBe(202)
      expect(res.json()).toMatchObject({ ok: true, peerId: FAKE_PEER, draining: true })
      expect(agent.drainCalls).toEqual([undefined])
      const health = await app.inject({ url: '/healthz' })
      expect(health.json().draining).toBe(true)
    })

    it('passes a drain deadline, and rejects a bad one', async () => {
      let res = await app.inject({ method: 'POST', url: '/v1/drain', payload: { deadlineMs: 5000 } })
      expect(res.statusCode).toBe(202)
      expect(agent.drainCalls).toEqual([{ deadlineMs: 5000 }])
      for (const payload of [{ deadlineMs: -1 }, { deadlineMs: 'soon' }, { deadlineMs: 1.5 }, { deadline: 5 }, [1]]) {
        res = await app.inject({ method: 'POST', url: '/v1/drain', payload })
        expect(res.statusCode, JSON.stringify(payload)).toBe(400)
        expect(errorOf(res).code).toBe('ERR_BAD_REQUEST')
      }
      expect(agent.drainCalls).toHaveLength(1)
    })

    it('does not wait for the drain to finish', async () => {
      let finish!: () => void
      vi.spyOn(agent, 'drain').mockImplementation(async () => { agent.draining = true; await new Promise<void>(resolve => { finish = resolve }) })
      const res = await app.inject({ method: 'POST', url: '/v1/drain' })
      expect(res.statusCode).toBe(202)
      expect(res.json().draining).toBe(true)
      finish()
    })

    it('answers a drain that cannot start as an error, and logs one that fails later', async () => {
      vi.spyOn(agent, 'drain').mockRejectedValueOnce(Object.assign(new Error('closed'), { name: 'StoreClosedError', code: 'ERR_STORE_CLOSED' }))
      let res = await app.inject({ method: 'POST', url: '/v1/drain' })
      expect(res.statusCode).toBe(503)
      errorOf(res)

      const logged: unknown[] = []
      const logger = {
        level: 'info',
        info () {}, warn () {}, debug () {}, trace () {}, fatal () {}, silent () {},
        error (obj: unknown) { logged.push(obj) },
        child () { return logger }
      }
      const loud = createApiServer({ agent, logger: logger as any })
      let fail!: (err: Error) => void
      vi.spyOn(agent, 'drain').mockImplementationOnce(async () => { await new Promise<void>((_resolve, reject) => { fail = reject }) })
      res = await loud.inject({ method: 'POST', url: '/v1/drain' })
      expect(res.statusCode).toBe(202)
      fail(new Error('executor gone'))
      await vi.waitFor(() => { expect(logged).toHaveLength(1) })
      await loud.close()
    })
  })

  describe('dashboard', () => {
    it('serves one self-contained HTML page at /', async () => {
      const res = await app.inject({ url: '/' })
      expect(res.statusCode).toBe(200)
      expect(res.headers['content-type']).toBe('text/html; charset=utf-8')
      const html = res.body
      expect(html).toMatch(/^<!doctype html>/i)
      // Nothing from elsewhere: agents often run without internet access.
      expect(html).not.toMatch(/<script[^>]*\ssrc=/i)
      expect(html).not.toMatch(/<link[^>]*rel=["']?stylesheet/i)
      expect(html).not.toMatch(/(src|href)=["']?(https?:)?\/\//i)
      expect(html).not.toMatch(/@import|url\(\s*["']?https?:/i)
      // Relative URLs only, so it works from any agent and under a proxy path.
      expect(html).not.toMatch(/fetch\(\s*['"`]\//)
      expect(html).not.toMatch(/api\(\s*['"`]\//)
      for (const id of ['nodes', 'jobs', 'job-search', 'filter-all', 'filter-cancelled', 'spec-input', 'submit-job', 'job-detail', 'logs', 'explanation', 'attempts', 'events', 'token-dialog']) {
        expect(html).toContain(`data-testid="${id}"`)
      }
    })

    it('allows only its own inline script, by hash', async () => {
      const res = await app.inject({ url: '/' })
      const csp = String(res.headers['content-security-policy'])
      const scripts = [...res.body.matchAll(/<script>([\s\S]*?)<\/script>/g)].map(m => m[1])
      expect(scripts).toHaveLength(1)
      const { createHash } = await import('node:crypto')
      const hash = createHash('sha256').update(scripts[0]).digest('base64')
      expect(csp).toContain(`script-src 'sha256-${hash}'`)
      expect(csp).toContain("default-src 'none'")
      expect(csp).toContain("connect-src 'self'")
      expect(csp).not.toMatch(/script-src[^;]*unsafe-inline/)
      expect(res.headers['x-content-type-options']).toBe('nosniff')
    })

    it('is the same bytes from every server in the process (read once)', async () => {
      const other = createApiServer({ agent })
      const [a, b] = await Promise.all([app.inject({ url: '/' }), other.inject({ url: '/' })])
      expect(a.body).toBe(b.body)
      await other.close()
    })
  })

  describe('agent failures that are not bugs', () => {
    it.each([
      ['ERR_PEER_UNREACHABLE', 'PeerUnreachableError', 502],
      ['ERR_STORE_CLOSED', 'StoreClosedError', 503],
      [undefined, 'TimeoutError', 504]
    ])('maps %s / %s to %i', async (code, name, status) => {
      vi.spyOn(agent, 'getJob').mockRejectedValue(Object.assign(new Error('x'), { name, ...(code !== undefined ? { code } : {}) }))
      const res = await app.inject({ url: '/v1/jobs/whatever' })
      expect(res.statusCode).toBe(status)
      errorOf(res)
    })
  })

  describe('bearer token', () => {
    let secured: FastifyInstance
    beforeEach(async () => {
      secured = createApiServer({ agent, token: 's3cret-token' })
      await secured.ready()
    })
    afterEach(async () => { await secured.close() })

    it('serves the dashboard page and the API description without a token, but not the data', async () => {
      for (const url of ['/', '/openapi.json', '/healthz']) {
        const res = await secured.inject({ url })
        expect(res.statusCode, url).toBe(200)
      }
      for (const [method, url] of [['GET', '/metrics'], ['POST', '/v1/drain'], ['GET', '/v1/nodes'], ['GET', '/v1/schema/job']] as const) {
        const res = await secured.inject({ method, url })
        expect(res.statusCode, url).toBe(401)
      }
      expect(agent.drainCalls).toHaveLength(0)
      const ok = await secured.inject({ url: '/metrics', headers: { authorization: 'Bearer s3cret-token' } })
      expect(ok.statusCode).toBe(200)
    })

    it('requires the token on every data route', async () => {
      for (const auth of [undefined, 'Bearer wrong', 'Bearer s3cret-token-longer', 'Basic s3cret-token', 's3cret-token']) {
        const res = await secured.inject({ url: '/v1/jobs', headers: auth === undefined ? {} : { authorization: auth } })
        expect(res.statusCode).toBe(401)
        expect(errorOf(res).code).toBe('ERR_UNAUTHORIZED')
      }
      const denied = await secured.inject({ method: 'POST', url: '/v1/jobs', payload: { image: 'busybox' } })
      expect(denied.statusCode).toBe(401)
      expect(agent.jobs.size).toBe(0)
      const ok = await secured.inject({ url: '/v1/jobs', headers: { authorization: 'Bearer s3cret-token' } })
      expect(ok.statusCode).toBe(200)
      const health = await secured.inject({ url: '/healthz' })
      expect(health.statusCode).toBe(200)
    })
  })

  it('never answers 5xx to random requests', async () => {
    agent.addJob('abc123')
    agent.addJob('abc456')
    agent.start('abc456')
    agent.finish('abc456', { state: 'failed', reason: 'oom' })
    agent.finish('abc123', { state: 'cancelled', reason: 'cancelled' })
    // Follow streams run until the job is terminal: keep every job terminal so a random
    // follow=1 request ends.
    agent.onSubmit = job => agent.finish(job.id, { state: 'succeeded', exitCode: 0 })

    const printable = fc.string({ unit: fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789-_./;=+ %?&*:#[]{}"\'\\\t'.split('')), maxLength: 40 })
    const idish = fc.oneof(fc.constantFrom('abc123', 'abc', 'abc4', 'zzz', '', '%2F', '..', '%00', '%E0%A4%A'), printable)
    const query = fc.oneof(
      fc.constant(''),
      printable.map(s => `?${s}`),
      fc.tuple(fc.constantFrom('state', 'limit', 'format', 'follow', 'after'), printable).map(([k, v]) => `?${k}=${encodeURIComponent(v)}`),
      fc.constantFrom('?format=ndjson', '?follow=1', '?follow=1&format=ndjson', '?limit=10000', '?limit=99999999999999999999', '?after=-1', '?state=running')
    )
    const path = fc.oneof(
      fc.constantFrom('/v1/jobs', '/v1/nodes', '/healthz', '/v1/plan', '/v1/schema/job', '/', '//', '/v1', '/v1/jobs/', '/metrics', '/openapi.json', '/v1/drain'),
      idish.map(id => `/v1/jobs/${id}`),
      idish.map(id => `/v1/jobs/${id}/logs`),
      printable.map(s => `/${s}`)
    )
    const contentType = fc.oneof(
      fc.constantFrom(undefined, 'application/json', 'application/yaml', 'text/yaml', 'application/x-yaml', 'text/plain',
        'application/json; charset=utf-8', 'application/json; charset=latin1', 'multipart/form-data; boundary=x', 'application/x-www-form-urlencoded', '*/*', ''),
      printable
    )
    const body = fc.oneof(
      fc.constant(undefined),
      fc.jsonValue().map(v => JSON.stringify(v)),
      fc.constantFrom(
        '{"image":"busybox"}', 'image: busybox', 'image: busybox\nresources: {memory: 1k}', '{"image": 1}', 'null', '[]', '"x"',
        'a: &a [*a, *a]', '{', 'image: !!binary aGk=', '- - - -', '\u0000\u0001', 'x'.repeat(5000), '{"__proto__": {"a": 1}}',
        '{"constructor": {"prototype": {"a": 1}}}'
      ),
      fc.string({ maxLength: 300 }),
      fc.uint8Array({ maxLength: 200 }).map(b => Buffer.from(b))
    )
    const method = fc.constantFrom('GET', 'POST', 'DELETE', 'PUT', 'PATCH', 'HEAD', 'OPTIONS')

    await fc.assert(fc.asyncProperty(method, path, query, contentType, body, async (m, p, q, ct, b) => {
      // inject() parses the URL itself, and a path such as `/\` (read as `//`, a URL with
      // no host) never reaches the server: such inputs test the harness, not the API.
      fc.pre(URL.canParse(p + q, 'http://localhost'))
      const headers: Record<string, string> = {}
      if (ct !== undefined) headers['content-type'] = ct
      const res = await app.inject({ method: m as 'GET', url: p + q, headers, ...(b !== undefined ? { payload: b } : {}) })
      expect(res.statusCode, `${m} ${p}${q} [${ct}]`).toBeLessThan(500)
      if (res.statusCode >= 400 && m !== 'HEAD') errorOf(res)
    }), { numRuns: 200 })
  })
})

/** Splits a fetch body into lines as they arrive. */
function lineReader (body: ReadableStream<Uint8Array>): { next: () => Promise<string | undefined> } {
  const reader = body.getReader()
  const decoder = new TextDecoder()
  let buffered = ''
  return {
    async next () {
      for (;;) {
        const nl = buffered.indexOf('\n')
        if (nl >= 0) {
          const line = buffered.slice(0, nl)
          buffered = buffered.slice(nl + 1)
          return line
        }
        const { done, value } = await reader.read()
        if (done) return buffered === '' ? undefined : buffered
        buffered += decoder.decode(value, { stream: true })
      }
    }
  }
}

describe('following logs over a real connection', () => {
  let agent: FakeAgent
  let app: FastifyInstance
  let base: string

  beforeEach(async () => {
    agent = new FakeAgent()
    app = createApiServer({ agent })
    await app.listen({ host: '127.0.0.1', port: 0 })
    const address = app.server.address()
    if (address === null || typeof address === 'string') throw new Error('no address')
    base = `http://127.0.0.1:${address.port}`
  })
  afterEach(async () => { await app.close() })

  it('streams chunks written after the request started, and ends when the job is terminal', async () => {
    agent.addJob('f1')
    agent.start('f1')
    agent.appendLog('f1', 'stdout', 'before\n')
    const res = await fetch(`${base}/v1/jobs/f1/logs?format=ndjson&follow=1`)
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toMatch(/^application\/x-ndjson/)
    const lines = lineReader(res.body!)
    expect(JSON.parse((await lines.next())!).data).toBe('before\n')

    agent.appendLog('f1', 'stdout', 'during\n')
    expect(JSON.parse((await lines.next())!)).toMatchObject({ stream: 'stdout', data: 'during\n' })

    // Output written just before the job turns terminal must still arrive.
    agent.appendLog('f1', 'stderr', 'last words\n')
    agent.finish('f1', { state: 'failed', reason: 'exit', exitCode: 3 })
    expect(JSON.parse((await lines.next())!)).toMatchObject({ stream: 'stderr', data: 'last words\n' })
    expect(await lines.next()).toBeUndefined()
  })

  it('streams text when asked for no format', async () => {
    agent.addJob('f2')
    agent.start('f2')
    const res = await fetch(`${base}/v1/jobs/f2/logs?follow=1`)
    expect(res.status).toBe(200)
    // Wait until the server is polling, so the chunk is certainly written after the request.
    await agent.waitFor(() => agent.readLogsCalls.includes('f2'))
    agent.appendLog('f2', 'stdout', 'hello ')
    agent.appendLog('f2', 'stderr', 'world\n')
    agent.finish('f2', { state: 'succeeded', exitCode: 0 })
    expect(await res.text()).toBe('hello world\n')
  })

  it('stops polling when the client disconnects', async () => {
    agent.addJob('f3')
    agent.start('f3')
    const signals: AbortSignal[] = []
    const readLogs = agent.readLogs.bind(agent)
    vi.spyOn(agent, 'readLogs').mockImplementation(async (id, options) => {
      if (options?.signal !== undefined) signals.push(options.signal)
      return await readLogs(id, options)
    })
    // node:http rather than fetch: an aborted fetch makes undici open a spare connection,
    // which has nothing to do with what is tested here.
    const req = http.get(`${base}/v1/jobs/f3/logs?follow=1`, { agent: false })
    const res = await new Promise<http.IncomingMessage>(resolve => req.once('response', resolve))
    expect(res.statusCode).toBe(200)
    await agent.waitFor(() => agent.readLogsCalls.includes('f3'))
    req.destroy()
    await vi.waitFor(() => { expect(signals.at(-1)?.aborted).toBe(true) }, { timeout: 5000, interval: 20 })
    const calls = agent.readLogsCalls.length
    await app.close()
    expect(agent.readLogsCalls.length).toBe(calls)
  })

  it('cuts followers when the server closes, without waiting for their jobs', async () => {
    agent.addJob('f4')
    agent.start('f4')
    const req = http.get(`${base}/v1/jobs/f4/logs?follow=1`, { agent: false })
    const res = await new Promise<http.IncomingMessage>(resolve => req.once('response', resolve))
    res.resume()
    const ended = new Promise<string>(resolve => {
      res.once('end', () => resolve('end'))
      res.once('error', () => resolve('error'))
      res.once('aborted', () => resolve('aborted'))
    })
    await agent.waitFor(() => agent.readLogsCalls.includes('f4'))
    await app.close()
    // Not a clean end: the job is still running, so the stream must read as truncated.
    expect(await ended).not.toBe('end')
  })

  it('keeps a followed stream open through a transient agent failure', async () => {
    agent.addJob('f5')
    agent.start('f5')
    const getJob = agent.getJob.bind(agent)
    let failOnce = true
    vi.spyOn(agent, 'getJob').mockImplementation(async (id, options) => {
      // The route's own lookup succeeds; the first poll inside the stream fails.
      if (failOnce && agent.getJobCalls.length > 0) {
        failOnce = false
        throw Object.assign(new Error('peer gone'), { name: 'PeerUnreachableError', code: 'ERR_PEER_UNREACHABLE' })
      }
      return await getJob(id, options)
    })
    const res = await fetch(`${base}/v1/jobs/f5/logs?follow=1`)
    await vi.waitFor(() => { expect(failOnce).toBe(false) }, { timeout: 5000, interval: 20 })
    agent.appendLog('f5', 'stdout', 'still here\n')
    agent.finish('f5', { state: 'succeeded', exitCode: 0 })
    expect(await res.text()).toBe('still here\n')
  })

  it('answers 404 before streaming for an unknown job', async () => {
    const res = await fetch(`${base}/v1/jobs/nope/logs?follow=1`)
    expect(res.status).toBe(404)
    expect((await res.json()).error.code).toBe('ERR_UNKNOWN_JOB')
  })
})
