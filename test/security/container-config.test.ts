// The executor's container settings and refusals, without an engine: pure functions and a
// fake Docker client. The real-engine behaviour is in escape.test.ts.
import { describe, expect, it } from 'vitest'
import type Docker from 'dockerode'
import { checkMounts, containerCreateOptions, DOCKER_EXECUTOR_DEFAULTS, dockerExecutor, isRootUser, networkModeFor, type DockerExecutorSettings } from '../../src/runtime/docker-executor.ts'
import { redactSecrets, REDACTED } from '../../src/protocol/redact.ts'
import type { JobSpec } from '../../src/protocol/job-spec.ts'

const spec: JobSpec = { image: 'bidmesh/busybox:latest', command: ['true'], env: { API_KEY: 'sk-live-1234567890', SHORT: 'no' }, cpuMilli: 500, memoryBytes: 64 * 2 ** 20, pidsLimit: 64, timeoutMs: 10_000, retries: 0, constraints: {}, network: 'none' }
const settings = { ...DOCKER_EXECUTOR_DEFAULTS } as DockerExecutorSettings

describe('container create options (CIS Docker runtime settings)', () => {
  const o = containerCreateOptions({ jobId: 'j', epoch: 1, spec }, { name: 'n', nodeId: 'node', settings, networkMode: 'none', mounts: [] })
  const hc = o.HostConfig as Record<string, any>

  it.each([
    ['memory limit', () => hc.Memory === spec.memoryBytes],
    ['no swap (swap = memory)', () => hc.MemorySwap === spec.memoryBytes],
    ['CPU quota', () => hc.NanoCpus === 500e6],
    ['pids limit', () => hc.PidsLimit === 64],
    ['all capabilities dropped, none added', () => hc.CapDrop.includes('ALL') && hc.CapAdd.length === 0],
    ['no-new-privileges', () => hc.SecurityOpt.includes('no-new-privileges')],
    ['default seccomp (no seccomp option, never unconfined)', () => !JSON.stringify(hc.SecurityOpt).includes('seccomp') && !JSON.stringify(o).includes('unconfined')],
    ['never privileged', () => hc.Privileged === false],
    ['read-only rootfs', () => hc.ReadonlyRootfs === true],
    ['tmpfs /work and /tmp, bounded', () => /size=67108864/.test(hc.Tmpfs['/work']) && /size=67108864/.test(hc.Tmpfs['/tmp'])],
    ['non-root user', () => o.User === '10000:10000'],
    ['network none', () => hc.NetworkMode === 'none'],
    ['no host PID/IPC/UTS/user namespaces', () => hc.PidMode === '' && hc.IpcMode === 'private' && hc.UTSMode === '' && hc.UsernsMode === ''],
    ['private cgroup namespace', () => hc.CgroupnsMode === 'private'],
    ['no binds, no mounts, no devices', () => hc.Binds.length === 0 && hc.Mounts.length === 0 && hc.Devices.length === 0],
    ['no published ports', () => hc.PublishAllPorts === false && Object.keys(hc.PortBindings).length === 0],
    ['ulimits nofile and nproc', () => hc.Ulimits.some((u: any) => u.Name === 'nofile' && u.Soft === 1024 && u.Hard === 4096) && hc.Ulimits.some((u: any) => u.Name === 'nproc' && u.Hard === 16384)],
    ['small /dev/shm', () => hc.ShmSize === 16 * 2 ** 20],
    ['jobs die before the agent on host OOM', () => hc.OomScoreAdj > 0 && hc.OomKillDisable === false],
    ['the container is never removed before we read its result', () => hc.AutoRemove === false]
  ])('%s', (_name, holds) => {
    expect(holds()).toBe(true)
  })

  it('mounts, when allowed, are read-only binds with private propagation', () => {
    const m = containerCreateOptions({ jobId: 'j', epoch: 1, spec }, { name: 'n', nodeId: 'node', settings, networkMode: 'none', mounts: [{ source: '/data/in', target: '/in' }] })
    expect(m.HostConfig!.Mounts).toEqual([{ Type: 'bind', Source: '/data/in', Target: '/in', ReadOnly: true, BindOptions: { Propagation: 'rprivate' } }])
    expect(m.HostConfig!.Binds).toEqual([])
  })
})

