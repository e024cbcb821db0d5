import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseIp, parsePrefix } from '../src/ip-address.js';
import { IpOffset, PrefixTable, contains } from '../src/routing-table.js';
import { ipv4Packet, ipv6Packet } from './pipeline-helpers.js';

function lookupText(t: PrefixTable, addr: string): number {
  const ip = parseIp(addr)!;
  return t.lookup(ip.bytes, 0, ip.family);
}

describe('routing table (longest-prefix match)', () => {
  const t = new PrefixTable();
  const routes: Array<[string, number]> = [
    ['10.0.0.0/8', 1],
    ['10.1.0.0/16', 2],
    ['10.1.2.0/24', 3],
    ['10.1.2.128/25', 4],
    ['10.1.2.200/32', 5],
    ['192.168.0.0/16', 6],
    ['fd00::/8', 10],
    ['fd00:1::/32', 11],
    ['fd00:1:2::/48', 12],
    ['fd00:1:2:3::1/128', 13],
  ];
  for (const [p, v] of routes) t.insert(parsePrefix(p), v);

  it('picks the longest matching prefix (IPv4)', () => {
    const cases: Array<[string, number]> = [
      ['10.200.0.1', 1],
      ['10.1.9.9', 2],
      ['10.1.2.1', 3],
      ['10.1.2.129', 4],
      ['10.1.2.200', 5],
      ['10.1.2.201', 4],
      ['192.168.255.255', 6],
      ['11.0.0.1', -1],
      ['9.255.255.255', -1],
    ];
    for (const [a, v] of cases) assert.equal(lookupText(t, a), v, a);
  });

  it('picks the longest matching prefix (IPv6), families do not mix', () => {
    const cases: Array<[string, number]> = [
      ['fd12::1', 10],
      ['fd00:1:9::1', 11],
      ['fd00:1:2:4::1', 12],
      ['fd00:1:2:3::1', 13],
      ['fd00:1:2:3::2', 12],
      ['fe80::1', -1],
      ['::a00:1', -1], // the bytes of 10.0.0.1 in an IPv6 address
    ];
    for (const [a, v] of cases) assert.equal(lookupText(t, a), v, a);
  });

  it('reads the destination straight out of a packet buffer', () => {
    const buf = Buffer.alloc(200);
    ipv4Packet('1.2.3.4', '10.1.2.130', 10).copy(buf, 50);
    assert.equal(t.lookup(buf, 50 + IpOffset.V4_DST, 4), 4);
    ipv6Packet('fd00::9', 'fd00:1:2:3::1', 10).copy(buf, 7);
    assert.equal(t.lookup(buf, 7 + IpOffset.V6_DST, 6), 13);
  });

  it('supports default routes, replacement and removal', () => {
    const u = new PrefixTable();
    u.insert(parsePrefix('0.0.0.0/0'), 7);
    u.insert(parsePrefix('::/0'), 8);
    assert.equal(lookupText(u, '203.0.113.9'), 7);
    assert.equal(lookupText(u, '2001:db8::1'), 8);
    u.insert(parsePrefix('10.0.0.0/8'), 1);
    assert.equal(u.insert(parsePrefix('10.0.0.0/8'), 2), 1);
    assert.equal(lookupText(u, '10.9.9.9'), 2);
    assert.equal(u.remove(parsePrefix('10.0.0.0/8')), true);
    assert.equal(u.remove(parsePrefix('10.0.0.0/8')), false);
    assert.equal(lookupText(u, '10.9.9.9'), 7);
    u.insert(parsePrefix('10.0.0.0/8'), 3);
    u.insert(parsePrefix('fd00::/8'), 3);
    assert.equal(u.removeValue(3), 2);
    assert.equal(lookupText(u, 'fd00::1'), 8);
    assert.equal(u.size, 2);
  });

  it('grows past its initial node capacity', () => {
    const u = new PrefixTable();
    for (let i = 0; i < 500; i++) u.insert(parsePrefix(`fd00:${i.toString(16)}::/64`), i);
    for (let i = 0; i < 500; i += 37) assert.equal(lookupText(u, `fd00:${i.toString(16)}::42`), i);
  });
});

