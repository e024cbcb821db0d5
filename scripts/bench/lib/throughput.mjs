// Throughput / latency / CPU benchmark: raw underlay, tinc 1.0, nebula, wireguard-go and
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
// against tinc, nebula, wireguard-go and the raw underlay; n/a when one is not available).
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { createLab, median, onlyList, parseOptions, usageHelpers } from './lab.mjs';

const { posInt } = usageHelpers('throughput');
const VPNS = ['raw', 'tinc', 'nebula', 'wireguard', 'cluevpn'];

// ---------------------------------------------------------------- options
const opts = { repeat: 3, duration: 10, pingCount: 20, only: VPNS, keep: false };
parseOptions('throughput', process.argv.slice(2), (a, val) => {
  if (a === '--quick') Object.assign(opts, { repeat: 1, duration: 3, pingCount: 10 });
  else if (a === '--repeat') opts.repeat = posInt(val(), a);
  else if (a === '--duration') opts.duration = posInt(val(), a);
  else if (a === '--pings') opts.pingCount = posInt(val(), a);
  else if (a === '--only') opts.only = onlyList('throughput', val(), VPNS);
  else return false;
  return true;
});

const lab = createLab('throughput');
const { prefix, inHost, startInHost, stopChild, log } = lab;

// ---------------------------------------------------------------- measurements
const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

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

/** Measures one VPN; returns its result or { available: false, note }. */
async function measure(vpn) {
  const pair = await lab.pairUp(vpn);
  if (!pair.available) return pair;
  const { addr, pids } = pair;
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
    await lab.pairDown(vpn);
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
  const mbps = (v, s) => (R(v)?.available ? R(v)[`tcp${s}`].mbps : NaN);
  console.log(
    'ratios: ' +
      ['tinc', 'nebula', 'wireguard', 'raw']
        .flatMap((v) => [1, 4].map((s) => `vs_${v}_${s}=${rf(cv?.[`tcp${s}`].mbps, mbps(v, s))}`))
        .join(' '),
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
    `nebula ${version('nebula', ['-version'], /Version: (\S+)/)} | wireguard-go ${version('wireguard-go', ['--version'], /wireguard-go v(\S+)/)} | iperf3 ${version('iperf3', ['--version'], /iperf (\S+)/)}`,
);
console.log(`iperf3 TCP ${opts.duration} s x ${opts.repeat} (medians), ${opts.pingCount} pings per RTT figure; lab ${prefix}`);

if (!(await lab.up())) process.exit(1);
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
