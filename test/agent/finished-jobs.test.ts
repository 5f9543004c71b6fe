// A finished job leaves its owner's memory after finishedJobRetentionMs (the store keeps it),
// so an agent's memory follows its job rate, not its whole history; a late report about such
// a job is answered exactly as it was while the job was held; and after historyRetentionMs it
// leaves every store too. Real agents on the in-memory mesh under fake timers.
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { type Mesh, Topic } from '../../src/mesh/mesh.ts'
import type { JobRecord } from '../../src/protocol/job.ts'
import { type Message, MessageType } from '../../src/protocol/messages.ts'
import { noopExecutor } from '../../src/runtime/noop-executor.ts'
import { type VirtualAgents, createVirtualAgents, untilJobState } from '../support/virtual-agents.ts'

const RETENTION_MS = 60_000
const HISTORY_MS = 300_000
const JOB = { image: 'bidmesh/busybox:latest', command: 'true', resources: { cpus: 0.1, memory: '16m' } }

/** The executor's own mesh: only an attempt's executor may report on it. */
function executorMesh (v: VirtualAgents, node: string): Mesh {
  return v.nodes.find(n => n.id === node)!.mesh
}

async function advance (ms: number): Promise<void> {
  for (let t = 0; t < ms; t += 50) await vi.advanceTimersByTimeAsync(50)
}

/** A job submitted to agent 0, once it has succeeded. */
async function succeededJob (v: VirtualAgents): Promise<JobRecord> {
  const owner = v.nodes[0].agent
  const submitted = await owner.submit(JOB)
  let job: JobRecord | undefined
  await v.advanceUntil('the job to succeed', () => {
    void owner.getJob(submitted.id).then(d => { job = d.job })
    return job?.state === 'succeeded'
  }, 20_000)
  return job!
}

