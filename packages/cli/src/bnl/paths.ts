/**
 * Where the `bnl` command reads and writes, matching the daemon: the signed
 * list is `$CLUEVPN_CONFDIR/bnl` (`/etc/cluevpn/bnl`), or
 * `$CLUEVPN_CONFDIR/NET/bnl` with `-n NET`; `--file` overrides it. The
 * draft lives next to it as `<file>.draft` unless `--draft` says otherwise.
 */
import { join, resolve } from 'node:path';

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
}

/** Resolves the signed-list and draft paths from the options and environment. */
export function resolvePaths(opts: GlobalOptions, env: NodeJS.ProcessEnv = process.env): BnlPaths {
  const base = resolve(env.CLUEVPN_CONFDIR || '/etc/cluevpn');
  const signed = opts.file !== undefined ? resolve(opts.file) : opts.net !== undefined ? join(base, opts.net, 'bnl') : join(base, 'bnl');
  return { signed, draft: opts.draft !== undefined ? resolve(opts.draft) : `${signed}.draft` };
}
