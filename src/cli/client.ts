// HTTP client for the agent's API, used by the CLI. Global fetch with timeouts; turns
// transport failures into AgentUnreachableError and error bodies into ApiError, so the
// CLI can print one clear line for each instead of a stack trace.
import type { NodeView } from '../agent/agent-api.ts'
import { DEFAULT_API_HOST, DEFAULT_API_PORT } from '../constants.ts'
import type { Explanation, JobSummary, LogChunk } from '../protocol/job.ts'
import type { JobStatus } from '../api/status.ts'

export const DEFAULT_API_URL = `http://${DEFAULT_API_HOST}:${DEFAULT_API_PORT}`
/** Per-request limit for ordinary calls. A follow stream has no overall limit, only one
 *  for the response headers. */
export const REQUEST_TIMEOUT_MS = 15_000

export interface AgentHealth { ok: boolean, peerId: string, peers: number, draining: boolean, uptimeMs: number }

export interface ApiErrorBody {
  code: string
  message: string
  issues?: Array<{ path: string, message: string }>
  matches?: string[]
}

export class ApiError extends Error {
  readonly code: string
  readonly issues?: Array<{ path: string, message: string }>
  readonly matches?: string[]
  /** The job id the caller asked about, when the request was about one. */
  jobId?: string
  constructor (readonly status: number, body: ApiErrorBody) {
    super(body.message)
    this.name = 'ApiError'
    this.code = body.code
    if (body.issues !== undefined) this.issues = body.issues
    if (body.matches !== undefined) this.matches = body.matches
  }
}

export class AgentUnreachableError extends Error {
  readonly code = 'ERR_AGENT_UNREACHABLE'
  constructor (readonly url: string, readonly causeCode: string, options?: ErrorOptions) {
    super(`cannot reach the bidmesh agent at ${url}: ${causeCode}`, options)
    this.name = 'AgentUnreachableError'
  }
}

export class BadApiUrlError extends Error {
  readonly code = 'ERR_BAD_API_URL'
  constructor (readonly input: string) {
    super(`not an API address: ${input} (expected http://host:port or host:port)`)
    this.name = 'BadApiUrlError'
  }
}

/** Accepts `http(s)://host:port[/base]` or a bare `host:port`; returns the base URL
 *  without a trailing slash. */
export function normalizeApiUrl (input: string): string {
  let text = input.trim()
  // `new URL('localhost:7700')` would read "localhost" as a scheme, so a missing `://`
  // means a bare host:port.
  if (!/^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(text)) text = `http://${text}`
  let url: URL
  try {
    url = new URL(text)
  } catch {
    throw new BadApiUrlError(input)
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.hostname === '') throw new BadApiUrlError(input)
  return url.origin + url.pathname.replace(/\/+$/, '')
}

/** The flag wins, then $BIDMESH_API, then the default local agent. */
export function resolveApiUrl (flag: string | undefined, env: Record<string, string | undefined>): string {
  const fromEnv = env.BIDMESH_API
  return normalizeApiUrl(flag ?? (fromEnv !== undefined && fromEnv !== '' ? fromEnv : DEFAULT_API_URL))
}

/** The most specific name for why a request never got an answer: undici wraps the socket
 *  error (ECONNREFUSED, ENOTFOUND...) as `cause`, sometimes two levels deep. */
function causeCode (err: unknown): string {
  let e: any = err
  for (let depth = 0; depth < 4 && e != null; depth++) {
    if (e.name === 'TimeoutError') return 'ETIMEDOUT'
    if (typeof e.code === 'string' && e.code !== '') return e.code
    if (e.cause == null) break
    e = e.cause
  }
  return typeof e?.message === 'string' && e.message !== '' ? e.message : 'unknown error'
}

export interface RequestOptions {
  body?: string
  contentType?: string
  signal?: AbortSignal
  timeoutMs?: number
  jobId?: string
}

export class ApiClient {
  readonly baseUrl: string
  private readonly token: string | undefined

  constructor (baseUrl: string, options: { token?: string } = {}) {
    this.baseUrl = normalizeApiUrl(baseUrl)
    this.token = options.token
  }

  private headers (contentType?: string): Record<string, string> {
    const h: Record<string, string> = { accept: 'application/json' }
    if (contentType !== undefined) h['content-type'] = contentType
    if (this.token !== undefined && this.token !== '') h.authorization = `Bearer ${this.token}`
    return h
  }

  /** Sends a request; transport failures become AgentUnreachableError. A user abort is
   *  rethrown as it is. */
  private async send (method: string, path: string, options: RequestOptions, signal: AbortSignal): Promise<Response> {
    try {
      return await fetch(this.baseUrl + path, {
        method,
        headers: this.headers(options.contentType),
        ...(options.body !== undefined ? { body: options.body } : {}),
        signal
      })
    } catch (err) {
      if (options.signal?.aborted === true) throw err
      throw new AgentUnreachableError(this.baseUrl, causeCode(err), { cause: err })
    }
  }

  private async failure (res: Response, options: RequestOptions): Promise<ApiError> {
    let text = ''
    try { text = await res.text() } catch {}
    let body: ApiErrorBody = { code: `HTTP_${res.status}`, message: `HTTP ${res.status} ${res.statusText}` }
    try {
      const parsed = JSON.parse(text)
      if (typeof parsed?.error?.code === 'string') body = parsed.error
    } catch {}
    const err = new ApiError(res.status, body)
    if (options.jobId !== undefined) err.jobId = options.jobId
    return err
  }

