// Churn: kill -9 one of 3 peer processes at a random point of a 10-step job;
// the job re-plans onto the survivors, redoes only the lost work, and ends
// bit-identical to an undisturbed run.
import t from 'tap'
import { generate } from '../coordinator/generate.ts'
import { startLocalMesh } from '../coordinator/local-mesh.ts'
import type { GenerateOptions } from '../coordinator/generate.ts'

const job: GenerateOptions = { prompt: 'a kite over a hill', model: 'tiny', steps: 10, guidance: 2, seed: 11, samples: 1, ssr: false }
const KILLS = Number(process.env.LUMIERE_CHAOS_KILLS ?? 5)

t.test(`kill -9 a peer mid-job, ${KILLS} times`, async (t) => {
  const reference = await generate({ ...job, local: 1 })
  for (let k = 0; k < KILLS; k++) {
    const killStep = 1 + Math.floor(Math.random() * (job.steps - 2))
    const delayMs = Math.floor(Math.random() * 40)
    const victim = Math.floor(Math.random() * 3)
    const mesh = await startLocalMesh(3)
    const warnings: string[] = []
    let killedAt = -1
    try {
      const result = await generate({
        ...job,
        peers: mesh.peers.map((p) => p.addrs[0]),
        timeoutMs: 30_000,
        onWarning: (m) => { warnings.push(m) },
        onStep: ({ step }) => {
          if (step !== killStep || killedAt >= 0) return
          killedAt = step
          setTimeout(() => { mesh.peers[victim].process.kill('SIGKILL') }, delayMs)
        }
      })
      t.equal(mesh.peers[victim].process.signalCode, 'SIGKILL', `run ${k + 1}: peer ${victim + 1} killed after step ${killStep} (+${delayMs} ms)`)
      t.ok(warnings.some((w) => w.startsWith('lost peer')), `run ${k + 1}: the coordinator re-planned (${warnings.join('; ')})`)
      t.ok(Buffer.from(result.video.data).equals(Buffer.from(reference.video.data)), `run ${k + 1}: output equals the undisturbed run bit for bit`)
    } finally {
      await mesh.stop()
    }
  }
})
