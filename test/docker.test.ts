// Static checks of the Docker files: no Docker engine runs in CI, so every
// Dockerfile in docker/ and docker/compose.yaml is parsed here and checked
// against the repository and the real CLI:
//
// - every FROM has a tag (not :latest), COPY --from names an earlier stage;
// - every COPY source exists and is not excluded by .dockerignore;
// - the CLI's whole import closure lands in the image, laid out as in the repo;
// - ENTRYPOINT/CMD/HEALTHCHECK are in exec form, `node <file>` paths exist;
// - every `lumiere` subcommand and flag used (Dockerfile CMD, compose
//   commands, shell scripts) is listed by the real `lumiere <cmd> --help`,
//   so renaming a flag fails this test;
// - npm ci: --omit=dev, CPU images install with ONNXRUNTIME_NODE_INSTALL=skip
//   and download nothing else, the CUDA image with =cuda12;
// - EXPOSEd ports are exactly the --listen ports, the HEALTHCHECK probes the
//   TCP one (and is run against a real socket), caches live in volumes owned
//   by the non-root user;
// - compose: build files exist, volumes/networks/secrets are declared, the
//   peers announce themselves by mDNS on one network and the coordinator
//   discovers exactly that many, every container mounts the one PSK secret,
//   `$` is escaped for compose.
//
// compose.yaml is read by a small purpose-built YAML reader (below): `yaml`
// and `js-yaml` are in node_modules only as dependencies of tap, so they are
// not imported. The reader takes the subset compose.yaml uses and refuses
// the rest (anchors, aliases, tags, flow mappings) with the line number.
import { spawn } from 'node:child_process'
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs'
import { createServer } from 'node:net'
import type { AddressInfo } from 'node:net'
import { join, posix } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import type { Test } from 'tap'
import { runCli } from './fixtures/cli.ts'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const DOCKER = join(ROOT, 'docker')
const CLI_ENTRY = 'coordinator/cli/main.ts'
const CLI_ENTRIES = new Set([CLI_ENTRY, 'bin/lumiere.js'])
const PSK_PATH = '/run/secrets/lumiere.psk'
const PSK_COMMENT = '# enable with --psk once access control lands'

// ---------------------------------------------------------------------------
// Dockerfile parsing

interface Instruction {
  line: number
  keyword: string
  /** Leading --name[=value] flags (FROM, COPY, ADD, RUN, HEALTHCHECK). */
  flags: Record<string, string>
  /** The arguments after the flags, continuation lines joined. */
  args: string
  /** Exec (JSON array) form, when the arguments are one. */
  json?: string[]
}

const KEYWORDS = new Set(['FROM', 'RUN', 'CMD', 'LABEL', 'EXPOSE', 'ENV', 'ADD', 'COPY', 'ENTRYPOINT', 'VOLUME',
  'USER', 'WORKDIR', 'ARG', 'ONBUILD', 'STOPSIGNAL', 'HEALTHCHECK', 'SHELL', 'MAINTAINER'])
const FLAGGED = new Set(['FROM', 'COPY', 'ADD', 'RUN', 'HEALTHCHECK'])

/**
 * Dockerfile instructions as BuildKit reads them: `\` at the end of a line
 * continues it (the backslash and newline removed, nothing inserted), comment
 * and empty lines inside a continued instruction are dropped, keywords are
 * case-insensitive, arguments that are a JSON array of strings are the exec
 * form. Heredocs and the escape directive are refused (not used here).
 */
function parseDockerfile (text: string, file = 'Dockerfile'): Instruction[] {
  const lines = text.split(/\r?\n/)
  const out: Instruction[] = []
  let buf: string | null = null
  let start = 0
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]
    const trimmed = raw.trim()
    if (buf === null) {
      if (/^#\s*escape\s*=/i.test(trimmed) && out.length === 0) throw new Error(`${file}:${i + 1}: the escape directive is not supported by this reader`)
      if (trimmed === '' || trimmed.startsWith('#')) continue
      buf = ''
      start = i + 1
    } else if (trimmed === '' || trimmed.startsWith('#')) {
      continue
    }
    const cont = /^(.*)\\\s*$/.exec(raw)
    if (cont != null) {
      buf += cont[1]
      continue
    }
    out.push(instruction(buf + raw, start, file))
    buf = null
  }
  if (buf !== null) throw new Error(`${file}:${start}: the last instruction ends with a line continuation`)
  return out
}

