/**
 * Helpers for end-to-end tests that run the real `cluevpnd` on a network
 * made by `examples/make-network`:
 *
 * ```ts
 * const net = await makeNetwork(join(dir, 'net'), { net: 'mesh', pullInterval: '2s', nodes: [['alpha', lab.hosts[0].ipv4], …] });
 * const alpha = await startNode(lab, 'h1', net.nodeDir('alpha'));
 * const st = await controlRequest(alpha.conf, 'status');
 * await alpha.process.stop('SIGTERM');
 * ```
 *
 * Daemons are started through `lab.spawn`, so `lab.destroy()` (and process
 * exit) kills them at the latest. The control socket is a unix socket in the
 * node directory, reached from the test process directly (no namespace).
 */
import { createConnection } from 'node:net';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { TestLibError, type ExecResult } from './errors.js';
import { REPO_ROOT, type HostRef, type Lab } from './lab.js';
import { parsePing } from './ping.js';
import { runCommand, type TrackedProcess } from './process.js';
import { waitFor } from './wait-for.js';

/** `packages/daemon/bin/cluevpnd`. */
export const CLUEVPND = join(REPO_ROOT, 'packages', 'daemon', 'bin', 'cluevpnd');
/** `packages/cli/bin/cluevpn`. */
export const CLUEVPN = join(REPO_ROOT, 'packages', 'cli', 'bin', 'cluevpn');
/** `packages/cli/bin/bnl`. */
export const BNL = join(REPO_ROOT, 'packages', 'cli', 'bin', 'bnl');
/** `examples/make-network`. */
export const MAKE_NETWORK = join(REPO_ROOT, 'examples', 'make-network');

/** The daemon's `status` answer: the control protocol's own definitions. */
import type { PeerStatus, StatusReport } from '@cluevpn/control';
export type { PeerStatus, StatusReport };

/** A network made by {@link makeNetwork}. */
export interface Network {
  /** The network directory (CA, signing key, master list `bnl`, one directory per node). */
  dir: string;
  /** The signing key, `DIR/bnl-signing.key`. */
  signingKey: string;
  /** The master list, `DIR/bnl` (its draft is `DIR/bnl.draft`). */
  masterList: string;
  /** `DIR/NAME`. */
  nodeDir(name: string): string;
  /** `DIR/NAME/cluevpn.conf`. */
  conf(name: string): string;
}

/** Options of {@link makeNetwork}. */
export interface MakeNetworkOptions {
  net: string;
  /** `pullinterval` of every node, e.g. `'2s'`. */
  pullInterval?: string;
  /** `loglevel` of every node (default make-network's 5). */
  logLevel?: number;
  /** Port of every node (default 3406). */
  port?: number;
  /** Inner ranges (default `10.99.0` and `fd99::`: node i gets 10.99.0.i and fd99::i). */
  inner4?: string;
  inner6?: string;
  /** Node names and underlay addresses, in order (node i gets 10.99.0.i and fd99::i). */
  nodes: ReadonlyArray<readonly [string, string]>;
}

/** Runs a command to completion; rejects with `ERR_CLI` on a non-zero exit. */
export async function run(cmd: string, args: readonly string[], timeoutMs = 30_000): Promise<ExecResult> {
  const r = await runCommand(cmd, args, { timeoutMs });
  if (r.code !== 0) throw new TestLibError('ERR_CLI', `${cmd} ${args.join(' ')} exited ${r.code ?? r.signal}: ${r.stderr.trim()}${r.stdout.trim()}`);
  return r;
}

/** `examples/make-network DIR …`: CA, certificates, signing key, signed list, one directory per node. */
export async function makeNetwork(dir: string, o: MakeNetworkOptions): Promise<Network> {
  const args = [dir, '--net', o.net];
  if (o.pullInterval !== undefined) args.push('--pull-interval', o.pullInterval);
  if (o.logLevel !== undefined) args.push('--loglevel', String(o.logLevel));
  if (o.port !== undefined) args.push('--port', String(o.port));
  if (o.inner4 !== undefined) args.push('--inner4', o.inner4);
  if (o.inner6 !== undefined) args.push('--inner6', o.inner6);
  for (const [name, addr] of o.nodes) args.push(`${name}=${addr}`);
  await run(MAKE_NETWORK, args, 120_000);
  return networkAt(dir);
}

