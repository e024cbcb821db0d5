/**
 * `cryptalgos` / `compalgos` lists and the choice between two of them.
 *
 * List format (ClueVPN's): space-separated `algo:bits-or-level:preference`
 * items, e.g. `aes256gcm:256:20 chacha20poly1305:256:10` and
 * `none:0:5 lz4:1:2`. Preferences are integers 0–65535.
 *
 * Supported names (anything else is a configuration error naming the item):
 *   cipher       bits   data-plane name
 *   aes256gcm    256    aes-256-gcm
 *   chacha20poly1305 256 chacha20-poly1305
 *   compression  level
 *   none         0
 *   lz4          0–12 (0 = library default)
 *
 * Choice: the algorithm both lists contain with the highest summed
 * preference; ties go to the earlier entry of `CIPHER_ORDER` /
 * `COMPRESSION_ORDER` (the same on every node); the compression level is
 * the larger of the two levels.
 */
import { AlgoConfigError, NegotiationError } from './errors.js';

/** Specification: cipher names on the wire and in configuration, in tie-break order. */
export const CIPHER_ORDER = ['aes256gcm', 'chacha20poly1305'] as const;
/** Specification: compression names, in tie-break order. */
export const COMPRESSION_ORDER = ['lz4', 'none'] as const;

/** A configured cipher name. */
export type CipherAlgo = (typeof CIPHER_ORDER)[number];
/** A configured compression name. */
export type CompressionAlgo = (typeof COMPRESSION_ORDER)[number];
/** The cipher names the data plane takes (`Dataplane.installSession`). */
export type DataplaneCipher = 'aes-256-gcm' | 'chacha20-poly1305';

/** Maps configured cipher names to the data plane's names. */
export const DATAPLANE_CIPHER: Readonly<Record<CipherAlgo, DataplaneCipher>> = Object.freeze({
  aes256gcm: 'aes-256-gcm',
  chacha20poly1305: 'chacha20-poly1305',
});

/** One list item: algorithm, its bits (ciphers) or level (compression), and preference. */
export interface AlgoPreference<A extends string = string> {
  algo: A;
  param: number;
  pref: number;
}

const REJECTED_HINTS: Record<string, string> = {
  aescbc: 'AES-CBC with an unkeyed hash is not supported (it was ClueVPN fault 5); use aes256gcm or chacha20poly1305',
  zlib: 'zlib is not supported; use lz4 or none',
};

function parseItems(list: string, what: string): Array<{ item: string; algo: string; param: number; pref: number }> {
  const items = list.trim().split(/\s+/).filter((s) => s.length > 0);
  if (items.length === 0) throw new AlgoConfigError('', `${what} is empty`);
  const seen = new Set<string>();
  return items.map((item) => {
    const m = /^([a-z0-9]+):(\d{1,5}):(\d{1,5})$/.exec(item);
    if (!m) throw new AlgoConfigError(item, `${what} item "${item}" is not algo:number:preference`);
    const algo = m[1]!;
    const param = Number(m[2]);
    const pref = Number(m[3]);
    if (pref > 65535) throw new AlgoConfigError(item, `${what} item "${item}": preference must be 0-65535`);
    if (seen.has(algo)) throw new AlgoConfigError(item, `${what} item "${item}": ${algo} is listed twice`);
    seen.add(algo);
    return { item, algo, param, pref };
  });
}

/** Parses a `cryptalgos` list. Throws `AlgoConfigError` (`ERR_ALGO_CONFIG`) naming the first bad item. */
export function parseCryptAlgos(list: string): AlgoPreference<CipherAlgo>[] {
  return parseItems(list, 'cryptalgos').map(({ item, algo, param, pref }) => {
    if (!(CIPHER_ORDER as readonly string[]).includes(algo)) {
      throw new AlgoConfigError(item, `cryptalgos item "${item}": ${REJECTED_HINTS[algo] ?? `unknown cipher ${algo} (known: ${CIPHER_ORDER.join(', ')})`}`);
    }
    if (param !== 256) throw new AlgoConfigError(item, `cryptalgos item "${item}": ${algo} takes 256 key bits`);
    return { algo: algo as CipherAlgo, param, pref };
  });
}

