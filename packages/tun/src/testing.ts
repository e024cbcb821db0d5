/**
 * @cluevpn/tun/testing: an in-memory TunDevice for unit tests of other
 * packages. It follows the TunDevice contract (same option validation, same
 * batch layout and ownership, same errors) without a kernel:
 *   - `inject()` plays the kernel sending packets into the device; they are
 *     delivered asynchronously (setImmediate) in batches of ≤ batchSize, or
 *     at once with `flush()`;
 *   - everything written is recorded as copies in `written`.
 */
import { TunError, TunErrorCode } from './errors.js';
import { checkMtu, resolveTunOptions } from './options.js';
import { parseCidr } from './configure.js';
import type {
  PacketBatch,
  PacketHandler,
  TunDevice,
  TunErrorHandler,
  TunMode,
  TunOptions,
  TunStats,
} from './types.js';

/** Options of {@link createMemoryTun}: TunOptions plus fake-only knobs. */
export interface MemoryTunOptions extends TunOptions {
  /** Packets queued while nobody reads before further ones are dropped (the kernel's txqueuelen, default 500). */
  queueLimit?: number;
}

/** A TunDevice living in memory, with hooks to play the kernel. */
export interface MemoryTun extends TunDevice {
  /**
   * Queues packets as if the kernel routed them into the device (copied).
   * Returns how many were queued; beyond `queueLimit` they are dropped (as
   * the kernel would). Throws RangeError (ERR_OUT_OF_RANGE) for a packet
   * larger than the MTU (the kernel never hands such a packet to a TUN),
   * ERR_TUN_CLOSED after close.
   */
  inject(packets: Uint8Array | readonly Uint8Array[]): number;
  /** Delivers every queued packet now (if a handler is set). Returns the number of batches delivered. */
  flush(): number;
  /** Packets waiting for a handler. */
  readonly queued: number;
  /** Packets dropped by `inject` because the queue was full. */
  readonly injectDropped: number;
  /** Copies of every packet accepted by write/writeBatch, oldest first. Test code may clear it. */
  readonly written: Buffer[];
  /** Returns `written` and empties it. */
  takeWritten(): Buffer[];
  /** Makes the next `n` packet writes fail with EAGAIN semantics (counted as writeDropped). */
  dropNextWrites(n: number): void;
  /** Whether `up()` was called last (vs `down()`). */
  readonly isUp: boolean;
  /** Addresses added with addAddress, normalised `addr/len`. */
  readonly addresses: readonly string[];
  /** Routes added with addRoute, normalised `addr/len`. */
  readonly routes: readonly string[];
}

let fakeCounter = 0;

