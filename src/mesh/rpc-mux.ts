// Many requests over one long-lived stream per pair of agents. A stream per request cost the
// owner a third of its time under load (yamux open, multistream-select, a peer-store update
// and several small frame writes each; docs/benchmarks.md). Here a requester opens one
// stream to a peer and keeps it; requests and responses carry an id, and every frame queued
// in the same tick goes out in one write.
//
// Frame: [kind: u8][id: u32 big-endian][payload], inside the stream's length prefix.
//   kind 1  request   payload: an encoded Message. Id 0 asks for no answer (a notification:
//                     a release, which its sender does not wait on); requests count from 1.
//                     A server from before notifications answers one anyway, and the
//                     requester drops that answer as it drops any late one.
//   kind 2  response  payload: an encoded Message
//   kind 3  refused   payload: a short UTF-8 reason (the request failed to decode, or its
//                     handler threw): the requester's call fails as the peer's would have
//                     when it aborted a per-request stream.
// The payload's own codec applies its size caps and versions, as on any other stream.
import { untilAborted } from './deadline.ts'

export const FrameKind = { Request: 1, Response: 2, Refused: 3 } as const

/** A frame as read: bytes, or a list of chunks (uint8arraylist) that can be joined. */
export type RawFrame = Uint8Array | { subarray: () => Uint8Array }

/** The length-prefixed stream the channel runs over (it-length-prefixed-stream's shape). */
export interface FrameIO {
  read (options?: { signal?: AbortSignal }): Promise<RawFrame>
  writeV (frames: Uint8Array[], options?: { signal?: AbortSignal }): Promise<void>
}

export class RequestRefusedError extends Error {
  static readonly code = 'ERR_REQUEST_REFUSED'
  readonly code = RequestRefusedError.code
  constructor (readonly reason: string, options?: ErrorOptions) {
    super(`request refused: ${reason}`, options)
    this.name = 'RequestRefusedError'
  }
}

export class ChannelClosedError extends Error {
  static readonly code = 'ERR_CHANNEL_CLOSED'
  readonly code = ChannelClosedError.code
  constructor (options?: ErrorOptions) {
    super('the request channel closed', options)
    this.name = 'ChannelClosedError'
  }
}

export class MalformedFrameError extends Error {
  static readonly code = 'ERR_MALFORMED_FRAME'
  readonly code = MalformedFrameError.code
  constructor (readonly detail: string) {
    super(`malformed frame: ${detail}`)
    this.name = 'MalformedFrameError'
  }
}

const HEADER_BYTES = 5

export function encodeFrame (kind: number, id: number, payload: Uint8Array): Uint8Array {
  const frame = new Uint8Array(HEADER_BYTES + payload.byteLength)
  frame[0] = kind
  new DataView(frame.buffer).setUint32(1, id >>> 0)
  frame.set(payload, HEADER_BYTES)
  return frame
}

export function decodeFrame (raw: RawFrame): { kind: number, id: number, payload: Uint8Array } {
  const bytes = raw instanceof Uint8Array ? raw : raw.subarray()
  if (bytes.byteLength < HEADER_BYTES) throw new MalformedFrameError(`${bytes.byteLength} bytes, shorter than a header`)
  const kind = bytes[0]
  if (kind !== FrameKind.Request && kind !== FrameKind.Response && kind !== FrameKind.Refused) throw new MalformedFrameError(`unknown kind ${kind}`)
  const id = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(1)
  return { kind, id, payload: bytes.subarray(HEADER_BYTES) }
}

interface QueuedFrame { frame: Uint8Array, done: () => void, withdrawn?: boolean }

/** Queues frames and writes all that queued up in one tick with one writeV. send() resolves
 *  once its frame is written (or dropped: withdrawn before its turn, or after a failed write).
 *  A failed write is reported once through onError; the writer drops everything after it. */
class FrameWriter {
  private queue: QueuedFrame[] = []
  private flushing = false
  private failed = false

  constructor (private readonly io: FrameIO, private readonly onError: (err: unknown) => void) {}

  /** Queues a frame; withdraw() before its turn keeps it off the wire. */
  send (frame: Uint8Array): { written: Promise<void>, withdraw: () => void } {
    let done!: () => void
    const written = new Promise<void>(resolve => { done = resolve })
    if (this.failed) {
      done()
      return { written, withdraw: () => {} }
    }
    const entry: QueuedFrame = { frame, done }
    this.queue.push(entry)
    if (!this.flushing) void this.flush()
    return { written, withdraw: () => { entry.withdrawn = true } }
  }

  private async flush (): Promise<void> {
    this.flushing = true
    try {
      // Let the rest of this tick queue its frames first.
      await Promise.resolve()
      while (this.queue.length > 0 && !this.failed) {
        const batch = this.queue
        this.queue = []
        const frames = batch.filter(e => e.withdrawn !== true).map(e => e.frame)
        try {
          if (frames.length > 0) await this.io.writeV(frames)
        } finally {
          for (const e of batch) e.done()
        }
      }
    } catch (err) {
      this.failed = true
      for (const e of this.queue) e.done()
      this.queue = []
      this.onError(err)
    } finally {
      this.flushing = false
    }
  }
}

export interface RpcClientInit {
  io: FrameIO
  /** called once when the channel stops (stream ended or failed); the owner forgets it */
  onClose?: (err?: unknown) => void
}

