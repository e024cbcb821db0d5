/* forward-addon: the latency floor's forwarder (forward.h) driven by Node's
 * event loop: one uv_poll_t per fd on the main loop, as the data plane's
 * addons do. start(tun, port, peerIp, peerPort, onBatch | null): with a
 * function, it is called once per readable event (napi_make_callback, as
 * the data plane calls its pipelines) after the C forwarding, so the cost
 * of entering JavaScript shows on its own; with null, JavaScript is never
 * entered. */
#include <node_api.h>
#include <uv.h>
#include "forward.h"

static fwd_t f;
static uv_poll_t poll_tun, poll_udp;
static napi_env env_g;
static napi_ref cb_ref;
static napi_async_context actx;
static int with_js;

static void enter_js(int what) {
  if (!with_js) return;
  napi_handle_scope scope;
  napi_value cb, recv, arg, result;
  if (napi_open_handle_scope(env_g, &scope) != napi_ok) return;
  napi_get_reference_value(env_g, cb_ref, &cb);
  napi_get_global(env_g, &recv);
  napi_create_int32(env_g, what, &arg);
  napi_make_callback(env_g, actx, recv, cb, 1, &arg, &result);
  napi_close_handle_scope(env_g, scope);
}
static void on_tun(uv_poll_t *h, int status, int events) {
  (void)h, (void)status, (void)events;
  fwd_tun_to_udp(&f);
  enter_js(0);
}
static void on_udp(uv_poll_t *h, int status, int events) {
  (void)h, (void)status, (void)events;
  fwd_udp_to_tun(&f);
  enter_js(1);
}

static napi_value start(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value a[5];
  char name[IFNAMSIZ], ip[64], msg[160];
  size_t len;
  int32_t port, pport;
  napi_valuetype t;
  const char *what = "";
  napi_get_cb_info(env, info, &argc, a, NULL, NULL);
  if (argc != 5 || napi_get_value_string_utf8(env, a[0], name, sizeof name, &len) != napi_ok ||
      napi_get_value_int32(env, a[1], &port) != napi_ok ||
      napi_get_value_string_utf8(env, a[2], ip, sizeof ip, &len) != napi_ok ||
      napi_get_value_int32(env, a[3], &pport) != napi_ok) {
    napi_throw_type_error(env, "ERR_FLOOR_ARGS", "start(tun, port, peerIp, peerPort, onBatch|null)");
    return NULL;
  }
  napi_typeof(env, a[4], &t);
  with_js = t == napi_function;
  if (with_js) {
    napi_value rn;
    napi_create_reference(env, a[4], 1, &cb_ref);
    napi_create_string_utf8(env, "floor", NAPI_AUTO_LENGTH, &rn);
    napi_async_init(env, NULL, rn, &actx);
  }
  env_g = env;
  int r = fwd_open(&f, name, port, ip, pport, &what);
  if (r < 0) {
    snprintf(msg, sizeof msg, "%s: %s", what, strerror(-r));
    napi_throw_error(env, "ERR_FLOOR_OPEN", msg);
    return NULL;
  }
  uv_loop_t *loop;
  napi_get_uv_event_loop(env, &loop);
  if (uv_poll_init(loop, &poll_tun, f.tun) || uv_poll_init(loop, &poll_udp, f.udp) ||
      uv_poll_start(&poll_tun, UV_READABLE, on_tun) || uv_poll_start(&poll_udp, UV_READABLE, on_udp)) {
    napi_throw_error(env, "ERR_FLOOR_POLL", "uv_poll failed");
    return NULL;
  }
  return NULL;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  napi_create_function(env, "start", NAPI_AUTO_LENGTH, start, NULL, &fn);
  napi_set_named_property(env, exports, "start", fn);
  return exports;
}
