// Mesh-scale benchmark (scripts/bench/mesh; see --help there).
//
//  1. lab bmesh with N hosts, network n1..nN from make-network (n_i in
//     bmesh-h<i>, tunnel address 10.99.0.i), all daemons spawned at t0;
//  2. all-pairs: every directed pair i→j pings (`ping -c 1 -w 3 -i 0.1`:
//     up to 3 s, one probe per 100 ms, until a reply), CONCURRENCY at a time,
//     failures re-queued until DEADLINE; the figure is the last pair's first
//     reply (its `ping -D` time) minus t0;
//  3. verification: every pair once more, one ping each (`-c 1 -W 2`), in
//     parallel with the same bound: all must answer;
//  4. BNL convergence, PUSHES times: on n1 edit the list (push 1 adds a node
//     record n<N+1> nobody runs, later pushes change its tag), `bnl sign`,
//     then `cluevpn -c n1 reload`; every node's control socket is polled
//     (`bnl-status`, every 20 ms, each node on its own) until it holds the
//     new serial (the time is taken when its answer arrives). Figures: from
//     the CLI's spawn, and from n1 holding it itself. Per-node control-channel
//     traffic of each push: iptables counters on TCP port 3406 in each host,
//     zeroed before the push and read 1 s after convergence (TLS handshakes,
//     the push, forwards and pulls — everything on the control channel).
import { join } from 'node:path';
import { readFileSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { BNL, CLUEVPN, buildStamp, changedSince, createHarness, fmt, grepFile, max, median, nowMs, openControl, printTable, rssKiB, sleep, tail, verdict } from './mesh-harness.mjs';

const opts = { nodes: 12, pushes: 3, concurrency: 8, deadlineS: 60, loglevel: null };
{
  const argv = process.argv.slice(2);
  const num = (i, a) => {
    if (!/^[1-9][0-9]*$/.test(argv[i] ?? '')) usage(`${a} needs a positive integer`);
    return Number(argv[i]);
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--nodes') opts.nodes = num(++i, a);
    else if (a === '--pushes') opts.pushes = num(++i, a);
    else if (a === '--concurrency') opts.concurrency = num(++i, a);
    else if (a === '--deadline') opts.deadlineS = num(++i, a);
    else if (a === '--loglevel') {
      if (!/^[0-7]$/.test(argv[++i] ?? '')) usage('--loglevel needs 0..7 (syslog levels: 5 notice, 6 info, 7 debug)');
      opts.loglevel = argv[i];
    }
    else usage(`unknown argument '${a}'`);
  }
  if (opts.nodes < 2 || opts.nodes > 200) usage('--nodes must be 2..200');
}
function usage(msg) {
  process.stderr.write(`mesh: ${msg}\n`);
  process.exit(2);
}
const TARGET_CONVERGENCE_MS = 3000;
/** Issue 19's bound for a push to reach every node of a 40-node mesh. */
const TARGET_CONVERGENCE_19_MS = 2000;
/** Seconds of rest, after the pushes, over which the daemons' CPU is averaged. */
const IDLE_S = 30;
const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;
/** utime + stime of a pid in seconds (NaN when gone). */
function cpuSeconds(pid) {
  try {
    const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / CLK_TCK;
  } catch (err) {
    if (err.code === 'ENOENT') return NaN;
    throw err;
  }
}
const N = opts.nodes;

/**
 * The kernel's neighbour (ARP/NDP) table is one table for every network
 * namespace of the machine, `gc_thresh3` entries at most (1 024 by
 * default). A full mesh needs N·(N−1) entries (1 560 at 40 nodes, plus other
 * labs'): past the limit the kernel cannot create an entry and drops the
 * datagram silently (`sendmmsg` succeeds, `UdpSndbufErrors` counts it,
 * dmesg "neighbor table overflow"). At 40 nodes one keepalive in five
 * vanished, so peers went silent and renegotiated ('no-reply') in a loop.
 * The limits are raised (never lowered) before the lab starts.
 */
function raiseNeighbourLimits() {
  const need = 2 * N * N + 1024;
  const out = [];
  for (const fam of ['ipv4', 'ipv6']) {
    const dir = `/proc/sys/net/${fam}/neigh/default`;
    const cur = [1, 2, 3].map((k) => Number(readFileSync(`${dir}/gc_thresh${k}`, 'utf8').trim()));
    if (cur[2] >= 2 * need) continue;
    writeFileSync(`${dir}/gc_thresh2`, String(Math.max(cur[1], need)));
    writeFileSync(`${dir}/gc_thresh3`, String(Math.max(cur[2], 2 * need)));
    out.push(`${fam} gc_thresh2/3 ${cur[1]}/${cur[2]} → ${Math.max(cur[1], need)}/${Math.max(cur[2], 2 * need)}`);
  }
  return out;
}
/** Kernel count of neighbour-table overflows (ARP, all namespaces): `table_fulls` summed over CPUs. */
function arpTableFulls() {
  const lines = readFileSync('/proc/net/stat/arp_cache', 'utf8').trim().split('\n');
  const col = lines[0].trim().split(/\s+/).indexOf('table_fulls');
  return col < 0 ? NaN : lines.slice(1).reduce((a, l) => a + parseInt(l.trim().split(/\s+/)[col], 16), 0);
}
const h = createHarness('mesh', 'bmesh');
const problems = [];
const addr = (j) => `10.99.0.${j}`;

/** Runs `jobs` (async functions) with at most `limit` at a time. */
async function pool(jobs, limit) {
  const q = [...jobs];
  const out = [];
  await Promise.all(
    Array.from({ length: Math.min(limit, q.length) }, async () => {
      for (let job = q.shift(); job; job = q.shift()) out.push(await job());
    }),
  );
  return out;
}

/** One ping i→j; { ok, replyAt (wall ms from ping -D) }. */
async function pingPair(i, j, args) {
  const r = await h.inHost(i, 'ping', ['-D', '-n', ...args, addr(j)], { timeoutMs: 10_000 });
  const m = r.stdout.match(/^\[(\d+\.\d+)\].*bytes from/m);
  return { ok: r.code === 0 && m !== null, replyAt: m ? Number(m[1]) * 1000 : NaN, out: r.stdout + r.stderr };
}

/** iptables counting rules for TCP port 3406 in every host. */
async function counters(op) {
  const res = [];
  for (let i = 1; i <= N; i++) {
    if (op === 'add') {
      for (const [chain, dir] of [['INPUT', '--dport'], ['INPUT', '--sport'], ['OUTPUT', '--dport'], ['OUTPUT', '--sport']]) {
        await h.must('ip', ['netns', 'exec', h.ns(i), 'iptables', '-w', '-A', chain, '-p', 'tcp', dir, '3406']);
      }
    } else if (op === 'zero') {
      await h.must('ip', ['netns', 'exec', h.ns(i), 'iptables', '-w', '-Z']);
    } else {
      const r = await h.must('ip', ['netns', 'exec', h.ns(i), 'iptables', '-w', '-L', '-v', '-x', '-n']);
      let chain = '';
      const c = { inB: 0, outB: 0, inP: 0, outP: 0 };
      for (const line of r.stdout.split('\n')) {
        const ch = line.match(/^Chain (\S+)/);
        if (ch) {
          chain = ch[1];
          continue;
        }
        const m = line.match(/^\s*(\d+)\s+(\d+)\s+.*tcp.*[sd]pt:3406/);
        if (!m) continue;
        if (chain === 'INPUT') (c.inP += Number(m[1])), (c.inB += Number(m[2]));
        if (chain === 'OUTPUT') (c.outP += Number(m[1])), (c.outB += Number(m[2]));
      }
      res.push(c);
    }
  }
  return res;
}

const stamp = buildStamp();

async function main() {
  for (const line of raiseNeighbourLimits()) h.log(`neighbour table limits raised (one table for every namespace): ${line}`);
  const fulls0 = arpTableFulls();
  h.log(`lab bmesh (${N} hosts), network n1..n${N} from make-network`);
  await h.labUp(N);
  const spec = Array.from({ length: N }, (_, k) => ({ name: `n${k + 1}`, addr: `192.0.2.${k + 1}` }));
  const net = await h.makeNetwork(spec, { extra: opts.loglevel === null ? [] : ['--loglevel', opts.loglevel] });
  await counters('add');

  // 1. start all daemons
  const t0 = nowMs();
  const ds = net.nodes.map((n, k) => h.startDaemon(k + 1, n));
  const ready = await Promise.all(ds.map((d) => h.waitReady(d, 90_000)));
  ds.forEach((d, k) => {
    if (!Number.isFinite(ready[k])) problems.push(`${d.node.name} never opened its control socket:\n${tail(d.node.log, 10)}\n${d.child.out.slice(-500)}`);
  });
  if (problems.length) throw new Error('daemons did not start');
  const readyAll = max(ready) - t0;
  h.log(`all ${N} daemons ready after ${fmt(readyAll)} ms`);

  // 2. all pairs, until each answered once
  const pairs = [];
  for (let i = 1; i <= N; i++) for (let j = 1; j <= N; j++) if (i !== j) pairs.push([i, j]);
  const firstReply = new Map();
  const attempts = new Map();
  const deadline = nowMs() + opts.deadlineS * 1000;
  let queue = [...pairs];
  while (queue.length && nowMs() < deadline) {
    const failed = [];
    await pool(
      queue.map(([i, j]) => async () => {
        attempts.set(`${i}-${j}`, (attempts.get(`${i}-${j}`) ?? 0) + 1);
        const r = await pingPair(i, j, ['-c', '1', '-w', '3', '-i', '0.1']);
        if (r.ok) firstReply.set(`${i}-${j}`, r.replyAt);
        else failed.push([i, j]);
      }),
      opts.concurrency,
    );
    queue = failed;
  }
  const allPairsMs = queue.length ? NaN : max([...firstReply.values()]) - t0;
  const retried = [...attempts.values()].filter((a) => a > 1).length;
  h.log(`all-pairs: ${firstReply.size}/${pairs.length} answered, last after ${fmt(allPairsMs)} ms from spawn, ${retried} pairs needed more than one 3 s probe`);
  if (queue.length) problems.push(`${queue.length} pairs never answered within ${opts.deadlineS} s: ${queue.slice(0, 20).map(([i, j]) => `n${i}→n${j}`).join(' ')}${queue.length > 20 ? ' …' : ''}`);

  // 3. verification: one ping per pair
  const verify = await pool(pairs.map(([i, j]) => async () => ({ i, j, ...(await pingPair(i, j, ['-c', '1', '-W', '2'])) })), opts.concurrency);
  const verifyFailed = verify.filter((v) => !v.ok);
  h.log(`verification: ${verify.length - verifyFailed.length}/${pairs.length} pairs answered one ping`);
  if (verifyFailed.length) problems.push(`verification: ${verifyFailed.length} pairs did not answer one ping (-c 1 -W 2): ${verifyFailed.slice(0, 20).map((v) => `n${v.i}→n${v.j}`).join(' ')}${verifyFailed.length > 20 ? ' …' : ''}`);

  // 4. BNL convergence
  const ctl = await Promise.all(net.nodes.map((n) => openControl(n.sock)));
  const serialOf = async () => Promise.all(ctl.map((c) => c.request('bnl-status').then((b) => b.serial, () => NaN)));
  const n1 = net.nodes[0];
  const newName = `n${N + 1}`;
  const pushes = [];
  for (let p = 1; p <= opts.pushes; p++) {
    const before = await serialOf();
    const base = Math.max(...before.filter(Number.isFinite));
    const edit = p === 1
      ? ['add', newName, `ipv4=192.0.2.${N + 1}`, 'port=3406', `subnet=10.99.0.${N + 1}/32`, `subnet=fd99::${(N + 1).toString(16)}/128`]
      : ['modify', newName, `tag=push${p}`];
    await h.must(BNL, ['--file', n1.bnl, ...edit]);
    await h.must(BNL, ['--file', n1.bnl, 'sign', '--key', join(net.dir, 'bnl-signing.key')]);
    const want = base + 1;
    await counters('zero');
    const tCli = nowMs();
    const cli = h.run(CLUEVPN, ['-c', n1.conf, 'reload'], { timeoutMs: 30_000 });
    // Each node polled on its own (every 20 ms until it holds the serial), so
    // one daemon slow to answer does not delay the times seen for the others.
    const seenAt = new Array(N).fill(NaN);
    const stop = tCli + 15_000;
    await Promise.all(
      ctl.map(async (c, k) => {
        while (nowMs() < stop) {
          const v = await c.request('bnl-status').then((b) => b.serial, () => NaN);
          if (v >= want) {
            seenAt[k] = nowMs();
            return;
          }
          await sleep(20);
        }
      }),
    );
    const cliRes = await cli;
    await sleep(1000);
    const traffic = await counters('read');
    const conv = seenAt.map((x) => x - tCli);
    const fromN1 = seenAt.every(Number.isFinite) ? max(seenAt) - seenAt[0] : NaN; // a node that never got it: no "all" figure
    pushes.push({ p, want, conv, allMs: conv.every(Number.isFinite) ? max(conv) : NaN, fromN1Ms: fromN1, cliMs: cliRes.ms, cliOut: (cliRes.stdout + cliRes.stderr).trim(), cliCode: cliRes.code, traffic });
    h.log(`push ${p} (serial ${want}): all ${N} nodes after ${fmt(max(conv))} ms from 'cluevpn reload' (${fmt(fromN1)} ms after n1 held it); cli: ${cliRes.code} ${(cliRes.stdout + cliRes.stderr).trim().split('\n')[0]}`);
    if (cliRes.code !== 0) problems.push(`push ${p}: cluevpn reload exited ${cliRes.code}: ${cliRes.stderr.trim()}`);
    const missing = seenAt.map((x, k) => (Number.isFinite(x) ? null : net.nodes[k].name)).filter(Boolean);
    if (missing.length) problems.push(`push ${p}: never reached serial ${want} within 15 s: ${missing.join(' ')}`);
  }
  // final state as `cluevpn status --json` shows it (n1) and over the sockets (all)
  const st1 = await h.run(CLUEVPN, ['-c', n1.conf, 'status', '--json']);
  let n1Status = null;
  try {
    n1Status = JSON.parse(st1.stdout);
  } catch (err) {
    problems.push(`cluevpn status --json on n1 printed no JSON (${err.message}): ${st1.stderr.trim()}`);
  }
  const statuses = await Promise.all(ctl.map((c) => c.request('status').catch(() => null)));
  for (const c of ctl) c.close();

  // total resident memory and CPU of the daemons: since spawn, and averaged over IDLE_S s of rest
  // (after the control connections above are closed: the daemon closes idle ones)
  const cpuSinceSpawn = ds.map((d) => cpuSeconds(d.pid));
  const wallSinceSpawn = (nowMs() - t0) / 1000;
  await sleep(2000);
  const cpuIdle0 = ds.map((d) => cpuSeconds(d.pid));
  const tIdle = nowMs();
  await sleep(IDLE_S * 1000);
  const idleWall = (nowMs() - tIdle) / 1000;
  const cpuIdle = ds.map((d, k) => cpuSeconds(d.pid) - cpuIdle0[k]);
  const rss = ds.map((d) => rssKiB(d.pid) / 1024);
  const loadavg = readFileSync('/proc/loadavg', 'utf8').trim();
  const arpFulls = arpTableFulls() - fulls0;
  if (arpFulls > 0) problems.push(`the kernel's neighbour table overflowed ${arpFulls} times during the run (datagrams dropped silently; other labs share the table)`);

  // ---------------------------------------------------------------- report
  const out = process.stdout;
  const rebuilt = changedSince(stamp);
  if (rebuilt.length) problems.push(`dist of ${rebuilt.join(', ')} was rebuilt during the run: the figures may mix builds`);
  out.write(`\nmesh: ${N} cluevpnd in bmesh-h1..h${N} (full mesh, default settings${opts.loglevel === null ? '' : `, log level ${opts.loglevel}`}), ${opts.pushes} pushes, ping concurrency ${opts.concurrency}\n${stamp.text}\n\n`);
  const pushAll = pushes.map((x) => x.allMs);
  printTable([
    ['figure', 'value', 'target', 'verdict'],
    [`daemons ready (all ${N} control sockets up), ms from spawn`, fmt(readyAll), '', ''],
    [`all ${pairs.length} directed pairs answered once, ms from spawn`, fmt(allPairsMs), '', verdict(queue.length === 0)],
    [`verification: pairs answering one ping each`, `${verify.length - verifyFailed.length}/${pairs.length}`, `${pairs.length}/${pairs.length}`, verdict(verifyFailed.length === 0)],
    [`BNL push to all ${N}, median of ${pushes.length}, ms from 'cluevpn reload'`, fmt(median(pushAll)), '', ''],
    [`BNL push to all ${N}, max of ${pushes.length}, ms from 'cluevpn reload'`, fmt(max(pushAll)), `≤ ${TARGET_CONVERGENCE_MS}`, verdict(pushAll.every(Number.isFinite) && max(pushAll) <= TARGET_CONVERGENCE_MS)],
    [`BNL push to all ${N}, max of ${pushes.length}, ms from 'cluevpn reload' (issue 19 bound)`, fmt(max(pushAll)), `≤ ${TARGET_CONVERGENCE_19_MS}`, verdict(pushAll.every(Number.isFinite) && max(pushAll) <= TARGET_CONVERGENCE_19_MS)],
    [`BNL push, median ms from n1 holding it to all ${N}`, fmt(median(pushes.map((x) => x.fromN1Ms))), '', ''],
    [`RSS of all ${N} daemons at the end, total MiB (min / max per daemon)`, `${fmt(rss.reduce((a, b) => a + b, 0), 0)} (${fmt(Math.min(...rss), 1)} / ${fmt(Math.max(...rss), 1)})`, '', ''],
    [`CPU of all daemons since spawn (${fmt(wallSinceSpawn)} s), s; % of one core`, `${fmt(cpuSinceSpawn.reduce((a, b) => a + b, 0), 1)}; ${fmt((cpuSinceSpawn.reduce((a, b) => a + b, 0) / wallSinceSpawn) * 100, 1)} %`, '', ''],
    [`CPU of all daemons at rest (${fmt(idleWall)} s after the pushes), % of one core (max per daemon)`, `${fmt((cpuIdle.reduce((a, b) => a + b, 0) / idleWall) * 100, 1)} % (${fmt((Math.max(...cpuIdle) / idleWall) * 100, 2)} %)`, '', ''],
    ['load average at the end (/proc/loadavg)', loadavg, '', ''],
    ['neighbour-table overflows during the run (kernel, every namespace)', fmt(arpFulls), '0', verdict(arpFulls === 0)],
    [`'cluevpn reload' wall time (Node start + reload + push), median ms`, fmt(median(pushes.map((x) => x.cliMs))), '', ''],
  ]);
  out.write(`\nper node: ready ms after spawn; ms until it held each pushed serial (from 'cluevpn reload'); control-channel bytes (TCP 3406, in/out) during push 1 and median of the others\n\n`);
  const rows = [['node', 'ready', ...pushes.map((x) => `push${x.p} ms`), 'push1 in B', 'push1 out B', 'push1 pkts', 'later in B', 'later out B']];
  for (let k = 0; k < N; k++) {
    const t1 = pushes[0]?.traffic[k];
    const later = pushes.slice(1).map((x) => x.traffic[k]);
    rows.push([
      net.nodes[k].name,
      fmt(ready[k] - t0),
      ...pushes.map((x) => fmt(x.conv[k])),
      t1 ? t1.inB : 'n/a',
      t1 ? t1.outB : 'n/a',
      t1 ? t1.inP + t1.outP : 'n/a',
      later.length ? fmt(median(later.map((c) => c.inB))) : 'n/a',
      later.length ? fmt(median(later.map((c) => c.outB))) : 'n/a',
    ]);
  }
  printTable(rows);
  const sizeNote = statuses[0] ? `list of ${statuses[0].bnl.nodes} nodes` : '';
  out.write(`\n${sizeNote}; cluevpn reload said: ${pushes.map((x) => `#${x.p} "${x.cliOut.split('\n')[0]}"`).join(', ')}\n`);
  if (n1Status) {
    const states = n1Status.peers.map((p) => `${p.name}:${p.state}/serial ${p.bnlSerial}`).join(' ');
    out.write(`n1 'cluevpn status --json': own serial ${n1Status.bnl.serial}; peers ${states}\n`);
  }
  const negs = statuses.map((s, k) => (s ? `${net.nodes[k].name} ${s.peers.reduce((a, p) => a + p.negotiations, 0)}` : `${net.nodes[k].name} ?`));
  out.write(`negotiations completed per node (sum over its peers): ${negs.join(', ')}\n`);
  const storm = statuses.map((s, k) => [net.nodes[k].name, s ? s.peers.reduce((a, p) => a + p.negotiations, 0) : 0]).filter(([, c]) => c > 3 * (N - 1));
  if (storm.length) problems.push(`more than 3 negotiations per peer since start (a renegotiation loop?): ${storm.map(([n, c]) => `${n} ${c}`).join(', ')}`);
  const warnLines = net.nodes.flatMap((n) => grepFile(n.log, / (emerg|alert|crit|error|warning) /, 3).map((l) => `${n.name}: ${l}`));
  if (warnLines.length) out.write(`\nwarnings/errors in the daemons' logs (last 3 per node):\n${warnLines.join('\n')}\n`);
  if (problems.length) {
    out.write(`\nproblems:\n${problems.map((p) => `  - ${p}`).join('\n')}\n`);
    const negLines = (n) => grepFile(n.log, /negotiat|session|rekey/i, 8).join('\n') || '(no negotiation lines at this log level)';
    out.write(`\nn1 log, last negotiation lines:\n${negLines(net.nodes[0])}\nn${N} log, last negotiation lines:\n${negLines(net.nodes[N - 1])}\n`);
  }
}

main().then(
  () => process.exit(problems.length ? 1 : 0),
  (err) => {
    process.stderr.write(`mesh: ${err.stack ?? err}\n${problems.join('\n')}\n`);
    process.exit(1);
  },
);