/** The {@link Network} view of an existing make-network directory. */
export function networkAt(dir: string): Network {
  return {
    dir,
    signingKey: join(dir, 'bnl-signing.key'),
    masterList: join(dir, 'bnl'),
    nodeDir: (name) => join(dir, name),
    conf: (name) => join(dir, name, 'cluevpn.conf'),
  };
}

/** The SHA-256 pin of a certificate, as `cluevpn cert show` prints it for the BNL. */
export async function certPin(certFile: string): Promise<string> {
  const r = await run(process.execPath, [CLUEVPN, 'cert', 'show', certFile]);
  const m = r.stdout.match(/for the BNL pin:\)\s+([0-9a-f]{64})/);
  if (!m) throw new TestLibError('ERR_CLI', `no BNL pin in cluevpn cert show output: ${r.stdout}`);
  return m[1];
}

/** Runs `bnl ARGS`; rejects with `ERR_CLI` on a non-zero exit. */
export function bnl(...args: string[]): Promise<ExecResult> {
  return run(process.execPath, [BNL, ...args]);
}

/** Runs `cluevpn ARGS` to completion, whatever its exit code. */
export function cluevpn(...args: string[]): Promise<ExecResult> {
  return runCommand(process.execPath, [CLUEVPN, ...args], { timeoutMs: 30_000 });
}

/** Control socket path named by a make-network config (`controlsocket=` relative to it). */
export function controlSocketOf(conf: string): string {
  const m = readFileSync(conf, 'utf8').match(/^controlsocket=(.*)$/m);
  if (!m) throw new TestLibError('ERR_CLI', `${conf} names no controlsocket`);
  const v = m[1].trim();
  return v.startsWith('/') ? v : join(conf, '..', v);
}

/**
 * One request on the daemon's control socket (JSON lines, version 1), the
 * protocol `cluevpn` speaks; cheaper than starting the CLI for every poll.
 * Rejects with `ERR_CONTROL` when the daemon refuses or does not answer.
 */
export function controlRequest(conf: string, cmd: 'status', args?: Record<string, unknown>): Promise<StatusReport>;
export function controlRequest(conf: string, cmd: string, args?: Record<string, unknown>): Promise<unknown>;
export function controlRequest(conf: string, cmd: string, args: Record<string, unknown> = {}): Promise<unknown> {
  const path = controlSocketOf(conf);
  return new Promise((resolve, reject) => {
    const sock = createConnection(path);
    let buf = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new TestLibError('ERR_CONTROL', `${path}: no answer to ${cmd}`));
    }, 5000);
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(`${JSON.stringify({ ...args, v: 1, id: 1, cmd })}\n`));
    sock.on('error', (err) => {
      clearTimeout(timer);
      reject(new TestLibError('ERR_CONTROL', `${path}: ${err.message}`, { cause: err }));
    });
    sock.on('data', (d: string) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(timer);
      sock.destroy();
      const msg = JSON.parse(buf.slice(0, nl)) as { ok: boolean; result?: unknown; error?: { code: string; message: string } };
      if (msg.ok) resolve(msg.result);
      else reject(new TestLibError('ERR_CONTROL', `${cmd}: ${msg.error?.code}: ${msg.error?.message}`));
    });
  });
}

/** A `cluevpnd` started by {@link startNode}. */
export interface RunningNode {
  name: string;
  host: HostRef;
  conf: string;
  process: TrackedProcess;
  /** `status` over the control socket. */
  status(): Promise<StatusReport>;
  /** The peer `name` in this node's status; throws when it is not a peer. */
  peer(name: string): Promise<PeerStatus>;
  /** The node's log file (`logfile=` of make-network), or '' when missing. */
  log(): string;
}

