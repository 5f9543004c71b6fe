// `bidmesh agent`: wires the real components (libp2p mesh, SQLite store, Docker executor),
// starts the agent and its HTTP API, prints where it listens, and drains on SIGTERM.
import { readFile } from 'node:fs/promises'
import { isAbsolute, join } from 'node:path'
import Docker from 'dockerode'
import { type Agent, startAgent } from '../agent/agent.ts'
import { createLogger } from '../agent/logger.ts'
import type { AgentCliOptions } from '../agent/run.ts'
import { createApiServer } from '../api/server.ts'
import { createLibp2pMesh, loadOrCreateKey } from '../mesh/libp2p-mesh.ts'
import { NETWORK_LABEL } from '../scheduler/feasibility.ts'
import { InsecureSwarmKeyFileError, InvalidSwarmKeyError, readSwarmKeyFile } from '../mesh/security.ts'
import { InvalidPublisherAllowlistError, type PublisherAllowlist, parsePublisherAllowlist, signJob } from '../agent/signing.ts'
import { parseSize } from '../protocol/units.ts'
import { dockerExecutor } from '../runtime/docker-executor.ts'
import { noopExecutor } from '../runtime/noop-executor.ts'
import { openSqliteStore } from '../store/sqlite-store.ts'

export class AgentConfigError extends Error {
  static readonly code = 'ERR_AGENT_CONFIG'
  readonly code = AgentConfigError.code
  constructor (message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'AgentConfigError'
  }
}

/** Security options of `bidmesh agent`. The commander flags are wired in main.ts:
 *    --swarm-key FILE          join only the private mesh holding this key (implies --require-private)
 *    --require-private         refuse to start without a valid swarm key
 *    --allow-network           jobs may ask for the bridge network (default: refused)
 *    --allow-host-path DIR     a host directory jobs may mount read-only (repeatable)
 *    --publisher PEERID        run only jobs signed by this peer (repeatable; default: any)
 *    --api-token-file FILE     require `Authorization: Bearer <token>` on the HTTP API */
export interface AgentSecurityOptions {
  swarmKey?: string
  requirePrivate?: boolean
  allowNetwork?: boolean
  allowHostPaths?: string[]
  publishers?: string[]
  apiTokenFile?: string
  /** serve the API beyond loopback without a token (explicit loosening) */
  insecureApi?: boolean
}

export interface ResolvedSecurity {
  /** canonical key-file bytes for createLibp2pMesh, when private */
  swarmKey?: Uint8Array
  requirePrivate: boolean
  allowNetwork: boolean
  allowedHostPaths: string[]
  publishers: PublisherAllowlist
  apiToken?: string
}

/** Reads and checks every security option before anything starts. Each problem is an
 *  AgentConfigError naming the flag (exit code 2 from the CLI). */
export async function resolveSecurityOptions (o: AgentSecurityOptions): Promise<ResolvedSecurity> {
  let swarmKey: Uint8Array | undefined
  if (o.swarmKey !== undefined) {
    try {
      swarmKey = await readSwarmKeyFile(o.swarmKey)
    } catch (err) {
      if (err instanceof InvalidSwarmKeyError || err instanceof InsecureSwarmKeyFileError) throw new AgentConfigError(`--swarm-key: ${err.message}`, { cause: err })
      const code = (err as NodeJS.ErrnoException)?.code
      throw new AgentConfigError(`--swarm-key: cannot read ${o.swarmKey}${code !== undefined ? ` (${code})` : ''}`, { cause: err })
    }
  }
  const allowedHostPaths = o.allowHostPaths ?? []
  for (const p of allowedHostPaths) {
    if (!isAbsolute(p)) throw new AgentConfigError(`--allow-host-path must be an absolute path, got ${p}`)
  }
  let publishers: PublisherAllowlist
  try {
    publishers = parsePublisherAllowlist(o.publishers)
  } catch (err) {
    if (err instanceof InvalidPublisherAllowlistError) throw new AgentConfigError(`--publisher: ${err.message}`, { cause: err })
    throw err
  }
  let apiToken: string | undefined
  if (o.apiTokenFile !== undefined) {
    try {
      apiToken = (await readFile(o.apiTokenFile, 'utf8')).trim()
    } catch (err) {
      throw new AgentConfigError(`--api-token-file: cannot read ${o.apiTokenFile}`, { cause: err })
    }
    if (apiToken.length < 16 || /\s/.test(apiToken)) throw new AgentConfigError('--api-token-file: the token must be at least 16 characters, without spaces')
  }
  return {
    ...(swarmKey !== undefined ? { swarmKey } : {}),
    // A key given means private: never fall back to a public mesh.
    requirePrivate: o.requirePrivate === true || o.swarmKey !== undefined,
    allowNetwork: o.allowNetwork === true,
    allowedHostPaths,
    publishers,
    ...(apiToken !== undefined ? { apiToken } : {})
  }
}

function isLoopbackHost (host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host)
}

