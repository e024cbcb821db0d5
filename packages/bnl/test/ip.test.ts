import { test } from 'node:test';
import assert from 'node:assert/strict';
import { canonicalHostKind, parseCidr, parseIPv4 } from '../src/ip.js';

/** The strict dotted quad as the regular expression it replaced defined it (issue 19: the scanner must accept exactly the same strings). */
const REFERENCE = /^(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})$/;
function reference(s: string): number[] | null {
  const m = REFERENCE.exec(s);
  if (!m) return null;
  const parts = m.slice(1).map(Number);
  return parts.every((v) => v <= 255) ? parts : null;
}

test('parseIPv4 accepts exactly the strict dotted quads (edge cases and 20 000 random strings against the reference)', () => {
  const cases = ['1.2.3.4', '0.0.0.0', '255.255.255.255', '01.2.3.4', '1.2.3.04', '1.2.3', '1.2.3.4.5', '256.1.1.1', '1.2.3.256', '1..2.3', '.1.2.3',
    '1.2.3.4.', ' 1.2.3.4', '1.2.3.4 ', '1000.1.1.1', '00.1.1.1', '1.2.3.a', '1.2.3.-4', '+1.2.3.4', '1.2.3.4/8', '', '....', '1.2.3.0x1', '199.299.99.9', '9.9.9.99999'];
  const alphabet = '0123456789...a/: ';
  let seed = 19;
  const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2147483648) % n);
  for (let k = 0; k < 20_000; k++) {
    let s = '';
    const len = 1 + rand(16);
    for (let i = 0; i < len; i++) s += alphabet[rand(alphabet.length)];
    cases.push(s);
  }
  for (const s of cases) {
    const got = parseIPv4(s);
    assert.deepEqual(got === null ? null : [...got], reference(s), JSON.stringify(s));
    assert.equal(canonicalHostKind(s) === 'ipv4', reference(s) !== null, JSON.stringify(s));
  }
});

test('parseCidr (IPv4): range, canonical text, host bits and syntax', () => {
  const r = parseCidr('10.1.2.0/24');
  assert.ok(r.ok);
  assert.deepEqual([r.cidr.family, [...r.cidr.bytes], r.cidr.prefix, r.cidr.start, r.cidr.end, r.canonical], [4, [10, 1, 2, 0], 24, 0x0a010200n, 0x0a0102ffn, '10.1.2.0/24']);
  const all = parseCidr('0.0.0.0/0');
  assert.ok(all.ok);
  assert.deepEqual([all.cidr.start, all.cidr.end], [0n, 0xffffffffn]);
  const host = parseCidr('255.255.255.255/32');
  assert.ok(host.ok);
  assert.deepEqual([host.cidr.start, host.cidr.end], [0xffffffffn, 0xffffffffn]);
  assert.deepEqual(parseCidr('10.1.2.3/24'), { ok: false, reason: 'host-bits', canonical: '10.1.2.0/24' });
  assert.deepEqual(parseCidr('192.168.255.1/17'), { ok: false, reason: 'host-bits', canonical: '192.168.128.0/17' });
  for (const bad of ['10.0.0.0/33', '10.0.0.0/', '10.0.0.0/024', '10.0.0/8', '10.0.0.0', '010.0.0.0/8']) assert.deepEqual(parseCidr(bad), { ok: false, reason: 'syntax' }, bad);
  const v6 = parseCidr('fd00::/8');
  assert.ok(v6.ok);
  assert.equal(v6.cidr.end, (0xfdn << 120n) | ((1n << 120n) - 1n));
  assert.deepEqual(parseCidr('fd00::1/64'), { ok: false, reason: 'host-bits', canonical: 'fd00::/64' });
});
