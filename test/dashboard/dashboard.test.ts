// The web dashboard in headless Chromium (Debian's package, driven by playwright-core).
// First against two real agent processes running real containers, the way a user meets it;
// then against the fake agent for what a real mesh cannot script (a token, a running job
// whose output arrives while the page watches).
import { existsSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { type Browser, type Page, chromium } from 'playwright-core'
import type { FastifyInstance } from 'fastify'
import { createApiServer } from '../../src/api/server.ts'
import { type AgentProcess, TEST_IMAGE, api, startAgentProcess, stopAgentProcess, waitFor } from '../support/cluster.ts'
import { requireDocker } from '../support/docker.ts'
import { FakeAgent, FAKE_PEER, OTHER_PEER } from '../fakes/fake-agent.ts'

const CHROMIUM = process.env.BIDMESH_CHROMIUM ?? '/usr/bin/chromium'
// No sandbox: tests run as root in a container. The rest keeps Chromium from calling out:
// the network is closed, and a browser waiting on it only slows the test down.
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-background-networking', '--disable-gpu', '--disable-component-update', '--disable-sync', '--no-first-run']
const RESULTS = resolve(import.meta.dirname, '../../test-results')
const VIEWPORT = { width: 1440, height: 1000 }

/** Never skips: a missing browser fails the suite with what to do about it, in CI and out. */
async function launchChromium (): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`Chromium not found at ${CHROMIUM}${process.env.CI === 'true' ? ' (CI)' : ''}. Run 'bash scripts/setup.sh' (installs Debian's chromium) or set BIDMESH_CHROMIUM.`)
  }
  return await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS })
}

/** A page that records script errors, so a test can insist there were none. */
async function openPage (browser: Browser, url: string): Promise<{ page: Page, errors: string[] }> {
  const page = await browser.newPage({ viewport: VIEWPORT })
  const errors: string[] = []
  page.on('pageerror', err => errors.push(String(err)))
  await page.goto(url)
  return { page, errors }
}

/** expect.poll with room for the page's one-second polling (its default timeout is 1 s). */
function poll<T> (fn: () => Promise<T>, timeout = 15_000): ReturnType<typeof expect.poll<T>> {
  return expect.poll(fn, { timeout, interval: 50 })
}

const byTestId = (id: string): string => `[data-testid="${id}"]`
const jobRow = (id: string, state?: string): string => `[data-testid="job-row"][data-job-id="${id}"]${state !== undefined ? `[data-state="${state}"]` : ''}`

