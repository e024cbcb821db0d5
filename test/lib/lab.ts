/**
 * Typed wrapper over `scripts/netns-lab` for end-to-end tests.
 *
 * ```ts
 * test('pings', async (t) => {
 *   if (!requireLab(t)) return;
 *   const lab = await createLab({ hosts: 2 });
 *   t.after(() => lab.destroy());
 *   const r = await lab.ping('h1', lab.hosts[1].ipv4);
 * });
 * ```
 *
 * Every lab gets a unique prefix (namespaces `PREFIX-h1..hN`, `PREFIX-sw`,
 * and `PREFIX-lI` for a LAN behind host I when `lans` asks for one),
 * so labs in parallel test files never collide. A lab that is not destroyed
 * is torn down when the test process exits or gets SIGINT/SIGTERM/SIGHUP.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LabExecError, TestLibError, type ExecResult } from './errors.js';
import { parsePing, type PingResult } from './ping.js';
import { requireOrSkip, type RequirementEnv } from './requirements.js';
import { runCommand, spawnTracked, type SpawnTrackedOptions, type TrackedProcess } from './process.js';

export type { ExecResult } from './errors.js';
export { everyRequestAnswered, type PingResult } from './ping.js';

/** One host of a lab. */
export interface LabHost {
  /** `h1`, `h2`, … */
  name: string;
  /** 1-based index; the host's underlay addresses end in it. */
  index: number;
  /** Network namespace name (`PREFIX-hI`). */
  ns: string;
  /** Underlay IPv4 address (192.0.2.I, /24; behind NAT: the private 172.16.I.2), without prefix length. */
  ipv4: string;
  /** Underlay IPv6 address (2001:db8::I in hex, /64), without prefix length; `''` behind NAT (no IPv6 there). */
  ipv6: string;
  /** Set when the host sits behind its own NAT router (`CreateLabOptions.nat`). */
  nat?: { mode: LabNat['mode']; /** The router's address on the switch, 192.0.2.I: what the others see. */ publicIpv4: string };
}

/** A NAT router in front of one host (see `scripts/netns-lab`, `--nat`). */
export interface LabNat {
  /** `masquerade` (endpoint-independent, the Linux default; default) or `random-fully` (symmetric). */
  mode?: 'masquerade' | 'random-fully';
  /** Seconds a silent UDP mapping lives in the router (default: the kernel's, 30 s / 120 s for streams). */
  udpTimeoutS?: number;
  /** MTU of the link between the router and the host. */
  mtu?: number;
}

/**
 * A LAN host behind a lab host (`lans` of {@link CreateLabOptions}): its own
 * namespace `PREFIX-lI` linked to host `hI` only. It knows nothing of the
 * VPN and has no route beyond its LAN until the test adds one.
 */
export interface LabLanHost {
  /** `l1`, `l2`, … (the index of its gateway host). */
  name: string;
  ns: string;
  /** The lab host it hangs off (`h1`), its gateway. */
  gateway: string;
  /** The gateway's address on the LAN (the CIDR's first address, on `lan0`). */
  gatewayAddress: string;
  /** This host's address (the CIDR's second address, on `eth0`). */
  ipv4: string;
  /** The LAN, e.g. `10.50.1.0/24`. */
  cidr: string;
}

/** A host given by object, name (`'h2'`, or `'l1'` for a LAN host where accepted) or 1-based index. */
export type HostRef = LabHost | LabLanHost | string | number;

/** Impairment of one host's link (see `scripts/netns-lab`). */
export interface LabImpairment {
  /**
   * Percentage of packets the host receives that are dropped (0..100), in
   * the host's INPUT chain: after GRO, so one drop may remove a burst of
   * UDP datagrams. For loss per datagram use `wireLossPercent`.
   */
  lossPercent?: number;
  /**
   * Percentage of packets toward the host dropped on the wire (0..100): in
   * the switch, per datagram (every host's link then segments its bursts).
   * {@link Lab.wireLossCounters} tells how many were seen and dropped.
   */
  wireLossPercent?: number;
  /** tbf rate limit in both directions, as tc understands it (`'10mbit'`). */
  rate?: string;
}

