// Which replica takes a job over when its owner is gone: table tests of decideTakeover, and
// property tests of its two rules over random groups: at most one replica adopts, and when
// every alive replica answers, a majority is alive and one of them holds a copy, exactly one
// does (a replica that holds no copy can neither take the job nor block it).
import { fc, test } from '@fast-check/vitest'
import { describe, expect, it } from 'vitest'
import type { JobRecord } from '../../src/protocol/job.ts'
import { type CopyAnswer, decideTakeover, groupMajority, newerRecord, newerSummary, ownerPrecedes, rankReplicas, replacementReplicas, replicaQuorum, takeInRenewedAttempt, takeoverDueAtMs } from '../../src/scheduler/takeover.ts'
import { jobRecord } from './harness.ts'

const JOB_ID = 'job-takeover-1'
const REPLICAS = ['r1', 'r2', 'r3', 'r4']
/** the replicas best first for JOB_ID, as every agent ranks them */
const RANKED = rankReplicas(JOB_ID, REPLICAS, () => true)

function copy (over: Partial<JobRecord> = {}): JobRecord {
  return { ...jobRecord(JOB_ID, 'owner'), state: 'running', node: 'x', epoch: 1, term: 0, version: 5, replicas: [...REPLICAS], ...over }
}

describe('group sizes', () => {
  it.each([
    [0, 1, 0], [1, 2, 1], [2, 2, 1], [3, 3, 2], [4, 3, 2]
  ])('%i replicas: a majority of the group is %i, that is %i replica acknowledgements', (replicas, majority, quorum) => {
    expect(groupMajority(replicas)).toBe(majority)
    expect(replicaQuorum(replicas)).toBe(quorum)
  })
})

describe('the replicas\' ranking and stagger', () => {
  it('ranks the same members the same way whatever their order, and leaves out those not alive', () => {
    expect(rankReplicas(JOB_ID, [...REPLICAS].reverse(), () => true)).toEqual(RANKED)
    expect(rankReplicas(JOB_ID, REPLICAS, p => p !== RANKED[0])).toEqual(RANKED.slice(1))
  })
  it('the best-ranked replica asks at once, the k-th k staggers later', () => {
    expect([0, 1, 3].map(rank => takeoverDueAtMs(10_000, rank, 1000))).toEqual([10_000, 11_000, 13_000])
  })
})

describe('which copy is newer', () => {
  const [better, worse] = RANKED
  it.each<[string, Partial<JobRecord>, Partial<JobRecord>, boolean]>([
    ['a higher term, whatever its version', { term: 2, version: 1 }, { term: 1, version: 9 }, true],
    ['a lower term', { term: 1, version: 9 }, { term: 2, version: 1 }, false],
    ['one owner\'s higher version', { term: 1, owner: better, version: 5 }, { term: 1, owner: better, version: 4 }, true],
    // Two replicas that both took the job over under one term: the better-ranked owner wins,
    // whatever the versions, so every agent settles on the same copy.
    ['the better-ranked of two owners under one term', { term: 1, owner: better, version: 1 }, { term: 1, owner: worse, version: 7 }, true],
    ['the worse-ranked of two owners under one term', { term: 1, owner: worse, version: 7 }, { term: 1, owner: better, version: 1 }, false]
  ])('%s: %s', (_what, a, b, newer) => {
    expect(newerRecord(copy(a), copy(b))).toBe(newer)
    expect(newerSummary({ ...copy(a), updatedAtMs: a.version ?? 0 }, { ...copy(b), updatedAtMs: b.version ?? 0 })).toBe(newer)
  })
  it('owner precedence is a strict order: exactly one of two owners precedes the other', () => {
    expect([ownerPrecedes(JOB_ID, better, worse), ownerPrecedes(JOB_ID, worse, better)]).toEqual([true, false])
  })
})

