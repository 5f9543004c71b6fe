// The agent's HTTP API: a thin translation of HTTP onto AgentApi. It owns no state; every
// decision lives in the agent. What it does own is the error contract: every error body is
// `{ error: { code, message, ...details } }`, a bad input is always a 4xx, and only a
// genuinely unexpected failure is a 500 (and is logged).
import { createHash, timingSafeEqual } from 'node:crypto'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import type { ServerResponse } from 'node:http'
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import YAML from 'yaml'
import type { AgentApi } from '../agent/agent-api.ts'
import { AGENT_DEFAULTS } from '../constants.ts'
import { JobStates, TERMINAL_STATES, type JobRecord, type LogChunk } from '../protocol/job.ts'
import { jobSpecJsonSchema } from '../protocol/job-spec.ts'
import { MAX_JOB_WAIT_MS, MAX_LIST_LIMIT, YAML_CONTENT_TYPES } from './constants.ts'
import { openApiDocument } from './openapi.ts'
import { toJobStatus } from './status.ts'

export interface ApiServerInit {
  agent: AgentApi
  /** A pino (or pino-compatible) logger; false or absent keeps the server silent. */
  logger?: FastifyBaseLogger | false
  bodyLimitBytes?: number
  /** When set, every route but PUBLIC_ROUTES requires `Authorization: Bearer <token>`. */
  token?: string
  /** On close, in-flight requests get this long to finish before every connection is cut.
   *  Without a bound, one client socket that connected but never sent a request (HTTP
   *  clients pre-open them) holds close() open until Node's headersTimeout. Default 2000. */
  closeGraceMs?: number
}

/** How often a followed log stream asks the agent for new output and the job's state. */
export const LOG_FOLLOW_POLL_MS = 200
/** Consecutive failed polls after which a followed stream is cut (about 2 s of failures). */
const FOLLOW_MAX_FAILURES = 10
export { MAX_LIST_LIMIT, YAML_CONTENT_TYPES }
const MAX_JOB_ID_LENGTH = 256


/** Routes served without a token. Health checks come from load balancers that hold none.
 *  The dashboard page and the API description carry no data: the page asks the user for
 *  the token and sends it on each API call, which a browser cannot do for the page itself. */
export const PUBLIC_ROUTES: ReadonlySet<string> = new Set(['/healthz', '/', '/openapi.json'])
/** Longest drain deadline a client may ask for: a day. */
const MAX_DRAIN_DEADLINE_MS = 86_400_000

interface DashboardPage { html: string, csp: string }
let dashboardPage: DashboardPage | undefined

/** The dashboard (one self-contained HTML file), read from disk once per process: it does
 *  not change while the agent runs. Its inline script is allowed by hash in the page's
 *  Content-Security-Policy, so nothing else can run even if some job name slipped past
 *  the page's escaping, and `connect-src 'self'` keeps the page talking to this agent only. */
export function dashboard (): DashboardPage {
  if (dashboardPage !== undefined) return dashboardPage
  const html = readFileSync(new URL('./dashboard.html', import.meta.url), 'utf8')
  const hashes = [...html.matchAll(/<script>([\s\S]*?)<\/script>/g)]
    .map(m => `'sha256-${createHash('sha256').update(m[1]).digest('base64')}'`)
  const csp = [
    "default-src 'none'",
    `script-src ${hashes.join(' ')}`,
    "style-src 'unsafe-inline'",
    "connect-src 'self'",
    "img-src 'self' data:",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'"
  ].join('; ')
  dashboardPage = { html, csp }
  return dashboardPage
}

/** An error this module raises on purpose; its status and code go to the client as they are. */
class HttpError extends Error {
  constructor (readonly statusCode: number, readonly code: string, message: string) {
    super(message)
    this.name = 'HttpError'
  }
}

interface ErrorBody { code: string, message: string, [k: string]: unknown }

