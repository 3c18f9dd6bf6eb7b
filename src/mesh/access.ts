/**
 * Access control for a mesh node (DESIGN §4): who may connect, and whose
 * jobs a peer runs.
 *
 * - Pre-shared key (`--psk FILE`, made by `lumiere keygen`): @libp2p/pnet
 *   XSalsa20-wraps every TCP/WebSocket connection before anything else, so a
 *   node without the same key cannot even negotiate encryption. WebRTC
 *   connections skip connection protectors entirely (the upgrader is told
 *   `skipProtection`), hence:
 * - Allowlist (`--allow ID,…` / `--allow-file FILE`): a connection gater that
 *   refuses any remote peer id not listed, on every transport. The checks
 *   that matter run once the remote's id is authenticated: the upgrader calls
 *   denyInbound/OutboundEncryptedConnection right after the Noise handshake
 *   (for WebRTC-direct too: its own Noise handshake authenticates the id,
 *   then the upgrader runs the same checkpoint) and
 *   denyInbound/OutboundUpgradedConnection after muxing. denyDialPeer and
 *   denyDialMultiaddr (a /p2p/ id in the address) save dialling unlisted
 *   peers at all.
 * - Stable identity (`--identity FILE`): a private key kept on disk, so the
 *   peer id others list in --allow / --trust survives restarts.
 * - Trust (`--trust ID,…`, peers only): which coordinators may give this
 *   peer jobs; see trustPolicy.
 */
import { chmod, open, readFile } from 'node:fs/promises'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { generateKey, preSharedKey } from '@libp2p/pnet'
import { byteStream } from '@libp2p/utils'
import { LumiereError } from '../errors.ts'
import type { AbortOptions, ConnectionGater, ConnectionProtector, MessageStream, PeerId, PrivateKey } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

/** Access settings of one mesh node (createMeshNode's `access`). */
export interface MeshAccess {
  /** Swarm key file bytes (`/key/swarm/psk/1.0.0/` format): TCP/WebSocket connections need the same key on both ends. */
  psk?: Uint8Array
  /**
   * Remote peer ids this node may connect with, either direction, any
   * transport. Read at every check, so ids added later count. Undefined:
   * anyone.
   */
  allow?: ReadonlySet<string>
}

/** What the CLI's access flags resolve to (also the file paths, for local peers started with the same settings). */
export interface AccessConfig extends MeshAccess {
  /** The --psk file, passed on to local peers. */
  pskFile?: string
  /** Mutable, so a coordinator can add the local peers it starts. */
  allow?: Set<string>
  /** The --identity key (stable peer id). */
  privateKey?: PrivateKey
}

/** Flags shared by every command that runs a mesh node. */
export interface AccessFlags {
  psk?: string
  allow?: string[]
  allowFile?: string
  identity?: string
}

const SWARM_KEY_HEADER = '/key/swarm/psk/1.0.0/'
const SWARM_KEY_BYTES = 32
/** A swarm key file is ~95 bytes; anything much larger is not one. */
const MAX_KEY_FILE_BYTES = 4096
/** Bound on an --allow-file (one peer id per line). */
const MAX_ALLOW_FILE_BYTES = 16 * 1024 * 1024

// ---------------------------------------------------------------- pre-shared key

/**
 * Checks swarm key bytes the way @libp2p/pnet reads them: header line,
 * `/base16/`, 64 hex digits. Throws BAD_ARGUMENT naming `what`.
 */
export function checkSwarmKey (bytes: Uint8Array, what = 'swarm key'): Uint8Array {
  const lines = new TextDecoder().decode(bytes).split(/\r\n|\r|\n/)
  const bad = (why: string): never => {
    throw new LumiereError('BAD_ARGUMENT', `${what} is not a libp2p swarm key: ${why} (make one with 'lumiere keygen --out FILE')`)
  }
  if (lines[0] !== SWARM_KEY_HEADER) bad(`the first line must be ${SWARM_KEY_HEADER}`)
  if (lines[1] !== '/base16/') bad('the second line must be /base16/ (the only encoding @libp2p/pnet reads)')
  if (!new RegExp(`^[0-9a-fA-F]{${2 * SWARM_KEY_BYTES}}$`).test(lines[2] ?? '')) bad(`the third line must be ${2 * SWARM_KEY_BYTES} hex digits`)
  return bytes
}

/** Reads and checks a --psk file (FILE_NOT_FOUND, BAD_ARGUMENT). */
export async function readSwarmKey (file: string): Promise<Uint8Array> {
  const bytes = await readSmallFile(file, MAX_KEY_FILE_BYTES, '--psk')
  return checkSwarmKey(bytes, `--psk ${file}`)
}

/** A fresh swarm key in the @libp2p/pnet format. */
export function newSwarmKey (): Uint8Array {
  const buf = new Uint8Array(95)
  generateKey(buf)
  return buf
}

/** Writes a fresh swarm key to `file` with mode 0600; never overwrites (FILE_UNWRITABLE when it exists). */
export async function writeSwarmKey (file: string): Promise<void> {
  await writeSecretFile(file, newSwarmKey())
}

