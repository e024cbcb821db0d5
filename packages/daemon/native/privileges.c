/*
 * privileges.node: drop from root to an unprivileged user while keeping
 * exactly one capability, CAP_NET_ADMIN, for the daemon and for the `ip`
 * commands it runs later (routes for subnets that appear in a later BNL).
 * Linux only; no libcap (raw capget/capset and prctl).
 *
 * Exports:
 *   dropPrivilegesKeepNetAdmin(uid, gid, groups) -> { boundingSetDropped }
 *     uid, gid: numeric target ids (uid must not be 0);
 *     groups:   supplementary gids (array of numbers, may be empty).
 *   lookupUser(name, gid?) -> { uid, gid, groups } | null
 *     getpwnam + getgrouplist(name, gid ?? primary gid): NSS-aware, the
 *     same list initgroups would set; null if the user is unknown.
 *   lookupGroup(name) -> gid | null   getgrnam; null if unknown.
 *   posixAclAccess(path) -> Buffer | null
 *     the raw `system.posix_acl_access` attribute of path (symlinks
 *     followed), or null when it has none or the file system has no ACLs
 *     (ENODATA, ENOTSUP) or the path is missing (ENOENT, ENOTDIR); other
 *     errors throw. For the privilege boundary check (protected-paths.ts).
 *   netAdminCapability: the number of CAP_NET_ADMIN (for tests).
 *
 * Order (the numbers are the `syscall` of a thrown error's step):
 *   checks (nothing changed yet: a failure throws Error{code: errno name,
 *     errno, syscall} and the caller stops the daemon):
 *     capget: CAP_SETUID, CAP_SETGID, CAP_NET_ADMIN must be effective;
 *     PR_CAP_AMBIENT must be supported (Linux >= 4.3).
 *   1. bounding set: every capability but CAP_NET_ADMIN is dropped from it
 *      IF we hold CAP_SETPCAP (plain root does; systemd with
 *      CapabilityBoundingSet= may not, and has limited the set already).
 *      Only a reduction; a failure throws (the daemon stops).
 *   2. prctl(PR_SET_KEEPCAPS, 1): keep the permitted set across setuid.
 *   3. setgroups, setresgid, then 4. setresuid(uid, uid, uid): a failure
 *      throws; the process is still uid 0 (KEEPCAPS is reset) and the
 *      caller stops the daemon.
 *   From here on the process is no longer root. ANY failure below prints
 *   "cluevpnd: FATAL: ..." to stderr and ends the process at once with
 *   _exit(71) (EX_OSERR): no JavaScript runs, no half-dropped process goes
 *   on with an unknown privilege set. (_exit rather than abort(): no core
 *   file with key material in it.)
 *   5. capset: permitted = effective = inheritable = {CAP_NET_ADMIN}.
 *   6. ambient: clear all, raise CAP_NET_ADMIN, so that a program exec'd
 *      by this thread (`ip route add ...`, hooks) starts with CapEff =
 *      CAP_NET_ADMIN although it is not root and has no file capabilities.
 *   7. prctl(PR_SET_KEEPCAPS, 0); prctl(PR_SET_NO_NEW_PRIVS, 1): nothing
 *      exec'd later (hooks) can gain privileges through setuid binaries or
 *      file capabilities. Ambient capabilities survive no_new_privs.
 *   8. verification: getresuid/getresgid are the target's; capget shows
 *      exactly {CAP_NET_ADMIN} in every set; setresuid(-1, 0, -1) fails.
 *
 * Threads. Linux credentials are per thread. glibc's setgroups, setresgid
 * and setresuid apply the change to EVERY thread of the process (the
 * "setxid" signal broadcast), so all of Node's threads (libuv threadpool,
 * V8 platform workers, the inspector) get the new uid/gids. PR_SET_KEEPCAPS,
 * capset and the ambient set, however, are per thread and are only done on
 * the calling thread, which is Node's main (JavaScript) thread. For the
 * other threads that is what we want: without KEEPCAPS, the kernel clears
 * their permitted and effective sets when their uid leaves 0, so they end
 * with NO capability at all. Threads created later by the main thread
 * (a threadpool that grows) inherit the main thread's sets: CAP_NET_ADMIN.
 * child_process.spawn/execFile call uv_spawn on the main thread, which
 * forks there (libuv 1.46: fork(2) in the calling thread), so the child
 * starts with the main thread's credentials and its ambient set, and exec
 * gives it CAP_NET_ADMIN. A child forked by any other thread (a
 * worker_threads Worker) would get no capability: the daemon must run its
 * `ip` commands from the main thread (it does).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <linux/capability.h>
#include <node_api.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/xattr.h>
#include <limits.h>
#include <unistd.h>

#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_IS_SET 1
#define PR_CAP_AMBIENT_RAISE 2
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif

#define EX_OSERR_ 71
#define MAX_GROUPS 65536

/* ---------- error helpers ---------- */

