import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import type { FastifyInstance, RouteOptions } from 'fastify'
import { createApiServer } from '../../src/api/server.ts'
import { openApiDocument } from '../../src/api/openapi.ts'
import { jobSpecJsonSchema } from '../../src/protocol/job-spec.ts'
import { FakeAgent } from '../fakes/fake-agent.ts'

// Every route the server registers, seen through an onRoute hook installed on each Fastify
// instance as it is created: the only way to list routes that does not trust the server.
const registered = vi.hoisted(() => [] as Array<{ method: string, url: string }>)
vi.mock('fastify', async (importOriginal) => {
  const mod = await importOriginal<typeof import('fastify')>()
  const wrapped = ((options: unknown) => {
    const app = (mod.default as unknown as (o: unknown) => FastifyInstance)(options)
    app.addHook('onRoute', (route: RouteOptions) => {
      for (const method of [route.method].flat()) registered.push({ method, url: route.url })
    })
    return app
  }) as unknown as typeof mod.default
  return { ...mod, default: wrapped }
})

type Json = Record<string, any>

/** Fastify's `/v1/jobs/:id` is OpenAPI's `/v1/jobs/{id}`. */
function openApiPath (url: string): string {
  return url.replace(/:([A-Za-z0-9_]+)/g, '{$1}')
}

/** Resolves a local JSON pointer such as `#/components/schemas/JobStatus`. */
function resolvePointer (doc: Json, ref: string): unknown {
  expect(ref.startsWith('#/'), ref).toBe(true)
  let node: any = doc
  for (const part of ref.slice(2).split('/').map(p => p.replace(/~1/g, '/').replace(/~0/g, '~'))) {
    node = node?.[part]
  }
  return node
}

function collectRefs (node: unknown, out: string[] = []): string[] {
  if (Array.isArray(node)) for (const x of node) collectRefs(x, out)
  else if (node !== null && typeof node === 'object') {
    for (const [k, v] of Object.entries(node)) {
      if (k === '$ref' && typeof v === 'string') out.push(v)
      else collectRefs(v, out)
    }
  }
  return out
}

