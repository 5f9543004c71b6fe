// Container escapes, tried for real: jobs run through the Docker executor, each trying one
// thing a job must not be able to do. None may succeed, and a well-behaved job running at the
// same time must still finish normally. Needs the local engine and bidmesh/busybox:latest.
import { readFile } from 'node:fs/promises'
import Docker from 'dockerode'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { dockerExecutor } from '../../src/runtime/docker-executor.ts'
import type { AttemptResult, Executor } from '../../src/runtime/executor.ts'
import type { JobSpec } from '../../src/protocol/job-spec.ts'
import { requireDocker } from '../support/docker.ts'

const IMAGE = process.env.BIDMESH_TEST_IMAGE ?? 'bidmesh/busybox:latest'
const MiB = 1024 * 1024
const RUN = `esc-${Date.now()}`
let docker: Docker
let executor: Executor
let seq = 0

beforeAll(async () => {
  docker = await requireDocker()
  // The socket's directory is even listed as allowed: the executor must still refuse it.
  executor = dockerExecutor({ stopGraceMs: 1000, allowedHostPaths: ['/var/run', '/run', '/tmp'] })({ docker, nodeId: 'escape-test' })
})

afterAll(async () => {
  const all = await docker.listContainers({ all: true, filters: { label: ['bidmesh.managed=true'] } })
  await Promise.all(all.filter(c => (c.Labels['bidmesh.job'] ?? '').startsWith(RUN)).map(async c => await docker.getContainer(c.Id).remove({ force: true }).catch(() => {})))
})

interface Run { result: AttemptResult, out: string, containerId?: string, maxPids?: number }

async function run (script: string, over: Partial<JobSpec> & { mounts?: unknown } = {}, options: { watchPids?: boolean } = {}): Promise<Run> {
  const spec = { image: IMAGE, command: ['/bin/sh', '-c', script], env: {}, cpuMilli: 500, memoryBytes: 64 * MiB, pidsLimit: 64, timeoutMs: 15_000, retries: 0, constraints: {}, network: 'none', ...over } as JobSpec
  let out = ''
  let containerId: string | undefined
  let maxPids: number | undefined
  let watching = true
  let watcher: Promise<void> | undefined
  const result = await executor.run({ jobId: `${RUN}-${++seq}`, epoch: 1, spec }, {
    onStarted: ({ containerId: id }) => {
      containerId = id
      if (options.watchPids === true) {
        watcher = (async () => {
          while (watching) {
            const cur = await pidsNow(id)
            if (cur === undefined) return
            maxPids = Math.max(maxPids ?? 0, cur)
            await new Promise(resolve => setTimeout(resolve, 50))
          }
        })()
      }
    },
    onOutput: (_stream, chunk) => { out += Buffer.from(chunk).toString() }
  })
  watching = false
  await watcher
  return { result, out, ...(containerId !== undefined ? { containerId } : {}), ...(maxPids !== undefined ? { maxPids } : {}) }
}

/** The container's pids cgroup counter: read from the host's cgroup tree when this runs next
 *  to the engine (v1 and v2 layouts), else from the engine's one-shot stats. */
async function pidsNow (id: string): Promise<number | undefined> {
  for (const path of [`/sys/fs/cgroup/pids/docker/${id}/pids.current`, `/sys/fs/cgroup/system.slice/docker-${id}.scope/pids.current`, `/sys/fs/cgroup/docker/${id}/pids.current`]) {
    try { return Number((await readFile(path, 'utf8')).trim()) } catch {}
  }
  try {
    const st = await docker.getContainer(id).stats({ stream: false, 'one-shot': true } as any) as unknown as { pids_stats?: { current?: number } }
    return st.pids_stats?.current
  } catch { return undefined }
}

function firstLine (r: Run): string {
  const text = r.out.split('\n').map(l => l.trim()).filter(l => l !== '' && !l.startsWith('rc=')).join(' | ')
  const head = r.result.error !== undefined ? `${r.result.error.name}` : `${r.result.reason} ${r.result.exitCode ?? ''}`.trim()
  return `${head}: ${text}`.slice(0, 90)
}

const SECRET = `s3cr3t-${Math.random().toString(36).slice(2)}`

interface Attempt {
  name: string
  expected: string
  go: () => Promise<Run>
  /** returns true when the attempt did NOT succeed at the forbidden thing (as expected) */
  refused: (r: Run) => boolean
}

const denied = /Operation not permitted|Permission denied|permission denied|Read-only file system|not permitted|must be suid|can't|No such file|not found|unreachable|Network is unreachable|bad address|Invalid argument|No space left/i

