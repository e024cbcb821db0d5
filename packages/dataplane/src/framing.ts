/**
 * Framing: the 20-byte data-plane header, encoded and decoded in place.
 *
 * ```
 *  0               1               2               3
 *  0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7
 * +-------+-------+---------------+-------------------------------+
 * |version| type  |     flags     |        reserved (zero)        |  0
 * +-------+-------+---------------+-------------------------------+
 * |                  receiver index (u32, big endian)             |  4
 * +---------------------------------------------------------------+
 * |                  send epoch (u32, big endian)                 |  8
 * +---------------------------------------------------------------+
 * |                  counter (u64, big endian)                    | 12
 * |                                                               |
 * +---------------------------------------------------------------+
 * |  ciphertext (IP packet or, type 10, Ethernet frame; LZ4 if bit 0)| 20
 * +---------------------------------------------------------------+
 * |                  AEAD tag (16 bytes)                          |
 * +---------------------------------------------------------------+
 * ```
 *
 * The whole header is the AEAD associated data; bytes 8..20 (epoch ‖
 * counter) are the 96-bit nonce. Version lives in the high nibble of byte 0,
 * type in the low nibble. Types: 1 data, 2 keepalive, 8 path-MTU probe,
 * 9 path-MTU reply (src/pmtu.ts), 10 frame (switch mode); 3..7 are the NAT
 * work's (rendezvous, relaying).
 *
 * Counters are JavaScript numbers. The wire carries 64 bits, but this
 * implementation never sends a counter above {@link COUNTER_MAX}
 * (2^53 - 1, exact in a double) and treats a larger one on receive as
 * malformed: the sender rekeys long before (default limit 2^48, see
 * `DEFAULT_LIMITS` in `session.ts`), so no allocation-free hot path ever
 * needs a bigint.
 */

import { HEADER_LEN, NONCE_OFFSET, TAG_LEN } from './backend.js';
import { DropReason, type DropReasonValue } from './drop-reasons.js';

// ---- specification ------------------------------------------------------

/** Protocol version carried in every header (specification). */
export const PROTOCOL_VERSION = 1;

/** Message types (specification): the low nibble of byte 0. */
export const MessageType = {
  /** An IP packet (possibly compressed) follows. */
  DATA: 1,
  /** Empty payload; keeps NAT bindings and proves liveness. */
  KEEPALIVE: 2,
  /** Path-MTU probe (src/pmtu.ts): u32 probe id, then padding to the size probed; sent with DF. */
  PMTU_PROBE: 8,
  /** Answer to a probe: u32 probe id, u32 length of the probe datagram as received. */
  PMTU_REPLY: 9,
  /**
   * A small control message between two members, authenticated and
   * encrypted by their session like data: rendezvous and relay requests
   * (1..{@link RENDEZVOUS_MAX_PAYLOAD} bytes; the daemon's
   * `packages/daemon/src/rendezvous.ts` defines its content). The data
   * plane only seals, opens and hands it on (`onRendezvous`).
   */
  RENDEZVOUS: 3,
  /**
   * Relay request, member → relay, *authenticated* (not encrypted) with
   * their session: the payload is the target's node id (u32 BE) and one
   * complete datagram the member sealed for the target with *their*
   * session (relay.ts in the daemon decides when; the relay cannot read
   * it). The payload travels in clear: the tag is the AEAD's over header
   * and payload as associated data with an empty plaintext (a MAC: GMAC /
   * Poly1305, `macOnly` in backend.ts), nonce and replay window as for any
   * message of the session. Nothing is encrypted twice; a changed byte
   * anywhere (id, inner header, inner ciphertext, tag) fails the relay's
   * check ('auth-failed', `relaying.unauthenticated`).
   *
   * ```
   * +---------------------------------------------------------------+
   * |  header (type 4, member→relay session's index, epoch, counter) |
   * +---------------------------------------------------------------+
   * |            target node id (u32, big endian)                   |
   * +---------------------------------------------------------------+
   * |  the inner datagram: header ‖ ciphertext ‖ tag (member→target) |
   * +---------------------------------------------------------------+
   * |  tag: MAC over all of the above (member→relay session)         |
   * +---------------------------------------------------------------+
   * ```
   */
  RELAY: 4,
  /**
   * Relayed datagram, relay → target, authenticated the same way with the
   * relay↔target session: the same layout and length with the *source's*
   * node id (the relay rewrites the request in place: header, id, tag; the
   * inner datagram is neither read nor copied). The target checks the MAC,
   * then opens the inner datagram with its session with the source, as if
   * it came from it directly, except that it does not move the source's
   * endpoint (receive.ts).
   */
  RELAYED: 5,
  /**
   * An Ethernet frame (possibly compressed): switch mode's data message. A
   * type of its own, so that a node in the other mode drops it as
   * 'bad-type' instead of reading a frame as an IP packet or the reverse.
   */
  FRAME: 10,
} as const;
/** Largest rendezvous payload (specification). */
export const RENDEZVOUS_MAX_PAYLOAD = 512;
/** Bytes of the node id in front of a relay message's inner datagram (specification). */
export const RELAY_ID_LEN = 4;
/** A value of {@link MessageType}. */
export type MessageTypeValue = (typeof MessageType)[keyof typeof MessageType];
/** Names of {@link MessageType} values, for logs and stats. */
export const messageTypeName: Readonly<Record<MessageTypeValue, string>> = {
  1: 'data',
  2: 'keepalive',
  3: 'rendezvous',
  4: 'relay',
  5: 'relayed',
  8: 'pmtu-probe',
  9: 'pmtu-reply',
  10: 'frame',
};

