// The Docker executor: runs one job attempt in a locked-down container on the local
// engine, streams its output, and reports how it ended. Job-level failures (missing
// image, refused start, OOM, timeout) come back as results; only the runtime's own
// reachability (ping) throws.
import Docker from 'dockerode'
import { realpath, stat } from 'node:fs/promises'
import { posix } from 'node:path'
import { PassThrough } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import type { JobSpec } from '../protocol/job-spec.ts'
import { type AttemptRef, type AttemptResult, type Executor, type ManagedContainer, type RunOptions, SUPERSEDED_ABORT_REASONS } from './executor.ts'
import { ContainerStartError, DockerUnavailableError, ImageNotFoundError } from './errors.ts'
import { envSecrets, redactSecrets, specSecrets } from '../protocol/redact.ts'
import { kernelOomLog, type KernelOomLog } from './kernel-oom-log.ts'

export const DOCKER_EXECUTOR_DEFAULTS = {
  /** SIGTERM→SIGKILL grace on cancel/timeout: long enough for a job to flush and exit,
   * short enough that a cancel frees the slot promptly. Docker takes whole seconds. */
  stopGraceMs: 2000,
  /** prefix of labels and container names; lets several deployments share one engine */
  labelPrefix: 'bidmesh',
  /** a pull that hangs (slow or black-holed registry) must not hold the slot forever */
  pullTimeoutMs: 60_000,
  /** jobs write only to their tmpfs mounts, so nothing persists and the image cannot be tampered with */
  readonlyRootfs: true,
  /** an unprivileged uid:gid that exists in no host group; never run jobs as root */
  user: '10000:10000',
  /** /tmp and /work are RAM-backed; bound them so a job cannot fill host memory through them */
  tmpfsSizeBytes: 64 * 1024 * 1024,
  /** Jobs get no network unless this node's operator allows it. A job asking for `bridge` on
   *  a node that does not is refused (NetworkNotAllowedError), never quietly run without it. */
  allowNetwork: false,
  /** Host directories jobs may mount (read-only), by absolute path. Empty: no mounts at all.
   *  The Docker socket, and any directory containing it, is refused even when listed. */
  allowedHostPaths: [] as readonly string[],
  /** /dev/shm: Docker's default is 64 MiB. It is RAM charged to the job's memory limit;
   *  16 MiB is plenty for the POSIX shared memory batch tools use. */
  shmSizeBytes: 16 * 1024 * 1024,
  /** Open files per process (soft, hard). Per process, so no job affects another. 1024 is
   *  the usual soft default; a job that needs more may raise itself up to the hard 4096. */
  nofileSoft: 1024,
  nofileHard: 4096,
  /** RLIMIT_NPROC counts every process of the *uid* on the host, and all jobs share one uid:
   *  it is a host-wide backstop, not a per-job limit (that is the pids cgroup, spec.pidsLimit).
   *  It must exceed Σ pidsLimit of the jobs running at once, or one job's processes block
   *  another's fork: 16384 = 64 concurrent jobs at the default 256 pids. */
  nproc: 16384,
  /** When the host itself runs out of memory, the kernel kills jobs before the agent, the
   *  engine or sshd (range −1000…1000; 0 is the default for everything else). */
  oomScoreAdj: 500,
  /** Running jobs as root (uid 0) is refused unless this is set: a root process in a
   *  container is root on the host if it ever gets out. */
  allowRootUser: false
}

/** Docker socket paths refused as mounts whatever the configuration says. */
const DOCKER_SOCKET_PATHS = ['/var/run/docker.sock', '/run/docker.sock', '/var/run/containerd/containerd.sock', '/run/containerd/containerd.sock']
/** Container paths a mount may never cover: the kernel interfaces and the root itself. */
const FORBIDDEN_MOUNT_TARGETS = ['/proc', '/sys', '/dev']
/** Mounts a job may ask for; more is a spec error, not a thing to support. */
const MAX_MOUNTS = 16

export interface DockerExecutorInit {
  stopGraceMs?: number
  labelPrefix?: string
  pullTimeoutMs?: number
  readonlyRootfs?: boolean
  user?: string
  tmpfsSizeBytes?: number
  allowNetwork?: boolean
  allowedHostPaths?: readonly string[]
  shmSizeBytes?: number
  nofileSoft?: number
  nofileHard?: number
  nproc?: number
  oomScoreAdj?: number
  allowRootUser?: boolean
}

/** A read-only host directory a job asks to see. Not part of JobSpec yet: the executor reads
 *  `spec.mounts` when a spec carries it (see resolveMounts). */
export interface MountRequest {
  hostPath: string
  containerPath: string
}

// ---- named refusals ------------------------------------------------------------------------

/** The job asked for a network this node does not give jobs. */
export class NetworkNotAllowedError extends Error {
  static readonly code = 'ERR_NETWORK_NOT_ALLOWED'
  readonly code = NetworkNotAllowedError.code
  /** another node may allow it; this one never will */
  readonly retryable = false
  constructor (readonly network: string, options?: ErrorOptions) {
    super(`network ${JSON.stringify(network)} is not allowed on this node (jobs run with network none unless the agent allows networking)`, options)
    this.name = 'NetworkNotAllowedError'
  }
}

