/**
 * Gossip messages (protocol logic only; the transport is the daemon's TLS
 * control channel, which frames and delivers them).
 *
 * Message layout (big endian):
 *
 *   +---------+------+---------------------------------------------+
 *   | ver (1) | type | body                                        |
 *   +---------+------+---------------------------------------------+
 *   PULL            1  serial u64 ‖ hash[32]   (hash all zero: "I have none")
 *   PULL_NOT_NEWER  2  serial u64 ‖ hash[32]   (the answerer's own list)
 *   PULL_LIST       3  length u32 ‖ BNL file bytes
 *   PUSH            4  length u32 ‖ BNL file bytes
 *   PUSH_REPLY      5  status u8 (0 accepted, 1 already had, 2 rejected)
 *                      ‖ code length u8 ‖ code ASCII
 *
 * Incoming updates follow one order: parse, validate, deduplicate (a
 * seen-set of payload hashes), apply (the store decides), forward (only a
 * list this node just accepted is forwarded, so a push never re-floods).
 */
import { BnlError } from './errors.js';
import { BNL_MAX_BYTES } from './model.js';
import { compareSerialHash } from './order.js';
import { peekPayloadHash } from './parse.js';
import type { BnlStore, OfferResult } from './store.js';

/** Specification: gossip message format version. */
export const GOSSIP_VERSION = 1;
/** Specification: message type numbers. */
export const GossipType = { pull: 1, pullNotNewer: 2, pullList: 3, push: 4, pushReply: 5 } as const;
/** Names of {@link GossipType} values, for logs. */
export const GossipTypeName: Record<number, string> = { 1: 'pull', 2: 'pull-not-newer', 3: 'pull-list', 4: 'push', 5: 'push-reply' };
/** Specification: largest gossip message (a maximal BNL plus its 6-byte head). The transport must refuse longer frames before reading them. */
export const GOSSIP_MAX_MESSAGE = BNL_MAX_BYTES + 6;
const ZERO_HASH = '0'.repeat(64);

/** A decoded gossip message. `hash: null` means "no list". */
export type GossipMessage =
  | { type: 'pull'; serial: number; hash: string | null }
  | { type: 'pull-not-newer'; serial: number; hash: string | null }
  | { type: 'pull-list'; bnl: Uint8Array }
  | { type: 'push'; bnl: Uint8Array }
  | { type: 'push-reply'; status: 'accepted' | 'duplicate' | 'rejected'; code?: string };

const STATUS = ['accepted', 'duplicate', 'rejected'] as const;

/** Encodes a message; the result is a fresh buffer owned by the caller. */
export function encodeGossip(msg: GossipMessage): Uint8Array {
  switch (msg.type) {
    case 'pull':
    case 'pull-not-newer': {
      const b = Buffer.alloc(2 + 8 + 32);
      b[0] = GOSSIP_VERSION;
      b[1] = msg.type === 'pull' ? GossipType.pull : GossipType.pullNotNewer;
      b.writeBigUInt64BE(BigInt(msg.serial), 2);
      Buffer.from(msg.hash ?? ZERO_HASH, 'hex').copy(b, 10);
      return b;
    }
    case 'pull-list':
    case 'push': {
      if (msg.bnl.length > BNL_MAX_BYTES) throw new BnlError('ERR_BNL_TOO_LARGE', `list of ${msg.bnl.length} bytes exceeds ${BNL_MAX_BYTES}`);
      const b = Buffer.alloc(6 + msg.bnl.length);
      b[0] = GOSSIP_VERSION;
      b[1] = msg.type === 'push' ? GossipType.push : GossipType.pullList;
      b.writeUInt32BE(msg.bnl.length, 2);
      b.set(msg.bnl, 6);
      return b;
    }
    case 'push-reply': {
      const code = Buffer.from(msg.code ?? '', 'ascii');
      if (code.length > 255) throw new BnlError('ERR_BNL_GOSSIP', 'reply code too long');
      const b = Buffer.alloc(4 + code.length);
      b[0] = GOSSIP_VERSION;
      b[1] = GossipType.pushReply;
      b[2] = STATUS.indexOf(msg.status);
      b[3] = code.length;
      code.copy(b, 4);
      return b;
    }
  }
}

