/*
 * Batched UDP on one socket.
 *
 * Receive pipeline (on the event loop thread, driven by uv_poll):
 *   1. the socket becomes readable;
 *   2. recvmmsg() fills up to `batch` slots of the preallocated slab
 *      (slot i at i * slotSize, datagram at + headroom) and their sources;
 *      with UDP GRO (below) it fills regions of 64 KiB instead;
 *   3. truncated datagrams (larger than a slot) are dropped and counted;
 *   4. offsets/lengths/sources are written into typed arrays JavaScript
 *      already holds, and JavaScript is called once with the count;
 *   5. repeat while full batches keep coming, at most MAX_ROUNDS times per
 *      wake-up, so other handles of the loop get their turn.
 * The slab and the arrays are borrowed by JavaScript: valid only until the
 * callback returns (the next batch overwrites them).
 *
 * Send: sendmmsg() over (offset, length, endpoint slot) triples; the
 * destination addresses live in a C table filled by setEndpoint, so no
 * address is marshalled per packet.
 *
 * UDP GRO (receive; on unless the socket is opened with gro false or the kernel refuses
 * the option): the kernel hands over a run of datagrams of one flow (e.g. a
 * peer's UDP_SEGMENT send) as ONE message of up to 64 KiB with a UDP_GRO
 * control message giving the segment size, instead of one socket buffer,
 * one queue entry and one copy per datagram. The slab is then
 * max(1, batch/4) regions of 64 KiB (after the headroom), one per message,
 * and each message is split here into its datagrams, which JavaScript sees
 * exactly as before (offset, length, source each; at most `batch` per call,
 * so one round may take several calls).
 * The datagrams of one message follow each other without a gap, so there is
 * no headroom in front of the second and later ones.
 */
#include "addon.h"
#include "express.h"

#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/udp.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

#define MAX_ROUNDS 8          /* batches per wake-up before yielding to the loop */
#define SEND_CHUNK 128        /* messages per sendmmsg call */
#define GSO_MAX_SEGS 64       /* datagrams per UDP_SEGMENT message (kernel limit UDP_MAX_SEGMENTS) */
#define GSO_MAX_BYTES 65000   /* payload bytes per UDP_SEGMENT message (one IP packet of <= 64 KiB) */
#define SEND_IOVS 1024        /* iovecs per sendmmsg call */
#define MAX_BATCH 1024        /* UIO_MAXIOV */
#define MAX_SLOT (1 << 17)    /* bytes per slot, headroom included */
#define MAX_ENDPOINTS 65536
#define SOCK_BUF (256 << 10)  /* SO_RCVBUF / SO_SNDBUF asked for by default (see DEFAULT_SOCKET_BUFFER) */
#define MAX_SOCK_BUF (64 << 20)
#define GRO_PAYLOAD 65536      /* bytes per GRO receive region after the headroom: the largest UDP payload */

typedef struct {
  union {
    struct sockaddr sa;
    struct sockaddr_in v4;
    struct sockaddr_in6 v6;
  } addr;
  socklen_t len; /* 0 = unset */
} endpoint;

typedef struct {
  napi_env env;
  int fd;
  int family;
  uint16_t port;
  int closed;
  int in_callback;
  int release_self; /* close() ran inside the callback: drop self_ref afterwards */
  int want_ref;

  uv_poll_t *poll;
  napi_async_context actx;
  napi_async_cleanup_hook_handle cleanup;

  uint32_t batch, slot_size, headroom;
  uint8_t *slab;
  int32_t *offsets, *lengths;
  uint8_t *sources;
  napi_ref self_ref, cb_ref;

  struct mmsghdr *rmsgs;
  struct iovec *riov;
  struct sockaddr_storage *rnames;
  int gro;                   /* 1 while UDP_GRO is on: rmsgs are regions of GRO_REGION bytes */
  uint32_t rmsg_count;       /* messages per recvmmsg (batch, or the region count with GRO) */
  uint32_t rcap;             /* datagrams the offsets/lengths/sources arrays hold */
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } *rctl;                   /* per message, GRO only */
  struct mmsghdr smsgs[SEND_CHUNK];
  struct iovec siov[SEND_IOVS];
  int32_t ssegs[SEND_CHUNK]; /* datagrams carried by smsgs[i] */
  union {
    char buf[CMSG_SPACE(sizeof(uint16_t))];
    struct cmsghdr align;
  } sctl[SEND_CHUNK];
  int gso;                   /* 1 while UDP_SEGMENT is usable on this socket */

  endpoint *eps;
  uint32_t eps_cap;

  dp_xrx *xrx; /* express receive (express.c); NULL until expressSetup */
  dp_xtx *xtx; /* express send (express.c); NULL until expressTxSetup */
  tun_express_sender sender; /* handed to the TUN addon (expressTxSetup's result) */

  /* Counters (read with stats()). */
  double rx_datagrams, rx_batches, rx_truncated, rx_errors, cb_exceptions, rx_gro_messages;
  double tx_datagrams, tx_no_endpoint, tx_errors, tx_dropped_full, tx_gso_messages;
  double tx_too_big; /* of tx_errors: EMSGSIZE, a datagram above the path MTU the kernel knows (DF is always set) */
  int pmtudisc;      /* 1 when IP(V6)_MTU_DISCOVER = PMTUDISC_DO took */
} udp_sock;


static void free_poll_cb(uv_handle_t *h) { free(h); }

static void close_poll_after_cleanup(uv_handle_t *h) {
  napi_async_cleanup_hook_handle ch = h->data;
  free(h);
  napi_remove_async_cleanup_hook(ch);
}

/* Stops polling and closes the fd; leaves napi references alone. */
static void stop_io(udp_sock *s) {
  if (s->poll != NULL) {
    uv_poll_stop(s->poll);
    s->poll->data = NULL;
    uv_close((uv_handle_t *)s->poll, free_poll_cb);
    s->poll = NULL;
  }
  if (s->fd >= 0) {
    close(s->fd);
    s->fd = -1;
  }
}

/* Environment teardown (process or worker exit) with the socket still open. */
static void async_cleanup(napi_async_cleanup_hook_handle handle, void *arg) {
  udp_sock *s = arg;
  s->cleanup = NULL;
  s->closed = 1;
  if (s->poll != NULL) {
    uv_poll_t *p = s->poll;
    uv_poll_stop(p);
    p->data = handle;
    s->poll = NULL;
    uv_close((uv_handle_t *)p, close_poll_after_cleanup);
  } else {
    napi_remove_async_cleanup_hook(handle);
  }
  if (s->fd >= 0) {
    close(s->fd);
    s->fd = -1;
  }
}

