/**
 * The MAC table of switch mode: which side of the mesh owns each Ethernet
 * source address. No dependencies; one owner (the switch pipeline of one
 * data plane, `switch.ts`), mutated only by it and by the data plane's
 * control methods (fixed entries from the node list).
 *
 * An owner is a peer slot (≥ 0) or {@link MAC_LOCAL} (our own TAP side).
 * Entries are *learned* (first seen; refreshed by every accepted frame;
 * gone after `ageMs` without one, like a bridge's 300 s) or *fixed* (listed
 * in the node's BNL record as `mac=`; never age, never move).
 *
 * Ownership rules (the spoof check), for a unicast source MAC M:
 *  - from our own TAP: always ours. A learned entry of a peer moves to us at
 *    once (a host moved onto our LAN); M fixed for another node is refused
 *    (`admitLocal` → FOREIGN: peers would drop it anyway).
 *  - from peer P: accepted when M is unknown (learned for P, if there is
 *    room), owned by P, or a learned entry of another owner that has been
 *    silent for M for at least `moveAfterMs` (then it moves to P: a host
 *    moved from one node to another). Refused (SPOOFED) when M is fixed for
 *    anyone else, or learned by another owner that used it within
 *    `moveAfterMs`.
 *
 * So learned ownership stops a peer from impersonating a MAC that is in
 * use elsewhere; it does not stop one from taking over a MAC that has been
 * quiet for `moveAfterMs` — list such MACs in the BNL (`mac=`).
 *
 * Bounded: at most `maxEntries` learned entries in all and `maxPerOwner`
 * per owner (a peer flooding random sources cannot push out the others'
 * entries; it gets FULL once its share is used). Lookups and refreshes do
 * not allocate; learning a new MAC allocates one entry.
 *
 * MACs are numbers: the 48 bits read big-endian (exact in a double).
 */

/** Owner value of our own side (frames read from the TAP). */
export const MAC_LOCAL = -1;
/** `lookup` result for a MAC nobody owns (or whose entry aged out). */
export const MAC_UNKNOWN = -2;

/** Verdicts of {@link MacTable.admit} / {@link MacTable.admitLocal}. */
export const MacVerdict = {
  ACCEPT: 0,
  /** Owned by someone else (fixed, or learned and recently used there). */
  SPOOFED: 1,
  /** New MAC, no room to learn it (table or the owner's share full). */
  FULL: 2,
  /** From our own side, but fixed for another node in the BNL. */
  FOREIGN: 3,
} as const;
/** A value of {@link MacVerdict}. */
export type MacVerdictValue = (typeof MacVerdict)[keyof typeof MacVerdict];

/** Implementation defaults. */
export const MAC_TABLE_DEFAULTS = {
  /** Learned entries age out after this long without a frame (a bridge's default). */
  ageMs: 300_000,
  /** A learned MAC silent this long at its owner may be taken by another peer (a move). */
  moveAfterMs: 500,
  maxEntries: 8192,
  maxPerOwner: 1024,
} as const;

/** Options of {@link MacTable}. */
export type MacTableOptions = { [K in keyof typeof MAC_TABLE_DEFAULTS]: number };

interface Entry {
  owner: number;
  /** Monotonic ms of the last accepted frame from this MAC (learned entries). */
  seenMs: number;
  fixed: boolean;
}

/** Reads the MAC at `buf[off .. off + 6]` as a number. */
export function readMac(buf: Uint8Array, off: number): number {
  return (buf[off]! * 0x100 + buf[off + 1]!) * 0x1_0000_0000 + ((buf[off + 2]! << 24) >>> 0) + (buf[off + 3]! << 16) + (buf[off + 4]! << 8) + buf[off + 5]!;
}

/** True when the group (multicast/broadcast) bit of the MAC at `buf[off]` is set. */
export function isGroupMac(buf: Uint8Array, off: number): boolean {
  return (buf[off]! & 1) === 1;
}

/** `aa:bb:cc:dd:ee:ff` → number. Throws a TypeError for anything else (callers validate). */
export function parseMac(text: string): number {
  if (typeof text !== 'string' || !/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(text)) throw new TypeError(`not a canonical MAC address: ${String(text)}`);
  return parseInt(text.replace(/:/g, ''), 16);
}

/** number → `aa:bb:cc:dd:ee:ff`. */
export function formatMac(mac: number): string {
  return mac.toString(16).padStart(12, '0').replace(/(..)(?!$)/g, '$1:');
}

/** The switch's MAC table (see the module comment for the rules). */
export class MacTable {
  private readonly map = new Map<number, Entry>();
  /** Learned entries per owner. */
  private readonly learnedBy = new Map<number, number>();
  private learnedCount = 0;
  readonly o: Readonly<MacTableOptions>;
  /** MACs learned (new entries), moves between owners, sources refused for lack of room. */
  learned = 0;
  moved = 0;
  full = 0;

  constructor(options: Partial<MacTableOptions> = {}) {
    this.o = { ...MAC_TABLE_DEFAULTS, ...options };
  }

  /** Owner of `mac` (peer slot or MAC_LOCAL), or MAC_UNKNOWN. */
  lookup(mac: number, nowMs: number): number {
    const e = this.live(mac, nowMs);
    return e === undefined ? MAC_UNKNOWN : e.owner;
  }

