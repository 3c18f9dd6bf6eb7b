import { Option } from 'commander'
import type { Command } from 'commander'
import { collect, list, nonNegativeInt, nonNegativeNumber, positiveInt, positiveNumber } from './options.ts'
import type { MeshOptions } from '../mesh-session.ts'
import { WIRE_FORMATS } from '../../src/tensor/wire.ts'

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

/** --wire: how float32 tensors travel (src/tensor/wire.ts). */
export function wireOption (): Option {
  return new Option('--wire <format>', 'float32 tensors on the wire as f32 (bit-exact), f16 (half the bytes, relative error ≤ 2^-11 per element, finite up to 65504) or bf16 (half the bytes, ≤ 2^-8, float32\'s range)').choices(WIRE_FORMATS).default('f32')
}

/** Options for where the work runs and how tensors travel. */
export function meshOptions (cmd: Command): Command {
  return accessOptions(discoveryOptions(cmd
    .addOption(new Option('--local <k>', 'start K peer processes on loopback (default 2 when neither --peers nor --discover is given)').argParser(positiveInt('--local')).conflicts('peers'))
    .addOption(new Option('--peers <addr,...>', 'full multiaddrs (with /p2p/ id) of running peers').argParser(list))
    .addOption(new Option('--transport <name>', 'transport for --local peers').choices(['tcp', 'webrtc']).default('tcp'))
    .addOption(wireOption())
    .option('--timeout <seconds>', 'deadline for each forward pass over the mesh', positiveNumber('--timeout'), 600)))
}

/** Flags of discoveryOptions. */
export interface DiscoveryFlags {
  discover?: number
  discoverTimeout: number
  listen?: string[]
  relay?: boolean
}

/**
 * Options for peers that find the coordinator on their own: mDNS on the LAN
 * (--discover) and join requests (--listen; --relay for peers behind NAT).
 */
export function discoveryOptions (cmd: Command): Command {
  return cmd
    .addOption(new Option('--discover <n>', 'wait for N peers that find this coordinator: on the LAN by mDNS (peers started with --mdns) and, with --listen, by joining it (peers started with --join); more are taken in as they come').argParser(positiveInt('--discover')).conflicts('local'))
    .option('--discover-timeout <seconds>', 'how long --discover waits for its N peers', positiveNumber('--discover-timeout'), 60)
    .option('--listen <multiaddr>', 'listen here (repeatable, e.g. /ip4/0.0.0.0/tcp/4001), so peers can join with `lumiere peer --join ADDR`; the full addresses are printed at start (give the coordinator a stable id with --identity)', collect)
    .option('--relay', 'relay for joining peers behind NAT: they are reached by WebRTC signalled through this coordinator, which carries no tensors (needs --listen)')
}

/** The mesh options of the discovery flags; the listen addresses are printed on stderr unless `quiet`. */
export function discoveryMeshOptions (opts: DiscoveryFlags, quiet?: boolean): Pick<MeshOptions, 'discover' | 'discoverTimeoutMs' | 'listen' | 'relay' | 'onListening'> {
  return {
    discover: opts.discover,
    discoverTimeoutMs: opts.discoverTimeout * 1000,
    listen: opts.listen,
    relay: opts.relay,
    onListening: (addrs) => { if (quiet !== true) for (const a of addrs) console.error(`coordinator listening on ${a}`) }
  }
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

