// Change-driven capacity adverts: news of more room goes out at once, less room waits for the
// periodic advert (advertUrgency). Real agents on the in-memory mesh under virtual time.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { agentTimings } from '../../src/agent/agent.ts'
import { AGENT_DEFAULTS } from '../../src/constants.ts'
import { noopExecutor } from '../../src/runtime/noop-executor.ts'
import { type VirtualAgents, createVirtualAgents } from '../support/virtual-agents.ts'

const JOB = { image: 'bidmesh/busybox:latest', command: 'true', resources: { cpus: 0.5, memory: '16m' } }
const RUN_MS = 3_000

describe('capacity adverts', () => {
  let v: VirtualAgents
  beforeEach(() => { v = createVirtualAgents() })
  afterEach(async () => { await v.stop() })

  const { advertIntervalMs } = agentTimings({} as any)

  it('a bid or a start (less room) waits for the periodic advert; the room a finished job frees is advertised at once', async () => {
    await v.start(3, { executorFor: () => noopExecutor({ runMs: RUN_MS }) })
    await vi.advanceTimersByTimeAsync(2_000)
    // Every advert each agent publishes, with its virtual time (the periodic timer and the
    // change-driven one both call the instance's publishAdvert).
    const published = v.nodes.map(() => [] as number[])
    v.nodes.forEach((n, i) => {
      const agent = n.agent as any
      const publish = agent.publishAdvert.bind(agent)
      agent.publishAdvert = () => { published[i].push(Date.now()); publish() }
    })
    try {
      // Each agent's periodic adverts keep one phase: learn it over 3 s of idleness.
      await vi.advanceTimersByTimeAsync(3_000)
      const phase = published.map(ts => {
        expect(ts.length).toBeGreaterThanOrEqual(2)
        return ts[0] % advertIntervalMs
      })
      const changeDriven = (i: number, fromMs: number, toMs: number): number[] =>
        published[i].filter(t => t >= fromMs && t < toMs && (t - phase[i]) % advertIntervalMs !== 0)

      const submittedAtMs = Date.now()
      const job = await v.nodes[0].agent.submit(JOB)
      let state = ''
      await v.advanceUntil('the job to succeed', () => {
        void v.nodes[0].agent.getJob(job.id).then(d => { state = d.job.state })
        return state === 'succeeded'
      }, 10_000)
      await vi.advanceTimersByTimeAsync(1_000)
      const detail = await v.nodes[0].agent.getJob(job.id)
      const node = v.nodes.findIndex(n => n.id === detail.job.node)
      expect(node).toBeGreaterThanOrEqual(0)
      const started = detail.job.attempts[0].startedAtMs!
      // While bids reserved room and the job started: no agent advertised the change early.
      for (let i = 0; i < v.nodes.length; i++) expect(changeDriven(i, submittedAtMs, started + RUN_MS - 50)).toEqual([])
      // The job's end freed room that the periodic adverts since its start had not shown:
      // the runner told everyone within advertMinGapMs (and its 10 ms coalescing).
      const early = changeDriven(node, started + RUN_MS - 50, Date.now())
      expect(early.length).toBe(1)
      expect(early[0] - (started + RUN_MS)).toBeLessThanOrEqual(AGENT_DEFAULTS.advertMinGapMs + 50)
    } finally {
      for (const n of v.nodes) delete (n.agent as any).publishAdvert
    }
  })
})
