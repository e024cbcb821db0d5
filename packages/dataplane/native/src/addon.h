/*
 * cluevpn_dataplane: the native hot path of the data plane.
 *
 *   aead.c  batched AEAD (AES-256-GCM, ChaCha20-Poly1305) over packets laid
 *           out in place in one buffer; keys behind integer handles.
 *   udp.c   a UDP socket read with recvmmsg into a preallocated slab (one JS
 *           call per batch, driven by uv_poll) and written with sendmmsg.
 *
 * Everything runs on the JavaScript thread of the environment that loaded the
 * addon (main thread or a worker); state is per environment (instance data).
 * Every offset and length coming from JavaScript is checked against the size
 * of the buffer it indexes before a byte is touched.
 */
#ifndef CLUEVPN_DP_ADDON_H
#define CLUEVPN_DP_ADDON_H

#include <node_api.h>
#include <stddef.h>
#include <stdint.h>

/* Specification (ARCHITECTURE.md, data-plane wire format). */
#define DP_HEADER_LEN 20
#define DP_TAG_LEN 16
#define DP_NONCE_OFFSET 8
#define DP_NONCE_LEN 12
#define DP_KEY_LEN 32
#define DP_SOURCE_LEN 18

typedef struct dp_keytab dp_keytab;

/* Per-environment state (napi instance data). */
typedef struct {
  dp_keytab *keys;
} dp_instance;

/*
 * Throws an Error with `code` (e.g. "ERR_DP_NATIVE") and, when err != 0, an
 * `errno` property holding the errno name (e.g. "EADDRINUSE"). Returns NULL
 * so callers can `return dp_throw(...)`.
 */
napi_value dp_throw(napi_env env, const char *code, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Typed-array accessors: 1 on success, 0 when `v` is not of that type. */
int dp_get_u8(napi_env env, napi_value v, uint8_t **data, size_t *len);
int dp_get_i32(napi_env env, napi_value v, int32_t **data, size_t *len);
int dp_get_f64(napi_env env, napi_value v, double **data, size_t *len);
/* Number accessor: 1 on success, 0 when `v` is not a number. */
int dp_get_int(napi_env env, napi_value v, int32_t *out);

napi_status dp_aead_init(napi_env env, napi_value exports, dp_instance *inst);
void dp_aead_free(dp_instance *inst);
napi_status dp_udp_init(napi_env env, napi_value exports);
/* One datagram opened out of place (aead.c); 1 iff authentic. */
int dp_aead_open_to(napi_env env, int32_t handle, const uint8_t *dg, int len, uint8_t *out);
/* One packet sealed in place (aead.c): header at p, `len` payload bytes, tag after; 0 for an unknown handle. */
int dp_aead_seal_one(napi_env env, int32_t handle, uint8_t *p, int len);

#endif
