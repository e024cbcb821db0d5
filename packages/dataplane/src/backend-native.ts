/**
 * Native backends: the C addon in `packages/dataplane/native` behind the
 * interfaces of `backend.ts`.
 *
 *   - AEAD: OpenSSL EVP contexts (Node's own OpenSSL 3) keyed once per key
 *     handle; one call per batch, the nonce is the only per-packet setup.
 *   - UDP: a dual-stack socket read with `recvmmsg` into a preallocated slab
 *     when libuv reports it readable (one JavaScript call per batch; with
 *     UDP GRO one message may carry up to 64 datagrams of a flow, split in C),
 *     written with `sendmmsg` (UDP_SEGMENT runs) to endpoints stored in C by slot.
 *
 * The addon is loaded lazily from `native/build/Release/cluevpn_dataplane.node`
 * (built by `scripts/build-native`), or with `CLUEVPN_DEBUG=sanitize-dataplane`
 * (tests only) the ASan/UBSan Debug build in `native/build-sanitize`. When it cannot be loaded, {@link nativeAvailable} is false and
 * {@link nativeUnavailableReason} says why, so the data plane can fall back to
 * the JavaScript backend.
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { debugHas } from '@cluevpn/tun';
import {
  DEFAULT_SOCKET_BUFFER,
  type BatchUdpSocket,
  type CipherIdValue,
  type CryptoBackend,
  type DatagramBatch,
  type ExpressLease,
  type ExpressSetup,
  type ExpressTxLease,
  type NativeHook,
  type UdpBackend,
  type UdpOpenOptions,
} from './backend.js';
import { DataplaneError, type DataplaneErrorCode } from './errors.js';

/** Counters of one native UDP socket (drops are counted, never thrown). */
export interface NativeUdpStats {
  /** Datagrams delivered to the handler. */
  rxDatagrams: number;
  /** Handler calls (batches). */
  rxBatches: number;
  /** Datagrams dropped because they were larger than a slot. */
  rxTruncated: number;
  /** recvmmsg / poll failures other than "nothing to read". */
  rxErrors: number;
  /** Exceptions thrown by the handler (caught; see {@link NativeBatchUdpSocket.lastHandlerError}). */
  handlerExceptions: number;
  /** Datagrams handed to the kernel. */
  txDatagrams: number;
  /** Datagrams not sent because their endpoint slot was unset. */
  txNoEndpoint: number;
  /** Datagrams refused by the kernel (EMSGSIZE, ENETUNREACH, …). */
  txErrors: number;
  /** Of `txErrors`: EMSGSIZE, above the path MTU the kernel learnt (the socket always sets DF: src/pmtu.ts). */
  txTooBig: number;
  /** 1 when the socket sends with DF (`IP_MTU_DISCOVER`/`IPV6_MTU_DISCOVER` = `PMTUDISC_DO`), else 0. */
  pmtuDiscovery: number;
  /** Datagrams not sent because the socket buffer was full (EAGAIN/ENOBUFS). */
  txDroppedFull: number;
  /**
   * UDP_SEGMENT (GSO) messages sent: runs of datagrams to one endpoint with
   * one length, handed to the kernel in one message (0 when the kernel or
   * route cannot do GSO, or when opened with `gso: false`).
   */
  txGsoMessages: number;
  /**
   * Received messages that carried several datagrams coalesced by the
   * kernel (UDP GRO), each split into its datagrams before the handler sees
   * them (0 when GRO is off: kernel, or opened with `gro: false`).
   */
  rxGroMessages: number;
  /**
   * Datagrams delivered to the TUN by the express receive path (native/src/
   * express.c) without entering JavaScript; not counted in rxDatagrams.
   */
  rxExpress: number;
  /** Of those, how many the TUN device refused (counted in its stats too). */
  rxExpressTunFailed: number;
  /** Sessions leased to the express path right now (stale ones included until replaced). */
  expressLeases: number;
  /** TUN packets framed and sealed by the express send path (also in txDatagrams when sent). */
  txExpress: number;
  /** Of those, how many the socket did not send. */
  txExpressFailed: number;
  /** (destination, source) pairs leased to the express send path right now. */
  expressTxLeases: number;
  /** 1 when UDP GRO is on for this socket, else 0. */
  gro: number;
  /** The socket's SO_RCVBUF / SO_SNDBUF as the kernel reports them (twice what was asked for). */
  rcvbuf: number;
  sndbuf: number;
}

