// Memory benchmark (scripts/bench/memory; see --help there).
//
//  1. lab bmem (2 hosts), network alpha/beta from make-network, then 998 more
//     node records from one CSV (`bnl import-csv`), signed: a 1 000-node list.
//     The extra nodes have unique /32 subnets (10.100.x.y) and unique
//     endpoints 192.0.2.3–252 × ports 4000+ that nobody answers inside the
//     lab (no such host: ARP fails), so the daemons' proactive negotiation
//     and pulls toward them fail — the point is to see that stays bounded;
//  2. both daemons started; one ping through the tunnel; IDLE seconds idle,
//     sampled every 5 s: RSS, open fds, TCP sockets toward port 3406 (any
//     state) in each host; figure: alpha's RSS at the end (and the max),
//     target ≤ 80 MiB;
//  3. iperf3 soak alpha → beta through the tunnel for SOAK seconds, RSS of
//     both sampled along; figures: RSS at the start (5 s in), at the end,
//     growth (target: none; "met" allows 5 MiB of noise), the slope over the
//     second half; iperf3's JSON is checked (bytes arrived).
import { readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BNL, buildStamp, changedSince, createHarness, control, fmt, grepFile, max, nowMs, printTable, rssKiB, sleep, tail, verdict } from './mesh-harness.mjs';

const opts = { soak: 600, idle: 60, nodes: 1000, loglevel: undefined };
{
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[i + 1] ?? '';
    if (!/^[0-9]+$/.test(v)) usage(`${a} needs a number`);
    if (a === '--soak-seconds') opts.soak = Number(v);
    else if (a === '--idle-seconds') opts.idle = Number(v);
    else if (a === '--nodes') opts.nodes = Number(v);
    else if (a === '--loglevel' && Number(v) <= 7) opts.loglevel = v;
    else usage(`unknown argument '${a}'`);
    i++;
  }
  if (opts.nodes < 2 || opts.nodes > 60_000) usage('--nodes must be 2..60000');
  if (opts.soak !== 0 && opts.soak < 15) usage('--soak-seconds must be 0 (skip) or ≥ 15');
}
function usage(msg) {
  process.stderr.write(`memory: ${msg} (--soak-seconds S, --idle-seconds S, --nodes N, --loglevel 0-7)\n`);
  process.exit(2);
}
const TARGET_IDLE_MIB = 80;
const GROWTH_NOISE_MIB = 5;
const h = createHarness('memory', 'bmem');
const stamp = buildStamp();
const problems = [];
const MiB = (kib) => kib / 1024;

function fdCount(pid) {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch (err) {
    if (err.code === 'ENOENT') return NaN;
    throw err;
  }
}
/** TCP sockets with port 3406 at either end in host i (any state), and how many are SYN-SENT. */
async function tcpSockets(i) {
  const r = await h.inHost(i, 'ss', ['-tanH']);
  const lines = r.stdout.split('\n').filter((l) => /:3406\b/.test(l));
  return { all: lines.length, synSent: lines.filter((l) => l.startsWith('SYN-SENT')).length };
}
async function sample(ds) {
  const s = { at: nowMs(), rss: ds.map((d) => rssKiB(d.pid)), fds: ds.map((d) => fdCount(d.pid)), tcp: [], mem: [] };
  for (let i = 1; i <= ds.length; i++) s.tcp.push(await tcpSockets(i));
  // where the memory is, as the daemon reports it (V8 heap vs outside it)
  for (const d of ds) s.mem.push(await control(d.node.sock, 'status').then((st) => st.memory, () => null));
  return s;
}
/** `heapUsed/heapTotal/external` of one memory report, MiB. */
const heapText = (m) => (m ? `${fmt(m.heapUsed / 1048576, 1)}/${fmt(m.heapTotal / 1048576, 1)}/${fmt(m.external / 1048576, 1)}` : '?');
/** Least-squares slope of y over x. */
function slope(xs, ys) {
  const n = xs.length;
  if (n < 2) return NaN;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let k = 0; k < n; k++) {
    num += (xs[k] - mx) * (ys[k] - my);
    den += (xs[k] - mx) ** 2;
  }
  return den ? num / den : NaN;
}

