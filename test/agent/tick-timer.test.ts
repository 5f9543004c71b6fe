// A tick that fires late runs after the I/O that arrived while the event loop was held up:
// checked with a real loopback socket and a deliberate stall (the phenomenon itself, so no
// fake timers here). The control case shows a plain timer would not see that input.
import { type AddressInfo, type Server, type Socket, createConnection, createServer } from 'node:net'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { setTickTimer } from '../../src/agent/tick-timer.ts'

/** Holds the event loop, as a write blocked on a busy disk does. */
function stall (ms: number): void {
  const end = Date.now() + ms
  while (Date.now() < end) { /* held up on purpose */ }
}

describe('the tick timer', () => {
  let server: Server
  let client: Socket
  let received: string[]
  let serverSide: Socket

  beforeEach(async () => {
    received = []
    server = createServer(s => { serverSide = s; s.on('data', d => { received.push(d.toString()) }) })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    client = createConnection((server.address() as AddressInfo).port, '127.0.0.1')
    await new Promise<void>(resolve => client.once('connect', resolve))
    // let the server side accept the connection
    await new Promise(resolve => setTimeout(resolve, 20))
  })
  afterEach(async () => {
    client.destroy()
    await new Promise(resolve => server.close(resolve))
  })

  /** From a check-phase callback (as after the I/O callbacks where an agent's stalls happen),
   *  arms the timer, sends a renewal and holds the loop past the timer's time; resolves with
   *  what the callback saw as received when it ran. */
  async function lateTimerSees (arm: (callback: () => void) => void): Promise<string[]> {
    return await new Promise<string[]>(resolve => {
      setImmediate(() => {
        arm(() => { resolve([...received]) })
        client.write('renewal')
        stall(150)
      })
    })
  }

  it('a late timer runs its callback after the input that waited meanwhile is read', async () => {
    expect(await lateTimerSees(cb => setTickTimer(20, cb, { stallMs: 100 }))).toEqual(['renewal'])
  })

  it('(control) a plain timer fired late runs before that input is read', async () => {
    expect(await lateTimerSees(cb => setTimeout(cb, 20))).toEqual([])
  })

  it('an on-time timer is not deferred', async () => {
    let ranAtMs: number | undefined
    const armedAtMs = Date.now()
    setTickTimer(5, () => { ranAtMs = Date.now() }, { stallMs: 100 })
    await new Promise(resolve => setTimeout(resolve, 40))
    expect(ranAtMs).toBeDefined()
    expect(ranAtMs! - armedAtMs).toBeLessThan(100)
  })

  it('clear() cancels a callback already deferred', async () => {
    let ran = false
    await new Promise<void>(resolve => {
      setImmediate(() => {
        const late = setTickTimer(5, () => { ran = true }, { stallMs: 100 })
        // Read in the poll phase: after the late timer deferred its callback, before it runs.
        received.length = 0
        const onData = (): void => { late.clear(); setTimeout(resolve, 20) }
        serverSide.once('data', onData)
        client.write('cancel')
        stall(150)
      })
    })
    expect(ran).toBe(false)
  })
})