interface AddonUdpSocket {
  readonly buffer: Buffer;
  readonly offsets: Int32Array;
  readonly lengths: Int32Array;
  readonly sources: Buffer;
  readonly port: number;
  start(cb: (count: number) => void): void;
  setEndpoint(slot: number, host: string, port: number): void;
  clearEndpoint(slot: number): void;
  sendBatch(buf: Uint8Array, count: number, offs: Int32Array, lens: Int32Array, slots: Int32Array): number;
  close(): void;
  ref(): void;
  unref(): void;
  stats(): Omit<NativeUdpStats, 'handlerExceptions'> & { handlerExceptions: number };
  fd(): number;
  expressSetup(gen: Float64Array | null, writer?: unknown, owner?: object, mtu?: number): void;
  expressTxSetup(gen: Float64Array | null, mtu?: number): unknown;
  expressTxLease(
    addrs: Uint8Array,
    slot: number,
    remoteIndex: number,
    epoch: number,
    txHandle: number,
    counterBase: number,
    counterCount: number,
    gen: number,
    counters: Float64Array,
    maxLen: number,
  ): boolean;
  expressLease(
    localIndex: number,
    rxHandle: number,
    epoch: number,
    gen: number,
    window: Uint8Array,
    counters: Float64Array,
    endpointKey: Uint8Array,
    subnets: Uint8Array,
  ): boolean;
}

interface Addon {
  createKey(cipher: number, key: Uint8Array): number;
  destroyKey(handle: number): void;
  liveKeys(): number;
  sealBatch(buf: Uint8Array, count: number, offs: Int32Array, lens: Int32Array, handles: Int32Array, macOnly?: Uint8Array): void;
  openBatch(buf: Uint8Array, count: number, offs: Int32Array, lens: Int32Array, handles: Int32Array, ok: Uint8Array, macOnly?: Uint8Array): void;
  UdpSocket: new (bindAddress: string | null, port: number, batchSize: number, slotSize: number, headroom: number, bufferBytes: number, gso: boolean, gro: boolean) => AddonUdpSocket;
}

/** Paths of the release and the sanitizer build, relative to this file once compiled to dist/src. */
const ADDON_URL = new URL('../../native/build/Release/cluevpn_dataplane.node', import.meta.url);
const SANITIZE_ADDON_URL = new URL('../../native/build-sanitize/build/Debug/cluevpn_dataplane.node', import.meta.url);

let addon: Addon | undefined;
let loadError: string | undefined;

function load(): Addon | undefined {
  if (addon !== undefined || loadError !== undefined) return addon;
  // A bad CLUEVPN_DEBUG throws here (ERR_TUN_CONFIG) rather than passing for a missing addon.
  const path = fileURLToPath(debugHas('sanitize-dataplane') ? SANITIZE_ADDON_URL : ADDON_URL);
  try {
    const req = createRequire(import.meta.url);
    addon = req(path) as Addon;
  } catch (err) {
    loadError = `cannot load ${path} (run scripts/build-native): ${err instanceof Error ? err.message : String(err)}`;
  }
  return addon;
}

function required(): Addon {
  const a = load();
  if (a === undefined) throw new DataplaneError('ERR_DP_NATIVE', loadError ?? 'native addon unavailable');
  return a;
}

const CODES: ReadonlySet<string> = new Set<DataplaneErrorCode>([
  'ERR_DP_BIND',
  'ERR_DP_CONFIG',
  'ERR_DP_KEY',
  'ERR_DP_PEER',
  'ERR_DP_NATIVE',
  'ERR_DP_CLOSED',
]);

/** Turns an error thrown by the addon (plain Error with `code`, maybe `errno`) into a DataplaneError. */
function rethrow(err: unknown): never {
  if (err instanceof DataplaneError) throw err;
  const e = err as { code?: unknown; errno?: unknown; message?: unknown };
  const code = typeof e?.code === 'string' && CODES.has(e.code) ? (e.code as DataplaneErrorCode) : 'ERR_DP_NATIVE';
  const message = typeof e?.message === 'string' ? e.message : String(err);
  const opts: { cause: unknown; errno?: string } = { cause: err };
  if (typeof e?.errno === 'string') opts.errno = e.errno;
  throw new DataplaneError(code, message, opts);
}

/**
 * True when the native addon is built and loads in this process. Never
 * throws; when false, {@link nativeUnavailableReason} tells why.
 */
export function nativeAvailable(): boolean {
  return load() !== undefined;
}

/** Why the native addon cannot be used, or undefined when it can. */
export function nativeUnavailableReason(): string | undefined {
  load();
  return addon === undefined ? loadError : undefined;
}

/**
 * Number of live native keys in this thread (created and not destroyed).
 * For leak checks in tests. Throws ERR_DP_NATIVE when the addon is missing.
 */
