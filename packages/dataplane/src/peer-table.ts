/**
 * Peers and their sessions: who owns which subnets, where they are, which
 * keys send to them and which receiver indexes accept from them.
 *
 * Per peer, sessions form a short list, newest first. One of them is the
 * *primary*: every packet to the peer is sealed with it. The others only
 * receive. A session is installed either as the primary at once (the
 * default) or *receive-only* (`primary: false`): it accepts the peer's
 * packets but sends nothing until `promote()` makes it the primary — the
 * two-step install that lets a rekey switch keys without losing a packet
 * (each side accepts the new keys before anyone sends with them). A
 * session that stopped being the primary keeps receiving until `retire()`.
 *
 * Session lifetime has one owner, the caller (the daemon's Negotiator,
 * ARCHITECTURE.md "Who owns what"): this table never retires or evicts a
 * session on a timer or to make room. A peer holds at most
 * {@link MAX_SESSIONS_PER_PEER}; installing one more is refused with
 * `ERR_DP_SESSIONS_FULL` (counted in the peer's `sessionsRefused`) and
 * changes nothing, so `retire()` never names a session the owner does not
 * know is gone.
 *
 * Key material lives in the crypto backend behind handles; a session's
 * handles are destroyed when it is retired or its peer removed. Keys are
 * never kept in JavaScript objects here (the caller's buffers are not
 * retained) and never appear in stats.
 */
import { CipherId, type CipherIdValue, type CryptoBackend } from './backend.js';
import { CompressionAlgo } from './compression.js';
import { DROP_REASON_COUNT } from './drop-reasons.js';
import { DataplaneError } from './errors.js';
import { ENDPOINT_KEY_LEN, encodeEndpoint, parsePrefix, type Prefix } from './ip-address.js';
import type { PathMtuSearch } from './pmtu.js';
import { ReplayWindow } from './replay-window.js';
import { PrefixTable } from './routing-table.js';

/** Implementation: the last express lease generation (2^53 - 1: a Float64Array cell counts exactly up to here). */
export const EXPRESS_GEN_LAST = Number.MAX_SAFE_INTEGER;

/**
 * Most sessions one peer holds at a time (implementation): the primary, a
 * receive-only one waiting for promotion and overlapping older ones. A
 * further `install` is refused (`ERR_DP_SESSIONS_FULL`), never made room
 * for: the Negotiator keeps within it (MAX_OVERLAPPING_SESSIONS).
 */
export const MAX_SESSIONS_PER_PEER = 4;
/** Highest peer slot (slots double as UDP endpoint slots: 0..65535). */
export const MAX_PEERS = 65536;

/** Cipher names accepted by `installSession`. */
export type CipherName = 'aes-256-gcm' | 'chacha20-poly1305';
/** Compression settings of a session. */
export interface CompressionParams {
  algo: 'none' | 'lz4';
  /** LZ4: 0 = fast, 1..12 = HC level. Ignored for 'none'. */
  level: number;
}

/** Parameters of {@link PeerTable.install}, as produced by the negotiation. */
export interface SessionParams {
  /** Our receiver index for this session: random u32, unique among live sessions. */
  localIndex: number;
  /** The peer's receiver index, written into every packet we send. */
  remoteIndex: number;
  cipher: CipherName;
  /** 32 bytes: seals our packets. Copied into the backend; wipe your copy. */
  txKey: Buffer;
  /** 32 bytes: opens the peer's packets. Copied into the backend; wipe your copy. */
  rxKey: Buffer;
  /** Our send epoch (persisted and incremented by the caller before use). */
  txEpoch: number;
  /** Packets from epochs below this are dropped as 'old-epoch'. */
  rxEpochFloor: number;
  compression: CompressionParams;
}

