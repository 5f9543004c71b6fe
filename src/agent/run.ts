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
