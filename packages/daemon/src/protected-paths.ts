/**
 * The privilege boundary of `user=`: before anything starts, refuse when the
 * user the daemon will drop to could change what root reads or runs at the
 * next start.
 *
 * 1. list the protected paths of the config (`protectedPaths`): the config
 *    file, `cert`, `privkey`, `cacert`, every `bnlpubkey` file and the
 *    programs named by the hook commands (`hookPaths`)
 * 2. for each, walk the path and every directory above it, the path as
 *    written and, when a symlink is on the way, the path it resolves to
 *    (`findWritable`)
 * 3. an entry is open to the user when (`openTo`):
 *    - the user owns it (an owner can always chmod it writable), or
 *    - its mode bits let the user write it: owner bits when the user owns
 *      it, else group bits when its group is the user's primary or one of
 *      its supplementary groups, else the other bits (the kernel's order);
 *      when it has a POSIX access ACL, that ACL decides instead, read as the
 *      kernel does (named user, then the owning and named groups, each
 *      limited by the mask, then other); or
 *    - its directory is open to the user (it can be replaced or created),
 *      except in a sticky directory (`/tmp`) for an existing entry the user
 *      does not own
 * 4. the first open entry throws `UnsafePermissionsError`
 *    (`ERR_UNSAFE_PERMISSIONS`, exit status 3) naming it, the protected path
 *    and the config key.
 *
 * ACLs are read through the privileges addon (`posixAclAccess`); without
 * the addon built they are not seen. Not checked: the interpreter of a
 * script named in a hook, programs a hook script runs in turn, the daemon's own installation,
 * read-only mounts (a writable mode on a read-only mount is refused all the
 * same). Run-time state (`bnl` and its sidecars, `statedb`, the pidfile, the
 * control socket, the log file) is not protected: the daemon must write it.
 */
import { lstatSync, realpathSync, statSync, type Stats } from 'node:fs';
import { basename, delimiter, dirname, isAbsolute, join, resolve } from 'node:path';
import type { DaemonConfig } from './config.js';
import { INLINE_PUBKEY_RE } from './config.js';
import { UnsafePermissionsError } from './errors.js';
import type { HookName } from './hooks.js';
import { loadPrivilegesAddon } from './privileges.js';

/** The identity checked against: the target of the drop. */
export interface AccountIds {
  /** User name (for messages). */
  name: string;
  uid: number;
  /** Primary gid and every supplementary gid. */
  gids: readonly number[];
}

/** One protected path and where it comes from. */
export interface ProtectedPath {
  /** The config key naming it (`config` for the config file itself). */
  key: string;
  path: string;
}

/** Why an entry is open to the user. */
export type OpenReason = 'owner' | 'group-bits' | 'other-bits' | 'acl' | 'directory';

/** A finding of `findWritable`. */
export interface WritableEntry {
  /** The entry (file or directory) the user can change. */
  entry: string;
  reason: OpenReason;
}

/** The part of `node:fs` the walk uses; tests hand in a table. Both throw ENOENT for a missing path. */
export interface StatFs {
  /** stat(2): follows symlinks. */
  stat(path: string): Pick<Stats, 'uid' | 'gid' | 'mode'>;
  /** lstat(2): does not follow. */
  lstat(path: string): Pick<Stats, 'uid' | 'gid' | 'mode' | 'isSymbolicLink'>;
  /** realpath(3). */
  realpath(path: string): string;
  /** The raw POSIX access ACL (`system.posix_acl_access`, symlinks followed), or null when there is none. */
  acl(path: string): Uint8Array | null;
}

const realFs: StatFs = {
  stat: statSync,
  lstat: lstatSync,
  realpath: (p) => realpathSync(p),
  acl: (p) => loadPrivilegesAddon()?.posixAclAccess(p) ?? null,
};

const S_ISVTX = 0o1000;

/** Specification: POSIX ACL xattr entry tags (linux/posix_acl_xattr.h); entries are `u16 tag, u16 perm, u32 id` little endian after a `u32` version 2. */
const ACL_TAG = { userObj: 0x01, user: 0x02, groupObj: 0x04, group: 0x08, mask: 0x10, other: 0x20 } as const;
const ACL_VERSION = 2;
const ACL_WRITE = 2;

/**
 * Whether the access ACL `acl` lets `ids` (not the owner) write, as the
 * kernel's `posix_acl_permission` decides: a named-user entry (limited by
 * the mask); else, if the owning group or a named group matches one of the
 * user's groups, whether one of those grants write (limited by the mask);
 * else the other entry. A malformed ACL counts as granting (refuse rather
 * than guess).
 */
