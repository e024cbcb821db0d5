/**
 * Where a {@link BnlStore} keeps its list: the list file (the high-water
 * mark) and the trust sidecar. Files are replaced atomically: a temporary
 * file in the same directory, fsync, rename over the old file, fsync the
 * directory. A crash at any point leaves the old or the new file, whole.
 */
import { readdir, readFile, unlink } from 'node:fs/promises';
import { TEMP_FILE_RE, writeFileAtomic } from '@cluevpn/atomic-file';
import { basename, dirname, join } from 'node:path';
import { BnlError } from './errors.js';

/** Persistence of one store. `read*` return `null` when nothing was stored yet. */
export interface BnlStorage {
  /** Human description for error messages (e.g. the file path). */
  readonly where: string;
  readList(): Promise<Uint8Array | null>;
  writeList(bytes: Uint8Array): Promise<void>;
  readTrust(): Promise<Uint8Array | null>;
  writeTrust(bytes: Uint8Array): Promise<void>;
  /** The highest serial this store ever accepted (the rollback guard). */
  readHighest(): Promise<Uint8Array | null>;
  writeHighest(bytes: Uint8Array): Promise<void>;
}

/**
 * Writes `data` to `path` atomically and durably with file mode `mode`
 * (`@cluevpn/atomic-file`). On error the old file is untouched and the
 * temporary file removed; the error is a `BnlError` with `ERR_BNL_IO` and
 * the system error as `cause`.
 */
export async function atomicWriteFile(path: string, data: Uint8Array | string, mode = 0o644): Promise<void> {
  try {
    await writeFileAtomic(path, data, { mode });
  } catch (err) {
    throw new BnlError('ERR_BNL_IO', `cannot write ${path}: ${(err as Error).message}`, { cause: err });
  }
}

async function readOrNull(path: string): Promise<Uint8Array | null> {
  try {
    return await readFile(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new BnlError('ERR_BNL_IO', `cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes temporary files left next to `path` by writers that died (their
 * pid is gone). Returns how many were removed.
 */
export async function removeStaleTemporaries(path: string): Promise<number> {
  const dir = dirname(path);
  const prefix = `.${basename(path)}.`;
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw new BnlError('ERR_BNL_IO', `cannot list ${dir}: ${(err as Error).message}`, { cause: err });
  }
  let removed = 0;
  for (const n of names) {
    const m = n.startsWith(prefix) ? TEMP_FILE_RE.exec(n) : null;
    if (!m || m[1] !== basename(path) || pidAlive(Number(m[2]))) continue;
    await unlink(join(dir, n)).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'ENOENT') throw new BnlError('ERR_BNL_IO', `cannot remove ${n}: ${e.message}`, { cause: e });
    });
    removed++;
  }
  return removed;
}

/**
 * File storage: the list at `path` (mode 0644, it is public), the trust
 * sidecar at `path + ".trust"`, the highest serial accepted at
 * `path + ".highest"`.
 */
export function createFileStorage(path: string): BnlStorage {
  const trustPath = `${path}.trust`;
  const highestPath = `${path}.highest`;
  let cleaned = false;
  return {
    where: path,
    async readList() {
      if (!cleaned) {
        cleaned = true;
        for (const p of [path, trustPath, highestPath]) await removeStaleTemporaries(p);
      }
      return readOrNull(path);
    },
    writeList: (bytes) => atomicWriteFile(path, bytes, 0o644),
    readTrust: () => readOrNull(trustPath),
    writeTrust: (bytes) => atomicWriteFile(trustPath, bytes, 0o644),
    readHighest: () => readOrNull(highestPath),
    writeHighest: (bytes) => atomicWriteFile(highestPath, bytes, 0o644),
  };
}

/** In-memory storage (tests, simulations). `failWrites` makes every write reject with `ERR_BNL_IO`. */
export function createMemoryStorage(initial?: { list?: Uint8Array; trust?: Uint8Array; highest?: Uint8Array }): BnlStorage & { failWrites: boolean; list: Uint8Array | null; trust: Uint8Array | null; highest: Uint8Array | null } {
  const s = {
    where: 'memory',
    failWrites: false,
    list: initial?.list ?? null,
    trust: initial?.trust ?? null,
    highest: initial?.highest ?? null,
    async readHighest() {
      return s.highest;
    },
    async writeHighest(bytes: Uint8Array) {
      if (s.failWrites) throw new BnlError('ERR_BNL_IO', 'memory storage: write failure injected');
      s.highest = Buffer.from(bytes);
    },
    async readList() {
      return s.list;
    },
    async writeList(bytes: Uint8Array) {
      if (s.failWrites) throw new BnlError('ERR_BNL_IO', 'memory storage: write failure injected');
      s.list = Buffer.from(bytes);
    },
    async readTrust() {
      return s.trust;
    },
    async writeTrust(bytes: Uint8Array) {
      if (s.failWrites) throw new BnlError('ERR_BNL_IO', 'memory storage: write failure injected');
      s.trust = Buffer.from(bytes);
    },
  };
  return s;
}