static void do_close(udp_sock *s) {
  if (s->closed) return;
  s->closed = 1;
  stop_io(s);
  if (s->cleanup != NULL) {
    napi_remove_async_cleanup_hook(s->cleanup);
    s->cleanup = NULL;
  }
  if (s->cb_ref != NULL) {
    napi_delete_reference(s->env, s->cb_ref);
    s->cb_ref = NULL;
  }
  if (s->xrx != NULL) {
    dp_xrx_free(s->env, s->xrx);
    s->xrx = NULL;
  }
  if (s->xtx != NULL) {
    dp_xtx_free(s->env, s->xtx);
    s->xtx = NULL;
  }
  /* The async context and the object are still in use by on_readable when
   * close() runs inside the receive callback: release them afterwards. */
  if (s->actx != NULL && !s->in_callback) {
    napi_async_destroy(s->env, s->actx);
    s->actx = NULL;
  }
  /* The object no longer needs to outlive its JS references. If we are
   * inside the receive callback, on_readable still uses `s`: defer. */
  if (s->in_callback) s->release_self = 1;
  else if (s->self_ref != NULL) {
    napi_delete_reference(s->env, s->self_ref);
    s->self_ref = NULL;
  }
}

static void finalize(napi_env env, void *data, void *hint) {
  udp_sock *s = data;
  if (!s->closed) {
    /* Only reachable at environment teardown: self_ref keeps open sockets alive. */
    stop_io(s);
    s->closed = 1;
  }
  if (s->self_ref != NULL) napi_delete_reference(env, s->self_ref);
  dp_xrx_free(env, s->xrx);
  dp_xtx_free(env, s->xtx);
  free(s->rmsgs);
  free(s->riov);
  free(s->rnames);
  free(s->rctl);
  free(s->eps);
  free(s);
}

static void write_source(uint8_t *dst, const struct sockaddr_storage *ss) {
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
    memset(dst, 0, 10);
    dst[10] = dst[11] = 0xff;
    memcpy(dst + 12, &a->sin_addr, 4);
    memcpy(dst + 16, &a->sin_port, 2);
  } else if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
    memcpy(dst, &a->sin6_addr, 16);
    memcpy(dst + 16, &a->sin6_port, 2);
  } else {
    memset(dst, 0, DP_SOURCE_LEN);
  }
}

/* The segment size of a GRO message, 0 when it carries one datagram. */
static int gro_size(const struct msghdr *h) {
  for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c != NULL; c = CMSG_NXTHDR((struct msghdr *)h, c)) {
    if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO && c->cmsg_len >= CMSG_LEN(sizeof(int))) {
      int g;
      memcpy(&g, CMSG_DATA(c), sizeof g);
      return g;
    }
  }
  return 0;
}

/* One recvmmsg into the messages; returns their count, -1 when nothing more now. */
static int recv_round(udp_sock *s) {
  for (uint32_t i = 0; i < s->rmsg_count; i++) {
    s->rmsgs[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_storage);
    s->rmsgs[i].msg_hdr.msg_flags = 0;
    if (s->gro) s->rmsgs[i].msg_hdr.msg_controllen = sizeof s->rctl[i];
  }
  int n;
  do {
    n = recvmmsg(s->fd, s->rmsgs, s->rmsg_count, MSG_DONTWAIT, NULL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK) s->rx_errors++;
    return -1;
  }
  return n;
}

/*
 * Writes the next datagrams of the n received messages, from (*msg, *at) on,
 * into the arrays: at most `batch` of them. A message is one datagram, or
 * with GRO a run of datagrams of the size in its UDP_GRO control message
 * (the last may be shorter). Datagrams longer than a slot (slotSize minus
 * headroom) are dropped and counted, with or without GRO. Returns the count.
 */
static int fill_batch(udp_sock *s, int n, int *msg, uint32_t *at) {
  const uint32_t max_len = s->slot_size - s->headroom;
  uint32_t k = 0;
  while (*msg < n && k < s->batch) {
    int i = *msg;
    const struct msghdr *h = &s->rmsgs[i].msg_hdr;
    uint32_t len = s->rmsgs[i].msg_len;
    if (h->msg_flags & MSG_TRUNC) {
      s->rx_truncated++;
      (*msg)++;
      *at = 0;
      continue;
    }
    uint32_t base = (uint32_t)((uint8_t *)s->riov[i].iov_base - s->slab);
    if (len == 0) {
      /* An empty datagram is a datagram too: handed on with length 0 so the
       * pipeline drops and counts it ('truncated') like any short one. */
      s->offsets[k] = (int32_t)base;
      s->lengths[k] = 0;
      write_source(s->sources + (size_t)k * DP_SOURCE_LEN, &s->rnames[i]);
      k++;
      (*msg)++;
      *at = 0;
      continue;
    }
    int g = s->gro ? gro_size(h) : 0;
    uint32_t seg = g > 0 && (uint32_t)g < len ? (uint32_t)g : len;
    if (*at == 0 && seg != len) s->rx_gro_messages++;
    while (*at < len && k < s->batch) {
      uint32_t l = len - *at < seg ? len - *at : seg;
      if (l > max_len) {
        s->rx_truncated++;
      } else {
        s->offsets[k] = (int32_t)(base + *at);
        s->lengths[k] = (int32_t)l;
        write_source(s->sources + (size_t)k * DP_SOURCE_LEN, &s->rnames[i]);
        k++;
      }
      *at += seg;
    }
    if (*at >= len) {
      (*msg)++;
      *at = 0;
    }
  }
  return (int)k;
}

