/*
 * tun.c: the native half of @cluevpn/tun.
 *
 * Pipeline of a read:
 *   1. open(): /dev/net/tun, O_NONBLOCK|O_CLOEXEC, TUNSETIFF (IFF_TUN or
 *      IFF_TAP, always IFF_NO_PI); a uv_poll_t is initialised on the fd.
 *   2. setup(): the wrapper hands over a slab Buffer (batchSize slots of
 *      slotSize bytes), an Int32Array of offsets and one of lengths, and the
 *      two JS callbacks. All are kept alive by references until close().
 *   3. poll(true): uv_poll_start(UV_READABLE) on the Node event loop. No
 *      thread is used, the threadpool is never touched.
 *   4. on_readable(): read() until EAGAIN or batchSize packets; packet i lands
 *      at slot i + headroom; then ONE napi_make_callback(onBatch, count).
 *      An exception thrown by the handler is cleared and handed to
 *      onError(0, exception); a read error stops polling and is handed to
 *      onError(1, errnoName, syscall).
 *
 * Writes are plain write() calls on the non-blocking fd; EAGAIN/ENOBUFS are
 * counted as dropped, other errors counted as write errors, never thrown.
 *
 * Lifetime: the C struct is freed only when both the uv handle has finished
 * closing and the JS handle object has been finalized. JS references are
 * released in close() (deferred until the JS callback returns when close()
 * is called from inside it). An async env cleanup hook closes a device the
 * program forgot at environment teardown and holds the teardown until the
 * uv close callback has run, so a worker thread never runs our callback after
 * the addon is unloaded, and never leaks the fd.
 *
 * Offloads (open flag TUN_OPEN_OFFLOAD): IFF_VNET_HDR, TUNSETVNETHDRSZ 10,
 * TUNSETOFFLOAD CSUM|TSO4|TSO6. Every read then starts with a
 * virtio_net_hdr and may be a TCP super-packet of up to 64 KiB: it is read
 * into d->rx and split into MSS-sized segments in consecutive slots
 * (offload.c); segments that do not fit the batch stay pending and are
 * handed over in a further batch within the same readable event. A partial
 * checksum (NEEDS_CSUM) is completed. JavaScript sees plain IP packets of at
 * most the MTU either way. Every write carries a zero vnet header; writeBatch
 * coalesces runs of in-order TCP segments of one flow into one GSO
 * super-packet (unless TUN_OPEN_NO_COALESCE), so the kernel's TCP receive
 * path runs once per run instead of once per segment.
 *
 * Reserved for later (not implemented): IFF_MULTI_QUEUE (one tun_dev per
 * queue fd).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <linux/if_tun.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "netlink.h"
#include "offload.h"
#include "tun-express.h"

#include <node_api.h>
#include <uv.h>

/* Flags understood by open(); mirrored in src/native.ts. */
#define TUN_OPEN_TAP 0x1u
#define TUN_OPEN_OFFLOAD 0x2u /* IFF_VNET_HDR + TUNSETOFFLOAD CSUM|TSO4|TSO6 */
#define TUN_OPEN_NO_COALESCE 0x4u /* with OFFLOAD: writeBatch does not coalesce TCP segments */
#define TUN_OPEN_KNOWN (TUN_OPEN_TAP | TUN_OPEN_OFFLOAD | TUN_OPEN_NO_COALESCE)

/* Largest read with offloads: a 64 KiB super-packet and its vnet header. */
#define RX_CAP (65536 + 256)
/* Most segments coalesced into one super-packet written (GRO). */
#define GRO_MAX_SEGS 64

/* Indexes of the counters filled by stats(); mirrored in src/native.ts. */
enum {
  ST_PACKETS_IN,
  ST_BYTES_IN,
  ST_BATCHES_IN,
  ST_PACKETS_OUT,
  ST_BYTES_OUT,
  ST_WRITE_DROPPED,
  ST_WRITE_ERRORS,
  ST_READ_OVERSIZE,
  ST_HANDLER_ERRORS,
  ST_OFFLOAD_SUPER_IN,    /* TCP super-packets read (GSO) */
  ST_OFFLOAD_SEGMENTS_IN, /* segments they were split into */
  ST_OFFLOAD_CSUM_IN,     /* non-GSO packets whose partial checksum was completed */
  ST_OFFLOAD_INVALID_IN,  /* packets with a vnet header that could not be handled: dropped */
  ST_OFFLOAD_SUPER_OUT,   /* super-packets written (coalesced segments) */
  ST_OFFLOAD_SEGMENTS_OUT,/* segments coalesced into them */
  ST_COUNT
};

/* tun_express_writer, tun_express_sender, TUN_EXPRESS_MAX_BATCH: shared with the data plane's addon. */

typedef struct tun_dev {
  napi_env env;
  int fd;
  uv_poll_t poll;
  char name[IFNAMSIZ];

  /* state flags */
  int is_setup;     /* setup() done: references below are valid */
  int polling;      /* uv_poll_start active */
  int closing;      /* close() ran (fd closed, uv_close requested) */
  int uv_closed;    /* uv close callback ran */
  int js_gone;      /* the JS handle object was finalized */
  int in_callback;  /* inside napi_make_callback */
  int js_released;  /* references released */
  napi_async_cleanup_hook_handle hook; /* removed when the uv close completes */

  /* read batch layout (borrowed from the JS wrapper, kept alive by refs) */
  uint8_t *slab;
  int32_t *offsets;
  int32_t *lengths;
  int32_t batch;
  int32_t slot;
  int32_t headroom;

  /* offloads (IFF_VNET_HDR): every read and write carries a virtio_net_hdr */
  int vnet;
  int gro;              /* coalesce TCP segments in writeBatch */
  uint8_t *rx;          /* RX_CAP bytes: vnet header + packet as read */
  size_t rx_len;        /* packet bytes in rx after the header */
  gso_info pend;        /* super-packet in rx being split */
  uint32_t pend_next;   /* next segment of pend; pend_next < pend.nsegs: pending */
  int has_pend;

  napi_ref self_ref;   /* weak normally, strong while polling (as are the callbacks) */
  napi_ref slab_ref;
  napi_ref offsets_ref;
  napi_ref lengths_ref;
  napi_ref on_batch_ref;
  napi_ref on_error_ref;
  napi_async_context actx;

  uint64_t stats[ST_COUNT];

  /* Handed to the dataplane addon's express path (expressWriter). */
  tun_express_writer writer;
  /* Set by setExpressSender: tried for small reads before JavaScript. */
  const tun_express_sender *sender;
  napi_ref sender_ref, sender_owner_ref;
} tun_dev;

