import { InvalidArgumentError } from 'commander'

/** Commander parser for a positive whole number. */
export function positiveInt (name: string) {
  return (value: string): number => {
    const n = Number(value)
    if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${name} must be a whole number ≥ 1.`)
    return n
  }
}

/** Commander parser for a positive number. */
export function positiveNumber (name: string) {
  return (value: string): number => {
    const n = Number(value)
    if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`${name} must be a number > 0.`)
    return n
  }
}

/** Commander collector for a repeatable option. */
export function collect (value: string, previous: string[] = []): string[] {
  return [...previous, value]
}

/** Splits a comma-separated list, dropping blanks. */
export function list (value: string): string[] {
  return value.split(',').map((s) => s.trim()).filter((s) => s.length > 0)
}

/** Commander parser for a whole number ≥ 0. */
export function nonNegativeInt (name: string) {
  return (value: string): number => {
    const n = Number(value)
    if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError(`${name} must be a whole number ≥ 0.`)
    return n
  }
}

/** Commander parser for a number ≥ 0. */
export function nonNegativeNumber (name: string) {
  return (value: string): number => {
    const n = Number(value)
    if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError(`${name} must be a number ≥ 0.`)
    return n
  }
}
