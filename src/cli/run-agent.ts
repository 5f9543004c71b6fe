// `bidmesh agent`: wires the real components (libp2p mesh, SQLite store, Docker executor),
// starts the agent and its HTTP API, prints where it listens, and drains on SIGTERM.
import { join } from 'node:path'
import Docker from 'dockerode'
import { type Agent, startAgent } from '../agent/agent.ts'
import { createLogger } from '../agent/logger.ts'
import type { AgentCliOptions } from '../agent/run.ts'
import { createApiServer } from '../api/server.ts'
import { createLibp2pMesh } from '../mesh/libp2p-mesh.ts'
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

function parseApiAddress (api: string): { host: string, port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(api)
  if (m == null) throw new AgentConfigError(`--api must be HOST:PORT, got ${api}`)
  const port = Number(m[3])
  if (port > 65535) throw new AgentConfigError(`--api port out of range: ${port}`)
  return { host: m[1] ?? m[2], port }
}

export async function runAgentCommand (o: AgentCliOptions): Promise<Agent> {
  const logger = createLogger()
  const api = parseApiAddress(o.api)
  let memoryBytes: number | undefined
  if (o.memory !== undefined) {
    memoryBytes = parseSize(o.memory)
    if (memoryBytes === undefined) throw new AgentConfigError(`--memory must be a size such as 4g, got ${o.memory}`)
  }
  if (o.cpus !== undefined && (!Number.isFinite(o.cpus) || o.cpus <= 0)) throw new AgentConfigError(`--cpus must be a positive number, got ${o.cpus}`)
  const store = openSqliteStore({ path: join(o.dataDir, 'bidmesh.db') })
  const mesh = await createLibp2pMesh({ dataDir: o.dataDir, listen: o.listen, bootstrap: o.bootstrap, logger })
  const executor = o.executor === 'noop'
    ? noopExecutor()
    : dockerExecutor()({ docker: new Docker(), nodeId: mesh.peerId, logger })
  if (o.executor === 'noop') logger.warn('no-op executor selected: jobs are not run (benchmarks only)')
  const agent = await startAgent({ mesh, store, executor, logger }, {
    ...(o.cpus !== undefined ? { cpuMilli: Math.round(o.cpus * 1000) } : {}),
    ...(memoryBytes !== undefined ? { memoryBytes } : {}),
    labels: o.labels
  })
  const server = createApiServer({ agent, logger: false })
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
