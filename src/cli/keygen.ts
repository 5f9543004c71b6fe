// `bidmesh keygen`: makes a swarm key for a private mesh. Every agent of the mesh is started
// with the same file (`bidmesh agent --swarm-key FILE`); a peer without it cannot connect.
import { resolve } from 'node:path'
import { generateSwarmKeyFile, writeSwarmKeyFile } from '../mesh/security.ts'

export class SwarmKeyExistsError extends Error {
  static readonly code = 'ERR_SWARM_KEY_EXISTS'
  readonly code = SwarmKeyExistsError.code
  constructor (readonly path: string, options?: ErrorOptions) {
    super(`${path} already exists; refusing to overwrite a swarm key (agents using it would be cut off)`, options)
    this.name = 'SwarmKeyExistsError'
  }
}

/** The content of a new key file (libp2p pnet v1 format, 32 random bytes in hex). */
export function generateSwarmKey (): Uint8Array {
  return generateSwarmKeyFile()
}

/** Writes a new key file at `out` with mode 0600. Never overwrites: an existing file (or a
 *  symlink, dangling or not) is SwarmKeyExistsError. Returns the absolute path written. */
export async function runKeygen (options: { out: string }): Promise<{ path: string }> {
  const path = resolve(options.out)
  try {
    await writeSwarmKeyFile(path, generateSwarmKey())
  } catch (err) {
    if ((err as NodeJS.ErrnoException)?.code === 'EEXIST') throw new SwarmKeyExistsError(path, { cause: err })
    throw err
  }
  return { path }
}
