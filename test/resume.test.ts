// A coordinator killed (kill -9) mid-job is finished by `generate --resume`
// from its checkpoint, with the same result as an undisturbed run.
import { spawn } from 'node:child_process'
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as wait } from 'node:timers/promises'
import t from 'tap'
import { readCheckpoint } from '../coordinator/checkpoint.ts'
import { readSafetensors } from '../src/tensor/safetensors.ts'
import { CLI, runCli } from './fixtures/cli.ts'

const dir = await mkdtemp(join(tmpdir(), 'lumiere-resume-'))
const env = { ...process.env, LUMIERE_CACHE: process.env.LUMIERE_CACHE ?? join(dir, 'cache') }
const job = ['generate', 'a paper boat', '--steps', '3', '--guidance', '2', '--seed', '9', '--local', '2', '--quiet']

async function video (path: string): Promise<Buffer> {
  return Buffer.from((await readSafetensors(path)).tensors.video.data)
}

t.test('resume after the coordinator is killed', async (t) => {
  const reference = join(dir, 'reference.safetensors')
  const r = await runCli([...job, '--tensor', reference], { env, timeoutMs: 120_000 })
  t.equal(r.code, 0, `undisturbed run ${r.stderr}`)

  for (const [phase, step] of [['base', 2], ['ssr', 1]] as const) {
    const ckpt = join(dir, `ckpt-${phase}`)
    const child = spawn(process.execPath, [CLI, ...job, '--checkpoint', ckpt, '--tensor', join(dir, `never-${phase}.safetensors`)], { env, stdio: 'ignore' })
    let killedAt = ''
    for (let i = 0; i < 2400 && child.exitCode == null; i++) {
      const c = await readCheckpoint(ckpt).catch(() => undefined)
      if (c != null && c.record.phase === phase && c.record.step >= step) {
        child.kill('SIGKILL')
        killedAt = `${c.record.phase} step ${c.record.step}`
        break
      }
      await wait(25)
    }
    await new Promise((resolve) => { if (child.exitCode != null || child.signalCode != null) resolve(null); else child.once('exit', resolve) })
    t.equal(child.signalCode, 'SIGKILL', `coordinator killed at ${killedAt}`)

    const out = join(dir, `resumed-${phase}.safetensors`)
    const resumed = await runCli(['generate', '--resume', ckpt, '--local', '2', '--quiet', '--tensor', out], { env, timeoutMs: 120_000 })
    t.equal(resumed.code, 0, `resumed run exits 0 ${resumed.stderr}`)
    t.ok((await video(out)).equals(await video(reference)), `resumed from ${killedAt}: output equals the undisturbed run`)
  }
})
