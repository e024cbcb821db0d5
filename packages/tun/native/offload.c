/*
 * offload.c: see offload.h. Checksums are ones'-complement sums taken over
 * native-order words and folded at the end (RFC 1071 §2(B): the sum is byte
 * order independent); a folded sum stored with memcpy lands in network order.
 */
#include "offload.h"

#include <string.h>

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_PSH 0x08
#define TCP_ACK 0x10
#define TCP_URG 0x20
#define TCP_ECE 0x40
#define TCP_CWR 0x80

static inline uint16_t rd16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static inline uint32_t rd32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline void wr16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static inline void wr32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}

/* Unfolded ones'-complement sum of p[0..n) (p at an even offset of the checksummed data). */
static uint64_t sum_bytes(const uint8_t *p, size_t n, uint64_t s) {
  while (n >= 8) {
    uint64_t w;
    memcpy(&w, p, 8);
    s += w;
    s += (s < w);
    p += 8;
    n -= 8;
  }
  if (n >= 4) {
    uint32_t w;
    memcpy(&w, p, 4);
    s += w;
    s += (s < w);
    p += 4;
    n -= 4;
  }
  if (n >= 2) {
    uint16_t w;
    memcpy(&w, p, 2);
    s += w;
    s += (s < w);
    p += 2;
    n -= 2;
  }
  if (n == 1) {
    uint8_t t[2] = {p[0], 0};
    uint16_t w;
    memcpy(&w, t, 2);
    s += w;
    s += (s < w);
  }
  return s;
}

static uint16_t fold(uint64_t s) {
  s = (s & 0xffffffffu) + (s >> 32);
  s = (s & 0xffffffffu) + (s >> 32);
  s = (s & 0xffffu) + (s >> 16);
  s = (s & 0xffffu) + (s >> 16);
  return (uint16_t)s;
}

/* Pseudo-header sum for TCP (protocol 6) over l4len bytes. */
static uint64_t pseudo_sum(const uint8_t *pkt, int v6, uint32_t l4len) {
  uint8_t t[8];
  if (!v6) {
    t[0] = 0;
    t[1] = 6;
    wr16(t + 2, (uint16_t)l4len);
    return sum_bytes(t, 4, sum_bytes(pkt + 12, 8, 0));
  }
  wr32(t, l4len);
  t[4] = t[5] = t[6] = 0;
  t[7] = 6;
  return sum_bytes(t, 8, sum_bytes(pkt + 8, 32, 0));
}

static void ip4_csum(uint8_t *ip, uint32_t ihl) {
  ip[10] = ip[11] = 0;
  uint16_t c = (uint16_t)~fold(sum_bytes(ip, ihl, 0));
  memcpy(ip + 10, &c, 2);
}

int gso_parse(const uint8_t *pkt, size_t len, const struct virtio_net_hdr *h, gso_info *g) {
  const uint8_t type = h->gso_type & (uint8_t)~VIRTIO_NET_HDR_GSO_ECN;
  if (h->gso_size == 0 || len > 0xffff + 40u) return -1;
  uint32_t l4off;
  if (type == VIRTIO_NET_HDR_GSO_TCPV4) {
    if (len < 20 || (pkt[0] >> 4) != 4 || pkt[9] != 6) return -1;
    l4off = (uint32_t)(pkt[0] & 0x0f) * 4;
    if (l4off < 20 || ((h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) && h->csum_start != l4off)) return -1;
    if ((rd16(pkt + 6) & 0x3fff) != 0) return -1; /* a fragment */
    g->v6 = 0;
  } else if (type == VIRTIO_NET_HDR_GSO_TCPV6) {
    if (len < 40 || (pkt[0] >> 4) != 6) return -1;
    if (h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) l4off = h->csum_start;
    else if (pkt[6] == 6) l4off = 40;
    else return -1;
    if (l4off < 40) return -1;
    g->v6 = 1;
  } else {
    return -1;
  }
  if ((size_t)l4off + 20 > len) return -1;
  const uint32_t tcphlen = (uint32_t)(pkt[l4off + 12] >> 4) * 4;
  if (tcphlen < 20 || (size_t)l4off + tcphlen > len) return -1;
  g->l4off = l4off;
  g->hdrlen = l4off + tcphlen;
  g->gso_size = h->gso_size;
  g->payload = (uint32_t)len - g->hdrlen;
  g->nsegs = g->payload == 0 ? 1 : (g->payload + g->gso_size - 1) / g->gso_size;
  return 0;
}

size_t gso_segment(const uint8_t *pkt, const gso_info *g, uint32_t i, uint8_t *out) {
  const uint32_t start = i * g->gso_size;
  uint32_t seglen = g->payload - start;
  if (seglen > g->gso_size) seglen = g->gso_size;
  memcpy(out, pkt, g->hdrlen);
  memcpy(out + g->hdrlen, pkt + g->hdrlen + start, seglen);
  const uint32_t total = g->hdrlen + seglen;
  if (!g->v6) {
    wr16(out + 2, (uint16_t)total);
    wr16(out + 4, (uint16_t)(rd16(pkt + 4) + i));
    ip4_csum(out, g->l4off);
  } else {
    wr16(out + 4, (uint16_t)(total - 40));
  }
  uint8_t *tcp = out + g->l4off;
  wr32(tcp + 4, rd32(pkt + g->l4off + 4) + start);
  if (i + 1 < g->nsegs) tcp[13] &= (uint8_t)~(TCP_FIN | TCP_PSH);
  if (i > 0) tcp[13] &= (uint8_t)~TCP_CWR;
  tcp[16] = tcp[17] = 0;
  const uint32_t l4len = total - g->l4off;
  uint16_t c = (uint16_t)~fold(sum_bytes(tcp, l4len, pseudo_sum(out, g->v6, l4len)));
  memcpy(tcp + 16, &c, 2);
  return total;
}

