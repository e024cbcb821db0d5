/**
 * The native TUN device.
 *
 * Read pipeline:
 *   1. the kernel queues a packet on the device's fd;
 *   2. libuv's poll (main event loop, no thread) sees the fd readable;
 *   3. C reads up to batchSize packets into the slab (slot i, after headroom);
 *   4. C calls onBatch(count) once; it sets batch.count and calls the handler;
 *   5. a thrown exception comes back through onError(0, exc) → ERR_TUN_HANDLER.
 * Write: one N-API call per packet (write) or per batch (writeBatch).
 */
import * as configure from './configure.js';
import { TunError, TunErrorCode } from './errors.js';
import { native, OPEN_NO_COALESCE, OPEN_OFFLOAD, OPEN_TAP, STAT_INDEX, type NativeHandle, type NativeTun } from './native.js';
import { checkMtu, resolveTunOptions, type ResolvedTunOptions } from './options.js';
import type {
  NativeHook,
  PacketBatch,
  PacketHandler,
  TunDevice,
  TunErrorHandler,
  TunMode,
  TunOptions,
  TunStats,
} from './types.js';

interface SysError {
  code?: unknown;
  syscall?: unknown;
  ifaceExists?: unknown;
  message?: unknown;
}

/** Maps an errno-coded error from the addon to a TunError. */
function fromNative(e: unknown, what: string): TunError {
  const se = (e ?? {}) as SysError;
  const errno = typeof se.code === 'string' ? se.code : undefined;
  const syscall = typeof se.syscall === 'string' ? se.syscall : undefined;
  const msg = typeof se.message === 'string' ? se.message : String(e);
  const details = { errno, syscall, cause: e };
  if (errno === 'EPERM' || errno === 'EACCES') {
    return new TunError(TunErrorCode.PERMISSION, `${what}: ${msg}: needs CAP_NET_ADMIN (run as root)`, details);
  }
  if (syscall === 'open' && (errno === 'ENOENT' || errno === 'ENODEV' || errno === 'ENXIO')) {
    return new TunError(TunErrorCode.UNAVAILABLE, `${what}: /dev/net/tun is not available (${msg})`, details);
  }
  if (syscall === 'TUNSETIFF' && (errno === 'EBUSY' || (errno === 'EINVAL' && se.ifaceExists === true))) {
    return new TunError(TunErrorCode.BUSY, `${what}: the interface name is taken (${msg})`, details);
  }
  if (syscall !== undefined && syscall.startsWith('SIOC')) {
    return new TunError(TunErrorCode.CONFIG, `${what}: ${msg}`, details);
  }
  return new TunError(TunErrorCode.IO, `${what}: ${msg}`, details);
}

class NativeTunDevice implements TunDevice {
  readonly name: string;
  readonly mode: TunMode;
  readonly batchSize: number;
  readonly slotSize: number;
  readonly headroom: number;
  readonly offload: boolean;
  #mtu: number;
  #closed = false;
  readonly #n: NativeTun;
  readonly #h: NativeHandle;
  #handler: PacketHandler | null = null;
  #errorHandler: TunErrorHandler | null = null;
  #warned = false;
  readonly #statsBuf: Float64Array;
  // Held here because the addon holds them weakly while not polling.
  readonly #onBatch: (count: number) => void;
  readonly #onNativeError: (kind: 0 | 1, value: unknown, syscall: string | undefined) => void;

