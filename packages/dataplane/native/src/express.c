/*
 * Express receive: the datagrams of a small batch (≤ DP_EXPRESS_MAX_BATCH,
 * offered one by one, in order, by udp.c) from the socket into the TUN
 * device without entering JavaScript.
 *
 * At idle datagrams arrive alone (or as the two fragments of a large ping),
 * and the JavaScript receive pipeline cost ~125 µs for one datagram
 * (measured: BENCHMARKS.md, session 6), several times the kernel's own work.
 * So TypeScript keeps every decision and hands C a *lease* per session it
 * has just delivered a datagram of a small batch for: receiver index, key handle, epoch, the session's replay
 * window (memory shared with TypeScript's ReplayWindow), the peer's endpoint
 * and subnets, and its counters. C delivers a datagram on its own only when
 * every check below passes; anything else, it leaves the datagram untouched
 * to the JavaScript pipeline, which does the full work and the accounting:
 *
 *   1. type DATA, no flags, reserved bytes zero,
 *      payload 1..MTU, counter < 2^53 (as checkHeader);
 *   2. a lease for the receiver index whose generation is the current one
 *      (TypeScript bumps the shared generation cell on every change that
 *      could make a lease wrong: a session retired, an endpoint or subnets
 *      set, a peer removed, a newer receive epoch);
 *   3. the epoch is the lease's (the session's newest), the source address
 *      is the peer's endpoint (no roaming here), the counter is new to the
 *      replay window;
 *   4. authentic, opened into a scratch buffer (the datagram stays intact
 *      for JavaScript if a later check fails);
 *   5. the inner packet is IPv4/IPv6 with a consistent length and a source
 *      inside the peer's subnets.
 * Then: replay window update, rx counters and last-rx time, one write to
 * the TUN through the device's C writer (packages/tun, expressWriter).
 *
 * Nonces: receive only, so no counter is ever used to seal here. The replay
 * window is the one TypeScript uses (same ring layout as replay-window.ts),
 * and everything runs on the JavaScript thread, so a counter accepted here
 * is seen as used by the pipeline and vice versa.
 */
#include "express.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define XR_SLOTS 256 /* power of two; direct-mapped by receiver index */
#define XR_MAX_SUBNETS 16
#define RING_BLOCKS 256
#define WINDOW_SIZE ((RING_BLOCKS - 1) * 32)
#define WINDOW_BYTES (8 + RING_BLOCKS * 4)
#define COUNTER_HIGH_MAX 0x1fffffu
#define VERSION_TYPE_DATA 0x11 /* version 1, type DATA */
/* Peer counters (peer-table.ts, PeerCounter). */
#define PC_RX_PACKETS 2
#define PC_RX_BYTES 3
#define PC_LAST_RX_MS 4
#define PC_MIN 5

typedef struct {
  uint8_t family; /* 4 or 6 */
  uint8_t len;    /* prefix length */
  uint8_t bytes[16];
} subnet;

typedef struct {
  int used;
  uint32_t local_index;
  int32_t rx_handle;
  uint32_t epoch;
  double gen; /* a float64 integer: exact up to 2^53, and PeerTable stops bumping before that */
  uint8_t *win; /* WINDOW_BYTES: float64 newest, then uint32 ring[256] */
  double *counters;
  napi_ref win_ref, counters_ref;
  uint8_t endpoint[DP_SOURCE_LEN];
  int nsubnets;
  subnet subnets[XR_MAX_SUBNETS];
} lease;

struct dp_xrx {
  double *gen; /* shared generation cell (Float64Array(1)) */
  napi_ref gen_ref;
  const tun_express_writer *writer;
  napi_ref writer_ref, owner_ref;
  uint32_t mtu;
  uint32_t live;
  uint8_t *scratch; /* mtu bytes */
  double delivered, write_failed;
  lease tab[XR_SLOTS];
};

static void unref(napi_env env, napi_ref *r) {
  if (*r != NULL) {
    napi_delete_reference(env, *r);
    *r = NULL;
  }
}

static void drop_lease(napi_env env, dp_xrx *x, lease *e) {
  if (!e->used) return;
  unref(env, &e->win_ref);
  unref(env, &e->counters_ref);
  e->used = 0;
  e->win = NULL;
  e->counters = NULL;
  x->live--;
}

