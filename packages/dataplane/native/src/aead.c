/*
 * Batched AEAD, in place.
 *
 * Keys live in a per-environment table of slots; each slot holds two
 * EVP_CIPHER_CTX (encrypt, decrypt) keyed once at createKey, so per packet
 * only the nonce is set. A handle is (generation << 20) | slot: destroying a
 * key bumps the slot's generation, so a stale handle never reaches a key that
 * later reuses the slot. A slot whose 11-bit generation is used up is never
 * reused (the generation never wraps, so no handle is ever issued twice);
 * freed slots are reused FIFO so that takes long: 2^20 slots x 2047 keys.
 *
 * Per packet i (see backend.ts):
 *   seal: buf[off .. off+20) header = AAD, nonce = header[8..20),
 *         payload buf[off+20 .. off+20+len) -> ciphertext, tag at off+20+len.
 *   open: datagram buf[off .. off+len), len >= 36; ok[i] = 1 iff authentic.
 *   With the optional per-packet flags `macOnly` (seal's 6th argument,
 *   open's 7th), a packet whose flag is 1 is authenticated, not encrypted:
 *   header AND payload are the associated data, the plaintext is empty, so
 *   the tag is a MAC (GMAC for AES-256-GCM, Poly1305 for ChaCha20-Poly1305)
 *   and the payload stays as it is on both sides. The relay layer (message
 *   types 4 and 5) uses it: its payload is a datagram already sealed end to
 *   end, which needs no second encryption.
 *
 * Programmer errors (bad types, count beyond an array, an offset/length
 * outside the buffer, an unknown handle given to seal) throw before any byte
 * is written. Unauthentic data and unknown handles in open are not errors:
 * ok[i] = 0.
 */
#include "addon.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#define SLOT_BITS 20
#define SLOT_MASK ((1u << SLOT_BITS) - 1)
#define MAX_SLOTS (1u << SLOT_BITS)
#define GEN_MAX 2047u /* handle = gen << 20 | slot stays a positive int32 */
#define NO_SLOT 0xFFFFFFFFu

typedef struct {
  EVP_CIPHER_CTX *enc;
  EVP_CIPHER_CTX *dec;
  uint32_t gen;       /* generation of the live key, or of the next one */
  uint32_t next_free; /* FIFO free list link */
  uint8_t live;
  uint8_t cipher;
} key_slot;

struct dp_keytab {
  key_slot *slots;
  uint32_t cap;  /* allocated slots */
  uint32_t used; /* slots ever handed out (slot 0 is never used) */
  uint32_t free_head, free_tail;
  uint32_t live;
};

static key_slot *lookup(dp_keytab *t, int32_t handle) {
  if (handle <= 0) return NULL;
  uint32_t h = (uint32_t)handle;
  uint32_t slot = h & SLOT_MASK, gen = h >> SLOT_BITS;
  if (slot == 0 || slot >= t->used) return NULL;
  key_slot *k = &t->slots[slot];
  if (!k->live || k->gen != gen) return NULL;
  return k;
}

static void slot_release(dp_keytab *t, uint32_t slot) {
  key_slot *k = &t->slots[slot];
  /* EVP_CIPHER_CTX_free cleanses the key schedule before freeing. */
  EVP_CIPHER_CTX_free(k->enc);
  EVP_CIPHER_CTX_free(k->dec);
  k->enc = k->dec = NULL;
  k->live = 0;
  k->next_free = NO_SLOT;
  t->live--;
  if (k->gen >= GEN_MAX) return; /* used up: retired for good, its handles can never come back */
  k->gen++;
  if (t->free_tail == NO_SLOT) {
    t->free_head = t->free_tail = slot;
  } else {
    t->slots[t->free_tail].next_free = slot;
    t->free_tail = slot;
  }
}