static void on_readable(uv_poll_t *h, int status, int events) {
  udp_sock *s = h->data;
  if (s == NULL || s->closed) return;
  if (status < 0) {
    s->rx_errors++;
    return;
  }
  napi_env env = s->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  s->in_callback = 1;
  for (int round = 0; round < MAX_ROUNDS && !s->closed; round++) {
    int n = recv_round(s);
    if (n < 0) break;
    /* With GRO one round may hold more datagrams than a batch: deliver them
     * in several calls of at most `batch` (the slab is not reused until the
     * next round). */
    int msg = 0;
    uint32_t at = 0;
    while (msg < n && !s->closed) {
      int k = fill_batch(s, n, &msg, &at);
      if (k == 0 || s->cb_ref == NULL) continue;
      /* A small batch (idle traffic: one datagram, or the two fragments of a
       * large ping) may take the express path (express.c) and never enter
       * JavaScript: C takes datagrams in order while it can; JavaScript gets
       * the rest, from the first one C left on. */
      if (k <= DP_EXPRESS_MAX_BATCH && s->xrx != NULL) {
        int m = 0;
        while (m < k && dp_xrx_try(env, s->xrx, s->slab + s->offsets[m], (uint32_t)s->lengths[m],
                                   s->sources + (size_t)m * DP_SOURCE_LEN)) {
          m++;
        }
        if (m == k) continue;
        if (m > 0) {
          memmove(s->offsets, s->offsets + m, (size_t)(k - m) * sizeof *s->offsets);
          memmove(s->lengths, s->lengths + m, (size_t)(k - m) * sizeof *s->lengths);
          memmove(s->sources, s->sources + (size_t)m * DP_SOURCE_LEN, (size_t)(k - m) * DP_SOURCE_LEN);
          k -= m;
        }
      }
      napi_value cb, recv, argv[1], result;
      s->rx_datagrams += k;
      s->rx_batches++;
      if (napi_get_reference_value(env, s->cb_ref, &cb) == napi_ok && cb != NULL &&
          napi_get_global(env, &recv) == napi_ok && napi_create_int32(env, k, &argv[0]) == napi_ok) {
        napi_status st = napi_make_callback(env, s->actx, recv, cb, 1, argv, &result);
        if (st != napi_ok) {
          bool pending = false;
          napi_is_exception_pending(env, &pending);
          if (pending) {
            napi_value exc;
            napi_get_and_clear_last_exception(env, &exc);
          }
          s->cb_exceptions++;
        }
      }
    }
    if ((uint32_t)n < s->rmsg_count) break;
  }
  s->in_callback = 0;
  napi_close_handle_scope(env, scope);
  if (s->closed && s->actx != NULL) {
    napi_async_destroy(env, s->actx);
    s->actx = NULL;
  }
  if (s->release_self && s->self_ref != NULL) {
    s->release_self = 0;
    napi_ref r = s->self_ref;
    s->self_ref = NULL;
    napi_delete_reference(env, r); /* may let the finalizer free `s` later: do not touch it after */
  }
}

static udp_sock *unwrap_this(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv) {
  napi_value self;
  void *p = NULL;
  if (napi_get_cb_info(env, info, argc, argv, &self, NULL) != napi_ok || napi_unwrap(env, self, &p) != napi_ok || p == NULL) {
    dp_throw(env, "ERR_DP_NATIVE", 0, "not a UdpSocket");
    return NULL;
  }
  return p;
}

