// Scale benchmark (scripts/bench/scale; see --help there). Issue 19.
//
//  A. in process (scale-inproc.mjs): list load, diff, peer table, removals
//     and LPM at --compare and --nodes nodes; the gossip simulation at
//     --nodes nodes (scripts/bench/gossip);
//  B. route install: --compare and --nodes /32 routes on a real TUN in a
//     namespace of the lab (TunDevice.addRoutes, what the daemon does);
//  C. live: lab bscale with LIVE hosts, network n1..nLIVE (make-network),
//     three lists in turn, each on fresh state (state.db removed):
//       small  n1..n3 only (3 daemons): RSS and where it goes, at idle
//       C      n1..nLIVE + C-LIVE unreachable records
//       N      n1..nLIVE + N-LIVE unreachable records
//     The unreachable records have unique /32 subnets (10.100+.x.y) and
//     endpoints 192.0.2.6–250 × ports 4000+ that no host of the lab has (ARP
//     fails): every attempt toward them fails. For each list: spawn → control
//     socket, the daemon's own `listMs` (load + verify, routes, peer table:
//     'cluevpnd started'), spawn → first echo reply n1 → n2 through the
//     tunnel (lib/first-reply.py: one echo every 10 ms from spawn), then IDLE seconds at rest
//     sampled every 5 s: n1's RSS, CPU (utime + stime from /proc), new TCP
//     connections it opened (iptables in its namespace: SYNs that are the
//     first packet of their connection, connbytes 0:1, so retransmitted SYNs
//     do not count), and where the RSS goes (smaps_rollup, the V8 heap from
//     the control socket). The small and C lists idle --short-idle seconds.
//     With the N list also a push: `bnl modify` + `bnl sign` on n1, then
//     the control request `reload-and-push` (what `bnl push` and `cluevpn
//     reload` send); figures: its answer time (bound 3 s), ms until
//     every live node holds the new serial, n1's RSS max over --push-watch
//     seconds of background pushing (every other node, bounded concurrency).
//  D. --mesh M: scripts/bench/mesh --nodes M --pushes 2 --deadline 300 (its own lab) after the rest,
//     its output passed through.
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BNL, REPO, buildStamp, changedSince, control, createHarness, fmt, grepFile, max, median, nowMs, printTable, rssKiB, sleep, tail, verdict } from './mesh-harness.mjs';

const opts = { nodes: 10_000, compare: 1000, live: 5, idle: 300, shortIdle: 30, pushWatch: 30, mesh: 0, skipGossip: false };
{
  const argv = process.argv.slice(2);
  const num = (i, a) => {
    if (!/^[0-9]+$/.test(argv[i] ?? '')) usage(`${a} needs a number`);
    return Number(argv[i]);
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--nodes') opts.nodes = num(++i, a);
    else if (a === '--compare') opts.compare = num(++i, a);
    else if (a === '--live') opts.live = num(++i, a);
    else if (a === '--idle-seconds') opts.idle = num(++i, a);
    else if (a === '--short-idle-seconds') opts.shortIdle = num(++i, a);
    else if (a === '--push-watch-seconds') opts.pushWatch = num(++i, a);
    else if (a === '--mesh') opts.mesh = num(++i, a);
    else if (a === '--skip-gossip') opts.skipGossip = true;
    else usage(`unknown argument '${a}'`);
  }
  if (opts.live < 3 || opts.live > 5) usage('--live must be 3..5 (lab hosts 192.0.2.1-5; records use .6 and up)');
  if (opts.compare <= opts.live || opts.nodes <= opts.compare || opts.nodes > 60_000) usage('need live < --compare < --nodes ≤ 60000');
  if (opts.idle < 10 || opts.shortIdle < 10) usage('idle windows must be ≥ 10 s');
}
function usage(msg) {
  process.stderr.write(`scale: ${msg}\n`);
  process.exit(2);
}

