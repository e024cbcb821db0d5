// The fault suite of scripts/bench/faults (issue 16): each case runs real
// cluevpnd nodes in a scripts/netns-lab lab and prints ONE line of figures,
// `case: key=value ...`, which RELIABILITY.md keeps and test/faults.e2e.test.ts
// parses (the short versions). Cases: fuzz (1), control (2), crash (3),
// restore (4), input (5), loss (6); see scripts/bench/faults --help.
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { copyFileSync, cpSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createConnection } from 'node:net';
import { BNL, buildStamp, CLUEVPN, CLUEVPND, control, createHarness, median, nowMs, REPO, sleep } from './mesh-harness.mjs';
import { parseOptions, quantile, usageHelpers } from './lab.mjs';

const TOOL = 'faults';
const { usageError, posInt } = usageHelpers(TOOL);
const PORT = 3406;
const BETA_INNER = '10.99.0.2';

const CASES = ['fuzz', 'control', 'crash', 'restore', 'input', 'loss'];
const opts = { cases: [], datagrams: 100_000, rate: 20_000, rates: [1, 5, 10], seconds: 5, connections: 1000, requests: 100, cycles: 100, rounds: 5, mutations: 3000 };
parseOptions(TOOL, process.argv.slice(2), (a, value) => {
  if (CASES.includes(a)) opts.cases.push(a);
  else if (a === '--connections') opts.connections = posInt(value(), a);
  else if (a === '--requests') opts.requests = posInt(value(), a);
  else if (a === '--cycles') opts.cycles = posInt(value(), a);
  else if (a === '--rounds') opts.rounds = posInt(value(), a);
  else if (a === '--mutations') opts.mutations = posInt(value(), a);
  else if (a === '--datagrams') opts.datagrams = posInt(value(), a);
  else if (a === '--rate') opts.rate = posInt(value(), a);
  else if (a === '--seconds') opts.seconds = posInt(value(), a);
  else if (a === '--rates') {
    const v = value();
    opts.rates = v.split(',').map((x) => (/^\d+(\.\d+)?$/.test(x) && Number(x) <= 100 ? Number(x) : usageError(`--rates needs percentages such as 1,5,10, not '${v}'`)));
  } else return false;
  return true;
});
if (opts.cases.length === 0) opts.cases = [...CASES];

const sum = (r) => Object.values(r ?? {}).reduce((a, b) => a + b, 0);
const diff = (after, before) => {
  const out = {};
  for (const [k, v] of Object.entries(after)) if (v - (before[k] ?? 0) !== 0) out[k] = v - (before[k] ?? 0);
  return out;
};
/** Every drop of a daemon by reason: its `status.drops` (those not tied to a current peer) plus each peer's. */
function allDrops(status) {
  const out = { ...status.drops };
  for (const p of status.peers) for (const [k, v] of Object.entries(p.drops ?? {})) out[k] = (out[k] ?? 0) + v;
  return out;
}
/** icmp_seq numbers replied to, in ping output. */
const repliedSeqs = (out) => [...out.matchAll(/bytes from .*icmp_seq=(\d+)/g)].map((m) => Number(m[1]));
/** Requests without a reply among those older than the newest reply (the ones still in flight at the end are not lost). */
function flowLoss(out) {
  const seqs = repliedSeqs(out);
  if (seqs.length === 0) return { replied: 0, lost: NaN };
  const got = new Set(seqs);
  const max = Math.max(...seqs);
  let lost = 0;
  for (let s = 1; s <= max; s++) if (!got.has(s)) lost++;
  return { replied: seqs.length, lost };
}

/** Two nodes (alpha in h1, beta in h2; `hosts` in the lab) from make-network, started, and one ping through the tunnel answered. */
async function twoNodes(h, labArgs = [], hosts = 2) {
  await h.labUp(hosts, labArgs);
  const net = await h.makeNetwork([
    { name: 'alpha', addr: '192.0.2.1' },
    { name: 'beta', addr: '192.0.2.2' },
  ]);
  const [alpha, beta] = net.nodes.map((n, k) => h.startDaemon(k + 1, n));
  for (const d of [alpha, beta]) if (!Number.isFinite(await h.waitReady(d, 30_000))) throw new Error(`${d.node.name} did not start: ${d.child.out.slice(-800)}`);
  const deadline = nowMs() + 30_000;
  while (nowMs() < deadline) {
    const r = await h.inHost(1, 'ping', ['-n', '-c', '1', '-w', '2', BETA_INNER]);
    if (r.code === 0) return { alpha, beta };
  }
  throw new Error('no ping through the tunnel within 30 s');
}

/** UDP counters of a host's kernel (/proc/net/snmp in its namespace). */
async function udpSnmp(h, i) {
  const r = await h.must('ip', ['netns', 'exec', h.ns(i), 'cat', '/proc/net/snmp']);
  const lines = r.stdout.split('\n').filter((l) => l.startsWith('Udp:'));
  const keys = lines[0].split(/\s+/).slice(1);
  const vals = lines[1].split(/\s+/).slice(1).map(Number);
  return Object.fromEntries(keys.map((k, j) => [k, vals[j]]));
}

