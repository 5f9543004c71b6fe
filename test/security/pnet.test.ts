// Private mesh over real libp2p on loopback: members holding the swarm key connect and gossip;
// a peer without it (or with another key) never gets an upgraded connection and hears nothing.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { multiaddr } from '@multiformats/multiaddr'
import { afterAll, describe, expect, it } from 'vitest'
import { generateSwarmKey } from '../../src/cli/keygen.ts'
import { createLibp2pMesh, libp2pNodeOf } from '../../src/mesh/libp2p-mesh.ts'
import { type Mesh, Topic } from '../../src/mesh/mesh.ts'
import { MessageType, type Message } from '../../src/protocol/messages.ts'

const root = await mkdtemp(join(tmpdir(), 'bidmesh-pnet-'))
const meshes: Mesh[] = []
afterAll(async () => {
  await Promise.all(meshes.map(async m => await m.stop().catch(() => {})))
  await rm(root, { recursive: true, force: true })
})

let n = 0
async function mesh (o: { swarmKey?: Uint8Array, bootstrap?: string[], requirePrivate?: boolean, connectionLimits?: Record<string, number> } = {}): Promise<Mesh> {
  const m = await createLibp2pMesh({ dataDir: join(root, `m${++n}`), listen: ['/ip4/127.0.0.1/tcp/0'], requestTimeoutMs: 2000, ...o })
  meshes.push(m)
  return m
}

function advert (m: Mesh, seq: number): Message {
  return {
    type: MessageType.CapacityAdvert,
    body: { peerId: m.peerId, totalCpuMilli: 1000, freeCpuMilli: 1000, totalMemoryBytes: 1e9, freeMemoryBytes: 1e9, runningJobs: 0, labels: {}, draining: false, seq, sentAtMs: Date.now() }
  }
}

async function until (what: string, cond: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 50))
  }
}

