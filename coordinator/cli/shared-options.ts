import { Option } from 'commander'
import type { Command } from 'commander'
import { list, nonNegativeInt, nonNegativeNumber, positiveInt, positiveNumber } from './options.ts'

/** Options every sampling command takes: model, sampler and guidance. */
export function samplingOptions (cmd: Command): Command {
  return cmd
    .option('--negative <prompt>', 'negative prompt (the unconditional branch of guidance)', '')
    .option('--model <dir|preset>', 'model package folder, or a built-in preset: tiny, small (built on first use)', 'tiny')
    .option('--steps <n>', 'denoising steps', positiveInt('--steps'), 16)
    .option('--guidance <w>', 'classifier-free guidance weight (1 = conditional only)', nonNegativeNumber('--guidance'), 3)
    .option('--seed <n>', 'random seed: the same seed gives the same video on any machine', nonNegativeInt('--seed'), 0)
    .addOption(new Option('--sampler <name>', 'DDIM (deterministic) or ancestral').choices(['ddim', 'ancestral']).default('ddim'))
    .option('--no-thresholding', 'turn off dynamic thresholding of x̂0')
    .option('--ssr-window <frames>', 'SSR window length (default: the model\'s)', positiveInt('--ssr-window'))
    .option('--ssr-stride <frames>', 'frames between SSR window starts; less than the window makes them overlap (default: half the window)', positiveInt('--ssr-stride'))
}

/** Options for where the work runs and how tensors travel. */
export function meshOptions (cmd: Command): Command {
  return accessOptions(cmd
    .addOption(new Option('--local <k>', 'start K peer processes on loopback (default 2 when --peers is not given)').argParser(positiveInt('--local')).conflicts('peers'))
    .addOption(new Option('--peers <addr,...>', 'full multiaddrs (with /p2p/ id) of running peers').argParser(list))
    .addOption(new Option('--transport <name>', 'transport for --local peers').choices(['tcp', 'webrtc']).default('tcp'))
    .addOption(new Option('--wire <format>', 'float32 tensors on the wire as f32 (bit-exact) or f16 (half the bytes, relative error ≤ 2^-11 per element)').choices(['f32', 'f16']).default('f32'))
    .option('--timeout <seconds>', 'deadline for each forward pass over the mesh', positiveNumber('--timeout'), 600))
}

/** Options for what gets written and said. */
export function outputOptions (cmd: Command): Command {
  return cmd
    .option('--out <file>', 'video file: .mp4 (H.264), .gif, or a folder for PNG frames; -sampleN is added per sample when --samples > 1')
    .option('--tensor <file.safetensors>', 'also write the clip as tensor "video", float32 [B, 3, T, H, W] in [−1, 1]')
    .option('--quiet', 'no progress bar')
    .option('--json', 'print a JSON summary line at the end')
}

/**
 * Access-control flags of any command that runs a mesh node (access.ts):
 * `peer` and every coordinator command. Resolve them with loadAccess.
 */
export function accessOptions (cmd: Command, role: 'peer' | 'coordinator' = 'coordinator'): Command {
  const others = role === 'peer' ? 'the coordinators and the other peers of its jobs' : 'the peers'
  const local = cmd.options.some((o) => o.long === '--local')
  return cmd
    .option('--psk <file>', `pre-shared swarm key (from \`lumiere keygen\`): TCP/WebSocket connections to nodes without the same key fail. WebRTC skips it: use --allow too${local ? '; --local peers get it as well' : ''}`)
    .option('--allow <id,...>', `connect only with these peer ids, in and out, on every transport including WebRTC (list ${others})`, list)
    .option('--allow-file <file>', 'like --allow, one peer id per line (# comments)')
    .option('--identity <file>', 'private key file for a stable peer id (from `lumiere keygen --identity`); default: a new id each start')
}

