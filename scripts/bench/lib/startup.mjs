// Start-up benchmark (scripts/bench/startup; see --help there).
//
// Two lab hosts (bstart-h1, bstart-h2), one network from make-network, then
// REPEAT rounds of:
//  1. fresh: state.db of both removed; both daemons spawned at t0; a probe in
//     h1 sends an ICMP echo to h2's tunnel address every 10 ms; the wall-clock
//     time of the first echo reply minus t0 is the figure. The probe
//     (--probe quiet, the default) is ONE process, lib/first-reply.py; the
//     old one (--probe shell) restarted `ping -D -i 0.01 -c 1 -w 3` in a shell
//     loop every 10 ms while the route was missing, and that fork storm took
//     CPU from the daemons it timed (kept for comparison). The control socket
//     appearing marks "daemon ready" (Node start-up + wiring, no network).
//     `status` afterwards must show a negotiated, not restored, session.
//  2. restart: beta alone stopped (SIGTERM) and spawned again keeping
//     state.db, alpha running; same probe. Beta's `status` must show the
//     session restored and 0 negotiations: it was resumed with an epoch
//     alpha granted (one control-channel exchange), not renegotiated.
//  3. both: both daemons stopped and spawned again keeping state.db.
//     Neither can vouch for the other's epochs, so the pair renegotiates
//     (alpha's `status`: a negotiation, not restored).
// Reports median and max of each, the targets (≤ 1 s fresh, ≤ 0.3 s for
// both restarts) and, for reference, bare `node -e 0` and the daemon's own
// "started" log line.
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { buildStamp, changedSince, createHarness, control, fmt, grepFile, max, median, nowMs, printTable, sleep, tail, verdict } from './mesh-harness.mjs';

const opts = { repeat: 5, backend: undefined, loglevel: undefined, probe: 'quiet' };
{
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--repeat' && /^[1-9][0-9]*$/.test(argv[i + 1] ?? '')) opts.repeat = Number(argv[++i]);
    else if (a === '--backend' && ['native', 'js'].includes(argv[i + 1])) opts.backend = argv[++i];
    else if (a === '--loglevel' && /^[0-7]$/.test(argv[i + 1] ?? '')) opts.loglevel = argv[++i];
    else if (a === '--probe' && ['quiet', 'shell'].includes(argv[i + 1])) opts.probe = argv[++i];
    else {
      process.stderr.write(`startup: bad argument '${a}' (--repeat N, --backend native|js, --loglevel 0-7, --probe quiet|shell)\n`);
      process.exit(2);
    }
  }
}
const TARGET_FRESH_MS = 1000;
const TARGET_RESTART_MS = 300;
const PEER_ADDR = '10.99.0.2';

const h = createHarness('startup', 'bstart');
const stamp = buildStamp();
const problems = [];
const slow = []; // rounds slower than the fresh target, with their log lines

/** Time (ms after t0) of the first log line since t0 matching `re`, NaN when none. */
function logMark(file, t0, re) {
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if (err.code === 'ENOENT') return NaN;
    throw err;
  }
  for (const l of text.split('\n')) {
    const ts = Date.parse(l.slice(0, 24));
    if (Number.isFinite(ts) && ts >= t0 - 5 && re.test(l)) return ts - t0;
  }
  return NaN;
}

/** Log lines written since `t0` (wall ms), indented. */
function roundLog(file, t0) {
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if (err.code === 'ENOENT') return '    (no log)';
    throw err;
  }
  const lines = text.split('\n').filter((l) => {
    const ts = Date.parse(l.slice(0, 24));
    return Number.isFinite(ts) && ts >= t0 - 5;
  });
  return lines.slice(0, 30).map((l) => `    ${l}`).join('\n') || '    (nothing logged at this level; --loglevel 6 shows negotiation attempts)';
}

/** Python without a version-manager shim in front (pyenv's costs ~0.3 s of CPU per start). */
const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const FIRST_REPLY = new URL('./first-reply.py', import.meta.url).pathname;

/** Probe from h1: resolves with the wall-clock ms of the first echo reply, NaN after `timeoutMs`. */
function probe(timeoutMs) {
  if (opts.probe === 'quiet') {
    const c = h.spawnInHost(1, PYTHON, [FIRST_REPLY, PEER_ADDR, String(timeoutMs / 1000), '0.01']);
    return new Promise((res) => {
      c.on('close', () => {
        const m = c.out.match(/^(\d+\.\d+)$/m);
        res(m ? Number(m[1]) * 1000 : NaN);
      });
    });
  }
  // -c 1 -w 3: with a deadline, ping keeps sending (every 10 ms) until one reply
  // arrives. Before the daemon has added its route, ping exits at once
  // (Network is unreachable): retry after 10 ms.
  const script = `end=$(( $(date +%s) + ${Math.ceil(timeoutMs / 1000)} ))
while [ "$(date +%s)" -le "$end" ]; do
  ping -D -n -i 0.01 -c 1 -w 3 ${PEER_ADDR} 2>/dev/null | grep -m1 'bytes from' && exit 0
  sleep 0.01
done
exit 1`;
  const c = h.spawnInHost(1, 'sh', ['-c', script]);
  return new Promise((res) => {
    c.on('close', () => {
      const m = c.out.match(/^\[(\d+\.\d+)\].*bytes from/m);
      res(m ? Number(m[1]) * 1000 : NaN);
    });
  });
}