  /** A frame with source `mac` arrived from peer `owner` (≥ 0). */
  admit(mac: number, owner: number, nowMs: number): MacVerdictValue {
    const e = this.live(mac, nowMs);
    if (e === undefined) return this.learn(mac, owner, nowMs) ? MacVerdict.ACCEPT : MacVerdict.FULL;
    if (e.owner === owner) {
      e.seenMs = nowMs;
      return MacVerdict.ACCEPT;
    }
    if (e.fixed || nowMs - e.seenMs < this.o.moveAfterMs) return MacVerdict.SPOOFED;
    return this.move(e, owner, nowMs) ? MacVerdict.ACCEPT : MacVerdict.FULL;
  }

  /** A frame with source `mac` was read from our own TAP. ACCEPT (also when there was no room to learn it) or FOREIGN. */
  admitLocal(mac: number, nowMs: number): MacVerdictValue {
    const e = this.live(mac, nowMs);
    if (e === undefined) {
      this.learn(mac, MAC_LOCAL, nowMs); // no room: still ours to send; we just do not remember it
      return MacVerdict.ACCEPT;
    }
    if (e.owner === MAC_LOCAL) {
      e.seenMs = nowMs;
      return MacVerdict.ACCEPT;
    }
    if (e.fixed) return MacVerdict.FOREIGN;
    this.move(e, MAC_LOCAL, nowMs);
    return MacVerdict.ACCEPT;
  }

  /**
   * Replaces the fixed entries of `owner` with `macs` (from the BNL). A
   * learned entry of the same MAC is replaced, and so is another owner's
   * fixed entry: one list never fixes a MAC twice (the BNL's validation), so
   * a MAC fixed elsewhere is one a newer list moved, whose owners are being
   * updated one by one.
   */
  setFixed(owner: number, macs: readonly number[]): void {
    for (const [m, e] of this.map) if (e.fixed && e.owner === owner) this.map.delete(m);
    for (const m of macs) {
      const e = this.map.get(m);
      if (e !== undefined && !e.fixed) this.forget(m, e);
      this.map.set(m, { owner, seenMs: 0, fixed: true });
    }
  }

  /** Forgets every entry of `owner`, learned and fixed (a removed peer). */
  removeOwner(owner: number): void {
    for (const [m, e] of this.map) if (e.owner === owner) {
      if (e.fixed) this.map.delete(m);
      else this.forget(m, e);
    }
  }

  /** Removes learned entries older than `ageMs`. */
  sweep(nowMs: number): void {
    for (const [m, e] of this.map) if (!e.fixed && nowMs - e.seenMs >= this.o.ageMs) this.forget(m, e);
  }

  /** Entries now (stats; allocates): newest first. `seenAgoMs` is null for fixed entries. */
  entries(nowMs: number): Array<{ mac: string; owner: number; fixed: boolean; seenAgoMs: number | null }> {
    const out: Array<{ mac: string; owner: number; fixed: boolean; seenAgoMs: number | null }> = [];
    for (const [m, e] of this.map) {
      if (!e.fixed && nowMs - e.seenMs >= this.o.ageMs) continue;
      out.push({ mac: formatMac(m), owner: e.owner, fixed: e.fixed, seenAgoMs: e.fixed ? null : Math.max(0, Math.round(nowMs - e.seenMs)) });
    }
    return out.sort((a, b) => (a.seenAgoMs ?? -1) - (b.seenAgoMs ?? -1));
  }

  /** Learned entries now held (aged ones not yet swept included). */
  get size(): number {
    return this.learnedCount;
  }

  private live(mac: number, nowMs: number): Entry | undefined {
    const e = this.map.get(mac);
    if (e === undefined || e.fixed || nowMs - e.seenMs < this.o.ageMs) return e;
    this.forget(mac, e);
    return undefined;
  }

  private room(owner: number, nowMs: number): boolean {
    if (this.learnedCount < this.o.maxEntries && (this.learnedBy.get(owner) ?? 0) < this.o.maxPerOwner) return true;
    this.sweep(nowMs); // rare: only when a share is used up
    if (this.learnedCount < this.o.maxEntries && (this.learnedBy.get(owner) ?? 0) < this.o.maxPerOwner) return true;
    this.full++;
    return false;
  }

  private learn(mac: number, owner: number, nowMs: number): boolean {
    if (!this.room(owner, nowMs)) return false;
    this.map.set(mac, { owner, seenMs: nowMs, fixed: false });
    this.learnedBy.set(owner, (this.learnedBy.get(owner) ?? 0) + 1);
    this.learnedCount++;
    this.learned++;
    return true;
  }

  private move(e: Entry, owner: number, nowMs: number): boolean {
    if ((this.learnedBy.get(owner) ?? 0) >= this.o.maxPerOwner) {
      this.sweep(nowMs);
      if ((this.learnedBy.get(owner) ?? 0) >= this.o.maxPerOwner) {
        this.full++;
        return false;
      }
    }
    this.learnedBy.set(e.owner, (this.learnedBy.get(e.owner) ?? 1) - 1);
    this.learnedBy.set(owner, (this.learnedBy.get(owner) ?? 0) + 1);
    e.owner = owner;
    e.seenMs = nowMs;
    this.moved++;
    return true;
  }

  private forget(mac: number, e: Entry): void {
    this.map.delete(mac);
    this.learnedBy.set(e.owner, (this.learnedBy.get(e.owner) ?? 1) - 1);
    this.learnedCount--;
  }
}
