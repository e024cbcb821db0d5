/**
 * End to end, issue 19: a list larger than the control channel's
 * pre-authentication budget (64 KiB) still moves by push. Two real
 * `cluevpnd` nodes; the list gets 10 000 more records (1.2 MB, 1.7 MB
 * in base64), then one more change pushed from alpha (`cluevpn reload`).
 * With a pull interval of an hour only the push can bring it to beta.
 * (A push used to send the whole list right after its TLS handshake, and
 * the receiver cut every such connection: `pre-auth-bytes`.)
 *
 * Needs root, `ip netns`, /dev/net/tun; skips otherwise.
 */
import assert from 'node:assert/strict';
import { copyFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { bnl, cluevpn, controlRequest, makeNetwork, startNode } from './lib/cluevpn.js';
import { daemonTest } from './lib/daemon-test.js';
import { waitFor } from './lib/wait-for.js';

const EXTRA = 10_000;

test('a list over the pre-authentication budget reaches a peer by push alone', { timeout: 180_000 }, async (t) => {
  const env = await daemonTest(t, { hosts: 2 }, 'gossip-large-e2e-');
  if (env === null) return;
  const { lab, dir, nodes } = env;
  const [h1, h2] = lab.hosts;
  const net = await makeNetwork(join(dir, 'net'), { net: 'glrg', pullInterval: '1h', nodes: [['alpha', h1!.ipv4], ['beta', h2!.ipv4]] });
  // records nobody runs (endpoints in TEST-NET-2: never answered inside the lab)
  const rows = ['name,ipv4,port,subnets'];
  for (let k = 0; k < EXTRA; k++) rows.push(`far${k},198.51.100.${1 + (k % 250)},${4000 + Math.floor(k / 250)},10.100.${k >> 8}.${k & 255}/32`);
  const csv = join(dir, 'far.csv');
  writeFileSync(csv, `${rows.join('\n')}\n`);
  assert.equal((await bnl('--file', net.masterList, 'import-csv', csv)).code, 0);
  assert.equal((await bnl('--file', net.masterList, 'sign', '--key', net.signingKey)).code, 0);
  const size = statSync(net.masterList).size;
  assert.ok(size > 64 * 1024, `the list is over the 64 KiB budget (${size} bytes)`);
  for (const n of ['alpha', 'beta']) copyFileSync(net.masterList, join(net.nodeDir(n), 'bnl'));
  const alpha = await startNode(lab, h1!, net.nodeDir('alpha'));
  const beta = await startNode(lab, h2!, net.nodeDir('beta'));
  nodes.push(alpha, beta);
  const serialOf = async (conf: string): Promise<number> => ((await controlRequest(conf, 'bnl-status')) as { serial: number }).serial;
  const before = await serialOf(net.conf('beta'));

  assert.equal((await bnl('--file', net.masterList, 'modify', 'far0', 'tag=pushed')).code, 0);
  assert.equal((await bnl('--file', net.masterList, 'sign', '--key', net.signingKey)).code, 0);
  copyFileSync(net.masterList, join(net.nodeDir('alpha'), 'bnl'));
  const r = await cluevpn('-c', net.conf('alpha'), 'reload');
  t.diagnostic(`reload: ${r.stdout.trim()} ${r.stderr.trim()}`);
  assert.equal(r.code, 0);
  const want = await serialOf(net.conf('alpha'));
  assert.ok(want > before);
  await waitFor(async () => (await serialOf(net.conf('beta'))) === want, { timeoutMs: 30_000, intervalMs: 100, description: `beta holds serial ${want} (pushed by alpha)` });
  assert.ok(!beta.log().includes('reason=pre-auth-bytes'), 'beta cut no connection of alpha for its size');
  env.passed();
});
