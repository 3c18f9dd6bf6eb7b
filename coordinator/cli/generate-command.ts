import { extname } from 'node:path'
import { Command, InvalidArgumentError } from 'commander'
import { planOutputs, progressBar, writeOutputs } from './outputs.ts'
import { LumiereError } from '../../src/errors.ts'
import { readCheckpoint } from '../checkpoint.ts'
import { DEFAULT_STYLE_ALPHA, generate } from '../generate.ts'
import type { JobSpec } from '../checkpoint.ts'
import { nonNegativeNumber, positiveInt } from './options.ts'
import { discoveryMeshOptions, meshOptions, outputOptions, samplingOptions } from './shared-options.ts'
import type { DiscoveryFlags } from './shared-options.ts'
import type { TransportName } from '../../src/mesh/node.ts'
import type { WireFormat } from '../../src/tensor/wire.ts'
import { loadAccess } from '../../src/mesh/access.ts'
import type { AccessFlags } from '../../src/mesh/access.ts'

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
  wire: WireFormat
  image?: string
  video?: string
  mask?: string
  cinemagraph?: boolean
  strength?: number
  keepKnown: boolean
  style?: string
  styleAlpha?: number
  checkpoint?: string
  checkpointEvery: number
  resume?: string
  ssrWindow?: number
  ssrStride?: number
  quiet?: boolean
  json?: boolean
  verify: number
  hedge?: boolean
}