/**
 * Decodes one message. Throws `ERR_BNL_TOO_LARGE` when the message or its
 * declared list length exceeds the cap (checked before copying anything),
 * `ERR_BNL_GOSSIP` for anything malformed. List bytes are copied: the
 * result does not borrow `bytes`.
 */
export function decodeGossip(bytes: Uint8Array): GossipMessage {
  if (bytes.length > GOSSIP_MAX_MESSAGE) throw new BnlError('ERR_BNL_TOO_LARGE', `gossip message of ${bytes.length} bytes`);
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (b.length < 2) throw new BnlError('ERR_BNL_GOSSIP', 'gossip message too short');
  if (b[0] !== GOSSIP_VERSION) throw new BnlError('ERR_BNL_GOSSIP', `gossip version ${b[0]} not supported`);
  const type = b[1];
  if (type === GossipType.pull || type === GossipType.pullNotNewer) {
    if (b.length !== 42) throw new BnlError('ERR_BNL_GOSSIP', 'pull message must be 42 bytes');
    const serial = b.readBigUInt64BE(2);
    if (serial > BigInt(Number.MAX_SAFE_INTEGER)) throw new BnlError('ERR_BNL_GOSSIP', 'serial out of range');
    const hex = b.subarray(10, 42).toString('hex');
    const hash = hex === ZERO_HASH ? null : hex;
    return { type: type === GossipType.pull ? 'pull' : 'pull-not-newer', serial: Number(serial), hash };
  }
  if (type === GossipType.pullList || type === GossipType.push) {
    if (b.length < 6) throw new BnlError('ERR_BNL_GOSSIP', 'list message too short');
    const len = b.readUInt32BE(2);
    if (len > BNL_MAX_BYTES) throw new BnlError('ERR_BNL_TOO_LARGE', `declared list length ${len} exceeds ${BNL_MAX_BYTES}`);
    if (b.length !== 6 + len) throw new BnlError('ERR_BNL_GOSSIP', 'list message length does not match its content');
    const bnl = Buffer.from(b.subarray(6));
    return type === GossipType.push ? { type: 'push', bnl } : { type: 'pull-list', bnl };
  }
  if (type === GossipType.pushReply) {
    if (b.length < 4 || b.length !== 4 + b[3] || b[2] > 2) throw new BnlError('ERR_BNL_GOSSIP', 'malformed push reply');
    const code = b.subarray(4).toString('ascii');
    return { type: 'push-reply', status: STATUS[b[2]], ...(code ? { code } : {}) };
  }
  throw new BnlError('ERR_BNL_GOSSIP', `unknown gossip message type ${type}`);
}

/**
 * Bounded set of payload hashes already processed (insertion order,
 * oldest evicted). Only hashes whose outcome is final are added (accepted,
 * stale, same, lost conflict) — never a hash seen with a bad signature,
 * since a forged copy shares the payload hash of the genuine list.
 */