/** Options for {@link createLab}. */
export interface CreateLabOptions {
  /** Namespace prefix; default `lab` + 5 random characters. 1-20 chars [a-z0-9-]. */
  prefix?: string;
  /** Number of hosts (1..250). */
  hosts: number;
  /** Impairment per host name (`{ h2: { lossPercent: 20 } }`). */
  impair?: Record<string, LabImpairment>;
  /** A LAN behind a host, per host name (`{ h1: '10.50.1.0/24' }`): an IPv4 network address, /8../30. */
  lans?: Record<string, string>;
  /** Hosts put behind a NAT router (`{ h3: { udpTimeoutS: 10 } }`); unsolicited inbound is dropped. */
  nat?: Record<string, LabNat>;
}

/** Options for {@link Lab.exec}. */
export interface LabExecOptions {
  /** Kill the command after this long (default 30000 ms). */
  timeoutMs?: number;
  input?: string | Buffer;
  env?: NodeJS.ProcessEnv;
  /** Reject with `ERR_LAB_EXEC` on a non-zero exit (default true). */
  check?: boolean;
}

/** Options for {@link Lab.ping}. */
export interface LabPingOptions {
  count?: number;
  /** Payload size in bytes (ping -s), default 56. */
  size?: number;
  /** Seconds between packets (default 0.2). */
  intervalS?: number;
  /** Seconds to wait for each reply (default 1). */
  timeoutS?: number;
  /**
   * Waits for `count` replies, up to this many seconds (`ping -w`): ping
   * sends on past `count` until that many replies came. Use it when every
   * request must be answered on a busy machine, where iputils' wait for the
   * last reply (two RTTs of an idle moment) is too short; check the answer
   * with `everyRequestAnswered(result, count)`.
   */
  deadlineS?: number;
}

/** A running lab. */
export interface Lab {
  readonly prefix: string;
  readonly hosts: readonly LabHost[];
  /** The LAN hosts, in gateway order (empty without `lans`). */
  readonly lans: readonly LabLanHost[];
  /** Looks up a host; throws `ERR_LAB_HOST` for an unknown one. */
  host(ref: HostRef): LabHost;
  /** Looks up a LAN host (`'l1'`); throws `ERR_LAB_HOST` for an unknown one. */
  lan(ref: HostRef): LabLanHost;
  /**
   * Runs `cmd args` inside a host's (or LAN host's) namespace and resolves with its result.
   * Rejects with {@link LabExecError} (`ERR_LAB_EXEC`) on a non-zero exit
   * unless `check: false`.
   */
  exec(host: HostRef, cmd: string, args?: readonly string[], opts?: LabExecOptions): Promise<ExecResult>;
  /** Starts a long-running process in a host; killed by `destroy()` at the latest. */
  spawn(host: HostRef, cmd: string, args?: readonly string[], opts?: SpawnTrackedOptions): TrackedProcess;
  /**
   * Pings `target` from `from`; resolves with the parsed statistics whether
   * or not replies came back (rejects only when ping itself fails).
   */
  ping(from: HostRef, target: string, opts?: LabPingOptions): Promise<PingResult>;
  /**
   * The `wireLossPercent` counters of a host: packets the switch forwarded
   * toward it (before the drop), how many it dropped, and the bytes seen.
   * Rejects with `ERR_LAB_EXEC` when the host has no wire loss.
   */
  wireLossCounters(host: HostRef): Promise<WireLossCounters>;
  /** Stops every spawned process, then removes the lab. Idempotent. */
  destroy(): Promise<void>;
}

/** See {@link Lab.wireLossCounters}. */
export interface WireLossCounters {
  seen: number;
  dropped: number;
  seenBytes: number;
}

/** Path of `scripts/netns-lab`, found by walking up from this file. */
export const NETNS_LAB: string = findScript();

/** The repository's top directory (where `scripts/` lives). */
export const REPO_ROOT: string = dirname(dirname(NETNS_LAB));

function findScript(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const candidate = join(dir, 'scripts', 'netns-lab');
    if (existsSync(candidate)) return candidate;
    dir = dirname(dir);
  }
  return join(process.cwd(), 'scripts', 'netns-lab');
}

/** Labs not yet destroyed, torn down synchronously on process exit. */
const liveLabs = new Map<string, { procs: Set<TrackedProcess> }>();
let hooksInstalled = false;

function teardownAllSync(): void {
  for (const [prefix, state] of liveLabs) {
    for (const p of state.procs) {
      if (!p.running()) continue;
      try {
        process.kill(p.pid, 'SIGKILL');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
      }
    }
    const r = spawnSync(NETNS_LAB, ['down', prefix], { stdio: ['ignore', 'ignore', 'pipe'] });
    if (r.status !== 0) process.stderr.write(`lab: teardown of ${prefix} failed: ${r.stderr?.toString() ?? ''}\n`);
  }
  liveLabs.clear();
}

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', teardownAllSync);
  for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143], ['SIGHUP', 129]] as const) {
    process.once(sig, () => {
      teardownAllSync();
      process.exit(code);
    });
  }
}

