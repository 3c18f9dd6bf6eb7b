/**
 * Protocol identifiers. The version is part of the libp2p protocol id, so
 * peers speaking an incompatible version fail protocol negotiation cleanly
 * (rpcCall reports PROTOCOL) instead of misreading each other's bytes.
 *
 * Bump the major version for any change an older peer would reject or
 * misread (new request type, new required field, changed framing).
 */
export const PROTOCOL_VERSION = '1.0.0'

/** One request per stream: request envelope + tensor frames, then response envelope + tensor frames. */
export const RPC_PROTOCOL = `/lumiere/rpc/${PROTOCOL_VERSION}`

/**
 * The receiving end of a link probe (peer/link-probe.ts): one tensor frame
 * in, a small msgpack acknowledgement out. Not an rpc request, so that a
 * peer with --trust takes it from the other peers of its coordinator.
 */
export const LINK_PROBE_PROTOCOL = `/lumiere/link-probe/${PROTOCOL_VERSION}`

/** The `v` field of every request envelope. */
export const ENVELOPE_VERSION = 1