describe('OpenAPI description', () => {
  let app: FastifyInstance
  let doc: Json

  beforeEach(async () => {
    registered.length = 0
    app = createApiServer({ agent: new FakeAgent() })
    await app.ready()
    const res = await app.inject({ url: '/openapi.json' })
    expect(res.statusCode).toBe(200)
    expect(res.headers['content-type']).toMatch(/^application\/json/)
    doc = res.json()
  })
  afterEach(async () => { await app.close() })

  it('is OpenAPI 3.1 with a title and version', () => {
    expect(doc.openapi).toMatch(/^3\.1\./)
    expect(doc.info.title).toBeTruthy()
    expect(doc.info.version).toMatch(/^\d+\.\d+\.\d+/)
  })

  it('describes every registered route (HEAD aside), and nothing that is not one', () => {
    const routes = registered.filter(r => r.method !== 'HEAD')
    expect(routes.length).toBeGreaterThanOrEqual(12)
    for (const { method, url } of routes) {
      const path = doc.paths[openApiPath(url)]
      expect(path, `${method} ${url} is missing from paths`).toBeDefined()
      expect(path[method.toLowerCase()], `${method} ${url} has no operation`).toBeDefined()
    }
    const described = Object.entries(doc.paths as Json).flatMap(([path, item]) =>
      Object.keys(item).filter(k => k !== 'parameters').map(m => `${m.toUpperCase()} ${path}`))
    const actual = new Set(routes.map(r => `${r.method} ${openApiPath(r.url)}`))
    for (const op of described) expect(actual.has(op), `${op} is described but not served`).toBe(true)
  })

  it('gives every operation an id, a summary, responses, and declares every path parameter', () => {
    const ids = new Set<string>()
    for (const [path, item] of Object.entries(doc.paths as Json)) {
      const params = [...path.matchAll(/\{(\w+)\}/g)].map(m => m[1])
      for (const [method, op] of Object.entries(item as Json)) {
        if (method === 'parameters') continue
        expect(op.operationId, `${method} ${path}`).toBeTruthy()
        expect(ids.has(op.operationId)).toBe(false)
        ids.add(op.operationId)
        expect(op.summary).toBeTruthy()
        expect(Object.keys(op.responses).length).toBeGreaterThan(0)
        const declared = [...(item.parameters ?? []), ...(op.parameters ?? [])].filter((p: Json) => p.in === 'path').map((p: Json) => p.name)
        expect(declared.sort()).toEqual(params.sort())
      }
    }
  })

  it('takes the job spec schema from jobSpecJsonSchema(), for JSON and YAML bodies', () => {
    expect(doc.components.schemas.JobSpecInput).toEqual(jobSpecJsonSchema())
    for (const path of ['/v1/jobs', '/v1/plan']) {
      const content = doc.paths[path].post.requestBody.content
      expect(Object.keys(content).sort()).toEqual(['application/json', 'application/x-yaml', 'application/yaml', 'text/yaml'])
      for (const media of Object.values(content) as Json[]) {
        expect(resolvePointer(doc, media.schema.$ref)).toEqual(jobSpecJsonSchema())
      }
    }
    expect(doc.paths['/v1/schema/job'].get.responses['200'].content['application/json'].schema.$ref).toBe('#/components/schemas/JobSpecInput')
  })

  it('documents the error shape on the error answers', () => {
    const error = doc.components.schemas.Error
    expect(error.properties.error.required).toEqual(['code', 'message'])
    expect(error.properties.error.properties.issues.items.properties).toHaveProperty('path')
    const submit = doc.paths['/v1/jobs'].post.responses
    expect(resolvePointer(doc, submit['400'].$ref)).toMatchObject({ content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } })
    expect(doc.paths['/v1/jobs/{id}'].get.responses['404']).toBeDefined()
    expect(doc.paths['/v1/jobs/{id}'].get.responses['409']).toBeDefined()
  })

  it('resolves every $ref', () => {
    const refs = collectRefs(doc)
    expect(refs.length).toBeGreaterThan(20)
    for (const ref of new Set(refs)) expect(resolvePointer(doc, ref), ref).toBeDefined()
  })

  it('answers what the routes answer: a submit\'s answer matches the SubmittedJob schema (JobStatus and replicated), a read JobStatus', async () => {
    const res = await app.inject({ method: 'POST', url: '/v1/jobs', payload: { image: 'busybox' } })
    const body = res.json()
    const [status, extra] = doc.components.schemas.SubmittedJob.allOf
    expect(status.$ref).toBe('#/components/schemas/JobStatus')
    const required = [...doc.components.schemas.JobStatus.required, ...extra.required]
    const properties = { ...doc.components.schemas.JobStatus.properties, ...extra.properties }
    for (const key of required) expect(body, key).toHaveProperty(key)
    for (const key of Object.keys(body)) expect(properties, key).toHaveProperty(key)
    expect(doc.paths['/v1/jobs'].post.responses['202'].content['application/json'].schema.$ref).toBe('#/components/schemas/SubmittedJob')
    const read = (await app.inject({ url: `/v1/jobs/${body.id as string}` })).json()
    for (const key of doc.components.schemas.JobStatus.required) expect(read, key).toHaveProperty(key)
    for (const key of Object.keys(read)) expect(doc.components.schemas.JobStatus.properties, key).toHaveProperty(key)
  })

  it('documents the bearer token only when the server requires one, and keeps public routes open', async () => {
    expect(doc.security).toBeUndefined()
    const secured = createApiServer({ agent: new FakeAgent(), token: 't0k' })
    try {
      const res = await secured.inject({ url: '/openapi.json' })
      expect(res.statusCode).toBe(200)
      const securedDoc = res.json()
      expect(securedDoc.security).toEqual([{ bearerAuth: [] }])
      expect(securedDoc.components.securitySchemes.bearerAuth).toMatchObject({ type: 'http', scheme: 'bearer' })
      for (const path of ['/', '/healthz', '/openapi.json']) expect(securedDoc.paths[path].get.security).toEqual([])
      expect(securedDoc.paths['/v1/jobs'].get.responses['401']).toBeDefined()
    } finally {
      await secured.close()
    }
    expect(openApiDocument({ auth: true }).security).toEqual([{ bearerAuth: [] }])
  })
})
