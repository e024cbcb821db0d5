/**
 * The `cluevpn.conf` file: ClueVPN's `key=value` form.
 *
 * 1. locate: `-c FILE`, or `-n NET` → `<confdir>/NET/cluevpn.conf`, or
 *    `<confdir>/cluevpn.conf` (`confdir` = `$CLUEVPN_CONFDIR` or `/etc/cluevpn`)
 * 2. read the file; one `key=value` per line, `#` comment lines and blank
 *    lines ignored, spaces around the key and value trimmed
 * 3. check each line: known key, value of the right type, no duplicate of a
 *    non-repeatable key (`bnlpubkey` repeats)
 * 4. check the whole: required keys, combinations (`logfile` ⇔ `logmethod=file`)
 * 5. fill defaults and resolve relative paths against the file's directory
 *
 * Every problem is a `ConfigError` naming the file, the line and the key.
 * Nothing falls back to a default when a value is wrong.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { basename, dirname, isAbsolute, resolve } from 'node:path';
import { DEFAULT_SOCKET_BUFFER, MAX_SOCKET_BUFFER } from '@cluevpn/dataplane';
import { parseCompAlgos, parseCryptAlgos, type AlgoPreference, type CipherAlgo, type CompressionAlgo } from '@cluevpn/negotiation';
import { ConfigError } from './errors.js';
import { parseCompAlgosCompat, parseCryptAlgosCompat } from './legacy-algos.js';


/** Where the log goes. */
export type LogMethod = 'stderr' | 'syslog' | 'file';

/**
 * The typed configuration. Paths are absolute. Optional fields are
 * `undefined` when the key is absent and has no default.
 */
