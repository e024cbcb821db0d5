/**
 * Packets held while a peer has no session (send.ts step 5): the first
 * packets after start reach the peer once the negotiation installs a
 * session, bounded in count, age and peers. Only a packet that is not kept,
 * or expires while held, counts as a 'no-session' drop.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createMemoryTun } from '@cluevpn/tun/testing';
import { jsCryptoBackend } from '../src/backend-js.js';
import { createDataplane } from '../src/dataplane.js';
import { createMemoryUdpNetwork } from '../src/testing.js';
import { makePair } from './pipeline-harness.js';
import { ipv4Packet, ipv6Packet, sessionPair, tick, waitFor } from './pipeline-helpers.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('packets held while negotiating', () => {
  it('sends the held packets, intact and in order, once the session is installed', async () => {
    const p = await makePair({ install: false });
    try {
      const first = [ipv4Packet('10.0.1.5', '10.0.2.9', 56, 1), ipv6Packet('fd00:1::5', 'fd00:2::9', 300), ipv4Packet('10.0.1.5', '10.0.2.9', 1400)];
      p.a.tun.inject(first);
      p.a.tun.flush();
      assert.equal(p.a.dp.stats().peers[0].drops['no-session'] ?? 0, 0, 'held, not dropped');
      assert.deepEqual(p.a.events, [['noSession', 'b']]);
      p.b.dp.installSession('a', p.sessions.b);
      p.a.dp.installSession('b', p.sessions.a);
      await waitFor(() => p.b.tun.written.length === 3, 2000, 'held packets at b');
      assert.deepEqual(p.b.tun.written, first);
      // Nothing is sent twice: a later packet follows alone.
      p.a.tun.inject([ipv4Packet('10.0.1.5', '10.0.2.9', 20)]);
      await waitFor(() => p.b.tun.written.length === 4, 2000, 'a later packet');
      await tick();
      assert.equal(p.b.tun.written.length, 4);
      assert.equal(p.a.dp.stats().peers[0].txPackets, 4);
      assert.equal(p.a.dp.stats().peers[0].drops['no-session'] ?? 0, 0, 'nothing was dropped');
    } finally {
      p.close();
    }
  });

  it('keeps at most holdPackets per peer (the first ones)', async () => {
    const p = await makePair({ install: false, limits: { holdPackets: 4 } });
    try {
      const pk = Array.from({ length: 10 }, (_, i) => ipv4Packet('10.0.1.5', '10.0.2.9', 20 + i));
      p.a.tun.inject(pk);
      p.a.tun.flush();
      p.b.dp.installSession('a', p.sessions.b);
      p.a.dp.installSession('b', p.sessions.a);
      await waitFor(() => p.b.tun.written.length >= 4, 2000, 'held packets');
      await sleep(20);
      assert.deepEqual(p.b.tun.written, pk.slice(0, 4));
      assert.equal(p.a.dp.stats().peers[0].drops['no-session'], 6, 'the 6 not kept are drops');
    } finally {
      p.close();
    }
  });

  it('discards held packets older than holdMs, and holds nothing with holdPackets 0', async () => {
    for (const limits of [{ holdMs: 5 }, { holdPackets: 0 }]) {
      const p = await makePair({ install: false, limits });
      try {
        p.a.tun.inject([ipv4Packet('10.0.1.5', '10.0.2.9', 20)]);
        p.a.tun.flush();
        await sleep(30);
        p.b.dp.installSession('a', p.sessions.b);
        p.a.dp.installSession('b', p.sessions.a);
        const later = ipv4Packet('10.0.1.5', '10.0.2.9', 33);
        p.a.tun.inject([later]);
        await waitFor(() => p.b.tun.written.length >= 1, 2000, 'the later packet');
        await sleep(20);
        assert.deepEqual(p.b.tun.written, [later], JSON.stringify(limits));
        assert.equal(p.a.dp.stats().peers[0].drops['no-session'], 1, `the discarded packet is a drop: ${JSON.stringify(limits)}`);
      } finally {
        p.close();
      }
    }
  });

  it('a receive-only install keeps holding; promotion sends', async () => {
    const p = await makePair({ install: false });
    try {
      const pk = ipv4Packet('10.0.1.5', '10.0.2.9', 64);
      p.b.dp.installSession('a', p.sessions.b);
      p.a.dp.installSession('b', p.sessions.a, { primary: false });
      p.a.tun.inject([pk]);
      p.a.tun.flush();
      await sleep(20);
      assert.equal(p.b.tun.written.length, 0, 'nothing to send with yet');
      p.a.dp.promoteSession('b', p.sessions.a.localIndex);
      await waitFor(() => p.b.tun.written.length === 1, 2000, 'after promotion');
      assert.deepEqual(p.b.tun.written, [pk]);
    } finally {
      p.close();
    }
  });

  it('a session installed synchronously inside onNoSession sends the packet after the batch', async () => {
    const net = createMemoryUdpNetwork();
    const s = sessionPair();
    const ta = createMemoryTun({ mtu: 1420 });
    const tb = createMemoryTun({ mtu: 1420 });
    let a: Awaited<ReturnType<typeof createDataplane>> | undefined;
    const b = await createDataplane({ tun: tb, port: 0, backends: { crypto: jsCryptoBackend(), udp: net } });
    a = await createDataplane({
      tun: ta,
      port: 0,
      backends: { crypto: jsCryptoBackend(), udp: net },
      events: { onNoSession: (id) => a?.installSession(id, s.a) },
    });
    try {
      a.addPeer({ id: 'b', subnets: ['10.0.2.0/24'], endpoint: { host: '127.0.0.1', port: b.port } });
      b.addPeer({ id: 'a', subnets: ['10.0.1.0/24'], endpoint: { host: '127.0.0.1', port: a.port } });
      b.installSession('a', s.b);
      const pk = [ipv4Packet('10.0.1.5', '10.0.2.9', 20), ipv4Packet('10.0.1.5', '10.0.2.9', 21)];
      ta.inject(pk);
      ta.flush();
      await waitFor(() => tb.written.length === 2, 2000, 'both packets');
      assert.deepEqual(tb.written, pk);
    } finally {
      a.close();
      b.close();
      ta.close();
      tb.close();
    }
  });
});