export function generateCommand (): Command {
  const cmd = new Command('generate')
    .description('generate a video: text-to-video, image-to-video (--image), inpainting (--video --mask), cinemagraphs (--image --mask --cinemagraph) or video-to-video (--video --strength); base STUNet pipelined over the mesh, then SSR windows scattered over it')
    .argument('[prompt]', 'what the video shows (not with --resume)')
  samplingOptions(cmd)
    .option('--frames <n>', 'frames to generate (built-in presets only; must be divisible by 2^(levels−1))', positiveInt('--frames'))
    .option('--samples <b>', 'videos to generate at once (each a separate micro-batch)', positiveInt('--samples'), 1)
    .option('--stages <k>', 'a pipeline of K stages for the base model (default: whichever the planner prices fastest of a pipeline of one stage per peer, a copy of the whole model on each peer, or the fastest peer alone; see README "Copies or a pipeline")', positiveInt('--stages'))
    .option('--image <file>', 'image-to-video: the image (PNG, JPEG) becomes frame 0; fitted by scaling to cover the frame, then centre-cropping')
    .option('--video <file>', 'the input video (MP4, GIF, PNG folder, safetensors) for inpainting (--mask) or video-to-video (--strength); fitted to the model\'s frames by even sampling or repeating the last frame')
    .option('--mask <file.png>', 'white = the region to generate (luma ≥ 128), black = keep')
    .option('--cinemagraph', 'with --image and --mask: animate only the masked region')
    .option('--strength <s>', 'video-to-video (SDEdit): noise the input to level s in [0, 1] and denoise from there; 0 returns the input, 1 ignores it', nonNegativeNumber('--strength'))
    .option('--no-keep-known', 'do not replace the known region with the input at every step (image-to-video, inpainting, cinemagraphs)')
    .option('--no-ssr', 'skip the spatial super-resolution (output at the base model\'s size)')
    .option('--style <file.safetensors>', 'stylized generation: spatial weights (see `lumiere model style-template`) blended on the peers')
    .option('--style-alpha <α>', `blend α·W_style + (1 − α)·W in [0, 1] (the paper uses 0.5–1; default ${DEFAULT_STYLE_ALPHA})`, nonNegativeNumber('--style-alpha'))
    .option('--checkpoint <dir>', 'write the sampler state into DIR as the job runs, so --resume DIR can finish it')
    .option('--checkpoint-every <n>', 'steps between checkpoints', positiveInt('--checkpoint-every'), 1)
    .option('--resume <dir>', 'finish the checkpointed job in DIR (its options come from the checkpoint; it keeps checkpointing there)')
    .option('--verify <rate>', 'volunteer meshes: recompute this fraction in [0, 1] of tasks (base stage runs or passes on copies of the model, SSR windows) on a different peer and compare; a peer caught lying is dropped and its work redone (1 = every task checked, about twice the compute)', fraction('--verify'), 0)
    .option('--hedge', 'also send an SSR window that runs long (2× the median) to an idle peer; the first answer wins')
  meshOptions(cmd)
  outputOptions(cmd)
  return cmd.action(async (promptArg: string | undefined, opts: GenerateFlags & AccessFlags & DiscoveryFlags) => {
    const resumeFrom = opts.resume == null ? undefined : await readCheckpoint(opts.resume)
    // A resumed job is the job its checkpoint recorded; only where it runs and writes come from these flags.
    const job: JobSpec = resumeFrom?.record.job ?? {
      prompt: promptArg ?? '',
      negative: opts.negative,
      model: opts.model,
      frames: opts.frames,
      steps: opts.steps,
      guidance: opts.guidance,
      seed: opts.seed,
      samples: opts.samples,
      sampler: opts.sampler,
      thresholding: opts.thresholding,
      ssr: opts.ssr ? undefined : false,
      ssrWindow: opts.ssrWindow,
      ssrStride: opts.ssrStride,
      image: opts.image,
      video: opts.video,
      mask: opts.mask,
      cinemagraph: opts.cinemagraph,
      strength: opts.strength,
      keepKnown: opts.keepKnown,
      style: opts.style,
      styleAlpha: opts.styleAlpha
    }
    if (resumeFrom == null && promptArg == null) throw new LumiereError('BAD_ARGUMENT', 'give a prompt (or --resume DIR to finish a checkpointed job)')
    const checkpointDir = opts.checkpoint ?? opts.resume
    const outputs = await planOutputs(opts.out ?? (opts.tensor == null ? 'lumiere.mp4' : undefined), opts.tensor, job.samples)
    // One bar over both phases: base steps, then SSR steps.
    const bar = progressBar(job.ssr === false ? job.steps : 2 * job.steps, opts.quiet)
    const result = await generate({
      ...job,
      local: opts.peers == null && opts.discover == null ? (opts.local ?? 2) : undefined,
      peers: opts.peers,
      ...discoveryMeshOptions(opts, opts.quiet),
      stages: opts.stages,
      transport: opts.transport,
      timeoutMs: opts.timeout * 1000,
      wire: opts.wire,
      verify: opts.verify,
      hedge: opts.hedge,
      access: await loadAccess(opts),
      checkpoint: checkpointDir == null ? undefined : { dir: checkpointDir, every: opts.checkpointEvery },
      resumeFrom,
      onStep: (p) => {
        if (p.phase === 'base') bar.update(p.step, p.utilisation.map((u) => `${Math.round(u * 100)}%`).join('/'))
        else bar.update(job.steps + p.step, 'ssr')
      },
      onWarning: (message) => { console.error(`warning: ${message}`) },
      // Losses come as warnings; a join is news, not a warning.
      onReplan: (notice) => { if (notice.joined.length > 0) console.error(notice.message) }
    }).finally(() => { bar.stop() })
    const written = await writeOutputs(outputs, result.video, result.fps, { prompt: job.prompt, seed: String(job.seed) })
    const summary = {
      prompt: job.prompt,
      seed: job.seed,
      samples: job.samples,
      steps: job.steps,
      frames: result.video.shape[2],
      size: [result.video.shape[3], result.video.shape[4]],
      stages: result.plan.stages.length,
      ssrWindows: result.ssrWindows,
      seconds: round(result.seconds),
      secondsPerStep: round(result.secondsPerStep),
      utilisation: result.utilisation.map(round),
      forwardPasses: result.forwardPasses,
      ...(result.verification != null ? { verification: result.verification } : {}),
      files: written
    }
    if (opts.json === true) console.log(JSON.stringify(summary))
    else if (opts.quiet !== true) console.log(`wrote ${written.join(', ')} (${summary.seconds} s, ${summary.secondsPerStep} s/step, ${extname(written[0] ?? '') || 'frames'})`)
  })
}

/** Commander parser for a fraction in [0, 1]. */
function fraction (name: string) {
  return (value: string): number => {
    const n = Number(value)
    if (!(n >= 0 && n <= 1)) throw new InvalidArgumentError(`${name} must be a fraction in [0, 1].`)
    return n
  }
}

function round (x: number): number {
  return Number(x.toFixed(3))
}
