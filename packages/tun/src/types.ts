/**
 * The TunDevice contract shared by the native device (`openTun`) and the
 * in-memory fake (`@cluevpn/tun/testing`). The data plane codes against this.
 */
import type { TunError } from './errors.js';

/** Device kind: layer-3 IP packets (`'tun'`) or layer-2 Ethernet frames (`'tap'`). */
export type TunMode = 'tun' | 'tap';

/** Options of `openTun` / `createMemoryTun`. Every field is optional. */
export interface TunOptions {
  /**
   * Interface name (at most 15 bytes, no `/`, `:` or whitespace). Empty or
   * absent: the kernel picks `tunN` / `tapN`. A name already in use gives
   * `ERR_TUN_BUSY`; an existing persistent device of the same kind that is
   * not attached is re-used (needs the permissions `ip tuntap` gave it).
   */
  name?: string;
  /** Default `'tun'`. No packet-information header in either mode. */
  mode?: TunMode;
  /** MTU to set right after opening; absent: keep the kernel's (1500). */
  mtu?: number;
  /** Most packets handed to JavaScript per call (1..1024, default 64). */
  batchSize?: number;
  /** Bytes per slot of the read slab (default 2048); must be ≥ headroom + mtu + 64. */
  slotSize?: number;
  /** Free bytes in front of every packet in its slot (default 64, multiple of 8 not required). */
  headroom?: number;
  /**
   * TUN offloads (default true in TUN mode; TAP: false, and true is
   * `ERR_TUN_CONFIG`): the device is opened with
   * IFF_VNET_HDR and TUNSETOFFLOAD CSUM|TSO4|TSO6, so the kernel hands over
   * TCP super-packets of up to 64 KiB and leaves checksums partial. The
   * device splits them into MSS-sized segments with complete checksums, so
   * handlers still see only ordinary IP packets of at most the MTU; and
   * `writeBatch` hands runs of in-order TCP segments of one flow to the
   * kernel as one super-packet (see `coalesceWrites`). When the option is
   * left out and the kernel refuses offloads, the device opens without
   * them; `offload: true` makes that an error. The memory fake accepts the
   * option and ignores it.
   */
  offload?: boolean;
  /** With `offload`: coalesce TCP segments in `writeBatch` (default true). */
  coalesceWrites?: boolean;
}

/**
 * A batch of packets read from the device.
 *
 * Borrowed: valid only until the handler returns; the next batch overwrites
 * the same memory, and the object itself is re-used. Packet `i` is
 * `buffer[offsets[i] .. offsets[i] + lengths[i]]` for `i < count` (entries
 * at `count` and beyond are stale). Inside its slot, the `headroom` bytes
 * before `offsets[i]` and the `slotSize - headroom - lengths[i]` bytes after
 * the packet also belong to it and may be written in place (header, tag).
 */
export interface PacketBatch {
  /** Number of valid packets, ≥ 1. */
  count: number;
  /** The slab: `batchSize * slotSize` bytes, slot `i` at `i * slotSize`. */
  readonly buffer: Buffer;
  /** Start of packet `i` (`i * slotSize + headroom`). */
  readonly offsets: Int32Array;
  /** Length of packet `i` in bytes. */
  readonly lengths: Int32Array;
}

/** Receives every batch read from the device; see {@link PacketBatch} for ownership. */
export type PacketHandler = (batch: PacketBatch) => void;

/**
 * Receives asynchronous errors: `ERR_TUN_HANDLER` (the packet handler threw;
 * reading continues) and `ERR_TUN_IO` (reading failed, e.g. the interface was
 * deleted; reading has stopped and the device should be closed). An
 * exception thrown by this handler is counted and otherwise ignored.
 */
export type TunErrorHandler = (err: TunError) => void;

/** Counters of one device since it was opened. Never reset. */
export interface TunStats {
  /** Packets read from the kernel and handed to the handler. */
  packetsIn: number;
  /** Bytes of those packets. */
  bytesIn: number;
  /** Handler calls (batches). `packetsIn / batchesIn` is the mean batch size. */
  batchesIn: number;
  /** Packets the kernel accepted from `write`/`writeBatch`. */
  packetsOut: number;
  /** Bytes of those packets. */
  bytesOut: number;
  /** Writes refused with EAGAIN/ENOBUFS (queue full): dropped, not thrown. */
  writeDropped: number;
  /** Writes refused for another reason (e.g. EINVAL: not an IP packet): dropped, not thrown. */
  writeErrors: number;
  /** Packets read that did not fit a slot (cannot happen while the MTU fits): dropped. */
  readOversize: number;
  /** Exceptions thrown by the packet or error handler. */
  handlerErrors: number;
  /** Offloads: TCP super-packets read from the kernel (each split into segments). */
  offloadSuperIn: number;
  /** Offloads: segments produced from them (counted in `packetsIn` too). */
  offloadSegmentsIn: number;
  /** Offloads: ordinary packets whose partial checksum was completed. */
  offloadChecksumsIn: number;
  /** Offloads: packets read with a virtio-net header that could not be handled (dropped). */
  offloadInvalidIn: number;
  /** Offloads: super-packets written (coalesced runs of segments). */
  offloadSuperOut: number;
  /** Offloads: segments written inside them (counted in `packetsOut` too). */
  offloadSegmentsOut: number;
}

