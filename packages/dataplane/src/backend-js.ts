/**
 * The pure-JavaScript backends: `createCipheriv`/`createDecipheriv` per
 * packet and a `dgram` socket. Portable fallback and the anchor the
 * benchmarks compare the native backend against; it allocates per packet
 * (Node's cipher objects and output buffers, one copy per sent datagram),
 * which is exactly the cost the native backend exists to avoid.
 */
import { createCipheriv, createDecipheriv, createSecretKey, type KeyObject } from 'node:crypto';
import { createRequire } from 'node:module';
import type * as Dgram from 'node:dgram';
import { isIPv4 } from 'node:net';
import {
  CipherId,
  HEADER_LEN,
  NONCE_OFFSET,
  SOURCE_LEN,
  TAG_LEN,
  type BatchUdpSocket,
  type CipherIdValue,
  type CryptoBackend,
  type DatagramBatch,
  type UdpBackend,
  type UdpOpenOptions,
  DEFAULT_SOCKET_BUFFER,
} from './backend.js';
import { DataplaneError } from './errors.js';
import { encodeEndpoint, parseIp } from './ip-address.js';

const algoName = ['aes-256-gcm', 'chacha20-poly1305'] as const;

interface JsKey {
  algo: (typeof algoName)[number];
  key: KeyObject;
}

/** Crypto backend over `node:crypto`, one cipher object per packet. */
export function jsCryptoBackend(): CryptoBackend {
  const keys = new Map<number, JsKey>();
  let next = 1;
  return {
    createKey(cipher: CipherIdValue, key: Buffer): number {
      if (cipher !== CipherId.AES_256_GCM && cipher !== CipherId.CHACHA20_POLY1305) {
        throw new DataplaneError('ERR_DP_KEY', `unknown cipher id ${String(cipher)}`);
      }
      if (!Buffer.isBuffer(key) || key.length !== 32) throw new DataplaneError('ERR_DP_KEY', 'keys must be 32 bytes');
      const h = next++;
      keys.set(h, { algo: algoName[cipher], key: createSecretKey(Buffer.from(key)) });
      return h;
    },
    destroyKey(handle: number): void {
      keys.delete(handle);
    },
    sealBatch(buf, count, offs, lens, handles, macOnly): void {
      for (let i = 0; i < count; i++) {
        const k = keys.get(handles[i]);
        const off = offs[i];
        const len = lens[i];
        if (k === undefined) {
          // Unknown handle: emit garbage that can never authenticate rather than plaintext.
          buf.fill(0, off + HEADER_LEN, off + HEADER_LEN + len + TAG_LEN);
          continue;
        }
        const c = createCipheriv(k.algo as 'aes-256-gcm', k.key, buf.subarray(off + NONCE_OFFSET, off + HEADER_LEN), {
          authTagLength: TAG_LEN,
        });
        // authenticate only: header and payload are the associated data, nothing is encrypted
        const mac = macOnly !== undefined && macOnly[i] === 1;
        c.setAAD(buf.subarray(off, off + HEADER_LEN + (mac ? len : 0)));
        if (!mac) c.update(buf.subarray(off + HEADER_LEN, off + HEADER_LEN + len)).copy(buf, off + HEADER_LEN);
        c.final();
        c.getAuthTag().copy(buf, off + HEADER_LEN + len);
      }
    },
    openBatch(buf, count, offs, lens, handles, ok, macOnly): void {
      for (let i = 0; i < count; i++) {
        ok[i] = 0;
        const k = keys.get(handles[i]);
        const off = offs[i];
        const len = lens[i] - HEADER_LEN - TAG_LEN;
        if (k === undefined || len < 0) continue;
        const d = createDecipheriv(k.algo as 'aes-256-gcm', k.key, buf.subarray(off + NONCE_OFFSET, off + HEADER_LEN), {
          authTagLength: TAG_LEN,
        });
        const mac = macOnly !== undefined && macOnly[i] === 1;
        d.setAAD(buf.subarray(off, off + HEADER_LEN + (mac ? len : 0)));
        d.setAuthTag(buf.subarray(off + HEADER_LEN + len, off + HEADER_LEN + len + TAG_LEN));
        const pt = mac ? null : d.update(buf.subarray(off + HEADER_LEN, off + HEADER_LEN + len));
        try {
          d.final();
        } catch {
          // final() throws exactly when the tag does not authenticate: that is a
          // verdict, not an error. ok[i] stays 0; the caller counts 'auth-failed'.
          continue;
        }
        if (pt !== null) pt.copy(buf, off + HEADER_LEN);
        ok[i] = 1;
      }
    },
  };
}

/** UDP backend over `node:dgram`; batches are gathered per event-loop turn. */
export function jsUdpBackend(): UdpBackend {
  return {
    open(options: UdpOpenOptions): BatchUdpSocket {
      return new JsUdpSocket(options);
    },
  };
}

class JsUdpSocket implements BatchUdpSocket {
  port = 0;
  private readonly socket: Dgram.Socket;
  private readonly v6: boolean;
  private readonly hosts: Array<string | undefined> = [];
  private readonly ports: number[] = [];
  private handler: ((b: DatagramBatch) => void) | null = null;
  private readonly batch: DatagramBatch;
  private readonly batchSize: number;
  private readonly slotSize: number;
  private readonly headroom: number;
  private flushScheduled = false;
  private closed = false;
  private lastSourceText = '';
  private readonly lastSource = Buffer.alloc(SOURCE_LEN);
  /** Send errors reported asynchronously by the socket (counted, not thrown). */
  sendErrors = 0;
  private readonly flushBound = (): void => this.flush();