  constructor(n: NativeTun, h: NativeHandle, name: string, o: ResolvedTunOptions) {
    this.#n = n;
    this.#h = h;
    this.name = name;
    this.mode = o.mode;
    this.batchSize = o.batchSize;
    this.slotSize = o.slotSize;
    this.headroom = o.headroom;
    this.offload = o.offload;
    this.#statsBuf = new Float64Array(n.STATS_COUNT);
    // Owned by this device for its lifetime; lent to the handler per batch.
    const batch: PacketBatch = {
      count: 0,
      buffer: Buffer.allocUnsafeSlow(o.batchSize * o.slotSize),
      offsets: new Int32Array(o.batchSize),
      lengths: new Int32Array(o.batchSize),
    };
    for (let i = 0; i < o.batchSize; i++) batch.offsets[i] = i * o.slotSize + o.headroom;
    const onBatch = (count: number): void => {
      batch.count = count;
      const h = this.#handler;
      if (h !== null) h(batch);
    };
    const onError = (kind: 0 | 1, value: unknown, syscall: string | undefined): void => {
      const err =
        kind === 0
          ? new TunError(TunErrorCode.HANDLER, `${this.name}: the packet handler threw`, { cause: value })
          : new TunError(TunErrorCode.IO, `${this.name}: ${String(syscall)} failed with ${String(value)}; reading stopped`, {
              errno: String(value),
              syscall,
            });
      this.#report(err);
    };
    this.#onBatch = onBatch;
    this.#onNativeError = onError;
    n.setup(h, batch.buffer, batch.offsets, batch.lengths, o.batchSize, o.slotSize, o.headroom, this.#onBatch, this.#onNativeError);
    this.#mtu = n.getMtu(name);
  }

  #report(err: TunError): void {
    const eh = this.#errorHandler;
    if (eh !== null) {
      eh(err);
      return;
    }
    // No error handler: warn once per device, keep counting (no log line per packet).
    if (!this.#warned) {
      this.#warned = true;
      process.emitWarning(`${err.message} (further errors of ${this.name} are only counted)`, {
        code: err.code,
        detail: err.cause instanceof Error ? err.cause.stack : undefined,
      });
    }
  }

  #live(): void {
    if (this.#closed) throw new TunError(TunErrorCode.CLOSED, `${this.name} is closed`);
  }

  get mtu(): number {
    return this.#mtu;
  }

  get closed(): boolean {
    return this.#closed;
  }

  setMtu(mtu: number): void {
    this.#live();
    checkMtu(mtu, this.slotSize, this.headroom);
    try {
      this.#n.setMtu(this.name, mtu);
    } catch (e) {
      throw fromNative(e, `set MTU ${mtu} on ${this.name}`);
    }
    this.#mtu = mtu;
  }

  up(): void {
    this.#setUp(true);
  }

  down(): void {
    this.#setUp(false);
  }

