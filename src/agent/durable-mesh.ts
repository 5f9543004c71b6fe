// The mesh as the agent uses it: nothing that promises a write leaves the process before the
// writes made ahead of it are on stable storage. A request such as an award or a result, or a
// response such as an award's acknowledgement or a replica's ack, is a promise about what
// this agent has written; waiting for Store.sync() first keeps that promise through a power
// loss, while one flush serves every message of a busy tick. Gossip is soft state and goes
// out at once, and so do the few direct messages below that promise nothing.
import type { Mesh } from '../mesh/mesh.ts'
import { type Message, MessageType } from '../protocol/messages.ts'
import { isPlainAck } from '../scheduler/bidder.ts'
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
 * A JobQuery and its reply (a copy of the record) promise nothing either: whoever acts on the
 * copy (a replica taking the job over) writes it first. A takeover asks with a 2 s timeout,
 * and a reply held for a flush on a busy disk (up to 3 s seen) made the replica look silent.
 */
const SOFT_EXCHANGES: ReadonlySet<number> = new Set([MessageType.BidRequest, MessageType.ReservationRelease, MessageType.JobQuery])

/**
 * A lease renewal (an AttemptUpdate short of the final result) and its plain acknowledgement
 * (accepted, not told to stop) promise nothing written either: the executor wrote its attempt
 * before it acknowledged the award (that wait stays), and an owner that loses the attempt's
 * "running" in a crash hears it again with the next renewal. (An executor that loses the
 * start time it wrote since, in a power loss, hands the attempt back after its restart as
 * never started: the job runs again, for that cause.) They must not wait:
 * a renewal has to get through within a lease (3 s), and a flush on a disk busy with
 * container starts took up to 3 s in the churn chaos test, twice per renewal (sender and
 * answerer); the executor then gave up attempts whose containers were still being created,
 * and the job ran twice. A final result still waits on both sides, and so does an
 * acknowledgement that refuses or stops an attempt (it may rest on a cancel just written).
 */
function isRenewal (message: Message): boolean {
  return (message.type === MessageType.AttemptUpdate && message.body.state !== 'exited') || message.type === MessageType.AttemptRenewals
}

/** The same holds for renewals sent together (AttemptRenewals): their answer waits only if one
 *  of its acknowledgements refuses or stops an attempt (the agent answers those alone instead). */
function isPlainRenewalAck (request: Message, response: Message): boolean {
  if (!isRenewal(request)) return false
  if (response.type === MessageType.AttemptUpdateAck) return isPlainAck(response.body)
  if (response.type === MessageType.AttemptRenewalsAck) return response.body.acks.every(isPlainAck)
  return false
}

export function durableMesh (mesh: Mesh, store: Pick<Store, 'sync'>): Mesh {
  return {
    get peerId () { return mesh.peerId },
    listenAddrs: () => mesh.listenAddrs(),
    connectedPeers: () => mesh.connectedPeers(),
    publish: async (topic, message) => { await mesh.publish(topic, message) },
    async request (to, message, options) {
      if (!SOFT_EXCHANGES.has(message.type) && !isRenewal(message)) await store.sync()
      return await mesh.request(to, message, options)
    },
    async notify (to, message) {
      // What goes unanswered promises nothing: no flush first (a notification is soft).
      await mesh.notify(to, message)
    },
    handle (handler) {
      mesh.handle(async (from, message, options) => {
        const response = await handler(from, message, options)
        if (!SOFT_EXCHANGES.has(message.type) && !isPlainRenewalAck(message, response)) await store.sync()
        return response
      })
    },
    addPeerAddrs: async (peer, addrs) => { await mesh.addPeerAddrs(peer, addrs) },
    addEventListener: (type, listener) => { mesh.addEventListener(type, listener) },
    gossipStats: () => mesh.gossipStats(),
    stop: async () => { await mesh.stop() }
  }
}