/* ---------- error helpers ---------- */

static const char *errno_name(int err) {
  const char *n = strerrorname_np(err);
  return n ? n : "EUNKNOWN";
}

/* Throws Error{ code: 'EXXX', errno, syscall } (the wrapper maps it to a TunError). */
static void throw_errno(napi_env env, const char *syscall, int err, int iface_exists) {
  char msg[160];
  snprintf(msg, sizeof msg, "%s: %s", syscall, strerror(err));
  napi_value m, code, e, v;
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m);
  napi_create_string_utf8(env, errno_name(err), NAPI_AUTO_LENGTH, &code);
  napi_create_error(env, code, m, &e);
  napi_create_int32(env, err, &v);
  napi_set_named_property(env, e, "errno", v);
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, e, "syscall", v);
  napi_get_boolean(env, iface_exists != 0, &v);
  napi_set_named_property(env, e, "ifaceExists", v);
  napi_throw(env, e);
}

static void throw_closed(napi_env env) {
  napi_throw_error(env, "ERR_TUN_CLOSED", "the TUN device is closed");
}

#define CHECK_NAPI(env, call)                                       \
  do {                                                              \
    if ((call) != napi_ok) {                                        \
      bool pending_ = false;                                        \
      napi_is_exception_pending((env), &pending_);                  \
      if (!pending_) napi_throw_error((env), NULL, "N-API call failed: " #call); \
      return NULL;                                                  \
    }                                                               \
  } while (0)

/* ---------- lifetime ---------- */

static void maybe_free(tun_dev *d) {
  if (d->uv_closed && d->js_gone) {
    free(d->rx);
    free(d);
  }
}

static void on_uv_closed(uv_handle_t *h) {
  tun_dev *d = (tun_dev *)h->data;
  d->uv_closed = 1;
  if (d->hook != NULL) {
    /* Unregisters the hook, or, during teardown, tells Node this device is done. */
    napi_remove_async_cleanup_hook(d->hook);
    d->hook = NULL;
  }
  maybe_free(d);
}

static void drop_sender(tun_dev *d);

static void release_js(tun_dev *d) {
  if (d->js_released) return;
  d->js_released = 1;
  napi_env env = d->env;
  drop_sender(d);
  if (d->is_setup) {
    napi_delete_reference(env, d->slab_ref);
    napi_delete_reference(env, d->offsets_ref);
    napi_delete_reference(env, d->lengths_ref);
    napi_delete_reference(env, d->on_batch_ref);
    napi_delete_reference(env, d->on_error_ref);
    napi_async_destroy(env, d->actx);
    d->slab = NULL;
    d->offsets = d->lengths = NULL;
  }
  if (d->self_ref && d->polling) {
    /* Back to weak. The reference itself is deleted only by the finalizer:
     * deleting a napi_wrap result reference earlier would cancel the finalizer. */
    uint32_t c;
    napi_reference_unref(env, d->self_ref, &c);
  }
}

/* Idempotent. */
static void close_dev(tun_dev *d) {
  if (d->closing) return;
  d->closing = 1;
  if (d->polling) uv_poll_stop(&d->poll);
  uv_close((uv_handle_t *)&d->poll, on_uv_closed);
  /* uv_poll_stop removed the fd from epoll, so closing it now is safe. */
  if (d->fd >= 0) {
    close(d->fd);
    d->fd = -1;
  }
  if (!d->in_callback) {
    release_js(d);
    d->polling = 0;
  }
}

static void cleanup_hook(napi_async_cleanup_hook_handle handle, void *arg) {
  close_dev((tun_dev *)arg); /* completion is signalled from on_uv_closed */
}

static void finalize_dev(napi_env env, void *data, void *hint) {
  tun_dev *d = (tun_dev *)data;
  if (!d->closing) close_dev(d);
  if (d->self_ref) napi_delete_reference(env, d->self_ref);
  d->self_ref = NULL;
  d->js_gone = 1;
  maybe_free(d);
}

/* Returns the device of argv[0]; throws ERR_TUN_CLOSED if closed. */
static tun_dev *get_dev(napi_env env, napi_value obj) {
  tun_dev *d = NULL;
  if (napi_unwrap(env, obj, (void **)&d) != napi_ok || d == NULL) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "not a TUN handle");
    return NULL;
  }
  if (d->closing) {
    throw_closed(env);
    return NULL;
  }
  return d;
}

/* ---------- the read path ---------- */

static void report_exception(tun_dev *d, napi_value exc_or_null, int err, const char *syscall) {
  napi_env env = d->env;
  napi_value cb, argv[3], undef, recv, result;
  if (d->js_released) return;
  if (napi_get_reference_value(env, d->on_error_ref, &cb) != napi_ok) return;
  napi_get_undefined(env, &undef);
  napi_get_global(env, &recv);
  if (exc_or_null != NULL) {
    napi_create_int32(env, 0, &argv[0]);
    argv[1] = exc_or_null;
    argv[2] = undef;
  } else {
    napi_create_int32(env, 1, &argv[0]);
    napi_create_string_utf8(env, errno_name(err), NAPI_AUTO_LENGTH, &argv[1]);
    napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &argv[2]);
  }
  d->in_callback = 1;
  napi_status s = napi_make_callback(env, d->actx, recv, cb, 3, argv, &result);
  d->in_callback = 0;
  if (s != napi_ok) {
    /* The error handler itself threw: count it, never crash the process. */
    napi_value ignored;
    napi_get_and_clear_last_exception(env, &ignored);
    d->stats[ST_HANDLER_ERRORS]++;
  }
}

