// Output goes to the job's owner in LogAppend messages, each under the direct-message size
// cap (MAX_DIRECT_BYTES) and the schema's 10,000-chunk limit: a loud job's buffer, grown while
// the owner was slow, is sent as several messages, never as one the owner must refuse.
import type { LogChunk } from '../protocol/job.ts'

export type PendingChunk = Omit<LogChunk, 'seq' | 'epoch'>

export interface LogBatchLimits {
  /** characters of output per message; well under MAX_DIRECT_BYTES even at 3 bytes a character */
  maxChars: number
  maxChunks: number
}

export const LOG_BATCH_LIMITS: LogBatchLimits = { maxChars: 256 * 1024, maxChunks: 1000 }

/** Splits chunks, in order, into batches within the limits; a chunk longer than maxChars is
 *  cut into pieces of that size (same stream and time), so no batch is ever over. */
export function splitLogChunks (chunks: PendingChunk[], limits: LogBatchLimits = LOG_BATCH_LIMITS): PendingChunk[][] {
  const batches: PendingChunk[][] = []
  let batch: PendingChunk[] = []
  let chars = 0
  const push = (c: PendingChunk): void => {
    if (batch.length > 0 && (chars + c.data.length > limits.maxChars || batch.length >= limits.maxChunks)) {
      batches.push(batch)
      batch = []
      chars = 0
    }
    batch.push(c)
    chars += c.data.length
  }
  for (const c of chunks) {
    if (c.data.length <= limits.maxChars) {
      push(c)
      continue
    }
    for (let i = 0; i < c.data.length;) {
      let end = Math.min(c.data.length, i + limits.maxChars)
      // Never between the two halves of a surrogate pair: each piece stays valid text.
      if (end < c.data.length && end - i > 1 && isHighSurrogate(c.data.charCodeAt(end - 1))) end--
      push({ ...c, data: c.data.slice(i, end) })
      i = end
    }
  }
  if (batch.length > 0) batches.push(batch)
  return batches
}

function isHighSurrogate (code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff
}