function instruction (text: string, line: number, file: string): Instruction {
  const m = /^\s*([A-Za-z]+)(?:\s+([\s\S]*))?$/.exec(text)
  if (m == null) throw new Error(`${file}:${line}: not an instruction: ${text}`)
  const keyword = m[1].toUpperCase()
  if (!KEYWORDS.has(keyword)) throw new Error(`${file}:${line}: unknown instruction ${m[1]}`)
  let args = (m[2] ?? '').trim()
  const flags: Record<string, string> = {}
  if (FLAGGED.has(keyword)) {
    let f: RegExpExecArray | null
    while ((f = /^--([\w-]+)(?:=(\S*))?\s*/.exec(args)) != null) {
      flags[f[1]] = f[2] ?? 'true'
      args = args.slice(f[0].length)
    }
  }
  if ((keyword === 'RUN' || keyword === 'COPY' || keyword === 'ADD') && /<<-?\s*['"]?[A-Za-z_]/.test(args)) {
    throw new Error(`${file}:${line}: heredocs are not supported by this reader`)
  }
  const ins: Instruction = { line, keyword, flags, args }
  const json = execForm(args)
  if (json != null) ins.json = json
  return ins
}

function execForm (args: string): string[] | undefined {
  if (!args.startsWith('[')) return undefined
  try {
    const v: unknown = JSON.parse(args)
    if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v
  } catch {}
  return undefined // not valid JSON: BuildKit runs it as a shell command
}

// ---------------------------------------------------------------------------
// Shell words (RUN lines, ENV, the compose coordinator script)

/**
 * Splits a POSIX shell script into simple commands (word lists), separated by
 * newlines, `;`, `&&`, `||`, `|` and `&`. Quotes are removed; `$(...)`,
 * `${...}` and `$name` stay in the word as written. Enough to find commands
 * and their arguments, not an interpreter.
 */
function shellCommands (script: string): string[][] {
  const commands: string[][] = []
  let words: string[] = []
  let word: string | null = null
  const endWord = (): void => { if (word !== null) words.push(word); word = null }
  const endCommand = (): void => { endWord(); if (words.length > 0) commands.push(words); words = [] }
  let i = 0
  const n = script.length
  while (i < n) {
    const c = script[i]
    if (c === '\\' && script[i + 1] === '\n') { i += 2; continue }
    if (c === '\\') { word = (word ?? '') + (script[i + 1] ?? ''); i += 2; continue }
    if (c === ' ' || c === '\t') { endWord(); i++; continue }
    if (c === '\n' || c === ';') { endCommand(); i++; continue }
    if (c === '&' && word !== null && /[<>]$/.test(word)) { word += c; i++; continue } // >&2
    if (c === '&' || c === '|') { endCommand(); i += script[i + 1] === c ? 2 : 1; continue }
    if (c === '#' && word === null) { while (i < n && script[i] !== '\n') i++; continue }
    if (c === "'") {
      const j = script.indexOf("'", i + 1)
      if (j < 0) throw new Error(`unterminated ' in: ${script}`)
      word = (word ?? '') + script.slice(i + 1, j)
      i = j + 1
      continue
    }
    if (c === '"') {
      let s = ''
      i++
      while (i < n && script[i] !== '"') {
        if (script[i] === '\\' && '"\\$`\n'.includes(script[i + 1])) { s += script[i + 1]; i += 2; continue }
        if (script[i] === '$' && (script[i + 1] === '(' || script[i + 1] === '{')) { const j = closing(script, i + 1); s += script.slice(i, j + 1); i = j + 1; continue }
        s += script[i++]
      }
      if (i >= n) throw new Error(`unterminated " in: ${script}`)
      word = (word ?? '') + s
      i++
      continue
    }
    if (c === '$' && (script[i + 1] === '(' || script[i + 1] === '{')) {
      const j = closing(script, i + 1)
      word = (word ?? '') + script.slice(i, j + 1)
      i = j + 1
      continue
    }
    word = (word ?? '') + c
    i++
  }
  endCommand()
  return commands
}

/** Index of the bracket closing the one at `open`, skipping quoted text. */
function closing (s: string, open: number): number {
  const pairs: Record<string, string> = { '(': ')', '{': '}' }
  const stack = [pairs[s[open]]]
  for (let i = open + 1; i < s.length; i++) {
    const c = s[i]
    if (c === "'") { i = s.indexOf("'", i + 1); if (i < 0) break; continue }
    if (c === '\\') { i++; continue }
    if (c in pairs) stack.push(pairs[c])
    else if (c === stack[stack.length - 1]) { stack.pop(); if (stack.length === 0) return i }
  }
  throw new Error(`unbalanced ${s[open]} in: ${s}`)
}

/** Leading NAME=value words of a command, and the command without them. */
function assignments (words: string[]): { env: Record<string, string>, rest: string[] } {
  const env: Record<string, string> = {}
  let i = 0
  for (; i < words.length; i++) {
    const m = /^([A-Za-z_]\w*)=([\s\S]*)$/.exec(words[i])
    if (m == null) break
    env[m[1]] = m[2]
  }
  return { env, rest: words.slice(i) }
}

// ---------------------------------------------------------------------------
// .dockerignore

interface IgnoreRule { re: RegExp, negate: boolean }

function dockerignore (text: string): IgnoreRule[] {
  const rules: IgnoreRule[] = []
  for (const raw of text.split(/\r?\n/)) {
    let p = raw.trim()
    if (p === '' || p.startsWith('#')) continue
    const negate = p.startsWith('!')
    if (negate) p = p.slice(1).trim()
    p = posix.normalize(p).replace(/^\/+/, '').replace(/\/+$/, '')
    let re = ''
    for (let i = 0; i < p.length; i++) {
      const c = p[i]
      if (c === '*' && p[i + 1] === '*') {
        if (p[i + 2] === '/') { re += '(?:.*/)?'; i += 2 } else { re += '.*'; i += 1 }
      } else if (c === '*') re += '[^/]*'
      else if (c === '?') re += '[^/]'
      else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&')
    }
    rules.push({ re: new RegExp(`^${re}$`), negate })
  }
  return rules
}

/** Whether the build context leaves `path` out: it, or a folder above it, is excluded. */
function ignoredByDocker (path: string, rules: IgnoreRule[]): boolean {
  const parts = posix.normalize(path).replace(/^\.\//, '').split('/')
  for (let k = 1; k <= parts.length; k++) {
    const prefix = parts.slice(0, k).join('/')
    let excluded = false
    for (const r of rules) if (r.re.test(prefix)) excluded = !r.negate
    if (excluded) return true
  }
  return false
}

// ---------------------------------------------------------------------------
// Images: stages, copies, final configuration

interface Copy { line: number, from?: string, sources: string[], dest: string, dirDest: boolean }

interface Stage {
  name?: string
  base: string
  line: number
  instructions: Instruction[]
  copies: Copy[]
  /** WORKDIR at each instruction (index-aligned with instructions). */
  workdirs: string[]
  env: Record<string, string>
}

interface Image {
  file: string
  stages: Stage[]
  final: Stage
  entrypoint?: Instruction
  cmd?: Instruction
  user?: string
  workdir: string
  exposed: string[]
  volumes: string[]
  healthcheck?: Instruction
}

function loadImage (file: string): Image {
  const text = readFileSync(file, 'utf8')
  const rel = posix.relative(ROOT.replaceAll('\\', '/'), file.replaceAll('\\', '/'))
  const instructions = parseDockerfile(text, rel)
  const globalArgs: Record<string, string> = {}
  const stages: Stage[] = []
  for (const ins of instructions) {
    if (ins.keyword === 'ARG' && stages.length === 0) {
      const [k, v] = ins.args.split('=', 2)
      globalArgs[k.trim()] = (v ?? '').trim()
      continue
    }
    if (ins.keyword === 'FROM') {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args)
      if (m == null) throw new Error(`${rel}:${ins.line}: cannot read FROM ${ins.args}`)
      const base = m[1].replace(/\$\{?(\w+)\}?/g, (_, k: string) => globalArgs[k] ?? '')
      const parent = stages.find((s) => s.name === base)
      stages.push({
        name: m[2],
        base,
        line: ins.line,
        instructions: [],
        copies: [],
        workdirs: [],
        env: { ...(parent?.env ?? {}) }
      })
      continue
    }
    const stage = stages[stages.length - 1]
    if (stage == null) throw new Error(`${rel}:${ins.line}: ${ins.keyword} before the first FROM`)
    const wd = stage.workdirs.length > 0 ? stage.workdirs[stage.workdirs.length - 1] : (stages.find((s) => s.name === stage.base)?.workdirs.at(-1) ?? '/')
    let next = wd
    if (ins.keyword === 'WORKDIR') next = posix.resolve(wd, ins.args)
    if (ins.keyword === 'ENV') {
      for (const words of shellCommands(ins.args)) {
        const { env, rest } = assignments(words)
        if (rest.length > 0) throw new Error(`${rel}:${ins.line}: write ENV as NAME=value`)
        Object.assign(stage.env, env)
      }
    }
    if (ins.keyword === 'COPY' || ins.keyword === 'ADD') {
      const parts = ins.json ?? ins.args.split(/\s+/)
      if (parts.length < 2) throw new Error(`${rel}:${ins.line}: ${ins.keyword} needs a source and a destination`)
      const destRaw = parts[parts.length - 1]
      stage.copies.push({
        line: ins.line,
        from: ins.flags.from,
        sources: parts.slice(0, -1),
        dest: posix.resolve(wd, destRaw),
        dirDest: destRaw.endsWith('/') || destRaw === '.' || parts.length > 2
      })
    }
    stage.instructions.push(ins)
    stage.workdirs.push(next)
  }
  const final = stages[stages.length - 1]
  if (final == null) throw new Error(`${rel}: no FROM`)
  // final configuration: the last of each in the final stage (or its parent stages)
  const chain: Stage[] = []
  for (let s: Stage | undefined = final; s != null; s = stages.find((p) => p.name === s?.base && p !== s)) chain.unshift(s)
  const all = chain.flatMap((s) => s.instructions)
  const last = (k: string): Instruction | undefined => all.filter((i) => i.keyword === k).at(-1)
  return {
    file: rel,
    stages,
    final,
    entrypoint: last('ENTRYPOINT'),
    cmd: last('CMD'),
    user: last('USER')?.args,
    workdir: final.workdirs.at(-1) ?? '/',
    exposed: all.filter((i) => i.keyword === 'EXPOSE').flatMap((i) => i.args.split(/\s+/)).map((p) => p.includes('/') ? p : `${p}/tcp`),
    volumes: all.filter((i) => i.keyword === 'VOLUME').flatMap((i) => i.json ?? i.args.split(/\s+/)),
    healthcheck: last('HEALTHCHECK')
  }
}

function isDir (repoPath: string): boolean {
  return existsSync(join(ROOT, repoPath)) && statSync(join(ROOT, repoPath)).isDirectory()
}

/** Where the build context's `repoPath` ends up in the final image, if it is copied there. */
function containerPathOf (image: Image, repoPath: string): string | undefined {
  let at: string | undefined
  for (const c of image.final.copies) {
    if (c.from != null) continue
    for (const src of c.sources) {
      const s = posix.normalize(src).replace(/\/$/, '')
      if (s === '' || s === '.') { at = posix.join(c.dest, repoPath); continue }
      if (isDir(s)) {
        if (repoPath === s || repoPath.startsWith(`${s}/`)) at = posix.join(c.dest, repoPath.slice(s.length))
      } else if (repoPath === s) {
        at = c.dirDest ? posix.join(c.dest, posix.basename(s)) : c.dest
      }
    }
  }
  return at
}

/** The build-context file that is `path` in the final image (relative to WORKDIR), if any. */
function repoPathAt (image: Image, path: string): string | undefined {
  const abs = posix.resolve(image.workdir, path)
  for (const c of [...image.final.copies].reverse()) {
    if (c.from != null) continue
    for (const src of c.sources) {
      const s = posix.normalize(src).replace(/\/$/, '')
      const candidate = s === '' || s === '.'
        ? posix.relative(c.dest, abs)
        : isDir(s)
          ? (abs === c.dest || abs.startsWith(`${c.dest}/`) ? posix.join(s, posix.relative(c.dest, abs)) : undefined)
          : (abs === (c.dirDest ? posix.join(c.dest, posix.basename(s)) : c.dest) ? s : undefined)
      if (candidate != null && !candidate.startsWith('..') && existsSync(join(ROOT, candidate))) return candidate
    }
  }
  return undefined
}

/** Every repository file the CLI loads: relative imports, dynamic imports and `new URL('./x', import.meta.url)` workers. */
function importClosure (entry: string): Set<string> {
  const seen = new Set<string>()
  const todo = [entry]
  const patterns = [
    /\bfrom\s+['"](\.{1,2}\/[^'"]+)['"]/g,
    /\bimport\s*\(\s*['"](\.{1,2}\/[^'"]+)['"]\s*\)/g,
    /\bimport\s+['"](\.{1,2}\/[^'"]+)['"]/g,
    /\bnew URL\(\s*['"](\.{1,2}\/[^'"]+)['"]\s*,\s*import\.meta\.url/g
  ]
  while (todo.length > 0) {
    const file = todo.pop() as string
    if (seen.has(file)) continue
    seen.add(file)
    if (!/\.(ts|js|mjs|cjs)$/.test(file)) continue
    const text = readFileSync(join(ROOT, file), 'utf8')
    for (const re of patterns) {
      for (const m of text.matchAll(re)) {
        const target = posix.normalize(posix.join(posix.dirname(file), m[1]))
        if (existsSync(join(ROOT, target)) && !isDir(target)) todo.push(target)
      }
    }
  }
  return seen
}

// ---------------------------------------------------------------------------
// The real CLI's commands and options

interface Help { commands: Set<string>, options: Map<string, boolean /* takes a value */>, text: string }

const helps = new Map<string, Promise<Help>>()

function cliHelp (path: string[]): Promise<Help> {
  const key = path.join(' ')
  let p = helps.get(key)
  if (p == null) {
    // without tap's NODE_OPTIONS hooks (process tracking): they double a help run's time
    const env = { ...process.env }
    delete env.NODE_OPTIONS
    p = runCli([...path, '--help'], { timeoutMs: 30_000, env }).then((r) => {
      if (r.code !== 0) throw new Error(`lumiere ${key} --help exited with ${r.code}: ${r.stderr}`)
      const help: Help = { commands: new Set(), options: new Map(), text: r.stdout }
      let section = ''
      for (const line of r.stdout.split('\n')) {
        const head = /^(\w[\w ]*):\s*$/.exec(line)
        if (head != null) { section = head[1]; continue }
        if (section === 'Options') {
          const m = /^ {2}(?:-\w, )?(--[a-z][\w-]*)( [<[])?/.exec(line)
          if (m != null) help.options.set(m[1], m[2] != null)
        } else if (section === 'Commands') {
          const m = /^ {2}([a-z][\w-]*)/.exec(line)
          if (m != null) help.commands.add(m[1])
        }
      }
      return help
    })
    helps.set(key, p)
  }
  return p
}

interface Invocation { where: string, args: string[] }

interface CheckedInvocation {
  path: string[]
  flags: Map<string, string[]>
}

/** Checks `lumiere ARGS` against the CLI's help: the subcommand exists, every --flag is one of its options. */
async function checkLumiere (t: Test, inv: Invocation): Promise<CheckedInvocation> {
  const path: string[] = []
  let help = await cliHelp(path)
  let i = 0
  while (i < inv.args.length && !inv.args[i].startsWith('-') && help.commands.size > 0) {
    const word = inv.args[i]
    t.ok(help.commands.has(word), `${inv.where}: 'lumiere ${[...path, word].join(' ')}' is a command (lumiere ${path.join(' ')} --help lists ${[...help.commands].join(', ')})`)
    if (!help.commands.has(word)) return { path, flags: new Map() }
    path.push(word)
    help = await cliHelp(path)
    i++
  }
  const flags = new Map<string, string[]>()
  for (; i < inv.args.length; i++) {
    const a = inv.args[i]
    if (!a.startsWith('--')) continue // a positional argument (generate's prompt)
    const [name, inline] = a.split(/=(.*)/s, 2)
    const takesValue = help.options.get(name)
    t.ok(takesValue !== undefined, `${inv.where}: 'lumiere ${path.join(' ')}' has an option ${name}` +
      (takesValue === undefined ? ` (its --help lists ${[...help.options.keys()].join(' ')})` : ''))
    let value = ''
    if (takesValue === true && inline === undefined) value = inv.args[++i] ?? ''
    else if (inline !== undefined) value = inline
    flags.set(name, [...(flags.get(name) ?? []), value])
  }
  return { path, flags }
}

/** The `lumiere` invocations in an argv: `node <cli> ...`, or inside `sh -c SCRIPT`. */
function lumiereInvocations (argv: string[], where: string, image: Image, t: Test): Invocation[] {
  if (argv.length === 0) return []
  const exe = posix.basename(argv[0])
  if ((exe === 'sh' || exe === 'bash') && argv.length >= 3 && /^-\w*c\w*$/.test(argv[1])) {
    return shellCommands(argv[2]).flatMap((words, k) => {
      let { rest } = assignments(words)
      if (rest[0] === 'exec') rest = rest.slice(1)
      return lumiereInvocations(rest, `${where}, script command ${k + 1}`, image, t)
    })
  }
  if (exe !== 'node') return []
  const script = nodeScript(argv)
  if (script == null) return []
  const repoPath = repoPathAt(image, script)
  t.ok(repoPath != null, `${where}: node ${script} is a file copied into the image from the repository`)
  if (repoPath == null || !CLI_ENTRIES.has(repoPath)) return []
  return [{ where, args: argv.slice(argv.indexOf(script) + 1) }]
}

/** The script a `node` command line runs; undefined for `node -e`/`-p` (or no script). */
function nodeScript (argv: string[]): string | undefined {
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i]
    if (a === '-e' || a === '--eval' || a === '-p' || a === '--print') return undefined
    if (a === '-r' || a === '--require' || a === '--import') { i++; continue }
    if (a.startsWith('-')) continue
    return a
  }
  return undefined
}

function listenPorts (listen: string[]): string[] {
  return listen.map((a) => {
    const m = /^\/ip[46]\/[^/]+\/(tcp|udp)\/(\d+)/.exec(a)
    if (m == null) throw new Error(`not an IP multiaddr: ${a}`)
    return `${m[2]}/${m[1]}`
  })
}

function under (path: string, dir: string): boolean {
  return path === dir || path.startsWith(`${dir.replace(/\/$/, '')}/`)
}

// ---------------------------------------------------------------------------
// A small YAML reader for compose.yaml

type Yaml = null | boolean | number | string | Yaml[] | { [key: string]: Yaml }

/**
 * Reads the YAML subset compose.yaml is written in: block mappings and
 * sequences (including `- key: value` items), plain, single- and
 * double-quoted one-line scalars, flow sequences (which may span lines), `|`
 * and `>` block scalars with chomping indicators, comments. Anything else
 * (anchors, aliases, tags, flow mappings other than {}, multi-line quoted
 * scalars, several documents) is refused with its line number, so compose.yaml
 * cannot drift outside what this test understands.
 */
function parseYaml (text: string, file = 'yaml'): Yaml {
  const lines = text.split(/\r?\n/)
  let i = 0
  const fail = (msg: string, at = i): never => { throw new Error(`${file}:${at + 1}: ${msg}`) }

  const isBlank = (s: string): boolean => /^\s*(#.*)?$/.test(s)
  const indentOf = (s: string): number => {
    const m = /^( *)(\t?)/.exec(s) as RegExpExecArray
    if (m[2] !== '') fail('a tab in the indentation')
    return m[1].length
  }
  function skipBlank (): void { while (i < lines.length && isBlank(lines[i])) i++ }

  function stripComment (s: string): string {
    let q: string | null = null
    for (let k = 0; k < s.length; k++) {
      const c = s[k]
      if (q !== null) {
        if (q === '"' && c === '\\') { k++; continue }
        if (c === q) q = null
        continue
      }
      if ((c === '"' || c === "'") && (k === 0 || /[\s[,:-]/.test(s[k - 1]))) q = c
      else if (c === '#' && (k === 0 || /\s/.test(s[k - 1]))) return s.slice(0, k).trimEnd()
    }
    return s.trimEnd()
  }

  function scalar (raw: string): Yaml {
    const s = raw.trim()
    if (s.startsWith('"')) {
      const m = /^"((?:[^"\\]|\\.)*)"$/.exec(s)
      if (m == null) return fail(`a double-quoted scalar must close on its line: ${s}`)
      return m[1].replace(/\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.)/g, (_, e: string) => {
        const simple: Record<string, string> = { n: '\n', t: '\t', r: '\r', 0: '\0', '"': '"', '\\': '\\', '/': '/', ' ': ' ', a: '\x07', b: '\b', e: '\x1b', f: '\f', v: '\v' }
        if (e.length > 1) return String.fromCodePoint(parseInt(e.slice(1), 16))
        if (e in simple) return simple[e]
        return fail(`unknown escape \\${e}`)
      })
    }
    if (s.startsWith("'")) {
      const m = /^'((?:[^']|'')*)'$/.exec(s)
      if (m == null) return fail(`a single-quoted scalar must close on its line: ${s}`)
      return m[1].replaceAll("''", "'")
    }
    if (s === '{}') return {}
    if (/^[&*!{%@`]/.test(s)) return fail(`unsupported YAML (anchor, alias, tag, flow mapping or reserved indicator): ${s}`)
    if (/^(null|Null|NULL|~)?$/.test(s)) return null
    if (/^(true|True|TRUE)$/.test(s)) return true
    if (/^(false|False|FALSE)$/.test(s)) return false
    if (/^[-+]?[0-9]+$/.test(s)) return Number(s)
    if (/^0x[0-9a-fA-F]+$/.test(s) || /^0o[0-7]+$/.test(s)) return Number(s)
    if (/^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$/.test(s)) return Number(s)
    if (/^[-+]?\.(inf|Inf|INF)$/.test(s)) return s.startsWith('-') ? -Infinity : Infinity
    if (/^\.(nan|NaN|NAN)$/.test(s)) return NaN
    if (/:\s|\s#/.test(s)) return fail(`a plain scalar cannot contain ': ' or ' #': ${s}`)
    return s
  }

  function flowSequence (first: string): Yaml[] {
    let text = first
    const startLine = i
    const balanced = (s: string): boolean => {
      let depth = 0; let q: string | null = null
      for (let k = 0; k < s.length; k++) {
        const c = s[k]
        if (q !== null) { if (q === '"' && c === '\\') k++; else if (c === q) q = null; continue }
        if (c === '"' || c === "'") q = c
        else if (c === '[') depth++
        else if (c === ']') depth--
        else if (c === '{') fail('flow mappings are not supported')
      }
      return depth === 0
    }
    while (!balanced(text)) {
      i++
      if (i >= lines.length) fail('unterminated flow sequence', startLine)
      text += ' ' + stripComment(lines[i]).trim()
    }
    i++
    let pos = 0
    const s = text.trim()
    function seq (): Yaml[] {
      if (s[pos] !== '[') fail(`expected [ in ${s}`, startLine)
      pos++
      const items: Yaml[] = []
      for (;;) {
        while (s[pos] === ' ') pos++
        if (s[pos] === ']') { pos++; return items }
        if (s[pos] === '[') items.push(seq())
        else {
          let k = pos; let q: string | null = null
          for (; k < s.length; k++) {
            const c = s[k]
            if (q !== null) { if (q === '"' && c === '\\') k++; else if (c === q) q = null; continue }
            if ((c === '"' || c === "'") && k === pos) q = c
            else if (c === ',' || c === ']') break
          }
          items.push(scalar(s.slice(pos, k)))
          pos = k
        }
        while (s[pos] === ' ') pos++
        if (s[pos] === ',') pos++
        else if (s[pos] !== ']') fail(`expected , or ] in ${s}`, startLine)
      }
    }
    const v = seq()
    if (s.slice(pos).trim() !== '') fail(`text after a flow sequence: ${s.slice(pos)}`, startLine)
    return v
  }

  function blockScalar (header: string, parentIndent: number): string {
    const m = /^([|>])([-+]?)$/.exec(header)
    if (m == null) return fail(`unsupported block scalar header ${header}`)
    i++
    const body: string[] = []
    let indent = -1
    while (i < lines.length) {
      const l = lines[i]
      if (l.trim() === '') { body.push(''); i++; continue }
      const ind = indentOf(l)
      if (ind <= parentIndent) break
      if (indent < 0) indent = ind
      if (ind < indent) fail('a block scalar line indented less than its first line')
      body.push(l.slice(indent))
      i++
    }
    let trailing = 0
    while (body.length > 0 && body[body.length - 1] === '') { body.pop(); trailing++ }
    let textOut: string
    if (m[1] === '|') textOut = body.join('\n')
    else {
      textOut = ''
      for (let k = 0; k < body.length; k++) {
        const l = body[k]
        if (k === 0) textOut = l
        else if (l === '') textOut += '\n' // an empty line is a line break; the break before it folds away
        else if (body[k - 1] === '') textOut += l
        else if (/^\s/.test(l) || /^\s/.test(body[k - 1])) textOut += '\n' + l
        else textOut += ' ' + l
      }
    }
    if (body.length === 0) return ''
    if (m[2] === '-') return textOut
    if (m[2] === '+') return textOut + '\n'.repeat(trailing + 1)
    return textOut + '\n'
  }

  /** A value after `key:` or `- `, the rest of the line being `rest`; a nested block when rest is empty. */
  function value (rest: string, ownIndent: number): Yaml {
    if (rest === '') {
      i++
      skipBlank()
      if (i >= lines.length) return null
      const ind = indentOf(lines[i])
      const seqItem = /^\s*-(\s|$)/.test(lines[i])
      if (ind > ownIndent || (ind === ownIndent && seqItem)) return block(ind)
      return null
    }
    if (/^[|>]/.test(rest)) return blockScalar(rest, ownIndent)
    if (rest.startsWith('[')) return flowSequence(rest)
    if (rest.startsWith('? ')) return fail('complex keys are not supported')
    i++
    return scalar(rest)
  }

  function block (indent: number): Yaml {
    skipBlank()
    const line = lines[i]
    return /^\s*-(\s|$)/.test(line) ? sequence(indent) : mapping(indent)
  }

  function sequence (indent: number): Yaml[] {
    const items: Yaml[] = []
    for (;;) {
      skipBlank()
      if (i >= lines.length) return items
      const ind = indentOf(lines[i])
      if (ind < indent) return items
      if (ind > indent) fail('unexpected indentation in a sequence')
      const m = /^(\s*-)(\s+|$)(.*)$/.exec(lines[i])
      if (m == null) return items // a mapping key at the same indentation ends a compact sequence
      const content = stripComment(m[3])
      if (/^-(\s|$)/.test(content)) {
        // `- - x`: a sequence in a sequence
        const col = m[1].length + m[2].length
        lines[i] = ' '.repeat(col) + m[3]
        items.push(sequence(col))
      } else if (keyOf(content) != null) {
        // `- key: value`: a mapping whose keys are aligned with `key`
        const col = m[1].length + m[2].length
        lines[i] = ' '.repeat(col) + m[3]
        items.push(mapping(col))
      } else {
        items.push(value(content, indent))
      }
    }
  }

  function keyOf (content: string): { key: string, rest: string } | null {
    const m = /^("(?:[^"\\]|\\.)*"|'(?:[^']|'')*'|[^\s"'#[\]{},&*!|>%@`-][^#]*?|-[^\s#][^#]*?)\s*:(?:\s+(.*))?$/.exec(content)
    if (m == null) return null
    const key = scalar(m[1])
    return { key: String(key), rest: (m[2] ?? '').trim() }
  }

  function mapping (indent: number): { [key: string]: Yaml } {
    const map: { [key: string]: Yaml } = {}
    for (;;) {
      skipBlank()
      if (i >= lines.length) return map
      const ind = indentOf(lines[i])
      if (ind < indent) return map
      if (ind > indent) fail('unexpected indentation in a mapping')
      if (/^\s*-(\s|$)/.test(lines[i])) return map
      const content = stripComment(lines[i]).trim()
      if (content === '---' || content === '...') fail('only one YAML document is supported')
      const kv = keyOf(content)
      if (kv == null) fail(`expected 'key: value': ${content}`)
      const { key, rest } = kv as { key: string, rest: string }
      if (Object.hasOwn(map, key)) fail(`duplicate key ${key}`)
      map[key] = value(rest, indent)
    }
  }

  skipBlank()
  if (i >= lines.length) return null
  const doc = block(indentOf(lines[i]))
  skipBlank()
  if (i < lines.length) fail(`unexpected content: ${lines[i].trim()}`)
  return doc
}

// ---------------------------------------------------------------------------
// Compose model helpers

type YamlMap = { [key: string]: Yaml }
const isMap = (v: Yaml | undefined): v is YamlMap => v != null && typeof v === 'object' && !Array.isArray(v)
const strings = (v: Yaml | undefined): string[] => Array.isArray(v) ? v.map(String) : typeof v === 'string' ? [v] : []

/** Compose interpolation: `$$` is a literal `$`; `${NAME:-default}` and friends take their default; anything else is an error. */
function interpolate (s: string): string {
  return s.replace(/\$(\$|\{(\w+)(?:(:?[-?+])([^}]*))?\}|(\w+)|)/g, (all, _x: string, braced?: string, op?: string, arg?: string, named?: string) => {
    if (all === '$$') return '$'
    if (braced != null) return op != null && op.endsWith('-') ? (arg ?? '') : ''
    if (named != null) return ''
    throw new Error(`a lone $ in ${JSON.stringify(s)}: compose interpolates $VAR, write $$ for the shell's $`)
  })
}