// ---------------------------------------------------------------- identity

/** Writes a fresh Ed25519 identity (libp2p protobuf private key) to `file`, mode 0600, never overwriting; returns its peer id. */
export async function writeIdentity (file: string): Promise<string> {
  const key = await generateKeyPair('Ed25519')
  await writeSecretFile(file, privateKeyToProtobuf(key))
  return peerIdFromPrivateKey(key).toString()
}

/** Reads an --identity file written by `lumiere keygen --identity` (FILE_NOT_FOUND, BAD_ARGUMENT). */
export async function readIdentity (file: string): Promise<PrivateKey> {
  const bytes = await readSmallFile(file, MAX_KEY_FILE_BYTES, '--identity')
  try {
    return privateKeyFromProtobuf(bytes)
  } catch (err) {
    throw new LumiereError('BAD_ARGUMENT', `--identity ${file} is not a libp2p private key (make one with 'lumiere keygen --identity --out FILE'): ${(err as Error).message}`, { cause: err })
  }
}

// ---------------------------------------------------------------- allowlist

/** Parses one peer id (BAD_ARGUMENT naming `where`). */
export function parsePeerId (text: string, where: string): string {
  try {
    return peerIdFromString(text).toString()
  } catch {
    throw new LumiereError('BAD_ARGUMENT', `${where}: '${text.slice(0, 100)}' is not a peer id (peers print theirs, e.g. 12D3KooW…, when they start)`)
  }
}

