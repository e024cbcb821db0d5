/**
 * End to end: path MTU (issue 14 point 5; dataplane src/pmtu.ts). One
 * network of three nodes, two of them behind routers whose link to the
 * host has a small MTU (scripts/netns-lab --nat HOST:mtu=B):
 *
 *   alpha (h1, 192.0.2.1)   gamma (h2, behind NAT, link MTU 1280)   delta (h3, behind NAT, link MTU 1400)
 *
 * The TUN MTU stays 1420 everywhere; larger outer datagrams never leave
 * (the socket sets DF), so:
 *  1. each side learns the path MTU of each pair by probing (1280, 1400)
 *     and shows it in `status` (with the inner MTU, path − 64);
 *  2. `ping -M do` at exactly the inner MTU passes, and at the TUN MTU
 *     (1420) gets "fragmentation needed" with the inner MTU back, both
 *     ways — never silence;
 *  3. a 200 MB TCP transfer over each pair completes with matching sha256
 *     (MSS clamped on the SYN), and no host fragmented an outer datagram
 *     (the kernel's Ip FragCreates stays 0).
 *
 * Needs root, `ip netns`, /dev/net/tun, ping and iptables; skips otherwise.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { cluevpn, makeNetwork, startNode, type RunningNode } from './lib/cluevpn.js';
import { daemonTest } from './lib/daemon-test.js';
import type { Lab, LabHost } from './lib/lab.js';
import { waitFor } from './lib/wait-for.js';

const ALPHA = '10.99.0.1';
const GAMMA = '10.99.0.2';
const DELTA = '10.99.0.3';
const TUN_MTU = 1420;
const BYTES = 200 * 1024 * 1024;

/** Receives one TCP stream on ADDR:PORT, writes {bytes, sha256} to FILE as JSON, exits. */
const SERVER = `
const [addr, port, file] = process.argv.slice(1);
const net = require('node:net'), crypto = require('node:crypto'), fs = require('node:fs');
const srv = net.createServer((c) => {
  const h = crypto.createHash('sha256'); let n = 0;
  c.on('data', (d) => { h.update(d); n += d.length; });
  c.on('end', () => { fs.writeFileSync(file, JSON.stringify({ bytes: n, sha256: h.digest('hex') })); c.end(); srv.close(); });
});
srv.listen(Number(port), addr, () => console.log('listening'));
`;

/** Sends BYTES random bytes to ADDR:PORT, prints {bytes, sha256} of what it sent. */
const CLIENT = `
const [addr, port, total] = process.argv.slice(1);
const net = require('node:net'), crypto = require('node:crypto');
const h = crypto.createHash('sha256'); let left = Number(total);
const c = net.connect(Number(port), addr, () => {
  const pump = () => {
    while (left > 0) {
      const b = crypto.randomBytes(Math.min(left, 1 << 20)); left -= b.length; h.update(b);
      if (!c.write(b)) return c.once('drain', pump);
    }
    c.end();
  };
  pump();
});
c.on('error', (e) => { console.error(e.message); process.exit(1); });
c.on('close', () => console.log(JSON.stringify({ bytes: Number(total), sha256: h.digest('hex') })));
`;

/** ping -M do; returns replies and the text (for the ICMP error). */
async function pingDf(lab: Lab, from: LabHost, target: string, size: number, count = 3): Promise<{ received: number; text: string }> {
  const r = await lab.exec(from, 'ping', ['-n', '-M', 'do', '-s', String(size), '-c', String(count), '-i', '0.3', '-W', '2', target], { check: false, timeoutMs: 30_000 });
  const m = /(\d+) received/.exec(r.stdout);
  return { received: m ? Number(m[1]) : 0, text: r.stdout + r.stderr };
}

/** The kernel's `Ip: FragCreates` counter in a host's namespace (datagrams it fragmented). */
async function fragCreates(lab: Lab, host: LabHost): Promise<number> {
  const lines = (await lab.exec(host, 'cat', ['/proc/net/snmp'])).stdout.split('\n').filter((l) => l.startsWith('Ip: '));
  const [names, values] = lines.map((l) => l.split(/\s+/));
  const i = names!.indexOf('FragCreates');
  assert.ok(i > 0, 'FragCreates in /proc/net/snmp');
  return Number(values![i]);
}

async function pmtuOf(node: RunningNode, peer: string): Promise<{ pmtu: number | null; innerMtu: number }> {
  const p = await node.peer(peer);
  return { pmtu: p.pmtu, innerMtu: p.innerMtu };
}

async function transfer(lab: Lab, dir: string, from: LabHost, to: LabHost, addr: string, port: number, label: string): Promise<{ ms: number }> {
  const file = join(dir, `tcp-${label}.json`);
  const srv = lab.spawn(to, process.execPath, ['-e', SERVER, addr, String(port), file], { label: `tcp server ${label}` });
  await srv.waitForOutput(/listening/, { timeoutMs: 20_000 });
  const t0 = Date.now();
  const r = await lab.exec(from, process.execPath, ['-e', CLIENT, addr, String(port), String(BYTES)], { timeoutMs: 600_000 });
  const ms = Date.now() - t0;
  const sent = JSON.parse(r.stdout.trim()) as { bytes: number; sha256: string };
  await waitFor(() => existsSync(file), { timeoutMs: 60_000, description: `the ${label} server's result` });
  const got = JSON.parse(readFileSync(file, 'utf8')) as { bytes: number; sha256: string };
  assert.equal(got.bytes, BYTES, `${label}: every byte arrived`);
  assert.equal(got.sha256, sent.sha256, `${label}: sha256 matches`);
  return { ms };
}