function parseApiAddress (api: string): { host: string, port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(api)
  if (m == null) throw new AgentConfigError(`--api must be HOST:PORT, got ${api}`)
  const port = Number(m[3])
  if (port > 65535) throw new AgentConfigError(`--api port out of range: ${port}`)
  return { host: m[1] ?? m[2], port }
}

export async function runAgentCommand (o: AgentCliOptions & AgentSecurityOptions): Promise<Agent> {
  const logger = createLogger()
  const api = parseApiAddress(o.api)
  const security = await resolveSecurityOptions(o)
  if (security.apiToken === undefined && !isLoopbackHost(api.host)) {
    // Off loopback the API needs a token; serving it open is possible only when asked for
    // by name (e.g. inside a private container network), never by accident.
    if (o.insecureApi !== true) throw new AgentConfigError(`--api ${o.api} is not loopback: give --api-token-file, or --insecure-api to serve it without a token`)
    logger.warn({ api: o.api }, 'the HTTP API listens beyond loopback without a token (--insecure-api): anyone who reaches it can run jobs')
  }
  let memoryBytes: number | undefined
  if (o.memory !== undefined) {
    memoryBytes = parseSize(o.memory)
    if (memoryBytes === undefined) throw new AgentConfigError(`--memory must be a size such as 4g, got ${o.memory}`)
  }
  if (o.cpus !== undefined && (!Number.isFinite(o.cpus) || o.cpus <= 0)) throw new AgentConfigError(`--cpus must be a positive number, got ${o.cpus}`)
  // The bundle leaves dockerode's SSH client out (scripts/build.mjs): say so at start, not at
  // the first job. An agent runs on the host whose engine runs its jobs.
  const dockerHost = process.env.DOCKER_HOST ?? ''
  if (o.executor !== 'noop' && /^ssh:/i.test(dockerHost)) throw new AgentConfigError(`DOCKER_HOST=${dockerHost}: the agent reaches the Docker engine of its own host (unix:// or tcp://), not over SSH`)
  const store = openSqliteStore({ path: join(o.dataDir, 'bidmesh.db') })
  const mesh = await createLibp2pMesh({
    dataDir: o.dataDir,
    listen: o.listen,
    bootstrap: o.bootstrap,
    logger,
    ...(security.swarmKey !== undefined ? { swarmKey: security.swarmKey } : {}),
    requirePrivate: security.requirePrivate
  })
  if (security.swarmKey !== undefined) logger.info({}, 'private mesh: only peers holding the swarm key can connect')
  const executor = o.executor === 'noop'
    ? noopExecutor()
    : dockerExecutor({ allowNetwork: security.allowNetwork, allowedHostPaths: security.allowedHostPaths })({ docker: new Docker(), nodeId: mesh.peerId, logger })
  if (o.executor === 'noop') logger.warn('no-op executor selected: jobs are not run (benchmarks only)')
  // The same identity key the mesh uses signs the jobs this agent publishes.
  const peerKey = await loadOrCreateKey(o.dataDir)
  // A node that allows bridge networking says so with a reserved label, so the scheduler
  // only offers networked jobs to nodes that will run them.
  const labels = security.allowNetwork ? { ...o.labels, [NETWORK_LABEL]: 'bridge' } : o.labels
  const agent = await startAgent({ mesh, store, executor, logger, signJob: fields => signJob(peerKey, fields) }, {
    ...(o.cpus !== undefined ? { cpuMilli: Math.round(o.cpus * 1000) } : {}),
    ...(memoryBytes !== undefined ? { memoryBytes } : {}),
    labels,
    publishers: security.publishers
  })
  if ('any' in security.publishers) logger.warn({}, 'running jobs from any mesh member (no --publisher given): fine on a trusted LAN only')
  const server = createApiServer({ agent, logger: false, ...(security.apiToken !== undefined ? { token: security.apiToken } : {}) })
  await server.listen({ host: api.host, port: api.port })
  const address = server.server.address()
  const apiUrl = typeof address === 'object' && address !== null ? `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}` : o.api
  // Printed on stdout, one per line, so scripts can bootstrap other agents from them.
  process.stdout.write(`bidmesh agent ${agent.peerId}\n`)
  for (const a of agent.listenAddrs()) process.stdout.write(`listening ${a}\n`)
  process.stdout.write(`api ${apiUrl}\n`)
  logger.info({ peerId: agent.peerId, addrs: agent.listenAddrs(), api: apiUrl }, 'agent:started')

  let stopping = false
  const shutdown = async (signal: string): Promise<void> => {
    if (stopping) return
    stopping = true
    logger.info({ signal }, 'agent:stopping')
    try {
      await agent.drain()
      await server.close()
      await agent.stop()
    } finally {
      process.exit(0)
    }
  }
  process.once('SIGTERM', () => { void shutdown('SIGTERM') })
  process.once('SIGINT', () => { void shutdown('SIGINT') })
  return agent
}
