// Multi-host test: separate network stacks (Linux network namespaces) on one
// LAN segment, a bridge with a veth link per host, each host its own 10.77.0.x
// address, and the coordinator and peers each in its own host:
//
//   - two peers announce themselves by mDNS; `lumiere generate --discover 2`
//     in the coordinator's host finds them, no address typed, and makes the
//     same clip as --local 2 bit for bit;
//   - a third peer sits behind a NAT router (its own 10.78.0.0/24, iptables
//     MASQUERADE, unsolicited inbound dropped) and joins with --join through
//     the coordinator's relay: the LAN can only reach it by WebRTC signalled
//     through the relay. A 1 MiB upload from a LAN host reaches it over that
//     WebRTC connection (the relay passes 128 KiB); it joins the coordinator
//     again after a restart; the generation over all three equals --local 2.
//
// Needs root (`ip netns`); skipped with a message without it. The NAT part
// needs iptables (.ci/run installs it) and is skipped with a message without.
// Namespaces are named lm<pid>-<host> and always removed, even on failure
// (stale ones of a dead test process are removed at the next run).
import { execFile, execFileSync, spawn } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { setTimeout as wait } from 'node:timers/promises'
import t from 'tap'
import './fixtures/exit-when-done.ts'
import { writeIdentity } from '../src/mesh/access.ts'
import { isRelayedWebrtc } from '../src/mesh/relay.ts'
import { EXIT_WITH_PARENT } from '../peer/lifeline.ts'
import { CLI, runCli } from './fixtures/cli.ts'
import type { ChildProcess } from 'node:child_process'
import type { UploadReport } from './fixtures/relayed-upload.ts'

const exec = promisify(execFile)
const UPLOAD = fileURLToPath(new URL('./fixtures/relayed-upload.ts', import.meta.url))
const PREFIX = `lm${process.pid}-`
const GENERATE = ['generate', 'a red ball', '--steps', '2', '--no-ssr', '--quiet']
const COORDINATOR = '10.77.0.1'
const PORT = 4001

const created: string[] = []
const ns = (host: string): string => `${PREFIX}${host}`

async function ip (...args: string[]): Promise<void> {
  await exec('ip', args)
}

/** Why namespaces cannot be made here, or undefined when they can. */
async function unavailable (): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'not root'
  try {
    await ip('netns', 'add', ns('probe'))
    await ip('netns', 'del', ns('probe'))
  } catch (err) {
    return `\`ip netns add\` failed: ${(err as Error).message.split('\n')[0]}`
  }
  return undefined
}

/** Removes namespaces left by test processes that died before their cleanup. */
async function removeStale (): Promise<void> {
  const { stdout } = await exec('ip', ['netns', 'list']).catch(() => ({ stdout: '' }))
  for (const line of stdout.split('\n')) {
    const m = /^(lm(\d+)-\S+)/.exec(line)
    if (m == null || Number(m[2]) === process.pid) continue
    try {
      process.kill(Number(m[2]), 0)
    } catch {
      await ip('netns', 'del', m[1]).catch(() => {})
    }
  }
}

function removeAll (): void {
  for (const name of created.splice(0).reverse()) {
    try { execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' }) } catch {}
  }
}

async function addNamespace (host: string): Promise<string> {
  const name = ns(host)
  await ip('netns', 'add', name)
  created.push(name)
  await ip('-n', name, 'link', 'set', 'lo', 'up')
  return name
}

/** A veth pair between two namespaces, created inside them (so the names need only be unique there). */
async function link (a: string, ifA: string, b: string, ifB: string): Promise<void> {
  await ip('link', 'add', ifA, 'netns', a, 'type', 'veth', 'peer', 'name', ifB, 'netns', b)
  await ip('-n', a, 'link', 'set', ifA, 'up')
  await ip('-n', b, 'link', 'set', ifB, 'up')
}

/** A host on the LAN: eth0 on the bridge with `addr`/24, and multicast (mDNS) routed out of it. */
async function lanHost (host: string, addr: string): Promise<string> {
  const name = await addNamespace(host)
  await link(name, 'eth0', ns('sw'), `to-${host}`)
  await ip('-n', ns('sw'), 'link', 'set', `to-${host}`, 'master', 'br0')
  await ip('-n', name, 'addr', 'add', `${addr}/24`, 'dev', 'eth0')
  await ip('-n', name, 'route', 'add', '224.0.0.0/4', 'dev', 'eth0')
  return name
}

interface Proc { child: ChildProcess, output: () => string, stop: () => Promise<void> }
const procs: Proc[] = []

/** `lumiere ARGS` in namespace `name`, with the same node binary. */
function start (name: string, args: string[], env: NodeJS.ProcessEnv): Proc {
  // stdin is the peer's lifeline (EXIT_WITH_PARENT): should this test die, its peers stop too.
  const child = spawn('ip', ['netns', 'exec', name, process.execPath, CLI, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...env, [EXIT_WITH_PARENT]: '1' } })
  let out = ''
  child.stdout?.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr?.on('data', (d: Buffer) => { out += d.toString() })
  const proc = {
    child,
    output: () => out,
    stop: async () => {
      if (child.exitCode != null || child.signalCode != null) return
      const exited = new Promise((resolve) => child.once('exit', resolve))
      child.kill('SIGKILL')
      await exited
    }
  }
  procs.push(proc)
  return proc
}

