// The kernel's own record of memory-cgroup OOM kills, read from /dev/kmsg, as a second
// witness next to Docker's OOMKilled flag.
//
// Why a second witness: on cgroup v1, Docker learns of an OOM kill from a watch that
// containerd's shim arms on the container's memory cgroup only after the container has
// started. A job that blows its limit in its first milliseconds is killed before the watch
// exists, and Docker then reports a plain exit 137 forever (measured on this engine: about
// 1 container in 20 with a 6 MiB limit, more on a loaded host). The kernel logs the kill
// with the cgroup path, and the path names the container.
//
// The witness is positive only: the kernel rate-limits that report (10 per 5 s), so a
// missing record proves nothing. Reading /dev/kmsg needs CAP_SYSLOG: a root agent has it;
// the hardened systemd unit does not, and there only Docker's flag is used.
import { closeSync, constants, openSync, readSync } from 'node:fs'

export const KERNEL_OOM_LOG_DEFAULTS = {
  /** ids are 64 bytes: 4096 of them is ~0.5 MB at most, and far more kills than can be
   *  pending between a container's exit and the executor's look at it */
  rememberedKills: 4096
}

export interface KernelOomLogInit {
  /** where to read kernel records from; tests pass a fake */
  readRecords?: () => KernelRecords
  /** how many killed containers to remember; the oldest are forgotten first */
  rememberedKills?: number
}

/** What one read of the kernel log brought: the new records, or that it cannot be read. */
export type KernelRecords = { readable: true, records: string[] } | { readable: false }

export interface KernelOomLog {
  /** Whether the kernel logged an OOM kill inside this container's cgroup. false means only
   *  "not seen": the log may be unreadable or its report suppressed. */
  sawKillIn: (containerId: string) => boolean
}

const CONTAINER_ID = /(?:^|[/-])([0-9a-f]{64})(?:\.scope)?$/
/** "oom-kill:...,oom_memcg=/docker/<id>,task_memcg=/docker/<id>,task=tail,pid=1,uid=0" (Linux ≥ 4.19) */
const OOM_KILL_FIELDS = /^oom-kill:.*?(?:^|,)oom_memcg=([^,]*).*?,task_memcg=([^,]*)/
/** "Task in /docker/<id> killed as a result of limit of /docker/<id>" (older kernels) */
const OLD_TASK_IN = /^Task in (\S+) killed as a result of limit of (\S+)/

/** The containers a kernel log record says had an OOM kill in their memory cgroup: the cgroup
 *  whose limit was hit and the victim's. Works for the cgroupfs driver (/docker/<id>) and the
 *  systemd one (/system.slice/docker-<id>.scope). */
export function containersInOomRecord (record: string): string[] {
  // A /dev/kmsg record is "<prefix>;<message>\n" with optional " KEY=value" lines after it.
  const semi = record.indexOf(';')
  const message = (semi >= 0 ? record.slice(semi + 1) : record).split('\n', 1)[0]
  const m = OOM_KILL_FIELDS.exec(message) ?? OLD_TASK_IN.exec(message)
  if (m === null) return []
  const ids = new Set<string>()
  for (const path of [m[1], m[2]]) {
    const id = CONTAINER_ID.exec(path)?.[1]
    if (id !== undefined) ids.add(id)
  }
  return [...ids]
}

export function kernelOomLog (init: KernelOomLogInit = {}): KernelOomLog {
  const remembered = init.rememberedKills ?? KERNEL_OOM_LOG_DEFAULTS.rememberedKills
  const readRecords = init.readRecords ?? devKmsgReader()
  // insertion-ordered, so the first entry is the oldest to forget
  const killed = new Set<string>()
  let readable = true

  return {
    sawKillIn (containerId) {
      if (readable) {
        const batch = readRecords()
        if (!batch.readable) {
          readable = false // stays unreadable: a missing capability does not come back
        } else {
          for (const record of batch.records) {
            for (const id of containersInOomRecord(record)) {
              killed.delete(id)
              killed.add(id)
              if (killed.size > remembered) killed.delete(killed.values().next().value!)
            }
          }
        }
      }
      return killed.has(containerId)
    }
  }
}

/** Reads /dev/kmsg without blocking: each read returns one record, EAGAIN means none left,
 *  EPIPE means records were overwritten before we read them (reading goes on after them).
 *  The first read starts at the oldest record the ring buffer still holds. The descriptor is
 *  opened on first use (only an exit of 137 asks) and kept for the agent's life. */
function devKmsgReader (): () => KernelRecords {
  let fd: number | undefined
  const buffer = Buffer.alloc(8192) // a record is at most ~1 KiB; a short buffer gets EINVAL
  return () => {
    try {
      fd ??= openSync('/dev/kmsg', constants.O_RDONLY | constants.O_NONBLOCK)
    } catch {
      return { readable: false } // absent (inside a container) or no CAP_SYSLOG
    }
    const records: string[] = []
    for (;;) {
      try {
        const n = readSync(fd, buffer, 0, buffer.length, null)
        if (n <= 0) break
        records.push(buffer.toString('utf8', 0, n))
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code
        if (code === 'EPIPE') continue
        if (code === 'EAGAIN') break
        // Given up on for good (see sawKillIn): the descriptor goes with it.
        try { closeSync(fd) } catch {}
        fd = undefined
        return { readable: false }
      }
    }
    return { readable: true, records }
  }
}