/**
 * An open TUN/TAP device.
 *
 * Reading: set a handler with {@link TunDevice.onPackets}; while a handler is
 * set and the device is open, it keeps the event loop alive (unless
 * {@link TunDevice.unref}). Writing never throws per packet: a packet the
 * kernel refuses is counted in {@link TunDevice.stats} and reported by the
 * return value. Every method except `close`, `stats` and the getters throws
 * `ERR_TUN_CLOSED` after `close()`.
 */
export interface TunDevice {
  /** Interface name (kernel-chosen when none was asked for). */
  readonly name: string;
  /** `'tun'` or `'tap'`. */
  readonly mode: TunMode;
  /** Current MTU as last set or read. */
  readonly mtu: number;
  /** Read layout, fixed at open. */
  readonly batchSize: number;
  /** Read layout, fixed at open. */
  readonly slotSize: number;
  /** Read layout, fixed at open. */
  readonly headroom: number;
  /** True after `close()`. */
  readonly closed: boolean;
  /** True if the device runs with TUN offloads (see {@link TunOptions.offload}). */
  readonly offload: boolean;

  /** Sets the MTU (68..65535 and ≤ slotSize - headroom - 64), else `ERR_TUN_CONFIG`. */
  setMtu(mtu: number): void;
  /** Brings the link up (IFF_UP). */
  up(): void;
  /** Brings the link down. */
  down(): void;
  /**
   * Adds an IPv4 (`'10.0.0.1/24'`) or IPv6 (`'fd00::1/64'`, no DAD delay)
   * address. Rejects with `ERR_TUN_CONFIG` (+ `errno`, e.g. `'EEXIST'`) or
   * `ERR_TUN_PERMISSION`.
   */
  addAddress(cidr: string): Promise<void>;
  /** Routes a prefix (IPv4 or IPv6) into this device. Errors as for `addAddress`. */
  addRoute(cidr: string): Promise<void>;
  /** Removes a route of a prefix into this device (`errno` 'ESRCH' when there is none). Errors as for `addAddress`. */
  removeRoute(cidr: string): Promise<void>;
  /**
   * Routes many prefixes into this device in one rtnetlink exchange (no
   * child process). Resolves (never rejects for a bad route) with one entry
   * per prefix, in order: `null` when added, else its error as `addRoute`
   * would reject with.
   */
  addRoutes(cidrs: readonly string[]): Promise<(TunError | null)[]>;

  /**
   * Sets (replacing any previous one) or clears (`null`) the packet handler.
   * Reading runs only while a handler is set. The handler is called with one
   * batch at a time, never re-entrantly; it may call `write`, `writeBatch`
   * and `close` on this device.
   */
  onPackets(handler: PacketHandler | null): void;
  /** Sets or clears the handler of asynchronous errors (see {@link TunErrorHandler}). */
  onError(handler: TunErrorHandler | null): void;

  /**
   * Hands one packet (`buf[off .. off + len]`) to the kernel. Returns true if
   * accepted, false if dropped (counted). The buffer is not retained.
   * Out-of-range `off`/`len` throw a RangeError (code `ERR_OUT_OF_RANGE`).
   */
  write(buf: Uint8Array, off: number, len: number): boolean;
  /**
   * Hands `count` packets (`buf[offsets[i] .. offsets[i] + lengths[i]]`) to the
   * kernel in one call. Returns how many were accepted; the rest are counted.
   * Bounds are checked for all entries before anything is written.
   */
  writeBatch(buf: Uint8Array, offsets: Int32Array, lengths: Int32Array, count: number): number;
  /**
   * For another native addon in this process (the data plane's express
   * receive path): a C writer of single packets into this device, as an
   * opaque `external` (the layout is in native/tun.c, `tun_express_writer`)
   * plus the `owner` object the caller must keep referenced while it uses
   * the writer. Writes count in {@link stats} as `write` does and are
   * refused once the device is closed. Absent on devices without a native
   * fd (the in-memory fake). Throws `ERR_TUN_CLOSED` after close.
   */
  expressWriter?(): NativeHook;
  /**
   * For another native addon in this process (the data plane's express send
   * path): sets, or clears with `null`, a C consumer tried, packet by
   * packet and before the packet handler, for every read of at most 4
   * packets (layout in native/tun.c, `tun_express_sender`); a packet it takes
   * never reaches the handler, which gets the rest of the read in order. `owner` stays referenced while set. Throws `ERR_TUN_CLOSED`
   * after close.
   */
  setExpressSender?(sender: NativeHook | null): void;

  /** An active reader keeps the process alive (default). Returns this. */
  ref(): this;
  /** An active reader no longer keeps the process alive. Returns this. */
  unref(): this;
  /** A snapshot of the counters (works after close too). */
  stats(): TunStats;
  /**
   * Stops reading, closes the fd and releases every native resource.
   * Idempotent; safe to call from inside the packet handler (the current
   * batch stays valid until the handler returns). The kernel deletes a
   * non-persistent interface, with its addresses and routes, at once.
   */
  close(): void;
}

/**
 * A C entry point handed between native addons of this process: an opaque
 * `external` and the `owner` object that must stay referenced while the
 * entry point is in use (see `TunDevice.expressWriter`).
 */
export interface NativeHook {
  external: unknown;
  owner: object;
}

/** Defaults of the read layout. */
export const TUN_DEFAULTS = {
  batchSize: 64,
  slotSize: 2048,
  headroom: 64,
  /** Bytes that must remain in a slot after an MTU-sized packet. */
  tailroom: 64,
} as const;
