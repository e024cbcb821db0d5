/**
 * Ed25519 signing keys (node:crypto). Public keys travel as 64 lowercase hex
 * digits (the raw 32-byte key); private keys are PKCS#8 PEM files.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { BnlError } from './errors.js';
import { PUBLIC_KEY_RE } from './validate.js';

const SPKI_ED25519_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
const cache = new Map<string, KeyObject>();

/** A freshly generated key pair: PKCS#8 PEM private key (secret) and raw public key hex. */
export interface SigningKeyPair {
  privateKeyPem: string;
  publicKey: string;
}

/** Generates an Ed25519 key pair. The caller must store `privateKeyPem` with mode 0600 and never log it. */
export function generateSigningKey(): SigningKeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    privateKeyPem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    publicKey: rawPublicKeyHex(publicKey),
  };
}

/** Raw public key hex of an Ed25519 public or private KeyObject. */
export function rawPublicKeyHex(key: KeyObject): string {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  if (pub.asymmetricKeyType !== 'ed25519') throw new BnlError('ERR_BNL_KEY', `expected an Ed25519 key, got ${String(pub.asymmetricKeyType)}`);
  return (pub.export({ format: 'der', type: 'spki' }) as Buffer).subarray(SPKI_ED25519_PREFIX.length).toString('hex');
}

/**
 * Reads a public key written as 64 hex digits (optionally after a label such
 * as `ed25519`, surrounding whitespace allowed) or as an SPKI PEM block.
 * Returns canonical lowercase hex; throws `ERR_BNL_KEY`.
 */
export function parsePublicKey(text: string): string {
  const t = text.trim();
  if (t.startsWith('-----BEGIN')) {
    let key: KeyObject;
    try {
      key = createPublicKey(t);
    } catch (err) {
      throw new BnlError('ERR_BNL_KEY', 'not a readable PEM public key', { cause: err });
    }
    return rawPublicKeyHex(key);
  }
  const last = t.split(/\s+/).pop() ?? '';
  const hex = last.toLowerCase();
  if (!PUBLIC_KEY_RE.test(hex)) throw new BnlError('ERR_BNL_KEY', 'a BNL public key is 64 hex digits (or an Ed25519 PEM public key)');
  return hex;
}

/** Reads a PKCS#8 PEM Ed25519 private key; throws `ERR_BNL_KEY` without echoing the input. */
export function parsePrivateKey(pem: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (err) {
    throw new BnlError('ERR_BNL_KEY', 'not a readable PEM private key', { cause: err });
  }
  if (key.asymmetricKeyType !== 'ed25519') throw new BnlError('ERR_BNL_KEY', `the private key is ${String(key.asymmetricKeyType)}, not Ed25519`);
  return key;
}

/** KeyObject for a raw public key hex (cached; hex must be valid). */
export function publicKeyObject(hex: string): KeyObject {
  let k = cache.get(hex);
  if (!k) {
    if (!PUBLIC_KEY_RE.test(hex)) throw new BnlError('ERR_BNL_KEY', 'public key must be 64 lowercase hex digits');
    k = createPublicKey({ key: Buffer.concat([SPKI_ED25519_PREFIX, Buffer.from(hex, 'hex')]), format: 'der', type: 'spki' });
    if (cache.size > 1024) cache.clear();
    cache.set(hex, k);
  }
  return k;
}
