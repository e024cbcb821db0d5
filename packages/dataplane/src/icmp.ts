/**
 * ICMP errors written back into the TUN device, rate-limited by one token
 * bucket (RFC 1812 §4.3.2.8, RFC 4443 §2.4 (f)):
 *   - "destination unreachable / no route" for packets that match no peer
 *     ({@link IcmpResponder.build});
 *   - "fragmentation needed" (type 3 code 4, next-hop MTU, RFC 1191) and
 *     ICMPv6 "packet too big" (type 2, MTU, RFC 8201) for packets larger
 *     than the peer's path allows (src/pmtu.ts; {@link IcmpResponder.buildTooBig}).
 *
 * Rules (RFC 1122 §3.2.2, RFC 4443 §2.4 (e)): no reply to an ICMP error,
 * to a non-first IPv4 fragment, to multicast/broadcast/unspecified
 * addresses. The reply's source is the original destination (tinc does the
 * same when it has no better address), its destination the original source.
 *
 * Buffer ownership: `build` reads the packet and writes into `out` during
 * the call only.
 */

/** ICMP constants (specification). */
export const IcmpConst = {
  PROTO_ICMP: 1,
  PROTO_ICMPV6: 58,
  V4_DEST_UNREACH: 3,
  V4_NET_UNREACH: 0,
  V6_DEST_UNREACH: 1,
  V6_NO_ROUTE: 0,
  /** IPv4 destination unreachable, code 4: fragmentation needed and DF set. */
  V4_FRAG_NEEDED: 4,
  /** ICMPv6 packet too big. */
  V6_PACKET_TOO_BIG: 2,
  /** Largest IPv4 ICMP error datagram (RFC 1812). */
  V4_MAX_REPLY: 576,
  /** Largest ICMPv6 error datagram (the IPv6 minimum MTU, RFC 4443). */
  V6_MAX_REPLY: 1280,
} as const;

/** Default rate of ICMP replies (implementation): tokens per second and burst. */
export const ICMP_DEFAULT_RATE = { perSecond: 10, burst: 20 } as const;

