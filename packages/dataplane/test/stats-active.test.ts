/**
 * `stats({ activeOnly: true })` (issue 19): the daemon's path selector asks
 * for it every second; with a 10 000-node list it built a record for every
 * peer (about 10 MiB of garbage a second at rest). Only peers holding a
 * session or a relayed path are listed; the totals still count every peer.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createMemoryTun } from '@cluevpn/tun/testing';
import { jsCryptoBackend } from '../src/backend-js.js';
import { createDataplane } from '../src/dataplane.js';
import { createMemoryUdpNetwork } from '../src/testing.js';
import { sessionPair } from './pipeline-helpers.js';

test('activeOnly lists the peers with a session or a relay, and all peers without it', async () => {
  const dp = await createDataplane({ tun: createMemoryTun({ mtu: 1420 }), port: 0, backends: { crypto: jsCryptoBackend(), udp: createMemoryUdpNetwork(), name: 'memory' } });
  try {
    for (let k = 1; k <= 50; k++) dp.addPeer({ id: String(k), name: `n${k}`, subnets: [`10.0.${k}.0/24`], endpoint: { host: `192.0.2.${k}`, port: 3406 } });
    assert.deepEqual(dp.stats({ activeOnly: true }).peers, [], 'no peer has keys yet');
    dp.installSession('7', sessionPair().a);
    dp.installSession('9', sessionPair({ indexA: 90, indexB: 91 }).a, { primary: false });
    dp.setPath('12', '7'); // relayed through 7
    const active = dp.stats({ activeOnly: true }).peers.map((p) => p.id).sort();
    assert.deepEqual(active, ['12', '7', '9']);
    const all = dp.stats();
    assert.equal(all.peers.length, 50);
    assert.deepEqual(
      dp.stats({ activeOnly: true }).peers.find((p) => p.id === '7'),
      all.peers.find((p) => p.id === '7'),
      'an active peer is reported the same either way',
    );
  } finally {
    await dp.close();
  }
});
