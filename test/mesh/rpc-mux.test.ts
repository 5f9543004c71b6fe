// The request channel over an in-memory pair of length-prefixed streams.
import { describe, expect, it } from 'vitest'
import { ChannelClosedError, type FrameIO, FrameKind, MalformedFrameError, NOTIFICATION_ID, RequestRefusedError, type RpcClient, createRpcClient, decodeFrame, encodeFrame, serveRpc } from '../../src/mesh/rpc-mux.ts'

/** One direction of a stream: frames written on one end are read on the other, in order. */
class Pipe {
  private readonly frames: Uint8Array[] = []
  private readonly readers: Array<{ resolve: (f: Uint8Array) => void, reject: (e: unknown) => void }> = []
  private ended: Error | undefined
  writes = 0

  push (frames: Uint8Array[]): void {
    if (this.ended !== undefined) throw this.ended
    this.writes++
    for (const f of frames) {
      const r = this.readers.shift()
      if (r !== undefined) r.resolve(f)
      else this.frames.push(f)
    }
  }

  async pull (): Promise<Uint8Array> {
    const f = this.frames.shift()
    if (f !== undefined) return f
    if (this.ended !== undefined) throw this.ended
    return await new Promise((resolve, reject) => this.readers.push({ resolve, reject }))
  }

  end (err = new Error('stream ended')): void {
    this.ended = err
    for (const r of this.readers.splice(0)) r.reject(err)
  }
}

function pair (): { client: FrameIO, server: FrameIO, toServer: Pipe, toClient: Pipe } {
  const toServer = new Pipe()
  const toClient = new Pipe()
  return {
    toServer,
    toClient,
    client: { read: async () => await toClient.pull(), writeV: async f => toServer.push(f) },
    server: { read: async () => await toServer.pull(), writeV: async f => toClient.push(f) }
  }
}

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s)
const text = (b: Uint8Array): string => new TextDecoder().decode(b)
const noTimeout = (): AbortSignal => new AbortController().signal
/** Lets every queued frame and handler run (no clock involved). */
const settle = async (): Promise<void> => { for (let i = 0; i < 5; i++) await new Promise(resolve => setImmediate(resolve)) }