/** Per-peer counter slots (Float64Array indexes). */
export const PeerCounter = {
  TX_PACKETS: 0,
  TX_BYTES: 1,
  RX_PACKETS: 2,
  RX_BYTES: 3,
  /** Wall-clock ms of the last authenticated datagram (0 = never). */
  LAST_RX_MS: 4,
  AUTH_FAILURES: 5,
  /** Keepalives sent (keepalive.ts; not in TX_PACKETS). */
  KEEPALIVES_TX: 6,
  /** Authenticated keepalives received (not in RX_PACKETS). */
  KEEPALIVES_RX: 7,
  /** Wall-clock ms of the last keepalive sent / received (0 = never). */
  LAST_KEEPALIVE_TX_MS: 8,
  LAST_KEEPALIVE_RX_MS: 9,
  /** Our datagrams to the peer that went through a relay (data, keepalives), and their inner bytes (data only). */
  RELAYED_TX_PACKETS: 10,
  RELAYED_TX_BYTES: 11,
  /** The peer's authenticated datagrams that came through a relay, and their inner bytes (data only; also in RX_PACKETS / RX_BYTES). */
  RELAYED_RX_PACKETS: 12,
  RELAYED_RX_BYTES: 13,
  /** Wall-clock ms of the last authenticated datagram from the peer that came through a relay (0 = never). LAST_RX_MS counts direct ones only. */
  LAST_RELAYED_RX_MS: 14,
  /** Relay role: the peer's relay requests we forwarded, and their bytes (inner datagrams, as carried). */
  RELAY_FROM_PACKETS: 15,
  RELAY_FROM_BYTES: 16,
  /** Relay role: datagrams we forwarded to the peer, and their bytes. */
  RELAY_TO_PACKETS: 17,
  RELAY_TO_BYTES: 18,
  /** Direct probes sent while relayed (`sendKeepalive(peer, true)`): not in KEEPALIVES_TX, so that they do not hold back the keepalives that go via the relay. */
  PROBES_TX: 19,
} as const;
/** Slots 0..5 are also written by C (native/src/express.c); the others only by JavaScript. */
const PEER_COUNTER_COUNT = 20;

/** One set of keys with a peer. Hot-path state; mutate only through the pipelines. */
export class Session {
  readonly peer: Peer;
  readonly localIndex: number;
  readonly remoteIndex: number;
  readonly cipher: CipherName;
  /** Send epoch; only ever raised (`Dataplane.setTxEpoch`), the counter restarts at 0 with it. */
  txEpoch: number;
  readonly rxEpochFloor: number;
  readonly compressAlgo: number;
  readonly compressLevel: number;
  readonly installedAtMs: number;
  txHandle: number;
  rxHandle: number;
  /** Next counter to send. */
  txCounter = 0;
  /** Newest authenticated receive epoch, -1 before the first packet. */
  rxEpoch = -1;
  readonly window = new ReplayWindow();
  /** The soft-limit rekey request was made for this session. */
  softRekeyAsked = false;
  retired = false;
  /** Has been the primary at some time (false while a receive-only session waits for `promote`). */
  promoted = false;
  /** The express lease generation this session was last leased at (-1: never). */
  expressGen = -1;
  /** The express send generation this session last leased a counter block at (-1: never). */
  expressTxGen = -1;

  constructor(peer: Peer, p: SessionParams, txHandle: number, rxHandle: number, nowMs: number) {
    this.peer = peer;
    this.localIndex = p.localIndex;
    this.remoteIndex = p.remoteIndex;
    this.cipher = p.cipher;
    this.txEpoch = p.txEpoch;
    this.rxEpochFloor = p.rxEpochFloor;
    this.compressAlgo = p.compression.algo === 'lz4' ? CompressionAlgo.LZ4 : CompressionAlgo.NONE;
    this.compressLevel = p.compression.level;
    this.txHandle = txHandle;
    this.rxHandle = rxHandle;
    this.installedAtMs = nowMs;
  }
}

