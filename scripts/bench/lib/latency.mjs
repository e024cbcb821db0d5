// Idle latency, taken apart: the added ping RTT of tinc and cluevpnd next to
// three floors that forward without encryption (lib/floor/): a plain C poll()
// loop, the same C inside Node's event loop, and that plus one empty
// JavaScript call per readable event; and cluevpnd with its express path
// off (`cluevpn-noexpress`: every packet through the JavaScript pipelines)
// next to the default. Started by scripts/bench/latency; see --help there.
//
// Per round, per VPN: `X-pair-up` (lib/README.md), 5 pings, then PINGS
// pings of SIZE bytes at INTERVAL s (idle: the daemons sleep between pings):
// the "fresh" figure, as a daemon just started sees it. Then WARMUP pings at
// 1 ms (a daemon that has carried traffic: its JavaScript is compiled by
// V8's optimising tier by then), 2 s of quiet, and PINGS pings again: the
// "warm" figure. Median and p90 RTT of each; `X-pair-down`. The underlay ('raw') is measured
// in every round; added RTT = VPN − underlay of the same round. Rounds
// alternate the VPNs so that a change in the machine's load hits all alike.
// Figures are medians over the rounds.
import { spawnSync } from 'node:child_process';
import { cpus } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { createLab, median, onlyList, parseOptions, quantile, usageHelpers } from './lab.mjs';

const { usageError, posInt } = usageHelpers('latency');
const VPNS = ['raw', 'floor-c', 'floor-node', 'floor-js', 'tinc', 'cluevpn-noexpress', 'cluevpn'];
const opts = { pings: 60, interval: 0.2, rounds: 2, size: 56, warmup: 3000, only: VPNS };
parseOptions('latency', process.argv.slice(2), (a, val) => {
  if (a === '--quick') Object.assign(opts, { pings: 20, rounds: 1, warmup: 500 });
  else if (a === '--pings') opts.pings = posInt(val(), a);
  else if (a === '--rounds') opts.rounds = posInt(val(), a);
  else if (a === '--size') opts.size = posInt(val(), a);
  else if (a === '--warmup') opts.warmup = posInt(val(), a);
  else if (a === '--interval') {
    const s = val();
    if (!/^[0-9]*\.?[0-9]+$/.test(s) || Number(s) < 0.01 || Number(s) > 10) usageError(`--interval needs seconds in 0.01..10, not '${s}'`);
    opts.interval = Number(s);
  } else if (a === '--only') opts.only = onlyList('latency', val(), VPNS);
  else return false;
  return true;
});

const lab = createLab('latency');
const { inHost, log } = lab;

/** RTTs (ms) of `count` pings from h1 every `interval` s; the lost ones are missing. */
async function pings(addr, count, interval = opts.interval) {
  const r = await inHost('h1', 'ping', ['-n', '-c', String(count), '-i', String(interval), '-W', '1', '-s', String(opts.size), addr], {
    timeoutMs: (count * Math.max(interval, 0.01) + 30) * 1000,
  });
  return [...r.stdout.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]));
}
const figure = (rtts) => ({ median: median(rtts), p90: quantile(rtts, 0.9), lost: opts.pings - rtts.length });

async function measure(vpn, round) {
  const pair = await lab.pairUp(vpn, `${vpn}-${round}`);
  if (!pair.available) return pair;
  try {
    await pings(pair.addr, 5);
    await sleep(1000);
    log(`${vpn}: ${opts.pings} pings, fresh (round ${round})`);
    const fresh = figure(await pings(pair.addr, opts.pings));
    log(`${vpn}: ${opts.warmup} pings at 1 ms, then ${opts.pings} pings, warm`);
    await pings(pair.addr, opts.warmup, 0.001);
    await sleep(2000);
    const warm = figure(await pings(pair.addr, opts.pings));
    return { available: true, fresh, warm };
  } finally {
    await lab.pairDown(vpn);
  }
}

