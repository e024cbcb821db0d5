/**
 * End to end: data relayed when no direct path works (issue 14 point 4;
 * HOWTO.md, "Nodes behind NAT"). make-network's nodes, keepalive=2:
 *
 *   rho     h1, 192.0.2.1, relay=yes
 *   bravo   h2, behind a MASQUERADE router (endpoint-independent), no endpoint listed
 *   charlie h3, behind a random-fully router (symmetric: a new port per
 *           destination), no endpoint listed
 *   sigma   h4, 192.0.2.4, relay=yes
 *   alpha   h5, 192.0.2.5        delta  h6, 192.0.2.6
 *   (h7: a host that is not a member)
 *
 *  1. bravo → charlie: the negotiation is spliced by a relay and both
 *     punch, but charlie's symmetric NAT defeats it: after the grace period
 *     both send via rho (the first relay of the list), the ping gets
 *     through, status says `via rho`, rho counts the bytes per member.
 *  2. rho is killed: its session stops answering, sigma takes over
 *     (`via sigma`), the ping gets through again.
 *  3. alpha ↔ delta direct; UDP between them blocked (iptables in h6):
 *     relayed via sigma; unblocked: back to `direct`.
 *  4. A non-member (h7) sends relay datagrams (type 4) to sigma naming
 *     delta: dropped and counted (`unknown-index`, `unauthenticated`),
 *     nothing forwarded to delta.
 *
 * Needs root, `ip netns`, /dev/net/tun, ping, iptables and python3; skips otherwise.
 */
import assert from 'node:assert/strict';
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { controlRequest, makeNetwork, pingFrom, startNode } from './lib/cluevpn.js';
import { daemonTest } from './lib/daemon-test.js';
import { waitFor } from './lib/wait-for.js';

const CHARLIE = '10.99.0.3';
const DELTA = '10.99.0.6';