/** The fuzzer, run with node in h1: reads captured datagrams (hex lines) on stdin, prints JSON counts per kind. */
const FUZZER = String.raw`
const dgram = require('node:dgram');
const { randomBytes, randomInt } = require('node:crypto');
const [host, port, total, rate] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3]), Number(process.argv[4])];
const valid = require('node:fs').readFileSync(0, 'utf8').trim().split('\n').filter(Boolean).map((h) => Buffer.from(h, 'hex'));
if (valid.length === 0) { console.error('no captured datagrams'); process.exit(1); }
const pick = () => Buffer.from(valid[randomInt(valid.length)]);
const kinds = {
  random: () => randomBytes(randomInt(0, 1501)),
  replay: () => pick(),
  bitflip: () => { const b = pick(); for (let k = randomInt(1, 5); k > 0; k--) { const i = randomInt(b.length * 8); b[i >> 3] ^= 1 << (i & 7); } return b; },
  truncate: () => { const b = pick(); return b.subarray(0, randomInt(b.length)); },
  extend: () => Buffer.concat([pick(), randomBytes(randomInt(1, 65))]),
  index: () => { const b = pick(); b.writeUInt32BE(randomInt(2 ** 32 - 1), 4); return b; },
  epoch: () => { const b = pick(); const e = b.readUInt32BE(8); b.writeUInt32BE(randomInt(2) ? (e + randomInt(1, 4)) >>> 0 : randomInt(2 ** 32 - 1), 8); return b; },
  counter: () => { const b = pick(); b.writeUInt32BE(randomInt(2) ? 0 : randomInt(2 ** 21), 12); b.writeUInt32BE(randomInt(2 ** 32 - 1), 16); return b; },
  header: () => { const b = pick(); b[randomInt(4)] = randomInt(256); return b; },
};
const names = Object.keys(kinds);
const counts = Object.fromEntries(names.map((n) => [n, 0]));
const s = dgram.createSocket('udp4');
let sent = 0;
const batch = 100;
const t0 = Date.now();
const next = () => {
  if (sent >= total) { s.close(); console.log(JSON.stringify({ sent, counts, ms: Date.now() - t0 })); return; }
  let left = Math.min(batch, total - sent);
  for (let k = 0; k < left; k++) {
    const n = names[randomInt(names.length)];
    counts[n]++;
    s.send(kinds[n](), port, host, () => { if (--left === 0) setTimeout(next, Math.max(0, t0 + (sent * 1000) / rate - Date.now())); });
    sent++;
  }
};
s.bind(0, next);
`;

/** Case 1: datagram fuzz against beta while alpha pings beta through the tunnel. */
async function caseFuzz() {
  const h = createHarness(`${TOOL}:fuzz`, 'bfuzz');
  try {
    const { alpha, beta } = await twoNodes(h);
    const betaPid = beta.pid;
    // capture valid datagrams alpha → beta on beta's underlay while pings of several sizes flow
    const pcap = join(h.work, 'beta.pcap');
    const dump = h.spawnInHost(2, 'tcpdump', ['-i', 'eth0', '--immediate-mode', '-U', '-n', '-w', pcap, 'udp', 'and', 'dst', 'port', String(PORT), 'and', 'src', 'host', '192.0.2.1']);
    for (let k = 0; k < 100 && !/listening on/.test(dump.out); k++) await sleep(100);
    for (const size of [56, 500, 1300]) await h.inHost(1, 'ping', ['-n', '-c', '5', '-i', '0.05', '-w', '10', '-s', String(size), BETA_INNER]);
    await sleep(300);
    dump.kill('SIGINT');
    await new Promise((r) => (dump.exitCode !== null ? r() : dump.once('exit', r)));
    const { udpDatagramsFromPcap } = await testLib();
    const captured = udpDatagramsFromPcap(pcap).map((d) => d.payload);
    if (captured.length < 10) throw new Error(`captured only ${captured.length} datagrams`);

    const stats = async () => {
      const a = await control(alpha.node.sock, 'status');
      const b = await control(beta.node.sock, 'status');
      const pa = a.peers.find((p) => p.name === 'beta');
      const pb = b.peers.find((p) => p.name === 'alpha');
      return { tx: pa.txPackets, rx: pb.rxPackets, drops: allDrops(b), snmp: await udpSnmp(h, 2) };
    };
    const before = await stats();
    const flow = h.spawnInHost(1, 'ping', ['-n', '-i', '0.02', BETA_INNER]);
    const fz = await h.must('ip', ['netns', 'exec', h.ns(1), process.execPath, '-e', FUZZER, '192.0.2.2', String(PORT), String(opts.datagrams), String(opts.rate)], {
      input: captured.map((d) => d.toString('hex')).join('\n'),
      timeoutMs: 600_000,
    });
    const fuzz = JSON.parse(fz.stdout.trim().split('\n').pop());
    // let the flow run on briefly, then stop it and wait until beta's counters settle
    await sleep(500);
    flow.kill('SIGINT');
    await new Promise((r) => (flow.exitCode !== null ? r() : flow.once('exit', r)));
    let after = await stats();
    for (let k = 0; k < 50; k++) {
      await sleep(200);
      const again = await stats();
      const settled = sum(again.drops) === sum(after.drops) && again.rx === after.rx;
      after = again;
      if (settled) break;
    }
    const crashes = beta.child.exitCode !== null || beta.child.signalCode !== null || (await control(beta.node.sock, 'status')).pid !== betaPid ? 1 : 0;
    const drops = diff(after.drops, before.drops);
    const dropped = sum(drops);
    const kernel = after.snmp.RcvbufErrors - before.snmp.RcvbufErrors;
    const delivered = after.rx - before.rx;
    const legit = after.tx - before.tx;
    const forgeries = Math.max(0, delivered - legit);
    // every datagram that reached beta's socket (fuzz and the flow's) was delivered, dropped by reason, or dropped by the kernel
    const unaccounted = fuzz.sent + legit - delivered - dropped - kernel;
    const loss = flowLoss(flow.out);
    return `fuzz: sent=${fuzz.sent} in ${(fuzz.ms / 1000).toFixed(1)}s crashes=${crashes} forgeries=${forgeries} dropped=${dropped} kernel-drops=${kernel} unaccounted=${unaccounted} flow-replies=${loss.replied} flow-lost=${loss.lost} legit-delivered=${delivered}/${legit} kinds=${JSON.stringify(fuzz.counts)} reasons=${JSON.stringify(drops)}`;
  } finally {
    h.cleanup();
  }
}

/**
 * One TCP transfer from h1 to `dst` (h2): the sender writes for `seconds`,
 * then closes; goodput in Mbit/s = bytes the receiver got over the time from
 * its first byte to the end of the stream (so data still buffered when the
 * sender stops counts with the time it took).
 */
