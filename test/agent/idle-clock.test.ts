// The agent's clock: 20 ticks a second while work is in flight, 4 while idle (each wakeup
// costs an idle agent CPU). Real agents on the in-memory mesh under virtual time.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { agentTimings } from '../../src/agent/agent.ts'
import { noopExecutor } from '../../src/runtime/noop-executor.ts'
import { type VirtualAgents, createVirtualAgents } from '../support/virtual-agents.ts'

const JOB = { image: 'bidmesh/busybox:latest', command: 'true', resources: { cpus: 0.1, memory: '16m' } }

describe('the agent\'s clock', () => {
  let v: VirtualAgents
  beforeEach(() => { v = createVirtualAgents() })
  afterEach(async () => { await v.stop() })

  const { tickMs, idleTickMs } = agentTimings({} as any)

  /** Ticks each agent makes while virtual time advances by ms (in 50 ms steps). */
  async function ticksOver (ms: number, until?: () => boolean): Promise<number[]> {
    const spies = v.nodes.map(n => vi.spyOn(n.agent as any, 'tick'))
    try {
      for (let t = 0; t < ms && !(until?.() ?? false); t += 50) await vi.advanceTimersByTimeAsync(50)
      return spies.map(s => s.mock.calls.length)
    } finally {
      for (const s of spies) s.mockRestore()
    }
  }

  it('an idle agent ticks every idleTickMs; a job in flight brings every tickMs back until it ends', async () => {
    expect(idleTickMs).toBeGreaterThan(tickMs)
    await v.start(3, { executorFor: () => noopExecutor({ runMs: 3_000 }) })
    // Settle: the start's own work (adverts, the first views) is over.
    await vi.advanceTimersByTimeAsync(2_000)

    const idle = await ticksOver(10_000)
    for (const n of idle) {
      expect(n).toBeLessThanOrEqual(10_000 / idleTickMs + 1)
      expect(n).toBeGreaterThanOrEqual(10_000 / idleTickMs - 1)
    }

    const job = await v.nodes[0].agent.submit(JOB)
    // While the attempt runs (3 s), its owner and the agent running it tick at tickMs.
    const busy = await ticksOver(2_000)
    const node = (await v.nodes[0].agent.getJob(job.id)).job.node
    const runner = v.nodes.findIndex(n => n.id === node)
    expect(runner).toBeGreaterThanOrEqual(0)
    for (const i of new Set([0, runner])) expect(busy[i]).toBeGreaterThanOrEqual(2_000 / tickMs - 2)

    let state = ''
    await v.advanceUntil('the job to succeed', () => {
      void v.nodes[0].agent.getJob(job.id).then(d => { state = d.job.state })
      return state === 'succeeded'
    }, 10_000)
    // Replication and summaries drain, then every agent is idle again.
    await vi.advanceTimersByTimeAsync(2_000)
    const after = await ticksOver(5_000)
    for (const n of after) expect(n).toBeLessThanOrEqual(5_000 / idleTickMs + 1)
  })

  it('a submit to an idle agent brings the next tick within tickMs, not idleTickMs', async () => {
    await v.start(3, { executorFor: () => noopExecutor({ runMs: 3_000 }) })
    await vi.advanceTimersByTimeAsync(2_000)
    const owner = v.nodes[0]
    const tick = vi.spyOn(owner.agent as any, 'tick')
    // Just after an idle tick: the next idle one is idleTickMs away.
    for (let i = 0; i < idleTickMs && tick.mock.calls.length === 0; i++) await vi.advanceTimersByTimeAsync(1)
    expect(tick).toHaveBeenCalledTimes(1)
    await owner.agent.submit(JOB)
    await vi.advanceTimersByTimeAsync(tickMs)
    expect(tick).toHaveBeenCalledTimes(2)
    tick.mockRestore()
  })
})
