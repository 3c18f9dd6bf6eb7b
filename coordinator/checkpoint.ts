import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { assertWritable, unwritable } from '../src/fs/atomic.ts'
import { z } from 'zod'
import { LumiereError } from '../src/errors.ts'
import { readSafetensors, writeSafetensors } from '../src/tensor/safetensors.ts'
import { describeIssues } from '../protocol/messages.ts'
import type { Tensor } from '../src/tensor/tensor.ts'

export const CHECKPOINT_FILE = 'checkpoint.safetensors'

/** The generate options a job needs to be finished elsewhere: plain JSON. */
const jobSchema = z.strictObject({
  prompt: z.string(),
  negative: z.string().optional(),
  model: z.string(),
  frames: z.int().optional(),
  steps: z.int().min(1),
  guidance: z.number(),
  seed: z.number(),
  samples: z.int().min(1),
  sampler: z.enum(['ddim', 'ancestral']).optional(),
  thresholding: z.boolean().optional(),
  ssr: z.boolean().optional(),
  ssrWindow: z.int().optional(),
  ssrStride: z.int().optional(),
  image: z.string().optional(),
  video: z.string().optional(),
  mask: z.string().optional(),
  cinemagraph: z.boolean().optional(),
  strength: z.number().optional(),
  keepKnown: z.boolean().optional(),
  style: z.string().optional(),
  styleAlpha: z.number().optional()
})

export type JobSpec = z.infer<typeof jobSchema>

const recordSchema = z.strictObject({
  version: z.literal(1),
  job: jobSchema,
  /** Where sampling stands: phase and steps done in it. The PRNG is counter-based, so the step is its whole state. */
  phase: z.enum(['base', 'ssr']),
  step: z.int().min(0),
  /** Stages of the plan in use when written (informative: a resumed job plans afresh, bit-exactly). */
  stages: z.int().min(0)
})

export type CheckpointRecord = z.infer<typeof recordSchema>

export interface Checkpoint {
  record: CheckpointRecord
  /** x_t of each sample ('x0', 'x1', …) and, in the SSR phase, the base clip ('base'). */
  tensors: Record<string, Tensor>
}

/** One file, written atomically: a killed coordinator leaves the previous checkpoint or the new one, never half of one. */
export async function writeCheckpoint (dir: string, checkpoint: Checkpoint): Promise<void> {
  await writeSafetensors(join(dir, CHECKPOINT_FILE), checkpoint.tensors, { record: JSON.stringify(checkpoint.record) })
}

export async function readCheckpoint (dir: string): Promise<Checkpoint> {
  const { tensors, metadata } = await readSafetensors(join(dir, CHECKPOINT_FILE)).catch((err: unknown) => {
    if (err instanceof LumiereError && err.code === 'FILE_NOT_FOUND') throw new LumiereError('FILE_NOT_FOUND', `no checkpoint in ${dir}: give the folder passed to --checkpoint`)
    throw err
  })
  let json: unknown
  try {
    json = JSON.parse(metadata.record ?? '')
  } catch {
    throw new LumiereError('BAD_ARGUMENT', `${join(dir, CHECKPOINT_FILE)} has no job record`)
  }
  const r = recordSchema.safeParse(json)
  if (!r.success) throw new LumiereError('BAD_ARGUMENT', `${join(dir, CHECKPOINT_FILE)} has a bad job record: ${describeIssues(r.error)}`)
  return { record: r.data, tensors }
}

/**
 * Saves the sampler state every `every` steps, one write at a time in the
 * background (the sampler's arrays are copied first: it keeps mutating them).
 */
export class CheckpointWriter {
  private readonly dir: string
  private readonly every: number
  private readonly job: JobSpec
  private chain: Promise<void> = Promise.resolve()
  private failure: unknown

  private constructor (dir: string, every: number, job: JobSpec) {
    this.dir = dir
    this.every = every
    this.job = job
  }

  /** Creates the folder and checks it can be written now, before any work. */
  static async open (dir: string, every: number, job: JobSpec): Promise<CheckpointWriter> {
    try {
      await mkdir(dir, { recursive: true })
    } catch (err) {
      throw unwritable(dir, err)
    }
    await assertWritable(join(dir, CHECKPOINT_FILE))
    return new CheckpointWriter(dir, every, job)
  }

  step (phase: 'base' | 'ssr', step: number, steps: number, xs: Float32Array[], shape: number[], stages: number, base?: Tensor): void {
    if (step % this.every !== 0 && step !== steps) return
    const tensors: Record<string, Tensor> = Object.fromEntries(xs.map((x, b) => [`x${b}`, { dtype: 'F32' as const, shape, data: new Uint8Array(Float32Array.from(x).buffer) }]))
    if (base != null) tensors.base = base
    const record: CheckpointRecord = { version: 1, job: this.job, phase, step, stages }
    this.chain = this.chain.then(async () => writeCheckpoint(this.dir, { record, tensors })).catch((err: unknown) => { this.failure ??= err })
  }

  /** Waits for pending writes; a failed write is reported here, not lost. */
  async flush (): Promise<void> {
    await this.chain
    if (this.failure != null) throw this.failure
  }
}

/** The sampler state of a phase, if the checkpoint is in it. */
export function resumeState (checkpoint: Checkpoint | undefined, phase: 'base' | 'ssr'): { step: number, xs: Float32Array[] } | undefined {
  if (checkpoint == null || checkpoint.record.phase !== phase) return undefined
  const xs: Float32Array[] = []
  for (let b = 0; b < checkpoint.record.job.samples; b++) {
    const t = checkpoint.tensors[`x${b}`]
    if (t == null) throw new LumiereError('BAD_ARGUMENT', `checkpoint is missing the state of sample ${b}`)
    xs.push(new Float32Array(t.data.buffer.slice(t.data.byteOffset, t.data.byteOffset + t.data.byteLength)))
  }
  return { step: checkpoint.record.step, xs }
}