describe('decideTakeover', () => {
  const [first, second, third, fourth] = RANKED
  /** the decision of `self`, which holds `own`, given each other replica's answer:
   *  a record (its copy), 'none' (holds none) or 'silent' (did not answer); absent = not alive */
  function decide (self: string, answers: Record<string, JobRecord | 'none' | 'silent'>, own = copy()): ReturnType<typeof decideTakeover> {
    const asked = Object.keys(answers)
    const list: CopyAnswer[] = Object.entries(answers).filter(([, a]) => a !== 'silent').map(([peer, a]) => a === 'none' ? { peer } : { peer, copy: a as JobRecord })
    return decideTakeover({ selfId: self, own, asked, answers: list })
  }

  it.each<[string, string, string, Record<string, JobRecord | 'none' | 'silent'>]>([
    ['the best-ranked replica, every other one holding a copy', first, 'adopt', { [second]: copy(), [third]: copy(), [fourth]: copy() }],
    ['the second, while the best-ranked holds a copy', second, 'defer', { [first]: copy(), [third]: copy(), [fourth]: copy() }],
    ['the second, while the best-ranked holds none (down when the job was sent)', second, 'adopt', { [first]: 'none', [third]: copy(), [fourth]: copy() }],
    ['the third, while the two best-ranked hold none: their answers make the majority', third, 'adopt', { [first]: 'none', [second]: 'none', [fourth]: copy() }],
    ['the second, while the best-ranked did not answer (it may hold a copy)', second, 'defer', { [first]: 'silent', [third]: copy(), [fourth]: copy() }],
    ['the fourth, with only one other answer: no majority of the 5', fourth, 'no-quorum', { [first]: 'silent', [second]: 'silent', [third]: 'none' }],
    ['the best-ranked, with the two others it sees alive answering (5 − 1 dead − 1 unseen)', first, 'adopt', { [second]: 'none', [third]: copy() }],
    ['any replica, once someone took the job over (a higher term)', fourth, 'follow', { [first]: copy({ term: 1, owner: first, version: 1 }), [second]: copy(), [third]: 'none' }],
    ['any replica, once a copy says the job finished', first, 'finished', { [second]: copy({ state: 'succeeded', version: 9 }), [third]: 'silent', [fourth]: 'silent' }],
    // The owner replaced a replica that looked gone (replacementReplicas): ranked by its own
    // stale list, the replaced one would adopt beside the best of the new group.
    ['the best-ranked, once a newer copy shows the owner replaced it', first, 'follow', { [second]: copy({ version: 6, replicas: [second, third, fourth, 'r5'] }), [third]: copy(), [fourth]: 'none' }],
    ['any replica, once a newer copy shows a changed group that still lists it', second, 'follow', { [first]: 'silent', [third]: copy({ version: 6, replicas: [second, third, fourth, 'r5'] }), [fourth]: copy() }]
  ])('%s: %s decides %s', (_what, self, kind, answers) => {
    expect(decide(self, answers).kind).toBe(kind)
  })

  it('adopts from the newest copy among the answers, not its own', () => {
    const newer = copy({ version: 8, state: 'scheduled', epoch: 2 })
    const d = decide(first, { [second]: newer, [third]: copy(), [fourth]: 'none' })
    expect(d).toEqual({ kind: 'adopt', newest: newer })
  })

  it('counts an answer once, and only from a replica it asked', () => {
    const own = copy()
    const answers: CopyAnswer[] = [{ peer: second }, { peer: second }, { peer: 'stranger' }]
    expect(decideTakeover({ selfId: first, own, asked: [second, third], answers }).kind).toBe('no-quorum')
  })
})

// ---- properties -------------------------------------------------------------------------

interface GroupArb {
  replicaCount: number
  /** per replica: alive, holds a copy */
  alive: boolean[]
  holds: boolean[]
  /** per decider, per other replica: whether that one's answer reached it */
  reached: boolean[][]
}

