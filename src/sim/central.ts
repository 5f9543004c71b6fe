// The baseline: one central scheduler with perfect, instant global state, on the same
// workload (same nodes, arrivals, durations, resources, constraints and node events).
// Best fit: a job goes to the feasible node that is fullest after placing it (the same
// binpack score the agents use: mean of CPU and memory utilization); no network, no bid
// round, no stale views. Jobs that fit nowhere wait in arrival order and are placed as soon
// as a node frees room (earliest waiting job first, skipping those that still do not fit).
//
// Cost: a placement on arrival scans all nodes. A waiting job fits nowhere, so when node n
// frees room only n can take waiting jobs: the scan of the waiting list is for n alone and
// stops once n has less room than the smallest job.
import { Engine } from './engine.ts'
import type { Workload } from './workload.ts'

export interface CentralResult {
  makespanMs: number
  /** CPU·time of all runs / CPU·time of the nodes that were up during the makespan */
  utilization: number
  /** jobs larger than every node that could ever be up: never run, excluded from the makespan */
  unplaceable: number
  /** jobs restarted because their node was killed */
  restarts: number
}

export function centralBestFit (w: Workload, options: { onStart?: (jobIndex: number, node: number, atMs: number) => void } = {}): CentralResult {
  const N = w.nodes.length
  const J = w.jobs.length
  const engine = new Engine()
  const totC = Float64Array.from(w.nodes, n => n.cpuMilli)
  const totM = Float64Array.from(w.nodes, n => n.memoryBytes)
  const freeC = Float64Array.from(totC)
  const freeM = Float64Array.from(totM)
  /** 1 while the node takes new work */
  const accepting = Uint8Array.from(w.initiallyUp, u => u ? 1 : 0)
  const running: Array<Set<number>> = Array.from({ length: N }, () => new Set())
  const startedAt = new Float64Array(J)
  const nodeOf = new Int32Array(J).fill(-1)
  /** bumps when a job's run is killed, so its completion event is ignored */
  const token = new Int32Array(J)

  // Label compatibility by class: nodes with the same labels share a class.
  const classKey = (labels: Record<string, string>): string => JSON.stringify(Object.entries(labels).sort())
  const classes = new Map<string, number>()
  const classLabels: Array<Record<string, string>> = []
  const nodeClass = new Int32Array(N)
  w.nodes.forEach((n, i) => {
    const k = classKey(n.labels)
    let c = classes.get(k)
    if (c === undefined) { c = classLabels.length; classes.set(k, c); classLabels.push(n.labels) }
    nodeClass[i] = c
  })
  const compatCache = new Map<string, Uint8Array>()
  const jobCompat: Uint8Array[] = w.jobs.map(j => {
    const k = classKey(j.constraints)
    let m = compatCache.get(k)
    if (m === undefined) {
      m = Uint8Array.from(classLabels, labels => Object.entries(j.constraints).every(([key, v]) => labels[key] === v) ? 1 : 0)
      compatCache.set(k, m)
    }
    return m
  })

  let minC = Infinity
  let minM = Infinity
  for (const j of w.jobs) { minC = Math.min(minC, j.cpuMilli); minM = Math.min(minM, j.memoryBytes) }

  // Jobs larger than every node (never placeable) are left out.
  let unplaceable = 0
  const placeable = w.jobs.map((j, i) => {
    const ok = w.nodes.some((n, ni) => n.cpuMilli >= j.cpuMilli && n.memoryBytes >= j.memoryBytes && jobCompat[i][nodeClass[ni]] === 1)
    if (!ok) unplaceable++
    return ok
  })

  // Waiting jobs: a doubly linked list in arrival (= index) order.
  const next = new Int32Array(J).fill(-1)
  const prev = new Int32Array(J).fill(-1)
  let head = -1
  let tail = -1
  const enqueue = (j: number): void => {
    // usually at the tail; a killed job goes back to its place by arrival order
    let after = tail
    while (after !== -1 && after > j) after = prev[after]
    prev[j] = after
    next[j] = after === -1 ? head : next[after]
    if (after === -1) head = j; else next[after] = j
    if (next[j] === -1) tail = j; else prev[next[j]] = j
  }
  const unlink = (j: number): void => {
    if (prev[j] === -1) head = next[j]; else next[prev[j]] = next[j]
    if (next[j] === -1) tail = prev[j]; else prev[next[j]] = prev[j]
    next[j] = prev[j] = -1
  }

  let busyMilliMs = 0
  let done = 0
  let lastFinishMs = 0
  let restarts = 0
  const target = J - unplaceable

  const start = (j: number, n: number): void => {
    const job = w.jobs[j]
    freeC[n] -= job.cpuMilli
    freeM[n] -= job.memoryBytes
    running[n].add(j)
    nodeOf[j] = n
    startedAt[j] = engine.nowMs
    options.onStart?.(j, n, engine.nowMs)
    const t = ++token[j]
    engine.after(job.durationMs, () => {
      if (token[j] !== t) return
      free(j)
      busyMilliMs += job.cpuMilli * job.durationMs
      done++
      lastFinishMs = engine.nowMs
      if (accepting[n] === 1) fillNode(n)
    })
  }
  const free = (j: number): void => {
    const n = nodeOf[j]
    const job = w.jobs[j]
    freeC[n] += job.cpuMilli
    freeM[n] += job.memoryBytes
    running[n].delete(j)
    nodeOf[j] = -1
  }

  const bestNode = (j: number): number => {
    const job = w.jobs[j]
    const c = job.cpuMilli
    const m = job.memoryBytes
    const compat = jobCompat[j]
    let best = -1
    let bestScore = -1
    for (let n = 0; n < N; n++) {
      if (accepting[n] === 0) continue
      const fc = freeC[n]
      if (fc < c) continue
      const fm = freeM[n]
      if (fm < m || compat[nodeClass[n]] === 0) continue
      const score = (totC[n] - fc + c) / totC[n] + (totM[n] - fm + m) / totM[n]
      if (score > bestScore) { bestScore = score; best = n }
    }
    return best
  }

  const tryPlace = (j: number): void => {
    const n = bestNode(j)
    if (n >= 0) start(j, n); else enqueue(j)
  }

  /** node n has more room: give it waiting jobs, earliest first */
  const fillNode = (n: number): void => {
    let j = head
    while (j !== -1 && freeC[n] >= minC && freeM[n] >= minM) {
      const nextJ = next[j]
      const job = w.jobs[j]
      if (job.cpuMilli <= freeC[n] && job.memoryBytes <= freeM[n] && jobCompat[j][nodeClass[n]] === 1) {
        unlink(j)
        start(j, n)
      }
      j = nextJ
    }
  }

  let firstArrivalMs = Infinity
  w.jobs.forEach((job, j) => {
    if (!placeable[j]) return
    firstArrivalMs = Math.min(firstArrivalMs, job.arrivalMs)
    engine.at(job.arrivalMs, () => tryPlace(j))
  })

  // Node up-time, for utilization: [from, to, cpuMilli] per interval a node was up.
  const upSince: number[] = w.initiallyUp.map(u => u ? 0 : -1)
  const upIntervals: Array<[number, number, number]> = []
  const down = (n: number): void => {
    if (upSince[n] >= 0) { upIntervals.push([upSince[n], engine.nowMs, totC[n]]); upSince[n] = -1 }
  }
  for (const ev of w.nodeEvents) {
    engine.at(ev.atMs, () => {
      const n = ev.node
      switch (ev.kind) {
        case 'join':
        case 'restart':
          if (accepting[n] === 1) return
          accepting[n] = 1
          if (upSince[n] < 0) upSince[n] = engine.nowMs
          fillNode(n)
          return
        case 'leave':
          // stops taking work; its running jobs finish (the agent leaves once idle)
          accepting[n] = 0
          down(n)
          return
        case 'kill': {
          accepting[n] = 0
          down(n)
          // perfect knowledge: the lost runs are placed again at once
          const lost = [...running[n]].sort((a, b) => a - b)
          for (const j of lost) {
            busyMilliMs += w.jobs[j].cpuMilli * (engine.nowMs - startedAt[j])
            free(j)
            token[j]++
            restarts++
          }
          for (const j of lost) tryPlace(j)
        }
      }
    })
  }

  engine.run({ untilMs: Infinity, done: () => done >= target })
  for (let n = 0; n < N; n++) if (upSince[n] >= 0) upIntervals.push([upSince[n], Infinity, totC[n]])
  const from = firstArrivalMs === Infinity ? 0 : firstArrivalMs
  const makespanMs = Math.max(0, lastFinishMs - from)
  const capMilliMs = capacityMilliMs(upIntervals, from, lastFinishMs)
  return { makespanMs, utilization: capMilliMs > 0 ? busyMilliMs / capMilliMs : 0, unplaceable, restarts }
}

/** CPU·time (milli·ms) of the intervals clipped to [fromMs, toMs]. */
export function capacityMilliMs (intervals: Iterable<readonly [number, number, number]>, fromMs: number, toMs: number): number {
  let sum = 0
  for (const [a, b, cpu] of intervals) {
    const lo = Math.max(a, fromMs)
    const hi = Math.min(b, toMs)
    if (hi > lo) sum += (hi - lo) * cpu
  }
  return sum
}