async function main() {
  h.log(`lab bmem (2 hosts); network alpha/beta + ${opts.nodes - 2} unreachable node records`);
  await h.labUp(2);
  const net = await h.makeNetwork([
    { name: 'alpha', addr: '192.0.2.1' },
    { name: 'beta', addr: '192.0.2.2' },
  ], { extra: opts.loglevel ? ['--loglevel', opts.loglevel] : [] });
  // 0. baseline: the same two daemons with the 2-node list, 10 s idle
  const base = net.nodes.map((n, k) => h.startDaemon(k + 1, n));
  const baseReady = await Promise.all(base.map((d) => h.waitReady(d, 30_000)));
  if (!baseReady.every(Number.isFinite)) throw new Error(`daemons did not start with the 2-node list:\n${tail(net.nodes[0].log, 10)}`);
  const baseStartMs = baseReady.map((r, k) => r - base[k].spawnedAt);
  await h.inHost(1, 'ping', ['-n', '-c', '1', '-w', '5', '-i', '0.2', '10.99.0.2']);
  await sleep(10_000);
  const baseRss = base.map((d) => MiB(rssKiB(d.pid)));
  await Promise.all(base.map((d) => h.stopDaemon(d)));
  h.log(`baseline (2-node list): RSS ${baseRss.map((x) => fmt(x, 1)).join('/')} MiB after 10 s`);

  // 1. the big list: extra rows into the draft make-network left, sign, copy to both nodes
  const rows = ['name,ipv4,port,subnets'];
  for (let k = 0; k < opts.nodes - 2; k++) {
    rows.push(`far${String(k + 3).padStart(5, '0')},192.0.2.${3 + (k % 250)},${4000 + Math.floor(k / 250)},10.${100 + (k >> 16)}.${(k >> 8) & 255}.${k & 255}/32`);
  }
  const csv = join(h.work, 'far.csv');
  writeFileSync(csv, `${rows.join('\n')}\n`);
  const list = join(net.dir, 'bnl');
  let t = nowMs();
  await h.must(BNL, ['--file', list, 'import-csv', csv], { timeoutMs: 300_000 });
  await h.must(BNL, ['--file', list, 'sign', '--key', join(net.dir, 'bnl-signing.key')]);
  const buildListMs = nowMs() - t;
  for (const n of net.nodes) await h.must('cp', [list, n.bnl]);
  const listBytes = statSync(list).size;
  h.log(`list of ${opts.nodes} nodes, ${listBytes} bytes, import-csv + sign ${fmt(buildListMs)} ms`);

  // 2. start, one ping, idle
  t = nowMs();
  const ds = net.nodes.map((n, k) => h.startDaemon(k + 1, n));
  const ready = await Promise.all(ds.map((d) => h.waitReady(d, 60_000)));
  ds.forEach((d, k) => {
    if (!Number.isFinite(ready[k])) problems.push(`${d.node.name} did not start:\n${tail(d.node.log, 10)}\n${d.child.out.slice(-800)}`);
  });
  if (problems.length) throw new Error('daemons did not start');
  const startMs = ready.map((r) => r - t);
  const ping = await h.inHost(1, 'ping', ['-n', '-c', '1', '-w', '5', '-i', '0.2', '10.99.0.2']);
  if (ping.code !== 0) problems.push(`no ping through the tunnel alpha → beta: ${ping.stdout.trim().split('\n').slice(-2).join(' / ')}`);
  const st = await control(net.nodes[0].sock, 'status');
  if (st.bnl.nodes !== opts.nodes) problems.push(`alpha holds ${st.bnl.nodes} nodes, expected ${opts.nodes}`);
  h.log(`started in ${startMs.map((x) => fmt(x)).join('/')} ms, ${st.peers.length} peers; idle ${opts.idle} s`);
  const idle = [];
  const idleEnd = nowMs() + opts.idle * 1000;
  for (;;) {
    idle.push(await sample(ds));
    if (nowMs() >= idleEnd) break;
    await sleep(Math.min(5000, Math.max(0, idleEnd - nowMs())));
  }
  const idleLast = idle[idle.length - 1];

  // 3. soak
  let soak = [];
  let iperfRes = null;
  if (opts.soak > 0) {
    h.log(`iperf3 soak alpha → beta through the tunnel, ${opts.soak} s`);
    const server = h.spawnInHost(2, 'iperf3', ['-s', '-B', '10.99.0.2', '-1']);
    await sleep(500);
    const soakStart = nowMs();
    const client = h.inHost(1, 'iperf3', ['-c', '10.99.0.2', '-t', String(opts.soak), '-i', '10', '-J'], { timeoutMs: (opts.soak + 60) * 1000 });
    const every = Math.max(5, Math.round(opts.soak / 20)) * 1000;
    await sleep(5000);
    let done = false;
    client.then(() => (done = true));
    while (!done && nowMs() < soakStart + opts.soak * 1000 - 1000) {
      soak.push(await sample(ds));
      await Promise.race([sleep(Math.min(every, soakStart + opts.soak * 1000 - 1000 - nowMs())), client]);
    }
    soak.push(await sample(ds)); // last sample just before the end
    const r = await client;
    server.kill('SIGKILL');
    try {
      const j = JSON.parse(r.stdout);
      if (j.error) throw new Error(j.error);
      const sent = j.end.sum_sent.bytes;
      const received = j.end.sum_received.bytes;
      if (!(received > 0) || sent - received > Math.max(0.05 * sent, 32 << 20)) problems.push(`iperf3: sent ${sent} bytes, ${received} received`);
      iperfRes = { mbps: j.end.sum_received.bits_per_second / 1e6, gb: received / 1e9, retransmits: j.end.sum_sent.retransmits };
    } catch (err) {
      problems.push(`iperf3 soak failed (exit ${r.code}): ${err.message} ${r.stderr.trim().slice(-300)}`);
    }
    await sleep(5000);
    soak = soak.filter((s) => s.at - soakStart >= 4000);
    soak.after = await sample(ds);
    soak.start = soakStart;
  }

  // ---------------------------------------------------------------- report
  const rebuilt = changedSince(stamp);
  if (rebuilt.length) problems.push(`dist of ${rebuilt.join(', ')} was rebuilt during the run: the figures may mix builds`);
  const out = process.stdout;
  out.write(`\nmemory: cluevpnd alpha (bmem-h1) and beta (bmem-h2), BNL of ${opts.nodes} nodes (${listBytes} bytes; ${opts.nodes - 2} unreachable), idle ${opts.idle} s, soak ${opts.soak} s\n${stamp.text}\n\n`);
  const idleRss = idle.map((s) => MiB(s.rss[0]));
  const idleRssB = idle.map((s) => MiB(s.rss[1]));
  const rowsOut = [
    ['figure', 'alpha', 'beta', 'target', 'verdict'],
    ['baseline, 2-node list: start (spawn → control socket), ms', fmt(baseStartMs[0]), fmt(baseStartMs[1]), '', ''],
    ['baseline, 2-node list: RSS 10 s after start, MiB', fmt(baseRss[0], 1), fmt(baseRss[1], 1), '', ''],
    [`${opts.nodes}-node list: start (spawn → control socket), ms`, fmt(startMs[0]), fmt(startMs[1]), '', ''],
    [`RSS at idle, last sample (${opts.idle} s), MiB`, fmt(idleRss.at(-1), 1), fmt(idleRssB.at(-1), 1), '', ''],
    ['RSS at idle, max of the samples (every 5 s), MiB', fmt(max(idleRss), 1), fmt(max(idleRssB), 1), `≤ ${TARGET_IDLE_MIB}`, verdict(Math.max(max(idleRss), max(idleRssB)) <= TARGET_IDLE_MIB)],
    ['open fds at idle, max', fmt(max(idle.map((s) => s.fds[0]))), fmt(max(idle.map((s) => s.fds[1]))), '', ''],
    ['TCP sockets on port 3406 at idle, max (SYN-SENT max)', `${max(idle.map((s) => s.tcp[0].all))} (${max(idle.map((s) => s.tcp[0].synSent))})`, `${max(idle.map((s) => s.tcp[1].all))} (${max(idle.map((s) => s.tcp[1].synSent))})`, '', ''],
  ];
  if (soak.length) {
    const a = soak.map((s) => MiB(s.rss[0]));
    const b = soak.map((s) => MiB(s.rss[1]));
    const half = soak.slice(Math.floor(soak.length / 2));
    const mins = (s) => (s.at - soak.start) / 60000;
    const slA = slope(half.map(mins), half.map((s) => MiB(s.rss[0])));
    const slB = slope(half.map(mins), half.map((s) => MiB(s.rss[1])));
    const growA = a.at(-1) - a[0];
    const growB = b.at(-1) - b[0];
    rowsOut.push(
      [`soak: RSS at start (+${fmt((soak[0].at - soak.start) / 1000)} s), MiB`, fmt(a[0], 1), fmt(b[0], 1), '', ''],
      [`soak: RSS at end (+${fmt((soak.at(-1).at - soak.start) / 1000)} s), MiB`, fmt(a.at(-1), 1), fmt(b.at(-1), 1), '', ''],
      ['soak: growth end − start, MiB', fmt(growA, 1), fmt(growB, 1), `no growth (≤ ${GROWTH_NOISE_MIB})`, verdict(growA <= GROWTH_NOISE_MIB && growB <= GROWTH_NOISE_MIB)],
      ['soak: RSS max, MiB', fmt(max(a), 1), fmt(max(b), 1), '', ''],
      // the start sample may fall right after a collection: compare the peaks too
      ['soak max − idle max (V8 heap at its plateau), MiB', fmt(max(a) - max(idleRss), 1), fmt(max(b) - max(idleRssB), 1), '', ''],
      ['soak: slope over the second half, MiB/min', fmt(slA, 2), fmt(slB, 2), '', ''],
      ['5 s after the soak: RSS, MiB', fmt(MiB(soak.after.rss[0]), 1), fmt(MiB(soak.after.rss[1]), 1), '', ''],
      ['soak: open fds at end', fmt(soak.at(-1).fds[0]), fmt(soak.at(-1).fds[1]), '', ''],
      ['soak: V8 heap used/total/external at start, MiB', heapText(soak[0].mem[0]), heapText(soak[0].mem[1]), '', ''],
      ['soak: V8 heap used/total/external at end, MiB', heapText(soak.at(-1).mem[0]), heapText(soak.at(-1).mem[1]), '', ''],
    );
  }
  printTable(rowsOut);
  if (iperfRes) out.write(`\niperf3 soak: ${fmt(iperfRes.mbps)} Mbit/s, ${fmt(iperfRes.gb, 1)} GB received, ${iperfRes.retransmits} retransmits\n`);
  out.write(`\nRSS samples, MiB (alpha/beta): idle ${idle.map((s) => `${fmt(MiB(s.rss[0]), 1)}/${fmt(MiB(s.rss[1]), 1)}`).join(' ')}\n`);
  if (soak.length) out.write(`soak ${soak.map((s) => `+${fmt((s.at - soak.start) / 1000)}s ${fmt(MiB(s.rss[0]), 1)}/${fmt(MiB(s.rss[1]), 1)}`).join(' ')}\n`);
  out.write(`alpha's V8 heap used/total/external, MiB: idle ${idle.map((s) => heapText(s.mem[0])).join(' ')}\n`);
  if (soak.length) out.write(`  soak ${soak.map((s) => heapText(s.mem[0])).join(' ')}\n`);
  const st2 = await control(net.nodes[0].sock, 'status');
  const states = {};
  for (const p of st2.peers) states[p.state] = (states[p.state] ?? 0) + 1;
  out.write(`alpha's peers by state at the end: ${Object.entries(states).map(([k, v]) => `${k} ${v}`).join(', ')}\n`);
  // negotiation / gossip attempts toward the unreachable records, from the log (warnings at the default level, all at --loglevel 6)
  for (const n of net.nodes) {
    const fails = grepFile(n.log, /negotiation failed peer=far/, 1e9);
    const pulls = grepFile(n.log, /pull failed peer=far/, 1e9);
    const ts = fails.map((l) => Date.parse(l.slice(0, 24))).filter(Number.isFinite);
    const spanMin = ts.length > 1 ? (ts.at(-1) - ts[0]) / 60000 : NaN;
    const byReason = {};
    for (const l of fails) {
      const r = l.match(/reason=(\S+)/)?.[1] ?? '?';
      byReason[r] = (byReason[r] ?? 0) + 1;
    }
    out.write(`${n.name}: failed negotiations toward unreachable records logged: ${fails.length} (${Object.entries(byReason).map(([k, v]) => `${k} ${v}`).join(', ') || 'none'})${Number.isFinite(spanMin) && spanMin > 0 ? `, ${fmt(fails.length / spanMin, 1)}/min` : ''}; failed pulls: ${pulls.length}${opts.loglevel >= 6 ? '' : ' (info lines need --loglevel 6)'}\n`);
  }
  const warn = net.nodes.flatMap((n) => grepFile(n.log, / (emerg|alert|crit|error|warning) /, 5).map((l) => `${n.name}: ${l}`));
  if (warn.length) out.write(`\nwarnings/errors in the logs (last 5 per node):\n${warn.join('\n')}\n`);
  if (problems.length) out.write(`\nproblems:\n${problems.map((p) => `  - ${p}`).join('\n')}\n\nalpha log (tail):\n${tail(net.nodes[0].log, 15)}\n`);
}

main().then(
  () => process.exit(problems.length ? 1 : 0),
  (err) => {
    process.stderr.write(`memory: ${err.stack ?? err}\n${problems.join('\n')}\n`);
    process.exit(1);
  },
);
