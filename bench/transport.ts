/**
 * Transport benchmark: the project's tensor channel against two baselines,
 * every pair measured back to back in the same round of one run (which runs
 * first alternates between rounds); figures are medians of the per-round
 * ratios (MB = 10^6 bytes). The TCP rounds run first, then the fresh-memory
 * rounds, then the WebRTC rounds, so that one kind's after-effects (garbage
 * to collect, busy native threads) do not land on another's.
 *
 * Layout: by default the receiving ends run in a child process and the
 * sending ends in this one, as on a real link where each end has its own
 * CPU (--one-process puts both ends in this process: then one core does the
 * sender's and the receiver's encryption).
 *
 * - raw_tcp: a node:net socket on loopback (TCP_NODELAY); the sender writes
 *   the bytes in 1 MiB slices, respecting 'drain'; the receiver copies every
 *   chunk into one preallocated, pre-touched buffer and answers one byte when
 *   the whole tensor is in. Timed from the first write to that byte.
 * - tcp (the tensor channel over libp2p TCP): an rpc `run.push` with one F32
 *   tensor attached (protocol/rpc.ts), between two createMeshNode() nodes
 *   (Noise + yamux over TCP as the mesh configures them), timed from the call
 *   to its { ok: true } reply. The server reads the tensor into one
 *   preallocated, pre-touched buffer (handleRpc's `allocate` option), as
 *   the raw receiver does, so both sides pay the same for memory.
 *   wire_tcp_ratio = tcp MB/s ÷ raw_tcp MB/s, per round, median.
 * - tcp_fresh_memory: the same call to a server with the default allocation,
 *   a fresh buffer per tensor (what peers do today): first-touch page faults
 *   cost the receiver ~0.4 ns/B on top, and collecting the freed buffers
 *   more. tcp_fresh_memory_ratio reports it, from rounds of its own (paired
 *   with raw TCP) after the others.
 * - webrtc_naive (the baseline a libp2p user gets): two nodes from
 *   createLibp2p({ transports: [webRTCDirect()], connectionEncrypters:
 *   [noise()], streamMuxers: [yamux()] }) with every option at its default;
 *   the sender opens a stream with dialProtocol and writes the tensor as
 *   64 KiB `stream.send()` calls, awaiting `stream.onDrain()` whenever send
 *   returns false; the receiver reads with `for await (const chunk of
 *   stream)` and copies each chunk into one preallocated buffer, then sends
 *   one byte back. Timed from dialProtocol to that byte.
 * - webrtc (the tensor channel over WebRTC-direct): the rpc `run.push` as
 *   for tcp (preallocated receive buffer, like the naive receiver), between
 *   createMeshNode() nodes over WebRTC-direct.
 *   wire_webrtc_gain = webrtc MB/s ÷ webrtc_naive MB/s, per round, median.
 * - f16 and bf16 (the `--wire f16` and `--wire bf16` paths): the sender
 *   narrows the F32 tensor to F16 or BF16 (src/tensor/float16.ts), pushes it
 *   with the same rpc, and the server widens it back to F32 before replying;
 *   timed from the narrowing to the reply and counted in F32 bytes.
 *   wire_f16_ratio (wire_bf16_ratio) = that ÷ raw_tcp, per round (own
 *   rounds, after the TCP ones), median; wire_f16_max_rel_error
 *   (wire_bf16_…) is the largest |widened − x| / |x| over the bench tensor's
 *   elements in the normal F16 range (the wire itself is bit-exact, so this
 *   is the whole error).
 *
 * Every ratio comes with its spread over the rounds (min and max), since the
 * machine is shared: medians move little, single rounds a lot.
 *
 *   node bench/transport.ts [--mib 256] [--webrtc-mib 64] [--rounds 9] [--narrow-rounds 3] [--one-process] [--no-webrtc] [--json]
 */
import { fork } from 'node:child_process'
import { createServer, connect } from 'node:net'
import type { AddressInfo, Socket } from 'node:net'
import { fileURLToPath } from 'node:url'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { webRTCDirect } from '@libp2p/webrtc'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import type { Libp2p } from 'libp2p'
import type { Multiaddr } from '@multiformats/multiaddr'
import { handleRpc, rpcCall } from '../protocol/rpc.ts'
import { createMeshNode, loopbackListen } from '../src/mesh/node.ts'
import type { MeshNode } from '../src/mesh/node.ts'
import { F16_MIN_NORMAL } from '../src/tensor/float16.ts'
import type { Tensor } from '../src/tensor/tensor.ts'
import { view } from '../src/tensor/tensor.ts'
import { narrowForWire, widenFromWire } from '../src/tensor/wire.ts'
import type { WireFormat } from '../src/tensor/wire.ts'
import { benchArgs, numberFlag } from './args.ts'