#include "errno-error.h" /* errno_name, throw_errno */

/* After setuid: no way back, no way to go on. */
static void fatal(const char *step, int err) {
  char msg[300];
  int n = snprintf(msg, sizeof msg,
                   "cluevpnd: FATAL: privilege drop failed after setuid at %s: %s (%s); "
                   "exiting rather than running with an unknown privilege set\n",
                   step, strerror(err), errno_name(err));
  if (n > 0) {
    ssize_t w = write(2, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
    (void)w;
  }
  _exit(EX_OSERR_);
}

/* ---------- capabilities (raw syscalls, calling thread only) ---------- */

typedef struct {
  uint64_t eff, perm, inh;
} capsets;

static int caps_get(capsets *out) {
  struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct d[2];
  memset(d, 0, sizeof d);
  if (syscall(SYS_capget, &h, d) != 0) return -1;
  out->eff = (uint64_t)d[0].effective | ((uint64_t)d[1].effective << 32);
  out->perm = (uint64_t)d[0].permitted | ((uint64_t)d[1].permitted << 32);
  out->inh = (uint64_t)d[0].inheritable | ((uint64_t)d[1].inheritable << 32);
  return 0;
}

static int caps_set_only(int cap) {
  struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct d[2];
  memset(d, 0, sizeof d);
  uint32_t bit = 1u << (cap % 32);
  d[cap / 32].effective = bit;
  d[cap / 32].permitted = bit;
  d[cap / 32].inheritable = bit;
  return (int)syscall(SYS_capset, &h, d);
}

#define CAPBIT(c) (1ull << (c))

/* ---------- argument helpers ---------- */

static int get_id(napi_env env, napi_value v, const char *what, uint32_t *out) {
  napi_valuetype t;
  double d;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number || napi_get_value_double(env, v, &d) != napi_ok ||
      d != d || d < 0 || d >= 4294967295.0 || d != (double)(uint32_t)d) {
    char msg[80];
    snprintf(msg, sizeof msg, "%s must be an integer id in [0, 2^32-2]", what);
    napi_throw_type_error(env, "ERR_INVALID_ARG", msg);
    return -1;
  }
  *out = (uint32_t)d;
  return 0;
}

/* ---------- dropPrivilegesKeepNetAdmin ---------- */

