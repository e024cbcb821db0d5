/**
 * The pidfile: written atomically at start, removed at exit if it still
 * names this process. A pidfile naming a live process is refused (another
 * daemon runs for this network); one naming a dead process is replaced.
 */
import { mkdirSync, readFileSync, unlinkSync } from 'node:fs';
import { livePid } from '@cluevpn/control';
import { dirname } from 'node:path';
import { writeFileAtomicSync } from '@cluevpn/atomic-file';
import { PidfileError } from './errors.js';

export { livePid };

/**
 * Writes `pid` (default this process) to `path`. Throws `ERR_PIDFILE_IN_USE`
 * when the file names another live process, `ERR_PIDFILE_WRITE` when it
 * cannot be written.
 */
export function writePidfile(path: string, pid = process.pid): void {
  const other = livePid(path);
  if (other !== null && other !== pid) throw new PidfileError('ERR_PIDFILE_IN_USE', `${path} names running process ${other}; is another cluevpnd running for this network?`);
  try {
    mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
    // not flushed to disk: a pidfile means nothing after a reboot (a stale one is
    // replaced, see livePid), and two fsyncs cost the start up to tens of ms on a busy disk
    writeFileAtomicSync(path, `${pid}\n`, { mode: 0o644, durable: false });
  } catch (err) {
    throw new PidfileError('ERR_PIDFILE_WRITE', `cannot write ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, { cause: err });
  }
}

/** Removes `path` if it names `pid` (default this process). Returns whether it removed it. Never throws. */
export function removePidfile(path: string, pid = process.pid): boolean {
  try {
    if (readFileSync(path, 'utf8').trim() !== String(pid)) return false;
    unlinkSync(path);
    return true;
  } catch {
    // missing or unreadable: nothing of ours to remove
    return false;
  }
}