static int parse_host(udp_sock *s, const char *host, uint16_t port, endpoint *ep) {
  char buf[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
  size_t n = strlen(host);
  if (n == 0 || n >= sizeof buf) return 0;
  memcpy(buf, host, n + 1);
  memset(ep, 0, sizeof *ep);
  struct in_addr a4;
  struct in6_addr a6;
  if (inet_pton(AF_INET, buf, &a4) == 1) {
    if (s->family == AF_INET) {
      ep->addr.v4.sin_family = AF_INET;
      ep->addr.v4.sin_addr = a4;
      ep->addr.v4.sin_port = htons(port);
      ep->len = sizeof ep->addr.v4;
    } else {
      ep->addr.v6.sin6_family = AF_INET6;
      ep->addr.v6.sin6_addr.s6_addr[10] = ep->addr.v6.sin6_addr.s6_addr[11] = 0xff;
      memcpy(&ep->addr.v6.sin6_addr.s6_addr[12], &a4, 4);
      ep->addr.v6.sin6_port = htons(port);
      ep->len = sizeof ep->addr.v6;
    }
    return 1;
  }
  uint32_t scope = 0;
  char *pct = strchr(buf, '%');
  if (pct != NULL) {
    *pct = '\0';
    const char *z = pct + 1;
    char *end;
    unsigned long v = strtoul(z, &end, 10);
    if (*z != '\0' && *end == '\0') scope = (uint32_t)v;
    else if ((scope = if_nametoindex(z)) == 0) return 0;
  }
  if (inet_pton(AF_INET6, buf, &a6) != 1) return 0;
  if (s->family == AF_INET6) {
    ep->addr.v6.sin6_family = AF_INET6;
    ep->addr.v6.sin6_addr = a6;
    ep->addr.v6.sin6_port = htons(port);
    ep->addr.v6.sin6_scope_id = scope;
    ep->len = sizeof ep->addr.v6;
    return 1;
  }
  /* IPv4 socket: only a v4-mapped IPv6 address is reachable. */
  if (IN6_IS_ADDR_V4MAPPED(&a6)) {
    ep->addr.v4.sin_family = AF_INET;
    memcpy(&ep->addr.v4.sin_addr, &a6.s6_addr[12], 4);
    ep->addr.v4.sin_port = htons(port);
    ep->len = sizeof ep->addr.v4;
    return 1;
  }
  return -1;
}

/* new UdpSocket(bindAddress: string|null, port, batchSize, slotSize, headroom[, bufferBytes[, gso[, gro]]])
 * gso/gro: booleans, default true (the caller's configuration; this file reads no environment). */
static napi_value ctor(napi_env env, napi_callback_info info) {
  size_t argc = 8;
  napi_value argv[8], self;
  if (napi_get_cb_info(env, info, &argc, argv, &self, NULL) != napi_ok || argc < 5)
    return dp_throw(env, "ERR_DP_NATIVE", 0, "UdpSocket(bindAddress, port, batchSize, slotSize, headroom)");
  int32_t port, batch, slot, headroom;
  if (!dp_get_int(env, argv[1], &port) || !dp_get_int(env, argv[2], &batch) || !dp_get_int(env, argv[3], &slot) ||
      !dp_get_int(env, argv[4], &headroom))
    return dp_throw(env, "ERR_DP_CONFIG", 0, "UdpSocket: port, batchSize, slotSize and headroom must be numbers");
  if (port < 0 || port > 65535) return dp_throw(env, "ERR_DP_CONFIG", 0, "UdpSocket: port %d out of range", port);
  if (batch < 1 || batch > MAX_BATCH) return dp_throw(env, "ERR_DP_CONFIG", 0, "UdpSocket: batchSize %d not in 1..%d", batch, MAX_BATCH);
  if (slot < 64 || slot > MAX_SLOT) return dp_throw(env, "ERR_DP_CONFIG", 0, "UdpSocket: slotSize %d not in 64..%d", slot, MAX_SLOT);
  if (headroom < 0 || headroom > slot - 64)
    return dp_throw(env, "ERR_DP_CONFIG", 0, "UdpSocket: headroom %d must leave at least 64 bytes of slot %d", headroom, slot);
  int32_t sockbuf = SOCK_BUF;
  if (argc >= 6) {
    napi_valuetype bt;
    napi_typeof(env, argv[5], &bt);
    if (bt != napi_undefined && (!dp_get_int(env, argv[5], &sockbuf) || sockbuf < 0 || sockbuf > MAX_SOCK_BUF))
      return dp_throw(env, "ERR_DP_CONFIG", 0, "UdpSocket: bufferBytes must be 0 (kernel default) or 1..%d", MAX_SOCK_BUF);
  }
  bool want_gso = true, want_gro = true;
  for (size_t i = 6; i < 8 && i < argc; i++) {
    napi_valuetype bt;
    napi_typeof(env, argv[i], &bt);
    if (bt == napi_undefined) continue;
    if (bt != napi_boolean || napi_get_value_bool(env, argv[i], i == 6 ? &want_gso : &want_gro) != napi_ok)
      return dp_throw(env, "ERR_DP_CONFIG", 0, "UdpSocket: gso and gro must be booleans");
  }

  /* Bind address: null/undefined = "::" dual stack. */
  char host[INET6_ADDRSTRLEN + 1] = "";
  napi_valuetype t;
  napi_typeof(env, argv[0], &t);
  if (t == napi_string) {
    size_t n = 0;
    if (napi_get_value_string_utf8(env, argv[0], host, sizeof host, &n) != napi_ok || n >= sizeof host - 1)
      return dp_throw(env, "ERR_DP_CONFIG", 0, "UdpSocket: bindAddress is not a numeric IP address");
  } else if (t != napi_null && t != napi_undefined) {
    return dp_throw(env, "ERR_DP_CONFIG", 0, "UdpSocket: bindAddress must be a string");
  }
  union {
    struct sockaddr sa;
    struct sockaddr_in v4;
    struct sockaddr_in6 v6;
  } addr;
  socklen_t alen;
  memset(&addr, 0, sizeof addr);
  int family;
  int any6 = host[0] == '\0';
  if (!any6 && inet_pton(AF_INET, host, &addr.v4.sin_addr) == 1) {
    family = AF_INET;
    addr.v4.sin_family = AF_INET;
    addr.v4.sin_port = htons((uint16_t)port);
    alen = sizeof addr.v4;
  } else if (any6 || inet_pton(AF_INET6, host, &addr.v6.sin6_addr) == 1) {
    family = AF_INET6;
    addr.v6.sin6_family = AF_INET6;
    if (any6) addr.v6.sin6_addr = in6addr_any;
    addr.v6.sin6_port = htons((uint16_t)port);
    alen = sizeof addr.v6;
  } else {
    return dp_throw(env, "ERR_DP_CONFIG", 0, "UdpSocket: bindAddress '%s' is not a numeric IP address", host);
  }

  int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0 && family == AF_INET6 && any6 && errno == EAFNOSUPPORT) {
    /* No IPv6 in this kernel/namespace: fall back to IPv4 any. */
    family = AF_INET;
    memset(&addr, 0, sizeof addr);
    addr.v4.sin_family = AF_INET;
    addr.v4.sin_port = htons((uint16_t)port);
    alen = sizeof addr.v4;
    fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  }
  if (fd < 0) return dp_throw(env, "ERR_DP_NATIVE", errno, "UdpSocket: socket()");
  int zero = 0, big = sockbuf, pmtu_ok = 0;
  if (family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero) != 0) {
    int e = errno;
    close(fd);
    return dp_throw(env, "ERR_DP_NATIVE", e, "UdpSocket: IPV6_V6ONLY=0");
  }
  /* Larger buffers absorb longer stalls of the reader; under saturation they
   * also hold a standing queue (latency). FORCE works as root past
   * rmem_max. Best effort; 0 keeps the kernel default. */
  if (big > 0) {
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big) != 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof big) != 0) setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
  }
  /* Path MTU (../../src/pmtu.ts): every datagram leaves with DF set and is
   * never fragmented by this host; one above the path MTU the kernel learnt
   * fails with EMSGSIZE (counted in txTooBig) instead of going out as
   * fragments. The probes of pmtu.ts rely on it. On a dual-stack socket the
   * IPv4 option covers the v4-mapped traffic. Best effort: a kernel that
   * refuses leaves pmtuDiscovery at 0 in stats(). */
  {
    int dov4 = IP_PMTUDISC_DO, dov6 = IPV6_PMTUDISC_DO, ok4 = 1, ok6 = 1;
    ok4 = setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &dov4, sizeof dov4) == 0;
    if (family == AF_INET6) ok6 = setsockopt(fd, IPPROTO_IPV6, IPV6_MTU_DISCOVER, &dov6, sizeof dov6) == 0;
    pmtu_ok = ok4 && ok6;
  }
  if (bind(fd, &addr.sa, alen) != 0) {
    int e = errno;
    close(fd);
    return dp_throw(env, "ERR_DP_BIND", e, "UdpSocket: bind to [%s]:%d", any6 ? "::" : host, port);
  }
  struct sockaddr_storage bound;
  socklen_t blen = sizeof bound;
  if (getsockname(fd, (struct sockaddr *)&bound, &blen) != 0) {
    int e = errno;
    close(fd);
    return dp_throw(env, "ERR_DP_NATIVE", e, "UdpSocket: getsockname");
  }
  uint16_t bport = family == AF_INET ? ntohs(((struct sockaddr_in *)&bound)->sin_port)
                                     : ntohs(((struct sockaddr_in6 *)&bound)->sin6_port);

  udp_sock *s = calloc(1, sizeof *s);
  if (s == NULL) {
    close(fd);
    return dp_throw(env, "ERR_DP_NATIVE", ENOMEM, "UdpSocket");
  }
  s->env = env;
  s->fd = fd;
  s->family = family;
  s->port = bport;
  s->want_ref = 1;
  s->gso = want_gso;
  s->pmtudisc = pmtu_ok;
  s->batch = (uint32_t)batch;
  s->slot_size = (uint32_t)slot;
  s->headroom = (uint32_t)headroom;
  int one = 1;
  s->gro = want_gro && setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof one) == 0;
  s->rmsg_count = s->gro ? (batch / 4 > 0 ? (uint32_t)batch / 4 : 1) : (uint32_t)batch;
  s->rcap = (uint32_t)batch; /* datagrams per handler call, GRO or not */
  /* GRO regions: headroom, then room for the largest UDP payload, 64-byte aligned. */
  size_t region = s->gro ? (((size_t)headroom + GRO_PAYLOAD + 63) & ~(size_t)63) : (size_t)slot;
  size_t slab_bytes = (size_t)s->rmsg_count * region;
  s->rmsgs = calloc(s->rmsg_count, sizeof *s->rmsgs);
  s->riov = calloc(s->rmsg_count, sizeof *s->riov);
  s->rnames = calloc(s->rmsg_count, sizeof *s->rnames);
  if (s->gro) s->rctl = calloc(s->rmsg_count, sizeof *s->rctl);

  napi_value jslab, jab_off, jab_len, joff, jlen, jsrc, jport;
  void *p;
  int ok = s->rmsgs != NULL && s->riov != NULL && s->rnames != NULL && (!s->gro || s->rctl != NULL) &&
           napi_create_buffer(env, slab_bytes, &p, &jslab) == napi_ok;
  if (ok) s->slab = p;
  ok = ok && napi_create_arraybuffer(env, (size_t)s->rcap * 4, &p, &jab_off) == napi_ok &&
       napi_create_typedarray(env, napi_int32_array, s->rcap, jab_off, 0, &joff) == napi_ok;
  if (ok) s->offsets = p;
  ok = ok && napi_create_arraybuffer(env, (size_t)s->rcap * 4, &p, &jab_len) == napi_ok &&
       napi_create_typedarray(env, napi_int32_array, s->rcap, jab_len, 0, &jlen) == napi_ok;
  if (ok) s->lengths = p;
  ok = ok && napi_create_buffer(env, (size_t)s->rcap * DP_SOURCE_LEN, &p, &jsrc) == napi_ok;
  if (ok) s->sources = p;
  if (!ok) {
    close(fd);
    free(s->rmsgs);
    free(s->riov);
    free(s->rnames);
    free(s->rctl);
    free(s);
    return dp_throw(env, "ERR_DP_NATIVE", ENOMEM, "UdpSocket: buffers");
  }
  /* Without GRO the slab is small and cleared; with GRO it is 1 MiB or more
   * and left as allocated (pages become resident only when datagrams land
   * there; JavaScript reads only received bytes). */
  if (!s->gro) memset(s->slab, 0, slab_bytes);
  memset(s->sources, 0, (size_t)s->rcap * DP_SOURCE_LEN);
  for (uint32_t i = 0; i < s->rmsg_count; i++) {
    s->riov[i].iov_base = s->slab + (size_t)i * region + (size_t)headroom;
    s->riov[i].iov_len = region - (size_t)headroom;
    s->rmsgs[i].msg_hdr.msg_iov = &s->riov[i];
    s->rmsgs[i].msg_hdr.msg_iovlen = 1;
    s->rmsgs[i].msg_hdr.msg_name = &s->rnames[i];
    s->rmsgs[i].msg_hdr.msg_namelen = sizeof s->rnames[i];
    if (s->gro) {
      s->rmsgs[i].msg_hdr.msg_control = &s->rctl[i];
      s->rmsgs[i].msg_hdr.msg_controllen = sizeof s->rctl[i];
    }
  }
  napi_create_uint32(env, bport, &jport);
  /* The arrays are properties of `this`, so they live as long as the object. */
  napi_property_descriptor props[] = {
      {"buffer", NULL, NULL, NULL, NULL, jslab, napi_enumerable, NULL},
      {"offsets", NULL, NULL, NULL, NULL, joff, napi_enumerable, NULL},
      {"lengths", NULL, NULL, NULL, NULL, jlen, napi_enumerable, NULL},
      {"sources", NULL, NULL, NULL, NULL, jsrc, napi_enumerable, NULL},
      {"port", NULL, NULL, NULL, NULL, jport, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, self, 5, props) != napi_ok || napi_wrap(env, self, s, finalize, NULL, NULL) != napi_ok) {
    close(fd);
    free(s->rmsgs);
    free(s->riov);
    free(s->rnames);
    free(s->rctl);
    free(s);
    return dp_throw(env, "ERR_DP_NATIVE", 0, "UdpSocket: wrap");
  }
  /* Open sockets stay alive while open (like dgram), even if JS drops them. */
  napi_create_reference(env, self, 1, &s->self_ref);
  napi_add_async_cleanup_hook(env, async_cleanup, s, &s->cleanup);
  return self;
}