static napi_value drop_keep_net_admin(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 3) {
    napi_throw_type_error(env, "ERR_INVALID_ARG", "dropPrivilegesKeepNetAdmin(uid, gid, groups)");
    return NULL;
  }
  uint32_t uid, gid;
  if (get_id(env, argv[0], "uid", &uid) != 0) return NULL;
  if (get_id(env, argv[1], "gid", &gid) != 0) return NULL;
  if (uid == 0) {
    napi_throw_type_error(env, "ERR_INVALID_ARG", "uid 0 is not a privilege drop");
    return NULL;
  }
  bool is_array = false;
  uint32_t ngroups = 0;
  if (napi_is_array(env, argv[2], &is_array) != napi_ok || !is_array ||
      napi_get_array_length(env, argv[2], &ngroups) != napi_ok || ngroups > MAX_GROUPS) {
    napi_throw_type_error(env, "ERR_INVALID_ARG", "groups must be an array of at most 65536 gids");
    return NULL;
  }
  gid_t *groups = calloc(ngroups > 0 ? ngroups : 1, sizeof(gid_t));
  if (groups == NULL) {
    throw_errno(env, "calloc", ENOMEM);
    return NULL;
  }
  for (uint32_t i = 0; i < ngroups; i++) {
    napi_value el;
    uint32_t g;
    if (napi_get_element(env, argv[2], i, &el) != napi_ok || get_id(env, el, "groups[i]", &g) != 0) {
      free(groups);
      return NULL;
    }
    groups[i] = (gid_t)g;
  }

  /* Checks: nothing has changed yet. */
  capsets c;
  if (caps_get(&c) != 0) {
    int e = errno;
    free(groups);
    throw_errno(env, "capget", e);
    return NULL;
  }
  const uint64_t need = CAPBIT(CAP_SETUID) | CAPBIT(CAP_SETGID) | CAPBIT(CAP_NET_ADMIN);
  if ((c.eff & need) != need) {
    free(groups);
    throw_errno(env, "capget (CAP_SETUID, CAP_SETGID and CAP_NET_ADMIN must be effective)", EPERM);
    return NULL;
  }
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, CAP_NET_ADMIN, 0, 0) < 0) {
    int e = errno;
    free(groups);
    throw_errno(env, "prctl(PR_CAP_AMBIENT) (ambient capabilities need Linux >= 4.3)", e);
    return NULL;
  }

  /* 1. bounding set */
  bool bounding_dropped = false;
  if (c.eff & CAPBIT(CAP_SETPCAP)) {
    for (int cap = 0; cap < 64; cap++) {
      if (cap == CAP_NET_ADMIN) continue;
      int r = prctl(PR_CAPBSET_READ, cap, 0, 0, 0);
      if (r < 0) break; /* EINVAL: past the last capability this kernel knows */
      if (r == 0) continue;
      if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) {
        int e = errno;
        free(groups);
        throw_errno(env, "prctl(PR_CAPBSET_DROP)", e);
        return NULL;
      }
    }
    bounding_dropped = true;
  }

  /* 2..4: still root until setresuid succeeds; failures throw. */
  if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) {
    int e = errno;
    free(groups);
    throw_errno(env, "prctl(PR_SET_KEEPCAPS)", e);
    return NULL;
  }
  const char *failed = NULL;
  int err = 0;
  if (setgroups(ngroups, groups) != 0) {
    failed = "setgroups";
    err = errno;
  } else if (setresgid(gid, gid, gid) != 0) {
    failed = "setresgid";
    err = errno;
  } else if (setresuid(uid, uid, uid) != 0) {
    failed = "setresuid";
    err = errno;
  }
  free(groups);
  if (failed != NULL) {
    /* still uid 0: undo KEEPCAPS and let the caller stop the daemon */
    if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) != 0) fatal("prctl(PR_SET_KEEPCAPS, 0) after a failed drop", errno);
    throw_errno(env, failed, err);
    return NULL;
  }

  /* 5..8: no longer root; any failure ends the process. */
  if (caps_set_only(CAP_NET_ADMIN) != 0) fatal("capset", errno);
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0) fatal("prctl(PR_CAP_AMBIENT_CLEAR_ALL)", errno);
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_ADMIN, 0, 0) != 0) fatal("prctl(PR_CAP_AMBIENT_RAISE)", errno);
  if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) != 0) fatal("prctl(PR_SET_KEEPCAPS, 0)", errno);
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) fatal("prctl(PR_SET_NO_NEW_PRIVS)", errno);

  uid_t ru, eu, su;
  gid_t rg, eg, sg;
  if (getresuid(&ru, &eu, &su) != 0) fatal("getresuid", errno);
  if (ru != uid || eu != uid || su != uid) fatal("verify uid", EPERM);
  if (getresgid(&rg, &eg, &sg) != 0) fatal("getresgid", errno);
  if (rg != gid || eg != gid || sg != gid) fatal("verify gid", EPERM);
  if (caps_get(&c) != 0) fatal("capget", errno);
  const uint64_t only = CAPBIT(CAP_NET_ADMIN);
  if (c.eff != only || c.perm != only || c.inh != only) fatal("verify capabilities", EPERM);
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, CAP_NET_ADMIN, 0, 0) != 1) fatal("verify ambient", EPERM);
  /* Raw syscall: this thread only; must fail. */
  if (syscall(SYS_setresuid, (uid_t)-1, (uid_t)0, (uid_t)-1) == 0) fatal("verify setresuid(0) fails", EPERM);

  napi_value res, v;
  napi_create_object(env, &res);
  napi_get_boolean(env, bounding_dropped, &v);
  napi_set_named_property(env, res, "boundingSetDropped", v);
  return res;
}

/* ---------- user and group lookup ---------- */

static int get_string(napi_env env, napi_value v, char *buf, size_t len) {
  size_t n = 0;
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_string ||
      napi_get_value_string_utf8(env, v, buf, len, &n) != napi_ok || n == 0 || n >= len - 1) {
    napi_throw_type_error(env, "ERR_INVALID_ARG", "expected a non-empty name of at most 255 bytes");
    return -1;
  }
  return 0;
}

