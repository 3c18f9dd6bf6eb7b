// `lumiere generate` as a user runs it: a video file and tensor written,
// a JSON summary, and a clear one-line error for each mistake, raised
// before any sampling work.
import { existsSync, writeFileSync } from 'node:fs'
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { readSafetensors } from '../src/tensor/safetensors.ts'
import { writeVideo } from '../src/video/write-video.ts'
import { runCli } from './fixtures/cli.ts'

const dir = await mkdtemp(join(tmpdir(), 'lumiere-gen-'))
const env = { ...process.env, LUMIERE_CACHE: process.env.LUMIERE_CACHE ?? join(dir, 'cache') }
const cli = async (args: string[]) => runCli(args, { env, timeoutMs: 120_000 })

t.test('generates an MP4 and the tensor, with a JSON summary', async (t) => {
  const out = join(dir, 'ball.mp4')
  const tensor = join(dir, 'ball.safetensors')
  const r = await cli(['generate', 'a red ball', '--steps', '2', '--local', '1', '--out', out, '--tensor', tensor, '--json'])
  t.equal(r.code, 0, `exit 0 ${r.stderr}`)
  const summary = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}')
  t.same(summary.files, [tensor, out], 'summary names both files')
  t.equal(summary.steps, 2)
  t.ok(existsSync(out), 'the MP4 exists')
  const { tensors } = await readSafetensors(tensor)
  t.same(tensors.video.shape, [1, 3, 16, 128, 128], 'tensor "video" is float32 [B, 3, T, H, W], upscaled by the SSR')
  t.equal(tensors.video.dtype, 'F32')
})

t.test('upscale: the SSR alone turns a low-res video into a 4× larger one', async (t) => {
  const low = join(dir, 'low.gif')
  await writeVideo(low, { data: Float32Array.from({ length: 3 * 12 * 32 * 32 }, (_, i) => Math.sin(i / 50)), shape: [3, 12, 32, 32] }, { fps: 8 })
  const tensor = join(dir, 'up.safetensors')
  const r = await cli(['upscale', '--video', low, '--prompt', 'waves', '--steps', '1', '--local', '1', '--tensor', tensor, '--json'])
  t.equal(r.code, 0, `exit 0 ${r.stderr}`)
  const { tensors } = await readSafetensors(tensor)
  t.same(tensors.video.shape, [1, 3, 16, 128, 128], 'the 12 input frames fitted to the model\'s 16, upscaled to 128²')
})

t.test('a prompt longer than the text encoder takes is truncated with a warning', async (t) => {
  const prompt = Array.from({ length: 40 }, (_, i) => `word${i}`).join(' ')
  const r = await cli(['generate', prompt, '--steps', '1', '--local', '1', '--out', join(dir, 'long.gif')])
  t.equal(r.code, 0, 'still generates')
  t.match(r.stderr, /^warning: the prompt is longer than the text encoder's \d+ tokens; it was truncated$/m)
})

const corrupt = join(dir, 'corrupt.png')
writeFileSync(corrupt, 'not a picture at all')

const mistakes: Array<[string, string[], string]> = [
  ['missing input image', ['--image', join(dir, 'nope.png')], 'error \\[FILE_NOT_FOUND\\]'],
  ['unreadable input image', ['--image', corrupt], 'error \\[BAD_ARGUMENT\\]: .*not an image'],
  ['a mask without a video or --cinemagraph', ['--mask', corrupt], 'error \\[BAD_ARGUMENT\\]: --mask needs --video'],
  ['strength outside [0, 1]', ['--video', corrupt, '--strength', '2'], 'error \\[BAD_ARGUMENT\\]: --strength must be in \\[0, 1\\]'],
  ['unknown preset', ['--model', 'huge'], 'error \\[BAD_ARGUMENT\\]: unknown model'],
  ['frames not divisible by 2^(levels−1)', ['--frames', '10'], 'error \\[BAD_ARGUMENT\\]: STUNet config: frames = 10 must be divisible'],
  ['0 steps', ['--steps', '0'], '--steps must be a whole number'],
  ['unwritable output', ['--out', join(dir, 'missing', 'x.mp4')], 'error \\[FILE_UNWRITABLE\\]'],
  ['unknown video format', ['--out', join(dir, 'x.avi')], 'error \\[BAD_ARGUMENT\\]: .*unsupported video extension']
]
for (const [what, args, message] of mistakes) {
  t.test(what, async (t) => {
    const started = performance.now()
    const r = await cli(['generate', 'a cat', '--local', '1', ...args])
    t.equal(r.code, 1, 'exit code 1')
    t.match(r.stderr, new RegExp(message))
    t.notMatch(r.stderr, /\n\s+at /, 'no stack trace')
    t.ok(performance.now() - started < 15_000, 'refused before any sampling')
  })
}
