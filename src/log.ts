import { pino } from 'pino'
import type { Logger } from 'pino'

export type { Logger }

/** Structured logs on stderr, so stdout stays for results. LUMIERE_LOG=level overrides --quiet. */
export function createLogger (name: string, quiet = false): Logger {
  return pino({ name, level: process.env.LUMIERE_LOG ?? (quiet ? 'warn' : 'info') }, pino.destination(2))
}
