/*
 * sd_notify.node: one datagram to systemd's notification socket, the one
 * thing Node cannot do itself (it has no AF_UNIX datagram sockets). No
 * libsystemd: the protocol is a datagram of `KEY=VALUE\n` lines
 * (sd_notify(3)), and the daemon decides what to send (src/systemd.ts).
 *
 * Exports:
 *   sdNotify(socket, message) -> number of bytes sent
 *     socket:  $NOTIFY_SOCKET as systemd sets it: an absolute path, or
 *              "@name" for a socket in the abstract namespace;
 *     message: the datagram (UTF-8).
 *     Throws Error { code: errno name, errno, syscall } when the socket
 *     cannot be made or the datagram not sent (e.g. ECONNREFUSED when
 *     nothing listens, ENOENT for a missing path), and a TypeError for an
 *     address that is neither (or too long for sun_path).
 *
 * A socket per message: messages are rare (ready, reload, stop, a status
 * change, the watchdog every few seconds), and nothing stays open for a
 * hook to inherit (SOCK_CLOEXEC besides). It runs on the calling (main)
 * thread, so the sender's pid is the daemon's, as NotifyAccess=main needs.
 */
#define _GNU_SOURCE
#include <node_api.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include "errno-error.h"

static napi_value sd_notify(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 2) {
    napi_throw_type_error(env, NULL, "sdNotify(socket, message)");
    return NULL;
  }
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  /* +2: room to see that the address is too long, and the NUL */
  char path[sizeof sa.sun_path + 2];
  size_t plen = 0;
  if (napi_get_value_string_utf8(env, argv[0], path, sizeof path, &plen) != napi_ok) {
    napi_throw_type_error(env, NULL, "sdNotify: socket must be a string");
    return NULL;
  }
  if (plen < 2 || (path[0] != '/' && path[0] != '@') || plen > sizeof sa.sun_path) {
    napi_throw_type_error(env, NULL, "sdNotify: socket must be an absolute path or @abstract-name that fits sun_path");
    return NULL;
  }
  memcpy(sa.sun_path, path, plen);
  if (path[0] == '@') sa.sun_path[0] = '\0'; /* abstract: the name is the bytes after the NUL, no terminator */
  socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen);

  size_t mlen = 0;
  if (napi_get_value_string_utf8(env, argv[1], NULL, 0, &mlen) != napi_ok) {
    napi_throw_type_error(env, NULL, "sdNotify: message must be a string");
    return NULL;
  }
  char *msg = malloc(mlen + 1);
  if (msg == NULL) {
    throw_errno(env, "malloc", ENOMEM);
    return NULL;
  }
  napi_get_value_string_utf8(env, argv[1], msg, mlen + 1, &mlen);

  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    int e = errno;
    free(msg);
    throw_errno(env, "socket", e);
    return NULL;
  }
  ssize_t n;
  do n = sendto(fd, msg, mlen, MSG_NOSIGNAL, (struct sockaddr *)&sa, salen);
  while (n < 0 && errno == EINTR);
  int e = errno;
  close(fd);
  free(msg);
  if (n < 0) {
    throw_errno(env, "sendto", e);
    return NULL;
  }
  napi_value res;
  napi_create_int64(env, (int64_t)n, &res);
  return res;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_value fn;
  napi_create_function(env, "sdNotify", NAPI_AUTO_LENGTH, sd_notify, NULL, &fn);
  napi_set_named_property(env, exports, "sdNotify", fn);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