/* start(callback(count)) */
static napi_value m_start(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  udp_sock *s = unwrap_this(env, info, &argc, argv);
  if (s == NULL) return NULL;
  if (s->closed) return dp_throw(env, "ERR_DP_CLOSED", 0, "start: socket closed");
  napi_valuetype t;
  if (argc < 1 || napi_typeof(env, argv[0], &t) != napi_ok || t != napi_function)
    return dp_throw(env, "ERR_DP_NATIVE", 0, "start: a function expected");
  if (s->cb_ref != NULL) napi_delete_reference(env, s->cb_ref);
  s->cb_ref = NULL;
  if (napi_create_reference(env, argv[0], 1, &s->cb_ref) != napi_ok) return dp_throw(env, "ERR_DP_NATIVE", 0, "start: reference");
  if (s->actx == NULL) {
    napi_value name;
    napi_create_string_utf8(env, "cluevpn:dataplane:udp", NAPI_AUTO_LENGTH, &name);
    if (napi_async_init(env, NULL, name, &s->actx) != napi_ok) return dp_throw(env, "ERR_DP_NATIVE", 0, "start: async context");
  }
  if (s->poll == NULL) {
    uv_loop_t *loop;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok) return dp_throw(env, "ERR_DP_NATIVE", 0, "start: no event loop");
    uv_poll_t *p = malloc(sizeof *p);
    if (p == NULL) return dp_throw(env, "ERR_DP_NATIVE", ENOMEM, "start");
    int r = uv_poll_init(loop, p, s->fd);
    if (r != 0) {
      free(p);
      return dp_throw(env, "ERR_DP_NATIVE", -r, "start: uv_poll_init");
    }
    p->data = s;
    r = uv_poll_start(p, UV_READABLE, on_readable);
    if (r != 0) {
      uv_close((uv_handle_t *)p, free_poll_cb);
      return dp_throw(env, "ERR_DP_NATIVE", -r, "start: uv_poll_start");
    }
    if (!s->want_ref) uv_unref((uv_handle_t *)p);
    s->poll = p;
  }
  return NULL;
}

