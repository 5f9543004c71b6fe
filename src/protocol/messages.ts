// Wire messages. Message type numbers are part of the protocol: ONLY APPEND.
// Never renumber or reuse a number, even for a message that is retired.
import { z } from 'zod'
import type { JobSpec } from './job-spec.ts'
import type { JobEvent, JobRecord, JobSummary, LogChunk, NodeCapacity } from './job.ts'

export const PROTOCOL_VERSION = { min: 1, max: 1, current: 1 } as const

export const MessageType = {
  CapacityAdvert: 1,
  BidRequest: 2,
  Bid: 3,
  BidRefused: 4,
  Award: 5,
  AwardAck: 6,
  AwardDeclined: 7,
  ReservationRelease: 8,
  AttemptUpdate: 9,
  AttemptUpdateAck: 10,
  JobQuery: 11,
  JobQueryReply: 12,
  LogQuery: 13,
  LogReply: 14,
  CancelRequest: 15,
  CancelAttempt: 16,
  Ack: 17,
  JobSummaries: 18,
  JobListQuery: 19,
  JobListReply: 20,
  LogAppend: 21,
  JobReplicate: 22,
  MemberLeave: 23,
  AttemptRenewals: 24,
  AttemptRenewalsAck: 25
  // next: 26
} as const
export type MessageTypeName = keyof typeof MessageType
export type MessageTypeNumber = typeof MessageType[MessageTypeName]

/** Lease renewals one AttemptRenewals carries at most: an executor with more attempts of one
 *  owner sends several. 256 × ~120 B stays far below MAX_DIRECT_BYTES. */
export const MAX_RENEWALS_PER_MESSAGE = 256

/** Size caps, checked before anything is decoded. Gossip is soft state and stays small. */
export const MAX_GOSSIP_BYTES = 64 * 1024
export const MAX_DIRECT_BYTES = 1024 * 1024

// ---- schemas ---------------------------------------------------------------------------
const peerId = z.string().min(1).max(128)
const jobId = z.string().min(1).max(64)
const epoch = z.number().int().nonnegative()
const nonNeg = z.number().nonnegative()
const ms = z.number().int().nonnegative()
const labels = z.record(z.string().max(63), z.string().max(63))
const reason = z.enum(['exit', 'oom', 'timeout', 'cancelled', 'unplaceable', 'lost', 'image', 'error'])
const jobState = z.enum(['pending', 'scheduled', 'running', 'succeeded', 'failed', 'cancelled'])

export const JobSpecWireSchema = z.object({
  image: z.string().min(1).max(512),
  name: z.string().max(128).optional(),
  command: z.array(z.string().max(65_536)).max(1024),
  env: z.record(z.string().max(256), z.string().max(32_768)),
  // Optional and absent when empty: specs without secrets encode as before. An older peer
  // (strict schema) refuses a spec with secrets rather than showing them unredacted.
  secretEnv: z.array(z.string().max(256)).max(1024).optional(),
  cpuMilli: z.number().int().positive(),
  memoryBytes: z.number().int().positive(),
  pidsLimit: z.number().int().positive(),
  timeoutMs: ms,
  retries: z.number().int().min(0).max(100),
  constraints: labels,
  network: z.enum(['none', 'bridge']),
  placement: z.enum(['binpack', 'spread']).optional()
}).strict()

const capacity = z.object({
  peerId,
  totalCpuMilli: nonNeg,
  freeCpuMilli: z.number(),
  totalMemoryBytes: nonNeg,
  freeMemoryBytes: z.number(),
  runningJobs: z.number().int().nonnegative(),
  labels,
  draining: z.boolean(),
  seq: z.number().int().nonnegative(),
  sentAtMs: ms,
  addrs: z.array(z.string().max(256)).max(16).optional()
})

