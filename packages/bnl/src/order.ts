/**
 * Ordering of lists. Higher serial wins. At equal serial, identical payloads
 * are the same list; different payloads are a conflict (an admin signed two
 * lists with one serial) resolved the same way on every node: the lower
 * payload hash wins. The order is total, so nodes converge and never
 * oscillate.
 */
import type { SignedBnl } from './model.js';

/** What {@link compareBnl} found. */
export type BnlOrder = 'newer' | 'older' | 'same' | 'conflict-wins' | 'conflict-loses';

/**
 * Compares `candidate` against `current`: `newer`/`older` by serial; `same`
 * for equal payload hash; `conflict-wins`/`conflict-loses` for equal serial
 * with different content (candidate wins iff its hash is lower).
 */
export function compareBnl(candidate: Pick<SignedBnl, 'hash' | 'bnl'>, current: Pick<SignedBnl, 'hash' | 'bnl'>): BnlOrder {
  return compareSerialHash(candidate.bnl.serial, candidate.hash, current.bnl.serial, current.hash);
}

/** {@link compareBnl} on bare (serial, hash) pairs, as carried by pull requests. */
export function compareSerialHash(serial: number, hash: string, currentSerial: number, currentHash: string): BnlOrder {
  if (serial > currentSerial) return 'newer';
  if (serial < currentSerial) return 'older';
  if (hash === currentHash) return 'same';
  return hash < currentHash ? 'conflict-wins' : 'conflict-loses';
}

/** True if `order` means the candidate replaces the current list. */
export function replaces(order: BnlOrder): boolean {
  return order === 'newer' || order === 'conflict-wins';
}