/**
 * What {@link labSkipReason} asks of the machine; tests hand in a fake one.
 * Every member answers for the machine the tests run on.
 */
export interface LabProbe {
  platform: string;
  /** The effective user id, or null where there is none (Windows). */
  uid: number | null;
  /** Whether `ip netns list` runs. */
  ipNetns(): boolean;
  /** Null when /dev/net/tun can be opened for reading and writing, else the errno name. */
  tunError(): string | null;
  /** Whether a command can be started (`cmd ARGS` spawns). */
  hasCommand(cmd: string, args: readonly string[]): boolean;
  exists(path: string): boolean;
}

/** The {@link LabProbe} of this machine. */
export const hostProbe: LabProbe = {
  platform: process.platform,
  uid: typeof process.getuid === 'function' ? process.getuid() : null,
  ipNetns() {
    const r = spawnSync('ip', ['netns', 'list'], { stdio: 'ignore' });
    return !r.error && r.status === 0;
  },
  tunError() {
    try {
      accessSync('/dev/net/tun', constants.R_OK | constants.W_OK);
      return null;
    } catch (err) {
      return (err as NodeJS.ErrnoException).code ?? 'error';
    }
  },
  hasCommand: (cmd, args) => !spawnSync(cmd, [...args], { stdio: 'ignore' }).error,
  exists: existsSync,
};

/** Extra tools a lab test needs, as `{ command: 'Debian package' }` (e.g. `{ tcpdump: 'tcpdump' }`); probed with `--version`. */
export type LabTools = Readonly<Record<string, string>>;

/**
 * Why end-to-end lab tests cannot run here, or null when they can: needs
 * Linux, root, `ip netns`, `/dev/net/tun`, `ping`, `scripts/netns-lab`,
 * and the `tools` a test names.
 */
export function labSkipReason(probe: LabProbe = hostProbe, tools: LabTools = {}): string | null {
  if (probe.platform !== 'linux') return 'network namespaces need Linux';
  if (probe.uid !== null && probe.uid !== 0) return 'needs root (network namespaces)';
  if (!probe.ipNetns()) return '`ip netns` unavailable (install iproute2)';
  const tun = probe.tunError();
  if (tun !== null) return `/dev/net/tun unavailable (${tun})`;
  if (!probe.hasCommand('ping', ['-V'])) return '`ping` not found (install iputils-ping)';
  if (!probe.exists(NETNS_LAB)) return `${NETNS_LAB} not found`;
  for (const [cmd, pkg] of Object.entries(tools)) {
    if (!probe.hasCommand(cmd, ['--version'])) return `\`${cmd}\` not found (install ${pkg})`;
  }
  return null;
}

/** Options of {@link requireLab}. */
export interface RequireLabOptions {
  /** Tools needed beyond the lab's own (see {@link LabTools}). */
  tools?: LabTools;
  /** Default: this machine. */
  probe?: LabProbe;
  /** Default: `process.env` (only `CI` is read). */
  env?: RequirementEnv;
}

/**
 * For node:test: returns true when the lab can run here. Otherwise it skips
 * the test with the reason and returns false, or, under CI (`CI=true`),
 * throws `ERR_TEST_REQUIREMENT` naming what is missing, so CI cannot pass
 * by skipping. Use as `if (!requireLab(t)) return;`.
 */
export function requireLab(t: { skip(message?: string): void }, opts: RequireLabOptions = {}): boolean {
  return requireOrSkip(t, 'end-to-end lab test', labSkipReason(opts.probe, opts.tools), opts.env);
}

/** A fresh random prefix: `lab` + 5 characters [a-z0-9]. */
export function randomLabPrefix(): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  let s = 'lab';
  for (const b of randomBytes(5)) s += alphabet[b % alphabet.length];
  return s;
}

function impairSpec(host: string, i: LabImpairment): string {
  const parts: string[] = [];
  if (i.lossPercent !== undefined) parts.push(`loss=${i.lossPercent}%`);
  if (i.wireLossPercent !== undefined) parts.push(`wireloss=${i.wireLossPercent}%`);
  if (i.rate !== undefined) parts.push(`rate=${i.rate}`);
  return `${host}:${parts.join(',')}`;
}

