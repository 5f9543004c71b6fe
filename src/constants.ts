// Every default in one place. Pure values only: the scheduler and protocol may import this.
// Each timing states its formula and trade-off; docs/operations.md repeats the table.

/** Default HTTP API address. Loopback, so a fresh agent is not reachable from the network. */
export const DEFAULT_API_HOST = '127.0.0.1'
export const DEFAULT_API_PORT = 7700
export const DEFAULT_LISTEN = '/ip4/0.0.0.0/tcp/7701'

/** V8 flags every launcher gives the agent's node: the systemd wrapper (agent/bidmesh-agent),
 *  the agent images (agent/Dockerfile, scripts/build-agent-image.sh), the shebang of
 *  bin/bidmesh.js, and the tests' and benchmarks' spawners. test/agent/node-flags.test.ts
 *  checks that they agree. A process takes them only at start: v8.setFlagsFromString is
 *  too late to resize the heap.
 *  - --max-semi-space-size=2: the young generation's two halves are capped at 2 MiB each,
 *    not V8's 16 (which an idle agent reaches after its start-up): about 20 MB less RSS.
 *    Under load, scavenges come more often; docs/benchmarks.md compares 1, 2, 4 and 16 MiB
 *    side by side: 4 and 16 cost about 15 % less CPU per award than 1 and 2, but 4 puts an
 *    idle agent's largest RSS sample within 2 % of the 100 MB target.
 *  - --v8-pool-size=1: one V8 worker thread (concurrent marking, off-thread compilation),
 *    not one per core: about 4 MB less, and an agent does not compete with its own jobs'
 *    containers for cores. */
export const AGENT_NODE_FLAGS = ['--max-semi-space-size=2', '--v8-pool-size=1'] as const

