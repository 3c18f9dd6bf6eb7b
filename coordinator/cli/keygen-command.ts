import { Command } from 'commander'
import { writeIdentity, writeSwarmKey } from '../../src/mesh/access.ts'

export function keygenCommand (): Command {
  return new Command('keygen')
    .description('write a new key file (mode 0600, never overwriting one): a swarm key for --psk (default), or with --identity a node identity for --identity (prints its peer id, for other nodes\' --allow / --trust)')
    .requiredOption('--out <file>', 'the key file to create')
    .option('--identity', 'make a node identity (Ed25519 private key) instead of a swarm key')
    .action(async (opts: { out: string, identity?: boolean }) => {
      if (opts.identity === true) {
        const id = await writeIdentity(opts.out)
        console.log(id)
        console.error(`wrote a node identity to ${opts.out}; its peer id is ${id}`)
      } else {
        await writeSwarmKey(opts.out)
        console.error(`wrote a swarm key to ${opts.out}: give it to every node of the mesh with --psk ${opts.out} (TCP/WebSocket only; also use --allow, which covers WebRTC)`)
      }
    })
}
