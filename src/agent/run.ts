// Options of `bidmesh agent`, as parsed by the CLI.
export interface AgentCliOptions {
  dataDir: string
  listen: string[]
  api: string
  bootstrap: string[]
  cpus?: number
  memory?: string
  labels: Record<string, string>
  executor?: 'docker' | 'noop'
}

// TEMPORARY: the CLI is being rewired to call src/cli/run-agent.ts directly.
export async function runAgent (options: AgentCliOptions): Promise<void> {
  const { runAgentCommand } = await import('../cli/run-agent.ts')
  await runAgentCommand(options)
}
