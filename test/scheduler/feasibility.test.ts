// Feasibility checks: each one on its own, then the order placement.ts runs them in, which
// decides the reason a node is filtered for when several checks would reject it.
import { describe, expect, it } from 'vitest'
import type { NodeCapacity } from '../../src/protocol/job.ts'
import { type Check, type NodeSnapshot, NETWORK_LABEL, Reason, allowsNetwork, fitsCpu, fitsMemory, fitsTotalCpu, fitsTotalMemory, isAlive, matchesLabels, notDraining } from '../../src/scheduler/feasibility.ts'
import { CHECKS, rankNodes } from '../../src/scheduler/placement.ts'
import { GiB, MiB, capacity, spec } from './harness.ts'

/** A node of 4 cores and 8 GiB, all free unless told otherwise. */
function node (over: { capacity?: Partial<NodeCapacity>, freeCpuMilli?: number, freeMemoryBytes?: number, liveness?: NodeSnapshot['liveness'] } = {}): NodeSnapshot {
  const c = capacity('n1', { totalCpuMilli: 4000, totalMemoryBytes: 8 * GiB, ...over.capacity })
  return { capacity: c, freeCpuMilli: over.freeCpuMilli ?? c.freeCpuMilli, freeMemoryBytes: over.freeMemoryBytes ?? c.freeMemoryBytes, liveness: over.liveness ?? 'alive' }
}

describe('each check', () => {
  const job = spec({ cpuMilli: 1000, memoryBytes: 1 * GiB, constraints: { zone: 'a' } })
  const cases: Array<{ name: string, check: Check, pass: NodeSnapshot, fail: NodeSnapshot, reason: string }> = [
    { name: 'notDraining', check: notDraining, pass: node(), fail: node({ capacity: { draining: true } }), reason: 'draining' },
    { name: 'isAlive (suspect)', check: isAlive, pass: node(), fail: node({ liveness: 'suspect' }), reason: 'not alive' },
    { name: 'isAlive (gone)', check: isAlive, pass: node(), fail: node({ liveness: 'gone' }), reason: 'not alive' },
    { name: 'matchesLabels (wrong value)', check: matchesLabels, pass: node({ capacity: { labels: { zone: 'a', gpu: 'yes' } } }), fail: node({ capacity: { labels: { zone: 'b' } } }), reason: 'label zone=a' },
    { name: 'matchesLabels (missing key)', check: matchesLabels, pass: node({ capacity: { labels: { zone: 'a' } } }), fail: node({ capacity: { labels: {} } }), reason: 'label zone=a' },
    { name: 'fitsTotalMemory', check: fitsTotalMemory, pass: node({ capacity: { totalMemoryBytes: 1 * GiB } }), fail: node({ capacity: { totalMemoryBytes: 1 * GiB - 1 } }), reason: 'memory (larger than node)' },
    { name: 'fitsTotalCpu', check: fitsTotalCpu, pass: node({ capacity: { totalCpuMilli: 1000 } }), fail: node({ capacity: { totalCpuMilli: 999 } }), reason: 'cpu (larger than node)' },
    { name: 'fitsMemory', check: fitsMemory, pass: node({ freeMemoryBytes: 1 * GiB }), fail: node({ freeMemoryBytes: 1 * GiB - 1 }), reason: 'memory' },
    { name: 'fitsCpu', check: fitsCpu, pass: node({ freeCpuMilli: 1000 }), fail: node({ freeCpuMilli: 999 }), reason: 'cpu' }
  ]
  it.each(cases)('$name: passes at the boundary, fails past it with "$reason"', ({ check, pass, fail, reason }) => {
    expect(check(pass, job)).toBeUndefined()
    expect(check(fail, job)).toBe(reason)
  })

  it('a job without constraints matches any labels', () => {
    expect(matchesLabels(node({ capacity: { labels: { zone: 'b' } } }), spec())).toBeUndefined()
  })

  it('fits by free capacity, not by the advert: claims subtracted by the caller count', () => {
    const n = node({ freeCpuMilli: 500 }) // the advert says 4000 free, open claims took the rest
    expect(n.capacity.freeCpuMilli).toBe(4000)
    expect(fitsCpu(n, spec({ cpuMilli: 1000 }))).toBe('cpu')
  })

  it('the reason names are the documented ones', () => {
    expect(Reason).toEqual({
      Draining: 'draining',
      NotAlive: 'not alive',
      MemoryTotal: 'memory (larger than node)',
      CpuTotal: 'cpu (larger than node)',
      Memory: 'memory',
      Cpu: 'cpu'
    })
  })
})