const arbGroup: fc.Arbitrary<GroupArb> = fc.integer({ min: 1, max: 6 }).chain(n => fc.record({
  replicaCount: fc.constant(n),
  alive: fc.array(fc.boolean(), { minLength: n, maxLength: n }),
  holds: fc.array(fc.boolean(), { minLength: n, maxLength: n }),
  reached: fc.array(fc.array(fc.boolean(), { minLength: n, maxLength: n }), { minLength: n, maxLength: n })
}))

/** What each alive replica holding a copy decides, all seeing the same replicas alive. */
function decisions (g: GroupArb, jobId: string, everyAnswerArrives: boolean): Array<{ peer: string, kind: string }> {
  const replicas = Array.from({ length: g.replicaCount }, (_, i) => `peer-${i}`)
  const record: JobRecord = { ...jobRecord(jobId, 'owner'), state: 'running', epoch: 1, version: 3, replicas }
  const alive = replicas.filter((_, i) => g.alive[i])
  const out: Array<{ peer: string, kind: string }> = []
  replicas.forEach((self, i) => {
    if (!g.alive[i] || !g.holds[i]) return // only a replica on standby (holding a copy) decides
    const asked = alive.filter(p => p !== self)
    const answers: CopyAnswer[] = []
    for (const p of asked) {
      const j = replicas.indexOf(p)
      if (!everyAnswerArrives && !g.reached[i][j]) continue
      answers.push(g.holds[j] ? { peer: p, copy: record } : { peer: p })
    }
    out.push({ peer: self, kind: decideTakeover({ selfId: self, own: record, asked, answers }).kind })
  })
  return out
}

describe('an attempt known only from its renewals (takeInRenewedAttempt)', () => {
  const copy = (over: Partial<JobRecord> = {}): JobRecord => ({ ...jobRecord('j1', 'owner'), epoch: 1, ...over })
  const renewal = { atMs: 500, epoch: 1, node: 'x', startedAtMs: 400 }
  it.each([
    ['a copy made during the bid round (its epoch, no attempt): taken in, running', copy(), renewal, true, { epoch: 1, node: 'x', state: 'running', attempts: [{ epoch: 1, node: 'x', state: 'running', awardedAtMs: 500, startedAtMs: 400 }] }],
    ['an older copy (before the round): taken in', copy({ epoch: 0 }), { ...renewal, epoch: 1 }, true, { epoch: 1, node: 'x', state: 'running' }],
    ['not yet started: taken in as awarded', copy(), { atMs: 500, epoch: 1, node: 'x' }, true, { state: 'scheduled', attempts: [{ epoch: 1, node: 'x', state: 'awarded', awardedAtMs: 500 }] }],
    ['the copy knows the attempt: unchanged', copy({ state: 'running', node: 'x', attempts: [{ epoch: 1, node: 'x', state: 'running', awardedAtMs: 1 }] }), renewal, false, { attempts: [{ epoch: 1, node: 'x', state: 'running', awardedAtMs: 1 }] }],
    ['a fenced-off attempt (older epoch): unchanged', copy({ epoch: 2 }), renewal, false, { epoch: 2, attempts: [] }],
    ['a finished job: unchanged', copy({ state: 'succeeded' }), renewal, false, { state: 'succeeded', attempts: [] }],
    ['no renewal: unchanged', copy(), undefined, false, { epoch: 1, attempts: [] }]
  ] as const)('%s', (_what, record, r, takenIn, expected) => {
    const rec = structuredClone(record) as JobRecord
    expect(takeInRenewedAttempt(rec, r)).toBe(takenIn)
    expect(rec).toMatchObject(expected)
  })
})