const attempt = z.object({
  epoch,
  node: peerId,
  state: z.enum(['awarded', 'running', 'exited', 'lost', 'declined', 'cancelled']),
  awardedAtMs: ms,
  startedAtMs: ms.optional(),
  finishedAtMs: ms.optional(),
  exitCode: z.number().int().nullable().optional(),
  reason: reason.optional(),
  error: z.string().max(4096).optional()
})

const explanation = z.object({
  consideredNodes: z.number().int().nonnegative(),
  filtered: z.record(z.string(), z.number()),
  top: z.array(z.object({ node: peerId, score: z.number(), components: z.record(z.string(), z.number()) })).max(64),
  candidates: z.array(peerId).max(256),
  decidedFrom: z.literal('view').optional(),
  refused: z.record(z.string(), z.number()).optional(),
  winner: peerId.optional(),
  decidedAtMs: ms
})

const jobRecord = z.object({
  id: jobId,
  spec: JobSpecWireSchema,
  owner: peerId,
  publisher: peerId,
  state: jobState,
  reason: reason.optional(),
  exitCode: z.number().int().nullable().optional(),
  node: peerId.optional(),
  epoch,
  term: z.number().int().nonnegative(),
  version: z.number().int().nonnegative(),
  replicas: z.array(peerId).max(16),
  attempts: z.array(attempt).max(1000),
  createdAtMs: ms,
  updatedAtMs: ms,
  nonce: z.string().min(1).max(64).optional(),
  signature: z.string().min(1).max(128).optional(),
  notBeforeMs: ms.optional(),
  explanation: explanation.optional()
})

const jobEvent = z.object({ atMs: ms, type: z.string().max(64), epoch: epoch.optional(), node: peerId.optional(), detail: z.string().max(4096).optional() })
const summary = z.object({
  id: jobId, name: z.string().max(128).optional(), image: z.string().max(512), owner: peerId, state: jobState,
  reason: reason.optional(), node: peerId.optional(), epoch, term: z.number().int().nonnegative(), createdAtMs: ms, updatedAtMs: ms
})
const logChunk = z.object({ seq: z.number().int().positive(), epoch, stream: z.enum(['stdout', 'stderr']), atMs: ms, data: z.string() })

/** The publisher's signed envelope, copied into bid requests and awards so an executor can
 *  check who asked for the job without trusting the owner that forwards it. */
const signedFields = {
  publisher: peerId.optional(),
  createdAtMs: ms.optional(),
  nonce: z.string().min(1).max(64).optional(),
  signature: z.string().min(1).max(128).optional()
}

/** An AttemptUpdate's answer, alone or one of an AttemptRenewalsAck's. quorumAgeMs (a
 *  replica's acknowledgement of a renewal): how long before answering the replica last heard
 *  from at least half of the mesh, the evidence it acknowledges on. The executor counts its
 *  lease from then, not from the answer, so a replica cut off from the majority keeps no
 *  lease alive past a lease after the cut. Absent (an owner, or an older replica): from the
 *  answer. */
const attemptUpdateAck = z.object({ jobId, epoch, accepted: z.boolean(), stop: z.boolean(), owner: peerId.optional(), replicas: z.array(peerId).max(16).optional(), quorumAgeMs: ms.optional() })

