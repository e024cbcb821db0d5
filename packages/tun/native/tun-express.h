/*
 * The C interface between this addon and the data plane's
 * (packages/dataplane/native/src/express.c): the express paths hand packets
 * between the TUN device and the UDP socket without entering JavaScript.
 * ONE header, compiled by both addons (the data plane's binding.gyp has
 * this directory in include_dirs; scripts/build-native rebuilds it when this
 * file changes), so the structs cannot drift apart in the source.
 *
 * The two addons are still built separately, so a stale build of one could
 * meet a new build of the other: each struct starts with a `magic` naming
 * its layout version, checked at run time by the receiving side, and the
 * static assertions below pin the layout to that version. Changing a struct
 * fails them until the magic (its version) and the asserted numbers are
 * changed together.
 */
#ifndef CLUEVPN_TUN_EXPRESS_H
#define CLUEVPN_TUN_EXPRESS_H

#include <stddef.h>
#include <stdint.h>

/*
 * A C entry point to write one packet (the data plane's express receive
 * path: packets decrypted in C go to the device without entering
 * JavaScript). Given out by expressWriter(). `write` returns 1 when the
 * kernel took the packet, 0 when it was dropped (counted in the device's
 * stats, as writeBatch counts) or the device is closed.
 */
#define TUN_EXPRESS_WRITER_MAGIC 0x434c5457u /* "CLTW", layout version 1 */
typedef struct {
  uint32_t magic;
  int (*write)(void *dev, const uint8_t *p, size_t len);
  void *dev;
} tun_express_writer;

/*
 * The other direction: a C consumer of packets read from the device (the
 * data plane's express send path), set with setExpressSender(), tried
 * before JavaScript, packet by packet, when a read yields at most
 * TUN_EXPRESS_MAX_BATCH packets. `send` gets the packet in its slot with the
 * free bytes before and after it, may rewrite the slot in place, and returns
 * 1 when it took the packet (JavaScript does not see it), 0 to leave it, as
 * read, to the packet handler; what it took it may hold until `flush`, which
 * comes after the read's express loop and before the handler runs (so the
 * packets of one read can leave in one system call, in order).
 */
#define TUN_EXPRESS_SENDER_MAGIC 0x434c5432u /* "CLT2", layout version 2 */
typedef struct {
  uint32_t magic;
  int (*send)(void *ctx, uint8_t *pkt, size_t len, size_t headroom, size_t tailroom);
  void (*flush)(void *ctx); /* sends what `send` took; called after the read's express loop, before the handler */
  void *ctx;
} tun_express_sender;

/* Reads (and socket batches) of at most this many packets are offered to the express paths. */
#define TUN_EXPRESS_MAX_BATCH 4

/* The layouts of versions 1 and 2 on LP64 (the only ABI built here). */
_Static_assert(sizeof(void *) == 8, "tun-express.h: the layout checks assume LP64");
_Static_assert(TUN_EXPRESS_WRITER_MAGIC == 0x434c5457u && offsetof(tun_express_writer, write) == 8 &&
                   offsetof(tun_express_writer, dev) == 16 && sizeof(tun_express_writer) == 24,
               "tun_express_writer changed: give it a new TUN_EXPRESS_WRITER_MAGIC and update these numbers");
_Static_assert(TUN_EXPRESS_SENDER_MAGIC == 0x434c5432u && offsetof(tun_express_sender, send) == 8 &&
                   offsetof(tun_express_sender, flush) == 16 && offsetof(tun_express_sender, ctx) == 24 &&
                   sizeof(tun_express_sender) == 32,
               "tun_express_sender changed: give it a new TUN_EXPRESS_SENDER_MAGIC and update these numbers");

#endif
