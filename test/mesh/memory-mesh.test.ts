// The in-memory mesh: gossip, request/response, unreachable peers (stopped, partitioned,
// silent) and frames that fail the codec. No sleeps: tests await the network settling, an
// event, or fake timers for the one timeout.
import { afterEach, describe, expect, it, vi } from 'vitest'
import { createMemoryNetwork } from '../../src/mesh/memory-mesh.ts'
import { type Mesh, type MeshEvents, Topic } from '../../src/mesh/mesh.ts'
import { type Message, MessageType } from '../../src/protocol/messages.ts'

const advert = (peerId: string): Message => ({
  type: MessageType.CapacityAdvert,
  body: { peerId, totalCpuMilli: 4000, freeCpuMilli: 3000, totalMemoryBytes: 1 << 30, freeMemoryBytes: 1 << 29, runningJobs: 1, labels: { zone: 'a' }, draining: false, seq: 7, sentAtMs: 1000 }
})
const query: Message = { type: MessageType.JobQuery, body: { id: 'job-1' } }
const ack = (code: string): Message => ({ type: MessageType.Ack, body: { ok: true, code } })
/** Encodes fine, fails the schema on decoding. */
const invalid = { type: MessageType.CapacityAdvert, body: { peerId: '' } } as unknown as Message

function record<K extends keyof MeshEvents> (mesh: Mesh, type: K): Array<MeshEvents[K]> {
  const seen: Array<MeshEvents[K]> = []
  mesh.addEventListener(type, d => seen.push(d))
  return seen
}

function three (): { net: ReturnType<typeof createMemoryNetwork>, a: Mesh, b: Mesh, c: Mesh } {
  const net = createMemoryNetwork()
  return { net, a: net.createMesh('peer-a'), b: net.createMesh('peer-b'), c: net.createMesh('peer-c') }
}

afterEach(() => { vi.useRealTimers() })

describe('gossip', () => {
  it('reaches every other mesh on the network, decoded, and never the sender', async () => {
    const { net, a, b, c } = three()
    const got = { a: record(a, 'gossip:received'), b: record(b, 'gossip:received'), c: record(c, 'gossip:received') }
    const m = advert('peer-a')
    await a.publish(Topic.Capacity, m)
    await net.settled()
    expect(got.a).toEqual([])
    for (const seen of [got.b, got.c]) {
      expect(seen).toEqual([{ topic: Topic.Capacity, from: 'peer-a', message: m }])
      expect(seen[0].message).not.toBe(m) // a copy off the wire, not the sender's object
    }
  })

  it('counts frames and bytes per topic, as the libp2p mesh does', async () => {
    const { net, a, b } = three()
    await a.publish(Topic.Capacity, advert('peer-a'))
    await a.publish(Topic.Capacity, invalid) // sent, but never received
    await net.settled()
    const sent = a.gossipStats()[Topic.Capacity]
    const received = b.gossipStats()[Topic.Capacity]
    expect(sent).toMatchObject({ sent: 2, received: 0 })
    expect(received).toMatchObject({ sent: 0, received: 1 })
    expect(received.receivedBytes).toBeGreaterThan(0)
    expect(sent.sentBytes).toBeGreaterThan(received.receivedBytes)
    // a copy: callers cannot change the counters
    a.gossipStats()[Topic.Capacity].sent = 99
    expect(a.gossipStats()[Topic.Capacity].sent).toBe(2)
  })

  it('is delivered asynchronously, in order', async () => {
    const { net, a, b } = three()
    const got = record(b, 'gossip:received')
    await a.publish(Topic.Capacity, advert('peer-a'))
    await a.publish(Topic.Jobs, { type: MessageType.JobSummaries, body: { from: 'peer-a', summaries: [] } })
    await net.settled()
    expect(got.map(g => g.topic)).toEqual([Topic.Capacity, Topic.Jobs])
  })

  it('a frame failing the schema is dropped and reported as message:invalid', async () => {
    const { net, a, b } = three()
    const got = record(b, 'gossip:received')
    const bad = record(b, 'message:invalid')
    await a.publish(Topic.Capacity, invalid)
    await net.settled()
    expect(got).toEqual([])
    expect(bad).toEqual([{ from: 'peer-a', channel: 'gossip', rejection: 'schema' }])
  })

  it('a frame over the gossip size cap is dropped as too-large', async () => {
    const { net, a, b } = three()
    const bad = record(b, 'message:invalid')
    const summaries = Array.from({ length: 200 }, (_, i) => ({ id: `job-${i}`, image: 'x'.repeat(500), owner: 'peer-a', state: 'pending' as const, epoch: 0, term: 0, createdAtMs: 0, updatedAtMs: 0 }))
    await a.publish(Topic.Jobs, { type: MessageType.JobSummaries, body: { from: 'peer-a', summaries } })
    await net.settled()
    expect(bad).toEqual([{ from: 'peer-a', channel: 'gossip', rejection: 'too-large' }])
  })
})