export const BodySchemas = {
  [MessageType.CapacityAdvert]: capacity,
  [MessageType.BidRequest]: z.object({ jobId, epoch, owner: peerId, spec: JobSpecWireSchema, ...signedFields }),
  [MessageType.Bid]: z.object({ jobId, epoch, score: z.number(), components: z.record(z.string(), z.number()), capacity }),
  [MessageType.BidRefused]: z.object({ jobId, epoch, reason: z.string().max(128), capacity: capacity.optional() }),
  [MessageType.Award]: z.object({ jobId, epoch, owner: peerId, replicas: z.array(peerId).max(16), spec: JobSpecWireSchema, leaseMs: ms, term: z.number().int().nonnegative().optional(), ...signedFields }),
  [MessageType.AwardAck]: z.object({ jobId, epoch }),
  [MessageType.AwardDeclined]: z.object({ jobId, epoch, reason: z.string().max(128) }),
  [MessageType.ReservationRelease]: z.object({ jobId, epoch }),
  [MessageType.AttemptUpdate]: z.object({
    jobId, epoch, node: peerId, state: z.enum(['starting', 'running', 'exited']),
    startedAtMs: ms.optional(), finishedAtMs: ms.optional(),
    exitCode: z.number().int().nullable().optional(), reason: reason.optional(), error: z.string().max(4096).optional()
  }),
  [MessageType.AttemptUpdateAck]: attemptUpdateAck,
  [MessageType.AttemptRenewals]: z.object({
    node: peerId,
    renewals: z.array(z.object({ jobId, epoch, state: z.enum(['starting', 'running']), startedAtMs: ms.optional() })).min(1).max(MAX_RENEWALS_PER_MESSAGE)
  }),
  [MessageType.AttemptRenewalsAck]: z.object({
    acks: z.array(attemptUpdateAck).max(MAX_RENEWALS_PER_MESSAGE),
    unanswered: z.array(z.object({ jobId, epoch })).max(MAX_RENEWALS_PER_MESSAGE)
  }),
  [MessageType.JobQuery]: z.object({ id: z.string().min(1).max(64) }),
  [MessageType.JobQueryReply]: z.object({ job: jobRecord.optional(), events: z.array(jobEvent).max(10_000), matches: z.array(jobId).max(64).optional() }),
  [MessageType.LogQuery]: z.object({ jobId, afterSeq: z.number().int().nonnegative(), limit: z.number().int().positive().max(10_000) }),
  [MessageType.LogReply]: z.object({ chunks: z.array(logChunk).max(10_000) }),
  [MessageType.CancelRequest]: z.object({ jobId }),
  [MessageType.CancelAttempt]: z.object({ jobId, epoch }),
  [MessageType.Ack]: z.object({ ok: z.boolean(), code: z.string().max(64).optional(), message: z.string().max(1024).optional(), staleJobs: z.array(jobId).max(256).optional(), eventGaps: z.array(jobId).max(256).optional() }),
  [MessageType.JobSummaries]: z.object({ from: peerId, summaries: z.array(summary).max(256) }),
  [MessageType.JobListQuery]: z.object({ state: jobState.optional(), limit: z.number().int().positive().max(10_000) }),
  [MessageType.JobListReply]: z.object({ summaries: z.array(summary).max(10_000) }),
  [MessageType.MemberLeave]: z.object({ peerId }),
  [MessageType.JobReplicate]: z.object({ from: peerId, jobs: z.array(z.object({ job: jobRecord, events: z.array(jobEvent).max(1000), eventsFrom: z.number().int().nonnegative().optional() })).max(256) }),
  [MessageType.LogAppend]: z.object({ jobId, epoch, chunks: z.array(z.object({ stream: z.enum(['stdout', 'stderr']), atMs: ms, data: z.string() })).max(10_000) })
} as const

