import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { IcmpResponder, TokenBucket, internetChecksum } from '../src/icmp.js';
import { ipv4Packet, ipv6Packet } from './pipeline-helpers.js';

function icmpv6ChecksumOk(r: Buffer): boolean {
  const plen = r.readUInt16BE(4);
  const pseudo = Buffer.alloc(40 + plen);
  r.copy(pseudo, 0, 8, 40);
  pseudo.writeUInt32BE(plen, 32);
  pseudo.writeUInt32BE(58, 36);
  r.copy(pseudo, 40, 40, 40 + plen);
  return internetChecksum(pseudo, 0, pseudo.length) === 0;
}

describe('ICMP no-route replies', () => {
  it('builds an ICMPv6 destination unreachable with a correct pseudo-header checksum', () => {
    const r = new IcmpResponder(100, 100);
    const pkt = ipv6Packet('fd00:1::5', 'fd00:9::9', 2000 - 40);
    const out = Buffer.alloc(1400);
    const n = r.build(pkt, 0, pkt.length, out, 0, 0);
    assert.equal(n, 1280, 'capped at the IPv6 minimum MTU');
    assert.equal(out[40], 1);
    assert.equal(out[41], 0);
    assert.equal(icmpv6ChecksumOk(out.subarray(0, n)), true);
    out[100] ^= 1;
    assert.equal(icmpv6ChecksumOk(out.subarray(0, n)), false, 'the checker can fail');
  });

  it('caps IPv4 replies at 576 bytes with valid checksums', () => {
    const r = new IcmpResponder(100, 100);
    const pkt = ipv4Packet('10.0.1.5', '10.9.9.9', 1000);
    const out = Buffer.alloc(1400);
    const n = r.build(pkt, 0, pkt.length, out, 0, 0);
    assert.equal(n, 576);
    assert.equal(out.readUInt16BE(2), 576);
    assert.equal(internetChecksum(out, 0, 20), 0);
    assert.equal(internetChecksum(out, 20, n - 20), 0);
  });

  it('never answers ICMP errors, fragments or multicast, but answers echo requests', () => {
    const r = new IcmpResponder(100, 100);
    const out = Buffer.alloc(1400);
    const err4 = ipv4Packet('10.0.1.5', '10.9.9.9', Buffer.from([3, 1, 0, 0, 0, 0, 0, 0]), 1);
    const echo4 = ipv4Packet('10.0.1.5', '10.9.9.9', Buffer.from([8, 0, 0, 0, 0, 0, 0, 0]), 1);
    const err6 = ipv6Packet('fd00:1::5', 'fd00:9::9', Buffer.from([1, 0, 0, 0, 0, 0, 0, 0]), 58);
    const echo6 = ipv6Packet('fd00:1::5', 'fd00:9::9', Buffer.from([128, 0, 0, 0, 0, 0, 0, 0]), 58);
    const mcast = ipv4Packet('10.0.1.5', '239.1.1.1', 8);
    const mcast6 = ipv6Packet('fd00:1::5', 'ff02::1', 8);
    const frag = ipv4Packet('10.0.1.5', '10.9.9.9', 8);
    frag.writeUInt16BE(0x0010, 6);
    for (const p of [err4, err6, mcast, mcast6, frag]) assert.equal(r.build(p, 0, p.length, out, 0, 0), 0);
    assert.ok(r.build(echo4, 0, echo4.length, out, 0, 0) > 0);
    assert.ok(r.build(echo6, 0, echo6.length, out, 0, 0) > 0);
  });

  it('token bucket: burst, then the configured rate', () => {
    const b = new TokenBucket(10, 3);
    assert.deepEqual([b.take(0), b.take(0), b.take(0), b.take(0)], [true, true, true, false]);
    assert.equal(b.take(50), false, 'half a token after 50 ms');
    assert.equal(b.take(100), true, 'one token after 100 ms');
    assert.equal(b.take(100), false);
    assert.deepEqual([b.take(10_000), b.take(10_000), b.take(10_000), b.take(10_000)], [true, true, true, false], 'refill capped at the burst');
  });
});

describe('ICMP too-big replies (path MTU)', () => {
  it('IPv4: destination unreachable, code 4 (fragmentation needed), next-hop MTU, valid checksums', () => {
    const r = new IcmpResponder(100, 100);
    const pkt = ipv4Packet('10.0.1.5', '10.0.2.9', 1400);
    pkt[6] = 0x40; // DF
    const out = Buffer.alloc(1400);
    const n = r.buildTooBig(pkt, 0, pkt.length, 1216, out, 0, 0);
    assert.equal(n, 576);
    assert.equal(out[20], 3);
    assert.equal(out[21], 4);
    assert.equal(out.readUInt16BE(26), 1216, 'next-hop MTU');
    assert.equal(internetChecksum(out, 0, 20), 0);
    assert.equal(internetChecksum(out, 20, n - 20), 0);
    assert.deepEqual(out.subarray(12, 16), pkt.subarray(16, 20), 'from the original destination');
    assert.deepEqual(out.subarray(28, 48), pkt.subarray(0, 20), 'quotes the packet');
    assert.equal(r.tooBigSent, 1);
  });

  it('IPv6: packet too big with the MTU, valid checksum, also for a multicast destination', () => {
    const r = new IcmpResponder(100, 100);
    const pkt = ipv6Packet('fd00:1::5', 'fd00:2::9', 1360);
    const out = Buffer.alloc(1400);
    const n = r.buildTooBig(pkt, 0, pkt.length, 1336, out, 0, 0);
    assert.equal(n, 1280);
    assert.equal(out[40], 2);
    assert.equal(out[41], 0);
    assert.equal(out.readUInt32BE(44), 1336);
    assert.equal(icmpv6ChecksumOk(out.subarray(0, n)), true);
    const m = ipv6Packet('fd00:1::5', 'ff0e::1', 1360);
    assert.ok(r.buildTooBig(m, 0, m.length, 1336, out, 0, 0) > 0);
  });

  it('shares the rate limit with no-route replies', () => {
    const r = new IcmpResponder(1, 2);
    const pkt = ipv4Packet('10.0.1.5', '10.0.2.9', 1400);
    const out = Buffer.alloc(1400);
    assert.ok(r.build(pkt, 0, pkt.length, out, 0, 0) > 0);
    assert.ok(r.buildTooBig(pkt, 0, pkt.length, 1200, out, 0, 0) > 0);
    assert.equal(r.buildTooBig(pkt, 0, pkt.length, 1200, out, 0, 0), 0);
    assert.equal(r.rateLimited, 1);
  });
});