/** Payload bytes of a {@link MessageType.PMTU_REPLY} (specification); a probe carries at least 4 (its id). */
export const PMTU_REPLY_PAYLOAD = 8;
/** Largest probe payload accepted (implementation: a 9000-byte jumbo path). */
export const PMTU_PROBE_MAX_PAYLOAD = 9000;

/** Header flag bits (specification): byte 1. */
export const Flags = {
  /** The payload is one LZ4 block. */
  COMPRESSED: 0x01,
} as const;
/** Names of {@link Flags} bits, for logs. */
export const flagName: Readonly<Record<number, string>> = { 1: 'compressed' };
/** Every flag bit that has a meaning; any other bit set is malformed. */
export const KNOWN_FLAGS = Flags.COMPRESSED;

/** Byte offsets of the header fields (specification). */
export const HeaderOffset = {
  VERSION_TYPE: 0,
  FLAGS: 1,
  RESERVED: 2,
  RECEIVER_INDEX: 4,
  EPOCH: 8,
  COUNTER: 12,
  PAYLOAD: 20,
} as const;

/** Largest counter this implementation sends or accepts: 2^53 - 1. */
export const COUNTER_MAX = Number.MAX_SAFE_INTEGER;
/** Bytes added to every packet on the wire (header + tag). */
export const OVERHEAD = HEADER_LEN + TAG_LEN;

export { HEADER_LEN, TAG_LEN, NONCE_OFFSET };

const TWO_32 = 0x1_0000_0000;
/** Highest value of the counter's upper 32 bits that keeps it ≤ 2^53 - 1. */
const COUNTER_HIGH_MAX = 0x1f_ffff;

/**
 * Writes a header at `buf[off .. off + 20]`. The caller guarantees the
 * room, `0 ≤ counter ≤ COUNTER_MAX` and 32-bit `receiverIndex`/`epoch`.
 * Allocates nothing.
 */
export function encodeHeader(
  buf: Buffer,
  off: number,
  type: MessageTypeValue,
  flags: number,
  receiverIndex: number,
  epoch: number,
  counter: number,
): void {
  buf[off] = (PROTOCOL_VERSION << 4) | type;
  buf[off + 1] = flags;
  buf[off + 2] = 0;
  buf[off + 3] = 0;
  buf.writeUInt32BE(receiverIndex >>> 0, off + 4);
  buf.writeUInt32BE(epoch >>> 0, off + 8);
  buf.writeUInt32BE(Math.floor(counter / TWO_32), off + 12);
  buf.writeUInt32BE(counter >>> 0, off + 16);
}

/**
 * Validates the fixed part of a received datagram `buf[off .. off + len]`
 * without reading any key material: length, version, type, flags, reserved
 * bits, counter range and the payload bound `maxPayload` (the inner MTU).
 * `dataType` is the data message this node accepts: DATA (router mode) or
 * FRAME (switch mode); the other one is 'bad-type'.
 * Returns {@link DropReason.NONE} when the header is well formed, else the
 * reason to drop. Allocates nothing.
 */
