/*
 * forward.h: the latency floor's forwarder, shared by forward.c (a plain
 * poll() loop, as tinc's) and forward-addon.c (the same C driven by Node's
 * event loop). It moves IP packets between a TUN device and one UDP peer,
 * one read and one send per packet, with NO encryption and no framing: it
 * measures what a user-space tunnel costs at the least, not a VPN.
 * Benchmark tool only (scripts/bench/latency); never use it for traffic.
 */
#ifndef FLOOR_FORWARD_H
#define FLOOR_FORWARD_H
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct {
  int tun;
  int udp;
  struct sockaddr_in peer;
  unsigned long long tx, rx;
  unsigned char buf[65536];
} fwd_t;

/* Opens TUN `name` and a UDP socket on `port`, peer ip:pport. 0 or -errno, with `what` set. */
static int fwd_open(fwd_t *f, const char *name, int port, const char *ip, int pport, const char **what) {
  struct ifreq ifr;
  struct sockaddr_in a;
  memset(f, 0, sizeof *f);
  f->tun = f->udp = -1;
  f->tun = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (f->tun < 0) return *what = "open /dev/net/tun", -errno;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
  snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
  if (ioctl(f->tun, TUNSETIFF, &ifr) < 0) return *what = "TUNSETIFF", -errno;
  f->udp = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (f->udp < 0) return *what = "socket", -errno;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((unsigned short)port);
  if (bind(f->udp, (struct sockaddr *)&a, sizeof a) < 0) return *what = "bind", -errno;
  f->peer.sin_family = AF_INET;
  f->peer.sin_port = htons((unsigned short)pport);
  if (inet_pton(AF_INET, ip, &f->peer.sin_addr) != 1) return *what = "peer address", -EINVAL;
  return 0;
}

/* Drains the TUN device into the peer. */
static void fwd_tun_to_udp(fwd_t *f) {
  for (;;) {
    ssize_t n = read(f->tun, f->buf, sizeof f->buf);
    if (n <= 0) return;
    if (sendto(f->udp, f->buf, (size_t)n, 0, (struct sockaddr *)&f->peer, sizeof f->peer) == n) f->tx++;
  }
}

/* Drains the UDP socket into the TUN device (datagrams from the peer only). */
static void fwd_udp_to_tun(fwd_t *f) {
  for (;;) {
    struct sockaddr_in src;
    socklen_t sl = sizeof src;
    ssize_t n = recvfrom(f->udp, f->buf, sizeof f->buf, 0, (struct sockaddr *)&src, &sl);
    if (n <= 0) return;
    if (src.sin_addr.s_addr != f->peer.sin_addr.s_addr || src.sin_port != f->peer.sin_port) continue;
    if (write(f->tun, f->buf, (size_t)n) == n) f->rx++;
  }
}
#endif
