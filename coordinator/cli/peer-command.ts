import { Command, InvalidArgumentError } from 'commander'
import { startPeer } from '../../peer/peer.ts'
import { onParentExit } from '../../peer/lifeline.ts'
import { createLogger } from '../../src/log.ts'
import { LumiereError } from '../../src/errors.ts'
import { stageCacheDir } from '../../src/paths.ts'
import { collect, list, positiveInt, positiveNumber } from './options.ts'
import { accessOptions } from './shared-options.ts'
import { loadAccess, parsePeerId } from '../../src/mesh/access.ts'
import { parseByteSize } from '../../peer/limits.ts'
import { parseJoinAddr } from '../../src/mesh/join.ts'
import type { AccessFlags } from '../../src/mesh/access.ts'

const DEFAULT_LISTEN = ['/ip4/0.0.0.0/tcp/0', '/ip4/0.0.0.0/udp/0/webrtc-direct']

export function peerCommand (): Command {
  const cmd = new Command('peer')
    .description('run a peer daemon: caches stage graphs and runs them with onnxruntime')
    .option('--listen <multiaddr>', `address to listen on, repeatable (default: ${DEFAULT_LISTEN.join(' and ')})`, collect)
    .option('--addr-file <file>', 'write the full multiaddrs (with /p2p/ id), one per line, once listening')
    .option('--mdns', 'announce this peer on the LAN by mDNS: a coordinator started with --discover finds it, no address typed')
    .option('--join <multiaddr>', 'join the coordinator listening at this address (its --listen; with /p2p/ id, or give it a stable --identity) and join again whenever it goes away. A peer it cannot dial (behind NAT) is reached by WebRTC signalled through its relay (--relay); list only --listen /p2p-circuit to be reached that way alone')
    .option('--cache <dir>', 'stage graph cache folder', stageCacheDir())
    .option('--ep <list>', 'execution providers in preference order, e.g. cuda,cpu (default: every one that loads)', list)
    .option('--threads <n>', 'onnxruntime intra-op threads (default: one per core)', positiveInt('--threads'))
    .option('--throttle <factor>', 'testing: make every stage run this many times slower', positiveNumber('--throttle'))
    .option('--egress-throttle <bytes/s>', 'testing only: send tensors (stage outputs, link probes) no faster than this, as if this peer\'s uplink were that slow, so link measurement and planning can be tried on one machine', positiveNumber('--egress-throttle'))
    .option('--faulty <p>', 'testing and demos only: with probability p in [0, 1] per stage run, add noise of 1e-2·max|x| to the outputs (a lying peer, for trying --verify); never on a real mesh', probability('--faulty'))
  return accessOptions(cmd, 'peer')
    .option('--trust <id,...>', 'take jobs (stage lookups and uploads, job setup, inputs, stats, close) only from these coordinator peer ids (give the coordinator a stable id with its --identity); other peers of such a job may still push it activations, and ping/capabilities stay open to all. Default (no --trust): any coordinator that can connect gets its jobs run — fine on a LAN, not on an open mesh', list)
    .option('--memory <bytes>', 'memory budget for stages, e.g. 4G or 512M (powers of 1024): reported as this peer\'s free memory (so plans fit it) and enforced: a stage whose parameters + estimated activations exceed it is refused (OUT_OF_MEMORY)')
    .option('--quiet', 'log warnings and errors only')
    .action(async (opts: { listen?: string[], addrFile?: string, cache: string, ep?: string[], threads?: number, throttle?: number, egressThrottle?: number, faulty?: number, quiet?: boolean, trust?: string[], memory?: string, mdns?: boolean, join?: string } & AccessFlags) => {
      const log = createLogger('peer', opts.quiet)
      const { pskFile: _pskFile, privateKey, ...access } = await loadAccess(opts)
      const trust = opts.trust == null ? undefined : new Set(opts.trust.map((id) => parsePeerId(id, '--trust')))
      if (trust != null && trust.size === 0) throw new LumiereError('BAD_ARGUMENT', '--trust lists no peer id: this peer would take no job (leave --trust out to take any coordinator\'s)')
      const memoryBytes = opts.memory == null ? undefined : parseByteSize(opts.memory)
      const join = opts.join == null ? undefined : parseJoinAddr(opts.join)
      const joinId = join?.getComponents().findLast((c) => c.name === 'p2p')?.value
      if (trust != null && joinId != null && !trust.has(joinId)) throw new LumiereError('BAD_ARGUMENT', `--join names coordinator ${joinId}, which --trust does not list: this peer would take none of its jobs`)
      const peer = await startPeer({
        listen: opts.listen ?? DEFAULT_LISTEN,
        cacheDir: opts.cache,
        addrFile: opts.addrFile,
        providers: opts.ep,
        threads: opts.threads,
        throttle: opts.throttle,
        egressThrottle: opts.egressThrottle,
        faulty: opts.faulty,
        log,
        access,
        mdns: opts.mdns,
        ...(join != null ? { join } : {}),
        ...(privateKey != null ? { privateKey } : {}),
        ...(trust != null ? { trust } : {}),
        ...(memoryBytes != null ? { memoryBytes } : {})
      })
      const { capabilities: caps } = peer
      log.info({ peerId: caps.peerId, providers: caps.executionProviders, speedGflops: caps.speed, addrs: peer.node.getMultiaddrs().map(String), psk: access.psk != null, allow: access.allow?.size ?? 'any', trust: trust?.size ?? 'any', memoryBytes: memoryBytes ?? 'unlimited' }, 'peer listening')
      if (opts.quiet !== true) for (const a of peer.node.getMultiaddrs()) console.log(a.toString())
      const { promise: stopped, resolve } = Promise.withResolvers<string>()
      process.once('SIGINT', () => { resolve('SIGINT') })
      process.once('SIGTERM', () => { resolve('SIGTERM') })
      onParentExit(() => { resolve('parent gone') })
      const signal = await stopped
      log.info({ signal }, 'stopping')
      await peer.stop()
    })
}

/** Commander parser for a probability in [0, 1]. */
function probability (name: string) {
  return (value: string): number => {
    const p = Number(value)
    if (!(p >= 0 && p <= 1)) throw new InvalidArgumentError(`${name} must be a number in [0, 1].`)
    return p
  }
}