static void stop_polling(tun_dev *d) {
  if (!d->polling) return;
  uv_poll_stop(&d->poll);
  d->polling = 0;
  uint32_t c;
  if (!d->js_released) {
    napi_reference_unref(d->env, d->self_ref, &c);
    napi_reference_unref(d->env, d->on_batch_ref, &c);
    napi_reference_unref(d->env, d->on_error_ref, &c);
  }
}

/* Reads into the slab without a vnet header (offloads off). */
static int32_t fill_plain(tun_dev *d, int *read_err) {
  const size_t cap = (size_t)(d->slot - d->headroom);
  int32_t n = 0;
  while (n < d->batch) {
    const int32_t off = n * d->slot + d->headroom;
    ssize_t r = read(d->fd, d->slab + off, cap);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) *read_err = errno;
      break;
    }
    if (r == 0) break;
    if ((size_t)r > cap) {
      /* Never hand over a truncated packet. Cannot happen while mtu fits the slot. */
      d->stats[ST_READ_OVERSIZE]++;
      continue;
    }
    d->offsets[n] = off;
    d->lengths[n] = (int32_t)r;
    d->stats[ST_BYTES_IN] += (uint64_t)r;
    n++;
  }
  return n;
}

/*
 * Offloads on: fills the slab with the rest of a pending super-packet, then
 * with further reads. A super-packet is split into MSS-sized segments in
 * consecutive slots; what does not fit stays pending for the next batch.
 */
static int32_t fill_vnet(tun_dev *d, int *read_err) {
  const size_t cap = (size_t)(d->slot - d->headroom);
  int32_t n = 0;
  while (n < d->batch) {
    if (d->has_pend) {
      const uint8_t *pkt = d->rx + VNET_HDR_LEN;
      while (n < d->batch && d->pend_next < d->pend.nsegs) {
        const int32_t off = n * d->slot + d->headroom;
        const size_t len = gso_segment(pkt, &d->pend, d->pend_next++, d->slab + off);
        d->offsets[n] = off;
        d->lengths[n] = (int32_t)len;
        d->stats[ST_BYTES_IN] += (uint64_t)len;
        d->stats[ST_OFFLOAD_SEGMENTS_IN]++;
        n++;
      }
      if (d->pend_next >= d->pend.nsegs) d->has_pend = 0;
      continue;
    }
    ssize_t r = read(d->fd, d->rx, RX_CAP);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) *read_err = errno;
      break;
    }
    if (r == 0) break;
    if (r >= RX_CAP) {
      d->stats[ST_READ_OVERSIZE]++;
      continue;
    }
    if (r < VNET_HDR_LEN) {
      d->stats[ST_OFFLOAD_INVALID_IN]++;
      continue;
    }
    struct virtio_net_hdr h;
    memcpy(&h, d->rx, VNET_HDR_LEN);
    uint8_t *pkt = d->rx + VNET_HDR_LEN;
    const size_t len = (size_t)r - VNET_HDR_LEN;
    if (h.gso_type != VIRTIO_NET_HDR_GSO_NONE) {
      if (gso_parse(pkt, len, &h, &d->pend) != 0) {
        d->stats[ST_OFFLOAD_INVALID_IN]++;
        continue;
      }
      if ((size_t)d->pend.hdrlen + d->pend.gso_size > cap) {
        d->stats[ST_READ_OVERSIZE]++;
        continue;
      }
      d->stats[ST_OFFLOAD_SUPER_IN]++;
      d->pend_next = 0;
      d->has_pend = 1;
      continue;
    }
    if (len > cap) {
      d->stats[ST_READ_OVERSIZE]++;
      continue;
    }
    if (h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
      if (csum_finish(pkt, len, &h) != 0) {
        d->stats[ST_OFFLOAD_INVALID_IN]++;
        continue;
      }
      d->stats[ST_OFFLOAD_CSUM_IN]++;
    }
    const int32_t off = n * d->slot + d->headroom;
    memcpy(d->slab + off, pkt, len);
    d->offsets[n] = off;
    d->lengths[n] = (int32_t)len;
    d->stats[ST_BYTES_IN] += (uint64_t)len;
    n++;
  }
  return n;
}