describe('network and mount policy', () => {
  it.each([
    ['none', false, 'none'], [undefined, false, 'none'], ['bridge', true, 'bridge'],
    ['bridge', false, 'NetworkNotAllowedError'], ['host', true, 'NetworkNotAllowedError'], ['container:abc', true, 'NetworkNotAllowedError'], ['mynet', true, 'NetworkNotAllowedError']
  ])('network %s (allowNetwork %s) → %s', (network, allow, expected) => {
    const r = networkModeFor(network, allow)
    expect(r.ok ? r.mode : r.error.name).toBe(expected)
  })

  const allowed = ['/data', '/var/run', '/']
  it.each([
    ['/data/in', '/in', 'ok'],
    ['/data', '/d', 'ok'],
    ['/datax/in', '/in', 'not-listed'],
    ['/data/../etc', '/x', 'not-listed'],
    ['data/in', '/in', 'not-absolute'],
    ['/var/run/docker.sock', '/s', 'docker-socket'],
    ['/run/docker.sock', '/s', 'docker-socket'],
    ['/var/run', '/r', 'docker-socket'],
    ['/var', '/r', 'docker-socket'],
    ['/', '/r', 'docker-socket'],
    ['/data/x/containerd.sock', '/s', 'docker-socket'],
    ['/data/in', '/', 'target'],
    ['/data/in', '/proc/1', 'target'],
    ['/data/in', '/sys', 'target'],
    ['/data/in', '/dev/sda', 'target'],
    ['/data/in', 'rel', 'target']
  ])('mount %s → %s: %s', (hostPath, containerPath, expected) => {
    const r = checkMounts([{ hostPath, containerPath }], hostPath === '/data/in' || hostPath.startsWith('/data') ? allowed.slice(0, 1) : allowed)
    expect(r.ok ? 'ok' : r.error.problem).toBe(expected)
  })

  it('no allowed paths: no mounts at all; too many mounts refused', () => {
    expect(checkMounts([{ hostPath: '/data', containerPath: '/d' }], [])).toMatchObject({ ok: false })
    expect(checkMounts(Array.from({ length: 17 }, () => ({ hostPath: '/data', containerPath: '/d' })), ['/data'])).toMatchObject({ ok: false, error: { problem: 'too-many' } })
  })

  it.each([['root', true], ['0', true], ['0:0', true], ['000:10', true], ['', true], ['10000:10000', false], ['nobody', false], ['65534', false]])('isRootUser(%j) = %s', (u, root) => {
    expect(isRootUser(u)).toBe(root)
  })

  it('refuses to be configured to run jobs as root', () => {
    expect(() => dockerExecutor({ user: '0:0' })({ nodeId: 'n', docker: {} as Docker })).toThrow(expect.objectContaining({ name: 'InsecureExecutorConfigError' }))
    expect(() => dockerExecutor({ user: 'root', allowRootUser: true })({ nodeId: 'n', docker: {} as Docker })).not.toThrow()
  })
})

describe('secrets', () => {
  it.each([
    ['plain', 'token=sk-live-1234567890 failed', ['sk-live-1234567890'], `token=${REDACTED} failed`],
    ['several, longest first', 'a=abcdef b=abc', ['abc', 'abcdef'], `a=${REDACTED} b=${REDACTED}`],
    ['JSON-escaped', '{"Env":["K=va\\"lue"]}', ['va"lue'], `{"Env":["K=${REDACTED}"]}`],
    ['empty secret ignored', 'hello', [''], 'hello'],
    ['no secrets', 'hello', [], 'hello']
  ])('redactSecrets: %s', (_name, text, secrets, expected) => {
    expect(redactSecrets(text, secrets)).toBe(expected)
  })

  it('the executor never logs or reports env values, even when the engine quotes them back', async () => {
    const logged: string[] = []
    const capture = (obj: object, msg?: string): void => { logged.push(JSON.stringify(obj) + ' ' + (msg ?? '')) }
    // An engine that refuses the create and echoes the whole request in its error, as some do.
    const fake = {
      getImage: () => ({ inspect: async () => ({}) }),
      getContainer: () => ({ remove: async () => { throw Object.assign(new Error('no such container'), { statusCode: 404 }) } }),
      createContainer: async (opts: object) => { throw Object.assign(new Error(`invalid request: ${JSON.stringify(opts)}`), { statusCode: 400, json: { message: `invalid request: ${JSON.stringify(opts)}` } }) },
      modem: {}
    } as unknown as Docker
    const ex = dockerExecutor()({ docker: fake, nodeId: 'n', logger: { info: capture, warn: capture, error: capture, debug: capture } })
    const r = await ex.run({ jobId: 'j', epoch: 1, spec })
    expect(r.reason).toBe('error')
    expect(r.error?.message).toContain('API_KEY=')
    expect(r.error?.message).not.toContain('sk-live-1234567890')
    expect(logged.length).toBeGreaterThan(0)
    for (const line of logged) expect(line).not.toContain('sk-live-1234567890')
  })
})
