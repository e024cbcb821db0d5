// Throughput / latency / CPU benchmark: raw underlay, tinc 1.0, nebula and
// cluevpnd between two hosts of a namespace lab, all in one run. Started by
// scripts/bench/throughput (which installs the packages); see --help there.
//
// Per VPN:
//  1. `X-pair-up PREFIX WORKDIR` (lib/README.md), wait for a ping through it;
//  2. ping 56 and 1400 bytes, idle (median RTT);
//  3. iperf3 TCP, 1 and 4 streams, DURATION s, REPEAT times: median Mbit/s,
//     daemons' CPU % from /proc/PID/stat deltas over each run, CPU % per
//     Gbit/s; the JSON is checked (no error, bytes arrived);
//  4. ping 56 and 1400 bytes while one iperf3 stream runs (loaded RTT);
//  5. RSS of both daemons; `X-pair-down`.
// Then one table (ratios against tinc) and the line
// `ratios: vs_tinc_1=… vs_tinc_4=… vs_nebula_1=… vs_nebula_4=…` (cluevpn
// against tinc and nebula; n/a when cluevpn is not available).
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const NETNS_LAB = resolve(HERE, '../../netns-lab');
const VPNS = ['raw', 'tinc', 'nebula', 'cluevpn'];

// ---------------------------------------------------------------- options
const opts = { repeat: 3, duration: 10, pingCount: 20, only: VPNS, keep: false };
{
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) usageError(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--quick') Object.assign(opts, { repeat: 1, duration: 3, pingCount: 10 });
    else if (a === '--repeat') opts.repeat = posInt(val(), a);
    else if (a === '--duration') opts.duration = posInt(val(), a);
    else if (a === '--pings') opts.pingCount = posInt(val(), a);
    else if (a === '--only') {
      opts.only = val().split(',');
      for (const v of opts.only) if (!VPNS.includes(v)) usageError(`--only: unknown '${v}' (${VPNS.join(',')})`);
      if (!opts.only.includes('raw')) opts.only.unshift('raw'); // added latency needs the underlay
    } else usageError(`unknown argument '${a}'`);
  }
}
function posInt(s, name) {
  if (!/^[1-9][0-9]*$/.test(s)) usageError(`${name} needs a positive integer, not '${s}'`);
  return Number(s);
}
function usageError(msg) {
  process.stderr.write(`throughput: ${msg}\n`);
  process.exit(2);
}

// ---------------------------------------------------------------- process plumbing
const prefix = `bench${randomBytes(2).toString('hex')}`;
const work = mkdtempSync(join(tmpdir(), 'bench-'));
const background = new Set(); // ChildProcess
const started = []; // { vpn, down, dir } for pair-down at exit
let labUp = false;

function cleanupSync() {
  for (const c of background) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  background.clear();
  for (const s of started.splice(0)) spawnSync(s.down, [prefix, s.dir], { stdio: 'ignore' });
  if (labUp) {
    const r = spawnSync(NETNS_LAB, ['down', prefix], { encoding: 'utf8' });
    if (r.status !== 0) process.stderr.write(`throughput: lab teardown failed: ${r.stderr}\n`);
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
function log(msg) {
  process.stderr.write(`[bench] ${msg}\n`);
}

// ---------------------------------------------------------------- measurements
const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;
const median = (xs) => {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
};

/** CPU time (utime + stime, all threads) of the pids, in seconds. */
function cpuSeconds(pids) {
  let ticks = 0;
  for (const pid of pids) {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields[0] is field 3 (state)
    ticks += Number(fields[11]) + Number(fields[12]); // fields 14 and 15
  }
  return ticks / CLK_TCK;
}
/** Resident set size of the pids together, in MiB. */
function rssMiB(pids) {
  let kib = 0;
  for (const pid of pids) {
    const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/^VmRSS:\s+(\d+) kB/m);
    if (m) kib += Number(m[1]);
  }
  return kib / 1024;
}

/** Median RTT (ms) of `count` pings of `size` bytes from h1; loss in %. */
async function pingRtt(addr, size, count) {
  const r = await inHost('h1', 'ping', ['-n', '-c', String(count), '-i', '0.05', '-W', '1', '-s', String(size), addr]);
  const rtts = [...r.stdout.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]));
  return { rtt: median(rtts), loss: (100 * (count - rtts.length)) / count };
}

