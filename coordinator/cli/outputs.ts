import cliProgress from 'cli-progress'
import { assertWritable } from '../../src/fs/atomic.ts'
import { writeSafetensors } from '../../src/tensor/safetensors.ts'
import { sampleOf } from '../../src/video/frames.ts'
import { samplePath, videoFormatOf, writeVideo } from '../../src/video/write-video.ts'
import type { Tensor } from '../../src/tensor/tensor.ts'

export interface OutputPlan {
  videos: string[]
  tensor?: string
}

/**
 * Where a clip of B samples will be written, checked now — format and
 * writability — so a bad path fails before minutes of sampling, not after.
 */
export async function planOutputs (out: string | undefined, tensor: string | undefined, samples: number): Promise<OutputPlan> {
  const videos = out == null ? [] : Array.from({ length: samples }, (_, b) => samplePath(out, b, samples))
  for (const path of videos) {
    videoFormatOf(path)
    await assertWritable(path.replace(/\/+$/, ''))
  }
  if (tensor != null) await assertWritable(tensor)
  return { videos, tensor }
}

/** Writes the clip [B, 3, T, H, W]: the tensor file, then one video per sample. Returns the paths written. */
export async function writeOutputs (plan: OutputPlan, video: Tensor, fps: number, metadata: Record<string, string>): Promise<string[]> {
  const written: string[] = []
  if (plan.tensor != null) {
    await writeSafetensors(plan.tensor, { video }, { ...metadata, fps: String(fps) })
    written.push(plan.tensor)
  }
  for (const [b, path] of plan.videos.entries()) {
    await writeVideo(path, sampleOf(video, b), { fps })
    written.push(path)
  }
  return written
}

/** A step progress bar on stderr when it is a terminal and not --quiet; a no-op otherwise. */
export function progressBar (total: number, quiet: boolean | undefined): { update: (value: number, util: string) => void, stop: () => void } {
  if (quiet === true || !process.stderr.isTTY) return { update: () => {}, stop: () => {} }
  const bar = new cliProgress.SingleBar({
    format: 'step {value}/{total} |{bar}| {percentage}% · stage busy {util} · {duration_formatted} elapsed, eta {eta_formatted}',
    stream: process.stderr,
    hideCursor: true
  }, cliProgress.Presets.shades_classic)
  bar.start(total, 0, { util: '–' })
  return { update: (value, util) => { bar.update(value, { util }) }, stop: () => { bar.stop() } }
}