function walkStrings (v: Yaml, at: string, visit: (s: string, at: string) => void): void {
  if (typeof v === 'string') visit(v, at)
  else if (Array.isArray(v)) v.forEach((x, k) => { walkStrings(x, `${at}[${k}]`, visit) })
  else if (isMap(v)) for (const [k, x] of Object.entries(v)) walkStrings(x, `${at}.${k}`, visit)
}

interface Mount { source: string, target: string, named: boolean, readOnly: boolean }

function mounts (service: YamlMap): Mount[] {
  return (Array.isArray(service.volumes) ? service.volumes : []).map((v) => {
    if (typeof v === 'string') {
      const [source, target, mode] = v.split(':')
      return { source, target, named: !/^[./~]/.test(source), readOnly: mode === 'ro' }
    }
    if (isMap(v)) return { source: String(v.source), target: String(v.target), named: v.type !== 'bind', readOnly: v.read_only === true }
    throw new Error(`cannot read volume ${JSON.stringify(v)}`)
  })
}

function spawnExit (args: string[], timeoutMs = 10_000): Promise<number | null> {
  return new Promise((resolve) => {
    const env = { ...process.env }
    delete env.NODE_OPTIONS
    const child = spawn(process.execPath, args, { stdio: 'ignore', env })
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.once('close', (code) => { clearTimeout(timer); resolve(code) })
  })
}

