/**
 * The state both pipelines share: tables, backends, limits, counters.
 * Built once by `createDataplane`; the pipelines hold it by reference.
 */
import type { Acl } from './acl.js';
import type { BatchUdpSocket, CryptoBackend, NativeHook } from './backend.js';
import type { Lz4Codec } from './compression.js';
import type { DropReasonValue } from './drop-reasons.js';
import type { EventDispatcher } from './events.js';
import type { IcmpResponder } from './icmp.js';
import type { Peer, PeerTable } from './peer-table.js';
import type { PrefixTable } from './routing-table.js';

/** The part of `@cluevpn/tun`'s `TunDevice` the data plane uses (structural). */
export interface DataplaneTun {
  readonly mtu: number;
  /** 'tun' (IP packets) or 'tap' (Ethernet frames, switch mode); left out: 'tun'. */
  readonly mode?: 'tun' | 'tap';
  /** Free bytes before each packet in its read slot (in-place framing needs ≥ 20). */
  readonly headroom: number;
  /** Bytes per read slot. */
  readonly slotSize: number;
  onPackets(handler: ((batch: { count: number; buffer: Buffer; offsets: Int32Array; lengths: Int32Array }) => void) | null): void;
  writeBatch(buf: Uint8Array, offsets: Int32Array, lengths: Int32Array, count: number): number;
  /** Optional: the device's C writer for the express receive path (`@cluevpn/tun`'s TunDevice has it). */
  expressWriter?(): NativeHook;
  /** Optional: sets or clears the C consumer of small TUN reads (the express send path). */
  setExpressSender?(sender: NativeHook | null): void;
}

/** Counter limits, timers and rates (implementation constants; tests shrink them). */
export interface DataplaneLimits {
  /** Counter after which `onRekeyNeeded(…, 'counter-soft-limit')` fires once per session. Default 2^47. */
  rekeyAfterMessages: number;
  /** Counter the sender never reaches: packets are dropped ('counter-limit'). Default 2^48, at most 2^53 - 1. */
  rejectAfterMessages: number;
  /** Minimum interval between rate-limited events of one peer (ms, default 1000). */
  eventIntervalMs: number;
  /** Auth failures within `eventIntervalMs` that make a burst (default 8). */
  authFailureBurst: number;
  /** ICMP no-route replies per second (default 10) and burst (default 20). */
  icmpPerSecond: number;
  icmpBurst: number;
  /**
   * Packets kept per peer while it has no session (default 16, 0 = none):
   * they are sent as soon as a session becomes the peer's primary, so the
   * first packets after start (the first ping, a TCP SYN) are not lost to
   * the negotiation. Each is still counted as 'no-session' when it arrives.
   */
  holdPackets: number;
  /** Held packets older than this are discarded instead of sent (ms, default 3000). */
  holdMs: number;
  /** Peers holding packets at the same time, at most (default 64; bounds memory to ~holdPeers × holdPackets × MTU). */
  holdPeers: number;
  /**
   * Relay role: relay requests (type 4) forwarded per member and second, and
   * the burst (default 400000 / 20000). The two budgets bound what one member
   * can make a relay forward; they are set above what one TCP stream through
   * a relay reaches on this project's 2-core machines, so that they cap a
   * member that floods, not an ordinary transfer: the former 100000 /
   * 125 MB/s (1 Gbit/s) was that stream's ceiling (BENCHMARKS.md, "Relayed
   * throughput (session 9)": relay-limit drops, relayed ~930 Mbit/s in every run).
   */
  relayPacketsPerSecond: number;
  relayPacketBurst: number;
  /** Relay role: bytes forwarded per member and second, and the burst (default 500 MB/s = 4 Gbit/s, 16 MiB). */
  relayBytesPerSecond: number;
  relayByteBurst: number;
}

/** Defaults of {@link DataplaneLimits}. */
export const DEFAULT_LIMITS: Readonly<DataplaneLimits> = {
  rekeyAfterMessages: 2 ** 47,
  rejectAfterMessages: 2 ** 48,
  eventIntervalMs: 1000,
  authFailureBurst: 8,
  icmpPerSecond: 10,
  icmpBurst: 20,
  holdPackets: 16,
  holdMs: 3000,
  holdPeers: 64,
  relayPacketsPerSecond: 400_000,
  relayPacketBurst: 20_000,
  relayBytesPerSecond: 500_000_000,
  relayByteBurst: 16 * 1024 * 1024,
};

/** Shared state of the send and receive pipelines. */
export interface PipelineContext {
  readonly peers: PeerTable;
  readonly crypto: CryptoBackend;
  readonly socket: BatchUdpSocket;
  readonly tun: DataplaneTun;
  /** Inner MTU: largest IP packet carried. */
  readonly mtu: number;
  readonly limits: DataplaneLimits;
  readonly events: EventDispatcher;
  readonly codec: Lz4Codec;
  readonly icmp: IcmpResponder;
  /** Global drop counters by reason. */
  readonly drops: Float64Array;
  /** When non-empty, TUN packets must come from these subnets. */
  readonly localSubnets: PrefixTable;
  /** Rendezvous messages (type 3) authenticated / sent, all peers. */
  rendezvousRx: number;
  rendezvousTx: number;
  /** This node forwards relay requests (type 4): it is a relay of the list (`Dataplane.setRelaying`). */
  relaying: boolean;
  /** Relay role: datagrams forwarded and their bytes; type-4 datagrams dropped before authentication (no session: a non-member, or garbage). */
  relayForwarded: number;
  relayForwardedBytes: number;
  relayUnauthenticated: number;
  /** The data message type carried: `MessageType.DATA` (IP packets, router mode) or `MessageType.FRAME` (Ethernet frames, switch mode). */
  readonly dataType: number;
  /** Switch mode: receive step 10 for frames (switch.ts); null in router mode (IP checks). */
  frames: FrameFilter | null;
  /** The access policy: checked on receive, fed on send, while `acl.active` (acl.ts). */
  readonly acl: Acl;
  /** Clamp the MSS of TCP SYNs to the peer's inner path MTU, both directions (mss-clamp.ts). */
  readonly clampMss: boolean;
  /** Where the receive pipeline hands authenticated path-MTU probes and replies (pmtu.ts). */
  readonly pmtu: PmtuHooks;
}

/** The path-MTU side of the receive pipeline (implemented by pmtu.ts's PmtuScheduler). */
export interface PmtuHooks {
  /** An authenticated probe `id` from `peer`, `wireLen` bytes as received: answer it. */
  onProbe(peer: Peer, id: number, wireLen: number): void;
  /** An authenticated reply to our probe `id`. */
  onReply(peer: Peer, id: number): void;
}

/** Receive step 10 in switch mode: the frame check and MAC spoof check (switch.ts). */
export interface FrameFilter {
  /** True to deliver the frame at `b[off .. off + len]` from `peer`; false after counting the drop. */
  acceptFrame(peer: Peer, b: Buffer, off: number, len: number, nowMs: number): boolean;
}

/** Counts a drop globally and, when known, for the peer. */
export function countDrop(ctx: PipelineContext, peer: Peer | null, reason: DropReasonValue): void {
  ctx.drops[reason]++;
  if (peer !== null) peer.countDrop(reason);
}