const STATUS_CODES: Record<number, string> = {
  400: 'ERR_BAD_REQUEST',
  401: 'ERR_UNAUTHORIZED',
  404: 'ERR_NOT_FOUND',
  405: 'ERR_METHOD_NOT_ALLOWED',
  406: 'ERR_NOT_ACCEPTABLE',
  408: 'ERR_REQUEST_TIMEOUT',
  413: 'ERR_BODY_TOO_LARGE',
  414: 'ERR_URI_TOO_LONG',
  415: 'ERR_UNSUPPORTED_MEDIA_TYPE'
}

/** Maps any thrown value to a status and an error body. Matches on name/code only: message
 *  texts are for humans and may change. */
export function mapError (err: unknown): { status: number, body: ErrorBody, unexpected: boolean } {
  const e = (typeof err === 'object' && err !== null ? err : {}) as Record<string, unknown>
  const name = typeof e.name === 'string' ? e.name : ''
  const code = typeof e.code === 'string' ? e.code : ''
  const message = typeof e.message === 'string' ? e.message : String(err)

  if (name === 'InvalidJobSpecError' || code === 'ERR_INVALID_JOB_SPEC') {
    const issues = Array.isArray(e.issues)
      ? e.issues.map((i: any) => ({ path: String(i?.path ?? ''), message: String(i?.message ?? '') }))
      : []
    return { status: 400, body: { code: 'ERR_INVALID_JOB_SPEC', message, issues }, unexpected: false }
  }
  if (name === 'UnknownJobError' || code === 'ERR_UNKNOWN_JOB') {
    return { status: 404, body: { code: 'ERR_UNKNOWN_JOB', message }, unexpected: false }
  }
  if (name === 'AmbiguousJobIdError' || code === 'ERR_AMBIGUOUS_JOB_ID') {
    const matches = Array.isArray(e.matches) ? e.matches.map(String) : []
    return { status: 409, body: { code: 'ERR_AMBIGUOUS_JOB_ID', message, matches }, unexpected: false }
  }
  if (err instanceof HttpError) {
    return { status: err.statusCode, body: { code: err.code, message }, unexpected: false }
  }
  switch (code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return { status: 413, body: { code: 'ERR_BODY_TOO_LARGE', message }, unexpected: false }
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return { status: 415, body: { code: 'ERR_UNSUPPORTED_MEDIA_TYPE', message }, unexpected: false }
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return { status: 400, body: { code: 'ERR_MALFORMED_BODY', message }, unexpected: false }
  }
  // Failures of the mesh or the agent's own state, not of the request: the client may
  // retry. Not crashes either, so not logged as such.
  if (name === 'TimeoutError') {
    return { status: 504, body: { code: 'ERR_TIMEOUT', message }, unexpected: false }
  }
  if (code === 'ERR_PEER_UNREACHABLE' || code === 'ERR_INVALID_RESPONSE') {
    return { status: 502, body: { code, message }, unexpected: false }
  }
  if (code === 'ERR_STORE_CLOSED') {
    return { status: 503, body: { code: 'ERR_SHUTTING_DOWN', message: 'the agent is shutting down' }, unexpected: false }
  }
  if (name === 'AbortError') {
    // Almost always the client went away mid-request; nobody reads this answer.
    return { status: 503, body: { code: 'ERR_ABORTED', message }, unexpected: false }
  }
  // Fastify's own client errors (bad content length, bad URL, aborted body...) carry a 4xx.
  const status = typeof e.statusCode === 'number' ? e.statusCode : NaN
  if (status >= 400 && status < 500) {
    return { status, body: { code: STATUS_CODES[status] ?? `ERR_HTTP_${status}`, message }, unexpected: false }
  }
  return { status: 500, body: { code: 'ERR_INTERNAL', message: 'internal error' }, unexpected: true }
}

function sha256 (text: string): Buffer {
  return createHash('sha256').update(text).digest()
}