export function nativeLiveKeys(): number {
  return required().liveKeys();
}

/**
 * The native {@link CryptoBackend}. Keys are per thread (a handle from one
 * worker means nothing in another). Throws ERR_DP_NATIVE when the addon is
 * missing (check {@link nativeAvailable} first).
 *
 * Errors: `createKey` throws ERR_DP_KEY on a bad cipher id or key length;
 * `sealBatch` throws ERR_DP_KEY when a handle is not live and ERR_DP_NATIVE on
 * a count/offset/length outside the arrays or buffer; both are checked for the
 * whole batch before any byte is written. `openBatch` throws ERR_DP_NATIVE
 * only for such index errors; unknown handles and forged data give ok=0.
 */
export function nativeCryptoBackend(): CryptoBackend {
  const a = required();
  return {
    createKey(cipher: CipherIdValue, key: Buffer): number {
      try {
        return a.createKey(cipher, key);
      } catch (err) {
        rethrow(err);
      }
    },
    destroyKey(handle: number): void {
      try {
        a.destroyKey(handle);
      } catch (err) {
        rethrow(err);
      }
    },
    sealBatch(buf: Buffer, count: number, offs: Int32Array, lens: Int32Array, handles: Int32Array, macOnly?: Uint8Array): void {
      try {
        a.sealBatch(buf, count, offs, lens, handles, macOnly);
      } catch (err) {
        rethrow(err);
      }
    },
    openBatch(buf: Buffer, count: number, offs: Int32Array, lens: Int32Array, handles: Int32Array, ok: Uint8Array, macOnly?: Uint8Array): void {
      try {
        a.openBatch(buf, count, offs, lens, handles, ok, macOnly);
      } catch (err) {
        rethrow(err);
      }
    },
  };
}

/**
 * A {@link BatchUdpSocket} over the native socket, with counters and
 * ref/unref. The batch handed to the handler is one object reused for every
 * call; its buffers are borrowed (valid until the handler returns). An
 * exception thrown by the handler is caught and counted (the batch is lost;
 * the socket keeps running); the first one is also emitted as a process
 * warning so the bug is seen.
 */
export class NativeBatchUdpSocket implements BatchUdpSocket {
  /** The bound port. */
  readonly port: number;
  /** The last exception the handler threw, if any. */
  lastHandlerError: unknown = undefined;
  private readonly sock: AddonUdpSocket;
  private readonly batch: DatagramBatch;
  private handler: ((batch: DatagramBatch) => void) | undefined;
  private handlerErrors = 0;
  private started = false;
  private closed = false;

  /** @internal use {@link nativeUdpBackend}. */
  constructor(sock: AddonUdpSocket) {
    this.sock = sock;
    this.port = sock.port;
    this.batch = { count: 0, buffer: sock.buffer, offsets: sock.offsets, lengths: sock.lengths, sources: sock.sources };
  }

  private readonly deliver = (count: number): void => {
    const handler = this.handler;
    if (handler === undefined) return;
    this.batch.count = count;
    try {
      handler(this.batch);
    } catch (err) {
      this.handlerErrors++;
      this.lastHandlerError = err;
      if (this.handlerErrors === 1) {
        process.emitWarning(`dataplane: UDP batch handler threw (counted in stats().handlerExceptions): ${String(err)}`, {
          code: 'CLUEVPN_DP_HANDLER',
        });
      }
    }
  };

  /** {@inheritDoc BatchUdpSocket.setEndpoint} Throws ERR_DP_CONFIG on a bad slot, port or address, ERR_DP_CLOSED after close. */
  setEndpoint(slot: number, host: string, port: number): void {
    try {
      this.sock.setEndpoint(slot, host, port);
    } catch (err) {
      rethrow(err);
    }
  }

  /** {@inheritDoc BatchUdpSocket.clearEndpoint} */
  clearEndpoint(slot: number): void {
    try {
      this.sock.clearEndpoint(slot);
    } catch (err) {
      rethrow(err);
    }
  }

  /** {@inheritDoc BatchUdpSocket.onDatagrams} A later call replaces the handler. Throws ERR_DP_CLOSED after close. */
  onDatagrams(handler: (batch: DatagramBatch) => void): void {
    if (this.closed) throw new DataplaneError('ERR_DP_CLOSED', 'onDatagrams: socket closed');
    this.handler = handler;
    if (this.started) return;
    try {
      this.sock.start(this.deliver);
    } catch (err) {
      rethrow(err);
    }
    this.started = true;
  }