static void on_readable(uv_poll_t *h, int status, int events) {
  tun_dev *d = (tun_dev *)h->data;
  if (d->closing || !d->is_setup) return;
  napi_env env = d->env;
  int read_err = 0;
  const char *what = "read";
  if (status < 0) {
    /* libuv errors are negated errno values on Unix. */
    read_err = -status;
    what = "poll";
  }
  for (;;) {
    int32_t n = 0;
    if (read_err == 0) n = d->vnet ? fill_vnet(d, &read_err) : fill_plain(d, &read_err);
    napi_handle_scope scope;
    if (napi_open_handle_scope(env, &scope) != napi_ok) return;
    if (n >= 1 && n <= TUN_EXPRESS_MAX_BATCH && d->sender != NULL) {
      /* Small reads (idle traffic: one packet, or the two fragments of a
       * large ping) go to the express sender first, in order; JavaScript
       * gets what it left, from the first packet it did not take on. */
      int32_t m = 0;
      while (m < n && d->sender->send(d->sender->ctx, d->slab + d->offsets[m], (size_t)d->lengths[m], (size_t)d->headroom,
                                      (size_t)(d->slot - d->headroom - d->lengths[m]))) {
        m++;
      }
      if (m > 0) {
        d->sender->flush(d->sender->ctx);
        d->stats[ST_PACKETS_IN] += (uint64_t)m;
        memmove(d->offsets, d->offsets + m, (size_t)(n - m) * sizeof *d->offsets);
        memmove(d->lengths, d->lengths + m, (size_t)(n - m) * sizeof *d->lengths);
        n -= m;
      }
    }
    if (n > 0) {
      d->stats[ST_PACKETS_IN] += (uint64_t)n;
      d->stats[ST_BATCHES_IN]++;
      napi_value cb, argv[1], recv, result;
      napi_get_global(env, &recv); /* napi_make_callback wants an object receiver */
      if (napi_get_reference_value(env, d->on_batch_ref, &cb) == napi_ok) {
        napi_create_int32(env, n, &argv[0]);
        d->in_callback = 1;
        napi_status s = napi_make_callback(env, d->actx, recv, cb, 1, argv, &result);
        d->in_callback = 0;
        if (s != napi_ok) {
          napi_value exc = NULL;
          if (napi_get_and_clear_last_exception(env, &exc) != napi_ok) exc = NULL;
          d->stats[ST_HANDLER_ERRORS]++;
          if (exc != NULL && !d->closing) report_exception(d, exc, 0, NULL);
        }
      }
    }
    if (read_err != 0 && !d->closing) {
      /* A broken fd (e.g. the interface was deleted: EBADFD) would spin: stop. */
      stop_polling(d);
      report_exception(d, NULL, read_err, what);
    }
    if (d->closing) {
      /* close() was called from inside a callback: finish its JS part now. */
      release_js(d);
      d->polling = 0;
    }
    napi_close_handle_scope(env, scope);
    /* The rest of a split super-packet goes out at once: the fd may have
     * nothing more to read, so no further readable event would come. */
    if (!d->has_pend || d->closing || !d->polling || read_err != 0) break;
  }
}

/* ---------- JS entry points ---------- */

/* open(name: string, flags: number) -> [handle, ifname] */
static napi_value js_open(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK_NAPI(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char name[IFNAMSIZ + 1];
  size_t len = 0;
  CHECK_NAPI(env, napi_get_value_string_utf8(env, argv[0], name, sizeof name, &len));
  if (len >= IFNAMSIZ) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "interface name too long");
    return NULL;
  }
  uint32_t flags = 0;
  CHECK_NAPI(env, napi_get_value_uint32(env, argv[1], &flags));
  if (flags & ~TUN_OPEN_KNOWN) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "unknown open flags");
    return NULL;
  }

  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    throw_errno(env, "open", errno, 0);
    return NULL;
  }
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = (short)(((flags & TUN_OPEN_TAP) ? IFF_TAP : IFF_TUN) | IFF_NO_PI |
                          ((flags & TUN_OPEN_OFFLOAD) ? IFF_VNET_HDR : 0));
  memcpy(ifr.ifr_name, name, len); /* empty name: the kernel picks tunN/tapN */
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    int err = errno;
    close(fd);
    /* EINVAL for a name held by a device of another kind; EBUSY if attached elsewhere. */
    int exists = len > 0 && if_nametoindex(name) != 0;
    throw_errno(env, "TUNSETIFF", err, exists);
    return NULL;
  }

  if (flags & TUN_OPEN_OFFLOAD) {
    int sz = VNET_HDR_LEN;
    if (ioctl(fd, TUNSETVNETHDRSZ, &sz) < 0) {
      int err = errno;
      close(fd);
      throw_errno(env, "TUNSETVNETHDRSZ", err, 0);
      return NULL;
    }
    if (ioctl(fd, TUNSETOFFLOAD, (unsigned long)(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)) < 0) {
      int err = errno;
      close(fd);
      throw_errno(env, "TUNSETOFFLOAD", err, 0);
      return NULL;
    }
  }

  tun_dev *d = (tun_dev *)calloc(1, sizeof *d);
  uint8_t *rx = (flags & TUN_OPEN_OFFLOAD) ? (uint8_t *)malloc(RX_CAP) : NULL;
  if (!d || ((flags & TUN_OPEN_OFFLOAD) && !rx)) {
    free(d);
    free(rx);
    close(fd);
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  d->rx = rx;
  d->vnet = (flags & TUN_OPEN_OFFLOAD) != 0;
  d->gro = d->vnet && !(flags & TUN_OPEN_NO_COALESCE);
  d->env = env;
  d->fd = fd;
  memcpy(d->name, ifr.ifr_name, IFNAMSIZ);
  d->name[IFNAMSIZ - 1] = 0;

  uv_loop_t *loop = NULL;
  int uerr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == NULL ||
      (uerr = uv_poll_init(loop, &d->poll, fd)) != 0) {
    close(fd);
    free(d->rx);
    free(d);
    napi_throw_error(env, "ERR_TUN_IO", "cannot attach the TUN fd to the event loop");
    return NULL;
  }
  d->poll.data = d;

  napi_value handle, ifname, out;
  if (napi_create_object(env, &handle) != napi_ok ||
      napi_wrap(env, handle, d, finalize_dev, NULL, &d->self_ref) != napi_ok) {
    /* The poll handle is initialised: it must go through uv_close. */
    d->js_gone = 1;
    close_dev(d);
    napi_throw_error(env, "ERR_TUN_IO", "cannot wrap the TUN handle");
    return NULL;
  }
  if (napi_add_async_cleanup_hook(env, cleanup_hook, d, &d->hook) != napi_ok) d->hook = NULL;
  CHECK_NAPI(env, napi_create_string_utf8(env, d->name, NAPI_AUTO_LENGTH, &ifname));
  CHECK_NAPI(env, napi_create_array_with_length(env, 2, &out));
  CHECK_NAPI(env, napi_set_element(env, out, 0, handle));
  CHECK_NAPI(env, napi_set_element(env, out, 1, ifname));
  return out;
}

static int get_typed_int32(napi_env env, napi_value v, int32_t **data, size_t *count) {
  bool is_ta = false;
  napi_is_typedarray(env, v, &is_ta);
  if (!is_ta) return 0;
  napi_typedarray_type t;
  napi_value ab;
  size_t off;
  void *p;
  if (napi_get_typedarray_info(env, v, &t, count, &p, &ab, &off) != napi_ok) return 0;
  if (t != napi_int32_array) return 0;
  *data = (int32_t *)p;
  return 1;
}