/** The job asked for a host mount that is not allowed (not listed, the Docker socket, …). */
export class MountNotAllowedError extends Error {
  static readonly code = 'ERR_MOUNT_NOT_ALLOWED'
  readonly code = MountNotAllowedError.code
  readonly retryable = false
  constructor (readonly hostPath: string, readonly problem: 'not-listed' | 'docker-socket' | 'not-absolute' | 'target' | 'too-many' | 'socket-file' | 'missing', options?: ErrorOptions) {
    super(`mount of ${JSON.stringify(hostPath)} refused: ${problem}`, options)
    this.name = 'MountNotAllowedError'
  }
}

/** A resource limit that Docker would read as "unlimited" (0 or negative) or not a number. */
export class UnboundedResourceError extends Error {
  static readonly code = 'ERR_UNBOUNDED_RESOURCE'
  readonly code = UnboundedResourceError.code
  readonly retryable = false
  constructor (readonly field: 'memoryBytes' | 'cpuMilli' | 'pidsLimit', options?: ErrorOptions) {
    super(`refusing to run a job with ${field} unset or not positive: Docker would not limit it`, options)
    this.name = 'UnboundedResourceError'
  }
}

/** The executor was configured in a way that undoes its isolation (e.g. jobs as root). */
export class InsecureExecutorConfigError extends Error {
  static readonly code = 'ERR_INSECURE_EXECUTOR_CONFIG'
  readonly code = InsecureExecutorConfigError.code
  constructor (message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'InsecureExecutorConfigError'
  }
}

// ---- pure checks -------------------------------------------------------------------------

/** Docker's NetworkMode for a job, or the refusal. Only `none` and (when allowed) `bridge`:
 *  never host, container:<id> or a named network, whatever reaches us. */
export function networkModeFor (network: unknown, allowNetwork: boolean): { ok: true, mode: 'none' | 'bridge' } | { ok: false, error: NetworkNotAllowedError } {
  if (network === undefined || network === 'none') return { ok: true, mode: 'none' }
  if (network === 'bridge' && allowNetwork) return { ok: true, mode: 'bridge' }
  return { ok: false, error: new NetworkNotAllowedError(String(network)) }
}

/** True when `path` is `dir` or inside it (both absolute and normalized). */
function within (path: string, dir: string): boolean {
  return dir === '/' || path === dir || path.startsWith(dir.endsWith('/') ? dir : dir + '/')
}

/**
 * Checks requested mounts against the allowed host paths, pure (paths as given; the executor
 * resolves symlinks first). Refused: relative or unnormalizable paths, anything not inside an
 * allowed path, any Docker/containerd socket, any directory that contains one (mounting
 * /var/run would expose it), targets over /, /proc, /sys or /dev.
 */
export function checkMounts (requests: readonly MountRequest[], allowedHostPaths: readonly string[]): { ok: true, mounts: Array<{ source: string, target: string }> } | { ok: false, error: MountNotAllowedError } {
  if (requests.length > MAX_MOUNTS) return { ok: false, error: new MountNotAllowedError(String(requests.length), 'too-many') }
  const allowed = allowedHostPaths.filter(p => posix.isAbsolute(p)).map(p => posix.normalize(p))
  const mounts: Array<{ source: string, target: string }> = []
  for (const r of requests) {
    const host = typeof r?.hostPath === 'string' ? r.hostPath : ''
    const target = typeof r?.containerPath === 'string' ? r.containerPath : ''
    if (!posix.isAbsolute(host) || host.includes('\0')) return { ok: false, error: new MountNotAllowedError(host, 'not-absolute') }
    const source = posix.normalize(host)
    if (DOCKER_SOCKET_PATHS.some(sock => within(sock, source)) || posix.basename(source).endsWith('.sock')) {
      return { ok: false, error: new MountNotAllowedError(host, 'docker-socket') }
    }
    if (!allowed.some(dir => within(source, dir))) return { ok: false, error: new MountNotAllowedError(host, 'not-listed') }
    if (!posix.isAbsolute(target) || target.includes('\0')) return { ok: false, error: new MountNotAllowedError(host, 'target') }
    const t = posix.normalize(target)
    if (t === '/' || FORBIDDEN_MOUNT_TARGETS.some(f => within(t, f))) return { ok: false, error: new MountNotAllowedError(host, 'target') }
    mounts.push({ source, target: t })
  }
  return { ok: true, mounts }
}

/** True when a user spec ("uid", "uid:gid", "name") means root. */
export function isRootUser (user: string): boolean {
  const name = user.split(':')[0].trim()
  return name === '' || name === 'root' || /^0+$/.test(name)
}

export interface ExecutorLogger {
  info (obj: object, msg?: string): void
  warn (obj: object, msg?: string): void
  error (obj: object, msg?: string): void
  debug (obj: object, msg?: string): void
}

export interface DockerExecutorComponents {
  docker?: Docker
  nodeId: string
  logger?: ExecutorLogger
  /** the kernel's OOM-kill records (see kernel-oom-log.ts); tests pass a fake */
  kernelOomLog?: KernelOomLog
}

/** How long to wait, once the container exited, for its attach stream to deliver the rest
 * of the output. The engine closes it right after exit; this only guards against a stuck socket. */
