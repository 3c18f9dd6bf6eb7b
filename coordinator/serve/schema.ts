/**
 * The body of POST /api/jobs: a text-to-video request, checked with zod.
 * Unknown fields are refused (a typo is an error, not a silent default).
 */
import { z } from 'zod'
import type { ZodError } from 'zod'

export const MAX_PROMPT_LENGTH = 4000
export const MAX_STEPS = 1000
export const MAX_SAMPLES = 16
export const MAX_FRAMES = 1024

const int = (min: number, max: number) => z.number().int().min(min).max(max)

export function jobRequestSchema (models: readonly string[]) {
  return z.strictObject({
    prompt: z.string().trim().min(1, 'must not be empty').max(MAX_PROMPT_LENGTH),
    negative: z.string().max(MAX_PROMPT_LENGTH).optional(),
    model: z.string().refine((m) => models.includes(m), { message: `must be one of ${models.join(', ')}` }).optional(),
    steps: int(1, MAX_STEPS).optional(),
    guidance: z.number().min(0).max(100).optional(),
    seed: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
    samples: int(1, MAX_SAMPLES).optional(),
    frames: int(1, MAX_FRAMES).optional(),
    ssr: z.boolean().optional(),
    sampler: z.enum(['ddim', 'ancestral']).optional()
  })
}

export type JobRequestBody = z.infer<ReturnType<typeof jobRequestSchema>>

/** A job's parameters with the server's defaults filled in. */
export interface JobParams {
  prompt: string
  negative: string
  model: string
  steps: number
  guidance: number
  seed: number
  samples: number
  frames?: number
  /** undefined: run the model's SSR when it has one. */
  ssr?: boolean
  sampler: 'ddim' | 'ancestral'
}

export interface JobDefaults {
  model: string
  steps: number
  guidance: number
  samples: number
}

export function withDefaults (body: JobRequestBody, defaults: JobDefaults): JobParams {
  return {
    prompt: body.prompt,
    negative: body.negative ?? '',
    model: body.model ?? defaults.model,
    steps: body.steps ?? defaults.steps,
    guidance: body.guidance ?? defaults.guidance,
    seed: body.seed ?? 0,
    samples: body.samples ?? defaults.samples,
    frames: body.frames,
    ssr: body.ssr,
    sampler: body.sampler ?? 'ddim'
  }
}

/** One line naming each bad field: `steps: Too small: expected number to be >=1; prompt: …`. */
export function describeZodError (err: ZodError): string {
  return err.issues.slice(0, 5).map((i) => {
    const path = i.path.map(String).join('.')
    if (i.code === 'unrecognized_keys') return `unknown field${i.keys.length > 1 ? 's' : ''} ${i.keys.join(', ')}`
    return path === '' ? i.message : `${path}: ${i.message}`
  }).join('; ')
}
