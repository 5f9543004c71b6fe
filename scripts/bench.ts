// `npm run bench -- [--only decision|e2e|footprint] [--quick]`: the real benchmarks (agents as
// separate OS processes on loopback, real libp2p, real SQLite, real Docker). Each benchmark
// prints its figures and one JSON line; the last line of the run is one JSON line with all
// of them. Everything started is stopped and every container/service made is removed, also
// on failure and on Ctrl-C. See docs/benchmarks.md, section "Real benchmarks".
import '../src/polyfill.ts'
import { BIN, agentCode, keepAgentLogs, unexpectedExits } from './bench/agents.ts'
import { cleanup, installSignalHandlers } from './bench/cleanup.ts'
import { runDecision } from './bench/decision.ts'
import { runE2e } from './bench/e2e.ts'
import { runFootprint } from './bench/footprint.ts'
import { heading, jsonLine, loadAverage, machineInfo, round } from './bench/util.ts'

const BENCHMARKS = ['footprint', 'decision', 'e2e'] as const
type Benchmark = typeof BENCHMARKS[number]

const USAGE = `usage: npm run bench -- [--only decision|e2e|footprint[,...]] [--quick]
  --only   run only these benchmarks (comma-separated or repeated); default: all
  --quick  short smoke run (shorter windows, fewer jobs): figures are not comparable to a full run`

function parseArgs (argv: string[]): { only: Benchmark[], quick: boolean } {
  const only = new Set<Benchmark>()
  let quick = false
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--quick') quick = true
    else if (a === '--only' || a.startsWith('--only=')) {
      const v = a === '--only' ? argv[++i] : a.slice('--only='.length)
      for (const name of (v ?? '').split(',').filter(Boolean)) {
        if (!(BENCHMARKS as readonly string[]).includes(name)) { console.error(`unknown benchmark ${name}\n${USAGE}`); process.exit(2) }
        only.add(name as Benchmark)
      }
    } else if (a === '-h' || a === '--help') { console.log(USAGE); process.exit(0) } else { console.error(`unknown argument ${a}\n${USAGE}`); process.exit(2) }
  }
  return { only: only.size > 0 ? BENCHMARKS.filter(b => only.has(b)) : [...BENCHMARKS], quick }
}

async function main (): Promise<void> {
  const { only, quick } = parseArgs(process.argv.slice(2))
  installSignalHandlers()
  const machine = machineInfo()
  heading(`bidmesh real benchmarks${quick ? ' (QUICK smoke run: shortened, not comparable)' : ''}: ${only.join(', ')}`)
  console.log(`   machine: ${machine.nproc} cores, ${machine.memoryTotalGiB} GiB, kernel ${machine.kernel}, docker ${machine.dockerServer} (client ${machine.dockerClient}), node ${machine.node}`)
  const code = agentCode()
  console.log(`   agents: ${BIN} running its ${code === 'bundle' ? 'bundle (dist/)' : 'TypeScript sources: dist/ is older than src/, run `npm run build`; figures are NOT comparable'}`)
  console.log(`   load average at start: ${machine.loadAvgAtStart.join(' ')}${Number(machine.loadAvgAtStart[0]) > Number(machine.nproc) * 0.5 ? '  ← the machine is busy: figures will be noisy' : ''}`)
  const started = performance.now()
  const results: Record<string, unknown> = {}
  const errors: Record<string, string> = {}
  for (const b of only) {
    const t0 = performance.now()
    try {
      if (b === 'footprint') results.footprint = await runFootprint({ quick })
      else if (b === 'decision') results.decision = await runDecision({ quick })
      else results.e2e = await runE2e({ quick })
    } catch (err) {
      errors[b] = String((err as Error)?.stack ?? err)
      keepAgentLogs()
      console.error(`\n!! ${b} failed: ${errors[b]}`)
    }
    console.log(`   (${b} took ${round((performance.now() - t0) / 1000, 1)} s)`)
  }
  await cleanup.run()
  const durationSec = round((performance.now() - started) / 1000, 1)
  console.log(`\nall done in ${durationSec} s`)
  if (agentCode() !== code) console.log('!! src/ changed during the run: agents started after that ran the TypeScript sources; figures are suspect')
  if (unexpectedExits.length > 0) console.log(`!! ${unexpectedExits.length} agent(s) died during the run; their figures are suspect:\n   ${unexpectedExits.join('\n   ')}`)
  console.log(jsonLine({ bench: 'bidmesh', quick, machine: { ...machine, loadAvgAtEnd: loadAverage() }, agentCode: code, durationSec, ...results, ...(unexpectedExits.length > 0 ? { unexpectedAgentExits: unexpectedExits } : {}), ...(Object.keys(errors).length > 0 ? { errors } : {}) }))
  process.exit(Object.keys(errors).length > 0 ? 1 : 0)
}

main().catch(async err => {
  console.error(err)
  await cleanup.run()
  process.exit(1)
})
