// NAT benchmark (scripts/bench/nat; see --help there).
//
// Lab bnat: rho (h1, relay), bravo (h2) and charlie (h3) behind their own
// MASQUERADE routers. Per round:
//  (a) charlie spawned fresh (state.db removed), rho already running; a
//      probe in h1 sends an echo to charlie's tunnel address every 10 ms; the
//      first reply minus the spawn time is "first ping through NAT".
//  (b) bravo spawned fresh; once both are keyed with rho (status), a probe
//      in h2 pings charlie: the first reply minus the probe's start is the
//      punch time (spliced negotiation + rendezvous + punching); then
//      bravo's status must say `direct` for charlie within 5 s: punch success.
// Then once, relayed throughput (issue 14 point 4): bravo and charlie
// restarted with keepalive=2 (path selection needs keepalives), iperf3 TCP
// bravo → charlie for THROUGHPUT_S s over the punched direct path; then UDP
// between them blocked in h3 (iptables, both directions) until both say
// `via rho`, and the same iperf3 again: relayed / direct; then unblocked.
// --throughput-rounds N (default 1) repeats that pair N times, alternated
// (direct again once both say `direct`), and reports the median ratio.
// Each iperf3 run also logs each daemon's CPU (cores busy), the machine's
// busy share and TCP retransmits; the end, rho's relay counters and the
// drops per peer (relay-limit: a member's relay budget was hit).
import { appendFileSync, existsSync, readFileSync, rmSync } from 'node:fs';
import { buildStamp, changedSince, control, createHarness, fmt, max, median, nowMs, printTable, sleep, tail, verdict } from './mesh-harness.mjs';

const opts = { repeat: 5, backend: undefined, loglevel: undefined, throughputRounds: 1 };
{
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--repeat' && /^[1-9][0-9]*$/.test(argv[i + 1] ?? '')) opts.repeat = Number(argv[++i]);
    else if (a === '--backend' && ['native', 'js'].includes(argv[i + 1])) opts.backend = argv[++i];
    else if (a === '--loglevel' && /^[0-7]$/.test(argv[i + 1] ?? '')) opts.loglevel = argv[++i];
    else if (a === '--throughput-rounds' && /^[1-9][0-9]*$/.test(argv[i + 1] ?? '')) opts.throughputRounds = Number(argv[++i]);
    else {
      process.stderr.write(`nat: bad argument '${a}' (--repeat N, --backend native|js, --loglevel 0-7, --throughput-rounds N)\n`);
      process.exit(2);
    }
  }
}
const TARGET_FIRST_MS = 1000;
const TARGET_RELAY_RATIO = 0.5;
const THROUGHPUT_S = 5;
const CHARLIE = '10.99.0.3';
const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const FIRST_REPLY = new URL('./first-reply.py', import.meta.url).pathname;

const h = createHarness('nat', 'bnat');
const stamp = buildStamp();
const problems = [];

/** Probe from host i: resolves with the wall-clock ms of the first echo reply from `addr`, NaN after `timeoutMs`. */
function probe(i, addr, timeoutMs) {
  const c = h.spawnInHost(i, PYTHON, [FIRST_REPLY, addr, String(timeoutMs / 1000), '0.01']);
  return new Promise((res) => {
    c.on('close', () => {
      const m = c.out.match(/^(\d+\.\d+)$/m);
      res(m ? Number(m[1]) * 1000 : NaN);
    });
  });
}

/** CPU seconds (user + system) a process has used so far; NaN once it is gone. */
function cpuSeconds(pid) {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
    return (Number(rest[11]) + Number(rest[12])) / 100; // utime, stime (fields 14, 15), USER_HZ 100
  } catch {
    return NaN;
  }
}

