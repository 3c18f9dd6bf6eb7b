import { Command } from 'commander'
import { upscaleVideo } from '../generate.ts'
import { planOutputs, progressBar, writeOutputs } from './outputs.ts'
import { positiveInt } from './options.ts'
import { discoveryMeshOptions, meshOptions, outputOptions, samplingOptions } from './shared-options.ts'
import type { DiscoveryFlags } from './shared-options.ts'
import type { TransportName } from '../../src/mesh/node.ts'
import type { WireFormat } from '../../src/tensor/wire.ts'
import { loadAccess } from '../../src/mesh/access.ts'
import type { AccessFlags } from '../../src/mesh/access.ts'

interface UpscaleFlags {
  video: string
  prompt: string
  negative: string
  model: string
  frames?: number
  steps: number
  guidance: number
  seed: number
  sampler: 'ddim' | 'ancestral'
  thresholding: boolean
  ssrWindow?: number
  ssrStride?: number
  local?: number
  peers?: string[]
  transport: TransportName
  wire: WireFormat
  timeout: number
  out?: string
  tensor?: string
  quiet?: boolean
  json?: boolean
}

export function upscaleCommand (): Command {
  const cmd = new Command('upscale')
    .description('spatial super-resolution of a video alone: overlapping temporal windows scattered over the mesh, fused by MultiDiffusion')
    .requiredOption('--video <file>', 'the low-res video (MP4, GIF, PNG folder, safetensors); fitted to the SSR input size by scaling to cover, then centre-cropping')
    .requiredOption('--prompt <text>', 'what the video shows (the SSR is text-conditioned too)')
    .option('--frames <n>', 'frames to upscale: the input is sampled evenly or its last frame repeated to fit (default: the model\'s frame count)', positiveInt('--frames'))
  samplingOptions(cmd)
  meshOptions(cmd)
  outputOptions(cmd)
  return cmd.action(async (opts: UpscaleFlags & AccessFlags & DiscoveryFlags) => {
    const outputs = await planOutputs(opts.out ?? (opts.tensor == null ? 'upscaled.mp4' : undefined), opts.tensor, 1)
    const bar = progressBar(opts.steps, opts.quiet)
    const result = await upscaleVideo({
      video: opts.video,
      prompt: opts.prompt,
      negative: opts.negative,
      model: opts.model,
      frames: opts.frames,
      steps: opts.steps,
      guidance: opts.guidance,
      seed: opts.seed,
      sampler: opts.sampler,
      thresholding: opts.thresholding,
      ssrWindow: opts.ssrWindow,
      ssrStride: opts.ssrStride,
      local: opts.peers == null && opts.discover == null ? (opts.local ?? 2) : undefined,
      peers: opts.peers,
      ...discoveryMeshOptions(opts, opts.quiet),
      transport: opts.transport,
      wire: opts.wire,
      access: await loadAccess(opts),
      timeoutMs: opts.timeout * 1000,
      onStep: (p) => { bar.update(p.step, 'ssr') },
      onWarning: (message) => { console.error(`warning: ${message}`) }
    }).finally(() => { bar.stop() })
    const written = await writeOutputs(outputs, result.video, result.fps, { prompt: opts.prompt, seed: String(opts.seed) })
    const summary = { files: written, frames: result.video.shape[2], size: [result.video.shape[3], result.video.shape[4]], seconds: Number(result.seconds.toFixed(3)), ssrWindows: result.ssrWindows }
    if (opts.json === true) console.log(JSON.stringify(summary))
    else if (opts.quiet !== true) console.log(`wrote ${written.join(', ')} (${summary.size.join('×')}, ${summary.seconds} s)`)
  })
}
