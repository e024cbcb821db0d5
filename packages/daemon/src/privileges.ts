/**
 * Dropping privileges after set-up (`user=` / `group=` in the config).
 *
 * Kept across the drop: every file descriptor already open — the TUN
 * device, the UDP and TCP sockets, the control socket, the SQLite database,
 * the log file or the syslog pipe.
 *
 * With `user` set (the normal case) the native addon
 * (`native/privileges.c`, built by `scripts/build-native`) switches to the
 * user and keeps exactly ONE capability, CAP_NET_ADMIN, on the main thread
 * (permitted, effective, inheritable and ambient sets; bounding set reduced
 * to it when we hold CAP_SETPCAP; no_new_privs set). So, after the drop:
 * - routes for subnets that appear in a later BNL are still added and
 *   removed: the `ip` commands the daemon execs get CAP_NET_ADMIN through
 *   the ambient set (they are forked by the main thread, see privileges.c);
 * - hooks run as the user, also with CAP_NET_ADMIN and nothing else, and
 *   cannot gain more through setuid binaries (no_new_privs: `sudo` in a
 *   hook does not work after the drop);
 * - root and every other capability are gone: no reading root's files
 *   (CAP_DAC_OVERRIDE), no setuid back to 0. The BNL file's directory and
 *   the state database must be writable by the user;
 *   `checkWritableAfterDrop` verifies this right after the drop.
 * - Node's other threads (libuv threadpool, V8 workers) get the new uid and
 *   NO capability at all.
 * If any step fails after the uid has changed, the addon prints
 * "cluevpnd: FATAL: ..." and ends the process with exit status 71 rather
 * than run with an unknown privilege set. A failure before that throws
 * `PrivilegeError` and the daemon stops.
 *
 * Fallback, only when the addon is not built: Node's setgid/setuid, which
 * keep NO capability. This is logged at error level: routes for subnets
 * appearing later cannot be added (result `keptNetAdmin: false`; the daemon
 * then relies on a covering route set by `upcmd`).
 *
 * `group` alone (no `user`) changes only the groups and stays uid 0 with
 * its capabilities (as before): that is not a privilege drop.
 */