const attempts: Attempt[] = [
  { name: 'mount a tmpfs', expected: 'EPERM (no CAP_SYS_ADMIN)', go: async () => await run('mkdir -p /tmp/m; mount -t tmpfs x /tmp/m 2>&1 && echo ESCAPED; echo rc=$?'), refused: r => !r.out.includes('ESCAPED') && denied.test(r.out) },
  { name: 'unshare -r (user namespace)', expected: 'EPERM (seccomp)', go: async () => await run('unshare -r id -u 2>&1 && echo ESCAPED'), refused: r => !r.out.includes('ESCAPED') && /not permitted/i.test(r.out) },
  { name: 'unshare -n (net namespace)', expected: 'EPERM', go: async () => await run('unshare -n true 2>&1 && echo ESCAPED'), refused: r => !r.out.includes('ESCAPED') && /not permitted/i.test(r.out) },
  { name: 'raw socket (ping)', expected: 'no CAP_NET_RAW', go: async () => await run('ping -c1 -W1 127.0.0.1 2>&1 && echo ESCAPED'), refused: r => !r.out.includes('ESCAPED') && /permission denied|not permitted/i.test(r.out) },
  { name: 'raw socket (traceroute)', expected: 'no CAP_NET_RAW', go: async () => await run('traceroute -m1 127.0.0.1 2>&1 && echo ESCAPED'), refused: r => !r.out.includes('ESCAPED') && /not permitted|permission denied/i.test(r.out) },
  { name: 'write to / (touch /x)', expected: 'read-only rootfs', go: async () => await run('touch /x 2>&1 && echo ESCAPED; echo hi > /bin/evil 2>&1 && echo ESCAPED'), refused: r => !r.out.includes('ESCAPED') && /Read-only/.test(r.out) },
  { name: 'use 2x its memory', expected: 'OOM-killed (reason oom)', go: async () => await run('head -c 128m /dev/zero | tail', { memoryBytes: 64 * MiB }), refused: r => r.result.reason === 'oom' },
  { name: 'fill /dev/shm past its size', expected: 'ENOSPC at 16 MiB', go: async () => await run('head -c 32m /dev/zero > /dev/shm/big 2>&1 || echo FULL; ls -l /dev/shm/big | awk "{print \\$5}"'), refused: r => r.out.includes('FULL') && !/^33554432$/m.test(r.out) },
  { name: 'network egress (wget, nc)', expected: 'network none: unreachable', go: async () => await run('wget -T 2 -q -O- http://10.0.0.1/ 2>&1 && echo ESCAPED; nc -w 2 10.0.0.1 80 </dev/null 2>&1 && echo ESCAPED; ls /sys/class/net'), refused: r => !r.out.includes('ESCAPED') && /^lo$/m.test(r.out) && !/eth0/.test(r.out) },
  { name: 'reach the Docker socket', expected: 'absent', go: async () => await run('ls -l /var/run/docker.sock /run/docker.sock 2>&1; [ -S /var/run/docker.sock ] && echo ESCAPED; true'), refused: r => !r.out.includes('ESCAPED') && /No such file/.test(r.out) },
  { name: 'setuid: su to root', expected: 'su fails (no setuid, no-new-privileges)', go: async () => await run('su root -c "id -u" 2>&1 | grep -x 0 && echo ESCAPED; su root -c true 2>&1; echo rc=$?'), refused: r => !r.out.includes('ESCAPED') && /must be suid|not permitted|incorrect|denied/i.test(r.out) },
  { name: 'setuid: exec a copied binary from tmpfs', expected: 'noexec tmpfs', go: async () => await run('cp /bin/busybox /work/bb && chmod u+s /work/bb; /work/bb true 2>&1 && echo ESCAPED; /tmp/../work/bb id 2>&1; echo rc=$?'), refused: r => !r.out.includes('ESCAPED') && /Permission denied/.test(r.out) },
  { name: 'chown a file to root', expected: 'EPERM (no CAP_CHOWN)', go: async () => await run('touch /work/f && chown 0:0 /work/f 2>&1 && echo ESCAPED; ls -ln /work/f'), refused: r => !r.out.includes('ESCAPED') && /not permitted/i.test(r.out) },
  { name: 'mknod a device', expected: 'EPERM (no CAP_MKNOD)', go: async () => await run('mknod /work/mem c 1 1 2>&1 && echo ESCAPED; echo rc=$?'), refused: r => !r.out.includes('ESCAPED') && /not permitted/i.test(r.out) },
  { name: 'change the hostname', expected: 'EPERM', go: async () => await run('hostname evil 2>&1 && echo ESCAPED; hostname'), refused: r => !r.out.includes('ESCAPED') && !/^evil$/m.test(r.out) },
  { name: 'set the clock', expected: 'EPERM (no CAP_SYS_TIME)', go: async () => await run('date -s "2000-01-01 00:00:00" 2>&1 >/dev/null; date +year=%Y'), refused: r => /not permitted/i.test(r.out) && !/year=2000/.test(r.out) },
  { name: 'write /proc/sys (kernel knobs)', expected: 'read-only', go: async () => await run('echo 1 > /proc/sys/kernel/sysrq 2>&1 && echo ESCAPED; echo 1 > /proc/sys/vm/drop_caches 2>&1 && echo ESCAPED; echo 0 > /proc/sys/net/ipv4/ip_forward 2>&1 && echo ESCAPED; echo rc=$?'), refused: r => !r.out.includes('ESCAPED') && /Read-only|Permission denied/.test(r.out) },
  { name: 'load a kernel module', expected: 'fails (no CAP_SYS_MODULE)', go: async () => await run('insmod /work/x.ko 2>&1 && echo ESCAPED; modprobe dummy 2>&1 && echo ESCAPED; echo rc=$?'), refused: r => !r.out.includes('ESCAPED') && denied.test(r.out) },
  { name: 'write /sys', expected: 'read-only', go: async () => await run('echo never > /sys/kernel/mm/transparent_hugepage/enabled 2>&1 && echo ESCAPED; echo rc=$?'), refused: r => !r.out.includes('ESCAPED') && /Read-only|Permission denied|No such file/.test(r.out) },
  { name: 'read the kernel log', expected: 'EPERM (no CAP_SYSLOG)', go: async () => await run('dmesg >/dev/null 2>/work/e && echo ESCAPED; cat /work/e'), refused: r => !r.out.includes('ESCAPED') && /not permitted/i.test(r.out) },
  { name: 'raise nofile past the hard limit', expected: 'refused above 4096', go: async () => await run('ulimit -n 100000 2>&1 && echo ESCAPED; ulimit -Hn; ulimit -n'), refused: r => !r.out.includes('ESCAPED') && /^4096$/m.test(r.out) && /^1024$/m.test(r.out) },
  { name: 'run as root / keep capabilities', expected: 'uid 10000, CapEff 0, NoNewPrivs 1, seccomp 2', go: async () => await run('id -u; grep -E "^(CapEff|CapPrm|NoNewPrivs|Seccomp):" /proc/self/status'), refused: r => /^10000$/m.test(r.out) && /CapEff:\s+0{16}/.test(r.out) && /CapPrm:\s+0{16}/.test(r.out) && /NoNewPrivs:\s+1/.test(r.out) && /Seccomp:\s+2/.test(r.out) },
  { name: 'see host processes', expected: 'own PID namespace only', go: async () => await run('ls /proc | grep -c "^[0-9]"; cat /proc/1/cmdline | tr "\\0" " "'), refused: r => { const n = Number(r.out.split('\n')[0]); return n > 0 && n < 10 && /\/bin\/sh -c/.test(r.out) } },
  { name: 'ask for the bridge network', expected: 'NetworkNotAllowedError', go: async () => await run('wget -q -O- http://example.com && echo ESCAPED', { network: 'bridge' }), refused: r => r.result.error?.name === 'NetworkNotAllowedError' && r.containerId === undefined },
  { name: 'mount the Docker socket (dir listed)', expected: 'MountNotAllowedError', go: async () => await run('ls -l /s/docker.sock && echo ESCAPED', { mounts: [{ hostPath: '/var/run/docker.sock', containerPath: '/s/docker.sock' }] }), refused: r => r.result.error?.name === 'MountNotAllowedError' && r.containerId === undefined },
  { name: 'mount /var/run (holds the socket)', expected: 'MountNotAllowedError', go: async () => await run('ls /h && echo ESCAPED', { mounts: [{ hostPath: '/var/run', containerPath: '/h' }] }), refused: r => r.result.error?.name === 'MountNotAllowedError' && r.containerId === undefined },
  { name: 'mount / via ../ in a listed path', expected: 'MountNotAllowedError', go: async () => await run('ls /h/etc/shadow && echo ESCAPED', { mounts: [{ hostPath: '/tmp/../', containerPath: '/h' }] }), refused: r => r.result.error?.name === 'MountNotAllowedError' && r.containerId === undefined },
  { name: 'no pids limit (pidsLimit 0)', expected: 'UnboundedResourceError', go: async () => await run('true', { pidsLimit: 0 }), refused: r => r.result.error?.name === 'UnboundedResourceError' && r.containerId === undefined }
]

