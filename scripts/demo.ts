// The local multi-agent demo: three agents on loopback, sample jobs published from different
// agents, live progress, and the results. Run with `npm run demo`.
import '../src/polyfill.ts'
import { type AgentProcess, TEST_IMAGE, api, startAgentProcess, stopAgentProcess, waitFor } from '../test/support/cluster.ts'

const short = (id: string | null | undefined): string => id == null ? '-' : id.slice(-8)
const TERMINAL = new Set(['succeeded', 'failed', 'cancelled'])

function table (rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map(r => r[i].length)))
  return rows.map(r => r.map((c, i) => c.padEnd(widths[i])).join('  ')).join('\n')
}

async function main (): Promise<void> {
  const agents: AgentProcess[] = []
  const stopAll = async (): Promise<void> => { await Promise.all(agents.map(async a => await stopAgentProcess(a, 'SIGTERM', { removeData: true }))) }
  process.once('SIGINT', () => { void stopAll().then(() => process.exit(130)) })
  try {
    console.log('== starting three agents on loopback')
    const alpha = await startAgentProcess({ name: 'alpha', cpus: 1, memory: '1g', labels: { zone: 'eu' }, env: { BIDMESH_LOG_LEVEL: 'warn' } })
    agents.push(alpha)
    agents.push(...await Promise.all([
      startAgentProcess({ name: 'beta', cpus: 1, memory: '1g', labels: { zone: 'us' }, bootstrap: alpha.addrs, env: { BIDMESH_LOG_LEVEL: 'warn' } }),
      startAgentProcess({ name: 'gamma', cpus: 2, memory: '2g', labels: { zone: 'us', disk: 'ssd' }, bootstrap: alpha.addrs, env: { BIDMESH_LOG_LEVEL: 'warn' } })
    ]))
    const byPeer = new Map(agents.map(a => [a.peerId, a.name]))
    for (const a of agents) console.log(`   ${a.name.padEnd(6)} ${a.addrs[0]}  api ${a.api}`)
    await waitFor('the mesh to form', async () => {
      for (const a of agents) {
        const r = await api(a.api, '/v1/nodes')
        if (r.body.nodes.filter((n: any) => n.liveness === 'alive').length < 3) return undefined
      }
      return true
    }, 30_000)
    const nodes = (await api(alpha.api, '/v1/nodes')).body.nodes
    console.log('\n== the mesh, as alpha sees it (capacity gossip)')
    console.log(table([['node', 'peer', 'cpu free/total', 'memory free/total', 'labels', 'liveness'],
      ...nodes.map((n: any) => [byPeer.get(n.peerId) ?? '?', short(n.peerId), `${n.freeCpuMilli / 1000}/${n.totalCpuMilli / 1000}`,
        `${Math.round(n.freeMemoryBytes / 2 ** 20)}Mi/${Math.round(n.totalMemoryBytes / 2 ** 20)}Mi`, Object.entries(n.labels).map(([k, v]) => `${k}=${v}`).join(','), n.liveness])]))

    const samples: Array<{ label: string, via: AgentProcess, spec: any }> = [
      { label: 'hello from alpha', via: agents[0], spec: { image: TEST_IMAGE, name: 'hello', command: 'echo "hello from a container on $(hostname)"; sleep 1' } },
      { label: 'hello from beta', via: agents[1], spec: { image: TEST_IMAGE, name: 'hello', command: 'echo "hello again"; sleep 1' } },
      { label: 'count primes (gamma)', via: agents[2], spec: { image: TEST_IMAGE, name: 'primes', command: 'n=0; for i in $(seq 2 400); do p=1; for d in $(seq 2 $((i/2))); do [ $((i%d)) -eq 0 ] && p=0 && break; done; n=$((n+p)); done; echo "primes below 400: $n"', resources: { cpus: 1 } } },
      { label: 'needs an ssd', via: agents[0], spec: { image: TEST_IMAGE, name: 'ssd-only', command: 'echo on the ssd node', constraints: { disk: 'ssd' } } },
      { label: 'memory hog (oom)', via: agents[1], spec: { image: TEST_IMAGE, name: 'hog', command: 'x=a; while true; do x=$x$x; done', resources: { memory: '16m' } } },
      { label: 'too big for any node', via: agents[2], spec: { image: TEST_IMAGE, name: 'huge', command: 'true', resources: { memory: '100g' } } },
      { label: 'fails, retried once', via: agents[0], spec: { image: TEST_IMAGE, name: 'flaky', command: 'echo trying; exit 7', retries: 1 } }
    ]
    console.log('\n== publishing sample jobs from different agents')
    const jobs: Array<{ label: string, id: string, via: string }> = []
    for (const s of samples) {
      const r = await api(s.via.api, '/v1/jobs', { method: 'POST', body: s.spec })
      if (r.status !== 201) throw new Error(`submit failed: ${JSON.stringify(r.body)}`)
      jobs.push({ label: s.label, id: r.body.id, via: s.via.name })
      console.log(`   ${r.body.id}  ${s.label.padEnd(22)} published via ${s.via.name}`)
    }

    console.log('\n== progress (read from beta, whichever agent owns the job)')
    const last = new Map<string, string>()
    const deadline = Date.now() + 60_000
    while (Date.now() < deadline) {
      let open = 0
      for (const j of jobs) {
        const s = (await api(agents[1].api, `/v1/jobs/${j.id}`)).body
        const line = s.state === 'pending' && s.explanation !== null && s.reason === 'unplaceable'
          ? `pending: ${Object.entries(s.explanation.filtered).map(([k, v]) => `${k}: ${String(v)} nodes`).join(', ')}`
          : `${s.state}${s.node !== null ? ` on ${byPeer.get(s.node) ?? short(s.node)}` : ''}${s.reason !== null && s.state !== 'pending' ? ` (${s.reason}${s.exitCode !== null ? ` ${String(s.exitCode)}` : ''})` : ''}`
        if (last.get(j.id) !== line) { last.set(j.id, line); console.log(`   ${j.label.padEnd(22)} ${line}`) }
        if (!TERMINAL.has(s.state) && !(s.state === 'pending' && s.reason === 'unplaceable' && j.label.startsWith('too big'))) open++
      }
      if (open === 0) break
      await new Promise(r => setTimeout(r, 200))
    }
    const huge = jobs.find(j => j.label.startsWith('too big'))!
    await api(agents[0].api, `/v1/jobs/${huge.id}`, { method: 'DELETE' })

    console.log('\n== results')
    const rows = [['job', 'name', 'state', 'reason', 'exit', 'ran on', 'attempts', 'owner']]
    for (const j of jobs) {
      const s = (await api(agents[2].api, `/v1/jobs/${j.id}`)).body
      rows.push([j.id, s.name ?? '-', s.state, s.reason ?? '-', String(s.exitCode ?? '-'), byPeer.get(s.node) ?? '-', String(Array.isArray(s.attempts) ? s.attempts.length : s.attempts), byPeer.get(s.owner) ?? '?'])
    }
    console.log(table(rows))
    for (const j of jobs.slice(0, 4)) {
      const logs = await api(agents[2].api, `/v1/jobs/${j.id}/logs`)
      console.log(`\n-- output of ${j.label} (read via gamma):\n${String(logs.body).trimEnd()}`)
    }
    console.log('\n== try it yourself while agents run: bidmesh run, status, logs, nodes (see README)')
  } finally {
    console.log('\n== stopping agents')
    await stopAll()
  }
}

main().catch(err => { console.error(err); process.exit(1) })
