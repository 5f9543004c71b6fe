// Private mesh: a pre-shared swarm key (libp2p pnet, XSalsa20 over every connection, before
// noise). A peer without the key never completes a handshake, so it never reaches identify,
// gossipsub or the rpc protocol. This module reads and checks key files; it fails closed:
// an agent told to be private never starts public, and a malformed key is an error, never
// "no key".
import { randomBytes } from 'node:crypto'
import { open, readFile, stat } from 'node:fs/promises'

/** Header lines of a libp2p pnet v1 key file (the same format as go-ipfs/kubo's swarm.key). */
export const SWARM_KEY_HEADER = '/key/swarm/psk/1.0.0/'
export const SWARM_KEY_CODEC = '/base16/'
/** The key itself: 32 random bytes (XSalsa20's key size). */
export const SWARM_KEY_BYTES = 32
/** A key file is ~96 bytes; anything much larger is not a key file. */
const MAX_KEY_FILE_BYTES = 1024

export class SwarmKeyRequiredError extends Error {
  static readonly code = 'ERR_SWARM_KEY_REQUIRED'
  readonly code = SwarmKeyRequiredError.code
  constructor (readonly detail: 'missing' | 'invalid' = 'missing', options?: ErrorOptions) {
    super(detail === 'missing'
      ? 'a private mesh was required but no swarm key was given'
      : 'a private mesh was required but the swarm key is not valid', options)
    this.name = 'SwarmKeyRequiredError'
  }
}

export type SwarmKeyProblem = 'header' | 'codec' | 'length' | 'hex' | 'weak' | 'trailing' | 'size'

export class InvalidSwarmKeyError extends Error {
  static readonly code = 'ERR_INVALID_SWARM_KEY'
  readonly code = InvalidSwarmKeyError.code
  constructor (readonly problem: SwarmKeyProblem, readonly path?: string, options?: ErrorOptions) {
    const where = path !== undefined ? ` in ${path}` : ''
    const what: Record<SwarmKeyProblem, string> = {
      header: `first line must be ${SWARM_KEY_HEADER}`,
      codec: `second line must be ${SWARM_KEY_CODEC}`,
      length: `third line must be ${SWARM_KEY_BYTES * 2} hex digits`,
      hex: 'third line must contain only hex digits',
      weak: 'the key has almost no entropy (generate one with `bidmesh keygen`)',
      trailing: 'unexpected content after the key',
      size: 'the file is far too large to be a swarm key'
    }
    super(`malformed swarm key${where}: ${what[problem]}`, options)
    this.name = 'InvalidSwarmKeyError'
  }
}

export class InsecureSwarmKeyFileError extends Error {
  static readonly code = 'ERR_INSECURE_SWARM_KEY_FILE'
  readonly code = InsecureSwarmKeyFileError.code
  constructor (readonly path: string, readonly mode: number, options?: ErrorOptions) {
    super(`swarm key ${path} is readable or writable by other users (mode ${(mode & 0o777).toString(8).padStart(3, '0')}); run chmod 600 on it`, options)
    this.name = 'InsecureSwarmKeyFileError'
  }
}

/** Encodes a 32-byte key as the key-file text. */
export function formatSwarmKey (key: Uint8Array): Uint8Array {
  if (key.byteLength !== SWARM_KEY_BYTES) throw new InvalidSwarmKeyError('length')
  return new TextEncoder().encode(`${SWARM_KEY_HEADER}\n${SWARM_KEY_CODEC}\n${Buffer.from(key).toString('hex')}\n`)
}

/** A fresh key file content (32 bytes from the OS CSPRNG). */
export function generateSwarmKeyFile (): Uint8Array {
  return formatSwarmKey(randomBytes(SWARM_KEY_BYTES))
}

/**
 * Parses and checks a key file strictly: exactly the header, the codec and 64 hex digits,
 * optionally followed by one newline (LF or CRLF line ends). Returns the 32 key bytes.
 * Stricter than @libp2p/pnet's own reader, which ignores the first two lines: a file with
 * the wrong header is almost always the wrong file.
 */
