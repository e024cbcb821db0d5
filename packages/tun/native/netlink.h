/*
 * netlink.h: interface addresses and routes through rtnetlink, without
 * spawning `ip` (see netlink.c).
 */
#ifndef CLUEVPN_TUN_NETLINK_H
#define CLUEVPN_TUN_NETLINK_H

enum {
  NL_ADD_ADDRESS = 1, /* RTM_NEWADDR (IPv6: IFA_F_NODAD) */
  NL_ADD_ROUTE = 2,   /* RTM_NEWROUTE, scope link, main table, into the interface */
  NL_DEL_ROUTE = 3,   /* RTM_DELROUTE of such a route */
};

typedef struct nl_op {
  int kind;                /* NL_* */
  int family;              /* AF_INET or AF_INET6 */
  unsigned char addr[16];  /* network byte order; 4 bytes used for AF_INET */
  int plen;                /* prefix length */
} nl_op;

/*
 * Parses "address[/len]" (IPv4 dotted quad or IPv6 text, no zone) into
 * op->family/addr/plen; len defaults to the full length. 0 on success, -1
 * when the text is not such a CIDR.
 */
int nl_parse_cidr(const char *text, nl_op *op);

/*
 * Applies ops[0..n) to interface `ifindex`, in order, each independently
 * (a failing one does not stop the others). errs[i] is 0 on success or the
 * positive errno the kernel answered. Returns 0, or -errno when the netlink
 * socket itself failed (then errs[] of the ops not answered hold that errno).
 */
int nl_apply(unsigned ifindex, const nl_op *ops, int n, int *errs);

#endif