describe('private mesh (pnet)', () => {
  it('two members with the swarm key connect and gossip; 100 attempts without the key upgrade 0 connections and hear 0 messages', async () => {
    const key = generateSwarmKey()
    // The rate limit is lifted on the keyed node so that every attempt reaches the handshake:
    // this tests the swarm key, not the per-host connection limit.
    const a = await mesh({ swarmKey: key, requirePrivate: true, connectionLimits: { inboundConnectionThreshold: 10_000, maxIncomingPendingConnections: 200 } })
    const b = await mesh({ swarmKey: key, requirePrivate: true, bootstrap: a.listenAddrs() })
    const heardByB: string[] = []
    b.addEventListener('gossip:received', ({ from }) => heardByB.push(from))
    await until('a and b to connect', () => a.connectedPeers().includes(b.peerId) && b.connectedPeers().includes(a.peerId))

    const nodeA = libp2pNodeOf(a)!
    const opened: string[] = []
    nodeA.addEventListener('connection:open', (evt: any) => opened.push(evt.detail.remotePeer.toString()))

    // The outsider: a complete agent mesh, just without the key. It listens for gossip too.
    const outsider = await mesh({})
    const heardByOutsider: string[] = []
    outsider.addEventListener('gossip:received', ({ from }) => heardByOutsider.push(from))
    const outsiderNode = libp2pNodeOf(outsider)!

    // Members keep gossiping while the outsider tries.
    let seq = 0
    const gossip = setInterval(() => { void a.publish(Topic.Capacity, advert(a, ++seq)) }, 100)
    const target = multiaddr(a.listenAddrs()[0])
    const failures = new Map<string, number>()
    let upgraded = 0
    const started = Date.now()
    try {
      const attempts = 100
      const parallel = 10
      for (let i = 0; i < attempts; i += parallel) {
        // A refused handshake fails fast, or (when the garbage it reads looks like a length
        // prefix) hangs until the dial's own timeout. Each dial in a batch uses its own address form (with and without /p2p/…) so the dial
        // queue does not merge them into one.
        await Promise.all(Array.from({ length: Math.min(parallel, attempts - i) }, async (_, j) => {
          try {
            const conn = await outsiderNode.dial(j % 2 === 0 ? target : multiaddr(target.toString().replace(/\/p2p\/.*$/, '')), { signal: AbortSignal.timeout(4000), force: true } as any)
            upgraded++
            await conn.close().catch(() => {})
          } catch (err: any) {
            const k = String(err?.name ?? 'Error')
            failures.set(k, (failures.get(k) ?? 0) + 1)
          }
        }))
      }
      await until('b to hear a member advert', () => heardByB.includes(a.peerId))
    } finally {
      clearInterval(gossip)
    }
    const fromOutsider = opened.filter(p => p === outsider.peerId).length
    const aConnsFromOutsider = nodeA.getConnections().filter((c: any) => c.remotePeer.toString() === outsider.peerId).length
    console.log([
      '',
      'pnet: 100 connection attempts without the swarm key against a keyed node',
      `  attempts made:                       100 (in ${Date.now() - started} ms)`,
      `  upgraded connections (dialer side):  ${upgraded}`,
      `  connection:open on the keyed node:   ${fromOutsider} from the outsider (${opened.length} total)`,
      `  keyed node getConnections():         ${nodeA.getConnections().length} (${aConnsFromOutsider} to the outsider; members: ${nodeA.getConnections().map((c: any) => c.remotePeer.toString() === b.peerId ? 'b' : '?').join(',')})`,
      `  gossip messages heard by outsider:   ${heardByOutsider.length}   (member b heard ${heardByB.length})`,
      `  dial failures by error:              ${JSON.stringify(Object.fromEntries(failures))}`
    ].join('\n'))
    expect(upgraded).toBe(0)
    expect(fromOutsider).toBe(0)
    expect(opened.filter(p => p !== b.peerId)).toEqual([])
    expect(aConnsFromOutsider).toBe(0)
    expect(outsider.connectedPeers()).toEqual([])
    expect(heardByOutsider).toEqual([])
    expect([...failures.values()].reduce((x, y) => x + y, 0)).toBe(100)
    expect(a.connectedPeers()).toEqual([b.peerId])
  }, 120_000)

  it('a peer holding a different swarm key cannot join either', async () => {
    const a = await mesh({ swarmKey: generateSwarmKey(), requirePrivate: true })
    const c = await mesh({ swarmKey: generateSwarmKey(), requirePrivate: true, bootstrap: a.listenAddrs() })
    const node = libp2pNodeOf(c)!
    let upgraded = 0
    for (let i = 0; i < 5; i++) {
      try {
        await node.dial(multiaddr(a.listenAddrs()[0]), { signal: AbortSignal.timeout(3000) })
        upgraded++
      } catch {}
    }
    expect(upgraded).toBe(0)
    expect(a.connectedPeers()).toEqual([])
    expect(c.connectedPeers()).toEqual([])
  }, 60_000)

  it('without a key (public mesh) the same limits still let members connect, gossip and answer requests', async () => {
    const a = await mesh({})
    const b = await mesh({ bootstrap: a.listenAddrs() })
    a.handle(async () => ({ type: MessageType.Ack, body: { ok: true } }))
    const heard: string[] = []
    b.addEventListener('gossip:received', ({ from }) => heard.push(from))
    await until('a and b to connect', () => b.connectedPeers().includes(a.peerId))
    let seq = 0
    const timer = setInterval(() => { void a.publish(Topic.Capacity, advert(a, ++seq)) }, 100)
    try {
      await until('b to hear a', () => heard.includes(a.peerId))
    } finally {
      clearInterval(timer)
    }
    expect(await b.request(a.peerId, { type: MessageType.JobQuery, body: { id: 'x' } })).toEqual({ type: MessageType.Ack, body: { ok: true } })
  }, 60_000)

  it('requirePrivate without a key throws SwarmKeyRequiredError', async () => {
    await expect(mesh({ requirePrivate: true })).rejects.toMatchObject({ name: 'SwarmKeyRequiredError', code: 'ERR_SWARM_KEY_REQUIRED' })
  })
})