/** One iperf3 TCP run from h1 to addr; checks the JSON. */
async function iperf(addr, streams, seconds, pids) {
  const t0 = process.hrtime.bigint();
  const c0 = pids.length ? cpuSeconds(pids) : 0;
  const r = await inHost('h1', 'iperf3', ['-c', addr, '-t', String(seconds), '-P', String(streams), '-J'], {
    timeoutMs: (seconds + 30) * 1000,
  });
  const c1 = pids.length ? cpuSeconds(pids) : 0;
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  let j;
  try {
    j = JSON.parse(r.stdout);
  } catch (err) {
    throw new Error(`iperf3 printed no JSON (exit ${r.code}): ${r.stderr.slice(-500)}`, { cause: err });
  }
  if (j.error) throw new Error(`iperf3 error: ${j.error}`);
  const sent = j.end?.sum_sent?.bytes ?? 0;
  const received = j.end?.sum_received?.bytes ?? 0;
  if (!(received > 0)) throw new Error('iperf3: no data received');
  // The sender counts bytes still in flight when the test ends; more than
  // that missing means data did not arrive.
  const missing = sent - received;
  if (missing < 0 || missing > Math.max(0.05 * sent, 32 << 20)) {
    throw new Error(`iperf3: sent ${sent} bytes but ${received} received`);
  }
  return {
    mbps: j.end.sum_received.bits_per_second / 1e6,
    cpuPct: pids.length ? (100 * (c1 - c0)) / wall : NaN,
    retransmits: j.end.sum_sent.retransmits ?? NaN,
    missing,
  };
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

/** Measures one VPN; returns its result or { available: false, note }. */
async function measure(vpn) {
  let addr = '192.0.2.2';
  let pids = [];
  const dir = join(work, vpn);
  mkdirSync(dir);
  if (vpn !== 'raw') {
    const up = join(HERE, `${vpn}-pair-up`);
    const down = join(HERE, `${vpn}-pair-down`);
    if (!existsSync(up)) return { available: false, note: `not available (no ${up})` };
    log(`${vpn}: starting`);
    started.push({ vpn, down, dir });
    const r = await run(up, [prefix, dir], { timeoutMs: 60_000 });
    if (r.code !== 0) return { available: false, note: `not available (${vpn}-pair-up failed: ${r.stderr.trim().slice(-300)})` };
    addr = r.stdout.match(/^addr=(\S+)$/m)?.[1];
    pids = (r.stdout.match(/^pids=(.+)$/m)?.[1] ?? '').trim().split(/\s+/).filter(Boolean).map(Number);
    if (!addr || pids.length === 0) return { available: false, note: `${vpn}-pair-up printed no addr=/pids= lines` };
    if (!(await waitForPing(addr, 15))) return { available: false, note: `no ping through ${vpn} within 15 s` };
  }
  const res = { available: true, vpn };
  const server = startInHost('h2', 'iperf3', ['-s']);
  await sleep(300);
  try {
    log(`${vpn}: idle ping`);
    res.idle56 = await pingRtt(addr, 56, opts.pingCount);
    res.idle1400 = await pingRtt(addr, 1400, opts.pingCount);
    for (const streams of [1, 4]) {
      const runs = [];
      for (let i = 0; i < opts.repeat; i++) {
        log(`${vpn}: iperf3 -P ${streams} run ${i + 1}/${opts.repeat}`);
        runs.push(await iperf(addr, streams, opts.duration, pids));
      }
      res[`tcp${streams}`] = {
        mbps: median(runs.map((x) => x.mbps)),
        cpuPct: median(runs.map((x) => x.cpuPct)),
        retransmits: median(runs.map((x) => x.retransmits)),
        runs: runs.map((x) => x.mbps),
      };
    }
    log(`${vpn}: loaded ping`);
    const pingTime = Math.ceil(opts.pingCount * 0.05 * 2 + 4);
    const load = startInHost('h1', 'iperf3', ['-c', addr, '-t', String(pingTime + 2), '-P', '1']);
    await sleep(1000);
    res.load56 = await pingRtt(addr, 56, opts.pingCount);
    res.load1400 = await pingRtt(addr, 1400, opts.pingCount);
    await stopChild(load);
    res.rss = pids.length ? rssMiB(pids) : NaN;
  } finally {
    await stopChild(server);
    if (vpn !== 'raw') {
      const s = started.pop();
      await run(s.down, [prefix, s.dir], { timeoutMs: 30_000 });
    }
  }
  return res;
}

// ---------------------------------------------------------------- output
const f = (x, d = 0) => (Number.isFinite(x) ? x.toFixed(d) : '-');
const ratio = (a, b) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? a / b : NaN);

