/**
 * Native batched AEAD: round trips, byte-for-byte agreement with Node's
 * crypto in both directions, tamper detection, handle lifecycle, and index
 * validation (errors, never out-of-bounds writes).
 */
import assert from 'node:assert/strict';
import { type CipherGCMTypes, createCipheriv, createDecipheriv, randomBytes, randomInt } from 'node:crypto';
import { describe, it } from 'node:test';
import { CipherId, type CipherIdValue, HEADER_LEN, NONCE_OFFSET, TAG_LEN } from '../src/backend.js';
import { jsCryptoBackend } from '../src/backend-js.js';
import { nativeAvailable, nativeCryptoBackend, nativeLiveKeys, nativeUnavailableReason } from '../src/backend-native.js';

const CIPHERS: ReadonlyArray<[CipherIdValue, 'aes-256-gcm' | 'chacha20-poly1305']> = [
  [CipherId.AES_256_GCM, 'aes-256-gcm'],
  [CipherId.CHACHA20_POLY1305, 'chacha20-poly1305'],
];

/** A random header whose first bytes look like a data packet. */
function header(): Buffer {
  const h = randomBytes(HEADER_LEN);
  h[0] = 0x11;
  return h;
}

/** Node's reference AEAD: returns header ‖ ciphertext ‖ tag. (Typed as GCM; ChaCha20-Poly1305 has the same methods.) */
function jsSeal(name: string, key: Buffer, hdr: Buffer, pt: Buffer): Buffer {
  const c = createCipheriv(name as CipherGCMTypes, key, hdr.subarray(NONCE_OFFSET, HEADER_LEN), { authTagLength: TAG_LEN });
  c.setAAD(hdr);
  const ct = Buffer.concat([c.update(pt), c.final()]);
  return Buffer.concat([hdr, ct, c.getAuthTag()]);
}

/** Node's reference open: the plaintext, or null when not authentic. */
function jsOpen(name: string, key: Buffer, dgram: Buffer): Buffer | null {
  const hdr = dgram.subarray(0, HEADER_LEN);
  const d = createDecipheriv(name as CipherGCMTypes, key, hdr.subarray(NONCE_OFFSET), { authTagLength: TAG_LEN });
  d.setAAD(hdr);
  d.setAuthTag(dgram.subarray(dgram.length - TAG_LEN));
  try {
    return Buffer.concat([d.update(dgram.subarray(HEADER_LEN, dgram.length - TAG_LEN)), d.final()]);
  } catch (err) {
    assert.ok(err instanceof Error, 'decipher failure is an Error');
    return null;
  }
}

/** Node's reference MAC (`macOnly`): header ‖ payload as associated data, empty plaintext; returns header ‖ payload ‖ tag. */
function jsMac(name: string, key: Buffer, hdr: Buffer, payload: Buffer): Buffer {
  const c = createCipheriv(name as CipherGCMTypes, key, hdr.subarray(NONCE_OFFSET, HEADER_LEN), { authTagLength: TAG_LEN });
  c.setAAD(Buffer.concat([hdr, payload]));
  c.final();
  return Buffer.concat([hdr, payload, c.getAuthTag()]);
}

/** One copy of `dgram` per byte position with one bit flipped, plus one intact copy last, laid out back to back for `openBatch`. */
function flippedCopies(dgram: Buffer) {
  const copies: Buffer[] = [];
  for (let pos = 0; pos < dgram.length; pos++) {
    const c = Buffer.from(dgram);
    c[pos] ^= 1 << pos % 8;
    copies.push(c);
  }
  copies.push(Buffer.from(dgram));
  return {
    buf: Buffer.concat(copies),
    offs: Int32Array.from(copies, (_, i) => i * dgram.length),
    lens: new Int32Array(copies.length).fill(dgram.length),
    count: copies.length,
  };
}

/** Lays `packets` (header ‖ payload) out in one buffer with `gap` spare bytes each; returns the arrays. */
function layout(packets: Buffer[], gap = TAG_LEN + 8) {
  let total = 0;
  for (const p of packets) total += p.length + gap;
  const buf = Buffer.alloc(total);
  const offs = new Int32Array(packets.length);
  const lens = new Int32Array(packets.length);
  let at = 0;
  packets.forEach((p, i) => {
    p.copy(buf, at);
    offs[i] = at;
    lens[i] = p.length - HEADER_LEN;
    at += p.length + gap;
  });
  return { buf, offs, lens };
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return (err as { code?: string }).code;
  }
  return undefined;
}

