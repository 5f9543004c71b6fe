// The two baselines on the same engine: `docker run` itself (the engine's own cost, the
// floor) and Docker Swarm's replicated-job mode running the same task.
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { promisify } from 'node:util'
import Docker from 'dockerode'
import { JOB_DEFAULTS } from '../../src/protocol/limits.ts'
import { DOCKER_EXECUTOR_DEFAULTS, tmpfsOptions } from '../../src/runtime/docker-executor.ts'
import { IMAGE } from './agents.ts'
import { cleanup } from './cleanup.ts'
import { sleep } from './util.ts'

const exec = promisify(execFile)
export const docker = new Docker()
/** Labels everything this run makes, so cleanup finds it and nothing else. */
export const RUN_ID = `bench-${process.pid}-${Date.now().toString(36)}`
const LABEL = 'bidmesh-bench'

/** The isolation bidmesh's Docker executor gives each job (createOptions in
 *  src/runtime/docker-executor.ts, with its defaults), as `docker run` flags, for the e2e job
 *  (0.1 CPU, 16 MiB, the spec's default pids limit): "the same containers started directly".
 *  Without them the floor would be a cheaper container than the one bidmesh starts: on this
 *  machine the hardening alone (two tmpfs mounts, read-only root, cgroup limits) adds ~130 ms
 *  to a trivial `docker run`. */
const X = DOCKER_EXECUTOR_DEFAULTS
const TMPFS = tmpfsOptions(X.tmpfsSizeBytes, X.user)
export const ISOLATION_ARGS = [
  '--network', 'none', '--user', X.user, '--workdir', '/work',
  '--cpus', '0.1', '--memory', '16m', '--memory-swap', '16m', '--pids-limit', String(JOB_DEFAULTS.pids),
  '--oom-score-adj', String(X.oomScoreAdj), '--ipc', 'private', '--cgroupns', 'private',
  '--cap-drop', 'ALL', '--security-opt', 'no-new-privileges', '--read-only',
  '--tmpfs', `/tmp:${TMPFS}`, '--tmpfs', `/work:${TMPFS}`, '--shm-size', String(X.shmSizeBytes),
  '--ulimit', `nofile=${X.nofileSoft}:${X.nofileHard}`, '--ulimit', `nproc=${X.nproc}:${X.nproc}`
]
export const DOCKER_RUN_ARGS = ['run', '--rm', ...ISOLATION_ARGS, IMAGE, 'true']
/** the same, without the isolation: what a bare `docker run` costs (shown for information) */
export const PLAIN_DOCKER_RUN_ARGS = ['run', '--rm', '--network', 'none', IMAGE, 'true']
const children = new Set<ChildProcess>()

/** `docker run` of the e2e job with bidmesh's isolation (or plain), timed as the command's
 *  wall time (ms). (A run label is added so an interrupted run's container can be found and removed.) */
export async function dockerRun (options: { plain?: boolean } = {}): Promise<number> {
  const base = options.plain === true ? PLAIN_DOCKER_RUN_ARGS : DOCKER_RUN_ARGS
  const args = [base[0], base[1], '--label', `${LABEL}=${RUN_ID}`, ...base.slice(2)]
  const t0 = performance.now()
  const child = spawn('docker', args, { stdio: ['ignore', 'ignore', 'pipe'] })
  children.add(child)
  let stderr = ''
  child.stderr!.on('data', (c: Buffer) => { stderr += c.toString() })
  const code = await new Promise<number | null>(resolve => child.once('exit', c => resolve(c)))
  const ms = performance.now() - t0
  children.delete(child)
  if (code !== 0) throw new Error(`docker run exited ${String(code)}: ${stderr.trim()}`)
  return ms
}

/** Runs `count` docker runs with at most `parallelism` at once; wall time of the batch (ms). */
export async function dockerRunBatch (count: number, parallelism: number): Promise<number> {
  let next = 0
  const t0 = performance.now()
  await Promise.all(Array.from({ length: parallelism }, async () => {
    while (next < count) { next++; await dockerRun() }
  }))
  return performance.now() - t0
}

export async function removeRunContainers (): Promise<void> {
  for (const c of children) c.kill('SIGKILL')
  const list = await docker.listContainers({ all: true, filters: { label: [`${LABEL}=${RUN_ID}`] } })
  await Promise.all(list.map(async c => await docker.getContainer(c.Id).remove({ force: true }).catch(() => {})))
}

/** Removes the containers bidmesh agents with these peer ids left behind (if any). */
export async function removeAgentContainers (peerIds: string[]): Promise<number> {
  let removed = 0
  for (const id of peerIds) {
    const list = await docker.listContainers({ all: true, filters: { label: [`bidmesh.node=${id}`] } })
    for (const c of list) { await docker.getContainer(c.Id).remove({ force: true }).catch(() => {}); removed++ }
  }
  return removed
}