export class SeenSet {
  readonly #max: number;
  readonly #set = new Set<string>();
  /** `capacity`: most hashes remembered (default 1024). */
  constructor(capacity = 1024) {
    this.#max = capacity;
  }
  /** True if `hash` was added and not yet evicted. */
  has(hash: string): boolean {
    return this.#set.has(hash);
  }
  /** Remembers `hash`, evicting the oldest beyond capacity. */
  add(hash: string): void {
    if (this.#set.has(hash)) return;
    this.#set.add(hash);
    if (this.#set.size > this.#max) {
      const oldest = this.#set.values().next().value;
      if (oldest !== undefined) this.#set.delete(oldest);
    }
  }
  /** Number of hashes remembered. */
  get size(): number {
    return this.#set.size;
  }
}

/** The pull request this node sends: its serial and hash. */
export function makePullRequest(store: BnlStore): GossipMessage {
  const cur = store.current;
  return { type: 'pull', serial: cur?.bnl.serial ?? 0, hash: cur?.hash ?? null };
}

/**
 * Answers a pull: our list if it is newer than the asker's (or wins an
 * equal-serial conflict, or the asker has none), else "not newer" with our
 * serial and hash (so the asker can see that it should push to us).
 */
export function handlePull(store: BnlStore, req: Extract<GossipMessage, { type: 'pull' }>): GossipMessage {
  const cur = store.current;
  if (!cur) return { type: 'pull-not-newer', serial: 0, hash: null };
  if (req.hash === null) return { type: 'pull-list', bnl: cur.bytes };
  const order = compareSerialHash(cur.bnl.serial, cur.hash, req.serial, req.hash);
  if (order === 'newer' || order === 'conflict-wins') return { type: 'pull-list', bnl: cur.bytes };
  return { type: 'pull-not-newer', serial: cur.bnl.serial, hash: cur.hash };
}

/** What the asker does with a pull reply: the offer result if a list came, and whether to push ours to that peer (it is behind). */
export interface PullReplyOutcome {
  readonly result?: OfferResult;
  readonly pushBack: boolean;
  /** True if the list was just accepted: forward it to a few peers (push gossip), as for a push. */
  readonly forward: boolean;
}

/** Processes the reply to our pull (dedupe, apply). */
export async function handlePullReply(store: BnlStore, seen: SeenSet, reply: GossipMessage): Promise<PullReplyOutcome> {
  if (reply.type === 'pull-not-newer') {
    const cur = store.current;
    if (!cur) return { pushBack: false, forward: false };
    if (reply.hash === null) return { pushBack: true, forward: false };
    const order = compareSerialHash(cur.bnl.serial, cur.hash, reply.serial, reply.hash);
    return { pushBack: order === 'newer' || order === 'conflict-wins', forward: false };
  }
  if (reply.type !== 'pull-list') throw new BnlError('ERR_BNL_GOSSIP', `unexpected ${reply.type} in reply to a pull`);
  const { result, duplicate } = await offerDeduped(store, seen, reply.bnl);
  return { ...(result ? { result } : {}), pushBack: false, forward: !duplicate && result?.accepted === true };
}

/** Outcome of a push: the reply to send back and whether to forward the list. */
export interface PushOutcome {
  readonly reply: GossipMessage;
  readonly forward: boolean;
  readonly result?: OfferResult;
}

/** Handles a pushed list: dedupe by hash, offer to the store, decide forwarding. */
export async function handlePush(store: BnlStore, seen: SeenSet, msg: Extract<GossipMessage, { type: 'push' }>): Promise<PushOutcome> {
  const { result, duplicate } = await offerDeduped(store, seen, msg.bnl);
  if (duplicate || !result) return { reply: { type: 'push-reply', status: 'duplicate' }, forward: false };
  if (result.accepted) return { reply: { type: 'push-reply', status: 'accepted' }, forward: true, result };
  const status = result.code === 'ERR_BNL_DUPLICATE' ? 'duplicate' : 'rejected';
  return { reply: { type: 'push-reply', status, code: result.code }, forward: false, result };
}

async function offerDeduped(store: BnlStore, seen: SeenSet, bytes: Uint8Array): Promise<{ result?: OfferResult; duplicate: boolean }> {
  if (bytes.length > BNL_MAX_BYTES) {
    return { result: { accepted: false, code: 'ERR_BNL_TOO_LARGE', reason: `${bytes.length} bytes`, settled: false }, duplicate: false };
  }
  const h = peekPayloadHash(bytes);
  if (h !== null && seen.has(h)) return { duplicate: true };
  const result = await store.offer(bytes);
  const settled = result.accepted || result.settled;
  if (settled && h !== null) seen.add(h);
  return { result, duplicate: false };
}

/**
 * Picks `k` distinct peers uniformly at random (partial Fisher–Yates on a
 * copy; the input is not modified). Fewer than `k` peers: all of them, shuffled.
 * `rng` returns a float in [0, 1) (default `Math.random`).
 */
export function choosePullTargets<T>(peers: readonly T[], k: number, rng: () => number = Math.random): T[] {
  const a = [...peers];
  const n = Math.min(Math.max(0, Math.floor(k)), a.length);
  for (let i = 0; i < n; i++) {
    const j = i + Math.floor(rng() * (a.length - i));
    const t = a[i];
    a[i] = a[j];
    a[j] = t;
  }
  return a.slice(0, n);
}

/**
 * A jittered interval: uniform in [base·(1−jitter), base·(1+jitter)],
 * rounded to whole milliseconds, so nodes started together drift apart and
 * do not pull in lock step. `jitter` in [0, 1), default 0.25.
 */
export function jitteredInterval(baseMs: number, jitter = 0.25, rng: () => number = Math.random): number {
  const j = Math.min(Math.max(jitter, 0), 0.99);
  return Math.round(baseMs * (1 - j + 2 * j * rng()));
}