async function goodput(h, dst, port, seconds) {
  const sink = h.spawnInHost(2, process.execPath, [
    '-e',
    `const srv = require('node:net').createServer((c) => { let n = 0; let t0 = 0; const done = () => { console.log('got ' + n + ' in ' + (n ? Number(process.hrtime.bigint() - t0) / 1e9 : 0)); srv.close(); }; c.on('data', (b) => { if (n === 0) t0 = process.hrtime.bigint(); n += b.length; }); c.on('end', () => { done(); c.end(); }); c.on('error', done); }); srv.listen(${port}, ${JSON.stringify(dst)}, () => console.log('ready'));`,
  ]);
  for (let k = 0; k < 200 && !/ready/.test(sink.out); k++) await sleep(50);
  const send = `const s = require('node:net').connect(${port}, ${JSON.stringify(dst)}); const chunk = Buffer.alloc(65536, 120); const end = Date.now() + ${seconds * 1000};
const pump = () => { while (Date.now() < end) { if (!s.write(chunk)) return s.once('drain', pump); } s.end(); }; s.on('connect', pump); s.on('close', () => process.exit(0));`;
  await h.must('ip', ['netns', 'exec', h.ns(1), process.execPath, '-e', send], { timeoutMs: (seconds + 120) * 1000 });
  for (let k = 0; k < 600 && !/got \d+ in/.test(sink.out); k++) await sleep(100);
  const m = /got (\d+) in ([\d.]+)/.exec(sink.out);
  sink.kill('SIGKILL');
  return m && Number(m[2]) > 0 ? (Number(m[1]) * 8) / Number(m[2]) / 1e6 : NaN;
}

/** Case 6: TCP goodput through the tunnel at each loss rate, next to plain TCP on the same underlay; no peer stuck afterwards. */
async function caseLoss() {
  const h = createHarness(`${TOOL}:loss`, 'bloss');
  try {
    // loss per datagram on the wire, both directions (scripts/netns-lab wireloss)
    await twoNodes(h, ['--impair', 'h1:wireloss=0%', '--impair', 'h2:wireloss=0%']);
    const setLoss = (p) => Promise.all([1, 2].map((i) => h.must(join(REPO, 'scripts/netns-lab'), ['wireloss', h.prefix, `h${i}`, `${p}%`])));
    const counters = async (i) => {
      const r = await h.must(join(REPO, 'scripts/netns-lab'), ['counters', h.prefix, `h${i}`]);
      const m = /^seen (\d+) dropped (\d+)/.exec(r.stdout.trim());
      return { seen: Number(m[1]), dropped: Number(m[2]) };
    };
    const parts = [];
    let port = 5200;
    for (const p of opts.rates) {
      await setLoss(p);
      // the measured loss: packets dropped toward h2 (data) and h1 (acks) during the two transfers, per packet seen
      const c0 = await Promise.all([counters(1), counters(2)]);
      const tunnel = await goodput(h, BETA_INNER, port++, opts.seconds);
      const c1 = await Promise.all([counters(1), counters(2)]);
      const plain = await goodput(h, '192.0.2.2', port++, opts.seconds);
      const c2 = await Promise.all([counters(1), counters(2)]);
      const rate = (a, b, i) => (100 * (b[i].dropped - a[i].dropped)) / (b[i].seen - a[i].seen);
      parts.push(
        `${p}%: tunnel=${tunnel.toFixed(2)} plain=${plain.toFixed(2)} Mbit/s ratio=${(tunnel / plain).toFixed(2)} measured-loss=${rate(c0, c2, 1).toFixed(2)}% (tunnel ${rate(c0, c1, 1).toFixed(2)}/${rate(c0, c1, 0).toFixed(2)}, plain ${rate(c1, c2, 1).toFixed(2)}/${rate(c1, c2, 0).toFixed(2)} % data/acks)`,
      );
    }
    // loss stops: the tunnel answers again at once (no peer stuck)
    await setLoss(0);
    const t0 = nowMs();
    let recovered = NaN;
    while (nowMs() - t0 < 30_000) {
      const r = await h.inHost(1, 'ping', ['-n', '-c', '1', '-w', '2', BETA_INNER]);
      if (r.code === 0) {
        recovered = nowMs() - t0;
        break;
      }
    }
    const after = await goodput(h, BETA_INNER, port++, 1);
    return `loss: ${parts.join('; ')}; after-loss: ping-ms=${Number.isFinite(recovered) ? recovered.toFixed(0) : 'none'} tunnel=${after.toFixed(2)} Mbit/s stuck=${Number.isFinite(recovered) && after > 0 ? 0 : 1}`;
  } finally {
    h.cleanup();
  }
}

const ALPHA_INNER = '10.99.0.1';
const DB_FILES = ['state.db', 'state.db-wal', 'state.db-shm'];
const testLib = () => import(join(REPO, 'test/dist/lib/cluevpn.js'));

/** Starts tcpdump in host i writing every UDP datagram of port 3406 on eth0 to `pcap`; resolves once it listens. */
async function capture(h, i, pcap) {
  const dump = h.spawnInHost(i, 'tcpdump', ['-i', 'eth0', '--immediate-mode', '-U', '-n', '-w', pcap, 'udp', 'and', 'port', String(PORT)]);
  for (let k = 0; k < 100 && !/listening on/.test(dump.out); k++) await sleep(100);
  if (!/listening on/.test(dump.out)) throw new Error(`tcpdump did not start: ${dump.out}`);
  return dump;
}
/** Two nodes (twoNodes) with beta's underlay (UDP 3406) captured from now on: { alpha, beta, pcap, dump }. */
async function capturedPair(h) {
  const { alpha, beta } = await twoNodes(h);
  const pcap = join(h.work, 'underlay.pcap');
  return { alpha, beta, pcap, dump: await capture(h, 2, pcap) };
}
/** Stops a child with `signal` and waits for its exit. */
async function stopChild(c, signal = 'SIGINT') {
  if (c.exitCode !== null || c.signalCode !== null) return;
  const exited = new Promise((r) => c.once('exit', r));
  c.kill(signal);
  await exited;
}
/** `PRAGMA integrity_check` of an SQLite file (better-sqlite3, the store's own driver): 'ok' or the first problem. */
async function integrity(file) {
  const Database = createRequire(join(REPO, 'packages/negotiation/package.json'))('better-sqlite3');
  const db = new Database(file);
  try {
    return String(db.pragma('integrity_check', { simple: true }));
  } finally {
    db.close();
  }
}
/** The list file of a node verifies against the network's signing key (`bnl verify`). */
async function bnlIntact(h, node) {
  const r = await h.run(BNL, ['verify', node.bnl, '--pubkey', join(node.dir, 'bnl-signing.pub')]);
  return r.code === 0;
}
/** Waits until every ping child has replied `more` times beyond `marks` (their reply counts); the time it took, NaN after `timeoutMs`. */
async function repliesGrow(children, marks, timeoutMs = 60_000, more = 1) {
  const t0 = nowMs();
  while (nowMs() - t0 < timeoutMs) {
    if (children.every((c, k) => repliedSeqs(c.out).length >= marks[k] + more)) return nowMs() - t0;
    await sleep(20);
  }
  return NaN;
}
/**
 * Sends `datagrams` (Buffers) from host i to `host:3406` at most 2 000/s and
 * returns how many of them the receiver took in: `counters()` before and
 * after ({ rx, tx, drops }: rx of the receiver from the sender, tx of the
 * sender to it, the receiver's drops in all) once they settle.
 */