import { accessSync, constants, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { debugHas } from '@cluevpn/tun';
import { PrivilegeError } from './errors.js';
import type { Logger } from './logging.js';

/** Target of the drop; both undefined = stay as is. */
export interface PrivilegeTarget {
  user?: string | undefined;
  group?: string | undefined;
}

/** What `dropPrivileges` did. */
export interface PrivilegeDropResult {
  /** Real, effective and saved uid after the drop. */
  uid: number;
  /** Real, effective and saved gid after the drop. */
  gid: number;
  /**
   * True when the process can still change routes (CAP_NET_ADMIN kept by
   * the addon, or still uid 0 with `group` alone); false after the
   * fallback drop, which keeps no capability.
   */
  keptNetAdmin: boolean;
}

/** The functions exported by privileges.node (see native/privileges.c). Errors carry `code` = errno name, `errno`, `syscall`. */
export interface PrivilegesAddon {
  dropPrivilegesKeepNetAdmin(uid: number, gid: number, groups: number[]): { boundingSetDropped: boolean };
  lookupUser(name: string, gid?: number): { uid: number; gid: number; groups: number[] } | null;
  lookupGroup(name: string): number | null;
  /** The raw `system.posix_acl_access` attribute (symlinks followed), or null when there is none. */
  posixAclAccess(path: string): Buffer | null;
  netAdminCapability: number;
}

/** Options of `dropPrivileges`, for tests. */
export interface DropPrivilegesOptions {
  /** The addon to use; `null` forces the fallback. Default: `loadPrivilegesAddon()`. */
  addon?: PrivilegesAddon | null;
}

let cached: PrivilegesAddon | null | undefined;
let loadError: unknown;

/**
 * Loads `native/build/Release/privileges.node` (with
 * CLUEVPN_DEBUG=sanitize-daemon the ASan/UBSan build of
 * `scripts/build-native --debug-sanitize`). Returns null if it cannot be
 * loaded; `privilegesAddonLoadError()` tells why.
 */
export function loadPrivilegesAddon(): PrivilegesAddon | null {
  if (cached === undefined) {
    const path =
      debugHas('sanitize-daemon')
        ? '../../native/build-sanitize/build/Debug/privileges.node'
        : '../../native/build/Release/privileges.node';
    try {
      cached = createRequire(import.meta.url)(path) as PrivilegesAddon;
    } catch (err) {
      loadError = err;
      cached = null;
    }
  }
  return cached;
}

/** Why the last `loadPrivilegesAddon()` returned null (undefined if it did not). */
export function privilegesAddonLoadError(): unknown {
  return loadError;
}

/**
 * Drops to `user`/`group` (see the module comment for what is kept).
 * Returns null when neither is set. Throws `PrivilegeError`
 * (`ERR_PRIVILEGE_DROP`) on any failure before the uid changed: the daemon
 * must then stop. A failure after the uid changed ends the process (exit 71).
 */
export function dropPrivileges(target: PrivilegeTarget, log: Logger, options: DropPrivilegesOptions = {}): PrivilegeDropResult | null {
  if (target.user === undefined && target.group === undefined) return null;
  if (target.user === undefined) return switchGroupOnly(target.group!, log);
  const addon = options.addon === undefined ? loadPrivilegesAddon() : options.addon;
  if (addon === null) return fallbackDrop(target.user, target.group, log);

  const user = target.user;
  let account: Account;
  try {
    account = lookupAccount(user, target.group, addon);
    addon.dropPrivilegesKeepNetAdmin(account.uid, account.gid, account.groups);
  } catch (err) {
    throw new PrivilegeError(`cannot switch to user ${user} group ${target.group ?? '-'} keeping CAP_NET_ADMIN: ${(err as Error).message}`, { cause: err });
  }
  const { uid, gid } = account;
  // The addon verified uid, gid and the capability sets itself; this checks
  // that Node sees the same identity.
  if (process.getuid!() !== uid || process.geteuid!() !== uid || process.getgid!() !== gid) {
    throw new PrivilegeError(`after the drop Node reports uid ${process.getuid!()} gid ${process.getgid!()}, expected ${uid}/${gid}`);
  }
  log.notice('dropped privileges, kept only CAP_NET_ADMIN', { user: `${user} (uid ${uid})`, group: `${target.group ?? '-'} (gid ${gid})`, pid: process.pid });
  return { uid, gid, keptNetAdmin: true };
}

/** The ids a drop to `user`/`group` ends with. */
export interface Account {
  /** The user as configured. */
  name: string;
  uid: number;
  /** The gid switched to: `group`, or the user's primary group. */
  gid: number;
  /** Supplementary groups, as `initgroups` sets them (NSS; with the addon). */
  groups: number[];
}

/** Looks `user`/`group` up (NSS through the addon, else /etc/passwd and /etc/group). Throws a plain Error when unknown or root. */
function lookupAccount(user: string, group: string | undefined, addon: PrivilegesAddon | null): Account {
  let account: Account;
  if (addon !== null) {
    const gidOpt = group === undefined ? undefined : resolveGroup(addon, group);
    const found = addon.lookupUser(user, gidOpt);
    if (found !== null) account = { name: user, uid: found.uid, gid: gidOpt ?? found.gid, groups: found.groups };
    else if (/^\d+$/.test(user)) {
      const gid = gidOpt ?? primaryGroupOf(user);
      account = { name: user, uid: Number(user), gid, groups: [gid] };
    } else throw new Error(`no such user ${user}`);
  } else {
    const pw = passwdEntry(user);
    const gid = group === undefined ? pw.gid : /^\d+$/.test(group) ? Number(group) : groupEntries().find((g) => g.name === group)?.gid;
    if (gid === undefined) throw new Error(`no such group ${group}`);
    const groups = [gid, ...groupEntries().filter((g) => g.members.includes(pw.name) && g.gid !== gid).map((g) => g.gid)];
    account = { name: user, uid: pw.uid, gid, groups };
  }
  if (account.uid === 0) throw new Error(`user ${user} is root: not a privilege drop`);
  return account;
}

/**
 * The ids `dropPrivileges` will switch to for `target.user` (null when no
 * user is set): read before the drop to check what that user could write.
 * Throws `PrivilegeError` (`ERR_PRIVILEGE_DROP`) for an unknown user or group.
 */
export function resolveAccount(target: PrivilegeTarget, options: DropPrivilegesOptions = {}): Account | null {
  if (target.user === undefined) return null;
  const addon = options.addon === undefined ? loadPrivilegesAddon() : options.addon;
  try {
    return lookupAccount(target.user, target.group, addon);
  } catch (err) {
    throw new PrivilegeError(`cannot look up user ${target.user} group ${target.group ?? '-'}: ${(err as Error).message}`, { cause: err });
  }
}

function resolveGroup(addon: PrivilegesAddon, group: string): number {
  const gid = addon.lookupGroup(group);
  if (gid !== null) return gid;
  if (/^\d+$/.test(group)) return Number(group);
  throw new Error(`no such group ${group}`);
}

/** `group` without `user`: supplementary groups = just that group, then setgid. Stays uid 0. */
function switchGroupOnly(group: string, log: Logger): PrivilegeDropResult {
  try {
    process.setgroups!([group]);
    process.setgid!(group);
  } catch (err) {
    throw new PrivilegeError(`cannot switch to group ${group}: ${(err as Error).message}`, { cause: err });
  }
  log.notice('switched group (no user set: still uid 0)', { group, pid: process.pid });
  return { uid: process.getuid!(), gid: process.getgid!(), keptNetAdmin: true };
}

/** Without the addon: Node's initgroups/setgid/setuid. Keeps no capability. */
function fallbackDrop(user: string, group: string | undefined, log: Logger): PrivilegeDropResult {
  log.error('privileges addon not built (run scripts/build-native): dropping ALL capabilities; routes for subnets in later BNLs CANNOT be added', {
    err: privilegesAddonLoadError(),
  });
  try {
    const gid = group ?? primaryGroupOf(user);
    // supplementary groups of the user, plus the chosen group
    (process as unknown as { initgroups(user: string, extra: string | number): void }).initgroups(user, gid);
    process.setgid!(gid);
    process.setuid!(user);
  } catch (err) {
    throw new PrivilegeError(`cannot switch to user ${user} group ${group ?? '-'}: ${(err as Error).message}`, { cause: err });
  }
  const uid = process.getuid!();
  const gid = process.getgid!();
  let regained = false;
  try {
    process.setuid!(0);
    regained = true;
  } catch (err) {
    // expected: root cannot be regained after a real drop
    log.debug('root cannot be regained, as expected', { err: (err as Error).message });
  }
  if (regained || uid === 0) throw new PrivilegeError(`still able to act as root after switching to ${user}`);
  log.notice('dropped privileges (no capability kept)', { user, group: group ?? '-', pid: process.pid });
  return { uid, gid, keptNetAdmin: false };
}

/** The /etc/passwd entry of `user` (name or uid). */
function passwdEntry(user: string): { name: string; uid: number; gid: number } {
  for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
    const f = line.split(':');
    if (f[0] === user || (/^\d+$/.test(user) && f[2] === user)) return { name: f[0]!, uid: Number(f[2]), gid: Number(f[3]) };
  }
  throw new Error(`no such user ${user}`);
}

/** The primary gid of `user` (name or uid) from /etc/passwd. */
function primaryGroupOf(user: string): number {
  return passwdEntry(user).gid;
}

/** /etc/group: name, gid and members of every group. */
function groupEntries(): { name: string; gid: number; members: string[] }[] {
  return readFileSync('/etc/group', 'utf8')
    .split('\n')
    .map((line) => line.split(':'))
    .filter((f) => f.length >= 4)
    .map((f) => ({ name: f[0]!, gid: Number(f[2]), members: f[3]!.split(',').filter((m) => m !== '') }));
}

/** After the drop: every path must be writable (directory of the BNL file, state database). Throws `PrivilegeError` naming the first that is not. */
export function checkWritableAfterDrop(paths: string[]): void {
  for (const p of paths) {
    try {
      accessSync(p, constants.W_OK);
    } catch (err) {
      throw new PrivilegeError(
        `${p} is not writable after dropping privileges; keep bnl= and statedb= in the state directory (default /var/lib/cluevpn/NETNAME, handed to the user at start), give the user write access to it, or unset user=`,
        { cause: err },
      );
    }
  }
}
