/**
 * Signing, verification and trust.
 *
 * The signed message is domain-separated and length-prefixed, so a BNL
 * signature can never be taken for a signature over anything else:
 *
 *   u32be(len(domain)) ‖ domain ("cluevpn-bnl") ‖ u32be(version = 1) ‖ u32be(len(payload)) ‖ payload
 *
 * Trust: a set of raw Ed25519 public keys and a threshold M. A list verifies
 * when at least M distinct trusted keys signed it validly and no signature
 * by a trusted key is invalid. Signatures by keys outside the trust set are
 * ignored (not checked), which is what lets a list carry the signature of a
 * key that is only being introduced.
 */
import { sign as edSign, verify as edVerify, type KeyObject } from 'node:crypto';
import { encodeEnvelope } from './canonical.js';
import { BnlError, BnlSignatureError } from './errors.js';
import { publicKeyObject, rawPublicKeyHex } from './keys.js';
import { BNL_SIGNATURE_DOMAIN, BNL_VERSION, type BnlSignature, type SignedBnl } from './model.js';
import { parseBnl } from './parse.js';
import { PUBLIC_KEY_RE } from './validate.js';

/** The keys a node trusts to sign lists and how many must sign (1 ≤ threshold ≤ keys.length). */
export interface BnlTrust {
  readonly keys: readonly string[];
  readonly threshold: number;
}

/** Builds a trust set, checking its keys and threshold; throws `ERR_BNL_KEY`. */
export function createTrust(keys: readonly string[], threshold = 1): BnlTrust {
  const uniq = [...new Set(keys)].sort();
  if (uniq.length === 0) throw new BnlError('ERR_BNL_KEY', 'trust needs at least one public key');
  for (const k of uniq) if (!PUBLIC_KEY_RE.test(k)) throw new BnlError('ERR_BNL_KEY', 'public key must be 64 lowercase hex digits');
  if (!Number.isInteger(threshold) || threshold < 1 || threshold > uniq.length) {
    throw new BnlError('ERR_BNL_KEY', `threshold ${threshold} must be between 1 and ${uniq.length}`);
  }
  return { keys: uniq, threshold };
}

/** The exact bytes an Ed25519 signature covers for a given canonical payload. */
export function signatureMessage(payload: Uint8Array): Buffer {
  const domain = Buffer.from(BNL_SIGNATURE_DOMAIN, 'ascii');
  const head = Buffer.alloc(12 + domain.length);
  head.writeUInt32BE(domain.length, 0);
  domain.copy(head, 4);
  head.writeUInt32BE(BNL_VERSION, 4 + domain.length);
  head.writeUInt32BE(payload.length, 8 + domain.length);
  return Buffer.concat([head, payload]);
}

/**
 * Adds one signature per private key to a list (replacing an earlier
 * signature by the same key) and returns the re-parsed result.
 */
export function signBnl(list: SignedBnl, privateKeys: readonly KeyObject[]): SignedBnl {
  const msg = signatureMessage(list.payload);
  const byKey = new Map<string, BnlSignature>(list.signatures.map((s) => [s.publicKey, s]));
  for (const key of privateKeys) {
    const publicKey = rawPublicKeyHex(key);
    byKey.set(publicKey, { publicKey, signature: edSign(null, msg, key).toString('hex') });
  }
  return parseBnl(encodeEnvelope(list.payload, [...byKey.values()]));
}

/** Outcome of a successful verification: the trusted keys whose signatures held. */
export interface BnlVerification {
  readonly signers: readonly string[];
}

/**
 * Verifies `list` against `trust`. Throws {@link BnlSignatureError}:
 * `ERR_BNL_UNSIGNED` (no signature at all), `ERR_BNL_SIGNATURE` (a trusted
 * key's signature does not verify: the list was altered),
 * `ERR_BNL_UNTRUSTED` (fewer than `trust.threshold` trusted signers).
 */
export function verifyBnl(list: SignedBnl, trust: BnlTrust): BnlVerification {
  if (list.signatures.length === 0) throw new BnlSignatureError('ERR_BNL_UNSIGNED', 'the list carries no signature');
  const msg = signatureMessage(list.payload);
  const trusted = new Set(trust.keys);
  const good: string[] = [];
  for (const s of list.signatures) {
    if (!trusted.has(s.publicKey)) continue;
    if (!edVerify(null, msg, publicKeyObject(s.publicKey), Buffer.from(s.signature, 'hex'))) {
      throw new BnlSignatureError('ERR_BNL_SIGNATURE', `the signature by trusted key ${s.publicKey.slice(0, 16)}… does not match the list: it was altered`);
    }
    good.push(s.publicKey);
  }
  if (good.length < trust.threshold) {
    throw new BnlSignatureError('ERR_BNL_UNTRUSTED', `${good.length} trusted signature(s), ${trust.threshold} required`);
  }
  return { signers: good };
}

/**
 * Trust in force after `list` is accepted: the list's declared `signers`
 * when it has them (key rotation), else the trust that verified it.
 */
export function trustAfter(list: SignedBnl, before: BnlTrust): BnlTrust {
  const s = list.bnl.signers;
  return s ? { keys: [...s.keys], threshold: s.threshold } : before;
}

/** True if both trust sets have the same keys and threshold. */
export function sameTrust(a: BnlTrust, b: BnlTrust): boolean {
  return a.threshold === b.threshold && a.keys.length === b.keys.length && [...a.keys].sort().every((k, i) => k === [...b.keys].sort()[i]);
}
