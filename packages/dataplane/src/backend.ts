/**
 * The two hot-path backends of the data plane: batched AEAD and batched UDP.
 *
 * The protocol logic (framing, replay window, routing, compression, counters)
 * is TypeScript and runs once per batch over shared buffers; these backends do
 * the per-packet heavy lifting. Two implementations exist behind the same
 * interfaces:
 *   - `backend-native.ts`: C addon (OpenSSL EVP contexts cached per key,
 *     recvmmsg/sendmmsg on a dual-stack socket, uv_poll on the event loop);
 *   - `backend-js.ts`: pure JavaScript (`createCipheriv`, `dgram`), the
 *     portable fallback and the anchor the benchmarks compare against.
 *
 * Buffer ownership: every batch handed to a handler is borrowed: its
 * buffers are valid only until the handler returns.
 */

/** Wire value of the per-pair cipher (as carried in the native calls). */
import type { NativeHook } from '@cluevpn/tun';

export type { NativeHook };

export const CipherId = {
  AES_256_GCM: 0,
  CHACHA20_POLY1305: 1,
} as const;
/** A value of {@link CipherId}. */
export type CipherIdValue = (typeof CipherId)[keyof typeof CipherId];

/** Bytes of the data-plane header, the AEAD associated data (see ARCHITECTURE.md). */
export const HEADER_LEN = 20;
/** Bytes of the AEAD tag appended after the ciphertext. */
export const TAG_LEN = 16;
/** Offset of the 12-byte nonce (epoch ‖ counter) inside the header. */
export const NONCE_OFFSET = 8;

/**
 * Batched AEAD over packets laid out in place in one buffer.
 *
 * Layout of packet `i`: the 20-byte header at `buf[offs[i]]` (associated
 * data; its bytes 8..20 are the nonce), then the payload. Keys live inside
 * the backend behind integer handles so no key is passed per packet.
 */
export interface CryptoBackend {
  /**
   * Creates a context for one key and returns its handle (an integer > 0).
   * The key is copied; the caller should wipe its own copy when done.
   * Throws on a key of the wrong length (32 bytes for both ciphers).
   */
  createKey(cipher: CipherIdValue, key: Buffer): number;
  /** Erases and frees a key. Unknown or already destroyed handles are ignored. */
  destroyKey(handle: number): void;
  /**
   * Encrypts in place: for `i < count`, the payload of `lens[i]` bytes at
   * `offs[i] + HEADER_LEN` is replaced by its ciphertext and the 16-byte tag
   * is written right after it, so the datagram is
   * `buf[offs[i] .. offs[i] + HEADER_LEN + lens[i] + TAG_LEN]`.
   * The caller guarantees that room exists.
   *
   * `macOnly` (optional, per packet): a packet whose flag is 1 is
   * authenticated, not encrypted: header and payload are both the
   * associated data, the plaintext is empty, and only the tag is written
   * (a MAC: GMAC for AES-256-GCM, Poly1305 for ChaCha20-Poly1305). The
   * relay layer uses it (message types 4 and 5, framing.ts): its payload is
   * a datagram already sealed end to end. Nonces are shared with the
   * encrypted messages of the same key (one counter per session), so
   * they never repeat.
   */
  sealBatch(buf: Buffer, count: number, offs: Int32Array, lens: Int32Array, handles: Int32Array, macOnly?: Uint8Array): void;
  /**
   * Authenticates and decrypts in place: for `i < count`, the datagram of
   * `lens[i]` bytes (header + ciphertext + tag) at `offs[i]`. Sets `ok[i]` to
   * 1 when authentic (the plaintext then replaces the ciphertext, length
   * `lens[i] - HEADER_LEN - TAG_LEN`), 0 otherwise (contents unspecified).
   * A handle of 0 or a datagram shorter than header + tag yields 0.
   * `macOnly[i] === 1`: datagram `i` was sealed with `macOnly` (see
   * {@link sealBatch}); only its tag is checked, nothing is decrypted or
   * written.
   */
  openBatch(buf: Buffer, count: number, offs: Int32Array, lens: Int32Array, handles: Int32Array, ok: Uint8Array, macOnly?: Uint8Array): void;
}

/**
 * A batch of received datagrams. Borrowed: valid only until the handler returns.
 * Datagram `i` is `buffer[offsets[i] .. offsets[i] + lengths[i]]`; the
 * bytes in front of it may belong to the previous datagram (UDP GRO hands
 * over runs of datagrams back to back), so write only inside it. Its source
 * address is `sources[i * SOURCE_LEN ..]`: 16 bytes of IPv6 address (IPv4
 * as v4-mapped `::ffff:a.b.c.d`) then the port, big endian.
 */
export interface DatagramBatch {
  count: number;
  buffer: Buffer;
  offsets: Int32Array;
  lengths: Int32Array;
  sources: Buffer;
}

/** Bytes per source address in {@link DatagramBatch.sources}. */
export const SOURCE_LEN = 18;

/** Options of {@link UdpBackend.open}. */
export interface UdpOpenOptions {
  /** UDP port to bind (0 = kernel-chosen). */
  port: number;
  /** Numeric address to bind; default `::` (dual stack, IPv4 as v4-mapped). */
  bindAddress?: string;
  /** Datagrams read per wake-up at most (default 64). */
  batchSize?: number;
  /** Bytes per receive slot, headroom included (default 2048). */
  slotSize?: number;
  /** Free bytes kept in front of each received datagram (default 64). */
  headroom?: number;
  /**
   * SO_RCVBUF / SO_SNDBUF to ask for, bytes (the kernel doubles it for its
   * bookkeeping); 0 keeps the kernel default. Default {@link DEFAULT_SOCKET_BUFFER}.
   */
  socketBuffer?: number;
  /** Send runs of equal-length datagrams as one UDP_SEGMENT message where the kernel can (default true; native backend only). */
  gso?: boolean;
  /** Let the kernel coalesce received runs (UDP_GRO; default true; native backend only). */
  gro?: boolean;
}