// ---- typed bodies ----------------------------------------------------------------------
export interface Bodies {
  [MessageType.CapacityAdvert]: NodeCapacity
  [MessageType.BidRequest]: { jobId: string, epoch: number, owner: string, spec: JobSpec } & SignedEnvelope
  [MessageType.Bid]: { jobId: string, epoch: number, score: number, components: Record<string, number>, capacity: NodeCapacity }
  [MessageType.BidRefused]: { jobId: string, epoch: number, reason: string, capacity?: NodeCapacity }
  /** term: the owner's term for the job (optional for older agents: 0). An executor fences
   *  older attempts on its engine by (term, epoch), since two owners on the two sides of a
   *  partition may both issue the same epoch. */
  [MessageType.Award]: { jobId: string, epoch: number, owner: string, replicas: string[], spec: JobSpec, leaseMs: number, term?: number } & SignedEnvelope
  [MessageType.AwardAck]: { jobId: string, epoch: number }
  [MessageType.AwardDeclined]: { jobId: string, epoch: number, reason: string }
  [MessageType.ReservationRelease]: { jobId: string, epoch: number }
  [MessageType.AttemptUpdate]: AttemptUpdate
  /** owner: who answered as the job's owner, so an executor follows a takeover; replicas:
   *  the job's replicas now, when they changed since the award named them (the owner replaced
   *  gone ones), so the executor renews with these when the owner is away */
  [MessageType.AttemptUpdateAck]: { jobId: string, epoch: number, accepted: boolean, stop: boolean, owner?: string, replicas?: string[], quorumAgeMs?: number }
  /** Lease renewals of several attempts, from their executor (`node`) to their owner, in one
   *  request: each is the AttemptUpdate { jobId, epoch, node, state, startedAtMs } it stands
   *  for, and is answered as that would be. */
  [MessageType.AttemptRenewals]: { node: string, renewals: AttemptRenewal[] }
  /** one ack per renewal answered; unanswered: renewals the receiver could not answer (the
   *  executor sends those one by one, which also tries the job's replicas) */
  [MessageType.AttemptRenewalsAck]: { acks: Array<Bodies[typeof MessageType.AttemptUpdateAck]>, unanswered: Array<{ jobId: string, epoch: number }> }
  [MessageType.JobQuery]: { id: string }
  [MessageType.JobQueryReply]: { job?: JobRecord, events: JobEvent[], matches?: string[] }
  [MessageType.LogQuery]: { jobId: string, afterSeq: number, limit: number }
  [MessageType.LogReply]: { chunks: LogChunk[] }
  [MessageType.CancelRequest]: { jobId: string }
  [MessageType.CancelAttempt]: { jobId: string, epoch: number }
  /** staleJobs (to JobReplicate): jobs the replica knows under a higher term: the sender is no longer their owner */
  /** eventGaps (to JobReplicate): jobs whose events started past the events the replica
   *  holds (it kept the record, not the events): send them from the first one */
  [MessageType.Ack]: { ok: boolean, code?: string, message?: string, staleJobs?: string[], eventGaps?: string[] }
  [MessageType.JobSummaries]: { from: string, summaries: JobSummary[] }
  [MessageType.JobListQuery]: { state?: JobSummary['state'], limit: number }
  [MessageType.JobListReply]: { summaries: JobSummary[] }
  /** gossip: the sender is leaving the mesh on purpose (drain); forget it now */
  [MessageType.MemberLeave]: { peerId: string }
  /** events: the job's events from number eventsFrom on (0-based; absent: from the first),
   *  at most 1000 at a time; an owner sends each replica only those it has not acknowledged */
  [MessageType.JobReplicate]: { from: string, jobs: Array<{ job: JobRecord, events: JobEvent[], eventsFrom?: number }> }
  [MessageType.LogAppend]: { jobId: string, epoch: number, chunks: Array<Omit<LogChunk, 'seq' | 'epoch'>> }
}

export interface AttemptRenewal { jobId: string, epoch: number, state: 'starting' | 'running', startedAtMs?: number }

export interface SignedEnvelope { publisher?: string, createdAtMs?: number, nonce?: string, signature?: string }

export interface AttemptUpdate {
  jobId: string
  epoch: number
  node: string
  /** starting: the executor holds the award and is preparing the container (a lease renewal) */
  state: 'starting' | 'running' | 'exited'
  startedAtMs?: number
  finishedAtMs?: number
  exitCode?: number | null
  reason?: 'exit' | 'oom' | 'timeout' | 'cancelled' | 'unplaceable' | 'lost' | 'image' | 'error'
  error?: string
}

export type Message = { [K in keyof Bodies]: { type: K, body: Bodies[K] } }[keyof Bodies]
export type MessageOf<K extends keyof Bodies> = { type: K, body: Bodies[K] }
