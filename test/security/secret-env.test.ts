// Secret env values (spec.secretEnv): validated, carried to the executor, and redacted from
// every view of a job a user or the mesh at large gets: the status object (API, CLI `--json`,
// dashboard), the CLI's human output, event details and attempt errors, and the job summaries
// agents gossip. Pure: no agent, no engine. The process-level check is secret-env-e2e.test.ts.
import { describe, expect, it } from 'vitest'
import { toJobStatus } from '../../src/api/status.ts'
import { formatJobs, formatStatus } from '../../src/cli/format.ts'
import { canonicalJobBytes, signJob, verifyJob } from '../../src/agent/signing.ts'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { decodeMessage, encodeMessage } from '../../src/protocol/codec.ts'
import { InvalidJobSpecError, parseJobSpec } from '../../src/protocol/job-spec.ts'
import { type JobRecord, summarize } from '../../src/protocol/job.ts'
import { MAX_DIRECT_BYTES, MAX_GOSSIP_BYTES, MessageType } from '../../src/protocol/messages.ts'
import { REDACTED, redactSpec, specSecrets } from '../../src/protocol/redact.ts'

const SECRET = 'sk-live-7f3a9c1e55d04b2a'
const SHORT_SECRET = 'Z9' // marked secret: redacted whatever its length
const PEER = '12D3KooWPeerA0000000000000000000000000000000000000A'

function record (): JobRecord {
  const spec = parseJobSpec({
    image: 'bidmesh/busybox:latest',
    name: 'deploy',
    command: 'echo deploying',
    env: { API_KEY: SECRET, PIN: SHORT_SECRET, REGION: 'eu-west-1' },
    secretEnv: ['PIN', 'API_KEY', 'API_KEY']
  })
  return {
    id: 'job-secret-1',
    spec,
    owner: PEER,
    publisher: PEER,
    state: 'failed',
    reason: 'error',
    exitCode: null,
    node: PEER,
    epoch: 1,
    term: 0,
    version: 3,
    replicas: [],
    attempts: [{ epoch: 1, node: PEER, state: 'exited', awardedAtMs: 1, startedAtMs: 2, finishedAtMs: 3, exitCode: null, reason: 'error', error: `ContainerStartError: engine said: bad env "API_KEY=${SECRET}" PIN=${SHORT_SECRET}` }],
    createdAtMs: 1_700_000_000_000,
    updatedAtMs: 1_700_000_000_003
  }
}

describe('secretEnv in the job spec', () => {
  it('normalizes to sorted unique names and keeps the values for the container', () => {
    const spec = record().spec
    expect(spec.secretEnv).toEqual(['API_KEY', 'PIN'])
    expect(spec.env.API_KEY).toBe(SECRET)
    expect(specSecrets(spec).sort()).toEqual([SECRET, SHORT_SECRET].sort())
  })

  it('refuses a secret name that is not an env key, naming the field', () => {
    let err: unknown
    try {
      parseJobSpec({ image: 'x', env: { A: 'a' }, secretEnv: ['A', 'TYPO'] })
    } catch (e) { err = e }
    expect(err).toBeInstanceOf(InvalidJobSpecError)
    expect(err).toMatchObject({ name: 'InvalidJobSpecError', code: 'ERR_INVALID_JOB_SPEC', issues: [{ path: 'secretEnv.1' }] })
    expect(() => parseJobSpec({ image: 'x', secretEnv: ['A'] })).toThrow(InvalidJobSpecError)
    expect(() => parseJobSpec({ image: 'x', env: { A: 'a' }, secretEnv: ['not a name'] })).toThrow(InvalidJobSpecError)
  })

  it('is absent when no secret is marked, so older specs encode and sign as before', () => {
    const spec = parseJobSpec({ image: 'x', env: { A: 'a' } })
    expect('secretEnv' in spec).toBe(false)
    expect('secretEnv' in parseJobSpec({ image: 'x', env: { A: 'a' }, secretEnv: [] })).toBe(false)
  })

  it('travels in bid requests and replication (direct, encrypted) and is signed with the spec', async () => {
    const key = await generateKeyPair('Ed25519')
    const publisher = peerIdFromPrivateKey(key as any).toString()
    const r = record()
    const fields = { id: r.id, spec: r.spec, publisher, createdAtMs: r.createdAtMs, nonce: 'n0nce' }
    const sig = signJob(key as any, fields)
    expect(verifyJob(fields, sig)).toBe(true)
    // Unmarking a secret changes what was signed: an owner cannot quietly drop the marking.
    expect(verifyJob({ ...fields, spec: { ...r.spec, secretEnv: ['PIN'] } }, sig)).toBe(false)
    expect(Buffer.from(canonicalJobBytes(fields)).includes(SECRET)).toBe(true)
    const bid = decodeMessage(encodeMessage({ type: MessageType.BidRequest, body: { jobId: r.id, epoch: 1, owner: PEER, spec: r.spec } }), MAX_DIRECT_BYTES)
    expect(bid.ok).toBe(true)
    if (bid.ok && bid.message.type === MessageType.BidRequest) expect(bid.message.body.spec.env.API_KEY).toBe(SECRET)
  })
})