/** Busy and total jiffies of the whole machine (/proc/stat). */
function machineJiffies() {
  const v = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const idle = v[3] + (v[4] ?? 0);
  const total = v.reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

async function peerOf(node, peer) {
  try {
    return (await control(node.sock, 'status')).peers.find((p) => p.name === peer) ?? null;
  } catch (err) {
    return null;
  }
}

async function until(fn, timeoutMs) {
  const deadline = nowMs() + timeoutMs;
  while (nowMs() < deadline) {
    if (await fn()) return true;
    await sleep(50);
  }
  return false;
}

/** Time (ms after t0) of the first log line since t0 matching `re`, NaN when none. */
function logMark(file, t0, re) {
  for (const l of tail(file, 400).split('\n')) {
    const ts = Date.parse(l.slice(0, 24));
    if (Number.isFinite(ts) && ts >= t0 - 5 && re.test(l)) return ts - t0;
  }
  return NaN;
}

const wipe = (n) => {
  for (const f of [n.statedb, `${n.statedb}-wal`, `${n.statedb}-shm`]) if (existsSync(f)) rmSync(f);
};

async function main() {
  h.log('lab bnat (3 hosts; h2 and h3 behind MASQUERADE routers), network from make-network');
  await h.labUp(3, ['--nat', 'h2:udp-timeout=30', '--nat', 'h3:udp-timeout=30']);
  const net = await h.makeNetwork([
    { name: 'rho', addr: '192.0.2.1,relay' },
    { name: 'bravo', addr: '-' },
    { name: 'charlie', addr: '-' },
  ], { extra: opts.loglevel ? ['--loglevel', opts.loglevel] : [] });
  const [rhoN, bravoN, charlieN] = net.nodes;
  const extra = opts.backend ? ['--backend', opts.backend] : [];
  const rho = h.startDaemon(1, rhoN, extra);
  if (!Number.isFinite(await h.waitReady(rho))) throw new Error('rho did not start');

  const first = [];
  const startedAt = []; // ms after the spawn of charlie's "cluevpnd started" log line (Node start-up, TUN, wiring)
  const punch = [];
  let punched = 0;
  for (let round = 1; round <= opts.repeat; round++) {
    wipe(charlieN);
    wipe(bravoN);
    // (a) public → behind NAT, no traffic from charlie first
    const t0 = nowMs();
    const pr = probe(1, CHARLIE, 10_000);
    const charlie = h.startDaemon(3, charlieN, extra);
    const reply = await pr;
    first.push(reply - t0);
    startedAt.push(logMark(charlieN.log, t0, /cluevpnd started/));
    if (opts.loglevel) {
      const since = (f) => tail(f, 400).split('\n').filter((l) => Date.parse(l.slice(0, 24)) >= t0 - 5).map((l) => `    +${Date.parse(l.slice(0, 24)) - Math.round(t0)} ${l.slice(25, 200)}`).join('\n');
      h.log(`round ${round} (a), charlie:\n${since(charlieN.log)}\n  rho:\n${since(rhoN.log)}`);
    }
    if (!Number.isFinite(reply)) problems.push(`round ${round}: no reply rho → charlie within 10 s`);
    // (b) both behind NAT
    const bravo = h.startDaemon(2, bravoN, extra);
    const keyed = await until(async () => (await peerOf(bravoN, 'rho'))?.cipher && (await peerOf(charlieN, 'rho'))?.cipher, 20_000);
    if (!keyed) problems.push(`round ${round}: bravo and charlie not both keyed with rho within 20 s`);
    const t1 = nowMs();
    const r2 = await probe(2, CHARLIE, 15_000);
    punch.push(r2 - t1);
    const direct = Number.isFinite(r2) && (await until(async () => (await peerOf(bravoN, 'charlie'))?.path === 'direct', 5_000));
    if (direct) punched++;
    const pc = await peerOf(bravoN, 'charlie');
    h.log(`round ${round}: first ping rho → charlie ${fmt(reply - t0)} ms after charlie's spawn; bravo → charlie ${fmt(r2 - t1)} ms, path ${pc?.path ?? 'none'} at ${pc?.observedEndpoint ?? '-'}`);
    if (!Number.isFinite(r2)) problems.push(`round ${round}: no reply bravo → charlie within 15 s`);
    await Promise.all([h.stopDaemon(bravo), h.stopDaemon(charlie)]);
    await sleep(1000); // let the exits settle before the next spawn is timed
  }
  // relayed / direct throughput: one pair of runs per round, alternated
  const directs = [];
  const relayeds = [];
  const ratios = [];
  {
    wipe(charlieN);
    wipe(bravoN);
    for (const n of [bravoN, charlieN]) appendFileSync(n.conf, `keepalive=2\n${process.env.NAT_BENCH_MTU ? `mtu=${process.env.NAT_BENCH_MTU}\n` : ''}`);
    const charlie = h.startDaemon(3, charlieN, extra);
    const bravo = h.startDaemon(2, bravoN, extra);
    const server = h.spawnInHost(3, 'iperf3', ['-s']);
    // Where the CPU goes during each iperf3 run: each daemon's CPU seconds, the machine's busy share (both cores).
    const daemons = [['bravo', bravo], ['rho', rho], ['charlie', charlie]];
    const iperf = async (label) => {
      const c0 = daemons.map(([, d]) => cpuSeconds(d.pid));
      const m0 = machineJiffies();
      const t0 = nowMs();
      const r = await h.inHost(2, 'iperf3', ['-c', CHARLIE, '-t', String(THROUGHPUT_S), '-J'], { timeoutMs: (THROUGHPUT_S + 30) * 1000 });
      const wall = (nowMs() - t0) / 1000;
      const m1 = machineJiffies();
      const cpu = daemons.map(([name, d], i) => `${name} ${fmt((cpuSeconds(d.pid) - c0[i]) / wall, 2)}`).join(', ');
      h.log(`${label}: daemon CPU (cores busy, over ${fmt(wall, 1)} s): ${cpu}; machine ${fmt((100 * (m1.busy - m0.busy)) / (m1.total - m0.total))} % busy; loadavg ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`);
      try {
        const j = JSON.parse(r.stdout);
        h.log(`${label}: iperf3 retransmits ${j.end?.sum_sent?.retransmits ?? 'n/a'}`);
        return (j.end?.sum_received?.bits_per_second ?? NaN) / 1e6;
      } catch (err) {
        problems.push(`iperf3 printed no JSON (exit ${r.code}): ${r.stderr.slice(-200)} (${err})`);
        return NaN;
      }
    };
    const keyed = await until(async () => (await peerOf(bravoN, 'rho'))?.cipher && (await peerOf(charlieN, 'rho'))?.cipher, 20_000);
    const reached = keyed && Number.isFinite(await probe(2, CHARLIE, 15_000));
    const bothDirect = async () => (await peerOf(bravoN, 'charlie'))?.path === 'direct' && (await peerOf(charlieN, 'bravo'))?.path === 'direct';
    if (reached && (await until(bothDirect, 10_000))) {
      const block = (op) => Promise.all([
        h.must('ip', ['netns', 'exec', h.ns(3), 'iptables', '-w', op, 'INPUT', '-s', '192.0.2.2', '-p', 'udp', '-j', 'DROP']),
        h.must('ip', ['netns', 'exec', h.ns(3), 'iptables', '-w', op, 'OUTPUT', '-d', '192.0.2.2', '-p', 'udp', '-j', 'DROP']),
      ]);
      for (let round = 1; round <= opts.throughputRounds; round++) {
        if (round > 1 && !(await until(bothDirect, 30_000))) {
          problems.push(`throughput round ${round}: not direct again within 30 s of unblocking UDP`);
          break;
        }
        const direct = await iperf('direct');
        await block('-A');
        const t2 = nowMs();
        const via = await until(async () => (await peerOf(bravoN, 'charlie'))?.path === 'via rho' && (await peerOf(charlieN, 'bravo'))?.path === 'via rho', 30_000);
        h.log(`UDP bravo ↔ charlie blocked: ${via ? `both via rho after ${fmt(nowMs() - t2)} ms` : 'not relayed within 30 s'}`);
        const relayed = via ? await iperf('via rho') : NaN;
        if (!via) problems.push('bravo ↔ charlie not via rho within 30 s of blocking UDP');
        await block('-D');
        directs.push(direct);
        relayeds.push(relayed);
        ratios.push(relayed / direct);
        h.log(`round ${round}: iperf3 bravo → charlie ${THROUGHPUT_S} s: direct ${fmt(direct)} Mbit/s, via rho ${fmt(relayed)} Mbit/s, ratio ${fmt(relayed / direct, 2)}`);
        if (!via) break;
      }
      const rs = (await control(rhoN.sock, 'status')).relay;
      h.log(`rho forwarded ${rs?.forwarded ?? 'n/a'} datagrams, ${rs?.forwardedBytes ?? 'n/a'} bytes`);
      for (const [n, of] of [[rhoN, 'bravo'], [rhoN, 'charlie'], [charlieN, 'bravo'], [bravoN, 'charlie']]) {
        const p = await peerOf(n, of);
        const drops = Object.entries(p?.drops ?? {}).filter(([, v]) => v > 0);
        if (drops.length) h.log(`${n.name}: drops for ${of}: ${drops.map(([k, v]) => `${k} ${v}`).join(', ')}`);
      }
    } else problems.push('throughput: bravo → charlie not direct (no punch)');
    server.kill('SIGTERM');
    await Promise.all([h.stopDaemon(bravo), h.stopDaemon(charlie)]);
  }
  await h.stopDaemon(rho);

  const rebuilt = changedSince(stamp);
  if (rebuilt.length) problems.push(`dist of ${rebuilt.join(', ')} was rebuilt during the run: the figures may mix builds`);
  process.stdout.write(`\nnat: rho (relay, bnat-h1), bravo and charlie behind MASQUERADE (bnat-h2, bnat-h3), ${opts.repeat} rounds, backend ${opts.backend ?? 'default'}\n${stamp.text}\n\n`);
  const okFirst = first.every(Number.isFinite) ? max(first) <= TARGET_FIRST_MS : false;
  printTable([
    ['measure', 'median', 'max', 'goal', 'verdict'],
    ['start to first ping through NAT, ms (rho → charlie, from charlie\'s spawn)', fmt(median(first)), fmt(max(first)), `≤ ${TARGET_FIRST_MS}`, verdict(okFirst)],
    ['  of which charlie\'s own start-up, ms (log "cluevpnd started")', fmt(median(startedAt)), fmt(max(startedAt)), '-', 'n/a'],
    ['both behind NAT: first ping → first reply, ms (splice + rendezvous + punch)', fmt(median(punch)), fmt(max(punch)), '-', 'n/a'],
    ['punch success (bravo → charlie `direct`)', `${punched}/${opts.repeat}`, '', '100 %', verdict(punched === opts.repeat)],
    [`relayed throughput / direct throughput (iperf3 TCP ${THROUGHPUT_S} s, bravo → charlie: ${fmt(median(relayeds))} / ${fmt(median(directs))} Mbit/s)`, fmt(median(ratios), 2), '', `≥ ${TARGET_RELAY_RATIO}`, verdict(ratios.length === opts.throughputRounds && ratios.every(Number.isFinite) ? median(ratios) >= TARGET_RELAY_RATIO : false)],
  ]);
  process.stdout.write(`\nper round (ms): first ${first.map((x) => fmt(x)).join(', ')}; punch ${punch.map((x) => fmt(x)).join(', ')}\n`);
  process.stdout.write(`throughput rounds (direct / via rho, Mbit/s): ${directs.map((d, i) => `${fmt(d)} / ${fmt(relayeds[i])} = ${fmt(ratios[i], 2)}`).join('; ')}\n`);
  if (problems.length) {
    process.stdout.write(`\nproblems:\n${problems.map((p) => `  - ${p}`).join('\n')}\n`);
    for (const n of net.nodes) process.stdout.write(`\n${n.name} log (tail):\n${tail(n.log, 15)}\n`);
  }
}

main().then(
  () => process.exit(problems.length ? 1 : 0),
  (err) => {
    process.stderr.write(`nat: ${err.stack ?? err}\n`);
    process.exit(1);
  },
);
