/**
 * Errors of the daemon. Every error carries a stable `code` (`ERR_…`);
 * tests and callers branch on `code`, never on the message text.
 */

/** Stable codes of every error the daemon throws. */
export type DaemonErrorCode =
  | 'ERR_CONFIG_READ'
  | 'ERR_CONFIG_SYNTAX'
  | 'ERR_CONFIG_UNKNOWN_KEY'
  | 'ERR_CONFIG_BAD_VALUE'
  | 'ERR_CONFIG_DUPLICATE_KEY'
  | 'ERR_CONFIG_MISSING_KEY'
  | 'ERR_LOG_SETUP'
  | 'ERR_CONTROL_IN_USE'
  | 'ERR_CONTROL_NOT_SOCKET'
  | 'ERR_CONTROL_PROTOCOL'
  | 'ERR_CONTROL_VERSION'
  | 'ERR_CONTROL_UNKNOWN_COMMAND'
  | 'ERR_CONTROL_BAD_REQUEST'
  | 'ERR_CONTROL_FAILED'
  | 'ERR_HOOK_FAILED'
  | 'ERR_HOOK_TIMEOUT'
  | 'ERR_PIDFILE_IN_USE'
  | 'ERR_PIDFILE_WRITE'
  | 'ERR_PRIVILEGE_DROP'
  | 'ERR_UNSAFE_PERMISSIONS'
  | 'ERR_BNL_INVALID'
  | 'ERR_SELF_NOT_IN_BNL'
  | 'ERR_STARTUP'
  | 'ERR_PORT_IN_USE'
  | 'ERR_DEVICE_IN_USE'
  | 'ERR_STATE'
  | 'ERR_CREDENTIALS'
  | 'ERR_GOSSIP'
  // relays and rendezvous (src/relay.ts, src/rendezvous.ts)
  | 'ERR_RELAY_NOT_RELAY'
  | 'ERR_RELAY_UNKNOWN_TARGET'
  | 'ERR_RELAY_LIMIT'
  | 'ERR_RELAY_TIMEOUT'
  | 'ERR_RELAY_UNKNOWN_TOKEN'
  | 'ERR_RELAY_NONE'
  | 'ERR_RENDEZVOUS_MALFORMED';

/** Base class of every daemon error. `code` is stable; wrap causes with `{ cause }`. */
export class DaemonError extends Error {
  readonly code: DaemonErrorCode;
  constructor(code: DaemonErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'DaemonError';
    this.code = code;
  }
}

/**
 * Invalid configuration. The message reads `file:line: key: what is wrong`
 * (`file: key: …` when no line applies, e.g. a missing required key), so it
 * can be printed as the one line the operator sees.
 */
export class ConfigError extends DaemonError {
  /** Absolute path of the config file. */
  readonly file: string;
  /** 1-based line number, or `undefined` when the problem has no line (missing key, unreadable file). */
  readonly line: number | undefined;
  /** The offending key, when there is one. */
  readonly key: string | undefined;
  constructor(
    code: Extract<DaemonErrorCode, `ERR_CONFIG_${string}`>,
    where: { file: string; line?: number; key?: string },
    what: string,
    options?: { cause?: unknown },
  ) {
    const loc = where.line === undefined ? where.file : `${where.file}:${where.line}`;
    super(code, where.key === undefined ? `${loc}: ${what}` : `${loc}: ${where.key}: ${what}`, options);
    this.name = 'ConfigError';
    this.file = where.file;
    this.line = where.line;
    this.key = where.key;
  }
}

/** Error of the local control socket (server side) or of one control request. */
export class ControlServerError extends DaemonError {
  constructor(code: Extract<DaemonErrorCode, `ERR_CONTROL_${string}`>, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'ControlServerError';
  }
}

/** A hook command failed (non-zero exit, signal) or timed out. */
export class HookError extends DaemonError {
  constructor(code: 'ERR_HOOK_FAILED' | 'ERR_HOOK_TIMEOUT', message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'HookError';
  }
}

/** The pidfile names a live process, or cannot be written. */
export class PidfileError extends DaemonError {
  constructor(code: 'ERR_PIDFILE_IN_USE' | 'ERR_PIDFILE_WRITE', message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'PidfileError';
  }
}

/** Dropping privileges to `user`/`group` failed; the daemon must not go on running as root. */
export class PrivilegeError extends DaemonError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_PRIVILEGE_DROP', message, options);
    this.name = 'PrivilegeError';
  }
}

/**
 * `user=` would not be a boundary: the user the daemon drops to could change
 * a file root reads or runs at the next start (`protected-paths.ts`). The
 * daemon refuses to start (exit status 3) before it changes anything.
 */
export class UnsafePermissionsError extends DaemonError {
  /** What to fix: the file the user could change, or the directory that lets it replace one. */
  readonly path: string;
  /** The protected path it endangers (the same, or a path under it). */
  readonly protects: string;
  /** The config key naming the protected path (`config` for the config file). */
  readonly key: string;
  /** `owner`, `group-bits`, `other-bits`, `acl` or `directory` (see `OpenReason`). */
  readonly reason: string;
  constructor(message: string, where: { path: string; protects: string; key: string; reason: string }, options?: { cause?: unknown }) {
    super('ERR_UNSAFE_PERMISSIONS', message, options);
    this.name = 'UnsafePermissionsError';
    this.path = where.path;
    this.protects = where.protects;
    this.key = where.key;
    this.reason = where.reason;
  }
}