/* setup(handle, slab, offsets, lengths, batchSize, slotSize, headroom, onBatch, onError) */
static napi_value js_setup(napi_env env, napi_callback_info info) {
  size_t argc = 9;
  napi_value argv[9];
  CHECK_NAPI(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  tun_dev *d = get_dev(env, argv[0]);
  if (!d) return NULL;
  if (d->is_setup) {
    napi_throw_error(env, "ERR_TUN_IO", "setup() already called");
    return NULL;
  }
  void *slab;
  size_t slab_len;
  int32_t *offs, *lens;
  size_t noffs, nlens;
  int32_t batch, slot, headroom;
  CHECK_NAPI(env, napi_get_buffer_info(env, argv[1], &slab, &slab_len));
  if (!get_typed_int32(env, argv[2], &offs, &noffs) || !get_typed_int32(env, argv[3], &lens, &nlens)) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "offsets and lengths must be Int32Array");
    return NULL;
  }
  CHECK_NAPI(env, napi_get_value_int32(env, argv[4], &batch));
  CHECK_NAPI(env, napi_get_value_int32(env, argv[5], &slot));
  CHECK_NAPI(env, napi_get_value_int32(env, argv[6], &headroom));
  if (batch < 1 || slot < 1 || headroom < 0 || headroom >= slot || (size_t)batch > noffs ||
      (size_t)batch > nlens || (uint64_t)batch * (uint64_t)slot > slab_len ||
      (uint64_t)batch * (uint64_t)slot > INT32_MAX) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "inconsistent batch layout");
    return NULL;
  }
  napi_valuetype t1, t2;
  napi_typeof(env, argv[7], &t1);
  napi_typeof(env, argv[8], &t2);
  if (t1 != napi_function || t2 != napi_function) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "callbacks must be functions");
    return NULL;
  }
  napi_value resname;
  CHECK_NAPI(env, napi_create_string_utf8(env, "TunDevice", NAPI_AUTO_LENGTH, &resname));
  CHECK_NAPI(env, napi_async_init(env, NULL, resname, &d->actx));
  CHECK_NAPI(env, napi_create_reference(env, argv[1], 1, &d->slab_ref));
  CHECK_NAPI(env, napi_create_reference(env, argv[2], 1, &d->offsets_ref));
  CHECK_NAPI(env, napi_create_reference(env, argv[3], 1, &d->lengths_ref));
  /* Weak until polling starts: the callbacks close over the JS device, so a
   * strong reference would keep an idle, forgotten device alive forever. The
   * wrapper holds them too, so they live as long as the device does. */
  CHECK_NAPI(env, napi_create_reference(env, argv[7], 0, &d->on_batch_ref));
  CHECK_NAPI(env, napi_create_reference(env, argv[8], 0, &d->on_error_ref));
  d->slab = (uint8_t *)slab;
  d->offsets = offs;
  d->lengths = lens;
  d->batch = batch;
  d->slot = slot;
  d->headroom = headroom;
  d->is_setup = 1;
  return NULL;
}

