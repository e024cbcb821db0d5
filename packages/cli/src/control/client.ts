/**
 * Client side of the daemon's control socket.
 *
 * 1. find the daemon the way it finds its config: `-c FILE`, `-n NET`
 *    (`$CLUEVPN_CONFDIR/NET/cluevpn.conf`), or `$CLUEVPN_CONFDIR/cluevpn.conf`
 *    (`CLUEVPN_CONFDIR` defaults to `/etc/cluevpn`); read `controlsocket` and
 *    `pidfile` from it, else the defaults `$CLUEVPN_RUNDIR/NETNAME.sock|.pid`
 *    (`/run/cluevpn`)
 * 2. connect, send one JSON line `{"v":1,"id":1,"cmd":…}`, read one line
 * 3. map failures to `ControlError` codes
 *
 * `requestReloadAndPush` falls back to SIGUSR1 through the pidfile when no
 * socket answers.
 */
import { createConnection } from 'node:net';
import { readFileSync } from 'node:fs';
import { basename, dirname, isAbsolute, resolve } from 'node:path';
import { ControlProtocolError, decodeAnswer, encodeRequest, livePid, type ControlAnswer, type ControlCommand, type ControlResults } from './protocol.js';

/** Error of a control request; `code` is stable. */
export class ControlError extends Error {
  /**
   * - `ERR_NO_DAEMON`: no daemon answers (no socket, refused, no live pidfile process)
   * - `ERR_NO_CONFIG`: the config file that names the socket cannot be read
   * - `ERR_CONTROL_PROTOCOL`: the answer is not a valid protocol line, or the connection broke
   * - `ERR_CONTROL_VERSION`: the daemon speaks another protocol version
   * - `ERR_CONTROL_TIMEOUT`: no answer in time
   * - `ERR_CONTROL_REFUSED`: the daemon answered with an error (`remoteCode` says which)
   */
  readonly code: 'ERR_NO_DAEMON' | 'ERR_NO_CONFIG' | 'ERR_CONTROL_PROTOCOL' | 'ERR_CONTROL_VERSION' | 'ERR_CONTROL_TIMEOUT' | 'ERR_CONTROL_REFUSED';
  /** For `ERR_CONTROL_REFUSED`: the daemon's error code (e.g. `ERR_BNL_INVALID`). */
  readonly remoteCode: string | undefined;
  constructor(code: ControlError['code'], message: string, options?: { cause?: unknown; remoteCode?: string }) {
    super(message, options);
    this.name = 'ControlError';
    this.code = code;
    this.remoteCode = options?.remoteCode;
  }
}

/** How a command finds its daemon: the config file it runs with (`-c`) or its network name (`-n`). */
export interface DaemonTarget {
  configFile?: string;
  netname?: string;
}

/** Where a daemon listens, as found from its config. */
export interface DaemonLocation {
  configFile: string;
  netname: string;
  socket: string;
  pidfile: string;
}

/** Environment read by `findDaemon` (tests override it). */
export interface ControlEnv {
  CLUEVPN_CONFDIR?: string | undefined;
  CLUEVPN_RUNDIR?: string | undefined;
}

/**
 * Step 1. The network name follows the daemon's rule: `-n`, else the config
 * file's directory name (`cluevpn` when the file lies directly in the config
 * base directory). Throws `ERR_NO_CONFIG` when the config file cannot be read.
 */
export function findDaemon(target: DaemonTarget, env: ControlEnv = process.env): DaemonLocation {
  const base = resolve(env.CLUEVPN_CONFDIR || '/etc/cluevpn');
  const run = resolve(env.CLUEVPN_RUNDIR || '/run/cluevpn');
  let configFile: string;
  let netname: string;
  if (target.configFile !== undefined) {
    configFile = resolve(target.configFile);
    const dir = dirname(configFile);
    netname = target.netname ?? (dir === base ? 'cluevpn' : basename(dir));
  } else if (target.netname !== undefined) {
    configFile = resolve(base, target.netname, 'cluevpn.conf');
    netname = target.netname;
  } else {
    configFile = resolve(base, 'cluevpn.conf');
    netname = 'cluevpn';
  }
  if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/.test(netname)) netname = 'cluevpn';
  let text: string;
  try {
    text = readFileSync(configFile, 'utf8');
  } catch (err) {
    throw new ControlError('ERR_NO_CONFIG', `cannot read ${configFile} (${(err as NodeJS.ErrnoException).code ?? String(err)}); say which daemon with -c FILE or -n NET`, { cause: err });
  }
  let socket = resolve(run, `${netname}.sock`);
  let pidfile = resolve(run, `${netname}.pid`);
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    const eq = line.indexOf('=');
    if (line.startsWith('#') || eq <= 0) continue;
    const key = line.slice(0, eq).trim().toLowerCase();
    const value = line.slice(eq + 1).trim();
    const abs = isAbsolute(value) ? value : resolve(dirname(configFile), value);
    if (key === 'controlsocket' && value !== '') socket = abs;
    if (key === 'pidfile' && value !== '') pidfile = abs;
  }
  return { configFile, netname, socket, pidfile };
}

/** Options of `request`. */
export interface RequestOptions {
  /** Default 10 s. */
  timeoutMs?: number;
  env?: ControlEnv;
}

/**
 * Sends one request to the daemon at `socketPath` and resolves with its
 * result. Rejects with a `ControlError`.
 */
