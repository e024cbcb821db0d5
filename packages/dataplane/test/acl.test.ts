/**
 * The access policy (acl.ts): enforced on receive, with connection tracking
 * fed by the send pipeline; counted as 'acl' per peer; no express leases
 * while a policy is in force. Two data planes on memory TUNs (a =
 * 10.0.1.0/24 + fd00:1::/64, b = 10.0.2.0/24 + fd00:2::/64).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createMemoryTun } from '@cluevpn/tun/testing';
import { Acl, type AclPolicy } from '../src/acl.js';
import type { BatchUdpSocket, ExpressLease, UdpBackend } from '../src/backend.js';
import { jsCryptoBackend } from '../src/backend-js.js';
import { ConntrackTable, KEY_WORDS } from '../src/conntrack.js';
import { createDataplane } from '../src/dataplane.js';
import { internetChecksum } from '../src/icmp.js';
import { createMemoryUdpNetwork } from '../src/testing.js';
import { makePair, type Pair } from './pipeline-harness.js';
import { ipv4Packet, ipv6Packet, sessionPair, tick, waitFor } from './pipeline-helpers.js';

const P_TCP = 6;
const P_UDP = 17;

/** A TCP (proto 6) or UDP (17) header with ports and flags, then `data` bytes. */
function l4(sport: number, dport: number, proto = P_TCP, flags = 0x10, data = 8): Buffer {
  const h = Buffer.alloc((proto === P_TCP ? 20 : 8) + data);
  h.writeUInt16BE(sport, 0);
  h.writeUInt16BE(dport, 2);
  if (proto === P_TCP) {
    h[12] = 0x50;
    h[13] = flags;
  } else h.writeUInt16BE(h.length, 4);
  return h;
}

/** An ICMP (v4) or ICMPv6 message: type, code, echo id. */
function icmp(type: number, id: number, rest: Buffer = Buffer.alloc(8)): Buffer {
  const m = Buffer.concat([Buffer.from([type, 0, 0, 0, id >> 8, id & 0xff, 0, 1]), rest]);
  m.writeUInt16BE(internetChecksum(m, 0, m.length), 2);
  return m;
}

const tcp4 = (src: string, dst: string, sport: number, dport: number, flags = 0x10): Buffer => ipv4Packet(src, dst, l4(sport, dport, P_TCP, flags), P_TCP);
const udp4 = (src: string, dst: string, sport: number, dport: number): Buffer => ipv4Packet(src, dst, l4(sport, dport, P_UDP), P_UDP);

/** Sends `pk` from a's TUN and waits until b has processed it; returns whether b delivered it. */
async function aToB(p: Pair, pk: Buffer): Promise<boolean> {
  return through(p, 'a', pk);
}
async function bToA(p: Pair, pk: Buffer): Promise<boolean> {
  return through(p, 'b', pk);
}
async function through(p: Pair, from: 'a' | 'b', pk: Buffer): Promise<boolean> {
  const src = from === 'a' ? p.a : p.b;
  const dst = from === 'a' ? p.b : p.a;
  const before = dst.tun.written.length;
  const seen = (): number => {
    const st = dst.dp.stats();
    return st.peers[0].rxPackets + (st.peers[0].drops.acl ?? 0);
  };
  const n0 = seen();
  src.tun.inject([pk]);
  src.tun.flush();
  await waitFor(() => seen() > n0, 5000, 'the packet reached the other side');
  await tick();
  const delivered = dst.tun.written.length > before;
  if (delivered) assert.deepEqual(dst.tun.written[dst.tun.written.length - 1], pk, 'delivered intact');
  return delivered;
}

const aclDrops = (p: Pair, at: 'a' | 'b'): number => (at === 'a' ? p.a : p.b).dp.stats().peers[0].drops.acl ?? 0;

const B_WEB: AclPolicy = { serial: 2, rules: [{ from: ['10.0.1.0/24', 'fd00:1::/64'], to: ['10.0.2.0/24', 'fd00:2::/64'], proto: 'tcp', ports: [[80, 80]] }] };