  constructor(o: UdpOpenOptions) {
    this.batchSize = o.batchSize ?? 64;
    this.slotSize = o.slotSize ?? 2048;
    this.headroom = o.headroom ?? 64;
    const bind = o.bindAddress ?? '::';
    const ip = parseIp(bind);
    if (ip === null) throw new DataplaneError('ERR_DP_CONFIG', `bindAddress ${JSON.stringify(bind)} is not a numeric IP address`);
    this.v6 = ip.family === 6;
    // Loaded here: the default (native) backend never needs node:dgram, ~2 ms of every start.
    const dgram = createRequire(import.meta.url)('node:dgram') as typeof Dgram;
    this.socket = dgram.createSocket({ type: this.v6 ? 'udp6' : 'udp4', ipv6Only: false });
    this.batch = {
      count: 0,
      buffer: Buffer.alloc(this.batchSize * this.slotSize),
      offsets: new Int32Array(this.batchSize),
      lengths: new Int32Array(this.batchSize),
      sources: Buffer.alloc(this.batchSize * SOURCE_LEN),
    };
    for (let i = 0; i < this.batchSize; i++) this.batch.offsets[i] = i * this.slotSize + this.headroom;
    this.socket.on('message', (msg: Buffer, rinfo: Dgram.RemoteInfo) => this.onMessage(msg, rinfo));
    // dgram binds asynchronously: `ready` settles once bound (the data plane
    // awaits it). Errors after that are asynchronous send failures: counted.
    this.ready = new Promise<void>((resolve, reject) => {
      const onBindError = (err: NodeJS.ErrnoException): void => {
        this.closed = true;
        this.socket.close();
        reject(new DataplaneError('ERR_DP_BIND', `cannot bind UDP [${bind}]:${o.port}: ${err.code ?? err.message}`, { cause: err, errno: err.code }));
      };
      this.socket.once('error', onBindError);
      this.socket.bind({ port: o.port, address: bind, exclusive: true }, () => {
        this.socket.off('error', onBindError);
        this.socket.on('error', () => {
          this.sendErrors++;
        });
        this.port = this.socket.address().port;
        const buf = o.socketBuffer ?? DEFAULT_SOCKET_BUFFER;
        if (buf > 0) {
          this.socket.setRecvBufferSize(buf);
          this.socket.setSendBufferSize(buf);
        }
        resolve();
      });
    });
  }

  /** Settles when the socket is bound; rejects with `ERR_DP_BIND`. */
  readonly ready: Promise<void>;

  setEndpoint(slot: number, host: string, port: number): void {
    const ip = parseIp(host);
    if (ip === null) throw new DataplaneError('ERR_DP_CONFIG', `endpoint ${JSON.stringify(host)} is not numeric`);
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new DataplaneError('ERR_DP_CONFIG', `bad port ${port}`);
    this.hosts[slot] = this.v6 && isIPv4(host) ? `::ffff:${host}` : host;
    this.ports[slot] = port;
  }

  clearEndpoint(slot: number): void {
    this.hosts[slot] = undefined;
  }

  onDatagrams(handler: (batch: DatagramBatch) => void): void {
    this.handler = handler;
  }

  sendBatch(buf: Buffer, count: number, offs: Int32Array, lens: Int32Array, slots: Int32Array): number {
    if (this.closed) return 0;
    let n = 0;
    for (let i = 0; i < count; i++) {
      const host = this.hosts[slots[i]];
      if (host === undefined) continue;
      // dgram sends asynchronously: copy so the caller may reuse its buffer at once.
      const copy = Buffer.allocUnsafe(lens[i]);
      buf.copy(copy, 0, offs[i], offs[i] + lens[i]);
      this.socket.send(copy, this.ports[slots[i]], host);
      n++;
    }
    return n;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.close();
  }

  private onMessage(msg: Buffer, rinfo: Dgram.RemoteInfo): void {
    if (this.closed) return;
    const b = this.batch;
    const i = b.count;
    const len = Math.min(msg.length, this.slotSize - this.headroom);
    msg.copy(b.buffer, b.offsets[i], 0, len);
    b.lengths[i] = msg.length > len ? this.slotSize : len; // an over-long datagram shows up as oversize
    if (rinfo.address !== this.lastSourceText) {
      encodeEndpoint(rinfo.address, rinfo.port === 0 ? 1 : rinfo.port, this.lastSource, 0);
      this.lastSourceText = rinfo.address;
    }
    this.lastSource.copy(b.sources, i * SOURCE_LEN, 0, 16);
    b.sources[i * SOURCE_LEN + 16] = rinfo.port >>> 8;
    b.sources[i * SOURCE_LEN + 17] = rinfo.port & 0xff;
    b.count = i + 1;
    if (b.count === this.batchSize) this.flush();
    else if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.flushBound);
    }
  }

  private flush(): void {
    this.flushScheduled = false;
    const b = this.batch;
    if (b.count === 0 || this.handler === null) {
      b.count = 0;
      return;
    }
    try {
      this.handler(b);
    } finally {
      b.count = 0;
    }
  }
}
