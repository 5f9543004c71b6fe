// Nothing that promises a write leaves on a direct stream before the store's flush, requests
// and responses alike; a bid round's messages promise nothing and do not wait.
import { describe, expect, it } from 'vitest'
import { durableMesh } from '../../src/agent/durable-mesh.ts'
import { createMemoryNetwork } from '../../src/mesh/memory-mesh.ts'
import type { Mesh } from '../../src/mesh/mesh.ts'
import { parseJobSpec } from '../../src/protocol/job-spec.ts'
import { type Message, MessageType } from '../../src/protocol/messages.ts'

/** A store whose flushes finish only when the test says so. */
function gatedStore (): { sync: () => Promise<void>, flushes: number, release: () => void } {
  let waiting: Array<() => void> = []
  const s = {
    flushes: 0,
    async sync () { s.flushes++; await new Promise<void>(resolve => waiting.push(resolve)) },
    release () { for (const w of waiting) w(); waiting = [] }
  }
  return s
}

/** Two durable meshes, a and b, on one in-memory network, each with a gated store. */
function pair (): { a: Mesh, aStore: ReturnType<typeof gatedStore>, b: Mesh, bStore: ReturnType<typeof gatedStore> } {
  const net = createMemoryNetwork()
  const aStore = gatedStore()
  const bStore = gatedStore()
  return { a: durableMesh(net.createMesh('a'), aStore), aStore, b: durableMesh(net.createMesh('b'), bStore), bStore }
}

const settle = async (): Promise<void> => { for (let i = 0; i < 5; i++) await new Promise(resolve => setImmediate(resolve)) }
const cancel: Message = { type: MessageType.CancelRequest, body: { jobId: 'job-1' } }
const query: Message = { type: MessageType.JobQuery, body: { id: 'job-1' } }

