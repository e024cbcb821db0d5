/*
 * netlink.c: adds addresses and adds/deletes routes of one interface with
 * rtnetlink messages on a NETLINK_ROUTE socket, the same requests
 * `ip addr add` / `ip route add|del ... dev X` send, without a child process
 * (a fork+exec of ip cost 10-25 ms each on the benchmark machine, on the
 * start-up path) and without parsing ip's error text: every request carries
 * NLM_F_ACK and its own sequence number, so each answer's errno maps back to
 * its operation.
 *
 * Requests go out in chunks of CHUNK messages per sendmsg(); the kernel
 * handles them in order and queues one NLMSG_ERROR answer each (error 0 =
 * success). NETLINK_CAP_ACK keeps an error answer from echoing the request,
 * so a chunk's answers always fit the receive buffer.
 */
#define _GNU_SOURCE
#include "netlink.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/if_addr.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef NETLINK_CAP_ACK
#define NETLINK_CAP_ACK 10
#endif

#define CHUNK 128
/* Largest request: header + ifaddrmsg/rtmsg + two 16-byte address attributes + one u32 attribute. */
#define MSG_MAX 128

int nl_parse_cidr(const char *text, nl_op *op) {
  if (text == NULL) return -1;
  const char *slash = strchr(text, '/');
  size_t alen = slash ? (size_t)(slash - text) : strlen(text);
  char a[INET6_ADDRSTRLEN + 1];
  if (alen == 0 || alen >= sizeof a) return -1;
  memcpy(a, text, alen);
  a[alen] = '\0';
  memset(op->addr, 0, sizeof op->addr);
  int max;
  if (strchr(a, ':') != NULL) {
    if (inet_pton(AF_INET6, a, op->addr) != 1) return -1;
    op->family = AF_INET6;
    max = 128;
  } else {
    if (inet_pton(AF_INET, a, op->addr) != 1) return -1;
    op->family = AF_INET;
    max = 32;
  }
  op->plen = max;
  if (slash) {
    const char *p = slash + 1;
    size_t digits = strlen(p);
    if (digits == 0 || digits > 3) return -1;
    int v = 0;
    for (size_t i = 0; i < digits; i++) {
      if (p[i] < '0' || p[i] > '9') return -1;
      v = v * 10 + (p[i] - '0');
    }
    if (v > max) return -1;
    op->plen = v;
  }
  return 0;
}

static void put_attr(char *msg, unsigned short type, const void *data, size_t len) {
  struct nlmsghdr *h = (struct nlmsghdr *)msg;
  struct rtattr *rta = (struct rtattr *)(msg + NLMSG_ALIGN(h->nlmsg_len));
  rta->rta_type = type;
  rta->rta_len = (unsigned short)RTA_LENGTH(len);
  memcpy(RTA_DATA(rta), data, len);
  h->nlmsg_len = NLMSG_ALIGN(h->nlmsg_len) + RTA_ALIGN(rta->rta_len);
}

