import { pino } from 'pino'
import type { Logger } from 'pino'

/** Structured logs on stderr, so stdout stays for results. */
export function createLogger (name: string, quiet = false): Logger {
  return pino({ name, level: quiet ? 'warn' : (process.env.LUMIERE_LOG ?? 'info') }, pino.destination(2))
}
