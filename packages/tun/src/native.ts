/**
 * Loading of the C addon (native/tun.c) and its raw signatures. Internal:
 * only device.ts uses it. Loaded lazily so that importing the package (for
 * the types or the memory fake) works without a native build.
 */
import { createRequire } from 'node:module';
import { debugHas } from './debug.js';
import { TunError, TunErrorCode } from './errors.js';

/** Opaque handle object wrapping the C struct. */
export type NativeHandle = object;

/** Bit of `open` flags: TAP instead of TUN. (Reserved for later: multi-queue.) */
export const OPEN_TAP = 0x1;
/** Bit of `open` flags: IFF_VNET_HDR with TUNSETOFFLOAD CSUM|TSO4|TSO6 (split on read, coalesce on write). */
export const OPEN_OFFLOAD = 0x2;
/** Bit of `open` flags, with OPEN_OFFLOAD: writeBatch does not coalesce TCP segments. */
export const OPEN_NO_COALESCE = 0x4;

/** Index of each counter in the Float64Array filled by `stats`. */
export const STAT_INDEX = {
  packetsIn: 0,
  bytesIn: 1,
  batchesIn: 2,
  packetsOut: 3,
  bytesOut: 4,
  writeDropped: 5,
  writeErrors: 6,
  readOversize: 7,
  handlerErrors: 8,
  offloadSuperIn: 9,
  offloadSegmentsIn: 10,
  offloadChecksumsIn: 11,
  offloadInvalidIn: 12,
  offloadSuperOut: 13,
  offloadSegmentsOut: 14,
} as const;

/** The functions exported by tun.node. Errors thrown carry `code` = errno name, `errno`, `syscall`. */
export interface NativeTun {
  STATS_COUNT: number;
  open(name: string, flags: number): [NativeHandle, string];
  setup(
    h: NativeHandle,
    slab: Buffer,
    offsets: Int32Array,
    lengths: Int32Array,
    batchSize: number,
    slotSize: number,
    headroom: number,
    onBatch: (count: number) => void,
    onError: (kind: 0 | 1, value: unknown, syscall: string | undefined) => void,
  ): void;
  poll(h: NativeHandle, on: boolean): void;
  ref(h: NativeHandle, on: boolean): void;
  write(h: NativeHandle, buf: Uint8Array, off: number, len: number): number;
  writeBatch(h: NativeHandle, buf: Uint8Array, offsets: Int32Array, lengths: Int32Array, count: number): number;
  stats(h: NativeHandle, out: Float64Array): void;
  /** An external pointing at the device's C writer (see TunDevice.expressWriter). */
  expressWriter(h: NativeHandle): unknown;
  /** Sets (external + owner) or clears (null) the C consumer of small reads (see TunDevice.setExpressSender). */
  setExpressSender(h: NativeHandle, sender: unknown, owner?: object): void;
  close(h: NativeHandle): void;
  setMtu(ifname: string, mtu: number): void;
  getMtu(ifname: string): number;
  setUp(ifname: string, up: boolean): void;
  /** rtnetlink requests (kind NETLINK_* below) in order; per request 0, the kernel's positive errno, or -1 for a CIDR that does not parse. */
  netlink(ifname: string, kinds: number[], cidrs: string[]): Int32Array;
}

/** Request kinds of `netlink`; mirrored in native/netlink.h. */
export const NETLINK_ADD_ADDRESS = 1;
export const NETLINK_ADD_ROUTE = 2;
export const NETLINK_DEL_ROUTE = 3;

/**
 * Which build to load: `native/build/Release/tun.node`, or with
 * CLUEVPN_DEBUG=sanitize-tun the ASan/UBSan Debug build made by
 * `scripts/build-native --debug-sanitize`.
 */
function addonPath(): string {
  return debugHas('sanitize-tun')
    ? '../../native/build-sanitize/build/Debug/tun.node'
    : '../../native/build/Release/tun.node';
}

let loaded: NativeTun | undefined;

/** Returns the addon, loading it on first use. Throws ERR_TUN_UNAVAILABLE if it is not built. */
export function native(): NativeTun {
  if (loaded === undefined) {
    const path = addonPath();
    try {
      loaded = createRequire(import.meta.url)(path) as NativeTun;
    } catch (e) {
      throw new TunError(TunErrorCode.UNAVAILABLE, `the TUN addon (${path}) cannot be loaded: run scripts/build-native`, {
        cause: e,
      });
    }
  }
  return loaded;
}