const OUTPUT_DRAIN_MS = 2000
/** Docker hears of an OOM kill and of the container's exit as two events, queued one after
 *  the other per container; when the exit comes first, the OOM event waits behind the exit
 *  handling, so a job killed for its memory (exit 137) can read OOMKilled false for a while.
 *  Unless the kernel's log already says it was an OOM kill, the flag is looked at again after
 *  each of these waits (5 s in all). Only an exit of 137 with neither witness pays: a plain
 *  SIGKILL is reported 5 s late, a rare case, whereas a memory blow-up reported as a plain
 *  exit would hide the job's real failure. */
const OOM_FLAG_RECHECK_MS = [100, 200, 400, 800, 1500, 2000]
/** setTimeout fires at once for delays above 2^31-1 ms (~24.8 days); clamp instead. */
const MAX_TIMER_MS = 2 ** 31 - 1
/** Docker rejects NanoCpus below 0.01 CPU. */
const MIN_CPU_MILLI = 10
/** Socket-level failures: the engine is not there (or went away), not a job problem. */
const CONNECTION_ERROR_CODES = new Set(['ECONNREFUSED', 'ENOENT', 'EACCES', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN'])

const silentLogger: ExecutorLogger = { info () {}, warn () {}, error () {}, debug () {} }

type Settings = Required<DockerExecutorInit>
/** Stops a running container on the first of its timeout and an abort of its signal (see
 *  stopOnCause). */
interface ContainerStopper {
  /** the result's reason when a stop came first (a superseded attempt reads as cancelled);
   *  undefined: the job ended on its own */
  readonly reason: 'timeout' | 'cancelled' | undefined
  /** clears the timer and the abort listener */
  dispose: () => void
}

class DockerExecutor implements Executor {
  private readonly docker: Docker
  private readonly nodeId: string
  private readonly log: ExecutorLogger
  private readonly settings: Settings
  private readonly kernelOomLog: KernelOomLog

  constructor (init: DockerExecutorInit, components: DockerExecutorComponents) {
    this.settings = { ...DOCKER_EXECUTOR_DEFAULTS, ...stripUndefined(init) }
    this.docker = components.docker ?? new Docker()
    this.nodeId = components.nodeId
    this.log = components.logger ?? silentLogger
    this.kernelOomLog = components.kernelOomLog ?? kernelOomLog()
    if (isRootUser(this.settings.user) && !this.settings.allowRootUser) {
      throw new InsecureExecutorConfigError(`jobs would run as root (user ${JSON.stringify(this.settings.user)}); set allowRootUser to mean it`)
    }
    const listedSockets = this.settings.allowedHostPaths.filter(p => DOCKER_SOCKET_PATHS.some(sock => within(sock, posix.normalize(p))))
    if (listedSockets.length > 0) this.log.warn({ paths: listedSockets }, 'allowed host paths include the Docker socket or a directory holding it; such mounts are always refused')
  }

  /** Everything refused before the engine is asked for anything: unbounded limits, a network
   *  or mounts this node does not allow. Returns the Docker settings it decided, or a result. */
  private async preflight (spec: JobSpec): Promise<{ ok: true, networkMode: 'none' | 'bridge', mounts: Array<{ source: string, target: string }> } | { ok: false, result: AttemptResult }> {
    const refuse = (e: Error & { code: string, retryable: boolean }): { ok: false, result: AttemptResult } => {
      this.log.warn({ error: e.name, code: e.code, message: e.message }, 'job refused by the executor')
      return { ok: false, result: { reason: 'error', exitCode: null, finishedAtMs: Date.now(), error: { name: e.name, code: e.code, message: e.message, retryable: e.retryable } } }
    }
    // Docker reads 0 (or less) as "no limit": never pass one through.
    if (!(Number.isFinite(spec.memoryBytes) && spec.memoryBytes > 0)) return refuse(new UnboundedResourceError('memoryBytes'))
    if (!(Number.isFinite(spec.cpuMilli) && spec.cpuMilli > 0)) return refuse(new UnboundedResourceError('cpuMilli'))
    if (!(Number.isInteger(spec.pidsLimit) && spec.pidsLimit > 0)) return refuse(new UnboundedResourceError('pidsLimit'))
    const net = networkModeFor(spec.network, this.settings.allowNetwork)
    if (!net.ok) return refuse(net.error)
    const requested = (spec as JobSpec & { mounts?: MountRequest[] }).mounts ?? []
    if (!Array.isArray(requested)) return refuse(new MountNotAllowedError('', 'not-absolute'))
    if (requested.length === 0) return { ok: true, networkMode: net.mode, mounts: [] }
    // Symlinks resolved on both sides first, so a link inside an allowed directory cannot
    // point at the Docker socket. (An operator must still not let job submitters write to
    // the allowed directories: a link swapped after this check would be followed by Docker.)
    const resolvedAllowed: string[] = []
    for (const p of this.settings.allowedHostPaths) {
      try { resolvedAllowed.push(await realpath(p)) } catch {}
    }
    const resolved: MountRequest[] = []
    for (const r of requested) {
      if (typeof r?.hostPath !== 'string' || !posix.isAbsolute(r.hostPath)) return refuse(new MountNotAllowedError(String(r?.hostPath), 'not-absolute'))
      // The path as written must pass too (a listed path that is itself the socket).
      const asWritten = checkMounts([r], this.settings.allowedHostPaths)
      if (!asWritten.ok) return refuse(asWritten.error)
      let real: string
      try {
        real = await realpath(r.hostPath)
        if ((await stat(real)).isSocket()) return refuse(new MountNotAllowedError(r.hostPath, 'socket-file'))
      } catch {
        return refuse(new MountNotAllowedError(r.hostPath, 'missing'))
      }
      resolved.push({ hostPath: real, containerPath: r.containerPath })
    }
    const checked = checkMounts(resolved, resolvedAllowed)
    if (!checked.ok) return refuse(checked.error)
    return { ok: true, networkMode: net.mode, mounts: checked.mounts }
  }

  async run (attempt: AttemptRef, options: RunOptions = {}): Promise<AttemptResult> {
    const { jobId, epoch, spec } = attempt
    const { signal, onStarted, onOutput } = options
    const log = { jobId, epoch }
    let container: Docker.Container | undefined
    let attachStream: NodeJS.ReadableStream | undefined
    let stopper: ContainerStopper | undefined
    let startedAtMs: number | undefined
    let phase: 'create' | 'start' | 'wait' = 'create'

    if (aborted(signal)) return cancelledBeforeStart()
    const secrets = secretsOf(spec)
    const preflight = await this.preflight(spec)
    if (!preflight.ok) return preflight.result
    try {
      const created = await this.createAttemptContainer(attempt, preflight, signal)
      if ('result' in created) return created.result
      container = created.container

      // Attach before start: anything the job prints before we are listening would
      // otherwise be lost (non-TTY attach does not replay earlier output).
      attachStream = await container.attach({ stream: true, stdout: true, stderr: true }) as NodeJS.ReadableStream
      const drained = this.pipeOutput(attachStream, onOutput, log)

      phase = 'start'
      if (aborted(signal)) return cancelledBeforeStart()
      await container.start()
      startedAtMs = Date.now()
      phase = 'wait'
      const started = container
      this.log.debug({ ...log, containerId: started.id }, 'container started')
      try {
        onStarted?.({ containerId: started.id, startedAtMs })
      } catch (err) {
        this.log.warn({ ...log, err: safeError(err, secrets) }, 'onStarted callback threw')
      }

      stopper = this.stopOnCause(started, log, spec.timeoutMs, signal)
      const waited = await started.wait() as { StatusCode?: number }
      stopper.dispose()
      // The exit state is read while the last output drains.
      const [, info] = await Promise.all([
        withTimeout(drained, OUTPUT_DRAIN_MS).then(done => {
          if (!done) this.log.warn(log, 'output stream did not end after the container exited; output may be truncated')
        }),
        started.inspect()
      ])
      const finishedAtMs = Date.now()
      const exitCode = typeof info.State?.ExitCode === 'number' ? info.State.ExitCode : (waited.StatusCode ?? null)
      // Only the kernel's verdict counts as OOM: exit code 137 is also what SIGKILL
      // from a stop or from the job itself looks like.
      const reason = stopper.reason ?? (await this.oomKilled(started, info) ? 'oom' : 'exit')
      // A SIGKILL nobody here asked for, and the container then vanishes: another agent on a
      // shared engine removed it (fencing an attempt it took for superseded). That is a lost
      // attempt, to be re-run, not the job's own exit code.
      if (reason === 'exit' && exitCode === 137 && await this.removedByAnother(started)) {
        this.log.info(log, 'container removed by another agent')
        return { reason: 'error', exitCode: null, startedAtMs, finishedAtMs, error: { name: 'ContainerGoneError', code: 'ERR_CONTAINER_GONE', message: `container ${started.id} was removed by another agent`, retryable: true } }
      }
      this.log.info({ ...log, reason, exitCode }, 'container finished')
      return { reason, exitCode, startedAtMs, finishedAtMs }
    } catch (err) {
      const described = this.describeFailure(err, phase, spec.image)
      // Engine errors can quote the request; env values never leave in a message or a log.
      const error = { ...described, message: redactSecrets(described.message, secrets) }
      this.log.warn({ ...log, err: safeError(err, secrets), phase }, 'attempt failed in the engine')
      return {
        reason: error.code === ImageNotFoundError.code ? 'image' : 'error',
        exitCode: null,
        ...(startedAtMs !== undefined ? { startedAtMs } : {}),
        finishedAtMs: Date.now(),
        error
      }
    } finally {
      stopper?.dispose()
      // A start failure leaves the attach request open; do not leak the socket.
      destroyStream(attachStream)
      if (container !== undefined) await this.removeQuietly(container.id)
    }
  }

  async reattach (attempt: AttemptRef & { containerId: string, startedAtMs: number }, options: RunOptions = {}): Promise<AttemptResult> {
    const { jobId, epoch, spec, containerId, startedAtMs } = attempt
    const { signal, onOutput } = options
    const log = { jobId, epoch, containerId }
    const container = this.docker.getContainer(containerId)
    let logStream: NodeJS.ReadableStream | undefined
    let stopper: ContainerStopper | undefined
    try {
      let info: Docker.ContainerInspectInfo
      try {
        info = await container.inspect()
      } catch (err) {
        if (statusOf(err) === 404) {
          return { reason: 'error', exitCode: null, startedAtMs, finishedAtMs: Date.now(), error: { name: 'ContainerGoneError', code: 'ERR_CONTAINER_GONE', message: `container ${containerId} is gone`, retryable: true } }
        }
        throw err
      }
      let drained: Promise<void> = Promise.resolve()
      if (info.State?.Running === true) {
        // Output from now on: what the job printed while the agent was down, up to a second
        // before this point, may be missing (Docker's `since` has one-second granularity).
        logStream = await container.logs({ follow: true, stdout: true, stderr: true, since: Math.floor(Date.now() / 1000) }) as unknown as NodeJS.ReadableStream
        drained = this.pipeOutput(logStream, onOutput, log)
        stopper = this.stopOnCause(container, log, Math.max(0, spec.timeoutMs - (Date.now() - startedAtMs)), signal)
        await container.wait()
        stopper.dispose()
        await withTimeout(drained, OUTPUT_DRAIN_MS)
        info = await container.inspect()
      }
      const finishedAt = Date.parse(info.State?.FinishedAt ?? '')
      const exitCode = typeof info.State?.ExitCode === 'number' ? info.State.ExitCode : null
      const reason = stopper?.reason ?? (await this.oomKilled(container, info) ? 'oom' : 'exit')
      this.log.info({ ...log, reason, exitCode }, 'reattached container finished')
      return { reason, exitCode, startedAtMs, finishedAtMs: Number.isFinite(finishedAt) && finishedAt > 0 ? finishedAt : Date.now() }
    } catch (err) {
      const described = this.describeFailure(err, 'wait', spec.image)
      return { reason: 'error', exitCode: null, startedAtMs, finishedAtMs: Date.now(), error: { ...described, message: redactSecrets(described.message, secretsOf(spec)) } }
    } finally {
      stopper?.dispose()
      destroyStream(logStream)
      await this.removeQuietly(containerId)
    }
  }

  async listManaged (options: { signal?: AbortSignal } = {}): Promise<ManagedContainer[]> {
    const p = this.settings.labelPrefix
    try {
      const list = await this.docker.listContainers({
        all: true,
        filters: { label: [`${p}.managed=true`] },
        ...(options.signal !== undefined ? { abortSignal: options.signal } : {})
      })
      return list.map(c => ({
        containerId: c.Id,
        jobId: c.Labels?.[`${p}.job`] ?? '',
        epoch: Number(c.Labels?.[`${p}.epoch`] ?? NaN),
        term: Number(c.Labels?.[`${p}.term`] ?? 0),
        node: c.Labels?.[`${p}.node`] ?? '',
        running: c.State === 'running'
      }))
    } catch (err) {
      throw asUnavailable(err)
    }
  }

  async remove (containerId: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    try {
      await this.docker.getContainer(containerId).remove({
        force: true,
        ...(options.signal !== undefined ? { abortSignal: options.signal } : {})
      })
    } catch (err) {
      if (statusOf(err) === 404) return
      throw asUnavailable(err)
    }
  }

  async ping (options: { signal?: AbortSignal } = {}): Promise<void> {
    try {
      // dockerode accepts options on ping at runtime; its types do not declare them.
      await (this.docker as unknown as { ping (opts: object): Promise<unknown> })
        .ping(options.signal !== undefined ? { abortSignal: options.signal } : {})
    } catch (err) {
      throw new DockerUnavailableError(`the Docker engine cannot be reached: ${messageOf(err)}`, { cause: err })
    }
  }

  /** The kernel's OOM verdict on an exited container (see OOM_FLAG_RECHECK_MS). */
  private async oomKilled (container: Docker.Container, info: Docker.ContainerInspectInfo): Promise<boolean> {
    if (info.State?.OOMKilled === true) return true
    if (info.State?.ExitCode !== 137) return false
    // Docker misses an OOM kill in a container's first milliseconds for good; the kernel does not
    if (this.kernelOomLog.sawKillIn(container.id)) return true
    for (const waitMs of OOM_FLAG_RECHECK_MS) {
      await sleep(waitMs)
      try {
        if ((await container.inspect()).State?.OOMKilled === true) return true
      } catch {
        return false // gone meanwhile: removedByAnother tells why
      }
    }
    return false
  }

  /** Whether the container disappears within a second (a removal by someone else in flight). */
  private async removedByAnother (container: Docker.Container): Promise<boolean> {
    for (let i = 0; i < 10; i++) {
      try {
        await container.inspect()
      } catch (err) {
        if (statusOf(err) === 404) return true
      }
      await sleep(100)
    }
    return false
  }

  private containerName (jobId: string, epoch: number): string {
    // Container names allow [a-zA-Z0-9][a-zA-Z0-9_.-]*; the label keeps the exact id. The
    // node is part of the name: after a partition two owners may issue the same epoch, and
    // on an engine shared by several agents one attempt must never replace another's.
    const node = this.nodeId.replace(/[^a-zA-Z0-9]/g, '').slice(-12)
    return `${this.settings.labelPrefix}-${jobId.replace(/[^a-zA-Z0-9_.-]/g, '-')}-${epoch}-${node}`
  }

  private createOptions (attempt: AttemptRef, name: string, decided: Decided): Docker.ContainerCreateOptions {
    return containerCreateOptions(attempt, { name, nodeId: this.nodeId, settings: this.settings, ...decided })
  }

  /**
   * Creates the attempt's container, in one engine call in the common case. Only when create
   * says so is the image looked for (and pulled), or a container that an earlier try of the
   * same attempt left under this name (agent crash, lost result) removed; then create is
   * tried again. Checking both first cost two more engine calls per job, which a busy engine
   * (a burst of jobs on a small host) pays for in throughput.
   */
  private async createAttemptContainer (attempt: AttemptRef, decided: Decided, signal: AbortSignal | undefined):
  Promise<{ container: Docker.Container } | { result: AttemptResult }> {
    const name = this.containerName(attempt.jobId, attempt.epoch)
    const options = this.createOptions(attempt, name, decided)
    let pulled = false
    let removed = false
    while (true) {
      try {
        return { container: await this.docker.createContainer(options) }
      } catch (err) {
        const status = statusOf(err)
        if (status === 404 && !pulled) {
          pulled = true
          const imageFailure = await this.ensureImage(attempt.spec.image, signal)
          if (imageFailure !== undefined) return { result: imageFailure }
        } else if (status === 409 && !removed) {
          removed = true
          await this.removeQuietly(name)
        } else {
          throw err // a second 404 is described as a missing image (describeFailure)
        }
        if (aborted(signal)) return { result: cancelledBeforeStart() }
      }
    }
  }

  /** Returns a failure result when the image is absent and cannot be pulled, else undefined. */
  private async ensureImage (image: string, signal: AbortSignal | undefined): Promise<AttemptResult | undefined> {
    try {
      await this.docker.getImage(image).inspect()
      return undefined
    } catch (err) {
      if (statusOf(err) !== 404) throw err
    }
    this.log.info({ image }, 'image missing locally; pulling')
    try {
      await this.pull(image, signal)
      // followProgress also reports success when the stream is merely closed: confirm.
      await this.docker.getImage(image).inspect()
      return undefined
    } catch (err) {
      if (aborted(signal)) return cancelledBeforeStart()
      if (isConnectionError(err)) throw err
      const e = new ImageNotFoundError(image, { cause: err })
      this.log.warn({ image, err: safeError(err, []) }, 'pull failed')
      return {
        reason: 'image',
        exitCode: null,
        finishedAtMs: Date.now(),
        error: { name: e.name, code: e.code, message: `${e.message}: ${messageOf(err)}`, retryable: e.retryable }
      }
    }
  }

  private async pull (image: string, signal: AbortSignal | undefined): Promise<void> {
    const timeout = AbortSignal.timeout(this.settings.pullTimeoutMs)
    const abortSignal = signal !== undefined ? AbortSignal.any([signal, timeout]) : timeout
    const stream = await this.docker.pull(image, { abortSignal })
    await new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        destroyStream(stream)
        reject(abortSignal.reason)
      }
      abortSignal.addEventListener('abort', onAbort, { once: true })
      this.docker.modem.followProgress(stream, (err) => {
        abortSignal.removeEventListener('abort', onAbort)
        if (err != null) reject(err)
        else resolve()
      })
    })
  }

  /** Demultiplexes the attach stream and forwards chunks; resolves once all output is delivered. */
  private pipeOutput (raw: NodeJS.ReadableStream, onOutput: RunOptions['onOutput'], log: object): Promise<void> {
    const stdout = new PassThrough()
    const stderr = new PassThrough()
    const forward = (name: 'stdout' | 'stderr') => (chunk: Buffer): void => {
      try {
        onOutput?.(name, chunk)
      } catch (err) {
        this.log.warn({ ...log, err: safeError(err, []) }, 'onOutput callback threw')
      }
    }
    stdout.on('data', forward('stdout'))
    stderr.on('data', forward('stderr'))
    const drained = Promise.all([
      new Promise<void>(resolve => stdout.once('end', resolve)),
      new Promise<void>(resolve => stderr.once('end', resolve))
    ]).then(() => undefined)
    // demuxStream never ends its targets: end them when the source is done.
    let ended = false
    const end = (): void => {
      if (ended) return
      ended = true
      stdout.end()
      stderr.end()
    }
    raw.once('end', end)
    raw.once('close', end)
    raw.once('error', (err: Error) => {
      this.log.debug({ ...log, err: safeError(err, []) }, 'attach stream error')
      end()
    })
    this.docker.modem.demuxStream(raw, stdout, stderr)
    return drained
  }

  /** Stops `container` when its timeout fires or `signal` aborts, whichever is first: SIGTERM,
   *  then SIGKILL after the stop grace. An abort for one of SUPERSEDED_ABORT_REASONS kills
   *  at once instead, and turns a graceful stop already under way into a kill: another
   *  attempt may be starting elsewhere. The first cause is the result's reason. */
  private stopOnCause (container: Docker.Container, log: object, timeoutMs: number, signal: AbortSignal | undefined): ContainerStopper {
    let reason: ContainerStopper['reason']
    let killing = false
    const stop = (cause: 'timeout' | 'cancelled', kill: boolean): void => {
      if (reason === undefined) {
        reason = cause
        this.log.info({ ...log, cause, kill }, 'stopping container')
      } else if (!kill || killing) return
      killing = kill
      void this.stopContainer(container, log, kill)
    }
    const onAbort = (): void => stop('cancelled', SUPERSEDED_ABORT_REASONS.has(signal?.reason))
    const timer = setTimeout(() => stop('timeout', false), Math.min(timeoutMs, MAX_TIMER_MS))
    signal?.addEventListener('abort', onAbort, { once: true })
    if (signal?.aborted === true) onAbort()
    return {
      get reason () { return reason },
      dispose: () => {
        clearTimeout(timer)
        signal?.removeEventListener('abort', onAbort)
      }
    }
  }

  /** Stops a container: SIGTERM, then SIGKILL after the stop grace; `now`: SIGKILL at once. */
  private async stopContainer (container: Docker.Container, log: object, now = false): Promise<void> {
    try {
      if (now) await container.kill()
      else await container.stop({ t: Math.ceil(this.settings.stopGraceMs / 1000) })
    } catch (err) {
      const status = statusOf(err)
      // 304: already stopped; 404: already gone; 409 (to a kill): not running. Each means the
      // job is no longer running.
      if (status === 304 || status === 404 || (now && status === 409)) return
      this.log.warn({ ...log, err: safeError(err, []) }, 'stop failed; killing')
      try {
        await container.kill()
      } catch (killErr) {
        this.log.warn({ ...log, err: safeError(killErr, []) }, 'kill failed')
      }
    }
  }

  private async removeQuietly (idOrName: string): Promise<void> {
    try {
      await this.docker.getContainer(idOrName).remove({ force: true })
    } catch (err) {
      if (statusOf(err) !== 404) this.log.warn({ container: idOrName, err: safeError(err, []) }, 'could not remove container')
    }
  }

  private describeFailure (err: unknown, phase: 'create' | 'start' | 'wait', image: string): NonNullable<AttemptResult['error']> {
    if (isConnectionError(err)) {
      const e = new DockerUnavailableError(undefined, { cause: err })
      return { name: e.name, code: e.code, message: `${e.message}: ${messageOf(err)}`, retryable: e.retryable }
    }
    if (phase === 'create' && statusOf(err) === 404) {
      // create found no image even after looking for it (and pulling it): missing, or pruned
      // again in between (createAttemptContainer)
      const e = new ImageNotFoundError(image, { cause: err })
      return { name: e.name, code: e.code, message: e.message, retryable: e.retryable }
    }
    if (phase === 'create' || phase === 'start') {
      const status = statusOf(err)
      const e = new ContainerStartError(`could not ${phase} the container: ${messageOf(err)}`, {
        cause: err,
        retryable: !(status !== undefined && status >= 400 && status < 500)
      })
      return { name: e.name, code: e.code, message: e.message, retryable: e.retryable }
    }
    // Lost track of a running container (engine restart, container removed under us):
    // the job itself did not fail, so another attempt may succeed.
    const e = err as { name?: unknown, code?: unknown }
    return {
      name: typeof e?.name === 'string' ? e.name : 'Error',
      ...(typeof e?.code === 'string' ? { code: e.code } : {}),
      message: messageOf(err),
      retryable: true
    }
  }
}

