/**
 * IP address and prefix parsing for configuration (control path: these
 * allocate and throw). The hot path never parses text; it reads addresses
 * straight out of packet buffers.
 */
import { DataplaneError } from './errors.js';

/** An address family: 4 or 6. */
export type Family = 4 | 6;

/** A parsed CIDR prefix. `bytes` has 4 (IPv4) or 16 (IPv6) bytes, host bits zero. */
export interface Prefix {
  readonly family: Family;
  readonly bytes: Uint8Array;
  readonly length: number;
  /** Canonical text, e.g. `10.1.0.0/16`, `fd00::/64`. */
  readonly text: string;
}

/**
 * A strict dotted quad (four decimal parts 0-255, no leading zeros) as an
 * unsigned 32-bit number, or -1. A scanner, not `split` and a regular
 * expression per part: every record of a 10 000-node list passes here for
 * its endpoint and its subnets at start (issue 19).
 */
function ipv4Value(text: string): number {
  const n = text.length;
  if (n < 7 || n > 15) return -1;
  let value = 0;
  let part = 0;
  let digits = 0;
  let parts = 0;
  for (let i = 0; i <= n; i++) {
    const c = i < n ? text.charCodeAt(i) : 0x2e; // the end closes the last part like a '.'
    if (c >= 0x30 && c <= 0x39) {
      if (digits > 0 && part === 0) return -1; // leading zero
      part = part * 10 + (c - 0x30);
      if (++digits > 3 || part > 255) return -1;
    } else if (c === 0x2e) {
      if (digits === 0 || ++parts > 4) return -1;
      value = value * 256 + part;
      part = 0;
      digits = 0;
    } else {
      return -1;
    }
  }
  return parts === 4 ? value : -1;
}

function parseIPv4(text: string): Uint8Array | null {
  const v = ipv4Value(text);
  if (v < 0) return null;
  const out = new Uint8Array(4);
  out[0] = v >>> 24;
  out[1] = (v >>> 16) & 0xff;
  out[2] = (v >>> 8) & 0xff;
  out[3] = v & 0xff;
  return out;
}

function parseIPv6(text: string): Uint8Array | null {
  if (text.length === 0 || text.includes('%')) return null;
  const halves = text.split('::');
  if (halves.length > 2) return null;
  const groups: number[] = [];
  const tail: number[] = [];
  const parseSide = (side: string, into: number[], allowV4: boolean): boolean => {
    if (side === '') return true;
    const items = side.split(':');
    for (let i = 0; i < items.length; i++) {
      const it = items[i];
      if (allowV4 && i === items.length - 1 && it.includes('.')) {
        const v4 = parseIPv4(it);
        if (v4 === null) return false;
        into.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
        continue;
      }
      if (!/^[0-9a-fA-F]{1,4}$/.test(it)) return false;
      into.push(parseInt(it, 16));
    }
    return true;
  };
  if (halves.length === 1) {
    if (!parseSide(halves[0], groups, true) || groups.length !== 8) return null;
  } else {
    if (!parseSide(halves[0], groups, false) || !parseSide(halves[1], tail, true)) return null;
    if (groups.length + tail.length > 7) return null;
    while (groups.length + tail.length < 8) groups.push(0);
    groups.push(...tail);
  }
  const out = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    out[2 * i] = groups[i] >>> 8;
    out[2 * i + 1] = groups[i] & 0xff;
  }
  return out;
}

/**
 * Parses a numeric IPv4 or IPv6 address (no zone). Returns null when
 * `text` is not one; never throws.
 */
export function parseIp(text: string): { family: Family; bytes: Uint8Array } | null {
  if (text.includes(':')) {
    const b = parseIPv6(text);
    return b === null ? null : { family: 6, bytes: b };
  }
  const b = parseIPv4(text);
  return b === null ? null : { family: 4, bytes: b };
}