// ---------------------------------------------------------------------------
// The readers themselves

t.test('the Dockerfile reader', async (t) => {
  const ins = parseDockerfile([
    '# syntax=docker/dockerfile:1',
    'FROM node:22-bookworm-slim AS deps',
    'RUN a \\',
    '    # a comment inside a continuation is dropped',
    '',
    ' && b',
    'copy --from=deps --chown=1000:1000 /app/x ./x',
    'CMD ["peer", "--listen", "/ip4/0.0.0.0/tcp/4001"]',
    'ENTRYPOINT node main.ts',
    'CMD [not json]',
    'HEALTHCHECK --interval=5s \\',
    '  CMD ["node", "-e", "1"]'
  ].join('\n'))
  t.same(ins.map((i) => [i.line, i.keyword]), [[2, 'FROM'], [3, 'RUN'], [7, 'COPY'], [8, 'CMD'], [9, 'ENTRYPOINT'], [10, 'CMD'], [11, 'HEALTHCHECK']])
  t.equal(ins[1].args, 'a  && b', 'continuation lines are joined as BuildKit joins them')
  t.same(ins[2].flags, { from: 'deps', chown: '1000:1000' })
  t.same(ins[3].json, ['peer', '--listen', '/ip4/0.0.0.0/tcp/4001'], 'exec form')
  t.equal(ins[4].json, undefined, 'shell form')
  t.equal(ins[5].json, undefined, 'invalid JSON is shell form')
  t.same(ins[6].flags, { interval: '5s' })
  t.equal(ins[6].args, 'CMD ["node", "-e", "1"]')
  t.throws(() => parseDockerfile('FROM x\nRUN a \\\n'), /continuation/)
  t.throws(() => parseDockerfile('FROM x\nRUN <<EOF\nls\nEOF\n'), /heredoc/)
  t.throws(() => parseDockerfile('FORM x\n'), /unknown instruction/)
})

