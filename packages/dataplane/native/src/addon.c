/* Module entry point and small helpers shared by aead.c and udp.c. */
#include "addon.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

napi_value dp_throw(napi_env env, const char *code, int err, const char *fmt, ...) {
  char msg[320];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (n < 0) n = 0;
  if ((size_t)n >= sizeof msg) n = (int)sizeof msg - 1;
  if (err != 0) snprintf(msg + n, sizeof msg - (size_t)n, ": %s", uv_strerror(-err));

  bool pending = false;
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending) return NULL;
  napi_value c, m, e;
  if (napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &c) != napi_ok ||
      napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m) != napi_ok ||
      napi_create_error(env, c, m, &e) != napi_ok) {
    napi_throw_error(env, code, msg);
    return NULL;
  }
  if (err != 0) {
    napi_value en;
    if (napi_create_string_utf8(env, uv_err_name(-err), NAPI_AUTO_LENGTH, &en) == napi_ok)
      napi_set_named_property(env, e, "errno", en);
  }
  napi_throw(env, e);
  return NULL;
}

static int get_typed(napi_env env, napi_value v, napi_typedarray_type want, void **data, size_t *len) {
  bool is = false;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) return 0;
  napi_typedarray_type t;
  size_t n = 0, off = 0;
  void *p = NULL;
  napi_value ab;
  if (napi_get_typedarray_info(env, v, &t, &n, &p, &ab, &off) != napi_ok || t != want) return 0;
  if (p == NULL) n = 0; /* detached or empty: nothing may be touched */
  *data = p;
  *len = n;
  return 1;
}

int dp_get_u8(napi_env env, napi_value v, uint8_t **data, size_t *len) {
  void *p;
  if (!get_typed(env, v, napi_uint8_array, &p, len)) return 0;
  *data = p;
  return 1;
}

int dp_get_i32(napi_env env, napi_value v, int32_t **data, size_t *len) {
  void *p;
  if (!get_typed(env, v, napi_int32_array, &p, len)) return 0;
  *data = p;
  return 1;
}

int dp_get_f64(napi_env env, napi_value v, double **data, size_t *len) {
  void *p;
  if (!get_typed(env, v, napi_float64_array, &p, len)) return 0;
  *data = p;
  return 1;
}

int dp_get_int(napi_env env, napi_value v, int32_t *out) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number) return 0;
  return napi_get_value_int32(env, v, out) == napi_ok;
}

static void instance_free(napi_env env, void *data, void *hint) {
  dp_instance *inst = data;
  dp_aead_free(inst);
  free(inst);
}

NAPI_MODULE_INIT() {
  dp_instance *inst = calloc(1, sizeof *inst);
  if (inst == NULL) {
    napi_throw_error(env, "ERR_DP_NATIVE", "out of memory");
    return NULL;
  }
  if (napi_set_instance_data(env, inst, instance_free, NULL) != napi_ok) {
    free(inst);
    napi_throw_error(env, "ERR_DP_NATIVE", "napi_set_instance_data failed");
    return NULL;
  }
  if (dp_aead_init(env, exports, inst) != napi_ok) return NULL;
  if (dp_udp_init(env, exports) != napi_ok) return NULL;
  return exports;
}
