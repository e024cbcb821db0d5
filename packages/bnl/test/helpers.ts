import { generateSigningKey, parsePrivateKey, createUnsignedBnl, signBnl, createTrust, type Bnl, type SignedBnl, type BnlTrust } from '../src/index.js';
import type { KeyObject } from 'node:crypto';

export interface TestKey {
  pub: string;
  priv: KeyObject;
}

export function newKey(): TestKey {
  const k = generateSigningKey();
  return { pub: k.publicKey, priv: parsePrivateKey(k.privateKeyPem) };
}

export function signed(bnl: Bnl, ...keys: TestKey[]): SignedBnl {
  return signBnl(createUnsignedBnl(bnl), keys.map((k) => k.priv));
}

export function trustOf(threshold: number, ...keys: TestKey[]): BnlTrust {
  return createTrust(keys.map((k) => k.pub), threshold);
}