t.test('the shell reader', async (t) => {
  t.same(shellCommands('A=1 npm ci --omit=dev \\\n && rm -rf "x y" node_modules/node'), [['A=1', 'npm', 'ci', '--omit=dev'], ['rm', '-rf', 'x y', 'node_modules/node']])
  t.same(shellCommands(`p=$(cat /a/*.addrs | grep '/tcp/' | paste -sd, -)\necho "x $p" >&2 # note\nexec node m.ts g "a b" --peers "$p"`), [
    ['p=$(cat /a/*.addrs | grep \'/tcp/\' | paste -sd, -)'],
    ['echo', 'x $p', '>&2'],
    ['exec', 'node', 'm.ts', 'g', 'a b', '--peers', '$p']
  ])
})

t.test('the YAML reader', async (t) => {
  t.same(parseYaml([
    'a: 1 # comment',
    'b:',
    '  - x',
    '  - "y # not a comment"',
    '  - source: s',
    '    target: t',
    'c: [d, "e,f", \'g\'\'h\',',
    '    i]',
    'd:',
    '- compact',
    'e: |',
    '  line 1',
    '    line 2 $$x',
    '',
    'f: >-',
    '  folded',
    '  text',
    'g:',
    'h: {}',
    'i: "a\\tb"',
    'j: peer1-data:/data',
    'k: true'
  ].join('\n')), {
    a: 1,
    b: ['x', 'y # not a comment', { source: 's', target: 't' }],
    c: ['d', 'e,f', "g'h", 'i'],
    d: ['compact'],
    e: 'line 1\n  line 2 $$x\n',
    f: 'folded text',
    g: null,
    h: {},
    i: 'a\tb',
    j: 'peer1-data:/data',
    k: true
  })
  t.throws(() => parseYaml('a: &x 1\nb: *x'), /unsupported/)
  t.throws(() => parseYaml('a: {b: 1}'), /flow mapping/)
  t.throws(() => parseYaml('a: 1\na: 2'), /duplicate key/)
  t.throws(() => parseYaml('a:\n\t- 1'), /tab/)
  t.throws(() => parseYaml('a: "open\n  more"'), /close on its line/)
})