/* Builds the request of `op` into msg (MSG_MAX bytes, zeroed); returns its length. */
static size_t build(char *msg, const nl_op *op, unsigned ifindex, uint32_t seq) {
  struct nlmsghdr *h = (struct nlmsghdr *)msg;
  size_t alen = op->family == AF_INET ? 4 : 16;
  h->nlmsg_seq = seq;
  if (op->kind == NL_ADD_ADDRESS) {
    h->nlmsg_type = RTM_NEWADDR;
    h->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
    h->nlmsg_len = NLMSG_LENGTH(sizeof(struct ifaddrmsg));
    struct ifaddrmsg *ifa = NLMSG_DATA(h);
    ifa->ifa_family = (unsigned char)op->family;
    ifa->ifa_prefixlen = (unsigned char)op->plen;
    ifa->ifa_flags = op->family == AF_INET6 ? IFA_F_NODAD : 0;
    ifa->ifa_scope = RT_SCOPE_UNIVERSE;
    ifa->ifa_index = ifindex;
    /* As ip does: IFA_LOCAL and IFA_ADDRESS both the address (no peer). */
    put_attr(msg, IFA_LOCAL, op->addr, alen);
    put_attr(msg, IFA_ADDRESS, op->addr, alen);
  } else {
    h->nlmsg_type = op->kind == NL_ADD_ROUTE ? RTM_NEWROUTE : RTM_DELROUTE;
    h->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | (op->kind == NL_ADD_ROUTE ? NLM_F_CREATE | NLM_F_EXCL : 0);
    h->nlmsg_len = NLMSG_LENGTH(sizeof(struct rtmsg));
    struct rtmsg *rt = NLMSG_DATA(h);
    rt->rtm_family = (unsigned char)op->family;
    rt->rtm_dst_len = (unsigned char)op->plen;
    rt->rtm_table = RT_TABLE_MAIN;
    rt->rtm_protocol = op->kind == NL_ADD_ROUTE ? RTPROT_BOOT : 0;
    rt->rtm_scope = op->kind == NL_ADD_ROUTE ? RT_SCOPE_LINK : RT_SCOPE_NOWHERE;
    rt->rtm_type = op->kind == NL_ADD_ROUTE ? RTN_UNICAST : 0;
    if (op->plen > 0) put_attr(msg, RTA_DST, op->addr, alen);
    uint32_t oif = ifindex;
    put_attr(msg, RTA_OIF, &oif, sizeof oif);
  }
  return h->nlmsg_len;
}

/* Reads answers until every op of [first, first+count) has one; -errno on a socket failure. */
static int collect(int fd, uint32_t base, int first, int count, int *errs, char *answered) {
  int left = count;
  char buf[16384] __attribute__((aligned(NLMSG_ALIGNTO)));
  while (left > 0) {
    ssize_t r = recv(fd, buf, sizeof buf, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    int len = (int)r;
    for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
      if (h->nlmsg_type != NLMSG_ERROR) continue;
      if (h->nlmsg_len < NLMSG_LENGTH(sizeof(struct nlmsgerr))) continue;
      uint32_t k = h->nlmsg_seq - base;
      if (k < (uint32_t)first || k >= (uint32_t)(first + count) || answered[k]) continue;
      const struct nlmsgerr *e = NLMSG_DATA(h);
      errs[k] = e->error < 0 ? -e->error : 0;
      answered[k] = 1;
      left--;
    }
  }
  return 0;
}

int nl_apply(unsigned ifindex, const nl_op *ops, int n, int *errs) {
  if (n <= 0) return 0;
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) {
    int err = errno;
    for (int i = 0; i < n; i++) errs[i] = err;
    return -err;
  }
  int one = 1;
  (void)setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one);
  struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
  char *answered = calloc((size_t)n, 1);
  char *out = malloc((size_t)CHUNK * MSG_MAX);
  int rc = 0;
  if (answered == NULL || out == NULL) {
    rc = -ENOMEM;
  } else {
    /* Sequence numbers: base + index, unique per call on this private socket. */
    uint32_t base = 1;
    for (int first = 0; first < n && rc == 0; first += CHUNK) {
      int count = n - first < CHUNK ? n - first : CHUNK;
      size_t used = 0;
      memset(out, 0, (size_t)CHUNK * MSG_MAX);
      for (int i = 0; i < count; i++) used += NLMSG_ALIGN(build(out + used, &ops[first + i], ifindex, base + (uint32_t)(first + i)));
      ssize_t s;
      do {
        s = sendto(fd, out, used, 0, (struct sockaddr *)&kernel, sizeof kernel);
      } while (s < 0 && errno == EINTR);
      if (s < 0) {
        rc = -errno;
        break;
      }
      rc = collect(fd, base, first, count, errs, answered);
    }
  }
  if (rc != 0) {
    for (int i = 0; i < n; i++) if (answered == NULL || !answered[i]) errs[i] = -rc;
  }
  free(answered);
  free(out);
  close(fd);
  return rc;
}
