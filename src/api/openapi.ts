// The OpenAPI 3.1 description of the agent's HTTP API, served at /openapi.json. A plain
// object rather than a generator: the routes are few, and writing them out keeps every
// status and error code documented on purpose. The job spec's schema is not written here:
// it is jobSpecJsonSchema(), made from the same zod schema the agent validates with, so the
// description cannot drift from what is accepted. test/api/openapi.test.ts checks that every
// registered route is described and that every $ref resolves.
import { createRequire } from 'node:module'
import { JobStates } from '../protocol/job.ts'
import { jobSpecJsonSchema } from '../protocol/job-spec.ts'
import { MAX_JOB_WAIT_MS, MAX_LIST_LIMIT, YAML_CONTENT_TYPES } from './constants.ts'

type Json = Record<string, unknown>

const ref = (name: string): Json => ({ $ref: `#/components/schemas/${name}` })
const response = (name: string): Json => ({ $ref: `#/components/responses/${name}` })
const json = (schema: Json): Json => ({ 'application/json': { schema } })

function packageVersion (): string {
  try {
    return createRequire(import.meta.url)('../../package.json').version as string
  } catch {
    return '0.0.0'
  }
}

const nullable = (schema: Json): Json => ({ anyOf: [schema, { type: 'null' }] })
const isoTime = { type: 'string', format: 'date-time' }
const REASONS = ['exit', 'oom', 'timeout', 'cancelled', 'unplaceable', 'lost', 'image', 'error']

