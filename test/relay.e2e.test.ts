/**
 * End to end: two nodes behind two different NATs reach each other through
 * a relay's rendezvous (issue 14, points 2 and 3; HOWTO.md, "Nodes behind
 * NAT"). make-network's nodes, each behind its own MASQUERADE router
 * (scripts/netns-lab --nat: endpoint-independent mapping, unsolicited
 * inbound dropped, silent UDP mappings forgotten after 30 s):
 *
 *   rho     h1, 192.0.2.1, relay=yes
 *   bravo   h2, behind NAT (public 192.0.2.2), listed without an endpoint
 *   charlie h3, behind NAT (public 192.0.2.3), listed without an endpoint
 *   sigma   h4, 192.0.2.4, relay=yes
 *   (h5: a host that is not a member)
 *   delta   h6, 192.0.2.6, listed, but its TCP port is firewalled (DROP)
 *
 *  1. bravo and charlie negotiate with both relays by themselves (relays
 *     first); rho's status shows their observed (NAT) endpoints.
 *  2. bravo pings charlie, which no one can open TCP or UDP to: bravo's
 *     negotiation reaches charlie through rho (rho splices bravo's control
 *     connection to the one charlie opens on rho's offer; the TLS inside is
 *     bravo↔charlie's, mutual), then rho tells each where the other's
 *     packets come from and both punch: the ping gets through.
 *  3. bravo's status says `direct` for charlie, at charlie's NAT address;
 *     rho counted the rendezvous and the splice, and carried no data
 *     packet between them.
 *  4. A non-member (h5) sends rendezvous datagrams (type 3) to rho: all are
 *     dropped and counted (`unknown-index`), nothing is answered or relayed.
 *  5. bravo → delta: delta is listed, but TCP to it is impossible; bravo's
 *     negotiation falls back to a relay's splice, and the data goes directly
 *     to delta's listed UDP endpoint.
 *
 * Needs root, `ip netns`, /dev/net/tun, ping and iptables; skips otherwise.
 */
import assert from 'node:assert/strict';
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { controlRequest, makeNetwork, pingFrom, startNode } from './lib/cluevpn.js';
import { daemonTest } from './lib/daemon-test.js';
import { waitFor } from './lib/wait-for.js';

const CHARLIE = '10.99.0.3';
const BRAVO = '10.99.0.2';
const DELTA = '10.99.0.5';

