// Peers that find the coordinator on their own, on loopback: mDNS (only
// peers with the coordinator's --psk count; too few is a clear error), join
// requests through the coordinator's relay (a peer reachable only by WebRTC
// signalled through it, taking a 1 MiB upload over that WebRTC connection,
// never the relay), --allow on joins, peers joining a restarted coordinator
// again, and one-line errors for bad flags. Generations over discovered peers
// equal the same generation over --local peers bit for bit.
import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as wait } from 'node:timers/promises'
import t from 'tap'
import './fixtures/exit-when-done.ts'
import { Coordinator } from '../coordinator/coordinator.ts'
import { startServer } from '../coordinator/serve/server.ts'
import { loadAccess, readIdentity, writeIdentity, writeSwarmKey } from '../src/mesh/access.ts'
import { isRelayedWebrtc } from '../src/mesh/relay.ts'
import { CLI, runCli } from './fixtures/cli.ts'
import { relayedUpload } from './fixtures/relayed-upload.ts'
import type { ChildProcess } from 'node:child_process'
import type { LumiereServer } from '../coordinator/serve/server.ts'

const dir = await mkdtemp(join(tmpdir(), 'lumiere-discovery-'))
t.teardown(async () => rm(dir, { recursive: true, force: true }))
const env = { ...process.env, LUMIERE_CACHE: process.env.LUMIERE_CACHE ?? join(dir, 'cache') }
process.env.LUMIERE_CACHE = env.LUMIERE_CACHE
const GENERATE = ['generate', 'a red ball', '--steps', '2', '--no-ssr', '--quiet']

interface Proc { child: ChildProcess, output: () => string, stop: () => Promise<void> }

let peerCount = 0
/** A `lumiere peer` process; its stdout and stderr are kept (its addresses, its logs). */
function peer (args: string[]): Proc {
  const child = spawn(process.execPath, [CLI, 'peer', '--threads', '1', '--cache', join(dir, `stages-${peerCount++}`), ...args], { stdio: ['ignore', 'pipe', 'pipe'], env })
  let out = ''
  child.stdout?.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr?.on('data', (d: Buffer) => { out += d.toString() })
  const stop = async (): Promise<void> => {
    if (child.exitCode != null || child.signalCode != null) return
    const exited = new Promise((resolve) => child.once('exit', resolve))
    child.kill('SIGKILL')
    await exited
  }
  t.teardown(stop)
  return { child, output: () => out, stop }
}

async function until<T> (what: string, probe: () => T | undefined | Promise<T | undefined>, timeoutMs = 45_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await probe()
    if (value != null && value !== false) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await wait(100)
  }
}

async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise((resolve) => server.close(resolve))
  return port
}

const reference = join(dir, 'reference.safetensors')
const made = await runCli([...GENERATE, '--local', '2', '--tensor', reference], { env, timeoutMs: 120_000 })
if (made.code !== 0) throw new Error(`reference generation failed: ${made.stderr}`)