/** Constant-time token check. Hashing first gives both sides the same length, which
 *  timingSafeEqual needs, without leaking the token's length through an early return. */
function tokenMatches (header: string | undefined, expectedDigest: Buffer): boolean {
  if (header === undefined) return false
  const m = /^Bearer[ ]+(\S+)\s*$/i.exec(header)
  if (m == null) return false
  return timingSafeEqual(sha256(m[1]), expectedDigest)
}

/** An AbortSignal that fires when the client goes away before the response is complete.
 *  Only a premature close aborts: 'close' also fires after a normal finish, and aborting
 *  then could cancel work the agent tied to the request's signal (an auction, say). */
function clientGone (reply: FastifyReply): AbortSignal {
  const ac = new AbortController()
  const res = reply.raw
  res.once('close', () => { if (!res.writableFinished) ac.abort() })
  return ac.signal
}

function queryParam (query: unknown, key: string): string | undefined {
  const v = (query as Record<string, unknown> | undefined)?.[key]
  if (v === undefined) return undefined
  if (typeof v !== 'string') throw new HttpError(400, 'ERR_BAD_QUERY', `query parameter ${key} must be given once`)
  return v
}

function intParam (query: unknown, key: string, min: number, max: number): number | undefined {
  const v = queryParam(query, key)
  // `?limit=` from a URL template means "not given", not "zero".
  if (v === undefined || v === '') return undefined
  const n = /^\d{1,15}$/.test(v) ? Number(v) : NaN
  if (!(n >= min && n <= max)) throw new HttpError(400, 'ERR_BAD_QUERY', `query parameter ${key} must be an integer from ${min} to ${max}`)
  return n
}

function boolParam (query: unknown, key: string): boolean {
  const v = queryParam(query, key)
  if (v === undefined) return false
  if (['1', 'true', 'yes', ''].includes(v)) return true
  if (['0', 'false', 'no'].includes(v)) return false
  throw new HttpError(400, 'ERR_BAD_QUERY', `query parameter ${key} must be 1 or 0`)
}

function jobIdParam (request: FastifyRequest): string {
  const id = (request.params as { id?: unknown }).id
  if (typeof id !== 'string' || id.length === 0) throw new HttpError(400, 'ERR_BAD_JOB_ID', 'a job id or id prefix is required')
  if (id.length > MAX_JOB_ID_LENGTH || /[\s\u0000-\u001f]/.test(id)) throw new HttpError(400, 'ERR_BAD_JOB_ID', 'malformed job id')
  return id
}

type LogFormat = 'text' | 'ndjson'

function formatChunk (chunk: LogChunk, format: LogFormat): string {
  return format === 'ndjson' ? JSON.stringify(chunk) + '\n' : chunk.data
}

const CONTENT_TYPES: Record<LogFormat, string> = {
  text: 'text/plain; charset=utf-8',
  ndjson: 'application/x-ndjson; charset=utf-8'
}