/** Peer ids from a comma list (already split) and/or a file of one id per line ('#' starts a comment). */
export async function readAllowlist (ids: string[] | undefined, file: string | undefined, flag = '--allow'): Promise<Set<string> | undefined> {
  if (ids == null && file == null) return undefined
  const out = new Set<string>()
  for (const id of ids ?? []) out.add(parsePeerId(id, flag))
  if (file != null) {
    const text = new TextDecoder().decode(await readSmallFile(file, MAX_ALLOW_FILE_BYTES, `${flag}-file`))
    text.split(/\r\n|\r|\n/).forEach((raw, i) => {
      const line = raw.replace(/#.*/, '').trim()
      if (line !== '') out.add(parsePeerId(line, `${flag}-file ${file} line ${i + 1}`))
    })
  }
  if (out.size === 0) throw new LumiereError('BAD_ARGUMENT', `${flag} lists no peer id: nobody could connect`)
  return out
}

function peerIdOfAddr (ma: Multiaddr): string | undefined {
  return ma.getComponents().findLast((c) => c.name === 'p2p')?.value
}

/** A connection gater refusing every remote peer not in `allow` (see the file comment for the hooks). */
export function allowlistGater (allow: ReadonlySet<string>): ConnectionGater {
  const denied = (peer: PeerId): boolean => !allow.has(peer.toString())
  return {
    denyDialPeer: denied,
    denyDialMultiaddr: (ma) => {
      const id = peerIdOfAddr(ma)
      return id != null && !allow.has(id)
    },
    denyOutboundConnection: denied,
    denyInboundEncryptedConnection: denied,
    denyOutboundEncryptedConnection: denied,
    denyInboundUpgradedConnection: denied,
    denyOutboundUpgradedConnection: denied,
    denyInboundRelayReservation: denied,
    denyInboundRelayedConnection: (_relay, remote) => denied(remote)
  }
}

/**
 * Plain @libp2p/pnet gives no sign of a wrong key: both ends just decrypt
 * garbage and wait for a protocol message that never parses, until the
 * upgrade times out. So after pnet's nonce exchange each end sends this
 * constant through the protected stream and checks the other's: a different
 * key (or none) fails the connection at once with a message that says so.
 * (A known plaintext under XSalsa20 reveals only those 16 keystream bytes of
 * this connection's nonce, never the key.)
 */
const PSK_CONFIRM = new TextEncoder().encode('lumiere-psk-ok/1')

class ConfirmedPreSharedKey implements ConnectionProtector {
  private readonly inner: ConnectionProtector

  constructor (psk: Uint8Array) {
    this.inner = preSharedKey({ psk })()
  }

  async protect (connection: MessageStream, options?: AbortOptions): Promise<MessageStream> {
    const signal = options?.signal ?? AbortSignal.timeout(5_000)
    const boxed = await this.inner.protect(connection, { signal })
    const bytes = byteStream(boxed)
    let got: Uint8Array
    try {
      const [read] = await Promise.all([bytes.read({ bytes: PSK_CONFIRM.byteLength, signal }), bytes.write(PSK_CONFIRM, { signal })])
      got = read.subarray()
    } catch (err) {
      throw new Error(`the pre-shared key handshake failed (${(err as Error).message}): does the remote use the same --psk key?`, { cause: err })
    }
    if (!PSK_CONFIRM.every((b, i) => got[i] === b)) {
      const err = new Error('the remote does not use this node\'s pre-shared key (--psk): both ends need the same swarm key file')
      boxed.abort(err)
      throw err
    }
    return bytes.unwrap()
  }
}

/** A connection protector: @libp2p/pnet with a key check (see PSK_CONFIRM). Throws BAD_ARGUMENT for a malformed key. */
export function confirmedPreSharedKey (psk: Uint8Array): () => ConnectionProtector {
  checkSwarmKey(psk)
  return () => new ConfirmedPreSharedKey(psk)
}

/** The createLibp2p options that implement `access` (spread into the config). */
export function meshAccessConfig (access: MeshAccess | undefined): { connectionProtector?: () => ConnectionProtector, connectionGater?: ConnectionGater } {
  if (access == null) return {}
  return {
    ...(access.psk != null ? { connectionProtector: confirmedPreSharedKey(access.psk) } : {}),
    ...(access.allow != null ? { connectionGater: allowlistGater(access.allow) } : {})
  }
}

/** Resolves the CLI access flags (reads the files). */
export async function loadAccess (flags: AccessFlags): Promise<AccessConfig> {
  const config: AccessConfig = {}
  if (flags.psk != null) {
    config.psk = await readSwarmKey(flags.psk)
    config.pskFile = flags.psk
  }
  const allow = await readAllowlist(flags.allow, flags.allowFile)
  if (allow != null) config.allow = allow
  if (flags.identity != null) config.privateKey = await readIdentity(flags.identity)
  return config
}

// ---------------------------------------------------------------- trust

/** Requests a peer serves to anyone: liveness and what it offers. */
export const OPEN_REQUESTS: ReadonlySet<string> = new Set(['ping', 'capabilities'])

/** What a peer knows of a job when it decides whether to take a request for it. */
export interface JobMembership {
  /** The coordinator that set the job up. */
  coordinator: string
  /** Other peers of the job: they push activations to this peer's stages. */
  peers: ReadonlySet<string>
}

export interface TrustPolicy {
  /** Coordinators whose jobs this peer runs; undefined = any (the LAN default). */
  trusted?: ReadonlySet<string>
}

/**
 * Whether `from` may send request `type` (about `jobId`, when it names one).
 * Throws UNTRUSTED otherwise. With no --trust list every request is taken.
 * With one: ping and capabilities are open; stage.has, stage.put, job.setup,
 * job.stats and job.close only from a trusted coordinator (and job.setup
 * only naming a trusted coordinator); run.push from a trusted coordinator or
 * from a peer of a job a trusted coordinator set up here. Any other request
 * type is refused.
 */
export function checkTrust (policy: TrustPolicy, type: string, from: string, job: JobMembership | undefined, body?: unknown): void {
  const trusted = policy.trusted
  if (trusted == null || OPEN_REQUESTS.has(type)) return
  if (trusted.has(from)) {
    if (type === 'job.setup') {
      const named = (body as { coordinator?: unknown } | undefined)?.coordinator
      if (typeof named === 'string' && !trusted.has(named)) {
        throw new LumiereError('UNTRUSTED', `job.setup names coordinator ${named.slice(0, 128)}, which this peer does not trust (--trust)`)
      }
    }
    return
  }
  if (type === 'run.push' && job != null && trusted.has(job.coordinator) && job.peers.has(from)) return
  throw new LumiereError('UNTRUSTED', type === 'run.push'
    ? `run.push from ${from}: it is neither a trusted coordinator (--trust) nor a peer of that job`
    : `'${type.slice(0, 64)}' from ${from} refused: this peer takes jobs only from the coordinators it trusts (--trust)`)
}

// ---------------------------------------------------------------- files

async function readSmallFile (file: string, maxBytes: number, flag: string): Promise<Uint8Array> {
  let bytes: Uint8Array
  try {
    const fh = await open(file, 'r')
    try {
      const { size } = await fh.stat()
      if (size > maxBytes) throw new LumiereError('BAD_ARGUMENT', `${flag} ${file} is ${size} bytes, more than the ${maxBytes} expected`)
      bytes = await readFile(fh)
    } finally {
      await fh.close()
    }
  } catch (err) {
    if (err instanceof LumiereError) throw err
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT') throw new LumiereError('FILE_NOT_FOUND', `${flag} ${file}: no such file`, { cause: err })
    throw new LumiereError('BAD_ARGUMENT', `${flag} ${file}: cannot read it (${(err as Error).message})`, { cause: err })
  }
  return bytes
}

/** Creates `file` exclusively with mode 0600 and writes `bytes`. */
async function writeSecretFile (file: string, bytes: Uint8Array): Promise<void> {
  let fh
  try {
    fh = await open(file, 'wx', 0o600)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'EEXIST') throw new LumiereError('FILE_UNWRITABLE', `${file} already exists; keygen never overwrites a key (remove it first if you really mean to replace it)`, { cause: err })
    throw new LumiereError('FILE_UNWRITABLE', `cannot create ${file}: ${(err as Error).message}`, { cause: err })
  }
  try {
    await fh.writeFile(bytes)
    // The umask may have narrowed the mode, never widened it; make it exactly 0600.
    await chmod(file, 0o600)
  } finally {
    await fh.close()
  }
}