describe('request channel', () => {
  it('frames round-trip, and malformed ones are refused by name', () => {
    const f = decodeFrame(encodeFrame(FrameKind.Response, 0xfffffffe, bytes('hi')))
    expect(f).toEqual({ kind: FrameKind.Response, id: 0xfffffffe, payload: bytes('hi') })
    expect(() => decodeFrame(new Uint8Array(3))).toThrow(MalformedFrameError)
    expect(() => decodeFrame(encodeFrame(9, 1, bytes('x')))).toThrow(MalformedFrameError)
  })

  it('answers concurrent requests by id, whatever order the handlers finish in', async () => {
    const io = pair()
    const finish: Array<() => void> = []
    const served = serveRpc({
      io: io.server,
      maxConcurrent: 32,
      handle: async p => await new Promise(resolve => finish.push(() => resolve(bytes(`re:${text(p)}`))))
    })
    const client = createRpcClient({ io: io.client })
    const answers = Promise.all(Array.from({ length: 20 }, async (_, i) => text(await client.request(bytes(String(i)), { signal: noTimeout() }))))
    await settle()
    expect(finish).toHaveLength(20)
    // The last request is answered first: responses come back out of order.
    for (const f of finish.reverse()) f()
    expect(await answers).toEqual(Array.from({ length: 20 }, (_, i) => `re:${i}`))
    // The 20 requests were queued in one tick: one write carried them all.
    expect(io.toServer.writes).toBe(1)
    expect(client.pending).toBe(0)
    io.toServer.end()
    await served
  })

  it('a handler that throws is a refusal for that request only', async () => {
    const io = pair()
    void serveRpc({ io: io.server, maxConcurrent: 4, handle: async p => { if (text(p) === 'bad') throw new Error('no such thing'); return p } })
    const client = createRpcClient({ io: io.client })
    const [bad, good] = await Promise.allSettled([client.request(bytes('bad'), { signal: noTimeout() }), client.request(bytes('good'), { signal: noTimeout() })])
    expect(bad.status === 'rejected' && (bad.reason as Error).name).toBe(RequestRefusedError.name)
    expect(good.status === 'fulfilled' && text(good.value)).toBe('good')
    expect(client.closed).toBe(false)
  })

  it('a timed-out request is dropped; its late answer does not disturb the next one', async () => {
    const io = pair()
    let releaseFirst: (() => void) | undefined
    void serveRpc({ io: io.server, maxConcurrent: 4, handle: async p => { if (text(p) === 'first') await new Promise<void>(resolve => { releaseFirst = resolve }); return p } })
    const client = createRpcClient({ io: io.client })
    const deadline = new AbortController()
    const timedOut = client.request(bytes('first'), { signal: deadline.signal })
    await settle()
    deadline.abort(new DOMException('no response in time', 'TimeoutError'))
    await expect(timedOut).rejects.toHaveProperty('name', 'TimeoutError')
    expect(client.pending).toBe(0)
    releaseFirst!() // the late answer arrives and is dropped
    await settle()
    expect(text(await client.request(bytes('second'), { signal: noTimeout() }))).toBe('second')
    expect(client.closed).toBe(false)
  })

  it('when the stream ends every waiting request fails, and the channel reports it closed once', async () => {
    const io = pair()
    const closes: unknown[] = []
    const client = createRpcClient({ io: io.client, onClose: err => closes.push(err) })
    // Nobody serves: the requests wait until the stream ends.
    const waiting = [client.request(bytes('a'), { signal: noTimeout() }), client.request(bytes('b'), { signal: noTimeout() })]
    io.toClient.end()
    for (const w of waiting) await expect(w).rejects.toBeInstanceOf(ChannelClosedError)
    expect(client.closed).toBe(true)
    expect(closes).toHaveLength(1)
    await expect(client.request(bytes('c'), { signal: noTimeout() })).rejects.toHaveProperty('code', ChannelClosedError.code)
  })

  it('past maxConcurrent handlers the server stops reading until one finishes', async () => {
    const io = pair()
    let running = 0
    let most = 0
    const release: Array<() => void> = []
    void serveRpc({
      io: io.server,
      maxConcurrent: 3,
      handle: async p => {
        most = Math.max(most, ++running)
        await new Promise<void>(resolve => release.push(resolve))
        running--
        return p
      }
    })
    const client = createRpcClient({ io: io.client })
    const all = Promise.all(Array.from({ length: 8 }, async (_, i) => await client.request(bytes(String(i)), { signal: noTimeout() })))
    // Release handlers one by one as they start, until all 8 ran.
    for (let released = 0; released < 8; released++) {
      await settle()
      expect(running).toBeLessThanOrEqual(3)
      release.shift()!()
    }
    expect((await all).map(text)).toEqual(['0', '1', '2', '3', '4', '5', '6', '7'])
    expect(most).toBe(3)
  })

  /** A client whose first write stalls (a full socket) until unstall(), so later frames wait in
   *  the queue; a server that records every payload it handles. */
  function stalledChannel (): { client: RpcClient, unstall: () => void, seen: string[] } {
    const io = pair()
    let unstall!: () => void
    const stalled = new Promise<void>(resolve => { unstall = resolve })
    let writes = 0
    const client = createRpcClient({ io: { read: io.client.read, writeV: async f => { if (writes++ === 0) await stalled; io.toServer.push(f) } } })
    const seen: string[] = []
    void serveRpc({ io: io.server, maxConcurrent: 4, handle: async (p, { wantsAnswer }) => { seen.push(text(p)); return wantsAnswer ? p : undefined } })
    return { client, unstall, seen }
  }

  it('a request given up on before its turn to be written never reaches the peer', async () => {
    const { client, unstall, seen } = stalledChannel()
    const first = client.request(bytes('first'), { signal: noTimeout() })
    await settle()
    const deadline = new AbortController()
    const late = client.request(bytes('late'), { signal: deadline.signal })
    const third = client.request(bytes('third'), { signal: noTimeout() })
    await settle()
    deadline.abort(new DOMException('no response in time', 'TimeoutError'))
    await expect(late).rejects.toHaveProperty('name', 'TimeoutError')
    unstall()
    expect(text(await first)).toBe('first')
    expect(text(await third)).toBe('third')
    expect(seen).toEqual(['first', 'third'])
  })

  it('a handler slot is freed when its response is written, not when the handler returns', async () => {
    const io = pair()
    let unstall!: () => void
    const stalled = new Promise<void>(resolve => { unstall = resolve })
    let handled = 0
    // The serving end's writes stall: responses cannot go out.
    void serveRpc({ io: { read: io.server.read, writeV: async f => { await stalled; io.toClient.push(f) } }, maxConcurrent: 2, handle: async p => { handled++; return p } })
    const client = createRpcClient({ io: io.client })
    const all = Promise.all(['a', 'b', 'c', 'd'].map(async x => text(await client.request(bytes(x), { signal: noTimeout() }))))
    await settle()
    expect(handled).toBe(2) // two handlers done, their responses unwritten: no more reading
    unstall()
    expect(await all).toEqual(['a', 'b', 'c', 'd'])
    expect(handled).toBe(4)
  })

  it('a notification reaches the handler, told no answer is wanted, and nothing comes back', async () => {
    const io = pair()
    const seen: Array<{ payload: string, wantsAnswer: boolean }> = []
    // Every frame the server sends back, counted on the way to the client.
    const back: Array<{ kind: number, id: number }> = []
    const server: FrameIO = { read: io.server.read, writeV: async f => { for (const x of f) { const d = decodeFrame(x); back.push({ kind: d.kind, id: d.id }) } await io.server.writeV(f) } }
    void serveRpc({ io: server, maxConcurrent: 4, handle: async (p, { wantsAnswer }) => { seen.push({ payload: text(p), wantsAnswer }); if (text(p) === 'bad') throw new Error('no'); return wantsAnswer ? p : undefined } })
    const client = createRpcClient({ io: io.client })
    await client.notify(bytes('release'), { signal: noTimeout() })
    await client.notify(bytes('bad'), { signal: noTimeout() }) // a handler that throws on a notification refuses nothing
    await settle()
    expect(text(await client.request(bytes('asked'), { signal: noTimeout() }))).toBe('asked')
    expect(seen).toEqual([{ payload: 'release', wantsAnswer: false }, { payload: 'bad', wantsAnswer: false }, { payload: 'asked', wantsAnswer: true }])
    expect(back).toEqual([{ kind: FrameKind.Response, id: 1 }]) // the request's answer alone
    expect(decodeFrame(encodeFrame(FrameKind.Request, NOTIFICATION_ID, bytes('x'))).id).toBe(0)
  })

  it('an answer to a notification (a server from before them) is dropped; pending requests are untouched', async () => {
    const io = pair()
    const client = createRpcClient({ io: io.client })
    const asked = client.request(bytes('asked'), { signal: noTimeout() })
    await client.notify(bytes('release'), { signal: noTimeout() })
    await settle()
    const [req, note] = [decodeFrame(await io.toServer.pull()), decodeFrame(await io.toServer.pull())]
    expect([req.id, note.id]).toEqual([1, NOTIFICATION_ID])
    io.toClient.push([encodeFrame(FrameKind.Response, NOTIFICATION_ID, bytes('ack')), encodeFrame(FrameKind.Response, req.id, bytes('answer'))])
    expect(text(await asked)).toBe('answer')
    expect(client.closed).toBe(false)
  })

  it('a notification on a closed channel fails by name', async () => {
    const io = pair()
    const client = createRpcClient({ io: io.client })
    client.close()
    await expect(client.notify(bytes('x'), { signal: noTimeout() })).rejects.toBeInstanceOf(ChannelClosedError)
  })

  it('a notification given up on before its turn to be written is not sent', async () => {
    const { client, unstall, seen } = stalledChannel()
    const first = client.request(bytes('first'), { signal: noTimeout() })
    await settle()
    const deadline = new AbortController()
    const late = client.notify(bytes('late'), { signal: deadline.signal })
    await settle()
    deadline.abort(new DOMException('not written in time', 'TimeoutError'))
    await expect(late).rejects.toHaveProperty('name', 'TimeoutError')
    unstall()
    expect(text(await first)).toBe('first')
    await client.notify(bytes('next'), { signal: noTimeout() })
    await settle()
    expect(seen).toEqual(['first', 'next'])
  })

  it('a response frame sent to the serving end is a protocol violation', async () => {
    const io = pair()
    const served = serveRpc({ io: io.server, maxConcurrent: 4, handle: async p => p })
    io.toServer.push([encodeFrame(FrameKind.Response, 1, bytes('x'))])
    await expect(served).rejects.toBeInstanceOf(MalformedFrameError)
  })
})