const NAIVE_PROTOCOL = '/lumiere-bench/naive/1.0.0'
const NAIVE_CHUNK = 64 * 1024
const RAW_SLICE = 1024 * 1024

export interface TransportOptions {
  /** Tensor size for raw TCP and libp2p TCP (default 256 MiB). */
  mib?: number
  /** Tensor size for the WebRTC pair (default 64 MiB: WebRTC-direct moves tens of MB/s). */
  webrtcMib?: number
  rounds?: number
  /** Rounds of each narrowed pair, f16 and bf16 (0 skips them; default 3: narrowing 256 MiB in JS takes about half a second). */
  narrowRounds?: number
  webrtc?: boolean
  onePlace?: boolean
  log?: (line: string) => void
}

export interface Series { mbps: number, runs: number[] }

/** The smallest and largest per-round value of a ratio. */
export type Spread = [number, number]

/** The wire formats that narrow F32 (src/tensor/wire.ts). */
type Narrowed = Exclude<WireFormat, 'f32'>
const NARROWED: readonly Narrowed[] = ['f16', 'bf16']

/** Per narrowed format: F32 bytes per second through narrow → push → widen, ÷ raw TCP; its spread; the trip's largest relative error; the series. */
export type NarrowedFigures = Partial<Record<`wire_${Narrowed}_ratio` | `wire_${Narrowed}_max_rel_error`, number> & Record<`wire_${Narrowed}_ratio_spread`, Spread> & Record<Narrowed, Series>>

export interface TransportFigures extends NarrowedFigures {
  wire_tcp_ratio: number
  wire_tcp_ratio_spread: Spread
  /** The tensor channel reading into fresh memory (the rpc default) ÷ raw TCP. */
  tcp_fresh_memory_ratio: number
  tcp_fresh_memory_ratio_spread: Spread
  wire_webrtc_gain?: number
  wire_webrtc_gain_spread?: Spread
  layout: 'two processes' | 'one process'
  bytes: number
  webrtc_bytes?: number
  rounds: number
  raw_tcp: Series
  tcp: Series
  tcp_fresh_memory: Series
  webrtc_naive?: Series
  webrtc?: Series
  tcp_ratios: number[]
  webrtc_gains?: number[]
  /** The encryption the tensor channel's TCP connection negotiated. */
  tcp_encryption?: string
}

// ------------------------------------------------------------ receivers

interface ReceiverAddrs { raw: number, mesh: string[], meshFresh: string[], meshNarrowed: string[], naive: string }