static void clear_all(napi_env env, dp_xrx *x) {
  for (int i = 0; i < XR_SLOTS; i++) drop_lease(env, x, &x->tab[i]);
  unref(env, &x->gen_ref);
  unref(env, &x->writer_ref);
  unref(env, &x->owner_ref);
  x->gen = NULL;
  x->writer = NULL;
  free(x->scratch);
  x->scratch = NULL;
}

dp_xrx *dp_xrx_new(void) { return calloc(1, sizeof(dp_xrx)); }

void dp_xrx_free(napi_env env, dp_xrx *x) {
  if (x == NULL) return;
  clear_all(env, x);
  free(x);
}

void dp_xrx_stats(const dp_xrx *x, double *delivered, double *write_failed, double *leases) {
  *delivered = x == NULL ? 0 : x->delivered;
  *write_failed = x == NULL ? 0 : x->write_failed;
  *leases = x == NULL ? 0 : x->live;
}

napi_value dp_xrx_setup(napi_env env, dp_xrx *x, size_t argc, napi_value *argv) {
  napi_valuetype t0 = napi_undefined;
  if (argc >= 1) napi_typeof(env, argv[0], &t0);
  clear_all(env, x);
  if (t0 == napi_null || t0 == napi_undefined) return NULL;
  /* expressSetup(gen: Float64Array(1), writer: external, owner: object, mtu) */
  double *gen;
  size_t glen;
  void *w = NULL;
  int32_t mtu;
  napi_valuetype t2 = napi_undefined;
  if (argc < 4 || !dp_get_f64(env, argv[0], &gen, &glen) || glen < 1 ||
      napi_get_value_external(env, argv[1], &w) != napi_ok || w == NULL ||
      napi_typeof(env, argv[2], &t2) != napi_ok || t2 != napi_object || !dp_get_int(env, argv[3], &mtu) || mtu < 68 ||
      mtu > 65535) {
    return dp_throw(env, "ERR_DP_NATIVE", 0, "expressSetup(gen: Float64Array, writer: external, owner: object, mtu)");
  }
  const tun_express_writer *wr = w;
  if (wr->magic != TUN_EXPRESS_WRITER_MAGIC || wr->write == NULL) {
    return dp_throw(env, "ERR_DP_NATIVE", 0, "expressSetup: not a TUN express writer of this version");
  }
  x->scratch = malloc((size_t)mtu);
  if (x->scratch == NULL) return dp_throw(env, "ERR_DP_NATIVE", 0, "expressSetup: out of memory");
  if (napi_create_reference(env, argv[0], 1, &x->gen_ref) != napi_ok ||
      napi_create_reference(env, argv[1], 1, &x->writer_ref) != napi_ok ||
      napi_create_reference(env, argv[2], 1, &x->owner_ref) != napi_ok) {
    clear_all(env, x);
    return dp_throw(env, "ERR_DP_NATIVE", 0, "expressSetup: cannot reference its arguments");
  }
  x->gen = gen;
  x->writer = wr;
  x->mtu = (uint32_t)mtu;
  return NULL;
}

static int get_u32(napi_env env, napi_value v, uint32_t *out) {
  return napi_get_value_uint32(env, v, out) == napi_ok;
}

