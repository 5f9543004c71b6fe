// Prometheus metrics (prom-client), one registry per agent so several agents can share a
// process in tests.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'

export class AgentMetrics {
  readonly registry = new Registry()
  readonly auctions = new Counter({ name: 'bidmesh_auctions_total', help: 'Jobs accepted for auction by this agent', registers: [this.registry] })
  readonly bidRequests = new Counter({ name: 'bidmesh_bid_requests_sent_total', help: 'Bid requests sent by this agent as owner', registers: [this.registry] })
  readonly bidsReceived = new Counter({ name: 'bidmesh_bid_requests_received_total', help: 'Bid requests received as bidder', registers: [this.registry] })
  readonly awards = new Counter({ name: 'bidmesh_awards_total', help: 'Awards made by this agent as owner', registers: [this.registry] })
  readonly reschedules = new Counter({ name: 'bidmesh_reschedules_total', help: 'Attempts lost, declined or timed out and offered again', registers: [this.registry] })
  readonly containersRunning = new Gauge({ name: 'bidmesh_containers_running', help: 'Containers this agent is running', registers: [this.registry] })
  readonly capacity = new Gauge({ name: 'bidmesh_capacity', help: 'This agent\'s capacity', labelNames: ['resource', 'kind'], registers: [this.registry] })
  readonly requestsServed = new Counter({ name: 'bidmesh_requests_served_total', help: 'Direct-protocol requests this agent answered, by message type', labelNames: ['type'], registers: [this.registry] })
  readonly invalidMessages = new Counter({ name: 'bidmesh_invalid_messages_total', help: 'Messages dropped because they failed to decode or validate', labelNames: ['channel', 'rejection'], registers: [this.registry] })
  readonly jobs = new Gauge({ name: 'bidmesh_jobs', help: 'Unfinished jobs this agent owns, by state', labelNames: ['state'], registers: [this.registry] })
  readonly jobsFinished = new Counter({ name: 'bidmesh_jobs_finished_total', help: 'Jobs this agent owned that finished since it started, by outcome', labelNames: ['state'], registers: [this.registry] })
  readonly jobsInMemory = new Gauge({ name: 'bidmesh_owned_jobs_in_memory', help: 'Jobs this agent owns that it holds in memory: the live ones, and finished ones for finishedJobRetentionMs', registers: [this.registry] })
  readonly gossipBytes = new Gauge({ name: 'bidmesh_gossip_bytes', help: 'Gossip payload bytes since start, by topic and direction', labelNames: ['topic', 'direction'], registers: [this.registry] })
  readonly peers = new Gauge({ name: 'bidmesh_peers', help: 'Connected mesh peers', registers: [this.registry] })
  readonly schedulingLatency = new Histogram({ name: 'bidmesh_scheduling_latency_seconds', help: 'From submit to the container running', buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers: [this.registry] })

  constructor (options: { defaultMetrics?: boolean } = {}) {
    // Event-loop delay sampled every 500 ms, not prom-client's 10 ms: each sample is a timer
    // that wakes the process (about 0.1 ms of CPU here), and at 10 ms it woke an idle agent
    // 100 times a second. A stall still shows when a sample falls in it.
    if (options.defaultMetrics === true) collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: 500 })
  }
}