describe('requests', () => {
  it('call the target handler with the sender and a decoded copy, and return its response', async () => {
    const { a, b } = three()
    const calls: Array<{ from: string, message: Message }> = []
    b.handle(async (from, message) => { calls.push({ from, message }); return ack('from-b') })
    const response = await a.request('peer-b', query)
    expect(response).toEqual(ack('from-b'))
    expect(calls).toEqual([{ from: 'peer-a', message: query }])
    expect(calls[0].message).not.toBe(query)
  })

  it('a notification runs the target handler, and the sender waits for nothing', async () => {
    const { a, b } = three()
    const calls: Array<{ from: string, message: Message }> = []
    let unblock!: () => void
    const blocked = new Promise<void>(resolve => { unblock = resolve })
    b.handle(async (from, message) => { calls.push({ from, message }); await blocked; return ack('from-b') })
    await a.notify('peer-b', query) // resolves with the handler still blocked
    await new Promise(resolve => setImmediate(resolve))
    expect(calls).toEqual([{ from: 'peer-a', message: query }])
    unblock()
  })

  it('a request to oneself goes to one\'s own handler', async () => {
    const { a } = three()
    a.handle(async (from) => ack(`self:${from}`))
    expect(await a.request('peer-a', query)).toEqual(ack('self:peer-a'))
  })

  it('an invalid request is reported at the target, never handled, and fails at the sender', async () => {
    const { a, b } = three()
    const handled: Message[] = []
    b.handle(async (_from, m) => { handled.push(m); return ack('x') })
    const bad = record(b, 'message:invalid')
    await expect(a.request('peer-b', invalid)).rejects.toMatchObject({ name: 'PeerUnreachableError', code: 'ERR_PEER_UNREACHABLE', peer: 'peer-b' })
    expect(bad).toEqual([{ from: 'peer-a', channel: 'direct', rejection: 'schema' }])
    expect(handled).toEqual([])
  })

  it('an invalid response is reported at the sender as InvalidResponseError', async () => {
    const { a, b } = three()
    b.handle(async () => invalid)
    const bad = record(a, 'message:invalid')
    await expect(a.request('peer-b', query)).rejects.toMatchObject({ name: 'InvalidResponseError', code: 'ERR_INVALID_RESPONSE', peer: 'peer-b', rejection: 'schema' })
    expect(bad).toEqual([{ from: 'peer-b', channel: 'direct', rejection: 'schema' }])
  })

  it('a handler that throws, or none at all, makes the peer unreachable', async () => {
    const { a, b, c } = three()
    b.handle(async () => { throw new Error('boom') })
    await expect(a.request('peer-b', query)).rejects.toMatchObject({ name: 'PeerUnreachableError' })
    await expect(a.request('peer-c', query)).rejects.toMatchObject({ name: 'PeerUnreachableError', peer: 'peer-c' })
    expect(c.peerId).toBe('peer-c')
  })

  it('an unknown peer is unreachable', async () => {
    const { a } = three()
    await expect(a.request('peer-z', query)).rejects.toMatchObject({ name: 'PeerUnreachableError', peer: 'peer-z' })
  })

  it('no response within the timeout: unreachable, and the handler is told to stop', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] })
    const { a, b } = three()
    let signal: AbortSignal | undefined
    b.handle(async (_from, _m, options) => { signal = options.signal; return await new Promise<Message>(() => {}) })
    const pending = a.request('peer-b', query, { timeoutMs: 1000 })
    const outcome = pending.then(() => 'resolved', (err: unknown) => err)
    await vi.advanceTimersByTimeAsync(999)
    expect(signal?.aborted).toBe(false)
    await vi.advanceTimersByTimeAsync(1)
    expect(await outcome).toMatchObject({ name: 'PeerUnreachableError', peer: 'peer-b' })
    expect(signal?.aborted).toBe(true)
  })

  it("the caller's abort signal ends the request", async () => {
    const { a, b } = three()
    b.handle(async () => await new Promise<Message>(() => {}))
    const controller = new AbortController()
    const pending = a.request('peer-b', query, { signal: controller.signal })
    controller.abort()
    await expect(pending).rejects.toMatchObject({ name: 'PeerUnreachableError' })
    await expect(a.request('peer-b', query, { signal: controller.signal })).rejects.toMatchObject({ name: 'PeerUnreachableError' })
  })
})

