// The agent's clock for its machines: a timer that, when it fires late because the event
// loop was held up, lets what arrived meanwhile be read before it runs.
//
// Node runs expired timers before it polls for I/O. After a stall (a write blocked on a busy
// disk, a starved CPU), a tick would judge leases, award deadlines and liveness before the
// renewals, acknowledgements and adverts already waiting in its sockets were read, and give
// up attempts whose executors had in fact answered in time: the job then runs twice. A late
// timer therefore runs its callback from setImmediate, which comes after the poll phase, and
// tells it how long the stall was: what this agent itself could not send meanwhile (its own
// renewals) is credited by the machines ('clock:stalled').

export interface TickTimerInit {
  /** a timer that fires this much after its time or more was held up (see AGENT_DEFAULTS.stallMs) */
  stallMs: number
}

export interface TickTimer {
  /** cancels the callback, whether it waits on the timer or on the deferral */
  clear: () => void
}

/** Calls back delayMs from now with how late it fired: 0 on time, else the length of the stall
 *  that held it up (then from setImmediate). */
export function setTickTimer (delayMs: number, callback: (stalledMs: number) => void, init: TickTimerInit): TickTimer {
  const dueAtMs = Date.now() + delayMs
  let immediate: ReturnType<typeof setImmediate> | undefined
  const timer = setTimeout(() => {
    const lateMs = Date.now() - dueAtMs
    if (lateMs < init.stallMs) { callback(0); return }
    immediate = setImmediate(() => { immediate = undefined; callback(lateMs) })
  }, delayMs)
  return {
    clear () {
      clearTimeout(timer)
      if (immediate !== undefined) clearImmediate(immediate)
    }
  }
}
