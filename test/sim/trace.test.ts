// The Alibaba 2018 batch_task parser and the trace → workload mapping, on lines in the real
// file's format (its header, a Waiting row with empty fields, negative create times).
import { describe, expect, it } from 'vitest'
import { ALIBABA_NODE, parseTrace, parseTraceLine, traceWorkload, usableTask } from '../../src/sim/workload.ts'

const SAMPLE = [
  'task_create_time, task_end_time, job_id, task_id,number_of_instances, status, number_of_cpus_requested_per_instance_in_the_task,normalized_memory_requested_per_instance_in_the_task',
  '6459,6524,3,4,15740,Terminated,50,0.007956928',
  '6457,6533,3,5,1,Terminated,50,0.004395206',
  '6036,6046,4,7,393,Waiting,,',
  '-60,110,6168,37200,103,Terminated,50,0.008231305',
  '-60,-55,6168,37197,1,Terminated,100,0.00406906',
  '7000,7100,9,1,2,Failed,50,0.001',
  ''
].join('\n')

const mem = (normalized: number): number => Math.round(normalized * 512 * 1024 ** 3)

describe('trace parser', () => {
  it('skips the header and blank lines, keeps every data row', () => {
    const tasks = parseTrace(SAMPLE)
    expect(tasks).toHaveLength(6)
    expect(tasks[0]).toEqual({ createS: 6459, endS: 6524, jobId: 3, taskId: 4, instances: 15740, status: 'Terminated', cpus: 50, memoryNormalized: 0.007956928 })
  })

  it('reads a Waiting row with empty fields as NaN, and such rows are not replayed', () => {
    const w = parseTraceLine('6036,6046,4,7,393,Waiting,,')!
    expect(w.status).toBe('Waiting')
    expect(w.cpus).toBeNaN()
    expect(w.memoryNormalized).toBeNaN()
    expect(usableTask(w)).toBe(false)
    expect(usableTask(parseTraceLine('7000,7100,9,1,2,Failed,50,0.001')!)).toBe(false)
  })

  it('keeps negative create times (before the trace window)', () => {
    const t = parseTraceLine('-60,-55,6168,37197,1,Terminated,100,0.00406906')!
    expect(t.createS).toBe(-60)
    expect(t.endS).toBe(-55)
    expect(usableTask(t)).toBe(true)
  })
})

describe('trace workload mapping', () => {
  const tasks = parseTrace(SAMPLE)
  const base = { agents: 4, windowStartS: -100, windowSeconds: 10_000, timeScale: 10, maxInstancesPerTask: 3, maxJobs: 100, nodeCpus: 16 }

  it('one job per instance, in create-time order, scaled in time, cpus/100 cores and normalized × 512 GiB', () => {
    const w = traceWorkload(tasks, base)
    // -60: task 37197 (1 instance) then 37200 (3 of 103); 6457: task 5 (1); 6459: task 4 (3 of 15740)
    expect(w.jobs).toHaveLength(8)
    expect(w.jobs[0]).toEqual({ id: 'j0000000', arrivalMs: 4000, durationMs: 500, cpuMilli: 1000, memoryBytes: mem(0.00406906), constraints: {} })
    expect(w.jobs.slice(1, 4).map(j => [j.arrivalMs, j.durationMs, j.cpuMilli, j.memoryBytes])).toEqual(Array(3).fill([4000, 17_000, 500, mem(0.008231305)]))
    expect(w.jobs[4]).toMatchObject({ arrivalMs: 655_700, durationMs: 7600, cpuMilli: 500, memoryBytes: mem(0.004395206) })
    expect(w.jobs[7]).toMatchObject({ arrivalMs: 655_900, durationMs: 6500 })
    // a 16-core node keeps the 96-core machine's memory per core
    expect(w.nodes).toHaveLength(4)
    expect(w.nodes[0]).toEqual({ cpuMilli: 16_000, memoryBytes: Math.round(16 / ALIBABA_NODE.cores * ALIBABA_NODE.memoryBytes), labels: {} })
  })

  it('windows by create time and caps the number of jobs', () => {
    expect(traceWorkload(tasks, { ...base, windowStartS: 0 }).jobs).toHaveLength(4) // the -60 tasks are before the window
    expect(traceWorkload(tasks, { ...base, windowStartS: 6458, windowSeconds: 10 }).jobs).toHaveLength(3)
    expect(traceWorkload(tasks, { ...base, maxJobs: 5 }).jobs).toHaveLength(5)
    expect(traceWorkload(tasks, { ...base, maxInstancesPerTask: 1 }).jobs).toHaveLength(4)
  })
})
