// The peer daemon as a process: address file, capabilities, stage graphs
// cached on disk by hash (sent once), clean exit on SIGINT and SIGTERM.
import { mkdtemp, readdir, readFile, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import './fixtures/exit-when-done.ts'
import { Coordinator } from '../coordinator/coordinator.ts'
import { deploy } from '../coordinator/deploy.ts'
import { spawnPeer } from '../coordinator/local-mesh.ts'
import { buildDagProbed } from '../src/onnx/graph.ts'
import { convSkipNet, randomInputs } from './fixtures/graphs.ts'

const dir = await mkdtemp(join(tmpdir(), 'lumiere-peer-'))

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  t.test(`peer lifecycle, stopped by ${signal}`, async (t) => {
    const cache = join(dir, `cache-${signal}`)
    const addrFile = join(dir, `${signal}.addrs`)
    const peer = await spawnPeer(['--listen', '/ip4/127.0.0.1/tcp/0', '--listen', '/ip4/127.0.0.1/udp/0/webrtc-direct', '--addr-file', addrFile, '--cache', cache])
    t.teardown(peer.stop)

    const lines = (await readFile(addrFile, 'utf8')).trim().split('\n')
    t.equal(lines.length, 2, 'one address per listener')
    t.ok(lines.some((a) => /^\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\/12D3Koo/.test(a)), 'a TCP address with its /p2p/ id')
    t.ok(lines.some((a) => /\/webrtc-direct\/certhash\/.+\/p2p\/12D3Koo/.test(a)), 'a WebRTC-direct address with certhash and /p2p/ id')

    const coordinator = await Coordinator.start()
    t.teardown(async () => { await coordinator.stop() })
    const [info] = await coordinator.connect([lines[0]])
    t.ok(info.capabilities.executionProviders.includes('cpu'), 'cpu execution provider reported')
    t.ok(info.capabilities.speed > 0, `measured speed ${info.capabilities.speed.toFixed(1)} GFLOP/s`)
    t.ok(info.capabilities.memoryBytes > 0 && info.capabilities.freeMemoryBytes > 0, 'memory reported')
    t.equal(info.capabilities.cachedStages, 0, 'empty cache at start')
    t.notMatch(peer.stderr(), /Failed to load|providers_shared/, 'no failed provider load on stderr at start (an install without GPU providers does not try CUDA)')

    const model = convSkipNet()
    const inputs = randomInputs(model, 1)
    const dag = await buildDagProbed(model, { inputs })
    const first = await deploy(coordinator, model, dag, [info], 1)
    await first.pipeline.run(inputs, { timeoutMs: 30_000 })
    await first.pipeline.close()
    const files = await readdir(cache)
    t.same(files, [`${first.pipeline.stageHashes()[0]}.onnx`], 'the stage graph is on disk under its hash')
    const written = (await stat(join(cache, files[0]))).mtimeMs

    const second = await deploy(coordinator, model, dag, [info], 1)
    await second.pipeline.run(inputs, { timeoutMs: 30_000 })
    await second.pipeline.close()
    t.equal((await stat(join(cache, files[0]))).mtimeMs, written, 'a second job does not send the graph again')
    const [again] = await coordinator.connect([lines[0]])
    t.equal(again.capabilities.cachedStages, 1, 'capabilities count the cached stage')

    const exited = new Promise<number | null>((resolve) => peer.process.once('exit', (code) => { resolve(code) }))
    peer.process.kill(signal)
    const code = await Promise.race([exited, new Promise((resolve) => setTimeout(() => { resolve('timeout') }, 10_000))])
    t.equal(code, 0, `${signal} stops the peer with exit code 0`)
  })
}
