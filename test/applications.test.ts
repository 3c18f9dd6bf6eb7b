// The paper's applications over the mesh: known pixels survive, SDEdit's
// ends behave as stated, and --local 2 equals --local 1 for each.
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { PNG } from 'pngjs'
import { writeFileSync } from 'node:fs'
import { generate } from '../coordinator/generate.ts'
import { readImage } from '../src/media/read-image.ts'
import { readVideo } from '../src/media/read-video.ts'
import { writeVideo } from '../src/video/write-video.ts'
import type { GenerateOptions, GenerateResult } from '../coordinator/generate.ts'

const dir = await mkdtemp(join(tmpdir(), 'lumiere-apps-'))
process.env.LUMIERE_CACHE ??= join(dir, 'cache')

function png (path: string, w: number, h: number, pixel: (x: number, y: number) => [number, number, number]): void {
  const img = new PNG({ width: w, height: h })
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    const [r, g, b] = pixel(x, y)
    img.data.set([r, g, b, 255], 4 * (y * w + x))
  }
  writeFileSync(path, PNG.sync.write(img))
}

// A 48×40 image (fitted to 32×32: scaled to cover, centre-cropped), a mask whose
// white square (rows/cols 8–23 of 32) is the region to generate, and a
// 10-frame GIF (fitted to 16 frames by repeating the last).
const image = join(dir, 'image.png')
png(image, 48, 40, (x, y) => [(x * 5) % 256, (y * 6) % 256, 128])
const mask = join(dir, 'mask.png')
png(mask, 32, 32, (x, y) => (x >= 8 && x < 24 && y >= 8 && y < 24 ? [255, 255, 255] : [0, 0, 0]))
const video = join(dir, 'video.gif')
await writeVideo(video, { data: Float32Array.from({ length: 3 * 10 * 32 * 32 }, (_, i) => Math.sin(i / 97)), shape: [3, 10, 32, 32] }, { fps: 8 })
const otherVideo = join(dir, 'other.gif')
await writeVideo(otherVideo, { data: Float32Array.from({ length: 3 * 10 * 32 * 32 }, (_, i) => Math.cos(i / 13)), shape: [3, 10, 32, 32] }, { fps: 8 })

const base: GenerateOptions = { prompt: 'a flag in the wind', model: 'tiny', steps: 2, guidance: 2, seed: 4, samples: 1, ssr: false, local: 1 }
const plane = 32 * 32
const inside = (i: number): boolean => { const x = i % 32; const y = Math.floor(i / 32) % 32; return x >= 8 && x < 24 && y >= 8 && y < 24 }
const data = (r: GenerateResult): Float32Array => new Float32Array(r.video.data.buffer, r.video.data.byteOffset, r.video.data.byteLength / 4)
const same = (a: GenerateResult, b: GenerateResult): boolean => Buffer.from(a.video.data).equals(Buffer.from(b.video.data))

t.test('image-to-video: frame 0 is the fitted image; --local 2 equals --local 1', async (t) => {
  const r1 = await generate({ ...base, image })
  const r2 = await generate({ ...base, image, local: 2 })
  const fitted = (await readImage(image, { width: 32, height: 32 })).data
  const v = data(r1)
  let exact = true
  for (let c = 0; c < 3; c++) for (let i = 0; i < plane; i++) exact &&= v[c * 16 * plane + i] === fitted[c * plane + i]
  t.ok(exact, 'frame 0 equals the fitted input image (float, so within any 8-bit quantisation)')
  t.ok(same(r1, r2), '--local 2 equals --local 1')
})

t.test('inpainting: every pixel outside the mask is the fitted input video; --local 2 equals --local 1', async (t) => {
  const r1 = await generate({ ...base, video, mask })
  const r2 = await generate({ ...base, video, mask, local: 2 })
  const input = (await readVideo(video, { width: 32, height: 32, frames: 16 })).data
  const v = data(r1)
  let outsideKept = true
  let insideChanged = false
  for (let j = 0; j < v.length; j++) {
    if (inside(j % (16 * plane))) insideChanged ||= v[j] !== input[j]
    else outsideKept &&= v[j] === input[j]
  }
  t.ok(outsideKept, 'outside the mask: the input video, exactly')
  t.ok(insideChanged, 'inside the mask: generated')
  t.ok(same(r1, r2), '--local 2 equals --local 1')
})

t.test('cinemagraph: outside the region every frame is the image; --local 2 equals --local 1', async (t) => {
  const r1 = await generate({ ...base, image, mask, cinemagraph: true })
  const r2 = await generate({ ...base, image, mask, cinemagraph: true, local: 2 })
  const fitted = (await readImage(image, { width: 32, height: 32 })).data
  const v = data(r1)
  let kept = true
  for (let c = 0; c < 3; c++) for (let f = 0; f < 16; f++) for (let i = 0; i < plane; i++) {
    if (!inside(i) || f === 0) kept &&= v[(c * 16 + f) * plane + i] === fitted[c * plane + i]
  }
  t.ok(kept, 'frame 0 entirely, and every later frame outside the region, equal the image')
  t.ok(same(r1, r2), '--local 2 equals --local 1')
})

t.test('video-to-video (SDEdit)', async (t) => {
  const zero = await generate({ ...base, video, strength: 0 })
  const input = (await readVideo(video, { width: 32, height: 32, frames: 16 })).data
  t.ok(Buffer.from(zero.video.data).equals(Buffer.from(input.buffer, input.byteOffset, input.byteLength)), 'strength 0 returns the fitted input')
  // Strength 1 starts from pure noise: two different inputs give the same bits.
  const oneA = await generate({ ...base, video, strength: 1 })
  const oneB = await generate({ ...base, video: otherVideo, strength: 1 })
  t.ok(same(oneA, oneB), 'strength 1 does not depend on the input')
  const halfA = await generate({ ...base, video, strength: 0.5 })
  const halfB = await generate({ ...base, video: otherVideo, strength: 0.5 })
  t.notOk(same(halfA, halfB), 'strength 0.5 does')
  const halfA2 = await generate({ ...base, video, strength: 0.5, local: 2 })
  t.ok(same(halfA, halfA2), '--local 2 equals --local 1')
})

t.test('with SSR the known region is kept at the output size', async (t) => {
  const r = await generate({ ...base, image, ssr: true })
  const fitted = (await readImage(image, { width: 128, height: 128 })).data
  const v = data(r)
  const hi = 128 * 128
  let exact = true
  for (let c = 0; c < 3; c++) for (let i = 0; i < hi; i++) exact &&= v[c * 16 * hi + i] === fitted[c * hi + i]
  t.same(r.video.shape, [1, 3, 16, 128, 128])
  t.ok(exact, 'frame 0 of the 128×128 output equals the image fitted to 128×128')
})