function natSpec(host: string, n: LabNat): string {
  const parts = [`mode=${n.mode ?? 'masquerade'}`];
  if (n.udpTimeoutS !== undefined) parts.push(`udp-timeout=${n.udpTimeoutS}`);
  if (n.mtu !== undefined) parts.push(`mtu=${n.mtu}`);
  return `${host}:${parts.join(',')}`;
}

/**
 * Creates a lab of `opts.hosts` hosts (see `scripts/netns-lab`). Rejects with
 * `ERR_LAB_SETUP` when the script fails (it removes what it built itself).
 * The caller must `destroy()` the lab; process exit does it otherwise.
 */
export async function createLab(opts: CreateLabOptions): Promise<Lab> {
  installHooks();
  const state = { procs: new Set<TrackedProcess>() };
  let prefix = '';
  let up: ExecResult | undefined;
  // A random prefix that happens to be taken (exit 3) is drawn again.
  for (let attempt = 0; attempt < 3; attempt++) {
    prefix = opts.prefix ?? randomLabPrefix();
    const args = ['up', prefix, String(opts.hosts)];
    for (const [host, imp] of Object.entries(opts.impair ?? {})) args.push('--impair', impairSpec(host, imp));
    for (const [host, cidr] of Object.entries(opts.lans ?? {})) args.push('--lan', `${host}:${cidr}`);
    for (const [host, nat] of Object.entries(opts.nat ?? {})) args.push('--nat', natSpec(host, nat));
    liveLabs.set(prefix, state);
    up = await runCommand(NETNS_LAB, args, { timeoutMs: 60_000 });
    if (up.code === 0) break;
    liveLabs.delete(prefix);
    if (up.code !== 3 || opts.prefix !== undefined) break;
  }
  if (!up || up.code !== 0) {
    throw new TestLibError('ERR_LAB_SETUP', `netns-lab up ${prefix} failed (exit ${up?.code}): ${up?.stderr.trim()}`);
  }
  const hosts: LabHost[] = up.stdout
    .trim()
    .split('\n')
    .map((line) => {
      const [name, ns, ipv4, ipv6, ...extra] = line.split(' ');
      if (!name || !ns || !ipv4 || !ipv6) throw new TestLibError('ERR_LAB_SETUP', `unexpected netns-lab output: ${line}`);
      const h: LabHost = { name, index: Number(name.slice(1)), ns, ipv4, ipv6: ipv6 === '-' ? '' : ipv6 };
      const kv = new Map(extra.map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]));
      const mode = kv.get('nat');
      if (mode === 'masquerade' || mode === 'random-fully') h.nat = { mode, publicIpv4: kv.get('public') ?? '' };
      return h;
    });
  const lans: LabLanHost[] = [];
  if (Object.keys(opts.lans ?? {}).length > 0) {
    const r = await runCommand(NETNS_LAB, ['lans', prefix], { timeoutMs: 30_000 });
    for (const line of r.stdout.trim().split('\n')) {
      const [name, ns, gateway, gatewayAddress, addr] = line.split(' ');
      const [ipv4, len] = (addr ?? '').split('/');
      if (r.code !== 0 || !name || !ns || !gateway || !gatewayAddress || !ipv4 || !len) {
        await runCommand(NETNS_LAB, ['down', prefix], { timeoutMs: 30_000 });
        liveLabs.delete(prefix);
        throw new TestLibError('ERR_LAB_SETUP', `unexpected netns-lab lans output (exit ${r.code}): ${line} ${r.stderr}`);
      }
      lans.push({ name, ns, gateway, gatewayAddress, ipv4, cidr: opts.lans![gateway] ?? `${ipv4}/${len}` });
    }
  }
  let destroyed = false;

  const lan = (ref: HostRef): LabLanHost => {
    const l = typeof ref === 'string' ? lans.find((x) => x.name === ref || x.ns === ref) : typeof ref === 'object' ? lans.find((x) => x.ns === ref.ns) : undefined;
    if (!l) throw new TestLibError('ERR_LAB_HOST', `no LAN host ${typeof ref === 'object' ? ref.ns : String(ref)} in lab ${prefix}`);
    return l;
  };
  /** A host or a LAN host: what exec, spawn and ping need. */
  const anyHost = (ref: HostRef): { name: string; ns: string } =>
    (typeof ref === 'string' && /^l\d+$/.test(ref)) || (typeof ref === 'object' && 'gateway' in ref) ? lan(ref) : host(ref);

  const host = (ref: HostRef): LabHost => {
    const h =
      typeof ref === 'number'
        ? hosts[ref - 1]
        : typeof ref === 'string'
          ? hosts.find((x) => x.name === ref || x.ns === ref)
          : hosts.find((x) => x.ns === ref.ns);
    if (!h) throw new TestLibError('ERR_LAB_HOST', `no host ${typeof ref === 'object' ? ref.ns : String(ref)} in lab ${prefix}`);
    return h;
  };
  const alive = (): void => {
    if (destroyed) throw new TestLibError('ERR_LAB_DESTROYED', `lab ${prefix} was destroyed`);
  };

  const lab: Lab = {
    prefix,
    hosts,
    lans,
    host,
    lan,
    async exec(ref, cmd, cmdArgs = [], eopts = {}) {
      alive();
      const h = anyHost(ref);
      const runOpts: Parameters<typeof runCommand>[2] = { label: `${h.name}: ${cmd}`, timeoutMs: eopts.timeoutMs ?? 30_000 };
      if (eopts.input !== undefined) runOpts.input = eopts.input;
      if (eopts.env !== undefined) runOpts.env = eopts.env;
      const r = await runCommand('ip', ['netns', 'exec', h.ns, cmd, ...cmdArgs], runOpts);
      if ((eopts.check ?? true) && r.code !== 0) {
        throw new LabExecError(
          `${h.name}: ${cmd} ${cmdArgs.join(' ')} exited ${r.code ?? r.signal}: ${r.stderr.trim().slice(-2000)}`,
          r,
        );
      }
      return r;
    },
    spawn(ref, cmd, cmdArgs = [], sopts = {}) {
      alive();
      const h = anyHost(ref);
      // `ip netns exec` execs the command, so the pid is the command's own.
      const p = spawnTracked('ip', ['netns', 'exec', h.ns, cmd, ...cmdArgs], { label: `${h.name}: ${cmd}`, ...sopts });
      state.procs.add(p);
      void p.exited.then(
        () => state.procs.delete(p),
        () => state.procs.delete(p),
      );
      return p;
    },
    async ping(from, target, popts = {}) {
      const count = popts.count ?? 3;
      const args = ['-n', '-c', String(count), '-i', String(popts.intervalS ?? 0.2), '-W', String(popts.timeoutS ?? 1)];
      if (popts.size !== undefined) args.push('-s', String(popts.size));
      if (popts.deadlineS !== undefined) args.push('-w', String(popts.deadlineS));
      args.push(target);
      const r = await lab.exec(from, 'ping', args, { check: false, timeoutMs: 10_000 + count * 2000 + (popts.deadlineS ?? 0) * 1000 });
      // iputils: 0 = replies, 1 = no reply, 2 = error.
      if (r.code !== 0 && r.code !== 1) {
        throw new LabExecError(`ping ${target} from ${anyHost(from).name} failed: ${r.stderr.trim()}`, r);
      }
      return parsePing(r.stdout);
    },
    async wireLossCounters(ref) {
      alive();
      const h = host(ref);
      const r = await runCommand(NETNS_LAB, ['counters', prefix, h.name], { timeoutMs: 30_000 });
      const m = /^seen (\d+) dropped (\d+) bytes (\d+)$/.exec(r.stdout.trim());
      if (r.code !== 0 || !m) throw new LabExecError(`netns-lab counters ${prefix} ${h.name} failed (exit ${r.code}): ${r.stderr.trim()}${r.stdout.trim()}`, r);
      return { seen: Number(m[1]), dropped: Number(m[2]), seenBytes: Number(m[3]) };
    },
    async destroy() {
      if (destroyed) return;
      destroyed = true;
      await Promise.all([...state.procs].map((p) => p.stop('SIGTERM', 1000)));
      const r = await runCommand(NETNS_LAB, ['down', prefix], { timeoutMs: 30_000 });
      liveLabs.delete(prefix);
      if (r.code !== 0) throw new TestLibError('ERR_LAB_SETUP', `netns-lab down ${prefix} failed: ${r.stderr.trim()}`);
    },
  };
  return lab;
}

/** Namespaces currently on the machine whose names start with `prefix-`. */
export function listNamespaces(prefix: string): string[] {
  const out = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  return out
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter((n) => n.startsWith(`${prefix}-`));
}
