/**
 * Address, DNS-name and CIDR parsing with one canonical text form each.
 * No dependencies: the BNL format must not depend on the operating
 * system's address-family numbers or resolver (ClueVPN fault 8).
 *
 * Canonical forms:
 *  - IPv4: dotted quad, decimal, no leading zeros (`10.0.0.1`).
 *  - IPv6: RFC 5952 (lowercase hex, no leading zeros, longest run of two or
 *    more zero groups compressed to `::`, first one on a tie, no embedded
 *    IPv4 notation, no zone id).
 *  - DNS name: lowercase LDH labels, 1..63 characters each, at most 253 in
 *    total, no trailing dot, last label not all digits.
 *  - CIDR: canonical address, `/`, decimal prefix length, host bits zero.
 */

/** Address family of a host string. */
export type HostKind = 'ipv4' | 'ipv6' | 'dns';

/**
 * The value of a strict dotted-quad IPv4 address (four decimal parts 0-255,
 * no leading zeros, nothing else) as an unsigned 32-bit number, or -1.
 * A scanner rather than a regular expression: it allocates nothing, and a
 * 10 000-node list checks one endpoint and one subnet per node (issue 19).
 */
export function ipv4Value(s: string): number {
  const n = s.length;
  if (n < 7 || n > 15) return -1;
  let value = 0;
  let part = 0;
  let digits = 0;
  let parts = 0;
  for (let i = 0; i <= n; i++) {
    const c = i < n ? s.charCodeAt(i) : 0x2e; // the end closes the last part like a '.'
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

/** Parses a strict dotted-quad IPv4 address; `null` if it is not one. */
export function parseIPv4(s: string): Uint8Array | null {
  const v = ipv4Value(s);
  if (v < 0) return null;
  const out = new Uint8Array(4);
  out[0] = v >>> 24;
  out[1] = (v >>> 16) & 0xff;
  out[2] = (v >>> 8) & 0xff;
  out[3] = v & 0xff;
  return out;
}

/** Parses an IPv6 address in any RFC 4291 text form (no zone id); `null` if it is not one. */
export function parseIPv6(s: string): Uint8Array | null {
  if (s.length < 2 || s.length > 45 || s.includes('%')) return null;
  const dbl = s.indexOf('::');
  if (dbl !== -1 && s.indexOf('::', dbl + 1) !== -1) return null;
  const groups: number[] = [];
  const parseSide = (side: string, allowV4: boolean): number[] | null => {
    if (side === '') return [];
    const items = side.split(':');
    const res: number[] = [];
    for (let i = 0; i < items.length; i++) {
      const it = items[i];
      if (allowV4 && i === items.length - 1 && it.includes('.')) {
        const v4 = parseIPv4(it);
        if (!v4) return null;
        res.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(it)) return null;
        res.push(parseInt(it, 16));
      }
    }
    return res;
  };
  if (dbl === -1) {
    const all = parseSide(s, true);
    if (!all || all.length !== 8) return null;
    groups.push(...all);
  } else {
    const head = parseSide(s.slice(0, dbl), false);
    const tail = parseSide(s.slice(dbl + 2), true);
    if (!head || !tail || head.length + tail.length > 7) return null;
    groups.push(...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail);
  }
  const out = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    out[2 * i] = groups[i] >> 8;
    out[2 * i + 1] = groups[i] & 0xff;
  }
  return out;
}

/** Formats 4 bytes as canonical IPv4 text. */
export function formatIPv4(b: Uint8Array): string {
  return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
}