async function replayTo(h, i, host, datagrams, counters) {
  const before = await counters();
  await h.must('ip', ['netns', 'exec', h.ns(i), process.execPath, '-e', FUZZER_REPLAY, host, String(PORT)], { input: datagrams.map((d) => d.toString('hex')).join('\n'), timeoutMs: 120_000 });
  let after = await counters();
  for (let k = 0; k < 50; k++) {
    await sleep(200);
    const again = await counters();
    const settled = again.drops === after.drops && again.rx === after.rx;
    after = again;
    if (settled) break;
  }
  return { sent: datagrams.length, accepted: after.rx - before.rx - (after.tx - before.tx), dropped: after.drops - before.drops };
}
const FUZZER_REPLAY = String.raw`
const dgram = require('node:dgram');
const list = require('node:fs').readFileSync(0, 'utf8').trim().split('\n').filter(Boolean).map((h) => Buffer.from(h, 'hex'));
const s = dgram.createSocket('udp4');
let i = 0;
const next = () => { if (i === list.length) return s.close(); s.send(list[i++], Number(process.argv[2]), process.argv[1], () => setTimeout(next, 0.5)); };
s.bind(0, next);
`;
/** Up to `n` items of `xs`, spread evenly over it. */
const spread = (xs, n) => (xs.length <= n ? xs : Array.from({ length: n }, (_, k) => xs[Math.floor((k * xs.length) / n)]));

/** Case 3: SIGKILL and restart alpha `cycles` times during pings both ways, the underlay captured throughout. */
async function caseCrash() {
  const h = createHarness(`${TOOL}:crash`, 'bcrash');
  try {
    const pair = await capturedPair(h);
    const { beta, pcap, dump } = pair;
    let alpha = pair.alpha; // restarted
    const { udpDatagramsFromPcap, repeatedTriples } = await testLib();
    const pings = [h.spawnInHost(1, 'ping', ['-n', '-i', '0.05', BETA_INNER]), h.spawnInHost(2, 'ping', ['-n', '-i', '0.05', ALPHA_INNER])];
    const marks = () => pings.map((c) => repliedSeqs(c.out).length);
    const recover = [];
    const dbs = { checked: 0, bad: [] };
    let preCrash = 0; // captured datagrams before the last SIGKILL
    if (!Number.isFinite(await repliesGrow(pings, [0, 0], 30_000, 3))) throw new Error('no pings both ways before the first crash');
    for (let cycle = 1; cycle <= opts.cycles; cycle++) {
      await sleep(Math.random() * 300); // somewhere in the middle of the flow
      preCrash = cycle === opts.cycles ? udpDatagramsFromPcap(pcap).length - 1 : preCrash;
      await stopChild(alpha.child, 'SIGKILL');
      const ok = await integrity(alpha.node.statedb);
      dbs.checked++;
      if (ok !== 'ok') dbs.bad.push(`cycle ${cycle}: ${ok}`);
      const m = marks();
      alpha = h.startDaemon(1, alpha.node);
      if (!Number.isFinite(await h.waitReady(alpha, 30_000))) throw new Error(`cycle ${cycle}: alpha did not start: ${alpha.child.out.slice(-800)}`);
      const ms = await repliesGrow(pings, m, 60_000);
      if (!Number.isFinite(ms)) throw new Error(`cycle ${cycle}: no pings both ways within 60 s of the restart`);
      recover.push(nowMs() - alpha.spawnedAt);
    }
    await sleep(500);
    for (const c of pings) await stopChild(c);
    await sleep(300);
    await stopChild(dump);
    const all = udpDatagramsFromPcap(pcap);
    const triples = repeatedTriples(all);
    // pre-crash datagrams of both directions, replayed to the restarted alpha and to beta
    const data = (src) => all.slice(0, Math.max(0, preCrash)).filter((d) => d.src === src && d.payload.length > 36 && d.payload[0] === 0x11).map((d) => d.payload);
    const counters = (rcv, snd, peerName, rcvName) => async () => {
      const r = await control(rcv.node.sock, 'status');
      const s = await control(snd.node.sock, 'status');
      return { rx: r.peers.find((p) => p.name === peerName).rxPackets, tx: s.peers.find((p) => p.name === rcvName).txPackets, drops: sum(allDrops(r)) };
    };
    const toBeta = await replayTo(h, 1, '192.0.2.2', spread(data('192.0.2.1'), 300), counters(beta, alpha, 'alpha', 'beta'));
    const toAlpha = await replayTo(h, 2, '192.0.2.1', spread(data('192.0.2.2'), 300), counters(alpha, beta, 'beta', 'alpha'));
    const crashes = beta.child.exitCode !== null || beta.child.signalCode !== null ? 1 : 0;
    for (const d of [alpha, beta]) await h.stopDaemon(d);
    for (const d of [alpha, beta]) {
      const ok = await integrity(d.node.statedb);
      dbs.checked++;
      if (ok !== 'ok') dbs.bad.push(`${d.node.name} at the end: ${ok}`);
    }
    const bnlOk = (await Promise.all([alpha, beta].map((d) => bnlIntact(h, d.node)))).every(Boolean);
    const lost = pings.map((c) => flowLoss(c.out));
    const lostAll = lost[0].lost + lost[1].lost;
    return `crash: cycles=${opts.cycles} data=${triples.data} triples-twice=${triples.twice.length} pre-crash-replayed=${toBeta.sent + toAlpha.sent} pre-crash-accepted=${toBeta.accepted + toAlpha.accepted} replay-drops=${toBeta.dropped + toAlpha.dropped} integrity=${dbs.bad.length === 0 ? 'ok' : JSON.stringify(dbs.bad.slice(0, 3))}(${dbs.checked} checks) bnl-intact=${bnlOk ? 'yes' : 'NO'} beta-crashes=${crashes} pings-lost-per-cycle=${(lostAll / opts.cycles).toFixed(2)} (alpha→beta ${lost[0].lost}/${lost[0].replied + lost[0].lost}, beta→alpha ${lost[1].lost}/${lost[1].replied + lost[1].lost}) flow-again-ms median=${median(recover).toFixed(0)} max=${Math.max(...recover).toFixed(0)}${triples.twice.length ? ` twice=${triples.twice.slice(0, 3).join(',')}` : ''}`;
  } finally {
    h.cleanup();
  }
}