describe('durable mesh', () => {
  it('a request leaves only after the sender\'s flush, a response only after the answerer\'s', async () => {
    const { a: sender, aStore: senderStore, b: answerer, bStore: answererStore } = pair()
    const received: Message[] = []
    answerer.handle(async (_from, m) => { received.push(m); return { type: MessageType.Ack, body: { ok: true } } })

    let answered = false
    const reply = sender.request('b', cancel).then(r => { answered = true; return r })
    await settle()
    expect(received).toHaveLength(0) // held until the sender's writes are durable
    senderStore.release()
    await settle()
    expect(received).toEqual([cancel])
    expect(answered).toBe(false) // the answer waits for the answerer's flush
    answererStore.release()
    expect(await reply).toEqual({ type: MessageType.Ack, body: { ok: true } })
    expect(senderStore.flushes).toBe(1)
    expect(answererStore.flushes).toBe(1)
  })

  it('gossip is soft state and goes out at once', async () => {
    const net = createMemoryNetwork()
    const store = gatedStore()
    const sender = durableMesh(net.createMesh('a'), store)
    const listener = net.createMesh('b')
    const heard: Message[] = []
    listener.addEventListener('gossip:received', ({ message }) => heard.push(message))
    const leave: Message = { type: MessageType.MemberLeave, body: { peerId: 'a' } }
    await sender.publish('bidmesh/capacity/1', leave)
    await net.settled()
    expect(heard).toHaveLength(1)
    expect(store.flushes).toBe(0)
  })

  it('a bid round\'s messages do not wait for a flush; an award and its acknowledgement do', async () => {
    const { a: owner, aStore: ownerStore, b: bidder, bStore: bidderStore } = pair()
    bidder.handle(async (_from, m) => m.type === MessageType.BidRequest
      ? { type: MessageType.BidRefused, body: { jobId: 'job-1', epoch: 1, reason: 'cpu' } }
      : { type: MessageType.AwardAck, body: { jobId: 'job-1', epoch: 1 } })
    const spec = parseJobSpec({ image: 'bidmesh/busybox:latest', command: 'true' })
    const bidRequest: Message = { type: MessageType.BidRequest, body: { jobId: 'job-1', epoch: 1, owner: 'a', spec } }
    expect((await owner.request('b', bidRequest)).type).toBe(MessageType.BidRefused)
    expect(ownerStore.flushes + bidderStore.flushes).toBe(0)

    const award: Message = { type: MessageType.Award, body: { jobId: 'job-1', epoch: 1, owner: 'a', replicas: [], spec, leaseMs: 3000, term: 0 } }
    let acked = false
    const ack = owner.request('b', award).then(r => { acked = true; return r })
    await settle()
    expect(ownerStore.flushes).toBe(1) // the award waits for the owner's flush
    ownerStore.release()
    await settle()
    expect(acked).toBe(false) // and its acknowledgement for the bidder's
    expect(bidderStore.flushes).toBe(1)
    bidderStore.release()
    expect((await ack).type).toBe(MessageType.AwardAck)
  })
  it('a query for a copy of a job and its reply do not wait for a flush', async () => {
    const { a: asker, aStore: askerStore, b: holder, bStore: holderStore } = pair()
    holder.handle(async () => ({ type: MessageType.JobQueryReply, body: { events: [] } }))
    expect((await asker.request('b', query)).type).toBe(MessageType.JobQueryReply)
    expect(askerStore.flushes + holderStore.flushes).toBe(0)
  })

  it.each([
    ['a lease renewal and its plain acknowledgement do not wait for a flush', 'running', { accepted: true, stop: false }, 0, 0],
    ['nor does a renewal sent while the container starts', 'starting', { accepted: true, stop: false }, 0, 0],
    // The answer may rest on what the owner just wrote (a cancel, a fence): it waits.
    ['a renewal does not wait; an acknowledgement that stops the attempt does', 'running', { accepted: true, stop: true }, 0, 1],
    ['a renewal does not wait; a refusal does', 'running', { accepted: false, stop: true }, 0, 1],
    ['a final result waits on both sides', 'exited', { accepted: true, stop: false }, 1, 1]
  ] as const)('%s', async (_what, state, answer, executorFlushes, ownerFlushes) => {
    const { a: executor, aStore: executorStore, b: owner, bStore: ownerStore } = pair()
    owner.handle(async () => ({ type: MessageType.AttemptUpdateAck, body: { jobId: 'job-1', epoch: 1, ...answer } }))
    const update: Message = { type: MessageType.AttemptUpdate, body: { jobId: 'job-1', epoch: 1, node: 'a', state, ...(state === 'exited' ? { reason: 'exit', exitCode: 0, finishedAtMs: 1 } : {}) } }
    let answered = false
    const reply = executor.request('b', update).then(r => { answered = true; return r })
    await settle()
    expect(executorStore.flushes).toBe(executorFlushes)
    executorStore.release()
    await settle()
    expect(ownerStore.flushes).toBe(ownerFlushes)
    expect(answered).toBe(ownerFlushes === 0)
    ownerStore.release()
    expect((await reply).type).toBe(MessageType.AttemptUpdateAck)
  })

  it.each([
    ['renewals sent together, all acknowledged plainly, wait on neither side', [{ accepted: true, stop: false }, { accepted: true, stop: false }], 0],
    ['their answer waits if one acknowledgement stops an attempt', [{ accepted: true, stop: false }, { accepted: true, stop: true }], 1],
    ['and if one refuses', [{ accepted: false, stop: true }, { accepted: true, stop: false }], 1]
  ] as const)('%s', async (_what, answers, ownerFlushes) => {
    const { a: executor, aStore: executorStore, b: owner, bStore: ownerStore } = pair()
    owner.handle(async () => ({ type: MessageType.AttemptRenewalsAck, body: { acks: answers.map((x, i) => ({ jobId: `job-${i}`, epoch: 1, ...x })), unanswered: [] } }))
    const renewals: Message = { type: MessageType.AttemptRenewals, body: { node: 'a', renewals: answers.map((_, i) => ({ jobId: `job-${i}`, epoch: 1, state: 'running' as const })) } }
    let answered = false
    const reply = executor.request('b', renewals).then(r => { answered = true; return r })
    await settle()
    expect(executorStore.flushes).toBe(0)
    expect(ownerStore.flushes).toBe(ownerFlushes)
    expect(answered).toBe(ownerFlushes === 0)
    ownerStore.release()
    expect((await reply).type).toBe(MessageType.AttemptRenewalsAck)
  })
})