export function createApiServer (init: ApiServerInit): FastifyInstance {
  const { agent } = init
  // Read now, so a missing page fails the agent's start rather than a user's first visit.
  const page = dashboard()
  const openapi = openApiDocument({ auth: init.token !== undefined })
  const app = Fastify({
    ...(init.logger === undefined || init.logger === false ? { logger: false } : { loggerInstance: init.logger }),
    bodyLimit: init.bodyLimitBytes ?? AGENT_DEFAULTS.apiBodyLimitBytes,
    // Longer than any job id; a longer path segment is a bad request, answered below.
    routerOptions: { maxParamLength: MAX_JOB_ID_LENGTH + 1 },
    // Errors raised before routing (undecodable URL, over-long parameter) would otherwise
    // get Fastify's own body shape; give them ours.
    frameworkErrors (error, _request, reply) {
      const { status, body } = mapError(error)
      void (reply as FastifyReply).code(status).send({ error: body })
    }
  }) as unknown as FastifyInstance

  // Followed log streams run until their job ends; on close they are cut at once (the
  // client sees a truncated stream and may reconnect elsewhere) rather than holding close().
  const shutdown = new AbortController()
  let graceTimer: NodeJS.Timeout | undefined
  app.addHook('preClose', async () => {
    shutdown.abort()
    graceTimer = setTimeout(() => app.server.closeAllConnections(), init.closeGraceMs ?? 2000)
    graceTimer.unref()
  })
  app.addHook('onClose', async () => { clearTimeout(graceTimer) })

  // Only JSON and YAML bodies: a text/plain spec would reach submit() as a bare string and
  // only fail validation with a confusing message, so it is refused as a media type.
  app.removeContentTypeParser('text/plain')
  app.addContentTypeParser(YAML_CONTENT_TYPES, { parseAs: 'string' }, (_request, body, done) => {
    try {
      // yaml caps alias expansion by default (maxAliasCount), so a "billion laughs" body
      // fails here instead of exhausting memory.
      done(null, YAML.parse(body as string))
    } catch (err) {
      done(new HttpError(400, 'ERR_MALFORMED_BODY', `malformed YAML: ${(err as Error).message}`), undefined)
    }
  })

  if (init.token !== undefined) {
    const expected = sha256(init.token)
    app.addHook('onRequest', async (request, reply) => {
      if (request.routeOptions.url !== undefined && PUBLIC_ROUTES.has(request.routeOptions.url)) return
      if (!tokenMatches(request.headers.authorization, expected)) {
        void reply.header('www-authenticate', 'Bearer')
        throw new HttpError(401, 'ERR_UNAUTHORIZED', 'a valid bearer token is required')
      }
    })
  }

  app.setErrorHandler((err, request, reply) => {
    const { status, body, unexpected } = mapError(err)
    if (unexpected) request.log.error({ err }, 'unexpected error in API handler')
    void reply.code(status).send({ error: body })
  })

  app.setNotFoundHandler((request, reply) => {
    void reply.code(404).send({ error: { code: 'ERR_NOT_FOUND', message: `no route ${request.method} ${request.url.split('?')[0]}` } })
  })

  app.get('/', async (_request, reply) => {
    void reply
      .header('content-type', 'text/html; charset=utf-8')
      .header('content-security-policy', page.csp)
      .header('x-content-type-options', 'nosniff')
      .header('referrer-policy', 'no-referrer')
      .header('cache-control', 'no-cache')
    return page.html
  })

  app.get('/openapi.json', async () => openapi)

  app.get('/healthz', async (_request, reply) => {
    const health = agent.health()
    void reply.code(health.ok ? 200 : 503)
    return health
  })

  app.get('/metrics', async (_request, reply) => {
    const { contentType, body } = await agent.metrics()
    void reply.header('content-type', contentType)
    return body
  })

  app.post('/v1/drain', async (request, reply) => {
    const deadlineMs = drainDeadline(request.body)
    const drained = agent.drain(deadlineMs !== undefined ? { deadlineMs } : undefined)
    // Draining lasts as long as the running jobs do, so the answer is 202 at once and the
    // caller watches /healthz. One turn of the event loop lets a drain that cannot even
    // start (the agent is stopping) answer as the error it is.
    const early = await Promise.race([
      drained.then(() => undefined, (err: unknown) => ({ err })),
      new Promise<undefined>(resolve => setImmediate(resolve, undefined))
    ])
    if (early !== undefined) throw early.err
    drained.catch((err: unknown) => { request.log.error({ err }, 'drain failed') })
    void reply.code(202)
    return agent.health()
  })

  app.post('/v1/jobs', async (request, reply) => {
    const { replicated, ...job } = await agent.submit(request.body, { signal: clientGone(reply) })
    // 202: stored here and auctioned, but not yet on a quorum of replicas (see SubmittedJob).
    void reply.code(replicated ? 201 : 202)
    // The record has just been created: the events that matter are in it, so there is no
    // second round trip for them.
    return { ...toJobStatus({ job, events: [] }), replicated }
  })

  app.get('/v1/jobs', async (request, reply) => {
    const state = queryParam(request.query, 'state') || undefined
    if (state !== undefined && !(JobStates as readonly string[]).includes(state)) {
      throw new HttpError(400, 'ERR_BAD_QUERY', `state must be one of ${JobStates.join(', ')}`)
    }
    const limit = intParam(request.query, 'limit', 1, MAX_LIST_LIMIT)
    const jobs = await agent.listJobs({
      ...(state !== undefined ? { state } : {}),
      ...(limit !== undefined ? { limit } : {}),
      signal: clientGone(reply)
    })
    return { jobs }
  })

  app.get('/v1/jobs/:id', async (request, reply) => {
    const waitMs = intParam(request.query, 'waitMs', 0, MAX_JOB_WAIT_MS)
    return toJobStatus(await agent.getJob(jobIdParam(request), { signal: clientGone(reply), ...(waitMs !== undefined ? { waitMs } : {}) }))
  })

  app.delete('/v1/jobs/:id', async (request, reply) => {
    const signal = clientGone(reply)
    const job = await agent.cancel(jobIdParam(request), { signal })
    // Cancelling appends events; fetch them so the answer matches `GET /v1/jobs/:id`.
    // If the re-read fails the cancel still happened, so answer with the record alone.
    let events: Awaited<ReturnType<AgentApi['getJob']>>['events'] = []
    try {
      events = (await agent.getJob(job.id, { signal })).events
    } catch {}
    return toJobStatus({ job, events })
  })

  app.get('/v1/jobs/:id/logs', async (request, reply) => {
    const formatParam = queryParam(request.query, 'format') ?? 'text'
    if (formatParam !== 'text' && formatParam !== 'ndjson') {
      throw new HttpError(400, 'ERR_BAD_QUERY', 'format must be text or ndjson')
    }
    const format: LogFormat = formatParam
    const follow = boolParam(request.query, 'follow')
    const after = intParam(request.query, 'after', 0, Number.MAX_SAFE_INTEGER)
    const signal = clientGone(reply)
    // Resolve the prefix before any byte is written, so 404 and 409 are ordinary errors.
    const { job } = await agent.getJob(jobIdParam(request), { signal })

    if (!follow) {
      const chunks = await readAllLogs(agent, job.id, after, signal)
      void reply.header('content-type', CONTENT_TYPES[format])
      return chunks.map(c => formatChunk(c, format)).join('')
    }

    reply.hijack()
    await followLogs(agent, job.id, after, format, reply.raw, request.log, shutdown.signal)
  })

  app.get('/v1/nodes', async () => {
    return { nodes: agent.nodes() }
  })

  app.post('/v1/plan', async (request) => {
    return await agent.plan(request.body)
  })

  let schema: unknown
  app.get('/v1/schema/job', async () => {
    schema ??= jobSpecJsonSchema()
    return schema
  })

  return app
}

