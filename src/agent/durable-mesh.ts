// The mesh as the agent uses it: nothing that promises a write leaves the process before the
// writes made ahead of it are on stable storage. A request such as an award or a result, or a
// response such as an award's acknowledgement or a replica's ack, is a promise about what
// this agent has written; waiting for Store.sync() first keeps that promise through a power
// loss, while one flush serves every message of a busy tick. Gossip is soft state and goes
// out at once, and so do the few direct messages below that promise nothing.
import type { Mesh } from '../mesh/mesh.ts'
import { MessageType } from '../protocol/messages.ts'
import type { Store } from '../store/store.ts'

/**
 * Exchanges (a request and its response) that go out without waiting for a flush. Each flush
 * is a disk round trip (1–20 ms here when five agents share a disk), and a job's path crosses
 * several of them in series, so each exchange left out of the wait takes them off every job's
 * latency. A bid round is soft, so its exchanges (BidRequest → Bid | BidRefused,
 * ReservationRelease → Ack) promise nothing a power loss here could break: a reservation lost
 * in a crash is checked again when the award comes (the bidder declines what no longer fits),
 * and an owner that loses a round's epoch reuses it only for another round; the epoch that
 * fences is the award's, and an Award still waits for the flush.
 * (JobReplicate would qualify as a request, since it carries the record itself, but it is left
 * to wait: a replication request is encoded when it leaves, and waiting lets it carry the
 * changes the rest of the tick made, an award among them. Its acknowledgement must wait.)
 */
const SOFT_EXCHANGES: ReadonlySet<number> = new Set([MessageType.BidRequest, MessageType.ReservationRelease])

export function durableMesh (mesh: Mesh, store: Pick<Store, 'sync'>): Mesh {
  return {
    get peerId () { return mesh.peerId },
    listenAddrs: () => mesh.listenAddrs(),
    connectedPeers: () => mesh.connectedPeers(),
    publish: async (topic, message) => { await mesh.publish(topic, message) },
    async request (to, message, options) {
      if (!SOFT_EXCHANGES.has(message.type)) await store.sync()
      return await mesh.request(to, message, options)
    },
    handle (handler) {
      mesh.handle(async (from, message, options) => {
        const response = await handler(from, message, options)
        if (!SOFT_EXCHANGES.has(message.type)) await store.sync()
        return response
      })
    },
    addPeerAddrs: async (peer, addrs) => { await mesh.addPeerAddrs(peer, addrs) },
    addEventListener: (type, listener) => { mesh.addEventListener(type, listener) },
    gossipStats: () => mesh.gossipStats(),
    stop: async () => { await mesh.stop() }
  }
}
