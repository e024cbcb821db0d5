/**
 * Reading the daemon's pidfile: shared by the daemon (a live pid there
 * means another daemon runs for this network) and the commands (SIGUSR1
 * when the control socket does not answer).
 */
import { readFileSync } from 'node:fs';

/**
 * The pid in `path` if that process is alive, else `null` (missing file,
 * garbage, dead pid). A pid we may not signal (EPERM) is alive. Other
 * read errors are thrown as they are.
 */
export function livePid(path: string): number | null {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  const pid = Number(text.trim());
  if (!Number.isInteger(pid) || pid <= 1) return null;
  try {
    process.kill(pid, 0);
    return pid;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM' ? pid : null;
  }
}