function printTable(results) {
  const cols = opts.only;
  const R = (v) => results[v];
  const ok = (v) => R(v)?.available;
  const tinc = R('tinc');
  const raw = R('raw');
  const rows = [];
  const row = (label, cell) => rows.push([label, ...cols.map((v) => (ok(v) ? cell(R(v), v) : 'n/a'))]);
  const withRatio = (val, base, d, showFor) => (v) =>
    showFor(v) && ok('tinc') ? `${f(val, d)} (${f(ratio(val, base), 2)}x)` : f(val, d);
  const notBase = (v) => v !== 'raw' && v !== 'tinc';
  for (const s of [1, 4]) {
    row(`TCP ${s} stream${s > 1 ? 's' : ''} Mbit/s (x tinc)`, (r, v) =>
      withRatio(r[`tcp${s}`].mbps, tinc?.[`tcp${s}`]?.mbps, 0, notBase)(v),
    );
  }
  for (const [key, label] of [
    ['idle56', 'RTT 56 B idle ms'],
    ['idle1400', 'RTT 1400 B idle ms'],
    ['load56', 'RTT 56 B loaded ms'],
    ['load1400', 'RTT 1400 B loaded ms'],
  ]) {
    row(label, (r) => f(r[key].rtt, 3) + (r[key].loss > 0 ? ` (${f(r[key].loss)}% lost)` : ''));
  }
  for (const [key, label] of [
    ['idle56', 'added RTT 56 B idle ms'],
    ['idle1400', 'added RTT 1400 B idle ms'],
    ['load56', 'added RTT 56 B loaded ms'],
    ['load1400', 'added RTT 1400 B loaded ms'],
  ]) {
    row(label, (r, v) => {
      if (v === 'raw') return '-';
      const add = r[key].rtt - raw[key].rtt;
      const base = tinc?.[key] ? tinc[key].rtt - raw[key].rtt : NaN;
      return withRatio(add, base, 3, notBase)(v);
    });
  }
  for (const s of [1, 4]) {
    row(`daemon CPU % (${s} stream${s > 1 ? 's' : ''})`, (r) => f(r[`tcp${s}`].cpuPct));
    row(`CPU % per Gbit/s (${s})`, (r, v) => {
      const per = r[`tcp${s}`].cpuPct / (r[`tcp${s}`].mbps / 1000);
      const base = tinc ? tinc[`tcp${s}`].cpuPct / (tinc[`tcp${s}`].mbps / 1000) : NaN;
      return withRatio(per, base, 1, notBase)(v);
    });
  }
  row('daemons RSS MiB (both)', (r) => f(r.rss, 1));
  row('TCP retransmits (1 / 4)', (r) => `${f(r.tcp1.retransmits)} / ${f(r.tcp4.retransmits)}`);

  const header = ['', ...cols];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  console.log(line(header));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of rows) console.log(line(r));
  for (const v of cols) if (!ok(v)) console.log(`${v}: ${results[v]?.note ?? 'not measured'}`);
  for (const v of cols) {
    if (!ok(v)) continue;
    console.log(`${v}: runs Mbit/s 1 stream [${R(v).tcp1.runs.map((x) => f(x)).join(', ')}], 4 streams [${R(v).tcp4.runs.map((x) => f(x)).join(', ')}]`);
  }
  const cv = ok('cluevpn') ? R('cluevpn') : null;
  // b is the other VPN's Mbit/s (NaN when it was not measured).
  const rf = (a, b) => (cv && Number.isFinite(b) ? f(ratio(a, b), 2) : 'n/a');
  const neb = R('nebula');
  console.log(
    `ratios: vs_tinc_1=${rf(cv?.tcp1.mbps, tinc?.available ? tinc.tcp1.mbps : NaN)} ` +
      `vs_tinc_4=${rf(cv?.tcp4.mbps, tinc?.available ? tinc.tcp4.mbps : NaN)} ` +
      `vs_nebula_1=${rf(cv?.tcp1.mbps, neb?.available ? neb.tcp1.mbps : NaN)} ` +
      `vs_nebula_4=${rf(cv?.tcp4.mbps, neb?.available ? neb.tcp4.mbps : NaN)}`,
  );
}

// ---------------------------------------------------------------- main
const version = (cmd, args, re) => {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return (`${r.stdout ?? ''}${r.stderr ?? ''}`.match(re)?.[1] ?? 'missing').trim();
};
console.log(
  `throughput benchmark ${new Date().toISOString()} | ${cpus()[0]?.model ?? 'cpu?'} x${cpus().length} | ` +
    `kernel ${version('uname', ['-r'], /(.+)/)} | tinc ${version('tincd', ['--version'], /tinc version (\S+)/)} | ` +
    `nebula ${version('nebula', ['-version'], /Version: (\S+)/)} | iperf3 ${version('iperf3', ['--version'], /iperf (\S+)/)}`,
);
console.log(`iperf3 TCP ${opts.duration} s x ${opts.repeat} (medians), ${opts.pingCount} pings per RTT figure; lab ${prefix}`);

const up = await run(NETNS_LAB, ['up', prefix, '2']);
if (up.code !== 0) {
  process.stderr.write(`throughput: lab set-up failed: ${up.stderr}`);
  process.exit(1);
}
labUp = true;
const results = {};
for (const vpn of opts.only) {
  try {
    results[vpn] = await measure(vpn);
  } catch (err) {
    results[vpn] = { available: false, note: `failed: ${err.message}` };
    if (vpn === 'raw') {
      process.stderr.write(`throughput: the underlay measurement failed: ${err.message}\n`);
      process.exit(1);
    }
  }
  if (!results[vpn].available) log(`${vpn}: ${results[vpn].note}`);
}
printTable(results);
