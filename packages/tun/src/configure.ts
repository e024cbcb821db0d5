/**
 * Addresses and routes through `ip` (iproute2), run asynchronously with
 * execFile so the event loop never blocks. MTU and link state use ioctls in
 * the native addon instead (see device.ts).
 */
import { execFile, spawn } from 'node:child_process';
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
      reject(ipError(args.join(' '), String(stderr).trim() || err.message, err));
    });
  });
}

/** The error `ip` reported for one command (stderr text), as a TunError. */
function ipError(command: string, text: string, cause?: Error): TunError {
  const errno = RTNETLINK_ERRNO.find(([m]) => text.includes(m))?.[1];
  const code = errno === 'EPERM' || errno === 'EACCES' ? TunErrorCode.PERMISSION : TunErrorCode.CONFIG;
  const hint = code === TunErrorCode.PERMISSION ? ' (needs CAP_NET_ADMIN: run as root)' : '';
  return new TunError(code, `ip ${command}: ${text}${hint}`, { errno, syscall: 'ip', ...(cause ? { cause } : {}) });
}

/**
 * Runs many `ip` commands in one process (`ip -force -batch -`): each
 * command is one argument list without global options. Resolves with one
 * entry per command, `null` when it succeeded, else its TunError (which
 * `ip` names by line: "Command failed -:N"). One process instead of one per
 * route: a 1 000-node list took 3 s with a process per route.
 */
export function runIpBatch(commands: readonly (readonly string[])[]): Promise<(TunError | null)[]> {
  if (commands.length === 0) return Promise.resolve([]);
  for (const c of commands) {
    for (const a of c) if (!/^[\w.:/-]+$/.test(a)) throw new TunError(TunErrorCode.CONFIG, `ip batch argument "${a}" has characters ip's batch parser would split`);
  }
  return new Promise((resolve) => {
    const child = spawn(ipBinary(), ['-force', '-batch', '-'], { stdio: ['pipe', 'ignore', 'pipe'], timeout: 10_000 + commands.length * 20 });
    let stderr = '';
    let spawnError: Error | undefined;
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => (stderr += d));
    child.on('error', (err) => (spawnError = err));
    child.stdin.on('error', () => {}); // EPIPE when ip died early: reported through the exit below
    child.stdin.end(`${commands.map((c) => c.join(' ')).join('\n')}\n`);
    child.on('close', (status, signal) => {
      const results: (TunError | null)[] = commands.map(() => null);
      let pending: string[] = [];
      for (const line of stderr.split('\n')) {
        const failed = /^Command failed -:(\d+)$/.exec(line.trim());
        if (failed) {
          const k = Number(failed[1]) - 1;
          if (k >= 0 && k < commands.length) results[k] = ipError(commands[k]!.join(' '), pending.join('; ') || 'failed');
          pending = [];
        } else if (line.trim()) pending.push(line.trim());
      }
      if (spawnError !== undefined || signal !== null || pending.length > 0) {
        // ip stopped without naming a line (not found, killed, a fatal parse error):
        // nothing after the last named failure is known to have been applied.
        const why = spawnError?.message ?? (pending.join('; ') || `ip exited with ${signal ?? status}`);
        const last = results.reduce((m, r, k) => (r ? k : m), -1);
        for (let k = last + 1; k < commands.length; k++) results[k] = ipError(commands[k]!.join(' '), why, spawnError);
      }
      resolve(results);
    });
  });
}

/** The `ip route add` command (batch form) for a checked prefix into `dev`. */
export function routeAddCommand(dev: string, cidr: string): string[] {
  return ['route', 'add', parseCidr(cidr).text, 'dev', dev];
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
