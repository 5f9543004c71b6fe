// The msgpackr codec. A frame is [version, type, body]. Decoding checks the size first,
// then the version, then the type, then the body's schema. It never throws: a bad frame
// comes back as a named rejection, which callers count and drop.
import { Packr } from 'msgpackr'
import { BodySchemas, MessageType, PROTOCOL_VERSION, type Message } from './messages.ts'

// Records off: plain maps keep the wire readable by any msgpack implementation.
// mapsAsObjects: decoded maps become plain objects; int64 as numbers.
const packr = new Packr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number', moreTypes: false })

const KNOWN_TYPES = new Set<number>(Object.values(MessageType))

export type DecodeRejection = 'too-large' | 'malformed' | 'version' | 'unknown-type' | 'schema'

export type DecodeResult =
  | { ok: true, message: Message }
  | { ok: false, rejection: DecodeRejection, detail?: string }

export function encodeMessage (message: Message, version: number = PROTOCOL_VERSION.current): Uint8Array {
  return packr.pack([version, message.type, message.body])
}

export function decodeMessage (bytes: Uint8Array, maxBytes: number): DecodeResult {
  if (bytes.byteLength > maxBytes) return { ok: false, rejection: 'too-large', detail: `${bytes.byteLength} > ${maxBytes}` }
  let frame: unknown
  try {
    frame = packr.unpack(bytes)
  } catch (err) {
    return { ok: false, rejection: 'malformed', detail: (err as Error).message?.slice(0, 200) }
  }
  if (!Array.isArray(frame) || frame.length !== 3) return { ok: false, rejection: 'malformed', detail: 'not a [version, type, body] frame' }
  const [version, type, body] = frame as [unknown, unknown, unknown]
  if (typeof version !== 'number' || version < PROTOCOL_VERSION.min || version > PROTOCOL_VERSION.max) {
    return { ok: false, rejection: 'version', detail: describeValue(version) }
  }
  if (typeof type !== 'number' || !KNOWN_TYPES.has(type)) return { ok: false, rejection: 'unknown-type', detail: describeValue(type) }
  const schema = BodySchemas[type as keyof typeof BodySchemas]
  const parsed = schema.safeParse(body)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    return { ok: false, rejection: 'schema', detail: `${issue?.path.join('.') ?? ''}: ${issue?.message ?? ''}` }
  }
  return { ok: true, message: { type, body: parsed.data } as unknown as Message }
}

/** A short description of a hostile value: String() on an object with its own toString
 *  (or none) can throw, and must never be reached with peer input. */
function describeValue (v: unknown): string {
  if (v === null || typeof v !== 'object') return String(v).slice(0, 64)
  return Array.isArray(v) ? 'array' : v instanceof Uint8Array ? 'bytes' : 'map'
}
