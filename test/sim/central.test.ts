// The central best-fit baseline on a workload small enough to check by hand.
import { describe, expect, it } from 'vitest'
import { centralBestFit } from '../../src/sim/central.ts'
import type { NodeSpec, SimJob, Workload } from '../../src/sim/workload.ts'

const GiB = 1024 ** 3

function job (id: string, arrivalS: number, cores: number, durationS: number, constraints: Record<string, string> = {}): SimJob {
  return { id, arrivalMs: arrivalS * 1000, durationMs: durationS * 1000, cpuMilli: cores * 1000, memoryBytes: 1 * GiB, constraints }
}

function workload (nodes: NodeSpec[], jobs: SimJob[], extra: Partial<Workload> = {}): Workload {
  return { name: 'hand', description: 'hand-checked', nodes, initiallyUp: nodes.map(() => true), jobs, nodeEvents: [], ...extra }
}

describe('central best-fit baseline', () => {
  // Node 0 (A): 4 cores; node 1 (B): 2 cores; both 8 GiB.
  //   j0 t=0  2 cores 10 s → B (fuller after placing: 2/2 + 1/8 > 2/4 + 1/8)
  //   j1 t=0  2 cores 10 s → A (B is full)
  //   j2 t=1  2 cores  5 s → A (fills it), ends at 6
  //   j3 t=2  1 core   5 s → fits nowhere; waits; placed on A at 6 when j2 ends, ends at 11
  // Makespan 11 s; busy 2·10 + 2·10 + 2·5 + 1·5 = 55 core·s of 6 cores × 11 s.
  const nodes: NodeSpec[] = [
    { cpuMilli: 4000, memoryBytes: 8 * GiB, labels: { zone: 'a' } },
    { cpuMilli: 2000, memoryBytes: 8 * GiB, labels: { zone: 'b' } }
  ]
  const jobs = [job('j0', 0, 2, 10), job('j1', 0, 2, 10), job('j2', 1, 2, 5), job('j3', 2, 1, 5)]

  it('places each job on the fullest feasible node and queues what fits nowhere', () => {
    const starts: Array<[string, number, number]> = []
    const r = centralBestFit(workload(nodes, jobs), { onStart: (j, n, at) => starts.push([jobs[j].id, n, at]) })
    expect(starts).toEqual([['j0', 1, 0], ['j1', 0, 0], ['j2', 0, 1000], ['j3', 0, 6000]])
    expect(r.makespanMs).toBe(11_000)
    expect(r.utilization).toBeCloseTo(55 / 66, 6)
    expect(r.unplaceable).toBe(0)
  })

  it('honours label constraints and leaves out jobs no node can ever take', () => {
    const constrained = [job('a', 0, 1, 4, { zone: 'b' }), job('b', 0, 1, 4, { zone: 'b' }), job('c', 0, 1, 4, { zone: 'b' }), job('never', 0, 1, 1, { zone: 'c' })]
    const starts: Array<[string, number, number]> = []
    const r = centralBestFit(workload(nodes, constrained), { onStart: (j, n, at) => starts.push([constrained[j].id, n, at]) })
    // zone=b is node 1 only (2 cores): a and b at once, c when the first of them ends
    expect(starts).toEqual([['a', 1, 0], ['b', 1, 0], ['c', 1, 4000]])
    expect(r.unplaceable).toBe(1)
    expect(r.makespanMs).toBe(8000)
  })

  it('re-runs the work of a killed node at once, and uses a node that joins', () => {
    const w = workload(nodes, [job('x', 0, 2, 10), job('y', 0, 2, 10), job('z', 0, 4, 2)], {
      initiallyUp: [true, true],
      nodeEvents: [{ atMs: 3000, kind: 'kill', node: 1 }, { atMs: 5000, kind: 'restart', node: 1 }]
    })
    const starts: Array<[string, number, number]> = []
    const r = centralBestFit(w, { onStart: (j, n, at) => starts.push([w.jobs[j].id, n, at]) })
    // x → B, y → A, z (4 cores) fits nowhere and waits. B dies at 3 s: x starts again at once
    // on A (2 cores free). B comes back at 5 s but z needs 4 cores; y ends at 10 s (A has 2
    // free), x at 13 s: then z runs on A, 13 → 15 s.
    expect(starts).toEqual([['x', 1, 0], ['y', 0, 0], ['x', 0, 3000], ['z', 0, 13_000]])
    expect(r.restarts).toBe(1)
    expect(r.makespanMs).toBe(15_000)
  })
})