export function aclAllowsWrite(acl: Uint8Array, fileGid: number, ids: AccountIds): boolean {
  const view = new DataView(acl.buffer, acl.byteOffset, acl.byteLength);
  if (acl.byteLength < 4 || (acl.byteLength - 4) % 8 !== 0 || view.getUint32(0, true) !== ACL_VERSION) return true;
  const entries: { tag: number; perm: number; id: number }[] = [];
  for (let off = 4; off < acl.byteLength; off += 8) entries.push({ tag: view.getUint16(off, true), perm: view.getUint16(off + 2, true), id: view.getUint32(off + 4, true) });
  const mask = entries.find((e) => e.tag === ACL_TAG.mask)?.perm ?? 7;
  const named = entries.find((e) => e.tag === ACL_TAG.user && e.id === ids.uid);
  if (named !== undefined) return (named.perm & mask & ACL_WRITE) !== 0;
  let groupMatched = false;
  for (const e of entries) {
    const matches = (e.tag === ACL_TAG.groupObj && ids.gids.includes(fileGid)) || (e.tag === ACL_TAG.group && ids.gids.includes(e.id));
    if (!matches) continue;
    groupMatched = true;
    if ((e.perm & mask & ACL_WRITE) !== 0) return true;
  }
  if (groupMatched) return false;
  return ((entries.find((e) => e.tag === ACL_TAG.other)?.perm ?? 0) & ACL_WRITE) !== 0;
}

/**
 * How `ids` may write an inode with `st`'s owner, group and mode (the
 * kernel's owner → group → other order), or with its access ACL `acl` when
 * it has one, or null.
 */
export function writeReason(st: Pick<Stats, 'uid' | 'gid' | 'mode'>, ids: AccountIds, acl: Uint8Array | null = null): OpenReason | null {
  if (st.uid === ids.uid) return 'owner';
  if (acl !== null) return aclAllowsWrite(acl, st.gid, ids) ? 'acl' : null;
  if (ids.gids.includes(st.gid)) return st.mode & 0o020 ? 'group-bits' : null;
  return st.mode & 0o002 ? 'other-bits' : null;
}