/** Spawns the daemons of `nodes` at indexes `which` (default all) and times the first echo reply through the tunnel. */
async function startSome(nodes, which = nodes.map((_, k) => k)) {
  const t0 = nowMs();
  const pr = probe(5000);
  const ds = which.map((k) => h.startDaemon(k + 1, nodes[k], opts.backend ? ['--backend', opts.backend] : []));
  const ready = await Promise.all(ds.map((d) => h.waitReady(d)));
  const reply = await pr;
  const started = which.map((k) => nodes[k]);
  const loadedMs = started.map((n) => logMark(n.log, t0, /BNL loaded/));
  const startedMs = started.map((n) => logMark(n.log, t0, /cluevpnd started/));
  return { ds, t0, readyMs: ready.map((r) => r - t0), pingMs: reply - t0, loadedMs, startedMs };
}

async function stopBoth(ds) { // stops the daemons given (one or both)
  await Promise.all(ds.map((d) => h.stopDaemon(d)));
}

async function main() {
  h.log('lab bstart (2 hosts), network from make-network');
  await h.labUp(2);
  const net = await h.makeNetwork([
    { name: 'alpha', addr: '192.0.2.1' },
    { name: 'beta', addr: '192.0.2.2' },
  ], { extra: opts.loglevel ? ['--loglevel', opts.loglevel] : [] });

  // Reference: bare Node start-up.
  const nodeBare = [];
  for (let i = 0; i < 3; i++) nodeBare.push((await h.must('node', ['-e', '0'])).ms);
  // bin/cluevpnd drops NODE_EXTRA_CA_CERTS (Node parses that file before any JavaScript).
  const nodeBareNoCa = [];
  if (process.env.NODE_EXTRA_CA_CERTS) for (let i = 0; i < 3; i++) nodeBareNoCa.push((await h.must('env', ['-u', 'NODE_EXTRA_CA_CERTS', 'node', '-e', '0'])).ms);

  const fresh = [];
  const restart = [];
  const both = [];
  for (let round = 1; round <= opts.repeat; round++) {
    for (const n of net.nodes) for (const f of [n.statedb, `${n.statedb}-wal`, `${n.statedb}-shm`]) if (existsSync(f)) rmSync(f);
    let r = await startSome(net.nodes);
    let st = await statusOf(net.nodes[0]);
    fresh.push({ ...r, peer: st });
    h.log(`round ${round} fresh:   ready ${r.readyMs.map((x) => fmt(x)).join('/')} ms, first reply ${fmt(r.pingMs)} ms (negotiations ${st?.negotiations}, restored ${st?.restored})`);
    if (r.pingMs > TARGET_FRESH_MS) slow.push(`round ${round} fresh: ${fmt(r.pingMs)} ms; alpha's log of the round:\n${roundLog(net.nodes[0].log, r.t0)}\n  beta's:\n${roundLog(net.nodes[1].log, r.t0)}`);
    if (!Number.isFinite(r.pingMs)) problems.push(`round ${round} fresh: no echo reply within 5 s`);
    else if (st && (st.restored || st.negotiations < 1)) problems.push(`round ${round} fresh: status says restored=${st.restored} negotiations=${st.negotiations} (expected a negotiation)`);
    await sleep(300); // let both sides settle (epoch notes written) before the restart
    // (b) beta alone restarts keeping state.db; alpha (h1, the prober's host) stays up and grants beta its epoch
    const [alphaD, betaD] = r.ds;
    await stopBoth([betaD]);
    r = await startSome(net.nodes, [1]);
    st = await statusOf(net.nodes[1], 'alpha');
    restart.push({ ...r, peer: st });
    h.log(`round ${round} restart: ready ${r.readyMs.map((x) => fmt(x)).join('/')} ms, first reply ${fmt(r.pingMs)} ms (beta: negotiations ${st?.negotiations}, restored ${st?.restored})`);
    if (r.pingMs > TARGET_RESTART_MS) slow.push(`round ${round} restart: ${fmt(r.pingMs)} ms; alpha's log of the round:\n${roundLog(net.nodes[0].log, r.t0)}\n  beta's:\n${roundLog(net.nodes[1].log, r.t0)}`);
    if (!Number.isFinite(r.pingMs)) problems.push(`round ${round} restart: no echo reply within 5 s`);
    else if (st && (!st.restored || st.negotiations !== 0)) problems.push(`round ${round} restart: beta's status says restored=${st.restored} negotiations=${st.negotiations} (expected the stored session, resumed without renegotiation)`);
    await sleep(300);
    await stopBoth([alphaD, r.ds[0]]);

    // (c) both restart keeping state.db: neither can vouch for the other's epochs, so they renegotiate fresh keys
    r = await startSome(net.nodes);
    st = await statusOf(net.nodes[0]);
    both.push({ ...r, peer: st });
    h.log(`round ${round} both:    ready ${r.readyMs.map((x) => fmt(x)).join('/')} ms, first reply ${fmt(r.pingMs)} ms (negotiations ${st?.negotiations}, restored ${st?.restored})`);
    if (r.pingMs > TARGET_RESTART_MS) slow.push(`round ${round} both: ${fmt(r.pingMs)} ms; alpha's log of the round:\n${roundLog(net.nodes[0].log, r.t0)}\n  beta's:\n${roundLog(net.nodes[1].log, r.t0)}`);
    if (!Number.isFinite(r.pingMs)) problems.push(`round ${round} both: no echo reply within 5 s`);
    else if (st && (st.restored || st.negotiations < 1)) problems.push(`round ${round} both: status says restored=${st.restored} negotiations=${st.negotiations} (expected a renegotiation)`);
    await stopBoth(r.ds);
  }

  const startedLine = grepFile(net.nodes[0].log, /cluevpnd started/, 1)[0] ?? '(none)';
  const row = (label, xs, target) => {
    const ping = xs.map((x) => x.pingMs);
    const ready = xs.map((x) => Math.max(...x.readyMs));
    const ok = ping.every(Number.isFinite) ? max(ping) <= target : false;
    const loaded = xs.map((x) => Math.max(...x.loadedMs));
    const started = xs.map((x) => Math.max(...x.startedMs));
    return [label, fmt(median(loaded)), fmt(median(started)), fmt(median(ready)), fmt(max(ready)), fmt(median(ping)), fmt(max(ping)), `≤ ${target}`, verdict(ok)];
  };
  const rebuilt = changedSince(stamp);
  if (rebuilt.length) problems.push(`dist of ${rebuilt.join(', ')} was rebuilt during the run: the figures may mix builds`);
  process.stdout.write(`\nstart-up: 2 daemons (alpha in bstart-h1, beta in bstart-h2), ${opts.repeat} rounds, backend ${opts.backend ?? 'default'}\n${stamp.text}\n`);
  process.stdout.write('ms after t0 = both daemons spawned (slower of the two daemons): loaded = log "BNL loaded" (Node start, imports, config, BNL verified);\n');
  process.stdout.write(`started = log "cluevpnd started" (TUN, data plane, state, control channel up); ready = control socket seen; reply = first echo reply h1 → 10.99.0.2 (echo every 10 ms, probe ${opts.probe === 'quiet' ? 'quiet: one process' : 'shell: ping restarted in a loop'})\n\n`);
  printTable([
    ['case', 'loaded med', 'started med', 'ready med', 'ready max', 'reply med', 'reply max', 'target', 'verdict (max)'],
    row('fresh negotiation (no state.db)', fresh, TARGET_FRESH_MS),
    row('restart of one node keeping state.db (resumed: the peer grants an epoch)', restart, TARGET_RESTART_MS),
    row('both restart keeping state.db (renegotiated: neither can vouch)', both, TARGET_RESTART_MS),
  ]);
  process.stdout.write(`\nper round (ms, ready alpha/beta, reply): ${fresh.map((f, i) => `#${i + 1} fresh ${fmt(f.readyMs[0])}/${fmt(f.readyMs[1])}, ${fmt(f.pingMs)}; restart beta ${fmt(restart[i].readyMs[0])}, ${fmt(restart[i].pingMs)}; both ${fmt(both[i].readyMs[0])}/${fmt(both[i].readyMs[1])}, ${fmt(both[i].pingMs)}`).join(' | ')}\n`);
  process.stdout.write(`reference: bare 'node -e 0' ${nodeBare.map((x) => fmt(x)).join(', ')} ms${nodeBareNoCa.length ? `; without NODE_EXTRA_CA_CERTS (as bin/cluevpnd runs) ${nodeBareNoCa.map((x) => fmt(x)).join(', ')} ms` : ''}\n`);
  process.stdout.write(`last start of alpha in its log: ${startedLine}\n`);
  if (slow.length) process.stdout.write(`\nrounds slower than ${TARGET_FRESH_MS} ms:\n${slow.join('\n')}\n`);
  if (problems.length) {
    process.stdout.write(`\nproblems:\n${problems.map((p) => `  - ${p}`).join('\n')}\n`);
    process.stdout.write(`\nalpha log (tail):\n${tail(net.nodes[0].log, 15)}\nbeta log (tail):\n${tail(net.nodes[1].log, 15)}\n`);
  }
}

/** `node`'s view of `peer` (restored, negotiations), or null when status fails. */
async function statusOf(node, peer = 'beta') {
  try {
    const st = await control(node.sock, 'status');
    return st.peers.find((p) => p.name === peer) ?? null;
  } catch (err) {
    problems.push(`status of ${node.name} failed: ${err.code ?? err.message}`);
    return null;
  }
}

main().then(
  () => process.exit(problems.length ? 1 : 0),
  (err) => {
    process.stderr.write(`startup: ${err.stack ?? err}\n`);
    process.exit(1);
  },
);
