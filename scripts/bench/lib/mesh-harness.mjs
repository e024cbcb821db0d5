// Shared plumbing of scripts/bench/mesh, scripts/bench/startup and
// scripts/bench/memory: a netns lab, a network from examples/make-network,
// real cluevpnd processes in the lab hosts, their control sockets, and the
// clean-up that removes all of it on exit, on failure and on Ctrl-C.
//
//   const h = createHarness('mesh', 'bmesh');   // name for messages, lab prefix
//   await h.labUp(12);
//   const net = await h.makeNetwork([{ name: 'n1', addr: '192.0.2.1' }, …]);
//   const d = h.startDaemon(1, net.nodes[0]);     // in PREFIX-h1
//   await h.control(d.sock, 'status');
//
// Everything started through the harness (children, daemons, the lab, the
// work directory) is registered and removed by `cleanup()`, which runs on
// process exit; SIGINT/SIGTERM/SIGHUP exit with 130/143/129 and so clean up.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
export const NETNS_LAB = join(REPO, 'scripts/netns-lab');
export const MAKE_NETWORK = join(REPO, 'examples/make-network');
export const CLUEVPND = join(REPO, 'packages/daemon/bin/cluevpnd');
export const CLUEVPN = join(REPO, 'packages/cli/bin/cluevpn');
export const BNL = join(REPO, 'packages/cli/bin/bnl');

/** Wall clock in milliseconds with sub-millisecond resolution (comparable to `ping -D`). */
export const nowMs = () => performance.timeOrigin + performance.now();

/** Median of the finite values, NaN when none. */
export function median(xs) {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}
/** Largest finite value, NaN when none. */
export const max = (xs) => (xs.some(Number.isFinite) ? Math.max(...xs.filter(Number.isFinite)) : NaN);

/** Resident set size of one pid in KiB (VmRSS), NaN when it is gone. */
export function rssKiB(pid) {
  try {
    const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/^VmRSS:\s+(\d+) kB/m);
    return m ? Number(m[1]) : NaN;
  } catch (err) {
    if (err.code === 'ENOENT' || err.code === 'ESRCH') return NaN;
    throw err;
  }
}

/** Formats a number: fixed decimals, `n/a` for NaN. */
export const fmt = (x, d = 0) => (Number.isFinite(x) ? x.toFixed(d) : 'n/a');

/** Prints a table (array of arrays, first row the header) with aligned columns. */
export function printTable(rows, out = process.stdout) {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => String(r[c] ?? '').length)));
  const line = (r) => r.map((cell, c) => (c === 0 ? String(cell ?? '').padEnd(widths[c]) : String(cell ?? '').padStart(widths[c]))).join('  ');
  out.write(`${line(rows[0])}\n${widths.map((w) => '-'.repeat(w)).join('  ')}\n`);
  for (const r of rows.slice(1)) out.write(`${line(r)}\n`);
}

/** Verdict cell for a target: `met` / `NOT met` / `n/a`. */
export const verdict = (ok) => (ok === undefined || ok === null ? 'n/a' : ok ? 'met' : 'NOT met');

/**
 * A benchmark's resources. `name` prefixes messages; `prefix` is the netns-lab
 * prefix (hosts PREFIX-h1..hN).
 */