type Decided = { networkMode: 'none' | 'bridge', mounts: Array<{ source: string, target: string }> }
export type DockerExecutorSettings = Required<DockerExecutorInit>

/**
 * The container's create options, pure. The CIS Docker benchmark's runtime items (section 5)
 * this covers, each set explicitly so a changed engine default cannot loosen it:
 *  5.4 never privileged · 5.3 CapDrop ALL, nothing added · 5.25 no-new-privileges ·
 *  5.21 default seccomp profile (no seccomp= option at all; never "unconfined") ·
 *  5.12 read-only rootfs, tmpfs /work and /tmp (noexec,nosuid,nodev by Docker's default) ·
 *  5.10/5.11 memory (swap = memory: none) and CPU quota · 5.28 pids limit ·
 *  5.9/5.15/5.16/5.20 no host network, PID, IPC or UTS namespace · 5.31 never the Docker
 *  socket (no Binds; only checked, read-only Mounts) · 5.7/5.13 no ports published ·
 *  5.18 ulimits set · 4.1 non-root user · no devices, no sysctls, private cgroup namespace.
 */
export function containerCreateOptions (
  attempt: AttemptRef,
  o: { name: string, nodeId: string, settings: DockerExecutorSettings } & Decided
): Docker.ContainerCreateOptions {
  const { jobId, epoch, spec } = attempt
  const s = o.settings
  const p = s.labelPrefix
  const tmpfs = tmpfsOptions(s.tmpfsSizeBytes, s.user)
  return {
    name: o.name,
    Image: spec.image,
    ...(spec.command.length > 0 ? { Cmd: spec.command } : {}),
    Env: Object.entries(spec.env).map(([k, v]) => `${k}=${v}`),
    Labels: {
      [`${p}.job`]: jobId,
      [`${p}.epoch`]: String(epoch),
      [`${p}.term`]: String(attempt.term ?? 0),
      [`${p}.node`]: o.nodeId,
      [`${p}.managed`]: 'true'
    },
    WorkingDir: '/work',
    User: s.user,
    Tty: false,
    OpenStdin: false,
    AttachStdin: false,
    AttachStdout: true,
    AttachStderr: true,
    ExposedPorts: {},
    HostConfig: {
      NanoCpus: Math.max(spec.cpuMilli, MIN_CPU_MILLI) * 1e6,
      Memory: spec.memoryBytes,
      // memory+swap equal to memory: no swap, so the memory limit is a hard one and
      // an over-allocating job is OOM-killed instead of thrashing the host.
      MemorySwap: spec.memoryBytes,
      OomKillDisable: false,
      OomScoreAdj: s.oomScoreAdj,
      PidsLimit: spec.pidsLimit,
      NetworkMode: o.networkMode,
      PublishAllPorts: false,
      PortBindings: {},
      // Empty modes are Docker's "private"; spelled out, never host.
      PidMode: '',
      IpcMode: 'private',
      UTSMode: '',
      UsernsMode: '',
      // Not in dockerode's types (API 1.41+): the job sees only its own cgroup tree.
      ...({ CgroupnsMode: 'private' } as {}),
      CapDrop: ['ALL'],
      CapAdd: [],
      SecurityOpt: ['no-new-privileges'],
      Privileged: false,
      ReadonlyRootfs: s.readonlyRootfs,
      Tmpfs: { '/tmp': tmpfs, '/work': tmpfs },
      ShmSize: s.shmSizeBytes,
      Ulimits: [
        { Name: 'nofile', Soft: s.nofileSoft, Hard: s.nofileHard },
        { Name: 'nproc', Soft: s.nproc, Hard: s.nproc }
      ],
      Devices: [],
      Binds: [],
      Mounts: o.mounts.map(m => ({ Type: 'bind' as const, Source: m.source, Target: m.target, ReadOnly: true, BindOptions: { Propagation: 'rprivate' as const } })),
      // We read the exit state and output before removing it ourselves.
      AutoRemove: false,
      Init: false
    }
  }
}

