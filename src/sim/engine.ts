// The simulator's clock: a discrete-event queue. Nothing in the simulator reads the wall
// clock; every action runs at a virtual time, and actions due at the same time run in the
// order they were scheduled, so a seed fully determines a run.

export type Action = () => void

/** A binary min-heap on (time, insertion order), kept in parallel arrays: at millions of
 *  events, one object per entry would dominate the garbage collector's work. */
export class EventQueue {
  private readonly times: number[] = []
  private readonly seqs: number[] = []
  private readonly actions: Action[] = []
  private nextSeq = 0

  get size (): number { return this.times.length }

  /** Returns the entry's insertion number. */
  push (atMs: number, action: Action): number {
    const times = this.times
    const seqs = this.seqs
    const actions = this.actions
    const seq = this.nextSeq++
    let i = times.length
    times.push(atMs); seqs.push(seq); actions.push(action)
    while (i > 0) {
      const parent = (i - 1) >> 1
      const pt = times[parent]
      if (pt < atMs || (pt === atMs && seqs[parent] < seq)) break
      times[i] = pt; seqs[i] = seqs[parent]; actions[i] = actions[parent]
      i = parent
    }
    times[i] = atMs; seqs[i] = seq; actions[i] = action
    return seq
  }

  peekTime (): number | undefined { return this.times[0] }

  /** insertion order of the earliest entry */
  peekSeq (): number { return this.seqs[0] }

  /** Takes the insertion number an entry pushed now would get, without an entry: for a
   *  caller that runs the action itself later, in the place this number gives it. */
  reserveSeq (): number { return this.nextSeq++ }

  /** Removes the earliest entry and returns its action; the caller read its time first. */
  pop (): Action | undefined {
    const times = this.times
    const seqs = this.seqs
    const actions = this.actions
    const n = times.length
    if (n === 0) return undefined
    const top = actions[0]
    const lastT = times.pop()!
    const lastS = seqs.pop()!
    const lastA = actions.pop()!
    const m = n - 1
    if (m > 0) {
      let i = 0
      for (;;) {
        const l = 2 * i + 1
        if (l >= m) break
        const r = l + 1
        let c = l
        if (r < m && (times[r] < times[l] || (times[r] === times[l] && seqs[r] < seqs[l]))) c = r
        const ct = times[c]
        if (lastT < ct || (lastT === ct && lastS < seqs[c])) break
        times[i] = ct; seqs[i] = seqs[c]; actions[i] = actions[c]
        i = c
      }
      times[i] = lastT; seqs[i] = lastS; actions[i] = lastA
    }
    return top
  }
}

export class Engine {
  /** virtual time, ms */
  nowMs = 0
  /** actions run so far: the simulator's own work counter */
  executed = 0
  /** insertion number of the action running now: (nowMs, seq) orders every action */
  seq = -1
  private readonly queue = new EventQueue()

  /** Runs `action` at `atMs` (never in the past). Returns its insertion number: with the
   *  time, its place in the order of actions. */
  at (atMs: number, action: Action): number {
    return this.queue.push(atMs < this.nowMs ? this.nowMs : atMs, action)
  }

  after (delayMs: number, action: Action): number {
    return this.at(this.nowMs + delayMs, action)
  }

  get pending (): number { return this.queue.size }

  /** An insertion number for an action the caller keeps and runs itself (see reserveSeq). */
  reserveSeq (): number { return this.queue.reserveSeq() }

  /** Runs actions in time order until `done()` holds, the queue empties or the next action
   *  is later than `untilMs`. Returns why it stopped. */
  run (options: { untilMs: number, done: () => boolean }): 'done' | 'idle' | 'deadline' {
    const q = this.queue
    for (;;) {
      if (options.done()) return 'done'
      const t = q.peekTime()
      if (t === undefined) return 'idle'
      if (t > options.untilMs) return 'deadline'
      this.seq = q.peekSeq()
      const action = q.pop()!
      this.nowMs = t
      this.executed++
      action()
    }
  }
}
