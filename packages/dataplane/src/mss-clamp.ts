/**
 * TCP MSS clamping (tinc's `ClampMSS`): the MSS option of a TCP SYN or
 * SYN-ACK is lowered to what the peer's path carries, so that TCP never
 * sends a segment the tunnel would have to refuse (src/pmtu.ts). Applied by
 * the send pipeline to packets read from the TUN and by the receive
 * pipeline to packets written to it (both directions, so a peer that does
 * not clamp is covered too); the daemon's `clampmss` key turns it off.
 *
 * Only segments whose TCP header directly follows the IP header are looked
 * at: IPv4 first fragments (offset 0) and IPv6 with next header 6. The
 * checksum is updated incrementally (RFC 1624, eqn. 3), so nothing but the
 * option and the checksum changes. The native express paths never handle
 * a SYN (native/src/express.c hands them back), so this is the one place
 * where the clamp is decided.
 *
 * Buffer ownership: rewrites `buf[off .. off + len]` in place during the
 * call; nothing is retained.
 */

/** Specification: IPv4 + TCP headers without options (MSS = MTU − 40). */
export const MSS_OVERHEAD_V4 = 40;
/** Specification: IPv6 + TCP headers without options (MSS = MTU − 60). */
export const MSS_OVERHEAD_V6 = 60;

const TCP = 6;
const SYN = 0x02;
const OPT_END = 0;
const OPT_NOP = 1;
const OPT_MSS = 2;

function add1c(a: number, b: number): number {
  const s = a + b;
  return (s & 0xffff) + (s >>> 16);
}

/**
 * When `buf[off .. off + len]` is a TCP SYN (or SYN-ACK) carrying an MSS
 * option above what an inner MTU of `mtu` allows, lowers it to `mtu − 40`
 * (IPv4) or `mtu − 60` (IPv6), fixes the TCP checksum and returns true.
 * Returns false and changes nothing otherwise (not TCP, not a SYN, no MSS
 * option, already small enough, truncated or malformed options). Never throws.
 */
export function clampMss(buf: Uint8Array, off: number, len: number, mtu: number): boolean {
  if (len < 20) return false;
  const v = buf[off] >>> 4;
  let t: number;
  let max: number;
  if (v === 4) {
    const ihl = (buf[off] & 0x0f) * 4;
    if (ihl < 20 || buf[off + 9] !== TCP || (((buf[off + 6] & 0x1f) << 8) | buf[off + 7]) !== 0) return false;
    t = off + ihl;
    max = mtu - MSS_OVERHEAD_V4;
  } else if (v === 6) {
    if (len < 40 || buf[off + 6] !== TCP) return false;
    t = off + 40;
    max = mtu - MSS_OVERHEAD_V6;
  } else return false;
  const end = off + len;
  if (t + 20 > end || (buf[t + 13] & SYN) === 0) return false;
  const doff = (buf[t + 12] >>> 4) * 4;
  if (doff <= 20 || t + doff > end) return false;
  if (max < 0) max = 0;
  let o = t + 20;
  const oend = t + doff;
  while (o < oend) {
    const kind = buf[o];
    if (kind === OPT_END) return false;
    if (kind === OPT_NOP) {
      o++;
      continue;
    }
    if (o + 1 >= oend) return false;
    const olen = buf[o + 1];
    if (olen < 2 || o + olen > oend) return false;
    if (kind === OPT_MSS) {
      if (olen !== 4) return false;
      const p = o + 2;
      const old = (buf[p] << 8) | buf[p + 1];
      if (old <= max) return false;
      buf[p] = max >>> 8;
      buf[p + 1] = max & 0xff;
      // RFC 1624: HC' = ~(~HC + ~m + m'). A field at an odd offset from the
      // TCP header sits across two checksum words: its bytes count swapped.
      const odd = ((p - t) & 1) === 1;
      const m = odd ? ((old & 0xff) << 8) | (old >>> 8) : old;
      const m2 = odd ? ((max & 0xff) << 8) | (max >>> 8) : max;
      const hc = (buf[t + 16] << 8) | buf[t + 17];
      let sum = add1c(~hc & 0xffff, ~m & 0xffff);
      sum = add1c(sum, m2);
      const nc = ~sum & 0xffff;
      buf[t + 16] = nc >>> 8;
      buf[t + 17] = nc & 0xff;
      return true;
    }
    o += olen;
  }
  return false;
}