  /**
   * {@inheritDoc BatchUdpSocket.sendBatch} Throws ERR_DP_NATIVE (before
   * sending anything) when a count, offset, length or slot is outside its
   * array, buffer or 0..65535; ERR_DP_CLOSED after close.
   */
  sendBatch(buf: Buffer, count: number, offs: Int32Array, lens: Int32Array, slots: Int32Array): number {
    try {
      return this.sock.sendBatch(buf, count, offs, lens, slots);
    } catch (err) {
      rethrow(err);
    }
  }

  /** {@inheritDoc BatchUdpSocket.close} The port is free when this returns. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.handler = undefined;
    this.sock.close();
  }

  /** {@inheritDoc BatchUdpSocket.expressSetup} Throws ERR_DP_NATIVE on a bad writer, ERR_DP_CLOSED after close. */
  expressSetup(setup: ExpressSetup | null): void {
    try {
      if (setup === null) this.sock.expressSetup(null);
      else this.sock.expressSetup(setup.gen, setup.writer.external, setup.writer.owner, setup.mtu);
    } catch (err) {
      rethrow(err);
    }
  }

  /** {@inheritDoc BatchUdpSocket.expressLease} */
  expressLease(l: ExpressLease): boolean {
    if (this.closed) return false;
    try {
      return this.sock.expressLease(l.localIndex, l.rxHandle, l.epoch, l.gen, l.window, l.counters, l.endpointKey, l.subnets);
    } catch (err) {
      rethrow(err);
    }
  }

  /** {@inheritDoc BatchUdpSocket.expressTxSetup} */
  expressTxSetup(gen: Float64Array | null, mtu: number): NativeHook | null {
    try {
      const external = this.sock.expressTxSetup(gen, mtu);
      return gen === null ? null : { external, owner: this.sock };
    } catch (err) {
      rethrow(err);
    }
  }

  /** {@inheritDoc BatchUdpSocket.expressTxLease} */
  expressTxLease(l: ExpressTxLease): boolean {
    if (this.closed) return false;
    try {
      return this.sock.expressTxLease(l.addrs, l.slot, l.remoteIndex, l.epoch, l.txHandle, l.counterBase, l.counterCount, l.gen, l.counters, l.maxLen);
    } catch (err) {
      rethrow(err);
    }
  }

  /** Keeps the event loop alive while receiving (the default). */
  ref(): void {
    this.sock.ref();
  }

  /** Lets the process exit even though the socket is receiving. */
  unref(): void {
    this.sock.unref();
  }

  /** A snapshot of the counters. */
  stats(): NativeUdpStats {
    const s = this.sock.stats();
    return { ...s, handlerExceptions: s.handlerExceptions + this.handlerErrors };
  }
}

/** A {@link UdpBackend} whose sockets also expose counters and ref/unref. */
export interface NativeUdpBackend extends UdpBackend {
  /** {@inheritDoc UdpBackend.open} */
  open(options: UdpOpenOptions): NativeBatchUdpSocket;
}

/**
 * The native {@link UdpBackend}. `open` binds a socket: dual stack on `::`
 * unless `bindAddress` is IPv4. Throws ERR_DP_BIND (with `errno`, e.g.
 * EADDRINUSE) when the address cannot be bound, ERR_DP_CONFIG on a
 * non-numeric address or out-of-range option, ERR_DP_NATIVE when the addon is
 * missing.
 */
export function nativeUdpBackend(): NativeUdpBackend {
  const a = required();
  return {
    open(options: UdpOpenOptions): NativeBatchUdpSocket {
      const batchSize = options.batchSize ?? 64;
      const slotSize = options.slotSize ?? 2048;
      const headroom = options.headroom ?? 64;
      const socketBuffer = options.socketBuffer ?? DEFAULT_SOCKET_BUFFER;
      const gso = options.gso ?? true;
      const gro = options.gro ?? true;
      if (typeof gso !== 'boolean' || typeof gro !== 'boolean') throw new DataplaneError('ERR_DP_CONFIG', 'open: gso and gro must be booleans');
      for (const [name, v] of [['port', options.port], ['batchSize', batchSize], ['slotSize', slotSize], ['headroom', headroom], ['socketBuffer', socketBuffer]] as const) {
        if (!Number.isInteger(v)) throw new DataplaneError('ERR_DP_CONFIG', `open: ${name} must be an integer`);
      }
      let sock: AddonUdpSocket;
      try {
        sock = new a.UdpSocket(options.bindAddress ?? null, options.port, batchSize, slotSize, headroom, socketBuffer, gso, gro);
      } catch (err) {
        rethrow(err);
      }
      return new NativeBatchUdpSocket(sock);
    },
  };
}