/** Case 4: alpha started `rounds` times with an older copy of its state.db (taken while stopped, run on, copy put back). */
async function caseRestore() {
  const h = createHarness(`${TOOL}:restore`, 'brestore');
  try {
    const pair = await capturedPair(h);
    const { beta, pcap, dump } = pair;
    let alpha = pair.alpha; // restarted
    const { udpDatagramsFromPcap, repeatedTriples } = await testLib();
    const negotiations0 = (await control(beta.node.sock, 'status')).peers.find((p) => p.name === 'alpha').negotiations;
    /** Starts alpha, pings beta until a reply then 5 more: ms from spawn to the first reply, and the replies of the 5. */
    const run = async () => {
      alpha = h.startDaemon(1, alpha.node);
      if (!Number.isFinite(await h.waitReady(alpha, 30_000))) throw new Error(`alpha did not start: ${alpha.child.out.slice(-800)}`);
      let ms = NaN;
      while (nowMs() - alpha.spawnedAt < 30_000) {
        if ((await h.inHost(1, 'ping', ['-n', '-c', '1', '-W', '1', BETA_INNER])).code === 0) {
          ms = nowMs() - alpha.spawnedAt;
          break;
        }
      }
      const r = await h.inHost(1, 'ping', ['-n', '-c', '5', '-i', '0.2', '-W', '1', BETA_INNER]);
      return { ms, received: repliedSeqs(r.stdout).length };
    };
    const flow = [];
    let lost = 0;
    for (let round = 1; round <= opts.rounds; round++) {
      await h.stopDaemon(alpha);
      const backup = join(h.work, `backup-${round}`);
      for (const f of DB_FILES) if (existsSync(join(alpha.node.dir, f))) copyFileSync(join(alpha.node.dir, f), `${backup}-${f}`);
      const later = await run(); // the copy grows old
      lost += 5 - later.received;
      await h.stopDaemon(alpha);
      for (const f of DB_FILES) {
        rmSync(join(alpha.node.dir, f), { force: true });
        if (existsSync(`${backup}-${f}`)) copyFileSync(`${backup}-${f}`, join(alpha.node.dir, f));
      }
      const old = await run();
      if (!Number.isFinite(old.ms)) throw new Error(`round ${round}: no ping within 30 s of starting on the old copy`);
      flow.push(old.ms);
      lost += 5 - old.received;
    }
    await sleep(300);
    await stopChild(dump);
    const triples = repeatedTriples(udpDatagramsFromPcap(pcap));
    const st = (await control(beta.node.sock, 'status')).peers.find((p) => p.name === 'alpha');
    const restored = (await control(alpha.node.sock, 'status')).peers.find((p) => p.name === 'beta').restored;
    return `restore: rounds=${opts.rounds} data=${triples.data} triples-twice=${triples.twice.length} flow-again-ms median=${median(flow).toFixed(0)} max=${Math.max(...flow).toFixed(0)} (from spawn, old copy) pings-lost=${lost} renegotiations=${st.negotiations - negotiations0} restored=${restored}${triples.twice.length ? ` twice=${triples.twice.slice(0, 3).join(',')}` : ''}`;
  } finally {
    h.cleanup();
  }
}