const T = { rssSmall: 48, rssBig: 100, applyMs: 1000, pingMs: 1000, cpuPct: 1, reloadMs: 3000, gossipRounds: 12, pushAllMs: 2000 };
const h = createHarness('scale', 'bscale');
const stamp = buildStamp();
const problems = [];
const MiB = (kib) => kib / 1024;
const out = process.stdout;
const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

/** utime + stime of a pid, seconds. */
function cpuSeconds(pid) {
  const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / CLK_TCK;
}
/** smaps_rollup of a pid, kB per field. */
function smapsRollup(pid) {
  const r = {};
  for (const line of readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8').split('\n')) {
    const m = line.match(/^(\w+):\s+(\d+) kB/);
    if (m) r[m[1]] = Number(m[2]);
  }
  return r;
}
/** Resident kB of the [heap] mapping (malloc: SQLite, OpenSSL, addons) and of other anonymous mappings. */
function smapsSplit(pid) {
  let cur = '';
  const res = { mallocHeap: 0, fileNode: 0, fileOther: 0, anonOther: 0 };
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const head = line.match(/^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \d+\s*(.*)$/);
    if (head) {
      cur = head[1].trim();
      continue;
    }
    const m = line.match(/^Rss:\s+(\d+) kB/);
    if (!m) continue;
    const kb = Number(m[1]);
    if (cur === '[heap]') res.mallocHeap += kb;
    else if (cur.startsWith('/') && /\/node$/.test(cur)) res.fileNode += kb;
    else if (cur.startsWith('/')) res.fileOther += kb;
    else res.anonOther += kb;
  }
  return res;
}

