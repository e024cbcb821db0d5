/**
 * Algorithm names of the original ClueVPN (C, 2009) in `cryptalgos` and
 * `compalgos`, read as their modern counterparts so that a migrated config
 * starts without edits.
 *
 * 1. split the list into `algo:number:preference` items
 * 2. an original name is rewritten, keeping its preference, and one warning
 *    per rewritten item is reported through `warn`
 * 3. the rewritten list goes to the negotiation's own strict parser
 *
 * The original knew exactly these names (its `configfile.c`):
 *
 *   original            becomes                 why
 *   aescbc:BITS:PREF    aes256gcm:256:PREF      AES-CBC with an unkeyed SHA-1 "hash" had no
 *                                               integrity (NOTES fault 5); AES-256-GCM is the
 *                                               AEAD of the same cipher. BITS must be 128, 192
 *                                               or 256 (what AES takes)
 *   zlib:LEVEL:PREF     lz4:1:PREF              zlib is not implemented; LZ4 level 1 is the
 *                                               level of the default list. LEVEL must be 0–9
 *   none:0:PREF         none:0:PREF             unchanged
 *
 * Anything else (a bad key size or level, a name neither version knows,
 * an original name whose counterpart the list already names) is refused:
 * the negotiation parser's error or a plain `Error`, which the config
 * turns into `ERR_CONFIG_BAD_VALUE` with file, line and key.
 */
import { parseCompAlgos, parseCryptAlgos, type AlgoPreference, type CipherAlgo, type CompressionAlgo } from '@cluevpn/negotiation';

/** One original name and how it is read today. */
interface LegacyAlgo {
  /** The modern name it becomes. */
  modern: string;
  /** Human name of the modern algorithm, for the warning. */
  label: string;
  /** The numbers the original accepted for this name. */
  params: readonly number[];
  /** The modern item's number (key bits or level). */
  param: number;
}

/** Specification: the original's cipher names. */
const LEGACY_CIPHERS: Readonly<Record<string, LegacyAlgo>> = {
  aescbc: { modern: 'aes256gcm', label: 'AES-256-GCM', params: [128, 192, 256], param: 256 },
};
/** Specification: the original's compression names (`none` is the same today). */
const LEGACY_COMPRESSORS: Readonly<Record<string, LegacyAlgo>> = {
  zlib: { modern: 'lz4', label: 'LZ4', params: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], param: 1 },
};

/** Rewrites the original's items; the warnings are returned, to be given only once the list parsed. */
function mapList(list: string, what: 'cryptalgos' | 'compalgos', table: Readonly<Record<string, LegacyAlgo>>): { list: string; warnings: string[] } {
  const items = list.trim().split(/\s+/).filter((s) => s.length > 0);
  const names = new Set(items.map((item) => item.split(':')[0]));
  const pending: string[] = [];
  const out = items.map((item) => {
    const m = /^([a-z0-9]+):(\d{1,5}):(\d{1,5})$/.exec(item);
    const legacy = m === null ? undefined : table[m[1]!];
    if (m === null || legacy === undefined) return item;
    const param = Number(m[2]);
    if (!legacy.params.includes(param)) {
      throw new Error(`${what} item "${item}": the original ClueVPN's ${m[1]} takes ${legacy.params.length > 3 ? `${legacy.params[0]}–${legacy.params.at(-1)}` : legacy.params.join(', ')}, so it cannot be read as ${legacy.modern}`);
    }
    if (names.has(legacy.modern)) {
      throw new Error(`${what} item "${item}": ${m[1]} would be read as ${legacy.modern}, which the list already names; remove "${item}"`);
    }
    const modern = `${legacy.modern}:${legacy.param}:${m[3]}`;
    pending.push(`${what} item "${item}" is the original ClueVPN's ${m[1]}: read as "${modern}" (${legacy.label}); write that to silence this warning`);
    return modern;
  });
  return { list: out.join(' '), warnings: pending };
}

/** Parses `cryptalgos`, reading the original's `aescbc` as `aes256gcm` (one `warn` per item rewritten). */
export function parseCryptAlgosCompat(list: string, warn: (message: string) => void): AlgoPreference<CipherAlgo>[] {
  const m = mapList(list, 'cryptalgos', LEGACY_CIPHERS);
  const parsed = parseCryptAlgos(m.list);
  m.warnings.forEach(warn);
  return parsed;
}

/** Parses `compalgos`, reading the original's `zlib` as `lz4` (one `warn` per item rewritten). */
export function parseCompAlgosCompat(list: string, warn: (message: string) => void): AlgoPreference<CompressionAlgo>[] {
  const m = mapList(list, 'compalgos', LEGACY_COMPRESSORS);
  const parsed = parseCompAlgos(m.list);
  m.warnings.forEach(warn);
  return parsed;
}