napi_value dp_xrx_lease(napi_env env, dp_xrx *x, size_t argc, napi_value *argv) {
  /* expressLease(localIndex, rxHandle, epoch, gen, window: Uint8Array(1032),
   *              counters: Float64Array, endpointKey: Uint8Array(18),
   *              subnets: Uint8Array(18 * n)) -> true when leased */
  napi_value out;
  uint32_t index, epoch;
  int32_t handle;
  double gen;
  uint8_t *win, *ep, *sn;
  size_t winlen, eplen, snlen, clen;
  double *counters;
  if (argc < 8 || !get_u32(env, argv[0], &index) || !dp_get_int(env, argv[1], &handle) || !get_u32(env, argv[2], &epoch) ||
      napi_get_value_double(env, argv[3], &gen) != napi_ok || !dp_get_u8(env, argv[4], &win, &winlen) || winlen != WINDOW_BYTES ||
      !dp_get_f64(env, argv[5], &counters, &clen) || clen < PC_MIN || !dp_get_u8(env, argv[6], &ep, &eplen) ||
      eplen != DP_SOURCE_LEN || !dp_get_u8(env, argv[7], &sn, &snlen) || snlen % 18 != 0) {
    return dp_throw(env, "ERR_DP_NATIVE", 0,
                    "expressLease(localIndex, rxHandle, epoch, gen, window, counters, endpointKey, subnets)");
  }
  int ok = x->gen != NULL && gen == *x->gen && snlen / 18 <= XR_MAX_SUBNETS && ((uintptr_t)win & 7) == 0;
  for (size_t i = 0; ok && i < snlen / 18; i++) {
    uint8_t f = sn[i * 18], l = sn[i * 18 + 1];
    if (!((f == 4 && l <= 32) || (f == 6 && l <= 128))) ok = 0;
  }
  if (ok) {
    lease *e = &x->tab[index & (XR_SLOTS - 1)];
    drop_lease(env, x, e);
    if (napi_create_reference(env, argv[4], 1, &e->win_ref) != napi_ok ||
        napi_create_reference(env, argv[5], 1, &e->counters_ref) != napi_ok) {
      unref(env, &e->win_ref);
      return dp_throw(env, "ERR_DP_NATIVE", 0, "expressLease: cannot reference its arguments");
    }
    e->used = 1;
    x->live++;
    e->local_index = index;
    e->rx_handle = handle;
    e->epoch = epoch;
    e->gen = gen;
    e->win = win;
    e->counters = counters;
    memcpy(e->endpoint, ep, DP_SOURCE_LEN);
    e->nsubnets = (int)(snlen / 18);
    for (int i = 0; i < e->nsubnets; i++) {
      e->subnets[i].family = sn[i * 18];
      e->subnets[i].len = sn[i * 18 + 1];
      memcpy(e->subnets[i].bytes, sn + i * 18 + 2, 16);
    }
  }
  napi_get_boolean(env, ok, &out);
  return out;
}

static inline uint32_t be32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline uint64_t win_newest(const uint8_t *w) {
  double d;
  memcpy(&d, w, 8);
  return (uint64_t)d;
}

/* replay-window.ts check(): no state change. */
static int win_check(const uint8_t *w, uint64_t c) {
  uint64_t last = win_newest(w);
  if (c > last) return 1;
  if (last - c > WINDOW_SIZE) return 0;
  uint32_t block;
  memcpy(&block, w + 8 + ((c / 32) % RING_BLOCKS) * 4, 4);
  return (block & (1u << (c % 32))) == 0;
}

/* replay-window.ts update(). */
static int win_update(uint8_t *w, uint64_t c) {
  uint64_t last = win_newest(w);
  uint64_t ib = c / 32;
  uint32_t *ring = (uint32_t *)(w + 8); /* 8-byte aligned (checked at lease) */
  if (c > last) {
    uint64_t cur = last / 32, diff = ib - cur;
    if (diff > RING_BLOCKS) diff = RING_BLOCKS;
    for (uint64_t i = cur + 1; i <= cur + diff; i++) ring[i % RING_BLOCKS] = 0;
    double d = (double)c;
    memcpy(w, &d, 8);
  } else if (last - c > WINDOW_SIZE) {
    return 0;
  }
  uint32_t *b = &ring[ib % RING_BLOCKS], bit = 1u << (c % 32);
  if (*b & bit) return 0;
  *b |= bit;
  return 1;
}

static int in_subnets(const lease *e, int family, const uint8_t *addr) {
  for (int i = 0; i < e->nsubnets; i++) {
    const subnet *s = &e->subnets[i];
    if (s->family != family) continue;
    int full = s->len / 8, rest = s->len % 8;
    if (memcmp(addr, s->bytes, (size_t)full) != 0) continue;
    if (rest != 0) {
      uint8_t mask = (uint8_t)(0xff << (8 - rest));
      if ((addr[full] & mask) != s->bytes[full]) continue;
    }
    return 1;
  }
  return 0;
}

/*
 * A TCP segment with SYN set (IPv4 first fragment or IPv6 with TCP as the
 * first next header): such packets are never handled here, in either
 * direction, because the send and receive pipelines may rewrite their MSS
 * option (../../src/mss-clamp.ts owns that decision). C only recognises them
 * to hand them back unchanged.
 */
static int is_tcp_syn(const uint8_t *p, size_t len) {
  if (len < 20) return 0;
  int v = p[0] >> 4;
  size_t l4;
  if (v == 4) {
    l4 = (size_t)(p[0] & 0x0f) * 4;
    if (p[9] != 6 || (((p[6] & 0x1f) << 8) | p[7]) != 0) return 0;
  } else if (v == 6) {
    l4 = 40;
    if (p[6] != 6) return 0;
  } else {
    return 0;
  }
  return len >= l4 + 14 && (p[l4 + 13] & 0x02) != 0;
}