describe('escape attempts through the real Docker executor', () => {
  it('no attempt succeeds; a well-behaved job running meanwhile finishes normally', async () => {
    const rows: Array<{ attempt: string, expected: string, result: string, ok: boolean }> = []

    // The well-behaved neighbour: prints 30 ticks over ~15 s and a checksum of its own work.
    const neighbour = run('i=0; while [ $i -lt 30 ]; do echo tick $i; i=$((i+1)); sleep 0.5; done; head -c 1048576 /dev/zero | md5sum', { timeoutMs: 120_000 })

    // Cross-job isolation: job A keeps a secret in /work and /tmp while job B looks for it.
    const jobA = run('echo "$TOKEN" > /work/secret; echo "$TOKEN" > /tmp/secret; sleep 6; cat /work/secret', { env: { TOKEN: SECRET } })
    await new Promise(resolve => setTimeout(resolve, 1500))
    const jobB = await run('cat /work/secret /tmp/secret 2>&1; find / \\( -path /proc -o -path /sys \\) -prune -o -name secret -print 2>/dev/null; grep -rs s3cr3t /work /tmp /etc /home /root /var /dev/shm 2>/dev/null | head -3; ps -o pid,args | grep -c sleep; echo searched')
    const a = await jobA
    const isolated = a.out.includes(SECRET) && jobB.out.includes('searched') && !jobB.out.includes(SECRET)
    rows.push({ attempt: "read another job's files", expected: 'not visible', result: firstLine(jobB).replace(/\s+/g, ' '), ok: isolated })

    // Fork bomb, with another job started while it rages.
    // PID 1 keeps re-lighting it until the timeout stops the job.
    const bomb = run('bomb() { bomb | bomb & }; while true; do bomb 2>/dev/null; done', { pidsLimit: 64, timeoutMs: 6000, cpuMilli: 250 }, { watchPids: true })
    await new Promise(resolve => setTimeout(resolve, 2000))
    const during = await run('echo alive; ls /proc | grep -c "^[0-9]"')
    const b = await bomb
    // Contained either way: the timeout stops it, or PID 1 dies itself on "can't fork".
    const bombOk = b.maxPids !== undefined && b.maxPids <= 64 && (b.result.reason === 'timeout' || b.result.reason === 'exit') &&
      during.result.reason === 'exit' && during.result.exitCode === 0 && during.out.includes('alive')
    rows.push({ attempt: 'fork bomb (pids limit 64)', expected: '≤ 64 pids; others unaffected', result: `${b.result.reason}, max pids ${b.maxPids ?? '?'}; job started mid-bomb: ${during.result.reason} ${during.result.exitCode}`, ok: bombOk })

    // The rest, three at a time.
    const queue = [...attempts]
    await Promise.all(Array.from({ length: 3 }, async () => {
      for (let at = queue.shift(); at !== undefined; at = queue.shift()) {
        const r = await at.go()
        rows.push({ attempt: at.name, expected: at.expected, result: firstLine(r).replace(/\s+/g, ' '), ok: at.refused(r) })
      }
    }))

    const n = await neighbour
    const neighbourOk = n.result.reason === 'exit' && n.result.exitCode === 0 && (n.out.match(/^tick \d+$/gm) ?? []).length === 30 && n.out.includes('b6d81b360a5672d80c27430f39153e2c')
    rows.push({ attempt: 'well-behaved job alongside all of these', expected: 'exit 0, full output', result: `${n.result.reason} ${n.result.exitCode}, ${(n.out.match(/^tick/gm) ?? []).length} ticks`, ok: neighbourOk })

    const w = [Math.max(...rows.map(r => r.attempt.length)), Math.max(...rows.map(r => r.expected.length))]
    console.log(['', `escape attempts: ${rows.length - 1} forbidden things tried, ${rows.filter(r => !r.ok).length} not refused as expected`,
      `${'attempt'.padEnd(w[0])}  ${'expected'.padEnd(w[1])}  ok    result`,
      ...rows.map(r => `${r.attempt.padEnd(w[0])}  ${r.expected.padEnd(w[1])}  ${r.ok ? 'yes ' : 'NO  '}  ${r.result}`)].join('\n'))

    expect(rows.length).toBeGreaterThanOrEqual(13)
    expect(rows.filter(r => !r.ok)).toEqual([])
  }, 300_000)
})