export function createHarness(name, prefix) {
  const work = mkdtempSync(join(tmpdir(), `${prefix}-`));
  const children = new Set(); // every ChildProcess we started and that may still run
  const daemons = []; // { child, pid }
  let labIsUp = false;
  let cleaned = false;

  const log = (msg) => process.stderr.write(`[${name}] ${msg}\n`);

  function cleanup() {
    if (cleaned) return;
    cleaned = true;
    // 1. daemons: SIGTERM, then SIGKILL after 2 s
    const live = daemons.filter((d) => d.child.exitCode === null && d.child.signalCode === null);
    for (const d of live) d.child.kill('SIGTERM');
    const deadline = Date.now() + 2000;
    while (live.some((d) => isAlive(d.pid)) && Date.now() < deadline) spawnSync('sleep', ['0.05']);
    for (const d of live) if (isAlive(d.pid)) d.child.kill('SIGKILL');
    // 2. other children (pings, iperf3, CLI)
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    children.clear();
    // 3. the lab (kills what still runs in its namespaces)
    if (labIsUp) {
      const r = spawnSync(NETNS_LAB, ['down', prefix], { encoding: 'utf8' });
      if (r.status !== 0) process.stderr.write(`[${name}] lab teardown failed: ${r.stderr}\n`);
      labIsUp = false;
    }
    // 4. the work directory (unless asked to keep it for a post-mortem)
    if (process.env.BENCH_KEEP) process.stderr.write(`[${name}] kept ${work}\n`);
    else rmSync(work, { recursive: true, force: true });
  }
  process.on('exit', cleanup);
  process.on('SIGINT', () => process.exit(130));
  process.on('SIGTERM', () => process.exit(143));
  process.on('SIGHUP', () => process.exit(129));

  /** Runs a command to completion: { code, stdout, stderr, ms }. */
  function run(cmd, args, { timeoutMs = 120_000, input } = {}) {
    return new Promise((res, rej) => {
      const t0 = nowMs();
      const c = spawn(cmd, args, { stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
      children.add(c);
      let stdout = '';
      let stderr = '';
      c.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
      c.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
      if (input !== undefined) c.stdin.end(input);
      const timer = setTimeout(() => c.kill('SIGKILL'), timeoutMs);
      c.on('error', (e) => {
        clearTimeout(timer);
        children.delete(c);
        rej(e);
      });
      c.on('close', (code, signal) => {
        clearTimeout(timer);
        children.delete(c);
        res({ code: code ?? (signal ? 128 : 1), stdout, stderr, ms: nowMs() - t0 });
      });
    });
  }
  /** Like run(), but throws with the output when the exit code is not 0. */
  async function must(cmd, args, o) {
    const r = await run(cmd, args, o);
    if (r.code !== 0) throw new Error(`${[cmd, ...args].join(' ')} exited ${r.code}: ${(r.stderr || r.stdout).trim().slice(-800)}`);
    return r;
  }
  const ns = (i) => `${prefix}-h${i}`;
  const inHost = (i, cmd, args, o) => run('ip', ['netns', 'exec', ns(i), cmd, ...args], o);

  /** Starts a long-running command in host i; returns the ChildProcess (stdout/stderr piped, collected in .out). */
  function spawnInHost(i, cmd, args) {
    const c = spawn('ip', ['netns', 'exec', ns(i), cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(c);
    c.out = '';
    c.stdout.setEncoding('utf8').on('data', (d) => (c.out += d));
    c.stderr.setEncoding('utf8').on('data', (d) => (c.out += d));
    c.on('exit', () => children.delete(c));
    return c;
  }

  /** `netns-lab up PREFIX n ARGS…` (ARGS: e.g. `--impair h2:wireloss=1%`). */
  async function labUp(n, args = []) {
    const r = await run(NETNS_LAB, ['up', prefix, String(n), ...args]);
    if (r.code === 3) throw new Error(`lab prefix '${prefix}' is in use (another run? scripts/netns-lab down ${prefix})`);
    if (r.code !== 0) throw new Error(`netns-lab up ${prefix} ${n} failed: ${r.stderr.trim()}`);
    labIsUp = true;
  }

  /**
   * examples/make-network in WORK/net with `nodes` ([{ name, addr }]); returns
   * { dir, nodes: [{ name, addr, dir, conf, sock, log, statedb, bnl }] }.
   */
  async function makeNetwork(nodes, { net = prefix, extra = [] } = {}) {
    const dir = join(work, 'net');
    await must(MAKE_NETWORK, [dir, '--net', net, ...extra, ...nodes.map((n) => `${n.name}=${n.addr}`)], { timeoutMs: 300_000 });
    return {
      dir,
      nodes: nodes.map((n) => {
        const d = join(dir, n.name);
        return { ...n, dir: d, conf: join(d, 'cluevpn.conf'), sock: join(d, 'cluevpnd.sock'), log: join(d, 'cluevpnd.log'), statedb: join(d, 'state.db'), bnl: join(d, 'bnl') };
      }),
    };
  }

  /**
   * Starts cluevpnd for `node` in host i (`ip netns exec` execs, so the
   * child's pid is the daemon's). Returns { child, pid, node, spawnedAt }.
   */
  function startDaemon(i, node, extraArgs = []) {
    if (existsSync(node.sock)) rmSync(node.sock); // a stale socket would fake readiness
    const spawnedAt = nowMs();
    const child = spawnInHost(i, CLUEVPND, ['-c', node.conf, '-D', ...extraArgs]);
    const d = { child, pid: child.pid, node, host: i, spawnedAt };
    daemons.push(d);
    return d;
  }
  /** SIGTERM, wait for exit (SIGKILL after `graceMs`). */
  async function stopDaemon(d, graceMs = 3000) {
    const c = d.child;
    if (c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGTERM');
    const t = setTimeout(() => c.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(t);
  }
  /** Waits until the daemon's control socket exists; returns the time (nowMs) it was seen, NaN on timeout or exit. */
  async function waitReady(d, timeoutMs = 20_000, pollMs = 5) {
    const deadline = nowMs() + timeoutMs;
    while (nowMs() < deadline) {
      if (existsSync(d.node.sock)) return nowMs();
      if (d.child.exitCode !== null || d.child.signalCode !== null) return NaN;
      await sleep(pollMs);
    }
    return NaN;
  }

  return { name, prefix, work, log, cleanup, run, must, ns, inHost, spawnInHost, labUp, makeNetwork, startDaemon, stopDaemon, waitReady, daemons };
}

function isAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    if (err.code === 'ESRCH') return false;
    throw err;
  }
}

/**
 * A persistent client of a daemon's control socket (JSON lines, protocol 1).
 * `request(cmd, extra)` resolves with `result` or rejects with the error code.
 */
export function openControl(sockPath) {
  return new Promise((res, rej) => {
    const s = createConnection(sockPath);
    const pending = new Map();
    let buf = '';
    let nextId = 1;
    s.setEncoding('utf8');
    s.on('data', (d) => {
      buf += d;
      for (let nl = buf.indexOf('\n'); nl !== -1; nl = buf.indexOf('\n')) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const msg = JSON.parse(line);
        const p = pending.get(msg.id);
        if (!p) continue;
        pending.delete(msg.id);
        if (msg.ok) p.res(msg.result);
        else p.rej(Object.assign(new Error(`${msg.error?.code}: ${msg.error?.message}`), { code: msg.error?.code }));
      }
    });
    const failAll = (err) => {
      for (const p of pending.values()) p.rej(err);
      pending.clear();
    };
    s.on('error', (err) => {
      failAll(err);
      rej(err);
    });
    s.on('close', () => failAll(Object.assign(new Error('control socket closed'), { code: 'ECONNRESET' })));
    s.on('connect', () =>
      res({
        request(cmd, extra = {}) {
          return new Promise((r2, j2) => {
            const id = nextId++;
            pending.set(id, { res: r2, rej: j2 });
            s.write(`${JSON.stringify({ v: 1, id, cmd, ...extra })}\n`);
          });
        },
        close: () => s.destroy(),
      }),
    );
  });
}

/** One request on a fresh connection. */
export async function control(sockPath, cmd, extra) {
  const c = await openControl(sockPath);
  try {
    return await c.request(cmd, extra);
  } finally {
    c.close();
  }
}

const DIST_PACKAGES = ['tun', 'dataplane', 'bnl', 'negotiation', 'daemon', 'cli'];
/**
 * What is being measured: HEAD commit and the build time of each package's
 * dist (the daemon runs from dist/, which others may rebuild during a run).
 * `changedSince(stamp)` lists packages rebuilt since `stamp` was taken.
 */
export function buildStamp() {
  const head = spawnSync('git', ['-C', REPO, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).stdout.trim() || '?';
  const dirty = spawnSync('git', ['-C', REPO, 'status', '--porcelain', '--untracked-files=no', 'packages'], { encoding: 'utf8' }).stdout.trim() !== '';
  const dist = {};
  // each package's compiled modules, and the daemon's bundle (what bin/cluevpnd runs when it is current)
  const files = [...DIST_PACKAGES.map((p) => [p, join(REPO, 'packages', p, 'dist/src/index.js')]), ['daemon bundle', join(REPO, 'packages/daemon/dist/cluevpnd.cjs')]];
  for (const [p, file] of files) {
    try {
      dist[p] = statSync(file).mtimeMs;
    } catch (err) {
      if (err.code !== 'ENOENT') throw err;
      dist[p] = NaN;
    }
  }
  return { head, dirty, dist, text: `commit ${head}${dirty ? ' (packages/ has uncommitted changes)' : ''}, dist built ${Object.entries(dist).map(([p, t]) => `${p} ${Number.isFinite(t) ? new Date(t).toISOString().slice(11, 19) : 'missing'}`).join(', ')} UTC` };
}
/** Packages whose dist changed since `stamp` (empty when none). */
export function changedSince(stamp) {
  const now = buildStamp();
  return Object.keys(now.dist).filter((p) => now.dist[p] !== stamp.dist[p] && !(Number.isNaN(now.dist[p]) && Number.isNaN(stamp.dist[p])));
}

/** Last `n` lines of a file ('' when missing), for failure reports. */
export function tail(file, n = 20) {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-n).join('\n');
  } catch (err) {
    if (err.code === 'ENOENT') return `(no ${file})`;
    throw err;
  }
}

/** Lines of a file matching `re` (at most `n`, the last ones). */
export function grepFile(file, re, n = 10) {
  try {
    return readFileSync(file, 'utf8').split('\n').filter((l) => re.test(l)).slice(-n);
  } catch (err) {
    if (err.code === 'ENOENT') return [];
    throw err;
  }
}

export { sleep };