const TYPED = /^ERR_[A-Z0-9_]+$/;
const STACK = /\n\s+at |\bat .+:\d+:\d+\)?$/m;
const rint = (n) => Math.floor(Math.random() * n);
const pick = (xs) => xs[rint(xs.length)];
const JUNK = [null, true, false, -1, 0, 1.5, 1e308, '', 'x'.repeat(5000), '\u0000\uffff\ud800', '../../../etc/passwd', [], {}, [[[[[]]]]], { __proto__: { admin: true } }, '7', 'status'];
/** Mutations of a byte string (Buffer): bit flips, truncation, extension, a random byte, a cut-out or duplicated chunk. */
function mutateBytes(b) {
  const out = Buffer.from(b);
  switch (rint(6)) {
    case 0:
      for (let k = 1 + rint(4); k > 0; k--) {
        const i = rint(out.length * 8);
        out[i >> 3] ^= 1 << (i & 7);
      }
      return out;
    case 1:
      return out.subarray(0, rint(out.length));
    case 2:
      return Buffer.concat([out, randomBytes(1 + rint(64))]);
    case 3:
      out[rint(out.length)] = rint(256);
      return out;
    case 4: {
      const i = rint(out.length);
      return Buffer.concat([out.subarray(0, i), out.subarray(i + 1 + rint(64))]);
    }
    default: {
      const i = rint(out.length);
      return Buffer.concat([out.subarray(0, i), out.subarray(i, i + 1 + rint(64)), out.subarray(i)]);
    }
  }
}
/** A mutated control-socket request line (without the newline). */
function mutateRequest() {
  const base = { v: 1, id: 1 + rint(1000), cmd: pick(['status', 'peers', 'bnl-status', 'reload-and-push', 'set-log-level']) };
  if (base.cmd === 'set-log-level') base.level = pick([-1, 8, 3.5, '5', null, 1e9]); // never a valid level: the node's log stays as it is
  switch (rint(7)) {
    case 0:
      return mutateBytes(Buffer.from(JSON.stringify(base))).toString('latin1').replace(/\n/g, ' ');
    case 1:
      return JSON.stringify({ ...base, [pick(['v', 'id', 'cmd'])]: pick(JUNK) });
    case 2:
      return JSON.stringify({ ...base, [pick(['extra', '__proto__', 'constructor', 'level', 'x'.repeat(300)])]: pick(JUNK) });
    case 3:
      return JSON.stringify(pick([42, 'status', [base], null, true, {}]));
    case 4:
      return randomBytes(rint(200)).toString('latin1').replace(/\n/g, ' ');
    case 5:
      return `${'['.repeat(1 + rint(20_000))}${']'.repeat(rint(3) === 0 ? 0 : 20_000)}`.slice(0, 60_000);
    default:
      return pick([' ', '{', JSON.stringify(base).repeat(2), `{"v":1,"id":1,"cmd":"status","pad":"${'a'.repeat(70_000)}"}`]);
  }
}
/** One line on a fresh control-socket connection: the first answer line, or null when the connection closed (or 3 s passed) without one. */
function askOnce(path, line) {
  return new Promise((resolve) => {
    const s = createConnection(path);
    let buf = '';
    const done = (v) => {
      clearTimeout(timer);
      s.destroy();
      resolve(v);
    };
    const timer = setTimeout(() => done(null), 3000);
    s.setEncoding('utf8');
    s.on('data', (d) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl >= 0) done(buf.slice(0, nl));
    });
    s.on('error', () => done(null)); // counted as no answer by the caller
    s.on('close', () => done(buf === '' ? null : buf));
    s.on('connect', () => s.write(`${line}\n`));
  });
}
/** Sorts the answer to `line`: 'ok', an error with a stable code and no stack (counted by code), a blank line's silence, or what is wrong with it (in `bad`). */
function judge(line, answerLine, counts, bad) {
  if (answerLine === null) {
    // a blank line is skipped by design; any other request must be answered
    if (line.trim() === '') counts.blank = (counts.blank ?? 0) + 1;
    else bad.push(`no answer: ${JSON.stringify(line.slice(0, 100))}`);
    return;
  }
  let a;
  try {
    a = JSON.parse(answerLine);
  } catch (err) {
    bad.push(`not JSON (${err.message}): ${answerLine.slice(0, 100)}`);
    return;
  }
  if (a.ok === true) counts.ok = (counts.ok ?? 0) + 1;
  else if (TYPED.test(a.error?.code ?? '') && !STACK.test(a.error?.message ?? '')) counts[a.error.code] = (counts[a.error.code] ?? 0) + 1;
  else bad.push(`untyped: ${answerLine.slice(0, 200)}`);
}
/** What must not change: the node's pid, list serial, and each peer's session (state, negotiations). */
async function nodeState(sock) {
  const st = await control(sock, 'status');
  return JSON.stringify({ pid: st.pid, serial: st.bnl.serial, peers: st.peers.map((p) => [p.name, p.state, p.negotiations, p.restored]) });
}

