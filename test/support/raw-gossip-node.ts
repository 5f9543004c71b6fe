// A bare libp2p node built with the agent's stack (TCP, optional pnet swarm key, noise, yamux,
// identify, gossipsub), but no agent and no validation of its own: for tests that listen to
// what agents gossip (every raw payload, before any decoding), or that publish what a hostile
// member would (garbage, wrong schemas, oversized frames, tampered signatures).
import { gossipsub } from '@chainsafe/libp2p-gossipsub'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { preSharedKey } from '@libp2p/pnet'
import { tcp } from '@libp2p/tcp'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { lpStream } from 'it-length-prefixed-stream'
import { createLibp2p, type Libp2p } from 'libp2p'
import { MESH_DEFAULTS } from '../../src/mesh/constants.ts'
import { Topic } from '../../src/mesh/mesh.ts'
import { decodeMessage, encodeMessage } from '../../src/protocol/codec.ts'
import { MAX_DIRECT_BYTES, type Message } from '../../src/protocol/messages.ts'

export interface RawGossip { topic: string, from: string, data: Uint8Array }

export interface RawGossipNode {
  node: Libp2p<any>
  peerId: string
  /** every message received on our topics, raw */
  received: RawGossip[]
  dial (addrs: string[]): Promise<void>
  /** publishes bytes as they are; with tamper, the signature is corrupted on the way out */
  publish (topic: string, data: Uint8Array, options?: { tamperSignature?: boolean }): Promise<void>
  stop (): Promise<void>
}

/** Marks the next outgoing copy of a message (by its data) for a corrupted signature. */
const TAMPER = new WeakSet<Uint8Array>()

export async function startRawGossipNode (o: { swarmKey?: Uint8Array } = {}): Promise<RawGossipNode> {
  const node = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    ...(o.swarmKey !== undefined ? { connectionProtector: preSharedKey({ psk: o.swarmKey }) } : {}),
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: {
      identify: identify(),
      pubsub: gossipsub({ allowPublishToZeroTopicPeers: true, emitSelf: false, globalSignaturePolicy: 'StrictSign' })
    }
  })
  const pubsub = (node.services as any).pubsub
  const received: RawGossip[] = []
  pubsub.addEventListener('message', (evt: any) => {
    const m = evt.detail
    received.push({ topic: m.topic, from: m.type === 'signed' ? m.from.toString() : 'unsigned', data: m.data })
  })
  for (const t of Object.values(Topic)) pubsub.subscribe(t)
  // A forged signature: the message is built and signed as usual, then one byte of the
  // signature is flipped on every copy sent, so receivers see a signed message that fails
  // verification (gossipsub rejects it before any topic validator runs).
  const sendRpc = pubsub.sendRpc.bind(pubsub)
  pubsub.sendRpc = (id: string, rpc: any) => {
    if (Array.isArray(rpc.messages) && rpc.messages.some((m: any) => m.data !== undefined && TAMPER.has(m.data))) {
      rpc = {
        ...rpc,
        messages: rpc.messages.map((m: any) => {
          if (!TAMPER.has(m.data) || m.signature == null) return m
          const signature = Uint8Array.from(m.signature)
          signature[0] ^= 0xff
          return { ...m, signature }
        })
      }
    }
    return sendRpc(id, rpc)
  }
  return {
    node,
    peerId: node.peerId.toString(),
    received,
    async dial (addrs) {
      for (const a of addrs) await node.dial(multiaddr(a), { signal: AbortSignal.timeout(5000) })
    },
    async publish (topic, data, options = {}) {
      if (options.tamperSignature === true) TAMPER.add(data)
      await pubsub.publish(topic, data)
    },
    async stop () { await node.stop() }
  }
}

/** Sends one direct request as any owner would: one stream, one length-prefixed frame each way. */
export async function directRequest (h: RawGossipNode, to: string, message: Message): Promise<Message> {
  const signal = AbortSignal.timeout(5000)
  const stream = await h.node.dialProtocol(peerIdFromString(to), MESH_DEFAULTS.rpcProtocol, { signal })
  const lp = lpStream(stream, { maxDataLength: MAX_DIRECT_BYTES })
  await lp.write(encodeMessage(message), { signal })
  const frame = await lp.read({ signal })
  await stream.close({ signal }).catch(() => {})
  const r = decodeMessage(frame.subarray(), MAX_DIRECT_BYTES)
  if (!r.ok) throw new Error(`undecodable reply: ${r.rejection}`)
  return r.message
}