/* setEndpoint(slot, host, port) */
static napi_value m_set_endpoint(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  udp_sock *s = unwrap_this(env, info, &argc, argv);
  if (s == NULL) return NULL;
  if (s->closed) return dp_throw(env, "ERR_DP_CLOSED", 0, "setEndpoint: socket closed");
  int32_t slot, port;
  char host[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
  size_t n = 0;
  napi_valuetype t = napi_undefined;
  if (argc < 3 || !dp_get_int(env, argv[0], &slot) || !dp_get_int(env, argv[2], &port) ||
      napi_typeof(env, argv[1], &t) != napi_ok || t != napi_string)
    return dp_throw(env, "ERR_DP_CONFIG", 0, "setEndpoint(slot: number, host: string, port: number)");
  if (slot < 0 || slot >= MAX_ENDPOINTS) return dp_throw(env, "ERR_DP_CONFIG", 0, "setEndpoint: slot %d not in 0..65535", slot);
  if (port < 1 || port > 65535) return dp_throw(env, "ERR_DP_CONFIG", 0, "setEndpoint: port %d not in 1..65535", port);
  if (napi_get_value_string_utf8(env, argv[1], host, sizeof host, &n) != napi_ok || n >= sizeof host - 1)
    return dp_throw(env, "ERR_DP_CONFIG", 0, "setEndpoint: host is not a numeric IP address");
  endpoint ep;
  int r = parse_host(s, host, (uint16_t)port, &ep);
  if (r == 0) return dp_throw(env, "ERR_DP_CONFIG", 0, "setEndpoint: '%s' is not a numeric IP address", host);
  if (r < 0) return dp_throw(env, "ERR_DP_CONFIG", 0, "setEndpoint: '%s' is IPv6 but the socket is IPv4", host);
  if ((uint32_t)slot >= s->eps_cap) {
    uint32_t ncap = s->eps_cap == 0 ? 64 : s->eps_cap;
    while (ncap <= (uint32_t)slot) ncap *= 2;
    if (ncap > MAX_ENDPOINTS) ncap = MAX_ENDPOINTS;
    endpoint *ne = realloc(s->eps, (size_t)ncap * sizeof *ne);
    if (ne == NULL) return dp_throw(env, "ERR_DP_NATIVE", ENOMEM, "setEndpoint");
    memset(ne + s->eps_cap, 0, (size_t)(ncap - s->eps_cap) * sizeof *ne);
    s->eps = ne;
    s->eps_cap = ncap;
  }
  s->eps[slot] = ep;
  return NULL;
}

/* clearEndpoint(slot) */
static napi_value m_clear_endpoint(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  udp_sock *s = unwrap_this(env, info, &argc, argv);
  if (s == NULL) return NULL;
  int32_t slot;
  if (argc < 1 || !dp_get_int(env, argv[0], &slot) || slot < 0 || slot >= MAX_ENDPOINTS)
    return dp_throw(env, "ERR_DP_CONFIG", 0, "clearEndpoint: slot must be in 0..65535");
  if ((uint32_t)slot < s->eps_cap) memset(&s->eps[slot], 0, sizeof s->eps[slot]);
  return NULL;
}

/* sendBatch(buf, count, offs, lens, slots) -> datagrams handed to the kernel */
static napi_value m_send_batch(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  udp_sock *s = unwrap_this(env, info, &argc, argv);
  if (s == NULL) return NULL;
  if (s->closed) return dp_throw(env, "ERR_DP_CLOSED", 0, "sendBatch: socket closed");
  uint8_t *buf;
  size_t blen, no, nl, ns;
  int32_t count, *offs, *lens, *slots;
  if (argc < 5 || !dp_get_u8(env, argv[0], &buf, &blen) || !dp_get_int(env, argv[1], &count) ||
      !dp_get_i32(env, argv[2], &offs, &no) || !dp_get_i32(env, argv[3], &lens, &nl) || !dp_get_i32(env, argv[4], &slots, &ns))
    return dp_throw(env, "ERR_DP_NATIVE", 0, "sendBatch(Uint8Array, number, Int32Array, Int32Array, Int32Array)");
  if (count < 0 || (size_t)count > no || (size_t)count > nl || (size_t)count > ns)
    return dp_throw(env, "ERR_DP_NATIVE", 0, "sendBatch: count %d outside the arrays", count);
  for (int32_t i = 0; i < count; i++) {
    int64_t off = offs[i], len = lens[i];
    if (off < 0 || len < 0 || off + len > (int64_t)blen)
      return dp_throw(env, "ERR_DP_NATIVE", 0, "sendBatch: datagram %d (offset %d, length %d) outside the buffer of %zu bytes",
                      i, offs[i], lens[i], blen);
    if (slots[i] < 0 || slots[i] >= MAX_ENDPOINTS)
      return dp_throw(env, "ERR_DP_NATIVE", 0, "sendBatch: datagram %d has endpoint slot %d outside 0..65535", i, slots[i]);
  }
  int32_t sent = 0, i = 0;
  int full = 0;
  while (i < count && !full) {
    /* Build one chunk of messages, skipping unset endpoints. Consecutive
     * datagrams to the same endpoint with the same length (the last of a
     * run may be shorter) become one UDP_SEGMENT (GSO) message: the kernel
     * sends them as separate datagrams but walks its stack once. */
    int m = 0, niov = 0;
    while (i < count && m < SEND_CHUNK && niov < SEND_IOVS) {
      int32_t off = offs[i], len = lens[i], slot = slots[i];
      if (off < 0 || len < 0 || (int64_t)off + len > (int64_t)blen) { /* aliasing guard */
        s->tx_errors++;
        i++;
        continue;
      }
      if ((uint32_t)slot >= s->eps_cap || s->eps[slot].len == 0) {
        s->tx_no_endpoint++;
        i++;
        continue;
      }
      struct iovec *iov = &s->siov[niov];
      iov[0].iov_base = buf + off;
      iov[0].iov_len = (size_t)len;
      int segs = 1;
      int64_t total = len;
      i++;
      if (s->gso && len > 0) {
        while (i < count && segs < GSO_MAX_SEGS && niov + segs < SEND_IOVS) {
          int32_t o2 = offs[i], l2 = lens[i];
          if (slots[i] != slot || l2 > len || l2 <= 0 || total + l2 > GSO_MAX_BYTES) break;
          if (o2 < 0 || (int64_t)o2 + l2 > (int64_t)blen) break; /* aliasing guard: handled above next round */
          iov[segs].iov_base = buf + o2;
          iov[segs].iov_len = (size_t)l2;
          segs++;
          total += l2;
          i++;
          if (l2 < len) break; /* a shorter datagram ends a GSO run */
        }
      }
      struct mmsghdr *mh = &s->smsgs[m];
      memset(mh, 0, sizeof *mh);
      mh->msg_hdr.msg_name = &s->eps[slot].addr;
      mh->msg_hdr.msg_namelen = s->eps[slot].len;
      mh->msg_hdr.msg_iov = iov;
      mh->msg_hdr.msg_iovlen = (size_t)segs;
      if (segs > 1) {
        mh->msg_hdr.msg_control = s->sctl[m].buf;
        mh->msg_hdr.msg_controllen = CMSG_SPACE(sizeof(uint16_t));
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh->msg_hdr);
        c->cmsg_level = SOL_UDP;
        c->cmsg_type = UDP_SEGMENT;
        c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
        uint16_t gs = (uint16_t)len;
        memcpy(CMSG_DATA(c), &gs, sizeof gs);
      }
      s->ssegs[m] = segs;
      niov += segs;
      m++;
    }
    int k = 0;
    while (k < m) {
      int r = sendmmsg(s->fd, s->smsgs + k, (unsigned)(m - k), MSG_DONTWAIT);
      if (r > 0) {
        for (int j = k; j < k + r; j++) {
          sent += s->ssegs[j];
          if (s->ssegs[j] > 1) s->tx_gso_messages++;
        }
        k += r;
        continue;
      }
      int e = errno;
      if (r < 0 && e == EINTR) continue;
      if (r < 0 && (e == EAGAIN || e == EWOULDBLOCK || e == ENOBUFS)) {
        double rest = 0;
        for (int j = k; j < m; j++) rest += s->ssegs[j];
        s->tx_dropped_full += rest + (count - i);
        full = 1;
        break;
      }
      if (s->ssegs[k] > 1 && (e == EIO || e == EINVAL || e == EOPNOTSUPP || e == ENOPROTOOPT || e == EMSGSIZE)) {
        /* The kernel refused the GSO message (no UDP_SEGMENT, no checksum
         * offload on the route: EIO, or a segment above the path MTU:
         * EINVAL). Send its datagrams one by one instead; stop using GSO
         * when the socket cannot do it at all. */
        if (e != EINVAL && e != EMSGSIZE) s->gso = 0;
        struct mmsghdr *mh = &s->smsgs[k];
        for (size_t j = 0; j < mh->msg_hdr.msg_iovlen; j++) {
          struct msghdr one;
          memset(&one, 0, sizeof one);
          one.msg_name = mh->msg_hdr.msg_name;
          one.msg_namelen = mh->msg_hdr.msg_namelen;
          one.msg_iov = &mh->msg_hdr.msg_iov[j];
          one.msg_iovlen = 1;
          ssize_t w;
          do w = sendmsg(s->fd, &one, MSG_DONTWAIT);
          while (w < 0 && errno == EINTR);
          if (w >= 0) sent++;
          else if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) s->tx_dropped_full++;
          else {
            if (errno == EMSGSIZE) s->tx_too_big++;
            s->tx_errors++;
          }
        }
        k++;
        continue;
      }
      if (e == EMSGSIZE) s->tx_too_big += s->ssegs[k];
      s->tx_errors += s->ssegs[k]; /* e.g. EMSGSIZE, ENETUNREACH, EACCES: drop this message, go on */
      k++;
    }
  }
  s->tx_datagrams += sent;
  napi_value out;
  napi_create_int32(env, sent, &out);
  return out;
}

