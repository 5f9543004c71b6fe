// Which replica takes a job over when its owner is gone, and when: pure, so the rule can be
// checked on its own. The agent gathers the inputs (its view's liveness, its replicas'
// answers) and carries the decision out.
//
// A job's group is its owner and its replicas. The owner relied on a record (answered a
// submit, accepted a result) only once a majority of the group held it. A takeover reads a
// majority of the group too, so the two majorities share a member, and the adopter starts
// from the newest record anything was ever based on. An award is the exception: it leaves
// after the owner's own flush, and reaches the replicas with the next batch (≤ 25 ms). An
// owner that dies in between leaves copies without it; its executor's renewals, which go to
// every replica it sees alive once the owner stops answering, tell the adopter (agent.ts,
// adopt), which takes the attempt in rather than run the job again.
//
// A replica may hold no copy at all: it was down, or cut off, when the owner sent the job
// (the owner still counted it alive). Such a replica can neither take the job over nor
// block it: its answer ("no copy") counts toward the read majority, since a member that
// never held the record cannot hold a newer one; and the job goes to the best-ranked
// replica that holds a copy, not to the best-ranked replica.
import { type JobRecord, TERMINAL_STATES } from '../protocol/job.ts'
import { rendezvous } from './hash.ts'

/** A majority of a job's group: its owner and `replicas` replicas. */
export function groupMajority (replicas: number): number {
  return Math.floor((1 + replicas) / 2) + 1
}

/** Replica acknowledgements that, with the owner, make a majority of the job's group. */
export function replicaQuorum (replicas: number): number {
  return groupMajority(replicas) - 1
}

/** Between two owners of one job under the same term, the one ranked better for the job. Two
 *  replicas that see different members alive may both take a job over under the same term
 *  (decideTakeover); every agent then prefers the same one, so the other lets go as soon as it
 *  hears of it (a replica refuses its copy as stale, or a summary names the winner). */
export function ownerPrecedes (jobId: string, a: string, b: string): boolean {
  return rankReplicas(jobId, [a, b], () => true)[0] === a
}

/** The order of two copies of a job that term and owner settle: a higher term (a takeover)
 *  wins; within a term, the better-ranked owner (see ownerPrecedes). Undefined when both come
 *  from one owner's term: then that owner's own order decides (newerRecord, newerSummary). */
function ownerOrder (a: Pick<JobRecord, 'id' | 'term' | 'owner'>, b: Pick<JobRecord, 'term' | 'owner'>): boolean | undefined {
  if (a.term !== b.term) return a.term > b.term
  if (a.owner !== b.owner) return ownerPrecedes(a.id, a.owner, b.owner)
  return undefined
}

/** Whether record a is a newer copy of a job than b: by ownerOrder, then the higher version
 *  (every change of the record increases it). */
export function newerRecord (a: JobRecord, b: JobRecord): boolean {
  return ownerOrder(a, b) ?? a.version > b.version
}

/** Whether summary a is a newer copy than b: by ownerOrder, then the later update (one
 *  owner's clock). */
export function newerSummary (a: Pick<JobRecord, 'id' | 'term' | 'owner' | 'updatedAtMs'>, b: Pick<JobRecord, 'term' | 'owner' | 'updatedAtMs'>): boolean {
  return ownerOrder(a, b) ?? a.updatedAtMs >= b.updatedAtMs
}

/** The job's replicas that `alive` passes, best first: highest rendezvous weight for the job,
 *  ties by peer id. Every agent ranks the same members the same way. */
export function rankReplicas (jobId: string, replicas: readonly string[], alive: (peer: string) => boolean): string[] {
  return replicas.filter(alive).sort((a, b) => rendezvous(jobId, b) - rendezvous(jobId, a) || (a < b ? -1 : 1))
}

/** When a replica at `rank` (0 = best) among the alive ones first asks the others whether it
 *  should take the job over: rank × staggerMs after the owner was found gone. The best-ranked
 *  replica asks at once; the next ones only matter if it holds no copy, and asking later
 *  spares the group a round of queries per replica when it does. */
export function takeoverDueAtMs (ownerGoneAtMs: number, rank: number, staggerMs: number): number {
  return ownerGoneAtMs + rank * staggerMs
}

/** One replica's answer to "what copy of the job do you hold?". `copy` is absent when it
 *  holds none. A replica that did not answer is simply not in the list. */
export interface CopyAnswer { peer: string, copy?: JobRecord }

export interface TakeoverInput {
  selfId: string
  /** this agent's copy (it holds one, or it would not be on standby for the job) */
  own: JobRecord
  /** the other replicas of `own` that this agent sees alive: the ones it asked */
  asked: readonly string[]
  answers: readonly CopyAnswer[]
}

