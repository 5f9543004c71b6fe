// Errors the embedded store throws. Each carries a stable `code` so callers (the agent,
// the API layer) can branch on the kind of failure without matching message text.

/**
 * A stored row could not be decoded, or decoded to something that is not the record it
 * should be. The data on disk is damaged or was written by something else; the store
 * never "repairs" it silently, because guessing would turn damage into wrong answers.
 */
export class StoreCorruptError extends Error {
  static readonly code = 'ERR_STORE_CORRUPT'
  readonly code = StoreCorruptError.code
  constructor (readonly table: string, readonly key: string, detail: string, options?: ErrorOptions) {
    super(`corrupt row in ${table} (${key}): ${detail}`, options)
    this.name = 'StoreCorruptError'
  }
}

/**
 * The caller handed the store a record it cannot keep: a key field of the wrong type,
 * or a value msgpackr cannot encode (a symbol, a cycle, a bigint beyond 64 bits).
 * Thrown before anything is written.
 */
export class StoreInvalidRecordError extends Error {
  static readonly code = 'ERR_STORE_INVALID_RECORD'
  readonly code = StoreInvalidRecordError.code
  constructor (readonly kind: string, detail: string, options?: ErrorOptions) {
    super(`cannot store ${kind}: ${detail}`, options)
    this.name = 'StoreInvalidRecordError'
  }
}

/**
 * The database file was created by a newer bidmesh (its schema version is above the
 * newest migration this build knows). Opening it anyway could misread or clobber
 * columns that the newer code relies on, so the store refuses.
 */
export class StoreVersionError extends Error {
  static readonly code = 'ERR_STORE_VERSION'
  readonly code = StoreVersionError.code
  constructor (readonly found: number, readonly supported: number, options?: ErrorOptions) {
    super(`database schema version ${found} is newer than this build supports (${supported})`, options)
    this.name = 'StoreVersionError'
  }
}

/** A method was called after close(). */
export class StoreClosedError extends Error {
  static readonly code = 'ERR_STORE_CLOSED'
  readonly code = StoreClosedError.code
  constructor (options?: ErrorOptions) {
    super('the store is closed', options)
    this.name = 'StoreClosedError'
  }
}

/**
 * Flushing the write-ahead log to stable storage failed. Sticky: after a failed fdatasync the
 * kernel may have dropped the dirty pages and marked them clean, so a later flush that
 * "succeeds" proves nothing about the commits before it. Every later sync() fails with this
 * error until the store is reopened (SQLite then recovers from what the WAL really holds).
 */
export class StoreFlushError extends Error {
  static readonly code = 'ERR_STORE_FLUSH'
  readonly code = StoreFlushError.code
  constructor (readonly path: string, options?: ErrorOptions) {
    super(`could not flush ${path} to stable storage`, options)
    this.name = 'StoreFlushError'
  }
}
