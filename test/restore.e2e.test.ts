/**
 * A node started with an older copy of its state.db never sends two
 * datagrams under the same (receiver index, epoch, counter) — the same key
 * and nonce — as the review of issue 15 reproduced against c476862:
 *
 *   1. alpha and beta up, one session; alpha stopped, state.db copied
 *      (the backup / VM snapshot)
 *   2. run 1: alpha started, pings beta, stopped
 *   3. the old copy put back; run 2: alpha started, pings beta
 *
 * beta's underlay is captured for runs 1 and 2: no (index, epoch, counter)
 * of alpha's data datagrams may appear twice (on c476862 both runs sent
 * epoch 2 from counter 0). Traffic must flow again in run 2, on the stored
 * session (beta does not renegotiate): the epoch comes from beta's grant.
 *
 * Needs root, `ip netns`, /dev/net/tun, ping and tcpdump; cleans up the
 * lab, the daemons and tcpdump even on failure.
 */
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { makeNetwork, pingFrom, repeatedTriples, startNode, udpDatagramsFromPcap, type RunningNode } from './lib/cluevpn.js';
import { daemonTest } from './lib/daemon-test.js';

const PORT = 3406;
const DB_FILES = ['state.db', 'state.db-wal', 'state.db-shm'];

test('an older copy of state.db: no (index, epoch, counter) is ever sent twice, and traffic flows again without renegotiating', { timeout: 240_000 }, async (t) => {
  const env = await daemonTest(t, { hosts: 2 }, 'restore-e2e-', { tcpdump: 'tcpdump' });
  if (env === null) return;
  const { lab: L, dir } = env;
  const [h1, h2] = L.hosts;
  const net = await makeNetwork(join(dir, 'net'), { net: 'rst', nodes: [['alpha', h1.ipv4], ['beta', h2.ipv4]] });
  const alphaDir = net.nodeDir('alpha');
  const start = async (name: 'alpha' | 'beta'): Promise<RunningNode> => {
    const n = await startNode(L, name === 'alpha' ? h1 : h2, net.nodeDir(name));
    env.nodes.push(n);
    return n;
  };
  /** Pings beta until a reply (up to 20 s), then 5 more; returns the time to the first reply (NaN: none) and the replies of the 5. */
  const pingBeta = async (): Promise<{ ms: number; received: number }> => {
    const t0 = Date.now();
    let ms = NaN;
    while (Date.now() - t0 < 20_000) {
      if ((await pingFrom(L, h1, '10.99.0.2', 1, 1)).received === 1) {
        ms = Date.now() - t0;
        break;
      }
    }
    return { ms, received: (await pingFrom(L, h1, '10.99.0.2', 5, 1)).received };
  };
  const pingsBeta = async (what: string): Promise<number> => {
    const r = await pingBeta();
    assert.equal(r.received, 5, `${what}: 5 of 5 pings`);
    return r.ms;
  };

  const beta = await start('beta');
  let alpha = await start('alpha');
  await pingsBeta('first start');
  await alpha.process.stop('SIGTERM', 10_000);
  for (const f of DB_FILES) if (existsSync(join(alphaDir, f))) copyFileSync(join(alphaDir, f), join(dir, `backup-${f}`));
  const negotiationsBefore = (await beta.peer('alpha')).negotiations;

  const pcap = join(dir, 'beta.pcap');
  const dump = L.spawn(h2, 'tcpdump', ['-i', 'any', '--immediate-mode', '-U', '-n', '-Z', 'root', '-w', pcap, 'udp', 'and', 'port', String(PORT), 'and', 'src', 'host', h1.ipv4], { label: 'tcpdump beta' });
  await dump.waitForOutput(/listening on/, { timeoutMs: 10_000, stream: 'stderr' });

  alpha = await start('alpha');
  const run1 = await pingsBeta('run 1');
  await alpha.process.stop('SIGTERM', 10_000);

  for (const f of DB_FILES) {
    rmSync(join(alphaDir, f), { force: true });
    if (existsSync(join(dir, `backup-${f}`))) copyFileSync(join(dir, `backup-${f}`), join(alphaDir, f));
  }
  alpha = await start('alpha');
  const run2 = await pingBeta(); // asserted after the capture is checked: the nonce check comes first
  await new Promise((r) => setTimeout(r, 300));
  await dump.stop('SIGINT');

  // byte 0 = version 1 << 4 | type 1 (data); receiver index, epoch, counter at 4..20 (ARCHITECTURE.md)
  const triples = repeatedTriples(udpDatagramsFromPcap(pcap));
  assert.ok(triples.data >= 12, `captured ${triples.data} data datagrams from alpha`);
  assert.deepEqual(triples.twice, [], `(index/epoch/counter) sent more than once: ${triples.twice.slice(0, 5).join(', ')}`);
  assert.equal(run2.received, 5, 'run 2 (old state.db): 5 of 5 pings');
  assert.equal((await beta.peer('alpha')).negotiations, negotiationsBefore, 'beta did not renegotiate: the stored session was resumed');
  assert.equal((await alpha.peer('beta')).restored, true, 'alpha is on its restored session');
  t.diagnostic(`${triples.data} data datagrams, ${triples.distinct} distinct (index, epoch, counter); first reply after start: run 1 ${run1} ms, run 2 (old copy) ${run2.ms} ms`);
  env.passed();
});