function schemas (): Record<string, Json> {
  return {
    JobSpecInput: jobSpecJsonSchema() as Json,
    Error: {
      type: 'object',
      description: 'Every error answer has this shape. `code` is stable; `message` is for humans.',
      required: ['error'],
      properties: {
        error: {
          type: 'object',
          required: ['code', 'message'],
          properties: {
            code: { type: 'string', examples: ['ERR_INVALID_JOB_SPEC', 'ERR_UNKNOWN_JOB', 'ERR_UNAUTHORIZED'] },
            message: { type: 'string' },
            issues: {
              type: 'array',
              description: 'With ERR_INVALID_JOB_SPEC: one entry per bad field.',
              items: {
                type: 'object',
                required: ['path', 'message'],
                properties: {
                  path: { type: 'string', description: 'Dotted field path, e.g. `resources.memory`; empty for the whole spec.' },
                  message: { type: 'string' }
                }
              }
            },
            matches: { type: 'array', items: { type: 'string' }, description: 'With ERR_AMBIGUOUS_JOB_ID: the job ids the prefix matches.' }
          }
        }
      }
    },
    Health: {
      type: 'object',
      required: ['ok', 'peerId', 'peers', 'draining', 'uptimeMs'],
      properties: {
        ok: { type: 'boolean' },
        peerId: { type: 'string' },
        peers: { type: 'integer', description: 'Connected mesh peers.' },
        draining: { type: 'boolean' },
        uptimeMs: { type: 'integer' }
      }
    },
    JobState: { type: 'string', enum: [...JobStates] },
    JobReason: { type: 'string', enum: REASONS },
    JobSpec: {
      type: 'object',
      description: 'The normalized spec the agent stores and runs (sizes in bytes, durations in ms).',
      required: ['image', 'command', 'env', 'cpuMilli', 'memoryBytes', 'pidsLimit', 'timeoutMs', 'retries', 'constraints', 'network'],
      properties: {
        image: { type: 'string' },
        name: { type: 'string' },
        command: { type: 'array', items: { type: 'string' } },
        env: { type: 'object', additionalProperties: { type: 'string' }, description: 'The values of the keys in `secretEnv` read `[REDACTED]`.' },
        secretEnv: { type: 'array', items: { type: 'string' }, description: 'Keys of `env` whose values are secret; absent when none.' },
        cpuMilli: { type: 'integer' },
        memoryBytes: { type: 'integer' },
        pidsLimit: { type: 'integer' },
        timeoutMs: { type: 'integer' },
        retries: { type: 'integer' },
        constraints: { type: 'object', additionalProperties: { type: 'string' } },
        network: { type: 'string', enum: ['none', 'bridge'] },
        placement: { type: 'string', enum: ['binpack', 'spread'] }
      }
    },
    NodeScore: {
      type: 'object',
      required: ['node', 'score', 'components'],
      properties: {
        node: { type: 'string' },
        score: { type: 'number' },
        components: { type: 'object', additionalProperties: { type: 'number' }, description: 'Named scorer parts, e.g. `{ binpack: 0.8 }`.' }
      }
    },
    Explanation: {
      type: 'object',
      description: 'Why a placement came out as it did.',
      required: ['consideredNodes', 'filtered', 'top', 'candidates', 'decidedAtMs'],
      properties: {
        consideredNodes: { type: 'integer' },
        filtered: {
          type: 'object',
          additionalProperties: { type: 'integer' },
          description: 'Reason → nodes filtered for it, e.g. `{ "memory": 3, "label zone=a": 2, "memory (larger than node)": 1 }`.'
        },
        top: { type: 'array', items: ref('NodeScore'), description: 'Best-scored feasible nodes, best first.' },
        candidates: { type: 'array', items: { type: 'string' }, description: 'Nodes asked to bid (none when the award came from the view).' },
        decidedFrom: { type: 'string', enum: ['view'], description: 'Present when the job was awarded to the best node in the owner\'s capacity view with no bid round; that node checks its own books and declines if the job does not fit.' },
        refused: { type: 'object', additionalProperties: { type: 'integer' }, description: 'Bids refused by the bidders, by reason.' },
        winner: { type: 'string' },
        decidedAtMs: { type: 'number' }
      }
    },
    JobEvent: {
      type: 'object',
      required: ['atMs', 'type'],
      properties: {
        atMs: { type: 'number' },
        type: { type: 'string' },
        epoch: { type: 'integer' },
        node: { type: 'string' },
        detail: { type: 'string' }
      }
    },
    AttemptStatus: {
      type: 'object',
      required: ['epoch', 'node', 'state', 'awardedAt', 'startedAt', 'finishedAt', 'exitCode', 'reason', 'error'],
      properties: {
        epoch: { type: 'integer' },
        node: { type: 'string' },
        state: { type: 'string', enum: ['awarded', 'running', 'exited', 'lost', 'declined', 'cancelled'] },
        awardedAt: nullable(isoTime),
        startedAt: nullable(isoTime),
        finishedAt: nullable(isoTime),
        exitCode: nullable({ type: 'integer' }),
        reason: nullable(ref('JobReason')),
        error: nullable({ type: 'string' })
      }
    },
    JobStatus: {
      type: 'object',
      required: ['id', 'name', 'state', 'reason', 'exitCode', 'node', 'owner', 'publisher', 'epoch', 'term', 'replicas',
        'attempts', 'createdAt', 'updatedAt', 'startedAt', 'finishedAt', 'spec', 'explanation', 'events'],
      properties: {
        id: { type: 'string' },
        name: nullable({ type: 'string' }),
        state: ref('JobState'),
        reason: nullable(ref('JobReason')),
        exitCode: nullable({ type: 'integer' }),
        node: nullable({ type: 'string' }),
        owner: { type: 'string', description: 'Agent that runs the job\'s auction and bookkeeping.' },
        publisher: { type: 'string', description: 'Agent whose API accepted the job.' },
        epoch: { type: 'integer', description: 'Attempt counter; fences stale messages.' },
        term: { type: 'integer', description: 'Ownership generation; increases when a replica takes the job over.' },
        replicas: { type: 'array', items: { type: 'string' } },
        attempts: { type: 'array', items: ref('AttemptStatus') },
        createdAt: isoTime,
        updatedAt: isoTime,
        startedAt: nullable(isoTime),
        finishedAt: nullable(isoTime),
        spec: ref('JobSpec'),
        explanation: nullable(ref('Explanation')),
        events: { type: 'array', items: ref('JobEvent') }
      }
    },
    SubmittedJob: {
      allOf: [
        ref('JobStatus'),
        {
          type: 'object',
          required: ['replicated'],
          properties: {
            replicated: {
              type: 'boolean',
              description: 'A quorum of the job\'s replicas holds it (with its owner, a majority of its group of up to 5), the group is as large as the agents alive allow, and the owner sees a majority of the mesh: the job outlives the agent that took it. False (with status 202) otherwise (too few replicas answered in time; the agent is cut off): the job is on that agent\'s disk and its auction has started (or waits for the mesh), and its copies are sent again until a quorum holds them.'
            }
          }
        }
      ]
    },
    JobSummary: {
      type: 'object',
      required: ['id', 'image', 'owner', 'state', 'epoch', 'term', 'createdAtMs', 'updatedAtMs'],
      properties: {
        id: { type: 'string' },
        name: { type: 'string' },
        image: { type: 'string' },
        owner: { type: 'string' },
        state: ref('JobState'),
        reason: ref('JobReason'),
        node: { type: 'string' },
        epoch: { type: 'integer' },
        term: { type: 'integer' },
        createdAtMs: { type: 'number' },
        updatedAtMs: { type: 'number' }
      }
    },
    NodeView: {
      type: 'object',
      required: ['peerId', 'totalCpuMilli', 'freeCpuMilli', 'totalMemoryBytes', 'freeMemoryBytes', 'runningJobs', 'labels',
        'draining', 'seq', 'sentAtMs', 'liveness', 'lastSeenAgoMs', 'self'],
      properties: {
        peerId: { type: 'string' },
        totalCpuMilli: { type: 'integer' },
        freeCpuMilli: { type: 'integer' },
        totalMemoryBytes: { type: 'integer' },
        freeMemoryBytes: { type: 'integer' },
        runningJobs: { type: 'integer' },
        labels: { type: 'object', additionalProperties: { type: 'string' } },
        draining: { type: 'boolean' },
        seq: { type: 'integer' },
        sentAtMs: { type: 'number' },
        addrs: { type: 'array', items: { type: 'string' } },
        liveness: { type: 'string', enum: ['alive', 'suspect', 'gone'] },
        lastSeenAgoMs: { type: 'number', description: 'Since the node\'s last capacity advert, by the answering agent\'s clock.' },
        self: { type: 'boolean', description: 'True for the answering agent.' }
      }
    },
    LogChunk: {
      type: 'object',
      required: ['seq', 'epoch', 'stream', 'atMs', 'data'],
      properties: {
        seq: { type: 'integer', description: 'Increasing; pass the last one seen as `after` to resume.' },
        epoch: { type: 'integer' },
        stream: { type: 'string', enum: ['stdout', 'stderr'] },
        atMs: { type: 'number' },
        data: { type: 'string' }
      }
    }
  }
}

