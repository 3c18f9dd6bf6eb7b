// The `lumiere serve` dashboard end to end in headless Chromium: the page
// lists both peers, a job submitted from its form runs to 100 %, the plan and
// the timeline are drawn, the finished MP4 plays in the <video> element, and
// the page makes no request outside the server. A screenshot is saved to
// .tap/artifacts/dashboard.png (or $LUMIERE_ARTIFACTS). Skipped when Chromium
// is not installed (/usr/bin/chromium, or $LUMIERE_CHROMIUM).
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import t from 'tap'
import { startServer } from '../coordinator/serve/server.ts'

// Browser globals for the functions that run in the page (the project type-checks without the DOM lib).
interface VideoElement { error: { code: number, message: string } | null, readyState: number, currentTime: number, currentSrc: string, videoWidth: number, pause: () => void }
declare const document: { querySelector: (selector: string) => any, querySelectorAll: (selector: string) => { length: number } }

const CHROMIUM = process.env.LUMIERE_CHROMIUM ?? '/usr/bin/chromium'
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required']
const missing = existsSync(CHROMIUM) ? false : `Chromium not found at ${CHROMIUM}: install it (apt-get install chromium) or set LUMIERE_CHROMIUM`

process.env.LUMIERE_CACHE ??= await mkdtemp(join(tmpdir(), 'lumiere-cache-'))

t.test('dashboard in headless Chromium', { skip: missing, timeout: 180_000 }, async (t) => {
  const { chromium } = await import('playwright-core')
  const server = await startServer({ port: 0, local: 2, pingIntervalMs: 1000 })
  t.teardown(async () => server.close())
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true, timeout: 30_000 })
  t.teardown(async () => browser.close())
  const page = await browser.newPage({ viewport: { width: 1440, height: 1000 } })
  page.setDefaultTimeout(60_000)
  const outside: string[] = []
  const errors: string[] = []
  page.on('request', (r) => { if (!r.url().startsWith(server.url) && !r.url().startsWith('data:')) outside.push(r.url()) })
  page.on('pageerror', (e) => { errors.push(e.message) })
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()) })

  await page.goto(`${server.url}/`)
  await page.waitForSelector('#conn[data-state="live"]')
  await page.waitForFunction(() => document.querySelectorAll('#peers-table tbody tr[data-peer]').length === 2)
  const peerIds = await page.$$eval('#peers-table tbody tr[data-peer]', (rows) => rows.map((r) => r.getAttribute('data-peer')))
  t.same(new Set(peerIds), new Set(server.peers().map((p) => p.id)), 'both peers are listed')
  await page.waitForFunction(() => /ms$/.test(document.querySelector('#peers-table tbody tr[data-peer] .health')?.textContent ?? ''))
  t.pass('peer health shows a ping round trip')

  await page.fill('#prompt', 'a red ball bouncing on the beach at sunset')
  await page.fill('#negative', 'blurry')
  await page.fill('#steps', '12')
  await page.fill('#seed', '7')
  await page.uncheck('#ssr') // the base model alone keeps the test short
  await page.click('#submit')
  await page.waitForFunction(() => document.querySelector('#progress-value')?.textContent === '100%', undefined, { timeout: 120_000 })
  t.equal(await page.textContent('#job-state'), 'done', 'the job is done')
  t.equal(await page.getAttribute('#progress', 'aria-valuenow'), '100', 'the progress bar is full')

  t.equal(await page.locator('#plan svg .stage').count(), 2, 'the plan shows 2 stage boxes')
  t.equal(await page.locator('#timeline svg .lane').count(), 2, 'the timeline has a lane per stage')
  t.ok(await page.locator('#timeline svg .lane rect').count() >= 16, 'the timeline has a cell per step')
  const held = await page.$$eval('#peers-table tbody tr[data-peer]', (rows) => rows.map((r) => r.textContent ?? ''))
  t.ok(held.every((text) => /(stage|copy) \d/.test(text)), 'each peer lists the stage (or copy of the model) it holds')

  // The video plays: decoded (readyState ≥ 2, no error) and its clock advances.
  const video = page.locator('#result-video')
  await page.waitForFunction(() => {
    const v = document.querySelector('#result-video') as VideoElement | null
    return v != null && (v.error != null || v.readyState >= 2)
  })
  const before = await video.evaluate((v: VideoElement) => ({ error: v.error?.message ?? v.error?.code ?? null, readyState: v.readyState, t: v.currentTime, src: v.currentSrc, w: v.videoWidth }))
  t.equal(before.error, null, 'the video element has no error')
  t.ok(before.readyState >= 2, `the video has data (readyState ${before.readyState})`)
  t.match(before.src, /\/api\/jobs\/[0-9a-f]+\/result$/, 'the video plays the job result')
  t.ok(before.w > 0, `the video decodes (${before.w} px wide)`)
  await page.waitForFunction((t0) => (document.querySelector('#result-video') as VideoElement).currentTime > t0, before.t, { timeout: 15_000 })
  t.pass('the video plays (currentTime advances)')

  await page.evaluate(() => { (document.querySelector('#result-video') as VideoElement).pause() })
  const dir = resolve(process.env.LUMIERE_ARTIFACTS ?? join('.tap', 'artifacts'))
  await mkdir(dir, { recursive: true })
  const shot = join(dir, 'dashboard.png')
  await page.screenshot({ path: shot, fullPage: true })
  t.comment(`screenshot: ${shot}`)

  t.same(outside, [], 'the page makes no request outside the server')
  t.same(errors, [], 'no script errors')
})