/** A peer: identity, subnets, endpoint, sessions, counters. */
export class Peer {
  readonly id: string;
  name: string;
  /** Index into the peer array; also the UDP backend's endpoint slot. */
  readonly slot: number;
  subnets: Prefix[] = [];
  /** Built on first use by {@link subnetSet}; dropped when the subnets change. */
  private spoofSet: PrefixTable | null = null;
  /**
   * The peer's subnets as a table, for the spoof check on receive. Built on
   * the first packet received from the peer, so that the records of a large
   * list that never send (most of them) cost no table (issue 19).
   */
  get subnetSet(): PrefixTable {
    if (this.spoofSet === null) {
      const t = new PrefixTable();
      for (const p of this.subnets) t.insert(p, 0);
      this.spoofSet = t;
    }
    return this.spoofSet;
  }
  /** Replaces the subnets (the spoof table is rebuilt on next use). Only `PeerTable.setSubnets` calls it. */
  replaceSubnets(prefixes: Prefix[]): void {
    this.subnets = prefixes;
    this.spoofSet = null;
  }
  /** Endpoint in `DatagramBatch.sources` layout, valid when `hasEndpoint`. */
  readonly endpointKey = pooledBytes(ENDPOINT_KEY_LEN);
  hasEndpoint = false;
  endpointHost = '';
  endpointPort = 0;
  /** Primary (sending) session or null. */
  primary: Session | null = null;
  /** Live sessions, newest first (includes the primary). */
  readonly sessions: Session[] = [];
  readonly counters = pooledF64(PEER_COUNTER_COUNT);
  /**
   * Drop counters by reason, made at the peer's first drop ({@link countDrop}):
   * the records of a large list never drop anything (issue 19).
   */
  drops: Float64Array | null = null;
  /** Counts `n` drops for `reason`. */
  countDrop(reason: number, n = 1): void {
    (this.drops ??= pooledF64(DROP_REASON_COUNT))[reason]! += n;
  }
  /** Installs refused because the peer already held {@link MAX_SESSIONS_PER_PEER} sessions. */
  sessionsRefused = 0;
  // rate-limit state of the events (monotonic ms; -Infinity = never)
  lastNoSessionEventMs = -Infinity;
  lastRekeyEventMs = -Infinity;
  lastAuthEventMs = -Infinity;
  authWindowStartMs = -Infinity;
  authFailuresInWindow = 0;
  // keepalive state (keepalive.ts): sent datagrams (tx packets + keepalives) seen at
  // the last tick (-1 = not tracked), monotonic ms it last changed; the newest
  // wall-clock "heard" value seen (-1 = none yet) and the scheduler's awake time when
  // it was seen; awake time of the last 'no-reply' rekey request (-Infinity = none)
  kaSeen = -1;
  kaSinceMs = 0;
  kaHeardWallMs = -1;
  kaHeardAwakeMs = 0;
  kaNoReplyAskedAwakeMs = -Infinity;
  /** The node id as a number when the id is a decimal u32 (relay messages carry it), else -1. */
  readonly num: number;
  /**
   * The relay our datagrams to this peer go through (`Dataplane.setPath`,
   * decided by the daemon's path selector), or null: directly to its
   * endpoint. No express lease is granted for a relayed peer.
   */
  relay: Peer | null = null;
  // relay role: the token buckets of this member's relay requests (packets, bytes) and their last refill (monotonic ms)
  relayPktTokens = -1;
  relayByteTokens = -1;
  relayRefillMs = 0;
  /**
   * Largest inner packet the path to this peer carries (pmtu.ts owns it,
   * the pipelines read it; 65535 = no estimate: the configured MTU applies).
   */
  innerMtu = 65535;
  /** The path-MTU search of this peer (pmtu.ts), null until it has a session and an endpoint. */
  pmtu: PathMtuSearch | null = null;
  /** Endpoint the search ran for (`host|port`), to restart it when the peer moves. */
  pmtuEndpoint = '';

  constructor(id: string, name: string, slot: number) {
    this.id = id;
    this.name = name;
    this.slot = slot;
    this.num = /^[0-9]{1,10}$/.test(id) && Number(id) <= 0xffff_ffff ? Number(id) : -1;
  }
}

/**
 * Zeroed bytes carved from Node's shared Buffer pool: a peer's small arrays
 * get no ArrayBuffer and backing store of their own (three fewer per peer,
 * ~600 bytes with their wrappers; 10 000 records of a large list never send,
 * issue 19). The views keep their pool chunk alive; C reads them through
 * `napi_get_typedarray_info`, which accounts for the offset.
 */
function pooledBytes(n: number): Buffer {
  return Buffer.allocUnsafe(n).fill(0);
}

/** A zeroed Float64Array of `n` on the shared pool (aligned to 8 bytes). */
function pooledF64(n: number): Float64Array {
  const b = Buffer.allocUnsafe(n * 8 + 8);
  const skip = (8 - (b.byteOffset % 8)) % 8;
  return new Float64Array(b.buffer, b.byteOffset + skip, n).fill(0);
}

/** Where `PeerTable.add` validates an endpoint before the peer exists (one buffer, not one per peer). */
const endpointScratch = Buffer.alloc(ENDPOINT_KEY_LEN);