const version = (cmd, args, re) => {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return (`${r.stdout ?? ''}${r.stderr ?? ''}`.match(re)?.[1] ?? 'missing').trim();
};
console.log(
  `latency benchmark ${new Date().toISOString()} | ${cpus()[0]?.model ?? 'cpu?'} x${cpus().length} | ` +
    `kernel ${version('uname', ['-r'], /(.+)/)} | tinc ${version('tincd', ['--version'], /tinc version (\S+)/)} | node ${process.version}`,
);
console.log(
  `${opts.pings} pings of ${opts.size} B at ${opts.interval} s per figure, fresh and after ${opts.warmup} pings at 1 ms (warm), ` +
    `${opts.rounds} round(s) (medians over rounds); floors forward without encryption; lab ${lab.prefix}`,
);
if (!(await lab.up())) process.exit(1);

/** results[vpn].rounds = per round { fresh, warm } ({ median, p90, lost, added } each), or a note. */
const results = Object.fromEntries(opts.only.map((v) => [v, { rounds: [], note: undefined }]));
const withAdded = (r, raw) => ({
  fresh: { ...r.fresh, added: r.fresh.median - raw.fresh.median },
  warm: { ...r.warm, added: r.warm.median - raw.warm.median },
});
for (let round = 1; round <= opts.rounds; round++) {
  // Alternate the order: forwards in odd rounds, backwards in even ones (raw first always).
  const order = round % 2 ? opts.only : ['raw', ...opts.only.filter((v) => v !== 'raw').reverse()];
  const raw = await measure('raw', round).catch((err) => ({ available: false, note: err.message }));
  if (!raw.available || !Number.isFinite(raw.fresh.median) || !Number.isFinite(raw.warm.median)) {
    process.stderr.write(`latency: the underlay measurement failed: ${raw.note ?? 'no replies'}\n`);
    process.exit(1);
  }
  results.raw.rounds.push(withAdded(raw, raw));
  for (const vpn of order) {
    if (vpn === 'raw' || results[vpn].note !== undefined) continue;
    let r;
    try {
      r = await measure(vpn, round);
    } catch (err) {
      r = { available: false, note: `failed: ${err.message}` };
    }
    if (!r.available) {
      results[vpn].note = r.note;
      log(`${vpn}: ${r.note}`);
      continue;
    }
    results[vpn].rounds.push(withAdded(r, raw));
  }
}

// ---------------------------------------------------------------- output
const f = (x, d = 3) => (Number.isFinite(x) ? x.toFixed(d) : '-');
const ok = (v) => results[v] !== undefined && results[v].note === undefined && results[v].rounds.length > 0;
const agg = (v, phase, key) => (ok(v) ? median(results[v].rounds.map((r) => r[phase][key])) : NaN);
const ratio = (a, b) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}x` : '-');
const header = ['', 'RTT median ms', 'p90 ms', 'added ms', 'x tinc', 'x floor-c', 'lost', 'round medians'];
const rows = [];
for (const phase of ['fresh', 'warm']) {
  for (const v of opts.only) {
    const label = `${v} ${phase}`;
    if (!ok(v)) {
      rows.push([label, 'n/a', 'n/a', 'n/a', 'n/a', 'n/a', 'n/a', results[v].note ?? '']);
      continue;
    }
    const added = agg(v, phase, 'added');
    rows.push([
      label,
      f(agg(v, phase, 'median')),
      f(agg(v, phase, 'p90')),
      v === 'raw' ? '-' : f(added),
      v === 'raw' ? '-' : ratio(added, agg('tinc', phase, 'added')),
      v === 'raw' ? '-' : ratio(added, agg('floor-c', phase, 'added')),
      String(results[v].rounds.reduce((s, r) => s + r[phase].lost, 0)),
      results[v].rounds.map((r) => f(r[phase].median)).join(' '),
    ]);
  }
}
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
const line = (cells) => cells.map((c, i) => (i === 0 || i === cells.length - 1 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
console.log(line(header));
console.log(widths.map((w) => '-'.repeat(w)).join('  '));
for (const r of rows) console.log(line(r).trimEnd());
for (const phase of ['fresh', 'warm']) {
  const vs = (v) => agg(v, phase, 'added');
  console.log(
    `added_ms_${phase}: ` +
      opts.only
        .filter((v) => v !== 'raw')
        .map((v) => `${v.replace('-', '_')}=${f(vs(v))}`)
        .join(' ') +
      ` cluevpn_vs_tinc=${ratio(vs('cluevpn'), vs('tinc')).replace('x', '')}`,
  );
}