export interface DaemonConfig {
  /** Absolute path of the config file that was read. */
  file: string;
  /** Its directory: the base of relative paths. */
  dir: string;
  /** Network name: `-n NET`, else derived from the file's location (see `locateConfig`). */
  netname: string;
  /** This node's name; must equal its certificate CN and its BNL record. Required. */
  name: string;
  /** TUN device name. Default: the network name (must be a valid interface name). */
  devname: string;
  /** PEM certificate of this node (signed by the VPN CA). Required. */
  cert: string;
  /** PEM private key of this node. Required. */
  privkey: string;
  /** PEM certificate of the VPN CA. Required. */
  cacert: string;
  /** UDP (data) and TCP (control) port. Default 3406. */
  port: number;
  /**
   * BNL signing public keys (one or more; repeat the key). Each is either
   * inline (64 hex digits, matches `INLINE_PUBKEY_RE`) or the absolute path
   * of a file holding one (hex or Ed25519 PEM). Required.
   */
  bnlpubkey: string[];
  /** The BNL signing private key: read by the `bnl` tool only, never by the daemon. Optional. */
  bnlprivkey: string | undefined;
  /**
   * The network's state directory, `<statebase>/NETNAME` (`$CLUEVPN_STATEDIR`,
   * default `/var/lib/cluevpn`): where `bnl` and `statedb` live by default,
   * the only place the daemon writes at run time once it dropped to `user`
   * (see `state-dir.ts`). Never inside the config directory by default.
   */
  statedir: string;
  /** The signed node list file (its `.highest` and `.trust` sidecars next to it). Default `bnl` in `statedir`. */
  bnl: string;
  /** SQLite state database (send epochs, negotiated keys). Default `state.db` in `statedir`. */
  statedb: string;
  /** Log level 0–7 (syslog severities: 0 emerg … 7 debug). Default 5 (notice). */
  loglevel: number;
  /** `stderr` | `syslog` | `file`. Default `stderr`. */
  logmethod: LogMethod;
  /** Log file, required with (and only with) `logmethod=file`. */
  logfile: string | undefined;
  /** Command run once after start-up (through `/bin/sh -c`; data in the environment). */
  upcmd: string | undefined;
  /** Command run once before the device is closed. */
  downcmd: string | undefined;
  /** Command run for each of this node's own subnets. */
  mysubnetupcmd: string | undefined;
  /** Command run for each peer subnet that becomes reachable. */
  subnetupcmd: string | undefined;
  /** Command run for each peer subnet that goes away. */
  subnetdowncmd: string | undefined;
  /** Cipher preferences. Default `aes-256-gcm:256:20 chacha20-poly1305:256:10`. */
  cryptalgos: AlgoPreference<CipherAlgo>[];
  /** Compression preferences. Default `none:0:10 lz4:1:5`. */
  compalgos: AlgoPreference<CompressionAlgo>[];
  /** Required OU in peer certificates, if set. */
  restrictouname: string | undefined;
  /** Never use IPv6 endpoints. Default no. */
  disableipv6: boolean;
  /** Prefer IPv6 endpoints when a node has both. Default no. */
  preferipv6: boolean;
  /** Inner MTU of the TUN device. Default 1420; at least 1280 unless `disableipv6`. */
  mtu: number;
  /**
   * UDP socket buffers (SO_RCVBUF/SO_SNDBUF) in bytes, 0 = kernel default.
   * Default 256 KiB: the queue under load stands there, so larger adds latency.
   */
  udpbuffer: number;
  /** The data plane's express path for idle traffic (C between socket and TUN). Default yes; no to rule it out. */
  express: boolean;
  /** UDP GSO (send) and GRO (receive) on the data socket. Default yes; no when the kernel or NIC path misbehaves. */
  udpoffload: boolean;
  /** TUN virtio offloads (TSO/checksum) when the kernel has them. Default yes; no for a plain device. */
  tunoffload: boolean;
  /**
   * `router` (default): a TUN device, IP packets routed by the BNL's subnets.
   * `switch`: a TAP device, Ethernet frames forwarded by MAC address (bridge
   * it yourself); subnets are not routed and no address is assigned.
   */
  mode: 'router' | 'switch';
  /** Rekey interval in milliseconds (`rekey=1h`). Default 1 hour, at least 10 s. */
  rekeyMs: number;
  /** Keepalive interval in milliseconds (`keepalive=25`): a peer sent nothing for this long gets an authenticated keepalive. Default 25 s; 0 = off. */
  keepaliveMs: number;
  /** Path MTU discovery per peer with authenticated probes (tinc's `PMTUDiscovery`). Default yes. */
  pmtudiscovery: boolean;
  /** Clamp the MSS of TCP SYNs to each peer's path MTU, both directions (tinc's `ClampMSS`). Default yes. */
  clampmss: boolean;
  /** Base BNL pull interval in milliseconds (jittered ±25 %). Default 90 s, at least 1 s. */
  pullintervalMs: number;
  /** How often peers' host names (`host=` endpoints) are looked up again, in milliseconds. Default 5 min, at least 1 s. */
  resolveintervalMs: number;
  /** User to switch to after set-up. Default: stay root. */
  user: string | undefined;
  /** Group to switch to after set-up. Default: the user's primary group. */
  group: string | undefined;
  /** Local control socket. Default `<rundir>/NETNAME.sock`. */
  controlsocket: string;
  /** Pidfile. Default `<rundir>/NETNAME.pid`. */
  pidfile: string;
  /** Accepted but worth a warning (the original ClueVPN's algorithm names): the daemon logs each once at start. */
  warnings: ConfigWarning[];
  /** Prometheus metrics endpoint (`metrics=127.0.0.1:9587`, `[::1]:9587`); `undefined` (the default): none. */
  metrics: ListenAddress | undefined;
}

/** An IP address (never a host name) and TCP port to listen on. */
export interface ListenAddress {
  /** IPv4 or IPv6 literal, without brackets. */
  host: string;
  port: number;
}

/** A value that was accepted as something else (see `legacy-algos.ts`), with where it was written. */
export interface ConfigWarning {
  file: string;
  line: number;
  key: string;
  message: string;
}

