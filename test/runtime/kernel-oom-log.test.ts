import { describe, it, expect } from 'vitest'
import { containersInOomRecord, kernelOomLog, type KernelRecords } from '../../src/runtime/kernel-oom-log.ts'

const A = 'a'.repeat(64)
const B = '0123456789abcdef'.repeat(4)

describe('containersInOomRecord', () => {
  it.each([
    ['cgroupfs driver (kmsg record with prefix and a continuation line)',
      `6,1234,84022382086,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=${A},mems_allowed=0,oom_memcg=/docker/${A},task_memcg=/docker/${A},task=tail,pid=20177,uid=0\n SUBSYSTEM=x\n`, [A]],
    ['systemd driver',
      `oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/system.slice/docker-${A}.scope,task_memcg=/system.slice/docker-${A}.scope,task=x,pid=1,uid=0`, [A]],
    ['limit hit in one container, victim in another (nested cgroups)',
      `oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/docker/${A},task_memcg=/docker/${B},task=x,pid=1,uid=0`, [A, B]],
    ['older kernels',
      `3,99,1,-;Task in /docker/${B} killed as a result of limit of /docker/${B}`, [B]],
    ['a global OOM (no container limit hit) is not this container\'s OOM',
      `oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,global_oom,task_memcg=/docker/${A},task=x,pid=1,uid=0`, []],
    ['a memory cgroup that is not a container',
      'oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/user.slice,task_memcg=/user.slice/session-1.scope,task=x,pid=1,uid=0', []],
    ['the unlimited "Killed process" line names no cgroup',
      '3,5,6,-;Memory cgroup out of memory: Killed process 20135 (tail) total-vm:66928kB', []],
    ['an id that is too short', 'oom-kill:constraint=CONSTRAINT_MEMCG,oom_memcg=/docker/abc,task_memcg=/docker/abc,task=x', []]
  ])('%s', (_name, record, expected) => {
    expect(containersInOomRecord(record).sort()).toEqual([...expected].sort())
  })
})

describe('kernelOomLog', () => {
  const kill = (id: string): string => `6,1,1,-;oom-kill:constraint=CONSTRAINT_MEMCG,oom_memcg=/docker/${id},task_memcg=/docker/${id},task=x,pid=1,uid=0`

  it('sees a kill logged before the question, and keeps what it read for later questions', () => {
    const batches: KernelRecords[] = [{ readable: true, records: [kill(A), 'noise'] }, { readable: true, records: [] }]
    const log = kernelOomLog({ readRecords: () => batches.shift() ?? { readable: true, records: [] } })
    expect(log.sawKillIn(A)).toBe(true)
    expect(log.sawKillIn(B)).toBe(false)
    expect(log.sawKillIn(A)).toBe(true)
  })

  it('forgets the oldest kills beyond rememberedKills', () => {
    const ids = Array.from({ length: 5 }, (_, i) => String(i).repeat(64))
    const log = kernelOomLog({ readRecords: () => ({ readable: true, records: ids.splice(0).map(kill) }), rememberedKills: 3 })
    expect(log.sawKillIn('0'.repeat(64))).toBe(false)
    expect(log.sawKillIn('1'.repeat(64))).toBe(false)
    expect(log.sawKillIn('2'.repeat(64))).toBe(true)
    expect(log.sawKillIn('4'.repeat(64))).toBe(true)
  })

  it('an unreadable log answers "not seen" and is not asked again', () => {
    let reads = 0
    const log = kernelOomLog({ readRecords: () => { reads++; return { readable: false } } })
    expect(log.sawKillIn(A)).toBe(false)
    expect(log.sawKillIn(A)).toBe(false)
    expect(reads).toBe(1)
  })
})