/* Returns a free slot index (> 0) or 0 when the table is full / no memory. */
static uint32_t slot_alloc(dp_keytab *t) {
  /* Reuse a freed slot only when enough are waiting, so generations turn slowly. */
  if (t->free_head != NO_SLOT && (t->used >= MAX_SLOTS || t->used - 1 - t->live >= 64)) {
    uint32_t s = t->free_head;
    t->free_head = t->slots[s].next_free;
    if (t->free_head == NO_SLOT) t->free_tail = NO_SLOT;
    return s;
  }
  if (t->used >= MAX_SLOTS) return 0;
  if (t->used >= t->cap) {
    uint32_t ncap = t->cap == 0 ? 64 : t->cap * 2;
    if (ncap > MAX_SLOTS) ncap = MAX_SLOTS;
    key_slot *n = realloc(t->slots, (size_t)ncap * sizeof *n);
    if (n == NULL) return 0;
    memset(n + t->cap, 0, (size_t)(ncap - t->cap) * sizeof *n);
    t->slots = n;
    t->cap = ncap;
  }
  uint32_t s = t->used++;
  t->slots[s].gen = 1;
  return s;
}

static dp_keytab *keytab(napi_env env) {
  dp_instance *inst = NULL;
  if (napi_get_instance_data(env, (void **)&inst) != napi_ok || inst == NULL) return NULL;
  return inst->keys;
}

static EVP_CIPHER_CTX *make_ctx(const EVP_CIPHER *c, const uint8_t *key, int enc) {
  EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
  if (ctx == NULL) return NULL;
  if (EVP_CipherInit_ex(ctx, c, NULL, NULL, NULL, enc) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_IVLEN, DP_NONCE_LEN, NULL) != 1 ||
      EVP_CipherInit_ex(ctx, NULL, NULL, key, NULL, enc) != 1) {
    EVP_CIPHER_CTX_free(ctx);
    return NULL;
  }
  return ctx;
}

/* createKey(cipher: 0|1, key: Uint8Array(32)) -> handle > 0 */
static napi_value create_key(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2)
    return dp_throw(env, "ERR_DP_NATIVE", 0, "createKey(cipher, key): 2 arguments expected");
  int32_t cipher;
  uint8_t *key;
  size_t klen;
  if (!dp_get_int(env, argv[0], &cipher) || (cipher != 0 && cipher != 1))
    return dp_throw(env, "ERR_DP_KEY", 0, "createKey: unknown cipher id");
  if (!dp_get_u8(env, argv[1], &key, &klen) || klen != DP_KEY_LEN)
    return dp_throw(env, "ERR_DP_KEY", 0, "createKey: key must be a Uint8Array of %d bytes", DP_KEY_LEN);
  dp_keytab *t = keytab(env);
  if (t == NULL) return dp_throw(env, "ERR_DP_NATIVE", 0, "createKey: no key table");

  const EVP_CIPHER *c = cipher == 0 ? EVP_aes_256_gcm() : EVP_chacha20_poly1305();
  EVP_CIPHER_CTX *enc = make_ctx(c, key, 1);
  EVP_CIPHER_CTX *dec = enc != NULL ? make_ctx(c, key, 0) : NULL;
  if (enc == NULL || dec == NULL) {
    EVP_CIPHER_CTX_free(enc);
    ERR_clear_error();
    return dp_throw(env, "ERR_DP_KEY", 0, "createKey: OpenSSL rejected the key");
  }
  uint32_t s = slot_alloc(t);
  if (s == 0) {
    EVP_CIPHER_CTX_free(enc);
    EVP_CIPHER_CTX_free(dec);
    return dp_throw(env, "ERR_DP_KEY", 0, "createKey: key table full");
  }
  key_slot *k = &t->slots[s];
  k->enc = enc;
  k->dec = dec;
  k->cipher = (uint8_t)cipher;
  k->live = 1;
  k->next_free = NO_SLOT;
  t->live++;
  napi_value out;
  napi_create_int32(env, (int32_t)((k->gen << SLOT_BITS) | s), &out);
  return out;
}

/* destroyKey(handle): unknown handles are ignored. */
static napi_value destroy_key(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t h;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 || !dp_get_int(env, argv[0], &h))
    return dp_throw(env, "ERR_DP_NATIVE", 0, "destroyKey(handle): a number expected");
  dp_keytab *t = keytab(env);
  if (t != NULL && lookup(t, h) != NULL) slot_release(t, (uint32_t)h & SLOT_MASK);
  return NULL;
}

