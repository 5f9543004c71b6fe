// Replication waits for a quorum of a job's replicas, not for all of them: real agents (the
// composition root, SQLite) on the in-memory mesh under fake timers, with some replicas'
// disk flushes held back so they cannot answer.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import type { Agent } from '../../src/agent/agent.ts'
import { AGENT_DEFAULTS } from '../../src/constants.ts'
import { type Message, MessageType } from '../../src/protocol/messages.ts'
import { noopExecutor } from '../../src/runtime/noop-executor.ts'
import { type VirtualAgents, createVirtualAgents } from '../support/virtual-agents.ts'

type MessageOf<T extends Message['type']> = Extract<Message, { type: T }>

describe('replication to a job\'s replicas', () => {
  let v: VirtualAgents
  /** per agent: hold or release its flushes. While held, nothing it must flush first (a
   *  replica's acknowledgement among them) leaves it. */
  let holds: Array<{ hold: () => void, release: () => void }>

  beforeEach(() => { v = createVirtualAgents(); holds = [] })
  afterEach(async () => {
    for (const h of holds) h.release()
    await v.stop()
  })

  async function startNodes (count: number): Promise<void> {
    await v.start(count, {
      executorFor: () => noopExecutor({ runMs: 60_000 }),
      wrapStore: store => {
        let held: Promise<void> | undefined
        let release = (): void => {}
        const realSync = store.sync.bind(store)
        store.sync = async () => { if (held !== undefined) await held; await realSync() }
        holds.push({ hold: () => { held = new Promise(resolve => { release = resolve }) }, release: () => { held = undefined; release() } })
      }
    })
  }

  /** Lets real I/O (flushes, the tick's setImmediate) run, with no virtual time passing. */
  async function turns (until: () => boolean): Promise<void> {
    for (let i = 0; i < 200 && !until(); i++) {
      await new Promise(resolve => setImmediate(resolve))
      await vi.advanceTimersByTimeAsync(0)
    }
  }

  /** Starts 5 agents; the first (the owner in these tests) hands each JobReplicate it sends to
   *  `through`, which may record it or hold it back before `send` passes it on. */
  async function startWithOwnerReplication (through: (to: string, message: MessageOf<typeof MessageType.JobReplicate>, send: () => Promise<Message>) => Promise<Message>): Promise<void> {
    await v.start(5, {
      executorFor: () => noopExecutor({ runMs: 60_000 }),
      wrapMesh: (mesh, i) => {
        if (i !== 0) return mesh
        const request = mesh.request.bind(mesh)
        mesh.request = async (to, message, options) => message.type === MessageType.JobReplicate
          ? await through(to, message, async () => await request(to, message, options))
          : await request(to, message, options)
        return mesh
      }
    })
  }

  const JOB = { image: 'bidmesh/busybox:latest', command: 'true', resources: { cpus: 0.1, memory: '16m' } }

  it('a submit is answered once a quorum of replicas holds the job; the others get it within replicationLaggardsMs', async () => {
    const requests: Array<{ to: string, jobs: string[] }> = []
    await startWithOwnerReplication(async (to, message, send) => {
      requests.push({ to, jobs: message.body.jobs.map(j => j.job.id) })
      return await send()
    })
    const [owner, ...others] = v.nodes
    requests.length = 0
    const job = await owner.agent.submit(JOB)
    // Every other agent is one of the job's 4 replicas; 2 of them (with the owner, a
    // majority of the 5) suffice, and only they were sent the submit's copy.
    expect(job.replicas).toHaveLength(4)
    const holders = (): string[] => others.filter(n => n.store.getJob(job.id) !== undefined).map(n => n.id)
    expect(holders()).toHaveLength(2)
    expect(requests.map(r => r.to).sort()).toEqual(holders().sort())
    await vi.advanceTimersByTimeAsync(AGENT_DEFAULTS.replicationLaggardsMs)
    await turns(() => holders().length === 4)
    expect(holders()).toHaveLength(4)
  })

  it('a quorum replica that does not answer is stood in for after replicationHedgeMs, not after the request timeout', async () => {
    /** the submit's first two copies (the quorum's), never answered until the test ends */
    let holding = 0
    const never = new Promise<Message>(() => {})
    await startWithOwnerReplication(async (_to, _message, send) => holding++ < 2 ? await never : await send())
    const [owner, ...others] = v.nodes
    holding = 0
    let answered: Awaited<ReturnType<Agent['submit']>> | undefined
    void owner.agent.submit(JOB).then(j => { answered = j })
    await turns(() => answered !== undefined)
    expect(answered).toBe(undefined)
    await vi.advanceTimersByTimeAsync(AGENT_DEFAULTS.replicationHedgeMs)
    await turns(() => answered !== undefined)
    // Well before the held requests' 2 s timeout: the two laggards answered in their place.
    expect(answered?.replicas).toHaveLength(4)
    expect(others.filter(n => n.store.getJob(answered!.id) !== undefined).length).toBeGreaterThanOrEqual(2)
  })

  it('a quorum replica whose request fails is stood in for at once by a laggard', async () => {
    let failing = 0
    await startWithOwnerReplication(async (_to, _message, send) => {
      if (failing-- > 0) throw new Error('connection reset')
      return await send()
    })
    const [owner, ...others] = v.nodes
    failing = 1 // the submit's first copy
    let answered: Awaited<ReturnType<Agent['submit']>> | undefined
    void owner.agent.submit(JOB).then(j => { answered = j })
    await turns(() => answered !== undefined)
    // No virtual time passed: neither the hedge nor a timeout, but the next replica at once.
    expect(answered?.replicas).toHaveLength(4)
    expect(others.filter(n => n.store.getJob(answered!.id) !== undefined)).toHaveLength(2)
  })

  it('a draining owner sends its jobs\' last copies to every replica, the laggards too', async () => {
    // The owner cannot run the job, so its drain waits on nothing and takes no virtual time.
    await v.start(5, { executorFor: () => noopExecutor({ runMs: 60_000 }), cpuMilliFor: i => i === 0 ? 50 : 1000 })
    const [owner, ...others] = v.nodes
    const job = await owner.agent.submit(JOB)
    expect(others.filter(n => n.store.getJob(job.id) !== undefined)).toHaveLength(2)
    let drained = false
    void owner.agent.drain().then(() => { drained = true })
    await turns(() => drained)
    expect(drained).toBe(true)
    const latest = owner.store.getJob(job.id)!
    for (const n of others) expect(n.store.getJob(job.id)?.version, n.id).toBe(latest.version)
  })

  /** Five agents and a job submitted on the first. Its two laggards (the replicas the
   *  submit's quorum left out) fail every copy the owner sends them while `failing.on`. */
  async function submitWithFailingLaggards (): Promise<{ owner: VirtualAgents['nodes'][number], others: VirtualAgents['nodes'], job: Awaited<ReturnType<Agent['submit']>>, laggards: string[], attempts: Array<{ to: string, atMs: number }>, failing: { on: boolean } }> {
    const failing = { on: true }
    let laggards: string[] = []
    const attempts: Array<{ to: string, atMs: number }> = []
    await startWithOwnerReplication(async (to, _message, send) => {
      attempts.push({ to, atMs: Date.now() })
      if (failing.on && laggards.includes(to)) throw new Error('connection reset')
      return await send()
    })
    const [owner, ...others] = v.nodes
    const job = await owner.agent.submit(JOB)
    laggards = others.filter(n => n.store.getJob(job.id) === undefined).map(n => n.id)
    expect(laggards).toHaveLength(2)
    return { owner, others, job, laggards, attempts, failing }
  }

  it('a laggard whose copy failed is sent it again after a backoff, with no change of the job to carry it', async () => {
    const { owner, others, job, laggards, attempts, failing } = await submitWithFailingLaggards()
    const holders = (): string[] => others.filter(n => n.store.getJob(job.id) !== undefined).map(n => n.id)
    // The job's first changes (award, start) settle; every laggards' flush meanwhile fails.
    await vi.advanceTimersByTimeAsync(3 * AGENT_DEFAULTS.replicationLaggardsMs)
    await turns(() => false)
    expect(attempts.filter(a => laggards.includes(a.to)).length).toBeGreaterThan(0)
    expect(holders()).toHaveLength(2)
    const version = owner.store.getJob(job.id)!.version
    failing.on = false
    for (let i = 0; i < 40 && holders().length < 4; i++) {
      await vi.advanceTimersByTimeAsync(100)
      await turns(() => holders().length === 4)
    }
    expect(holders()).toHaveLength(4)
    // Carried by a retry, not by a later change of the job.
    expect(owner.store.getJob(job.id)!.version).toBe(version)
    for (const n of others) expect(n.store.getJob(job.id)?.version, n.id).toBe(version)
  })

  it('a laggard that keeps failing is tried AGENT_DEFAULTS.laggardRetries times more, further apart each time, then left to the job\'s next change', async () => {
    const { owner, others, job, laggards, attempts, failing } = await submitWithFailingLaggards()
    const startMs = Date.now()
    // The job is awarded and starts in its first second, then runs for a minute (its
    // executor's no-op): no change of it after that.
    await vi.advanceTimersByTimeAsync(1_000)
    await turns(() => false)
    const version = owner.store.getJob(job.id)!.version
    for (let i = 0; i < 45; i++) {
      await vi.advanceTimersByTimeAsync(1_000)
      await turns(() => false)
    }
    expect(owner.store.getJob(job.id)!.version).toBe(version)
    const toLaggard = attempts.filter(a => a.to === laggards[0] && a.atMs >= startMs).map(a => a.atMs)
    // The flushes of the job's changes, then the retries, each at least twice as far after
    // the one before (250 ms × 2^(n − 1) after its answers), then nothing for the last 20 s.
    expect(toLaggard.length).toBeGreaterThanOrEqual(1 + AGENT_DEFAULTS.laggardRetries)
    const retries = toLaggard.slice(-AGENT_DEFAULTS.laggardRetries)
    for (let k = 1; k < retries.length; k++) {
      expect(retries[k] - retries[k - 1]).toBeGreaterThanOrEqual(AGENT_DEFAULTS.replicationLaggardsMs * 2 ** k)
    }
    expect(toLaggard.filter(t => t >= startMs + 26_000)).toEqual([])
    expect(others.find(n => n.id === laggards[0])!.store.getJob(job.id)).toBe(undefined)
    // Its next change reaches it.
    failing.on = false
    await owner.agent.cancel(job.id)
    for (let i = 0; i < 20 && others.find(n => n.id === laggards[0])!.store.getJob(job.id)?.version !== owner.store.getJob(job.id)!.version; i++) {
      await vi.advanceTimersByTimeAsync(100)
      await turns(() => false)
    }
    expect(owner.store.getJob(job.id)!.version).toBeGreaterThan(version)
    expect(others.find(n => n.id === laggards[0])!.store.getJob(job.id)?.version).toBe(owner.store.getJob(job.id)!.version)
  })

  it('without a quorum the submit waits until the held replicas\' requests time out', async () => {
    await startNodes(5)
    const [owner] = v.nodes
    for (const h of holds.slice(1, 4)) h.hold()
    let answered = false
    void owner.agent.submit(JOB).then(() => { answered = true })
    await turns(() => answered)
    expect(answered).toBe(false)
    await vi.advanceTimersByTimeAsync(2_500) // the replication request's 2 s timeout
    expect(answered).toBe(true)
  })

  it('submits that arrive while a replication round is out go together in the next, one request per replica', async () => {
    // Group commit: with one round out at a time, 10 submits cost 2 rounds of at most one
    // request per replica, not 10 rounds; each submit is still answered only once a quorum
    // holds its job; the laggards then get every job in one request each.
    const requests: Array<{ to: string, jobs: string[] }> = []
    /** holds the answers of the first round until the other submits are in */
    let openGate = (): void => {}
    const gate = new Promise<void>(resolve => { openGate = resolve })
    let counting = false
    await startWithOwnerReplication(async (to, message, send) => {
      if (!counting) return await send()
      requests.push({ to, jobs: message.body.jobs.map(j => j.job.id) })
      const firstRound = requests.length <= 2
      const answer = await send()
      if (firstRound) await gate
      return answer
    })
    const [owner, ...replicas] = v.nodes
    counting = true
    const answered: Array<Awaited<ReturnType<Agent['submit']>>> = []
    // The first submit starts a round; the other nine arrive while it is out.
    /** per answered job, how many replicas held it at the moment it was answered */
    const holdersAtAnswer = new Map<string, number>()
    const onAnswer = (j: Awaited<ReturnType<Agent['submit']>>): void => {
      holdersAtAnswer.set(j.id, replicas.filter(r => r.store.getJob(j.id) !== undefined).length)
      answered.push(j)
    }
    const first = owner.agent.submit(JOB).then(onAnswer)
    await turns(() => requests.length === 2)
    const rest = Array.from({ length: 9 }, async () => { onAnswer(await owner.agent.submit(JOB)) })
    await turns(() => false)
    // Nothing more went out while the first round was out: its two requests, the quorum's.
    expect(requests).toHaveLength(2)
    expect(new Set(requests.map(r => r.to)).size).toBe(2)
    expect(answered).toHaveLength(0)
    openGate()
    await Promise.all([first, ...rest])
    expect(answered).toHaveLength(10)
    // The second round: at most one request per replica (each job goes to its own quorum).
    const second = requests.slice(2)
    expect(second.length).toBeLessThanOrEqual(replicas.length)
    expect(new Set(second.map(r => r.to)).size).toBe(second.length)
    const firstId = answered.find(j => requests[0].jobs.includes(j.id))!.id
    const nine = answered.map(j => j.id).filter(id => id !== firstId)
    // Each of the nine went in it to exactly two replicas.
    for (const id of nine) expect(second.filter(r => r.jobs.includes(id))).toHaveLength(2)
    // Each job was on at least a quorum (2 of its 4 replicas) when it was answered.
    expect(holdersAtAnswer.size).toBe(10)
    for (const holders of holdersAtAnswer.values()) expect(holders).toBeGreaterThanOrEqual(2)
    // The laggards: one request per replica behind, carrying every job it lacks.
    const before = requests.length
    await vi.advanceTimersByTimeAsync(AGENT_DEFAULTS.replicationLaggardsMs)
    await turns(() => answered.every(j => replicas.every(r => r.store.getJob(j.id) !== undefined)))
    for (const j of answered) for (const r of replicas) expect(r.store.getJob(j.id)?.id).toBe(j.id)
    // Meanwhile each replica got at most two requests, whatever the number of jobs: the
    // batched flush of the auctions' changes (to each job's quorum) and the laggards' flush.
    const after = requests.slice(before)
    for (const r of replicas) expect(after.filter(q => q.to === r.id).length).toBeLessThanOrEqual(2)
  })

  it('a submit no quorum acknowledged is answered replicated: false, and its copies are sent again until a quorum holds them', async () => {
    // Every copy fails while `failing` (replicas unreachable). The job fits no node, so once
    // submitted it changes no more: no later change would carry its copy to the replicas.
    let failing = true
    /** ids of the jobs in each copy that went out while not failing */
    const copiesOut: string[] = []
    await startWithOwnerReplication(async (_to, message, send) => {
      if (failing) throw Object.assign(new Error('unreachable'), { code: 'ERR_UNREACHABLE' })
      copiesOut.push(...message.body.jobs.map(j => j.job.id))
      return await send()
    })
    const [owner, ...replicas] = v.nodes
    const answered = await owner.agent.submit({ ...JOB, resources: { cpus: 64, memory: '16m' } })
    expect(answered.replicated).toBe(false)
    expect(answered.state).toBe('pending')
    await vi.advanceTimersByTimeAsync(500) // the batched flush of its first changes fails too
    expect(replicas.filter(r => r.store.getJob(answered.id) !== undefined)).toHaveLength(0)
    failing = false
    await vi.advanceTimersByTimeAsync(AGENT_DEFAULTS.replicationRetryMaxMs + 1_000)
    const version = owner.store.getJob(answered.id)!.version
    for (const r of replicas) expect(r.store.getJob(answered.id)?.version, `copy on ${r.id}`).toBe(version)
    expect(copiesOut).toContain(answered.id)
    // Held by a quorum: no more copies go out.
    copiesOut.length = 0
    await vi.advanceTimersByTimeAsync(AGENT_DEFAULTS.replicationRetryMaxMs * 2)
    expect(copiesOut).toEqual([])
  })

  it.each([
    ['suspect', 4_000],
    ['gone', 7_000]
  ])('a submit on an agent cut off from every other member (%s) is answered replicated: false', async (_others, cutMs) => {
    // Its group is what it sees alive: no replica at all. A quorum of no replicas is no
    // promise that the job outlives the agent.
    await startNodes(5)
    const [owner, ...others] = v.nodes
    v.net.partition([owner.id], others.map(n => n.id))
    await vi.advanceTimersByTimeAsync(cutMs)
    const answered = await owner.agent.submit(JOB)
    expect(answered.replicas).toEqual([])
    expect(answered.replicated).toBe(false)
  })

  it('a member known gone does not make submits 202: the group is the members not known gone', async () => {
    await startNodes(5)
    const [owner, ...others] = v.nodes
    v.net.partition([others[3].id], [owner.id, ...others.slice(0, 3).map(n => n.id)])
    await vi.advanceTimersByTimeAsync(7_000) // gone, and still in the view for a minute
    const answered = await owner.agent.submit(JOB)
    expect(answered.replicas).toHaveLength(3)
    expect(answered.replicated).toBe(true)
  })

  it('a job whose replicas do not answer holds up no other submit for more than the round wait', async () => {
    // The first job's round is held on its way to every replica (as if they had all stopped
    // answering); a submit made meanwhile must not wait for that round's 2 s timeout.
    let held = ''
    let holding = true
    await startWithOwnerReplication(async (_to, message, send) => {
      if (holding && message.body.jobs.some(j => j.job.id === held)) await new Promise(resolve => setTimeout(resolve, 60_000))
      return await send()
    })
    const [owner, ...replicas] = v.nodes
    const answered = new Map<string, boolean>()
    const first = owner.agent.submit(JOB)
    // The job is on the owner's disk before its round goes out (at the end of this step).
    held = owner.store.listJobs({})[0].id
    void first.then(j => { answered.set(j.id, true) })
    await turns(() => false)
    expect(answered.has(held)).toBe(false)
    let second: string | undefined
    holding = false
    void owner.agent.submit(JOB).then(j => { second = j.id })
    // Past the round wait, and short of the first job's hedge (which would send its copies on
    // to the laggards, no longer held).
    expect(AGENT_DEFAULTS.replicationRoundMaxWaitMs + 10).toBeLessThan(AGENT_DEFAULTS.replicationHedgeMs)
    await vi.advanceTimersByTimeAsync(AGENT_DEFAULTS.replicationRoundMaxWaitMs + 10)
    await turns(() => second !== undefined)
    expect(second).toBeDefined()
    expect(answered.has(held)).toBe(false)
    expect(replicas.filter(r => r.store.getJob(second!) !== undefined).length).toBeGreaterThanOrEqual(2)
  })

  it('each replica is sent only the events it lacks, and ends with the owner\'s events', async () => {
    const reads: Array<{ from?: number }> = []
    await v.start(5, {
      executorFor: () => noopExecutor({ runMs: 1_000 }),
      wrapStore: (store, i) => {
        if (i !== 0) return
        const events = store.events.bind(store)
        store.events = (jobId, options) => { reads.push({ from: options?.from }); return events(jobId, options) }
      }
    })
    const [owner, ...replicas] = v.nodes
    const job = await owner.agent.submit(JOB)
    await v.advanceUntil('the job to succeed', () => owner.store.getJob(job.id)?.state === 'succeeded', 20_000)
    await vi.advanceTimersByTimeAsync(1_000) // the last replication
    const events = owner.store.events(job.id)
    expect(events.map(e => e.type)).toContain('job:succeeded')
    for (const r of replicas) expect(r.store.events(job.id)).toEqual(events)
    // Later replications started past what the replicas held.
    expect(reads.some(r => (r.from ?? 0) > 0)).toBe(true)
  })

  /** Starts 5 agents; the first one's store fails each read of a job's events while `fail()`
   *  says so. Returns how many reads failed so far. */
  async function startWithFailingReads (fail: () => boolean): Promise<() => number> {
    let failed = 0
    await v.start(5, {
      executorFor: () => noopExecutor({ runMs: 60_000 }),
      wrapStore: (store, i) => {
        if (i !== 0) return
        const events = store.events.bind(store)
        store.events = (jobId, options) => {
          if (fail()) { failed++; throw new Error('disk I/O error') }
          return events(jobId, options)
        }
      }
    })
    return () => failed
  }

  it('a store read that fails while a change is replicated loses no change: the next batch sends it', async () => {
    let failReads = 0
    const failed = await startWithFailingReads(() => {
      if (failReads === 0) return false
      failReads--
      return true
    })
    const [owner, ...replicas] = v.nodes
    const job = await owner.agent.submit(JOB)
    // The next read, the award's batched replication, fails.
    failReads = 1
    await v.advanceUntil('the job to run', () => owner.store.getJob(job.id)?.state === 'running', 20_000)
    await vi.advanceTimersByTimeAsync(1_000)
    expect(failed()).toBe(1)
    const record = owner.store.getJob(job.id)!
    for (const r of replicas) {
      expect(r.store.getJob(job.id)?.version).toBe(record.version)
      expect(r.store.events(job.id)).toEqual(owner.store.events(job.id))
    }
  })

  it('a store that keeps failing reads is retried with a backoff, and its replicas catch up once it heals', async () => {
    let failing = false
    const failed = await startWithFailingReads(() => failing)
    const [owner, ...replicas] = v.nodes
    const job = await owner.agent.submit(JOB)
    failing = true
    await v.advanceUntil('the job to run', () => owner.store.getJob(job.id)?.state === 'running', 20_000)
    const failedBy = failed()
    // 20 s of a broken disk: without the backoff, a read every batch (25 ms), ~800 of them.
    // With it, 25 ms doubling up to replicationRetryMaxMs (5 s): about a dozen.
    await vi.advanceTimersByTimeAsync(20_000)
    expect(failed() - failedBy).toBeGreaterThan(0)
    expect(failed() - failedBy).toBeLessThanOrEqual(15)
    failing = false
    await vi.advanceTimersByTimeAsync(AGENT_DEFAULTS.replicationRetryMaxMs + 1_000)
    const record = owner.store.getJob(job.id)!
    for (const r of replicas) {
      expect(r.store.getJob(job.id)?.version).toBe(record.version)
      expect(r.store.events(job.id)).toEqual(owner.store.events(job.id))
    }
  })

  it('a copy a replica holds, or is being sent, is not sent to it again', async () => {
    // A result's own replication (awaited before the result is accepted) and the batched one
    // that the same change queued used to send the same copy twice to every replica.
    const sent = new Map<string, number>() // replica / job / version / events through → sends
    const createMesh = v.net.createMesh.bind(v.net)
    v.net.createMesh = (id: string) => {
      const mesh = createMesh(id)
      const request = mesh.request.bind(mesh)
      mesh.request = async (to, message, options) => {
        if (message.type === MessageType.JobReplicate) {
          for (const j of message.body.jobs) {
            const k = `${to} ${j.job.id} v${j.job.version} ${(j.eventsFrom ?? 0) + j.events.length}`
            sent.set(k, (sent.get(k) ?? 0) + 1)
          }
        }
        return await request(to, message, options)
      }
      return mesh
    }
    // The owner has too little CPU for the job, so another agent runs it and reports to it.
    await v.start(5, { executorFor: () => noopExecutor({ runMs: 1_000 }), cpuMilliFor: i => i === 0 ? 50 : 1000 })
    const [owner, ...replicas] = v.nodes
    const job = await owner.agent.submit(JOB)
    await v.advanceUntil('the job to succeed', () => owner.store.getJob(job.id)?.state === 'succeeded', 20_000)
    await vi.advanceTimersByTimeAsync(1_000) // anything still batched
    const final = owner.store.getJob(job.id)!
    for (const r of replicas) {
      expect(r.store.getJob(job.id)?.version).toBe(final.version)
      expect(r.store.events(job.id)).toEqual(owner.store.events(job.id))
    }
    // The final copy went to each replica, and no copy went anywhere twice.
    expect([...sent.keys()].filter(k => k.includes(` v${final.version} `))).toHaveLength(replicas.length)
    expect([...sent.entries()].filter(([, n]) => n > 1)).toEqual([])
  })

  it('a replica that lost a job\'s events reports a gap and is sent them all again', async () => {
    await startNodes(5)
    const [owner, ...replicas] = v.nodes
    const job = await owner.agent.submit({ ...JOB, command: 'true' })
    await vi.advanceTimersByTimeAsync(500)
    // One replica loses the job (its store wiped of it) while the owner thinks it holds events.
    replicas[0].store.deleteJob(job.id)
    expect(replicas[0].store.eventCount(job.id)).toBe(0)
    // The owner's next changes are sent from past the start: a gap, then everything.
    await owner.agent.cancel(job.id)
    await vi.advanceTimersByTimeAsync(1_000)
    expect(replicas[0].store.events(job.id)).toEqual(owner.store.events(job.id))
  })
})
