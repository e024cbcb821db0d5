/* Express receive path (express.c): lone datagrams into the TUN in C. */
#ifndef CLUEVPN_DP_EXPRESS_H
#define CLUEVPN_DP_EXPRESS_H

#include "addon.h"

/* Mirror of packages/tun/native/tun.c's tun_express_writer (layout version 1). */
#define TUN_EXPRESS_WRITER_MAGIC 0x434c5457u
typedef struct {
  uint32_t magic;
  int (*write)(void *dev, const uint8_t *p, size_t len);
  void *dev;
} tun_express_writer;

typedef struct dp_xrx dp_xrx;

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
