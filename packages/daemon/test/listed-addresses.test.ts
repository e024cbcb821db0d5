/**
 * The listed addresses (src/listed-addresses.ts) answer as the BlockList they
 * replace did: exact IPv4 addresses, IPv6 addresses in any spelling, nothing
 * for names or garbage.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ListedAddresses } from '../src/listed-addresses.js';

test('IPv4 addresses match exactly, others do not', () => {
  const a = new ListedAddresses();
  a.add('192.0.2.1');
  a.add('10.0.0.7');
  assert.equal(a.has('192.0.2.1'), true);
  assert.equal(a.has('10.0.0.7'), true);
  assert.equal(a.has('192.0.2.2'), false);
  assert.equal(a.has('192.0.2.10'), false);
  assert.equal(a.has('10.0.0.70'), false);
});

test('IPv6 addresses match in any spelling; an IPv4 entry does not match an IPv6 address', () => {
  const a = new ListedAddresses();
  a.add('2001:db8::1');
  a.add('192.0.2.1');
  assert.equal(a.has('2001:db8::1'), true);
  assert.equal(a.has('2001:0db8:0:0:0:0:0:1'), true);
  assert.equal(a.has('2001:DB8::1'), true);
  assert.equal(a.has('2001:db8::2'), false);
  assert.equal(a.has('::1'), false);
});

test('host names and malformed input are ignored when added and never match', () => {
  const a = new ListedAddresses();
  a.add('vpn.example.org');
  a.add('');
  a.add('300.1.1.1');
  assert.equal(a.has('vpn.example.org'), false);
  assert.equal(a.has('300.1.1.1'), false);
  assert.equal(a.has(''), false);
  assert.equal(a.has('?'), false);
});

test('10 000 addresses: each listed one matches, an unlisted neighbour does not', () => {
  const a = new ListedAddresses();
  for (let k = 0; k < 10_000; k++) a.add(`10.${(k >> 8) & 255}.${k & 255}.1`);
  for (let k = 0; k < 10_000; k += 97) {
    assert.equal(a.has(`10.${(k >> 8) & 255}.${k & 255}.1`), true);
    assert.equal(a.has(`10.${(k >> 8) & 255}.${k & 255}.2`), false);
  }
});
