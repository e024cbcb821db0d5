/**
 * Longest-prefix match for IPv4 and IPv6, read straight out of packet
 * buffers (a binary trie in typed arrays: no objects per node, nothing
 * allocated per lookup).
 *
 * Node 0 is the IPv4 root, node 1 the IPv6 root; `child[2n + bit]` is the
 * child of node `n` (0 = none: a root is never a child), `value[n]` the
 * value stored at the prefix ending at `n` (-1 = none). Values are small
 * non-negative integers (the data plane stores peer slots).
 *
 * Insertions and removals are incremental: a removal clears the value at
 * its node and leaves the path; the trie is rebuilt from the entry list once
 * the removals since the last rebuild outnumber the entries (plus 64), so
 * dead nodes stay bounded and a removal costs amortised O(prefix length),
 * never O(entries) (a 10 000-node list that revokes 1 000 nodes must not
 * rebuild 1 000 times). A lookup walks at most 32 / 128 nodes.
 */
import type { Family, Prefix } from './ip-address.js';

/** Offsets of the source and destination addresses inside IP headers (specification). */
export const IpOffset = {
  V4_SRC: 12,
  V4_DST: 16,
  V6_SRC: 8,
  V6_DST: 24,
} as const;

/** A longest-prefix-match table from prefixes to non-negative integer values. */
export class PrefixTable {
  private child = new Int32Array(64);
  private value = new Int32Array(32).fill(-1);
  private nodes = 2;
  private readonly entries = new Map<string, { prefix: Prefix; value: number }>();
  /** Removals since the last rebuild (their nodes may be dead weight). */
  private removedSinceRebuild = 0;

  /** Times the trie was rebuilt from the entry list since construction (removals amortise to few). */
  get rebuilds(): number {
    return this.rebuildCount;
  }
  private rebuildCount = 0;

  /** Number of prefixes stored. */
  get size(): number {
    return this.entries.size;
  }

  /**
   * Stores `value` (integer ≥ 0) for `prefix`, replacing any value the
   * identical prefix had. Returns the replaced value or -1.
   */
  insert(prefix: Prefix, value: number): number {
    if (!Number.isInteger(value) || value < 0) throw new RangeError('PrefixTable values are integers ≥ 0');
    const old = this.entries.get(prefix.text);
    this.entries.set(prefix.text, { prefix, value });
    this.insertNode(prefix, value);
    return old === undefined ? -1 : old.value;
  }

  /** The value stored for exactly `prefix`, or -1. */
  get(prefix: Prefix): number {
    return this.entries.get(prefix.text)?.value ?? -1;
  }

  /** Removes `prefix`; returns whether it was present. Amortised O(prefix length). */
  remove(prefix: Prefix): boolean {
    if (!this.entries.delete(prefix.text)) return false;
    let node = prefix.family === 4 ? 0 : 1;
    for (let i = 0; i < prefix.length; i++) node = this.child[2 * node + ((prefix.bytes[i >> 3] >> (7 - (i & 7))) & 1)];
    this.value[node] = -1; // the path exists: insert made it and only rebuild() drops nodes
    if (++this.removedSinceRebuild > this.entries.size + 64) this.rebuild();
    return true;
  }

  /** Removes every prefix mapped to `value`; returns how many. O(entries): callers that know the prefixes use `remove`. */
  removeValue(value: number): number {
    const gone: Prefix[] = [];
    for (const e of this.entries.values()) if (e.value === value) gone.push(e.prefix);
    for (const p of gone) this.remove(p);
    return gone.length;
  }

  /** Removes everything. */
  clear(): void {
    this.entries.clear();
    this.rebuild();
  }

  /** The stored prefixes with their values (copy). */
  list(): Array<{ prefix: Prefix; value: number }> {
    return [...this.entries.values()];
  }

  /**
   * Value of the longest prefix containing the address whose first byte is
   * `buf[addrOff]` (4 bytes for family 4, 16 for family 6), or -1.
   * The caller guarantees the bytes exist. Allocates nothing.
   */
  lookup(buf: Uint8Array, addrOff: number, family: Family): number {
    const child = this.child;
    const value = this.value;
    let node = family === 4 ? 0 : 1;
    const bits = family === 4 ? 32 : 128;
    let best = value[node];
    for (let i = 0; i < bits; i++) {
      const bit = (buf[addrOff + (i >> 3)] >> (7 - (i & 7))) & 1;
      node = child[2 * node + bit];
      if (node === 0) break;
      const v = value[node];
      if (v >= 0) best = v;
    }
    return best;
  }

  private insertNode(prefix: Prefix, v: number): void {
    let node = prefix.family === 4 ? 0 : 1;
    for (let i = 0; i < prefix.length; i++) {
      const bit = (prefix.bytes[i >> 3] >> (7 - (i & 7))) & 1;
      let next = this.child[2 * node + bit];
      if (next === 0) {
        next = this.allocNode();
        this.child[2 * node + bit] = next;
      }
      node = next;
    }
    this.value[node] = v;
  }

  private allocNode(): number {
    const n = this.nodes++;
    if (n >= this.value.length) {
      const value = new Int32Array(this.value.length * 2).fill(-1);
      value.set(this.value);
      this.value = value;
      const child = new Int32Array(this.child.length * 2);
      child.set(this.child);
      this.child = child;
    }
    return n;
  }

  private rebuild(): void {
    this.child = new Int32Array(64);
    this.value = new Int32Array(32).fill(-1);
    this.nodes = 2;
    this.removedSinceRebuild = 0;
    this.rebuildCount++;
    for (const e of this.entries.values()) this.insertNode(e.prefix, e.value);
  }
}

/**
 * Spoof check: true when the address at `buf[addrOff]` (family 4 or 6) lies
 * within one of `subnets` (a table whose values do not matter). Allocates
 * nothing.
 */
export function contains(subnets: PrefixTable, buf: Uint8Array, addrOff: number, family: Family): boolean {
  return subnets.lookup(buf, addrOff, family) >= 0;
}