class MemoryTunDevice implements MemoryTun {
  readonly name: string;
  readonly mode: TunMode;
  readonly batchSize: number;
  readonly slotSize: number;
  readonly headroom: number;
  /** Always false: the fake has no kernel offloads (the option is accepted and ignored). */
  readonly offload = false;
  readonly written: Buffer[] = [];
  readonly addresses: string[] = [];
  readonly routes: string[] = [];
  #mtu: number;
  #closed = false;
  #up = false;
  #refed = true;
  #handler: PacketHandler | null = null;
  #errorHandler: TunErrorHandler | null = null;
  #queue: Buffer[] = [];
  readonly #queueLimit: number;
  #injectDropped = 0;
  #dropWrites = 0;
  #delivering = false;
  #immediate: NodeJS.Immediate | null = null;
  readonly #batch: PacketBatch;
  readonly #stats: TunStats = {
    packetsIn: 0,
    bytesIn: 0,
    batchesIn: 0,
    packetsOut: 0,
    bytesOut: 0,
    writeDropped: 0,
    writeErrors: 0,
    readOversize: 0,
    handlerErrors: 0,
    offloadSuperIn: 0,
    offloadSegmentsIn: 0,
    offloadChecksumsIn: 0,
    offloadInvalidIn: 0,
    offloadSuperOut: 0,
    offloadSegmentsOut: 0,
  };

  constructor(opts: MemoryTunOptions) {
    const o = resolveTunOptions(opts);
    const limit = opts.queueLimit ?? 500;
    if (!Number.isInteger(limit) || limit < 0) {
      throw new TunError(TunErrorCode.CONFIG, `queueLimit must be a non-negative integer, got ${String(limit)}`);
    }
    this.#queueLimit = limit;
    this.name = o.name !== '' ? o.name : `${o.mode}${fakeCounter++}`;
    this.mode = o.mode;
    this.batchSize = o.batchSize;
    this.slotSize = o.slotSize;
    this.headroom = o.headroom;
    this.#mtu = o.mtu ?? 1500;
    if (o.mtu === undefined) checkMtu(this.#mtu, o.slotSize, o.headroom);
    this.#batch = {
      count: 0,
      buffer: Buffer.alloc(o.batchSize * o.slotSize),
      offsets: new Int32Array(o.batchSize),
      lengths: new Int32Array(o.batchSize),
    };
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
  get isUp(): boolean {
    return this.#up;
  }
  get queued(): number {
    return this.#queue.length;
  }
  get injectDropped(): number {
    return this.#injectDropped;
  }

  setMtu(mtu: number): void {
    this.#live();
    this.#mtu = checkMtu(mtu, this.slotSize, this.headroom);
  }
  up(): void {
    this.#live();
    this.#up = true;
  }
  down(): void {
    this.#live();
    this.#up = false;
  }
  async addAddress(cidr: string): Promise<void> {
    this.#live();
    const c = parseCidr(cidr).text;
    if (this.addresses.includes(c)) {
      throw new TunError(TunErrorCode.CONFIG, `addr add ${c} dev ${this.name}: file already exists (EEXIST)`, { errno: 'EEXIST', syscall: 'netlink' });
    }
    this.addresses.push(c);
  }
  async addRoute(cidr: string): Promise<void> {
    this.#live();
    const c = parseCidr(cidr).text;
    if (this.routes.includes(c)) {
      throw new TunError(TunErrorCode.CONFIG, `route add ${c} dev ${this.name}: file already exists (EEXIST)`, { errno: 'EEXIST', syscall: 'netlink' });
    }
    this.routes.push(c);
  }
  async removeRoute(cidr: string): Promise<void> {
    this.#live();
    const c = parseCidr(cidr).text;
    const k = this.routes.indexOf(c);
    if (k < 0) throw new TunError(TunErrorCode.CONFIG, `route del ${c} dev ${this.name}: no such process (ESRCH)`, { errno: 'ESRCH', syscall: 'netlink' });
    this.routes.splice(k, 1);
  }
  async addRoutes(cidrs: readonly string[]): Promise<(TunError | null)[]> {
    this.#live();
    const results: (TunError | null)[] = [];
    for (const c of cidrs) results.push(await this.addRoute(c).then(() => null, (e: TunError) => e));
    return results;
  }

  onPackets(handler: PacketHandler | null): void {
    this.#live();
    if (handler !== null && typeof handler !== 'function') {
      throw new TypeError('onPackets: handler must be a function or null');
    }
    this.#handler = handler;
    this.#schedule();
  }
  onError(handler: TunErrorHandler | null): void {
    if (handler !== null && typeof handler !== 'function') {
      throw new TypeError('onError: handler must be a function or null');
    }
    this.#errorHandler = handler;
  }

  inject(packets: Uint8Array | readonly Uint8Array[]): number {
    this.#live();
    const list: readonly Uint8Array[] = packets instanceof Uint8Array ? [packets] : packets;
    const max = this.mode === 'tap' ? this.#mtu + 14 : this.#mtu;
    for (const p of list) {
      if (!(p instanceof Uint8Array) || p.length > max) {
        const e = new RangeError(`inject: packet of ${p?.length} bytes exceeds the MTU ${this.#mtu}`);
        Object.assign(e, { code: 'ERR_OUT_OF_RANGE' });
        throw e;
      }
    }
    let queued = 0;
    for (const p of list) {
      if (this.#queue.length >= this.#queueLimit) {
        this.#injectDropped++;
        continue;
      }
      this.#queue.push(Buffer.from(p));
      queued++;
    }
    this.#schedule();
    return queued;
  }

  #schedule(): void {
    if (this.#immediate !== null || this.#handler === null || this.#queue.length === 0 || this.#closed) return;
    this.#immediate = setImmediate(() => {
      this.#immediate = null;
      this.flush();
    });
    if (!this.#refed) this.#immediate.unref();
  }

  flush(): number {
    if (this.#delivering) return 0; // the handler called flush(): deliveries never nest
    let batches = 0;
    this.#delivering = true;
    try {
      while (this.#handler !== null && this.#queue.length > 0 && !this.#closed) {
        const b = this.#batch;
        let n = 0;
        while (n < this.batchSize && this.#queue.length > 0) {
          const p = this.#queue.shift() as Buffer;
          const off = n * this.slotSize + this.headroom;
          p.copy(b.buffer, off);
          b.offsets[n] = off;
          b.lengths[n] = p.length;
          this.#stats.bytesIn += p.length;
          n++;
        }
        b.count = n;
        this.#stats.packetsIn += n;
        this.#stats.batchesIn++;
        batches++;
        try {
          this.#handler(b);
        } catch (e) {
          this.#stats.handlerErrors++;
          this.#report(new TunError(TunErrorCode.HANDLER, `${this.name}: the packet handler threw`, { cause: e }));
        }
      }
    } finally {
      this.#delivering = false;
    }
    return batches;
  }

  #report(err: TunError): void {
    const eh = this.#errorHandler;
    if (eh === null) return; // counted in handlerErrors
    try {
      eh(err);
    } catch {
      this.#stats.handlerErrors++; // same rule as the native device: counted, never crashes
    }
  }

  #writeOne(buf: Uint8Array, off: number, len: number): boolean {
    if (this.#dropWrites > 0) {
      this.#dropWrites--;
      this.#stats.writeDropped++;
      return false;
    }
    const ver = len > 0 ? buf[off] >> 4 : 0;
    if (this.mode === 'tun' && ver !== 4 && ver !== 6) {
      // The kernel refuses a non-IP packet on a TUN without PI header (EINVAL).
      this.#stats.writeErrors++;
      return false;
    }
    this.written.push(Buffer.from(buf.subarray(off, off + len)));
    this.#stats.packetsOut++;
    this.#stats.bytesOut += len;
    return true;
  }

  write(buf: Uint8Array, off: number, len: number): boolean {
    this.#live();
    checkRange(buf, off, len);
    return this.#writeOne(buf, off, len);
  }

  writeBatch(buf: Uint8Array, offsets: Int32Array, lengths: Int32Array, count: number): number {
    this.#live();
    if (!(offsets instanceof Int32Array) || !(lengths instanceof Int32Array)) {
      throw new TypeError('writeBatch: offsets and lengths must be Int32Array');
    }
    if (!Number.isInteger(count) || count < 0 || count > offsets.length || count > lengths.length) {
      throw rangeError('writeBatch: count exceeds offsets/lengths');
    }
    for (let i = 0; i < count; i++) checkRange(buf, offsets[i], lengths[i]);
    let n = 0;
    for (let i = 0; i < count; i++) if (this.#writeOne(buf, offsets[i], lengths[i])) n++;
    return n;
  }

  takeWritten(): Buffer[] {
    return this.written.splice(0, this.written.length);
  }

  dropNextWrites(n: number): void {
    this.#dropWrites = n;
  }

  ref(): this {
    this.#live();
    this.#refed = true;
    this.#immediate?.ref();
    return this;
  }
  unref(): this {
    this.#live();
    this.#refed = false;
    this.#immediate?.unref();
    return this;
  }
  stats(): TunStats {
    return { ...this.#stats };
  }
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#handler = null;
    this.#queue = [];
    if (this.#immediate !== null) clearImmediate(this.#immediate);
    this.#immediate = null;
  }
}

function rangeError(msg: string): RangeError {
  const e = new RangeError(msg);
  Object.assign(e, { code: 'ERR_OUT_OF_RANGE' });
  return e;
}

function checkRange(buf: Uint8Array, off: number, len: number): void {
  if (!(buf instanceof Uint8Array)) throw new TypeError('buffer must be a Uint8Array');
  if (!Number.isInteger(off) || !Number.isInteger(len) || off < 0 || len < 0 || off + len > buf.length) {
    throw rangeError('packet outside the buffer');
  }
}

/**
 * Creates an in-memory TunDevice (see {@link MemoryTun}). Options are
 * validated exactly like `openTun`'s (ERR_TUN_CONFIG); no privileges needed.
 */
export function createMemoryTun(options: MemoryTunOptions = {}): MemoryTun {
  return new MemoryTunDevice(options);
}

export type { PacketBatch, PacketHandler, TunDevice, TunOptions, TunStats } from './types.js';

/** Packet builders for tests of the packages that move IP packets (valid checksums): see fixtures/packets.ts. */
export { icmp4Echo, icmp6Echo, udp4 } from '../fixtures/packets.js';
