/**
 * Rendezvous messages (type 3): sealed with the pair's session like data,
 * handed to `onRendezvous` only when authentic; anything else is dropped
 * and counted by reason, never raised as an event.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HEADER_LEN, MessageType, RENDEZVOUS_MAX_PAYLOAD, encodeHeader } from '../src/framing.js';
import { makePair, totalDrops } from './pipeline-harness.js';
import { waitFor } from './pipeline-helpers.js';

describe('rendezvous messages (type 3)', () => {
  it('are delivered to onRendezvous with their payload, counted, and not written to the TUN', async () => {
    const p = await makePair();
    try {
      const payload = Buffer.from('where is carol?');
      assert.equal(p.a.dp.sendRendezvous('b', payload), true);
      await waitFor(() => p.b.events.some((e) => e[0] === 'rendezvous'), 5000, 'rendezvous event');
      const ev = p.b.events.find((e) => e[0] === 'rendezvous')!;
      assert.equal(ev[1], 'a');
      assert.deepEqual(ev[2], payload);
      assert.equal(p.b.tun.written.length, 0);
      assert.equal(p.b.dp.stats().rendezvous.received, 1);
      assert.equal(p.a.dp.stats().rendezvous.sent, 1);
      assert.equal(totalDrops(p.b.dp.stats().drops), 0);
      // the largest payload goes through; a larger one or an empty one is a caller error
      assert.equal(p.a.dp.sendRendezvous('b', Buffer.alloc(RENDEZVOUS_MAX_PAYLOAD, 7)), true);
      await waitFor(() => p.b.dp.stats().rendezvous.received === 2, 5000, 'largest rendezvous');
      assert.throws(() => p.a.dp.sendRendezvous('b', Buffer.alloc(RENDEZVOUS_MAX_PAYLOAD + 1)), (e: { code?: string }) => e.code === 'ERR_DP_CONFIG');
      assert.throws(() => p.a.dp.sendRendezvous('b', Buffer.alloc(0)), (e: { code?: string }) => e.code === 'ERR_DP_CONFIG');
    } finally {
      p.close();
    }
  });

  it('from a non-member (no session) or forged are dropped and counted, never raised', async () => {
    const p = await makePair();
    try {
      const net = p.net!;
      net.autoDeliver = false;
      net.sent.length = 0;
      assert.equal(p.a.dp.sendRendezvous('b', Buffer.from('relay this')), true);
      const [real] = net.sent.map((s) => s.data);
      net.sent.length = 0;
      net.autoDeliver = true;
      assert.ok(real !== undefined);
      const from = { host: '127.0.0.1', port: 40000 };
      // a stranger: no session with b, so an index b never gave out
      const stranger = Buffer.alloc(HEADER_LEN + 10 + 16);
      encodeHeader(stranger, 0, MessageType.RENDEZVOUS, 0, 0xdeadbeef, 1, 0);
      net.deliver(p.b.dp.port, [stranger], from);
      // a member's message with its payload altered: authentication fails
      const forged = Buffer.from(real);
      forged[HEADER_LEN] ^= 1;
      net.deliver(p.b.dp.port, [forged], from);
      // a rendezvous message with flags set, and an empty one
      const flagged = Buffer.from(real);
      flagged[1] = 1;
      net.deliver(p.b.dp.port, [flagged], from);
      const empty = Buffer.alloc(HEADER_LEN + 16);
      encodeHeader(empty, 0, MessageType.RENDEZVOUS, 0, 1, 1, 5);
      net.deliver(p.b.dp.port, [empty], from);
      const d = p.b.dp.stats().drops;
      assert.equal(d['unknown-index'], 1);
      assert.equal(d['auth-failed'], 1);
      assert.equal(d['bad-flags'], 1);
      assert.equal(d.truncated, 1);
      assert.equal(p.b.events.filter((e) => e[0] === 'rendezvous').length, 0);
      assert.equal(p.b.dp.stats().rendezvous.received, 0);
      // the forged copy moved no endpoint either
      assert.equal(p.b.events.filter((e) => e[0] === 'endpointChange').length, 0);
      // the genuine one still goes through afterwards
      net.deliver(p.b.dp.port, [real], { host: '127.0.0.1', port: p.a.dp.port });
      assert.equal(p.b.events.filter((e) => e[0] === 'rendezvous').length, 1);
    } finally {
      p.close();
    }
  });
});
