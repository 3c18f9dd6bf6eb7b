/**
 * Transport benchmark: one F32 tensor (64 MiB by default) moved through the
 * project's own tensor channel — an rpc `run.push` with one attached tensor,
 * timed from the call to its { ok: true } reply — over libp2p TCP and over
 * libp2p WebRTC-direct, against a raw node:net TCP socket on loopback whose
 * receiver copies into one preallocated buffer (as a tensor receiver must).
 * Both ends run in this process. Each figure is the median of several runs
 * after one warm-up. MB = 10^6 bytes.
 *
 *   node bench/transport.ts [--mib 64] [--reps 5] [--json]
 */
import { createServer, connect } from 'node:net'
import type { AddressInfo, Socket } from 'node:net'
import { parseArgs } from 'node:util'
import { handleRpc, rpcCall } from '../protocol/rpc.ts'
import { createMeshNode, loopbackListen } from '../src/mesh/node.ts'
import type { TransportName } from '../src/mesh/node.ts'
import type { Tensor } from '../src/tensor/tensor.ts'

const { values } = parseArgs({
  options: {
    mib: { type: 'string', default: '64' },
    reps: { type: 'string', default: '5' },
    json: { type: 'boolean', default: false }
  }
})
const mib = Number(values.mib)
const reps = Number(values.reps)
if (!(mib > 0) || !Number.isInteger(reps) || reps < 1) {
  console.error('usage: node bench/transport.ts [--mib 64] [--reps 5] [--json]')
  process.exit(2)
}
const bytes = Math.round(mib * 1024 * 1024 / 4) * 4
const log = (line: string): void => { if (values.json !== true) console.log(line) }

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2
}

function makeTensor (): Tensor {
  const data = new Uint8Array(bytes)
  const f = new Float32Array(data.buffer)
  for (let i = 0; i < f.length; i += 1024) f[i] = i // touch every page; content is irrelevant
  return { dtype: 'F32', shape: [bytes / 4], data }
}

async function measure (name: string, once: () => Promise<void>, runs: number): Promise<{ mbps: number, runs: number[] }> {
  await once() // warm-up: connection set-up, JIT
  const rates: number[] = []
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now()
    await once()
    const s = (performance.now() - t0) / 1000
    rates.push(bytes / 1e6 / s)
    log(`  ${name} run ${i + 1}: ${(bytes / 1e6 / s).toFixed(0)} MB/s`)
  }
  return { mbps: median(rates), runs: rates }
}

async function rawTcp (tensor: Tensor): Promise<{ mbps: number, runs: number[] }> {
  const sink = new Uint8Array(bytes)
  const server = createServer((sock: Socket) => {
    let got = 0
    sock.on('data', (chunk: Buffer) => {
      sink.set(chunk, got % bytes)
      got += chunk.byteLength
      if (got % bytes === 0) sock.write(Buffer.from([1]))
    })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  const sock = connect(port, '127.0.0.1')
  sock.setNoDelay(true)
  await new Promise<void>(resolve => sock.once('connect', resolve))
  const once = async (): Promise<void> => {
    const ack = new Promise<void>(resolve => sock.once('data', () => { resolve() }))
    for (let at = 0; at < bytes; at += 1024 * 1024) {
      if (!sock.write(tensor.data.subarray(at, Math.min(at + 1024 * 1024, bytes)))) {
        await new Promise<void>(resolve => sock.once('drain', resolve))
      }
    }
    await ack
  }
  try {
    return await measure('raw-tcp', once, reps)
  } finally {
    sock.destroy()
    server.close()
  }
}

async function libp2p (transport: TransportName, tensor: Tensor, runs: number): Promise<{ mbps: number, runs: number[] }> {
  const server = await createMeshNode({ listen: [loopbackListen(transport)] })
  const client = await createMeshNode()
  try {
    await handleRpc(server, { 'run.push': async () => ({ body: { ok: true } }) }, { maxTensorBytes: bytes })
    const want = transport === 'tcp' ? '/tcp/' : '/webrtc-direct'
    const addr = server.getMultiaddrs().find(a => a.toString().includes(want))
    if (addr == null) throw new Error(`no ${transport} listen address`)
    const once = async (): Promise<void> => {
      await rpcCall(client, addr, 'run.push', { jobId: 'bench', runId: 'r', stage: 0 }, { tensors: { x: tensor }, timeoutMs: 120_000 })
    }
    return await measure(`libp2p-${transport}`, once, runs)
  } finally {
    await client.stop()
    await server.stop()
  }
}

const tensor = makeTensor()
log(`moving one F32 tensor of ${(bytes / 1024 / 1024).toFixed(0)} MiB, median of ${reps} runs (MB = 10^6 bytes), node ${process.version}`)
const raw = await rawTcp(tensor)
const tcp = await libp2p('tcp', tensor, reps)
const webrtc = await libp2p('webrtc', tensor, Math.max(1, Math.min(reps, 3)))
const row = (name: string, r: { mbps: number }): string => `${name.padEnd(14)} ${r.mbps.toFixed(0).padStart(5)} MB/s  ratio ${(r.mbps / raw.mbps).toFixed(2)}`

if (values.json === true) {
  const entry = (r: { mbps: number, runs: number[] }): object => ({ mbps: Math.round(r.mbps), ratio: Number((r.mbps / raw.mbps).toFixed(3)), runs: r.runs.map(x => Math.round(x)) })
  console.log(JSON.stringify({ bytes, mib: bytes / 1024 / 1024, reps, node: process.version, channel: 'rpc run.push, one attached tensor', rawTcp: entry(raw), tcp: entry(tcp), webrtc: entry(webrtc) }))
} else {
  console.log(row('raw-tcp', raw))
  console.log(row('tcp', tcp))
  console.log(row('webrtc', webrtc))
}