export function checkHeader(buf: Buffer, off: number, len: number, maxPayload: number, dataType: number = MessageType.DATA): DropReasonValue {
  if (len < HEADER_LEN) return DropReason.TRUNCATED;
  const vt = buf[off];
  if (vt >>> 4 !== PROTOCOL_VERSION) return DropReason.BAD_VERSION;
  const type = vt & 0x0f;
  if (
    type !== dataType &&
    type !== MessageType.KEEPALIVE &&
    type !== MessageType.RENDEZVOUS &&
    type !== MessageType.RELAY &&
    type !== MessageType.RELAYED &&
    type !== MessageType.PMTU_PROBE &&
    type !== MessageType.PMTU_REPLY
  ) {
    return DropReason.BAD_TYPE;
  }
  const flags = buf[off + 1];
  if ((flags & ~KNOWN_FLAGS) !== 0 || buf[off + 2] !== 0 || buf[off + 3] !== 0) return DropReason.BAD_FLAGS;
  if (len < OVERHEAD) return DropReason.TRUNCATED;
  const payload = len - OVERHEAD;
  if (type === MessageType.KEEPALIVE) {
    if (flags !== 0) return DropReason.BAD_FLAGS;
    if (payload !== 0) return DropReason.MALFORMED;
  } else if (type === MessageType.RENDEZVOUS) {
    if (flags !== 0) return DropReason.BAD_FLAGS;
    if (payload === 0) return DropReason.TRUNCATED;
    if (payload > RENDEZVOUS_MAX_PAYLOAD) return DropReason.OVERSIZE;
  } else if (type === MessageType.RELAY || type === MessageType.RELAYED) {
    if (flags !== 0) return DropReason.BAD_FLAGS;
    if (payload < RELAY_ID_LEN + OVERHEAD) return DropReason.TRUNCATED;
    if (payload > relayMaxPayload(maxPayload)) return DropReason.OVERSIZE;
  } else if (type === MessageType.PMTU_PROBE || type === MessageType.PMTU_REPLY) {
    if (flags !== 0) return DropReason.BAD_FLAGS;
    if (type === MessageType.PMTU_REPLY ? payload !== PMTU_REPLY_PAYLOAD : payload < 4 || payload > PMTU_PROBE_MAX_PAYLOAD) {
      return DropReason.MALFORMED;
    }
  } else {
    if (payload === 0) return DropReason.TRUNCATED;
    if (payload > maxPayload) return DropReason.OVERSIZE;
  }
  if (buf.readUInt32BE(off + 12) > COUNTER_HIGH_MAX) return DropReason.BAD_COUNTER;
  return DropReason.NONE;
}

/** Largest payload of a relay message for inner payloads up to `maxPayload`: id, and an inner datagram carrying data or rendezvous. */
export function relayMaxPayload(maxPayload: number): number {
  return RELAY_ID_LEN + OVERHEAD + Math.max(maxPayload, RENDEZVOUS_MAX_PAYLOAD);
}

/** Message type of a header that passed {@link checkHeader}. */
export function readType(buf: Buffer, off: number): number {
  return buf[off] & 0x0f;
}
/** Flags byte of a header. */
export function readFlags(buf: Buffer, off: number): number {
  return buf[off + 1];
}
/** Receiver index of a header. */
export function readReceiverIndex(buf: Buffer, off: number): number {
  return buf.readUInt32BE(off + 4);
}
/** Send epoch of a header. */
export function readEpoch(buf: Buffer, off: number): number {
  return buf.readUInt32BE(off + 8);
}
/**
 * Counter of a header as a number. Exact only for headers that passed
 * {@link checkHeader} (upper bits bounded so the value is ≤ 2^53 - 1).
 */
export function readCounter(buf: Buffer, off: number): number {
  return buf.readUInt32BE(off + 12) * TWO_32 + buf.readUInt32BE(off + 16);
}

/** The decoded fields of a header (tools and tests; the hot path reads fields directly). */
export interface Header {
  version: number;
  type: number;
  flags: number;
  receiverIndex: number;
  epoch: number;
  /** As a bigint so that tools can show any 64-bit value. */
  counter: bigint;
}

/**
 * Decodes the 20 header bytes at `buf[off]` without validating them (use
 * {@link checkHeader} for that). Throws a RangeError when fewer than 20
 * bytes are available.
 */
export function decodeHeader(buf: Buffer, off = 0): Header {
  if (off < 0 || buf.length - off < HEADER_LEN) throw new RangeError('header needs 20 bytes');
  return {
    version: buf[off] >>> 4,
    type: buf[off] & 0x0f,
    flags: buf[off + 1],
    receiverIndex: buf.readUInt32BE(off + 4),
    epoch: buf.readUInt32BE(off + 8),
    counter: buf.readBigUInt64BE(off + 12),
  };
}
