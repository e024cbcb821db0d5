/**
 * Dropping privileges after set-up (`user=` / `group=` in the config).
 *
 * Kept across the drop: every file descriptor already open — the TUN
 * device, the UDP and TCP sockets, the control socket, the SQLite database,
 * the log file or the syslog pipe.
 *
 * NOT kept: root and every capability, CAP_NET_ADMIN included (Node cannot
 * keep capabilities across setuid). Consequences, stated plainly:
 * - routes and addresses for subnets that appear in a BNL received AFTER the
 *   drop cannot be added to the kernel. The daemon still routes them inside
 *   its own table, so they work when an existing kernel route covers them:
 *   have `upcmd` route the whole VPN prefix (e.g. `ip route add 10.42.0.0/16
 *   dev $TUNDEV`). Otherwise leave `user` unset, or run under systemd with
 *   `User=` and `AmbientCapabilities=CAP_NET_ADMIN` instead of `user=`.
 * - hooks run as the unprivileged user after the drop (subnet hooks of later
 *   BNL changes, `downcmd`).
 * - the BNL file's directory and the state database must be writable by the
 *   user; `checkWritableAfterDrop` verifies this right after the drop.
 *
 * Order: supplementary groups (`initgroups`, or just the group), `setgid`,
 * `setuid`; then a check that root cannot be regained.
 */
import { accessSync, constants, readFileSync } from 'node:fs';
import { PrivilegeError } from './errors.js';
import type { Logger } from './logging.js';

/** Target of the drop; both undefined = stay as is. */
export interface PrivilegeTarget {
  user?: string | undefined;
  group?: string | undefined;
}

/** Drops to `user`/`group`. Throws `PrivilegeError` (`ERR_PRIVILEGE_DROP`) on any failure: the daemon must then stop. */
export function dropPrivileges(target: PrivilegeTarget, log: Logger): { uid: number; gid: number } | null {
  if (target.user === undefined && target.group === undefined) return null;
  try {
    if (target.user !== undefined) {
      const gid = target.group ?? primaryGroupOf(target.user);
      // supplementary groups of the user, plus the chosen group
      (process as unknown as { initgroups(user: string, extra: string | number): void }).initgroups(target.user, gid);
      process.setgid!(gid);
      process.setuid!(target.user);
    } else {
      process.setgroups!([target.group!]);
      process.setgid!(target.group!);
    }
  } catch (err) {
    throw new PrivilegeError(`cannot switch to user ${target.user ?? '-'} group ${target.group ?? '-'}: ${(err as Error).message}`, { cause: err });
  }
  const uid = process.getuid!();
  const gid = process.getgid!();
  if (target.user !== undefined) {
    let regained = false;
    try {
      process.setuid!(0);
      regained = true;
    } catch {
      // expected: root cannot be regained after a real drop
    }
    if (regained || uid === 0) throw new PrivilegeError(`still able to act as root after switching to ${target.user}`);
  }
  log.notice('dropped privileges', { user: target.user ?? '-', group: target.group ?? '-', pid: process.pid });
  return { uid, gid };
}

/** The primary gid of `user` (name or uid) from /etc/passwd. */
function primaryGroupOf(user: string): number {
  for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
    const f = line.split(':');
    if (f[0] === user || (/^\d+$/.test(user) && f[2] === user)) return Number(f[3]);
  }
  throw new Error(`no such user ${user}`);
}

/** After the drop: every path must be writable (directory of the BNL file, state database). Throws `PrivilegeError` naming the first that is not. */
export function checkWritableAfterDrop(paths: string[]): void {
  for (const p of paths) {
    try {
      accessSync(p, constants.W_OK);
    } catch (err) {
      throw new PrivilegeError(`${p} is not writable after dropping privileges; give the cluevpnd user write access or unset user=`, { cause: err });
    }
  }
}
