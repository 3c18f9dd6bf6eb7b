import { parseArgs } from 'node:util'
import type { ParseArgsConfig } from 'node:util'
import { isLumiereError } from '../src/errors.ts'

type Options = NonNullable<ParseArgsConfig['options']>

/**
 * The benches' flags: `--help` prints the usage, an unknown or malformed
 * flag prints one line and the usage, and exits 2 — never a stack trace.
 * A user's mistake found later (an unknown model, say) is a LumiereError:
 * it prints `error [CODE]: message` and exits 1, as the CLI does; a bug
 * prints its stack and exits 70.
 */
export function benchArgs<T extends Options> (options: T, usage: string): ReturnType<typeof parseArgs<{ options: T }>>['values'] {
  if (process.argv.includes('--help') || process.argv.includes('-h')) {
    console.log(`usage: ${usage}`)
    process.exit(0)
  }
  process.on('uncaughtException', (err) => {
    if (isLumiereError(err)) console.error(`error [${err.code}]: ${err.message}`)
    else console.error(err)
    process.exit(isLumiereError(err) ? 1 : 70)
  })
  try {
    return parseArgs({ options }).values
  } catch (err) {
    return usageError(err instanceof Error ? err.message : String(err), usage)
  }
}

/** A numeric flag's value: a whole number >= min (any number >= min with `real`), or one line and the usage, exit 2. */
export function numberFlag (values: Record<string, unknown>, flag: string, usage: string, { min = 1, real = false }: { min?: number, real?: boolean } = {}): number {
  const text = values[flag]
  const x = typeof text === 'string' && text.trim() !== '' ? Number(text) : NaN
  if (!Number.isFinite(x) || x < min || (!real && !Number.isInteger(x))) {
    return usageError(`--${flag} wants ${real ? 'a number' : 'a whole number'} >= ${min}, not ${JSON.stringify(text ?? '')}`, usage)
  }
  return x
}

function usageError (message: string, usage: string): never {
  console.error(`error: ${message}\nusage: ${usage}`)
  process.exit(2)
}
