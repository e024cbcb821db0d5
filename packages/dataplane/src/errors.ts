/**
 * Errors of the data plane. Dropped packets are never errors (they are
 * counted by reason); these are for configuration and programmer errors and
 * for resources that cannot be had (a port in use).
 */

/** Stable codes of {@link DataplaneError}. */
export type DataplaneErrorCode =
  | 'ERR_DP_BIND'
  | 'ERR_DP_CONFIG'
  | 'ERR_DP_KEY'
  | 'ERR_DP_PEER'
  /** `installSession` for a peer that already holds MAX_SESSIONS_PER_PEER sessions: retire one first (nothing is evicted). */
  | 'ERR_DP_SESSIONS_FULL'
  | 'ERR_DP_NATIVE'
  | 'ERR_DP_CLOSED';

/** Base class of every error thrown by `@cluevpn/dataplane`; `code` is stable. */
export class DataplaneError extends Error {
  /** Stable machine-readable code; tests and callers branch on it, never on the message. */
  readonly code: DataplaneErrorCode;
  /** errno name from the system call, when one failed (e.g. `EADDRINUSE`). */
  readonly errno?: string;
  constructor(code: DataplaneErrorCode, message: string, options?: { cause?: unknown; errno?: string }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'DataplaneError';
    this.code = code;
    if (options?.errno !== undefined) this.errno = options.errno;
  }
}