/** Redacted, loggable form of an error: never the raw object (it may carry the request). */
function safeError (err: unknown, secrets: readonly string[]): { name: string, code?: string, statusCode?: number, message: string } {
  const e = (err ?? {}) as { name?: unknown, code?: unknown }
  const status = statusOf(err)
  return {
    name: typeof e.name === 'string' ? e.name : 'Error',
    ...(typeof e.code === 'string' ? { code: e.code } : {}),
    ...(status !== undefined ? { statusCode: status } : {}),
    message: redactSecrets(messageOf(err), secrets)
  }
}

/** Env values shorter than this cannot be told apart from ordinary words and numbers in an
 *  error text ("1", "yes"); they are not redacted from messages. Env is never logged at all. */
const REDACT_OPTIONS = { minLength: 4 }

/** What to redact from a job's engine errors: the values it marked secret (spec.secretEnv),
 *  whatever their length, and every other env value of REDACT_OPTIONS.minLength or more. */
function secretsOf (spec: JobSpec): string[] {
  return [...specSecrets(spec), ...envSecrets(spec.env).filter(v => v.length >= REDACT_OPTIONS.minLength)]
}

/** Docker's tmpfs option string. Why uid/gid: runc 1.1 chmods a tmpfs to the mode of the
 * directory it covers when that exists in the image (ignoring `mode=`), so an image's
 * root-owned 0755 /work would not be writable by the job user; owning the mount fixes it.
 * Only possible for a numeric user. noexec/nosuid/nodev are Docker's defaults and kept. */
