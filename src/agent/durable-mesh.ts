// The mesh as the agent uses it: nothing leaves the process before the writes made ahead of
// it are on stable storage. A request (an award, a replication, a result) or a response (an
// award's acknowledgement, a replica's ack) is a promise about what this agent has written;
// waiting for Store.sync() first keeps that promise through a power loss, while one flush
// serves every message of a busy tick. Gossip is soft state and goes out at once.
import type { Mesh } from '../mesh/mesh.ts'
import type { Store } from '../store/store.ts'

export function durableMesh (mesh: Mesh, store: Pick<Store, 'sync'>): Mesh {
  return {
    get peerId () { return mesh.peerId },
    listenAddrs: () => mesh.listenAddrs(),
    connectedPeers: () => mesh.connectedPeers(),
    publish: async (topic, message) => { await mesh.publish(topic, message) },
    async request (to, message, options) {
      await store.sync()
      return await mesh.request(to, message, options)
    },
    handle (handler) {
      mesh.handle(async (from, message, options) => {
        const response = await handler(from, message, options)
        await store.sync()
        return response
      })
    },
    addPeerAddrs: async (peer, addrs) => { await mesh.addPeerAddrs(peer, addrs) },
    addEventListener: (type, listener) => { mesh.addEventListener(type, listener) },
    gossipStats: () => mesh.gossipStats(),
    stop: async () => { await mesh.stop() }
  }
}