int csum_finish(uint8_t *pkt, size_t len, const struct virtio_net_hdr *h) {
  const size_t start = h->csum_start, at = start + h->csum_offset;
  if (start >= len || at + 2 > len || (start & 1)) return -1;
  uint16_t c = (uint16_t)~fold(sum_bytes(pkt + start, len - start, 0));
  if (c == 0) c = 0xffff; /* as the kernel's skb_checksum_help (UDP: 0 means none) */
  memcpy(pkt + at, &c, 2);
  return 0;
}

void gro_inspect(const uint8_t *pkt, size_t len, gro_pkt *p) {
  p->ok = 0;
  if (len < 40) return;
  const int ver = pkt[0] >> 4;
  uint32_t iphlen;
  if (ver == 4) {
    /* No IP options, not a fragment, total length matches. */
    if (pkt[0] != 0x45 || pkt[9] != 6 || (rd16(pkt + 6) & 0x3fff) != 0 || rd16(pkt + 2) != len) return;
    iphlen = 20;
    p->v6 = 0;
  } else if (ver == 6) {
    if (len < 60 || pkt[6] != 6 || (size_t)rd16(pkt + 4) + 40 != len) return;
    iphlen = 40;
    p->v6 = 1;
  } else {
    return;
  }
  const uint32_t tcphlen = (uint32_t)(pkt[iphlen + 12] >> 4) * 4;
  if (tcphlen < 20 || iphlen + tcphlen > len) return;
  const uint8_t fl = pkt[iphlen + 13];
  /* Only ACK (and PSH, which ends a run); nothing with SYN/FIN/RST/URG/ECE/CWR. */
  if ((fl & TCP_ACK) == 0 || (fl & (uint8_t)~(TCP_ACK | TCP_PSH)) != 0) return;
  p->iphlen = iphlen;
  p->hdrlen = iphlen + tcphlen;
  p->payload = (uint32_t)len - p->hdrlen;
  if (p->payload == 0) return;
  p->seq = rd32(pkt + iphlen + 4);
  p->flags = fl;
  p->ok = 1;
}

int gro_can_follow(const uint8_t *a, const gro_pkt *pa, const uint8_t *b, const gro_pkt *pb, uint32_t next_seq) {
  if (!pa->ok || !pb->ok || pa->v6 != pb->v6 || pa->hdrlen != pb->hdrlen || pb->seq != next_seq) return 0;
  if (pb->payload > pa->payload) return 0;
  if (((pa->flags ^ pb->flags) & (uint8_t)~TCP_PSH) != 0) return 0;
  if (!pa->v6) {
    /* TOS, DF, TTL, protocol, addresses. */
    if (a[1] != b[1] || a[6] != b[6] || a[8] != b[8] || memcmp(a + 12, b + 12, 8) != 0) return 0;
  } else {
    /* Traffic class and flow label, next header, hop limit, addresses. */
    if (memcmp(a, b, 4) != 0 || a[7] != b[7] || memcmp(a + 8, b + 8, 32) != 0) return 0;
  }
  const uint8_t *ta = a + pa->iphlen, *tb = b + pb->iphlen;
  /* Ports, ACK number, data offset, window, urgent pointer, options. */
  if (memcmp(ta, tb, 4) != 0 || memcmp(ta + 8, tb + 8, 5) != 0 || memcmp(ta + 14, tb + 14, 2) != 0 ||
      memcmp(ta + 18, tb + 18, pa->hdrlen - pa->iphlen - 18) != 0) {
    return 0;
  }
  return 1;
}

int gro_tcp_csum_ok(const uint8_t *pkt, const gro_pkt *p) {
  const uint32_t l4len = p->hdrlen - p->iphlen + p->payload;
  return fold(sum_bytes(pkt + p->iphlen, l4len, pseudo_sum(pkt, p->v6, l4len))) == 0xffff;
}

void gro_build(const uint8_t *first, const gro_pkt *p, uint32_t total_payload, uint8_t last_flags,
               uint32_t gso_size, uint8_t *hdr_out, struct virtio_net_hdr *vh) {
  memcpy(hdr_out, first, p->hdrlen);
  const uint32_t total = p->hdrlen + total_payload;
  if (!p->v6) {
    wr16(hdr_out + 2, (uint16_t)total);
    ip4_csum(hdr_out, p->iphlen);
  } else {
    wr16(hdr_out + 4, (uint16_t)(total - 40));
  }
  uint8_t *tcp = hdr_out + p->iphlen;
  tcp[13] = (uint8_t)((tcp[13] & ~TCP_PSH) | (last_flags & TCP_PSH));
  const uint16_t partial = fold(pseudo_sum(hdr_out, p->v6, total - p->iphlen));
  memcpy(tcp + 16, &partial, 2);
  memset(vh, 0, sizeof *vh);
  vh->flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
  vh->gso_type = p->v6 ? VIRTIO_NET_HDR_GSO_TCPV6 : VIRTIO_NET_HDR_GSO_TCPV4;
  vh->hdr_len = (uint16_t)p->hdrlen;
  vh->gso_size = (uint16_t)gso_size;
  vh->csum_start = (uint16_t)p->iphlen;
  vh->csum_offset = 16;
}