describe('access policy', () => {
  it('with no policy everything passes, and nothing is tracked', async () => {
    const p = await makePair();
    try {
      assert.equal(await aToB(p, udp4('10.0.1.5', '10.0.2.9', 1000, 53)), true);
      assert.equal(await aToB(p, tcp4('10.0.1.5', '10.0.2.9', 1000, 22)), true);
      assert.deepEqual(p.b.dp.stats().acl, { on: false, serial: null, rules: 0, flows: 0, maxFlows: 65536, evicted: 0 });
    } finally {
      p.close();
    }
  });

  it('lets in only what a rule allows (protocol, port, source, IPv4 and IPv6) and counts the rest as acl for the peer', async () => {
    const p = await makePair();
    try {
      p.b.dp.setPolicy(B_WEB);
      assert.equal(await aToB(p, tcp4('10.0.1.5', '10.0.2.9', 40000, 80, 0x02)), true, 'tcp/80 allowed');
      assert.equal(await aToB(p, ipv6Packet('fd00:1::5', 'fd00:2::9', l4(40001, 80), P_TCP)), true, 'tcp/80 over IPv6 allowed');
      assert.equal(await aToB(p, tcp4('10.0.1.5', '10.0.2.9', 40000, 81, 0x02)), false, 'tcp/81 dropped');
      assert.equal(await aToB(p, udp4('10.0.1.5', '10.0.2.9', 40000, 80)), false, 'udp/80 dropped');
      assert.equal(await aToB(p, ipv4Packet('10.0.1.5', '10.0.2.9', icmp(8, 7), 1)), false, 'ping dropped');
      assert.equal(await aToB(p, ipv6Packet('fd00:1::5', 'fd00:2::9', l4(40001, 22), P_TCP)), false, 'tcp/22 over IPv6 dropped');
      assert.equal(await aToB(p, ipv4Packet('10.0.1.5', '10.0.2.9', 12, 47)), false, 'another protocol dropped');
      assert.equal(aclDrops(p, 'b'), 5);
      assert.equal(p.b.dp.stats().drops.acl, 5, 'and in the global table');
      const st = p.b.dp.stats().acl;
      assert.equal(st.on, true);
      assert.equal(st.serial, 2);
      assert.equal(st.flows, 2, 'the two allowed flows are tracked');
      // a TCP header cut short cannot be checked: dropped
      assert.equal(await aToB(p, ipv4Packet('10.0.1.5', '10.0.2.9', Buffer.from([0x9c, 0x40, 0, 80]), P_TCP)), false);
    } finally {
      p.close();
    }
  });

  it('an empty rule set lets nothing in but replies to our own TCP, UDP and ICMP echo traffic', async () => {
    const p = await makePair();
    try {
      p.a.dp.setPolicy({ serial: 5, rules: [] });
      // unsolicited: dropped
      assert.equal(await bToA(p, tcp4('10.0.2.9', '10.0.1.5', 22, 40000)), false);
      assert.equal(await bToA(p, ipv4Packet('10.0.2.9', '10.0.1.5', icmp(0, 7), 1)), false, 'an echo reply nobody asked for');
      // a sends: the replies pass, other ports and ids do not
      assert.equal(await aToB(p, tcp4('10.0.1.5', '10.0.2.9', 40000, 22, 0x02)), true);
      assert.equal(await bToA(p, tcp4('10.0.2.9', '10.0.1.5', 22, 40000, 0x12)), true, 'SYN-ACK');
      assert.equal(await bToA(p, tcp4('10.0.2.9', '10.0.1.5', 23, 40000)), false, 'another source port');
      assert.equal(await aToB(p, udp4('10.0.1.5', '10.0.2.9', 5000, 53)), true);
      assert.equal(await bToA(p, udp4('10.0.2.9', '10.0.1.5', 53, 5000)), true, 'UDP reply');
      assert.equal(await bToA(p, udp4('10.0.2.9', '10.0.1.5', 53, 5001)), false);
      assert.equal(await aToB(p, ipv4Packet('10.0.1.5', '10.0.2.9', icmp(8, 7), 1)), true);
      assert.equal(await bToA(p, ipv4Packet('10.0.2.9', '10.0.1.5', icmp(0, 7), 1)), true, 'echo reply');
      assert.equal(await bToA(p, ipv4Packet('10.0.2.9', '10.0.1.5', icmp(0, 8), 1)), false, 'echo reply, other id');
      assert.equal(await bToA(p, ipv4Packet('10.0.2.9', '10.0.1.5', icmp(8, 7), 1)), false, "b's own echo request");
      assert.equal(await aToB(p, ipv6Packet('fd00:1::5', 'fd00:2::9', icmp(128, 9), 58)), true);
      assert.equal(await bToA(p, ipv6Packet('fd00:2::9', 'fd00:1::5', icmp(129, 9), 58)), true, 'ICMPv6 echo reply');
      assert.equal(aclDrops(p, 'a'), 6);
    } finally {
      p.close();
    }
  });

  it('passes an ICMP error that quotes a tracked flow (path MTU), not one that quotes another', async () => {
    const p = await makePair();
    try {
      p.a.dp.setPolicy({ serial: 1, rules: [] });
      const sent = tcp4('10.0.1.5', '10.0.2.9', 40000, 443, 0x02);
      assert.equal(await aToB(p, sent), true);
      const fragNeeded = (quoted: Buffer): Buffer => ipv4Packet('10.0.2.9', '10.0.1.5', icmp(3, 0, quoted.subarray(0, 28)), 1);
      assert.equal(await bToA(p, fragNeeded(sent)), true);
      assert.equal(await bToA(p, fragNeeded(tcp4('10.0.1.5', '10.0.2.9', 40001, 443))), false);
    } finally {
      p.close();
    }
  });

  it('later fragments pass only after their first fragment passed', async () => {
    const p = await makePair();
    try {
      p.b.dp.setPolicy({ serial: 1, rules: [{ from: 'any', to: 'any', proto: 'udp', ports: [[53, 53]] }] });
      const frag = (id: number, offset8: number, more: boolean, body: Buffer): Buffer => {
        const pk = ipv4Packet('10.0.1.5', '10.0.2.9', body, P_UDP);
        pk.writeUInt16BE(id, 4);
        pk.writeUInt16BE((more ? 0x2000 : 0) | offset8, 6);
        pk.writeUInt16BE(0, 10);
        pk.writeUInt16BE(internetChecksum(pk, 0, 20), 10);
        return pk;
      };
      assert.equal(await aToB(p, frag(77, 3, false, Buffer.alloc(16))), false, 'a later fragment whose first never passed');
      assert.equal(await aToB(p, frag(78, 0, true, l4(1000, 53, P_UDP, 0, 16))), true, 'first fragment, allowed port');
      assert.equal(await aToB(p, frag(78, 3, false, Buffer.alloc(16))), true, 'its later fragment');
      assert.equal(await aToB(p, frag(79, 0, true, l4(1000, 54, P_UDP, 0, 16))), false, 'first fragment, other port');
      assert.equal(await aToB(p, frag(79, 3, false, Buffer.alloc(16))), false, 'its later fragment');
    } finally {
      p.close();
    }
  });

  it('walks IPv6 extension headers to the transport header, and tracks IPv6 fragments', async () => {
    const p = await makePair();
    try {
      p.b.dp.setPolicy(B_WEB);
      // hop-by-hop options (8 bytes, next header TCP) then TCP
      const hbh = (next: number): Buffer => Buffer.from([next, 0, 1, 4, 0, 0, 0, 0]);
      assert.equal(await aToB(p, ipv6Packet('fd00:1::5', 'fd00:2::9', Buffer.concat([hbh(P_TCP), l4(40000, 80, P_TCP, 0x02)]), 0)), true, 'tcp/80 behind hop-by-hop');
      assert.equal(await aToB(p, ipv6Packet('fd00:1::5', 'fd00:2::9', Buffer.concat([hbh(P_TCP), l4(40000, 81, P_TCP, 0x02)]), 0)), false, 'tcp/81 behind hop-by-hop');
      // fragment header: next header, reserved, offset (13 bits) | M, identification
      const frag = (offset8: number, more: boolean, id: number, body: Buffer): Buffer => {
        const h = Buffer.alloc(8);
        h[0] = P_TCP;
        h.writeUInt16BE((offset8 << 3) | (more ? 1 : 0), 2);
        h.writeUInt32BE(id, 4);
        return ipv6Packet('fd00:1::5', 'fd00:2::9', Buffer.concat([h, body]), 44);
      };
      assert.equal(await aToB(p, frag(0, true, 0x11223344, l4(40001, 80, P_TCP, 0x10, 24))), true, 'first fragment to tcp/80');
      assert.equal(await aToB(p, frag(6, false, 0x11223344, Buffer.alloc(16))), true, 'its later fragment');
      assert.equal(await aToB(p, frag(0, true, 0x55667788, l4(40001, 81, P_TCP, 0x10, 24))), false, 'first fragment to tcp/81');
      assert.equal(await aToB(p, frag(6, false, 0x55667788, Buffer.alloc(16))), false, 'its later fragment');
      // a header chain that runs past the packet cannot be checked: dropped
      assert.equal(await aToB(p, ipv6Packet('fd00:1::5', 'fd00:2::9', Buffer.from([P_TCP, 200, 0, 0, 0, 0, 0, 0]), 0)), false);
    } finally {
      p.close();
    }
  });

  it('a new policy keeps tracked flows the new rules allow, cuts flows they do not, and keeps replies to our own traffic', async () => {
    const p = await makePair();
    try {
      p.b.dp.setPolicy({ serial: 2, rules: [{ from: ['10.0.1.0/24'], to: 'any', proto: 'tcp', ports: [[80, 80], [8080, 8080]] }] });
      assert.equal(await aToB(p, tcp4('10.0.1.5', '10.0.2.9', 40000, 80, 0x02)), true);
      assert.equal(await aToB(p, tcp4('10.0.1.5', '10.0.2.9', 40001, 8080, 0x02)), true);
      assert.equal(await bToA(p, tcp4('10.0.2.9', '10.0.1.5', 999, 5555, 0x02)), true, 'b opens a flow of its own to a');
      p.b.dp.setPolicy({ serial: 3, rules: [{ from: ['10.0.1.0/24'], to: 'any', proto: 'tcp', ports: [[80, 80]] }] });
      assert.equal(p.b.dp.stats().acl.serial, 3);
      assert.equal(await aToB(p, tcp4('10.0.1.5', '10.0.2.9', 40000, 80)), true, 'the flow to 80 goes on');
      assert.equal(await aToB(p, tcp4('10.0.1.5', '10.0.2.9', 40001, 8080)), false, 'the flow to 8080 is cut');
      assert.equal(await aToB(p, tcp4('10.0.1.5', '10.0.2.9', 5555, 999)), true, "the reply to b's own flow still passes");
      p.b.dp.setPolicy(null);
      assert.equal(await aToB(p, tcp4('10.0.1.5', '10.0.2.9', 40001, 8080)), true, 'no policy: everything passes again');
      assert.equal(p.b.dp.stats().acl.on, false);
    } finally {
      p.close();
    }
  });

  it('refuses a malformed policy with ERR_DP_CONFIG and keeps the one in force', async () => {
    const p = await makePair();
    try {
      p.b.dp.setPolicy(B_WEB);
      const bad: unknown[] = [
        { serial: -1, rules: [] },
        { serial: 1, rules: [{ from: 'any', to: 'any', proto: 'sctp' }] },
        { serial: 1, rules: [{ from: 'any', to: 'any', proto: 'icmp', ports: [[1, 2]] }] },
        { serial: 1, rules: [{ from: 'any', to: 'any', proto: 'tcp', ports: [[80, 70]] }] },
        { serial: 1, rules: [{ from: ['10.0.0.0/33'], to: 'any', proto: 'tcp' }] },
      ];
      for (const b of bad) assert.throws(() => p.b.dp.setPolicy(b as AclPolicy), { code: 'ERR_DP_CONFIG' }, JSON.stringify(b));
      assert.equal(p.b.dp.stats().acl.serial, 2);
      assert.equal(await aToB(p, tcp4('10.0.1.5', '10.0.2.9', 40000, 81, 0x02)), false, 'still enforced');
    } finally {
      p.close();
    }
  });

  it('grants no express lease while a policy is in force', async () => {
    const net = createMemoryUdpNetwork();
    const leases: ExpressLease[] = [];
    const spying: UdpBackend = {
      open(o) {
        const s: BatchUdpSocket = net.open(o);
        s.expressSetup = () => undefined;
        s.expressLease = (l) => {
          leases.push(l);
          return true;
        };
        return s;
      },
    };
    const ta = createMemoryTun({ mtu: 1420 });
    const tb = Object.assign(createMemoryTun({ mtu: 1420 }), { expressWriter: () => ({}) as never });
    const a = await createDataplane({ tun: ta, port: 0, backends: { crypto: jsCryptoBackend(), udp: net, name: 'memory' } });
    const b = await createDataplane({ tun: tb, port: 0, backends: { crypto: jsCryptoBackend(), udp: spying, name: 'memory' } });
    try {
      a.addPeer({ id: 'b', subnets: ['10.0.2.0/24'], endpoint: { host: '127.0.0.1', port: b.port } });
      b.addPeer({ id: 'a', subnets: ['10.0.1.0/24'], endpoint: { host: '127.0.0.1', port: a.port } });
      const s = sessionPair({});
      a.installSession('b', s.a);
      b.installSession('a', s.b);
      const send = async (n: number): Promise<void> => {
        ta.inject([udp4('10.0.1.5', '10.0.2.9', 1000, 53)]);
        ta.flush();
        await waitFor(() => tb.written.length === n, 5000, `packet ${n} at b`);
      };
      await send(1);
      assert.equal(leases.length, 1, 'without a policy a lone packet leases its session');
      b.setPolicy({ serial: 1, rules: [{ from: 'any', to: 'any', proto: 'any' }] });
      assert.equal(b.stats().express.on, false);
      await send(2);
      await send(3);
      assert.equal(leases.length, 1, 'no lease while the policy is in force');
      b.setPolicy(null);
      await send(4);
      assert.equal(leases.length, 2, 'leases again without one');
    } finally {
      a.close();
      b.close();
      ta.close();
      tb.close();
    }
  });
});