/** The optional drain body: `{ "deadlineMs": n }`, or nothing. */
function drainDeadline (body: unknown): number | undefined {
  if (body === undefined || body === null) return undefined
  if (typeof body !== 'object' || Array.isArray(body)) throw new HttpError(400, 'ERR_BAD_REQUEST', 'the drain body must be a JSON object')
  const { deadlineMs, ...rest } = body as Record<string, unknown>
  const unknown = Object.keys(rest)
  if (unknown.length > 0) throw new HttpError(400, 'ERR_BAD_REQUEST', `unknown drain option ${unknown[0]}`)
  if (deadlineMs === undefined) return undefined
  if (typeof deadlineMs !== 'number' || !Number.isInteger(deadlineMs) || deadlineMs < 0 || deadlineMs > MAX_DRAIN_DEADLINE_MS) {
    throw new HttpError(400, 'ERR_BAD_REQUEST', `deadlineMs must be an integer from 0 to ${MAX_DRAIN_DEADLINE_MS}`)
  }
  return deadlineMs
}

/** Reads every chunk after `after`, page by page in case the agent caps one read. */
async function readAllLogs (agent: AgentApi, id: string, after: number | undefined, signal: AbortSignal): Promise<LogChunk[]> {
  const all: LogChunk[] = []
  let afterSeq = after
  for (;;) {
    const page = await agent.readLogs(id, { ...(afterSeq !== undefined ? { afterSeq } : {}), signal })
    const fresh = page.filter(c => afterSeq === undefined || c.seq > afterSeq)
    if (fresh.length === 0) return all
    all.push(...fresh)
    afterSeq = fresh[fresh.length - 1].seq
  }
}

