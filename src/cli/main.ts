// The `bidmesh` command line: the agent itself (`bidmesh agent`) and a thin client over its
// HTTP API for everything else. Exit codes: 0 ok; 1 a CLI-level failure (the API said no,
// bad file); 2 a usage error, or a job that no known node can ever fit (`run`/`submit`
// without --wait); 125 the agent is unreachable. `run` and `submit` (without -d) exit with
// the job's own code, mapped like `docker run` for deaths that have no code.
import { readFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander'
import type { AgentCliOptions } from '../agent/run.ts'
import { DEFAULT_API_HOST, DEFAULT_API_PORT, DEFAULT_LISTEN } from '../constants.ts'
import type { JobStatus } from '../api/status.ts'
import { JobStates, type Explanation, type LogChunk } from '../protocol/job.ts'
import { parseDurationMs, parseSize } from '../protocol/units.ts'
import { AgentUnreachableError, ApiClient, ApiError, BadApiUrlError, DEFAULT_API_URL, resolveApiUrl } from './client.ts'
import {
  filteredSummary, formatExplanation, formatJobs, formatNodes, formatStatus, shortPeer, stateText
} from './format.ts'

export interface Output {
  write (chunk: string): boolean | void
  once? (event: string, listener: (...args: any[]) => void): unknown
}

/** Where the CLI reads and writes. Tests pass their own to run commands in-process. */
export interface CliIo {
  stdout: Output
  stderr: Output
  env: Record<string, string | undefined>
  readStdin: () => Promise<string>
}

/** A failure the CLI reports as one line, with its exit code. */
export class CliError extends Error {
  constructor (message: string, readonly exitCode = 1) {
    super(message)
    this.name = 'CliError'
  }
}

export const EXIT_USAGE = 2
/** `run`/`submit`: the job cannot be placed on any known node. Like Nomad's `job run`, 2
 *  (shared with usage errors: both mean "as asked, this cannot work"). */
export const EXIT_UNPLACEABLE = 2
export const EXIT_UNREACHABLE = 125
/** How often `run`/`submit` re-read the job's state for the progress lines. */
const PROGRESS_POLL_MS = 500
/** Reconnections of a follow stream before giving up. */
const MAX_FOLLOW_RETRIES = 5

const EXECUTORS = ['docker', 'noop'] as const

async function readProcessStdin (): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}

function packageVersion (): string {
  try {
    return createRequire(import.meta.url)('../../package.json').version as string
  } catch {
    return '0.0.0'
  }
}

/** Writes respecting backpressure, so following a chatty job does not buffer its whole
 *  output in memory when stdout is a slow pipe. */
async function write (out: Output, data: string): Promise<void> {
  if (out.write(data) !== false || typeof out.once !== 'function') return
  await new Promise<void>(resolve => {
    out.once!('drain', resolve)
    out.once!('close', resolve)
    out.once!('error', resolve)
  })
}

function sleep (ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise(resolve => {
    if (signal?.aborted === true) { resolve(); return }
    const onAbort = (): void => { clearTimeout(timer); resolve() }
    const timer = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve() }, ms)
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}

// ---- option parsers: a bad value is a usage error (exit 2) before any request is made ----

function collect (value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value]
}

function keyValue (value: string, previous: Record<string, string> | undefined): Record<string, string> {
  const eq = value.indexOf('=')
  if (eq <= 0) throw new InvalidArgumentError('expected KEY=VALUE')
  return { ...(previous ?? {}), [value.slice(0, eq)]: value.slice(eq + 1) }
}

