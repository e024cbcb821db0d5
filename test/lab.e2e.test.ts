/**
 * End-to-end tests of the namespace lab itself (scripts/netns-lab and
 * test/lib/lab.ts): the foundation every other end-to-end test stands on.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { createLab, everyRequestAnswered, listNamespaces, NETNS_LAB, requireLab, type Lab } from './lib/lab.js';
import { waitFor } from './lib/wait-for.js';
import { parsePing } from './lib/ping.js';
import { runCommand, spawnTracked } from './lib/process.js';

test('hosts ping each other over IPv4 and IPv6; no forwarding, lo up', async (t) => {
  if (!requireLab(t)) return;
  const lab = await createLab({ hosts: 3 });
  t.after(() => lab.destroy());
  assert.equal(lab.hosts.length, 3);
  assert.deepEqual(
    lab.hosts.map((h) => [h.name, h.ns, h.ipv4, h.ipv6]),
    [1, 2, 3].map((i) => [`h${i}`, `${lab.prefix}-h${i}`, `192.0.2.${i}`, `2001:db8::${i}`]),
  );
  for (const a of lab.hosts) {
    for (const b of lab.hosts) {
      if (a === b) continue;
      const v4 = await lab.ping(a, b.ipv4, { count: 1 });
      const v6 = await lab.ping(a, b.ipv6, { count: 1 });
      assert.equal(v4.received, 1, `${a.name} -> ${b.ipv4}`);
      assert.equal(v6.received, 1, `${a.name} -> ${b.ipv6}`);
    }
  }
  const fwd = await lab.exec('h1', 'cat', ['/proc/sys/net/ipv4/ip_forward', '/proc/sys/net/ipv6/conf/all/forwarding']);
  assert.equal(fwd.stdout, '0\n0\n');
  const lo = await lab.ping('h2', '127.0.0.1', { count: 1 });
  assert.equal(lo.received, 1);
  // The switch is a bridge in the lab's own namespace, with one port per host.
  const ports = spawnSync('ip', ['-n', `${lab.prefix}-sw`, '-o', 'link', 'show', 'master', 'br0'], { encoding: 'utf8' }).stdout;
  assert.deepEqual([...ports.matchAll(/^\d+: (p\d+)@/gm)].map((m) => m[1]).sort(), ['p1', 'p2', 'p3']);
});

test('two labs side by side do not collide, and down leaves nothing', async (t) => {
  if (!requireLab(t)) return;
  const labs: Lab[] = [];
  t.after(async () => {
    for (const l of labs) await l.destroy();
  });
  const [a, b] = await Promise.all([createLab({ hosts: 2 }), createLab({ hosts: 2 })]);
  labs.push(a, b);
  assert.notEqual(a.prefix, b.prefix);
  // Same addresses in both labs, each reachable within its own lab.
  assert.equal((await a.ping('h1', '192.0.2.2', { count: 1 })).received, 1);
  assert.equal((await b.ping('h2', '192.0.2.1', { count: 1 })).received, 1);
  // A process in lab b is killed by destroy().
  const sleeper = b.spawn('h1', 'sleep', ['60']);
  assert.ok(sleeper.running());
  assert.deepEqual(listNamespaces(a.prefix).sort(), [`${a.prefix}-h1`, `${a.prefix}-h2`, `${a.prefix}-sw`]);

  await b.destroy();
  assert.deepEqual(listNamespaces(b.prefix), []);
  assert.equal(sleeper.running(), false);
  // Lab a is untouched by b's teardown.
  assert.equal((await a.ping('h2', '2001:db8::1', { count: 1 })).received, 1);
  await a.destroy();
  assert.deepEqual(listNamespaces(a.prefix), []);
  await assert.rejects(a.exec('h1', 'true'), { code: 'ERR_LAB_DESTROYED' });
  // down is idempotent.
  assert.equal(spawnSync(NETNS_LAB, ['down', a.prefix]).status, 0);
});

test('a LAN behind a host: its own namespace on the gateway only, no route beyond, removed by down; bad specs refused', async (t) => {
  if (!requireLab(t)) return;
  const lab = await createLab({ hosts: 2, lans: { h1: '10.50.1.0/24', h2: '10.50.2.0/28' } });
  t.after(() => lab.destroy());
  assert.deepEqual(
    lab.lans.map((l) => [l.name, l.ns, l.gateway, l.gatewayAddress, l.ipv4, l.cidr]),
    [
      ['l1', `${lab.prefix}-l1`, 'h1', '10.50.1.1', '10.50.1.2', '10.50.1.0/24'],
      ['l2', `${lab.prefix}-l2`, 'h2', '10.50.2.1', '10.50.2.2', '10.50.2.0/28'],
    ],
  );
  assert.deepEqual(listNamespaces(lab.prefix).sort(), ['h1', 'h2', 'l1', 'l2', 'sw'].map((n) => `${lab.prefix}-${n}`));
  // lab.hosts is what it always was: the LAN hosts are apart
  assert.equal(lab.hosts.length, 2);
  assert.equal((await lab.ping('l1', '10.50.1.1', { count: 1 })).received, 1, 'LAN host reaches its gateway');
  assert.equal((await lab.ping('h1', '10.50.1.2', { count: 1 })).received, 1, 'gateway reaches its LAN host');
  // nothing beyond the LAN: no route from l1 to the underlay, no forwarding on the gateway
  const beyond = await lab.exec('l1', 'ping', ['-n', '-c', '1', '-W', '1', '192.0.2.2'], { check: false });
  assert.equal(beyond.code, 2, 'no route from the LAN host to the underlay');
  assert.equal((await lab.exec('h1', 'cat', ['/proc/sys/net/ipv4/ip_forward'])).stdout, '0\n');
  assert.equal((await lab.exec('l1', 'ip', ['-4', 'route'])).stdout.trim(), '10.50.1.0/24 dev eth0 proto kernel scope link src 10.50.1.2');
  // netns-lab exec reaches a LAN host by name
  assert.match(spawnSync(NETNS_LAB, ['exec', lab.prefix, 'l2', 'ip', '-4', '-o', 'addr', 'show', 'dev', 'eth0'], { encoding: 'utf8' }).stdout, /10\.50\.2\.2\/28/);
  // bad specs: exit 2 and nothing built
  const other = `${lab.prefix}q`;
  t.after(() => {
    spawnSync(NETNS_LAB, ['down', other]);
  });
  for (const spec of ['h3:10.1.0.0/24', 'h1:10.1.0.1/24', 'h1:10.1.0.0/31', 'h1:fd00::/64', 'h1']) {
    const r = spawnSync(NETNS_LAB, ['up', other, '2', '--lan', spec], { encoding: 'utf8' });
    assert.equal(r.status, 2, `${spec}: ${r.stderr}`);
  }
  assert.equal(spawnSync(NETNS_LAB, ['up', other, '2', '--lan', 'h1:10.1.0.0/24', '--lan', 'h1:10.2.0.0/24']).status, 2, 'one LAN per host');
  assert.deepEqual(listNamespaces(other), []);
  await lab.destroy();
  assert.deepEqual(listNamespaces(lab.prefix), [], 'down removes the LAN namespaces too');
});

test('down after a partial set-up removes everything; a used prefix is refused', async (t) => {
  if (!requireLab(t)) return;
  const lab = await createLab({ hosts: 1 });
  t.after(() => lab.destroy());
  // Same prefix again: refused with exit 3, the running lab stays intact.
  const again = spawnSync(NETNS_LAB, ['up', lab.prefix, '2'], { encoding: 'utf8' });
  assert.equal(again.status, 3);
  assert.equal(listNamespaces(lab.prefix).length, 2);
  // A set-up that fails half way (bad impairment) removes what it built.
  const partial = `${lab.prefix}p`;
  t.after(() => {
    spawnSync(NETNS_LAB, ['down', partial]);
  });
  spawnSync('ip', ['netns', 'add', `${partial}-h7`]); // a stray leftover of a crashed run
  const bad = spawnSync(NETNS_LAB, ['up', partial, '2', '--impair', 'h2:loss=5%'], { encoding: 'utf8' });
  assert.equal(bad.status, 3, bad.stderr); // leftover makes the prefix "in use"
  assert.equal(spawnSync(NETNS_LAB, ['down', partial]).status, 0);
  assert.deepEqual(listNamespaces(partial), []);
  const bad2 = spawnSync(NETNS_LAB, ['up', partial, '2', '--impair', 'h2:delay=10ms'], { encoding: 'utf8' });
  assert.equal(bad2.status, 2);
  assert.deepEqual(listNamespaces(partial), []);
  // Interrupted in the middle of a large set-up: cleaned up by the trap.
  const int = spawnSync('timeout', ['-s', 'TERM', '0.3', NETNS_LAB, 'up', partial, '60'], { encoding: 'utf8' });
  assert.notEqual(int.status, 0);
  await waitFor(() => listNamespaces(partial).length === 0, { timeoutMs: 30_000, description: 'interrupted lab removed' });
});

test('impairment: 50% loss is measurable, the other direction and other hosts unaffected', async (t) => {
  if (!requireLab(t)) return;
  const lab = await createLab({ hosts: 3, impair: { h2: { lossPercent: 50 } } });
  t.after(() => lab.destroy());
  const lossy = await lab.ping('h1', lab.hosts[1].ipv4, { count: 40, intervalS: 0.01, timeoutS: 1 });
  const lossy6 = await lab.ping('h1', lab.hosts[1].ipv6, { count: 40, intervalS: 0.01, timeoutS: 1 });
  const clean = await lab.ping('h1', lab.hosts[2].ipv4, { count: 40, intervalS: 0.01, deadlineS: 30 });
  // With p = 0.5 and 40 packets, loss outside 15%..85% has probability < 1e-5.
  assert.ok(lossy.lossPercent >= 15 && lossy.lossPercent <= 85, `IPv4 loss ${lossy.lossPercent}%`);
  assert.ok(lossy6.lossPercent >= 15 && lossy6.lossPercent <= 85, `IPv6 loss ${lossy6.lossPercent}%`);
  assert.ok(everyRequestAnswered(clean, 40), `h3 answered every request: ${clean.repliedSeqs.join(',')}`);
});

test('impairment: 100% loss drops every ping, but IPv6 neighbour discovery still works (as ARP does)', async (t) => {
  if (!requireLab(t)) return;
  const lab = await createLab({ hosts: 2, impair: { h2: { lossPercent: 100 } } });
  t.after(() => lab.destroy());
  const v4 = await lab.ping('h1', lab.hosts[1].ipv4, { count: 3, intervalS: 0.05, timeoutS: 1 });
  const v6 = await lab.ping('h1', lab.hosts[1].ipv6, { count: 3, intervalS: 0.05, timeoutS: 1 });
  assert.equal(v4.lossPercent, 100);
  assert.equal(v6.lossPercent, 100);
  // h2 answered h1's neighbour solicitation: h1 knows h2's link-layer address.
  const neigh = await lab.exec('h1', 'ip', ['-6', 'neigh', 'show', lab.hosts[1].ipv6]);
  assert.match(neigh.stdout, /lladdr [0-9a-f:]{17}/, neigh.stdout);
  assert.doesNotMatch(neigh.stdout, /FAILED|INCOMPLETE/, neigh.stdout);
});

test('impairment: wire loss drops per datagram in the switch at the asked rate; bursts leave the hosts segmented', async (t) => {
  if (!requireLab(t, { tools: { nft: 'nftables' } })) return;
  const lab = await createLab({ hosts: 3, impair: { h2: { wireLossPercent: 20 }, h3: { wireLossPercent: 0 } } });
  t.after(() => lab.destroy());
  // 5000 UDP datagrams h1 → h2: the switch drops each with p = 0.2
  const n = 5000;
  const before = await lab.wireLossCounters('h2');
  const sendJs = `
const s = require('node:dgram').createSocket('udp4'); let i = 0;
const next = () => { if (i === ${n}) return s.close(); const b = Buffer.alloc(64); b.writeUInt32BE(i++); s.send(b, 5002, '192.0.2.2', () => (i % 64 ? next() : setImmediate(next))); };
next();`;
  await lab.exec('h1', process.execPath, ['-e', sendJs], { timeoutMs: 60_000 });
  const c = await lab.wireLossCounters('h2');
  const seen = c.seen - before.seen;
  const rate = (c.dropped - before.dropped) / seen;
  t.diagnostic(`wire loss 20 %: ${c.dropped - before.dropped} of ${seen} packets toward h2 dropped (${(rate * 100).toFixed(2)} %)`);
  assert.ok(seen >= n && seen < n + 50, `every datagram passed the switch as one packet (${seen})`);
  // binomial: sd = sqrt(0.2 * 0.8 / 5000) = 0.57 %; 17..23 % is more than 5 sd
  assert.ok(rate > 0.17 && rate < 0.23, `measured drop rate ${rate}`);
  // TCP from h1 to h3: with segmentation forced on every link, no packet on
  // the wire is larger than the link MTU (1500 + 14 Ethernet), so a drop
  // removes one segment, never a 64 KiB super-packet
  const sinkJs = `
const net = require('node:net');
const srv = net.createServer((c) => { let got = 0; c.on('data', (b) => { got += b.length; }); c.on('end', () => { console.log('got ' + got); srv.close(); }); });
srv.listen(5003, '192.0.2.3', () => console.log('ready'));`;
  const sink = lab.spawn('h3', process.execPath, ['-e', sinkJs]);
  await sink.waitForOutput(/ready/);
  const tcpBefore = await lab.wireLossCounters('h3');
  await lab.exec('h1', process.execPath, ['-e', `const s = require('node:net').connect(5003, '192.0.2.3', () => s.end(Buffer.alloc(4 << 20, 7)));`], { timeoutMs: 60_000 });
  await sink.waitForOutput(/got 4194304/);
  const tcp = await lab.wireLossCounters('h3');
  const packets = tcp.seen - tcpBefore.seen;
  const mean = (tcp.seenBytes - tcpBefore.seenBytes) / packets;
  t.diagnostic(`4 MiB over TCP h1 → h3: ${packets} packets, ${mean.toFixed(0)} bytes each on average`);
  assert.equal(tcp.dropped, 0, 'wireloss=0 drops nothing');
  assert.ok(packets >= (4 << 20) / 1500 && mean <= 1514, `${packets} packets of ${mean} bytes`);
});

test('impairment: rate limit caps throughput', async (t) => {
  if (!requireLab(t)) return;
  const lab = await createLab({ hosts: 2, impair: { h2: { rate: '8mbit' } } });
  t.after(() => lab.destroy());
  // 1 MB through a nominal 8 Mbit/s link takes about 1 s; unlimited it is ~instant.
  const sinkJs = `
const net = require('node:net');
const srv = net.createServer((c) => { let n = 0; c.on('data', (b) => { n += b.length; });
  c.on('end', () => { console.log('got ' + n); c.end('k'); srv.close(); }); });
srv.listen(5001, '192.0.2.2', () => console.log('ready'));`;
  const sink = lab.spawn('h2', process.execPath, ['-e', sinkJs]);
  await sink.waitForOutput(/ready/);
  const sendJs = `
const net = require('node:net'); const t = process.hrtime.bigint();
const s = net.connect(5001, '192.0.2.2', () => s.end(Buffer.alloc(1000000, 120)));
s.on('data', () => { console.log((Number(process.hrtime.bigint() - t) / 1e9).toFixed(3)); s.destroy(); });`;
  const r = await lab.exec('h1', process.execPath, ['-e', sendJs], { timeoutMs: 20_000 });
  const seconds = Number(r.stdout.trim());
  await sink.waitForOutput(/got 1000000/);
  // the lower bound is the limit; the upper one only catches a stall
  assert.ok(seconds > 0.6 && seconds < 20, `1 MB took ${seconds} s at 8 Mbit/s`);
  // The other direction is limited too (switch port toward h2 and h2's egress).
  const q = await lab.exec('h2', 'tc', ['qdisc', 'show', 'dev', 'eth0']);
  assert.match(q.stdout, /tbf .*rate 8Mbit/);
});

test('parsePing reads iputils output', () => {
  const out = `PING 192.0.2.2 (192.0.2.2) 56(84) bytes of data.
64 bytes from 192.0.2.2: icmp_seq=1 ttl=64 time=0.051 ms
64 bytes from 192.0.2.2: icmp_seq=3 ttl=64 time=0.102 ms

--- 192.0.2.2 ping statistics ---
3 packets transmitted, 2 received, 33.3333% packet loss, time 2030ms
rtt min/avg/max/mdev = 0.051/0.076/0.102/0.025 ms
`;
  const r = parsePing(out);
  assert.equal(r.transmitted, 3);
  assert.equal(r.received, 2);
  assert.ok(Math.abs(r.lossPercent - 100 / 3) < 1e-9);
  assert.deepEqual(r.rttsMs, [0.051, 0.102]);
  assert.equal(r.avgMs, 0.076);
  assert.throws(() => parsePing('ping: unknown host'));
});

test('waitFor resolves with the first truthy value and times out with ERR_WAIT_TIMEOUT', async () => {
  let n = 0;
  assert.equal(await waitFor(() => (++n >= 3 ? n : 0), { intervalMs: 1 }), 3);
  const boom = new Error('not yet');
  await assert.rejects(
    waitFor(() => {
      throw boom;
    }, { timeoutMs: 30, intervalMs: 5 }),
    (err: { code?: string; cause?: unknown }) => err.code === 'ERR_WAIT_TIMEOUT' && err.cause === boom,
  );
  await assert.rejects(waitFor(async () => false, { timeoutMs: 20 }), { code: 'ERR_WAIT_TIMEOUT' });
});

test('spawnTracked: waits for output, stops with a signal, reports early exit', async () => {
  const p = spawnTracked(process.execPath, ['-e', 'console.log("ready 42"); setInterval(() => {}, 1000)']);
  const m = await p.waitForOutput(/ready (\d+)/);
  assert.equal(m[1], '42');
  assert.equal(p.running(), true);
  const r = await p.stop('SIGTERM', 1000);
  assert.equal(r.signal, 'SIGTERM');
  assert.equal(p.running(), false);
  const q = spawnTracked(process.execPath, ['-e', 'process.exit(3)']);
  await assert.rejects(q.waitForOutput(/never/, { timeoutMs: 5000 }), { code: 'ERR_PROC_TIMEOUT' });
  assert.equal((await q.exited).code, 3);
  const out = await runCommand('sh', ['-c', 'read x; echo "got $x"; exit 5'], { input: 'hello\n' });
  assert.deepEqual([out.code, out.stdout], [5, 'got hello\n']);
});
