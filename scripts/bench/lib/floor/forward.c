/* forward: the latency floor's forwarder as a plain C poll() loop (see forward.h).
 * usage: forward TUN-NAME LOCAL-PORT PEER-IPV4 PEER-PORT */
#include <poll.h>
#include "forward.h"

int main(int argc, char **argv) {
  static fwd_t f;
  const char *what = "";
  if (argc != 5) {
    fprintf(stderr, "usage: forward TUN-NAME LOCAL-PORT PEER-IPV4 PEER-PORT\n");
    return 2;
  }
  int r = fwd_open(&f, argv[1], atoi(argv[2]), argv[3], atoi(argv[4]), &what);
  if (r < 0) {
    fprintf(stderr, "forward: %s: %s\n", what, strerror(-r));
    return 1;
  }
  struct pollfd p[2] = {{f.tun, POLLIN, 0}, {f.udp, POLLIN, 0}};
  for (;;) {
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      perror("forward: poll");
      return 1;
    }
    if (p[0].revents) fwd_tun_to_udp(&f);
    if (p[1].revents) fwd_udp_to_tun(&f);
  }
}