/** Frame id of a notification: a request that wants no answer. */
export const NOTIFICATION_ID = 0

/** The requesting end of a channel. */
export interface RpcClient {
  request (payload: Uint8Array, options: { signal: AbortSignal }): Promise<Uint8Array>
  /** Sends a request that wants no answer; resolves once it is written (or dropped with a
   *  channel that failed: best effort, like the datagram it stands for). One given up on
   *  (signal) before its turn to be written is not sent. */
  notify (payload: Uint8Array, options: { signal: AbortSignal }): Promise<void>
  readonly closed: boolean
  /** requests waiting for their response */
  readonly pending: number
  close (err?: unknown): void
}

export function createRpcClient (init: RpcClientInit): RpcClient {
  const pending = new Map<number, { resolve: (b: Uint8Array) => void, reject: (err: unknown) => void }>()
  let nextId = 1
  let closed = false
  const writer = new FrameWriter(init.io, err => close(err))

  function close (err?: unknown): void {
    if (closed) return
    closed = true
    const reason = new ChannelClosedError(err !== undefined ? { cause: err } : undefined)
    for (const p of pending.values()) p.reject(reason)
    pending.clear()
    init.onClose?.(err)
  }

  void (async () => {
    try {
      while (!closed) {
        const { kind, id, payload } = decodeFrame(await init.io.read())
        const p = pending.get(id)
        if (p === undefined) continue // its request timed out: the late answer is dropped
        pending.delete(id)
        if (kind === FrameKind.Response) p.resolve(payload)
        else if (kind === FrameKind.Refused) p.reject(new RequestRefusedError(new TextDecoder().decode(payload).slice(0, 200)))
        else throw new MalformedFrameError('a request on the requesting end')
      }
    } catch (err) {
      close(err)
    }
  })()

  return {
    get closed () { return closed },
    get pending () { return pending.size },
    close,
    async notify (payload, { signal }) {
      if (closed) throw new ChannelClosedError()
      signal.throwIfAborted()
      const { written, withdraw } = writer.send(encodeFrame(FrameKind.Request, NOTIFICATION_ID, payload))
      await untilAborted(written, signal, withdraw)
    },
    async request (payload, { signal }) {
      if (closed) throw new ChannelClosedError()
      signal.throwIfAborted()
      const id = nextId
      nextId = nextId >= 0xffffffff ? 1 : nextId + 1
      try {
        return await new Promise<Uint8Array>((resolve, reject) => {
          let withdraw = (): void => {}
          // A request given up on before its turn to be written is not sent at all: a late
          // award, say, would only start work its owner no longer waits for.
          const onAbort = (): void => { withdraw(); pending.delete(id); reject(signal.reason) }
          signal.addEventListener('abort', onAbort, { once: true })
          pending.set(id, {
            resolve: b => { signal.removeEventListener('abort', onAbort); resolve(b) },
            reject: e => { signal.removeEventListener('abort', onAbort); reject(e) }
          })
          withdraw = writer.send(encodeFrame(FrameKind.Request, id, payload)).withdraw
        })
      } finally {
        pending.delete(id)
      }
    }
  }
}

export interface RpcServerInit {
  io: FrameIO
  /** answers one request; a throw is sent back as a refusal. For a notification (wantsAnswer
   *  false) nothing is sent back, whatever it returns or throws: it may skip the answer. */
  handle: (payload: Uint8Array, options: { wantsAnswer: boolean }) => Promise<Uint8Array | undefined>
  /** handlers run at once per channel; past this the channel stops reading (back-pressure) */
  maxConcurrent: number
}

/** Serves the requests arriving on one inbound channel until it ends. Resolves then; rejects
 *  on a malformed frame (the caller aborts the stream). */
export async function serveRpc (init: RpcServerInit): Promise<void> {
  let running = 0
  let slotFreed: (() => void) | undefined
  let writeError: unknown
  const writer = new FrameWriter(init.io, err => { writeError = err })
  const encoder = new TextEncoder()
  while (writeError === undefined) {
    if (running >= init.maxConcurrent) {
      await new Promise<void>(resolve => { slotFreed = resolve })
      continue
    }
    let raw: RawFrame
    try {
      raw = await init.io.read()
    } catch {
      return // the stream ended: the peer closed it or the connection went
    }
    const { kind, id, payload } = decodeFrame(raw)
    if (kind !== FrameKind.Request) throw new MalformedFrameError(`kind ${kind} on the serving end`)
    running++
    const freeSlot = (): void => {
      running--
      const wake = slotFreed
      slotFreed = undefined
      wake?.()
    }
    if (id === NOTIFICATION_ID) {
      void init.handle(payload, { wantsAnswer: false }).catch(() => {}).finally(freeSlot)
      continue
    }
    // A slot is free again only once the response is written, not when the handler returns:
    // a peer that sends requests but reads no responses stops being read from, rather than
    // piling its responses up here.
    void init.handle(payload, { wantsAnswer: true })
      .then(response => writer.send(response !== undefined ? encodeFrame(FrameKind.Response, id, response) : encodeFrame(FrameKind.Refused, id, encoder.encode('no answer'))).written,
        err => writer.send(encodeFrame(FrameKind.Refused, id, encoder.encode(String((err as Error)?.message ?? err).slice(0, 200)))).written)
      .finally(freeSlot)
  }
  throw writeError
}
