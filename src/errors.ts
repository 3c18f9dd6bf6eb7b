/**
 * Typed errors with stable codes. Every error a user can cause is a
 * LumiereError whose message says what went wrong and what to do; the CLI
 * prints `error [CODE]: message` and exits non-zero, never a stack trace.
 */
export const ERROR_CODES = [
  'BAD_ARGUMENT',
  'FILE_NOT_FOUND',
  'FILE_UNWRITABLE',
  'BAD_ONNX',
  'BAD_SAFETENSORS',
  'INPUT_MISMATCH',
  'UNSUPPORTED_OP',
  'PLAN_IMPOSSIBLE',
  'PEER_UNREACHABLE',
  'PEER_LOST',
  'PEER_ERROR',
  'DEADLINE_EXCEEDED',
  'PROTOCOL',
  'TOO_LARGE',
  'STAGE_UNKNOWN',
  'STAGE_FAILED',
  'ABORTED',
  'INTERNAL',
  /** A peer refused a request because it is at its concurrency limit; retry later or elsewhere. */
  'BUSY',
  /** A well-formed request of a type the remote does not handle. */
  'UNKNOWN_REQUEST',
  /** A peer refused a job request from a node it does not trust (its --trust list). */
  'UNTRUSTED',
  /** A peer refused work that would exceed its memory budget (its --memory). */
  'OUT_OF_MEMORY'
] as const

export type ErrorCode = typeof ERROR_CODES[number]

export function isErrorCode (value: unknown): value is ErrorCode {
  return typeof value === 'string' && (ERROR_CODES as readonly string[]).includes(value)
}

export class LumiereError extends Error {
  readonly code: ErrorCode

  constructor (code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'LumiereError'
    this.code = code
  }
}

export function isLumiereError (err: unknown): err is LumiereError {
  return err instanceof LumiereError
}

/** Wraps any thrown value as a LumiereError, keeping typed ones as they are. */
export function toLumiereError (err: unknown, fallback: ErrorCode = 'INTERNAL'): LumiereError {
  if (err instanceof LumiereError) return err
  if (err instanceof Error && err.name === 'AbortError') return new LumiereError('ABORTED', err.message, { cause: err })
  const message = err instanceof Error ? err.message : String(err)
  return new LumiereError(fallback, message, { cause: err })
}
