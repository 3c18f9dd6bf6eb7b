// Every user mistake is one clear line on stderr and a non-zero exit: no
// stack trace, no hang.
import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import type { Test } from 'tap'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { spawnPeer } from '../coordinator/local-mesh.ts'
import { saveModel } from '../src/onnx/model-io.ts'
import { writeSafetensors } from '../src/tensor/safetensors.ts'
import { runCli } from './fixtures/cli.ts'
import { convSkipNet, randomInputs } from './fixtures/graphs.ts'
import { slowInputs, slowModel } from './fixtures/slow-model.ts'
import type { CliResult } from './fixtures/cli.ts'

const dir = await mkdtemp(join(tmpdir(), 'lumiere-cli-'))
const model = join(dir, 'net.onnx')
const inputs = join(dir, 'in.safetensors')
const out = join(dir, 'out.safetensors')
const net = convSkipNet()
saveModel(net, model)
const good = randomInputs(net, 3)
await writeSafetensors(inputs, good)
const [inputName] = Object.keys(good)

function oneLineError (t: Test, r: CliResult, code: string): void {
  t.equal(r.code, 1, `exit code 1 (got ${r.code})`)
  const lines = r.stderr.trim().split('\n')
  t.equal(lines.length, 1, `one line on stderr: ${r.stderr.trim()}`)
  t.match(lines[0], new RegExp(`^error \\[${code}\\]: \\S`), `the line names ${code}`)
  t.notMatch(r.stderr, /\n\s+at /, 'no stack trace')
}

t.test('missing ONNX file', async (t) => {
  oneLineError(t, await runCli(['infer', '--model', join(dir, 'nope.onnx'), '--input', inputs, '--out', out, '--local', '1']), 'FILE_NOT_FOUND')
})

t.test('corrupt ONNX file', async (t) => {
  const bad = join(dir, 'bad.onnx')
  await writeFile(bad, Buffer.from('this is not a protobuf at all \x00\xff\xfe'))
  oneLineError(t, await runCli(['infer', '--model', bad, '--input', inputs, '--out', out, '--local', '1']), 'BAD_ONNX')
})

t.test('inputs that do not match the graph', async (t) => {
  const cases: Array<[string, Record<string, typeof good[string]>]> = [
    ['wrong name', { other: good[inputName] }],
    ['wrong shape', { [inputName]: { ...good[inputName], shape: [1, 4, 8, 32] } }],
    ['wrong dtype', { [inputName]: { dtype: 'I32', shape: good[inputName].shape, data: good[inputName].data } }]
  ]
  for (const [what, tensors] of cases) {
    const file = join(dir, `${what.replace(' ', '-')}.safetensors`)
    await writeSafetensors(file, tensors)
    await t.test(what, async (t) => {
      oneLineError(t, await runCli(['infer', '--model', model, '--input', file, '--out', out, '--local', '1']), 'INPUT_MISMATCH')
    })
  }
})

t.test('unreachable peer', async (t) => {
  const id = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
  const r = await runCli(['infer', '--model', model, '--input', inputs, '--out', out, '--peers', `/ip4/127.0.0.1/tcp/9/p2p/${id.toString()}`])
  oneLineError(t, r, 'PEER_UNREACHABLE')
})

t.test('more stages than the graph has nodes', async (t) => {
  oneLineError(t, await runCli(['plan', '--model', model, '--stages', '500']), 'PLAN_IMPOSSIBLE')
  oneLineError(t, await runCli(['infer', '--model', model, '--input', inputs, '--out', out, '--local', '1', '--stages', '500']), 'PLAN_IMPOSSIBLE')
})

t.test('a peer that dies mid-run', async (t) => {
  const slow = join(dir, 'slow.onnx')
  saveModel(slowModel(), slow)
  const slowIn = join(dir, 'slow.safetensors')
  await writeSafetensors(slowIn, slowInputs(10_000_000))
  const peer = await spawnPeer(['--listen', '/ip4/127.0.0.1/tcp/0', '--addr-file', join(dir, 'dying.addrs')], { env: { ...process.env, LUMIERE_LOG: 'debug' } })
  t.teardown(peer.stop)
  const killer = setInterval(() => {
    if (peer.stderr().includes('stage run started')) {
      clearInterval(killer)
      peer.process.kill('SIGKILL')
    }
  }, 20)
  t.teardown(() => { clearInterval(killer) })
  const started = performance.now()
  const r = await runCli(['infer', '--model', slow, '--input', slowIn, '--out', out, '--peers', peer.addrs[0]], { timeoutMs: 60_000 })
  t.equal(peer.process.signalCode, 'SIGKILL', 'the peer was killed while running its stage')
  oneLineError(t, r, 'PEER_LOST')
  t.ok(performance.now() - started < 30_000, 'the coordinator noticed well before its deadline')
})

t.test('bad flags are refused by the parser', async (t) => {
  const r = await runCli(['infer', '--model', model, '--input', inputs, '--out', out, '--local', 'zero'])
  t.not(r.code, 0, 'non-zero exit')
  t.match(r.stderr, /--local must be a whole number/)
  t.notMatch(r.stderr, /\n\s+at /, 'no stack trace')
})