/** Default data/control port, as in the original ClueVPN. */
export const DEFAULT_PORT = 3406;
/** Default inner MTU (1500 − 20 IPv4 − 8 UDP − 36 overhead, rounded down). */
export const DEFAULT_MTU = 1420;

/** Environment the config module reads: only these variables, for tests and packagers. */
export interface ConfigEnv {
  /** Base directory of run-time state (`<base>/NETNAME/`). Default `/var/lib/cluevpn`. */
  CLUEVPN_STATEDIR?: string | undefined;
  /** Base directory of config files. Default `/etc/cluevpn`. */
  CLUEVPN_CONFDIR?: string | undefined;
  /** Base directory of sockets and pidfiles. Default `/run/cluevpn`. */
  CLUEVPN_RUNDIR?: string | undefined;
}

/** How the daemon (and every command that talks to it) finds its config. */
export interface ConfigTarget {
  /** `-c FILE` (wins over `netname`). */
  configFile?: string | undefined;
  /** `-n NET`. */
  netname?: string | undefined;
}

/** Base directory of config files: `$CLUEVPN_CONFDIR` or `/etc/cluevpn`. */
export function confDir(env: ConfigEnv = process.env): string {
  return resolve(env.CLUEVPN_CONFDIR || '/etc/cluevpn');
}

/** Base directory of control sockets and pidfiles: `$CLUEVPN_RUNDIR` or `/run/cluevpn`. */
export function runDir(env: ConfigEnv = process.env): string {
  return resolve(env.CLUEVPN_RUNDIR || '/run/cluevpn');
}

/** Base directory of run-time state: `$CLUEVPN_STATEDIR` or `/var/lib/cluevpn`. */
export function stateBaseDir(env: ConfigEnv = process.env): string {
  return resolve(env.CLUEVPN_STATEDIR || '/var/lib/cluevpn');
}

/** Default `cryptalgos`: AES-256-GCM preferred (AES-NI), ChaCha20-Poly1305 accepted. */
export const DEFAULT_CRYPTALGOS = 'aes256gcm:256:20 chacha20poly1305:256:10';
/** Default `compalgos`: no compression preferred on fast links, LZ4 level 1 accepted. */
export const DEFAULT_COMPALGOS = 'none:0:10 lz4:1:5';

const NETNAME_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/;

/**
 * Resolves the config file and the network name.
 *
 * - `-c FILE`: that file; the network name is `-n` if given, else the name of
 *   the file's directory (`/etc/cluevpn/office/cluevpn.conf` → `office`), or
 *   `cluevpn` when the file lies directly in the config base directory.
 * - `-n NET`: `<confdir>/NET/cluevpn.conf`, network name `NET`.
 * - neither: `<confdir>/cluevpn.conf`, network name `cluevpn`.
 *
 * Throws `ConfigError` `ERR_CONFIG_BAD_VALUE` for an invalid network name.
 */
export function locateConfig(target: ConfigTarget, env: ConfigEnv = process.env): { file: string; netname: string } {
  const base = confDir(env);
  if (target.netname !== undefined && !NETNAME_RE.test(target.netname)) {
    throw new ConfigError('ERR_CONFIG_BAD_VALUE', { file: '-n' }, `invalid network name '${target.netname}' (letters, digits, _ . -)`);
  }
  if (target.configFile !== undefined) {
    const file = resolve(target.configFile);
    if (target.netname !== undefined) return { file, netname: target.netname };
    const dir = dirname(file);
    const derived = dir === base ? 'cluevpn' : basename(dir);
    return { file, netname: NETNAME_RE.test(derived) ? derived : 'cluevpn' };
  }
  if (target.netname !== undefined) return { file: resolve(base, target.netname, 'cluevpn.conf'), netname: target.netname };
  return { file: resolve(base, 'cluevpn.conf'), netname: 'cluevpn' };
}

// ---------------------------------------------------------------- value parsers

