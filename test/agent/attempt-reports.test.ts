// Only an attempt's executor reports on it: a member naming another node as the executor in an
// AttemptUpdate (a result, a renewal) is refused, so it can neither hand in a result the job
// never produced nor keep a dead executor's lease alive. Real agents on the in-memory mesh
// under fake timers.
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { afterEach, describe, expect, it } from 'vitest'
import { type Message, MessageType } from '../../src/protocol/messages.ts'
import { noopExecutor } from '../../src/runtime/noop-executor.ts'
import { type VirtualAgents, createVirtualAgents, untilJobState } from '../support/virtual-agents.ts'

const JOB = { image: 'bidmesh/busybox:latest', command: 'true', resources: { cpus: 0.1, memory: '16m' } }

describe('attempt reports', () => {
  let v: VirtualAgents
  afterEach(async () => { await v.stop() })

  it('from a member that is not the executor are refused, and the job ends with its executor\'s own result', async () => {
    v = createVirtualAgents()
    await v.start(3, { executorFor: () => noopExecutor({ runMs: 3000 }) })
    const owner = v.nodes[0]
    const { id } = await owner.agent.submit(JOB)
    let job = await untilJobState(v, 0, id, 'running', 20_000)
    const key = await generateKeyPair('Ed25519') as unknown as PrivateKey
    const other = v.net.createMesh(peerIdFromPrivateKey(key).toString())
    try {
      const forged = { jobId: id, epoch: job!.epoch, node: job!.node! }
      for (const body of [
        { ...forged, state: 'exited' as const, exitCode: 3, reason: 'exit' as const, finishedAtMs: Date.now() },
        { ...forged, state: 'running' as const }
      ]) {
        let answer: Message | undefined
        void other.request(owner.id, { type: MessageType.AttemptUpdate, body }).then(r => { answer = r })
        await v.advanceUntil('the owner to answer', () => answer !== undefined, 5000)
        expect({ state: body.state, type: answer!.type, code: (answer!.body as { code?: string }).code }).toEqual({ state: body.state, type: MessageType.Ack, code: 'ERR_NOT_EXECUTOR' })
      }
    } finally {
      await other.stop()
    }
    job = await untilJobState(v, 0, id, 'succeeded', 20_000)
    expect(job!.attempts).toHaveLength(1)
    expect(job!.attempts[0].exitCode).toBe(0)
  })
})
