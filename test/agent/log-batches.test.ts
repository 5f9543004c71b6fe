import { test as propTest, fc } from '@fast-check/vitest'
import { describe, expect, it } from 'vitest'
import { type PendingChunk, splitLogChunks } from '../../src/agent/log-batches.ts'
import { encodeMessage } from '../../src/protocol/codec.ts'
import { MAX_DIRECT_BYTES, MessageType } from '../../src/protocol/messages.ts'

const chunk = (data: string, stream: 'stdout' | 'stderr' = 'stdout', atMs = 1): PendingChunk => ({ stream, atMs, data })

describe('log batches', () => {
  it("a quiet job's output is one batch", () => {
    expect(splitLogChunks([chunk('a'), chunk('b', 'stderr')])).toEqual([[chunk('a'), chunk('b', 'stderr')]])
  })

  it("a loud job's buffer becomes messages each under the direct-message cap, in order", () => {
    // 3 MiB of 3-byte characters in 64 KiB chunks, plus one 2 MiB chunk: far over one message.
    const big = Array.from({ length: 16 }, (_, i) => chunk('€'.repeat(64 * 1024), 'stdout', i)).concat(chunk('x'.repeat(2 * 1024 * 1024), 'stderr', 99))
    const batches = splitLogChunks(big)
    expect(batches.length).toBeGreaterThan(4)
    for (const b of batches) {
      const bytes = encodeMessage({ type: MessageType.LogAppend, body: { jobId: 'j', epoch: 1, chunks: b } }).byteLength
      expect(bytes).toBeLessThanOrEqual(MAX_DIRECT_BYTES)
    }
    expect(batches.flat().map(c => c.data).join('')).toBe(big.map(c => c.data).join(''))
  })

  it('never more chunks per message than the schema takes', () => {
    const many = Array.from({ length: 25_000 }, (_, i) => chunk(String(i % 10)))
    const batches = splitLogChunks(many)
    expect(Math.max(...batches.map(b => b.length))).toBeLessThanOrEqual(1000)
    expect(batches.flat()).toHaveLength(25_000)
  })

  it('a cut never falls between the halves of a surrogate pair', () => {
    // 'a' then emoji (two UTF-16 units each): with 16 units a piece, a plain cut would split one.
    const pieces = splitLogChunks([chunk('a' + '😀'.repeat(40))], { maxChars: 16, maxChunks: 1000 }).flat()
    expect(pieces.length).toBeGreaterThan(1)
    for (const p of pieces) expect((p.data as unknown as { isWellFormed: () => boolean }).isWellFormed()).toBe(true)
    expect(pieces.map(p => p.data).join('')).toBe('a' + '😀'.repeat(40))
  })

  propTest.prop([fc.array(fc.record({ stream: fc.constantFrom('stdout' as const, 'stderr' as const), atMs: fc.nat(), data: fc.string({ unit: 'binary', maxLength: 50 }) }), { maxLength: 60 })])(
    'splitting keeps every character, in order, stream by stream, within the limits', (chunks) => {
      const limits = { maxChars: 16, maxChunks: 5 }
      const batches = splitLogChunks(chunks, limits)
      for (const b of batches) {
        expect(b.length).toBeLessThanOrEqual(limits.maxChunks)
        expect(b.reduce((n, c) => n + c.data.length, 0)).toBeLessThanOrEqual(limits.maxChars)
      }
      for (const stream of ['stdout', 'stderr'] as const) {
        expect(batches.flat().filter(c => c.stream === stream).map(c => c.data).join('')).toBe(chunks.filter(c => c.stream === stream).map(c => c.data).join(''))
      }
    })
})
