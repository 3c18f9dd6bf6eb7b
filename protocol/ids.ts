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

/** The `v` field of every request envelope. */
export const ENVELOPE_VERSION = 1