test('path MTU: learnt per peer at 1280 and 1400, ICMP "fragmentation needed" instead of silence, 200 MB TCP with matching sha256', { timeout: 900_000 }, async (t) => {
  const env = await daemonTest(t, { hosts: 3, nat: { h2: { mtu: 1280 }, h3: { mtu: 1400 } } }, 'pmtu-e2e-');
  if (env === null) return;
  const { lab, dir, nodes } = env;
  const [h1, h2, h3] = lab.hosts as [LabHost, LabHost, LabHost];
  const net = await makeNetwork(join(dir, 'n'), { net: 'pmtu', nodes: [['alpha', h1.ipv4], ['gamma', '-'], ['delta', '-']] });
  const alpha = await startNode(lab, h1, net.nodeDir('alpha'));
  nodes.push(alpha);
  const gamma = await startNode(lab, h2, net.nodeDir('gamma'));
  nodes.push(gamma);
  const delta = await startNode(lab, h3, net.nodeDir('delta'));
  nodes.push(delta);

  const cases: Array<{ far: RunningNode; farHost: LabHost; farAddr: string; path: number }> = [
    { far: gamma, farHost: h2, farAddr: GAMMA, path: 1280 },
    { far: delta, farHost: h3, farAddr: DELTA, path: 1400 },
  ];
  for (const c of cases) {
    // Traffic both ways makes the sessions (the far node is behind NAT: it speaks first).
    await waitFor(async () => (await pingDf(lab, c.farHost, ALPHA, 56, 1)).received === 1, { timeoutMs: 90_000, intervalMs: 0, description: `${c.far.name} → alpha` });
    // 1. learnt, both ends
    const inner = c.path - 28 - 36;
    await waitFor(async () => {
      const a = await pmtuOf(alpha, c.far.name);
      const f = await pmtuOf(c.far, 'alpha');
      return a.pmtu === c.path && f.pmtu === c.path && a.innerMtu === inner && f.innerMtu === inner;
    }, { timeoutMs: 90_000, intervalMs: 200, description: `alpha and ${c.far.name} learn path MTU ${c.path}` });
    t.diagnostic(`alpha ↔ ${c.far.name}: path MTU ${c.path}, inner MTU ${inner}`);
    // visible to the operator: `cluevpn status` (PMTU column) and `--json`
    const text = (await cluevpn('-c', alpha.conf, 'status')).stdout;
    assert.match(text, new RegExp(`^${c.far.name} .* ${c.path} \\(inner ${inner}, [^)]*\\)`, 'm'), text);
    const json = JSON.parse((await cluevpn('-c', alpha.conf, 'status', '--json')).stdout) as { peers: Array<{ name: string; pmtu: number | null; innerMtu: number; pmtuAgeMs: number | null }> };
    const row = json.peers.find((p) => p.name === c.far.name);
    assert.equal(row?.pmtu, c.path);
    assert.equal(row?.innerMtu, inner);
    assert.ok(row?.pmtuAgeMs !== null && row!.pmtuAgeMs! >= 0);

    // 2. at the inner MTU: passes; at the TUN MTU: an ICMP error with the inner MTU, both directions
    await waitFor(async () => (await pingDf(lab, h1, c.farAddr, inner - 28, 3)).received === 3, { timeoutMs: 60_000, intervalMs: 0, description: `ping -M do -s ${inner - 28} alpha → ${c.far.name}` });
    for (const [from, to, what] of [[h1, c.farAddr, `alpha → ${c.far.name}`], [c.farHost, ALPHA, `${c.far.name} → alpha`]] as const) {
      const big = await pingDf(lab, from, to, TUN_MTU - 28, 3);
      t.diagnostic(`ping -M do -s ${TUN_MTU - 28} ${what}: ${big.received} received; ${big.text.split('\n').filter((l) => /mtu/i.test(l))[0] ?? ''}`);
      assert.equal(big.received, 0, `${what}: ${TUN_MTU}-byte DF packets cannot pass a ${c.path} path`);
      // The very first packet is answered (no silent loss): the first error line is about icmp_seq=1
      // (or a local error, when the kernel already knew the MTU from an earlier answer).
      const first = big.text.split('\n').find((l) => /Frag needed|local error/.test(l)) ?? '(no error at all: silence)';
      assert.match(first, new RegExp(`(icmp_seq=1 Frag needed and DF set \\(mtu = ${inner}\\)|local error: message too long, mtu=${inner})`), `${what}: the first packet gets an ICMP error with the inner MTU, not silence`);
    }
  }
  const a = await alpha.status();
  const tooBig = a.peers.reduce((n, p) => n + (p.drops['too-big'] ?? 0), 0);
  assert.ok(tooBig >= 1, `alpha counted too-big drops (${tooBig})`);

  // 3. 200 MB over each pair, sha256 checked (the slowest part under load: generous deadline)
  for (const [c, port] of [[cases[0]!, 5201], [cases[1]!, 5202]] as const) {
    const { ms } = await transfer(lab, dir, h1, c.farHost, c.farAddr, port, `alpha→${c.far.name}`);
    t.diagnostic(`200 MB alpha → ${c.far.name} (path MTU ${c.path}): ${ms} ms, ${((BYTES * 8) / ms / 1000).toFixed(0)} Mbit/s, sha256 equal`);
  }
  // Nothing was fragmented on the underlay: the data sockets send with DF and size datagrams by the path.
  for (const h of [h1, h2, h3]) assert.equal(await fragCreates(lab, h), 0, `${h.name} fragmented no outer datagram`);
  env.passed();
});