/* liveKeys() -> number of keys not destroyed (for leak checks in tests). */
static napi_value live_keys(napi_env env, napi_callback_info info) {
  dp_keytab *t = keytab(env);
  napi_value out;
  napi_create_uint32(env, t ? t->live : 0, &out);
  return out;
}

typedef struct {
  uint8_t *buf;
  size_t buflen;
  int32_t count;
  int32_t *offs, *lens, *handles;
  uint8_t *ok;
  uint8_t *mac; /* per-packet "authenticate only" flags, or NULL (none) */
} batch_args;

/* Parses (buf, count, offs, lens, handles[, ok][, macOnly]); throws and returns 0 on a programmer error. */
static int parse_batch(napi_env env, napi_callback_info info, int with_ok, batch_args *a, const char *name) {
  size_t argc = 7;
  napi_value argv[7];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < (size_t)(with_ok ? 6 : 5)) {
    dp_throw(env, "ERR_DP_NATIVE", 0, "%s: %d arguments expected", name, with_ok ? 6 : 5);
    return 0;
  }
  /* The optional macOnly flags: absent or undefined means none. */
  size_t mi = with_ok ? 6 : 5, nm = 0;
  a->mac = NULL;
  if (argc > mi) {
    napi_valuetype mt;
    if (napi_typeof(env, argv[mi], &mt) != napi_ok) mt = napi_null;
    if (mt != napi_undefined && !dp_get_u8(env, argv[mi], &a->mac, &nm)) {
      dp_throw(env, "ERR_DP_NATIVE", 0, "%s: macOnly must be a Uint8Array or undefined", name);
      return 0;
    }
  }
  size_t no, nl, nh, nk = 0;
  if (!dp_get_u8(env, argv[0], &a->buf, &a->buflen) || !dp_get_int(env, argv[1], &a->count) ||
      !dp_get_i32(env, argv[2], &a->offs, &no) || !dp_get_i32(env, argv[3], &a->lens, &nl) ||
      !dp_get_i32(env, argv[4], &a->handles, &nh) || (with_ok && !dp_get_u8(env, argv[5], &a->ok, &nk))) {
    dp_throw(env, "ERR_DP_NATIVE", 0, "%s: argument types are (Uint8Array, number, Int32Array, Int32Array, Int32Array%s)",
             name, with_ok ? ", Uint8Array" : "");
    return 0;
  }
  if (a->count < 0 || (size_t)a->count > no || (size_t)a->count > nl || (size_t)a->count > nh ||
      (with_ok && (size_t)a->count > nk) || (a->mac != NULL && (size_t)a->count > nm)) {
    dp_throw(env, "ERR_DP_NATIVE", 0, "%s: count %d outside the arrays", name, a->count);
    return 0;
  }
  return 1;
}

/* Bounds of packet i: seal needs header+len+tag, open needs len. 64-bit math, no overflow. */
static inline int in_bounds(int64_t off, int64_t len, int64_t extra, size_t buflen) {
  return off >= 0 && len >= 0 && off + len + extra <= (int64_t)buflen;
}

static int seal_one(EVP_CIPHER_CTX *ctx, uint8_t *p, int len) {
  uint8_t *pt = p + DP_HEADER_LEN;
  int outl = 0, fl = 0;
  if (EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, p + DP_NONCE_OFFSET) != 1) return 0;
  if (EVP_EncryptUpdate(ctx, NULL, &outl, p, DP_HEADER_LEN) != 1) return 0;
  outl = 0;
  if (len > 0 && EVP_EncryptUpdate(ctx, pt, &outl, pt, len) != 1) return 0;
  if (outl != len) return 0;
  if (EVP_EncryptFinal_ex(ctx, pt + outl, &fl) != 1 || fl != 0) return 0;
  return EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, DP_TAG_LEN, pt + len) == 1;
}

/* Authenticates packet p (header and len payload bytes, all associated data) in place: only the tag is written, at p + 20 + len. */
static int mac_one(EVP_CIPHER_CTX *ctx, uint8_t *p, int len) {
  int outl = 0, fl = 0;
  if (EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, p + DP_NONCE_OFFSET) != 1) return 0;
  if (EVP_EncryptUpdate(ctx, NULL, &outl, p, DP_HEADER_LEN + len) != 1) return 0;
  if (EVP_EncryptFinal_ex(ctx, p + DP_HEADER_LEN + len, &fl) != 1 || fl != 0) return 0;
  return EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, DP_TAG_LEN, p + DP_HEADER_LEN + len) == 1;
}

