/**
 * Session key derivation.
 *
 *   lo, hi   = the two node names ordered by their UTF-8 bytes
 *   ikm      = TLS exporter value of the connection the negotiation ran on
 *   salt     = random(lo) ‖ random(hi)
 *   info(d)  = "cluevpn-v1 session" ‖ lp(lo) ‖ lp(hi) ‖ lp(cipher)
 *              ‖ lp(compression) ‖ u8 level ‖ u32 index(lo) ‖ u32 index(hi) ‖ lp(d)
 *   key(d)   = HKDF-SHA256(ikm, salt, info(d), 32)   d ∈ { "lo>hi", "hi>lo" }
 *
 * (lp = u16 length prefix; index(x) = the receiver index x chose.) Neither
 * side alone chooses the keys (both randoms are in the salt); a recorded
 * negotiation replayed on another TLS connection yields other keys (the
 * exporter differs); both names, the chosen algorithms and the direction
 * are bound into `info`, so each direction has its own key.
 */
import { hkdfSync } from 'node:crypto';
import type { AlgoChoice } from './algorithms.js';
import { NegotiationError } from './errors.js';

/** Specification: bytes of each side's random contribution (minimum; up to 64 accepted). */
export const RANDOM_BYTES = 32;
/** Specification: bytes of each session key. */
export const KEY_BYTES = 32;

function lp(s: string): Buffer {
  const b = Buffer.from(s, 'utf8');
  const h = Buffer.alloc(2);
  h.writeUInt16BE(b.length, 0);
  return Buffer.concat([h, b]);
}

/** Input of `deriveSessionKeys`, seen from the local node. */
export interface KeyInput {
  exporter: Buffer;
  localName: string;
  peerName: string;
  localRandom: Buffer;
  peerRandom: Buffer;
  /** Receiver index we chose (the peer sends to it). */
  localIndex: number;
  /** Receiver index the peer chose (we send to it). */
  remoteIndex: number;
  choice: AlgoChoice;
}

/**
 * Derives the two direction keys; returns them from the local point of
 * view. The caller owns the returned buffers (and must `fill(0)` them when done).
 */
export function deriveSessionKeys(k: KeyInput): { txKey: Buffer; rxKey: Buffer } {
  const cmp = Buffer.compare(Buffer.from(k.localName, 'utf8'), Buffer.from(k.peerName, 'utf8'));
  if (cmp === 0) throw new NegotiationError('ERR_NEGOTIATION_PROTOCOL', 'a node cannot negotiate with itself');
  const localIsLo = cmp < 0;
  const [loName, hiName] = localIsLo ? [k.localName, k.peerName] : [k.peerName, k.localName];
  const salt = localIsLo ? Buffer.concat([k.localRandom, k.peerRandom]) : Buffer.concat([k.peerRandom, k.localRandom]);
  const idx = Buffer.alloc(9);
  idx.writeUInt8(k.choice.compression.level, 0);
  idx.writeUInt32BE(localIsLo ? k.localIndex : k.remoteIndex, 1);
  idx.writeUInt32BE(localIsLo ? k.remoteIndex : k.localIndex, 5);
  const base = Buffer.concat([lp('cluevpn-v1 session'), lp(loName), lp(hiName), lp(k.choice.cipher), lp(k.choice.compression.algo), idx]);
  const loHi = Buffer.from(hkdfSync('sha256', k.exporter, salt, Buffer.concat([base, lp('lo>hi')]), KEY_BYTES));
  const hiLo = Buffer.from(hkdfSync('sha256', k.exporter, salt, Buffer.concat([base, lp('hi>lo')]), KEY_BYTES));
  salt.fill(0);
  return localIsLo ? { txKey: loHi, rxKey: hiLo } : { txKey: hiLo, rxKey: loHi };
}