describe('connection table', () => {
  const key = (n: number): Uint32Array => {
    const k = new Uint32Array(KEY_WORDS);
    k[0] = n;
    k[9] = 0x40006;
    return k;
  };

  it('finds, expires and evicts the least recently used entry when full', () => {
    const t = new ConntrackTable(16);
    for (let i = 0; i < 16; i++) t.insert(key(i), 1000, 0, 0, 0);
    assert.equal(t.size, 16);
    assert.ok(t.find(key(0), 1) >= 0, 'entry 0 used: now the most recent');
    t.insert(key(100), 1000, 0, 0, 2);
    assert.equal(t.size, 16);
    assert.equal(t.evicted, 1);
    assert.equal(t.find(key(1), 3), -1, 'entry 1 was the least recently used');
    assert.ok(t.find(key(0), 3) >= 0);
    assert.ok(t.find(key(100), 3) >= 0);
    assert.equal(t.find(key(5), 1000), -1, 'expired');
    assert.equal(t.size, 15);
  });

  it('holds any number of flows in a bounded table (an Acl with maxFlows 16)', () => {
    const acl = new Acl({ maxFlows: 16 });
    acl.setPolicy({ serial: 1, rules: [] });
    for (let port = 1; port <= 100; port++) acl.outbound(tcp4('10.0.1.5', '10.0.2.9', port, 80), 0, 40, 0);
    const st = acl.stats();
    assert.equal(st.flows, 16);
    assert.equal(st.evicted, 84);
    assert.equal(acl.inbound(tcp4('10.0.2.9', '10.0.1.5', 80, 100), 0, 40, 1), true, 'the newest flow is kept');
    assert.equal(acl.inbound(tcp4('10.0.2.9', '10.0.1.5', 80, 1), 0, 40, 1), false, 'the oldest was evicted');
  });

  it('times flows out: UDP after udpMs, TCP established after tcpEstablishedMs', () => {
    const acl = new Acl({ udpMs: 100, tcpTransientMs: 50, tcpEstablishedMs: 1000 });
    acl.setPolicy({ serial: 1, rules: [] });
    acl.outbound(udp4('10.0.1.5', '10.0.2.9', 5000, 53), 0, 36, 0);
    assert.equal(acl.inbound(udp4('10.0.2.9', '10.0.1.5', 53, 5000), 0, 36, 99), true);
    assert.equal(acl.inbound(udp4('10.0.2.9', '10.0.1.5', 53, 5000), 0, 36, 250), false, 'idle longer than udpMs');
    acl.outbound(tcp4('10.0.1.5', '10.0.2.9', 40000, 22, 0x02), 0, 48, 0);
    assert.equal(acl.inbound(tcp4('10.0.2.9', '10.0.1.5', 22, 40000, 0x12), 0, 48, 10), true, 'seen both ways: established');
    assert.equal(acl.inbound(tcp4('10.0.2.9', '10.0.1.5', 22, 40000), 0, 48, 900), true, 'established lives longer than tcpTransientMs');
    assert.equal(acl.inbound(tcp4('10.0.2.9', '10.0.1.5', 22, 40000), 0, 48, 2000), false);
  });
});