/* Checks the tag of datagram p[0 .. len) whose header and payload are all associated data; reads only. */
static int verify_one(EVP_CIPHER_CTX *ctx, const uint8_t *p, int len) {
  int adlen = len - DP_TAG_LEN;
  int outl = 0, fl = 0;
  uint8_t none[16];
  if (EVP_DecryptInit_ex(ctx, NULL, NULL, NULL, p + DP_NONCE_OFFSET) != 1) return 0;
  if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, DP_TAG_LEN, (void *)(p + adlen)) != 1) return 0;
  if (EVP_DecryptUpdate(ctx, NULL, &outl, p, adlen) != 1) return 0;
  /* Tag comparison inside OpenSSL is constant time (CRYPTO_memcmp). */
  return EVP_DecryptFinal_ex(ctx, none, &fl) == 1;
}

/* Opens datagram p[0 .. len) into `out` (len - 36 bytes; out == p + 20 decrypts in place). */
static int open_one(EVP_CIPHER_CTX *ctx, const uint8_t *p, int len, uint8_t *out) {
  int ctlen = len - DP_HEADER_LEN - DP_TAG_LEN;
  const uint8_t *ct = p + DP_HEADER_LEN;
  int outl = 0, fl = 0;
  if (EVP_DecryptInit_ex(ctx, NULL, NULL, NULL, p + DP_NONCE_OFFSET) != 1) return 0;
  if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, DP_TAG_LEN, (void *)(ct + ctlen)) != 1) return 0;
  if (EVP_DecryptUpdate(ctx, NULL, &outl, p, DP_HEADER_LEN) != 1) return 0;
  outl = 0;
  if (ctlen > 0 && EVP_DecryptUpdate(ctx, out, &outl, ct, ctlen) != 1) return 0;
  if (outl != ctlen) return 0;
  /* Tag comparison inside OpenSSL is constant time (CRYPTO_memcmp). */
  return EVP_DecryptFinal_ex(ctx, out + outl, &fl) == 1;
}

/*
 * Opens one datagram dg[0 .. len) (len >= 36) with key `handle` into `out`
 * (len - 36 bytes), leaving `dg` untouched. 1 iff authentic; 0 for an
 * unknown handle or a forgery (then `out` holds garbage, never used).
 */
int dp_aead_open_to(napi_env env, int32_t handle, const uint8_t *dg, int len, uint8_t *out) {
  dp_keytab *t = keytab(env);
  key_slot *k = t == NULL ? NULL : lookup(t, handle);
  return k != NULL && len >= DP_HEADER_LEN + DP_TAG_LEN && open_one(k->dec, dg, len, out);
}

/* Seals one packet in place (header at p, payload len bytes, tag after) with key `handle`; 0 for an unknown handle. */
int dp_aead_seal_one(napi_env env, int32_t handle, uint8_t *p, int len) {
  dp_keytab *t = keytab(env);
  key_slot *k = t == NULL ? NULL : lookup(t, handle);
  return k != NULL && seal_one(k->enc, p, len);
}