int dp_xrx_try(napi_env env, dp_xrx *x, const uint8_t *dg, uint32_t len, const uint8_t *src) {
  if (x == NULL || x->live == 0 || x->writer == NULL) return 0;
  /* 1. header */
  if (len <= DP_HEADER_LEN + DP_TAG_LEN || len - DP_HEADER_LEN - DP_TAG_LEN > x->mtu) return 0;
  if (dg[0] != VERSION_TYPE_DATA || dg[1] != 0 || dg[2] != 0 || dg[3] != 0) return 0;
  uint32_t index = be32(dg + 4), epoch = be32(dg + 8), hi = be32(dg + 12);
  if (hi > COUNTER_HIGH_MAX) return 0;
  uint64_t counter = ((uint64_t)hi << 32) | be32(dg + 16);
  /* 2. lease */
  lease *e = &x->tab[index & (XR_SLOTS - 1)];
  if (!e->used || e->local_index != index || e->gen != *x->gen) return 0;
  /* 3. epoch, endpoint, replay */
  if (epoch != e->epoch || memcmp(src, e->endpoint, DP_SOURCE_LEN) != 0 || !win_check(e->win, counter)) return 0;
  /* 4. authentic */
  uint32_t plen = len - DP_HEADER_LEN - DP_TAG_LEN;
  if (!dp_aead_open_to(env, e->rx_handle, dg, (int)len, x->scratch)) return 0;
  /* 5. inner packet */
  const uint8_t *p = x->scratch;
  int v = p[0] >> 4;
  if (v == 4) {
    if (plen < 20 || (p[0] & 0x0f) < 5) return 0;
    uint32_t total = ((uint32_t)p[2] << 8) | p[3];
    if (total < 20 || total > plen || !in_subnets(e, 4, p + 12)) return 0;
  } else if (v == 6) {
    if (plen < 40 || 40 + (((uint32_t)p[4] << 8) | p[5]) > plen || !in_subnets(e, 6, p + 8)) return 0;
  } else {
    return 0;
  }
  if (is_tcp_syn(p, plen)) return 0; /* the MSS clamp is JavaScript's (receive.ts) */
  if (!win_update(e->win, counter)) return 0; /* cannot fail after win_check on this thread */
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  e->counters[PC_LAST_RX_MS] = (double)ts.tv_sec * 1000.0 + (double)(ts.tv_nsec / 1000000);
  e->counters[PC_RX_PACKETS] += 1;
  e->counters[PC_RX_BYTES] += plen;
  x->delivered++;
  if (!x->writer->write(x->writer->dev, p, plen)) x->write_failed++;
  return 1;
}

/*
 * Express send: the packets of a small TUN read, framed and sealed in C and
 * sent in one sendmmsg (tun.c hands them over one by one through
 * tun_express_sender before JavaScript, then calls its flush).
 *
 * After the send pipeline has sent a small read itself, it leases the pair
 * (destination, source) it routed: the peer's endpoint slot, the session's
 * remote index, send epoch and key handle, and a *block of counters* that it
 * takes out of the session's counter for good (Session.txCounter moves past
 * the block before C gets it). C only ever seals with counters of its block,
 * each once, so no nonce can repeat; a block is never handed out twice.
 * Unused counters of a voided lease are skipped, never reused. C takes a
 * packet only when: IPv4/IPv6 with the leased destination and source, at
 * most the MTU and the lease's `maxLen` (the peer's inner path MTU, which
 * the send pipeline judged when it leased), not a TCP SYN (the MSS clamp
 * is JavaScript's), room for header and tag around it in its slot, a lease of
 * the current generation with counters left. Anything else goes to
 * JavaScript unchanged, which then sends it and leases again.
 *
 * The generation cell (separate from the receive one) is bumped on every
 * change to peers, sessions, routes, endpoints, local subnets and send
 * epochs, and whenever JavaScript sends on a session that may hold a lease
 * (so that C's counters never fall behind the peer's replay window).
 */
#define XT_SLOTS 64 /* power of two */
#define PC_TX_PACKETS 0
#define PC_TX_BYTES 1

typedef struct {
  int used;
  uint8_t family;
  uint8_t dst[16], src[16];
  int32_t slot;
  uint32_t remote_index, epoch;
  int32_t tx_handle;
  uint64_t next, end;
  uint32_t max_len; /* the peer's inner path MTU when leased (pmtu.ts): longer packets go back to JavaScript */
  double gen;
  double *counters;
  napi_ref counters_ref;
} tx_lease;

