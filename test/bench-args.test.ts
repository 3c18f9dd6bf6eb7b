// The benches take flags as the CLI does: a bad number or an unknown name is
// one line and an exit code, never a stack trace, and nothing is measured.
import t from 'tap'
import { fileURLToPath } from 'node:url'
import { runScript } from './fixtures/cli.ts'

const bench = (name: string): string => fileURLToPath(new URL(`../bench/${name}.ts`, import.meta.url))

for (const [script, args, flag] of [
  ['mesh-overhead', ['--pipeline-steps', '0'], 'pipeline-steps'],
  ['plan', ['--balance', 'x'], 'balance'],
  ['chaos', ['--steps', '2'], 'steps'],
  ['transport', ['--rounds', '1.5'], 'rounds']
] as const) {
  t.test(`bench/${script}.ts ${args.join(' ')}`, async (t) => {
    const r = await runScript(bench(script), [...args])
    t.equal(r.code, 2, 'exit code 2')
    t.match(r.stderr, new RegExp(`^error: --${flag} wants a (whole )?number >= \\d+, not "${args[1]}"\\nusage: node bench/${script}\\.ts `), 'names the flag and prints the usage')
    t.notMatch(r.stderr, /\n\s+at /, 'no stack trace')
    t.equal(r.stdout, '', 'measures nothing')
  })
}

t.test('an unknown preset is a typed error', async (t) => {
  const r = await runScript(bench('ssr'), ['--preset', 'nope'])
  t.equal(r.code, 1, 'exit code 1')
  t.match(r.stderr.trim(), /^error \[BAD_ARGUMENT\]: unknown SSR preset 'nope'[^\n]*$/, 'one line with its code')
})