/** Formats 4 or 16 address bytes as text (IPv6 in RFC 5952 compressed form). */
export function formatIp(bytes: Uint8Array): string {
  if (bytes.length === 4) return `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`;
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push((bytes[2 * i] << 8) | bytes[2 * i + 1]);
  // longest run of ≥ 2 zero groups
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (a: number[]): string => a.map((x) => x.toString(16)).join(':');
  if (bestStart < 0) return hex(g);
  return `${hex(g.slice(0, bestStart))}::${hex(g.slice(bestStart + bestLen))}`;
}

/**
 * Parses `addr/len` (or a bare address = host prefix). Rejects non-numeric
 * addresses, out-of-range lengths and set host bits with a
 * `DataplaneError` `ERR_DP_CONFIG`.
 */
export function parsePrefix(cidr: string): Prefix {
  if (typeof cidr !== 'string') throw new DataplaneError('ERR_DP_CONFIG', `subnet must be a string, got ${typeof cidr}`);
  const slash = cidr.indexOf('/');
  const addrText = slash < 0 ? cidr : cidr.slice(0, slash);
  const ip = parseIp(addrText);
  if (ip === null) throw new DataplaneError('ERR_DP_CONFIG', `subnet ${JSON.stringify(cidr)}: not a numeric IPv4/IPv6 address`);
  const max = ip.family === 4 ? 32 : 128;
  let length = max;
  if (slash >= 0) {
    const lt = cidr.slice(slash + 1);
    if (!/^(0|[1-9][0-9]{0,2})$/.test(lt) || Number(lt) > max) {
      throw new DataplaneError('ERR_DP_CONFIG', `subnet ${JSON.stringify(cidr)}: prefix length must be 0..${max}`);
    }
    length = Number(lt);
  }
  for (let bit = length; bit < max; bit++) {
    if ((ip.bytes[bit >> 3] >> (7 - (bit & 7))) & 1) {
      throw new DataplaneError('ERR_DP_CONFIG', `subnet ${JSON.stringify(cidr)}: host bits set (did you mean a network address?)`);
    }
  }
  return { family: ip.family, bytes: ip.bytes, length, text: `${formatIp(ip.bytes)}/${length}` };
}

/** Bytes per endpoint key: 16 address bytes (IPv4 as `::ffff:a.b.c.d`) + port (big endian). */
export const ENDPOINT_KEY_LEN = 18;

/**
 * Writes the 18-byte endpoint key of `host:port` (the layout of
 * `DatagramBatch.sources`) into `out[off..]`. Throws `ERR_DP_CONFIG` on a
 * non-numeric host or a bad port.
 */
export function encodeEndpoint(host: string, port: number, out: Uint8Array, off = 0): void {
  const ip = parseIp(host);
  if (ip === null) throw new DataplaneError('ERR_DP_CONFIG', `endpoint host ${JSON.stringify(host)} is not a numeric IP address`);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new DataplaneError('ERR_DP_CONFIG', `endpoint port ${String(port)} must be 1..65535`);
  }
  if (ip.family === 4) {
    out.fill(0, off, off + 10);
    out[off + 10] = 0xff;
    out[off + 11] = 0xff;
    out.set(ip.bytes, off + 12);
  } else {
    out.set(ip.bytes, off);
  }
  out[off + 16] = port >>> 8;
  out[off + 17] = port & 0xff;
}

/** Decodes an 18-byte endpoint key: v4-mapped addresses come back as dotted IPv4. */
export function decodeEndpoint(buf: Uint8Array, off: number): { host: string; port: number } {
  let mapped = buf[off + 10] === 0xff && buf[off + 11] === 0xff;
  for (let i = 0; i < 10 && mapped; i++) if (buf[off + i] !== 0) mapped = false;
  const host = mapped ? formatIp(buf.subarray(off + 12, off + 16)) : formatIp(buf.subarray(off, off + 16));
  return { host, port: (buf[off + 16] << 8) | buf[off + 17] };
}