/** Case 5: mutated BNL files (from disk and over gossip), config files and control-socket requests against a live node. */
async function caseInput() {
  const h = createHarness(`${TOOL}:input`, 'binput');
  try {
    const { alpha, beta } = await twoNodes(h);
    const state0 = await nodeState(beta.node.sock);
    const n = opts.mutations;
    const parts = [];

    // 1. control socket: one mutated request per connection
    {
      const counts = {};
      const bad = [];
      for (let k = 0; k < n; k++) {
        const line = mutateRequest();
        judge(line, await askOnce(beta.node.sock, line), counts, bad);
      }
      parts.push(`socket: sent=${n} untyped=${bad.length} answers=${JSON.stringify(counts)}${bad.length ? ` e.g. ${JSON.stringify(bad[0])}` : ''}`);
    }

    // 2. BNL from disk: the node's list file replaced, then `reload-and-push` (what `bnl push` asks)
    {
      const good = readFileSync(beta.node.bnl);
      const counts = {};
      const bad = [];
      const put = (bytes) => {
        writeFileSync(`${beta.node.bnl}.tmp`, bytes);
        renameSync(`${beta.node.bnl}.tmp`, beta.node.bnl);
      };
      for (let k = 0; k < n; k++) {
        put(mutateBytes(good));
        try {
          const r = await control(beta.node.sock, 'reload-and-push');
          if (r.applied) bad.push(`applied serial ${r.serial}`);
          else counts['not-applied'] = (counts['not-applied'] ?? 0) + 1;
        } catch (err) {
          if (TYPED.test(err.code ?? '') && !STACK.test(err.message)) counts[err.code] = (counts[err.code] ?? 0) + 1;
          else bad.push(`untyped: ${err.message}`);
        }
      }
      put(good);
      await control(beta.node.sock, 'reload-and-push');
      parts.push(`bnl-disk: sent=${n} untyped-or-applied=${bad.length} answers=${JSON.stringify(counts)}${bad.length ? ` e.g. ${JSON.stringify(bad[0])}` : ''}`);
    }

    // 3. BNL over gossip: alpha's credentials, one control connection, one push per mutated list
    {
      const good = readFileSync(beta.node.bnl);
      const dir = join(h.work, 'gossip');
      mkdirSync(dir);
      const files = [];
      for (let k = 0; k < n; k++) {
        const f = join(dir, String(k));
        writeFileSync(f, mutateBytes(good));
        files.push(f);
      }
      const counts = {};
      const bad = [];
      const fixture = join(REPO, 'test/dist/fixtures/gossip-push.js');
      // in chunks: one argument list per run stays well under the kernel's limit
      for (let k = 0; k < files.length; k += 500) {
        const r = await h.must('ip', ['netns', 'exec', h.ns(1), process.execPath, fixture, alpha.node.dir, 'beta', '192.0.2.2', String(PORT), ...files.slice(k, k + 500)], { timeoutMs: 600_000 });
        for (const line of r.stdout.trim().split('\n')) {
          const a = JSON.parse(line);
          if (a.status === 'accepted') bad.push(`accepted ${a.file}`);
          else if (a.status === 'duplicate') counts.duplicate = (counts.duplicate ?? 0) + 1;
          else if (TYPED.test(a.code ?? '') && !STACK.test(a.error ?? '')) counts[a.code] = (counts[a.code] ?? 0) + 1;
          else bad.push(`untyped: ${line}`);
        }
      }
      parts.push(`bnl-gossip: sent=${n} untyped-or-accepted=${bad.length} answers=${JSON.stringify(counts)}${bad.length ? ` e.g. ${JSON.stringify(bad[0])}` : ''}`);
    }

    // 4. config files: every mutation through loadConfig (the daemon's first step, in this process),
    //    and a sample of those it rejects through the real cluevpnd (exit 2, one line, no stack)
    {
      const { loadConfig } = await import(join(REPO, 'packages/daemon/dist/src/index.js'));
      const dir = join(h.work, 'cfg', 'beta');
      cpSync(beta.node.dir, dir, { recursive: true, filter: (src) => !/\.(sock|pid|log)$|state\.db/.test(src) });
      const good = readFileSync(beta.node.conf, 'utf8');
      const mutateConf = () => {
        const lines = good.split('\n');
        const i = rint(lines.length);
        switch (rint(5)) {
          case 0:
            return mutateBytes(Buffer.from(good)).toString('latin1');
          case 1:
            lines[i] = lines[i].includes('=') ? `${lines[i].split('=')[0]}=${pick(['', 'x'.repeat(5000), '-1', '99999999999', '0x10', '../../../nonexistent', 'yes', 'no', '1.5', ' ', '=', '\u00ff\u0000'])}` : lines[i];
            return lines.join('\n');
          case 2:
            lines.splice(i, 1);
            return lines.join('\n');
          case 3:
            lines.splice(i, 0, pick([lines[i], `${pick(['port', 'name', 'mtu', 'loglevel', 'cipher', 'nosuchkey', 'subnet'])}=${pick(['1', 'abc', '', '65536'])}`, 'no equals sign', '[section]']));
            return lines.join('\n');
          default:
            return randomBytes(rint(400)).toString('latin1');
        }
      };
      const counts = {};
      const bad = [];
      const rejected = [];
      for (let k = 0; k < n; k++) {
        const f = join(dir, `m${k}.conf`);
        writeFileSync(f, mutateConf());
        try {
          loadConfig({ configFile: f }, {});
          counts.parsed = (counts.parsed ?? 0) + 1;
        } catch (err) {
          if (TYPED.test(err.code ?? '')) {
            counts[err.code] = (counts[err.code] ?? 0) + 1;
            rejected.push(f);
          } else bad.push(`untyped: ${err.stack?.split('\n').slice(0, 2).join(' ')}`);
        }
      }
      const sample = spread(rejected, Math.max(1, Math.round(n / 30)));
      let daemonOk = 0;
      for (const f of sample) {
        const r = await h.inHost(2, CLUEVPND, ['-c', f, '-D'], { timeoutMs: 30_000 });
        const lines = r.stderr.trimEnd().split('\n');
        if (r.code === 2 && lines.length === 1 && lines[0].startsWith('cluevpnd: ') && !STACK.test(r.stderr)) daemonOk++;
        else bad.push(`cluevpnd -c ${f}: exit ${r.code}: ${r.stderr.slice(0, 300)}`);
      }
      parts.push(`config: files=${n} untyped=${bad.length} answers=${JSON.stringify(counts)} daemon-exit-2=${daemonOk}/${sample.length}${bad.length ? ` e.g. ${JSON.stringify(bad[0])}` : ''}`);
    }

    const state1 = await nodeState(beta.node.sock);
    const crashes = beta.child.exitCode !== null || beta.child.signalCode !== null ? 1 : 0;
    const ping = await h.inHost(1, 'ping', ['-n', '-c', '3', '-i', '0.2', '-W', '1', BETA_INNER]);
    return `input: crashes=${crashes} state-changed=${state0 === state1 ? 0 : 1} ping-after=${repliedSeqs(ping.stdout).length}/3 ${parts.join('; ')}${state0 === state1 ? '' : ` before=${state0} after=${state1}`}`;
  } finally {
    h.cleanup();
  }
}

/**
 * The attacker, run with node in h3: `connections` connections to port 3406,
 * `concurrency` at a time, each kind in turn from the next of `sources`
 * (SRC>DST pairs): garbage bytes, half-open (nothing sent), slow-drip (a
 * byte every 300 ms), an oversized TLS record (length 65 535, then 70 000
 * bytes), and a TLS client with a valid certificate of the network CA for a
 * name not in the list (CERT_DIR/NAME.crt, .key). Each ends when the server
 * closes it (`closed`), fails (`error`) or after 12 s (`held`). Prints JSON
 * counts per kind and outcome.
 */