/**
 * Default UDP socket buffer: 256 KiB. Under saturation the receive buffer
 * is where the queue stands (the reader is the bottleneck), so its size is
 * the latency added under load: with 4 MiB the ping RTT under one iperf3
 * stream was 4–6 ms, with 256 KiB 1.3–2.3 ms, at the same throughput
 * (BENCHMARKS.md, "UDP socket buffer"). Larger values absorb longer reader
 * stalls (GC pauses) at high rates.
 */
export const DEFAULT_SOCKET_BUFFER = 256 * 1024;

/** The largest socket buffer `socketBuffer` accepts: 64 MiB. */
export const MAX_SOCKET_BUFFER = 64 * 1024 * 1024;

/** A bound UDP socket that receives and sends in batches. */
export interface BatchUdpSocket {
  /** The bound port (useful when 0 was asked). */
  readonly port: number;
  /**
   * Sets endpoint `slot` (0 ≤ slot < 65536) to a numeric IPv4 or IPv6
   * address and port; sends name endpoints by slot so no address is
   * marshalled per packet. Throws on a non-numeric address.
   */
  setEndpoint(slot: number, host: string, port: number): void;
  /** Forgets endpoint `slot`; sends to it are counted as failed. */
  clearEndpoint(slot: number): void;
  /** Starts delivering received datagrams to `handler`, one call per batch. */
  onDatagrams(handler: (batch: DatagramBatch) => void): void;
  /**
   * Sends `count` datagrams: datagram `i` is `buf[offs[i] .. offs[i]+lens[i]]`
   * to endpoint `slots[i]`. Never blocks; returns how many were handed to
   * the kernel (the rest were dropped, e.g. socket buffer full).
   */
  sendBatch(buf: Buffer, count: number, offs: Int32Array, lens: Int32Array, slots: Int32Array): number;
  /** Stops receiving and closes the socket. Idempotent. */
  close(): void;
  /**
   * Optional (the native socket): the express receive path, see
   * `native/src/express.c`. `expressSetup` turns it on with the shared
   * lease-generation cell, the TUN's C writer and the inner MTU, or off
   * (`null`, dropping every lease); `expressLease` hands C one session's
   * receive state and returns false when the lease was refused (stale
   * generation, too many subnets).
   */
  expressSetup?(setup: ExpressSetup | null): void;
  expressLease?(lease: ExpressLease): boolean;
  /**
   * Optional (the native socket): the express send path. `expressTxSetup`
   * turns it on with the shared send-lease generation cell and the inner MTU
   * and returns the C sender to hand to the TUN (`setExpressSender`), or
   * turns it off (`null`, returns null).
   */
  expressTxSetup?(gen: Float64Array | null, mtu: number): NativeHook | null;
  /** Lends C a block of a session's counters for one (destination, source) pair; false when refused. */
  expressTxLease?(lease: ExpressTxLease): boolean;
}

/** A send lease (see {@link BatchUdpSocket.expressTxLease}). */
export interface ExpressTxLease {
  /** 33 bytes: family (4 or 6), destination (16 bytes, IPv4 in the first 4), source (same). */
  addrs: Uint8Array;
  /** The peer's endpoint slot. */
  slot: number;
  remoteIndex: number;
  epoch: number;
  txHandle: number;
  /** First counter of the block; the session's counter is already past the block. */
  counterBase: number;
  counterCount: number;
  gen: number;
  /** The peer's counters (`Peer.counters`). */
  counters: Float64Array;
  /** Longest packet C may send on this lease: the peer's inner path MTU (src/pmtu.ts); longer ones go back to JavaScript. */
  maxLen: number;
}

/**
 * Reads of at most this many packets (socket or TUN) are offered to the
 * express paths: idle traffic, one packet or the two fragments of a large
 * ping (native/src/express.h, DP_EXPRESS_MAX_BATCH; tun.c, TUN_EXPRESS_MAX_BATCH).
 */
export const EXPRESS_MAX_BATCH = 4;

/** What the express receive path needs from the data plane (see {@link BatchUdpSocket.expressSetup}). */
export interface ExpressSetup {
  /** Lease generation: a lease is valid while its generation equals gen[0] (a float64 integer that never wraps: see `PeerTable`). */
  gen: Float64Array;
  /** The TUN device's C writer (`TunDevice.expressWriter()`). */
  writer: NativeHook;
  mtu: number;
}

/** One session's receive state, lent to C until the generation changes. */
export interface ExpressLease {
  localIndex: number;
  rxHandle: number;
  epoch: number;
  gen: number;
  /** The replay window's shared state (`ReplayWindow.state`, 1032 bytes). */
  window: Uint8Array;
  /** The peer's counters (`Peer.counters`). */
  counters: Float64Array;
  /** The peer's endpoint as the socket reports sources (18 bytes). */
  endpointKey: Uint8Array;
  /** The peer's subnets: 18 bytes each, [family, prefix length, 16 address bytes]. */
  subnets: Uint8Array;
}

/** Factory for batched UDP sockets. */
export interface UdpBackend {
  /** Binds a socket. Throws a DataplaneError (`ERR_DP_BIND`) when the port is taken. */
  open(options: UdpOpenOptions): BatchUdpSocket;
}
