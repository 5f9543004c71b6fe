// The agent's clock for its machines: a timer that, when it fires late because the event
// loop was held up, lets what arrived meanwhile be read before it runs.
//
// Node runs expired timers before it polls for I/O. After a stall (a write blocked on a busy
// disk, a starved CPU), a tick would judge leases, award deadlines and liveness before the
// renewals, acknowledgements and adverts already waiting in its sockets were read, and give
// up attempts whose executors had in fact answered in time: the job then runs twice. A late
// timer therefore runs its callback from setImmediate, which comes after the poll phase.

export interface TickTimerInit {
  /** a timer that fires this much after its time or more was held up (see AGENT_DEFAULTS.stallMs) */
  stallMs: number
}

export interface TickTimer {
  /** cancels the callback, whether it waits on the timer or on the deferral */
  clear: () => void
}

export function setTickTimer (delayMs: number, callback: () => void, init: TickTimerInit): TickTimer {
  const dueAtMs = Date.now() + delayMs
  let immediate: ReturnType<typeof setImmediate> | undefined
  const timer = setTimeout(() => {
    if (Date.now() - dueAtMs < init.stallMs) { callback(); return }
    immediate = setImmediate(() => { immediate = undefined; callback() })
  }, delayMs)
  return {
    clear () {
      clearTimeout(timer)
      if (immediate !== undefined) clearImmediate(immediate)
    }
  }
}
