/**
 * Errors of `@cluevpn/negotiation`. Every error carries a stable `code`;
 * callers and tests branch on `code`, never on the message text.
 */

/** Stable error codes of this package. */
export type NegotiationErrorCode =
  | 'ERR_CA_INPUT'
  | 'ERR_CA_EXISTS'
  | 'ERR_CA_INVALID'
  | 'ERR_ALGO_CONFIG'
  | 'ERR_NO_COMMON_ALGO'
  | 'ERR_STATE_CORRUPT'
  | 'ERR_STATE_IO'
  | 'ERR_CHANNEL_CLOSED'
  | 'ERR_CHANNEL_TIMEOUT'
  | 'ERR_CHANNEL_PROTOCOL'
  | 'ERR_CHANNEL_FRAME_TOO_LARGE'
  | 'ERR_CHANNEL_REMOTE'
  | 'ERR_PEER_REFUSED'
  | 'ERR_NEGOTIATION_CONFLICT'
  | 'ERR_NEGOTIATION_PROTOCOL'
  | 'ERR_NEGOTIATION_CLOSED'
  | 'ERR_NEGOTIATION_TIMEOUT'
  | 'ERR_NO_SESSION'
  | 'ERR_CREDENTIALS';

/** Base class of every error thrown by this package. */
export class NegotiationError extends Error {
  /** Stable machine-readable code. */
  readonly code: NegotiationErrorCode;
  constructor(code: NegotiationErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'NegotiationError';
    this.code = code;
  }
}

/** A CA / certificate operation failed: bad input (`ERR_CA_INPUT`), refusing to overwrite (`ERR_CA_EXISTS`), or an invalid certificate/CSR (`ERR_CA_INVALID`). */
export class CaError extends NegotiationError {
  constructor(code: 'ERR_CA_INPUT' | 'ERR_CA_EXISTS' | 'ERR_CA_INVALID', message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'CaError';
  }
}

/** An algorithm list (`cryptalgos` / `compalgos`) is invalid; `item` names the offending entry. */
export class AlgoConfigError extends NegotiationError {
  /** The offending list item, verbatim (empty when the whole list is at fault). */
  readonly item: string;
  constructor(item: string, message: string) {
    super('ERR_ALGO_CONFIG', message);
    this.name = 'AlgoConfigError';
    this.item = item;
  }
}

/**
 * The state database cannot be used. `file` names it; the way out is in the
 * message: move the file aside and restart, the nodes renegotiate.
 */
export class StateCorruptError extends NegotiationError {
  /** Path of the database file. */
  readonly file: string;
  constructor(file: string, detail: string, options?: { cause?: unknown }) {
    super(
      'ERR_STATE_CORRUPT',
      `state database ${file} is unreadable (${detail}); move it aside (mv ${file} ${file}.broken) and restart: the nodes renegotiate`,
      options,
    );
    this.name = 'StateCorruptError';
    this.file = file;
  }
}

/** Why an authenticated TLS peer was refused (see `authorizePeer`). */
export type RefusalReason =
  | 'no-certificate'
  | 'untrusted-certificate'
  | 'expired'
  | 'not-yet-valid'
  | 'not-member'
  | 'fingerprint-mismatch'
  | 'wrong-ou'
  | 'wrong-peer'
  | 'pre-auth-bytes';

/** A peer failed mutual-TLS authorisation; `reason` says why. */
export class PeerRefusedError extends NegotiationError {
  /** Typed refusal reason. */
  readonly reason: RefusalReason;
  constructor(reason: RefusalReason, message: string, options?: { cause?: unknown }) {
    super('ERR_PEER_REFUSED', message, options);
    this.name = 'PeerRefusedError';
    this.reason = reason;
  }
}

/** A control-channel failure (closed, timed out, protocol violation, oversized frame, or an error answer from the remote). */
export class ChannelError extends NegotiationError {
  /** For `ERR_CHANNEL_REMOTE`: the code the remote sent. */
  readonly remoteCode: string | undefined;
  constructor(
    code: 'ERR_CHANNEL_CLOSED' | 'ERR_CHANNEL_TIMEOUT' | 'ERR_CHANNEL_PROTOCOL' | 'ERR_CHANNEL_FRAME_TOO_LARGE' | 'ERR_CHANNEL_REMOTE',
    message: string,
    options?: { cause?: unknown; remoteCode?: string },
  ) {
    super(code, message, options);
    this.name = 'ChannelError';
    this.remoteCode = options?.remoteCode;
  }
}

/** Which credential file a `CredentialsError` is about (the daemon's config key of the same name). */
export type CredentialsFileKey = 'cert' | 'privkey' | 'cacert';

/** Why credentials were refused (see `loadCredentials`). */
export type CredentialsReason = 'unreadable' | 'unparsable' | 'key-mismatch' | 'wrong-name' | 'untrusted' | 'expired' | 'not-yet-valid';

/**
 * A node's certificate, key or CA bundle cannot be used (`ERR_CREDENTIALS`).
 * `key` and `file` name the file at fault, `reason` says why; the message
 * reads `KEY FILE: what is wrong` and never holds key material.
 */
export class CredentialsError extends NegotiationError {
  readonly key: CredentialsFileKey;
  readonly file: string;
  readonly reason: CredentialsReason;
  constructor(key: CredentialsFileKey, file: string, reason: CredentialsReason, what: string, options?: { cause?: unknown }) {
    super('ERR_CREDENTIALS', `${key} ${file}: ${what}`, options);
    this.name = 'CredentialsError';
    this.key = key;
    this.file = file;
    this.reason = reason;
  }
}
