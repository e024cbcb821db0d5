/**
 * End to end: a node behind NAT (issue 14, "Nodes behind NAT" in HOWTO.md).
 * Two networks made by `examples/make-network`, each of a public node and a
 * node listed without an endpoint (`NAME=-`) behind its own MASQUERADE
 * router (scripts/netns-lab --nat) that drops unsolicited inbound and
 * forgets a silent UDP mapping after 10 s:
 *
 *   net "natk", keepalive=3:  alpha (h1, 192.0.2.1)  gamma (h2, behind NAT)
 *   net "natz", keepalive=0:  beta  (h3, 192.0.2.3)  delta (h4, behind NAT)
 *
 *  1. natk: alpha pings gamma without any traffic from gamma first: gamma
 *     negotiates with alpha on its own (it can open TCP to alpha), its first
 *     keepalive tells alpha its public address.
 *  2. natz: delta pings beta (without keepalives, only its own traffic
 *     opens the way), then beta pings delta.
 *  3. Both idle for 16 s (longer than the NAT's 10 s): alpha still reaches
 *     gamma (keepalives every 3 s kept the mapping), beta no longer reaches
 *     delta (the mapping expired) until delta sends again.
 *  4. alpha restarts: it cannot reach gamma to resume their stored session;
 *     gamma, hearing nothing from alpha for 2 × keepalive + 5 s while its
 *     keepalives go out, negotiates again, and alpha reaches gamma.
 *
 * Needs root, `ip netns`, /dev/net/tun, ping and iptables; skips otherwise.
 */
import assert from 'node:assert/strict';
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { makeNetwork, pingFrom, startNode } from './lib/cluevpn.js';
import { daemonTest } from './lib/daemon-test.js';
import { waitFor } from './lib/wait-for.js';

/** The NAT routers' UDP conntrack timeout (s), the idle period (ms) and the keepalive (s) of natk. */
const NAT_TIMEOUT_S = 10;
const IDLE_MS = 16_000;
const KEEPALIVE_S = 3;
const GAMMA = '10.99.0.2';
const BETA = '10.99.0.1';
const DELTA = '10.99.0.2';

const sleep = (ms: number): Promise<void> => new Promise((res) => setTimeout(res, ms));

test('a node behind NAT: reached from a public node without its own traffic first, and after idling past the NAT timeout thanks to keepalives (not without)', { timeout: 240_000 }, async (t) => {
  const env = await daemonTest(t, { hosts: 4, nat: { h2: { udpTimeoutS: NAT_TIMEOUT_S }, h4: { udpTimeoutS: NAT_TIMEOUT_S } } }, 'nat-e2e-');
  if (env === null) return;
  const { lab, dir, nodes } = env;
  const [h1, h2, h3, h4] = lab.hosts;
  assert.equal(h2!.nat?.publicIpv4, '192.0.2.2');
  const natk = await makeNetwork(join(dir, 'k'), { net: 'natk', nodes: [['alpha', h1!.ipv4], ['gamma', '-']] });
  const natz = await makeNetwork(join(dir, 'z'), { net: 'natz', nodes: [['beta', h3!.ipv4], ['delta', '-']] });
  for (const n of ['alpha', 'gamma']) appendFileSync(natk.conf(n), `keepalive=${KEEPALIVE_S}\n`);
  for (const n of ['beta', 'delta']) appendFileSync(natz.conf(n), 'keepalive=0\n');

  const alpha = await startNode(lab, h1!, natk.nodeDir('alpha'));
  const beta = await startNode(lab, h3!, natz.nodeDir('beta'));
  nodes.push(alpha, beta);
  const gamma = await startNode(lab, h2!, natk.nodeDir('gamma'));
  const started = Date.now();
  const delta = await startNode(lab, h4!, natz.nodeDir('delta'));
  nodes.push(gamma, delta);

  // 1. alpha → gamma with no traffic from gamma: gamma negotiates by itself and announces its address.
  await waitFor(async () => (await pingFrom(lab, h1!, GAMMA, 1, 1)).received === 1, { timeoutMs: 60_000, intervalMs: 0, description: 'alpha → gamma' });
  t.diagnostic(`alpha → gamma (behind NAT) first ping ${Date.now() - started} ms after gamma started`);
  const seen = await alpha.peer('gamma');
  assert.equal(seen.endpoint, '192.0.2.2:3406', 'alpha learnt gamma’s public (NAT) address from its packets');
  assert.equal(seen.state, 'up');

  // 2. natz without keepalives: delta's own traffic opens the way, then beta reaches delta.
  await waitFor(async () => (await pingFrom(lab, h4!, BETA, 1, 1)).received === 1, { timeoutMs: 60_000, intervalMs: 0, description: 'delta → beta' });
  await waitFor(async () => (await pingFrom(lab, h3!, DELTA, 1, 1)).received === 1, { timeoutMs: 20_000, intervalMs: 0, description: 'beta → delta' });

  // 3. Idle longer than the NAT keeps a silent mapping.
  await sleep(IDLE_MS);
  const kept = await pingFrom(lab, h1!, GAMMA, 3, 1);
  const lost = await pingFrom(lab, h3!, DELTA, 3, 1);
  t.diagnostic(`after ${IDLE_MS / 1000} s idle (NAT timeout ${NAT_TIMEOUT_S} s): with keepalive ${kept.received}/3, without ${lost.received}/3`);
  assert.ok(kept.received >= 2, `alpha → gamma after the idle period: ${kept.received}/3`);
  assert.equal(lost.received, 0, 'without keepalives the mapping expired: beta → delta fails');

  // The keepalives are visible in status; none were sent where they are off.
  const a = await alpha.peer('gamma');
  const g = await gamma.peer('alpha');
  assert.ok(a.lastKeepaliveRxMs !== null && a.lastKeepaliveRxMs < NAT_TIMEOUT_S * 1000, `alpha heard gamma's keepalive ${a.lastKeepaliveRxMs} ms ago`);
  assert.ok(g.lastKeepaliveTxMs !== null && g.lastKeepaliveTxMs < NAT_TIMEOUT_S * 1000, `gamma sent one ${g.lastKeepaliveTxMs} ms ago`);
  assert.equal((await delta.peer('beta')).lastKeepaliveTxMs, null);
  assert.equal((await beta.peer('delta')).lastKeepaliveTxMs, null);

  // delta speaking again opens the way again: the failure was the NAT mapping, nothing else.
  await waitFor(async () => (await pingFrom(lab, h4!, BETA, 1, 1)).received === 1, { timeoutMs: 20_000, intervalMs: 0, description: 'delta → beta again' });
  assert.ok((await pingFrom(lab, h3!, DELTA, 3, 1)).received >= 2, 'beta → delta after delta spoke');

  // 4. The public node restarts: the node behind NAT notices the silence and negotiates again.
  await alpha.process.stop('SIGTERM');
  const alpha2 = await startNode(lab, h1!, natk.nodeDir('alpha'));
  nodes.push(alpha2);
  const restarted = Date.now();
  await waitFor(async () => (await pingFrom(lab, h1!, GAMMA, 1, 1)).received === 1, { timeoutMs: 60_000, intervalMs: 0, description: 'alpha → gamma after alpha restarted' });
  t.diagnostic(`alpha → gamma again ${Date.now() - restarted} ms after alpha restarted`);
  env.passed();
});