// throws a plain Error whose message says what is wrong; `warn` reports a value read as something else
type Parser<T> = (raw: string, warn: (message: string) => void) => T;

const bad = (what: string): never => {
  throw new Error(what);
};

const parseIntIn = (min: number, max: number): Parser<number> => (raw) => {
  if (!/^\d+$/.test(raw)) bad(`'${raw}' is not a whole number`);
  const n = Number(raw);
  if (n < min || n > max) bad(`${n} is out of range ${min}–${max}`);
  return n;
};

const parseBool: Parser<boolean> = (raw) => {
  const v = raw.toLowerCase();
  if (['yes', 'true', 'on', '1'].includes(v)) return true;
  if (['no', 'false', 'off', '0'].includes(v)) return false;
  return bad(`'${raw}' is not yes/no`);
};

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, '': 1000 };
const parseDuration = (minMs: number, maxMs: number): Parser<number> => (raw) => {
  const m = /^(\d+)(ms|s|m|h|)$/.exec(raw);
  if (!m) return bad(`'${raw}' is not a duration (e.g. 90, 90s, 2m, 500ms)`);
  const ms = Number(m[1]) * DURATION_UNITS[m[2]!]!;
  if (ms < minMs || ms > maxMs) bad(`${raw} is out of range ${minMs / 1000}s–${maxMs / 1000}s`);
  return ms;
};

const SIZE_UNITS: Record<string, number> = { '': 1, k: 1024, m: 1024 * 1024 };
/** `0` (off) or a duration of 1 s to 1 h (the keepalive). */
const parseKeepalive: Parser<number> = (raw, warn) => (/^0+(ms|s|m|h|)$/.test(raw) ? 0 : parseDuration(1_000, 3_600_000)(raw, warn));

const parseSize = (min: number, max: number): Parser<number> => (raw) => {
  const m = /^(\d+)([kKmM]?)$/.exec(raw);
  if (!m) return bad(`'${raw}' is not a size in bytes (e.g. 262144, 256k, 4m)`);
  const n = Number(m[1]) * SIZE_UNITS[m[2]!.toLowerCase()]!;
  if (n !== 0 && (n < min || n > max)) bad(`${raw} is out of range: 0 (kernel default) or ${min / 1024}k–${max / 1024 / 1024}m`);
  return n;
};

const parseName: Parser<string> = (raw) =>
  /^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}$/.test(raw) ? raw : bad(`'${raw}' is not a valid node name (letters, digits, _ -; at most 64)`);

const IFNAME_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$/;
const parseIfname: Parser<string> = (raw) =>
  IFNAME_RE.test(raw) ? raw : bad(`'${raw}' is not a valid interface name (at most 15 of letters, digits, _ . -)`);

const parseText: Parser<string> = (raw) => (raw.length > 0 ? raw : bad('empty value'));

const parseAccount: Parser<string> = (raw) =>
  /^([a-z_][a-z0-9_-]{0,31}\$?|\d+)$/i.test(raw) ? raw : bad(`'${raw}' is not a user/group name or number`);

/** `ADDRESS:PORT` with an IP literal, IPv6 in brackets (`[::1]:9587`). */
const parseListenAddress: Parser<ListenAddress> = (raw, warn) => {
  const m = /^(?:\[([^\]]+)\]|([^:\[\]]+)):(\d{1,5})$/.exec(raw);
  const host = m?.[1] ?? m?.[2];
  if (m === null || host === undefined) return bad(`'${raw}' is not ADDRESS:PORT (e.g. 127.0.0.1:9587 or [::1]:9587)`);
  const family = isIP(host);
  if (family === 0 || (family === 6) !== (m[1] !== undefined)) return bad(`'${host}' is not an IP address (IPv6 in brackets: [::1]:9587; no host names)`);
  return { host, port: parseIntIn(1, 65535)(m[3]!, warn) };
};

const parseMode: Parser<'router' | 'switch'> = (raw) => (raw === 'router' || raw === 'switch' ? raw : bad(`'${raw}' is not one of router, switch`));