/**
 * Starts `cluevpnd -D -c DIR/cluevpn.conf` in lab host `host` and resolves
 * once its control socket answers `status` with this process's pid.
 * Rejects with `ERR_PROC_TIMEOUT` (and the log) when the daemon exits or
 * does not answer within `timeoutMs` (default 30 s). `env`: the daemon's
 * whole environment (default this process's).
 */
export async function startNode(lab: Lab, host: HostRef, nodeDir: string, opts: { timeoutMs?: number; backend?: 'native' | 'js'; env?: NodeJS.ProcessEnv } = {}): Promise<RunningNode> {
  const conf = join(nodeDir, 'cluevpn.conf');
  const name = (readFileSync(conf, 'utf8').match(/^name=(.*)$/m)?.[1] ?? '?').trim();
  const args = ['-D', '-c', conf];
  if (opts.backend) args.push('--backend', opts.backend);
  const p = lab.spawn(host, CLUEVPND, args, { label: `cluevpnd ${name}`, ...(opts.env ? { env: opts.env } : {}) });
  const logFile = join(nodeDir, 'cluevpnd.log');
  const node: RunningNode = {
    name,
    host,
    conf,
    process: p,
    status: () => controlRequest(conf, 'status'),
    async peer(peerName) {
      const st = await controlRequest(conf, 'status');
      const found = st.peers.find((x) => x.name === peerName);
      if (!found) throw new TestLibError('ERR_CONTROL', `${name} has no peer ${peerName}`);
      return found;
    },
    log: () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : ''),
  };
  try {
    await waitFor(
      async () => {
        if (!p.running()) throw new TestLibError('ERR_PROC_TIMEOUT', `cluevpnd ${name} exited: ${p.stderr()}`);
        return (await node.status()).pid === p.pid;
      },
      { timeoutMs: opts.timeoutMs ?? 30_000, intervalMs: 100, description: `cluevpnd ${name} answering on its control socket` },
    );
  } catch (err) {
    await p.stop('SIGKILL', 1000);
    throw new TestLibError('ERR_PROC_TIMEOUT', `cluevpnd ${name} did not start: ${(err as Error).message}\nstderr: ${p.stderr()}\nlog: ${node.log().slice(-3000)}`, { cause: err });
  }
  return node;
}

/** Result of {@link pingFrom}. */
export interface PingOutcome {
  transmitted: number;
  received: number;
  /** ping's exit code: 0 replies, 1 none, 2 error (e.g. no route: "Network is unreachable"). */
  code: number | null;
  stderr: string;
}

/**
 * Pings `target` from lab host `from` (`-c count -i 0.2 -W waitS`).
 * Unlike `lab.ping`, a ping that cannot send at all (exit 2, no route)
 * resolves with `received: 0` instead of rejecting.
 */
export async function pingFrom(lab: Lab, from: HostRef, target: string, count = 3, waitS = 1): Promise<PingOutcome> {
  const r = await lab.exec(from, 'ping', ['-n', '-c', String(count), '-i', '0.2', '-W', String(waitS), target], { check: false, timeoutMs: 10_000 + count * 2000 });
  if (r.code === 2) return { transmitted: 0, received: 0, code: 2, stderr: r.stderr };
  const p = parsePing(r.stdout);
  return { transmitted: p.transmitted, received: p.received, code: r.code, stderr: r.stderr };
}

/** One UDP datagram read from a pcap file. */
export interface CapturedDatagram {
  src: string;
  dst: string;
  sport: number;
  dport: number;
  payload: Buffer;
}