describe('finished jobs: memory, metrics, history', () => {
  let v: VirtualAgents

  beforeEach(async () => {
    v = createVirtualAgents()
    await v.start(3, { executorFor: () => noopExecutor({ runMs: 200 }), timings: { finishedJobRetentionMs: RETENTION_MS, historyRetentionMs: HISTORY_MS, replayWindowMs: HISTORY_MS } })
  })
  afterEach(async () => {
    await v.stop()
  })

  async function inMemory (i: number): Promise<number> {
    const m = /^bidmesh_owned_jobs_in_memory (\d+)$/m.exec((await v.nodes[i].agent.metrics()).body)
    expect(m).not.toBeNull()
    return Number(m![1])
  }

  const finishedJob = async (): Promise<JobRecord> => await succeededJob(v)

  /** The reports a late executor might send about the job's only attempt, and the answers. */
  async function lateReports (job: JobRecord): Promise<Array<Message['body']>> {
    const a = job.attempts[0]
    const base = { jobId: job.id, epoch: a.epoch, node: a.node }
    const reports = [
      { ...base, state: 'exited' as const, exitCode: 0, reason: 'exit' as const, startedAtMs: a.startedAtMs, finishedAtMs: a.finishedAtMs },
      { ...base, state: 'running' as const, startedAtMs: a.startedAtMs },
      { ...base, epoch: a.epoch + 1, state: 'exited' as const, exitCode: 1, reason: 'exit' as const }
    ]
    const answers: Array<Message['body']> = []
    for (const body of reports) {
      let answer: Message | undefined
      // sent from the executor's own mesh, as an executor whose acknowledgement was lost would
      void executorMesh(v, a.node!).request(v.nodes[0].id, { type: MessageType.AttemptUpdate, body }).then(r => { answer = r })
      await v.advanceUntil('the owner to answer', () => answer !== undefined, 10_000)
      expect(answer!.type).toBe(MessageType.AttemptUpdateAck)
      answers.push(answer!.body)
    }
    return answers
  }

  it('leaves memory after the retention, is still read from the store, and late reports get the same answers', async () => {
    const job = await finishedJob()
    expect(await inMemory(0)).toBe(1)
    const whileHeld = await lateReports(job)
    // A resent final of the accepted attempt is acknowledged (so its executor stops resending),
    // a renewal is told to stop, a report from an epoch that never was is refused.
    expect(whileHeld.map(b => [(b as { accepted: boolean }).accepted, (b as { stop: boolean }).stop])).toEqual([[true, true], [true, true], [false, true]])

    await advance(RETENTION_MS - 10_000)
    expect(await inMemory(0)).toBe(1) // not before its time
    await advance(20_000) // the retention, and a sweep (every tenth of it)
    expect(await inMemory(0)).toBe(0)

    const read = await v.nodes[0].agent.getJob(job.id)
    expect(read.job.state).toBe('succeeded')
    expect(read.job.attempts).toHaveLength(1)

    const afterEviction = await lateReports(job)
    expect(afterEviction).toEqual(whileHeld)
    // Answered from the stored record, with nothing re-run or re-decided.
    const after = await v.nodes[0].agent.getJob(job.id)
    expect(after.job.state).toBe('succeeded')
    expect(after.job.attempts).toHaveLength(1)
    expect(after.job.epoch).toBe(job.epoch)
    // Held again for a full retention from its return, then gone again.
    expect(await inMemory(0)).toBe(1)
    await advance(RETENTION_MS - 10_000)
    expect(await inMemory(0)).toBe(1)
    await advance(20_000)
    expect(await inMemory(0)).toBe(0)
  })

  it('a newer owner\'s summary of an evicted job rewrites its stored owner, so late reports go there', async () => {
    const job = await finishedJob()
    await advance(RETENTION_MS + 10_000)
    expect(await inMemory(0)).toBe(0)
    // Another agent owns the job under a higher term (it took it over while we were cut off).
    const key = await generateKeyPair('Ed25519') as unknown as PrivateKey
    const other = v.net.createMesh(peerIdFromPrivateKey(key).toString())
    const newOwner = other.peerId
    const summary = { id: job.id, image: job.spec.image, owner: newOwner, state: job.state, epoch: job.epoch, term: job.term + 1, createdAtMs: job.createdAtMs, updatedAtMs: Date.now() }
    await other.publish(Topic.Jobs, { type: MessageType.JobSummaries, body: { from: newOwner, summaries: [summary] } })
    await advance(1000)
    await other.stop()
    const stored = v.nodes[0].store.getJob(job.id)!
    expect(stored.owner).toBe(newOwner)
    expect(stored.term).toBe(job.term) // our copy keeps its own (lower) term: it is stale
    // A late final is no longer answered as ours, nor does it come back into memory.
    const a = job.attempts[0]
    let answer: Message | undefined
    void executorMesh(v, a.node!).request(v.nodes[0].id, { type: MessageType.AttemptUpdate, body: { jobId: job.id, epoch: a.epoch, node: a.node, state: 'exited', exitCode: 0, reason: 'exit', startedAtMs: a.startedAtMs, finishedAtMs: a.finishedAtMs } }).then(r => { answer = r })
    await v.advanceUntil('the old owner to answer', () => answer !== undefined, 10_000)
    expect(answer!.type).toBe(MessageType.Ack)
    expect((answer!.body as { code?: string }).code).toBe('ERR_NOT_OWNER')
    expect(await inMemory(0)).toBe(0)
  })

  it('keeps a live job in memory however old it is', async () => {
    const owner = v.nodes[0].agent
    await finishedJob()
    // No node has this label: the job stays pending (live) for good.
    const stuck = await owner.submit({ ...JOB, constraints: { zone: 'nowhere' } })
    await advance(2 * RETENTION_MS)
    expect((await owner.getJob(stuck.id)).job.state).toBe('pending')
    // the pending one is held; the finished one left
    expect(await inMemory(0)).toBe(1)
  })

  it('metrics: unfinished jobs by state, finished ones counted once as they finish', async () => {
    const owner = v.nodes[0].agent
    const metric = async (line: string): Promise<number> => {
      const m = new RegExp(`^${line.replace(/[{}]/g, c => `\\${c}`)} (\\d+)$`, 'm').exec((await owner.metrics()).body)
      return m === null ? NaN : Number(m[1])
    }
    const done = await finishedJob()
    const stuck = await owner.submit({ ...JOB, constraints: { zone: 'nowhere' } })
    await advance(1000)
    expect(await metric('bidmesh_jobs{state="pending"}')).toBe(1)
    expect(await metric('bidmesh_jobs{state="running"}')).toBe(0)
    expect(await metric('bidmesh_jobs_finished_total{state="succeeded"}')).toBe(1)
    await owner.cancel(stuck.id)
    await advance(1000)
    expect(await metric('bidmesh_jobs{state="pending"}')).toBe(0)
    // a cancel's step names the outcome twice (cause and outcome): still one job
    expect(await metric('bidmesh_jobs_finished_total{state="cancelled"}')).toBe(1)
    // late reports about a finished job change no count
    await lateReports(done)
    expect(await metric('bidmesh_jobs_finished_total{state="succeeded"}')).toBe(1)
  })

  it('history: a finished job is deleted from every store after historyRetentionMs; live jobs stay', async () => {
    const owner = v.nodes[0].agent
    const done = await finishedJob()
    const stuck = await owner.submit({ ...JOB, constraints: { zone: 'nowhere' } })
    const holders = (id: string): number => v.nodes.filter(n => n.store.getJob(id) !== undefined).length
    expect(holders(done.id)).toBeGreaterThanOrEqual(2) // the owner and its replicas
    const held = holders(done.id)
    expect(v.nodes[0].store.events(done.id).length).toBeGreaterThan(0)
    await advance(HISTORY_MS - 60_000)
    expect(holders(done.id)).toBe(held) // not before its time
    await advance(60_000 + HISTORY_MS / 10 + 1000) // its time, and one check (every tenth of it)
    expect(holders(done.id)).toBe(0)
    for (const n of v.nodes) expect(n.store.events(done.id)).toEqual([])
    expect(holders(stuck.id)).toBeGreaterThanOrEqual(2)
    expect((await owner.getJob(stuck.id)).job.state).toBe('pending')
  })
})

