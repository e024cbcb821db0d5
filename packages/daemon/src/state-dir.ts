/**
 * The state directory: where the daemon writes at run time, kept apart from
 * the config directory so that `user=` is a boundary (`protected-paths.ts`).
 * Runs at start, as root, after the pidfile is held and before the BNL and
 * the state database are opened:
 *
 * 1. when `bnl` or `statedb` is in the network's state directory
 *    (`statedir`, the default `/var/lib/cluevpn/NETNAME`): create the base
 *    (0755) and the directory (0700) if missing; refuse a symlink or a
 *    non-directory there
 * 2. move state an older version kept in the config directory (its old
 *    defaults `DIR/bnl` with `bnl.highest` and `bnl.trust`, and
 *    `DIR/state.db` with its `-wal`), once, for each default path whose
 *    new file does not exist yet: each file is copied atomically
 *    (`@cluevpn/atomic-file`, same mode), the main file last, one `notice`
 *    line says what moved, then the old files are removed, the main file
 *    last (if that fails, e.g. /etc mounted read-only by systemd, a warning
 *    names them and the start goes on: the copy is complete). A crash in between leaves the old files, and the next
 *    start moves them again. When both old and new exist the new one is
 *    used and a warning names the old one (remove it by hand). An explicit
 *    `bnl=` or `statedb=` is used as it is and never moved.
 * 3. with `user=`: hand the directory (only the directory, never a file in
 *    it) to that user, so that the daemon can replace its files after the
 *    drop; the files themselves were opened or are replaced by rename.
 *
 * Failures are `DaemonError` `ERR_STATE` naming the path.
 */
import { chmodSync, existsSync, lchownSync, lstatSync, mkdirSync, readFileSync, statSync, unlinkSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fsyncDirSync, writeFileAtomicSync } from '@cluevpn/atomic-file';
import type { DaemonConfig } from './config.js';
import { DaemonError } from './errors.js';
import type { Logger } from './logging.js';

/** Who will own the state directory after the drop. */
export interface StateOwner {
  uid: number;
  gid: number;
}

/** One group of files moved together: the main file and its sidecars (suffixes). */
interface LegacyState {
  from: string;
  to: string;
  /** Sidecars copied only when the new one does not exist (the rollback guard is never lowered). */
  keep: readonly string[];
  /** Sidecars that must match the main file exactly: copied, or the new one removed. */
  mirror: readonly string[];
  /** Sidecars just removed (rebuilt by their owner: SQLite's `-shm`). */
  drop: readonly string[];
}

function stateError(path: string, what: string, err: unknown): DaemonError {
  return new DaemonError('ERR_STATE', `state directory: ${path}: ${what}: ${(err as Error).message}`, { cause: err });
}

function copyAtomic(from: string, to: string): void {
  writeFileAtomicSync(to, readFileSync(from), { mode: statSync(from).mode & 0o777 });
}

function removeIfPresent(path: string): void {
  try {
    unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/** Step 2 for one group. Returns true when it moved the files. */
function moveLegacy(s: LegacyState, log: Logger): boolean {
  if (!existsSync(s.from)) return false;
  if (existsSync(s.to)) {
    log.warn('an old state file in the config directory is no longer read; remove it', { path: s.from, reason: `in use: ${s.to}` });
    return false;
  }
  try {
    for (const x of s.keep) if (existsSync(s.from + x) && !existsSync(s.to + x)) copyAtomic(s.from + x, s.to + x);
    for (const x of s.mirror) {
      if (existsSync(s.from + x)) copyAtomic(s.from + x, s.to + x);
      else removeIfPresent(s.to + x);
    }
    for (const x of s.drop) removeIfPresent(s.to + x);
    copyAtomic(s.from, s.to);
  } catch (err) {
    throw stateError(s.from, `cannot move it to ${s.to}`, err);
  }
  log.notice('moved state out of the config directory', { path: s.from, reason: `now ${s.to}` });
  // The copy is complete and durable; the old files go, the main file last. The config directory
  // may be read-only here (systemd's ProtectSystem=strict): then they stay, and the operator is told.
  try {
    for (const x of [...s.keep, ...s.mirror, ...s.drop]) removeIfPresent(s.from + x);
    removeIfPresent(s.from);
    fsyncDirSync(dirname(s.from));
  } catch (err) {
    log.warn('cannot remove the old state file after moving it; it is no longer read: remove it by hand', { path: s.from, err });
  }
  return true;
}

/** Steps 1–3 (see the module comment). `owner`: the drop's target, or null without `user=`. */
export function prepareStateDir(config: Pick<DaemonConfig, 'dir' | 'statedir' | 'bnl' | 'statedb'>, owner: StateOwner | null, log: Logger): void {
  const dir = config.statedir;
  const bnlDefault = config.bnl === resolve(dir, 'bnl');
  const dbDefault = config.statedb === resolve(dir, 'state.db');
  if (!bnlDefault && !dbDefault) return;

  // 1. the directory
  // (chmod after mkdir: the modes are exact whatever the umask, e.g. systemd's UMask=0077)
  try {
    if (!existsSync(dirname(dir))) {
      mkdirSync(dirname(dir), { recursive: true, mode: 0o755 });
      chmodSync(dirname(dir), 0o755);
    }
    if (!existsSync(dir)) {
      mkdirSync(dir, { mode: 0o700 });
      chmodSync(dir, 0o700);
    }
  } catch (err) {
    throw stateError(dir, 'cannot create it', err);
  }
  let st;
  try {
    st = lstatSync(dir);
  } catch (err) {
    throw stateError(dir, 'cannot read it', err);
  }
  if (!st.isDirectory()) throw new DaemonError('ERR_STATE', `state directory: ${dir} is not a directory (a symlink or a file is refused)`);

  // 2. state left in the config directory by an older version
  const legacy: LegacyState[] = [];
  if (bnlDefault && resolve(config.dir, 'bnl') !== config.bnl) {
    legacy.push({ from: resolve(config.dir, 'bnl'), to: config.bnl, keep: ['.highest', '.trust'], mirror: [], drop: [] });
  }
  if (dbDefault && resolve(config.dir, 'state.db') !== config.statedb) {
    legacy.push({ from: resolve(config.dir, 'state.db'), to: config.statedb, keep: [], mirror: ['-wal'], drop: ['-shm'] });
  }
  for (const s of legacy) moveLegacy(s, log);

  // 3. the directory belongs to the user the daemon drops to
  if (owner !== null && (st.uid !== owner.uid || st.gid !== owner.gid)) {
    try {
      lchownSync(dir, owner.uid, owner.gid);
    } catch (err) {
      throw stateError(dir, `cannot give it to uid ${owner.uid}`, err);
    }
    log.notice('state directory handed to the user the daemon drops to', { path: dir, user: `uid ${owner.uid} gid ${owner.gid}` });
  }
}
