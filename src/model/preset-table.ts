import { LumiereError } from '../errors.ts'

/** A fresh copy of a named preset; an unknown name is BAD_ARGUMENT listing the valid ones. */
export function pickPreset<T> (table: Readonly<Record<string, T>>, name: string, kind: string): T {
  if (!Object.hasOwn(table, name)) {
    throw new LumiereError('BAD_ARGUMENT', `unknown ${kind} preset '${name}': use one of ${Object.keys(table).join(', ')}`)
  }
  return structuredClone(table[name])
}
