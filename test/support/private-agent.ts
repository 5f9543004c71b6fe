// Real agents in this process, on a private mesh (swarm key) over loopback: real libp2p and
// SQLite, the executor of the test's choice. For tests that put a hostile node beside them.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { PrivateKey } from '@libp2p/interface'
import type { Logger } from 'pino'
import { type Agent, startAgent } from '../../src/agent/agent.ts'
import { type PublisherAllowlist, signJob } from '../../src/agent/signing.ts'
import { createLibp2pMesh, loadOrCreateKey } from '../../src/mesh/libp2p-mesh.ts'
import type { Mesh } from '../../src/mesh/mesh.ts'
import type { Executor } from '../../src/runtime/executor.ts'
import { openSqliteStore } from '../../src/store/sqlite-store.ts'
import { waitFor } from './cluster.ts'

export interface PrivateAgent { agent: Agent, mesh: Mesh, dir: string, key: PrivateKey }

export interface PrivateAgentOptions {
  swarmKey: Uint8Array
  bootstrap: string[]
  logger: Logger
  /** made once the mesh exists (an executor may want to know its own peer id) */
  executor: (mesh: Mesh) => Executor
  /** whose jobs it runs; default: any member */
  publishers?: (self: string) => PublisherAllowlist
  dirPrefix?: string
  /** start on this data directory (a restart: same key, same store) instead of a new one */
  dir?: string
}

export async function startPrivateAgent (o: PrivateAgentOptions): Promise<PrivateAgent> {
  const dir = o.dir ?? mkdtempSync(join(tmpdir(), o.dirPrefix ?? 'bidmesh-private-'))
  const key = await loadOrCreateKey(dir)
  const mesh = await createLibp2pMesh({ dataDir: dir, listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap: o.bootstrap, swarmKey: o.swarmKey, requirePrivate: true, logger: o.logger })
  const store = openSqliteStore({ path: join(dir, 'bidmesh.db') })
  const agent = await startAgent({ mesh, store, executor: o.executor(mesh), logger: o.logger, signJob: f => signJob(key, f) },
    { cpuMilli: 1000, memoryBytes: 1024 ** 3, ...(o.publishers !== undefined ? { publishers: o.publishers(mesh.peerId) } : {}) })
  return { agent, mesh, dir, key }
}

/** Waits until each agent sees all of them as alive. */
export async function waitPrivateAgentsAlive (agents: PrivateAgent[]): Promise<void> {
  for (const h of agents) {
    await waitFor(`${agents.length} alive nodes`, () => h.agent.nodes().filter(n => n.liveness === 'alive').length === agents.length ? true : undefined)
  }
}

export async function stopPrivateAgents (agents: PrivateAgent[]): Promise<void> {
  for (const h of agents) {
    await h.agent.stop()
    rmSync(h.dir, { recursive: true, force: true })
  }
}
