/**
 * `CLUEVPN_DEBUG`: the one environment variable that changes which code
 * runs, for debugging, tests and measurements only. Everything an operator
 * may need is a configuration key of the daemon instead (`express`,
 * `udpoffload`, `tunoffload`: examples/cluevpn.conf); the C code reads no
 * environment at all (it gets flags from its setup calls).
 *
 * The value is a comma-separated list of words (spaces around them are
 * ignored), e.g. `CLUEVPN_DEBUG=no-gro,sanitize-dataplane`:
 *
 * | word | effect |
 * |---|---|
 * | `no-gso` | cluevpnd's UDP socket sends without `UDP_SEGMENT` (GSO), even with `udpoffload=yes` |
 * | `no-gro` | cluevpnd's UDP socket receives without `UDP_GRO`, even with `udpoffload=yes` |
 * | `no-tun-coalesce` | cluevpnd's TUN splits coalesced packets on read only, never coalesces writes |
 * | `modules` | `cluevpnd` loads its modules instead of the bundle, without a warning |
 * | `sanitize-tun` | load the ASan/UBSan Debug build of the TUN addon (`scripts/build-native --debug-sanitize tun`) |
 * | `sanitize-dataplane` | the same for the data plane's addon |
 * | `sanitize-daemon` | the same for the daemon's privilege addon |
 * | `stack` | the `cluevpn`/`bnl` commands print stack traces (they do whenever the variable is set) |
 *
 * Parsed here and nowhere else; this package is the one every other
 * package that loads native code already depends on. An unknown word is an
 * error (`ERR_TUN_CONFIG`), never ignored.
 */
import { TunError, TunErrorCode } from './errors.js';

/** The words of `CLUEVPN_DEBUG` (see the module comment for each). */
export const DEBUG_WORDS = ['no-gso', 'no-gro', 'no-tun-coalesce', 'modules', 'sanitize-tun', 'sanitize-dataplane', 'sanitize-daemon', 'stack'] as const;
/** One word of `CLUEVPN_DEBUG`. */
export type DebugWord = (typeof DEBUG_WORDS)[number];

/** Parses a `CLUEVPN_DEBUG` value (undefined or empty: no word). Throws `ERR_TUN_CONFIG` naming an unknown word. */
export function parseDebug(value: string | undefined): ReadonlySet<DebugWord> {
  const out = new Set<DebugWord>();
  if (value === undefined) return out;
  for (const raw of value.split(',')) {
    const w = raw.trim();
    if (w === '') continue;
    if (!(DEBUG_WORDS as readonly string[]).includes(w)) {
      throw new TunError(TunErrorCode.CONFIG, `CLUEVPN_DEBUG: unknown word '${w}' (known: ${DEBUG_WORDS.join(', ')})`);
    }
    out.add(w as DebugWord);
  }
  return out;
}

let cached: { value: string | undefined; words: ReadonlySet<DebugWord> } | undefined;

/** The words of this process's `CLUEVPN_DEBUG` (re-parsed when the variable changes). Throws like {@link parseDebug}. */
export function debugWords(): ReadonlySet<DebugWord> {
  const value = process.env.CLUEVPN_DEBUG;
  if (cached === undefined || cached.value !== value) cached = { value, words: parseDebug(value) };
  return cached.words;
}

/** Whether `CLUEVPN_DEBUG` holds `word`. Throws like {@link parseDebug}. */
export function debugHas(word: DebugWord): boolean {
  return debugWords().has(word);
}