// ---------------------------------------------------------------------------
// The Dockerfiles

const dockerfiles = readdirSync(DOCKER).filter((f) => f.endsWith('.Dockerfile') || f === 'Dockerfile').sort()
const images = new Map(dockerfiles.map((f) => [`docker/${f}`, loadImage(join(DOCKER, f))]))
const ignoreRules = dockerignore(existsSync(join(ROOT, '.dockerignore')) ? readFileSync(join(ROOT, '.dockerignore'), 'utf8') : '')
const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, unknown> }

// the CLI's help for the commands the files use, fetched together (each run loads the whole CLI)
for (const path of [[], ['peer'], ['generate']]) cliHelp(path).catch(() => {})

t.test('the Docker files are there', async (t) => {
  for (const f of ['peer.Dockerfile', 'peer-cuda.Dockerfile', 'coordinator.Dockerfile', 'compose.yaml']) {
    t.ok(existsSync(join(DOCKER, f)), `docker/${f}`)
  }
  t.ok(existsSync(join(ROOT, '.dockerignore')), '.dockerignore')
})

t.test('.dockerignore keeps host installs, caches and test output out of the context', async (t) => {
  for (const p of ['node_modules', 'node_modules/onnxruntime-node/bin', 'peer/node_modules', '.cache', '.tap', '.git', 'docker/lumiere.psk']) {
    t.ok(ignoredByDocker(p, ignoreRules), `${p} is excluded`)
  }
  for (const p of ['package.json', 'package-lock.json', '.npmrc', 'src/errors.ts', CLI_ENTRY]) {
    t.notOk(ignoredByDocker(p, ignoreRules), `${p} is in the context`)
  }
})

