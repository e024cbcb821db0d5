/**
 * Helpers for the data-plane tests: IP packet builders, a pair of
 * matching session parameters, and small waiting utilities.
 */
import { randomBytes } from 'node:crypto';
import { internetChecksum } from '../src/icmp.js';
import { parseIp } from '../src/ip-address.js';
import type { SessionParams } from '../src/peer-table.js';

/** An IPv4 UDP packet from `src` to `dst` with `payload` bytes (valid header checksum). */
export function ipv4Packet(src: string, dst: string, payload: Uint8Array | number, proto = 17): Buffer {
  const body = typeof payload === 'number' ? randomBytes(payload) : Buffer.from(payload);
  const p = Buffer.alloc(20 + body.length);
  p[0] = 0x45;
  p.writeUInt16BE(p.length, 2);
  p[8] = 64;
  p[9] = proto;
  p.set(parseIp(src)!.bytes, 12);
  p.set(parseIp(dst)!.bytes, 16);
  p.writeUInt16BE(internetChecksum(p, 0, 20), 10);
  body.copy(p, 20);
  return p;
}

/** An IPv6 packet (next header `nh`) from `src` to `dst`. */
export function ipv6Packet(src: string, dst: string, payload: Uint8Array | number, nh = 17): Buffer {
  const body = typeof payload === 'number' ? randomBytes(payload) : Buffer.from(payload);
  const p = Buffer.alloc(40 + body.length);
  p[0] = 0x60;
  p.writeUInt16BE(body.length, 4);
  p[6] = nh;
  p[7] = 64;
  p.set(parseIp(src)!.bytes, 8);
  p.set(parseIp(dst)!.bytes, 24);
  body.copy(p, 40);
  return p;
}

/** A compressible payload (text-like). */
export function compressible(n: number): Buffer {
  const s = Buffer.from('GET /index.html HTTP/1.1\r\nHost: example.test\r\nAccept: */*\r\n\r\n');
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = s[i % s.length];
  return b;
}

/** Matching session parameters for both ends of a pair (A's tx = B's rx). */
export function sessionPair(
  opts: {
    cipher?: SessionParams['cipher'];
    compression?: SessionParams['compression'];
    indexA?: number;
    indexB?: number;
    epochA?: number;
    epochB?: number;
  } = {},
): { a: SessionParams; b: SessionParams } {
  const kAB = randomBytes(32);
  const kBA = randomBytes(32);
  const cipher = opts.cipher ?? 'aes-256-gcm';
  const compression = opts.compression ?? { algo: 'none' as const, level: 0 };
  const ia = opts.indexA ?? 0x1000 + Math.floor(Math.random() * 0xffff);
  const ib = opts.indexB ?? 0x20000 + Math.floor(Math.random() * 0xffff);
  return {
    a: { localIndex: ia, remoteIndex: ib, cipher, txKey: kAB, rxKey: kBA, txEpoch: opts.epochA ?? 1, rxEpochFloor: 0, compression },
    b: { localIndex: ib, remoteIndex: ia, cipher, txKey: kBA, rxKey: kAB, txEpoch: opts.epochB ?? 1, rxEpochFloor: 0, compression },
  };
}

/** Waits until `cond()` is true (polling every 2 ms), or throws after `ms`. */
export async function waitFor(cond: () => boolean, ms = 20_000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** Lets pending setImmediate callbacks run. */
export function tick(): Promise<void> {
  return new Promise((r) => setImmediate(r));
}