static napi_value lookup_user(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], res, v, arr;
  char name[257];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 1 || get_string(env, argv[0], name, sizeof name) != 0) return NULL;
  bool have_group = false;
  uint32_t group = 0;
  if (argc >= 2) {
    napi_valuetype t;
    if (napi_typeof(env, argv[1], &t) != napi_ok) return NULL;
    if (t != napi_undefined) {
      if (get_id(env, argv[1], "gid", &group) != 0) return NULL;
      have_group = true;
    }
  }
  long bufsz = sysconf(_SC_GETPW_R_SIZE_MAX);
  if (bufsz < 16384) bufsz = 16384;
  char *buf = malloc((size_t)bufsz);
  if (buf == NULL) {
    throw_errno(env, "malloc", ENOMEM);
    return NULL;
  }
  struct passwd pw, *found = NULL;
  int r = getpwnam_r(name, &pw, buf, (size_t)bufsz, &found);
  if (r != 0) {
    free(buf);
    throw_errno(env, "getpwnam_r", r);
    return NULL;
  }
  if (found == NULL) {
    free(buf);
    napi_get_null(env, &res);
    return res;
  }
  int ng = 64;
  gid_t *groups = NULL;
  for (;;) {
    gid_t *g = realloc(groups, sizeof(gid_t) * (size_t)ng);
    if (g == NULL) {
      free(groups);
      free(buf);
      throw_errno(env, "realloc", ENOMEM);
      return NULL;
    }
    groups = g;
    int want = ng;
    if (getgrouplist(pw.pw_name, have_group ? (gid_t)group : pw.pw_gid, groups, &want) >= 0) {
      ng = want;
      break;
    }
    if (want <= ng || want > MAX_GROUPS) {
      free(groups);
      free(buf);
      throw_errno(env, "getgrouplist", E2BIG);
      return NULL;
    }
    ng = want;
  }
  napi_create_object(env, &res);
  napi_create_uint32(env, pw.pw_uid, &v);
  napi_set_named_property(env, res, "uid", v);
  napi_create_uint32(env, pw.pw_gid, &v);
  napi_set_named_property(env, res, "gid", v);
  napi_create_array_with_length(env, (size_t)ng, &arr);
  for (int i = 0; i < ng; i++) {
    napi_create_uint32(env, groups[i], &v);
    napi_set_element(env, arr, (uint32_t)i, v);
  }
  napi_set_named_property(env, res, "groups", arr);
  free(groups);
  free(buf);
  return res;
}

static napi_value lookup_group(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], res;
  char name[257];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 1 || get_string(env, argv[0], name, sizeof name) != 0) return NULL;
  long bufsz = sysconf(_SC_GETGR_R_SIZE_MAX);
  if (bufsz < 65536) bufsz = 65536;
  char *buf = malloc((size_t)bufsz);
  if (buf == NULL) {
    throw_errno(env, "malloc", ENOMEM);
    return NULL;
  }
  struct group gr, *found = NULL;
  int r = getgrnam_r(name, &gr, buf, (size_t)bufsz, &found);
  if (r != 0) {
    free(buf);
    throw_errno(env, "getgrnam_r", r);
    return NULL;
  }
  if (found == NULL) napi_get_null(env, &res);
  else napi_create_uint32(env, gr.gr_gid, &res);
  free(buf);
  return res;
}

/* ---------- posixAclAccess ---------- */

#define ACL_XATTR_MAX 65536

static napi_value posix_acl_access(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], res;
  char path[PATH_MAX + 1];
  size_t n = 0;
  napi_valuetype t;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 1 || napi_typeof(env, argv[0], &t) != napi_ok || t != napi_string ||
      napi_get_value_string_utf8(env, argv[0], path, sizeof path, &n) != napi_ok || n == 0 || n >= sizeof path - 1) {
    napi_throw_type_error(env, "ERR_INVALID_ARG", "posixAclAccess(path): a non-empty path of at most PATH_MAX bytes");
    return NULL;
  }
  char *buf = malloc(ACL_XATTR_MAX);
  if (buf == NULL) {
    throw_errno(env, "malloc", ENOMEM);
    return NULL;
  }
  ssize_t len = getxattr(path, "system.posix_acl_access", buf, ACL_XATTR_MAX);
  if (len < 0) {
    int err = errno;
    free(buf);
    if (err == ENODATA || err == ENOTSUP || err == ENOENT || err == ENOTDIR) {
      napi_get_null(env, &res);
      return res;
    }
    throw_errno(env, "getxattr", err);
    return NULL;
  }
  void *data = NULL;
  if (napi_create_buffer_copy(env, (size_t)len, buf, &data, &res) != napi_ok) res = NULL;
  free(buf);
  return res;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_value fn, v;
  napi_create_function(env, "dropPrivilegesKeepNetAdmin", NAPI_AUTO_LENGTH, drop_keep_net_admin, NULL, &fn);
  napi_set_named_property(env, exports, "dropPrivilegesKeepNetAdmin", fn);
  napi_create_function(env, "lookupUser", NAPI_AUTO_LENGTH, lookup_user, NULL, &fn);
  napi_set_named_property(env, exports, "lookupUser", fn);
  napi_create_function(env, "lookupGroup", NAPI_AUTO_LENGTH, lookup_group, NULL, &fn);
  napi_set_named_property(env, exports, "lookupGroup", fn);
  napi_create_function(env, "posixAclAccess", NAPI_AUTO_LENGTH, posix_acl_access, NULL, &fn);
  napi_set_named_property(env, exports, "posixAclAccess", fn);
  napi_create_int32(env, CAP_NET_ADMIN, &v);
  napi_set_named_property(env, exports, "netAdminCapability", v);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
