// Swarm key files: generation, strict parsing, file permissions, the agent's --swarm-key and
// other security options, and the fail-closed rule (requirePrivate without a key).
import { chmod, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { generateSwarmKey, runKeygen } from '../../src/cli/keygen.ts'
import { resolveSecurityOptions } from '../../src/cli/run-agent.ts'
import { createLibp2pMesh } from '../../src/mesh/libp2p-mesh.ts'
import { parseSwarmKey, readSwarmKeyFile, resolveSwarmKey } from '../../src/mesh/security.ts'

const dir = await mkdtemp(join(tmpdir(), 'bidmesh-swarmkey-'))
afterAll(async () => { await rm(dir, { recursive: true, force: true }) })

const HEX = 'dffb7e3135399a8b1612b2aaca1c36a3a8ac2cd0cca51ceeb2ced87d308cac6d'

describe('swarm key format', () => {
  it('generateSwarmKey makes a pnet v1 key file that parses to 32 bytes, different each time', () => {
    const a = generateSwarmKey()
    const text = new TextDecoder().decode(a)
    expect(text).toMatch(/^\/key\/swarm\/psk\/1\.0\.0\/\n\/base16\/\n[0-9a-f]{64}\n$/)
    expect(parseSwarmKey(a).byteLength).toBe(32)
    expect(Buffer.from(generateSwarmKey())).not.toEqual(Buffer.from(a))
  })

  it.each([
    ['LF', `/key/swarm/psk/1.0.0/\n/base16/\n${HEX}`, undefined],
    ['trailing LF', `/key/swarm/psk/1.0.0/\n/base16/\n${HEX}\n`, undefined],
    ['CRLF', `/key/swarm/psk/1.0.0/\r\n/base16/\r\n${HEX}\r\n`, undefined],
    ['upper-case hex', `/key/swarm/psk/1.0.0/\n/base16/\n${HEX.toUpperCase()}\n`, undefined],
    ['wrong header', `/key/swarm/psk/2.0.0/\n/base16/\n${HEX}\n`, 'header'],
    ['wrong codec', `/key/swarm/psk/1.0.0/\n/base64/\n${HEX}\n`, 'codec'],
    ['short key', `/key/swarm/psk/1.0.0/\n/base16/\n${HEX.slice(2)}\n`, 'length'],
    ['long key', `/key/swarm/psk/1.0.0/\n/base16/\n${HEX}00\n`, 'length'],
    ['not hex', `/key/swarm/psk/1.0.0/\n/base16/\n${HEX.slice(1)}g\n`, 'hex'],
    ['all zeros', `/key/swarm/psk/1.0.0/\n/base16/\n${'0'.repeat(64)}\n`, 'weak'],
    ['extra lines', `/key/swarm/psk/1.0.0/\n/base16/\n${HEX}\nmore\n`, 'trailing'],
    ['empty', '', 'header'],
    ['huge', 'x'.repeat(4096), 'size']
  ])('%s', (_name, content, problem) => {
    if (problem === undefined) expect(Buffer.from(parseSwarmKey(content)).toString('hex')).toBe(HEX)
    else expect(() => parseSwarmKey(content)).toThrow(expect.objectContaining({ name: 'InvalidSwarmKeyError', problem }))
  })

  it('resolveSwarmKey fails closed', () => {
    expect(resolveSwarmKey({})).toBeUndefined()
    expect(() => resolveSwarmKey({ requirePrivate: true })).toThrow(expect.objectContaining({ name: 'SwarmKeyRequiredError', detail: 'missing' }))
    expect(() => resolveSwarmKey({ requirePrivate: true, swarmKey: new Uint8Array(0) })).toThrow(expect.objectContaining({ name: 'SwarmKeyRequiredError' }))
    expect(() => resolveSwarmKey({ requirePrivate: true, swarmKey: new TextEncoder().encode('junk') })).toThrow(expect.objectContaining({ name: 'SwarmKeyRequiredError', detail: 'invalid' }))
    // A key given but malformed is an error even when privacy was not required.
    expect(() => resolveSwarmKey({ swarmKey: new TextEncoder().encode('junk') })).toThrow(expect.objectContaining({ name: 'InvalidSwarmKeyError' }))
    expect(parseSwarmKey(resolveSwarmKey({ requirePrivate: true, swarmKey: generateSwarmKey() })!).byteLength).toBe(32)
  })

  it('createLibp2pMesh with requirePrivate and no key throws before creating anything (no identity written)', async () => {
    const dataDir = join(dir, 'never-created')
    await expect(createLibp2pMesh({ dataDir, listen: ['/ip4/127.0.0.1/tcp/0'], requirePrivate: true }))
      .rejects.toMatchObject({ name: 'SwarmKeyRequiredError' })
    await expect(stat(dataDir)).rejects.toMatchObject({ code: 'ENOENT' })
    await expect(createLibp2pMesh({ dataDir, listen: ['/ip4/127.0.0.1/tcp/0'], requirePrivate: true, swarmKey: new TextEncoder().encode('/key/swarm/psk/1.0.0/\n/base16/\nzz') }))
      .rejects.toMatchObject({ name: 'SwarmKeyRequiredError', detail: 'invalid' })
    await expect(stat(dataDir)).rejects.toMatchObject({ code: 'ENOENT' })
  })
})

describe('keygen and key files', () => {
  it('runKeygen writes a 0600 key file and refuses to overwrite it (or follow a symlink)', async () => {
    const out = join(dir, 'swarm.key')
    const { path } = await runKeygen({ out })
    expect(path).toBe(out)
    expect((await stat(out)).mode & 0o777).toBe(0o600)
    const before = await readFile(out)
    await expect(runKeygen({ out })).rejects.toMatchObject({ name: 'SwarmKeyExistsError' })
    expect(await readFile(out)).toEqual(before)
    const link = join(dir, 'dangling.key')
    await symlink(join(dir, 'nowhere'), link)
    await expect(runKeygen({ out: link })).rejects.toMatchObject({ name: 'SwarmKeyExistsError' })
    expect(parseSwarmKey(await readSwarmKeyFile(out)).byteLength).toBe(32)
  })

  it('readSwarmKeyFile refuses a key other users can read', async () => {
    const out = join(dir, 'loose.key')
    await writeFile(out, generateSwarmKey(), { mode: 0o644 })
    await chmod(out, 0o644)
    await expect(readSwarmKeyFile(out)).rejects.toMatchObject({ name: 'InsecureSwarmKeyFileError' })
  })
})

describe('agent security options (run-agent)', () => {
  it('--swarm-key implies private and yields the canonical key', async () => {
    const out = join(dir, 'agent.key')
    await runKeygen({ out })
    const r = await resolveSecurityOptions({ swarmKey: out })
    expect(r.requirePrivate).toBe(true)
    expect(parseSwarmKey(r.swarmKey!).byteLength).toBe(32)
    expect(r.allowNetwork).toBe(false)
    expect(r.allowedHostPaths).toEqual([])
    expect(r.publishers).toEqual({ any: true })
  })

  it.each([
    ['missing key file', { swarmKey: join(dir, 'absent.key') }],
    ['malformed key file', { swarmKey: 'MALFORMED' }],
    ['relative host path', { allowHostPaths: ['data'] }],
    ['bad publisher', { publishers: ['someone'] }],
    ['short api token', { apiTokenFile: 'SHORT' }]
  ])('%s → AgentConfigError', async (_name, o) => {
    const opts = { ...o } as Record<string, unknown>
    if (opts.swarmKey === 'MALFORMED') {
      opts.swarmKey = join(dir, 'malformed.key')
      await writeFile(opts.swarmKey as string, 'not a key\n', { mode: 0o600 })
    }
    if (opts.apiTokenFile === 'SHORT') {
      opts.apiTokenFile = join(dir, 'token')
      await writeFile(opts.apiTokenFile as string, 'abc\n', { mode: 0o600 })
    }
    await expect(resolveSecurityOptions(opts)).rejects.toMatchObject({ name: 'AgentConfigError', code: 'ERR_AGENT_CONFIG' })
  })
})
