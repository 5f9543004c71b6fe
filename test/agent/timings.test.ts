// The agent's derived timings: the floors that keep retention from undoing a safety rule.
import { describe, expect, it } from 'vitest'
import { type AgentInit, agentTimings } from '../../src/agent/agent.ts'
import { EXECUTOR_REPLAY_DEFAULTS } from '../../src/agent/signing.ts'
import { AGENT_DEFAULTS } from '../../src/constants.ts'

const DAY_MS = 24 * 3600_000
const init = (timings: AgentInit['timings']): AgentInit => ({ timings } as unknown as AgentInit)

describe('agentTimings: retention floors', () => {
  it.each([
    // [case, timings, finishedJobRetentionMs, historyRetentionMs, replayWindowMs]
    ['defaults', {}, AGENT_DEFAULTS.finishedJobRetentionMs, AGENT_DEFAULTS.historyRetentionMs, EXECUTOR_REPLAY_DEFAULTS.windowMs],
    ['history below the replay window is raised to it', { historyRetentionMs: DAY_MS }, 600_000, EXECUTOR_REPLAY_DEFAULTS.windowMs, EXECUTOR_REPLAY_DEFAULTS.windowMs],
    ['a shorter replay window lets history be shorter', { historyRetentionMs: DAY_MS, replayWindowMs: DAY_MS / 2 }, 600_000, DAY_MS, DAY_MS / 2],
    ['history never below the in-memory retention', { finishedJobRetentionMs: 2 * DAY_MS, historyRetentionMs: 60_000, replayWindowMs: 60_000 }, 2 * DAY_MS, 2 * DAY_MS, 60_000],
    ['in-memory retention has a floor', { finishedJobRetentionMs: 1, historyRetentionMs: 1, replayWindowMs: 1 }, AGENT_DEFAULTS.minFinishedJobRetentionMs, AGENT_DEFAULTS.minFinishedJobRetentionMs, 1]
  ] as const)('%s', (_case, timings, finishedMs, historyMs, replayMs) => {
    const t = agentTimings(init(timings))
    expect([t.finishedJobRetentionMs, t.historyRetentionMs, t.replayWindowMs]).toEqual([finishedMs, historyMs, replayMs])
  })
})
