/**
 * Site to site: a host on a LAN behind gateway node alpha reaches a host on
 * a LAN behind gateway node beta. The LAN hosts know nothing of the VPN:
 * each only has a route to the other LAN through its gateway. What the
 * operator sets (HOWTO, "Connecting LANs") is what the test sets: the LANs
 * as subnets of the gateways' BNL records, IPv4 forwarding on the gateways
 * (strict reverse-path filtering left on), a route on each LAN.
 *
 * Then the source checks on forwarded packets:
 *  - at the sender: a LAN source outside alpha's listed subnets is dropped
 *    by alpha (`bad-source`, a drop not tied to a peer);
 *  - at the receiver: when alpha believes a wider subnet is its own but beta
 *    does not (alpha took a list beta never got: the control channel
 *    between them is blocked), beta drops the packets as `spoofed`, counted
 *    on peer alpha.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { bnl, controlRequest, makeNetwork, pingFrom, startNode, type RunningNode } from './lib/cluevpn.js';
import { createLab, requireLab } from './lib/lab.js';
import { waitFor } from './lib/wait-for.js';

/** The LANs: alpha's is a /24, of which only the lower /25 is listed at first. */
const LAN_A = '10.50.1.0/24';
const LAN_A_LISTED = '10.50.1.0/25';
const LAN_B = '10.50.2.0/24';
/** A second address on alpha's LAN host, outside the listed /25. */
const OUTSIDE_SOURCE = '10.50.1.200';
const N = 10;