/** Streams a job's output as it is written, until the job is terminal and drained or the
 *  client disconnects. Runs on the hijacked raw response: Fastify is no longer involved. */
async function followLogs (
  agent: AgentApi, id: string, after: number | undefined, format: LogFormat,
  res: ServerResponse, log: FastifyBaseLogger, stop: AbortSignal
): Promise<void> {
  const ac = new AbortController()
  const signal = AbortSignal.any([ac.signal, stop])
  const onClose = (): void => ac.abort()
  res.once('close', onClose)
  let timer: NodeJS.Timeout | undefined
  let wake: (() => void) | undefined
  const onAbort = (): void => wake?.()
  let failed = false
  signal.addEventListener('abort', onAbort)
  try {
    res.writeHead(200, {
      'content-type': CONTENT_TYPES[format],
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff'
    })
    // Send the headers now: a client waiting on the response (fetch) should not wait for
    // the job's first output to learn the stream has started.
    res.flushHeaders()
    let afterSeq = after
    let failures = 0
    const pause = async (): Promise<void> => {
      await new Promise<void>(resolve => {
        wake = resolve
        timer = setTimeout(resolve, LOG_FOLLOW_POLL_MS)
        if (signal.aborted) resolve()
      })
      clearTimeout(timer)
      timer = undefined
    }
    while (!signal.aborted) {
      let job: JobRecord
      let fresh: LogChunk[]
      try {
        // State first, then output: when the state read says terminal, every chunk the job
        // ever wrote is already readable, so an empty read after it means we are done.
        job = (await agent.getJob(id, { signal })).job
        const page = await agent.readLogs(id, { ...(afterSeq !== undefined ? { afterSeq } : {}), signal })
        fresh = page.filter(c => afterSeq === undefined || c.seq > afterSeq)
        failures = 0
      } catch (err) {
        // A remote owner can be briefly unreachable (a restart, a takeover by a replica):
        // keep the stream open through a few failed polls before giving up on it.
        if (signal.aborted || ++failures >= FOLLOW_MAX_FAILURES) throw err
        await pause()
        continue
      }
      for (const chunk of fresh) {
        afterSeq = chunk.seq
        if (!res.write(formatChunk(chunk, format))) {
          // Respect backpressure from a slow client; give up when it disconnects.
          await once(res, 'drain', { signal })
        }
      }
      const terminal = TERMINAL_STATES.has(job.state)
      if (terminal && fresh.length === 0) break
      // A terminal job with output still coming out is drained without pausing.
      if (!terminal || fresh.length === 0) await pause()
    }
  } catch (err) {
    if (!signal.aborted) log.warn({ err, jobId: id }, 'log follow stopped on an error')
    failed = true
  } finally {
    clearTimeout(timer)
    signal.removeEventListener('abort', onAbort)
    res.off('close', onClose)
    // A clean end means "the job is over and this is all its output". Anything else (an
    // error, the server closing) cuts the connection instead, so the client can tell a
    // truncated stream from a finished one.
    if (failed || signal.aborted) res.destroy()
    else if (!res.writableEnded) res.end()
  }
}
