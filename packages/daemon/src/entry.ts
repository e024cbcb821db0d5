/**
 * How `bin/cluevpnd` loads the daemon.
 *
 * Node 20 loads an ES module graph file by file: resolving, reading,
 * parsing and linking the daemon's ~90 modules (and the CommonJS files of
 * better-sqlite3) took about half of a start on the benchmark machine.
 * `scripts/bundle-daemon` (run by `scripts/setup`) therefore writes, next
 * to the compiled modules:
 *
 * - `dist/cluevpnd.cjs`: the same modules in one CommonJS file (esbuild);
 *   each module's `import.meta.url` still names its own file, so native
 *   addons, `lz4` and `node-forge` are found where they always were;
 * - `dist/cluevpnd.cjs.cache`: V8's code cache of that file, made with the
 *   Node flags of `bin/cluevpnd` (V8 refuses a cache made by another
 *   version, with other flags or for other source, and then compiles);
 * - `dist/cluevpnd.cjs.json`: the manifest: every file that went into the
 *   bundle (`inputs`), and the few files whose size and modification time
 *   change whenever one of those does (`stamps`): the `.tsbuildinfo` of each
 *   of our packages (`tsc -b` rewrites it whenever it emits a module of
 *   that package), the `package.json` of each dependency (a reinstall or
 *   another version replaces it), and the bundle itself.
 *
 * {@link loadDaemon} runs the bundle only when every stamp is unchanged;
 * otherwise (a package rebuilt by `tsc -b` after the bundle was made, or no
 * bundle at all) it imports the modules themselves — the same code, a
 * slower start — and says why on stderr. Checking ~15 stamps instead of
 * ~190 inputs saves 5–15 ms of every start; `scripts/bundle-daemon` still
 * checks every input (`deep`). It never runs a bundle older than the code
 * `tsc -b` made it from (a module edited by hand in `dist/` is not seen
 * until the next build), and a bundle that fails to
 * compile or load falls back the same way. `CLUEVPN_DEBUG=modules` in the
 * environment loads the modules without a warning (to compare, or to rule
 * the bundle out).
 */
import { readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import vm from 'node:vm';

/** What the daemon's entry module exports. */
export interface DaemonEntry {
  main(argv: string[]): Promise<void>;
}

/** How the daemon was loaded (logged with "cluevpnd started"). */
export interface EntryInfo {
  mode: 'bundle' | 'modules';
  /** V8's verdict on the code cache (bundle only). */
  cache?: 'accepted' | 'rejected' | 'missing';
  /** Why the modules were loaded instead of the bundle. */
  reason?: string;
}

/** Size and modification time of a file when the bundle was made. */
export interface FileStamp {
  size: number;
  mtimeMs: number;
}

/** The manifest `dist/cluevpnd.cjs.json`. */
export interface BundleManifest {
  version: 2;
  /** Every file (relative to the manifest's directory) that went into the bundle. */
  inputs: Record<string, FileStamp>;
  /** The files checked at every start: they change whenever an input does (see above). */
  stamps: Record<string, FileStamp>;
  /** Node flags the code cache was made with (those of bin/cluevpnd's shebang). */
  nodeFlags: string[];
}

export const BUNDLE_FILE = 'cluevpnd.cjs';
export const CACHE_FILE = 'cluevpnd.cjs.cache';
export const MANIFEST_FILE = 'cluevpnd.cjs.json';

/** Where `globalThis` carries the {@link EntryInfo} to the daemon inside the bundle. */
export const ENTRY_INFO_KEY = Symbol.for('cluevpn.daemon.entry');

/** The CommonJS wrapper; the code cache is only valid for this exact source text. */
function wrap(source: string): string {
  return `(function (exports, require, module, __filename, __dirname) {${source}\n})`;
}

/** Compiles the bundle (with `cachedData` when given) without running it. */
export function compileBundle(file: string, cachedData?: Buffer): vm.Script {
  return new vm.Script(wrap(readFileSync(file, 'utf8')), { filename: file, ...(cachedData ? { cachedData } : {}) });
}

/** Runs a compiled bundle as a CommonJS module of `file`; returns its exports. */
export function runBundle(script: vm.Script, file: string): unknown {
  const fn = script.runInThisContext() as (e: unknown, r: NodeJS.Require, m: { exports: unknown }, f: string, d: string) => void;
  const mod = { exports: {} as unknown };
  fn.call(mod.exports, mod.exports, createRequire(file), mod, file, dirname(file));
  return mod.exports;
}

/**
 * Why the bundle in `dist` cannot be used, or undefined when it can: checks
 * the manifest's `stamps`, and with `deep` every one of its `inputs` too.
 */
export function bundleStaleReason(dist: string, opts: { deep?: boolean } = {}): string | undefined {
  const where = join(dist, MANIFEST_FILE);
  let manifest: BundleManifest;
  try {
    manifest = JSON.parse(readFileSync(where, 'utf8')) as BundleManifest;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'ENOENT' ? 'no bundle (run scripts/setup)' : `unreadable bundle manifest ${where}: ${code ?? (err as Error).message}`;
  }
  const isMap = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null;
  if (manifest.version !== 2 || !isMap(manifest.inputs) || !isMap(manifest.stamps)) return `bundle manifest ${where} of an unknown version`;
  const check = (files: Record<string, FileStamp>): string | undefined => {
    for (const [rel, was] of Object.entries(files)) {
      if (!isMap(was) || typeof was.size !== 'number' || typeof was.mtimeMs !== 'number') return `bundle manifest ${where}: malformed entry for ${rel}`;
      const st = statSync(resolve(dist, rel), { throwIfNoEntry: false });
      if (st === undefined) return `${rel} is gone since the bundle was made`;
      if (st.size !== was.size || st.mtimeMs !== was.mtimeMs) return `${rel} changed since the bundle was made (run scripts/setup)`;
    }
    return undefined;
  };
  if (!Object.keys(manifest.stamps).includes(BUNDLE_FILE)) return `bundle manifest ${where}: the bundle itself is not stamped`;
  return check(manifest.stamps) ?? (opts.deep === true ? check(manifest.inputs) : undefined);
}

/**
 * Loads the daemon from `dist` (the daemon package's `dist` directory): the
 * bundle when it is current, else the modules. `warn` receives one line
 * when the modules are loaded because of a stale or unreadable bundle.
 */
export async function loadDaemon(dist: string, warn: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): Promise<DaemonEntry> {
  // The parser is imported only when the variable is set: a normal start loads nothing more.
  const forced = process.env.CLUEVPN_DEBUG !== undefined && (await import('@cluevpn/tun/debug')).debugHas('modules');
  const stale = forced ? 'CLUEVPN_DEBUG=modules' : bundleStaleReason(dist);
  let info: EntryInfo | undefined;
  let entry: DaemonEntry | undefined;
  let reason = stale;
  if (stale === undefined) {
    const file = join(dist, BUNDLE_FILE);
    try {
      let cachedData: Buffer | undefined;
      try {
        cachedData = readFileSync(join(dist, CACHE_FILE));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
      const script = compileBundle(file, cachedData);
      const bundled = runBundle(script, file) as Partial<DaemonEntry>;
      if (typeof bundled.main !== 'function') throw new Error('it exports no main()');
      info = { mode: 'bundle', cache: cachedData === undefined ? 'missing' : script.cachedDataRejected === true ? 'rejected' : 'accepted' };
      entry = bundled as DaemonEntry;
    } catch (err) {
      // The daemon must still start: the modules are the same code.
      reason = `cannot load ${file}: ${(err as Error).message.split('\n')[0]}`;
    }
  }
  if (reason !== undefined) {
    if (!forced) warn(`cluevpnd: warning: ${reason}; loading the modules instead (same code, slower start)`);
    info = { mode: 'modules', reason };
    entry = (await import('./main.js')) as DaemonEntry;
  }
  (globalThis as Record<symbol, unknown>)[ENTRY_INFO_KEY] = info!;
  return entry!;
}

/** The {@link EntryInfo} of this process (undefined when not started by `loadDaemon`, as in tests). */
export function entryInfo(): EntryInfo | undefined {
  return (globalThis as Record<symbol, unknown>)[ENTRY_INFO_KEY] as EntryInfo | undefined;
}

/** {@link entryInfo} in words, for the status report and the start-up log line. */
export function loadedAs(): string {
  const e = entryInfo();
  if (e === undefined) return '';
  return e.mode === 'bundle' ? `bundle (code cache ${e.cache})` : `modules (${e.reason})`;
}