test('site to site: LAN host behind alpha ↔ LAN host behind beta through the gateways; spoof checks on forwarded sources', { timeout: 240_000 }, async (t) => {
  if (!requireLab(t, { tools: { iptables: 'iptables' } })) return;
  const dir = mkdtempSync(join(tmpdir(), 's2s-e2e-'));
  const lab = await createLab({ hosts: 2, lans: { h1: LAN_A, h2: LAN_B } });
  const nodes: RunningNode[] = [];
  t.after(async () => {
    for (const n of nodes) if (n.process.running()) await n.process.stop('SIGTERM', 3000);
    await lab.destroy();
    rmSync(dir, { recursive: true, force: true });
  });
  const [l1, l2] = [lab.lan('l1'), lab.lan('l2')];

  // the LANs in the gateways' records
  const net = await makeNetwork(join(dir, 'net'), { net: 's2s', pullInterval: '2s', nodes: [['alpha', lab.hosts[0]!.ipv4], ['beta', lab.hosts[1]!.ipv4]] });
  await bnl('--file', net.masterList, 'addsubnet', 'alpha', LAN_A_LISTED);
  await bnl('--file', net.masterList, 'addsubnet', 'beta', LAN_B);
  await bnl('--file', net.masterList, 'sign', '--key', net.signingKey);
  for (const n of ['alpha', 'beta']) copyFileSync(net.masterList, join(net.nodeDir(n), 'bnl'));
  const alpha = await startNode(lab, 'h1', net.nodeDir('alpha'));
  nodes.push(alpha);
  const beta = await startNode(lab, 'h2', net.nodeDir('beta'));
  nodes.push(beta);

  // the LAN hosts: a route to the other LAN through their gateway, nothing else
  await lab.exec('l1', 'ip', ['route', 'add', LAN_B, 'via', l1.gatewayAddress]);
  await lab.exec('l2', 'ip', ['route', 'add', LAN_A, 'via', l2.gatewayAddress]);
  await lab.exec('l1', 'ip', ['addr', 'add', `${OUTSIDE_SOURCE}/24`, 'dev', 'eth0']);
  // strict reverse-path filtering on the gateways: the daemon's routes satisfy it
  for (const h of ['h1', 'h2']) await lab.exec(h, 'sysctl', ['-qw', 'net.ipv4.conf.all.rp_filter=1']);

  // the tunnel works between the gateways themselves
  await waitFor(async () => (await pingFrom(lab, 'h1', '10.99.0.2', 1, 1)).received === 1, { timeoutMs: 30_000, intervalMs: 0, description: 'alpha → beta through the tunnel' });
  const routesA = (await lab.exec('h1', 'ip', ['-4', 'route'])).stdout;
  const devA = (await alpha.status()).device;
  assert.ok(routesA.split('\n').some((l) => l.startsWith(`${LAN_B} dev ${devA} `)), `alpha routes beta's LAN into the VPN (${devA}):\n${routesA}`);

  // 1. without forwarding on the gateways, nothing crosses
  const closed = await pingFrom(lab, 'l1', l2.ipv4, 2, 1);
  assert.equal(closed.received, 0, 'no forwarding: no reply');

  // 2. forwarding on: LAN to LAN, both ways
  for (const h of ['h1', 'h2']) await lab.exec(h, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
  const betaBefore = await beta.peer('alpha');
  await waitFor(async () => (await pingFrom(lab, 'l1', l2.ipv4, 1, 1)).received === 1, { timeoutMs: 20_000, intervalMs: 0, description: `${l1.ipv4} → ${l2.ipv4}` });
  const there = await pingFrom(lab, 'l1', l2.ipv4, N, 2);
  const back = await pingFrom(lab, 'l2', l1.ipv4, N, 2);
  t.diagnostic(`LAN → LAN: ${there.received}/${N} there, ${back.received}/${N} back`);
  assert.equal(there.received, N, `${l1.ipv4} → ${l2.ipv4}`);
  assert.equal(back.received, N, `${l2.ipv4} → ${l1.ipv4}`);
  const betaAfter = await beta.peer('alpha');
  assert.ok(betaAfter.rxPackets - betaBefore.rxPackets >= 2 * N, `beta received the LAN traffic from alpha (${betaAfter.rxPackets - betaBefore.rxPackets})`);
  assert.equal(betaAfter.drops.spoofed ?? 0, 0, 'listed LAN sources pass the check');

  // 3. a LAN source outside alpha's listed subnets: alpha drops it itself
  const alphaOwnBefore = (await alpha.status()).drops['bad-source'] ?? 0;
  const outside = await lab.exec('l1', 'ping', ['-n', '-c', '5', '-i', '0.2', '-W', '1', '-I', OUTSIDE_SOURCE, l2.ipv4], { check: false, timeoutMs: 20_000 });
  assert.match(outside.stdout, / 0 received/, 'no reply to an unlisted source');
  const alphaOwnAfter = (await alpha.status()).drops['bad-source'] ?? 0;
  t.diagnostic(`unlisted source at the sender: alpha bad-source ${alphaOwnBefore} → ${alphaOwnAfter}`);
  assert.ok(alphaOwnAfter - alphaOwnBefore >= 5, `alpha dropped the unlisted source as bad-source (${alphaOwnBefore} → ${alphaOwnAfter})`);

  // 4. alpha takes a list that widens its subnet to the whole /24; beta never gets it
  for (const [chain, dir2] of [['INPUT', '-s'], ['OUTPUT', '-d']] as const) {
    await lab.exec('h2', 'iptables', ['-w', '-A', chain, '-p', 'tcp', dir2, lab.hosts[0]!.ipv4, '-j', 'DROP']);
  }
  const serialBefore = (await beta.status()).bnl.serial;
  await bnl('--file', net.masterList, 'delsubnet', 'alpha', LAN_A_LISTED);
  await bnl('--file', net.masterList, 'addsubnet', 'alpha', LAN_A);
  await bnl('--file', net.masterList, 'sign', '--key', net.signingKey);
  copyFileSync(net.masterList, join(net.nodeDir('alpha'), 'bnl'));
  const reload = (await controlRequest(alpha.conf, 'reload-and-push')) as { applied: boolean; pushedTo: number };
  assert.equal(reload.applied, true);
  assert.equal(reload.pushedTo, 0, 'the push to beta cannot pass the blocked control channel');
  assert.equal((await beta.status()).bnl.serial, serialBefore, 'beta still holds the old list');

  const betaSpoofBefore = (await beta.peer('alpha')).drops.spoofed ?? 0;
  const spoofed = await lab.exec('l1', 'ping', ['-n', '-c', '5', '-i', '0.2', '-W', '1', '-I', OUTSIDE_SOURCE, l2.ipv4], { check: false, timeoutMs: 20_000 });
  assert.match(spoofed.stdout, / 0 received/, 'beta delivers nothing from a source outside what it knows of alpha');
  const betaSt = await beta.status();
  const betaSpoofAfter = betaSt.peers.find((p) => p.name === 'alpha')!.drops.spoofed ?? 0;
  t.diagnostic(`source outside beta's view of alpha: beta spoofed (peer alpha) ${betaSpoofBefore} → ${betaSpoofAfter}; beta's drops not tied to a peer ${JSON.stringify(betaSt.drops)}`);
  assert.ok(betaSpoofAfter - betaSpoofBefore >= 5, `beta dropped them as spoofed, counted on peer alpha (${betaSpoofBefore} → ${betaSpoofAfter})`);
  assert.equal(betaSt.drops.spoofed ?? 0, 0, "a peer's drops are not also reported as drops not tied to a peer");
  // the listed LAN host still gets through
  assert.equal((await pingFrom(lab, 'l1', l2.ipv4, 2, 2)).received, 2, 'the listed LAN host is unaffected');
  assert.equal((await beta.peer('alpha')).state, 'up');
});
