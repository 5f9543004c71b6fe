// Everything a benchmark starts registers how to undo it here: agents, containers, Swarm
// services, the swarm itself. run() undoes all of it, newest first, once, on a normal end, on
// a failure and on SIGINT/SIGTERM. (A SIGKILL of the benchmark cannot be caught: then the
// agents' process ids and log paths printed at start-up are what to clean by hand.)

type Undo = () => Promise<void> | void

class Cleanup {
  private readonly steps: Array<{ name: string, undo: Undo }> = []
  private running?: Promise<void>

  add (name: string, undo: Undo): () => void {
    const step = { name, undo }
    this.steps.push(step)
    return () => { const i = this.steps.indexOf(step); if (i >= 0) this.steps.splice(i, 1) }
  }

  async run (): Promise<void> {
    this.running ??= (async () => {
      while (this.steps.length > 0) {
        const step = this.steps.pop()!
        try {
          await step.undo()
        } catch (err) {
          console.error(`cleanup: ${step.name} failed: ${String(err)}`)
        }
      }
    })()
    await this.running
  }
}

export const cleanup = new Cleanup()

let installed = false
export function installSignalHandlers (): void {
  if (installed) return
  installed = true
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      console.error(`\n${sig}: stopping agents and removing what the benchmark made...`)
      void cleanup.run().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143))
    })
  }
}
