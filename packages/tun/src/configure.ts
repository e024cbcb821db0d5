/**
 * Addresses and routes through `ip` (iproute2), run asynchronously with
 * execFile so the event loop never blocks. MTU and link state use ioctls in
 * the native addon instead (see device.ts).
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { isIP } from 'node:net';
import { TunError, TunErrorCode } from './errors.js';

/** A checked CIDR. */
interface Cidr {
  family: 4 | 6;
  text: string;
}

/** Parses `addr/len` (IPv4 or IPv6). Throws ERR_TUN_CONFIG on anything else. */
export function parseCidr(cidr: string): Cidr {
  if (typeof cidr !== 'string') throw new TunError(TunErrorCode.CONFIG, 'CIDR must be a string');
  const slash = cidr.indexOf('/');
  const addr = slash < 0 ? cidr : cidr.slice(0, slash);
  const family = isIP(addr);
  if (family !== 4 && family !== 6) throw new TunError(TunErrorCode.CONFIG, `"${cidr}" is not an IPv4/IPv6 CIDR`);
  const max = family === 4 ? 32 : 128;
  let len = max;
  if (slash >= 0) {
    const s = cidr.slice(slash + 1);
    if (!/^\d{1,3}$/.test(s) || Number(s) > max) {
      throw new TunError(TunErrorCode.CONFIG, `"${cidr}": prefix length must be 0..${max}`);
    }
    len = Number(s);
  }
  return { family, text: `${addr}/${len}` };
}

let ipPath: string | undefined;
function ipBinary(): string {
  if (ipPath === undefined) {
    // A non-root PATH often lacks /usr/sbin.
    ipPath = ['/usr/sbin/ip', '/sbin/ip', '/usr/bin/ip', '/bin/ip'].find((p) => existsSync(p)) ?? 'ip';
  }
  return ipPath;
}

/** RTNETLINK messages printed by `ip`, mapped back to errno names. */
const RTNETLINK_ERRNO: ReadonlyArray<readonly [string, string]> = [
  ['File exists', 'EEXIST'],
  ['Operation not permitted', 'EPERM'],
  ['Permission denied', 'EACCES'],
  ['No such device', 'ENODEV'],
  ['Cannot find device', 'ENODEV'],
  ['Invalid argument', 'EINVAL'],
  ['Network is unreachable', 'ENETUNREACH'],
  ['No such process', 'ESRCH'],
  ['Address family not supported', 'EAFNOSUPPORT'],
];

/** Runs `ip args…`; rejects with ERR_TUN_PERMISSION or ERR_TUN_CONFIG (+ errno when recognisable). */
export function runIp(args: readonly string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(ipBinary(), args, { timeout: 10_000 }, (err, _stdout, stderr) => {
      if (err === null) {
        resolve();
        return;
      }
      const text = String(stderr).trim() || err.message;
      const errno = RTNETLINK_ERRNO.find(([m]) => text.includes(m))?.[1];
      const code = errno === 'EPERM' || errno === 'EACCES' ? TunErrorCode.PERMISSION : TunErrorCode.CONFIG;
      const hint = code === TunErrorCode.PERMISSION ? ' (needs CAP_NET_ADMIN: run as root)' : '';
      reject(new TunError(code, `ip ${args.join(' ')}: ${text}${hint}`, { errno, syscall: 'ip', cause: err }));
    });
  });
}

/** `ip addr add` for one address on `dev` (IPv6 without duplicate address detection). */
export function addAddress(dev: string, cidr: string): Promise<void> {
  const c = parseCidr(cidr);
  const args = c.family === 6 ? ['-6', 'addr', 'add', c.text, 'dev', dev, 'nodad'] : ['-4', 'addr', 'add', c.text, 'dev', dev];
  return runIp(args);
}

/** `ip route add` of a prefix into `dev`. */
export function addRoute(dev: string, cidr: string): Promise<void> {
  const c = parseCidr(cidr);
  return runIp([c.family === 6 ? '-6' : '-4', 'route', 'add', c.text, 'dev', dev]);
}