describe('replicas in place of gone ones (replacementReplicas)', () => {
  const PEERS = ['owner', 'r1', 'r2', 'r3', 'r4', 's1', 's2', 's3']
  /** the spare peers best first for JOB_ID */
  const SPARES = rankReplicas(JOB_ID, ['s1', 's2', 's3'], () => true)
  const status = (gone: string[], notAlive: string[] = []) => (p: string): 'alive' | 'gone' | 'other' =>
    gone.includes(p) ? 'gone' : notAlive.includes(p) ? 'other' : 'alive'

  it.each([
    ['none gone: no change', [], [], undefined],
    ['one gone: the best-ranked spare takes its place, the others keep theirs', ['r2'], [], { replicas: ['r1', SPARES[0], 'r3', 'r4'], removed: ['r2'], added: [SPARES[0]] }],
    ['two gone: the two best spares, in the gone ones\' places', ['r1', 'r4'], [], { replicas: [SPARES[0], 'r2', 'r3', SPARES[1]], removed: ['r1', 'r4'], added: [SPARES[0], SPARES[1]] }],
    ['a spare not alive (suspect) is passed over', ['r3'], [SPARES[0]], { replicas: ['r1', 'r2', SPARES[1], 'r4'], removed: ['r3'], added: [SPARES[1]] }],
    ['fewer spares than gone: as many as there are; the rest stay listed', ['r1', 'r2', 'r3'], [SPARES[0], SPARES[1]], { replicas: [SPARES[2], 'r2', 'r3', 'r4'], removed: ['r1'], added: [SPARES[2]] }],
    ['no spare alive: no change', ['r1'], ['s1', 's2', 's3'], undefined],
    ['a suspect replica is not gone: no change', [], ['r1'], undefined]
  ] as const)('%s', (_what, gone, notAlive, expected) => {
    expect(replacementReplicas(JOB_ID, REPLICAS, PEERS, status([...gone], [...notAlive]), 'owner')).toEqual(expected)
  })

  it.each([
    ['a group of 2 grows to 4 with the two best spares', ['r1', 'r2'], [], { replicas: ['r1', 'r2', SPARES[0], SPARES[1]], removed: [], added: [SPARES[0], SPARES[1]] }],
    ['a gone one in a group of 3: its place first, then one more', ['r1', 'r2', 'r3'], ['r2'], { replicas: ['r1', SPARES[0], 'r3', SPARES[1]], removed: ['r2'], added: [SPARES[0], SPARES[1]] }],
    ['a group of 4 already: nothing to add', ['r1', 'r2', 'r3', 'r4'], [], undefined]
  ] as const)('up to a count: %s', (_what, replicas, gone, expected) => {
    // The mesh: the owner, the group and the three spares.
    expect(replacementReplicas(JOB_ID, replicas, ['owner', ...replicas, 's1', 's2', 's3'], status([...gone]), 'owner', 4)).toEqual(expected)
  })

  it('never lists the owner, a peer twice, or a gone peer in place of one', () => {
    // The owner is alive and unlisted, so the only peer that could be wrongly picked first.
    const change = replacementReplicas(JOB_ID, REPLICAS, PEERS, status(['r1', 'r2', 's1']), 'owner')!
    expect(change.replicas).not.toContain('owner')
    expect(new Set(change.replicas).size).toBe(4)
    expect(change.added).not.toContain('s1')
    expect(change.removed).toEqual(['r1', 'r2'])
  })
})

describe('decideTakeover over random groups', () => {
  test.prop([arbGroup, fc.string({ minLength: 1, maxLength: 12 })])('at most one replica adopts, whichever answers get through', (g, jobId) => {
    const adopters = decisions(g, jobId, false).filter(d => d.kind === 'adopt')
    expect(adopters.length).toBeLessThanOrEqual(1)
  })

  test.prop([arbGroup, fc.string({ minLength: 1, maxLength: 12 })])('exactly one adopts when every alive replica answers, a majority of the group is alive and one holds a copy', (g, jobId) => {
    const aliveCount = g.alive.filter(Boolean).length
    const anyHolder = g.alive.some((a, i) => a && g.holds[i])
    const adopters = decisions(g, jobId, true).filter(d => d.kind === 'adopt')
    // The dead owner is one of the group, so the alive replicas alone must be a majority.
    const expected = anyHolder && aliveCount >= groupMajority(g.replicaCount) ? 1 : 0
    expect(adopters.length).toBe(expected)
  })
})