/** A token bucket; `take(now)` spends one token if available. */
export class TokenBucket {
  private tokens: number;
  private last = -1;
  /** `perSecond` tokens are added each second, up to `burst`; starts full. */
  constructor(private readonly perSecond: number, private readonly burst: number) {
    this.tokens = burst;
  }
  /** Spends a token at time `nowMs` (monotonic ms); false when empty. */
  take(nowMs: number): boolean {
    if (this.last >= 0 && nowMs > this.last) {
      this.tokens += ((nowMs - this.last) * this.perSecond) / 1000;
      if (this.tokens > this.burst) this.tokens = this.burst;
    }
    this.last = nowMs;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

/** One's-complement sum of 16-bit words of `buf[off .. off + len]`, added to `sum` (unfolded). */
function sum16(buf: Uint8Array, off: number, len: number, sum: number): number {
  const end = off + (len & ~1);
  for (let i = off; i < end; i += 2) sum += (buf[i] << 8) | buf[i + 1];
  if (len & 1) sum += buf[off + len - 1] << 8;
  return sum;
}
function fold(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return ~sum & 0xffff;
}

/**
 * Internet checksum (RFC 1071) of `buf[off .. off + len]`; a correct packet
 * including its checksum field sums to 0.
 */
export function internetChecksum(buf: Uint8Array, off: number, len: number): number {
  return fold(sum16(buf, off, len, 0));
}

function isIcmpV4Error(type: number): boolean {
  // queries: echo reply 0, echo 8, router adv/sol 9/10, timestamp 13/14, info 15/16, mask 17/18
  return !(type === 0 || type === 8 || type === 9 || type === 10 || (type >= 13 && type <= 18));
}

/** Builds rate-limited ICMP/ICMPv6 no-route replies. */
export class IcmpResponder {
  private readonly bucket: TokenBucket;
  /** Replies suppressed by the rate limit (stats). */
  rateLimited = 0;
  /** Replies built (stats). */
  sent = 0;

  /** Rate: `perSecond` replies per second, bursts of `burst`. */
  constructor(perSecond: number = ICMP_DEFAULT_RATE.perSecond, burst: number = ICMP_DEFAULT_RATE.burst) {
    this.bucket = new TokenBucket(perSecond, burst);
  }

  /**
   * Writes a "no route" reply to the IP packet `buf[off .. off + len]` at
   * `out[outOff ..]` (room for 1280 bytes needed) and returns its length,
   * or 0 when no reply is due (not eligible, or rate-limited). The packet
   * must have passed the IP version/length check of the send path.
   */
  build(buf: Uint8Array, off: number, len: number, out: Uint8Array, outOff: number, nowMs: number): number {
    const version = buf[off] >>> 4;
    if (version === 4) {
      if (!this.eligibleV4(buf, off, len) || !this.take(nowMs)) return 0;
      return this.writeV4(buf, off, len, out, outOff, IcmpConst.V4_DEST_UNREACH, IcmpConst.V4_NET_UNREACH, 0);
    }
    if (version === 6) {
      if (!this.eligibleV6(buf, off, len) || !this.take(nowMs)) return 0;
      return this.writeV6(buf, off, len, out, outOff, IcmpConst.V6_DEST_UNREACH, IcmpConst.V6_NO_ROUTE, 0);
    }
    return 0;
  }

  /** "Too big" replies built (of {@link sent}; stats). */
  tooBigSent = 0;

  /**
   * Writes a "fragmentation needed" (IPv4, next-hop MTU `mtu`) or ICMPv6
   * "packet too big" (MTU `mtu`) reply to the packet at `buf[off .. off +
   * len]` into `out[outOff ..]` (room for 1280 bytes) and returns its
   * length, or 0 when none is due (same rules and rate limit as
   * {@link build}).
   */
  buildTooBig(buf: Uint8Array, off: number, len: number, mtu: number, out: Uint8Array, outOff: number, nowMs: number): number {
    const version = buf[off] >>> 4;
    let n = 0;
    if (version === 4) {
      if (!this.eligibleV4(buf, off, len) || !this.take(nowMs)) return 0;
      n = this.writeV4(buf, off, len, out, outOff, IcmpConst.V4_DEST_UNREACH, IcmpConst.V4_FRAG_NEEDED, mtu & 0xffff);
    } else if (version === 6) {
      // RFC 4443 §2.4 (e.3): "packet too big" is sent even for multicast destinations.
      if (!this.eligibleV6(buf, off, len, true) || !this.take(nowMs)) return 0;
      n = this.writeV6(buf, off, len, out, outOff, IcmpConst.V6_PACKET_TOO_BIG, 0, mtu);
    }
    if (n > 0) this.tooBigSent++;
    return n;
  }

  private take(nowMs: number): boolean {
    if (!this.bucket.take(nowMs)) {
      this.rateLimited++;
      return false;
    }
    this.sent++;
    return true;
  }

  private eligibleV4(b: Uint8Array, off: number, len: number): boolean {
    const ihl = (b[off] & 0x0f) * 4;
    if (ihl < 20 || len < ihl) return false;
    const fragOffset = ((b[off + 6] & 0x1f) << 8) | b[off + 7];
    if (fragOffset !== 0) return false;
    const src0 = b[off + 12];
    const dst0 = b[off + 16];
    if (src0 === 0 || src0 >= 224 || dst0 >= 224) return false; // unspecified, multicast, broadcast/reserved
    if (b[off + 12] === 255 && b[off + 13] === 255 && b[off + 14] === 255 && b[off + 15] === 255) return false;
    if (b[off + 9] === IcmpConst.PROTO_ICMP) {
      if (len < ihl + 1) return false;
      if (isIcmpV4Error(b[off + ihl])) return false;
    }
    return true;
  }

  private eligibleV6(b: Uint8Array, off: number, len: number, multicastDst = false): boolean {
    if (b[off + 8] === 0xff || (!multicastDst && b[off + 24] === 0xff)) return false; // multicast
    let unspecified = true;
    for (let i = 8; i < 24; i++) if (b[off + i] !== 0) unspecified = false;
    if (unspecified) return false;
    if (b[off + 6] === IcmpConst.PROTO_ICMPV6) {
      if (len < 41) return false;
      if (b[off + 40] < 128) return false; // an ICMPv6 error
    }
    return true;
  }

  /** `rest` is the u32 after type, code and checksum (the next-hop MTU in its low 16 bits for code 4). */
  private writeV4(b: Uint8Array, off: number, len: number, o: Uint8Array, oo: number, type: number, code: number, rest: number): number {
    const quoted = Math.min(len, IcmpConst.V4_MAX_REPLY - 28);
    const total = 28 + quoted;
    o[oo] = 0x45;
    o[oo + 1] = 0xc0; // internetwork control precedence
    o[oo + 2] = total >>> 8;
    o[oo + 3] = total & 0xff;
    o[oo + 4] = 0;
    o[oo + 5] = 0;
    o[oo + 6] = 0;
    o[oo + 7] = 0;
    o[oo + 8] = 64;
    o[oo + 9] = IcmpConst.PROTO_ICMP;
    o[oo + 10] = 0;
    o[oo + 11] = 0;
    for (let i = 0; i < 4; i++) {
      o[oo + 12 + i] = b[off + 16 + i];
      o[oo + 16 + i] = b[off + 12 + i];
    }
    const hc = internetChecksum(o, oo, 20);
    o[oo + 10] = hc >>> 8;
    o[oo + 11] = hc & 0xff;
    const ic = oo + 20;
    o[ic] = type;
    o[ic + 1] = code;
    o[ic + 2] = 0;
    o[ic + 3] = 0;
    o[ic + 4] = (rest >>> 24) & 0xff;
    o[ic + 5] = (rest >>> 16) & 0xff;
    o[ic + 6] = (rest >>> 8) & 0xff;
    o[ic + 7] = rest & 0xff;
    o.set(b.subarray(off, off + quoted), ic + 8);
    const cc = internetChecksum(o, ic, 8 + quoted);
    o[ic + 2] = cc >>> 8;
    o[ic + 3] = cc & 0xff;
    return total;
  }

  /** `rest` is the u32 after type, code and checksum (the MTU for "packet too big"). */
  private writeV6(b: Uint8Array, off: number, len: number, o: Uint8Array, oo: number, type: number, code: number, rest: number): number {
    const quoted = Math.min(len, IcmpConst.V6_MAX_REPLY - 48);
    const plen = 8 + quoted;
    o[oo] = 0x60;
    o[oo + 1] = 0;
    o[oo + 2] = 0;
    o[oo + 3] = 0;
    o[oo + 4] = plen >>> 8;
    o[oo + 5] = plen & 0xff;
    o[oo + 6] = IcmpConst.PROTO_ICMPV6;
    o[oo + 7] = 64;
    for (let i = 0; i < 16; i++) {
      o[oo + 8 + i] = b[off + 24 + i];
      o[oo + 24 + i] = b[off + 8 + i];
    }
    const ic = oo + 40;
    o[ic] = type;
    o[ic + 1] = code;
    o[ic + 2] = 0;
    o[ic + 3] = 0;
    o[ic + 4] = (rest >>> 24) & 0xff;
    o[ic + 5] = (rest >>> 16) & 0xff;
    o[ic + 6] = (rest >>> 8) & 0xff;
    o[ic + 7] = rest & 0xff;
    o.set(b.subarray(off, off + quoted), ic + 8);
    // pseudo-header: src, dst, upper-layer length (u32), next header (u32)
    let sum = sum16(o, oo + 8, 32, 0);
    sum += plen >>> 16;
    sum += plen & 0xffff;
    sum += IcmpConst.PROTO_ICMPV6;
    sum = sum16(o, ic, plen, sum);
    const cc = fold(sum);
    o[ic + 2] = cc >>> 8;
    o[ic + 3] = cc & 0xff;
    return 40 + plen;
  }
}