const parseLogMethod: Parser<LogMethod> = (raw) =>
  raw === 'stderr' || raw === 'syslog' || raw === 'file' ? raw : bad(`'${raw}' is not one of stderr, syslog, file`);

/**
 * Algorithm lists use the negotiation's own parser, so the config and the
 * protocol agree on names; the original ClueVPN's names are read as their
 * modern counterparts, with a warning (`legacy-algos.ts`).
 */
const parseAlgoList = (kind: 'cipher' | 'compressor'): Parser<AlgoPreference[]> => (raw, warn) =>
  kind === 'cipher' ? parseCryptAlgosCompat(raw, warn) : parseCompAlgosCompat(raw, warn);

// ---------------------------------------------------------------- the key table

type KeyKind = 'path' | 'value' | 'pubkey';
interface KeySpec {
  kind: KeyKind;
  parse: Parser<unknown>;
  repeatable?: boolean;
}

const KEYS: Readonly<Record<string, KeySpec>> = {
  name: { kind: 'value', parse: parseName },
  devname: { kind: 'value', parse: parseIfname },
  cert: { kind: 'path', parse: parseText },
  privkey: { kind: 'path', parse: parseText },
  cacert: { kind: 'path', parse: parseText },
  port: { kind: 'value', parse: parseIntIn(1, 65535) },
  bnlpubkey: { kind: 'pubkey', parse: parseText, repeatable: true },
  bnlprivkey: { kind: 'path', parse: parseText },
  bnl: { kind: 'path', parse: parseText },
  statedb: { kind: 'path', parse: parseText },
  loglevel: { kind: 'value', parse: parseIntIn(0, 7) },
  logmethod: { kind: 'value', parse: parseLogMethod },
  logfile: { kind: 'path', parse: parseText },
  upcmd: { kind: 'value', parse: parseText },
  downcmd: { kind: 'value', parse: parseText },
  mysubnetupcmd: { kind: 'value', parse: parseText },
  subnetupcmd: { kind: 'value', parse: parseText },
  subnetdowncmd: { kind: 'value', parse: parseText },
  cryptalgos: { kind: 'value', parse: parseAlgoList('cipher') },
  compalgos: { kind: 'value', parse: parseAlgoList('compressor') },
  restrictouname: { kind: 'value', parse: parseText },
  disableipv6: { kind: 'value', parse: parseBool },
  preferipv6: { kind: 'value', parse: parseBool },
  mtu: { kind: 'value', parse: parseIntIn(576, 65535) },
  udpbuffer: { kind: 'value', parse: parseSize(4096, MAX_SOCKET_BUFFER) },
  express: { kind: 'value', parse: parseBool },
  udpoffload: { kind: 'value', parse: parseBool },
  tunoffload: { kind: 'value', parse: parseBool },
  mode: { kind: 'value', parse: parseMode },
  rekey: { kind: 'value', parse: parseDuration(10_000, 86_400_000) },
  pullinterval: { kind: 'value', parse: parseDuration(1_000, 86_400_000) },
  resolveinterval: { kind: 'value', parse: parseDuration(1_000, 86_400_000) },
  keepalive: { kind: 'value', parse: parseKeepalive },
  pmtudiscovery: { kind: 'value', parse: parseBool },
  clampmss: { kind: 'value', parse: parseBool },
  user: { kind: 'value', parse: parseAccount },
  group: { kind: 'value', parse: parseAccount },
  controlsocket: { kind: 'path', parse: parseText },
  pidfile: { kind: 'path', parse: parseText },
  metrics: { kind: 'value', parse: parseListenAddress },
};

/** Every key the config file accepts. */
export const CONFIG_KEYS: readonly string[] = Object.keys(KEYS);

/** An inline BNL public key: 64 hex digits, optionally after `ed25519`. */
export const INLINE_PUBKEY_RE = /^(ed25519\s+)?[0-9a-fA-F]{64}$/;

