// A bid round's losers are released by notification (no answer wanted): real agents on the
// in-memory mesh under fake timers.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { AGENT_DEFAULTS } from '../../src/constants.ts'
import { MessageType } from '../../src/protocol/messages.ts'
import { type RecordedRun, type VirtualAgents, createVirtualAgents, recordingExecutor } from '../support/virtual-agents.ts'

describe('reservation releases', () => {
  let v: VirtualAgents
  beforeEach(() => { v = createVirtualAgents() })
  afterEach(async () => { await v.stop() })

  it('go to the losers as notifications, not requests, and free their room', async () => {
    const sent: Array<{ how: 'request' | 'notify', type: number }> = []
    const runs: RecordedRun[] = []
    await v.start(5, {
      executorFor: id => recordingExecutor(id, runs, 60_000),
      // Bid rounds: a job awarded from the view has no losers (direct-award.test.ts).
      scheduler: { directAwardMaxViewAgeMs: 0 },
      wrapMesh: (mesh, i) => {
        if (i !== 0) return mesh
        const request = mesh.request.bind(mesh)
        const notify = mesh.notify.bind(mesh)
        mesh.request = async (to, message, options) => { sent.push({ how: 'request', type: message.type }); return await request(to, message, options) }
        mesh.notify = async (to, message) => { sent.push({ how: 'notify', type: message.type }); await notify(to, message) }
        return mesh
      }
    })
    await v.nodes[0].agent.submit({ image: 'bidmesh/busybox:latest', command: 'true', resources: { cpus: 0.5, memory: '16m' } })
    await v.advanceUntil('the job to start', () => runs.length === 1, 2000)
    const releases = sent.filter(s => s.type === MessageType.ReservationRelease)
    expect(releases).toEqual([{ how: 'notify', type: MessageType.ReservationRelease }, { how: 'notify', type: MessageType.ReservationRelease }])
    expect(sent.filter(s => s.how === 'notify')).toHaveLength(2)
    // After everyone's next periodic advert (well within the reservations' 3 s), the mesh's
    // room in use is the running job's alone: the losers' reservations are gone.
    await vi.advanceTimersByTimeAsync(AGENT_DEFAULTS.advertIntervalMs + 100)
    const used = v.nodes[0].agent.nodes().reduce((sum, n) => sum + n.totalCpuMilli - n.freeCpuMilli, 0)
    expect(used).toBe(500)
  })
})