// ---- Swarm ------------------------------------------------------------------------------------

export interface SwarmHandle {
  initialisedByUs: boolean
  /** leaves the swarm if this run initialised it; otherwise does nothing */
  release: () => Promise<void>
}

/** Makes sure this engine is a swarm manager; initialises a single-node swarm if it is in
 *  none (and registers `docker swarm leave --force` with the cleanup, in case the run is cut
 *  short). Returns the reason instead when Swarm cannot be used. */
export async function ensureSwarm (): Promise<SwarmHandle | string> {
  const info = await docker.info() as { Swarm?: { LocalNodeState?: string, ControlAvailable?: boolean } }
  const state = info.Swarm?.LocalNodeState
  if (state === 'active') return info.Swarm?.ControlAvailable === true ? { initialisedByUs: false, release: async () => {} } : 'this engine is a swarm worker, not a manager'
  if (state !== 'inactive') return `swarm state is ${String(state)}`
  try {
    await exec('docker', ['swarm', 'init', '--advertise-addr', '127.0.0.1'], { timeout: 60_000 })
  } catch (err) {
    return `docker swarm init failed: ${String((err as { stderr?: string }).stderr ?? err).trim()}`
  }
  const undo = cleanup.add('docker swarm leave --force', leaveSwarm)
  return { initialisedByUs: true, release: async () => { undo(); await leaveSwarm() } }
}

async function leaveSwarm (): Promise<void> {
  await exec('docker', ['swarm', 'leave', '--force'], { timeout: 60_000 })
}

export async function removeRunServices (): Promise<void> {
  let list: Array<{ ID: string }> = []
  try {
    list = await docker.listServices({ filters: { label: [`${LABEL}=${RUN_ID}`] } }) as Array<{ ID: string }>
  } catch { return } // not a swarm (any more): nothing to remove
  await Promise.all(list.map(async s => await docker.getService(s.ID).remove().catch(() => {})))
}

/** Docker timestamps carry nanoseconds; Date.parse wants at most milliseconds. */
function parseDockerTime (t: string): number {
  return Date.parse(t.replace(/(\.\d{3})\d+/, '$1'))
}

let serviceSeq = 0

/**
 * The equivalent of `docker service create --mode replicated-job --replicas N
 * --max-concurrent N --restart-condition none IMAGE true`, made through the engine API so the
 * tasks can be polled cheaply (the CLI would also try to resolve the image digest on a
 * registry, which this offline machine does not have). Resolves with the time from just
 * before create to the last task's `complete` timestamp (the engine's clock, ms), then
 * removes the service.
 */
export async function swarmJob (replicas: number, timeoutMs = 300_000): Promise<{ ms: number, failed: number }> {
  const name = `${RUN_ID}-${serviceSeq++}`
  const t0 = Date.now()
  const service = await docker.createService({
    Name: name,
    Labels: { [LABEL]: RUN_ID },
    TaskTemplate: {
      ContainerSpec: { Image: IMAGE, Command: ['true'] },
      RestartPolicy: { Condition: 'none' }
    },
    Mode: { ReplicatedJob: { MaxConcurrent: replicas, TotalCompletions: replicas } }
  } as any)
  try {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const tasks = await docker.listTasks({ filters: { service: [service.id] } }) as Array<{ Status: { State: string, Timestamp: string } }>
      const complete = tasks.filter(t => t.Status.State === 'complete')
      const failed = tasks.filter(t => ['failed', 'rejected', 'orphaned', 'shutdown'].includes(t.Status.State))
      if (complete.length + failed.length >= replicas) {
        const end = Math.max(...[...complete, ...failed].map(t => parseDockerTime(t.Status.Timestamp)))
        return { ms: end - t0, failed: failed.length }
      }
      if (Date.now() > deadline) throw new Error(`swarm job ${name}: ${complete.length}/${replicas} complete after ${timeoutMs} ms`)
      await sleep(25)
    }
  } finally {
    await service.remove().catch(() => {})
    // On Docker 20.10 a replicated job's exited task containers outlive `service rm` (until
    // the swarm is left): remove them now, so they neither pile up nor weigh on what is
    // measured next.
    const until = Date.now() + 20_000
    while (Date.now() < until) {
      const left = await docker.listContainers({ all: true, filters: { label: [`com.docker.swarm.service.id=${service.id}`] } }).catch(() => [])
      if (left.length === 0) break
      await Promise.all(left.map(async c => await docker.getContainer(c.Id).remove({ force: true }).catch(() => {})))
      await sleep(100)
    }
  }
}