/** Parses and validates a subnet list (throws `ERR_DP_CONFIG`). */
export function parseSubnets(subnets: readonly string[]): Prefix[] {
  if (!Array.isArray(subnets)) throw new DataplaneError('ERR_DP_CONFIG', 'subnets must be an array of CIDR strings');
  return subnets.map((s) => parsePrefix(s));
}

function cipherId(c: CipherName): CipherIdValue {
  if (c === 'aes-256-gcm') return CipherId.AES_256_GCM;
  if (c === 'chacha20-poly1305') return CipherId.CHACHA20_POLY1305;
  throw new DataplaneError('ERR_DP_CONFIG', `cipher must be 'aes-256-gcm' or 'chacha20-poly1305', got ${JSON.stringify(c)}`);
}

function isU32(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= 0xffff_ffff;
}

/**
 * All peers and sessions of one data plane plus the routing table mapping
 * subnets to peer slots. Control-path methods allocate and throw
 * `DataplaneError`; lookups used by the pipelines do not.
 */
export class PeerTable {
  /** Peer by slot (undefined = free). */
  readonly bySlot: Array<Peer | undefined> = [];
  readonly byId = new Map<string, Peer>();
  /** Live session by our receiver index. */
  readonly byIndex = new Map<number, Session>();
  /** Peer by numeric node id (`Peer.num`), for relay messages. */
  readonly byNum = new Map<number, Peer>();
  /** Destination prefix → peer slot. */
  readonly routes = new PrefixTable();
  /**
   * The peers that have a primary session: the only ones the keepalive and
   * path-MTU timers look at, so that their ticks cost nothing for the
   * records of a large list that never get keys (issue 19).
   */
  readonly withPrimary = new Set<Peer>();
  /** The peers whose data goes through a relay (`Peer.relay` set): removing a relay looks only at these, not at every peer. */
  readonly relayed = new Set<Peer>();
  private readonly freeSlots: number[] = [];
  /** Bumped whenever a session is retired, so a pipeline can tell that a handle it collected died. */
  generation = 0;
  /**
   * The express receive path's lease generation (shared with C, see
   * native/src/express.c): bumped by {@link voidExpress} on every change
   * that could make a lease wrong, which voids every lease at once.
   */
  readonly expressGen = new Float64Array(1);
  /** The same for the express send path (send.ts step 12); also bumped alone by {@link voidExpressTx}. */
  readonly expressTxGen = new Float64Array(1);
  /**
   * Called when a generation reaches {@link EXPRESS_GEN_LAST}: the data
   * plane turns the express paths off for good, so a generation never
   * wraps or stalls on a value a lease still holds.
   */
  onExpressGenExhausted: () => void = () => {};

  /** Voids every express lease, both directions (C falls back to the JavaScript pipelines until re-leased). */
  voidExpress(): void {
    this.bump(this.expressGen);
    this.bump(this.expressTxGen);
  }

  /** Voids every express send lease. */
  voidExpressTx(): void {
    this.bump(this.expressTxGen);
  }

  private bump(cell: Float64Array): void {
    // A float64 holds every integer exactly up to 2^53 (104 days at one bump
    // per nanosecond): never reached in practice, and if it is, express stops
    // instead of wrapping.
    if (cell[0]! >= EXPRESS_GEN_LAST) {
      this.onExpressGenExhausted();
      return;
    }
    cell[0] = cell[0]! + 1;
  }

  constructor(
    private readonly crypto: CryptoBackend,
    private readonly onEndpointSet: (slot: number, host: string, port: number) => void,
    private readonly onEndpointCleared: (slot: number) => void,
  ) {}

  /** Adds a peer; throws `ERR_DP_PEER` when the id exists, `ERR_DP_CONFIG` on bad input. */
  add(id: string, name: string, subnets: readonly string[], endpoint?: { host: string; port: number }): Peer {
    if (typeof id !== 'string' || id === '') throw new DataplaneError('ERR_DP_CONFIG', 'peer id must be a non-empty string');
    if (this.byId.has(id)) throw new DataplaneError('ERR_DP_PEER', `peer ${id} already exists`);
    const prefixes = parseSubnets(subnets);
    if (endpoint !== undefined) encodeEndpoint(endpoint.host, endpoint.port, endpointScratch); // validate first
    const slot = this.freeSlots.length > 0 ? (this.freeSlots.pop() as number) : this.bySlot.length;
    if (slot >= MAX_PEERS) throw new DataplaneError('ERR_DP_CONFIG', `at most ${MAX_PEERS} peers`);
    const peer = new Peer(id, typeof name === 'string' && name !== '' ? name : id, slot);
    this.bySlot[slot] = peer;
    this.byId.set(id, peer);
    if (peer.num >= 0) this.byNum.set(peer.num, peer);
    try {
      this.setSubnets(peer, prefixes);
    } catch (err) {
      this.byId.delete(id);
      if (peer.num >= 0) this.byNum.delete(peer.num);
      this.bySlot[slot] = undefined;
      this.freeSlots.push(slot);
      throw err;
    }
    if (endpoint !== undefined) this.setEndpoint(peer, endpoint.host, endpoint.port);
    return peer;
  }

