#!/usr/bin/env node
// Launcher: the CLI is TypeScript run by Node ≥ 22.18 (type stripping).
// Under an older Node (machines ship 20), re-run with the Node 22 that
// `npm ci` installed from the `node` package into node_modules.
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const main = fileURLToPath(new URL('../coordinator/cli/main.ts', import.meta.url))
const [major, minor] = process.versions.node.split('.').map(Number)
if (major > 22 || (major === 22 && minor >= 18)) {
  await import(main)
} else {
  const node = fileURLToPath(new URL('../node_modules/node/bin/node', import.meta.url))
  if (!existsSync(node)) {
    console.error(`error [BAD_ARGUMENT]: lumiere needs Node ≥ 22.18 (this is ${process.version}); run 'npm ci' in the project first`)
    process.exit(1)
  }
  const r = spawnSync(node, [main, ...process.argv.slice(2)], { stdio: 'inherit' })
  process.exit(r.status ?? 1)
}
