/**
 * Atomic file writes: tmp file (with the final mode from creation on),
 * fsync, rename, fsync of the directory.
 */
import { closeSync, constants, fsyncSync, linkSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';

/**
 * Writes `data` to `path` atomically with file mode `mode`. With
 * `overwrite: false` an existing file is never replaced (the final step is a
 * hard link, which fails with `EEXIST`); the caller maps `EEXIST` to its own
 * error. On failure the tmp file is removed and `path` is untouched.
 */
export function writeFileAtomic(path: string, data: string | Uint8Array, mode: number, overwrite: boolean): void {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  const fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, mode);
  let linked = false;
  let closed = false;
  try {
    const buf = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
    fsyncSync(fd);
    closed = true;
    closeSync(fd);
    if (overwrite) {
      renameSync(tmp, path);
      linked = true;
    } else {
      linkSync(tmp, path);
      linked = true;
      unlinkSync(tmp);
    }
    fsyncDir(dir);
  } finally {
    if (!closed) closeSync(fd);
    if (!linked) unlinkSync(tmp);
  }
}

/** fsyncs a directory so that a rename/link in it is durable. */
export function fsyncDir(dir: string): void {
  const fd = openSync(dir, constants.O_RDONLY);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