describe('check order (placement.ts CHECKS)', () => {
  it('is draining, liveness, labels, network, total memory, total cpu, free memory, free cpu', () => {
    expect(CHECKS).toEqual([notDraining, isAlive, matchesLabels, allowsNetwork, fitsTotalMemory, fitsTotalCpu, fitsMemory, fitsCpu])
  })

  it('offers a bridge-network job only to nodes that allow networking', () => {
    const bridge = spec({ network: 'bridge' })
    expect(allowsNetwork(node({}), bridge)).toBe('network bridge not allowed')
    expect(allowsNetwork(node({ capacity: { labels: { [NETWORK_LABEL]: 'bridge' } } }), bridge)).toBeUndefined()
    expect(allowsNetwork(node({}), spec({}))).toBeUndefined()
  })

  // Each row fails its own check and every check after it: the first in order names the reason.
  const job = spec({ cpuMilli: 2000, memoryBytes: 4 * GiB, constraints: { zone: 'a' } })
  const tooSmall = { totalCpuMilli: 1000, totalMemoryBytes: 2 * GiB, labels: { zone: 'b' } }
  const rows: Array<{ reason: string, snap: NodeSnapshot }> = [
    { reason: 'draining', snap: node({ capacity: { ...tooSmall, draining: true }, liveness: 'gone', freeCpuMilli: 0, freeMemoryBytes: 0 }) },
    { reason: 'not alive', snap: node({ capacity: tooSmall, liveness: 'suspect', freeCpuMilli: 0, freeMemoryBytes: 0 }) },
    { reason: 'label zone=a', snap: node({ capacity: tooSmall, freeCpuMilli: 0, freeMemoryBytes: 0 }) },
    { reason: 'memory (larger than node)', snap: node({ capacity: { ...tooSmall, labels: { zone: 'a' } }, freeCpuMilli: 0, freeMemoryBytes: 0 }) },
    { reason: 'cpu (larger than node)', snap: node({ capacity: { totalCpuMilli: 1000, totalMemoryBytes: 8 * GiB, labels: { zone: 'a' } }, freeCpuMilli: 0, freeMemoryBytes: 0 }) },
    { reason: 'memory', snap: node({ capacity: { labels: { zone: 'a' } }, freeCpuMilli: 0, freeMemoryBytes: 4 * GiB - 1 }) },
    { reason: 'cpu', snap: node({ capacity: { labels: { zone: 'a' } }, freeCpuMilli: 1999, freeMemoryBytes: 4 * GiB }) }
  ]
  it.each(rows)('a node failing "$reason" and everything after it is filtered for "$reason"', ({ reason, snap }) => {
    const r = rankNodes('job-1', job, [snap])
    expect(r.filtered).toEqual({ [reason]: 1 })
    expect(r.ranked).toEqual([])
  })

  it('a node that passes every check is ranked', () => {
    const r = rankNodes('job-1', job, [node({ capacity: { labels: { zone: 'a' } } })])
    expect(r.filtered).toEqual({})
    expect(r.ranked.map(s => s.node)).toEqual(['n1'])
  })

  it('a full node is "memory", a node too small for the job is "larger than node"', () => {
    const big = spec({ memoryBytes: 16 * GiB })
    const full = node({ freeMemoryBytes: 100 * MiB })
    expect(rankNodes('j', spec(), [full]).filtered).toEqual({ memory: 1 })
    expect(rankNodes('j', big, [full]).filtered).toEqual({ 'memory (larger than node)': 1 })
  })
})
