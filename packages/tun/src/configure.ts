/**
 * Addresses and routes through rtnetlink, by the native addon
 * (native/netlink.c): the requests `ip addr add` / `ip route add|del … dev X`
 * send, without a child process and without parsing ip's error text. One
 * call for any number of requests; each gets its own answer, so a failing
 * one is reported by itself and does not stop the others. MTU and link
 * state use ioctls (see device.ts).
 */
import { getSystemErrorMap } from 'node:util';
import { TunError, TunErrorCode } from './errors.js';
import { native, NETLINK_ADD_ADDRESS, NETLINK_ADD_ROUTE, NETLINK_DEL_ROUTE } from './native.js';

/** A checked CIDR. */
interface Cidr {
  family: 4 | 6;
  text: string;
}

const IPV4 = /^(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/** IPv6 text (no zone): the WHATWG URL parser's host parser, which is native and compiles no regular expression. */
function isIPv6(addr: string): boolean {
  if (!/^[0-9A-Fa-f:.]+$/.test(addr) || !addr.includes(':')) return false;
  try {
    new URL(`http://[${addr}]/`);
    return true;
  } catch {
    return false;
  }
}

/**
 * Parses `addr/len` (IPv4 or IPv6). Throws ERR_TUN_CONFIG on anything else.
 * (Not `net.isIP`: its IPv6 expression costs ~10 ms to compile on first use,
 * on the daemon's start-up path.)
 */
export function parseCidr(cidr: string): Cidr {
  if (typeof cidr !== 'string') throw new TunError(TunErrorCode.CONFIG, 'CIDR must be a string');
  const slash = cidr.indexOf('/');
  const addr = slash < 0 ? cidr : cidr.slice(0, slash);
  const family = IPV4.test(addr) ? 4 : isIPv6(addr) ? 6 : 0;
  if (family === 0) throw new TunError(TunErrorCode.CONFIG, `"${cidr}" is not an IPv4/IPv6 CIDR`);
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

/** What one request does, for messages. */
export type NetlinkKind = 'addr add' | 'route add' | 'route del';
const KIND_CODE: Record<NetlinkKind, number> = {
  'addr add': NETLINK_ADD_ADDRESS,
  'route add': NETLINK_ADD_ROUTE,
  'route del': NETLINK_DEL_ROUTE,
};

/** The error the kernel answered (positive errno) for one request, as a TunError. */
function netlinkError(what: string, errno: number): TunError {
  const [name, text] = getSystemErrorMap().get(-errno) ?? [`errno ${errno}`, 'unknown error'];
  const code = name === 'EPERM' || name === 'EACCES' ? TunErrorCode.PERMISSION : TunErrorCode.CONFIG;
  const hint = code === TunErrorCode.PERMISSION ? ' (needs CAP_NET_ADMIN: run as root)' : '';
  return new TunError(code, `${what}: ${text} (${name})${hint}`, { errno: name, syscall: 'netlink' });
}

/**
 * Applies `requests` to device `dev` in order (synchronously: the kernel
 * answers each at once). One entry per request: `null` when applied, else
 * its TunError (ERR_TUN_CONFIG with `errno`, e.g. 'EEXIST', 'ESRCH' for a
 * route that is not there; ERR_TUN_PERMISSION without CAP_NET_ADMIN). A
 * malformed CIDR is reported in its entry and not sent. Throws only when
 * the device does not exist.
 */
export function applyNetlink(dev: string, requests: readonly { kind: NetlinkKind; cidr: string }[]): (TunError | null)[] {
  const results: (TunError | null)[] = requests.map(() => null);
  const kinds: number[] = [];
  const cidrs: string[] = [];
  const at: number[] = [];
  requests.forEach((r, k) => {
    try {
      cidrs.push(parseCidr(r.cidr).text);
      kinds.push(KIND_CODE[r.kind]);
      at.push(k);
    } catch (e) {
      results[k] = e as TunError;
    }
  });
  if (kinds.length === 0) return results;
  let answers: Int32Array;
  try {
    answers = native().netlink(dev, kinds, cidrs);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new TunError(TunErrorCode.CONFIG, `${dev}: ${err.message}`, { errno: err.code, syscall: 'if_nametoindex', cause: e });
  }
  at.forEach((k, j) => {
    const a = answers[j]!;
    const what = `${requests[k]!.kind} ${cidrs[j]} dev ${dev}`;
    if (a === -1) results[k] = new TunError(TunErrorCode.CONFIG, `${what}: not a CIDR`);
    else if (a !== 0) results[k] = netlinkError(what, a);
  });
  return results;
}

/** One request; resolves when applied, rejects with its TunError. */
export function applyOne(dev: string, kind: NetlinkKind, cidr: string): Promise<void> {
  try {
    const [r] = applyNetlink(dev, [{ kind, cidr }]);
    return r ? Promise.reject(r) : Promise.resolve();
  } catch (e) {
    return Promise.reject(e);
  }
}