/* poll(handle, on: boolean): start or stop reading. */
static napi_value js_poll(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK_NAPI(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  tun_dev *d = get_dev(env, argv[0]);
  if (!d) return NULL;
  bool on = false;
  CHECK_NAPI(env, napi_get_value_bool(env, argv[1], &on));
  if (!d->is_setup) {
    napi_throw_error(env, "ERR_TUN_IO", "poll() before setup()");
    return NULL;
  }
  if (on && !d->polling) {
    int r = uv_poll_start(&d->poll, UV_READABLE, on_readable);
    if (r != 0) {
      throw_errno(env, "uv_poll_start", -r, 0);
      return NULL;
    }
    d->polling = 1;
    uint32_t c;
    /* No GC while polling, like a socket. */
    napi_reference_ref(env, d->self_ref, &c);
    napi_reference_ref(env, d->on_batch_ref, &c);
    napi_reference_ref(env, d->on_error_ref, &c);
  } else if (!on) {
    stop_polling(d);
  }
  return NULL;
}

/* ref(handle, on: boolean): whether an active poll keeps the event loop alive. */
static napi_value js_ref(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK_NAPI(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  tun_dev *d = get_dev(env, argv[0]);
  if (!d) return NULL;
  bool on = false;
  CHECK_NAPI(env, napi_get_value_bool(env, argv[1], &on));
  if (on) uv_ref((uv_handle_t *)&d->poll);
  else uv_unref((uv_handle_t *)&d->poll);
  return NULL;
}

static const struct virtio_net_hdr zero_vnet_hdr; /* GSO_NONE, no flags */

/* One write()/writev(); returns the byte count or -errno. */
static inline ssize_t write_raw(tun_dev *d, struct iovec *iov, int iovcnt) {
  for (;;) {
    ssize_t r = iovcnt == 1 ? write(d->fd, iov[0].iov_base, iov[0].iov_len) : writev(d->fd, iov, iovcnt);
    if (r >= 0) return r;
    if (errno == EINTR) continue;
    return -errno;
  }
}

static inline void count_failure(tun_dev *d, int err, uint64_t npkts) {
  if (err == EAGAIN || err == EWOULDBLOCK || err == ENOBUFS) d->stats[ST_WRITE_DROPPED] += npkts;
  else d->stats[ST_WRITE_ERRORS] += npkts;
}

static inline int write_one(tun_dev *d, const uint8_t *p, size_t len) {
  struct iovec iov[2];
  int n = 0;
  if (d->vnet) {
    /* Required once IFF_VNET_HDR is set: a header saying "plain packet". */
    iov[n].iov_base = (void *)&zero_vnet_hdr;
    iov[n++].iov_len = VNET_HDR_LEN;
  }
  iov[n].iov_base = (void *)p;
  iov[n++].iov_len = len;
  ssize_t r = write_raw(d, iov, n);
  if (r >= 0) {
    d->stats[ST_PACKETS_OUT]++;
    d->stats[ST_BYTES_OUT] += (uint64_t)len;
    return 1;
  }
  count_failure(d, (int)-r, 1);
  return 0;
}

/*
 * Offloads on: writes packets [i, count) and returns how many were consumed
 * (>= 1) through *consumed, adding the number accepted to the result. A run
 * of in-order TCP segments of one flow (same headers, contiguous sequence,
 * all full-sized but the last, valid checksums) goes to the kernel as one
 * super-packet (GSO TCPV4/TCPV6, NEEDS_CSUM); anything else one by one.
 */
static int32_t write_coalesced(tun_dev *d, const uint8_t *data, const int32_t *offs, const int32_t *lens,
                               int32_t i, int32_t count, int32_t *consumed) {
  const uint8_t *p0 = data + offs[i];
  gro_pkt g0, gj;
  gro_inspect(p0, (size_t)lens[i], &g0);
  int32_t j = i + 1;
  if (g0.ok) {
    uint32_t next_seq = g0.seq + g0.payload, total = g0.payload;
    int ended = (g0.flags & 0x08) != 0, first_ok = -1;
    while (!ended && j < count && j - i < GRO_MAX_SEGS) {
      const uint8_t *pj = data + offs[j];
      gro_inspect(pj, (size_t)lens[j], &gj);
      if (!gro_can_follow(p0, &g0, pj, &gj, next_seq)) break;
      if (g0.hdrlen + total + gj.payload > 0xffff) break;
      if (first_ok < 0) first_ok = gro_tcp_csum_ok(p0, &g0);
      /* A corrupt segment is left to the kernel to drop, never hidden in a super-packet. */
      if (!first_ok || !gro_tcp_csum_ok(pj, &gj)) break;
      total += gj.payload;
      next_seq += gj.payload;
      if (gj.payload < g0.payload || (gj.flags & 0x08)) ended = 1;
      j++;
    }
    if (j - i >= 2) {
      uint8_t hdr[128];
      struct virtio_net_hdr vh;
      struct iovec iov[GRO_MAX_SEGS + 2];
      uint64_t bytes = 0;
      gro_build(p0, &g0, total, data[offs[j - 1] + g0.iphlen + 13], g0.payload, hdr, &vh);
      iov[0].iov_base = &vh;
      iov[0].iov_len = VNET_HDR_LEN;
      iov[1].iov_base = hdr;
      iov[1].iov_len = g0.hdrlen;
      for (int32_t k = i; k < j; k++) {
        iov[2 + k - i].iov_base = (void *)(data + offs[k] + g0.hdrlen);
        iov[2 + k - i].iov_len = (size_t)lens[k] - g0.hdrlen;
        bytes += (uint64_t)lens[k];
      }
      ssize_t r = write_raw(d, iov, 2 + (j - i));
      *consumed = j - i;
      if (r >= 0) {
        d->stats[ST_PACKETS_OUT] += (uint64_t)(j - i);
        d->stats[ST_BYTES_OUT] += bytes;
        d->stats[ST_OFFLOAD_SUPER_OUT]++;
        d->stats[ST_OFFLOAD_SEGMENTS_OUT] += (uint64_t)(j - i);
        return j - i;
      }
      if (r == -EAGAIN || r == -EWOULDBLOCK || r == -ENOBUFS) {
        count_failure(d, (int)-r, (uint64_t)(j - i));
        return 0;
      }
      /* The kernel refused the super-packet: fall back to one by one. */
      int32_t w = 0;
      for (int32_t k = i; k < j; k++) w += write_one(d, data + offs[k], (size_t)lens[k]);
      return w;
    }
  }
  *consumed = 1;
  return write_one(d, p0, (size_t)lens[i]);
}

static int express_write(void *dev, const uint8_t *p, size_t len) {
  tun_dev *d = dev;
  if (d->closing || d->fd < 0) return 0;
  return write_one(d, p, len);
}

/*
 * expressWriter(handle) -> external pointing at the device's
 * tun_express_writer. Valid while the handle object lives: the user keeps a
 * reference to the handle, and the writer refuses once the device is closed.
 */
static napi_value js_express_writer(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out;
  CHECK_NAPI(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  tun_dev *d = get_dev(env, argv[0]);
  if (!d) return NULL;
  d->writer.magic = TUN_EXPRESS_WRITER_MAGIC;
  d->writer.write = express_write;
  d->writer.dev = d;
  CHECK_NAPI(env, napi_create_external(env, &d->writer, NULL, NULL, &out));
  return out;
}

static void drop_sender(tun_dev *d) {
  d->sender = NULL;
  if (d->sender_ref != NULL) napi_delete_reference(d->env, d->sender_ref);
  if (d->sender_owner_ref != NULL) napi_delete_reference(d->env, d->sender_owner_ref);
  d->sender_ref = d->sender_owner_ref = NULL;
}

/*
 * setExpressSender(handle, external | null, owner): sets or clears the C
 * consumer of small reads (tun_express_sender). `owner` is kept referenced
 * while set (it owns what `external` points to).
 */
static napi_value js_set_express_sender(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK_NAPI(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  tun_dev *d = get_dev(env, argv[0]);
  if (!d) return NULL;
  drop_sender(d);
  napi_valuetype t = napi_undefined;
  if (argc >= 2) napi_typeof(env, argv[1], &t);
  if (t == napi_null || t == napi_undefined) return NULL;
  void *p = NULL;
  napi_valuetype to = napi_undefined;
  if (argc < 3 || napi_get_value_external(env, argv[1], &p) != napi_ok || p == NULL ||
      napi_typeof(env, argv[2], &to) != napi_ok || to != napi_object ||
      ((const tun_express_sender *)p)->magic != TUN_EXPRESS_SENDER_MAGIC || ((const tun_express_sender *)p)->send == NULL ||
      ((const tun_express_sender *)p)->flush == NULL) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "setExpressSender(handle, sender external | null, owner)");
    return NULL;
  }
  CHECK_NAPI(env, napi_create_reference(env, argv[1], 1, &d->sender_ref));
  CHECK_NAPI(env, napi_create_reference(env, argv[2], 1, &d->sender_owner_ref));
  d->sender = p;
  return NULL;
}

/* write(handle, buf, off, len) -> 1 written, 0 dropped/failed (counted). */
static napi_value js_write(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4], out;
  CHECK_NAPI(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  tun_dev *d = get_dev(env, argv[0]);
  if (!d) return NULL;
  void *data;
  size_t size;
  int64_t off, len;
  CHECK_NAPI(env, napi_get_buffer_info(env, argv[1], &data, &size));
  CHECK_NAPI(env, napi_get_value_int64(env, argv[2], &off));
  CHECK_NAPI(env, napi_get_value_int64(env, argv[3], &len));
  if (off < 0 || len < 0 || (uint64_t)off + (uint64_t)len > size) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "packet outside the buffer");
    return NULL;
  }
  int ok = write_one(d, (const uint8_t *)data + off, (size_t)len);
  CHECK_NAPI(env, napi_create_int32(env, ok, &out));
  return out;
}

