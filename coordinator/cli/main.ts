import { Command, CommanderError } from 'commander'
import { isLumiereError } from '../../src/errors.ts'

/**
 * Each command's module, loaded only when it is the one run: a local peer
 * process then loads the peer's modules and not the coordinator's
 * (generate, plan, the dashboard): two local peers listened ~1.1 s after
 * their spawn instead of ~1.35 s on a 2-core machine. Help,
 * `help CMD` and unknown commands load them all.
 */
const COMMANDS: Record<string, () => Promise<Command>> = {
  peer: async () => (await import('./peer-command.ts')).peerCommand(),
  plan: async () => (await import('./plan-command.ts')).planCommand(),
  infer: async () => (await import('./infer-command.ts')).inferCommand(),
  generate: async () => (await import('./generate-command.ts')).generateCommand(),
  upscale: async () => (await import('./upscale-command.ts')).upscaleCommand(),
  model: async () => (await import('./model-command.ts')).modelCommand(),
  keygen: async () => (await import('./keygen-command.ts')).keygenCommand(),
  serve: async () => (await import('./serve-command.ts')).serveCommand()
}

const program = new Command('lumiere')
  .description('Distributed inference of space-time diffusion video models over a libp2p mesh')
  .version('0.1.0')
  .showHelpAfterError('(run with --help for usage)')
  .exitOverride()
const named = process.argv[2]
const wanted = named != null && Object.hasOwn(COMMANDS, named) ? [named] : Object.keys(COMMANDS)
for (const command of await Promise.all(wanted.map(async (name) => COMMANDS[name]()))) program.addCommand(command)

try {
  await program.parseAsync(process.argv)
} catch (err) {
  if (err instanceof CommanderError) {
    // Commander already printed the usage error; help and version exit 0.
    process.exitCode = err.exitCode
  } else if (isLumiereError(err)) {
    console.error(`error [${err.code}]: ${err.message}`)
    process.exitCode = 1
  } else {
    console.error(`error [INTERNAL]: ${err instanceof Error ? err.message : String(err)}`)
    if (process.env.LUMIERE_DEBUG != null && err instanceof Error) console.error(err.stack)
    process.exitCode = 70
  }
}
// The command is done: its nodes are stopped and its files written. libp2p
// leaves timers behind after stop (its address manager's 1 s debounce, and
// now and then a WebRTC handle that never closes), and a stopped peer that
// lingers delays every local mesh's end. So exit once what was printed has
// been flushed (pino flushes its own stream on exit).
process.stdout.write('', () => { process.stderr.write('', () => { process.exit() }) })
