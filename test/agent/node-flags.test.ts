// Every way an agent is started gives its node the same V8 flags (AGENT_NODE_FLAGS): the
// footprint the benchmarks measure is the footprint an installed agent has.
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { describe, expect, it } from 'vitest'
import { AGENT_NODE_FLAGS } from '../../src/constants.ts'

const ROOT = resolve(import.meta.dirname, '../..')
const read = (path: string): string => readFileSync(join(ROOT, path), 'utf8')

describe('the agent\'s node flags', () => {
  it('the systemd wrapper runs node with them before the entry point', () => {
    const printed = execFileSync(join(ROOT, 'agent/bidmesh-agent'), ['--print'], {
      env: { ...process.env, BIDMESH_CONFIG: join(ROOT, 'agent/agent.yaml'), BIDMESH_HOME: ROOT, BIDMESH_NODE: process.execPath },
      encoding: 'utf8'
    }).trim().split('\n')
    const node = printed.indexOf(process.execPath)
    expect(node).toBeGreaterThanOrEqual(0)
    expect(printed.slice(node + 1, node + 2 + AGENT_NODE_FLAGS.length)).toEqual([...AGENT_NODE_FLAGS, join(ROOT, 'bin/bidmesh.js')])
  })

  it('the agent image\'s entry point runs node with them', () => {
    const line = read('agent/Dockerfile').split('\n').find(l => l.startsWith('ENTRYPOINT '))
    expect(line).toBeDefined()
    expect(JSON.parse(line!.slice('ENTRYPOINT '.length))).toEqual(['node', ...AGENT_NODE_FLAGS, '/app/bin/bidmesh.js'])
  })

  it('the compose image (scripts/build-agent-image.sh) runs node with them', () => {
    const line = read('scripts/build-agent-image.sh').split('\n').find(l => l.includes("-c 'ENTRYPOINT "))
    expect(line).toBeDefined()
    const entrypoint = /'ENTRYPOINT (.*)'/.exec(line!)![1]
    expect(JSON.parse(entrypoint)).toEqual(['/usr/local/bin/node', ...AGENT_NODE_FLAGS, '/app/bin/bidmesh.js'])
  })

  it('bin/bidmesh.js, run as a program, passes them through its shebang', () => {
    expect(read('bin/bidmesh.js').split('\n')[0]).toBe(`#!/usr/bin/env -S node ${AGENT_NODE_FLAGS.join(' ')}`)
    // env -S splits the line: the program starts (node would refuse a flag it did not know).
    const version = execFileSync(join(ROOT, 'bin/bidmesh.js'), ['--version'], { encoding: 'utf8' }).trim()
    expect(version).toBe(JSON.parse(read('package.json')).version)
  })

  it('node takes them: after much short-lived garbage the young generation stays at 2 × 2 MiB', () => {
    // Without the flag V8 grows new space to 32 MiB under this allocation rate.
    const script = `let keep = []
for (let i = 0; i < 2e6; i++) { keep.push({ i, s: 'x' + i }); if (keep.length > 1000) keep = [] }
const v8 = require('node:v8')
process.stdout.write(String(v8.getHeapSpaceStatistics().find(s => s.space_name === 'new_space').space_size))`
    const withFlags = Number(execFileSync(process.execPath, [...AGENT_NODE_FLAGS, '-e', script], { encoding: 'utf8' }))
    const without = Number(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8' }))
    expect(withFlags).toBeLessThanOrEqual(2 * 2 * 1024 * 1024)
    expect(without).toBeGreaterThan(withFlags)
  })
})
