/**
 * The daemon's young generation is kept at V8's initial size.
 *
 * The data path allocates almost nothing that survives, so a small young
 * generation costs no throughput, and it keeps the resident size of a
 * daemon with a 1 000-node list under 80 MiB (`scripts/bench/memory`): left
 * alone, V8 grows each semispace to 16 MiB under an iperf3 stream.
 *
 * It used to be `node --max-semi-space-size=1` in `bin/cluevpnd`'s #! line.
 * Any V8 flag on the command line changes V8's flag hash, and Node then
 * rejects the code cache of its own built-in modules and compiles them from
 * source: measured here, loading the daemon's bundle took 25 ms instead of
 * 14, and a restart's first tunnelled reply came 15–25 ms later. So the
 * daemon starts without V8 flags and, once started, stops the young
 * generation from growing: V8 reads `semi_space_growth_factor` each time it
 * would grow the semispaces, and a factor of 1 leaves them as they are (the
 * same 1 MiB each as `--max-semi-space-size=1`; tested in
 * `test/heap.test.ts`). Node documents changing V8 flags at run time as
 * unsupported in general; this one flag is a plain number V8 reads when it
 * sizes the young generation, nothing is compiled or cached from it.
 */
import { createRequire } from 'node:module';
import type * as V8Module from 'node:v8';

const requireBuiltin = createRequire(import.meta.url);

/** Stops V8 from growing the young generation (idempotent). Loads `node:v8` (~3 ms) on first call. */
export function keepYoungGenerationSmall(): void {
  (requireBuiltin('node:v8') as typeof V8Module).setFlagsFromString('--semi-space-growth-factor=1');
}

/**
 * Lists at least this large (bytes of the signed file; about 2 000 nodes)
 * start with the young generation already kept small and get a full
 * collection after start and after each apply (below). Measured in process
 * with a 10 000-node list (load and 9 999 peers): 32 MiB of semispaces
 * otherwise, grown during the load and never given back; the load takes
 * about 1.3–1.5× as long with 1 MiB semispaces (more scavenges). Small
 * lists keep the cheaper start (node:v8 loaded after the first packets).
 */
export const LARGE_LIST_BYTES = 256 * 1024;

/**
 * For a large list (LARGE_LIST_BYTES), before it is loaded: the young
 * generation kept small, and the old generation's next limit set at 1.25×
 * what survived the last full collection instead of V8's own factor (up to
 * 4× after a fast-growing start): in one run a daemon holding a
 * 10 000-node list had 118 MiB of heap used at rest, most of it garbage
 * waiting for that limit (scripts/bench/scale, BENCHMARKS.md "Scale,
 * session 9"; the main source of that garbage, the path selector's
 * per-second stats, was removed since; the cap was not measured alone
 * after that). V8 reads `heap_growing_percent` each time it sets the limit.
 */
export function keepHeapTight(): void {
  keepYoungGenerationSmall();
  (requireBuiltin('node:v8') as typeof V8Module).setFlagsFromString('--heap-growing-percent=25');
}

let fullGc: (() => void) | undefined;

/**
 * One full, compacting garbage collection: for the end of start-up and of
 * a list's apply, the two moments a large list leaves tens of MiB of
 * garbage behind (the parsed JSON, the canonical re-encoding, the diff) and
 * nothing runs that would collect it soon — V8 only collects the old generation when it
 * reaches a limit it set from the heap's peak, so a daemon that loaded a
 * 10 000-node list stayed at that peak (issue 19, BENCHMARKS.md "Scale,
 * session 9"). V8 exposes `gc` only behind `--expose-gc`, a command-line
 * flag that would cost every start its code cache (see above): the flag is
 * set at run time and `gc` taken from a fresh context, once.
 */
export function collectGarbage(): void {
  if (fullGc === undefined) {
    (requireBuiltin('node:v8') as typeof V8Module).setFlagsFromString('--expose-gc');
    fullGc = (requireBuiltin('node:vm') as typeof import('node:vm')).runInNewContext('gc') as () => void;
  }
  fullGc();
}
