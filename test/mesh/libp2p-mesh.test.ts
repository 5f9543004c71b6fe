// Direct requests over real libp2p on loopback: they share one channel per peer, and a peer
// that only speaks the per-request stream protocol is still answered.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { lpStream } from 'it-length-prefixed-stream'
import { afterEach, describe, expect, it } from 'vitest'
import { MESH_DEFAULTS } from '../../src/mesh/constants.ts'
import { createLibp2pMesh, gossipFastMessageId } from '../../src/mesh/libp2p-mesh.ts'
import { type Mesh, Topic } from '../../src/mesh/mesh.ts'
import { serveRpc } from '../../src/mesh/rpc-mux.ts'
import { decodeMessage, encodeMessage } from '../../src/protocol/codec.ts'
import { MAX_DIRECT_BYTES, type Message, MessageType } from '../../src/protocol/messages.ts'
import { type RawGossipNode, startRawGossipNode } from '../support/raw-gossip-node.ts'

/** Answers a JobQuery with an Ack naming the job id it was asked about. */
function answer (frame: Uint8Array): Uint8Array {
  const r = decodeMessage(frame, MAX_DIRECT_BYTES)
  if (!r.ok || r.message.type !== MessageType.JobQuery) throw new Error('unexpected request')
  return encodeMessage({ type: MessageType.Ack, body: { ok: true, message: r.message.body.id } })
}

const query = (id: string): Message => ({ type: MessageType.JobQuery, body: { id } })

describe('libp2p mesh direct requests', () => {
  const cleanups: Array<() => Promise<void>> = []
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c().catch(() => {})
  })

  async function requester (): Promise<Mesh> {
    const dir = mkdtempSync(join(tmpdir(), 'bidmesh-mesh-'))
    const mesh = await createLibp2pMesh({ dataDir: dir, listen: ['/ip4/127.0.0.1/tcp/0'] })
    cleanups.push(async () => { await mesh.stop(); rmSync(dir, { recursive: true, force: true }) })
    return mesh
  }

  async function peer (speaks: { channel: boolean }): Promise<{ raw: RawGossipNode, counts: { channelsOpened: number, streamsOpened: number, notified: number } }> {
    const raw = await startRawGossipNode()
    cleanups.push(async () => { await raw.stop() })
    const counts = { channelsOpened: 0, streamsOpened: 0, notified: 0 }
    if (speaks.channel) {
      await raw.node.handle(MESH_DEFAULTS.rpcMuxProtocol, ({ stream }: any) => {
        counts.channelsOpened++
        void serveRpc({ io: lpStream(stream), maxConcurrent: 128, handle: async (f, { wantsAnswer }) => { if (!wantsAnswer) counts.notified++; return answer(f) } }).catch(() => {})
      })
    }
    await raw.node.handle(MESH_DEFAULTS.rpcProtocol, async ({ stream }: any) => {
      counts.streamsOpened++
      const lp = lpStream(stream)
      await lp.write(answer((await lp.read()).subarray()))
      await stream.close()
    })
    return { raw, counts }
  }

  it('100 concurrent requests to one peer open one channel and are all answered', async () => {
    const mesh = await requester()
    const { raw: p, counts } = await peer({ channel: true })
    await mesh.addPeerAddrs(p.peerId, p.node.getMultiaddrs().map(a => a.toString()))
    const ids = Array.from({ length: 100 }, (_, i) => `job-${i}`)
    const replies = await Promise.all(ids.map(async id => await mesh.request(p.peerId, query(id))))
    expect(replies.map(r => r.type === MessageType.Ack ? r.body.message : undefined)).toEqual(ids)
    expect(counts.channelsOpened).toBe(1)
    expect(counts.streamsOpened).toBe(0)
    // Later requests reuse it.
    await mesh.request(p.peerId, query('later'))
    expect(counts.channelsOpened).toBe(1)
  })

  it('a request over the size cap fails alone; the channel it would have shared keeps working', async () => {
    const mesh = await requester()
    const { raw: p, counts } = await peer({ channel: true })
    await mesh.addPeerAddrs(p.peerId, p.node.getMultiaddrs().map(a => a.toString()))
    const huge: Message = { type: MessageType.JobQuery, body: { id: 'x'.repeat(MAX_DIRECT_BYTES + 1) } }
    const [tooBig, fine] = await Promise.allSettled([mesh.request(p.peerId, huge), mesh.request(p.peerId, query('fine'))])
    expect(tooBig.status === 'rejected' && (tooBig.reason as { code?: string }).code).toBe('ERR_PEER_UNREACHABLE')
    expect(fine.status === 'fulfilled' && fine.value.type === MessageType.Ack && fine.value.body.message).toBe('fine')
    expect(counts.channelsOpened).toBe(1)
  })

  it('a notification goes over the channel marked as wanting no answer; a peer without the channel gets a stream', async () => {
    const mesh = await requester()
    const { raw: p, counts } = await peer({ channel: true })
    await mesh.addPeerAddrs(p.peerId, p.node.getMultiaddrs().map(a => a.toString()))
    await mesh.notify(p.peerId, query('release'))
    // Ordered on the one channel: once the request behind it is answered, it has been handled.
    await mesh.request(p.peerId, query('after'))
    expect(counts).toEqual({ channelsOpened: 1, streamsOpened: 0, notified: 1 })
    const { raw: old, counts: oldCounts } = await peer({ channel: false })
    await mesh.addPeerAddrs(old.peerId, old.node.getMultiaddrs().map(a => a.toString()))
    await mesh.notify(old.peerId, query('release'))
    expect(oldCounts.streamsOpened).toBe(1)
  })

  it('a peer without the channel protocol is asked one stream per request', async () => {
    const mesh = await requester()
    const { raw: p, counts } = await peer({ channel: false })
    await mesh.addPeerAddrs(p.peerId, p.node.getMultiaddrs().map(a => a.toString()))
    const replies = await Promise.all(['a', 'b', 'c'].map(async id => await mesh.request(p.peerId, query(id))))
    expect(replies.map(r => r.type === MessageType.Ack ? r.body.message : undefined)).toEqual(['a', 'b', 'c'])
    expect(counts.streamsOpened).toBe(3)
  })

  it('after the peer restarts, the next request opens a new channel', async () => {
    const mesh = await requester()
    const { raw: p, counts } = await peer({ channel: true })
    const addrs = p.node.getMultiaddrs().map(a => a.toString())
    await mesh.addPeerAddrs(p.peerId, addrs)
    await mesh.request(p.peerId, query('before'))
    await p.node.stop()
    await expect(mesh.request(p.peerId, query('while down'), { timeoutMs: 1000 })).rejects.toHaveProperty('code', 'ERR_PEER_UNREACHABLE')
    await p.node.start()
    await mesh.addPeerAddrs(p.peerId, p.node.getMultiaddrs().map(a => a.toString()))
    const r = await mesh.request(p.peerId, query('after'))
    expect(r.type === MessageType.Ack && r.body.message).toBe('after')
    expect(counts.channelsOpened).toBe(2)
  })
})

