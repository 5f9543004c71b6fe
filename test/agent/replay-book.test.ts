// An executor's replay guard admits an award once its bidder has taken it: an award declined
// (no room) takes no entry, so awards that never ran cannot fill the book. Real agents on the
// in-memory mesh under fake timers; the owner is a mesh of the test's own, publishing jobs
// it signs itself (the agents let any member publish).
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { afterEach, describe, expect, it } from 'vitest'
import { newJobId } from '../../src/agent/ids.ts'
import { newJobNonce, signJob, signatureToString } from '../../src/agent/signing.ts'
import { parseJobSpec } from '../../src/protocol/job-spec.ts'
import { type Message, MessageType } from '../../src/protocol/messages.ts'
import { noopExecutor } from '../../src/runtime/noop-executor.ts'
import { type VirtualAgents, createVirtualAgents } from '../support/virtual-agents.ts'

describe('the replay guard\'s book', () => {
  let v: VirtualAgents
  afterEach(async () => { await v.stop() })

  it('holds the awards the executor took, not those it declined', async () => {
    v = createVirtualAgents()
    await v.start(2, { executorFor: () => noopExecutor({ runMs: 60_000 }), cpuMilliFor: () => 1000 })
    const key = await generateKeyPair('Ed25519') as unknown as PrivateKey
    const owner = v.net.createMesh(peerIdFromPrivateKey(key).toString())
    const executor = v.nodes[1]
    const award = async (cpus: number): Promise<Message> => {
      const spec = parseJobSpec({ image: 'bidmesh/busybox:latest', command: 'true', resources: { cpus, memory: '16m' } })
      const fields = { id: newJobId(), spec, publisher: owner.peerId, createdAtMs: Date.now(), nonce: newJobNonce() }
      const signature = signatureToString(signJob(key, fields))
      let answer: Message | undefined
      void owner.request(executor.id, {
        type: MessageType.Award,
        body: { jobId: fields.id, epoch: 1, owner: owner.peerId, replicas: [], spec, leaseMs: 3000, publisher: fields.publisher, createdAtMs: fields.createdAtMs, nonce: fields.nonce, signature }
      }).then(r => { answer = r })
      await v.advanceUntil('the executor to answer', () => answer !== undefined, 5000)
      return answer!
    }
    try {
      const before = executor.store.admissionStats().count
      // More than the node has: declined, and not in the book.
      expect((await award(4)).type).toBe(MessageType.AwardDeclined)
      expect(executor.store.admissionStats().count).toBe(before)
      // One that fits: taken, and in the book.
      expect((await award(0.1)).type).toBe(MessageType.AwardAck)
      expect(executor.store.admissionStats().count).toBe(before + 1)
    } finally {
      await owner.stop()
    }
  })
})
