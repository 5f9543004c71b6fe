// Structured JSON logs with levels (pino), to stderr so stdout stays for what the CLI prints.
import { pino, type Logger } from 'pino'

export type { Logger }

export function createLogger (options: { level?: string, name?: string } = {}): Logger {
  return pino({ name: options.name ?? 'bidmesh', level: options.level ?? process.env.BIDMESH_LOG_LEVEL ?? 'info' }, pino.destination(2))
}