describe('history: the first check', () => {
  let v: VirtualAgents
  afterEach(async () => { await v.stop() })

  it('runs within a minute of start, not an hour later, so an agent restarted often still deletes', async () => {
    v = createVirtualAgents()
    const dayMs = 24 * 3600_000
    const finished = (id: string, agoMs: number): JobRecord => ({
      id,
      spec: { image: JOB.image, command: ['true'], env: {}, cpuMilli: 100, memoryBytes: 16 * 1024 * 1024, pidsLimit: 128, timeoutMs: 60_000, retries: 0, constraints: {}, network: 'none' },
      owner: '12D3KooWOwner',
      publisher: '12D3KooWPublisher',
      state: 'succeeded',
      epoch: 0,
      term: 0,
      version: 3,
      replicas: [],
      attempts: [],
      createdAtMs: Date.now() - agoMs,
      updatedAtMs: Date.now() - agoMs
    })
    // the default historyRetentionMs (7 days), checked hourly
    await v.start(1, { executorFor: () => noopExecutor({ runMs: 200 }), wrapStore: store => {
      store.putJob(finished('old', 8 * dayMs))
      store.putJob(finished('recent', dayMs))
    } })
    const store = v.nodes[0].store
    expect(store.getJob('old')).toBeDefined()
    await v.advanceUntil('the first history check', () => store.getJob('old') === undefined, 61_000)
    expect(store.getJob('recent')).toBeDefined()
  })
})

