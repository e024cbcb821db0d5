import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { describe, it } from 'node:test';
import { DecompressError, Lz4Codec } from '../src/compression.js';
import { compressible } from './pipeline-helpers.js';

const lz4 = createRequire(import.meta.url)('lz4') as {
  encodeBlock(i: Buffer, o: Buffer): number;
  encodeBound(n: number): number;
};

describe('LZ4 compression', () => {
  const codec = new Lz4Codec(1420);

  for (const level of [0, 9]) {
    it(`round-trips compressible packets in place (level ${level})`, () => {
      const pkt = compressible(1400);
      const buf = Buffer.alloc(2000);
      pkt.copy(buf, 100);
      const n = codec.compressInPlace(buf, 100, pkt.length, level);
      assert.ok(n > 0 && n < pkt.length / 2, `compressed to ${n}`);
      const out = Buffer.alloc(1420);
      assert.equal(codec.decompress(buf, 100, n, out), pkt.length);
      assert.deepEqual(out.subarray(0, pkt.length), pkt);
    });
  }

  it('leaves incompressible and tiny packets untouched', () => {
    const rnd = randomBytes(1400);
    const buf = Buffer.from(rnd);
    assert.equal(codec.compressInPlace(buf, 0, buf.length, 0), 0);
    assert.deepEqual(buf, rnd);
    const tiny = compressible(40);
    const copy = Buffer.from(tiny);
    assert.equal(codec.compressInPlace(tiny, 0, tiny.length, 0), 0);
    assert.deepEqual(tiny, copy);
  });

  it('never produces more than the MTU: a bomb is reported, not expanded', () => {
    const huge = Buffer.alloc(60000); // zeros compress ~250:1
    const block = Buffer.alloc(lz4.encodeBound(huge.length));
    const n = lz4.encodeBlock(huge, block);
    assert.ok(n > 0 && n < 1420, `bomb block is ${n} bytes`);
    const out = Buffer.alloc(1420);
    const guard = Buffer.alloc(64, 0xaa);
    assert.equal(codec.decompress(block, 0, n, out), DecompressError.BOMB);
    assert.deepEqual(guard, Buffer.alloc(64, 0xaa));
    // exactly the MTU still fits
    const exact = Buffer.alloc(1420, 7);
    const b2 = Buffer.alloc(lz4.encodeBound(exact.length));
    const n2 = lz4.encodeBlock(exact, b2);
    assert.equal(codec.decompress(b2, 0, n2, out), 1420);
    // one byte more does not
    const over = Buffer.alloc(1421, 7);
    const b3 = Buffer.alloc(lz4.encodeBound(over.length));
    const n3 = lz4.encodeBlock(over, b3);
    assert.equal(codec.decompress(b3, 0, n3, out), DecompressError.BOMB);
  });

  it('reports garbage as malformed and never throws on random input', () => {
    const out = Buffer.alloc(1420);
    let malformed = 0;
    for (let i = 0; i < 2000; i++) {
      const g = randomBytes(1 + (i % 300));
      const r = codec.decompress(g, 0, g.length, out);
      assert.ok(r >= 0 || r === DecompressError.MALFORMED || r === DecompressError.BOMB);
      if (r === DecompressError.MALFORMED) malformed++;
    }
    assert.ok(malformed > 1000, `${malformed} of 2000 random blocks malformed`);
  });
});