/** IPv4 UDP datagrams in a pcap file (link types 1 Ethernet, 113 and 276 Linux cooked). */
export function udpDatagramsFromPcap(file: string): CapturedDatagram[] {
  const b = readFileSync(file);
  if (b.length < 24) return [];
  const magic = b.readUInt32LE(0);
  const le = magic === 0xa1b2c3d4 || magic === 0xa1b23c4d;
  const u32 = (o: number): number => (le ? b.readUInt32LE(o) : b.readUInt32BE(o));
  const linktype = u32(20);
  const l2 = linktype === 1 ? 14 : linktype === 113 ? 16 : linktype === 276 ? 20 : -1;
  if (l2 < 0) throw new TestLibError('ERR_PCAP', `unsupported pcap link type ${linktype}`);
  const out: CapturedDatagram[] = [];
  for (let o = 24; o + 16 <= b.length; ) {
    const caplen = u32(o + 8);
    const pkt = b.subarray(o + 16, o + 16 + caplen);
    o += 16 + caplen;
    const ip = pkt.subarray(l2);
    if (ip.length < 28 || ip[0] >>> 4 !== 4 || ip[9] !== 17) continue;
    const ihl = (ip[0] & 15) * 4;
    const ulen = ip.readUInt16BE(ihl + 4);
    out.push({
      src: `${ip[12]}.${ip[13]}.${ip[14]}.${ip[15]}`,
      dst: `${ip[16]}.${ip[17]}.${ip[18]}.${ip[19]}`,
      sport: ip.readUInt16BE(ihl),
      dport: ip.readUInt16BE(ihl + 2),
      payload: Buffer.from(ip.subarray(ihl + 8, ihl + ulen)),
    });
  }
  return out;
}

/** What {@link repeatedTriples} found in a set of captured datagrams. */
export interface TripleCount {
  /** Data datagrams (byte 0 = 0x11: version 1, type data) long enough to carry the header. */
  data: number;
  /** Distinct (receiver index, epoch, counter) triples among them. */
  distinct: number;
  /** The triples seen more than once, as `index/epoch/counter` (each once). */
  twice: string[];
}

/**
 * The (receiver index, epoch, counter) triples of the data datagrams in
 * `datagrams` — the key and nonce a datagram was sealed under (header
 * layout in ARCHITECTURE.md: byte 0 = 0x11, index at 4, epoch at 8, counter
 * u64 at 12) — and those seen more than once: a triple seen twice on the
 * wire is a reused nonce (or a replay sent by the test itself: leave those
 * out of `datagrams`).
 */
export function repeatedTriples(datagrams: readonly { payload: Buffer }[]): TripleCount {
  const seen = new Map<string, number>();
  let data = 0;
  for (const d of datagrams) {
    // data header (20 bytes) + AEAD tag (16): anything shorter is not a datagram we sent
    if (d.payload.length <= 36 || d.payload[0] !== 0x11) continue;
    data++;
    const k = `${d.payload.readUInt32BE(4)}/${d.payload.readUInt32BE(8)}/${d.payload.readBigUInt64BE(12)}`;
    seen.set(k, (seen.get(k) ?? 0) + 1);
  }
  return { data, distinct: seen.size, twice: [...seen].filter(([, n]) => n > 1).map(([k]) => k) };
}

/**
 * Sends `datagrams` to `host:port` over UDP from lab host `from` (a child
 * node process in that namespace), one after another, from source port
 * `fromPort` (default: any).
 */
export async function sendDatagrams(lab: Lab, from: HostRef, host: string, port: number, datagrams: readonly Buffer[], fromPort = 0): Promise<void> {
  const sender = `
    const dgram = require('node:dgram');
    const list = require('node:fs').readFileSync(0, 'utf8').trim().split('\\n').map((h) => Buffer.from(h, 'hex'));
    const s = dgram.createSocket(${host.includes(':') ? "'udp6'" : "'udp4'"});
    let i = 0;
    const next = () => { if (i === list.length) return s.close(); s.send(list[i++], ${port}, ${JSON.stringify(host)}, next); };
    s.bind(${fromPort}, next);
  `;
  await lab.exec(from, process.execPath, ['-e', sender], { input: datagrams.map((d) => d.toString('hex')).join('\n'), timeoutMs: 10_000 });
}