  #setUp(on: boolean): void {
    this.#live();
    try {
      this.#n.setUp(this.name, on);
    } catch (e) {
      throw fromNative(e, `bring ${this.name} ${on ? 'up' : 'down'}`);
    }
  }

  addAddress(cidr: string): Promise<void> {
    if (this.#closed) return Promise.reject(new TunError(TunErrorCode.CLOSED, `${this.name} is closed`));
    return configure.applyOne(this.name, 'addr add', cidr);
  }

  addRoute(cidr: string): Promise<void> {
    if (this.#closed) return Promise.reject(new TunError(TunErrorCode.CLOSED, `${this.name} is closed`));
    return configure.applyOne(this.name, 'route add', cidr);
  }

  removeRoute(cidr: string): Promise<void> {
    if (this.#closed) return Promise.reject(new TunError(TunErrorCode.CLOSED, `${this.name} is closed`));
    return configure.applyOne(this.name, 'route del', cidr);
  }

  async addRoutes(cidrs: readonly string[]): Promise<(TunError | null)[]> {
    if (this.#closed) throw new TunError(TunErrorCode.CLOSED, `${this.name} is closed`);
    return configure.applyNetlink(this.name, cidrs.map((cidr) => ({ kind: 'route add' as const, cidr })));
  }

  onPackets(handler: PacketHandler | null): void {
    this.#live();
    if (handler !== null && typeof handler !== 'function') {
      throw new TypeError('onPackets: handler must be a function or null');
    }
    this.#handler = handler;
    this.#n.poll(this.#h, handler !== null);
  }

  onError(handler: TunErrorHandler | null): void {
    if (handler !== null && typeof handler !== 'function') {
      throw new TypeError('onError: handler must be a function or null');
    }
    this.#errorHandler = handler;
  }

  write(buf: Uint8Array, off: number, len: number): boolean {
    if (this.#closed) this.#live();
    return this.#n.write(this.#h, buf, off, len) === 1;
  }

  writeBatch(buf: Uint8Array, offsets: Int32Array, lengths: Int32Array, count: number): number {
    if (this.#closed) this.#live();
    return this.#n.writeBatch(this.#h, buf, offsets, lengths, count);
  }

  expressWriter(): NativeHook {
    this.#live();
    return { external: this.#n.expressWriter(this.#h), owner: this.#h };
  }

  setExpressSender(sender: NativeHook | null): void {
    this.#live();
    if (sender === null) this.#n.setExpressSender(this.#h, null);
    else this.#n.setExpressSender(this.#h, sender.external, sender.owner);
  }

  ref(): this {
    this.#live();
    this.#n.ref(this.#h, true);
    return this;
  }

  unref(): this {
    this.#live();
    this.#n.ref(this.#h, false);
    return this;
  }

  stats(): TunStats {
    const s = this.#statsBuf;
    this.#n.stats(this.#h, s);
    return {
      packetsIn: s[STAT_INDEX.packetsIn],
      bytesIn: s[STAT_INDEX.bytesIn],
      batchesIn: s[STAT_INDEX.batchesIn],
      packetsOut: s[STAT_INDEX.packetsOut],
      bytesOut: s[STAT_INDEX.bytesOut],
      writeDropped: s[STAT_INDEX.writeDropped],
      writeErrors: s[STAT_INDEX.writeErrors],
      readOversize: s[STAT_INDEX.readOversize],
      handlerErrors: s[STAT_INDEX.handlerErrors],
      offloadSuperIn: s[STAT_INDEX.offloadSuperIn],
      offloadSegmentsIn: s[STAT_INDEX.offloadSegmentsIn],
      offloadChecksumsIn: s[STAT_INDEX.offloadChecksumsIn],
      offloadInvalidIn: s[STAT_INDEX.offloadInvalidIn],
      offloadSuperOut: s[STAT_INDEX.offloadSuperOut],
      offloadSegmentsOut: s[STAT_INDEX.offloadSegmentsOut],
    };
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#handler = null;
    this.#n.close(this.#h);
  }
}

/**
 * Opens a TUN (default) or TAP device, without a packet-information header,
 * non-blocking and close-on-exec, and sets the MTU if one is given. The
 * device is not up and has no address: call `up()`, `addAddress()`,
 * `addRoute()`. Nothing is read until `onPackets()` sets a handler.
 *
 * Throws TunError: ERR_TUN_CONFIG (bad options), ERR_TUN_PERMISSION (no
 * CAP_NET_ADMIN), ERR_TUN_UNAVAILABLE (no /dev/net/tun, or addon not built),
 * ERR_TUN_BUSY (name taken), ERR_TUN_IO (other errno). On any error nothing
 * stays open.
 */
export function openTun(options: TunOptions = {}): TunDevice {
  let o = resolveTunOptions(options);
  const n = native();
  let opened: [NativeHandle, string];
  const flagsOf = (r: ResolvedTunOptions): number =>
    (r.mode === 'tap' ? OPEN_TAP : 0) | (r.offload ? OPEN_OFFLOAD | (r.coalesceWrites ? 0 : OPEN_NO_COALESCE) : 0);
  try {
    try {
      opened = n.open(o.name, flagsOf(o));
    } catch (e) {
      // Offloads by default only: a kernel without them gets a plain device.
      const sc = (e as SysError | null)?.syscall;
      if (!o.offload || options.offload !== undefined || (sc !== 'TUNSETOFFLOAD' && sc !== 'TUNSETVNETHDRSZ')) throw e;
      o = { ...o, offload: false };
      opened = n.open(o.name, flagsOf(o));
    }
  } catch (e) {
    throw fromNative(e, `open ${o.mode} device${o.name ? ` "${o.name}"` : ''}`);
  }
  const [h, name] = opened;
  try {
    const dev = new NativeTunDevice(n, h, name, o);
    if (o.mtu !== undefined) dev.setMtu(o.mtu);
    return dev;
  } catch (e) {
    n.close(h);
    if (e instanceof TunError) throw e;
    throw fromNative(e, `configure ${name}`);
  }
}