/* sealBatch(buf, count, offs, lens, handles[, macOnly]) */
static napi_value seal_batch(napi_env env, napi_callback_info info) {
  batch_args a;
  if (!parse_batch(env, info, 0, &a, "sealBatch")) return NULL;
  dp_keytab *t = keytab(env);
  /* Pass 1: validate everything before writing a byte. */
  for (int32_t i = 0; i < a.count; i++) {
    if (!in_bounds(a.offs[i], a.lens[i], DP_HEADER_LEN + DP_TAG_LEN, a.buflen))
      return dp_throw(env, "ERR_DP_NATIVE", 0, "sealBatch: packet %d (offset %d, length %d) outside the buffer of %zu bytes",
                      i, a.offs[i], a.lens[i], a.buflen);
    if (t == NULL || lookup(t, a.handles[i]) == NULL)
      return dp_throw(env, "ERR_DP_KEY", 0, "sealBatch: packet %d has no live key (handle %d)", i, a.handles[i]);
  }
  /* Pass 2: encrypt. Values are read again and rechecked, in case an index
   * array aliases the data buffer and was changed by an earlier packet. */
  int failed = 0;
  int32_t last_h = 0;
  key_slot *k = NULL;
  for (int32_t i = 0; i < a.count; i++) {
    int32_t off = a.offs[i], len = a.lens[i], h = a.handles[i];
    if (h != last_h || k == NULL) {
      k = lookup(t, h);
      last_h = h;
    }
    if (k == NULL || !in_bounds(off, len, DP_HEADER_LEN + DP_TAG_LEN, a.buflen) ||
        !(a.mac != NULL && a.mac[i] ? mac_one(k->enc, a.buf + off, len) : seal_one(k->enc, a.buf + off, len)))
      failed++;
  }
  if (failed) {
    ERR_clear_error();
    return dp_throw(env, "ERR_DP_NATIVE", 0, "sealBatch: %d packets failed to encrypt", failed);
  }
  return NULL;
}

/* openBatch(buf, count, offs, lens, handles, ok[, macOnly]) */
static napi_value open_batch(napi_env env, napi_callback_info info) {
  batch_args a;
  if (!parse_batch(env, info, 1, &a, "openBatch")) return NULL;
  dp_keytab *t = keytab(env);
  for (int32_t i = 0; i < a.count; i++) {
    if (!in_bounds(a.offs[i], a.lens[i], 0, a.buflen))
      return dp_throw(env, "ERR_DP_NATIVE", 0, "openBatch: datagram %d (offset %d, length %d) outside the buffer of %zu bytes",
                      i, a.offs[i], a.lens[i], a.buflen);
  }
  int errors = 0;
  int32_t last_h = 0;
  key_slot *k = NULL;
  for (int32_t i = 0; i < a.count; i++) {
    int32_t off = a.offs[i], len = a.lens[i], h = a.handles[i];
    uint8_t good = 0;
    if (h != last_h || k == NULL) {
      k = t != NULL ? lookup(t, h) : NULL;
      last_h = h;
    }
    if (k != NULL && len >= DP_HEADER_LEN + DP_TAG_LEN && in_bounds(off, len, 0, a.buflen)) {
      good = (uint8_t)(a.mac != NULL && a.mac[i] ? verify_one(k->dec, a.buf + off, len)
                                                 : open_one(k->dec, a.buf + off, len, a.buf + off + DP_HEADER_LEN));
      if (!good) errors = 1;
    }
    a.ok[i] = good;
  }
  /* A failed tag check may leave an entry on OpenSSL's thread error queue,
   * which Node's own crypto would otherwise find later. */
  if (errors) ERR_clear_error();
  return NULL;
}

napi_status dp_aead_init(napi_env env, napi_value exports, dp_instance *inst) {
  inst->keys = calloc(1, sizeof *inst->keys);
  if (inst->keys == NULL) {
    napi_throw_error(env, "ERR_DP_NATIVE", "out of memory");
    return napi_generic_failure;
  }
  inst->keys->used = 1; /* slot 0 is never handed out */
  inst->keys->free_head = inst->keys->free_tail = NO_SLOT;
  napi_property_descriptor props[] = {
      {"createKey", NULL, create_key, NULL, NULL, NULL, napi_enumerable, NULL},
      {"destroyKey", NULL, destroy_key, NULL, NULL, NULL, napi_enumerable, NULL},
      {"liveKeys", NULL, live_keys, NULL, NULL, NULL, napi_enumerable, NULL},
      {"sealBatch", NULL, seal_batch, NULL, NULL, NULL, napi_enumerable, NULL},
      {"openBatch", NULL, open_batch, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}

void dp_aead_free(dp_instance *inst) {
  dp_keytab *t = inst->keys;
  if (t == NULL) return;
  for (uint32_t s = 1; s < t->used; s++)
    if (t->slots[s].live) slot_release(t, s);
  free(t->slots);
  free(t);
  inst->keys = NULL;
}
