import { parseArgs } from 'node:util'
import type { ParseArgsConfig } from 'node:util'

type Options = NonNullable<ParseArgsConfig['options']>

/**
 * The benches' flags: `--help` prints the usage, an unknown or malformed
 * flag prints one line and the usage, and exits 2 — never a stack trace.
 */
export function benchArgs<T extends Options> (options: T, usage: string): ReturnType<typeof parseArgs<{ options: T }>>['values'] {
  if (process.argv.includes('--help') || process.argv.includes('-h')) {
    console.log(`usage: ${usage}`)
    process.exit(0)
  }
  try {
    return parseArgs({ options }).values
  } catch (err) {
    console.error(`error: ${err instanceof Error ? err.message : String(err)}\nusage: ${usage}`)
    process.exit(2)
  }
}
