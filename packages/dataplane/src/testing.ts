/**
 * @cluevpn/dataplane/testing: an in-memory UDP backend for unit tests of
 * the data plane and of packages built on it. Sockets on one
 * {@link MemoryUdpNetwork} reach each other by port (the host is recorded
 * but not routed); every datagram sent is also recorded as a copy, and
 * tests can inject arbitrary datagrams from arbitrary sources.
 */
import { SOURCE_LEN, type BatchUdpSocket, type DatagramBatch, type UdpBackend, type UdpOpenOptions } from './backend.js';
import { DataplaneError } from './errors.js';
import { encodeEndpoint } from './ip-address.js';

/** A datagram recorded by the network. */
export interface SentDatagram {
  fromPort: number;
  host: string;
  port: number;
  data: Buffer;
}

/** An in-memory UDP network that is also a {@link UdpBackend}. */
export interface MemoryUdpNetwork extends UdpBackend {
  /** Copies of every datagram handed to `sendBatch`, oldest first (tests may clear it). */
  readonly sent: SentDatagram[];
  /** When false, sent datagrams are only recorded, not delivered (default true). */
  autoDeliver: boolean;
  /**
   * Path MTU of the network (outer IPv4 packet bytes: datagram + 28; 0 =
   * none, the default): a larger datagram is recorded but not delivered,
   * as a router with DF packets drops it (path-MTU tests, src/pmtu.ts).
   */
  pathMtu: number;
  /**
   * Delivers `datagrams` to the socket bound on `port` as if they came from
   * `from` (default `127.0.0.1:9`), synchronously, in batches of at most
   * the socket's batch size. Datagrams longer than a slot arrive cut to the
   * slot, with their full length reported (as a kernel with MSG_TRUNC would).
   * Returns false when no socket is bound there.
   */
  deliver(port: number, datagrams: readonly Uint8Array[], from?: { host: string; port: number }): boolean;
}

class MemorySocket implements BatchUdpSocket {
  readonly port: number;
  handler: ((b: DatagramBatch) => void) | null = null;
  readonly batch: DatagramBatch;
  readonly batchSize: number;
  readonly room: number;
  private readonly endpoints: Array<{ host: string; port: number } | undefined> = [];
  closed = false;
  private pending: Array<{ data: Buffer; from: { host: string; port: number } }> = [];
  private scheduled = false;

  constructor(
    private readonly net: MemoryNet,
    port: number,
    o: UdpOpenOptions,
  ) {
    this.port = port;
    this.batchSize = o.batchSize ?? 64;
    const slot = o.slotSize ?? 2048;
    const headroom = o.headroom ?? 64;
    this.room = slot - headroom;
    this.batch = {
      count: 0,
      buffer: Buffer.alloc(this.batchSize * slot),
      offsets: new Int32Array(this.batchSize).map((_, i) => i * slot + headroom),
      lengths: new Int32Array(this.batchSize),
      sources: Buffer.alloc(this.batchSize * SOURCE_LEN),
    };
  }

  setEndpoint(slot: number, host: string, port: number): void {
    if (this.closed) throw new DataplaneError('ERR_DP_CLOSED', 'socket closed');
    encodeEndpoint(host, port, Buffer.alloc(SOURCE_LEN));
    this.endpoints[slot] = { host, port };
  }
  clearEndpoint(slot: number): void {
    this.endpoints[slot] = undefined;
  }
  onDatagrams(handler: (batch: DatagramBatch) => void): void {
    this.handler = handler;
  }
  sendBatch(buf: Buffer, count: number, offs: Int32Array, lens: Int32Array, slots: Int32Array): number {
    if (this.closed) return 0;
    let n = 0;
    for (let i = 0; i < count; i++) {
      const ep = this.endpoints[slots[i]];
      if (ep === undefined) continue;
      const data = Buffer.from(buf.subarray(offs[i], offs[i] + lens[i]));
      this.net.sent.push({ fromPort: this.port, host: ep.host, port: ep.port, data });
      const fits = this.net.pathMtu === 0 || data.length + 28 <= this.net.pathMtu;
      if (this.net.autoDeliver && fits) this.net.queue(ep.port, data, { host: '127.0.0.1', port: this.port });
      n++;
    }
    return n;
  }
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.net.sockets.delete(this.port);
  }

  enqueue(data: Buffer, from: { host: string; port: number }): void {
    this.pending.push({ data, from });
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => {
        this.scheduled = false;
        const p = this.pending;
        this.pending = [];
        this.deliverNow(p);
      });
    }
  }

  deliverNow(items: Array<{ data: Uint8Array; from: { host: string; port: number } }>): void {
    for (let start = 0; start < items.length && !this.closed; start += this.batchSize) {
      const b = this.batch;
      const end = Math.min(items.length, start + this.batchSize);
      b.count = end - start;
      for (let i = start; i < end; i++) {
        const k = i - start;
        const d = items[i].data;
        const len = Math.min(d.length, this.room);
        b.buffer.set(d.subarray(0, len), b.offsets[k]);
        b.lengths[k] = d.length;
        encodeEndpoint(items[i].from.host, items[i].from.port, b.sources, k * SOURCE_LEN);
      }
      if (this.handler !== null) this.handler(b);
    }
  }
}

class MemoryNet implements MemoryUdpNetwork {
  readonly sent: SentDatagram[] = [];
  autoDeliver = true;
  pathMtu = 0;
  readonly sockets = new Map<number, MemorySocket>();
  private nextPort = 40000;

  open(o: UdpOpenOptions): BatchUdpSocket {
    let port = o.port;
    if (port === 0) while (this.sockets.has((port = this.nextPort++)));
    if (this.sockets.has(port)) throw new DataplaneError('ERR_DP_BIND', `port ${port} in use`, { errno: 'EADDRINUSE' });
    const s = new MemorySocket(this, port, o);
    this.sockets.set(port, s);
    return s;
  }

  queue(port: number, data: Buffer, from: { host: string; port: number }): void {
    this.sockets.get(port)?.enqueue(data, from);
  }

  deliver(port: number, datagrams: readonly Uint8Array[], from = { host: '127.0.0.1', port: 9 }): boolean {
    const s = this.sockets.get(port);
    if (s === undefined) return false;
    s.deliverNow(datagrams.map((data) => ({ data, from })));
    return true;
  }
}

/** Creates an empty in-memory UDP network. */
export function createMemoryUdpNetwork(): MemoryUdpNetwork {
  return new MemoryNet();
}
