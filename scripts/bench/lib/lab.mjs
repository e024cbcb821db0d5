// Shared plumbing of the two-host benchmarks (throughput.mjs, latency.mjs):
// a scripts/netns-lab lab, child processes that are always cleaned up (also
// on Ctrl-C), and the *-pair-up / *-pair-down contract of README.md.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

export const HERE = dirname(fileURLToPath(import.meta.url));
const NETNS_LAB = resolve(HERE, '../../netns-lab');

/** Median of the finite numbers in xs (NaN when there are none). */
export const median = (xs) => {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
};

/** The q-quantile (0..1, nearest rank) of the finite numbers in xs. */
export const quantile = (xs, q) => {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  return v[Math.min(v.length - 1, Math.max(0, Math.ceil(q * v.length) - 1))];
};

/** Option-parsing helpers that exit with status 2 and `tool: message`. */
export function usageHelpers(tool) {
  const usageError = (msg) => {
    process.stderr.write(`${tool}: ${msg}\n`);
    process.exit(2);
  };
  const posInt = (s, name) => {
    if (!/^[1-9][0-9]*$/.test(s)) usageError(`${name} needs a positive integer, not '${s}'`);
    return Number(s);
  };
  return { usageError, posInt };
}

/**
 * Walks the command-line arguments: `handle(name, value)` returns false for
 * an argument it does not know (a usage error); `value()` takes the next
 * argument (a usage error when there is none).
 */
export function parseOptions(tool, argv, handle) {
  const { usageError } = usageHelpers(tool);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) usageError(`${a} needs a value`);
      return argv[++i];
    };
    if (!handle(a, value)) usageError(`unknown argument '${a}'`);
  }
}

/** `--only LIST`: names from `known`, with the underlay ('raw') always measured first (added latency needs it). */
export function onlyList(tool, list, known) {
  const only = list.split(',');
  for (const v of only) if (!known.includes(v)) usageHelpers(tool).usageError(`--only: unknown '${v}' (${known.join(',')})`);
  if (!only.includes('raw')) only.unshift('raw');
  return only;
}

/**
 * One lab of two hosts (`PREFIX-h1` 192.0.2.1, `PREFIX-h2` 192.0.2.2) for the
 * benchmark `tool`. Everything it starts is stopped and the lab and the
 * work directory removed when the process exits.
 */
export function createLab(tool) {
  const prefix = `bench${randomBytes(2).toString('hex')}`;
  const work = mkdtempSync(join(tmpdir(), 'bench-'));
  const background = new Set(); // ChildProcess
  const started = []; // { down, dir } for pair-down at exit
  let labUp = false;

  function cleanupSync() {
    for (const c of background) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    background.clear();
    for (const s of started.splice(0)) spawnSync(s.down, [prefix, s.dir], { stdio: 'ignore' });
    if (labUp) {
      const r = spawnSync(NETNS_LAB, ['down', prefix], { encoding: 'utf8' });
      if (r.status !== 0) process.stderr.write(`${tool}: lab teardown failed: ${r.stderr}\n`);
      labUp = false;
    }
    rmSync(work, { recursive: true, force: true });
  }
  process.on('exit', cleanupSync);
  process.on('SIGINT', () => process.exit(130));
  process.on('SIGTERM', () => process.exit(143));
  process.on('SIGHUP', () => process.exit(129));

  /** Runs a command to completion: { code, stdout, stderr }. */
  function run(cmd, args, { timeoutMs = 120_000 } = {}) {
    return new Promise((resolvePromise, reject) => {
      const c = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      background.add(c);
      let stdout = '';
      let stderr = '';
      c.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
      c.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
      const timer = setTimeout(() => c.kill('SIGKILL'), timeoutMs);
      c.on('error', (e) => {
        clearTimeout(timer);
        background.delete(c);
        reject(e);
      });
      c.on('close', (code, signal) => {
        clearTimeout(timer);
        background.delete(c);
        resolvePromise({ code: code ?? (signal ? 128 : 1), stdout, stderr });
      });
    });
  }
  const ns = (host) => `${prefix}-${host}`;
  const inHost = (host, cmd, args, o) => run('ip', ['netns', 'exec', ns(host), cmd, ...args], o);
  function startInHost(host, cmd, args) {
    const c = spawn('ip', ['netns', 'exec', ns(host), cmd, ...args], { stdio: 'ignore' });
    background.add(c);
    c.on('exit', () => background.delete(c));
    return c;
  }
  async function stopChild(c) {
    if (c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGTERM');
    const t = setTimeout(() => c.kill('SIGKILL'), 2000);
    await exited;
    clearTimeout(t);
  }
  const log = (msg) => process.stderr.write(`[bench] ${msg}\n`);

  /** Builds the lab; false (with the reason on stderr) when it cannot. */
  async function up() {
    const r = await run(NETNS_LAB, ['up', prefix, '2']);
    if (r.code !== 0) {
      process.stderr.write(`${tool}: lab set-up failed: ${r.stderr}`);
      return false;
    }
    labUp = true;
    return true;
  }

  async function waitForPing(addr, timeoutS) {
    const deadline = Date.now() + timeoutS * 1000;
    while (Date.now() < deadline) {
      const r = await inHost('h1', 'ping', ['-n', '-c', '1', '-W', '1', addr]);
      if (r.code === 0) return true;
      await sleep(200);
    }
    return false;
  }

  /**
   * Starts `vpn` with lib/VPN-pair-up in a fresh directory under the work
   * directory and waits for a ping through it: { available: true, addr, pids }
   * or { available: false, note }. 'raw' is the underlay itself.
   */
  async function pairUp(vpn, dirName = vpn) {
    if (vpn === 'raw') return { available: true, addr: '192.0.2.2', pids: [] };
    const dir = join(work, dirName);
    mkdirSync(dir);
    const upScript = join(HERE, `${vpn}-pair-up`);
    const down = join(HERE, `${vpn}-pair-down`);
    if (!existsSync(upScript)) return { available: false, note: `not available (no ${upScript})` };
    log(`${vpn}: starting`);
    started.push({ down, dir });
    const r = await run(upScript, [prefix, dir], { timeoutMs: 60_000 });
    let note;
    const addr = r.stdout.match(/^addr=(\S+)$/m)?.[1];
    const pids = (r.stdout.match(/^pids=(.+)$/m)?.[1] ?? '').trim().split(/\s+/).filter(Boolean).map(Number);
    if (r.code !== 0) note = `not available (${vpn}-pair-up failed: ${r.stderr.trim().slice(-300)})`;
    else if (!addr || pids.length === 0) note = `${vpn}-pair-up printed no addr=/pids= lines`;
    else if (!(await waitForPing(addr, 15))) note = `no ping through ${vpn} within 15 s`;
    if (note === undefined) return { available: true, addr, pids };
    await pairDown(vpn);
    return { available: false, note };
  }

  /** Stops the pair started last (no-op for 'raw'). */
  async function pairDown(vpn) {
    if (vpn === 'raw') return;
    const s = started.pop();
    if (s) await run(s.down, [prefix, s.dir], { timeoutMs: 30_000 });
  }

  return { prefix, work, run, inHost, startInHost, stopChild, log, up, pairUp, pairDown };
}
