/**
 * Relaying (message types 4 and 5): A's datagrams for C, sealed with the
 * A↔C session, travel inside relay requests sealed with A↔R; R checks and
 * forwards them, unread, inside relayed datagrams sealed with R↔C; C opens
 * the inner datagram with A↔C as coming from A (without moving A's
 * endpoint). Three data planes on the in-memory UDP network:
 *
 *   A = node 1 (10.0.1.0/24), R = node 2 (10.0.2.0/24, relays), C = node 3 (10.0.3.0/24)
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createMemoryTun, type MemoryTun } from '@cluevpn/tun/testing';
import { jsCryptoBackend } from '../src/backend-js.js';
import type { DataplaneLimits } from '../src/context.js';
import { createDataplane, type Dataplane } from '../src/dataplane.js';
import { HEADER_LEN, MessageType, OVERHEAD, RELAY_ID_LEN, TAG_LEN, encodeHeader, readType } from '../src/framing.js';
import { createMemoryUdpNetwork, type MemoryUdpNetwork } from '../src/testing.js';
import { ipv4Packet, sessionPair, waitFor } from './pipeline-helpers.js';

interface Trio {
  net: MemoryUdpNetwork;
  a: Dataplane;
  r: Dataplane;
  c: Dataplane;
  tuns: { a: MemoryTun; r: MemoryTun; c: MemoryTun };
  endpointChanges: Array<{ at: string; peer: string }>;
  close(): void;
}

const LOCAL = '127.0.0.1';

async function makeTrio(limits?: Partial<DataplaneLimits>): Promise<Trio> {
  const net = createMemoryUdpNetwork();
  const endpointChanges: Trio['endpointChanges'] = [];
  const mk = async (name: string): Promise<{ dp: Dataplane; tun: MemoryTun }> => {
    const tun = createMemoryTun({ mtu: 1420 });
    const dp = await createDataplane({
      tun,
      port: 0,
      backends: { crypto: jsCryptoBackend(), udp: net, name: 'memory' },
      limits,
      events: { onEndpointChange: (peer: string) => endpointChanges.push({ at: name, peer }) },
    });
    return { dp, tun };
  };
  const A = await mk('a');
  const R = await mk('r');
  const C = await mk('c');
  const ep = (d: Dataplane) => ({ host: LOCAL, port: d.port });
  A.dp.addPeer({ id: '2', name: 'r', subnets: ['10.0.2.0/24'], endpoint: ep(R.dp) });
  A.dp.addPeer({ id: '3', name: 'c', subnets: ['10.0.3.0/24'], endpoint: ep(C.dp) });
  R.dp.addPeer({ id: '1', name: 'a', subnets: ['10.0.1.0/24'], endpoint: ep(A.dp) });
  R.dp.addPeer({ id: '3', name: 'c', subnets: ['10.0.3.0/24'], endpoint: ep(C.dp) });
  C.dp.addPeer({ id: '1', name: 'a', subnets: ['10.0.1.0/24'], endpoint: ep(A.dp) });
  C.dp.addPeer({ id: '2', name: 'r', subnets: ['10.0.2.0/24'], endpoint: ep(R.dp) });
  const ar = sessionPair();
  A.dp.installSession('2', ar.a);
  R.dp.installSession('1', ar.b);
  const rc = sessionPair();
  R.dp.installSession('3', rc.a);
  C.dp.installSession('2', rc.b);
  const ac = sessionPair();
  A.dp.installSession('3', ac.a);
  C.dp.installSession('1', ac.b);
  R.dp.setRelaying(true);
  return {
    net,
    a: A.dp,
    r: R.dp,
    c: C.dp,
    tuns: { a: A.tun, r: R.tun, c: C.tun },
    endpointChanges,
    close() {
      for (const x of [A, R, C]) {
        x.dp.close();
        x.tun.close();
      }
    },
  };
}

const peerOf = (dp: Dataplane, id: string) => dp.stats().peers.find((p) => p.id === id)!;

/** A's relay request for one packet of `payload` bytes to C, captured before delivery (the network stops delivering). */
async function captureRequest(t: Trio, payload: number): Promise<Buffer> {
  t.a.setPath('3', '2');
  t.net.autoDeliver = false;
  t.net.sent.length = 0;
  t.tuns.a.inject(ipv4Packet('10.0.1.5', '10.0.3.5', payload));
  await waitFor(() => t.net.sent.length === 1, 5000, 'A sent');
  return Buffer.from(t.net.sent[0]!.data);
}