function errorResponse (description: string): Json {
  return { description, content: json(ref('Error')) }
}

/** Shared error answers. Every one has the Error body. */
function responses (): Record<string, Json> {
  return {
    BadRequest: errorResponse('Bad input: ERR_INVALID_JOB_SPEC (with `issues`, one per bad field), ERR_MALFORMED_BODY, ERR_BAD_QUERY, ERR_BAD_JOB_ID, ERR_BAD_REQUEST.'),
    Unauthorized: errorResponse('ERR_UNAUTHORIZED: the agent was started with a token and the request has no valid `Authorization: Bearer` header.'),
    NotFound: errorResponse('ERR_UNKNOWN_JOB: no job has this id or id prefix.'),
    Ambiguous: errorResponse('ERR_AMBIGUOUS_JOB_ID: the prefix matches several jobs (listed in `matches`).'),
    TooLarge: errorResponse('ERR_BODY_TOO_LARGE: the body is over the agent\'s limit.'),
    UnsupportedMediaType: errorResponse('ERR_UNSUPPORTED_MEDIA_TYPE: send JSON or YAML.'),
    Internal: errorResponse('ERR_INTERNAL: an unexpected failure (logged by the agent).'),
    BadGateway: errorResponse('ERR_PEER_UNREACHABLE or ERR_INVALID_RESPONSE: the job\'s owner could not be asked. Retry.'),
    Unavailable: errorResponse('ERR_SHUTTING_DOWN: the agent is stopping.'),
    Timeout: errorResponse('ERR_TIMEOUT: the mesh did not answer in time. Retry.')
  }
}

/** The failures any route can answer with, beside its own. */
function common (secured: boolean): Json {
  return {
    ...(secured ? { 401: response('Unauthorized') } : {}),
    500: response('Internal'),
    503: response('Unavailable')
  }
}

const jobIdParameter: Json = {
  name: 'id',
  in: 'path',
  required: true,
  description: 'A job id or a unique prefix of one (like docker\'s short ids).',
  schema: { type: 'string', minLength: 1, maxLength: 256 }
}