describe('dashboard on a real two-agent mesh', () => {
  const agents: AgentProcess[] = []
  let a: AgentProcess
  let b: AgentProcess
  let browser: Browser | undefined

  beforeAll(async () => {
    browser = await launchChromium()
    await requireDocker()
    a = await startAgentProcess({ name: 'dash-a', cpus: 1, memory: '1g', labels: { zone: 'a' } })
    agents.push(a)
    b = await startAgentProcess({ name: 'dash-b', cpus: 1, memory: '1g', labels: { zone: 'b' }, bootstrap: a.addrs })
    agents.push(b)
    await waitFor('both agents to see each other alive', async () => {
      const views = await Promise.all([a, b].map(async x => (await api(x.api, '/v1/nodes')).body.nodes))
      return views.every(nodes => nodes.filter((n: { liveness: string }) => n.liveness === 'alive').length === 2) ? true : undefined
    }, 30_000)
  }, 120_000)

  afterAll(async () => {
    await browser?.close()
    await Promise.all(agents.map(async x => await stopAgentProcess(x, 'SIGTERM', { removeData: true })))
  })

  it('lists both nodes, runs a job submitted on the page, and shows its output and placement', async () => {
    const { page, errors } = await openPage(browser!, `${a.api}/`)

    // The mesh: both agents, alive, with capacity bars.
    await poll(async () => await page.locator(`${byTestId('node')}[data-liveness="alive"]`).count()).toBe(2)
    const peers = await page.locator(byTestId('node')).evaluateAll(els => els.map(e => e.getAttribute('data-peer-id')))
    expect(peers.sort()).toEqual([a.peerId, b.peerId].sort())
    expect(await page.locator(byTestId('capacity-cpu')).count()).toBe(2)
    expect(await page.locator(byTestId('capacity-memory')).first().textContent()).toMatch(/used .* free of 1\.0 GiB/)

    // Submit through the paste box.
    await page.fill(byTestId('spec-input'), `name: dashboard-hello\nimage: ${TEST_IMAGE}\ncommand: echo hello-from-dashboard\nresources:\n  memory: 64m\n`)
    await page.click(byTestId('submit-job'))
    const ok = page.locator(byTestId('submit-ok'))
    await ok.waitFor({ timeout: 15_000 })
    const id = (await ok.getAttribute('data-job-id'))!
    expect(id).toMatch(/^[0-9a-z]{16}$/)

    // It reaches succeeded in the list, without a reload.
    await page.locator(jobRow(id, 'succeeded')).waitFor({ timeout: 45_000 })
    const job = (await api(a.api, `/v1/jobs/${id}`)).body
    expect(job).toMatchObject({ state: 'succeeded', exitCode: 0 })

    // Filters and search narrow the list.
    await page.click(byTestId('filter-failed'))
    await poll(async () => await page.locator(jobRow(id)).count()).toBe(0)
    await page.click(byTestId('filter-succeeded'))
    await page.locator(jobRow(id)).waitFor()
    await page.click(byTestId('filter-all'))
    await page.fill(byTestId('job-search'), 'no-such-job')
    await poll(async () => await page.locator(jobRow(id)).count()).toBe(0)
    await page.fill(byTestId('job-search'), id.slice(0, 6))
    await page.locator(jobRow(id)).waitFor()
    await page.fill(byTestId('job-search'), '')

    // Open its detail from the list.
    await page.click(byTestId('close-detail'))
    await page.locator(byTestId('job-detail')).waitFor({ state: 'hidden' })
    await page.click(jobRow(id))
    const detail = page.locator(byTestId('job-detail'))
    await detail.waitFor()
    await poll(async () => await page.locator(byTestId('logs')).textContent()).toContain('hello-from-dashboard')
    await poll(async () => await page.locator(byTestId('log-status')).textContent()).toBe('ended')
    await poll(async () => await page.locator(byTestId('detail-id')).textContent()).toBe(id)

    // The placement explanation: nodes considered, scores, and the winner where it ran.
    const explanation = page.locator(byTestId('explanation'))
    await poll(async () => await explanation.locator(byTestId('explanation-considered')).textContent()).toBe('2 nodes')
    expect(await explanation.locator(byTestId('explanation-winner')).textContent()).toBe(job.node.slice(-8))
    // Awarded from the owner's view (fresh adverts), or after a bid round (a decline first).
    expect(await explanation.locator(byTestId('explanation-asked')).textContent())
      .toBe(job.explanation.decidedFrom === 'view' ? 'none: from the view' : `${job.explanation.candidates.length} node${job.explanation.candidates.length === 1 ? '' : 's'}`)
    expect(await explanation.locator(`${byTestId('explanation-scores')} tbody tr`).count()).toBeGreaterThanOrEqual(1)
    expect(await explanation.locator(byTestId('explanation-winner-row')).textContent()).toContain('winner')

    // Attempts and events.
    // One attempt, unless a loaded machine made an award time out and the job run again.
    const attempts = page.locator(byTestId('attempt-row'))
    expect(await attempts.count()).toBe(job.attempts.length)
    expect(await attempts.last().textContent()).toContain('exit 0')
    expect(await page.locator(byTestId('events')).textContent()).toMatch(/submitted/)

    await mkdir(RESULTS, { recursive: true })
    await page.screenshot({ path: join(RESULTS, 'dashboard.png'), fullPage: true })
    expect(errors).toEqual([])
    await page.close()
  }, 120_000)

  it('shows the agent\'s field errors for an invalid spec, and submits nothing', async () => {
    const { page, errors } = await openPage(browser!, `${b.api}/`)
    await page.locator(byTestId('node')).first().waitFor({ timeout: 15_000 })
    const before = (await api(b.api, '/v1/jobs')).body.jobs.length
    await page.fill(byTestId('spec-input'), `image: ${TEST_IMAGE}\nresources:\n  memory: lots\nretries: -1\n`)
    await page.click(byTestId('submit-job'))
    const issues = page.locator(byTestId('spec-issue'))
    await issues.first().waitFor({ timeout: 10_000 })
    expect(await page.locator(byTestId('spec-errors')).getAttribute('data-code')).toBe('ERR_INVALID_JOB_SPEC')
    const memory = page.locator(`${byTestId('spec-issue')}[data-path="resources.memory"]`)
    expect(await memory.textContent()).toContain('must be a size')
    expect(await page.locator(`${byTestId('spec-issue')}[data-path="retries"]`).count()).toBe(1)
    expect(await page.locator(byTestId('spec-input')).getAttribute('aria-invalid')).toBe('true')
    await mkdir(RESULTS, { recursive: true })
    await page.screenshot({ path: join(RESULTS, 'dashboard-invalid-spec.png'), fullPage: true })

    // Malformed YAML is a parse error, not a field error.
    await page.fill(byTestId('spec-input'), 'image: [unclosed\n  - : :')
    await page.click(byTestId('submit-job'))
    await poll(async () => await page.locator(byTestId('spec-errors')).getAttribute('data-code')).toBe('ERR_MALFORMED_BODY')

    expect((await api(b.api, '/v1/jobs')).body.jobs.length).toBe(before)
    expect(errors).toEqual([])
    await page.close()
  }, 60_000)
})

