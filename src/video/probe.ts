/**
 * Where ffmpeg is and whether it can write MP4 (H.264).
 *
 * The binary comes from `@ffmpeg-installer/ffmpeg`, which installs a static
 * ffmpeg for this platform as an npm optional dependency, so MP4 works after
 * `npm ci` without a system ffmpeg. `LUMIERE_FFMPEG=/path/to/ffmpeg`
 * overrides it (e.g. on a platform the package has no binary for).
 */
import { spawn } from 'node:child_process'
import { accessSync, constants, statSync } from 'node:fs'
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)

let bundled: { path: string | null, error?: string } | undefined

/** The bundled binary's path, or null with the reason when the package has none for this platform. */
export function bundledFfmpeg (): { path: string | null, error?: string } {
  if (bundled != null) return bundled
  try {
    const mod = require('@ffmpeg-installer/ffmpeg') as { path?: unknown }
    bundled = typeof mod.path === 'string' ? { path: mod.path } : { path: null, error: '@ffmpeg-installer/ffmpeg gave no path' }
  } catch (err) {
    // The package throws a plain string on unsupported platforms.
    bundled = { path: null, error: err instanceof Error ? err.message : String(err) }
  }
  return bundled
}

/** The ffmpeg binary writeVideo uses: $LUMIERE_FFMPEG, else the bundled one; null when there is none. */
export function ffmpegPath (): string | null {
  const env = process.env.LUMIERE_FFMPEG
  if (env != null && env !== '') return env
  return bundledFfmpeg().path
}

/**
 * Whether an executable ffmpeg file is there (cheap: a stat, no process).
 * Use {@link probeFfmpeg} to also check that it runs and has libx264.
 */
export function ffmpegAvailable (path: string | null = ffmpegPath()): boolean {
  if (path == null) return false
  try {
    if (!statSync(path).isFile()) return false
    accessSync(path, constants.X_OK)
    return true
  } catch {
    return false
  }
}

export interface FfmpegProbe {
  /** The binary probed, or null when none was found. */
  path: string | null
  /** It ran and has the libx264 encoder: `.mp4` output will work. */
  mp4: boolean
  /** First line of `ffmpeg -version`, when it ran. */
  version?: string
  /** Why MP4 will not work, when it will not; says what to do. */
  error?: string
}

function run (path: string, args: string[], timeoutMs: number): Promise<{ code: number | null, stdout: string, error?: Error }> {
  return new Promise(resolve => {
    let stdout = ''
    let settled = false
    const child = spawn(path, args, { stdio: ['ignore', 'pipe', 'ignore'], timeout: timeoutMs })
    child.stdout.setEncoding('utf8')
    child.stdout.on('data', (s: string) => { if (stdout.length < 1 << 20) stdout += s })
    child.on('error', error => { if (!settled) { settled = true; resolve({ code: null, stdout, error }) } })
    child.on('close', code => { if (!settled) { settled = true; resolve({ code, stdout }) } })
  })
}

/** Runs ffmpeg to see whether it works and can encode H.264 (for `lumiere doctor`). */
export async function probeFfmpeg (path: string | null = ffmpegPath()): Promise<FfmpegProbe> {
  if (path == null) {
    return { path, mp4: false, error: `no ffmpeg binary for this platform (${bundledFfmpeg().error ?? 'unknown'}); install ffmpeg and set LUMIERE_FFMPEG to its path, or write .gif or a PNG folder instead` }
  }
  if (!ffmpegAvailable(path)) {
    return { path, mp4: false, error: `ffmpeg at ${path} is missing or not executable; run npm ci, or set LUMIERE_FFMPEG to a working ffmpeg` }
  }
  const v = await run(path, ['-hide_banner', '-version'], 10_000)
  if (v.code !== 0) {
    return { path, mp4: false, error: `ffmpeg at ${path} does not run (${v.error?.message ?? `exit ${v.code}`}); run npm ci, or set LUMIERE_FFMPEG to a working ffmpeg` }
  }
  const version = v.stdout.split('\n')[0]?.trim()
  const e = await run(path, ['-hide_banner', '-encoders'], 10_000)
  const mp4 = e.code === 0 && /\blibx264\b/.test(e.stdout)
  return mp4
    ? { path, mp4, version }
    : { path, mp4, version, error: `ffmpeg at ${path} has no libx264 encoder; set LUMIERE_FFMPEG to an ffmpeg built with libx264` }
}
