/**
 * End to end: a scheduled rekey that fails is retried (issue 14 §6). Two
 * real `cluevpnd` nodes with `rekey=10s`; the control channel (TCP 3406)
 * between them is blocked (iptables DROP, both directions) for 20 s, longer
 * than the rekey interval. The data path (UDP) keeps working on the old
 * keys meanwhile; soon after the block ends the keys are replaced and the
 * key age falls back under the interval.
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

const REKEY_MS = 10_000;
const BLOCK_MS = 20_000;
const RULES = [
  ['INPUT', '-p', 'tcp', '--dport', '3406', '-j', 'DROP'],
  ['INPUT', '-p', 'tcp', '--sport', '3406', '-j', 'DROP'],
];

const sleep = (ms: number): Promise<void> => new Promise((res) => setTimeout(res, ms));

test('rekey retries: with TCP 3406 blocked past the rekey interval, the key age falls back under it soon after the block ends', { timeout: 240_000 }, async (t) => {
  const env = await daemonTest(t, { hosts: 2 }, 'rekey-e2e-');
  if (env === null) return;
  const { lab, dir, nodes } = env;
  const [h1, h2] = lab.hosts;
  const net = await makeNetwork(join(dir, 'net'), { net: 'rkr', nodes: [['alpha', h1!.ipv4], ['beta', h2!.ipv4]] });
  for (const n of ['alpha', 'beta']) appendFileSync(net.conf(n), `rekey=${REKEY_MS / 1000}s\n`);
  const alpha = await startNode(lab, h1!, net.nodeDir('alpha'));
  const beta = await startNode(lab, h2!, net.nodeDir('beta'));
  nodes.push(alpha, beta);
  await waitFor(async () => (await pingFrom(lab, h1!, '10.99.0.2', 1, 1)).received === 1, { timeoutMs: 60_000, intervalMs: 0, description: 'alpha → beta' });
  const keyAge = async (): Promise<number> => (await alpha.peer('beta')).keyAgeMs ?? Infinity;

  for (const r of RULES) await lab.exec(h2!, 'iptables', ['-w', '-A', ...r]);
  const blockedAt = Date.now();
  await sleep(BLOCK_MS);
  const during = await keyAge();
  const pingsDuring = await pingFrom(lab, h1!, '10.99.0.2', 3, 1);
  for (const r of RULES) await lab.exec(h2!, 'iptables', ['-w', '-D', ...r]);
  const unblocked = Date.now();
  t.diagnostic(`key age ${during} ms after ${BLOCK_MS} ms blocked (rekey interval ${REKEY_MS} ms); data path during the block ${pingsDuring.received}/3`);
  assert.ok(during > REKEY_MS, `the keys aged past the interval while blocked (${during} ms)`);
  assert.ok(pingsDuring.received >= 2, 'the data path keeps working on the old keys');

  await waitFor(async () => (await keyAge()) < REKEY_MS, { timeoutMs: 60_000, intervalMs: 250, description: 'key age back under the rekey interval' });
  const after = Date.now() - unblocked;
  t.diagnostic(`key age under the interval again ${after} ms after the block ended (${Date.now() - blockedAt} ms after it began)`);
  // Bound: the longest retry pause (the rekey interval here, ±10 %) plus a control-channel timeout.
  assert.ok(after < 2 * REKEY_MS + 15_000, `rekeyed ${after} ms after the block ended`);
  assert.ok((await pingFrom(lab, h1!, '10.99.0.2', 3, 1)).received >= 2, 'traffic on the new keys');
  env.passed();
});