function positiveNumber (value: string): number {
  const n = Number(value)
  if (value.trim() === '' || !Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('expected a positive number')
  return n
}

function nonNegativeInt (value: string): number {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError('expected a whole number')
  return Number(value)
}

function sizeArg (value: string): string {
  if (parseSize(value) === undefined) throw new InvalidArgumentError('expected a size such as 512m or 2g')
  return value
}

function durationArg (value: string): string {
  if (parseDurationMs(value) === undefined) throw new InvalidArgumentError('expected a duration such as 30s, 5m or 1h')
  return value
}

// ---- waiting for a job -----------------------------------------------------------------

/** The exit code of `bidmesh run`: the job's own code, or docker's conventions for deaths
 *  without one (137 killed/OOM, 124 timeout like coreutils' timeout, 125 could not start,
 *  130 cancelled like Ctrl-C). */
export function exitCodeFor (s: Pick<JobStatus, 'state' | 'reason' | 'exitCode'>): number {
  const code = typeof s.exitCode === 'number' && Number.isInteger(s.exitCode) ? s.exitCode & 0xff : undefined
  if (s.state === 'succeeded') return code ?? 0
  if (s.state === 'cancelled' || s.reason === 'cancelled') return 130
  switch (s.reason) {
    case 'oom': return 137
    case 'timeout': return 124
    case 'image':
    case 'error': return 125
    default:
      // A failed job never reports success, even if its code got lost on the way.
      return code !== undefined && code !== 0 ? code : 1
  }
}

/** The stderr line that describes where a job stands, or undefined when it has none. */
export function progressLine (s: JobStatus): string | undefined {
  switch (s.state) {
    case 'pending': {
      const why = filteredSummary(s.explanation?.filtered ?? undefined)
      if (why !== '') return `pending: ${why}`
      return s.reason === 'unplaceable' ? 'pending: no known node can fit it yet' : 'pending: waiting for placement'
    }
    case 'scheduled': return `scheduled on ${shortPeer(s.node)}`
    case 'running': return `running on ${shortPeer(s.node)}`
    default: return undefined
  }
}

/** Filter reasons that no change of load lifts: the job is larger than the node, or the
 *  node lacks a label the job requires. Full, draining or silent nodes may still take it. */
const LASTING_REASON = /^(memory \(larger than node\)|cpu \(larger than node\)|label .+)$/

/** True when a pending job can never fit any node its owner knows: every known node was
 *  filtered out, each for a lasting reason. Only a new, larger (or differently labelled)
 *  node could take it. */
export function cannotBePlaced (s: Pick<JobStatus, 'state' | 'reason' | 'explanation'>): boolean {
  if (s.state !== 'pending' || s.reason !== 'unplaceable') return false
  const e: Explanation | null = s.explanation
  if (e == null || !(e.consideredNodes > 0) || e.top.length > 0) return false
  const reasons = Object.entries(e.filtered ?? {})
  const filteredNodes = reasons.reduce((sum, [, n]) => sum + n, 0)
  return filteredNodes >= e.consideredNodes && reasons.every(([reason]) => LASTING_REASON.test(reason))
}

/** A chunk of output for `logs --json`: one LogChunk per line, like the API's ndjson. */
function chunkLine (chunk: LogChunk): string {
  return JSON.stringify(chunk) + '\n'
}

/** Streams a job's output to stdout/stderr until the job is terminal, reconnecting from
 *  the last chunk seen when the stream is cut. Returns quietly when `signal` aborts. */
async function followOutput (client: ApiClient, id: string, io: CliIo, options: { signal?: AbortSignal, json?: boolean } = {}): Promise<void> {
  let after: number | undefined
  let failures = 0
  const { signal } = options
  // A function, not a narrowed property read: the signal changes under an await.
  const stopped = (): boolean => signal?.aborted === true
  for (;;) {
    if (stopped()) return
    try {
      for await (const chunk of client.logs(id, { follow: true, ...(after !== undefined ? { after } : {}), ...(signal !== undefined ? { signal } : {}) })) {
        after = chunk.seq
        failures = 0
        if (options.json === true) await write(io.stdout, chunkLine(chunk))
        else await write(chunk.stream === 'stderr' ? io.stderr : io.stdout, chunk.data)
      }
      return
    } catch (err) {
      if (stopped()) return
      // A cut stream or a 5xx (the job's owner briefly unreachable) is worth another try;
      // a 4xx will not change.
      const transient = err instanceof AgentUnreachableError || (err instanceof ApiError && err.status >= 500)
      if (!transient || ++failures > MAX_FOLLOW_RETRIES) throw err
      await sleep(Math.min(250 * 2 ** failures, 5000), signal)
    }
  }
}

/** A job the agent took without a quorum of its replicas (status 202) lives only on that
 *  agent's disk until its copies get through: said on stderr, so a script that reads the id
 *  from stdout is unaffected. */
function warnIfNotReplicated (job: { id: string, replicated?: boolean }, io: CliIo): void {
  if (job.replicated === false) io.stderr.write(`warning: job ${job.id} is stored only on the agent that took it for now: too few of its replicas answered in time (the agent keeps sending them copies)\n`)
}

/** `docker run` without -d: progress on stderr, the job's output on stdout/stderr, and the
 *  job's exit code. Progress is polled beside the log stream so a retry (running → pending →
 *  running elsewhere) shows up while output flows. A job that no known node can ever fit
 *  ends the wait with EXIT_UNPLACEABLE unless `wait` asks to keep waiting for such a node. */
async function waitForJob (client: ApiClient, submitted: JobStatus, io: CliIo, options: { wait?: boolean } = {}): Promise<number> {
  const id = submitted.id
  let lastLine: string | undefined
  // Set once the job is seen to be unplaceable for good; stops following its output.
  let hopeless: JobStatus | undefined
  const giveUp = new AbortController()
  const report = (s: JobStatus): void => {
    const line = progressLine(s)
    if (line !== undefined && line !== lastLine) {
      lastLine = line
      io.stderr.write(line + '\n')
    }
    if (options.wait !== true && hopeless === undefined && cannotBePlaced(s)) {
      hopeless = s
      giveUp.abort()
    }
  }
  io.stderr.write(`submitted ${id}\n`)
  report(submitted)

  const stop = new AbortController()
  const poller = (async () => {
    while (!stop.signal.aborted) {
      await sleep(PROGRESS_POLL_MS, stop.signal)
      if (stop.signal.aborted) return
      try {
        report(await client.getJob(id, { signal: stop.signal }))
      } catch {
        // Progress is best effort; the log stream reports a lost agent.
      }
    }
  })()
  try {
    await followOutput(client, id, io, { signal: giveUp.signal })
  } finally {
    stop.abort()
    await poller
  }
  if (hopeless !== undefined) return await unplaceable(client, hopeless, io)
  const final = await client.getJob(id)
  if (final.state !== 'succeeded' && final.reason !== 'exit') {
    io.stderr.write(`job ${id} ${stateText(final.state, final.reason, final.exitCode)}\n`)
  }
  return exitCodeFor(final)
}

/** Reports a job no known node can fit, with the placement explanation, and cancels it:
 *  the user is no longer watching, and a job that starts hours later when a big node joins
 *  would be a surprise. `--wait` keeps it pending instead. */
async function unplaceable (client: ApiClient, s: JobStatus, io: CliIo): Promise<number> {
  io.stderr.write(`job ${s.id} cannot be placed: it does not fit any known node\n`)
  if (s.explanation !== null) io.stderr.write(formatExplanation(s.explanation).replace(/^(?=.)/gm, '  '))
  try {
    await client.cancel(s.id)
    io.stderr.write(`cancelled ${s.id} (use --wait to keep it pending until a node that fits joins)\n`)
  } catch (err) {
    io.stderr.write(`could not cancel ${s.id} (${(err as Error).message}); it stays pending\n`)
  }
  return EXIT_UNPLACEABLE
}

// ---- spec input --------------------------------------------------------------------------

async function readSpecFile (file: string, io: CliIo): Promise<{ body: string, contentType: string }> {
  let body: string
  if (file === '-') {
    body = await io.readStdin()
  } else {
    try {
      body = await readFile(file, 'utf8')
    } catch (err) {
      throw new CliError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
    }
  }
  // JSON is sent as JSON so its errors read as JSON errors; anything else goes as YAML
  // (which also accepts JSON read from stdin).
  return { body, contentType: /\.json$/i.test(file) ? 'application/json' : 'application/yaml' }
}

interface RunFlags {
  api?: string
  cpus?: number
  memory?: string
  timeout?: string
  retries?: number
  env?: Record<string, string>
  /** names of variables whose values come from the CLI's own environment, marked secret */
  secretEnv?: string[]
  labelConstraint?: Record<string, string>
  name?: string
  network?: 'none' | 'bridge'
  detach?: boolean
  wait?: boolean
}

/** The job spec `bidmesh run` sends: only what the flags set, so the agent's defaults apply. */
export function specFromRunFlags (image: string, command: string[], flags: RunFlags, environment: Record<string, string | undefined> = {}): Record<string, unknown> {
  const spec: Record<string, unknown> = { image }
  if (command.length > 0) spec.command = command
  if (flags.name !== undefined) spec.name = flags.name
  if (flags.env !== undefined) spec.env = flags.env
  if (flags.secretEnv !== undefined && flags.secretEnv.length > 0) {
    // Like `docker run -e NAME`: the value is read from our environment, so it never sits on
    // a command line (visible to every user in ps) or in shell history.
    const env: Record<string, string> = { ...flags.env }
    for (const name of flags.secretEnv) {
      const value = environment[name]
      if (value === undefined) throw new CliError(`--secret-env ${name}: ${name} is not set in this environment`, EXIT_USAGE)
      env[name] = value
    }
    spec.env = env
    spec.secretEnv = [...new Set(flags.secretEnv)]
  }
  const resources: Record<string, unknown> = {}
  if (flags.cpus !== undefined) resources.cpus = flags.cpus
  if (flags.memory !== undefined) resources.memory = flags.memory
  if (Object.keys(resources).length > 0) spec.resources = resources
  if (flags.timeout !== undefined) spec.timeout = flags.timeout
  if (flags.retries !== undefined) spec.retries = flags.retries
  if (flags.labelConstraint !== undefined) spec.constraints = flags.labelConstraint
  if (flags.network !== undefined) spec.network = flags.network
  return spec
}

// ---- error reporting ---------------------------------------------------------------------

function reportError (err: unknown, io: CliIo): number {
  const line = (text: string): void => { io.stderr.write(text + '\n') }
  if (err instanceof CommanderError) {
    // Commander has printed its message already.
    return err.exitCode === 0 ? 0 : EXIT_USAGE
  }
  if (err instanceof AgentUnreachableError) {
    line(`cannot reach the bidmesh agent at ${err.url}: ${err.causeCode} (start one with \`bidmesh agent\`, or set BIDMESH_API to a running agent's address)`)
    return EXIT_UNREACHABLE
  }
  if (err instanceof BadApiUrlError) {
    line(`bidmesh: ${err.message}`)
    return EXIT_USAGE
  }
  if (err instanceof ApiError) {
    switch (err.code) {
      case 'ERR_INVALID_JOB_SPEC':
        line('invalid job spec:')
        for (const issue of err.issues ?? []) line(`  ${issue.path === '' ? '(root)' : issue.path}: ${issue.message}`)
        break
      case 'ERR_UNKNOWN_JOB':
        line(`no job ${err.jobId ?? ''}`.trimEnd())
        break
      case 'ERR_AMBIGUOUS_JOB_ID':
        line(`job id ${err.jobId ?? ''} is ambiguous; it matches: ${(err.matches ?? []).join(', ')}`)
        break
      case 'ERR_UNAUTHORIZED':
        line('the agent requires a token: set BIDMESH_TOKEN')
        break
      default:
        line(`bidmesh: ${err.message} (${err.code}, HTTP ${err.status})`)
    }
    return 1
  }
  const code = (err as { code?: unknown } | null)?.code
  if (code === 'ERR_SWARM_KEY_REQUIRED') {
    line(`bidmesh agent: ${(err as Error).message}`)
    return EXIT_USAGE
  }
  if (code === 'ERR_SWARM_KEY_EXISTS') {
    line(`bidmesh keygen: ${(err as Error).message}`)
    return 1
  }
  if (code === 'ERR_AGENT_CONFIG') {
    // A bad `bidmesh agent` flag value that only the agent's setup could judge.
    line(`bidmesh agent: ${(err as Error).message}`)
    return EXIT_USAGE
  }
  if (err instanceof CliError) {
    line(`bidmesh: ${err.message}`)
    return err.exitCode
  }
  line(`bidmesh: ${err instanceof Error ? err.message : String(err)}`)
  if (io.env.BIDMESH_DEBUG !== undefined && err instanceof Error && err.stack !== undefined) line(err.stack)
  return 1
}

// ---- the program -------------------------------------------------------------------------

function json (value: unknown): string {
  return JSON.stringify(value, null, 2) + '\n'
}

/** Runs one command line (process.argv shape) and returns the exit code. */
export async function runCli (argv: string[], ioOverrides: Partial<CliIo> = {}): Promise<number> {
  const io: CliIo = {
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    readStdin: readProcessStdin,
    ...ioOverrides
  }
  let exitCode = 0
  const clientFor = (opts: { api?: string }): ApiClient => {
    const token = io.env.BIDMESH_TOKEN
    return new ApiClient(resolveApiUrl(opts.api, io.env), token !== undefined && token !== '' ? { token } : {})
  }
  const apiOption = (): Option => new Option('--api <url>', `agent API address (default: $BIDMESH_API or ${DEFAULT_API_URL})`)

  const program = new Command()
  program
    .name('bidmesh')
    .description('Decentralized batch-job scheduler: agents form a mesh, bid on jobs, and run them in containers.')
    .version(packageVersion())
    // `run IMAGE CMD...` passes everything after IMAGE to the job; that needs positional
    // options on the parent.
    .enablePositionalOptions()
    .exitOverride()
    .configureOutput({
      writeOut: s => { io.stdout.write(s) },
      writeErr: s => { io.stderr.write(s) }
    })

  program.command('agent')
    .description('run an agent: join the mesh, serve the HTTP API, run awarded jobs')
    .option('--data-dir <dir>', 'state directory (default: $BIDMESH_DATA_DIR or /var/lib/bidmesh)')
    .option('--listen <multiaddr>', `libp2p listen address, repeatable (default: ${DEFAULT_LISTEN})`, collect)
    .option('--api <host:port>', 'HTTP API listen address', `${DEFAULT_API_HOST}:${DEFAULT_API_PORT}`)
    .option('--bootstrap <multiaddr>', 'a peer to join through, repeatable', collect)
    .option('--cpus <n>', 'CPU cores to offer (default: all, less a reserve)', positiveNumber)
    .option('--memory <size>', 'memory to offer (default: all, less a reserve)', sizeArg)
    .option('--label <key=value>', 'node label, repeatable', keyValue)
    .addOption(new Option('--executor <kind>', 'how jobs run').choices(EXECUTORS))
    .option('--swarm-key <file>', 'join only the private mesh holding this key (see `bidmesh keygen`)')
    .option('--require-private', 'refuse to start without a valid swarm key')
    .option('--publisher <peerId>', 'run only jobs signed by this peer, repeatable (default: any member)', collect)
    .option('--allow-network', 'jobs may ask for the bridge network (default: refused)')
    .option('--allow-host-path <dir>', 'a host directory jobs may mount read-only, repeatable', collect)
    .option('--api-token-file <file>', 'require `Authorization: Bearer <token>` on the HTTP API')
    .option('--insecure-api', 'serve the API beyond loopback without a token (explicit choice)')
    .action(async (opts) => {
      const envDir = io.env.BIDMESH_DATA_DIR
      const options: AgentCliOptions & import('./run-agent.ts').AgentSecurityOptions = {
        ...(opts.swarmKey !== undefined ? { swarmKey: opts.swarmKey } : {}),
        ...(opts.requirePrivate === true ? { requirePrivate: true } : {}),
        ...(opts.publisher !== undefined ? { publishers: opts.publisher } : {}),
        ...(opts.allowNetwork === true ? { allowNetwork: true } : {}),
        ...(opts.allowHostPath !== undefined ? { allowHostPaths: opts.allowHostPath } : {}),
        ...(opts.apiTokenFile !== undefined ? { apiTokenFile: opts.apiTokenFile } : {}),
        ...(opts.insecureApi === true ? { insecureApi: true } : {}),
        dataDir: opts.dataDir ?? (envDir !== undefined && envDir !== '' ? envDir : '/var/lib/bidmesh'),
        listen: opts.listen ?? [DEFAULT_LISTEN],
        api: opts.api,
        bootstrap: opts.bootstrap ?? [],
        labels: opts.label ?? {},
        ...(opts.cpus !== undefined ? { cpus: opts.cpus } : {}),
        ...(opts.memory !== undefined ? { memory: opts.memory } : {}),
        ...(opts.executor !== undefined ? { executor: opts.executor } : {})
      }
      // Loaded here, not at the top: it pulls in libp2p and Docker, which the client
      // commands never need and should not pay for at startup.
      // Lazy: client commands must not load libp2p or Docker.
      const { runAgentCommand: runAgent } = await import('./run-agent.ts')
      await runAgent(options)
    })

  program.command('keygen')
    .description('create a swarm key for a private mesh (give it to every agent with --swarm-key)')
    .requiredOption('-o, --out <file>', 'where to write the key (mode 0600; never overwritten)')
    .action(async (o) => {
      const { runKeygen } = await import('./keygen.ts')
      const r = await runKeygen({ out: o.out })
      io.stdout.write(`${r.path}\n`)
    })

  program.command('run')
    .description('run a job like `docker run`: wait for it, stream its output, exit with its code')
    .addOption(apiOption())
    .option('--cpus <n>', 'CPU cores', positiveNumber)
    .option('--memory <size>', 'memory limit, e.g. 512m', sizeArg)
    .option('--timeout <duration>', 'wall-clock limit per attempt, e.g. 10m', durationArg)
    .option('--retries <n>', 'extra attempts after a failure', nonNegativeInt)
    .option('--env <key=value>', 'environment variable, repeatable', keyValue)
    .option('--secret-env <name>', 'pass variable NAME from this environment, its value kept secret (never shown in status or logs), repeatable', collect)
    .option('--label-constraint <key=value>', 'required node label, repeatable', keyValue)
    .option('--name <name>', 'a human name for the job')
    .addOption(new Option('--network <mode>', 'container network').choices(['none', 'bridge']))
    .option('-d, --detach', 'print the job id and return at once')
    .option('--wait', 'keep waiting when no known node can fit the job (default: explain, cancel it and exit 2)')
    .argument('<image>', 'container image')
    .argument('[command...]', 'command and arguments (flags after IMAGE belong to the command)')
    .passThroughOptions()
    .action(async (image: string, command: string[], flags: RunFlags) => {
      const client = clientFor(flags)
      const spec = specFromRunFlags(image, command, flags, io.env)
      const job = await client.submit(JSON.stringify(spec), 'application/json')
      warnIfNotReplicated(job, io)
      if (flags.detach === true) {
        io.stdout.write(job.id + '\n')
        return
      }
      exitCode = await waitForJob(client, job, io, { wait: flags.wait === true })
    })

  program.command('submit')
    .description('submit a job spec file (YAML or JSON; - for stdin) and wait for it like run')
    .addOption(apiOption())
    .requiredOption('-f, --file <file>', 'job spec file, or - for stdin')
    .option('-d, --detach', 'print the job id and return at once')
    .option('--wait', 'keep waiting when no known node can fit the job (default: explain, cancel it and exit 2)')
    .action(async (opts: { api?: string, file: string, detach?: boolean, wait?: boolean }) => {
      const client = clientFor(opts)
      const { body, contentType } = await readSpecFile(opts.file, io)
      const job = await client.submit(body, contentType)
      warnIfNotReplicated(job, io)
      if (opts.detach === true) {
        io.stdout.write(job.id + '\n')
        return
      }
      exitCode = await waitForJob(client, job, io, { wait: opts.wait === true })
    })

  program.command('status')
    .description("show a job's state, placement and events")
    .addOption(apiOption())
    .argument('<job-id>', 'job id or unique prefix')
    .option('--json', 'print the raw JSON')
    .action(async (id: string, opts: { api?: string, json?: boolean }) => {
      const status = await clientFor(opts).getJob(id)
      io.stdout.write(opts.json === true ? json(status) : formatStatus(status))
    })

  program.command('jobs')
    .description('list jobs known to the agent')
    .addOption(apiOption())
    .addOption(new Option('--state <state>', 'only jobs in this state').choices(JobStates))
    .option('--limit <n>', 'at most this many jobs', nonNegativeInt)
    .option('--json', 'print the raw JSON')
    .action(async (opts: { api?: string, state?: string, limit?: number, json?: boolean }) => {
      const jobs = await clientFor(opts).listJobs({
        ...(opts.state !== undefined ? { state: opts.state } : {}),
        ...(opts.limit !== undefined ? { limit: opts.limit } : {})
      })
      io.stdout.write(opts.json === true ? json({ jobs }) : formatJobs(jobs))
    })

  program.command('logs')
    .description("print a job's output (stdout and stderr to their own streams)")
    .addOption(apiOption())
    .argument('<job-id>', 'job id or unique prefix')
    .option('-f, --follow', 'keep streaming until the job ends')
    .option('--json', 'print one JSON chunk per line ({seq, epoch, stream, atMs, data}), all on stdout')
    .action(async (id: string, opts: { api?: string, follow?: boolean, json?: boolean }) => {
      const client = clientFor(opts)
      if (opts.follow === true) {
        // Resolve a prefix once, so reconnections ask for the same job.
        const { id: fullId } = await client.getJob(id)
        await followOutput(client, fullId, io, { json: opts.json === true })
        return
      }
      for await (const chunk of client.logs(id)) {
        if (opts.json === true) await write(io.stdout, chunkLine(chunk))
        else await write(chunk.stream === 'stderr' ? io.stderr : io.stdout, chunk.data)
      }
    })

  program.command('cancel')
    .description('cancel a job')
    .addOption(apiOption())
    .argument('<job-id>', 'job id or unique prefix')
    .option('--json', 'print the raw JSON')
    .action(async (id: string, opts: { api?: string, json?: boolean }) => {
      const status = await clientFor(opts).cancel(id)
      io.stdout.write(opts.json === true ? json(status) : `${status.id} ${stateText(status.state, status.reason, status.exitCode)}\n`)
    })

  program.command('nodes')
    .description('list the nodes this agent knows, with their free capacity')
    .addOption(apiOption())
    .option('--json', 'print the raw JSON')
    .action(async (opts: { api?: string, json?: boolean }) => {
      const nodes = await clientFor(opts).nodes()
      io.stdout.write(opts.json === true ? json({ nodes }) : formatNodes(nodes))
    })

  program.command('drain')
    .description('drain the agent: it stops taking new jobs; its running jobs finish or are handed back')
    .addOption(apiOption())
    .option('--deadline <duration>', 'how long running jobs get before they are handed back, e.g. 10m', durationArg)
    .option('--json', 'print the raw JSON')
    .action(async (opts: { api?: string, deadline?: string, json?: boolean }) => {
      const deadlineMs = opts.deadline !== undefined ? parseDurationMs(opts.deadline) : undefined
      const health = await clientFor(opts).drain(deadlineMs !== undefined ? { deadlineMs } : {})
      io.stdout.write(opts.json === true
        ? json(health)
        : `draining agent ${health.peerId}: it takes no new jobs; its running jobs finish or are handed back (watch with \`bidmesh nodes\`)\n`)
    })

  program.command('plan')
    .description('dry run: where a job spec would be placed now, and why')
    .addOption(apiOption())
    .requiredOption('-f, --file <file>', 'job spec file, or - for stdin')
    .option('--json', 'print the raw JSON')
    .action(async (opts: { api?: string, file: string, json?: boolean }) => {
      const { body, contentType } = await readSpecFile(opts.file, io)
      const explanation = await clientFor(opts).plan(body, contentType)
      io.stdout.write(opts.json === true ? json(explanation) : formatExplanation(explanation))
    })

  program.command('explain')
    .description("why a job was placed where it was (or why it still waits)")
    .addOption(apiOption())
    .argument('<job-id>', 'job id or unique prefix')
    .option('--json', 'print the raw JSON')
    .action(async (id: string, opts: { api?: string, json?: boolean }) => {
      const status = await clientFor(opts).getJob(id)
      if (opts.json === true) {
        io.stdout.write(json(status.explanation))
      } else if (status.explanation === null) {
        io.stdout.write(`job ${status.id} has no placement decision yet (${status.state})\n`)
      } else {
        io.stdout.write(`job ${status.id}: ${stateText(status.state, status.reason, status.exitCode)}\n`)
        io.stdout.write(formatExplanation(status.explanation))
      }
    })

  try {
    await program.parseAsync(argv, { from: 'node' })
  } catch (err) {
    return reportError(err, io)
  }
  return exitCode
}

/** The process entry point (bin/bidmesh.js): runs the command line and sets the process's
 *  exit code, letting pending output flush instead of calling process.exit. */
export async function main (argv: string[]): Promise<void> {
  // `bidmesh logs x | head` closes the pipe early; that is the reader's choice, not an error.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0)
      throw err
    })
  }
  process.exitCode = await runCli(argv)
}