/** Runs a command to completion outside the harness' process list (in-process parts). */
function runJsonLines(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr.slice(-800)}`);
  return r.stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

// ---------------------------------------------------------------- A, B
function inProcess() {
  h.log(`in process: list load, diff, peer table, LPM at ${opts.compare} and ${opts.nodes} nodes`);
  const rows = runJsonLines('node', ['--expose-gc', join(REPO, 'scripts/bench/lib/scale-inproc.mjs'), 'list', String(opts.compare), String(opts.nodes)]);
  let gossip = null;
  if (!opts.skipGossip) {
    h.log(`gossip simulation, ${opts.nodes} nodes (about a minute and a half of CPU)`);
    const r = spawnSync(join(REPO, 'scripts/bench/gossip'), ['--nodes', String(opts.nodes)], { encoding: 'utf8', maxBuffer: 64 << 20 });
    if (r.status !== 0) problems.push(`gossip simulation exited ${r.status}: ${r.stderr.slice(-400)}`);
    const rounds = (mode) => {
      const m = r.stdout.match(new RegExp(`^${mode.replace('+', '\\+')}: (converged in (\\d+) rounds|stopped after (\\d+) rounds with (\\d+)/)`, 'm'));
      return m ? { converged: m[2] !== undefined, rounds: Number(m[2] ?? m[3]), informed: m[4] ? Number(m[4]) : opts.nodes } : null;
    };
    gossip = { pull: rounds('pull'), push: rounds('push'), pushPull: rounds('push+pull'), head: r.stdout.split('\n').slice(0, 2).join(' / ') };
  }
  return { rows, gossip };
}

async function routeInstall() {
  const res = [];
  for (const n of [opts.compare, opts.nodes]) {
    const r = await h.inHost(opts.live, 'node', [join(REPO, 'scripts/bench/lib/scale-inproc.mjs'), 'tun', String(n)], { timeoutMs: 120_000 });
    if (r.code !== 0) {
      problems.push(`route install of ${n}: exit ${r.code}: ${r.stderr.slice(-300)}`);
      res.push(null);
      continue;
    }
    const j = JSON.parse(r.stdout.trim().split('\n').at(-1));
    if (j.failed) problems.push(`route install of ${n}: ${j.failed} routes failed (${j.firstError})`);
    res.push(j);
  }
  return res;
}

// ---------------------------------------------------------------- C
const SYN_RULE = ['OUTPUT', '-p', 'tcp', '--syn', '-m', 'connbytes', '--connbytes', '0:1', '--connbytes-dir', 'original', '--connbytes-mode', 'packets'];
async function synCount(i) {
  const r = await h.must('ip', ['netns', 'exec', h.ns(i), 'iptables', '-w', '-L', 'OUTPUT', '-v', '-x', '-n']);
  const m = r.stdout.match(/^\s*(\d+)\s+\d+\s+.*connbytes/m);
  return m ? Number(m[1]) : NaN;
}

/** Writes the list for one phase into n1's draft (net.dir/bnl) and every node's copy. */
async function writeList(net, total) {
  const list = join(net.dir, 'bnl');
  // the signed list and its draft (`bnl` edits LIST.draft) as make-network left them: n1..nLIVE
  writeFileSync(list, readFileSync(join(h.work, 'bnl-base')));
  writeFileSync(`${list}.draft`, readFileSync(join(h.work, 'bnl-base.draft')));
  const t = nowMs();
  if (total === 3) {
    for (let k = 4; k <= opts.live; k++) await h.must(BNL, ['--file', list, 'remove', `n${k}`]);
  } else {
    const rows = ['name,ipv4,port,subnets'];
    for (let k = 0; k < total - opts.live; k++) {
      rows.push(`far${String(k).padStart(5, '0')},192.0.2.${6 + (k % 245)},${4000 + Math.floor(k / 245)},10.${100 + (k >> 16)}.${(k >> 8) & 255}.${k & 255}/32`);
    }
    const csv = join(h.work, `far-${total}.csv`);
    writeFileSync(csv, `${rows.join('\n')}\n`);
    await h.must(BNL, ['--file', list, 'import-csv', csv], { timeoutMs: 600_000 });
  }
  await h.must(BNL, ['--file', list, 'sign', '--key', join(net.dir, 'bnl-signing.key')], { timeoutMs: 300_000 });
  // fresh state per phase: the rollback guard (.highest) and trust sidecars go, serials restart
  for (const n of net.nodes) {
    for (const f of [`${n.bnl}.highest`, `${n.bnl}.trust`]) rmSync(f, { force: true });
    await h.must('cp', [list, n.bnl]);
  }
  return { bytes: readFileSync(list).length, buildMs: nowMs() - t };
}

/** Starts `count` daemons on fresh state, pings n1 → n2 from spawn, idles; returns the figures of n1. */
async function phase(net, name, total, count, idleS, { push = false } = {}) {
  const list = await writeList(net, total);
  h.log(`${name}: list of ${total} nodes (${list.bytes} bytes, built and signed in ${fmt(list.buildMs)} ms), ${count} daemons`);
  for (const n of net.nodes) {
    for (const f of [n.statedb, `${n.statedb}-wal`, `${n.statedb}-shm`, n.log]) rmSync(f, { force: true });
  }
  await h.must('ip', ['netns', 'exec', h.ns(1), 'iptables', '-w', '-Z']);
  const t0 = nowMs();
  const ds = net.nodes.slice(0, count).map((n, k) => h.startDaemon(k + 1, n));
  // first reply n1 → n2 through the tunnel, probing every 10 ms from spawn
  const pinger = h.spawnInHost(1, 'python3', [join(REPO, 'scripts/bench/lib/first-reply.py'), '10.99.0.2', '20', '0.01']);
  const pingDone = new Promise((r) => pinger.on('exit', r));
  const ready = await Promise.all(ds.map((d) => h.waitReady(d, 120_000)));
  const readyCpuS = (() => { try { return cpuSeconds(ds[0].pid); } catch { return NaN; } })(); // n1's CPU from spawn to its control socket (about: seen within the poll), whatever the load
  ds.forEach((d, k) => {
    if (!Number.isFinite(ready[k])) problems.push(`${name}: ${d.node.name} did not start:\n${tail(d.node.log, 10)}\n${d.child.out.slice(-600)}`);
  });
  if (!ready.every(Number.isFinite)) throw new Error(`${name}: daemons did not start`);
  await pingDone;
  const m = pinger.out.match(/^(\d+\.\d+)\s*$/m);
  const pingMs = m ? Number(m[1]) * 1000 - t0 : NaN;
  if (!m) problems.push(`${name}: no echo reply n1 → n2 within 20 s of spawn`);
  const started = grepFile(net.nodes[0].log, /cluevpnd started/, 1)[0] ?? '';
  const listMs = Number(started.match(/ listms=(\d+)/)?.[1] ?? NaN);
  const loadMs = Number(grepFile(net.nodes[0].log, /BNL loaded/, 1)[0]?.match(/ ms=(\d+)/)?.[1] ?? NaN);
  const st = await control(net.nodes[0].sock, 'status');
  if (st.bnl.nodes !== total) problems.push(`${name}: n1 holds ${st.bnl.nodes} nodes, expected ${total}`);

  // idle
  h.log(`${name}: idle ${idleS} s`);
  const pid = ds[0].pid;
  const syn0 = await synCount(1);
  const cpu0 = cpuSeconds(pid);
  const tIdle = nowMs();
  const samples = [];
  for (;;) {
    samples.push({ at: nowMs(), rss: MiB(rssKiB(pid)), all: ds.map((d) => MiB(rssKiB(d.pid))) });
    if (nowMs() - tIdle >= idleS * 1000) break;
    await sleep(Math.min(5000, tIdle + idleS * 1000 - nowMs()));
  }
  const idleWall = (nowMs() - tIdle) / 1000;
  const cpuPct = ((cpuSeconds(pid) - cpu0) / idleWall) * 100;
  const syns = (await synCount(1)) - syn0;
  const allCpu = ds.map((d) => cpuSeconds(d.pid));
  const st2 = await control(net.nodes[0].sock, 'status');
  const rollup = smapsRollup(pid);
  const split = smapsSplit(pid);
  const r = {
    name, total, count, listBytes: list.bytes, readyMs: ready[0] - t0, readyCpuS, readyAllMs: max(ready) - t0, listMs, loadMs, pingMs,
    idleS: idleWall, cpuPct, synPerMin: (syns / idleWall) * 60, syns,
    rssMax: max(samples.map((s) => s.rss)), rssLast: samples.at(-1).rss, rssAll: samples.at(-1).all,
    mem: st2.memory, rollup, split, peersUp: st2.peers.filter((p) => p.state === 'up' || p.state === 'keyed').length,
    cpuAllS: allCpu,
  };
  if (push) r.push = await pushPhase(net, ds);
  await Promise.all(ds.map((d) => h.stopDaemon(d)));
  return r;
}

async function pushPhase(net, ds) {
  const n1 = net.nodes[0];
  const before = (await control(n1.sock, 'bnl-status')).serial;
  const list = join(net.dir, 'bnl');
  await h.must(BNL, ['--file', list, 'modify', 'n2', 'tag=pushed'], { timeoutMs: 300_000 });
  await h.must(BNL, ['--file', list, 'sign', '--key', join(net.dir, 'bnl-signing.key')], { timeoutMs: 300_000 });
  await h.must('cp', [list, n1.bnl]);
  const want = before + 1;
  const rss = [];
  const sampler = setInterval(() => rss.push(MiB(rssKiB(ds[0].pid))), 200);
  // the control request `bnl push` and `cluevpn reload` send (the CLI's own start, 0.1–1 s of Node, is not the daemon's bound)
  const tCli = nowMs();
  const cli = control(n1.sock, 'reload-and-push').then(
    (res) => ({ code: 0, stdout: JSON.stringify(res), stderr: '' }),
    (err) => ({ code: 1, stdout: '', stderr: String(err.code ?? err.message) }),
  );
  const seenAt = new Array(ds.length).fill(NaN);
  let cliRes = null;
  void cli.then((x) => (cliRes = { ...x, at: nowMs() }));
  while (nowMs() < tCli + 15_000 && seenAt.some((x) => !Number.isFinite(x))) {
    await Promise.all(ds.map(async (d, k) => {
      if (Number.isFinite(seenAt[k])) return;
      const s = await control(d.node.sock, 'bnl-status').catch(() => null);
      if (s && s.serial >= want) seenAt[k] = nowMs();
    }));
    await sleep(20);
  }
  await cli;
  h.log(`push: watching n1 for ${opts.pushWatch} s of background pushes`);
  await sleep(Math.max(0, tCli + opts.pushWatch * 1000 - nowMs()));
  clearInterval(sampler);
  const missing = seenAt.map((x, k) => (Number.isFinite(x) ? null : net.nodes[k].name)).filter(Boolean);
  if (missing.length) problems.push(`push: never reached serial ${want} within 15 s: ${missing.join(' ')}`);
  if (cliRes.code !== 0) problems.push(`push: reload-and-push failed: ${cliRes.stderr.trim().slice(-300)}`);
  return {
    cliMs: cliRes.at - tCli, cliOut: (cliRes.stdout + cliRes.stderr).trim().split('\n').join(' / '),
    allMs: missing.length ? NaN : max(seenAt) - tCli, rssMax: max(rss), rssStart: rss[0],
  };
}

// ---------------------------------------------------------------- report
function report(A, routes, phases, meshOut) {
  const [c, n] = A.rows;
  out.write(`\nscale: issue 19 figures; lists of ${opts.compare} and ${opts.nodes} nodes (${opts.live} live daemons, the rest unreachable records)\n${stamp.text}\nload average at the end: ${readFileSync('/proc/loadavg', 'utf8').trim()}\n\n`);
  out.write(`A. list handling in process (one daemon's steps; ratio ${opts.nodes}/${opts.compare} = ${opts.nodes / opts.compare}× nodes: ~${opts.nodes / opts.compare}× is linear, ~${(opts.nodes / opts.compare) ** 2}× quadratic)\n\n`);
  const ratio = (k) => fmt(n[k] / c[k], 1);
  printTable([
    ['step', `${opts.compare} nodes`, `${opts.nodes} nodes`, 'ratio'],
    ['list bytes', c.listBytes, n.listBytes, ratio('listBytes')],
    ['load: parse, validate, verify (BnlStore.open), ms', fmt(c.loadMs, 1), fmt(n.loadMs, 1), ratio('loadMs')],
    ['diff from nothing, ms', fmt(c.diffStartMs, 1), fmt(n.diffStartMs, 1), ratio('diffStartMs')],
    ['diff, one node changed, ms', fmt(c.diffOneChangeMs, 1), fmt(n.diffOneChangeMs, 1), ratio('diffOneChangeMs')],
    ['data plane: add every peer, ms', fmt(c.addPeersMs, 1), fmt(n.addPeersMs, 1), ratio('addPeersMs')],
    ['data plane: remove 10 % of the peers, ms', fmt(c.removePeersMs, 1), fmt(n.removePeersMs, 1), ratio('removePeersMs')],
    ['data plane: V8 heap per peer, bytes', fmt(c.peerHeapBytesPerPeer), fmt(n.peerHeapBytesPerPeer), ratio('peerHeapBytesPerPeer')],
    ['data plane: ArrayBuffer (Buffer pool) per peer, bytes', fmt(c.peerArrayBufferBytesPerPeer), fmt(n.peerArrayBufferBytesPerPeer), ratio('peerArrayBufferBytesPerPeer')],
    ['LPM lookup (PrefixTable), ns', fmt(c.lpmNsPerLookup, 1), fmt(n.lpmNsPerLookup, 1), ratio('lpmNsPerLookup')],
    ['TUN: add every route (one rtnetlink exchange), ms', fmt(routes[0]?.addRoutesMs), fmt(routes[1]?.addRoutesMs), routes[0] && routes[1] ? fmt(routes[1].addRoutesMs / routes[0].addRoutesMs, 1) : 'n/a'],
  ]);
  if (A.gossip) {
    const g = A.gossip;
    const rr = (x) => (x ? (x.converged ? `${x.rounds} rounds` : `not converged (${x.informed} after ${x.rounds})`) : 'n/a');
    out.write(`\ngossip simulation, ${opts.nodes} nodes, fan-out 3 (${g.head}): pull ${rr(g.pull)}, push alone ${rr(g.push)}, push+pull ${rr(g.pushPull)} (target ≤ ${T.gossipRounds}: ${verdict(g.pushPull?.converged && g.pushPull.rounds <= T.gossipRounds)})\n`);
  }
  out.write(`\nB. live daemons (lab bscale, ${opts.live} hosts); figures of n1 unless marked\n\n`);
  const cols = phases.map((p) => p.name);
  const row = (label, f, target = '', ok) => [label, ...phases.map((p) => { try { return f(p); } catch { return 'n/a'; } }), target, ok === undefined ? '' : verdict(ok)];
  const big = phases.at(-1);
  const small = phases[0];
  const rollupText = (p) => `${fmt(p.rollup.Rss / 1024, 1)}`;
  printTable([
    ['figure', ...cols, 'target', 'verdict'],
    row('list bytes', (p) => p.listBytes),
    row('daemons running', (p) => p.count),
    row('spawn → control socket, ms', (p) => fmt(p.readyMs)),
    row('  CPU of n1 from spawn to its control socket, ms', (p) => fmt(p.readyCpuS * 1000)),
    row('list at start: load + verify, routes, peer table (listMs), ms', (p) => fmt(p.listMs), `≤ ${T.applyMs} (${opts.nodes})`, big.listMs <= T.applyMs),
    row('  of which load + verify (BNL loaded ms=)', (p) => fmt(p.loadMs)),
    row('spawn → first echo reply n1 → n2, ms', (p) => fmt(p.pingMs), `≤ ${T.pingMs} (${opts.nodes})`, big.pingMs <= T.pingMs),
    row('idle window, s', (p) => fmt(p.idleS)),
    row('idle CPU, % of one core (n1)', (p) => fmt(p.cpuPct, 2), `≤ ${T.cpuPct} (${opts.nodes})`, big.cpuPct <= T.cpuPct),
    row('new TCP connections opened per minute at idle (n1)', (p) => fmt(p.synPerMin, 1)),
    row('RSS at idle, max of the samples, MiB', (p) => fmt(p.rssMax, 1), `≤ ${T.rssBig} (${opts.nodes}); ≤ ${T.rssSmall} (small)`, big.rssMax <= T.rssBig && small.rssMax <= T.rssSmall),
    row('RSS of every daemon at the end, MiB', (p) => p.rssAll.map((x) => fmt(x, 1)).join('/')),
    row('where: smaps Rss, MiB', rollupText),
    row('  anonymous (V8 heap, malloc, buffers), MiB', (p) => fmt(p.rollup.Anonymous / 1024, 1)),
    row('  file-backed: node binary (code), MiB', (p) => fmt(p.split.fileNode / 1024, 1)),
    row('  file-backed: other (libs, addons, bundle), MiB', (p) => fmt(p.split.fileOther / 1024, 1)),
    row('  malloc [heap] (SQLite, OpenSSL, addons), MiB', (p) => fmt(p.split.mallocHeap / 1024, 1)),
    row('  other anonymous (V8 spaces, thread stacks, mmaps), MiB', (p) => fmt(p.split.anonOther / 1024, 1)),
    row('  V8 heap used / total, MiB', (p) => `${fmt(p.mem.heapUsed / 1048576, 1)}/${fmt(p.mem.heapTotal / 1048576, 1)}`),
    row('  external / arrayBuffers, MiB', (p) => `${fmt(p.mem.external / 1048576, 1)}/${fmt(p.mem.arrayBuffers / 1048576, 1)}`),
    row('peers with a session at the end (n1)', (p) => p.peersUp),
  ]);
  if (big.push) {
    const p = big.push;
    out.write(`\npush of the ${opts.nodes}-node list (reload-and-push on n1's control socket; every other node is a target, ${opts.nodes - opts.live} of them unreachable):\n`);
    printTable([
      ['figure', 'value', 'target', 'verdict'],
      ["reload-and-push (what `bnl push` sends) answered, ms from the request", fmt(p.cliMs), `≤ ${T.reloadMs}`, verdict(p.cliMs <= T.reloadMs)],
      [`all ${opts.live} live nodes hold the new serial, ms from the request`, fmt(p.allMs), '', ''],
      [`n1 RSS during the first ${opts.pushWatch} s of background pushes: start / max, MiB`, `${fmt(p.rssStart, 1)} / ${fmt(p.rssMax, 1)}`, `≤ ${T.rssBig}`, verdict(p.rssMax <= T.rssBig)],
    ]);
    out.write(`the daemon answered: ${p.cliOut}\n`);
  }
  if (meshOut) out.write(`\nD. live mesh (scripts/bench/mesh --nodes ${opts.mesh}):\n${meshOut}\n`);
}