struct dp_xtx {
  double *gen; /* Float64Array(1), as the receive cell */
  napi_ref gen_ref;
  uint32_t mtu;
  uint32_t live;
  double sent, failed;
  dp_tx_msg pend[DP_EXPRESS_MAX_BATCH]; /* sealed, waiting for dp_xtx_flush */
  int npend;
  tx_lease tab[XT_SLOTS];
};

static void drop_tx_lease(napi_env env, dp_xtx *x, tx_lease *e) {
  if (!e->used) return;
  unref(env, &e->counters_ref);
  e->used = 0;
  e->counters = NULL;
  x->live--;
}

static void clear_tx(napi_env env, dp_xtx *x) {
  for (int i = 0; i < XT_SLOTS; i++) drop_tx_lease(env, x, &x->tab[i]);
  unref(env, &x->gen_ref);
  x->gen = NULL;
}

dp_xtx *dp_xtx_new(void) { return calloc(1, sizeof(dp_xtx)); }

void dp_xtx_free(napi_env env, dp_xtx *x) {
  if (x == NULL) return;
  clear_tx(env, x);
  free(x);
}

void dp_xtx_stats(const dp_xtx *x, double *sent, double *failed, double *leases) {
  *sent = x == NULL ? 0 : x->sent;
  *failed = x == NULL ? 0 : x->failed;
  *leases = x == NULL ? 0 : x->live;
}

int dp_xtx_setup(napi_env env, dp_xtx *x, size_t argc, napi_value *argv) {
  napi_valuetype t0 = napi_undefined;
  if (argc >= 1) napi_typeof(env, argv[0], &t0);
  clear_tx(env, x);
  if (t0 == napi_null || t0 == napi_undefined) return 0;
  double *gen;
  int32_t mtu;
  size_t glen;
  if (argc < 2 || !dp_get_f64(env, argv[0], &gen, &glen) || glen < 1 || !dp_get_int(env, argv[1], &mtu) || mtu < 68 ||
      mtu > 65535) {
    dp_throw(env, "ERR_DP_NATIVE", 0, "expressTxSetup(gen: Float64Array, mtu)");
    return -1;
  }
  if (napi_create_reference(env, argv[0], 1, &x->gen_ref) != napi_ok) {
    dp_throw(env, "ERR_DP_NATIVE", 0, "expressTxSetup: cannot reference its arguments");
    return -1;
  }
  x->gen = gen;
  x->mtu = (uint32_t)mtu;
  return 1;
}

static inline uint32_t addr_hash(const uint8_t *a, int n) {
  uint32_t h = 2166136261u;
  for (int i = 0; i < n; i++) h = (h ^ a[i]) * 16777619u;
  return h;
}

napi_value dp_xtx_lease(napi_env env, dp_xtx *x, size_t argc, napi_value *argv) {
  /* expressTxLease(addrs: Uint8Array(33) [family, dst[16], src[16]], slot, remoteIndex, epoch, txHandle,
   *                counterBase, counterCount, gen, counters: Float64Array, maxLen) -> true when leased */
  napi_value out;
  uint8_t *addrs;
  size_t alen, clen;
  int32_t slot, handle;
  double gen;
  uint32_t remote, epoch;
  double base, count;
  double *counters;
  int32_t max_len;
  if (argc < 10 || !dp_get_u8(env, argv[0], &addrs, &alen) || alen != 33 || !dp_get_int(env, argv[1], &slot) ||
      !get_u32(env, argv[2], &remote) || !get_u32(env, argv[3], &epoch) || !dp_get_int(env, argv[4], &handle) ||
      napi_get_value_double(env, argv[5], &base) != napi_ok || napi_get_value_double(env, argv[6], &count) != napi_ok ||
      napi_get_value_double(env, argv[7], &gen) != napi_ok || !dp_get_f64(env, argv[8], &counters, &clen) || clen < PC_MIN ||
      !dp_get_int(env, argv[9], &max_len) || max_len < 0) {
    return dp_throw(env, "ERR_DP_NATIVE", 0,
                    "expressTxLease(addrs, slot, remoteIndex, epoch, txHandle, counterBase, counterCount, gen, counters, maxLen)");
  }
  uint8_t family = addrs[0];
  int ok = x->gen != NULL && gen == *x->gen && (family == 4 || family == 6) && slot >= 0 && base >= 0 && count >= 1 &&
           count <= 65536 && base + count <= 9007199254740991.0 && base == (double)(uint64_t)base &&
           count == (double)(uint64_t)count;
  if (ok) {
    int n = family == 4 ? 4 : 16;
    tx_lease *e = &x->tab[addr_hash(addrs + 1, n) & (XT_SLOTS - 1)];
    drop_tx_lease(env, x, e);
    if (napi_create_reference(env, argv[8], 1, &e->counters_ref) != napi_ok) {
      return dp_throw(env, "ERR_DP_NATIVE", 0, "expressTxLease: cannot reference its arguments");
    }
    e->used = 1;
    x->live++;
    e->family = family;
    memset(e->dst, 0, 16);
    memset(e->src, 0, 16);
    memcpy(e->dst, addrs + 1, (size_t)n);
    memcpy(e->src, addrs + 17, (size_t)n);
    e->slot = slot;
    e->remote_index = remote;
    e->epoch = epoch;
    e->tx_handle = handle;
    e->next = (uint64_t)base;
    e->end = (uint64_t)base + (uint64_t)count;
    e->gen = gen;
    e->max_len = (uint32_t)max_len;
    e->counters = counters;
  }
  napi_get_boolean(env, ok, &out);
  return out;
}