static napi_value m_close(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  udp_sock *s = unwrap_this(env, info, &argc, NULL);
  if (s == NULL) return NULL;
  do_close(s);
  return NULL;
}

static napi_value set_ref(napi_env env, napi_callback_info info, int on) {
  size_t argc = 0;
  udp_sock *s = unwrap_this(env, info, &argc, NULL);
  if (s == NULL) return NULL;
  s->want_ref = on;
  if (s->poll != NULL) {
    if (on) uv_ref((uv_handle_t *)s->poll);
    else uv_unref((uv_handle_t *)s->poll);
  }
  return NULL;
}
static napi_value m_ref(napi_env env, napi_callback_info info) { return set_ref(env, info, 1); }
static napi_value m_unref(napi_env env, napi_callback_info info) { return set_ref(env, info, 0); }

static int put_num(napi_env env, napi_value obj, const char *k, double v) {
  napi_value n;
  return napi_create_double(env, v, &n) == napi_ok && napi_set_named_property(env, obj, k, n) == napi_ok;
}

static napi_value m_stats(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  udp_sock *s = unwrap_this(env, info, &argc, NULL);
  if (s == NULL) return NULL;
  napi_value o;
  napi_create_object(env, &o);
  put_num(env, o, "rxDatagrams", s->rx_datagrams);
  put_num(env, o, "rxBatches", s->rx_batches);
  put_num(env, o, "rxTruncated", s->rx_truncated);
  put_num(env, o, "rxErrors", s->rx_errors);
  put_num(env, o, "handlerExceptions", s->cb_exceptions);
  put_num(env, o, "txDatagrams", s->tx_datagrams);
  put_num(env, o, "txNoEndpoint", s->tx_no_endpoint);
  put_num(env, o, "txErrors", s->tx_errors);
  put_num(env, o, "txTooBig", s->tx_too_big);
  put_num(env, o, "pmtuDiscovery", s->pmtudisc);
  put_num(env, o, "txDroppedFull", s->tx_dropped_full);
  put_num(env, o, "txGsoMessages", s->tx_gso_messages);
  put_num(env, o, "rxGroMessages", s->rx_gro_messages);
  put_num(env, o, "gro", s->gro);
  double xd, xf, xl;
  dp_xrx_stats(s->xrx, &xd, &xf, &xl);
  put_num(env, o, "rxExpress", xd);
  put_num(env, o, "rxExpressTunFailed", xf);
  put_num(env, o, "expressLeases", xl);
  dp_xtx_stats(s->xtx, &xd, &xf, &xl);
  put_num(env, o, "txExpress", xd);
  put_num(env, o, "txExpressFailed", xf);
  put_num(env, o, "expressTxLeases", xl);
  int rb = 0, sb = 0;
  socklen_t l = sizeof rb;
  if (s->closed || getsockopt(s->fd, SOL_SOCKET, SO_RCVBUF, &rb, &l) != 0) rb = 0;
  l = sizeof sb;
  if (s->closed || getsockopt(s->fd, SOL_SOCKET, SO_SNDBUF, &sb, &l) != 0) sb = 0;
  put_num(env, o, "rcvbuf", rb);
  put_num(env, o, "sndbuf", sb);
  return o;
}

/* expressSetup(gen, writer, owner, mtu) | expressSetup(null): see express.c. */
static napi_value m_express_setup(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  udp_sock *s = unwrap_this(env, info, &argc, argv);
  if (s == NULL) return NULL;
  if (s->closed) return dp_throw(env, "ERR_DP_CLOSED", 0, "the socket is closed");
  if (s->xrx == NULL && (s->xrx = dp_xrx_new()) == NULL) return dp_throw(env, "ERR_DP_NATIVE", 0, "out of memory");
  return dp_xrx_setup(env, s->xrx, argc, argv);
}