test('relayed data: symmetric NAT via a relay, failover to a second relay, UDP blocked and unblocked, a non-member refused', { timeout: 300_000 }, async (t) => {
  const env = await daemonTest(t, { hosts: 7, nat: { h2: { udpTimeoutS: 30 }, h3: { udpTimeoutS: 30, mode: 'random-fully' } } }, 'relaydata-e2e-');
  if (env === null) return;
  const { lab, dir, nodes } = env;
  const [h1, h2, h3, h4, h5, h6, h7] = lab.hosts;
  assert.equal(h3!.nat?.mode, 'random-fully');
  const net = await makeNetwork(join(dir, 'n'), {
    net: 'relaydata',
    logLevel: Number(process.env.RELAYDATA_LOGLEVEL ?? 5),
    nodes: [['rho', `${h1!.ipv4},relay`], ['bravo', '-'], ['charlie', '-'], ['sigma', `${h4!.ipv4},relay`], ['alpha', h5!.ipv4], ['delta', h6!.ipv4]],
  });
  for (const n of ['rho', 'bravo', 'charlie', 'sigma', 'alpha', 'delta']) appendFileSync(net.conf(n), 'keepalive=2\n');
  const status = (n: string) => controlRequest(net.conf(n), 'status');

  const rho = await startNode(lab, h1!, net.nodeDir('rho'));
  const sigma = await startNode(lab, h4!, net.nodeDir('sigma'));
  nodes.push(rho, sigma);
  const bravo = await startNode(lab, h2!, net.nodeDir('bravo'));
  const charlie = await startNode(lab, h3!, net.nodeDir('charlie'));
  const alpha = await startNode(lab, h5!, net.nodeDir('alpha'));
  const delta = await startNode(lab, h6!, net.nodeDir('delta'));
  nodes.push(bravo, charlie, alpha, delta);
  for (const n of [bravo, charlie, alpha, delta]) {
    await waitFor(async () => (await n.peer('rho')).cipher !== null && (await n.peer('sigma')).cipher !== null, { timeoutMs: 60_000, intervalMs: 200, description: `${n.name} keyed with both relays` });
  }

  // 1. Symmetric NAT: punching fails, the data goes via rho.
  const asked = Date.now();
  try {
    await waitFor(async () => (await pingFrom(lab, h2!, CHARLIE, 1, 1)).received === 1, { timeoutMs: 90_000, intervalMs: 0, description: 'bravo → charlie' });
  } catch (err) {
    t.diagnostic(`bravo→charlie: ${JSON.stringify(await bravo.peer('charlie'))}`);
    t.diagnostic(`charlie→bravo: ${JSON.stringify(await charlie.peer('bravo'))}`);
    t.diagnostic(`rho: ${JSON.stringify((await status('rho')).relay)} drops ${JSON.stringify((await status('rho')).drops)}`);
    for (const n of [bravo, charlie]) {
      t.diagnostic(`${n.name} drops ${JSON.stringify((await status(n.name)).drops)}`);
      t.diagnostic(`${n.name}: ${n.log().split('\n').filter((l) => /path|failover|no-reply|negotiated/.test(l)).slice(0, 30).join('\n')}`);
    }
    throw err;
  }
  t.diagnostic(`bravo → charlie (symmetric NAT) first ping ${Date.now() - asked} ms after the first try`);
  await waitFor(async () => (await bravo.peer('charlie')).path === 'via rho' && (await charlie.peer('bravo')).path === 'via rho', { timeoutMs: 30_000, intervalMs: 200, description: 'both via rho' });
  assert.ok((await pingFrom(lab, h2!, CHARLIE, 5, 1)).received >= 4, 'bravo → charlie via rho');
  const bc = await bravo.peer('charlie');
  assert.ok((bc.relayed?.txBytes ?? 0) > 0 && (bc.relayed?.rxBytes ?? 0) > 0, `bravo counts relayed bytes both ways: ${JSON.stringify(bc.relayed)}`);
  const atRho = (await status('rho')).relay!;
  t.diagnostic(`rho relay: ${JSON.stringify({ forwarded: atRho.forwarded, forwardedBytes: atRho.forwardedBytes, members: atRho.members })}`);
  assert.ok((atRho.forwardedBytes ?? 0) > 0, 'rho forwarded bytes');
  assert.ok((atRho.members?.bravo?.fromBytes ?? 0) > 0 && (atRho.members?.charlie?.fromBytes ?? 0) > 0, 'rho counts per member');
  assert.equal((await status('rho')).peers.find((p) => p.name === 'bravo')!.rxPackets, 0, 'rho delivered none of it to itself');

  // 2. rho dies: sigma takes over.
  await rho.process.stop('SIGKILL');
  const killed = Date.now();
  await waitFor(async () => (await bravo.peer('charlie')).path === 'via sigma' && (await charlie.peer('bravo')).path === 'via sigma', { timeoutMs: 60_000, intervalMs: 200, description: 'both via sigma' });
  await waitFor(async () => (await pingFrom(lab, h2!, CHARLIE, 1, 1)).received === 1, { timeoutMs: 30_000, intervalMs: 0, description: 'bravo → charlie via sigma' });
  t.diagnostic(`failover to sigma ${Date.now() - killed} ms after rho was killed`);
  assert.ok(((await status('sigma')).relay!.members?.bravo?.fromBytes ?? 0) > 0, 'sigma carries bravo’s data');

  // 3. UDP between alpha and delta blocked, then unblocked.
  await waitFor(async () => (await pingFrom(lab, h5!, DELTA, 1, 1)).received === 1, { timeoutMs: 60_000, intervalMs: 0, description: 'alpha → delta' });
  await waitFor(async () => (await alpha.peer('delta')).path === 'direct', { timeoutMs: 20_000, intervalMs: 200, description: 'alpha → delta direct' });
  const rules = [
    ['INPUT', '-s', h5!.ipv4],
    ['OUTPUT', '-d', h5!.ipv4],
  ];
  for (const [chain, dirFlag, addr] of rules) await lab.exec(h6!, 'iptables', ['-w', '-A', chain!, dirFlag!, addr!, '-p', 'udp', '-j', 'DROP']);
  const blocked = Date.now();
  await waitFor(async () => (await alpha.peer('delta')).path === 'via sigma' && (await delta.peer('alpha')).path === 'via sigma', { timeoutMs: 60_000, intervalMs: 200, description: 'alpha ↔ delta via sigma' });
  await waitFor(async () => (await pingFrom(lab, h5!, DELTA, 1, 1)).received === 1, { timeoutMs: 30_000, intervalMs: 0, description: 'alpha → delta relayed' });
  t.diagnostic(`UDP blocked: relayed ${Date.now() - blocked} ms later`);
  const relayedBefore = (await alpha.peer('delta')).relayed!.txPackets;
  assert.ok(relayedBefore > 0);
  for (const [chain, dirFlag, addr] of rules) await lab.exec(h6!, 'iptables', ['-w', '-D', chain!, dirFlag!, addr!, '-p', 'udp', '-j', 'DROP']);
  const unblocked = Date.now();
  await waitFor(async () => (await alpha.peer('delta')).path === 'direct' && (await delta.peer('alpha')).path === 'direct', { timeoutMs: 60_000, intervalMs: 200, description: 'alpha ↔ delta direct again' });
  t.diagnostic(`UDP unblocked: direct again ${Date.now() - unblocked} ms later`);
  assert.ok((await pingFrom(lab, h5!, DELTA, 5, 1)).received >= 4, 'alpha → delta direct again');
  const relayedAfter = (await alpha.peer('delta')).relayed!.txPackets;
  assert.ok(relayedAfter - relayedBefore <= 2, `no data relayed once direct (${relayedAfter - relayedBefore} more)`);

  // 4. A non-member's relay datagrams: dropped and counted, nothing forwarded.
  const deltaId = (await status('sigma')).peers.find((p) => p.name === 'delta')!.id;
  const before = await status('sigma');
  const deltaBefore = await delta.peer('sigma');
  const N = 50;
  const script = `import socket, os, struct
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(${N}):
    hdr = struct.pack('>BBHIIQ', 0x14, 0, 0, int.from_bytes(os.urandom(4), 'big'), 1, i)
    inner = struct.pack('>BBHIIQ', 0x11, 0, 0, 1, 1, i) + os.urandom(60)
    s.sendto(hdr + struct.pack('>I', ${deltaId}) + inner + os.urandom(16), ('${h4!.ipv4}', 3406))`;
  await lab.exec(h7!, 'python3', ['-c', script], { timeoutMs: 20_000 });
  await waitFor(async () => ((await status('sigma')).relay!.unauthenticated ?? 0) >= (before.relay!.unauthenticated ?? 0) + N, { timeoutMs: 20_000, intervalMs: 200, description: 'the stranger\'s relay datagrams counted' });
  const after = await status('sigma');
  assert.ok((after.drops['unknown-index'] ?? 0) >= (before.drops['unknown-index'] ?? 0) + N, 'counted as unknown-index');
  assert.equal(after.relay!.members?.delta?.toPackets ?? 0, before.relay!.members?.delta?.toPackets ?? 0, 'nothing forwarded to delta');
  assert.equal((await delta.peer('sigma')).drops['unknown-index'] ?? 0, deltaBefore.drops['unknown-index'] ?? 0);
  env.passed();
});