describe('finished jobs: a resent final after the replicas died', () => {
  let v: VirtualAgents
  afterEach(async () => {
    await v.stop()
  })

  it('is acknowledged from the store without asking the dead replicas again', async () => {
    v = createVirtualAgents()
    // 9 agents: a job's group is its owner and 4 replicas, so 3 replicas can die while the
    // mesh keeps its majority (6 of 9)
    await v.start(9, { executorFor: () => noopExecutor({ runMs: 200 }), timings: { finishedJobRetentionMs: RETENTION_MS } })
    const owner = v.nodes[0].agent
    const job = await succeededJob(v)
    await advance(RETENTION_MS + 10_000)
    expect(/^bidmesh_owned_jobs_in_memory 0$/m.test((await owner.metrics()).body)).toBe(true)

    // not the executor: it is the one that resends the final below
    const dead = v.nodes.filter(n => job.replicas.includes(n.id) && n.id !== job.attempts[0].node).slice(0, 3)
    expect(dead).toHaveLength(3)
    let stopped = false
    void Promise.all(dead.map(async n => await n.agent.stop())).then(() => { stopped = true })
    await v.advanceUntil('three replicas to stop', () => stopped, 10_000)

    const a = job.attempts[0]
    let answer: Message | undefined
    void executorMesh(v, a.node!).request(v.nodes[0].id, { type: MessageType.AttemptUpdate, body: { jobId: job.id, epoch: a.epoch, node: a.node, state: 'exited', exitCode: 0, reason: 'exit', startedAtMs: a.startedAtMs, finishedAtMs: a.finishedAtMs } }).then(r => { answer = r })
    await v.advanceUntil('the owner to answer', () => answer !== undefined, 10_000)
    expect(answer!.type).toBe(MessageType.AttemptUpdateAck)
    expect((answer!.body as { accepted: boolean, stop: boolean })).toMatchObject({ accepted: true, stop: true })
    expect((await owner.getJob(job.id)).job.state).toBe('succeeded')
  })
})

describe('finished jobs: a replica cut off when the final was replicated', () => {
  let v: VirtualAgents
  afterEach(async () => { await v.stop() })

  /** 6 agents (a job's group is its owner and 4 replicas, so with one replica cut off the
   *  final still reaches a majority of the group); a job runs; one of its replicas (not its
   *  executor) is cut off while it runs, and stays cut off until after the owner has evicted
   *  the finished job from memory (and with it any resend to that replica). */
  async function cutOffThroughTheFinal (timings: NonNullable<Parameters<VirtualAgents['start']>[1]['timings']>): Promise<{ id: string, owner: VirtualAgents['nodes'][number], cutOff: VirtualAgents['nodes'][number] }> {
    v = createVirtualAgents()
    await v.start(6, { executorFor: () => noopExecutor({ runMs: 5000 }), timings })
    const owner = v.nodes[0]
    const { id } = await owner.agent.submit(JOB)
    const job = await untilJobState(v, 0, id, 'running', 20_000)
    const cutOff = v.nodes.find(n => job.replicas.includes(n.id) && n.id !== job.node)!
    await v.advanceUntil('the cut-off replica to hold the running copy', () => cutOff.store.getJob(id)?.state === 'running', 5000)
    v.net.partition([cutOff.id], v.nodes.filter(n => n !== cutOff).map(n => n.id))
    await untilJobState(v, 0, id, 'succeeded', 20_000)
    let evicted = false
    await v.advanceUntil('the owner to evict the job', () => {
      void owner.agent.metrics().then(m => { evicted = /^bidmesh_owned_jobs_in_memory 0$/m.test(m.body) })
      return evicted
    }, 3 * RETENTION_MS)
    expect(cutOff.store.getJob(id)?.state).toBe('running')
    return { id, owner, cutOff }
  }

  it('catches up with its owner once back, instead of keeping the job "running" on standby for good', async () => {
    const { id, owner, cutOff } = await cutOffThroughTheFinal({ finishedJobRetentionMs: RETENTION_MS })
    v.net.heal()
    await v.advanceUntil('the replica\'s copy to show the job succeeded', () => cutOff.store.getJob(id)?.state === 'succeeded', 3 * RETENTION_MS)
    // with the owner's events (the final's among them), not only its record
    expect(cutOff.store.events(id).map(e => e.type)).toEqual(owner.store.events(id).map(e => e.type))
  })

  it('back only after the owner deleted the job with its history, and past the replay window, forgets its copy', async () => {
    const { id, owner, cutOff } = await cutOffThroughTheFinal({ finishedJobRetentionMs: RETENTION_MS, historyRetentionMs: HISTORY_MS, replayWindowMs: HISTORY_MS })
    await v.advanceUntil('the owner to delete the job with its history', () => owner.store.getJob(id) === undefined, 2 * HISTORY_MS)
    v.net.heal()
    await v.advanceUntil('the replica to forget its copy', () => cutOff.store.getJob(id) === undefined, 3 * RETENTION_MS)
    expect(cutOff.store.events(id)).toEqual([])
  })
})