const ATTACKER = String.raw`
const net = require('node:net');
const tls = require('node:tls');
const fs = require('node:fs');
const { randomBytes } = require('node:crypto');
const [total, concurrency, port, certDir, name, ...pairs] = process.argv.slice(1);
const sources = pairs.map((p) => p.split('>'));
const cert = fs.readFileSync(certDir + '/' + name + '.crt');
const key = fs.readFileSync(certDir + '/' + name + '.key');
const kinds = ['garbage', 'half-open', 'slow-drip', 'oversized', 'non-member'];
const out = {};
const note = (kind, how) => { out[kind] ??= {}; out[kind][how] = (out[kind][how] ?? 0) + 1; };
function one(k) {
  const kind = kinds[k % kinds.length];
  const [localAddress, host] = sources[k % sources.length];
  return new Promise((resolve) => {
    let timer;
    let drip;
    let ended = false;
    const end = (how) => { if (ended) return; ended = true; clearTimeout(timer); clearInterval(drip); note(kind, how); s.destroy(); resolve(); };
    const s = kind === 'non-member'
      ? tls.connect({ host, port: Number(port), localAddress, cert, key, rejectUnauthorized: false, minVersion: 'TLSv1.3' })
      : net.connect({ host, port: Number(port), localAddress });
    timer = setTimeout(() => end('held'), 12000);
    s.on('error', () => end('error'));
    s.on('close', () => end('closed'));
    s.on('data', () => {});
    if (kind === 'non-member') s.on('secureConnect', () => s.write(randomBytes(64)));
    else s.on('connect', () => {
      if (kind === 'garbage') s.write(randomBytes(1 + Math.floor(Math.random() * 4000)));
      else if (kind === 'slow-drip') drip = setInterval(() => s.write(randomBytes(1)), 300);
      else if (kind === 'oversized') s.write(Buffer.concat([Buffer.from([0x16, 0x03, 0x03, 0xff, 0xff]), randomBytes(70000)]));
    });
  });
}
let next = 0;
const t0 = Date.now();
const worker = async () => { while (next < Number(total)) await one(next++); };
Promise.all(Array.from({ length: Number(concurrency) }, worker)).then(() => console.log(JSON.stringify({ ms: Date.now() - t0, out })));
`;

/** Lines of a file (0 when missing). */
function lineCount(file) {
  try {
    return readFileSync(file, 'utf8').split('\n').length - 1;
  } catch (err) {
    if (err.code === 'ENOENT') return 0;
    throw err;
  }
}
/** The member's bnl-pull requests (test/fixtures/member-pull): from a child's output so far, { served, failed, ms[] , codes }. */
function memberResults(text) {
  const r = { served: 0, failed: 0, ms: [], codes: {} };
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    const a = JSON.parse(line);
    if (a.ok) {
      r.served++;
      r.ms.push(a.ms);
    } else {
      r.failed++;
      r.codes[a.code] = (r.codes[a.code] ?? 0) + 1;
    }
  }
  return r;
}

/** Case 2: abusive connections at beta's control port (TCP 3406) from many sources while alpha keeps pulling beta's list. */
async function caseControl() {
  const h = createHarness(`${TOOL}:control`, 'bctl');
  try {
    const { alpha, beta } = await twoNodes(h, [], 3);
    // the attacker: a certificate of the network CA for a name not in the list, and addresses in three /24s
    const mallory = join(h.work, 'mallory');
    await h.must(CLUEVPN, ['cert', 'issue', 'mallory', '--ca', join(h.work, 'net', 'ca'), '--out', mallory]);
    const sources = [];
    for (const [net, dst] of [['192.0.2', '192.0.2.2'], ['198.51.100', '198.51.100.2'], ['203.0.113', '203.0.113.2']]) {
      if (net !== '192.0.2') await h.must('ip', ['-n', h.ns(2), 'addr', 'add', `${dst}/24`, 'dev', 'eth0']);
      for (let a = 101; a <= 104; a++) {
        await h.must('ip', ['-n', h.ns(3), 'addr', 'add', `${net}.${a}/24`, 'dev', 'eth0']);
        sources.push(`${net}.${a}>${dst}`);
      }
    }
    await sleep(2500); // IPv6-style DAD does not apply, but let the new addresses settle on the bridge
    const fixture = join(REPO, 'test/dist/fixtures/member-pull.js');
    const member = (count) => h.spawnInHost(1, process.execPath, [fixture, alpha.node.dir, 'beta', '192.0.2.2', String(PORT), String(count), '150']); // below the 10 handshakes/s a source may start
    const finish = (c) => new Promise((r) => (c.exitCode !== null ? r() : c.once('exit', r)));
    // 1. unloaded
    const quiet = member(opts.requests);
    await finish(quiet);
    const unloaded = memberResults(quiet.out);
    // 2. under abuse: the member pulls until the attacker is done
    const betaPid = (await control(beta.node.sock, 'status')).pid;
    const logBefore = lineCount(beta.node.log);
    const loud = member(0);
    const attack = await h.must('ip', ['netns', 'exec', h.ns(3), process.execPath, '-e', ATTACKER, String(opts.connections), '40', String(PORT), mallory, 'mallory', ...sources], { timeoutMs: 900_000 });
    loud.kill('SIGTERM');
    await finish(loud);
    const logLines = (lineCount(beta.node.log)) - logBefore;
    const loaded = memberResults(loud.out);
    const a = JSON.parse(attack.stdout.trim().split('\n').pop());
    const alive = beta.child.exitCode === null && beta.child.signalCode === null && (await control(beta.node.sock, 'status')).pid === betaPid;
    const attempted = Object.values(a.out).reduce((s, o) => s + sum(o), 0);
    const p = (r, q) => quantile(r.ms, q).toFixed(1);
    return `control: connections=${attempted} in ${(a.ms / 1000).toFixed(1)}s from ${sources.length} addresses in 3 /24s crashes=${alive ? 0 : 1} member-served=${loaded.served}/${loaded.served + loaded.failed} unloaded-served=${unloaded.served}/${unloaded.served + unloaded.failed} p99-ms=${p(loaded, 0.99)} unloaded-p99-ms=${p(unloaded, 0.99)} p50-ms=${p(loaded, 0.5)} unloaded-p50-ms=${p(unloaded, 0.5)} log-lines=${logLines} attacks=${JSON.stringify(a.out)}${loaded.failed + unloaded.failed ? ` member-failures=${JSON.stringify({ ...unloaded.codes, ...loaded.codes })}` : ''}`;
  } finally {
    h.cleanup();
  }
}

const stamp = buildStamp();
process.stdout.write(`# faults: ${new Date().toISOString()} ${stamp.text}\n`);
let failed = false;
for (const c of opts.cases) {
  try {
    const run = { fuzz: caseFuzz, control: caseControl, crash: caseCrash, restore: caseRestore, input: caseInput, loss: caseLoss }[c];
    process.stdout.write(`${await run()}\n`);
  } catch (err) {
    failed = true;
    process.stdout.write(`${c}: error=${JSON.stringify(String(err?.message ?? err).slice(0, 2000))}\n`);
  }
}
process.exit(failed ? 1 : 0);
