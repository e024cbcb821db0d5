/**
 * `@cluevpn/atomic-file`: replacing a file so that a crash at any moment
 * leaves the old or the new content, whole — never a mix. Used for every
 * state file: the BNL and its trust sidecar, CA keys and certificates, the
 * pidfile.
 *
 *  1. write a temporary file in the same directory (same file system),
 *     created exclusively with the final mode
 *  2. write all bytes, fsync it
 *  3. rename it over the target (or, with `overwrite: false`, hard-link it
 *     to the target, which fails with EEXIST when the target exists)
 *  4. fsync the directory, so the rename itself is durable
 *
 * On failure the temporary file is removed and the target is untouched; the
 * system error is thrown as it is (callers wrap it in their own error).
 * Temporary files are named `.<name>.<pid>.<12 hex>.tmp`, so a crashed
 * writer's leftovers can be recognised ({@link TEMP_FILE_RE}).
 */
import { randomBytes } from 'node:crypto';
import { closeSync, constants, fsyncSync, linkSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { open, link, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/** Options of the write functions. */
export interface AtomicWriteOptions {
  /** File mode of the new file (from creation on, so no window with a wider mode). Default 0o644. */
  mode?: number;
  /** Replace an existing target (default true). With false, an existing target makes the write fail with EEXIST. */
  overwrite?: boolean;
  /**
   * Flush the file and its directory to disk (default true). With false the
   * replacement is still atomic (readers see the old or the new file, never
   * a mix) but may be lost in a power failure: for files that mean nothing
   * after a reboot, such as a pidfile, and whose writer should not wait for
   * the disk.
   */
  durable?: boolean;
}

/** Matches a temporary file name: groups 1 = target name, 2 = writer's pid. */
export const TEMP_FILE_RE = /^\.(.+)\.([0-9]+)\.[0-9a-f]{12}\.tmp$/;

function tempPath(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
}

function toBytes(data: string | Uint8Array): Uint8Array {
  return typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
}

/** fsyncs a directory so that a rename or link in it is durable. */
export function fsyncDirSync(dir: string): void {
  const fd = openSync(dir, constants.O_RDONLY);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Replaces `path` with `data` atomically and durably (steps 1–4 above), synchronously. */
export function writeFileAtomicSync(path: string, data: string | Uint8Array, opts: AtomicWriteOptions = {}): void {
  const tmp = tempPath(path);
  const bytes = toBytes(data);
  const fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, opts.mode ?? 0o644);
  let placed = false;
  try {
    try {
      for (let off = 0; off < bytes.length; ) off += writeSync(fd, bytes, off, bytes.length - off);
      if (opts.durable !== false) fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    if (opts.overwrite === false) {
      linkSync(tmp, path);
      unlinkSync(tmp);
    } else renameSync(tmp, path);
    placed = true;
  } finally {
    if (!placed) unlinkSync(tmp);
  }
  if (opts.durable !== false) fsyncDirSync(dirname(path));
}

/** Replaces `path` with `data` atomically and durably (steps 1–4 above). */
export async function writeFileAtomic(path: string, data: string | Uint8Array, opts: AtomicWriteOptions = {}): Promise<void> {
  const tmp = tempPath(path);
  let placed = false;
  try {
    const fh = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, opts.mode ?? 0o644);
    try {
      await fh.writeFile(toBytes(data));
      if (opts.durable !== false) await fh.sync();
    } finally {
      await fh.close();
    }
    if (opts.overwrite === false) {
      await link(tmp, path);
      await unlink(tmp);
    } else await rename(tmp, path);
    placed = true;
  } finally {
    if (!placed) await unlink(tmp).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'ENOENT') throw e;
    });
  }
  if (opts.durable === false) return;
  const dh = await open(dirname(path), 'r');
  try {
    await dh.sync();
  } finally {
    await dh.close();
  }
}