test('two nodes behind two NATs: negotiation spliced by the relay, then hole punching gives a direct path', { timeout: 240_000 }, async (t) => {
  const env = await daemonTest(t, { hosts: 6, nat: { h2: { udpTimeoutS: 30 }, h3: { udpTimeoutS: 30 } } }, 'relay-e2e-');
  if (env === null) return;
  const { lab, dir, nodes } = env;
  const [h1, h2, h3, h4, h5, h6] = lab.hosts;
  assert.equal(h2!.nat?.publicIpv4, '192.0.2.2');
  assert.equal(h3!.nat?.publicIpv4, '192.0.2.3');
  const net = await makeNetwork(join(dir, 'n'), { net: 'punch', nodes: [['rho', `${h1!.ipv4},relay`], ['bravo', '-'], ['charlie', '-'], ['sigma', `${h4!.ipv4},relay`], ['delta', h6!.ipv4]] });
  for (const n of ['rho', 'bravo', 'charlie', 'sigma', 'delta']) appendFileSync(net.conf(n), 'keepalive=5\n');

  const rho = await startNode(lab, h1!, net.nodeDir('rho'));
  const sigma = await startNode(lab, h4!, net.nodeDir('sigma'));
  nodes.push(rho, sigma);
  const bravo = await startNode(lab, h2!, net.nodeDir('bravo'));
  const charlie = await startNode(lab, h3!, net.nodeDir('charlie'));
  nodes.push(bravo, charlie);

  // 1. Both behind NAT hold a session with the relay, which sees their NAT addresses.
  await waitFor(async () => {
    const s = await controlRequest(net.conf('rho'), 'status');
    return s.peers.filter((p) => (p.name === 'bravo' || p.name === 'charlie') && p.observedEndpoint != null).length === 2;
  }, { timeoutMs: 60_000, intervalMs: 200, description: 'rho hears bravo and charlie' });
  const atRho = await controlRequest(net.conf('rho'), 'status');
  assert.equal(atRho.relay?.relay, true, 'rho serves as a relay');
  assert.equal(atRho.peers.find((p) => p.name === 'bravo')?.observedEndpoint?.startsWith('192.0.2.2:'), true, 'bravo observed at its NAT');
  assert.equal(atRho.peers.find((p) => p.name === 'charlie')?.observedEndpoint?.startsWith('192.0.2.3:'), true, 'charlie observed at its NAT');
  assert.equal((await controlRequest(net.conf('bravo'), 'status')).relay?.relay, false);
  // ... and each keeps a session with both relays
  for (const n of [bravo, charlie]) {
    await waitFor(async () => (await n.peer('rho')).cipher !== null && (await n.peer('sigma')).cipher !== null, { timeoutMs: 60_000, intervalMs: 200, description: `${n.name} keyed with both relays` });
  }

  // 2. bravo → charlie: neither can be reached first.
  const asked = Date.now();
  await waitFor(async () => (await pingFrom(lab, h2!, CHARLIE, 1, 1)).received === 1, { timeoutMs: 60_000, intervalMs: 0, description: 'bravo → charlie' });
  t.diagnostic(`bravo → charlie (both behind NAT) first ping ${Date.now() - asked} ms after the first try`);
  assert.ok((await pingFrom(lab, h3!, BRAVO, 3, 1)).received >= 2, 'charlie → bravo');

  // 3. The path is direct, at each other's NAT address.
  await waitFor(async () => (await bravo.peer('charlie')).path === 'direct', { timeoutMs: 20_000, intervalMs: 200, description: 'bravo sees a direct path to charlie' });
  const bc = await bravo.peer('charlie');
  const cb = await charlie.peer('bravo');
  assert.equal(bc.observedEndpoint?.startsWith('192.0.2.3:'), true, `bravo reaches charlie at its NAT: ${bc.observedEndpoint}`);
  assert.equal(cb.observedEndpoint?.startsWith('192.0.2.2:'), true, `charlie reaches bravo at its NAT: ${cb.observedEndpoint}`);
  assert.equal(cb.path, 'direct');
  const r = (await controlRequest(net.conf('rho'), 'status')).relay!;
  const b = (await controlRequest(net.conf('bravo'), 'status')).relay!;
  const c = (await controlRequest(net.conf('charlie'), 'status')).relay!;
  t.diagnostic(`rho: ${JSON.stringify(r)}`);
  assert.ok(r.splices >= 1 && r.splicedBytes > 0, 'the negotiation went through a splice at rho');
  assert.ok(r.located >= 1, 'rho answered a rendezvous');
  assert.ok(b.dialled + c.dialled >= 1 && b.reverseLegs + c.reverseLegs >= 1, 'one side dialled through rho, the other answered its offer');
  assert.ok(b.punches >= 1 && c.punches >= 1, 'both punched');
  // rho never carried their data: its own data counters with them are keepalives only
  const rhoBravo = (await controlRequest(net.conf('rho'), 'status')).peers.find((p) => p.name === 'bravo')!;
  assert.equal(rhoBravo.rxPackets, 0, 'no data packet from bravo reached rho');

  // 4. A non-member's rendezvous datagrams: dropped and counted, nothing answered.
  const before = await controlRequest(net.conf('rho'), 'status');
  const N = 50;
  const script = `import socket, os, struct
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(${N}):
    hdr = struct.pack('>BBHIIQ', 0x13, 0, 0, int.from_bytes(os.urandom(4), 'big'), 1, i)
    s.sendto(hdr + bytes([1, 1, 7]) + b'charlie' + os.urandom(16), ('${h1!.ipv4}', 3406))`;
  await lab.exec(h5!, 'python3', ['-c', script], { timeoutMs: 20_000 });
  await waitFor(async () => ((await controlRequest(net.conf('rho'), 'status')).drops['unknown-index'] ?? 0) >= (before.drops['unknown-index'] ?? 0) + N, { timeoutMs: 20_000, intervalMs: 200, description: 'the stranger\'s datagrams counted' });
  const after = await controlRequest(net.conf('rho'), 'status');
  assert.equal(after.relay!.located, before.relay!.located, 'no rendezvous answered for a stranger');
  assert.equal(after.relay!.splices, before.relay!.splices);
  assert.deepEqual(after.relay!.dropped, before.relay!.dropped, 'nothing reached the relay service');
  assert.equal(after.peers.find((p) => p.name === 'charlie')!.txPackets, before.peers.find((p) => p.name === 'charlie')!.txPackets, 'nothing forwarded to charlie');

  // 5. delta is listed but nobody can open TCP to it: negotiation through a relay, data direct.
  await lab.exec(h6!, 'iptables', ['-w', '-A', 'INPUT', '-p', 'tcp', '--dport', '3406', '-j', 'DROP']);
  const delta = await startNode(lab, h6!, net.nodeDir('delta'));
  nodes.push(delta);
  await waitFor(async () => (await delta.peer('rho')).cipher !== null, { timeoutMs: 60_000, intervalMs: 200, description: 'delta keyed with rho (it dials out)' });
  const spliced = async (): Promise<number> => (await controlRequest(net.conf('rho'), 'status')).relay!.splices + (await controlRequest(net.conf('sigma'), 'status')).relay!.splices;
  const splicesBefore = await spliced();
  await waitFor(async () => (await pingFrom(lab, h2!, DELTA, 1, 1)).received === 1, { timeoutMs: 60_000, intervalMs: 0, description: 'bravo → delta (TCP to delta blocked)' });
  assert.ok((await spliced()) > splicesBefore, 'the negotiation went through a relay');
  await waitFor(async () => (await bravo.peer('delta')).path === 'direct', { timeoutMs: 20_000, intervalMs: 200, description: 'bravo → delta direct' });
  assert.equal((await bravo.peer('delta')).endpoint, `${h6!.ipv4}:3406`);
  env.passed();
});