static inline void put_be32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

int dp_xtx_try(napi_env env, dp_xtx *x, void *sock, uint8_t *pkt, size_t len, size_t headroom, size_t tailroom) {
  if (x == NULL || x->live == 0 || x->gen == NULL) return 0;
  if (headroom < DP_HEADER_LEN || tailroom < DP_TAG_LEN || len > x->mtu) return 0;
  int v = len > 0 ? pkt[0] >> 4 : 0, n;
  const uint8_t *dst, *src;
  if (v == 4 && len >= 20) {
    n = 4;
    src = pkt + 12;
    dst = pkt + 16;
  } else if (v == 6 && len >= 40) {
    n = 16;
    src = pkt + 8;
    dst = pkt + 24;
  } else {
    return 0;
  }
  tx_lease *e = &x->tab[addr_hash(dst, n) & (XT_SLOTS - 1)];
  if (!e->used || e->gen != *x->gen || e->family != (v == 4 ? 4 : 6) || memcmp(e->dst, dst, (size_t)n) != 0 ||
      memcmp(e->src, src, (size_t)n) != 0) {
    return 0;
  }
  /* Above the peer's path MTU (ICMP "too big" or inner fragmentation) or a
   * SYN (MSS clamp): JavaScript decides (send.ts); C only hands it back. */
  if (len > e->max_len || is_tcp_syn(pkt, len)) return 0;
  if (e->next >= e->end) {
    drop_tx_lease(env, x, e); /* spent: JavaScript sends this one and leases a new block */
    return 0;
  }
  uint64_t counter = e->next++;
  uint8_t *h = pkt - DP_HEADER_LEN;
  h[0] = 0x11; /* version 1, DATA */
  h[1] = 0;
  h[2] = 0;
  h[3] = 0;
  put_be32(h + 4, e->remote_index);
  put_be32(h + 8, e->epoch);
  put_be32(h + 12, (uint32_t)(counter >> 32));
  put_be32(h + 16, (uint32_t)counter);
  if (!dp_aead_seal_one(env, e->tx_handle, h, (int)len)) {
    /* Unknown handle (cannot happen while the generation holds): the slot now holds a header; drop it. */
    x->failed++;
    return 1;
  }
  /* Sent by dp_xtx_flush, which the TUN addon calls after the small read and
   * before JavaScript sees the rest of it: the datagrams of one read (the two
   * fragments of a large ping) leave in one sendmmsg, so the peer usually
   * wakes once for both. */
  dp_tx_msg *m = &x->pend[x->npend++];
  m->p = h;
  m->len = len + DP_HEADER_LEN + DP_TAG_LEN;
  m->slot = e->slot;
  m->counters = e->counters;
  m->inner = len;
  if (x->npend == DP_EXPRESS_MAX_BATCH) dp_xtx_flush(x, sock);
  return 1;
}

void dp_xtx_flush(dp_xtx *x, void *sock) {
  if (x == NULL || x->npend == 0) return;
  int n = x->npend;
  x->npend = 0;
  dp_udp_send_many(sock, x->pend, n);
  for (int i = 0; i < n; i++) {
    dp_tx_msg *m = &x->pend[i];
    if (m->ok) {
      m->counters[PC_TX_PACKETS] += 1;
      m->counters[PC_TX_BYTES] += (double)m->inner;
      x->sent++;
    } else {
      x->failed++;
    }
  }
}
