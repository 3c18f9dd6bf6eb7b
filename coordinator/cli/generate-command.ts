import { extname } from 'node:path'
import { Command, Option } from 'commander'
import cliProgress from 'cli-progress'
import { writeSafetensors } from '../../src/tensor/safetensors.ts'
import { assertWritable } from '../../src/fs/atomic.ts'
import { samplePath, videoFormatOf, writeVideo } from '../../src/video/write-video.ts'
import { sampleOf } from '../../src/video/frames.ts'
import { generate } from '../generate.ts'
import { list, nonNegativeInt, nonNegativeNumber, positiveInt, positiveNumber } from './options.ts'
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
  return new Command('generate')
    .description('generate a video: text-to-video, image-to-video (--image), inpainting (--video --mask), cinemagraphs (--image --mask --cinemagraph) or video-to-video (--video --strength); base STUNet pipelined over the mesh, then SSR windows scattered over it')
    .argument('<prompt>', 'what the video shows')
    .option('--negative <prompt>', 'negative prompt (the unconditional branch of guidance)', '')
    .option('--model <dir|preset>', 'model package folder, or a built-in preset: tiny, small (built on first use)', 'tiny')
    .option('--frames <n>', 'frames to generate (built-in presets only; must be divisible by 2^(levels−1))', positiveInt('--frames'))
    .option('--steps <n>', 'denoising steps', positiveInt('--steps'), 16)
    .option('--guidance <w>', 'classifier-free guidance weight (1 = conditional only)', nonNegativeNumber('--guidance'), 3)
    .option('--seed <n>', 'random seed: the same seed gives the same video on any machine', nonNegativeInt('--seed'), 0)
    .option('--samples <b>', 'videos to generate at once (each a separate micro-batch)', positiveInt('--samples'), 1)
    .addOption(new Option('--sampler <name>', 'DDIM (deterministic) or ancestral').choices(['ddim', 'ancestral']).default('ddim'))
    .option('--no-thresholding', 'turn off dynamic thresholding of x̂0')
    .addOption(new Option('--local <k>', 'start K peer processes on loopback (default 2 when --peers is not given)').argParser(positiveInt('--local')).conflicts('peers'))
    .addOption(new Option('--peers <addr,...>', 'full multiaddrs (with /p2p/ id) of running peers').argParser(list))
    .option('--stages <k>', 'stages to cut the model into (default: one per peer)', positiveInt('--stages'))
    .addOption(new Option('--transport <name>', 'transport for --local peers').choices(['tcp', 'webrtc']).default('tcp'))
    .option('--out <file>', 'video file: .mp4 (H.264), .gif, or a folder for PNG frames; -sampleN is added per sample when --samples > 1')
    .option('--tensor <file.safetensors>', 'also write the clip as tensor "video", float32 [B, 3, T, H, W] in [−1, 1]')
    .option('--image <file>', 'image-to-video: the image (PNG, JPEG) becomes frame 0; fitted by scaling to cover the frame, then centre-cropping')
    .option('--video <file>', 'the input video (MP4, GIF, PNG folder, safetensors) for inpainting (--mask) or video-to-video (--strength); fitted to the model\'s frames by even sampling or repeating the last frame')
    .option('--mask <file.png>', 'white = the region to generate (luma ≥ 128), black = keep')
    .option('--cinemagraph', 'with --image and --mask: animate only the masked region')
    .option('--strength <s>', 'video-to-video (SDEdit): noise the input to level s in [0, 1] and denoise from there; 0 returns the input, 1 ignores it', nonNegativeNumber('--strength'))
    .option('--no-keep-known', 'do not replace the known region with the input at every step (image-to-video, inpainting, cinemagraphs)')
    .addOption(new Option('--wire <format>', 'float32 tensors on the wire as f32 (bit-exact) or f16 (half the bytes, relative error ≤ 2^-11 per element)').choices(['f32', 'f16']).default('f32'))
    .option('--no-ssr', 'skip the spatial super-resolution (output at the base model\'s size)')
    .option('--ssr-window <frames>', 'SSR window length (default: the model\'s)', positiveInt('--ssr-window'))
    .option('--ssr-stride <frames>', 'frames between SSR window starts; less than the window makes them overlap (default: half the window)', positiveInt('--ssr-stride'))
    .option('--timeout <seconds>', 'deadline for each forward pass over the mesh', positiveNumber('--timeout'), 600)
    .option('--quiet', 'no progress bar')
    .option('--json', 'print a JSON summary line at the end')
    .action(async (prompt: string, opts: GenerateFlags) => {
      const out = opts.out ?? (opts.tensor == null ? 'lumiere.mp4' : undefined)
      // Check every output before minutes of sampling, not after.
      const videoPaths = out == null ? [] : Array.from({ length: opts.samples }, (_, b) => samplePath(out, b, opts.samples))
      for (const path of videoPaths) {
        videoFormatOf(path)
        await assertWritable(path.replace(/\/+$/, ''))
      }
      if (opts.tensor != null) await assertWritable(opts.tensor)
      const showBar = opts.quiet !== true && process.stderr.isTTY
      const bar = new cliProgress.SingleBar({
        format: 'step {value}/{total} |{bar}| {percentage}% · stage busy {util} · {duration_formatted} elapsed, eta {eta_formatted}',
        stream: process.stderr,
        hideCursor: true
      }, cliProgress.Presets.shades_classic)
      // One bar over both phases: base steps, then SSR steps.
      const total = opts.ssr ? 2 * opts.steps : opts.steps
      if (showBar) bar.start(total, 0, { util: '–' })
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
          if (!showBar) return
          if (p.phase === 'base') bar.update(p.step, { util: p.utilisation.map((u) => `${Math.round(u * 100)}%`).join('/') })
          else bar.update(opts.steps + p.step, { util: 'ssr' })
        },
        onWarning: (message) => { console.error(`warning: ${message}`) }
      }).finally(() => { if (showBar) bar.stop() })

      const written: string[] = []
      if (opts.tensor != null) {
        await writeSafetensors(opts.tensor, { video: result.video }, { prompt, seed: String(opts.seed), fps: String(result.fps) })
        written.push(opts.tensor)
      }
      for (const [b, path] of videoPaths.entries()) {
        await writeVideo(path, sampleOf(result.video, b), { fps: result.fps })
        written.push(path)
      }
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