  /** The peer with `id`, or throws `ERR_DP_PEER`. */
  get(id: string): Peer {
    const p = this.byId.get(id);
    if (p === undefined) throw new DataplaneError('ERR_DP_PEER', `no peer ${String(id)}`);
    return p;
  }

  /** Replaces a peer's subnets (routes and spoof set). */
  setSubnets(peer: Peer, prefixes: Prefix[]): void {
    // Refuse before changing anything: two peers claiming one exact prefix is a configuration error.
    for (const p of prefixes) {
      const owner = this.routes.get(p);
      if (owner >= 0 && owner !== peer.slot) throw new DataplaneError('ERR_DP_CONFIG', `subnet ${p.text} already belongs to peer ${this.bySlot[owner]?.id ?? owner}`);
    }
    this.voidExpress();
    // Only this peer's own prefixes are touched: O(its subnets), not O(all routes).
    for (const p of peer.subnets) this.routes.remove(p);
    for (const p of prefixes) this.routes.insert(p, peer.slot);
    peer.replaceSubnets(prefixes);
  }

  /** Sets the UDP endpoint (numeric host). Throws `ERR_DP_CONFIG`. */
  setEndpoint(peer: Peer, host: string, port: number): void {
    encodeEndpoint(host, port, peer.endpointKey, 0);
    this.voidExpress();
    this.onEndpointSet(peer.slot, host, port);
    peer.hasEndpoint = true;
    peer.endpointHost = host;
    peer.endpointPort = port;
  }

  /** Sets the relay `peer`'s data goes through (null: directly); the caller voids express leases. */
  setRelay(peer: Peer, via: Peer | null): void {
    peer.relay = via;
    if (via === null) this.relayed.delete(peer);
    else this.relayed.add(peer);
  }

  /** Removes a peer, its routes, sessions and keys. Throws `ERR_DP_PEER` if unknown. */
  remove(id: string): void {
    const peer = this.get(id);
    this.voidExpress();
    while (peer.sessions.length > 0) this.retire(peer.sessions[peer.sessions.length - 1]);
    this.withPrimary.delete(peer);
    for (const p of peer.subnets) this.routes.remove(p);
    this.onEndpointCleared(peer.slot);
    this.byId.delete(id);
    if (peer.num >= 0 && this.byNum.get(peer.num) === peer) this.byNum.delete(peer.num);
    // no peer keeps a removed relay: back to direct until the owner chooses again
    this.setRelay(peer, null);
    for (const p of this.relayed) if (p.relay === peer) this.setRelay(p, null);
    this.bySlot[peer.slot] = undefined;
    this.freeSlots.push(peer.slot);
  }

