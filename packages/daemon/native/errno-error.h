/*
 * errno-error.h: the one way the daemon's addons (privileges.c, sd-notify.c)
 * turn a failed system call into a JavaScript error:
 * Error { message: "SYSCALL: strerror", code: 'EXXX', errno, syscall }.
 * Header-only (static functions): each addon is its own .node file.
 */
#ifndef CLUEVPN_ERRNO_ERROR_H
#define CLUEVPN_ERRNO_ERROR_H

#include <node_api.h>
#include <stdio.h>
#include <string.h>

/* "EPERM", "ENOENT", ... (glibc >= 2.32); "EUNKNOWN" for a number it does not know. */
static const char *errno_name(int err) {
  const char *n = strerrorname_np(err);
  return n ? n : "EUNKNOWN";
}

/* Throws Error{ code: 'EXXX', errno, syscall }. */
static void throw_errno(napi_env env, const char *syscall, int err) {
  char msg[200];
  snprintf(msg, sizeof msg, "%s: %s", syscall, strerror(err));
  napi_value m, code, e, v;
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m);
  napi_create_string_utf8(env, errno_name(err), NAPI_AUTO_LENGTH, &code);
  napi_create_error(env, code, m, &e);
  napi_create_int32(env, err, &v);
  napi_set_named_property(env, e, "errno", v);
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, e, "syscall", v);
  napi_throw(env, e);
}

#endif
