/**
 * Running under systemd: readiness and watchdog notifications
 * (`Type=notify`, `WatchdogSec=`) and the journal's log format.
 *
 * 1. read the environment systemd sets (`NOTIFY_SOCKET`, `WATCHDOG_USEC`,
 *    `WATCHDOG_PID`) once, then remove it from `process.env` so that hooks
 *    do not inherit it (sd_notify's `unset_environment`)
 * 2. `ready(status)`: `READY=1` and the first `STATUS=` in one datagram,
 *    sent once the TUN device is up, the routes are in place, the control
 *    channel listens and the control socket answers (`main.ts`)
 * 3. from then on: `WATCHDOG=1` every half of `WATCHDOG_USEC` (only when
 *    `WATCHDOG_PID` is unset or ours), and `STATUS=` polled every
 *    `STATUS_POLL_MS` but sent only when its text changed — never per packet
 * 4. `reloading()` / `ready()` around a reload (SIGHUP, SIGUSR1):
 *    `RELOADING=1` carries `MONOTONIC_USEC=` (CLOCK_MONOTONIC, which
 *    systemd ≥ 253 requires with it)
 * 5. `stopping()`: `STOPPING=1` when a graceful stop begins; the timers end
 *
 * Datagrams go through `native/sd-notify.c` (Node has no unix datagram
 * sockets; `systemd-notify` as a child would send from another pid, which
 * `NotifyAccess=main` ignores). A send that fails is logged (once per
 * error code) and otherwise ignored: notifications never stop the daemon.
 * Without `NOTIFY_SOCKET` every call does nothing.
 *
 * The journal (point 6 of issue 18): systemd connects stderr to the journal
 * and says so in `JOURNAL_STREAM=DEV:INODE`; `stderrIsJournal` compares it
 * with stderr's own `fstat`, as systemd.exec(5) documents (a child whose
 * stderr was redirected must not take the variable at its word).
 */
import { fstatSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Logger } from './logging.js';

/** Implementation: how often the `STATUS=` text is recomputed (sent only when it changes). */
export const STATUS_POLL_MS = 5000;

/** The variables systemd sets for a service (all optional). */
export interface SystemdEnv {
  NOTIFY_SOCKET?: string | undefined;
  WATCHDOG_USEC?: string | undefined;
  WATCHDOG_PID?: string | undefined;
  JOURNAL_STREAM?: string | undefined;
}

/**
 * True when `JOURNAL_STREAM` names the file that `fd` (default 2, stderr)
 * is: the same device and inode. False when unset, malformed, or another
 * file (stderr redirected by whoever started us).
 */
export function stderrIsJournal(env: SystemdEnv = process.env, fd = 2): boolean {
  const m = /^(\d+):(\d+)$/.exec(env.JOURNAL_STREAM ?? '');
  if (m === null) return false;
  let st: { dev: bigint; ino: bigint };
  try {
    st = fstatSync(fd, { bigint: true });
  } catch (err) {
    // no stderr at all (closed descriptor): nothing to log to either way
    if ((err as NodeJS.ErrnoException).code === 'EBADF') return false;
    throw err;
  }
  return st.dev === BigInt(m[1]!) && st.ino === BigInt(m[2]!);
}

/** Sends one datagram to the notification socket; throws with an errno `code`. */
export type NotifySend = (socket: string, message: string) => void;

/** Options of {@link createNotifier}. */
export interface NotifierOptions {
  logger: Logger;
  /** Default `process.env`; the systemd variables are removed from it unless `keepEnv`. */
  env?: SystemdEnv;
  /** Keep the variables in `env` (tests). */
  keepEnv?: boolean;
  /** Our pid, compared with `WATCHDOG_PID`. Default `process.pid`. */
  pid?: number;
  /** Default: the native addon's `sdNotify`. */
  send?: NotifySend;
}

/** Peers that are up and the total, for `STATUS=`. */
export interface PeerCount {
  up: number;
  total: number;
}

/**
 * What the daemon tells systemd. Every method is a no-op when systemd did
 * not ask (`enabled` false). Never throws.
 */
