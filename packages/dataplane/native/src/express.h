/* Express paths (express.c): small reads of leased flows handled in C, both directions. */
#ifndef CLUEVPN_DP_EXPRESS_H
#define CLUEVPN_DP_EXPRESS_H

#include "addon.h"

/* tun_express_writer and tun_express_sender: packages/tun/native/tun-express.h,
 * the one header both addons compile (include_dirs in binding.gyp). */
#include "tun-express.h"

/* Batches (socket reads, TUN reads) of at most this many packets are offered to the express paths. */
#define DP_EXPRESS_MAX_BATCH TUN_EXPRESS_MAX_BATCH

typedef struct dp_xrx dp_xrx;
typedef struct dp_xtx dp_xtx;

/* One sealed datagram of the express send path, waiting for its sendmmsg. */
typedef struct {
  const uint8_t *p;
  size_t len;
  int32_t slot;
  double *counters; /* the peer's */
  size_t inner;     /* inner packet bytes, for the peer's tx counter */
  int ok;           /* set by dp_udp_send_many: 1 sent */
} dp_tx_msg;

/* Sends n datagrams in one sendmmsg to their endpoint slots of socket `sock` (udp.c); sets each ok, counts failures there. */
void dp_udp_send_many(void *sock, dp_tx_msg *msgs, int n);

dp_xtx *dp_xtx_new(void);
void dp_xtx_free(napi_env env, dp_xtx *x);
/* expressTxSetup(gen: Int32Array(1), mtu) | expressTxSetup(null): 1 on, 0 off, -1 refused (an exception is pending). */
int dp_xtx_setup(napi_env env, dp_xtx *x, size_t argc, napi_value *argv);
/* expressTxLease(...) -> boolean. */
napi_value dp_xtx_lease(napi_env env, dp_xtx *x, size_t argc, napi_value *argv);
/* 1 when the packet (in its TUN slot) was framed, sealed and queued here; 0 to leave it, unchanged, to JavaScript. */
int dp_xtx_try(napi_env env, dp_xtx *x, void *sock, uint8_t *pkt, size_t len, size_t headroom, size_t tailroom);
/* Sends what dp_xtx_try queued (one sendmmsg); call before anything else may send on the socket. */
void dp_xtx_flush(dp_xtx *x, void *sock);
void dp_xtx_stats(const dp_xtx *x, double *sent, double *failed, double *leases);

dp_xrx *dp_xrx_new(void);
/* Releases every reference and the table. */
void dp_xrx_free(napi_env env, dp_xrx *x);
/* expressSetup(gen, writer, owner, mtu) or expressSetup(null): (re)configures, dropping every lease. */
napi_value dp_xrx_setup(napi_env env, dp_xrx *x, size_t argc, napi_value *argv);
/* expressLease(...) -> boolean. */
napi_value dp_xrx_lease(napi_env env, dp_xrx *x, size_t argc, napi_value *argv);
/* 1 when the datagram was delivered (or counted) here, 0 to leave it, untouched, to JavaScript. */
int dp_xrx_try(napi_env env, dp_xrx *x, const uint8_t *dg, uint32_t len, const uint8_t *src);
void dp_xrx_stats(const dp_xrx *x, double *delivered, double *write_failed, double *leases);

#endif
