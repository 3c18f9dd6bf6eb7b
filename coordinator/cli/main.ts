import { Command, CommanderError } from 'commander'
import { isLumiereError } from '../../src/errors.ts'
import { generateCommand } from './generate-command.ts'
import { inferCommand } from './infer-command.ts'
import { modelCommand } from './model-command.ts'
import { upscaleCommand } from './upscale-command.ts'
import { peerCommand } from './peer-command.ts'
import { planCommand } from './plan-command.ts'
import { keygenCommand } from './keygen-command.ts'
import { serveCommand } from './serve-command.ts'

const program = new Command('lumiere')
  .description('Distributed inference of space-time diffusion video models over a libp2p mesh')
  .version('0.1.0')
  .showHelpAfterError('(run with --help for usage)')
  .exitOverride()
program.addCommand(peerCommand())
program.addCommand(planCommand())
program.addCommand(inferCommand())
program.addCommand(generateCommand())
program.addCommand(upscaleCommand())
program.addCommand(modelCommand())
program.addCommand(keygenCommand())
program.addCommand(serveCommand())

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
