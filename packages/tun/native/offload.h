/*
 * offload.h: virtio-net header handling for a TUN opened with IFF_VNET_HDR
 * and TUNSETOFFLOAD (CSUM | TSO4 | TSO6). Pure functions on byte buffers,
 * no N-API, no I/O.
 *
 * Read side: the kernel hands over TCP super-packets (up to 64 KiB) with a
 * virtio_net_hdr in front; gso_parse() checks one and gso_segment() writes
 * its segment i as a complete IP packet of at most hdr + gso_size bytes.
 * csum_finish() completes a non-GSO packet whose checksum the kernel left
 * partial (VIRTIO_NET_HDR_F_NEEDS_CSUM).
 *
 * Write side: gro_* decide whether consecutive TCP segments of one flow can
 * be handed to the kernel as one super-packet and build its headers.
 */
#ifndef CLUEVPN_TUN_OFFLOAD_H
#define CLUEVPN_TUN_OFFLOAD_H

#include <stddef.h>
#include <stdint.h>
#include <linux/virtio_net.h>

#define VNET_HDR_LEN ((int)sizeof(struct virtio_net_hdr)) /* 10 */

/* A parsed TCP super-packet. */
typedef struct gso_info {
  int v6;             /* 0: IPv4, 1: IPv6 */
  uint32_t l4off;     /* offset of the TCP header */
  uint32_t hdrlen;    /* IP (+ extension) + TCP header bytes */
  uint32_t gso_size;  /* payload bytes per segment */
  uint32_t payload;   /* payload bytes in total */
  uint32_t nsegs;     /* segments it splits into (>= 1) */
} gso_info;

/*
 * Checks a packet read with gso_type TCPV4/TCPV6 (ECN bit allowed) and fills
 * g. hdr_len of the header is not trusted; lengths come from the packet.
 * Returns 0, or -1 if it cannot be split (malformed, wrong protocol).
 */
int gso_parse(const uint8_t *pkt, size_t len, const struct virtio_net_hdr *h, gso_info *g);

/*
 * Writes segment i (< g->nsegs) of pkt to out as a complete packet: IPv4
 * total length, id + i and header checksum, or IPv6 payload length; TCP
 * sequence + i * gso_size; FIN and PSH only on the last, CWR only on the
 * first; full TCP checksum. Returns its length (<= hdrlen + gso_size).
 */
size_t gso_segment(const uint8_t *pkt, const gso_info *g, uint32_t i, uint8_t *out);

/*
 * Completes the checksum of a non-GSO packet with NEEDS_CSUM: the field at
 * csum_start + csum_offset holds the pseudo-header sum. Returns 0, or -1 if
 * the offsets do not fit the packet.
 */
int csum_finish(uint8_t *pkt, size_t len, const struct virtio_net_hdr *h);

/* Facts about one IP packet needed to coalesce it (write side). */
typedef struct gro_pkt {
  int ok;             /* 1: TCP over IPv4 (no options) / IPv6 (no ext. headers), coalescable flags */
  int v6;
  uint32_t iphlen;
  uint32_t hdrlen;    /* iphlen + TCP header length */
  uint32_t payload;   /* TCP payload bytes */
  uint32_t seq;
  uint8_t flags;      /* TCP flags byte */
} gro_pkt;

/* Fills p from pkt; p->ok = 0 if the packet is not a coalescing candidate. */
void gro_inspect(const uint8_t *pkt, size_t len, gro_pkt *p);

/*
 * True if pkt b (inspected as pb) may follow the run that starts with a (pa)
 * and currently ends at sequence next_seq: same flow and headers (addresses,
 * ports, TOS/TTL/DF or traffic class/flow label/hop limit, ACK number,
 * window, TCP options), contiguous sequence, payload <= gso_size.
 */
int gro_can_follow(const uint8_t *a, const gro_pkt *pa, const uint8_t *b, const gro_pkt *pb, uint32_t next_seq);

/* True if the TCP checksum of pkt (inspected as p) is valid. */
int gro_tcp_csum_ok(const uint8_t *pkt, const gro_pkt *p);

/*
 * Builds, in hdr_out (>= p->hdrlen bytes), the headers of a super-packet made
 * of the first packet's headers (first) and total_payload bytes, with
 * last_flags' PSH/FIN; fills vh for GSO TCPV4/TCPV6 with NEEDS_CSUM and the
 * pseudo-header sum in the TCP checksum field.
 */
void gro_build(const uint8_t *first, const gro_pkt *p, uint32_t total_payload, uint8_t last_flags,
               uint32_t gso_size, uint8_t *hdr_out, struct virtio_net_hdr *vh);

#endif