for (const [file, image] of images) {
  t.test(file, async (t) => {
    // FROM: tagged bases, earlier stages
    const names = new Set<string>()
    for (const s of image.stages) {
      if (s.name != null && names.has(s.base)) { names.add(s.name); continue }
      if (names.has(s.base)) continue
      const m = /^(?:[\w.-]+(?::\d+)?\/)?[\w./-]+(?::([\w][\w.-]*))?(?:@sha256:[0-9a-f]{64})?$/.exec(s.base)
      t.ok(m != null, `${file}:${s.line}: FROM ${s.base} is an image reference`)
      const tag = m?.[1]
      t.ok((tag != null && tag !== 'latest') || s.base.includes('@sha256:'), `${file}:${s.line}: FROM ${s.base} has a tag, not latest`)
      if (s.name != null) names.add(s.name)
    }
    t.ok(image.stages.length >= 2, `${file} is multi-stage (dependencies installed in a stage of their own)`)

    // COPY / ADD
    const seenStages = new Set<string>()
    for (const s of image.stages) {
      for (const c of s.copies) {
        if (c.from != null) {
          t.ok(seenStages.has(c.from), `${file}:${c.line}: COPY --from=${c.from} names an earlier stage`)
          continue
        }
        for (const src of c.sources) {
          t.notOk(/^https?:\/\//.test(src), `${file}:${c.line}: no download by ADD (${src})`)
          const p = posix.normalize(src).replace(/^\.\//, '')
          t.ok(existsSync(join(ROOT, p)), `${file}:${c.line}: COPY source ${src} exists in the repository`)
          t.notOk(ignoredByDocker(p, ignoreRules), `${file}:${c.line}: COPY source ${src} is not excluded by .dockerignore`)
        }
      }
      if (s.name != null) seenStages.add(s.name)
    }

    // npm ci: production dependencies, in /app of a dependency stage whose node_modules the final stage takes
    const installs = image.stages.flatMap((s) => s.instructions.flatMap((ins, k) => ins.keyword !== 'RUN'
      ? []
      : shellCommands(ins.args).map((words) => ({ stage: s, ins, workdir: s.workdirs[k], ...assignments(words) }))
        .filter((c) => c.rest[0] === 'npm' && (c.rest[1] === 'ci' || c.rest[1] === 'install'))))
    t.equal(installs.length, 1, `${file} runs npm ci once`)
    for (const c of installs) {
      t.equal(c.rest[1], 'ci', `${file}:${c.ins.line}: npm ci, the lock file's exact tree`)
      t.ok(c.rest.includes('--omit=dev'), `${file}:${c.ins.line}: npm ci --omit=dev`)
      const nm = posix.join(c.workdir, 'node_modules')
      const taken = image.final.copies.find((k) => k.from === c.stage.name && k.sources.includes(nm))
      t.ok(taken != null, `${file}: the final stage copies ${nm} from stage ${c.stage.name ?? '?'}`)
    }

    // final stage: non-root, exec-form entry point into the CLI, with everything it imports
    t.ok(image.user != null && !/^(root|0)(:|$)/.test(image.user), `${file}: runs as a non-root USER (${image.user ?? 'none'})`)
    const entry = image.entrypoint
    t.ok(entry?.json != null, `${file}: ENTRYPOINT in exec form (node is PID 1 and gets SIGTERM)`)
    t.same(entry?.json?.slice(0, 2), ['node', CLI_ENTRY], `${file}: ENTRYPOINT ["node", "${CLI_ENTRY}"]`)
    t.ok(image.cmd?.json != null, `${file}: CMD in exec form`)
    const entryAt = posix.resolve(image.workdir, CLI_ENTRY)
    t.equal(containerPathOf(image, CLI_ENTRY), entryAt, `${file}: ${CLI_ENTRY} is copied to ${entryAt}`)
    const appRoot = entryAt.slice(0, -CLI_ENTRY.length)
    const missing = [...importClosure(CLI_ENTRY), 'package.json'].filter((p) => containerPathOf(image, p) !== posix.join(appRoot, p))
    t.same(missing, [], `${file}: every file the CLI imports (and package.json, "type": "module") is copied under ${appRoot}`)

    // which node runs it
    if (image.final.base.startsWith('node:')) {
      t.match(image.final.base, /^node:22[.\w-]*-bookworm-slim$/, `${file}: the official node:22 bookworm-slim image`)
    } else {
      const path = image.final.env.PATH ?? ''
      const npmNode = posix.join(appRoot, 'node_modules/node/bin')
      t.ok(path.split(':').includes(npmNode), `${file}: PATH starts Node from the \`node\` npm package (${npmNode})`)
      t.ok('node_modules/node' in lock.packages, `${file}: package-lock.json still has the \`node\` package it runs on`)
    }

    // node <file> anywhere (RUN, CMD, ENTRYPOINT, HEALTHCHECK): the file exists in the image
    const argvs: Array<[string, string[]]> = []
    for (const s of image.stages) {
      for (const ins of s.instructions) {
        if (ins.keyword === 'RUN') for (const w of shellCommands(ins.args)) argvs.push([`${file}:${ins.line}`, assignments(w).rest])
      }
    }
    for (const [where, argv] of argvs) {
      if (argv[0] !== 'node') continue
      const script = nodeScript(argv)
      if (script != null) t.ok(repoPathAt(image, script) != null, `${where}: node ${script} exists in the image`)
    }

    // volumes are made and owned by the user before VOLUME (later changes to a volume path are discarded)
    const user = image.user?.split(':')[0] ?? ''
    const volumeLine = image.final.instructions.find((i) => i.keyword === 'VOLUME')?.line ?? Infinity
    for (const v of image.volumes) {
      const owned = image.final.instructions.some((i) => i.keyword === 'RUN' && i.line < volumeLine &&
        shellCommands(i.args).some((w) => w[0] === 'chown' && w.some((x) => x.startsWith(`${user}:`) || x === user) && w.includes(v)))
      t.ok(owned, `${file}: VOLUME ${v} is chown'd to ${user} before the VOLUME instruction`)
    }

    // lumiere command line of the image
    const argv = [...(entry?.json ?? []), ...(image.cmd?.json ?? [])]
    for (const inv of lumiereInvocations(argv, `${file} ENTRYPOINT+CMD`, image, t)) await checkLumiere(t, inv)
  })
}

// what each install downloads
function installEnv (image: Image): string[] {
  const values: string[] = []
  for (const s of image.stages) {
    for (const ins of s.instructions) {
      if (ins.keyword !== 'RUN') continue
      for (const words of shellCommands(ins.args)) {
        const { env, rest } = assignments(words)
        if (rest[0] === 'npm' && rest[1] === 'ci') values.push(env.ONNXRUNTIME_NODE_INSTALL ?? s.env.ONNXRUNTIME_NODE_INSTALL ?? '(unset)')
      }
    }
  }
  return values
}

function downloads (image: Image): string[] {
  const found: string[] = []
  for (const s of image.stages) {
    for (const ins of s.instructions) {
      if (ins.keyword === 'RUN') {
        for (const words of shellCommands(ins.args)) {
          const { rest } = assignments(words)
          if (['curl', 'wget', 'git'].includes(rest[0])) found.push(`${image.file}:${ins.line}: ${rest.join(' ')}`)
          if (rest.some((w) => w.startsWith('--onnxruntime-node-install') && w !== '--onnxruntime-node-install=skip')) found.push(`${image.file}:${ins.line}: ${rest.join(' ')}`)
        }
      }
      if (/cuda12|ONNXRUNTIME_NODE_INSTALL_CUDA/i.test(ins.args)) found.push(`${image.file}:${ins.line}: ${ins.args}`)
    }
  }
  return found
}

for (const file of ['docker/peer.Dockerfile', 'docker/coordinator.Dockerfile']) {
  t.test(`${file} installs the CPU build and downloads nothing else`, async (t) => {
    const image = images.get(file)
    if (image == null) { t.fail(`${file} is missing`); return }
    t.same(installEnv(image), ['skip'], 'npm ci runs with ONNXRUNTIME_NODE_INSTALL=skip')
    t.same(downloads(image), [], 'no curl/wget/git, no CUDA install flag')
  })
}

t.test('docker/peer-cuda.Dockerfile installs the CUDA 12 EP', async (t) => {
  const image = images.get('docker/peer-cuda.Dockerfile')
  if (image == null) { t.fail('missing'); return }
  t.same(installEnv(image), ['cuda12'], 'npm ci runs with ONNXRUNTIME_NODE_INSTALL=cuda12')
  t.match(image.final.base, /^nvidia\/cuda:12\.[\d.]+-cudnn\d*-runtime-ubuntu22\.04$/, 'runtime on an NVIDIA CUDA 12 + cuDNN runtime image, Ubuntu 22.04')
  const verified = image.stages.some((s) => s.instructions.some((i) => i.keyword === 'RUN' && i.args.includes('libonnxruntime_providers_cuda.so')))
  t.ok(verified, 'the build fails when the CUDA EP library did not arrive')
})

const PEER_EP: Record<string, RegExp> = {
  'docker/peer.Dockerfile': /^cpu$/,
  'docker/peer-cuda.Dockerfile': /^cuda(,cpu)?$/
}

for (const [file, epRule] of Object.entries(PEER_EP)) {
  t.test(`${file}: ports, volume, health check`, async (t) => {
    const image = images.get(file)
    if (image == null) { t.fail(`${file} is missing`); return }
    const argv = [...(image.entrypoint?.json ?? []), ...(image.cmd?.json ?? [])]
    const [inv] = lumiereInvocations(argv, `${file} CMD`, image, t)
    if (inv == null) { t.fail('the image runs no lumiere command'); return }
    const { path, flags } = await checkLumiere(t, inv)
    t.same(path, ['peer'], 'runs lumiere peer')
    const listen = flags.get('--listen') ?? []
    t.ok(listen.some((a) => /\/tcp\/\d+$/.test(a)) && listen.some((a) => /\/udp\/\d+\/webrtc-direct$/.test(a)), 'listens on TCP and WebRTC-direct')
    t.notOk(listen.some((a) => /\/(tcp|udp)\/0(\/|$)/.test(a)), 'on fixed ports')
    t.same(listenPorts(listen).sort(), [...image.exposed].sort(), `EXPOSE ${image.exposed.join(' ')} matches --listen`)
    const cache = flags.get('--cache')?.[0]
    const addrFile = flags.get('--addr-file')?.[0]
    t.ok(cache != null && image.volumes.some((v) => under(cache, v)), `--cache ${cache} is in a VOLUME (${image.volumes.join(' ')})`)
    t.ok(addrFile != null && image.volumes.some((v) => under(addrFile, v)), `--addr-file ${addrFile} is in a VOLUME`)
    t.match(flags.get('--ep')?.[0] ?? '', epRule, `--ep ${flags.get('--ep')?.[0]}`)

    // the health check probes the TCP listen port; run it against a real socket
    const hc = image.healthcheck
    const hcArgs = hc == null ? undefined : execForm(hc.args.replace(/^CMD\s+/, ''))
    t.ok(hcArgs != null && hc?.args.startsWith('CMD '), 'HEALTHCHECK CMD in exec form')
    if (hcArgs == null) return
    t.equal(hcArgs[0], 'node', 'the health check runs node')
    const e = hcArgs.indexOf('-e')
    t.ok(e > 0 && hcArgs[e + 1] != null, 'node -e <probe>')
    const probe = hcArgs[e + 1] ?? ''
    const tcpPort = listenPorts(listen).find((p) => p.endsWith('/tcp'))?.split('/')[0] ?? ''
    t.ok(new RegExp(`\\b${tcpPort}\\b`).test(probe), `the probe connects to the TCP listen port ${tcpPort}`)
    const server = createServer((s) => s.destroy())
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const port = (server.address() as AddressInfo).port
    const local = probe.replace(new RegExp(`\\b${tcpPort}\\b`, 'g'), String(port))
    t.equal(await spawnExit(['-e', local]), 0, 'the probe passes while the port accepts')
    await new Promise<void>((resolve) => server.close(() => { resolve() }))
    t.not(await spawnExit(['-e', local]), 0, 'and fails once nothing listens')
  })
}

t.test('docker/coordinator.Dockerfile', async (t) => {
  const image = images.get('docker/coordinator.Dockerfile')
  if (image == null) { t.fail('missing'); return }
  t.same(image.entrypoint?.json, ['node', CLI_ENTRY], `ENTRYPOINT ["node", "${CLI_ENTRY}"]`)
  t.ok(image.volumes.includes('/out'), 'an output volume, /out')
  t.same(image.exposed, [], 'exposes nothing (the coordinator dials out)')
})

// ---------------------------------------------------------------------------
// compose.yaml

t.test('docker/compose.yaml', async (t) => {
  const composeFile = join(DOCKER, 'compose.yaml')
  const text = readFileSync(composeFile, 'utf8')
  const doc = parseYaml(text, 'docker/compose.yaml')
  if (!isMap(doc) || !isMap(doc.services)) { t.fail('compose.yaml has services'); return }

  walkStrings(doc, 'compose', (s, at) => {
    t.doesNotThrow(() => interpolate(s), `${at}: every $ is escaped for compose`)
  })

  const declared = (key: string): YamlMap => isMap(doc[key]) ? doc[key] : {}
  const serviceImages = new Map<string, Image>()
  const peers = new Map<string, { service: YamlMap, flags: Map<string, string[]> }>()
  const coordinators = new Map<string, Map<string, string[]>>()
  const networksOf = (service: YamlMap): string[] => Array.isArray(service.networks) ? service.networks.map(String) : isMap(service.networks) ? Object.keys(service.networks) : []

  for (const [name, service] of Object.entries(doc.services)) {
    if (!isMap(service)) { t.fail(`service ${name} is a mapping`); continue }
    // the image: built from a Dockerfile here
    const build = service.build
    const context = typeof build === 'string' ? build : isMap(build) ? String(build.context ?? '.') : undefined
    t.ok(context != null, `${name}: built from this repository`)
    if (context == null) continue
    const dockerfile = join(DOCKER, context, isMap(build) && typeof build.dockerfile === 'string' ? build.dockerfile : 'Dockerfile')
    t.ok(existsSync(dockerfile), `${name}: build.dockerfile ${posix.relative(ROOT, dockerfile)} exists`)
    const key = posix.relative(ROOT.replaceAll('\\', '/'), dockerfile.replaceAll('\\', '/'))
    const image = images.get(key)
    if (image == null) { t.fail(`${name}: ${key} is one of the checked Dockerfiles`); continue }
    t.equal(join(DOCKER, context), ROOT.replace(/\/$/, ''), `${name}: the build context is the repository root (.dockerignore applies)`)
    serviceImages.set(name, image)
    if (typeof service.image === 'string') t.match(service.image, /:(?!latest$)[\w][\w.-]*$/, `${name}: image ${service.image} is tagged`)

    // volumes and networks are declared
    for (const m of mounts(service)) {
      if (m.named) t.ok(Object.hasOwn(declared('volumes'), m.source), `${name}: volume ${m.source} is declared`)
    }
    for (const n of networksOf(service)) t.ok(Object.hasOwn(declared('networks'), n), `${name}: network ${n} is declared`)

    // the effective command line: entrypoint/command override the image's
    const entrypoint = service.entrypoint != null ? strings(service.entrypoint).map(interpolate) : image.entrypoint?.json ?? []
    const command = service.command != null ? strings(service.command).map(interpolate) : service.entrypoint != null ? [] : image.cmd?.json ?? []
    t.ok(service.command == null || Array.isArray(service.command), `${name}: command is a list (no compose word splitting)`)
    const argv = [...entrypoint, ...command]
    const invocations = lumiereInvocations(argv, `compose ${name}`, image, t)
    t.equal(invocations.length, 1, `${name}: runs one lumiere command`)
    for (const inv of invocations) {
      const checked = await checkLumiere(t, inv)
      const help = await cliHelp(checked.path)
      if (help.options.has('--psk')) {
        t.same(checked.flags.get('--psk'), [PSK_PATH], `${name}: lumiere ${checked.path.join(' ')} now has --psk; pass --psk ${PSK_PATH} (the secret is mounted already)`)
      }
      if (checked.path[0] === 'peer') peers.set(name, { service, flags: checked.flags })
      if (checked.flags.has('--discover')) coordinators.set(name, checked.flags)
    }
  }

  t.ok(peers.size >= 2, `a rig of several peers (${[...peers.keys()].join(', ')})`)
  t.equal(coordinators.size, 1, 'one coordinator, finding its peers with --discover')

  // every service on one network: mDNS multicast reaches only its own segment
  const segments = new Set(Object.values(doc.services).filter(isMap).map((service) => networksOf(service).join(',')))
  t.equal(segments.size, 1, `every service is on the same network (${[...segments].join(' | ')})`)

  // peers: announced by mDNS; fixed ports that their image exposes; own caches
  for (const [name, { service, flags }] of peers) {
    const image = serviceImages.get(name) as Image
    t.ok(flags.has('--mdns'), `${name}: announces itself by mDNS (--mdns)`)
    t.same(listenPorts(flags.get('--listen') ?? []).sort(), [...image.exposed].sort(), `${name}: --listen ports are the ones ${image.file} exposes`)
    const cache = flags.get('--cache')?.[0] ?? ''
    const cm = mounts(service).find((v) => under(cache, v.target))
    t.ok(cm?.named === true, `${name}: --cache ${cache} is in a named volume`)
    t.notOk([...peers].some(([other, p]) => other !== name && mounts(p.service).some((v) => v.source === cm?.source)), `${name}: its stage cache volume is its own`)
    t.ok(image.healthcheck != null || isMap(service.healthcheck), `${name}: has a health check`)
  }

  // the coordinator: waits for every peer of the rig, and no more
  for (const [name, flags] of coordinators) {
    t.same(flags.get('--discover'), [String(peers.size)], `${name}: --discover ${peers.size}, one per peer service`)
    t.notOk(flags.has('--local') || flags.has('--peers'), `${name}: no --local or --peers beside --discover`)
  }

  // one PSK for every container, mounted at /run/secrets/lumiere.psk (wired now, used once --psk lands)
  const secrets = declared('secrets')
  const sources = new Set<string>()
  for (const [name, service] of Object.entries(doc.services)) {
    if (!isMap(service)) continue
    const list = Array.isArray(service.secrets) ? service.secrets : []
    t.equal(list.length, 1, `${name}: mounts exactly one secret, the PSK`)
    for (const s of list) {
      const source = isMap(s) ? String(s.source) : String(s)
      const target = isMap(s) && s.target != null ? String(s.target) : source
      sources.add(source)
      t.equal(posix.resolve('/run/secrets', target), PSK_PATH, `${name}: the secret is at ${PSK_PATH}`)
    }
  }
  t.equal(sources.size, 1, `all containers share one PSK secret (${[...sources].join(', ')})`)
  for (const source of sources) {
    const s = secrets[source]
    t.ok(isMap(s) && typeof s.file === 'string', `secret ${source} is declared with a file`)
  }
  const peerHelp = await cliHelp(['peer'])
  if (!peerHelp.options.has('--psk')) {
    // Once lumiere peer has --psk, the checks above require the flag itself instead.
    t.ok(text.includes(PSK_COMMENT), `a '${PSK_COMMENT}' comment marks where the flag goes`)
    t.notOk(/"--psk"|--psk\s+\//.test(text.split('\n').filter((l) => !l.trim().startsWith('#')).join('\n')), 'no command passes --psk before lumiere peer has it')
  }
})