/** Runs `lumiere ARGS` in namespace `name` to the end (killed after timeoutMs). */
async function runIn (name: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs = 120_000): Promise<{ code: number | null, output: string }> {
  const p = start(name, args, env)
  const timer = setTimeout(() => { void p.stop() }, timeoutMs)
  const code = await new Promise<number | null>((resolve) => p.child.once('close', resolve))
  clearTimeout(timer)
  return { code, output: p.output() }
}

async function until (what: string, probe: () => boolean, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await wait(100)
  }
}

const why = await unavailable()
if (why != null) {
  t.comment(`skipping the multi-host test: it needs root and network namespaces (ip netns), and here ${why}`)
}

t.test('hosts on one LAN segment, each in its own network namespace', { skip: why == null ? false : `needs root and network namespaces (ip netns): ${why}` }, async (t) => {
  await removeStale()
  process.once('exit', removeAll)
  t.teardown(async () => {
    await Promise.all(procs.map(async (p) => p.stop()))
    removeAll()
  })
  const dir = await mkdtemp(join(tmpdir(), 'lumiere-netns-'))
  t.teardown(async () => rm(dir, { recursive: true, force: true }))
  const env = { ...process.env, LUMIERE_CACHE: process.env.LUMIERE_CACHE ?? join(dir, 'cache') }

  await addNamespace('sw')
  await ip('-n', ns('sw'), 'link', 'add', 'br0', 'type', 'bridge')
  await ip('-n', ns('sw'), 'link', 'set', 'br0', 'up')
  const coordinator = await lanHost('c', COORDINATOR)
  const hosts = [await lanHost('a', '10.77.0.2'), await lanHost('b', '10.77.0.3')]

  const reference = join(dir, 'reference.safetensors')
  const made = await runCli([...GENERATE, '--local', '2', '--tensor', reference], { env, timeoutMs: 120_000 })
  t.equal(made.code, 0, `the reference clip, on --local 2 peers ${made.stderr}`)

  const peers = hosts.map((h, i) => start(h, ['peer', '--mdns', '--threads', '1', '--cache', join(dir, `stages-${i}`)], env))
  for (const p of peers) await until('a LAN peer to listen', () => /\/ip4\/10\.77\.0\.\d+\/tcp\//.test(p.output()))

  await t.test('mDNS: generate --discover 2 finds the two peers and makes the --local 2 clip', async (t) => {
    const out = join(dir, 'mdns.safetensors')
    const r = await runIn(coordinator, [...GENERATE, '--discover', '2', '--tensor', out], env)
    t.equal(r.code, 0, `exit 0 ${r.output}`)
    t.ok((await readFile(out)).equals(await readFile(reference)), 'bit for bit')
  })

  const noNat = await natUnavailable()
  await t.test('a peer behind NAT joins through the coordinator\'s relay', { skip: noNat ?? false }, async (t) => {
    // The router: eth0 on the LAN, eth1 to the private side; MASQUERADE out, unsolicited inbound dropped.
    const router = await lanHost('r', '10.77.0.254')
    const natted = await addNamespace('n')
    await link(router, 'eth1', natted, 'eth0')
    await ip('-n', router, 'addr', 'add', '10.78.0.1/24', 'dev', 'eth1')
    await ip('-n', natted, 'addr', 'add', '10.78.0.2/24', 'dev', 'eth0')
    await ip('-n', natted, 'route', 'add', 'default', 'via', '10.78.0.1')
    await exec('ip', ['netns', 'exec', router, 'sysctl', '-qw', 'net.ipv4.ip_forward=1'])
    for (const rule of [
      ['-t', 'nat', '-A', 'POSTROUTING', '-s', '10.78.0.0/24', '-o', 'eth0', '-j', 'MASQUERADE'],
      ['-A', 'FORWARD', '-i', 'eth0', '-o', 'eth1', '-m', 'conntrack', '--ctstate', 'ESTABLISHED,RELATED', '-j', 'ACCEPT'],
      ['-A', 'FORWARD', '-i', 'eth0', '-o', 'eth1', '-j', 'DROP']
    ]) await exec('ip', ['netns', 'exec', router, 'iptables', ...rule])

    const key = join(dir, 'coordinator.key')
    const id = await writeIdentity(key)
    const joinAddr = `/ip4/${COORDINATOR}/tcp/${PORT}/p2p/${id}`
    const hub = ['--listen', `/ip4/0.0.0.0/tcp/${PORT}`, '--relay', '--identity', key, '--discover', '3']

    // A long-running coordinator first (serve), so the relay is up while a LAN host dials the peer through it.
    const serve = start(coordinator, ['serve', '--port', '0', '--quiet', ...hub], env)
    const peer = start(natted, ['peer', '--join', joinAddr, '--threads', '1', '--cache', join(dir, 'stages-n')], env)
    await until('the NATed peer to join', () => /"msg":"joined the coordinator"/.test(peer.output()), 90_000)
    const joined = JSON.parse(peer.output().split('\n').find((l) => l.includes('"joined the coordinator"')) ?? '{}') as { reachableAs?: string[], relayed?: boolean }
    t.ok(joined.relayed, 'it holds a slot on the coordinator\'s relay')
    t.ok((joined.reachableAs ?? []).length > 0 && (joined.reachableAs ?? []).every(isRelayedWebrtc), `the coordinator gives it out by WebRTC through the relay: ${(joined.reachableAs ?? []).join(' ')}`)

    const upload = await exec('ip', ['netns', 'exec', hosts[0], process.execPath, UPLOAD, joined.reachableAs?.[0] ?? ''], { env, timeout: 60_000 })
    const report = JSON.parse(upload.stdout.trim().split('\n').pop() ?? '{}') as UploadReport
    t.ok(report.present, 'a LAN host uploaded 1 MiB to it through the NAT (the relay passes 128 KiB)')
    t.ok(report.connections.some((c) => !c.limited && c.multiplexer === '/webrtc'), `over a direct WebRTC connection: ${JSON.stringify(report.connections)}`)
    t.ok(report.connections.every((c) => c.limited || c.multiplexer === '/webrtc'), 'and no other unlimited one')

    await serve.stop()
    const out = join(dir, 'nat.safetensors')
    const r = await runIn(coordinator, [...GENERATE, ...hub, '--tensor', out], env)
    t.equal(r.code, 0, `the restarted coordinator generates over the two LAN peers and the one that joined again ${r.output}`)
    t.ok((await readFile(out)).equals(await readFile(reference)), 'the clip equals the --local 2 one bit for bit')
    t.match(peer.output(), /lost the coordinator; joining again/, 'the peer noticed the restart and joined again')
  })
})

/** Why the NAT part cannot run here (iptables missing or not working in a namespace), or undefined. */
async function natUnavailable (): Promise<string | undefined> {
  const name = await addNamespace('nat-probe')
  try {
    await exec('ip', ['netns', 'exec', name, 'iptables', '-t', 'nat', '-A', 'POSTROUTING', '-j', 'MASQUERADE'])
    return undefined
  } catch (err) {
    return `iptables does not work here (${(err as Error).message.split('\n')[0]}); install it (apt-get install iptables) for the NAT part`
  } finally {
    await ip('netns', 'del', name).catch(() => {})
    created.splice(created.indexOf(name), 1)
  }
}