describe('relaying (types 4 and 5)', () => {
  it('carries data both ways through the relay, end-to-end sealed, counted on all three, without moving endpoints', async () => {
    const t = await makeTrio();
    try {
      t.a.setPath('3', '2');
      t.c.setPath('1', '2');
      const marker = Buffer.from('relay-me-please-0123456789');
      const sentBefore = t.net.sent.length;
      t.tuns.a.inject(ipv4Packet('10.0.1.5', '10.0.3.5', marker));
      await waitFor(() => t.tuns.c.written.length === 1, 5000, 'packet at C');
      assert.equal(t.tuns.c.written[0]!.includes(marker), true, 'C got the packet A sent');
      t.tuns.c.inject(ipv4Packet('10.0.3.5', '10.0.1.5', marker));
      await waitFor(() => t.tuns.a.written.length === 1, 5000, 'reply at A');
      const wire = t.net.sent.slice(sentBefore);
      // A and C never sent to each other: every datagram went to or came from R
      for (const d of wire) {
        assert.ok(d.port === t.r.port || d.fromPort === t.r.port, `datagram ${d.fromPort} → ${d.port} bypassed the relay`);
        assert.equal(d.data.includes(marker), false, 'the payload is never in clear on the wire');
      }
      assert.deepEqual(wire.filter((d) => d.fromPort === t.a.port).map((d) => readType(d.data, 0)), [MessageType.RELAY]);
      assert.deepEqual(wire.filter((d) => d.fromPort === t.r.port).map((d) => readType(d.data, 0)), [MessageType.RELAYED, MessageType.RELAYED]);
      // counters: the member sides per peer, the relay per member and in total
      const ac = peerOf(t.a, '3');
      assert.equal(ac.relay, '2');
      assert.equal(ac.relayed.txPackets, 1);
      assert.equal(ac.relayed.txBytes, 20 + marker.length);
      assert.equal(ac.txPackets, 1);
      assert.equal(ac.relayed.rxPackets, 1);
      const ca = peerOf(t.c, '1');
      assert.equal(ca.relayed.rxPackets, 1);
      assert.equal(ca.rxPackets, 1);
      assert.equal(ca.lastRxMs, null, 'nothing came from A directly');
      assert.notEqual(ca.relayed.lastRxMs, null);
      const rs = t.r.stats();
      assert.equal(rs.relaying.forwarded, 2);
      assert.equal(rs.relaying.forwardedBytes, 2 * (OVERHEAD + 20 + marker.length));
      assert.equal(peerOf(t.r, '1').relayed.fromPackets, 1);
      assert.equal(peerOf(t.r, '3').relayed.toPackets, 1);
      assert.equal(peerOf(t.r, '3').relayed.fromPackets, 1);
      assert.equal(peerOf(t.r, '1').rxPackets, 0, 'the relay delivered nothing to its own TUN');
      assert.equal(t.tuns.r.written.length, 0);
      // no endpoint moved to the relay's address
      assert.deepEqual(t.endpointChanges.filter((e) => e.at !== 'r'), []);
      assert.equal(peerOf(t.c, '1').endpoint?.port, t.a.port);
      // back to direct: the next packet goes straight to C
      t.a.setPath('3', null);
      const n = t.net.sent.length;
      t.tuns.a.inject(ipv4Packet('10.0.1.5', '10.0.3.5', marker));
      await waitFor(() => t.tuns.c.written.length === 2, 5000, 'direct packet at C');
      assert.deepEqual(t.net.sent.slice(n).map((d) => [d.fromPort, d.port, readType(d.data, 0)]), [[t.a.port, t.c.port, MessageType.DATA]]);
      assert.notEqual(peerOf(t.c, '1').lastRxMs, null);
    } finally {
      t.close();
    }
  });

  it('keepalives follow the path; a direct probe does not', async () => {
    const t = await makeTrio();
    try {
      t.a.setPath('3', '2');
      assert.equal(t.a.sendKeepalive('3'), true);
      await waitFor(() => peerOf(t.c, '1').keepalivesRx === 1, 5000, 'relayed keepalive');
      assert.equal(peerOf(t.c, '1').lastRxMs, null);
      assert.equal(peerOf(t.c, '1').relayed.rxPackets, 1);
      assert.equal(t.a.sendKeepalive('3', true), true);
      await waitFor(() => peerOf(t.c, '1').keepalivesRx === 2, 5000, 'direct probe');
      assert.notEqual(peerOf(t.c, '1').lastRxMs, null, 'the probe came directly');
      assert.equal(peerOf(t.c, '1').relayed.rxPackets, 1);
    } finally {
      t.close();
    }
  });

  it('the relay refuses and counts: not a relay, unknown target, the sender itself, over budget; a non-member is dropped before any of it', async () => {
    const t = await makeTrio({ relayPacketBurst: 3, relayPacketsPerSecond: 0 });
    try {
      const rDrops = () => peerOf(t.r, '1').drops;
      const send = async (n: number) => {
        for (let i = 0; i < n; i++) t.tuns.a.inject(ipv4Packet('10.0.1.5', '10.0.3.5', 40));
        await waitFor(() => peerOf(t.a, '3').txPackets >= n, 5000, 'sent');
      };
      // not a relay
      t.r.setRelaying(false);
      t.a.setPath('3', '2');
      await send(1);
      await waitFor(() => rDrops()['relay-refused'] === 1, 5000, 'relay-refused');
      t.r.setRelaying(true);
      // over budget: a burst of 3, no refill
      await send(4);
      await waitFor(() => rDrops()['relay-limit'] === 1, 5000, 'relay-limit');
      assert.equal(t.r.stats().relaying.forwarded, 3);
      await waitFor(() => t.tuns.c.written.length === 3, 5000, 'three delivered');
      // a target that is no peer of the relay (not a member, or removed from the list)
      const t2 = await makeTrio();
      try {
        t2.r.removePeer('3');
        t2.a.setPath('3', '2');
        t2.tuns.a.inject(ipv4Packet('10.0.1.5', '10.0.3.5', 40));
        await waitFor(() => peerOf(t2.r, '1').drops['relay-no-target'] === 1, 5000, 'relay-no-target');
        assert.equal(t2.r.stats().relaying.forwarded, 0);
      } finally {
        t2.close();
      }
      // a non-member: no session with R, so its type-4 datagrams never get past the receiver index
      const before = t.r.stats();
      const stranger = Buffer.alloc(HEADER_LEN + RELAY_ID_LEN + OVERHEAD + 16);
      encodeHeader(stranger, 0, MessageType.RELAY, 0, 0xdeadbeef, 1, 0);
      stranger.writeUInt32BE(3, HEADER_LEN);
      for (let i = 0; i < 5; i++) t.net.deliver(t.r.port, [stranger], { host: LOCAL, port: 40000 + i });
      const after = t.r.stats();
      assert.equal((after.drops['unknown-index'] ?? 0) - (before.drops['unknown-index'] ?? 0), 5);
      assert.equal(after.relaying.unauthenticated - before.relaying.unauthenticated, 5);
      assert.equal(after.relaying.forwarded, before.relaying.forwarded);
    } finally {
      t.close();
    }
  });

  it('the target checks the inner datagram as if it came directly (spoof check); a relay request replayed to the relay goes nowhere', async () => {
    const t = await makeTrio();
    try {
      t.a.setPath('3', '2');
      // A's packet with a source outside A's subnets: the relay forwards it, C's spoof check drops it
      t.tuns.a.inject(ipv4Packet('10.0.9.9', '10.0.3.5', 40));
      await waitFor(() => peerOf(t.c, '1').drops.spoofed === 1, 5000, 'spoofed');
      assert.equal(peerOf(t.r, '1').relayed.fromPackets, 1, 'the relay forwarded it (it cannot read it)');
      assert.equal(t.tuns.c.written.length, 0);
      // capture A's relay request, deliver it, then replay it
      t.net.autoDeliver = false;
      t.net.sent.length = 0;
      t.tuns.a.inject(ipv4Packet('10.0.1.5', '10.0.3.5', 40));
      await waitFor(() => t.net.sent.some((d) => d.fromPort === t.a.port), 5000, 'A sent');
      const fromA = t.net.sent.filter((d) => d.fromPort === t.a.port).map((d) => d.data);
      t.net.autoDeliver = true;
      t.net.deliver(t.r.port, fromA, { host: LOCAL, port: t.a.port });
      await waitFor(() => t.tuns.c.written.length === 1, 5000, 'delivered');
      t.net.deliver(t.r.port, fromA, { host: LOCAL, port: t.a.port });
      assert.equal(peerOf(t.r, '1').drops.replayed, 1);
      assert.equal(t.r.stats().relaying.forwarded, 2);
      assert.equal(t.tuns.c.written.length, 1);
    } finally {
      t.close();
    }
  });

  it('a relayed peer takes packets up to the path MTU less the relay layer: larger ones get ICMP too big (DF) or are fragmented', async () => {
    const t = await makeTrio();
    try {
      t.a.setPath('3', '2');
      const limit = 1420 - RELAY_ID_LEN - OVERHEAD;
      const df = ipv4Packet('10.0.1.5', '10.0.3.5', limit - 20 + 1);
      df[6] = 0x40; // DF
      df.writeUInt16BE(0, 10);
      t.tuns.a.inject(df);
      await waitFor(() => (peerOf(t.a, '3').drops['too-big'] ?? 0) === 1, 5000, 'too-big');
      await waitFor(() => t.tuns.a.written.length === 1, 5000, 'ICMP back into the TUN');
      const icmp = t.tuns.a.written[0]!;
      assert.equal(icmp[9], 1, 'ICMP');
      assert.deepEqual([icmp[20], icmp[21]], [3, 4], 'fragmentation needed');
      assert.equal(icmp.readUInt16BE(26), limit, 'with the relayed path MTU');
      // at the limit it goes through; without DF a larger one is cut in two
      t.tuns.a.inject(ipv4Packet('10.0.1.5', '10.0.3.5', limit - 20));
      t.tuns.a.inject(ipv4Packet('10.0.1.5', '10.0.3.5', limit - 20 + 30));
      await waitFor(() => t.tuns.c.written.length === 3, 5000, 'one whole and two fragments at C');
      assert.ok(t.tuns.c.written.every((p) => p.length <= limit));
    } finally {
      t.close();
    }
  });

  it('the relay layer authenticates, it does not encrypt again: the inner datagram crosses both hops byte for byte', async () => {
    const t = await makeTrio();
    try {
      const req = await captureRequest(t, 200);
      assert.equal(readType(req, 0), MessageType.RELAY);
      assert.equal(req.readUInt32BE(HEADER_LEN), 3, 'target id in clear');
      const inner = req.subarray(HEADER_LEN + RELAY_ID_LEN, req.length - TAG_LEN);
      assert.equal(readType(inner, 0), MessageType.DATA, "A's datagram for C, not encrypted again");
      assert.equal(inner.length, OVERHEAD + 220, 'inner: header, the 220-byte packet sealed, tag');
      t.net.deliver(t.r.port, [req], { host: LOCAL, port: t.a.port });
      await waitFor(() => t.net.sent.length === 2, 5000, 'R forwarded');
      const fwd = Buffer.from(t.net.sent[1]!.data);
      assert.equal(readType(fwd, 0), MessageType.RELAYED);
      assert.equal(fwd.length, req.length, 'same length: rewritten in place');
      assert.equal(fwd.readUInt32BE(HEADER_LEN), 1, 'source id');
      assert.deepEqual(fwd.subarray(HEADER_LEN + RELAY_ID_LEN, fwd.length - TAG_LEN), inner, 'the inner datagram unchanged');
      t.net.deliver(t.c.port, [fwd], { host: LOCAL, port: t.r.port });
      await waitFor(() => t.tuns.c.written.length === 1, 5000, 'delivered');
    } finally {
      t.close();
    }
  });

  it('inner bytes changed in flight: the relay drops and counts it (MAC fails), forwards nothing; the same on the relay → target hop', async () => {
    const t = await makeTrio();
    try {
      const req = await captureRequest(t, 200);
      const before = t.r.stats();
      // one bit flipped in: the target id, the inner header, the inner ciphertext, the inner tag, the outer tag
      const positions = [HEADER_LEN + 3, HEADER_LEN + RELAY_ID_LEN + 4, HEADER_LEN + RELAY_ID_LEN + HEADER_LEN + 50, req.length - TAG_LEN - 1, req.length - 1];
      for (const pos of positions) {
        const bad = Buffer.from(req);
        bad[pos] ^= 0x10;
        t.net.deliver(t.r.port, [bad], { host: LOCAL, port: t.a.port });
      }
      const after = t.r.stats();
      assert.equal((after.drops['auth-failed'] ?? 0) - (before.drops['auth-failed'] ?? 0), positions.length, 'each dropped as auth-failed');
      assert.equal(after.relaying.unauthenticated - before.relaying.unauthenticated, positions.length, 'and counted as unauthenticated relay datagrams');
      assert.equal(after.relaying.forwarded, before.relaying.forwarded, 'nothing forwarded');
      assert.equal(t.net.sent.length, 1, 'the relay sent nothing');
      // the intact request still passes (nothing above moved its replay window)
      t.net.deliver(t.r.port, [req], { host: LOCAL, port: t.a.port });
      assert.equal(t.r.stats().relaying.forwarded, before.relaying.forwarded + 1);
      await waitFor(() => t.net.sent.length === 2, 5000, 'R forwarded');
      // relay → target: a changed inner byte fails C's check of R's MAC; nothing reaches C's TUN
      const fwd = Buffer.from(t.net.sent[1]!.data);
      const badFwd = Buffer.from(fwd);
      badFwd[HEADER_LEN + RELAY_ID_LEN + HEADER_LEN + 50] ^= 0x10;
      t.net.deliver(t.c.port, [badFwd], { host: LOCAL, port: t.r.port });
      assert.equal(peerOf(t.c, '2').drops['auth-failed'], 1, "dropped at C under R's session");
      assert.equal(peerOf(t.c, '1').relayed.rxPackets, 0);
      t.net.deliver(t.c.port, [fwd], { host: LOCAL, port: t.r.port });
      await waitFor(() => t.tuns.c.written.length === 1, 5000, 'the intact one delivered');
    } finally {
      t.close();
    }
  });

  it("a non-member that copies a member's receiver index from the wire still gets nothing forwarded", async () => {
    const t = await makeTrio();
    try {
      const seen = await captureRequest(t, 40);
      // a stranger's own relay request under A's receiver index at R, a fresh counter, a made-up tag
      const forged = Buffer.alloc(seen.length, 0x5a);
      encodeHeader(forged, 0, MessageType.RELAY, 0, seen.readUInt32BE(4), 1, 1000);
      forged.writeUInt32BE(3, HEADER_LEN);
      seen.copy(forged, HEADER_LEN + RELAY_ID_LEN, HEADER_LEN + RELAY_ID_LEN, seen.length - TAG_LEN);
      const before = t.r.stats();
      t.net.deliver(t.r.port, [forged], { host: LOCAL, port: 40001 });
      const after = t.r.stats();
      assert.equal((after.drops['auth-failed'] ?? 0) - (before.drops['auth-failed'] ?? 0), 1);
      assert.equal(after.relaying.unauthenticated - before.relaying.unauthenticated, 1);
      assert.equal(after.relaying.forwarded, before.relaying.forwarded);
      assert.equal(t.net.sent.length, 1, 'the relay sent nothing');
      assert.equal(peerOf(t.r, '1').endpoint?.port, t.a.port, "A's endpoint did not move to the stranger");
    } finally {
      t.close();
    }
  });

  it('setPath refuses the peer itself and unknown relays', async () => {
    const t = await makeTrio();
    try {
      assert.throws(() => t.a.setPath('3', '3'), (e: { code?: string }) => e.code === 'ERR_DP_CONFIG');
      assert.throws(() => t.a.setPath('3', '9'), (e: { code?: string }) => e.code === 'ERR_DP_PEER');
      assert.throws(() => t.a.setPath('9', '2'), (e: { code?: string }) => e.code === 'ERR_DP_PEER');
      // removing the relay sends the peer direct again
      t.a.setPath('3', '2');
      t.a.removePeer('2');
      assert.equal(peerOf(t.a, '3').relay, null);
    } finally {
      t.close();
    }
  });
});