describe('dashboard against the fake agent', () => {
  let browser: Browser | undefined
  let agent: FakeAgent
  let app: FastifyInstance | undefined

  beforeAll(async () => { browser = await launchChromium() }, 60_000)
  afterAll(async () => { await browser?.close() })
  beforeEach(() => { agent = new FakeAgent() })
  afterEach(async () => { await app?.close() })

  async function serve (token?: string): Promise<string> {
    app = createApiServer({ agent, closeGraceMs: 100, ...(token !== undefined ? { token } : {}) })
    await app.listen({ host: '127.0.0.1', port: 0 })
    const { port } = app.server.address() as { port: number }
    return `http://127.0.0.1:${port}`
  }

  it('asks for the token once, retries with it, and keeps it for the tab', async () => {
    const base = await serve('dash-secret')
    const { page, errors } = await openPage(browser!, `${base}/`)
    const dialog = page.locator(byTestId('token-dialog'))
    await dialog.waitFor()
    expect(await page.locator(byTestId('token-error')).isVisible()).toBe(false)

    await page.fill(byTestId('token-input'), 'wrong')
    await page.click(byTestId('token-submit'))
    await page.locator(byTestId('token-error')).waitFor()

    await page.fill(byTestId('token-input'), 'dash-secret')
    await page.click(byTestId('token-submit'))
    await dialog.waitFor({ state: 'hidden' })
    await poll(async () => await page.locator(byTestId('node')).count()).toBe(2)
    expect(await page.evaluate(() => sessionStorage.getItem('bidmesh.token'))).toBe('dash-secret')

    await page.reload()
    await poll(async () => await page.locator(byTestId('node')).count()).toBe(2)
    expect(await dialog.isVisible()).toBe(false)
    expect(errors).toEqual([])
    await page.close()
  }, 60_000)

  it('updates jobs, nodes and output live, without reloads', async () => {
    const base = await serve()
    agent.addJob('live0000job00001', { image: 'busybox', name: 'streamer' })
    agent.start('live0000job00001', OTHER_PEER)
    const { page, errors } = await openPage(browser!, `${base}/#job=live0000job00001`)
    await page.locator(byTestId('job-detail')).waitFor()
    await poll(async () => await page.locator(byTestId('log-status')).textContent()).toBe('live')

    // Output written after the page opened arrives over the followed stream.
    agent.appendLog('live0000job00001', 'stdout', 'first line\n')
    await poll(async () => await page.locator(byTestId('logs')).textContent()).toContain('first line')
    agent.appendLog('live0000job00001', 'stderr', 'a warning\n')
    await poll(async () => await page.locator(`${byTestId('logs')} .log-err`).textContent()).toBe('a warning\n')
    agent.finish('live0000job00001', { state: 'failed', reason: 'exit', exitCode: 3 })
    await page.locator(jobRow('live0000job00001', 'failed')).waitFor()
    await poll(async () => await page.locator(byTestId('log-status')).textContent()).toBe('ended')
    await poll(async () => await page.locator(byTestId('detail-title')).textContent()).toContain('exit 3')

    // A new job and a node going away show up by themselves.
    agent.addJob('live0000job00002', { image: 'alpine:3' })
    await page.locator(jobRow('live0000job00002', 'pending')).waitFor()
    agent.nodeViews[1].liveness = 'gone'
    await page.locator(`${byTestId('node')}[data-peer-id="${OTHER_PEER}"][data-liveness="gone"]`).waitFor()
    expect(await page.locator(`${byTestId('node')}[data-peer-id="${FAKE_PEER}"]`).textContent()).toContain('this agent')

    // The filter counts follow the list.
    expect(await page.locator(`${byTestId('filter-failed')} .count`).textContent()).toBe('1')
    expect(await page.locator(`${byTestId('filter-pending')} .count`).textContent()).toBe('1')
    expect(errors).toEqual([])
    await page.close()
  }, 60_000)

  it('shows a dry run\'s explanation, and a job no node can ever fit', async () => {
    const base = await serve()
    agent.addJob('huge000000000001', { image: 'busybox', resources: { memory: '64g' } })
    agent.unplaceable('huge000000000001', { 'memory (larger than node)': 5 })
    const { page, errors } = await openPage(browser!, `${base}/`)
    await page.click(byTestId('plan-job'))
    const plan = page.locator(byTestId('plan-result'))
    await plan.waitFor()
    expect(await plan.locator(byTestId('explanation-filtered')).textContent()).toBe('memory: 1 node')
    expect(await plan.locator(byTestId('explanation-winner')).textContent()).toBe(FAKE_PEER.slice(-8))
    expect(agent.jobs.size).toBe(1)

    await page.click(jobRow('huge000000000001'))
    const never = page.locator(`${byTestId('explanation')} ${byTestId('explanation-never')}`)
    await never.waitFor()
    expect(await page.locator(`${byTestId('explanation')} ${byTestId('filter-reason')}`).textContent()).toBe('memory (larger than node): 5 nodes')
    expect(errors).toEqual([])
    await page.close()
  }, 60_000)
})