/** A request body that takes the job spec as JSON or YAML. */
function specBody (): Json {
  const schema = ref('JobSpecInput')
  const content: Json = { 'application/json': { schema } }
  for (const type of YAML_CONTENT_TYPES) content[type] = { schema }
  return {
    required: true,
    description: 'A job spec, as JSON or YAML. Sizes such as `256m` and durations such as `5m` are accepted as strings.',
    content
  }
}

export interface OpenApiOptions {
  /** The server requires a bearer token: document it on every non-public route. */
  auth?: boolean
}

export function openApiDocument (options: OpenApiOptions = {}): Json {
  const secured = options.auth === true
  const c = common(secured)
  const open = { security: [] }
  const mesh = { 502: response('BadGateway'), 504: response('Timeout') }
  const jobRead = { 400: response('BadRequest'), 404: response('NotFound'), 409: response('Ambiguous'), ...mesh }
  return {
    openapi: '3.1.0',
    info: {
      title: 'bidmesh agent API',
      version: packageVersion(),
      description: 'Every bidmesh agent serves this API. Any agent answers for any job in the mesh. Errors are `{ error: { code, message, ... } }`.',
      license: { name: 'Apache-2.0', identifier: 'Apache-2.0' }
    },
    // Relative: the description is served by the agent it describes.
    servers: [{ url: '/' }],
    ...(secured ? { security: [{ bearerAuth: [] }] } : {}),
    tags: [
      { name: 'jobs', description: 'Submit, inspect, follow and cancel jobs.' },
      { name: 'mesh', description: 'Nodes, health and operations of this agent.' },
      { name: 'meta', description: 'The dashboard and descriptions of the API.' }
    ],
    paths: {
      '/': {
        get: {
          tags: ['meta'],
          operationId: 'dashboard',
          summary: 'The web dashboard (one HTML page; it calls this API)',
          ...open,
          responses: { 200: { description: 'The dashboard page.', content: { 'text/html': { schema: { type: 'string' } } } } }
        }
      },
      '/openapi.json': {
        get: {
          tags: ['meta'],
          operationId: 'openapi',
          summary: 'This description',
          ...open,
          responses: { 200: { description: 'OpenAPI 3.1 document.', content: json({ type: 'object' }) } }
        }
      },
      '/healthz': {
        get: {
          tags: ['mesh'],
          operationId: 'health',
          summary: 'Liveness of this agent (no token needed)',
          ...open,
          responses: {
            200: { description: 'The agent is up.', content: json(ref('Health')) },
            503: { description: 'The agent is stopping.', content: json(ref('Health')) }
          }
        }
      },
      '/metrics': {
        get: {
          tags: ['mesh'],
          operationId: 'metrics',
          summary: 'Prometheus metrics of this agent (bidmesh_* and process metrics)',
          responses: {
            200: { description: 'Prometheus text exposition format.', content: { 'text/plain': { schema: { type: 'string' } } } },
            ...c
          }
        }
      },
      '/v1/drain': {
        post: {
          tags: ['mesh'],
          operationId: 'drain',
          summary: 'Drain this agent: stop bidding on new jobs; running jobs finish or are handed back',
          requestBody: {
            required: false,
            content: json({
              type: 'object',
              additionalProperties: false,
              properties: { deadlineMs: { type: 'integer', minimum: 0, maximum: 86_400_000, description: 'How long running jobs get before they are handed back.' } }
            })
          },
          responses: {
            202: { description: 'Draining has started; watch `draining` in /healthz.', content: json(ref('Health')) },
            400: response('BadRequest'),
            ...c
          }
        }
      },
      '/v1/jobs': {
        post: {
          tags: ['jobs'],
          operationId: 'submitJob',
          summary: 'Submit a job; the mesh auctions it to a node that fits',
          requestBody: specBody(),
          responses: {
            201: { description: 'Accepted: the job is stored here and on a quorum of its replicas, and its auction has started.', content: json(ref('SubmittedJob')) },
            202: { description: 'Accepted, but too few of its replicas answered in time: the job is stored here and its auction has started; its copies are sent again until a quorum holds them (`replicated`: false).', content: json(ref('SubmittedJob')) },
            400: response('BadRequest'),
            413: response('TooLarge'),
            415: response('UnsupportedMediaType'),
            ...mesh,
            ...c
          }
        },
        get: {
          tags: ['jobs'],
          operationId: 'listJobs',
          summary: 'List jobs, newest first',
          parameters: [
            { name: 'state', in: 'query', required: false, schema: ref('JobState') },
            { name: 'limit', in: 'query', required: false, schema: { type: 'integer', minimum: 1, maximum: MAX_LIST_LIMIT } }
          ],
          responses: {
            200: {
              description: 'Job summaries.',
              content: json({ type: 'object', required: ['jobs'], properties: { jobs: { type: 'array', items: ref('JobSummary') } } })
            },
            400: response('BadRequest'),
            ...mesh,
            ...c
          }
        }
      },
      '/v1/jobs/{id}': {
        parameters: [jobIdParameter],
        get: {
          tags: ['jobs'],
          operationId: 'getJob',
          summary: 'A job\'s state, attempts, placement explanation and events',
          parameters: [
            {
              name: 'waitMs',
              in: 'query',
              required: false,
              description: 'Long poll: if the job has not finished, wait up to this many ms for it to finish, then answer with the job as it is. Waiting clients need not poll.',
              schema: { type: 'integer', minimum: 0, maximum: MAX_JOB_WAIT_MS }
            }
          ],
          responses: { 200: { description: 'The job.', content: json(ref('JobStatus')) }, ...jobRead, ...c }
        },
        delete: {
          tags: ['jobs'],
          operationId: 'cancelJob',
          summary: 'Cancel a job (a finished job is left as it is)',
          responses: { 200: { description: 'The job after the cancel.', content: json(ref('JobStatus')) }, ...jobRead, ...c }
        }
      },
      '/v1/jobs/{id}/logs': {
        parameters: [jobIdParameter],
        get: {
          tags: ['jobs'],
          operationId: 'jobLogs',
          summary: 'A job\'s output; with follow=1 a stream that ends when the job does',
          parameters: [
            { name: 'format', in: 'query', required: false, schema: { type: 'string', enum: ['text', 'ndjson'], default: 'text' } },
            {
              name: 'follow',
              in: 'query',
              required: false,
              description: 'Keep the response open and stream output as it is written; it ends cleanly when the job is over. A cut stream can be resumed with `after`.',
              schema: { type: 'string', enum: ['1', '0', 'true', 'false', 'yes', 'no', ''] }
            },
            { name: 'after', in: 'query', required: false, description: 'Only chunks with a greater `seq`.', schema: { type: 'integer', minimum: 0 } }
          ],
          responses: {
            200: {
              description: 'The output: raw text, or one LogChunk JSON object per line.',
              content: {
                'text/plain': { schema: { type: 'string' } },
                'application/x-ndjson': { schema: ref('LogChunk') }
              }
            },
            ...jobRead,
            ...c
          }
        }
      },
      '/v1/nodes': {
        get: {
          tags: ['mesh'],
          operationId: 'listNodes',
          summary: 'The nodes this agent knows, with capacity and liveness',
          responses: {
            200: {
              description: 'Nodes, this agent included (`self`).',
              content: json({ type: 'object', required: ['nodes'], properties: { nodes: { type: 'array', items: ref('NodeView') } } })
            },
            ...c
          }
        }
      },
      '/v1/plan': {
        post: {
          tags: ['jobs'],
          operationId: 'planJob',
          summary: 'Dry run: where a job would be placed now, and why; nothing is reserved',
          requestBody: specBody(),
          responses: {
            200: { description: 'The placement explanation.', content: json(ref('Explanation')) },
            400: response('BadRequest'),
            413: response('TooLarge'),
            415: response('UnsupportedMediaType'),
            ...c
          }
        }
      },
      '/v1/schema/job': {
        get: {
          tags: ['meta'],
          operationId: 'jobSchema',
          summary: 'The JSON Schema of a job spec (the one POST /v1/jobs validates with)',
          responses: { 200: { description: 'JSON Schema 2020-12.', content: json(ref('JobSpecInput')) }, ...c }
        }
      }
    },
    components: {
      schemas: schemas(),
      responses: responses(),
      ...(secured ? { securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer', description: 'The token the agent was started with.' } } } : {})
    }
  }
}
