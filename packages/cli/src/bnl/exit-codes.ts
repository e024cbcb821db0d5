/**
 * Exit codes of the `bnl` command. Stable: scripts branch on them.
 */
export const BnlExit = {
  ok: 0,
  /** An unexpected internal error (a bug): run again with --debug and report it. */
  internal: 1,
  /** Wrong usage: unknown command or option, missing or malformed argument. */
  usage: 2,
  /** The edit or input is invalid (validation failed); nothing was written. */
  invalid: 3,
  /** A file is missing, exists already, or cannot be read or written. */
  file: 4,
  /** Verification failed: unsigned, bad signature, untrusted, unparsable or truncated list. */
  verify: 5,
  /** A key file is unusable (unreadable, wrong type, or readable by others). */
  key: 6,
  /** No running daemon answered (`bnl push`), or it refused the request. */
  daemon: 7,
} as const;

/** Text for the `--help` epilogue and the README. */
export const EXIT_CODES_HELP = `Exit codes:
  0  success
  1  internal error (a bug; run again with --debug and report it)
  2  usage error (unknown command or option, malformed argument)
  3  invalid input or edit (validation failed; nothing was written)
  4  file missing, already exists, or cannot be read/written
  5  verification failed (unsigned, bad signature, untrusted key, corrupt list)
  6  key file unusable (unreadable, not Ed25519, or readable by others)
  7  no running daemon answered bnl push, or it refused`;

/** A failure to report as one line `bnl: <what>; <what to do>` and exit with `exit`. */
export class BnlCliError extends Error {
  readonly exit: number;
  readonly hint: string;
  constructor(exit: number, what: string, hint: string, options?: { cause?: unknown }) {
    super(what, options);
    this.name = 'BnlCliError';
    this.exit = exit;
    this.hint = hint;
  }
}