/** Formats 16 bytes as RFC 5952 IPv6 text. */
export function formatIPv6(b: Uint8Array): string {
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push((b[2 * i] << 8) | b[2 * i + 1]);
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = g.map((x) => x.toString(16));
  if (bestLen < 2) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/** True if `s` is a DNS name in canonical (lowercase) form. */
export function isCanonicalDnsName(s: string): boolean {
  if (s.length === 0 || s.length > 253) return false;
  const labels = s.split('.');
  if (!labels.every((l) => LABEL.test(l))) return false;
  return !/^[0-9]+$/.test(labels[labels.length - 1]);
}

/** Kind of a host string if it is in canonical form, else `null`. */
export function canonicalHostKind(s: string): HostKind | null {
  if (ipv4Value(s) >= 0) return 'ipv4';
  if (s.includes(':')) {
    const v6 = parseIPv6(s);
    return v6 && formatIPv6(v6) === s ? 'ipv6' : null;
  }
  return isCanonicalDnsName(s) ? 'dns' : null;
}

/**
 * Brings admin input to canonical form: trims, strips IPv6 brackets,
 * rewrites IPv6 per RFC 5952, lowercases DNS names. `null` if the result is
 * not a valid host.
 */
export function normaliseHost(input: string): { host: string; kind: HostKind } | null {
  let s = input.trim();
  if (s.startsWith('[') && s.endsWith(']')) s = s.slice(1, -1);
  if (s.includes(':')) {
    const v6 = parseIPv6(s);
    return v6 ? { host: formatIPv6(v6), kind: 'ipv6' } : null;
  }
  if (parseIPv4(s)) return { host: s, kind: 'ipv4' };
  const lower = s.toLowerCase().replace(/\.$/, '');
  return isCanonicalDnsName(lower) ? { host: lower, kind: 'dns' } : null;
}

/** A parsed CIDR prefix. `start`/`end` are the first and last address as integers. */
export interface Cidr {
  readonly family: 4 | 6;
  readonly bytes: Uint8Array;
  readonly prefix: number;
  readonly start: bigint;
  readonly end: bigint;
}

function bytesToBigint(b: Uint8Array): bigint {
  let v = 0n;
  for (const x of b) v = (v << 8n) | BigInt(x);
  return v;
}

/** Why a CIDR string is unusable, or the parsed prefix. */
export type CidrResult = { ok: true; cidr: Cidr; canonical: string } | { ok: false; reason: 'syntax' | 'host-bits'; canonical?: string };

/**
 * Parses `addr/len`. `ok: false, reason: 'host-bits'` carries the canonical
 * form with the host bits cleared, so the admin can be told what to write.
 */
export function parseCidr(input: string): CidrResult {
  const slash = input.indexOf('/');
  if (slash === -1) return { ok: false, reason: 'syntax' };
  const addr = input.slice(0, slash);
  const lenText = input.slice(slash + 1);
  if (!/^(0|[1-9][0-9]{0,2})$/.test(lenText)) return { ok: false, reason: 'syntax' };
  const prefix = Number(lenText);
  if (!addr.includes(':')) return parseCidr4(addr, prefix);
  const bytes = parseIPv6(addr);
  if (!bytes) return { ok: false, reason: 'syntax' };
  const bits = 128;
  if (prefix > bits) return { ok: false, reason: 'syntax' };
  const masked = new Uint8Array(bytes);
  let hostBits = false;
  for (let i = 0; i < masked.length; i++) {
    const keep = Math.max(0, Math.min(8, prefix - i * 8));
    masked[i] &= keep === 0 ? 0 : (0xff << (8 - keep)) & 0xff;
    if (masked[i] !== bytes[i]) hostBits = true;
  }
  const canonical = `${formatIPv6(masked)}/${prefix}`;
  if (hostBits) return { ok: false, reason: 'host-bits', canonical };
  const start = bytesToBigint(masked);
  const end = start | ((1n << BigInt(bits - prefix)) - 1n);
  return { ok: true, cidr: { family: 6, bytes: masked, prefix, start, end }, canonical };
}

/** The IPv4 case of {@link parseCidr}, on 32-bit numbers (no byte loop, two BigInts). */
function parseCidr4(addr: string, prefix: number): CidrResult {
  const v = ipv4Value(addr);
  if (v < 0 || prefix > 32) return { ok: false, reason: 'syntax' };
  const size = 2 ** (32 - prefix);
  const start = v - (v % size); // host bits cleared
  const bytes = new Uint8Array(4);
  bytes[0] = start >>> 24;
  bytes[1] = (start >>> 16) & 0xff;
  bytes[2] = (start >>> 8) & 0xff;
  bytes[3] = start & 0xff;
  const canonical = `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}/${prefix}`;
  if (start !== v) return { ok: false, reason: 'host-bits', canonical };
  return { ok: true, cidr: { family: 4, bytes, prefix, start: BigInt(start), end: BigInt(start + size - 1) }, canonical };
}

/** Sort key for canonical CIDR order: IPv4 before IPv6, then start address, then prefix length. */
export function compareCidr(a: Cidr, b: Cidr): number {
  if (a.family !== b.family) return a.family - b.family;
  if (a.start !== b.start) return a.start < b.start ? -1 : 1;
  return a.prefix - b.prefix;
}