export const AGENT_DEFAULTS = {
  /** CPU kept back for the host and the agent itself: max(0.25 core, 10% of cores). */
  reserveCpuFraction: 0.1,
  reserveCpuMinMilli: 250,
  /** Memory kept back: max(256 MiB, 10% of RAM). */
  reserveMemoryFraction: 0.1,
  reserveMemoryMinBytes: 256 * 1024 * 1024,
  /** Periodic capacity advert. Adverts also go out at once when free capacity changes.
   *  Lower: fresher views, more gossip bytes (≈ 300 B × 1000/advertIntervalMs per agent). */
  advertIntervalMs: 1000,
  /** Adverts also go out when free capacity changes, at most one per advertMinGapMs. Lower:
   *  owners' views follow faster (they are only hints: a bidder checks its exact capacity);
   *  higher: less gossip under load (a busy agent changes capacity on every job). */
  advertMinGapMs: 100,
  /** A peer unheard for suspectAfterMs is suspect (not offered new work); after goneAfterMs it is gone.
   *  suspect = 3 × advert interval, so one or two lost adverts never suspect a peer. */
  suspectAfterMs: 3000,
  /** gone = 6 × advert interval (see docs/operations.md for the formula). */
  goneAfterMs: 6000,
  /** Before an owner gives up on an attempt whose lease lapsed, it must see a majority of the
   *  members it knows, each heard from within a window of this many advert intervals (2 × 1 s),
   *  capped at lease − renewal interval (3000 − 750 ms): then an owner cut off from the
   *  majority (with its executor) sees itself in the minority before any lease it holds can
   *  lapse, and does not re-run an attempt the majority keeps. Shorter: safer, but busy peers
   *  whose adverts are late delay re-runs by a tick or two; longer: the race comes back. */
  quorumFreshAdvertIntervals: 2,
  /** Added to the lease grace (agentTimings.leaseGraceMs = renewal interval + this): the
   *  executor notices a lapsed lease at its next tick (50 ms) and its last acknowledgement
   *  took a round trip, longer on a loaded machine. Longer: a dead executor's
   *  job re-runs that much later; shorter: less slack between a cut-off executor's stop and
   *  the owner's re-run. */
  leaseGraceMarginMs: 250,
  /** A changed job record waits this long before it is replicated, so the changes of one
   *  auction (or of many jobs) go out in one request per replica. Longer: fewer requests under
   *  load; shorter: replicas lag less (a takeover reads the newest copy anyway). */
  replicationBatchMs: 25,
  /** A job's copy goes first to a quorum of its replicas (with the owner, a majority of its
   *  group: 2 of 4), the best-ranked that look reachable; the others are sent it at most this
   *  much later, one request per lagging replica (of up to 100 jobs) carrying every job
   *  changed meanwhile. A
   *  takeover needs a majority of the group and reads the newest copy among them, which
   *  always includes one of the quorum, so the laggards cost a takeover nothing but, rarely,
   *  a stagger (a laggard that holds no copy yet does not ask). An owner sends each peer
   *  about 1000/this laggards' requests a second at most, whatever its job rate. Longer: fewer
   *  requests; shorter: the whole group holds the newest record sooner. */
  replicationLaggardsMs: 250,
  /** A job whose quorum copies are not all acknowledged within this long is also sent to its
   *  laggards at once (a hedge): a replica that died, and is not yet suspect (3 s) or seen
   *  disconnected, would otherwise hold the submit or the result waiting on it up to the
   *  request timeout (2 s). Shorter: hedges fire on merely slow rounds (their copies go to
   *  all four replicas, one request per laggard, as before laggards existed); longer: a dead
   *  replica costs each job whose quorum it is in that much more, until it is suspect. */
  replicationHedgeMs: 150,
  /** A laggard whose copy failed (down, restarting, a request that failed; or a quorum
   *  replica a spare stood in for) is sent it again after replicationLaggardsMs × 2^(n − 1):
   *  250 ms, then 0.5, 1, 2, 4, 8 s, each counted from the previous try's failure (up to 2 s of
   *  request timeout each): 16–30 s in all, past goneAfterMs. A replica known gone is not
   *  tried; an unfinished job's is replaced, a finished job's stays without it. After the
   *  last try, only the job's next change brings the replica up to date; a finished job has
   *  none, and the replica's audit of standby copies covers only copies it holds, so a
   *  replica that never got one does not catch up. More: a replica away longer still
   *  catches up, at the next try; fewer: less futile traffic to a replica that keeps
   *  failing. */
  laggardRetries: 6,
  /** A job whose copy the store failed to read is tried again after replicationBatchMs ×
   *  2^(failures − 1), at most this long. Shorter: a disk that recovers has its replicas
   *  caught up sooner; longer: a broken disk costs fewer futile reads (and log lines). */
  replicationRetryMaxMs: 5000,
  /** A submit's and a final result's copies go in rounds, one out at a time, so that those
   *  asked for during a round share its successor's requests (group commit). The next round
   *  starts when the one before is decided (a quorum for each of its jobs, or every replica
   *  answered), or after this long: a round is a round trip and a replica's disk flush, a few
   *  ms; a job whose replicas stopped answering takes the request timeout (2 s). Longer: fewer,
   *  larger rounds while a replica is slow, and every submit waits that much more; shorter:
   *  rounds overlap sooner, and batch less. */
  replicationRoundMaxWaitMs: 100,
  /** When a job's owner is gone, its alive replicas ask, by rank, whether to take it over:
   *  the best-ranked at once, the k-th k × takeoverStaggerMs later. Only a replica holding a
   *  copy may adopt, and one that was down when the job was sent holds none, so a takeover
   *  costs up to (replicas − 1) × this more. Shorter: faster takeovers when the best-ranked
   *  replicas hold no copy; longer: fewer redundant queries (each later replica asks the
   *  others once more) when the first one does. */
  takeoverStaggerMs: 1000,
  /** A tick that fires this much late or more found the event loop held up (a write blocked on
   *  a busy disk; a starved CPU), and runs only after the I/O that waited meanwhile is read
   *  (src/agent/tick-timer.ts). Ticks are due every 50 ms and run within a few ms of it on an
   *  idle loop. Lower: more ticks deferred (each by one loop turn, harmless); higher: shorter
   *  stalls judge leases on stale input again (the loaded churn test saw ticks 0.3–2 s late). */
  stallMs: 100,
  /** How often pending jobs are offered again even without a capacity change (sweep). */
  sweepIntervalMs: 2000,
  /** A finished job stays in its owner's memory this long after its last change, then only in
   *  the store (and its replicas'); a late report about it brings it back from the store.
   *  Memory held ≈ job rate × this × ~3.6 KB (measured: a finished job's record and the
   *  owner's bookkeeping for it; 1 job/s keeps ~2 MB). Shorter: less
   *  memory; longer: fewer store reads for the late reports (a final whose ack was lost is
   *  resent within seconds, so minutes cover nearly all). */
  finishedJobRetentionMs: 10 * 60_000,
  /** Standby copies checked against their owners' per sweep, at most (see auditStandby in
   *  src/agent/agent.ts; a sweep runs every tenth of finishedJobRetentionMs). More: a backlog
   *  after a restart clears sooner; fewer: fewer queries to owners at once. */
  standbyAuditBatch: 100,
  /** The least finishedJobRetentionMs an agent accepts: several leases and report retries, so
   *  that what is still in flight about a job when it finishes (its final's replication, the
   *  executor's retries of a report whose ack was lost) is answered from memory. */
  minFinishedJobRetentionMs: 30_000,
  /** A finished job (its record, events and logs) is deleted from every store that holds it
   *  (its owner's and its replicas') this long after it was last changed; live jobs never are.
   *  Checked every hour (or every tenth of this, if shorter), historyDeleteBatch at a time.
   *  Disk held ≈ job rate × this × (record + events + logs). Shorter: less disk; longer: older
   *  results and logs stay readable. Never shorter than finishedJobRetentionMs, nor than the
   *  executors' replay window (EXECUTOR_REPLAY_DEFAULTS.windowMs, also 7 days): a deleted job
   *  must be too old to run, or a replayed award of it could run it again. */
  historyRetentionMs: 7 * 24 * 3600_000,
  /** Finished jobs deleted per store transaction (see historyRetentionMs). Measured: 12–43 ms
   *  per 1,000 jobs with their events and logs, so 200 hold up requests a few ms at a time;
   *  the event loop runs between batches. */
  historyDeleteBatch: 200,
  /** Job summaries each agent keeps of the whole mesh's jobs (for listing from any node and
   *  finding owners); the least recently changed finished ones go first. ≈ 1.5 KB each: 50,000
   *  is ~73 MB. Not lower: an executor that is neither owner nor replica knows a job finished
   *  only from here, and that is what refuses a replayed award of it (jobFinished), so the
   *  directory must outlast the replay window. More: longer mesh-wide history; fewer: less
   *  memory, and a weaker replay refusal. */
  directoryMaxSummaries: 50_000,
  /** getJob calls waiting for their jobs to finish at once (the API's `waitMs`), at most; past
   *  it a call answers at once, and its client asks again. Each is a held request and a
   *  timer: more costs memory and sockets, fewer turns waiting clients into polling ones. */
  maxFinishWaits: 10_000,
  /** Max request body for the HTTP API. */
  apiBodyLimitBytes: 1024 * 1024
} as const