describe('stop', () => {
  it('a stopped mesh is unreachable, gets no gossip, and its peers see it disconnect', async () => {
    const { net, a, b, c } = three()
    b.handle(async () => ack('b'))
    const gone = record(a, 'peer:disconnected')
    const gossip = record(b, 'gossip:received')
    await net.settled()
    expect(a.connectedPeers().sort()).toEqual(['peer-b', 'peer-c'])
    await b.stop()
    await net.settled()
    expect(gone).toEqual([{ peer: 'peer-b' }])
    expect(a.connectedPeers()).toEqual(['peer-c'])
    expect(b.connectedPeers()).toEqual([])
    await expect(a.request('peer-b', query)).rejects.toMatchObject({ name: 'PeerUnreachableError', peer: 'peer-b' })
    await expect(b.request('peer-a', query)).rejects.toMatchObject({ name: 'PeerUnreachableError', peer: 'peer-a' })
    await a.publish(Topic.Capacity, advert('peer-a'))
    await b.publish(Topic.Capacity, advert('peer-b')) // a stopped mesh publishes nothing, and does not throw
    const atC = record(c, 'gossip:received')
    await net.settled()
    expect(gossip).toEqual([])
    expect(atC).toEqual([])
  })

  it('a peer id may be used again once its mesh has stopped, but not while it runs', async () => {
    const net = createMemoryNetwork()
    const a = net.createMesh('peer-a')
    expect(() => net.createMesh('peer-a')).toThrow(expect.objectContaining({ name: 'DuplicatePeerError', code: 'ERR_DUPLICATE_PEER' }))
    await a.stop()
    const again = net.createMesh('peer-a')
    const b = net.createMesh('peer-b')
    b.handle(async () => ack('b'))
    expect(await again.request('peer-b', query)).toEqual(ack('b'))
  })

  it('peers learn of each other as they join', async () => {
    const net = createMemoryNetwork()
    const a = net.createMesh('peer-a')
    const joined = record(a, 'peer:connected')
    const b = net.createMesh('peer-b')
    const joinedB = record(b, 'peer:connected')
    await net.settled()
    expect(joined).toEqual([{ peer: 'peer-b' }])
    expect(joinedB).toEqual([{ peer: 'peer-a' }])
  })
})

describe('partitions', () => {
  it('cut both ways across, leave each side whole, and heal', async () => {
    const { net, a, b, c } = three()
    for (const m of [a, b, c]) m.handle(async () => ack(m.peerId))
    await net.settled()
    const lostAtA = record(a, 'peer:disconnected')
    const backAtA = record(a, 'peer:connected')
    const atB = record(b, 'gossip:received')
    const atC = record(c, 'gossip:received')

    net.partition(['peer-a'], ['peer-b'])
    await net.settled()
    expect(lostAtA).toEqual([{ peer: 'peer-b' }])
    expect(a.connectedPeers()).toEqual(['peer-c'])
    await expect(a.request('peer-b', query)).rejects.toMatchObject({ name: 'PeerUnreachableError', peer: 'peer-b' })
    await expect(b.request('peer-a', query)).rejects.toMatchObject({ name: 'PeerUnreachableError', peer: 'peer-a' })
    expect(await a.request('peer-c', query)).toEqual(ack('peer-c'))
    expect(await b.request('peer-c', query)).toEqual(ack('peer-c'))
    await a.publish(Topic.Capacity, advert('peer-a'))
    await net.settled()
    expect(atB).toEqual([])
    expect(atC.map(g => g.from)).toEqual(['peer-a'])

    net.heal()
    await net.settled()
    expect(backAtA).toEqual([{ peer: 'peer-b' }])
    expect(await a.request('peer-b', query)).toEqual(ack('peer-b'))
    await a.publish(Topic.Capacity, advert('peer-a'))
    await net.settled()
    expect(atB.map(g => g.from)).toEqual(['peer-a'])
  })

  it('a partition that starts while a request is in flight fails it', async () => {
    const { net, a, b } = three()
    let release!: (m: Message) => void
    b.handle(async () => await new Promise<Message>(resolve => { release = resolve }))
    const pending = a.request('peer-b', query)
    await net.settled()
    while (release === undefined) await Promise.resolve()
    net.partition(['peer-a'], ['peer-b'])
    release(ack('late'))
    await expect(pending).rejects.toMatchObject({ name: 'PeerUnreachableError', peer: 'peer-b' })
  })
})

describe('addresses', () => {
  it('listen addresses name the peer; learning addresses is a no-op', async () => {
    const { a } = three()
    expect(a.listenAddrs()).toEqual(['/memory/peer-a/p2p/peer-a'])
    await expect(a.addPeerAddrs('peer-b', ['/memory/peer-b/p2p/peer-b'])).resolves.toBeUndefined()
  })
})
