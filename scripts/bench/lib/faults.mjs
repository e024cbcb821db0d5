// The fault suite of scripts/bench/faults (issue 16): each case runs real
// cluevpnd nodes in a scripts/netns-lab lab and prints ONE line of figures,
// `case: key=value ...`, which RELIABILITY.md keeps and test/faults.e2e.test.ts
// parses (the short versions). Cases here: fuzz (1) and loss (6).
import { join } from 'node:path';
import { buildStamp, control, createHarness, nowMs, REPO, sleep } from './mesh-harness.mjs';
import { parseOptions, usageHelpers } from './lab.mjs';

const TOOL = 'faults';
const { usageError, posInt } = usageHelpers(TOOL);
const PORT = 3406;
const BETA_INNER = '10.99.0.2';

const opts = { cases: [], datagrams: 100_000, rate: 20_000, rates: [1, 5, 10], seconds: 5 };
parseOptions(TOOL, process.argv.slice(2), (a, value) => {
  if (a === 'fuzz' || a === 'loss') opts.cases.push(a);
  else if (a === '--datagrams') opts.datagrams = posInt(value(), a);
  else if (a === '--rate') opts.rate = posInt(value(), a);
  else if (a === '--seconds') opts.seconds = posInt(value(), a);
  else if (a === '--rates') {
    const v = value();
    opts.rates = v.split(',').map((x) => (/^\d+(\.\d+)?$/.test(x) && Number(x) <= 100 ? Number(x) : usageError(`--rates needs percentages such as 1,5,10, not '${v}'`)));
  } else return false;
  return true;
});
if (opts.cases.length === 0) opts.cases = ['fuzz', 'loss'];

const sum = (r) => Object.values(r ?? {}).reduce((a, b) => a + b, 0);
const diff = (after, before) => {
  const out = {};
  for (const [k, v] of Object.entries(after)) if (v - (before[k] ?? 0) !== 0) out[k] = v - (before[k] ?? 0);
  return out;
};
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

/** Two nodes (alpha in h1, beta in h2) from make-network, started, and one ping through the tunnel answered. */
async function twoNodes(h, labArgs = []) {
  await h.labUp(2, labArgs);
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
    const { udpDatagramsFromPcap } = await import(join(REPO, 'test/dist/lib/cluevpn.js'));
    const captured = udpDatagramsFromPcap(pcap).map((d) => d.payload);
    if (captured.length < 10) throw new Error(`captured only ${captured.length} datagrams`);

    const stats = async () => {
      const a = await control(alpha.node.sock, 'status');
      const b = await control(beta.node.sock, 'status');
      const pa = a.peers.find((p) => p.name === 'beta');
      const pb = b.peers.find((p) => p.name === 'alpha');
      // status.drops holds the drops not tied to a current peer; each peer's own are in peers[].drops
      const drops = { ...b.drops };
      for (const p of b.peers) for (const [reason, n] of Object.entries(p.drops)) drops[reason] = (drops[reason] ?? 0) + n;
      return { tx: pa.txPackets, rx: pb.rxPackets, drops, snmp: await udpSnmp(h, 2) };
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

const stamp = buildStamp();
process.stdout.write(`# faults: ${new Date().toISOString()} ${stamp.text}\n`);
let failed = false;
for (const c of opts.cases) {
  try {
    process.stdout.write(`${c === 'fuzz' ? await caseFuzz() : await caseLoss()}\n`);
  } catch (err) {
    failed = true;
    process.stdout.write(`${c}: error=${JSON.stringify(String(err?.message ?? err).slice(0, 2000))}\n`);
  }
}
process.exit(failed ? 1 : 0);