export const SCHEDULER_DEFAULTS = {
  /** Candidates asked to bid = min(feasible, needed + extraCandidates). More: better odds that one
   *  still has room when the bid arrives; fewer: fewer messages per job. Constant in mesh size. */
  extraCandidates: 2,
  /** How long an owner waits for bids before deciding with what it has. It decides early once every
   *  candidate has answered, so this only costs time when a candidate is slow or dead. */
  bidWindowMs: 500,
  /** A job skips the bid round and goes straight to the view's best node when that node's advert
   *  is at most advertIntervalMs + this old (agentTimings.directAwardMaxViewAgeMs, 1.5 s: a live
   *  node's entry always is), it has no award unanswered for over a bid window, and the job's
   *  last attempt was not lost nor its last directAwardDeclinesBeforeBids declined. The node
   *  declines an award that does not fit its exact books, and the job then goes to the next
   *  best (see directAwardDeclinesBeforeBids). Longer: a node dead since its last advert gets
   *  awards longer (each waits out the award deadline); shorter than an advert's delivery:
   *  every job is bid for (three bid requests, two releases and a round trip more per job;
   *  AgentInit.scheduler.directAwardMaxViewAgeMs = 0 turns awards from the view off). */
  directAwardViewAgeMarginMs: 500,
  /** After this many declined awards from the view in a row, a job's next offer is a bid round;
   *  before, a declined job goes to the view's next best node (the decliner shows full in the
   *  view until its next advert). A decline then costs an award and its answer (2 messages,
   *  one round trip) where a round costs ~8 and waits for the slowest bidder. 0 or 1: a round
   *  after every decline. Higher: fewer rounds, but where many owners aim at the same few nodes (a
   *  burst, best-fit packing) each further try is likelier to be declined too; the simulator's
   *  steady run at 1,000 agents declines ~27% of first awards (docs/benchmarks.md). */
  directAwardDeclinesBeforeBids: 2,
  /** How long a bid's reservation holds on the bidder without an award. Must exceed the bid window
   *  plus an award's round trip, or a winner may have given its reservation away. */
  reservationTtlMs: 3000,
  /** How long the owner waits for the winner's award acknowledgement (or first report) before
   *  re-auctioning. The owner waits at least leaseMs: an owner cut off just after an award must
   *  notice it has lost its majority before it would re-auction on the minority side. */
  awardAckTimeoutMs: 2000,
  /** An advert older than this is not trusted for placement (the node may be gone or full). */
  staleAdvertMs: 6000,
  /** Retry backoff: min(retryBackoffMaxMs, retryBackoffBaseMs × 2^(attempt-1)). */
  retryBackoffBaseMs: 1000,
  retryBackoffMaxMs: 30_000,
  /** Top scores kept in an explanation. */
  explainTop: 5
} as const