export function parseSwarmKey (content: Uint8Array | string, path?: string): Uint8Array {
  if (typeof content !== 'string' && content.byteLength > MAX_KEY_FILE_BYTES) throw new InvalidSwarmKeyError('size', path)
  const text = typeof content === 'string' ? content : new TextDecoder('utf-8', { fatal: false }).decode(content)
  if (text.length > MAX_KEY_FILE_BYTES) throw new InvalidSwarmKeyError('size', path)
  const lines = text.split(/\r?\n/)
  // One trailing newline gives one empty last element; more content is refused.
  if (lines.length > 3 && !(lines.length === 4 && lines[3] === '')) throw new InvalidSwarmKeyError('trailing', path)
  if (lines[0] !== SWARM_KEY_HEADER) throw new InvalidSwarmKeyError('header', path)
  if (lines[1] !== SWARM_KEY_CODEC) throw new InvalidSwarmKeyError('codec', path)
  const hex = lines[2] ?? ''
  if (!/^[0-9a-fA-F]*$/.test(hex)) throw new InvalidSwarmKeyError('hex', path)
  if (hex.length !== SWARM_KEY_BYTES * 2) throw new InvalidSwarmKeyError('length', path)
  const key = Uint8Array.from(Buffer.from(hex, 'hex'))
  // A key of few distinct bytes (all zeros, a repeated pattern) was typed, not generated.
  if (new Set(key).size < 8) throw new InvalidSwarmKeyError('weak', path)
  return key
}

/** The canonical key-file bytes @libp2p/pnet's preSharedKey() expects, from any valid file. */
export function canonicalSwarmKeyFile (content: Uint8Array | string, path?: string): Uint8Array {
  return formatSwarmKey(parseSwarmKey(content, path))
}

/**
 * Reads a key file. Refuses one that other users can read or write (like ssh does with
 * private keys): whoever reads it can join the mesh. Returns the canonical file bytes.
 */
export async function readSwarmKeyFile (path: string, options: { allowGroupReadable?: boolean } = {}): Promise<Uint8Array> {
  const st = await stat(path)
  const forbidden = options.allowGroupReadable === true ? 0o007 : 0o077
  if (process.platform !== 'win32' && (st.mode & forbidden) !== 0) throw new InsecureSwarmKeyFileError(path, st.mode)
  if (st.size > MAX_KEY_FILE_BYTES) throw new InvalidSwarmKeyError('size', path)
  return canonicalSwarmKeyFile(await readFile(path), path)
}

/**
 * Decides the mesh's connection protection, before anything is created:
 *  - a key that does not parse is always an error (never silently "no key");
 *  - requirePrivate without a key is SwarmKeyRequiredError;
 *  - otherwise the canonical key file for preSharedKey(), or undefined for a public mesh.
 */
export function resolveSwarmKey (init: { swarmKey?: Uint8Array, requirePrivate?: boolean }): Uint8Array | undefined {
  if (init.swarmKey === undefined || init.swarmKey.byteLength === 0) {
    if (init.requirePrivate === true) throw new SwarmKeyRequiredError('missing')
    return undefined
  }
  try {
    return canonicalSwarmKeyFile(init.swarmKey)
  } catch (err) {
    if (init.requirePrivate === true) throw new SwarmKeyRequiredError('invalid', { cause: err })
    throw err
  }
}

/** Writes a new key file, mode 0600, refusing to overwrite anything (O_EXCL). */
export async function writeSwarmKeyFile (path: string, content: Uint8Array): Promise<void> {
  const fh = await open(path, 'wx', 0o600)
  try {
    await fh.writeFile(content)
    // The umask cannot widen 0600, but a pre-set default ACL could: say what we mean.
    await fh.chmod(0o600)
  } finally {
    await fh.close()
  }
}