/* expressLease(localIndex, rxHandle, epoch, gen, window, counters, endpointKey, subnets) -> boolean. */
static napi_value m_express_lease(napi_env env, napi_callback_info info) {
  size_t argc = 8;
  napi_value argv[8];
  udp_sock *s = unwrap_this(env, info, &argc, argv);
  if (s == NULL) return NULL;
  if (s->closed || s->xrx == NULL) {
    napi_value f;
    napi_get_boolean(env, false, &f);
    return f;
  }
  return dp_xrx_lease(env, s->xrx, argc, argv);
}

void dp_udp_send_many(void *sock, dp_tx_msg *msgs, int n) {
  udp_sock *s = sock;
  struct mmsghdr mh[DP_EXPRESS_MAX_BATCH];
  struct iovec iov[DP_EXPRESS_MAX_BATCH];
  int idx[DP_EXPRESS_MAX_BATCH], m = 0;
  for (int i = 0; i < n; i++) {
    dp_tx_msg *t = &msgs[i];
    t->ok = 0;
    if (s->closed || m == DP_EXPRESS_MAX_BATCH) continue;
    if (t->slot < 0 || (uint32_t)t->slot >= s->eps_cap || s->eps[t->slot].len == 0) {
      s->tx_no_endpoint++;
      continue;
    }
    iov[m].iov_base = (void *)t->p;
    iov[m].iov_len = t->len;
    memset(&mh[m], 0, sizeof mh[m]);
    mh[m].msg_hdr.msg_name = &s->eps[t->slot].addr.sa;
    mh[m].msg_hdr.msg_namelen = s->eps[t->slot].len;
    mh[m].msg_hdr.msg_iov = &iov[m];
    mh[m].msg_hdr.msg_iovlen = 1;
    idx[m++] = i;
  }
  int k = 0;
  while (k < m) {
    int r = sendmmsg(s->fd, mh + k, (unsigned)(m - k), MSG_DONTWAIT);
    if (r < 0 && errno == EINTR) continue;
    if (r > 0) {
      for (int j = k; j < k + r; j++) msgs[idx[j]].ok = 1;
      s->tx_datagrams += r;
      k += r;
      continue;
    }
    /* The message at k was refused: count it, go on with the next. */
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) s->tx_dropped_full++;
    else {
      if (errno == EMSGSIZE) s->tx_too_big++;
      s->tx_errors++;
    }
    k++;
  }
}

/* The TUN addon's entry point (tun_express_sender.send). */
static int express_send(void *ctx, uint8_t *pkt, size_t len, size_t headroom, size_t tailroom) {
  udp_sock *s = ctx;
  if (s->closed || s->xtx == NULL) return 0;
  return dp_xtx_try(s->env, s->xtx, s, pkt, len, headroom, tailroom);
}

/* The TUN addon's flush (tun_express_sender.flush): after a small read, before JavaScript. */
static void express_flush(void *ctx) {
  udp_sock *s = ctx;
  if (s->xtx != NULL) dp_xtx_flush(s->xtx, s);
}

/* expressTxSetup(gen, mtu) -> sender external | expressTxSetup(null): see express.c. */
static napi_value m_express_tx_setup(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], out;
  udp_sock *s = unwrap_this(env, info, &argc, argv);
  if (s == NULL) return NULL;
  if (s->closed) return dp_throw(env, "ERR_DP_CLOSED", 0, "the socket is closed");
  if (s->xtx == NULL && (s->xtx = dp_xtx_new()) == NULL) return dp_throw(env, "ERR_DP_NATIVE", 0, "out of memory");
  if (dp_xtx_setup(env, s->xtx, argc, argv) <= 0) return NULL; /* off, or refused with an exception */
  s->sender.magic = TUN_EXPRESS_SENDER_MAGIC;
  s->sender.send = express_send;
  s->sender.flush = express_flush;
  s->sender.ctx = s;
  if (napi_create_external(env, &s->sender, NULL, NULL, &out) != napi_ok) return NULL;
  return out;
}

/* expressTxLease(addrs, slot, remoteIndex, epoch, txHandle, counterBase, counterCount, gen, counters, maxLen) -> boolean. */
static napi_value m_express_tx_lease(napi_env env, napi_callback_info info) {
  size_t argc = 10;
  napi_value argv[10];
  udp_sock *s = unwrap_this(env, info, &argc, argv);
  if (s == NULL) return NULL;
  if (s->closed || s->xtx == NULL) {
    napi_value f;
    napi_get_boolean(env, false, &f);
    return f;
  }
  return dp_xtx_lease(env, s->xtx, argc, argv);
}

static napi_value m_fd(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  udp_sock *s = unwrap_this(env, info, &argc, NULL);
  if (s == NULL) return NULL;
  napi_value out;
  napi_create_int32(env, s->fd, &out);
  return out;
}

napi_status dp_udp_init(napi_env env, napi_value exports) {
  napi_property_descriptor methods[] = {
      {"start", NULL, m_start, NULL, NULL, NULL, napi_default_method, NULL},
      {"setEndpoint", NULL, m_set_endpoint, NULL, NULL, NULL, napi_default_method, NULL},
      {"clearEndpoint", NULL, m_clear_endpoint, NULL, NULL, NULL, napi_default_method, NULL},
      {"sendBatch", NULL, m_send_batch, NULL, NULL, NULL, napi_default_method, NULL},
      {"close", NULL, m_close, NULL, NULL, NULL, napi_default_method, NULL},
      {"ref", NULL, m_ref, NULL, NULL, NULL, napi_default_method, NULL},
      {"unref", NULL, m_unref, NULL, NULL, NULL, napi_default_method, NULL},
      {"stats", NULL, m_stats, NULL, NULL, NULL, napi_default_method, NULL},
      {"fd", NULL, m_fd, NULL, NULL, NULL, napi_default_method, NULL},
      {"expressSetup", NULL, m_express_setup, NULL, NULL, NULL, napi_default_method, NULL},
      {"expressLease", NULL, m_express_lease, NULL, NULL, NULL, napi_default_method, NULL},
      {"expressTxSetup", NULL, m_express_tx_setup, NULL, NULL, NULL, napi_default_method, NULL},
      {"expressTxLease", NULL, m_express_tx_lease, NULL, NULL, NULL, napi_default_method, NULL},
  };
  napi_value cls;
  napi_status st = napi_define_class(env, "UdpSocket", NAPI_AUTO_LENGTH, ctor, NULL, sizeof methods / sizeof methods[0], methods, &cls);
  if (st != napi_ok) return st;
  return napi_set_named_property(env, exports, "UdpSocket", cls);
}
