/**
 * End to end, issue 14's first check: a public node reaches a node behind
 * NAT with no traffic from it first, and still after 65 s idle while the
 * NAT forgets silent UDP mappings after 30 s (default settings: keepalive
 * every 25 s). make-network's nodes:
 *
 *   alpha  h1, 192.0.2.1
 *   gamma  h2, behind MASQUERADE (public 192.0.2.2, udp-timeout=30), listed without an endpoint
 *
 * The time to the first ping is printed (the goal, ≤ 2 s, is the
 * benchmark's: scripts/bench/nat); the test waits generously.
 *
 * Needs root, `ip netns`, /dev/net/tun, ping and iptables; skips otherwise.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { makeNetwork, pingFrom, startNode } from './lib/cluevpn.js';
import { daemonTest } from './lib/daemon-test.js';
import { waitFor } from './lib/wait-for.js';

const GAMMA = '10.99.0.2';
const IDLE_MS = 65_000;

test('behind NAT with default keepalives: reached first, and again after 65 s idle with a 30 s NAT timeout', { timeout: 240_000 }, async (t) => {
  const env = await daemonTest(t, { hosts: 2, nat: { h2: { udpTimeoutS: 30 } } }, 'nat-idle-e2e-');
  if (env === null) return;
  const { lab, dir, nodes } = env;
  const [h1, h2] = lab.hosts;
  const net = await makeNetwork(join(dir, 'n'), { net: 'natidle', nodes: [['alpha', h1!.ipv4], ['gamma', '-']] });
  const alpha = await startNode(lab, h1!, net.nodeDir('alpha'));
  nodes.push(alpha);
  const started = Date.now();
  const gamma = await startNode(lab, h2!, net.nodeDir('gamma'));
  nodes.push(gamma);

  await waitFor(async () => (await pingFrom(lab, h1!, GAMMA, 1, 1)).received === 1, { timeoutMs: 60_000, intervalMs: 0, description: 'alpha → gamma' });
  t.diagnostic(`alpha → gamma (behind NAT) first ping ${Date.now() - started} ms after gamma was spawned`);
  assert.equal((await gamma.peer('alpha')).rxPackets > 0, true);
  assert.equal((await alpha.peer('gamma')).observedEndpoint, '192.0.2.2:3406');

  const before = await alpha.peer('gamma');
  await new Promise((res) => setTimeout(res, IDLE_MS));
  const after = await alpha.peer('gamma');
  assert.ok(after.rxPackets === before.rxPackets, 'nothing but keepalives crossed while idle');
  const r = await pingFrom(lab, h1!, GAMMA, 3, 1);
  t.diagnostic(`after ${IDLE_MS / 1000} s idle (NAT timeout 30 s, keepalive 25 s): ${r.received}/3`);
  assert.ok(r.received >= 2, `alpha → gamma after the idle period: ${r.received}/3`);
  assert.equal((await alpha.peer('gamma')).path, 'direct');
  env.passed();
});