t.test('mDNS: peers announced on the LAN are found with no address typed; only those with our --psk count', async (t) => {
  const key = join(dir, 'rig.psk')
  const other = join(dir, 'other.psk')
  await writeSwarmKey(key)
  await writeSwarmKey(other)
  const peers = [peer(['--mdns', '--psk', key, '--listen', '/ip4/127.0.0.1/tcp/0']), peer(['--mdns', '--psk', key, '--listen', '/ip4/127.0.0.1/tcp/0'])]
  const stranger = peer(['--mdns', '--psk', other, '--listen', '/ip4/127.0.0.1/tcp/0'])
  for (const p of [...peers, stranger]) await until('a peer to listen', () => /\/p2p\//.test(p.output()))

  const short = await runCli([...GENERATE, '--discover', '3', '--discover-timeout', '6', '--psk', key, '--tensor', join(dir, 'never.safetensors')], { env, timeoutMs: 60_000 })
  t.equal(short.code, 1, 'too few peers: exit 1')
  t.match(short.stderr, /^error \[DEADLINE_EXCEEDED\]: found 2 of the 3 peers wanted within 6 s; 1 more answered but could not be used \(.*pre-shared key/m, 'says how many were found, and why the other one does not count')
  t.notMatch(short.stderr, /\n\s+at /, 'no stack trace')

  const out = join(dir, 'mdns.safetensors')
  const r = await runCli([...GENERATE, '--discover', '2', '--psk', key, '--tensor', out], { env, timeoutMs: 120_000 })
  t.equal(r.code, 0, `generates over the 2 discovered peers ${r.stderr}`)
  t.ok((await readFile(out)).equals(await readFile(reference)), 'the clip (and its file) equals the --local 2 one bit for bit')
  await Promise.all([...peers, stranger].map(async (p) => p.stop()))
})

t.test('mDNS: a peer that restarts is admitted again, and each admission reaches Coordinator.onJoin', async (t) => {
  const key = join(dir, 'restart.psk')
  await writeSwarmKey(key)
  const identity = join(dir, 'restarting.key')
  const id = await writeIdentity(identity)
  const coordinator = await Coordinator.start({ access: await loadAccess({ psk: key }), mdns: true })
  t.teardown(async () => coordinator.stop())
  const joined: string[] = []
  coordinator.onJoin((p) => { joined.push(p.id) })
  const args = ['--mdns', '--psk', key, '--identity', identity, '--listen', '/ip4/127.0.0.1/tcp/0']
  const first = peer(args)
  const found = await coordinator.discovery?.waitFor(1, { timeoutMs: 30_000 })
  t.same(found?.map((p) => p.id), [id], 'found by mDNS')
  t.equal(found?.[0].capabilities.peerId, id, 'with its capabilities')
  await first.stop()
  await until('the stopped peer to be dropped', () => coordinator.discovery?.peers().length === 0)
  peer(args)
  await until('the restarted peer to be admitted again', () => coordinator.discovery?.peers().length === 1)
  t.same(joined, [id, id], 'admitted twice, each time through Coordinator.admit')
  t.equal(coordinator.discovery?.via(id), 'mdns', 'and came by mDNS')
})

t.test('join: through the coordinator\'s relay, --allow respected, joined again after a restart', async (t) => {
  const keyFile = join(dir, 'coordinator.key')
  const coordinatorId = await writeIdentity(keyFile)
  const privateKey = await readIdentity(keyFile)
  const ids = await Promise.all(['direct', 'relayed', 'outsider', 'uploader'].map(async (name) => {
    const file = join(dir, `${name}.key`)
    return { file, id: await writeIdentity(file) }
  }))
  const port = await freePort()
  const listen = [`/ip4/127.0.0.1/tcp/${port}`]
  // Read at every check: the uploader below is let in later.
  const allow = new Set([ids[0].id, ids[1].id])
  const serve = async (): Promise<LumiereServer> => startServer({ port: 0, listen, relay: true, discover: 2, access: { privateKey, allow }, pingIntervalMs: 500, dataDir: join(dir, 'data') })
  let server = await serve()
  t.teardown(async () => server.close())
  const joinAddr = `${listen[0]}/p2p/${coordinatorId}`

  const direct = peer(['--join', joinAddr, '--identity', ids[0].file, '--listen', '/ip4/127.0.0.1/tcp/0'])
  // Listening on relay circuits alone: what a peer behind NAT amounts to.
  const relayed = peer(['--join', joinAddr, '--identity', ids[1].file, '--listen', '/p2p-circuit'])
  const outsider = peer(['--join', joinAddr, '--identity', ids[2].file, '--listen', '/ip4/127.0.0.1/tcp/0'])
  const listed = async (): Promise<Array<{ id: string, addrs: string[], source: string, health: { ok: boolean } }> | undefined> => {
    const { peers } = await (await fetch(`${server.url}/api/peers`)).json() as { peers: Array<{ id: string, addrs: string[], source: string, health: { ok: boolean } }> }
    return peers.length >= 2 ? peers : undefined
  }
  const peers = await until('2 joined peers', listed)
  t.same(peers.map((p) => p.id).sort(), [ids[0].id, ids[1].id].sort(), 'both allowed peers are listed')
  t.same(peers.map((p) => p.source), ['join', 'join'], 'as having joined')
  const relayedAddrs = peers.find((p) => p.id === ids[1].id)?.addrs ?? []
  t.ok(relayedAddrs.length > 0 && relayedAddrs.every(isRelayedWebrtc), `the relay-only peer is given out by WebRTC through the relay: ${relayedAddrs.join(' ')}`)
  t.match(peers.find((p) => p.id === ids[0].id)?.addrs[0], /^\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\//, 'the other by its own TCP address')
  t.match(relayed.output(), /"relayed":true,"msg":"joined the coordinator"/, 'the peer says it joined holding a relay slot')
  await until('the peer outside --allow to be turned away', () => /could not join the coordinator/.test(outsider.output()))
  t.same((await listed())?.map((p) => p.id).sort(), [ids[0].id, ids[1].id].sort(), 'the peer outside --allow is not listed')

  allow.add(ids[3].id)
  const upload = await relayedUpload(relayedAddrs[0], await readIdentity(ids[3].file))
  t.ok(upload.present, 'a 1 MiB upload reached the relay-only peer (the relay passes 128 KiB per connection)')
  const carrier = upload.connections.filter((c) => !c.limited)
  t.ok(carrier.length > 0 && carrier.every((c) => c.multiplexer === '/webrtc' && isRelayedWebrtc(c.remoteAddr)), `the only unlimited connection is the WebRTC one: ${JSON.stringify(upload.connections)}`)

  // 4 samples (8 passes a step): the planner leaves a peer idle only if it measures 8x slower (see serve-api.test.ts).
  const job = await (await fetch(`${server.url}/api/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'a red ball', model: 'tiny', steps: 2, ssr: false, samples: 4 }) })).json() as { id: string }
  const done = await until('the job', async () => {
    const j = await (await fetch(`${server.url}/api/jobs/${job.id}`)).json() as { state: string, error?: { message: string }, plan?: { stages: Array<{ peer: string }> } }
    return j.state === 'running' || j.state === 'queued' ? undefined : j
  }, 90_000)
  t.equal(done.state, 'done', `a job runs over the joined peers ${done.error?.message ?? ''}`)
  t.same(new Set(done.plan?.stages.map((s) => s.peer)), new Set([ids[0].id, ids[1].id]), 'with a stage on each')

  await server.close()
  server = await serve()
  const again = await until('the peers to join the restarted coordinator', listed, 60_000)
  t.same(again.map((p) => p.id).sort(), [ids[0].id, ids[1].id].sort(), 'both joined the restarted coordinator again')
})

t.test('generate --discover over joined peers equals --local', async (t) => {
  const keyFile = join(dir, 'gen-coordinator.key')
  const coordinatorId = await writeIdentity(keyFile)
  const port = await freePort()
  const joinAddr = `/ip4/127.0.0.1/tcp/${port}/p2p/${coordinatorId}`
  const peers = [peer(['--join', joinAddr, '--listen', '/ip4/127.0.0.1/tcp/0']), peer(['--join', joinAddr, '--listen', '/p2p-circuit'])]
  const out = join(dir, 'joined.safetensors')
  const r = await runCli([...GENERATE, '--discover', '2', '--listen', `/ip4/127.0.0.1/tcp/${port}`, '--relay', '--identity', keyFile, '--tensor', out], { env, timeoutMs: 120_000 })
  t.equal(r.code, 0, `exit 0 ${r.stderr}`)
  t.ok((await readFile(out)).equals(await readFile(reference)), 'the clip (and its file) equals the --local 2 one bit for bit')
  await Promise.all(peers.map(async (p) => p.stop()))
})

const mistakes: Array<[string, string[], RegExp]> = [
  ['a --join address that is not a multiaddr', ['peer', '--join', 'coordinator.example:4001'], /^error \[BAD_ARGUMENT\]: --join 'coordinator\.example:4001' is not a multiaddr; give the address the coordinator printed/],
  ['a --join address through a relay', ['peer', '--join', '/ip4/127.0.0.1/tcp/1/p2p/12D3KooWR4irNWpu2dHAerYts1PBC4YFsen4gDSVbhDDyoxryPvw/p2p-circuit'], /^error \[BAD_ARGUMENT\]: --join .* goes through a relay/],
  ['--join naming a coordinator --trust does not list', ['peer', '--join', '/ip4/127.0.0.1/tcp/1/p2p/12D3KooWR4irNWpu2dHAerYts1PBC4YFsen4gDSVbhDDyoxryPvw', '--trust', '12D3KooWFotJQYsGvPDDUxEzDVk2mtDWH9gPUrXmvtTFPJ2b8q89'], /^error \[BAD_ARGUMENT\]: --join names coordinator 12D3KooWR4ir.*which --trust does not list/],
  ['--relay without --listen', [...GENERATE, '--relay', '--discover', '1'], /^error \[BAD_ARGUMENT\]: --relay needs --listen ADDR/],
  ['--listen that is not a multiaddr', [...GENERATE, '--listen', 'port 4001', '--discover', '1'], /^error \[BAD_ARGUMENT\]: cannot listen on port 4001/],
  ['--discover with --local', [...GENERATE, '--discover', '2', '--local', '2'], /error: option '--discover <n>' cannot be used with option '--local <k>'/]
]
t.test('bad flags are one-line errors', async (t) => {
  const results = await Promise.all(mistakes.map(async ([, args]) => runCli(args, { env, timeoutMs: 30_000 })))
  mistakes.forEach(([what, , message], i) => {
    t.not(results[i].code, 0, `${what}: fails`)
    t.match(results[i].stderr, message, `${what}: says so`)
    t.notMatch(results[i].stderr, /\n\s+at /, `${what}: no stack trace`)
  })
})