describe('native crypto backend', () => {
  it('loads the addon', () => {
    assert.equal(nativeAvailable(), true, nativeUnavailableReason());
    assert.equal(nativeUnavailableReason(), undefined);
  });

  for (const [id, name] of CIPHERS) {
    describe(name, () => {
      it('round-trips payloads of many sizes in one batch', () => {
        const be = nativeCryptoBackend();
        const h = be.createKey(id, randomBytes(32));
        const sizes = [0, 1, 15, 16, 17, 63, 64, 65, 255, 1000, 1400, 1420, 9000];
        const pts = sizes.map((n) => randomBytes(n));
        const packets = pts.map((pt) => Buffer.concat([header(), pt]));
        const { buf, offs, lens } = layout(packets);
        const handles = new Int32Array(packets.length).fill(h);
        be.sealBatch(buf, packets.length, offs, lens, handles);
        for (let i = 0; i < packets.length; i++) {
          if (pts[i].length >= 16) {
            assert.notDeepEqual(buf.subarray(offs[i] + HEADER_LEN, offs[i] + HEADER_LEN + lens[i]), pts[i], 'payload was encrypted');
          }
        }
        const dlens = Int32Array.from(lens, (l) => l + HEADER_LEN + TAG_LEN);
        const ok = new Uint8Array(packets.length);
        be.openBatch(buf, packets.length, offs, dlens, handles, ok);
        for (let i = 0; i < packets.length; i++) {
          assert.equal(ok[i], 1, `packet ${i} authentic`);
          assert.deepEqual(buf.subarray(offs[i], offs[i] + HEADER_LEN + lens[i]), packets[i], `packet ${i} restored`);
        }
        be.destroyKey(h);
      });

      it('native seal is byte-identical to createCipheriv and JS opens it', () => {
        const be = nativeCryptoBackend();
        const key = randomBytes(32);
        const h = be.createKey(id, key);
        for (const n of [0, 1, 100, 1400]) {
          const hdr = header();
          const pt = randomBytes(n);
          const { buf, offs, lens } = layout([Buffer.concat([hdr, pt])]);
          be.sealBatch(buf, 1, offs, lens, Int32Array.of(h));
          const native = buf.subarray(0, HEADER_LEN + n + TAG_LEN);
          assert.deepEqual(native, jsSeal(name, key, hdr, pt), `identical datagram for ${n} bytes`);
          assert.deepEqual(jsOpen(name, key, Buffer.from(native)), pt);
        }
        be.destroyKey(h);
      });

      it('JS seal is opened by native open', () => {
        const be = nativeCryptoBackend();
        const key = randomBytes(32);
        const h = be.createKey(id, key);
        for (const n of [0, 7, 1400]) {
          const pt = randomBytes(n);
          const dgram = jsSeal(name, key, header(), pt);
          const buf = Buffer.concat([randomBytes(5), dgram, randomBytes(5)]);
          const ok = new Uint8Array(1);
          be.openBatch(buf, 1, Int32Array.of(5), Int32Array.of(dgram.length), Int32Array.of(h), ok);
          assert.equal(ok[0], 1);
          assert.deepEqual(buf.subarray(5 + HEADER_LEN, 5 + HEADER_LEN + n), pt);
        }
        be.destroyKey(h);
      });

      it('macOnly: the tag is the reference MAC over header and payload, the payload stays in clear, both backends agree', () => {
        const key = randomBytes(32);
        for (const be of [nativeCryptoBackend(), jsCryptoBackend()]) {
          const h = be.createKey(id, key);
          for (const n of [0, 1, 100, 1456]) {
            const hdr = header();
            const payload = randomBytes(n);
            const { buf, offs, lens } = layout([Buffer.concat([hdr, payload])]);
            be.sealBatch(buf, 1, offs, lens, Int32Array.of(h), Uint8Array.of(1));
            const dgram = Buffer.from(buf.subarray(0, HEADER_LEN + n + TAG_LEN));
            assert.deepEqual(dgram, jsMac(name, key, hdr, payload), `reference MAC for ${n} bytes`);
            assert.deepEqual(dgram.subarray(HEADER_LEN, HEADER_LEN + n), payload, 'payload not encrypted');
            // open with macOnly: authentic, nothing changed; without it (as a data packet) it is not authentic
            const ok = new Uint8Array(2);
            const two = Buffer.concat([dgram, dgram]);
            const L = dgram.length;
            be.openBatch(two, 2, Int32Array.of(0, L), Int32Array.of(L, L), Int32Array.of(h, h), ok, Uint8Array.of(1, 0));
            assert.deepEqual([...ok], [1, n === 0 ? 1 : 0], 'verified as a MAC; as a ciphertext only when empty (then both are the same tag)');
            assert.deepEqual(two.subarray(0, L), dgram, 'verify writes nothing');
          }
          be.destroyKey(h);
        }
      });

      it('macOnly: a mixed batch seals and opens each packet in its own mode; every flipped bit of a MAC datagram fails', () => {
        const be = nativeCryptoBackend();
        const key = randomBytes(32);
        const h = be.createKey(id, key);
        const pkts = [0, 1, 2, 3].map(() => Buffer.concat([header(), randomBytes(64)]));
        const plain = pkts.map((p) => Buffer.from(p));
        const { buf, offs, lens } = layout(pkts);
        const modes = Uint8Array.of(1, 0, 0, 1);
        be.sealBatch(buf, 4, offs, lens, new Int32Array(4).fill(h), modes);
        for (let i = 0; i < 4; i++) {
          const d = buf.subarray(offs[i], offs[i] + HEADER_LEN + 64 + TAG_LEN);
          const want = modes[i] ? jsMac(name, key, plain[i].subarray(0, HEADER_LEN), plain[i].subarray(HEADER_LEN)) : jsSeal(name, key, plain[i].subarray(0, HEADER_LEN), plain[i].subarray(HEADER_LEN));
          assert.deepEqual(Buffer.from(d), want, `packet ${i} in its mode`);
        }
        const dgram = jsMac(name, key, header(), randomBytes(48));
        const { buf: all, offs: at, lens: ls, count } = flippedCopies(dgram);
        const ok = new Uint8Array(count).fill(7);
        be.openBatch(all, count, at, ls, new Int32Array(count).fill(h), ok, new Uint8Array(count).fill(1));
        for (let pos = 0; pos < dgram.length; pos++) assert.equal(ok[pos], 0, `byte ${pos} flipped must fail`);
        assert.equal(ok[dgram.length], 1, 'the intact copy passes');
        be.destroyKey(h);
      });

      it('detects tampering of every header, payload and tag byte', () => {
        const be = nativeCryptoBackend();
        const key = randomBytes(32);
        const h = be.createKey(id, key);
        const dgram = jsSeal(name, key, header(), randomBytes(48));
        const { buf, offs, lens, count } = flippedCopies(dgram);
        const ok = new Uint8Array(count).fill(7);
        be.openBatch(buf, count, offs, lens, new Int32Array(count).fill(h), ok);
        for (let pos = 0; pos < dgram.length; pos++) assert.equal(ok[pos], 0, `byte ${pos} flipped must fail`);
        assert.equal(ok[dgram.length], 1, 'the intact copy passes');
        be.destroyKey(h);
      });
    });
  }

  it('rejects unknown, foreign, destroyed and zero handles with ok=0', () => {
    const be = nativeCryptoBackend();
    const key = randomBytes(32);
    const h = be.createKey(CipherId.AES_256_GCM, key);
    const other = be.createKey(CipherId.AES_256_GCM, randomBytes(32));
    const dgram = jsSeal('aes-256-gcm', key, header(), randomBytes(100));
    const tryOpen = (handle: number): number => {
      const buf = Buffer.from(dgram);
      const ok = new Uint8Array(1).fill(9);
      be.openBatch(buf, 1, Int32Array.of(0), Int32Array.of(buf.length), Int32Array.of(handle), ok);
      return ok[0];
    };
    assert.equal(tryOpen(h), 1);
    assert.equal(tryOpen(other), 0, 'another key');
    for (const bad of [0, -1, 1, 0x7fffffff, h + 1, h ^ (1 << 20)]) assert.equal(tryOpen(bad), 0, `handle ${bad}`);
    be.destroyKey(h);
    assert.equal(tryOpen(h), 0, 'destroyed handle');
    be.destroyKey(h); // idempotent
    // Churn so that the freed slot gets reused; the stale handle must stay dead.
    const churn: number[] = [];
    for (let i = 0; i < 200; i++) churn.push(be.createKey(CipherId.AES_256_GCM, key));
    for (const c of churn) assert.notEqual(c, h, 'a new key never gets the old handle');
    assert.equal(tryOpen(h), 0, 'stale handle after slot reuse');
    for (const c of churn) be.destroyKey(c);
    be.destroyKey(other);
  });

  it('frees every key it creates', () => {
    const be = nativeCryptoBackend();
    const before = nativeLiveKeys();
    const hs = Array.from({ length: 50 }, (_, i) => be.createKey((i % 2) as CipherIdValue, randomBytes(32)));
    assert.equal(nativeLiveKeys(), before + 50);
    for (const h of hs) be.destroyKey(h);
    assert.equal(nativeLiveKeys(), before);
  });

  it('never issues a handle twice: a slot whose generation is used up is retired, not wrapped (140 000 keys through 66 slots)', () => {
    const be = nativeCryptoBackend();
    const key = randomBytes(32);
    const seen = new Set<number>();
    // Destroy each key after the next is made: about 66 slots take turns (a freed
    // slot is reused once 64 are waiting), each through all 2047 generations.
    const alive: number[] = [];
    for (let i = 0; i < 140_000; i++) {
      const h = be.createKey(CipherId.AES_256_GCM, key);
      assert.ok(!seen.has(h), `handle ${h} issued twice (key ${i})`);
      seen.add(h);
      alive.push(h);
      if (alive.length > 1) be.destroyKey(alive.shift()!);
    }
    for (const h of alive) be.destroyKey(h);
  });

  it('throws ERR_DP_KEY for a bad key length or cipher', () => {
    const be = nativeCryptoBackend();
    assert.equal(codeOf(() => be.createKey(CipherId.AES_256_GCM, randomBytes(16))), 'ERR_DP_KEY');
    assert.equal(codeOf(() => be.createKey(CipherId.CHACHA20_POLY1305, randomBytes(33))), 'ERR_DP_KEY');
    assert.equal(codeOf(() => be.createKey(7 as CipherIdValue, randomBytes(32))), 'ERR_DP_KEY');
  });

  it('seal with a dead handle throws ERR_DP_KEY and writes nothing', () => {
    const be = nativeCryptoBackend();
    const h = be.createKey(CipherId.AES_256_GCM, randomBytes(32));
    const { buf, offs, lens } = layout([Buffer.concat([header(), randomBytes(100)]), Buffer.concat([header(), randomBytes(100)])]);
    const before = Buffer.from(buf);
    be.destroyKey(h);
    const live = be.createKey(CipherId.AES_256_GCM, randomBytes(32));
    assert.equal(codeOf(() => be.sealBatch(buf, 2, offs, lens, Int32Array.of(live, h))), 'ERR_DP_KEY');
    assert.deepEqual(buf, before, 'the valid first packet was not sealed either');
    be.destroyKey(live);
  });

  it('out-of-range indices throw ERR_DP_NATIVE before touching the buffer', () => {
    const be = nativeCryptoBackend();
    const h = be.createKey(CipherId.CHACHA20_POLY1305, randomBytes(32));
    const backing = new ArrayBuffer(400);
    const guard = new Uint8Array(backing);
    guard.fill(0xaa);
    const buf = Buffer.from(backing, 100, 200); // a view: bytes outside it must stay 0xaa
    const H = Int32Array.of(h, h);
    const seal = (offs: number[], lens: number[], count = offs.length, handles = H) =>
      codeOf(() => be.sealBatch(buf, count, Int32Array.from(offs), Int32Array.from(lens), handles));
    const open = (offs: number[], lens: number[], count = offs.length) =>
      codeOf(() => be.openBatch(buf, count, Int32Array.from(offs), Int32Array.from(lens), H, new Uint8Array(2)));
    assert.equal(seal([0], [200 - HEADER_LEN - TAG_LEN + 1]), 'ERR_DP_NATIVE', 'tag past the end');
    assert.equal(seal([0, 165], [0, 0]), 'ERR_DP_NATIVE', 'second header past the end');
    assert.equal(seal([-1], [10]), 'ERR_DP_NATIVE', 'negative offset');
    assert.equal(seal([0], [-5]), 'ERR_DP_NATIVE', 'negative length');
    assert.equal(seal([0x7fffffff], [0x7fffffff]), 'ERR_DP_NATIVE', 'overflowing sum');
    assert.equal(seal([0], [10], 3), 'ERR_DP_NATIVE', 'count beyond the arrays');
    assert.equal(seal([0], [10], -1), 'ERR_DP_NATIVE', 'negative count');
    assert.equal(seal([0], [10], 1, Int32Array.of()), 'ERR_DP_NATIVE', 'count beyond handles');
    assert.equal(open([0], [201]), 'ERR_DP_NATIVE', 'datagram past the end');
    assert.equal(open([190], [11]), 'ERR_DP_NATIVE', 'datagram past the end at an offset');
    assert.equal(open([0], [40], 5), 'ERR_DP_NATIVE', 'count beyond the arrays');
    assert.equal(
      codeOf(() => be.openBatch(buf, 1, Int32Array.of(0), Int32Array.of(40), H, new Uint8Array(0))),
      'ERR_DP_NATIVE',
      'count beyond ok',
    );
    assert.equal(
      codeOf(() => be.sealBatch(buf, 1, new Float64Array(1) as unknown as Int32Array, Int32Array.of(1), H)),
      'ERR_DP_NATIVE',
      'wrong array type',
    );
    assert.equal(codeOf(() => be.sealBatch('x' as unknown as Buffer, 0, Int32Array.of(), Int32Array.of(), H)), 'ERR_DP_NATIVE');
    assert.ok(guard.subarray(0, 100).every((b) => b === 0xaa) && guard.subarray(300).every((b) => b === 0xaa), 'no write outside the view');
    assert.ok(guard.subarray(100, 300).every((b) => b === 0xaa), 'rejected batches wrote nothing');
    // A valid seal exactly filling the view works and stays inside it.
    be.sealBatch(buf, 1, Int32Array.of(0), Int32Array.of(200 - HEADER_LEN - TAG_LEN), H);
    assert.ok(guard.subarray(0, 100).every((b) => b === 0xaa) && guard.subarray(300).every((b) => b === 0xaa));
    // Too short to hold header + tag: not an error, just not authentic.
    const ok = new Uint8Array(2).fill(5);
    be.openBatch(buf, 2, Int32Array.of(0, 10), Int32Array.of(35, 0), H, ok);
    assert.deepEqual([...ok], [0, 0]);
    be.destroyKey(h);
  });

  it('handles batches of 1 and 64 with mixed keys and ciphers', () => {
    const be = nativeCryptoBackend();
    const keys = [0, 1, 2, 3].map((i) => ({ id: CIPHERS[i % 2][0], name: CIPHERS[i % 2][1], key: randomBytes(32) }));
    const handles = keys.map((k) => be.createKey(k.id, k.key));
    for (const count of [1, 64]) {
      const which = Array.from({ length: count }, () => randomInt(keys.length));
      const pts = which.map(() => randomBytes(randomInt(0, 1401)));
      const hdrs = which.map(() => header());
      const { buf, offs, lens } = layout(pts.map((p, i) => Buffer.concat([hdrs[i], p])));
      const hs = Int32Array.from(which, (k) => handles[k]);
      be.sealBatch(buf, count, offs, lens, hs);
      for (let i = 0; i < count; i++) {
        const k = keys[which[i]];
        const dgram = buf.subarray(offs[i], offs[i] + HEADER_LEN + lens[i] + TAG_LEN);
        assert.deepEqual(dgram, jsSeal(k.name, k.key, hdrs[i], pts[i]), `packet ${i} matches JS`);
      }
      // Open with the right handles except every 5th, which gets a different key.
      const dlens = Int32Array.from(lens, (l) => l + HEADER_LEN + TAG_LEN);
      const openHs = Int32Array.from(which, (k, i) => handles[i % 5 === 4 ? (k + 1) % keys.length : k]);
      const ok = new Uint8Array(count);
      be.openBatch(buf, count, offs, dlens, openHs, ok);
      for (let i = 0; i < count; i++) {
        assert.equal(ok[i], i % 5 === 4 ? 0 : 1, `packet ${i}`);
        if (ok[i] === 1) assert.deepEqual(buf.subarray(offs[i] + HEADER_LEN, offs[i] + HEADER_LEN + lens[i]), pts[i]);
      }
    }
    for (const h of handles) be.destroyKey(h);
  });

  it('random indices only ever succeed or throw a stable code, and never write outside the buffer', () => {
    const be = nativeCryptoBackend();
    const h = be.createKey(CipherId.AES_256_GCM, randomBytes(32));
    const backing = new Uint8Array(1024).fill(0x5c);
    const buf = Buffer.from(backing.buffer, 256, 512);
    const rnd = (): number => {
      const r = randomInt(10);
      if (r === 0) return -randomInt(1, 1 << 30);
      if (r === 1) return randomInt(1 << 30, 2 ** 31 - 1);
      return randomInt(0, 600);
    };
    const codes = new Set<string | undefined>();
    for (let round = 0; round < 2000; round++) {
      const n = randomInt(0, 6);
      const offs = Int32Array.from({ length: n }, rnd);
      const lens = Int32Array.from({ length: n }, rnd);
      const hs = Int32Array.from({ length: n }, () => (randomInt(4) === 0 ? randomInt(-5, 5) : h));
      const count = randomInt(0, 8);
      const ok = new Uint8Array(randomInt(0, 8));
      codes.add(codeOf(() => (round % 2 ? be.sealBatch(buf, count, offs, lens, hs) : be.openBatch(buf, count, offs, lens, hs, ok))));
    }
    for (const c of codes) assert.ok(c === undefined || c === 'ERR_DP_NATIVE' || c === 'ERR_DP_KEY', `code ${c}`);
    assert.ok(codes.has('ERR_DP_NATIVE') && codes.has(undefined), 'both outcomes were exercised');
    assert.ok(backing.subarray(0, 256).every((b) => b === 0x5c) && backing.subarray(768).every((b) => b === 0x5c), 'no write outside');
    be.destroyKey(h);
  });

  it('macOnly must be a Uint8Array covering the batch (ERR_DP_NATIVE before any byte is written)', () => {
    const be = nativeCryptoBackend();
    const h = be.createKey(CipherId.AES_256_GCM, randomBytes(32));
    const buf = Buffer.alloc(200, 0x5c);
    const H = Int32Array.of(h, h);
    assert.equal(codeOf(() => be.sealBatch(buf, 2, Int32Array.of(0, 100), Int32Array.of(10, 10), H, new Uint8Array(1))), 'ERR_DP_NATIVE');
    assert.equal(codeOf(() => be.sealBatch(buf, 1, Int32Array.of(0), Int32Array.of(10), H, [1] as unknown as Uint8Array)), 'ERR_DP_NATIVE');
    assert.equal(codeOf(() => be.openBatch(buf, 2, Int32Array.of(0, 100), Int32Array.of(46, 46), H, new Uint8Array(2), new Uint8Array(1))), 'ERR_DP_NATIVE');
    assert.ok(buf.every((b) => b === 0x5c), 'nothing written');
    be.destroyKey(h);
  });

  it('an empty batch is a no-op', () => {
    const be = nativeCryptoBackend();
    const buf = Buffer.alloc(0);
    be.sealBatch(buf, 0, new Int32Array(0), new Int32Array(0), new Int32Array(0));
    be.openBatch(buf, 0, new Int32Array(0), new Int32Array(0), new Int32Array(0), new Uint8Array(0));
    assert.equal(buf.length, 0);
  });
});
