import { Command } from 'commander'
import { startPeer } from '../../peer/peer.ts'
import { onParentExit } from '../../peer/lifeline.ts'
import { createLogger } from '../../src/log.ts'
import { stageCacheDir } from '../../src/paths.ts'
import { collect, list, positiveInt, positiveNumber } from './options.ts'

const DEFAULT_LISTEN = ['/ip4/0.0.0.0/tcp/0', '/ip4/0.0.0.0/udp/0/webrtc-direct']

export function peerCommand (): Command {
  return new Command('peer')
    .description('run a peer daemon: caches stage graphs and runs them with onnxruntime')
    .option('--listen <multiaddr>', `address to listen on, repeatable (default: ${DEFAULT_LISTEN.join(' and ')})`, collect)
    .option('--addr-file <file>', 'write the full multiaddrs (with /p2p/ id), one per line, once listening')
    .option('--cache <dir>', 'stage graph cache folder', stageCacheDir())
    .option('--ep <list>', 'execution providers in preference order, e.g. cuda,cpu (default: every one that loads)', list)
    .option('--threads <n>', 'onnxruntime intra-op threads (default: one per core)', positiveInt('--threads'))
    .option('--throttle <factor>', 'testing: make every stage run this many times slower', positiveNumber('--throttle'))
    .option('--quiet', 'log warnings and errors only')
    .action(async (opts: { listen?: string[], addrFile?: string, cache: string, ep?: string[], threads?: number, throttle?: number, quiet?: boolean }) => {
      const log = createLogger('peer', opts.quiet)
      const peer = await startPeer({
        listen: opts.listen ?? DEFAULT_LISTEN,
        cacheDir: opts.cache,
        addrFile: opts.addrFile,
        providers: opts.ep,
        threads: opts.threads,
        throttle: opts.throttle,
        log
      })
      const { capabilities: caps } = peer
      log.info({ peerId: caps.peerId, providers: caps.executionProviders, speedGflops: caps.speed, addrs: peer.node.getMultiaddrs().map(String) }, 'peer listening')
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
