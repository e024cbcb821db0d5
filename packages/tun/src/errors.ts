/**
 * Errors of @cluevpn/tun. Every error thrown or reported by this package is a
 * {@link TunError} whose `code` is one of {@link TunErrorCode}; tests and
 * callers branch on `code`, never on the message text.
 */

/** The stable error codes of this package. */
export const TunErrorCode = {
  /** The process lacks CAP_NET_ADMIN (not root) for creating or configuring the device. */
  PERMISSION: 'ERR_TUN_PERMISSION',
  /** `/dev/net/tun` does not exist or cannot be used (no tun module), or the addon is not built. */
  UNAVAILABLE: 'ERR_TUN_UNAVAILABLE',
  /** The requested interface name is taken (attached elsewhere, or a device of another kind). */
  BUSY: 'ERR_TUN_BUSY',
  /** A read, poll or open failed for another reason; `errno` names it. */
  IO: 'ERR_TUN_IO',
  /** The device was used after `close()`. */
  CLOSED: 'ERR_TUN_CLOSED',
  /** Bad options, or the kernel rejected a configuration step; `errno` names it when known. */
  CONFIG: 'ERR_TUN_CONFIG',
  /** The packet handler threw; the exception is the `cause`. Reading continues. */
  HANDLER: 'ERR_TUN_HANDLER',
} as const;

/** A value of {@link TunErrorCode}. */
export type TunErrorCodeValue = (typeof TunErrorCode)[keyof typeof TunErrorCode];

/** Extra fields of a {@link TunError}. */
export interface TunErrorDetails {
  /** errno name such as `'EBUSY'`, when a system call or the kernel (netlink) reported one. */
  errno?: string;
  /** The failing system call or command (`'TUNSETIFF'`, `'SIOCSIFMTU'`, `'netlink'`). */
  syscall?: string;
  /** The underlying error. */
  cause?: unknown;
}

/**
 * The one error class of this package. `code` is stable; `errno` (an errno
 * name, not a number) and `syscall` are set when the kernel said why.
 */
export class TunError extends Error {
  /** Stable machine-readable code. */
  readonly code: TunErrorCodeValue;
  /** errno name (`'EPERM'`, `'EEXIST'`, …) when known. */
  readonly errno: string | undefined;
  /** Failing system call or command when known. */
  readonly syscall: string | undefined;

  constructor(code: TunErrorCodeValue, message: string, details: TunErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'TunError';
    this.code = code;
    this.errno = details.errno;
    this.syscall = details.syscall;
  }
}

/** True when `e` is a {@link TunError} with the given code. */
export function isTunError(e: unknown, code?: TunErrorCodeValue): e is TunError {
  return e instanceof TunError && (code === undefined || e.code === code);
}
