/**
 * Why a packet was dropped. Every drop increments exactly one counter, in
 * the global table and, when the packet can be attributed to a peer, in
 * that peer's table too. Dropping is never an exception.
 *
 * Values index `Float64Array` counter tables, so they are dense from 0.
 */
export const DropReason = {
  /** Not a drop: the value returned when a check passes. */
  NONE: 0,
  // ---- receive: before any key is used ----
  /** Datagram shorter than header + tag (or a data message with no payload). */
  TRUNCATED: 1,
  /** Header version is not 1. */
  BAD_VERSION: 2,
  /** Header type is neither data nor keepalive. */
  BAD_TYPE: 3,
  /** Unknown flag bits, non-zero reserved bytes, or a compressed keepalive. */
  BAD_FLAGS: 4,
  /** A keepalive with a payload, or another structural error. */
  MALFORMED: 5,
  /** Payload larger than the inner MTU (either direction). */
  OVERSIZE: 6,
  /** Counter beyond 2^53 - 1 (no sender of ours ever gets there). */
  BAD_COUNTER: 7,
  /** No live session has this receiver index. */
  UNKNOWN_INDEX: 8,
  /** Epoch below the floor, or below the newest authenticated epoch. */
  OLD_EPOCH: 9,
  /** Counter already seen or behind the replay window. */
  REPLAYED: 10,
  // ---- receive: after the AEAD ----
  /** AEAD authentication failed (tampered, wrong key, or garbage). */
  AUTH_FAILED: 11,
  /** Authentic but the LZ4 block does not decode. */
  DECOMPRESS_FAILED: 12,
  /** Authentic but the LZ4 block decodes to more than the MTU. */
  DECOMPRESS_BOMB: 13,
  /** Inner packet is not a well-formed IPv4/IPv6 packet (either direction). */
  NOT_IP: 14,
  /** Inner source address outside the sending peer's subnets; in switch mode, a source MAC another node owns (mac-table.ts). */
  SPOOFED: 15,
  // ---- send ----
  /** No peer's subnets contain the destination (an ICMP error may be sent). */
  NO_ROUTE: 16,
  /** The peer has no session (keys): `onNoSession` asks for a negotiation. */
  NO_SESSION: 17,
  /** The peer has no known UDP endpoint. */
  NO_ENDPOINT: 18,
  /** The session's counter reached its limit: `onRekeyNeeded`. */
  COUNTER_LIMIT: 19,
  /** The UDP backend did not take the datagram (socket buffer full, error). */
  SEND_FAILED: 20,
  /** Source of a TUN packet is outside the local subnets (when set); in switch mode, a source MAC the BNL lists for another node. */
  BAD_SOURCE: 21,
  /** Writing to the TUN device failed. */
  TUN_WRITE_FAILED: 22,
  // ---- switch mode (switch.ts) ----
  /** A frame shorter than an Ethernet header, or with a group (multicast) source MAC (either direction). */
  NOT_ETHERNET: 23,
  /** A unicast frame read from the TAP for a MAC on our own side: the bridge delivers it there, as a bridge filters. */
  LOCAL_MAC: 24,
  /** A frame from a peer with a new source MAC and no room left to learn it (the table or the peer's share is full). */
  MAC_TABLE_FULL: 25,
  // ---- receive: the access policy (acl.ts) ----
  /** No rule of the policy in force allows the inner packet, and it is no reply to our own traffic. */
  ACL: 26,
  /** Larger than the peer's path carries (src/pmtu.ts): an ICMP "fragmentation needed" / "packet too big" went back into the TUN. */
  TOO_BIG: 27,
  // ---- relaying (types 4 and 5, framing.ts) ----
  /** A relay request (type 4) to a node that does not serve as a relay. */
  RELAY_REFUSED: 28,
  /** A relay request for a node that is no peer of the relay with a session and an endpoint, or for the sender itself. */
  RELAY_NO_TARGET: 29,
  /** A relay request over the sending member's packet or byte budget. */
  RELAY_LIMIT: 30,
  /** A relay message whose inner datagram is malformed, is itself a relay message, or names another source than its session's. */
  RELAY_MALFORMED: 31,
} as const;

/** A value of {@link DropReason}. */
export type DropReasonValue = (typeof DropReason)[keyof typeof DropReason];

/** Number of slots a drop-counter table needs. */
export const DROP_REASON_COUNT = 32;

/** Stable names of the drop reasons (stats keys, logs). Index = value. */
export const dropReasonName = [
  'none',
  'truncated',
  'bad-version',
  'bad-type',
  'bad-flags',
  'malformed',
  'oversize',
  'bad-counter',
  'unknown-index',
  'old-epoch',
  'replayed',
  'auth-failed',
  'decompress-failed',
  'decompress-bomb',
  'not-ip',
  'spoofed',
  'no-route',
  'no-session',
  'no-endpoint',
  'counter-limit',
  'send-failed',
  'bad-source',
  'tun-write-failed',
  'not-ethernet',
  'local-mac',
  'mac-table-full',
  'acl',
  'too-big',
  'relay-refused',
  'relay-no-target',
  'relay-limit',
  'relay-malformed',
] as const;

/** A name in {@link dropReasonName}. */
export type DropReasonName = (typeof dropReasonName)[number];

/**
 * Converts a counter table into `{ name: count }`, leaving out zero counts
 * and the `none` slot. Allocates (stats path, not the hot path).
 */
export function dropTableToRecord(table: Float64Array): Partial<Record<DropReasonName, number>> {
  const out: Partial<Record<DropReasonName, number>> = {};
  for (let r = 1; r < DROP_REASON_COUNT; r++) {
    if (table[r] !== 0) out[dropReasonName[r]] = table[r];
  }
  return out;
}
