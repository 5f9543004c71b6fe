// agent/Dockerfile, as written, builds and runs on this host without an image registry:
// scripts/verify-agent-dockerfile.sh makes a local stand-in for node:20-bookworm-slim when the
// engine lacks it (Debian bookworm from the Debian mirror plus this host's Node 20 and npm),
// builds the Dockerfile with the classic builder (nothing pulled; npm packages from the npm
// registry; better-sqlite3 compiled from source), then starts an agent from the image with
// the host's Docker socket, waits for /healthz and runs a job to `succeeded` through the CLI
// inside the container, and removes everything it made.
//
// Slow: several minutes (debootstrap, apt-get, npm ci and a C++ compile on the build side).
// It never skips: without a Docker engine (or the job image) it fails and says what to do.
import { spawn } from 'node:child_process'
import { resolve } from 'node:path'
import { describe, expect, it } from 'vitest'
import { requireDocker } from '../support/docker.ts'

const ROOT = resolve(import.meta.dirname, '../..')
const BASE = 'node:20-bookworm-slim'
const TIMEOUT_MS = 30 * 60_000

interface Run { code: number | null, stdout: string, stderr: string }

async function run (cmd: string, args: string[], timeoutMs = 60_000): Promise<Run> {
  return await new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    // SIGTERM first: the script's trap removes what it made.
    const timer = setTimeout(() => { child.kill('SIGTERM') }, timeoutMs)
    child.once('error', err => { clearTimeout(timer); reject(err) })
    child.once('close', code => { clearTimeout(timer); resolve({ code, stdout, stderr }) })
  })
}

const lines = async (cmd: string, args: string[]): Promise<string[]> =>
  (await run(cmd, args)).stdout.split('\n').filter(Boolean)

describe('agent/Dockerfile', () => {
  it('builds offline against a stand-in base, and the image runs an agent that runs a job', async () => {
    await requireDocker()
    const baseBefore = (await run('docker', ['image', 'inspect', BASE])).code === 0
    const started = Date.now()
    const r = await run('bash', ['scripts/verify-agent-dockerfile.sh'], TIMEOUT_MS - 60_000)
    const seconds = Math.round((Date.now() - started) / 1000)
    console.log(`verify-agent-dockerfile: exit ${String(r.code)} after ${seconds} s\n` +
      r.stderr.split('\n').filter(l => /done in|timings|built |healthy|succeeded|FAILED/.test(l)).join('\n'))
    if (r.code !== 0) throw new Error(`scripts/verify-agent-dockerfile.sh failed (exit ${String(r.code)}):\n${r.stderr.slice(-6000)}`)

    expect(r.stdout).toMatch(/^verify-agent-dockerfile: OK in \d+ s$/m)
    expect(r.stderr).toMatch(/better-sqlite3 (compiled from source|prebuilt)/)
    expect(r.stderr).toContain('--help works; better-sqlite3 loads')
    expect(r.stderr).toMatch(/agent healthy: \{"ok":true,"peerId":"12D3KooW/)
    expect(r.stderr).toMatch(/job \S+ succeeded on the agent \(output: verify-\S+ 10000 \)/)
    expect(r.stderr).not.toContain('tried to pull')

    // Nothing it made is left: containers, the built image, the stand-in base.
    expect(await lines('docker', ['ps', '-aq', '--filter', 'label=bidmesh.verify=agent-dockerfile'])).toEqual([])
    expect((await lines('docker', ['images', '--format', '{{.Repository}}:{{.Tag}}'])).filter(t => t.startsWith('bidmesh/agent:verify-'))).toEqual([])
    expect((await run('docker', ['image', 'inspect', BASE])).code === 0).toBe(baseBefore)
  }, TIMEOUT_MS)
})