const REQUIRED = ['name', 'cert', 'privkey', 'cacert', 'bnlpubkey'] as const;

/** Options of `parseConfig`. */
export interface ParseConfigOptions {
  /** Absolute path of the file the text came from (for messages and relative paths). */
  file: string;
  /** Network name (see `locateConfig`). */
  netname: string;
  /** Environment for the run directory default. */
  env?: ConfigEnv;
}

/**
 * Parses config text. Pure: reads no file. Throws `ConfigError` on the first
 * problem (codes `ERR_CONFIG_SYNTAX`, `_UNKNOWN_KEY`, `_BAD_VALUE`,
 * `_DUPLICATE_KEY`, `_MISSING_KEY`).
 */
export function parseConfig(text: string, opts: ParseConfigOptions): DaemonConfig {
  const { file, netname } = opts;
  const dir = dirname(file);
  const values = new Map<string, { value: unknown; line: number }[]>();
  const warnings: ConfigWarning[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const trimmed = lines[i]!.trim();
    if (trimmed === '' || trimmed.startsWith('#')) continue;
    const eq = trimmed.indexOf('=');
    if (eq <= 0) {
      throw new ConfigError('ERR_CONFIG_SYNTAX', { file, line: lineNo }, `expected key=value, got '${trimmed.slice(0, 40)}'`);
    }
    const key = trimmed.slice(0, eq).trim().toLowerCase();
    const raw = trimmed.slice(eq + 1).trim();
    const spec = KEYS[key];
    if (spec === undefined) throw new ConfigError('ERR_CONFIG_UNKNOWN_KEY', { file, line: lineNo, key }, 'unknown key');
    const previous = values.get(key);
    if (previous !== undefined && !spec.repeatable) {
      throw new ConfigError('ERR_CONFIG_DUPLICATE_KEY', { file, line: lineNo, key }, `already set on line ${previous[0]!.line}`);
    }
    let value: unknown;
    try {
      value = spec.parse(raw, (message) => warnings.push({ file, line: lineNo, key, message }));
    } catch (err) {
      throw new ConfigError('ERR_CONFIG_BAD_VALUE', { file, line: lineNo, key }, (err as Error).message, { cause: err });
    }
    // a BNL public key is written inline (64 hex digits) or as a file holding one
    const inlineKey = spec.kind === 'pubkey' && INLINE_PUBKEY_RE.test(value as string);
    if ((spec.kind === 'path' || spec.kind === 'pubkey') && !inlineKey) value = isAbsolute(value as string) ? value : resolve(dir, value as string);
    if (previous === undefined) values.set(key, [{ value, line: lineNo }]);
    else previous.push({ value, line: lineNo });
  }

  for (const key of REQUIRED) {
    if (!values.has(key)) throw new ConfigError('ERR_CONFIG_MISSING_KEY', { file, key }, 'required key is missing');
  }
  const one = <T>(key: string): T | undefined => values.get(key)?.[0]?.value as T | undefined;
  const lineOf = (key: string): number | undefined => values.get(key)?.[0]?.line;

  const logmethod = one<LogMethod>('logmethod') ?? 'stderr';
  const logfile = one<string>('logfile');
  if (logmethod === 'file' && logfile === undefined) {
    throw new ConfigError('ERR_CONFIG_MISSING_KEY', { file, line: lineOf('logmethod'), key: 'logfile' }, 'required with logmethod=file');
  }
  if (logmethod !== 'file' && logfile !== undefined) {
    throw new ConfigError('ERR_CONFIG_BAD_VALUE', { file, line: lineOf('logfile'), key: 'logfile' }, `only used with logmethod=file (logmethod is ${logmethod})`);
  }
  const disableipv6 = one<boolean>('disableipv6') ?? false;
  const preferipv6 = one<boolean>('preferipv6') ?? false;
  if (disableipv6 && preferipv6) {
    throw new ConfigError('ERR_CONFIG_BAD_VALUE', { file, line: lineOf('preferipv6'), key: 'preferipv6' }, 'contradicts disableipv6=yes');
  }
  const mtu = one<number>('mtu') ?? DEFAULT_MTU;
  if (!disableipv6 && mtu < 1280) {
    throw new ConfigError('ERR_CONFIG_BAD_VALUE', { file, line: lineOf('mtu'), key: 'mtu' }, `${mtu} is below 1280, the IPv6 minimum (set disableipv6=yes for a smaller MTU)`);
  }
  let devname = one<string>('devname');
  if (devname === undefined) {
    if (!IFNAME_RE.test(netname)) {
      throw new ConfigError('ERR_CONFIG_MISSING_KEY', { file, key: 'devname' }, `required: the network name '${netname}' is not a valid interface name`);
    }
    devname = netname;
  }
  const rd = runDir(opts.env);
  const statedir = resolve(stateBaseDir(opts.env), netname);
  return {
    file,
    dir,
    netname,
    name: one<string>('name')!,
    devname,
    cert: one<string>('cert')!,
    privkey: one<string>('privkey')!,
    cacert: one<string>('cacert')!,
    port: one<number>('port') ?? DEFAULT_PORT,
    bnlpubkey: values.get('bnlpubkey')!.map((v) => v.value as string),
    bnlprivkey: one<string>('bnlprivkey'),
    statedir,
    bnl: one<string>('bnl') ?? resolve(statedir, 'bnl'),
    statedb: one<string>('statedb') ?? resolve(statedir, 'state.db'),
    loglevel: one<number>('loglevel') ?? 5,
    logmethod,
    logfile,
    upcmd: one<string>('upcmd'),
    downcmd: one<string>('downcmd'),
    mysubnetupcmd: one<string>('mysubnetupcmd'),
    subnetupcmd: one<string>('subnetupcmd'),
    subnetdowncmd: one<string>('subnetdowncmd'),
    cryptalgos: one<AlgoPreference<CipherAlgo>[]>('cryptalgos') ?? parseCryptAlgos(DEFAULT_CRYPTALGOS),
    compalgos: one<AlgoPreference<CompressionAlgo>[]>('compalgos') ?? parseCompAlgos(DEFAULT_COMPALGOS),
    restrictouname: one<string>('restrictouname'),
    disableipv6,
    preferipv6,
    mtu,
    udpbuffer: one<number>('udpbuffer') ?? DEFAULT_SOCKET_BUFFER,
    express: one<boolean>('express') ?? true,
    udpoffload: one<boolean>('udpoffload') ?? true,
    tunoffload: one<boolean>('tunoffload') ?? true,
    mode: one<'router' | 'switch'>('mode') ?? 'router',
    rekeyMs: one<number>('rekey') ?? 3_600_000,
    pullintervalMs: one<number>('pullinterval') ?? 90_000,
    resolveintervalMs: one<number>('resolveinterval') ?? 300_000,
    keepaliveMs: one<number>('keepalive') ?? 25_000,
    pmtudiscovery: one<boolean>('pmtudiscovery') ?? true,
    clampmss: one<boolean>('clampmss') ?? true,
    user: one<string>('user'),
    group: one<string>('group'),
    controlsocket: one<string>('controlsocket') ?? resolve(rd, `${netname}.sock`),
    pidfile: one<string>('pidfile') ?? resolve(rd, `${netname}.pid`),
    warnings,
    metrics: one<ListenAddress>('metrics'),
  };
}

/**
 * Locates, reads and parses the config (`locateConfig` then `parseConfig`).
 * An unreadable file is `ERR_CONFIG_READ`.
 */
export function loadConfig(target: ConfigTarget, env: ConfigEnv = process.env): DaemonConfig {
  const { file, netname } = locateConfig(target, env);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'EIO';
    throw new ConfigError('ERR_CONFIG_READ', { file }, `cannot read config file (${code})`, { cause: err });
  }
  return parseConfig(text, { file, netname, env });
}
