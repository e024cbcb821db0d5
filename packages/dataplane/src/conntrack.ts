/**
 * The connection-tracking table of the access policy (acl.ts): a bounded
 * hash table in typed arrays (nothing allocated per packet), keyed by a
 * flow as this node sees it — local address and port, remote address and
 * port, family, kind and protocol, 10 u32 words (see `KEY_WORDS`) — with an
 * expiry time and a few state bits per entry.
 *
 * Chained buckets (`head`/`chain`) over a fixed pool of `capacity`
 * entries; a doubly linked list (`older`/`newer`) keeps the entries in
 * order of last use, so when the pool is full the least recently used
 * entry is evicted (counted in `evicted`), and expired entries are reaped
 * from the old end a few at a time on every insertion. An expired entry
 * found by a look-up is removed and reported as missing.
 */

/** u32 words per key: 0-3 local address, 4-7 remote address, 8 ports or fragment id, 9 family/kind/protocol. */
export const KEY_WORDS = 10;

/** Entry state bits. */
export const CtFlag = {
  /** Created by our own outbound packet (a reply is allowed); else allowed in by a rule. */
  OUTBOUND: 1,
  /** A packet was seen leaving / arriving. */
  SEEN_OUT: 2,
  SEEN_IN: 4,
  /** TCP FIN or RST seen. */
  CLOSING: 8,
} as const;

/** A bounded LRU hash table of flows. */
export class ConntrackTable {
  readonly capacity: number;
  private readonly mask: number;
  private readonly head: Int32Array;
  private readonly chain: Int32Array;
  private readonly keys: Uint32Array;
  readonly expires: Float64Array;
  readonly flags: Uint8Array;
  /** Policy generation that allowed an inbound-created entry (acl.ts). */
  readonly gen: Float64Array;
  private readonly older: Int32Array;
  private readonly newer: Int32Array;
  private oldest = -1;
  private newest = -1;
  private free = -1;
  /** Live entries. */
  size = 0;
  /** Entries evicted (least recently used) because the table was full. */
  evicted = 0;

  constructor(capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 16 || capacity > 1 << 22) throw new RangeError('conntrack capacity must be 16..4194304');
    this.capacity = capacity;
    let buckets = 16;
    while (buckets < capacity) buckets <<= 1;
    this.mask = buckets - 1;
    this.head = new Int32Array(buckets).fill(-1);
    this.chain = new Int32Array(capacity);
    this.keys = new Uint32Array(capacity * KEY_WORDS);
    this.expires = new Float64Array(capacity);
    this.flags = new Uint8Array(capacity);
    this.gen = new Float64Array(capacity);
    this.older = new Int32Array(capacity);
    this.newer = new Int32Array(capacity);
    this.clear();
  }

  /** Forgets every entry (the counters stay). */
  clear(): void {
    this.head.fill(-1);
    for (let i = 0; i < this.capacity; i++) this.chain[i] = i + 1 < this.capacity ? i + 1 : -1;
    this.free = 0;
    this.oldest = -1;
    this.newest = -1;
    this.size = 0;
  }

  private hash(k: Uint32Array, base = 0): number {
    let h = 0x811c9dc5;
    for (let i = 0; i < KEY_WORDS; i++) h = Math.imul(h ^ k[base + i], 0x01000193);
    h ^= h >>> 15;
    return (h >>> 0) & this.mask;
  }

  private same(e: number, k: Uint32Array): boolean {
    const keys = this.keys;
    const b = e * KEY_WORDS;
    for (let i = 0; i < KEY_WORDS; i++) if (keys[b + i] !== k[i]) return false;
    return true;
  }

  /** The live entry for `k`, or -1 (an expired one is removed). Marks it most recently used. */
  find(k: Uint32Array, now: number): number {
    let e = this.head[this.hash(k)];
    while (e >= 0) {
      if (this.same(e, k)) {
        if (this.expires[e] <= now) {
          this.remove(e);
          return -1;
        }
        this.touch(e);
        return e;
      }
      e = this.chain[e];
    }
    return -1;
  }

  /** Adds `k` (not present: call `find` first) and returns its entry; evicts the least recently used when full. */
  insert(k: Uint32Array, expires: number, flags: number, gen: number, now: number): number {
    // reap a few expired entries from the old end
    for (let n = 0; n < 4 && this.oldest >= 0 && this.expires[this.oldest] <= now; n++) this.remove(this.oldest);
    if (this.free < 0) {
      this.remove(this.oldest);
      this.evicted++;
    }
    const e = this.free;
    this.free = this.chain[e];
    this.keys.set(k, e * KEY_WORDS);
    const b = this.hash(k);
    this.chain[e] = this.head[b];
    this.head[b] = e;
    this.expires[e] = expires;
    this.flags[e] = flags;
    this.gen[e] = gen;
    // link as newest
    this.older[e] = this.newest;
    this.newer[e] = -1;
    if (this.newest >= 0) this.newer[this.newest] = e;
    this.newest = e;
    if (this.oldest < 0) this.oldest = e;
    this.size++;
    return e;
  }

  /** Removes entry `e`. */
  remove(e: number): void {
    const b = this.hash(this.keys, e * KEY_WORDS);
    let p = this.head[b];
    if (p === e) this.head[b] = this.chain[e];
    else {
      while (p >= 0 && this.chain[p] !== e) p = this.chain[p];
      if (p >= 0) this.chain[p] = this.chain[e];
    }
    this.unlink(e);
    this.chain[e] = this.free;
    this.free = e;
    this.size--;
  }

  private unlink(e: number): void {
    const o = this.older[e];
    const n = this.newer[e];
    if (o >= 0) this.newer[o] = n;
    else this.oldest = n;
    if (n >= 0) this.older[n] = o;
    else this.newest = o;
  }

  private touch(e: number): void {
    if (this.newest === e) return;
    this.unlink(e);
    this.older[e] = this.newest;
    this.newer[e] = -1;
    if (this.newest >= 0) this.newer[this.newest] = e;
    this.newest = e;
    if (this.oldest < 0) this.oldest = e;
  }
}
