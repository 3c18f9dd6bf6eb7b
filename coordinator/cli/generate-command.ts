import { extname } from 'node:path'
import { Command } from 'commander'
import { planOutputs, progressBar, writeOutputs } from './outputs.ts'
import { generate } from '../generate.ts'
import { nonNegativeNumber, positiveInt } from './options.ts'
import { meshOptions, outputOptions, samplingOptions } from './shared-options.ts'
import type { TransportName } from '../../src/mesh/node.ts'

interface GenerateFlags {
  negative: string
  model: string
  frames?: number
  steps: number
  guidance: number
  seed: number
  samples: number
  sampler: 'ddim' | 'ancestral'
  thresholding: boolean
  local?: number
  peers?: string[]
  stages?: number
  transport: TransportName
  out?: string
  tensor?: string
  timeout: number
  ssr: boolean
  wire: 'f32' | 'f16'
  image?: string
  video?: string
  mask?: string
  cinemagraph?: boolean
  strength?: number
  keepKnown: boolean
  ssrWindow?: number
  ssrStride?: number
  quiet?: boolean
  json?: boolean
}

export function generateCommand (): Command {
  const cmd = new Command('generate')
    .description('generate a video: text-to-video, image-to-video (--image), inpainting (--video --mask), cinemagraphs (--image --mask --cinemagraph) or video-to-video (--video --strength); base STUNet pipelined over the mesh, then SSR windows scattered over it')
    .argument('<prompt>', 'what the video shows')
  samplingOptions(cmd)
    .option('--frames <n>', 'frames to generate (built-in presets only; must be divisible by 2^(levels−1))', positiveInt('--frames'))
    .option('--samples <b>', 'videos to generate at once (each a separate micro-batch)', positiveInt('--samples'), 1)
    .option('--stages <k>', 'stages to cut the base model into (default: one per peer)', positiveInt('--stages'))
    .option('--image <file>', 'image-to-video: the image (PNG, JPEG) becomes frame 0; fitted by scaling to cover the frame, then centre-cropping')
    .option('--video <file>', 'the input video (MP4, GIF, PNG folder, safetensors) for inpainting (--mask) or video-to-video (--strength); fitted to the model\'s frames by even sampling or repeating the last frame')
    .option('--mask <file.png>', 'white = the region to generate (luma ≥ 128), black = keep')
    .option('--cinemagraph', 'with --image and --mask: animate only the masked region')
    .option('--strength <s>', 'video-to-video (SDEdit): noise the input to level s in [0, 1] and denoise from there; 0 returns the input, 1 ignores it', nonNegativeNumber('--strength'))
    .option('--no-keep-known', 'do not replace the known region with the input at every step (image-to-video, inpainting, cinemagraphs)')
    .option('--no-ssr', 'skip the spatial super-resolution (output at the base model\'s size)')
  meshOptions(cmd)
  outputOptions(cmd)
  return cmd.action(async (prompt: string, opts: GenerateFlags) => {
      const outputs = await planOutputs(opts.out ?? (opts.tensor == null ? 'lumiere.mp4' : undefined), opts.tensor, opts.samples)
      // One bar over both phases: base steps, then SSR steps.
      const bar = progressBar(opts.ssr ? 2 * opts.steps : opts.steps, opts.quiet)
      const result = await generate({
        prompt,
        negative: opts.negative,
        model: opts.model,
        frames: opts.frames,
        steps: opts.steps,
        guidance: opts.guidance,
        seed: opts.seed,
        samples: opts.samples,
        sampler: opts.sampler,
        thresholding: opts.thresholding,
        local: opts.peers == null ? (opts.local ?? 2) : undefined,
        peers: opts.peers,
        stages: opts.stages,
        transport: opts.transport,
        timeoutMs: opts.timeout * 1000,
        ssr: opts.ssr ? undefined : false,
        wire: opts.wire,
        image: opts.image,
        video: opts.video,
        mask: opts.mask,
        cinemagraph: opts.cinemagraph,
        strength: opts.strength,
        keepKnown: opts.keepKnown,
        ssrWindow: opts.ssrWindow,
        ssrStride: opts.ssrStride,
        onStep: (p) => {
          if (p.phase === 'base') bar.update(p.step, p.utilisation.map((u) => `${Math.round(u * 100)}%`).join('/'))
          else bar.update(opts.steps + p.step, 'ssr')
        },
        onWarning: (message) => { console.error(`warning: ${message}`) }
      }).finally(() => { bar.stop() })

      const written = await writeOutputs(outputs, result.video, result.fps, { prompt, seed: String(opts.seed) })
      const summary = {
        prompt,
        seed: opts.seed,
        samples: opts.samples,
        steps: opts.steps,
        frames: result.video.shape[2],
        size: [result.video.shape[3], result.video.shape[4]],
        stages: result.plan.stages.length,
        ssrWindows: result.ssrWindows,
        seconds: round(result.seconds),
        secondsPerStep: round(result.secondsPerStep),
        utilisation: result.utilisation.map(round),
        forwardPasses: result.forwardPasses,
        files: written
      }
      if (opts.json === true) console.log(JSON.stringify(summary))
      else if (opts.quiet !== true) console.log(`wrote ${written.join(', ')} (${summary.seconds} s, ${summary.secondsPerStep} s/step, ${extname(written[0] ?? '') || 'frames'})`)
    })
}

function round (x: number): number {
  return Number(x.toFixed(3))
}