  async request<T> (method: string, path: string, options: RequestOptions = {}): Promise<T> {
    const timeout = AbortSignal.timeout(options.timeoutMs ?? REQUEST_TIMEOUT_MS)
    const signal = options.signal !== undefined ? AbortSignal.any([timeout, options.signal]) : timeout
    const res = await this.send(method, path, options, signal)
    if (!res.ok) throw await this.failure(res, options)
    let text: string
    try {
      text = await res.text()
    } catch (err) {
      if (options.signal?.aborted === true) throw err
      throw new AgentUnreachableError(this.baseUrl, causeCode(err), { cause: err })
    }
    return JSON.parse(text) as T
  }

  /** `replicated` is absent from an older agent's answer. */
  submit (spec: string, contentType: string): Promise<JobStatus & { replicated?: boolean }> {
    return this.request('POST', '/v1/jobs', { body: spec, contentType })
  }

  plan (spec: string, contentType: string): Promise<Explanation> {
    return this.request('POST', '/v1/plan', { body: spec, contentType })
  }

  /** With waitMs, the agent holds the request until the job finishes (up to waitMs). */
  getJob (id: string, options: { signal?: AbortSignal, waitMs?: number } = {}): Promise<JobStatus> {
    const { waitMs, ...rest } = options
    const qs = waitMs !== undefined ? `?waitMs=${waitMs}` : ''
    // The usual timeout counts from the end of the wait.
    return this.request('GET', `/v1/jobs/${encodeURIComponent(id)}${qs}`, { ...rest, jobId: id, ...(waitMs !== undefined ? { timeoutMs: waitMs + REQUEST_TIMEOUT_MS } : {}) })
  }

  async listJobs (options: { state?: string, limit?: number } = {}): Promise<JobSummary[]> {
    const q = new URLSearchParams()
    if (options.state !== undefined) q.set('state', options.state)
    if (options.limit !== undefined) q.set('limit', String(options.limit))
    const qs = q.size > 0 ? `?${q.toString()}` : ''
    return (await this.request<{ jobs: JobSummary[] }>('GET', `/v1/jobs${qs}`)).jobs
  }

  cancel (id: string): Promise<JobStatus> {
    return this.request('DELETE', `/v1/jobs/${encodeURIComponent(id)}`, { jobId: id })
  }

  /** Starts draining the agent; answers its health at once (the drain itself takes as
   *  long as its running jobs). */
  drain (options: { deadlineMs?: number } = {}): Promise<AgentHealth> {
    return this.request('POST', '/v1/drain', options.deadlineMs !== undefined
      ? { body: JSON.stringify({ deadlineMs: options.deadlineMs }), contentType: 'application/json' }
      : {})
  }

  async nodes (): Promise<NodeView[]> {
    return (await this.request<{ nodes: NodeView[] }>('GET', '/v1/nodes')).nodes
  }

  /** Output chunks in seq order. With follow, keeps yielding until the job is terminal and
   *  drained (the server then ends the stream). A stream cut mid-way throws
   *  AgentUnreachableError; resume with `after` set to the last seq seen. */
  async * logs (id: string, options: { follow?: boolean, after?: number, signal?: AbortSignal } = {}): AsyncGenerator<LogChunk> {
    const q = new URLSearchParams({ format: 'ndjson' })
    if (options.follow === true) q.set('follow', '1')
    if (options.after !== undefined) q.set('after', String(options.after))
    // Only the wait for headers is timed: the server sends them at once, while the body
    // may legitimately take as long as the job runs.
    const headers = new AbortController()
    const timer = setTimeout(() => headers.abort(new DOMException('no response headers', 'TimeoutError')), REQUEST_TIMEOUT_MS)
    const signal = options.signal !== undefined ? AbortSignal.any([headers.signal, options.signal]) : headers.signal
    const reqOptions: RequestOptions = { jobId: id, ...(options.signal !== undefined ? { signal: options.signal } : {}) }
    let res: Response
    try {
      res = await this.send('GET', `/v1/jobs/${encodeURIComponent(id)}/logs?${q.toString()}`, reqOptions, signal)
    } finally {
      clearTimeout(timer)
    }
    if (!res.ok) throw await this.failure(res, reqOptions)
    if (res.body === null) return
    const decoder = new TextDecoder()
    const reader = res.body.getReader()
    let buffered = ''
    let done = false
    try {
      while (!done) {
        let read: { done: boolean, value?: Uint8Array }
        try {
          read = await reader.read()
        } catch (err) {
          if (options.signal?.aborted === true) throw err
          throw new AgentUnreachableError(this.baseUrl, causeCode(err), { cause: err })
        }
        done = read.done
        buffered += read.value !== undefined ? decoder.decode(read.value, { stream: !done }) : decoder.decode()
        let nl: number
        while ((nl = buffered.indexOf('\n')) >= 0) {
          const line = buffered.slice(0, nl)
          buffered = buffered.slice(nl + 1)
          if (line.trim() !== '') yield JSON.parse(line) as LogChunk
        }
      }
    } finally {
      // The consumer stopped early (or an error): release the connection.
      if (!done) await reader.cancel().catch(() => {})
    }
    if (buffered.trim() !== '') yield JSON.parse(buffered) as LogChunk
  }
}
