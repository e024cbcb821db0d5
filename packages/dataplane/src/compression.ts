/**
 * LZ4 block compression of inner packets (the `lz4` package's native
 * block functions), bounded on both sides:
 *
 * 1. compress only when the result is strictly smaller than the packet
 *    (otherwise the packet goes out uncompressed and the flag stays clear);
 * 2. decompress into a buffer of exactly `maxPacket` (the inner MTU) bytes,
 *    so a block that would expand beyond the MTU fails instead of growing:
 *    no decompression bomb can make us allocate or write more.
 *
 * Buffer ownership: `compressInPlace` reads and rewrites the caller's bytes
 * during the call only; `decompress` writes only into the `out` view the
 * caller passes and keeps no reference. Internal scratch buffers are
 * preallocated once per codec.
 */
import { createRequire } from 'node:module';

/** The block functions of the `lz4` package's native addon (what its `encodeBlock` / `decodeBlock` are). */
interface Lz4Bindings {
  compress(input: Buffer, output: Buffer, sIdx: number, eIdx: number): number;
  compressHCLimited(input: Buffer, output: Buffer, maxOut: number, level: number): number;
  uncompress(input: Buffer, output: Buffer, sIdx: number, eIdx: number): number;
}

// Only the addon: the package's main module also loads its stream classes,
// xxhash and cuint (13 more files at every daemon start), which we never use.
const require = createRequire(import.meta.url);
const lz4 = require('lz4/build/Release/lz4.node') as Lz4Bindings;

/** Compression algorithms per pair (specification of the session parameters). */
export const CompressionAlgo = {
  NONE: 0,
  LZ4: 1,
} as const;
/** Names of {@link CompressionAlgo} values (`installSession` takes the names). */
export const compressionAlgoName = ['none', 'lz4'] as const;

/** Packets shorter than this are never worth compressing (implementation). */
export const COMPRESS_MIN_LEN = 64;
/** Highest LZ4-HC level; level 0 means the fast LZ4 compressor. */
export const LZ4_MAX_LEVEL = 12;
/** Bytes of the scratch used only to tell a bomb from garbage (failure path). */
const BOMB_PROBE_LEN = 65536;

/** Result codes of {@link Lz4Codec.decompress} below zero. */
export const DecompressError = {
  /** Not a valid LZ4 block. */
  MALFORMED: -1,
  /** A valid block whose output exceeds the bound. */
  BOMB: -2,
} as const;

/**
 * A per-data-plane LZ4 codec with preallocated scratch buffers. Not
 * re-entrant (one pipeline at a time, which is how the event loop runs).
 */
export class Lz4Codec {
  /** Largest packet compressed or produced, bytes. */
  readonly maxPacket: number;
  private readonly input: Buffer;
  private readonly output: Buffer;
  /** `inputViews[n]` = first n bytes of `input` (LZ4 takes whole buffers); built lazily. */
  private readonly inputViews: Array<Buffer | undefined>;
  private probe: Buffer | null = null;

  /** `maxPacket`: the inner MTU; packets and decompressed outputs never exceed it. */
  constructor(maxPacket: number) {
    this.maxPacket = maxPacket;
    this.input = Buffer.alloc(maxPacket);
    this.output = Buffer.alloc(maxPacket + 64);
    this.inputViews = new Array<Buffer | undefined>(maxPacket + 1);
  }

  /**
   * Compresses `buf[off .. off + len]` and, when the block is strictly
   * shorter, overwrites those bytes with it and returns its length;
   * otherwise returns 0 and leaves `buf` untouched. `level` 0 = LZ4 fast,
   * 1..12 = LZ4-HC. Allocates nothing after warm-up.
   */
  compressInPlace(buf: Buffer, off: number, len: number, level: number): number {
    if (len < COMPRESS_MIN_LEN || len > this.maxPacket) return 0;
    buf.copy(this.input, 0, off, off + len);
    let view = this.inputViews[len];
    if (view === undefined) {
      view = this.input.subarray(0, len);
      this.inputViews[len] = view;
    }
    const n =
      level <= 0
        ? lz4.compress(view, this.output, 0, len - 1)
        : lz4.compressHCLimited(view, this.output, len - 1, level > LZ4_MAX_LEVEL ? LZ4_MAX_LEVEL : level);
    if (!(n > 0 && n < len)) return 0;
    this.output.copy(buf, off, 0, n);
    return n;
  }

  /**
   * Decodes the LZ4 block `src[off .. off + len]` into `out` (whose length
   * is the bound, at most `maxPacket`). Returns the decoded length, or a
   * {@link DecompressError} code. Allocates nothing except once, lazily,
   * a probe buffer used on the failure path to classify bombs.
   */
  decompress(src: Buffer, off: number, len: number, out: Buffer): number {
    const n = lz4.uncompress(src, out, off, off + len);
    if (n >= 0) return n;
    if (this.probe === null) this.probe = Buffer.alloc(BOMB_PROBE_LEN);
    const m = lz4.uncompress(src, this.probe, off, off + len);
    return m > out.length ? DecompressError.BOMB : DecompressError.MALFORMED;
  }
}