describe('libp2p mesh connections', () => {
  const stops: Array<() => Promise<void>> = []
  afterEach(async () => {
    for (const stop of stops.splice(0).reverse()) await stop().catch(() => {})
  })

  async function start (bootstrap: string[] = [], topUp?: Parameters<typeof createLibp2pMesh>[0]['topUp']): Promise<Mesh> {
    const dir = mkdtempSync(join(tmpdir(), 'bidmesh-mesh-'))
    const mesh = await createLibp2pMesh({ dataDir: dir, listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap, ...(topUp !== undefined ? { topUp } : {}) })
    stops.push(async () => { await mesh.stop(); rmSync(dir, { recursive: true, force: true }) })
    return mesh
  }

  /** Polls (real sockets, real time) until done or the deadline. */
  async function until (what: string, done: () => boolean, ms: number): Promise<void> {
    const end = Date.now() + ms
    while (!done()) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
      await new Promise(resolve => setTimeout(resolve, 100))
    }
  }

  const advert = (peerId: string, seq: number): Message => ({
    type: MessageType.CapacityAdvert,
    body: { peerId, totalCpuMilli: 1000, freeCpuMilli: 1000, totalMemoryBytes: 1 << 30, freeMemoryBytes: 1 << 30, runningJobs: 0, labels: {}, draining: false, seq, sentAtMs: Date.now() }
  })

  /** Every leaf hears every other leaf's adverts (gossipsub grafts new connections into its
   *  topic mesh on its heartbeat, so each leaf publishes until then). */
  async function untilLeavesHearEachOther (leaves: Mesh[], ms: number): Promise<void> {
    const heard = leaves.map(() => new Set<string>())
    leaves.forEach((l, i) => l.addEventListener('gossip:received', ({ message }) => {
      if (message.type === MessageType.CapacityAdvert) heard[i].add(message.body.peerId)
    }))
    let seq = 1
    await until('every leaf to hear the others without the seed', () => {
      seq++
      for (const l of leaves) void l.publish(Topic.Capacity, advert(l.peerId, seq))
      return heard.every((h, i) => leaves.every((l, j) => i === j || h.has(l.peerId)))
    }, ms)
  }

  /** A seed, and leaves that bootstrapped from it and learned each other's addresses (what
   *  the agent does with each advert). Index 0 of stops is the seed's. */
  async function seedAndLeaves (n: number, topUp?: Parameters<typeof start>[1]): Promise<{ seed: Mesh, leaves: Mesh[] }> {
    const seed = await start([], topUp)
    const leaves = await Promise.all(Array.from({ length: n }, async () => await start(seed.listenAddrs(), topUp)))
    for (const a of leaves) for (const b of [seed, ...leaves]) if (a !== b) await a.addPeerAddrs(b.peerId, b.listenAddrs())
    return { seed, leaves }
  }

  async function stopSeed (): Promise<void> {
    await stops[0]()
    stops.shift()
  }

  it('agents that all bootstrapped from one seed connect to each other, and still hear each other once it stops', async () => {
    // The minimum alone: no silent-peer dials.
    const { seed, leaves } = await seedAndLeaves(4, { silentPeerDialMs: Infinity })
    await until(`every leaf to hold ${MESH_DEFAULTS.minPeers} connections`, () => leaves.every(l => l.connectedPeers().length >= MESH_DEFAULTS.minPeers), 20_000)
    // Leaves are connected to each other, not only to the seed.
    expect(leaves.every(l => l.connectedPeers().some(p => p !== seed.peerId))).toBe(true)
    await stopSeed()
    await untilLeavesHearEachOther(leaves, 20_000)
  })

  it('an agent dials the learned peers it no longer hears (the far side of a split), and not those it hears', async () => {
    // No minimum: only the silent-peer rule dials.
    const silentPeerDialMs = 2000
    const { leaves } = await seedAndLeaves(3, { minPeers: 0, silentPeerDialMs })
    await until('the leaves to connect to the seed', () => leaves.every(l => l.connectedPeers().length === 1), 20_000)
    // Through the seed the leaves hear each other: over several silence windows and top-ups,
    // none dials another.
    const end = Date.now() + 3 * silentPeerDialMs
    let seq = 1
    while (Date.now() < end) {
      seq++
      for (const l of leaves) void l.publish(Topic.Capacity, advert(l.peerId, seq))
      await new Promise(resolve => setTimeout(resolve, 200))
    }
    expect(leaves.map(l => l.connectedPeers().length)).toEqual([1, 1, 1])
    // The seed stops: the leaves fall silent to each other, and dial.
    await stopSeed()
    await untilLeavesHearEachOther(leaves, 20_000)
  })
})

describe('gossip fast message id', () => {
  it('is the signer and sequence number: equal for copies, different otherwise', () => {
    const from = new Uint8Array([0, 36, 8, 1, 18, 32, ...Array.from({ length: 32 }, (_, i) => i)])
    const seq = (n: number): Uint8Array => new Uint8Array([0, 0, 0, 0, 0, 0, 0, n])
    // A copy arrives as other bytes with the same content (a slice of a larger buffer).
    const framed = new Uint8Array(100)
    framed.set(from, 7)
    const copy = { from: framed.subarray(7, 7 + from.length), seqno: seq(1) }
    expect(gossipFastMessageId(copy)).toBe(gossipFastMessageId({ from, seqno: seq(1) }))
    expect(gossipFastMessageId({ from, seqno: seq(2) })).not.toBe(gossipFastMessageId({ from, seqno: seq(1) }))
    const other = from.slice()
    other[other.length - 1] ^= 1
    expect(gossipFastMessageId({ from: other, seqno: seq(1) })).not.toBe(gossipFastMessageId({ from, seqno: seq(1) }))
  })
})