  /**
   * Installs a session. With `primary` (the default) it becomes the peer's
   * primary at once and the previous primary keeps receiving until it is
   * retired; without, it only receives until {@link promote}. Validates
   * every field (`ERR_DP_CONFIG`, `ERR_DP_KEY`) and refuses a session beyond
   * {@link MAX_SESSIONS_PER_PEER} (`ERR_DP_SESSIONS_FULL`, counted); on
   * error nothing else changes.
   */
  install(peer: Peer, p: SessionParams, nowMs: number, primary = true): Session {
    if (p === null || typeof p !== 'object') throw new DataplaneError('ERR_DP_CONFIG', 'session parameters must be an object');
    if (typeof primary !== 'boolean') throw new DataplaneError('ERR_DP_CONFIG', 'primary must be a boolean');
    if (!isU32(p.localIndex)) throw new DataplaneError('ERR_DP_CONFIG', 'localIndex must be a u32');
    if (!isU32(p.remoteIndex)) throw new DataplaneError('ERR_DP_CONFIG', 'remoteIndex must be a u32');
    if (!isU32(p.txEpoch)) throw new DataplaneError('ERR_DP_CONFIG', 'txEpoch must be a u32');
    if (!isU32(p.rxEpochFloor)) throw new DataplaneError('ERR_DP_CONFIG', 'rxEpochFloor must be a u32');
    if (this.byIndex.has(p.localIndex)) {
      throw new DataplaneError('ERR_DP_CONFIG', `localIndex ${p.localIndex} is already used by a live session`);
    }
    const cid = cipherId(p.cipher);
    const c = p.compression;
    if (c === null || typeof c !== 'object' || (c.algo !== 'none' && c.algo !== 'lz4')) {
      throw new DataplaneError('ERR_DP_CONFIG', "compression.algo must be 'none' or 'lz4'");
    }
    if (c.algo === 'lz4' && !(Number.isInteger(c.level) && c.level >= 0 && c.level <= 12)) {
      throw new DataplaneError('ERR_DP_CONFIG', 'compression.level must be 0..12 for lz4');
    }
    if (!Buffer.isBuffer(p.txKey) || p.txKey.length !== 32 || !Buffer.isBuffer(p.rxKey) || p.rxKey.length !== 32) {
      throw new DataplaneError('ERR_DP_KEY', 'txKey and rxKey must be 32-byte Buffers');
    }
    if (peer.sessions.length >= MAX_SESSIONS_PER_PEER) {
      peer.sessionsRefused++;
      throw new DataplaneError('ERR_DP_SESSIONS_FULL', `peer ${peer.id} already holds ${MAX_SESSIONS_PER_PEER} sessions: retire one first`);
    }
    let tx = 0;
    let rx = 0;
    try {
      tx = this.crypto.createKey(cid, p.txKey);
      rx = this.crypto.createKey(cid, p.rxKey);
    } catch (err) {
      if (tx !== 0) this.crypto.destroyKey(tx);
      throw new DataplaneError('ERR_DP_KEY', 'the crypto backend refused the key', { cause: err });
    }
    const s = new Session(peer, p, tx, rx, nowMs);
    peer.sessions.unshift(s);
    this.byIndex.set(s.localIndex, s);
    if (primary) this.makePrimary(s);
    return s;
  }

  /**
   * Makes session `s` (installed, not retired) the peer's primary: the
   * pipelines seal with it from the next packet on, and the previous
   * primary keeps receiving until it is retired. Idempotent.
   */
  promote(s: Session): void {
    if (s.retired) throw new DataplaneError('ERR_DP_PEER', `session ${s.localIndex} is retired`);
    this.makePrimary(s);
  }

  private makePrimary(s: Session): void {
    const peer = s.peer;
    if (peer.primary === s) return;
    this.voidExpress();
    peer.primary = s;
    this.withPrimary.add(peer);
    s.promoted = true;
  }

  /**
   * Retires a session: it neither sends nor receives any more and its keys
   * are destroyed. When it was the primary, the next newest becomes primary
   * (or none). Idempotent.
   */
  retire(s: Session): void {
    if (s.retired) return;
    s.retired = true;
    this.generation++;
    this.voidExpress();
    const peer = s.peer;
    const i = peer.sessions.indexOf(s);
    if (i >= 0) peer.sessions.splice(i, 1);
    if (peer.primary === s) {
      // Fall back to the newest session that has sent before, never to a receive-only one
      // (the peer may not hold its keys yet).
      peer.primary = null;
      for (const x of peer.sessions) {
        if (x.promoted) {
          peer.primary = x;
          break;
        }
      }
      if (peer.primary === null) {
        this.withPrimary.delete(peer);
        peer.kaSeen = -1; // what the keepalive tick did for a peer without a primary
      }
    }
    if (this.byIndex.get(s.localIndex) === s) this.byIndex.delete(s.localIndex);
    this.crypto.destroyKey(s.txHandle);
    this.crypto.destroyKey(s.rxHandle);
    s.txHandle = 0;
    s.rxHandle = 0;
  }

  /** Retires every session of every peer (close). */
  retireAll(): void {
    for (const peer of this.byId.values()) {
      while (peer.sessions.length > 0) this.retire(peer.sessions[0]);
    }
  }
}