async function main() {
  const A = inProcess();
  h.log(`lab bscale (${opts.live} hosts), network n1..n${opts.live}`);
  await h.labUp(opts.live);
  const routes = await routeInstall();
  const net = await h.makeNetwork(Array.from({ length: opts.live }, (_, k) => ({ name: `n${k + 1}`, addr: `192.0.2.${k + 1}` })));
  writeFileSync(join(h.work, 'bnl-base'), readFileSync(join(net.dir, 'bnl')));
  writeFileSync(join(h.work, 'bnl-base.draft'), readFileSync(join(net.dir, 'bnl.draft')));
  await h.must('ip', ['netns', 'exec', h.ns(1), 'iptables', '-w', '-A', ...SYN_RULE]);
  const phases = [];
  phases.push(await phase(net, 'small (3)', 3, 3, opts.shortIdle));
  phases.push(await phase(net, String(opts.compare), opts.compare, opts.live, opts.shortIdle));
  phases.push(await phase(net, String(opts.nodes), opts.nodes, opts.live, opts.idle, { push: true }));
  let meshOut = null;
  if (opts.mesh > 0) {
    h.log(`mesh of ${opts.mesh} (scripts/bench/mesh)`);
    const r = await h.run(join(REPO, 'scripts/bench/mesh'), ['--nodes', String(opts.mesh), '--pushes', '2', '--deadline', '300'], { timeoutMs: 1_800_000 });
    meshOut = `${r.stdout}${r.code !== 0 ? `\n(mesh exited ${r.code}: ${r.stderr.slice(-600)})` : ''}`;
    if (r.code !== 0) problems.push(`mesh --nodes ${opts.mesh} exited ${r.code}`);
  }
  const rebuilt = changedSince(stamp);
  if (rebuilt.length) problems.push(`dist of ${rebuilt.join(', ')} was rebuilt during the run: the figures may mix builds`);
  report(A, routes, phases, meshOut);
  const warn = net.nodes.flatMap((n) => grepFile(n.log, / (emerg|alert|crit|error|warning) /, 3).map((l) => `${n.name}: ${l}`));
  if (warn.length) out.write(`\nwarnings/errors in the last phase's logs (last 3 per node):\n${warn.join('\n')}\n`);
  if (problems.length) out.write(`\nproblems:\n${problems.map((p) => `  - ${p}`).join('\n')}\n`);
}

main().then(
  () => process.exit(problems.length ? 1 : 0),
  (err) => {
    process.stderr.write(`scale: ${err.stack ?? err}\n${problems.join('\n')}\n`);
    process.exit(1);
  },
);
void median;