/* writeBatch(handle, buf, offsets, lengths, count) -> number written. */
static napi_value js_write_batch(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5], out;
  CHECK_NAPI(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  tun_dev *d = get_dev(env, argv[0]);
  if (!d) return NULL;
  void *data;
  size_t size, noffs, nlens;
  int32_t *offs, *lens;
  int32_t count;
  CHECK_NAPI(env, napi_get_buffer_info(env, argv[1], &data, &size));
  if (!get_typed_int32(env, argv[2], &offs, &noffs) || !get_typed_int32(env, argv[3], &lens, &nlens)) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "offsets and lengths must be Int32Array");
    return NULL;
  }
  CHECK_NAPI(env, napi_get_value_int32(env, argv[4], &count));
  if (count < 0 || (size_t)count > noffs || (size_t)count > nlens) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "count exceeds offsets/lengths");
    return NULL;
  }
  /* Validate everything first, so a bad entry writes nothing. */
  for (int32_t i = 0; i < count; i++) {
    if (offs[i] < 0 || lens[i] < 0 || (uint64_t)offs[i] + (uint64_t)lens[i] > size) {
      napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "packet outside the buffer");
      return NULL;
    }
  }
  int32_t written = 0;
  if (d->gro) {
    for (int32_t i = 0, used = 1; i < count; i += used) {
      written += write_coalesced(d, (const uint8_t *)data, offs, lens, i, count, &used);
    }
  } else {
    for (int32_t i = 0; i < count; i++) written += write_one(d, (const uint8_t *)data + offs[i], (size_t)lens[i]);
  }
  CHECK_NAPI(env, napi_create_int32(env, written, &out));
  return out;
}

/* stats(handle, out: Float64Array(ST_COUNT)); works after close too. */
static napi_value js_stats(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK_NAPI(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  tun_dev *d = NULL;
  if (napi_unwrap(env, argv[0], (void **)&d) != napi_ok || !d) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "not a TUN handle");
    return NULL;
  }
  bool is_ta = false;
  napi_is_typedarray(env, argv[1], &is_ta);
  napi_typedarray_type t;
  size_t n = 0, off;
  void *p = NULL;
  napi_value ab;
  if (!is_ta || napi_get_typedarray_info(env, argv[1], &t, &n, &p, &ab, &off) != napi_ok ||
      t != napi_float64_array || n < ST_COUNT) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "stats needs a Float64Array");
    return NULL;
  }
  double *o = (double *)p;
  for (int i = 0; i < ST_COUNT; i++) o[i] = (double)d->stats[i];
  return NULL;
}

/* close(handle): idempotent. */
static napi_value js_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK_NAPI(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  tun_dev *d = NULL;
  if (napi_unwrap(env, argv[0], (void **)&d) != napi_ok || !d) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "not a TUN handle");
    return NULL;
  }
  close_dev(d);
  return NULL;
}

/* ---------- interface configuration by ioctl ---------- */

static int ifreq_for(napi_env env, napi_value v, struct ifreq *ifr) {
  memset(ifr, 0, sizeof *ifr);
  char name[IFNAMSIZ + 1];
  size_t len = 0;
  if (napi_get_value_string_utf8(env, v, name, sizeof name, &len) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "interface name must be a string");
    return 0;
  }
  if (len == 0 || len >= IFNAMSIZ) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "bad interface name");
    return 0;
  }
  memcpy(ifr->ifr_name, name, len);
  return 1;
}

static int ctl_socket(napi_env env) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) s = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) throw_errno(env, "socket", errno, 0);
  return s;
}