function isMissing(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

function tryStat<T>(fn: () => T): T | null {
  try {
    return fn();
  } catch (err) {
    if (isMissing(err)) return null;
    throw err;
  }
}

/** `path` and every directory above it, root last: `/a/b/c` → `/a/b/c`, `/a/b`, `/a`, `/`. */
function chain(path: string): string[] {
  const out: string[] = [];
  for (let p = resolve(path); ; p = dirname(p)) {
    out.push(p);
    if (dirname(p) === p) return out;
  }
}

/** The real path of `path`, or of its nearest existing ancestor with the rest appended when it does not exist. */
function realOf(path: string, fs: StatFs): string {
  const rest: string[] = [];
  for (let p = resolve(path); ; p = dirname(p)) {
    const real = tryStat(() => fs.realpath(p));
    if (real !== null) return rest.length === 0 ? real : join(real, ...rest.reverse());
    if (dirname(p) === p) return resolve(path);
    rest.push(basename(p));
  }
}

/**
 * The first entry on the way to `path` that `ids` could change (step 3 of
 * the module comment), or null. `path` need not exist: then a directory
 * above it that the user can write lets it create the path.
 */
export function findWritable(path: string, ids: AccountIds, fs: StatFs = realFs): WritableEntry | null {
  const abs = resolve(path);
  const real = realOf(abs, fs);
  const entries = real === abs ? chain(abs) : [...chain(abs), ...chain(real)];
  for (const entry of entries) {
    const own = tryStat(() => fs.lstat(entry));
    // The entry itself (a symlink's own mode means nothing; its target is checked through `real`).
    // A directory on the way is open when the user owns it (it can chmod it, drop a sticky bit);
    // its write bits matter through the entries in it, checked below (sticky directories).
    if (own !== null && !own.isSymbolicLink()) {
      const r = entry === abs || entry === real ? writeReason(own, ids, fs.acl(entry)) : own.uid === ids.uid ? 'owner' : null;
      if (r !== null) return { entry, reason: r };
    }
    // Its directory: can the user replace or create the entry?
    const parent = dirname(entry);
    if (parent === entry) continue;
    const dir = tryStat(() => fs.stat(parent));
    if (dir === null || writeReason(dir, ids, fs.acl(parent)) === null) continue;
    const sticky = (dir.mode & S_ISVTX) !== 0;
    if (sticky && own !== null && own.uid !== ids.uid && dir.uid !== ids.uid) continue;
    return { entry, reason: 'directory' };
  }
  return null;
}

/** Words of a shell command, split at blanks and operators, quotes removed (enough to find the paths it names). */
function words(cmd: string): string[] {
  return cmd
    .split(/[\s;&|<>()`]+/)
    .map((w) => w.replace(/^['"]+|['"]+$/g, ''))
    .filter((w) => w.length > 0);
}

/**
 * Every place `/bin/sh` looks for `name` through `PATH`, up to and including
 * the first executable match (all of them when there is none): a program
 * planted in an earlier directory would run instead.
 */
function pathCandidates(name: string, pathEnv: string, fs: StatFs): string[] {
  const out: string[] = [];
  for (const dir of pathEnv.split(delimiter)) {
    if (!isAbsolute(dir)) continue;
    out.push(join(dir, name));
    const st = tryStat(() => fs.stat(join(dir, name)));
    if (st !== null && (st.mode & 0o170000) === 0o100000 && (st.mode & 0o111) !== 0) return out;
  }
  return out;
}

/**
 * The files a hook command runs or reads, as far as its text shows: its
 * program (an absolute path, a relative one against `cwd` — hooks run in
 * the daemon's working directory — or, for a bare name, every `PATH` entry
 * up to the one that has it) and every other word that is an
 * absolute path to a regular file or directory, or to nothing yet
 * (`sh /etc/cluevpn/office/up.sh`). Devices such as `/dev/null` are not code.
 */
export function hookPaths(cmd: string, cwd: string, pathEnv: string, fs: StatFs = realFs): string[] {
  const ws = words(cmd);
  const out: string[] = [];
  const program = ws[0];
  if (program !== undefined && !program.includes('=') && !program.startsWith('$')) {
    if (program.includes('/')) out.push(resolve(cwd, program));
    else out.push(...pathCandidates(program, pathEnv, fs));
  }
  for (const w of ws.slice(1)) {
    if (!w.startsWith('/')) continue;
    const st = tryStat(() => fs.stat(w));
    const type = st === null ? null : st.mode & 0o170000;
    if (type === null || type === 0o100000 || type === 0o040000) out.push(w);
  }
  return out;
}

/** The hook keys of the config (every `HookName`). */
export const HOOK_KEYS: readonly HookName[] = ['upcmd', 'downcmd', 'mysubnetupcmd', 'subnetupcmd', 'subnetdowncmd'];

/** Where hooks run: the `PATH` and working directory they inherit from the daemon. */
export interface HookContext {
  pathEnv: string;
  cwd: string;
}

/** The config fields the check reads. */
export type BoundaryConfig = Pick<DaemonConfig, 'file' | 'cert' | 'privkey' | 'cacert' | 'bnlpubkey' | HookName>;

/** Step 1: every protected path of `config`. */
export function protectedPaths(config: BoundaryConfig, hooks: HookContext, fs: StatFs = realFs): ProtectedPath[] {
  const out: ProtectedPath[] = [
    { key: 'config', path: config.file },
    { key: 'cert', path: config.cert },
    { key: 'privkey', path: config.privkey },
    { key: 'cacert', path: config.cacert },
  ];
  for (const k of config.bnlpubkey) if (!INLINE_PUBKEY_RE.test(k)) out.push({ key: 'bnlpubkey', path: k });
  for (const key of HOOK_KEYS) {
    const cmd = config[key];
    if (cmd !== undefined) for (const path of hookPaths(cmd, hooks.cwd, hooks.pathEnv, fs)) out.push({ key, path });
  }
  return out;
}

/** `fs` with every answer (or ENOENT-like error) remembered, for one check. */
function memoized(fs: StatFs): StatFs {
  const memo = <T>(fn: (p: string) => T): ((p: string) => T) => {
    const seen = new Map<string, { v: T } | { e: unknown }>();
    return (p) => {
      let r = seen.get(p);
      if (r === undefined) {
        try {
          r = { v: fn(p) };
        } catch (err) {
          r = { e: err };
        }
        seen.set(p, r);
      }
      if ('e' in r) throw r.e;
      return r.v;
    };
  };
  return { stat: memo((p) => fs.stat(p)), lstat: memo((p) => fs.lstat(p)), realpath: memo((p) => fs.realpath(p)), acl: memo((p) => fs.acl(p)) };
}

/**
 * Steps 1–4: throws `UnsafePermissionsError` for the first protected path
 * the user `ids` could change. `hooks`: default this process's `PATH` and
 * working directory, which the hooks inherit.
 */
export function checkPrivilegeBoundary(
  config: BoundaryConfig,
  ids: AccountIds,
  hooks: HookContext = { pathEnv: process.env.PATH ?? '/usr/bin:/bin', cwd: process.cwd() },
  fs: StatFs = realFs,
): void {
  fs = memoized(fs); // the paths share their directories: each is looked at once
  for (const p of protectedPaths(config, hooks, fs)) {
    const w = findWritable(p.path, ids, fs);
    if (w === null) continue;
    const who = `user ${ids.name} (uid ${ids.uid})`;
    const fix = w.reason === 'directory' ? dirname(w.entry) : w.entry;
    const what = {
      owner: `${fix} is owned by ${who}`,
      'group-bits': `${fix} is group-writable and its group is one of ${who}'s`,
      'other-bits': `${fix} is writable by everyone`,
      acl: `${fix} has a POSIX ACL that lets ${who} write it`,
      directory: `${fix} is writable by ${who}, who could replace or create ${w.entry} in it`,
    }[w.reason];
    const kind = p.key === 'config' ? 'the config file' : `${p.key} ${p.path}`;
    throw new UnsafePermissionsError(
      `${what}; with user=${ids.name} in ${config.file}, a daemon compromised as that user could change ${kind}, which root reads or runs at the next start. ` +
        `Make ${fix} root's and not writable by that user (run-time state belongs in the state directory, never next to the config), or unset user=`,
      { path: fix, protects: p.path, key: p.key, reason: w.reason },
    );
  }
}
