/**
 * Several networks on one host: when this network's port or device is
 * already taken, say by whom.
 *
 * Each network's defaults are its own (device = network name, control
 * socket and pidfile `<rundir>/NET.*`, state next to its config), except
 * the port: every network defaults to 3406, as the original did, because
 * the port is also written in every node's BNL record. So the second
 * network on a host must set `port=` (and its BNL must say so); until it
 * does, it stops at start with `ERR_PORT_IN_USE`, naming the process that
 * holds the port — for a cluevpnd, its network. A device name held by
 * another daemon is `ERR_DEVICE_IN_USE`, named the same way.
 *
 * How the holder is found (only on that error path, as root before the
 * privilege drop): the socket's inode from `/proc/net/{udp,udp6,tcp,tcp6}`
 * (this network namespace's), then the process with a descriptor on
 * `socket:[INODE]`; for a device, the process whose `/dev/net/tun`
 * descriptor's fdinfo says `iff: NAME`. A cluevpnd's network comes from its
 * command line, read as the daemon reads its own (`-n`, `-c`).
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { parseDaemonArgs } from './args.js';
import { locateConfig } from './config.js';
import { DaemonError } from './errors.js';

/** A process holding what we wanted. */
export interface Holder {
  pid: number;
  /** `cluevpnd of network NET (pid N, CONFIG)`, or `pid N (COMMAND)`. */
  description: string;
}

/** Calls `match(pid, fd, link)` for every open descriptor of every process until it returns true. */
function findDescriptor(match: (pid: number, fd: string, link: string) => boolean): number | null {
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((d) => /^\d+$/.test(d));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null; // no /proc: nobody to name
    throw err;
  }
  for (const p of pids) {
    const pid = Number(p);
    if (pid === process.pid) continue;
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${p}/fd`);
    } catch (err) {
      // the process ended meanwhile, or is not ours to look at (not root): skip it
      if (['ENOENT', 'EACCES', 'EPERM', 'ESRCH'].includes((err as NodeJS.ErrnoException).code ?? '')) continue;
      throw err;
    }
    for (const fd of fds) {
      let link: string;
      try {
        link = readlinkSync(`/proc/${p}/fd/${fd}`);
      } catch (err) {
        if (['ENOENT', 'EACCES', 'EPERM'].includes((err as NodeJS.ErrnoException).code ?? '')) continue; // closed meanwhile
        throw err;
      }
      if (match(pid, fd, link)) return pid;
    }
  }
  return null;
}

/** What a process is: a cluevpnd and its network, or its command name. */
export function describeProcess(pid: number): string {
  let argv: string[];
  try {
    argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((a) => a !== '');
  } catch (err) {
    return `pid ${pid} (${(err as NodeJS.ErrnoException).code ?? 'gone'})`;
  }
  const at = argv.findIndex((a) => /(^|\/)cluevpnd(\.cjs)?$/.test(a));
  if (at >= 0) {
    const parsed = parseDaemonArgs(argv.slice(at + 1));
    if (parsed.ok) {
      try {
        const { file, netname } = locateConfig({ configFile: parsed.args.config, netname: parsed.args.net });
        return `cluevpnd of network ${netname} (pid ${pid}, ${file})`;
      } catch (err) {
        return `cluevpnd (pid ${pid}; ${(err as Error).message})`;
      }
    }
    return `cluevpnd (pid ${pid})`;
  }
  return `pid ${pid} (${argv.map((a) => a.split('/').pop()).slice(0, 3).join(' ')})`;
}

/** Inodes of this namespace's sockets bound to `port` (`tcp`: listening ones only). */
function socketInodes(proto: 'udp' | 'tcp', port: number): Set<string> {
  const inodes = new Set<string>();
  const hexPort = `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  for (const file of [`/proc/net/${proto}`, `/proc/net/${proto}6`]) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue; // no IPv6 in this kernel
      throw err;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || !f[1]!.endsWith(hexPort)) continue;
      if (proto === 'tcp' && f[3] !== '0A') continue; // TCP_LISTEN
      inodes.add(f[9]!);
    }
  }
  return inodes;
}

/** The process holding `port` (`udp` or listening `tcp`) in this namespace, if any can be found. */
export function findPortHolder(proto: 'udp' | 'tcp', port: number): Holder | null {
  const inodes = socketInodes(proto, port);
  if (inodes.size === 0) return null;
  const pid = findDescriptor((_pid, _fd, link) => link.startsWith('socket:[') && inodes.has(link.slice(8, -1)));
  return pid === null ? null : { pid, description: describeProcess(pid) };
}

/** The process whose TUN descriptor is attached to the device `name`, if any. */
export function findDeviceHolder(name: string): Holder | null {
  const pid = findDescriptor((p, fd, link) => {
    if (link !== '/dev/net/tun') return false;
    try {
      return new RegExp(`^iff:\\s*${name.replace(/[.]/g, '\\.')}$`, 'm').test(readFileSync(`/proc/${p}/fdinfo/${fd}`, 'utf8'));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false; // closed meanwhile
      throw err;
    }
  });
  return pid === null ? null : { pid, description: describeProcess(pid) };
}

/**
 * `err` from binding `port` as a clash, when it is one (`EADDRINUSE`):
 * `ERR_PORT_IN_USE` naming the holder; anything else is returned as is.
 */
export function portClash(err: unknown, proto: 'udp' | 'tcp', port: number): unknown {
  const e = err as { errno?: unknown; code?: unknown; message?: unknown };
  const inUse = e.errno === 'EADDRINUSE' || e.code === 'EADDRINUSE' || (typeof e.message === 'string' && e.message.includes('EADDRINUSE'));
  if (!inUse) return err;
  const holder = findPortHolder(proto, port);
  return new DaemonError(
    'ERR_PORT_IN_USE',
    `port ${port}/${proto} is already in use${holder ? ` by ${holder.description}` : ''}: each network on a host needs its own port= (and the same port in its BNL records)`,
    { cause: err },
  );
}

/** `err` from opening device `name` as a clash, when it is one (`ERR_TUN_BUSY`): `ERR_DEVICE_IN_USE` naming the holder. */
export function deviceClash(err: unknown, name: string): unknown {
  if ((err as { code?: unknown }).code !== 'ERR_TUN_BUSY') return err;
  const holder = findDeviceHolder(name);
  return new DaemonError(
    'ERR_DEVICE_IN_USE',
    `device ${name} is already in use${holder ? ` by ${holder.description}` : ' (another interface has that name)'}: each network on a host needs its own devname= (default: the network name)`,
    { cause: err },
  );
}