/** Starts every receiving end; `bytes` / `webrtcBytes` size the baselines' preallocated buffers. */
export async function startReceivers (bytes: number, webrtcBytes: number): Promise<{ addrs: ReceiverAddrs, stop: () => Promise<void> }> {
  // raw TCP
  const sink = new Uint8Array(bytes)
  sink.fill(1) // pre-touched: no page faults while timing the baseline
  const server = createServer((sock: Socket) => {
    sock.setNoDelay(true)
    let got = 0
    sock.on('data', (chunk: Buffer) => {
      const at = got % bytes
      const take = Math.min(chunk.byteLength, bytes - at)
      sink.set(take === chunk.byteLength ? chunk : chunk.subarray(0, take), at)
      if (take < chunk.byteLength) sink.set(chunk.subarray(take), 0)
      got += chunk.byteLength
      if (got % bytes === 0) sock.write(Uint8Array.of(1))
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))

  // the tensor channel: a mesh node serving run.push over TCP and WebRTC-direct,
  // reading tensors into a preallocated, pre-touched buffer like the baselines
  const maxTensorBytes = Math.max(bytes, webrtcBytes)
  const tensorSink = new Uint8Array(maxTensorBytes)
  tensorSink.fill(1)
  const mesh = await createMeshNode({ listen: [loopbackListen('tcp'), loopbackListen('webrtc')] })
  await handleRpc(mesh, { 'run.push': async () => ({ body: { ok: true } }) }, { maxTensorBytes, allocate: (n) => tensorSink.subarray(0, n) })
  // ... and one with the default allocation: fresh memory per tensor, as peers read activations today
  const meshFresh = await createMeshNode({ listen: [loopbackListen('tcp')] })
  await handleRpc(meshFresh, { 'run.push': async () => ({ body: { ok: true } }) }, { maxTensorBytes })
  // ... and one that widens float16 or bfloat16 tensors back to float32, as a peer on a `--wire f16` or `bf16` job does
  const meshNarrowed = await createMeshNode({ listen: [loopbackListen('tcp')] })
  await handleRpc(meshNarrowed, {
    'run.push': async (req) => {
      widenFromWire(req.tensors, req.tensors.x?.dtype === 'BF16' ? 'bf16' : 'f16')
      return { body: { ok: true } }
    }
  }, { maxTensorBytes, allocate: (n) => tensorSink.subarray(0, n) })

  // the naive WebRTC baseline: default libp2p, for-await reader
  const naive = await defaultWebRtcNode(true)
  const naiveSink = new Uint8Array(webrtcBytes)
  naiveSink.fill(1)
  await naive.handle(NAIVE_PROTOCOL, async (stream) => {
    let got = 0
    for await (const chunk of stream) {
      for (const piece of chunk instanceof Uint8Array ? [chunk] : chunk) {
        naiveSink.set(piece.subarray(0, Math.min(piece.byteLength, webrtcBytes - got)), got)
        got += piece.byteLength
      }
      if (got >= webrtcBytes) break
    }
    stream.send(Uint8Array.of(1))
    await stream.close()
  })
  const naiveAddr = naive.getMultiaddrs().find((a) => a.toString().includes('/webrtc-direct'))
  return {
    addrs: { raw: (server.address() as AddressInfo).port, mesh: mesh.getMultiaddrs().map(String), meshFresh: meshFresh.getMultiaddrs().map(String), meshNarrowed: meshNarrowed.getMultiaddrs().map(String), naive: String(naiveAddr) },
    stop: async () => {
      server.close()
      await Promise.all([mesh.stop(), meshFresh.stop(), meshNarrowed.stop(), naive.stop()])
    }
  }
}

async function defaultWebRtcNode (listen: boolean): Promise<Libp2p> {
  return createLibp2p({
    addresses: { listen: listen ? ['/ip4/127.0.0.1/udp/0/webrtc-direct'] : [] },
    transports: [webRTCDirect()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()]
  })
}

// ------------------------------------------------------------ senders

function makeTensor (bytes: number): Tensor {
  const data = new Uint8Array(bytes)
  const f = new Float32Array(data.buffer)
  for (let i = 0; i < f.length; i++) f[i] = Math.sin(i) // touched, and not all zeros
  return { dtype: 'F32', shape: [bytes / 4], data }
}

async function rawSender (port: number, tensor: Tensor): Promise<{ once: () => Promise<void>, close: () => void }> {
  const sock = connect(port, '127.0.0.1')
  sock.setNoDelay(true)
  await new Promise<void>((resolve, reject) => { sock.once('connect', resolve); sock.once('error', reject) })
  const data = tensor.data
  return {
    once: async () => {
      const ack = new Promise<void>((resolve) => sock.once('data', () => { resolve() }))
      for (let at = 0; at < data.byteLength; at += RAW_SLICE) {
        if (!sock.write(data.subarray(at, Math.min(at + RAW_SLICE, data.byteLength)))) {
          await new Promise<void>((resolve) => sock.once('drain', resolve))
        }
      }
      await ack
    },
    close: () => { sock.destroy() }
  }
}

function rpcSender (client: MeshNode, addr: Multiaddr, tensor: Tensor): () => Promise<void> {
  return async () => {
    await rpcCall(client, addr, 'run.push', { jobId: 'bench', runId: 'r', stage: 0 }, { tensors: { x: tensor }, timeoutMs: 600_000 })
  }
}

/** The `--wire f16` or `bf16` path: narrow here, push, the server widens. */
function narrowedSender (client: MeshNode, addr: Multiaddr, tensor: Tensor, wire: Narrowed): () => Promise<void> {
  return async () => {
    await rpcCall(client, addr, 'run.push', { jobId: 'bench', runId: 'r', stage: 0 }, { tensors: { x: narrowForWire(tensor, wire) }, timeoutMs: 600_000 })
  }
}

/** Largest relative error of the F32 → narrowed → F32 trip over the elements in the normal F16 range. */
function narrowedRelativeError (tensor: Tensor, wire: Narrowed): number {
  const x = view(tensor) as Float32Array
  const back = view(widenFromWire({ x: narrowForWire(tensor, wire) }, wire).x) as Float32Array
  let worst = 0
  for (let i = 0; i < x.length; i++) {
    if (Math.abs(x[i]) >= F16_MIN_NORMAL) worst = Math.max(worst, Math.abs(back[i] - x[i]) / Math.abs(x[i]))
  }
  return worst
}

function naiveSender (client: Libp2p, addr: Multiaddr, data: Uint8Array): () => Promise<void> {
  return async () => {
    const stream = await client.dialProtocol(addr, NAIVE_PROTOCOL)
    const ack = (async () => { for await (const chunk of stream) return chunk })()
    for (let at = 0; at < data.byteLength; at += NAIVE_CHUNK) {
      if (!stream.send(data.subarray(at, Math.min(at + NAIVE_CHUNK, data.byteLength)))) await stream.onDrain()
    }
    await ack
    await stream.close()
  }
}

export function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2
}

async function rate (bytes: number, once: () => Promise<void>): Promise<number> {
  const t0 = performance.now()
  await once()
  return bytes / 1e6 / ((performance.now() - t0) / 1000)
}

/** Starts the receivers in a child process (or here), runs the rounds, returns the figures. */
export async function measureTransport (options: TransportOptions = {}): Promise<TransportFigures> {
  const bytes = Math.round((options.mib ?? 256) * 1024 * 1024 / 4) * 4
  const webrtcBytes = Math.round((options.webrtcMib ?? 64) * 1024 * 1024 / 4) * 4
  const rounds = options.rounds ?? 9
  const narrowRounds = options.narrowRounds ?? 3
  const withWebrtc = options.webrtc !== false
  const log = options.log ?? (() => {})

  let addrs: ReceiverAddrs
  let stopReceivers: () => Promise<void>
  if (options.onePlace === true) {
    const r = await startReceivers(bytes, webrtcBytes)
    addrs = r.addrs
    stopReceivers = r.stop
  } else {
    const child = fork(fileURLToPath(import.meta.url), ['--receivers', String(bytes), String(webrtcBytes)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    addrs = await new Promise<ReceiverAddrs>((resolve, reject) => {
      child.once('message', (m) => { resolve(m as ReceiverAddrs) })
      child.once('exit', (code) => { reject(new Error(`receiver process exited with code ${code}`)) })
    })
    stopReceivers = async () => {
      const exited = new Promise((resolve) => child.once('exit', resolve))
      child.kill('SIGTERM')
      await exited
    }
  }

  const tensor = makeTensor(bytes)
  const meshClient = await createMeshNode()
  // A node of its own for WebRTC: libp2p reuses an open connection to a peer
  // whatever address is dialled, so this one must never hold a TCP connection.
  const rtcClient = withWebrtc ? await createMeshNode() : undefined
  const naiveClient = withWebrtc ? await defaultWebRtcNode(false) : undefined
  const raw = await rawSender(addrs.raw, tensor)
  try {
    const tcpAddr = multiaddr(addrs.mesh.find((a) => a.includes('/tcp/')) ?? '')
    const rtcAddr = multiaddr(addrs.mesh.find((a) => a.includes('/webrtc-direct')) ?? '')
    const tcp = rpcSender(meshClient, tcpAddr, tensor)
    const fresh = rpcSender(meshClient, multiaddr(addrs.meshFresh.find((a) => a.includes('/tcp/')) ?? ''), tensor)
    const narrowedAddr = multiaddr(addrs.meshNarrowed.find((a) => a.includes('/tcp/')) ?? '')
    const small: Tensor = { dtype: 'F32', shape: [webrtcBytes / 4], data: tensor.data.subarray(0, webrtcBytes) }
    const rtc = rtcClient != null ? rpcSender(rtcClient, rtcAddr, small) : undefined
    const naive = naiveClient != null ? naiveSender(naiveClient, multiaddr(addrs.naive), small.data) : undefined
    if ((naive == null) !== (rtc == null)) throw new Error('unreachable')

    // warm-up: connections, JIT, the receivers' first allocations
    await raw.once()
    await tcp()

    const series: Record<'raw' | 'tcp' | 'fresh' | 'naive' | 'rtc', number[]> = { raw: [], tcp: [], fresh: [], naive: [], rtc: [] }
    const tcpRatios: number[] = []
    const freshRatios: number[] = []
    const narrowed: Array<{ wire: Narrowed, mbps: number[], ratios: number[] }> = []
    const gains: number[] = []
    // Each pair alternates which of its two runs first, round by round, so
    // that a drift in the machine's load favours neither.
    const pair = async (r: number, n: number, first: () => Promise<void>, second: () => Promise<void>): Promise<[number, number]> => {
      if (r % 2 === 0) {
        const a = await rate(n, first)
        return [a, await rate(n, second)]
      }
      const b = await rate(n, second)
      return [await rate(n, first), b]
    }
    for (let r = 0; r < rounds; r++) {
      const [a, b] = await pair(r, bytes, raw.once, tcp)
      series.raw.push(a)
      series.tcp.push(b)
      tcpRatios.push(b / a)
      log(`  TCP round ${r + 1}: raw TCP ${a.toFixed(0)} MB/s, tensor channel over libp2p TCP ${b.toFixed(0)} MB/s (ratio ${(b / a).toFixed(3)})`)
    }
    // In rounds of their own, after the others: the freed 256 MiB buffers of
    // this server make the receiving process collect and unmap them during
    // later transfers, which would slow whatever runs then.
    for (let r = 0; r < Math.max(3, Math.ceil(rounds / 3)); r++) {
      const [a, e] = await pair(r, bytes, raw.once, fresh)
      series.fresh.push(e)
      freshRatios.push(e / a)
      log(`  fresh-memory round ${r + 1}: raw TCP ${a.toFixed(0)} MB/s, tensor channel into fresh memory ${e.toFixed(0)} MB/s (ratio ${(e / a).toFixed(3)})`)
    }
    // The narrowed rounds allocate too (the narrowed copy here, the widened one there): after the others.
    for (const wire of narrowRounds > 0 ? NARROWED : []) {
      const send = narrowedSender(meshClient, narrowedAddr, tensor, wire)
      const n = { wire, mbps: [] as number[], ratios: [] as number[] }
      for (let r = 0; r < narrowRounds; r++) {
        const [a, h] = await pair(r, bytes, raw.once, send)
        n.mbps.push(h)
        n.ratios.push(h / a)
        log(`  ${wire} round ${r + 1}: raw TCP ${a.toFixed(0)} MB/s, F32 through narrow + push as ${wire} + widen ${h.toFixed(0)} MB/s (ratio ${(h / a).toFixed(3)})`)
      }
      narrowed.push(n)
    }
    // WebRTC last as well: node-datachannel's threads stay busy for a while
    // after a transfer and would slow a TCP run that followed.
    if (naive != null && rtc != null) {
      await naive()
      await rtc()
      for (let r = 0; r < rounds; r++) {
        const [c, d] = await pair(r, webrtcBytes, naive, rtc)
        series.naive.push(c)
        series.rtc.push(d)
        gains.push(d / c)
        log(`  WebRTC round ${r + 1}: default libp2p stream ${c.toFixed(0)} MB/s, tensor channel ${d.toFixed(0)} MB/s (gain ${(d / c).toFixed(2)})`)
      }
    }
    const s = (xs: number[]): Series => ({ mbps: Math.round(median(xs)), runs: xs.map((x) => Math.round(x)) })
    const fix = (x: number): number => Number(x.toFixed(3))
    const spread = (xs: number[]): Spread => [fix(Math.min(...xs)), fix(Math.max(...xs))]
    const encryption = meshClient.getConnections()[0]?.encryption
    const rtcPath = rtcClient?.getConnections().map((c) => c.remoteAddr.toString())
    if (rtcPath != null && !rtcPath.every((a) => a.includes('/webrtc-direct'))) throw new Error(`the WebRTC client holds a non-WebRTC connection: ${rtcPath.join(', ')}`)
    return {
      wire_tcp_ratio: fix(median(tcpRatios)),
      wire_tcp_ratio_spread: spread(tcpRatios),
      tcp_fresh_memory_ratio: fix(median(freshRatios)),
      tcp_fresh_memory_ratio_spread: spread(freshRatios),
      ...(naive != null ? { wire_webrtc_gain: fix(median(gains)), wire_webrtc_gain_spread: spread(gains) } : {}),
      ...Object.fromEntries(narrowed.flatMap((n) => [
        [`wire_${n.wire}_ratio`, fix(median(n.ratios))],
        [`wire_${n.wire}_ratio_spread`, spread(n.ratios)],
        [`wire_${n.wire}_max_rel_error`, Number(narrowedRelativeError(tensor, n.wire).toPrecision(3))],
        [n.wire, s(n.mbps)]
      ])) as NarrowedFigures,
      layout: options.onePlace === true ? 'one process' : 'two processes',
      bytes,
      ...(naive != null ? { webrtc_bytes: webrtcBytes } : {}),
      rounds,
      raw_tcp: s(series.raw),
      tcp: s(series.tcp),
      tcp_fresh_memory: s(series.fresh),
      ...(naive != null ? { webrtc_naive: s(series.naive), webrtc: s(series.rtc) } : {}),
      tcp_ratios: tcpRatios.map(fix),
      ...(naive != null ? { webrtc_gains: gains.map(fix) } : {}),
      ...(encryption != null ? { tcp_encryption: encryption } : {})
    }
  } finally {
    raw.close()
    await Promise.all([meshClient.stop(), rtcClient?.stop(), naiveClient?.stop()])
    await stopReceivers()
  }
}

const USAGE = 'node bench/transport.ts [--mib 256] [--webrtc-mib 64] [--rounds 9] [--narrow-rounds 3] [--one-process] [--no-webrtc] [--json]'

if (import.meta.main) {
  if (process.argv[2] === '--receivers') {
    const r = await startReceivers(Number(process.argv[3]), Number(process.argv[4]))
    process.once('SIGTERM', () => { void r.stop().finally(() => process.exit(0)) })
    process.send?.(r.addrs)
  } else {
    const values = benchArgs({
      mib: { type: 'string', default: '256' },
      'webrtc-mib': { type: 'string', default: '64' },
      rounds: { type: 'string', default: '9' },
      'narrow-rounds': { type: 'string', default: '3' },
      'one-process': { type: 'boolean', default: false },
      'no-webrtc': { type: 'boolean', default: false },
      json: { type: 'boolean', default: false }
    }, USAGE)
    const mib = numberFlag(values, 'mib', USAGE)
    const webrtcMib = numberFlag(values, 'webrtc-mib', USAGE)
    const rounds = numberFlag(values, 'rounds', USAGE)
    const narrowRounds = numberFlag(values, 'narrow-rounds', USAGE, { min: 0 })
    const log = (line: string): void => { if (values.json !== true) console.log(line) }
    log(`tensor channel vs baselines, ${values['one-process'] === true ? 'both ends in this process' : 'receivers in a child process'}, node ${process.version}`)
    const f = await measureTransport({ mib, webrtcMib, rounds, narrowRounds, onePlace: values['one-process'], webrtc: values['no-webrtc'] !== true, log })
    if (values.json === true) console.log(JSON.stringify(f))
    else {
      const range = (s: Spread): string => `rounds ${s[0]}–${s[1]}`
      log(`wire_tcp_ratio         ${f.wire_tcp_ratio}  (${range(f.wire_tcp_ratio_spread)}; raw TCP ${f.raw_tcp.mbps} MB/s, tensor channel ${f.tcp.mbps} MB/s, ${f.tcp_encryption ?? '?'})`)
      log(`tcp_fresh_memory_ratio ${f.tcp_fresh_memory_ratio}  (${range(f.tcp_fresh_memory_ratio_spread)}; tensor channel into fresh memory ${f.tcp_fresh_memory.mbps} MB/s)`)
      for (const w of NARROWED) {
        const spreadOf = f[`wire_${w}_ratio_spread`]
        if (spreadOf != null) log(`${`wire_${w}_ratio`.padEnd(23)}${f[`wire_${w}_ratio`]}  (${range(spreadOf)}; ${f[w]?.mbps} MB/s of F32; max relative error ${f[`wire_${w}_max_rel_error`]})`)
      }
      if (f.wire_webrtc_gain != null && f.wire_webrtc_gain_spread != null) log(`wire_webrtc_gain       ${f.wire_webrtc_gain}  (${range(f.wire_webrtc_gain_spread)}; naive ${f.webrtc_naive?.mbps} MB/s, tensor channel ${f.webrtc?.mbps} MB/s)`)
    }
  }
}