export function requestAt<C extends ControlCommand>(
  socketPath: string,
  cmd: C,
  args: Record<string, unknown> = {},
  timeoutMs = 10_000,
): Promise<ControlResults[C]> {
  return new Promise((resolveReq, rejectReq) => {
    const sock = createConnection(socketPath);
    let buf = '';
    let done = false;
    const finish = (err: ControlError | undefined, value?: ControlResults[C]) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      if (err) rejectReq(err);
      else resolveReq(value as ControlResults[C]);
    };
    const timer = setTimeout(() => finish(new ControlError('ERR_CONTROL_TIMEOUT', `no answer from ${socketPath} within ${timeoutMs} ms`)), timeoutMs);
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(encodeRequest(cmd, args, 1)));
    sock.on('error', (err: NodeJS.ErrnoException) => {
      const gone = err.code === 'ENOENT' || err.code === 'ECONNREFUSED';
      finish(
        gone
          ? new ControlError('ERR_NO_DAEMON', `no daemon answers on ${socketPath} (${err.code}); is cluevpnd running?`, { cause: err })
          : new ControlError('ERR_CONTROL_PROTOCOL', `control socket ${socketPath}: ${err.message}`, { cause: err }),
      );
    });
    sock.on('data', (chunk: string) => {
      buf += chunk;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      let msg: ControlAnswer;
      try {
        msg = decodeAnswer(buf.slice(0, nl));
      } catch (err) {
        if (!(err instanceof ControlProtocolError)) throw err;
        const code = err.code === 'ERR_CONTROL_VERSION' ? 'ERR_CONTROL_VERSION' : 'ERR_CONTROL_PROTOCOL';
        return finish(new ControlError(code, `the daemon's answer: ${err.message}`, { cause: err }));
      }
      if (msg.ok) return finish(undefined, msg.result as ControlResults[C]);
      const { code, message } = msg.error;
      if (code === 'ERR_CONTROL_VERSION') return finish(new ControlError('ERR_CONTROL_VERSION', message));
      finish(new ControlError('ERR_CONTROL_REFUSED', `cluevpnd: ${message}`, { remoteCode: code }));
    });
    sock.on('close', () => finish(new ControlError('ERR_CONTROL_PROTOCOL', `the daemon closed ${socketPath} without answering`)));
  });
}

/** Finds the daemon for `target` (step 1) and sends one request. */
export function request<C extends ControlCommand>(target: DaemonTarget, cmd: C, args: Record<string, unknown> = {}, opts: RequestOptions = {}): Promise<ControlResults[C]> {
  const where = findDaemon(target, opts.env);
  return requestAt(where.socket, cmd, args, opts.timeoutMs);
}

/** Result of `requestReloadAndPush`. */
export interface ReloadAndPushAnswer {
  /** `socket`: the daemon answered; `signal`: no socket, SIGUSR1 sent through the pidfile (no answer to wait for). */
  via: 'socket' | 'signal';
  /** Serial in force after the reload; `null` via signal. */
  serial: number | null;
  /** Peers pushed to; `null` via signal. */
  pushedTo: number | null;
  /** Peers a push was started for, failed pushes, pushes still running in the background; `null` via signal. */
  pushTargets: number | null;
  pushFailed: number | null;
  pushPending: number | null;
  /** Whether the file on disk was newer and applied; `null` via signal. */
  applied: boolean | null;
  /** The daemon's pid, when known from the pidfile (via signal). */
  pid: number | null;
  /** Whether the daemon switched to new credential files, and the certificate in use; `null` via signal or from an older daemon. */
  credentials: { switched: boolean; fingerprint: string } | null;
}

/**
 * Asks the running daemon to reload the BNL from disk and push it to every
 * node. Over the control socket when it answers; when there is no socket
 * (`ERR_NO_DAEMON`), sends SIGUSR1 to the pid in the pidfile. Rejects with
 * `ERR_NO_DAEMON` when neither reaches a live daemon, `ERR_NO_CONFIG` when
 * the config cannot be read, other `ControlError` codes as `request`.
 */
export async function requestReloadAndPush(target: DaemonTarget, opts: RequestOptions = {}): Promise<ReloadAndPushAnswer> {
  const where = findDaemon(target, opts.env);
  try {
    const r = await requestAt(where.socket, 'reload-and-push', {}, opts.timeoutMs ?? 30_000);
    return { via: 'socket', serial: r.serial, pushedTo: r.pushedTo, pushTargets: r.pushTargets, pushFailed: r.pushFailed, pushPending: r.pushPending, applied: r.applied, pid: null, credentials: r.credentials ?? null };
  } catch (err) {
    if (!(err instanceof ControlError) || err.code !== 'ERR_NO_DAEMON') throw err;
    const pid = readLivePid(where.pidfile);
    if (pid === null) {
      throw new ControlError('ERR_NO_DAEMON', `no running cluevpnd for ${where.configFile}: nothing answers on ${where.socket} and ${where.pidfile} names no live process`, { cause: err });
    }
    process.kill(pid, 'SIGUSR1');
    return { via: 'signal', serial: null, pushedTo: null, pushTargets: null, pushFailed: null, pushPending: null, applied: null, pid, credentials: null };
  }
}

/** The pid in `pidfile` when that process is alive, else `null`; an unreadable pidfile is `ERR_NO_DAEMON`. */
export function readLivePid(pidfile: string): number | null {
  try {
    return livePid(pidfile);
  } catch (err) {
    throw new ControlError('ERR_NO_DAEMON', `cannot read ${pidfile}: ${(err as Error).message}`, { cause: err });
  }
}