/** Parses a `compalgos` list. Throws `AlgoConfigError` (`ERR_ALGO_CONFIG`) naming the first bad item. */
export function parseCompAlgos(list: string): AlgoPreference<CompressionAlgo>[] {
  return parseItems(list, 'compalgos').map(({ item, algo, param, pref }) => {
    if (!(COMPRESSION_ORDER as readonly string[]).includes(algo)) {
      throw new AlgoConfigError(item, `compalgos item "${item}": ${REJECTED_HINTS[algo] ?? `unknown compression ${algo} (known: ${COMPRESSION_ORDER.join(', ')})`}`);
    }
    if (algo === 'none' && param !== 0) throw new AlgoConfigError(item, `compalgos item "${item}": none takes level 0`);
    if (algo === 'lz4' && param > 12) throw new AlgoConfigError(item, `compalgos item "${item}": lz4 level must be 0-12`);
    return { algo: algo as CompressionAlgo, param, pref };
  });
}

/** Formats a list back into configuration syntax (for logs and messages). */
export function formatAlgos(list: readonly AlgoPreference[]): string {
  return list.map((a) => `${a.algo}:${a.param}:${a.pref}`).join(' ');
}

/** The pair's agreed parameters. */
export interface AlgoChoice {
  cipher: CipherAlgo;
  compression: { algo: CompressionAlgo; level: number };
}

function pick<A extends string>(order: readonly A[], mine: readonly AlgoPreference<A>[], theirs: readonly AlgoPreference<A>[], what: string): { algo: A; a: AlgoPreference<A>; b: AlgoPreference<A> } {
  let best: { algo: A; score: number; rank: number; a: AlgoPreference<A>; b: AlgoPreference<A> } | undefined;
  for (const a of mine) {
    const b = theirs.find((t) => t.algo === a.algo);
    if (!b) continue;
    const score = a.pref + b.pref;
    const rank = order.indexOf(a.algo);
    if (!best || score > best.score || (score === best.score && rank < best.rank)) best = { algo: a.algo, score, rank, a, b };
  }
  if (!best) throw new NegotiationError('ERR_NO_COMMON_ALGO', `no ${what} in common`);
  return best;
}

/**
 * Chooses cipher and compression for a pair. Symmetric: the result does
 * not depend on which list is `mine`. Throws `ERR_NO_COMMON_ALGO`.
 */
export function chooseAlgorithms(
  mine: { crypt: readonly AlgoPreference<CipherAlgo>[]; comp: readonly AlgoPreference<CompressionAlgo>[] },
  theirs: { crypt: readonly AlgoPreference<CipherAlgo>[]; comp: readonly AlgoPreference<CompressionAlgo>[] },
): AlgoChoice {
  const c = pick(CIPHER_ORDER, mine.crypt, theirs.crypt, 'cipher');
  const z = pick(COMPRESSION_ORDER, mine.comp, theirs.comp, 'compression');
  return { cipher: c.algo, compression: { algo: z.algo, level: Math.max(z.a.param, z.b.param) } };
}

/**
 * Reads a peer's list from the wire leniently: unknown algorithm names are
 * skipped (a newer peer may know more), malformed items are a protocol
 * error (`ERR_NEGOTIATION_PROTOCOL`).
 */
export function readWireAlgos<A extends string>(value: unknown, known: readonly A[], maxParam: number): AlgoPreference<A>[] {
  if (!Array.isArray(value) || value.length === 0 || value.length > 32) throw new NegotiationError('ERR_NEGOTIATION_PROTOCOL', 'algorithm list is not a non-empty array');
  const out: AlgoPreference<A>[] = [];
  for (const v of value) {
    const o = v as Record<string, unknown>;
    if (typeof o !== 'object' || o === null || typeof o.algo !== 'string' || !Number.isInteger(o.param) || !Number.isInteger(o.pref)) {
      throw new NegotiationError('ERR_NEGOTIATION_PROTOCOL', 'malformed algorithm item');
    }
    const param = o.param as number;
    const pref = o.pref as number;
    if (param < 0 || param > maxParam || pref < 0 || pref > 65535) throw new NegotiationError('ERR_NEGOTIATION_PROTOCOL', 'algorithm item out of range');
    if (!(known as readonly string[]).includes(o.algo) || out.some((x) => x.algo === o.algo)) continue;
    out.push({ algo: o.algo as A, param, pref });
  }
  return out;
}