export type TakeoverDecision =
  /** take the job over, starting from this copy (the newest among the answers and its own) */
  | { kind: 'adopt', newest: JobRecord }
  /** the job was taken over already (a higher term), or its owner changed its group: keep
   *  that copy, and judge again from it, with its group (if it still lists this agent),
   *  whether its owner is gone */
  | { kind: 'follow', newest: JobRecord }
  /** the job is finished: keep the final copy, nothing to take over */
  | { kind: 'finished', newest: JobRecord }
  /** too few answers to be sure of the newest record: ask again later */
  | { kind: 'no-quorum', answered: number, needed: number }
  /** a better-ranked replica holds a copy, or may (it did not answer): leave it the job */
  | { kind: 'defer', to: string }

/** Decides, from the answers of the other alive replicas, what this replica does about a job
 *  whose owner is gone. At most one replica decides 'adopt' while the replicas see the same
 *  members alive: each defers to any better-ranked one that holds a copy, or that did not
 *  answer and so may hold one. */
export function decideTakeover (input: TakeoverInput): TakeoverDecision {
  const { selfId, own, asked, answers } = input
  const answered = new Map<string, CopyAnswer>()
  for (const a of answers) if (asked.includes(a.peer) && a.peer !== selfId) answered.set(a.peer, a)
  let newest = own
  for (const a of answered.values()) if (a.copy !== undefined && newerRecord(a.copy, newest)) newest = a.copy
  if (TERMINAL_STATES.has(newest.state)) return { kind: 'finished', newest }
  // Taken over already: whether that owner is gone too is a question for its own group. So
  // it is when the owner changed the group since this copy (it replaced a replica that looked
  // gone, see replacementReplicas): judge again from the newest copy, with its group, or
  // stand down when it no longer lists this agent. Ranked by this copy's stale group, a
  // replaced replica and a new one could both adopt.
  if (newest.term > own.term || !sameMembers(newest.replicas, own.replicas)) return { kind: 'follow', newest }
  const needed = groupMajority(own.replicas.length)
  if (1 + answered.size < needed) return { kind: 'no-quorum', answered: answered.size, needed }
  for (const peer of rankReplicas(own.id, own.replicas, p => p === selfId || asked.includes(p))) {
    if (peer === selfId) return { kind: 'adopt', newest }
    const answer = answered.get(peer)
    if (answer === undefined || answer.copy !== undefined) return { kind: 'defer', to: peer }
  }
  // Not among its own copy's replicas: a record on standby always lists this agent.
  return { kind: 'defer', to: own.owner }
}

function sameMembers (a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every(x => b.includes(x))
}

/** The last lease renewal an executor sent a replica while the owner was unreachable. */
export interface StandbyRenewal { atMs: number, epoch: number, node: string, startedAtMs?: number }

/**
 * The record an adopter starts from, with the attempt its executor renewed if no copy knows
 * that attempt: the owner awarded it and died before the award reached a replica (it goes
 * with the next batch; a copy made during the bid round has the round's epoch and no
 * attempt). Without it the job would be offered again and run a second time. Changes
 * `record` in place; returns whether it took the attempt in.
 */
export function takeInRenewedAttempt (record: JobRecord, renewal: StandbyRenewal | undefined): boolean {
  if (renewal === undefined || renewal.epoch < record.epoch || TERMINAL_STATES.has(record.state)) return false
  if (record.attempts.some(a => a.epoch === renewal.epoch)) return false
  const ran = renewal.startedAtMs !== undefined
  record.epoch = renewal.epoch
  record.node = renewal.node
  record.state = ran ? 'running' : 'scheduled'
  delete record.reason
  record.attempts.push({ epoch: renewal.epoch, node: renewal.node, state: ran ? 'running' : 'awarded', awardedAtMs: renewal.atMs, ...(ran ? { startedAtMs: renewal.startedAtMs } : {}) })
  return true
}

/**
 * The owner's new replica list for a job some of whose replicas are gone, or that has fewer
 * than `count` (chosen when fewer agents were alive: a young mesh, a side of a partition):
 * each gone one is replaced by the best-ranked alive peer (rendezvous on the job id, as at
 * submit) that is neither the owner nor already a replica, while there are such peers, and
 * the next best are added up to `count`; the others keep their places. undefined when
 * nothing is to change (none gone nor missing, or no peer to take a place).
 *
 * Why: a group only shrinks otherwise. A long job whose replicas leave one after another
 * would be left with too few of them alive to take it over when its owner goes too.
 */
export function replacementReplicas (jobId: string, replicas: readonly string[], peers: Iterable<string>, status: (peer: string) => 'alive' | 'gone' | 'other', selfId: string, count = replicas.length): { replicas: string[], removed: string[], added: string[] } | undefined {
  const gone = replicas.filter(r => status(r) === 'gone')
  const missing = Math.max(0, count - replicas.length)
  if (gone.length === 0 && missing === 0) return undefined
  const spare = rankReplicas(jobId, [...peers], p => p !== selfId && !replicas.includes(p) && status(p) === 'alive')
  if (spare.length === 0) return undefined
  const removed = gone.slice(0, spare.length)
  const inPlace = spare.slice(0, removed.length)
  const appended = spare.slice(removed.length, removed.length + missing)
  let next = 0
  return { replicas: [...replicas.map(r => removed.includes(r) ? inPlace[next++] : r), ...appended], removed, added: [...inPlace, ...appended] }
}
