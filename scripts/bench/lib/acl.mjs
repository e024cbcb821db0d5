// acl: iperf3 TCP through a cluevpnd pair with no access rules and with N
// rules (default 100) about the receiver, alternated in one run on the same
// lab: none, rules, none, rules, ... (--repeat rounds), so that drift of a
// shared machine hits both alike. Per run: Mbit/s with 1 and 4 streams and
// the daemons' CPU %. Prints medians, the ratio rules/none, and the last line
//   acl: rules=N none_1=… rules_1=… ratio_1=… none_4=… rules_4=… ratio_4=…
// Checks that the receiver enforces the policy (status: N rules in force)
// and that no packet of the benchmark was dropped as 'acl'.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { HERE, createLab, median, parseOptions, usageHelpers } from './lab.mjs';

const { posInt } = usageHelpers('acl');
const opts = { repeat: 3, duration: 10, rules: 100, noexpress: false };
parseOptions('acl', process.argv.slice(2), (a, val) => {
  if (a === '--quick') Object.assign(opts, { repeat: 1, duration: 3 });
  else if (a === '--repeat') opts.repeat = posInt(val(), a);
  else if (a === '--duration') opts.duration = posInt(val(), a);
  else if (a === '--rules') opts.rules = posInt(val(), a);
  else if (a === '--with-noexpress') opts.noexpress = true;
  else return false;
  return true;
});
if (opts.rules < 2) usageHelpers('acl').usageError('--rules: at least 2 (icmp and tcp/5201 must be allowed)');

const lab = createLab('acl');
const { prefix, work, inHost, startInHost, stopChild, log } = lab;
const CLUEVPN = join(HERE, '..', '..', '..', 'packages', 'cli', 'bin', 'cluevpn');
const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;
const cpuSeconds = (pids) =>
  pids.reduce((t, pid) => {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const x = f.slice(f.lastIndexOf(')') + 2).split(' ');
    return t + (Number(x[11]) + Number(x[12])) / CLK_TCK;
  }, 0);

async function iperf(addr, streams, pids) {
  const t0 = Date.now();
  const c0 = cpuSeconds(pids);
  const r = await inHost('h1', 'iperf3', ['-c', addr, '-t', String(opts.duration), '-P', String(streams), '-J'], { timeoutMs: (opts.duration + 30) * 1000 });
  const cpu = (100 * (cpuSeconds(pids) - c0)) / ((Date.now() - t0) / 1000);
  const j = JSON.parse(r.stdout);
  if (j.error) throw new Error(`iperf3 error: ${j.error}`);
  if (!(j.end?.sum_received?.bytes > 0)) throw new Error('iperf3: no data received');
  return { mbps: j.end.sum_received.bits_per_second / 1e6, cpu };
}

async function status(dir) {
  const r = await lab.run(CLUEVPN, ['-c', join(dir, 'net', 'beta', 'cluevpn.conf'), 'status', '--json']);
  if (r.code !== 0) throw new Error(`cluevpn status: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

async function one(variant, round) {
  if (variant === 'rules') process.env.CLUEVPN_BENCH_RULES = String(opts.rules);
  else delete process.env.CLUEVPN_BENCH_RULES;
  // 'noexp': no rules and the express path off, as a policy holds it off: separates the two costs
  if (variant === 'noexp') process.env.CLUEVPN_BENCH_CONF = 'express=no';
  else delete process.env.CLUEVPN_BENCH_CONF;
  const dirName = `cluevpn-${variant}-${round}`;
  const pair = await lab.pairUp('cluevpn', dirName);
  if (!pair.available) throw new Error(`cluevpn ${variant}: ${pair.note}`);
  const dir = join(work, dirName);
  const server = startInHost('h2', 'iperf3', ['-s']);
  await new Promise((r) => setTimeout(r, 300));
  try {
    const st = await status(dir);
    const want = variant === 'rules' ? opts.rules : 0;
    if ((st.policy?.rules ?? 0) !== want || (variant === 'rules') !== (st.policy?.serial !== null && st.policy?.serial !== undefined)) {
      throw new Error(`beta's policy is ${JSON.stringify(st.policy)}, expected ${want} rules`);
    }
    const res = {};
    for (const p of [1, 4]) {
      log(`${variant} round ${round}: iperf3 -P ${p}`);
      res[p] = await iperf(pair.addr, p, pair.pids);
    }
    const after = await status(dir);
    res.aclDrops = after.peers.reduce((n, p) => n + (p.drops.acl ?? 0), 0);
    res.flows = after.policy?.flows ?? 0;
    return res;
  } finally {
    await stopChild(server);
    await lab.pairDown('cluevpn');
  }
}

const cores = spawnSync('nproc', [], { encoding: 'utf8' }).stdout.trim();
console.log(`acl: iperf3 TCP ${opts.duration} s, ${opts.repeat} round(s) of (no rules, ${opts.rules} rules) alternated; lab ${prefix}; ${cores} cores, load ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`);
if (!(await lab.up())) process.exit(1);
const variants = opts.noexpress ? ['none', 'noexp', 'rules'] : ['none', 'rules'];
const runs = { none: [], noexp: [], rules: [] };
try {
  for (let round = 1; round <= opts.repeat; round++) {
    for (const v of variants) {
      const r = await one(v, round);
      runs[v].push(r);
      console.log(`  round ${round} ${v.padEnd(5)}  1 stream ${r[1].mbps.toFixed(0).padStart(6)} Mbit/s (CPU ${r[1].cpu.toFixed(0)} %)   4 streams ${r[4].mbps.toFixed(0).padStart(6)} Mbit/s (CPU ${r[4].cpu.toFixed(0)} %)   acl drops ${r.aclDrops}, tracked flows ${r.flows}`);
    }
  }
} catch (err) {
  console.error(`acl: ${err.message}`);
  process.exit(1);
}
const m = (v, p) => median(runs[v].map((r) => r[p].mbps));
const fx = (x) => x.toFixed(2);
const drops = runs.rules.reduce((n, r) => n + r.aclDrops, 0);
console.log(`medians: no rules ${m('none', 1).toFixed(0)} / ${m('none', 4).toFixed(0)} Mbit/s, ${opts.rules} rules ${m('rules', 1).toFixed(0)} / ${m('rules', 4).toFixed(0)} Mbit/s (1 / 4 streams); benchmark packets dropped as acl: ${drops}`);
if (opts.noexpress) console.log(`no rules, express=no: ${m('noexp', 1).toFixed(0)} / ${m('noexp', 4).toFixed(0)} Mbit/s; rules against it: ratio_1=${fx(m('rules', 1) / m('noexp', 1))} ratio_4=${fx(m('rules', 4) / m('noexp', 4))}`);
console.log(`acl: rules=${opts.rules} none_1=${m('none', 1).toFixed(0)} rules_1=${m('rules', 1).toFixed(0)} ratio_1=${fx(m('rules', 1) / m('none', 1))} none_4=${m('none', 4).toFixed(0)} rules_4=${m('rules', 4).toFixed(0)} ratio_4=${fx(m('rules', 4) / m('none', 4))}`);