describe('spoof check (contains)', () => {
  const subnets = new PrefixTable();
  subnets.insert(parsePrefix('10.0.2.0/24'), 0);
  subnets.insert(parsePrefix('fd00:2::/64'), 0);
  it('accepts sources inside the subnets and rejects others', () => {
    const inside = ipv4Packet('10.0.2.77', '10.0.1.1', 4);
    const outside = ipv4Packet('10.0.3.77', '10.0.1.1', 4);
    assert.equal(contains(subnets, inside, IpOffset.V4_SRC, 4), true);
    assert.equal(contains(subnets, outside, IpOffset.V4_SRC, 4), false);
    const in6 = ipv6Packet('fd00:2::5', 'fd00:1::1', 4);
    const out6 = ipv6Packet('fd00:3::5', 'fd00:1::1', 4);
    assert.equal(contains(subnets, in6, IpOffset.V6_SRC, 6), true);
    assert.equal(contains(subnets, out6, IpOffset.V6_SRC, 6), false);
  });
});

describe('parsePrefix', () => {
  it('canonicalises and validates', () => {
    assert.equal(parsePrefix('10.1.0.0/16').text, '10.1.0.0/16');
    assert.equal(parsePrefix('FD00:0:0::/48').text, 'fd00::/48');
    assert.equal(parsePrefix('10.0.0.1').text, '10.0.0.1/32');
    assert.equal(parsePrefix('::ffff:10.0.0.1').text, '::ffff:a00:1/128');
    for (const bad of ['10.0.0.1/24', '10.0.0.0/33', '10.0.0/8', 'fd00::/129', 'host.example/8', '1:2:3:4:5:6:7:8:9/128', '10.0.0.0/08', '']) {
      assert.throws(() => parsePrefix(bad), (e: { code?: string }) => e.code === 'ERR_DP_CONFIG', bad);
    }
  });
});

describe('routing table at scale (issue 19)', () => {
  const v4 = (k: number): string => `10.${100 + (k >> 16)}.${(k >> 8) & 255}.${k & 255}/32`;

  it('removing 1 000 of 10 000 prefixes one by one rebuilds the trie at most once, and lookups stay right', () => {
    const t = new PrefixTable();
    const N = 10_000;
    for (let k = 0; k < N; k++) t.insert(parsePrefix(v4(k)), k);
    t.insert(parsePrefix('10.0.0.0/8'), N); // covers the removed ones afterwards
    for (let k = 0; k < N; k += 10) assert.equal(t.remove(parsePrefix(v4(k))), true);
    // a rebuild per removal made this quadratic in the list size (1 000 rebuilds of 10 000 entries)
    assert.ok(t.rebuilds <= 1, `rebuilds: ${t.rebuilds}`);
    assert.equal(t.size, N - N / 10 + 1);
    for (let k = 0; k < N; k++) {
      const addr = v4(k).slice(0, -3);
      assert.equal(lookupText(t, addr), k % 10 === 0 ? N : k, addr);
    }
    assert.equal(t.remove(parsePrefix(v4(0))), false);
  });

  it('keeps dead nodes bounded: a churn of inserts and removals rebuilds now and then', () => {
    const t = new PrefixTable();
    for (let k = 0; k < 100; k++) t.insert(parsePrefix(v4(k)), k);
    for (let round = 0; round < 50; round++) {
      for (let k = 0; k < 100; k++) t.remove(parsePrefix(v4(k)));
      for (let k = 0; k < 100; k++) t.insert(parsePrefix(v4(k)), k + round);
    }
    assert.ok(t.rebuilds >= 10 && t.rebuilds <= 50, `rebuilds: ${t.rebuilds}`);
    assert.equal(lookupText(t, '10.100.0.42'), 42 + 49);
    assert.equal(t.get(parsePrefix(v4(42))), 42 + 49);
    assert.equal(t.get(parsePrefix('10.0.0.0/8')), -1);
  });
});