/* setMtu(ifname, mtu) */
static napi_value js_set_mtu(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK_NAPI(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  struct ifreq ifr;
  if (!ifreq_for(env, argv[0], &ifr)) return NULL;
  int32_t mtu;
  CHECK_NAPI(env, napi_get_value_int32(env, argv[1], &mtu));
  int s = ctl_socket(env);
  if (s < 0) return NULL;
  ifr.ifr_mtu = mtu;
  if (ioctl(s, SIOCSIFMTU, &ifr) < 0) {
    int err = errno;
    close(s);
    throw_errno(env, "SIOCSIFMTU", err, 0);
    return NULL;
  }
  close(s);
  return NULL;
}

/* getMtu(ifname) -> number */
static napi_value js_get_mtu(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out;
  CHECK_NAPI(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  struct ifreq ifr;
  if (!ifreq_for(env, argv[0], &ifr)) return NULL;
  int s = ctl_socket(env);
  if (s < 0) return NULL;
  if (ioctl(s, SIOCGIFMTU, &ifr) < 0) {
    int err = errno;
    close(s);
    throw_errno(env, "SIOCGIFMTU", err, 0);
    return NULL;
  }
  close(s);
  CHECK_NAPI(env, napi_create_int32(env, ifr.ifr_mtu, &out));
  return out;
}

/* setUp(ifname, up: boolean) */
static napi_value js_set_up(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK_NAPI(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  struct ifreq ifr;
  if (!ifreq_for(env, argv[0], &ifr)) return NULL;
  bool up = true;
  CHECK_NAPI(env, napi_get_value_bool(env, argv[1], &up));
  int s = ctl_socket(env);
  if (s < 0) return NULL;
  if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) {
    int err = errno;
    close(s);
    throw_errno(env, "SIOCGIFFLAGS", err, 0);
    return NULL;
  }
  if (up) ifr.ifr_flags |= IFF_UP;
  else ifr.ifr_flags &= ~IFF_UP;
  if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) {
    int err = errno;
    close(s);
    throw_errno(env, "SIOCSIFFLAGS", err, 0);
    return NULL;
  }
  close(s);
  return NULL;
}

/*
 * netlink(ifname, kinds: number[], cidrs: string[]) -> Int32Array: applies
 * each (kind, cidr) in order through rtnetlink (netlink.c); per operation 0
 * on success, the positive errno the kernel answered, or -1 when the CIDR
 * text does not parse. Throws (errno name as code) when the interface does
 * not exist; a netlink socket that cannot be opened or fails mid-way gives
 * its errno in every entry not answered.
 */
static napi_value js_netlink(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK_NAPI(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  struct ifreq ifr;
  if (!ifreq_for(env, argv[0], &ifr)) return NULL;
  bool ok1 = false, ok2 = false;
  napi_is_array(env, argv[1], &ok1);
  napi_is_array(env, argv[2], &ok2);
  uint32_t n = 0, n2 = 0;
  if (!ok1 || !ok2 || napi_get_array_length(env, argv[1], &n) != napi_ok || napi_get_array_length(env, argv[2], &n2) != napi_ok || n != n2) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "netlink: kinds and cidrs must be arrays of one length");
    return NULL;
  }
  unsigned ifindex = if_nametoindex(ifr.ifr_name);
  if (ifindex == 0) {
    throw_errno(env, "if_nametoindex", errno, 0);
    return NULL;
  }
  napi_value ab, out;
  int32_t *res = NULL;
  CHECK_NAPI(env, napi_create_arraybuffer(env, (size_t)n * sizeof(int32_t) + 1, (void **)&res, &ab));
  CHECK_NAPI(env, napi_create_typedarray(env, napi_int32_array, n, ab, 0, &out));
  if (n == 0) return out;
  nl_op *ops = calloc(n, sizeof *ops);
  int *idx = calloc(n, sizeof *idx);
  int *errs = calloc(n, sizeof *errs);
  if (ops == NULL || idx == NULL || errs == NULL) {
    free(ops);
    free(idx);
    free(errs);
    napi_throw_error(env, "ENOMEM", "netlink: out of memory");
    return NULL;
  }
  int m = 0;
  for (uint32_t i = 0; i < n; i++) {
    napi_value k, c;
    int32_t kind = 0;
    char text[INET6_ADDRSTRLEN + 8];
    size_t tlen = 0;
    res[i] = -1;
    if (napi_get_element(env, argv[1], i, &k) != napi_ok || napi_get_value_int32(env, k, &kind) != napi_ok ||
        (kind != NL_ADD_ADDRESS && kind != NL_ADD_ROUTE && kind != NL_DEL_ROUTE) ||
        napi_get_element(env, argv[2], i, &c) != napi_ok ||
        napi_get_value_string_utf8(env, c, text, sizeof text, &tlen) != napi_ok || tlen >= sizeof text - 1) {
      bool pending = false;
      napi_is_exception_pending(env, &pending);
      if (pending) {
        napi_value ignored;
        napi_get_and_clear_last_exception(env, &ignored);
      }
      continue;
    }
    if (nl_parse_cidr(text, &ops[m]) != 0) continue;
    ops[m].kind = kind;
    idx[m++] = (int)i;
  }
  (void)nl_apply(ifindex, ops, m, errs); /* a socket failure is in errs[] too */
  for (int j = 0; j < m; j++) res[idx[j]] = errs[j];
  free(ops);
  free(idx);
  free(errs);
  return out;
}

/* ---------- module ---------- */

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"open", NULL, js_open, NULL, NULL, NULL, napi_enumerable, NULL},
    {"setup", NULL, js_setup, NULL, NULL, NULL, napi_enumerable, NULL},
    {"poll", NULL, js_poll, NULL, NULL, NULL, napi_enumerable, NULL},
    {"ref", NULL, js_ref, NULL, NULL, NULL, napi_enumerable, NULL},
    {"write", NULL, js_write, NULL, NULL, NULL, napi_enumerable, NULL},
    {"writeBatch", NULL, js_write_batch, NULL, NULL, NULL, napi_enumerable, NULL},
    {"expressWriter", NULL, js_express_writer, NULL, NULL, NULL, napi_enumerable, NULL},
    {"setExpressSender", NULL, js_set_express_sender, NULL, NULL, NULL, napi_enumerable, NULL},
    {"stats", NULL, js_stats, NULL, NULL, NULL, napi_enumerable, NULL},
    {"close", NULL, js_close, NULL, NULL, NULL, napi_enumerable, NULL},
    {"setMtu", NULL, js_set_mtu, NULL, NULL, NULL, napi_enumerable, NULL},
    {"getMtu", NULL, js_get_mtu, NULL, NULL, NULL, napi_enumerable, NULL},
    {"setUp", NULL, js_set_up, NULL, NULL, NULL, napi_enumerable, NULL},
    {"netlink", NULL, js_netlink, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_value n;
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  napi_create_int32(env, ST_COUNT, &n);
  napi_set_named_property(env, exports, "STATS_COUNT", n);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
