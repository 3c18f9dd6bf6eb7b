import { Command, Option } from 'commander'
import { createLogger } from '../../src/log.ts'
import { startServer } from '../serve/server.ts'
import { list, nonNegativeInt, nonNegativeNumber, positiveInt, positiveNumber } from './options.ts'
import { accessOptions, discoveryMeshOptions, discoveryOptions, wireOption } from './shared-options.ts'
import { loadAccess } from '../../src/mesh/access.ts'
import type { DiscoveryFlags } from './shared-options.ts'
import type { AccessFlags } from '../../src/mesh/access.ts'
import type { TransportName } from '../../src/mesh/node.ts'
import type { WireFormat } from '../../src/tensor/wire.ts'

interface ServeFlags {
  port: number
  host: string
  local?: number
  peers?: string[]
  transport: TransportName
  model: string
  data?: string
  steps: number
  guidance: number
  ping: number
  timeout: number
  wire: WireFormat
  quiet?: boolean
}

export function serveCommand (): Command {
  return accessOptions(discoveryOptions(new Command('serve')
    .description('run a long-lived coordinator: an HTTP jobs API (/api/jobs, /api/peers, /api/events) and a live dashboard at / over its peers (started, given, or found as they come with --discover and --listen)')
    .option('--port <port>', 'HTTP port (0 picks a free one)', nonNegativeInt('--port'), 8080)
    .option('--host <addr>', 'address to listen on; anything but loopback exposes the API (no authentication) to the network', '127.0.0.1')
    .addOption(new Option('--local <k>', 'start K peer processes on loopback for the server\'s lifetime (default 2 when neither --peers nor --discover is given)').argParser(positiveInt('--local')).conflicts('peers'))
    .addOption(new Option('--peers <addr,...>', 'full multiaddrs (with /p2p/ id) of running peers').argParser(list))
    .addOption(new Option('--transport <name>', 'transport for --local peers').choices(['tcp', 'webrtc']).default('tcp'))
    .option('--model <dir|preset>', 'default model for jobs that name none: a package folder or a preset (tiny, small)', 'tiny')
    .option('--data <dir>', 'folder for finished videos (default: a temporary folder removed on exit)')
    .option('--steps <n>', 'default denoising steps for jobs that name none', positiveInt('--steps'), 16)
    .option('--guidance <w>', 'default guidance weight for jobs that name none', nonNegativeNumber('--guidance'), 3)
    .option('--ping <seconds>', 'seconds between health pings of each peer', positiveNumber('--ping'), 5)
    .addOption(wireOption())
    .option('--timeout <seconds>', 'deadline for each forward pass over the mesh', positiveNumber('--timeout'), 600)
    .option('--quiet', 'log only warnings')))
    .action(async (opts: ServeFlags & AccessFlags & DiscoveryFlags) => {
      const log = createLogger('serve', opts.quiet)
      const server = await startServer({
        port: opts.port,
        host: opts.host,
        local: opts.peers == null && opts.discover == null ? (opts.local ?? 2) : undefined,
        peers: opts.peers,
        ...discoveryMeshOptions(opts, opts.quiet),
        access: await loadAccess(opts),
        transport: opts.transport,
        model: opts.model,
        dataDir: opts.data,
        steps: opts.steps,
        guidance: opts.guidance,
        pingIntervalMs: opts.ping * 1000,
        timeoutMs: opts.timeout * 1000,
        wire: opts.wire,
        log
      })
      console.log(`lumiere serve: ${server.url}/ (${server.peers().length} peers; results in ${server.dataDir})`)
      await new Promise<void>((resolve) => {
        const stop = (): void => {
          process.off('SIGINT', stop)
          process.off('SIGTERM', stop)
          log.info('shutting down')
          void server.close().finally(resolve)
        }
        process.on('SIGINT', stop)
        process.on('SIGTERM', stop)
      })
    })
}
