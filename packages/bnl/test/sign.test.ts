import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sign as edSign } from 'node:crypto';
import { parseBnl, verifyBnl, signBnl, createUnsignedBnl, parsePublicKey, encodeEnvelope, BnlError, createTrust } from '../src/index.js';
import { makeTestBnl } from '../src/testing.js';
import { newKey, signed, trustOf } from './helpers.js';

function verifyCode(bytes: Uint8Array, trust: ReturnType<typeof trustOf>): string {
  try {
    verifyBnl(parseBnl(bytes), trust);
    return 'ok';
  } catch (e) {
    return (e as BnlError).code;
  }
}

test('a signed list verifies; any tampered payload byte that still parses gives ERR_BNL_SIGNATURE', () => {
  const k = newKey();
  const s = signed(makeTestBnl(3), k);
  assert.equal(verifyCode(s.bytes, trustOf(1, k)), 'ok');
  const text = Buffer.from(s.bytes).toString('ascii');
  for (const [from, to] of [['"network":"testnet"', '"network":"testnes"'], ['192.0.2.2', '192.0.2.9'], ['10.0.3.0/24', '10.0.4.0/24'], ['"serial":1', '"serial":2']]) {
    assert.equal(verifyCode(Buffer.from(text.replace(from, to)), trustOf(1, k)), 'ERR_BNL_SIGNATURE', from);
  }
  // one flipped hex digit inside the signature itself
  const i = text.lastIndexOf(' ') + 10;
  const flipped = text.slice(0, i) + (text[i] === '0' ? '1' : '0') + text.slice(i + 1);
  assert.equal(verifyCode(Buffer.from(flipped), trustOf(1, k)), 'ERR_BNL_SIGNATURE');
});

test('wrong key → ERR_BNL_UNTRUSTED; unsigned → ERR_BNL_UNSIGNED', () => {
  const k = newKey();
  const other = newKey();
  assert.equal(verifyCode(signed(makeTestBnl(2), k).bytes, trustOf(1, other)), 'ERR_BNL_UNTRUSTED');
  assert.equal(verifyCode(createUnsignedBnl(makeTestBnl(2)).bytes, trustOf(1, k)), 'ERR_BNL_UNSIGNED');
});

test('signatures are domain separated: a plain signature over the payload does not verify', () => {
  const k = newKey();
  const u = createUnsignedBnl(makeTestBnl(2));
  const raw = edSign(null, u.payload, k.priv).toString('hex');
  const forged = encodeEnvelope(u.payload, [{ publicKey: k.pub, signature: raw }]);
  assert.equal(verifyCode(forged, trustOf(1, k)), 'ERR_BNL_SIGNATURE');
});

test('m-of-n: threshold 2 of 3 needs two trusted signatures; untrusted extra signatures do not count', () => {
  const [a, b, c, x] = [newKey(), newKey(), newKey(), newKey()];
  const trust = trustOf(2, a, b, c);
  assert.equal(verifyCode(signed(makeTestBnl(2), a).bytes, trust), 'ERR_BNL_UNTRUSTED');
  assert.equal(verifyCode(signed(makeTestBnl(2), a, x).bytes, trust), 'ERR_BNL_UNTRUSTED');
  assert.equal(verifyCode(signed(makeTestBnl(2), a, c).bytes, trust), 'ok');
  // cosigning later (another admin adds a signature to the same payload)
  const first = signed(makeTestBnl(2), b);
  const both = signBnl(first, [c.priv]);
  assert.equal(both.hash, first.hash);
  assert.equal(verifyCode(both.bytes, trust), 'ok');
  assert.deepEqual([...verifyBnl(both, trust).signers].sort(), [b.pub, c.pub].sort());
});

test('public keys parse from hex, labelled hex and PEM; bad input is ERR_BNL_KEY', () => {
  const k = newKey();
  assert.equal(parsePublicKey(`  ${k.pub.toUpperCase()}\n`), k.pub);
  assert.equal(parsePublicKey(`ed25519 ${k.pub}`), k.pub);
  const { createPublicKey } = require_crypto();
  const pem = createPublicKey(k.priv).export({ format: 'pem', type: 'spki' }).toString();
  assert.equal(parsePublicKey(pem), k.pub);
  assert.throws(() => parsePublicKey('nope'), (e: BnlError) => e.code === 'ERR_BNL_KEY');
  assert.throws(() => createTrust([k.pub], 2), (e: BnlError) => e.code === 'ERR_BNL_KEY');
});

import * as nodeCrypto from 'node:crypto';
function require_crypto(): typeof nodeCrypto {
  return nodeCrypto;
}