export interface Notifier {
  /** `NOTIFY_SOCKET` was set (and the addon loaded). */
  readonly enabled: boolean;
  /** Half of `WATCHDOG_USEC` in ms when the watchdog applies to us, else null. */
  readonly watchdogMs: number | null;
  /**
   * `READY=1` with the status; the first call also starts the watchdog
   * pings and the status poll (`peers` is then read every `STATUS_POLL_MS`).
   */
  ready(peers: () => PeerCount): void;
  /** `RELOADING=1` and `MONOTONIC_USEC=`. */
  reloading(): void;
  /** `STOPPING=1`; ends the timers. */
  stopping(): void;
}

/** `STATUS=` text. */
export function statusText(p: PeerCount): string {
  return `${p.up} of ${p.total} peers up`;
}

interface SdNotifyAddon {
  sdNotify(socket: string, message: string): number;
}

function nativeSend(): NotifySend | Error {
  try {
    const addon = createRequire(import.meta.url)('../../native/build/Release/sd_notify.node') as SdNotifyAddon;
    return (socket, message) => void addon.sdNotify(socket, message);
  } catch (err) {
    return err as Error;
  }
}

/** CLOCK_MONOTONIC in µs (Node's hrtime is CLOCK_MONOTONIC on Linux), as `MONOTONIC_USEC=` wants. */
function monotonicUsec(): bigint {
  return process.hrtime.bigint() / 1000n;
}

/** Reads the environment (step 1) and returns the {@link Notifier}. */
export function createNotifier(opts: NotifierOptions): Notifier {
  const env = opts.env ?? (process.env as SystemdEnv);
  const log = opts.logger;
  const socket = env.NOTIFY_SOCKET;
  const usec = Number(env.WATCHDOG_USEC);
  const wdPid = env.WATCHDOG_PID;
  if (!opts.keepEnv) {
    delete env.NOTIFY_SOCKET;
    delete env.WATCHDOG_USEC;
    delete env.WATCHDOG_PID;
  }
  const pid = opts.pid ?? process.pid;
  const watchdogMs = Number.isInteger(usec) && usec > 0 && (wdPid === undefined || wdPid === '' || Number(wdPid) === pid) ? Math.max(1, Math.floor(usec / 2000)) : null;
  let send: NotifySend | null = null;
  if (socket !== undefined && socket !== '') {
    const s = opts.send ?? nativeSend();
    if (s instanceof Error) log.error('NOTIFY_SOCKET is set but the sd_notify addon is missing (run scripts/setup): systemd will not see the daemon ready', { err: s });
    else send = s;
  }
  const failed = new Set<string>();
  const notify = (message: string): void => {
    if (send === null) return;
    try {
      send(socket!, message);
    } catch (err) {
      const code = (err as { code?: string }).code ?? 'ERR';
      if (!failed.has(code)) log.warn('cannot notify systemd', { path: socket, err });
      failed.add(code);
    }
  };

  let timers: NodeJS.Timeout[] = [];
  let lastStatus = '';
  let started = false;
  let stopped = false;
  return {
    enabled: send !== null,
    watchdogMs: send === null ? null : watchdogMs,
    ready(peers) {
      if (send === null || stopped) return;
      lastStatus = statusText(peers());
      notify(`READY=1\nSTATUS=${lastStatus}`);
      if (started) return;
      started = true;
      const poll = setInterval(() => {
        const text = statusText(peers());
        if (text === lastStatus) return;
        lastStatus = text;
        notify(`STATUS=${text}`);
      }, STATUS_POLL_MS);
      poll.unref();
      timers.push(poll);
      if (watchdogMs !== null) {
        // unref'd: a blocked event loop misses the ping, which is the point
        const wd = setInterval(() => notify('WATCHDOG=1'), watchdogMs);
        wd.unref();
        timers.push(wd);
        notify('WATCHDOG=1');
      }
    },
    reloading() {
      if (stopped) return;
      notify(`RELOADING=1\nMONOTONIC_USEC=${monotonicUsec()}`);
    },
    stopping() {
      if (stopped) return;
      stopped = true;
      for (const t of timers) clearInterval(t);
      timers = [];
      notify('STOPPING=1');
    },
  };
}
