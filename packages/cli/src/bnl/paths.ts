/**
 * Where the `bnl` command reads and writes, matching the daemon: the signed
 * list is the daemon's default `bnl`, in its state directory:
 * `$CLUEVPN_STATEDIR/NET/bnl` with `-n NET` (`/var/lib/cluevpn/NET/bnl`),
 * else `$CLUEVPN_STATEDIR/cluevpn/bnl`; `--file` overrides it. The draft
 * stays with the configuration, where the daemon's user cannot write it:
 * `$CLUEVPN_CONFDIR/NET/bnl.draft` (`/etc/cluevpn/NET/bnl.draft`), or
 * `<file>.draft` next to a `--file`, unless `--draft` says otherwise.
 */
import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { BnlCliError, BnlExit } from './exit-codes.js';

/** Global options every subcommand understands. */
export interface GlobalOptions {
  file?: string;
  draft?: string;
  net?: string;
  debug?: boolean;
}

/** Resolved file locations. */
export interface BnlPaths {
  signed: string;
  draft: string;
  /** True when `signed` is the daemon's default (no `--file`): `sign` creates its directory (0700) if missing. */
  signedIsDefault: boolean;
}

/** Resolves the signed-list and draft paths from the options and environment. */
export function resolvePaths(opts: GlobalOptions, env: NodeJS.ProcessEnv = process.env): BnlPaths {
  const conf = resolve(env.CLUEVPN_CONFDIR || '/etc/cluevpn');
  const state = resolve(env.CLUEVPN_STATEDIR || '/var/lib/cluevpn');
  if (opts.file !== undefined) {
    const signed = resolve(opts.file);
    return { signed, draft: opts.draft !== undefined ? resolve(opts.draft) : `${signed}.draft`, signedIsDefault: false };
  }
  const signed = join(state, opts.net ?? 'cluevpn', 'bnl');
  const draft = opts.draft !== undefined ? resolve(opts.draft) : opts.net !== undefined ? join(conf, opts.net, 'bnl.draft') : join(conf, 'bnl.draft');
  return { signed, draft, signedIsDefault: true };
}

/**
 * Creates the directory of the default signed list when missing, as the
 * daemon does: the base 0755, the network's directory 0700 (the daemon
 * hands it to its `user` at start). Throws `BnlCliError` (exit `file`).
 */
export function ensureSignedDir(paths: BnlPaths): void {
  if (!paths.signedIsDefault) return;
  const dir = dirname(paths.signed);
  try {
    mkdirSync(dirname(dir), { recursive: true, mode: 0o755 });
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new BnlCliError(BnlExit.file, `cannot create ${dir}: ${(err as Error).message}`, 'run as root, or give --file', { cause: err });
  }
}