export function tmpfsOptions (sizeBytes: number, user: string): string {
  const opts = ['rw', `size=${sizeBytes}`, 'mode=1777']
  const m = /^(\d+)(?::(\d+))?$/.exec(user)
  if (m !== null) {
    opts.push(`uid=${m[1]}`)
    if (m[2] !== undefined) opts.push(`gid=${m[2]}`)
  }
  return opts.join(',')
}

// A function, not `signal?.aborted`, so TypeScript does not carry a narrowing across awaits.
function aborted (signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true
}

function cancelledBeforeStart (): AttemptResult {
  return { reason: 'cancelled', exitCode: null, finishedAtMs: Date.now() }
}

function withTimeout (p: Promise<void>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([
    p.then(() => true),
    new Promise<boolean>(resolve => { timer = setTimeout(() => resolve(false), ms) })
  ]).finally(() => clearTimeout(timer))
}

function destroyStream (s: NodeJS.ReadableStream | undefined): void {
  const d = s as { destroy?: () => void } | undefined
  if (typeof d?.destroy === 'function') d.destroy()
}

function statusOf (err: unknown): number | undefined {
  const s = (err as { statusCode?: unknown } | null)?.statusCode
  return typeof s === 'number' ? s : undefined
}

function messageOf (err: unknown): string {
  const json = (err as { json?: { message?: unknown } } | null)?.json
  if (typeof json?.message === 'string') return json.message
  return err instanceof Error ? err.message : String(err)
}

function isConnectionError (err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' && CONNECTION_ERROR_CODES.has(code)
}

function asUnavailable (err: unknown): unknown {
  return isConnectionError(err) ? new DockerUnavailableError(undefined, { cause: err }) : err
}

function stripUndefined<T extends object> (o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>
}

/** Factory: `dockerExecutor({ stopGraceMs: 5000 })({ nodeId, logger })`. */
export function dockerExecutor (init: DockerExecutorInit = {}): (components: DockerExecutorComponents) => Executor {
  return components => new DockerExecutor(init, components)
}