describe('redacted views of a job with secrets', () => {
  const r = record()
  const events = [
    { atMs: 1, type: 'job:submitted' },
    { atMs: 3, type: 'attempt:exited', epoch: 1, node: PEER, detail: `error: could not start with ${SECRET}` }
  ]

  it('status (API, CLI --json, dashboard), CLI text, events, errors and gossip never show a secret', () => {
    const status = toJobStatus({ job: r, events })
    const views: Record<string, string> = {
      'status JSON (GET /v1/jobs/:id, status --json, dashboard)': JSON.stringify(status),
      'CLI status text': formatStatus(status, r.updatedAtMs),
      'CLI jobs text': formatJobs([summarize(r)], r.updatedAtMs),
      'gossiped job summary (JSON)': JSON.stringify(summarize(r)),
      'gossiped job summaries (wire bytes)': Buffer.from(encodeMessage({ type: MessageType.JobSummaries, body: { from: PEER, summaries: [summarize(r)] } })).toString('latin1')
    }
    let checked = 0
    for (const [name, text] of Object.entries(views)) {
      for (const secret of [SECRET, SHORT_SECRET]) {
        expect(text.includes(secret), `${name} contains a secret`).toBe(false)
        checked++
      }
    }
    // The redaction is visible, and nothing else is lost.
    expect(status.spec.env).toEqual({ API_KEY: REDACTED, PIN: REDACTED, REGION: 'eu-west-1' })
    expect(status.spec.secretEnv).toEqual(['API_KEY', 'PIN'])
    expect(status.attempts[0].error).toContain(REDACTED)
    expect(status.events[1].detail).toContain(REDACTED)
    expect(status.events[0]).toEqual(events[0])
    // The record itself is untouched: the executor still gets the values.
    expect(r.spec.env.API_KEY).toBe(SECRET)
    // The summary fits the gossip cap and decodes (it is what agents gossip).
    const wire = encodeMessage({ type: MessageType.JobSummaries, body: { from: PEER, summaries: [summarize(r)] } })
    expect(decodeMessage(wire, MAX_GOSSIP_BYTES).ok).toBe(true)
    console.log(`secret-env views: ${Object.keys(views).length} views × 2 secrets = ${checked} checks, 0 leaks; status env = ${JSON.stringify(status.spec.env)}`)
  })

  it('a spec without secrets is shown as is', () => {
    const plain = parseJobSpec({ image: 'x', env: { A: 'visible' } })
    expect(redactSpec(plain)).toBe(plain)
    expect(toJobStatus({ job: { ...r, spec: plain, attempts: [] }, events }).events[1].detail).toContain(SECRET)
  })
})
