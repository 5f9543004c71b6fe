// Capacity adverts set off by a change go out only when they are news: real agents on the
// in-memory mesh under fake timers. A node that bid and lost has its reservation back before
// its advert is due, so it says nothing; the winner, whose room shrank, does.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { AGENT_DEFAULTS } from '../../src/constants.ts'
import { Topic } from '../../src/mesh/mesh.ts'
import { MessageType } from '../../src/protocol/messages.ts'
import { type RecordedRun, type VirtualAgents, createVirtualAgents, recordingExecutor } from '../support/virtual-agents.ts'

describe('capacity adverts', () => {
  let v: VirtualAgents
  beforeEach(() => { v = createVirtualAgents() })
  afterEach(async () => { await v.stop() })

  it('after a bid round, the losers advertise nothing until their periodic advert; the winner does', async () => {
    const adverts: Array<{ node: number, atMs: number }> = []
    const asked = new Set<number>()
    const runs: RecordedRun[] = []
    await v.start(5, {
      executorFor: id => recordingExecutor(id, runs, 60_000),
      scheduler: { directAwardMaxViewAgeMs: 0 }, // bid rounds: a job awarded from the view has no losers
      wrapMesh: (mesh, i) => {
        const publish = mesh.publish.bind(mesh)
        mesh.publish = async (topic, message) => {
          if (topic === Topic.Capacity) adverts.push({ node: i, atMs: Date.now() })
          await publish(topic, message)
        }
        const handle = mesh.handle.bind(mesh)
        mesh.handle = handler => { handle(async (from, message, options) => { if (message.type === MessageType.BidRequest) asked.add(i); return await handler(from, message, options) }) }
        return mesh
      }
    })
    // Every agent's periodic advert fires at the same phase (they started at the same virtual
    // time); submit just after one, so that the next is advertIntervalMs away.
    const lastPeriodic = Math.max(...adverts.map(a => a.atMs))
    await vi.advanceTimersByTimeAsync(lastPeriodic + 5 - Date.now())
    const submittedAtMs = Date.now()
    const nextPeriodicMs = lastPeriodic + AGENT_DEFAULTS.advertIntervalMs
    const job = await v.nodes[0].agent.submit({ image: 'bidmesh/busybox:latest', command: 'true', resources: { cpus: 0.1, memory: '16m' } })
    await v.advanceUntil('the job to start', () => runs.length === 1, 500)
    await vi.advanceTimersByTimeAsync(nextPeriodicMs - 1 - Date.now())

    const winner = v.nodes.findIndex(n => n.id === runs[0].node)
    const losers = [...asked].filter(i => i !== winner)
    expect(runs[0].jobId).toBe(job.id)
    // extraCandidates (2) more than needed were asked: two of them lost.
    expect(asked.size).toBe(3)
    expect(losers).toHaveLength(2)
    const between = (node: number) => adverts.filter(a => a.node === node && a.atMs > submittedAtMs && a.atMs < nextPeriodicMs).length
    for (const l of losers) expect(between(l)).toBe(0)
    expect(between(winner)).toBeGreaterThanOrEqual(1)
  })
})
