import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeEndpoint, parseIp, parsePrefix } from '../src/ip-address.js';

/** The dotted quad as the split-and-regex parser it replaced accepted it (issue 19: the scanner must accept exactly the same strings). */
function reference(s: string): number[] | null {
  const parts = s.split('.');
  if (parts.length !== 4 || !parts.every((p) => /^(0|[1-9][0-9]{0,2})$/.test(p))) return null;
  const v = parts.map(Number);
  return v.every((x) => x <= 255) ? v : null;
}

test('parseIp (IPv4) accepts exactly the strict dotted quads: edge cases and 20 000 random strings against the reference', () => {
  const cases = ['1.2.3.4', '0.0.0.0', '255.255.255.255', '01.2.3.4', '1.2.3.04', '1.2.3', '1.2.3.4.5', '256.1.1.1', '1.2.3.256', '1..2.3', '.1.2.3',
    '1.2.3.4.', ' 1.2.3.4', '1.2.3.4 ', '1000.1.1.1', '00.1.1.1', '1.2.3.a', '1.2.3.-4', '+1.2.3.4', '', '....', '1.2.3.0x1', '9.9.9.99999'];
  const alphabet = '0123456789...a ';
  let seed = 19;
  const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2147483648) % n);
  for (let k = 0; k < 20_000; k++) {
    let s = '';
    const len = 1 + rand(16);
    for (let i = 0; i < len; i++) s += alphabet[rand(alphabet.length)];
    cases.push(s);
  }
  for (const s of cases) {
    const got = parseIp(s);
    assert.deepEqual(got === null ? null : [...got.bytes], reference(s), JSON.stringify(s));
  }
  // embedded IPv4 in IPv6 goes through the same parser
  assert.deepEqual([...parseIp('::ffff:10.1.2.3')!.bytes.subarray(12)], [10, 1, 2, 3]);
  assert.equal(parseIp('::ffff:10.01.2.3'), null);
});

test('parsePrefix and encodeEndpoint on IPv4 text', () => {
  const p = parsePrefix('10.1.2.0/24');
  assert.deepEqual([p.family, [...p.bytes], p.length, p.text], [4, [10, 1, 2, 0], 24, '10.1.2.0/24']);
  assert.throws(() => parsePrefix('10.1.2.3/24'), { code: 'ERR_DP_CONFIG' });
  assert.throws(() => parsePrefix('10.1.2.256/32'), { code: 'ERR_DP_CONFIG' });
  const key = new Uint8Array(18);
  encodeEndpoint('192.0.2.7', 655, key);
  assert.deepEqual([...key], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 7, 2, 143]);
  assert.throws(() => encodeEndpoint('192.0.2.07', 655, key), { code: 'ERR_DP_CONFIG' });
});
