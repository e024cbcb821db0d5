/**
 * The local control socket: a unix stream socket, mode 0600 (root only),
 * speaking JSON lines, protocol version 1.
 *
 * ```
 * request  {"v":1,"id":7,"cmd":"status"}
 *          {"v":1,"id":8,"cmd":"set-log-level","level":7}
 * response {"v":1,"id":7,"ok":true,"result":{…}}
 *          {"v":1,"id":8,"ok":false,"error":{"code":"ERR_CONTROL_BAD_REQUEST","message":"…"}}
 * ```
 *
 * Commands: `status`, `peers`, `bnl-status`, `set-log-level` (`level` 0–7),
 * `reload-and-push`. One request per line, answered in order on the same
 * connection; `id` is echoed. A request with another `v` gets
 * `ERR_CONTROL_VERSION` (the answer carries the server's `v`). A line over
 * 64 KiB or not JSON gets `ERR_CONTROL_PROTOCOL` and the connection closes.
 *
 * 1. prepare the path: create its directory (0755), refuse a non-socket
 *    file, refuse a socket a live daemon answers on, remove a stale one
 * 2. listen with umask 0177, then chmod 0600
 * 3. per line: parse → check version → dispatch to the handler → answer
 * 4. close: stop listening, end connections, remove the socket if it is
 *    still the one we created (same inode)
 */
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { chmodSync, lstatSync, mkdirSync, statSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import { ControlServerError, DaemonError } from './errors.js';
import type { Logger } from './logging.js';
import {
  CONTROL_MAX_LINE,
  CONTROL_PROTOCOL_VERSION,
  ControlProtocolError,
  decodeRequest,
  encodeAnswer,
  errorAnswer,
  resultAnswer,
  type BnlStatusReport,
  type ControlAnswer,
  type ControlRequest,
  type MemoryReport,
  type PeerStatus,
  type ReloadResult,
  type StatusReport,
} from '@cluevpn/control';

export {
  CONTROL_PROTOCOL_VERSION,
  CONTROL_MAX_LINE,
  type DropCounts,
  type PeerStatus,
  type StatusReport,
  type BnlStatusReport,
  type MemoryReport,
  type ReloadResult,
} from '@cluevpn/control';

/** What the daemon does for each command. A thrown `DaemonError` becomes an error answer with its code. */
export interface ControlHandlers {
  status(): StatusReport | Promise<StatusReport>;
  peers(): PeerStatus[] | Promise<PeerStatus[]>;
  bnlStatus(): BnlStatusReport | Promise<BnlStatusReport>;
  /** Returns the previous level. */
  setLogLevel(level: number): { level: number; previous: number };
  reloadAndPush(): Promise<ReloadResult>;
}

/** A listening control server. */
export interface ControlServer {
  readonly path: string;
  /** Stops listening, ends every connection and removes the socket file. Idempotent. */
  close(): Promise<void>;
}

/** Options of `startControlServer`. */
export interface ControlServerOptions {
  path: string;
  handlers: ControlHandlers;
  logger: Logger;
  /** Idle connections are closed after this long; default 30 s. */
  idleTimeoutMs?: number;
}

/** Resolves true when something accepts connections on `path`. */
function answers(path: string): Promise<boolean> {
  return new Promise((resolveAnswer) => {
    const s = createConnection(path);
    s.once('connect', () => {
      s.destroy();
      resolveAnswer(true);
    });
    s.once('error', () => resolveAnswer(false));
  });
}

/**
 * Step 1: makes `path` free for a new socket, or throws
 * `ERR_CONTROL_NOT_SOCKET` (something else lives there) /
 * `ERR_CONTROL_IN_USE` (a live daemon answers on it).
 */
export async function prepareSocketPath(path: string): Promise<void> {
  mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
  let st;
  try {
    st = lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (!st.isSocket()) {
    throw new ControlServerError('ERR_CONTROL_NOT_SOCKET', `${path} exists and is not a socket; refusing to remove it`);
  }
  if (await answers(path)) {
    throw new ControlServerError('ERR_CONTROL_IN_USE', `a daemon already answers on ${path}`);
  }
  unlinkSync(path);
}

/** Starts the control server (steps 1–4 above). */
export async function startControlServer(opts: ControlServerOptions): Promise<ControlServer> {
  const { path, handlers } = opts;
  const log = opts.logger;
  await prepareSocketPath(path);
  const sockets = new Set<Socket>();
  const server: Server = createServer((sock) => serveConnection(sock, handlers, log, opts.idleTimeoutMs ?? 30_000, sockets));
  server.maxConnections = 32;
  const oldUmask = process.umask(0o177);
  try {
    await new Promise<void>((resolveListen, rejectListen) => {
      server.once('error', rejectListen);
      server.listen(path, () => {
        server.off('error', rejectListen);
        resolveListen();
      });
    });
  } finally {
    process.umask(oldUmask);
  }
  chmodSync(path, 0o600);
  const ino = statSync(path).ino;
  server.on('error', (err) => log.error('control socket error', { err, path }));
  let closed: Promise<void> | undefined;
  return {
    path,
    close() {
      closed ??= new Promise<void>((resolveClose) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolveClose());
        try {
          if (statSync(path).ino === ino) unlinkSync(path);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') log.warn('cannot remove control socket', { err, path });
        }
      });
      return closed;
    },
  };
}

function serveConnection(sock: Socket, handlers: ControlHandlers, log: Logger, idleMs: number, sockets: Set<Socket>): void {
  sockets.add(sock);
  sock.setEncoding('utf8');
  sock.setTimeout(idleMs, () => sock.destroy());
  sock.on('close', () => sockets.delete(sock));
  sock.on('error', (err) => log.debug('control connection error', { err }));
  let buf = '';
  let queue: Promise<void> = Promise.resolve();
  const tooLong = (): void => {
    buf = '';
    sock.removeAllListeners('data');
    // after the answers already queued
    queue = queue.then(() => void sock.end(encodeAnswer(errorAnswer(null, 'ERR_CONTROL_PROTOCOL', `request line over ${CONTROL_MAX_LINE} bytes`))));
  };
  sock.on('data', (chunk: string) => {
    buf += chunk;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line.trim() === '') continue;
      if (Buffer.byteLength(line) > CONTROL_MAX_LINE) {
        tooLong();
        return;
      }
      // Answer in order: each request waits for the previous answer.
      queue = queue.then(() => answer(line, handlers, log).then((out) => void (sock.writable && sock.write(encodeAnswer(out)))));
    }
    if (Buffer.byteLength(buf) > CONTROL_MAX_LINE) tooLong();
  });
}

type Answer = ControlAnswer;

/**
 * Step 3 for one line: decode (`@cluevpn/control`: JSON, version, command),
 * dispatch. Never throws: every failure becomes an error answer. Exported
 * for tests.
 */
export async function answer(line: string, handlers: ControlHandlers, log: Logger): Promise<Answer> {
  let req: ControlRequest;
  try {
    req = decodeRequest(line);
  } catch (err) {
    if (err instanceof ControlProtocolError) return errorAnswer(err.id, err.code, err.message);
    throw err;
  }
  const { id, cmd } = req;
  const fail = (code: string, message: string): Answer => errorAnswer(id, code, message);
  try {
    let result: unknown;
    switch (cmd) {
      case 'status':
        result = await handlers.status();
        break;
      case 'peers':
        result = await handlers.peers();
        break;
      case 'bnl-status':
        result = await handlers.bnlStatus();
        break;
      case 'set-log-level': {
        const level = req.args.level;
        if (typeof level !== 'number' || !Number.isInteger(level) || level < 0 || level > 7) {
          return fail('ERR_CONTROL_BAD_REQUEST', 'level must be an integer 0–7');
        }
        result = handlers.setLogLevel(level);
        break;
      }
      case 'reload-and-push':
        result = await handlers.reloadAndPush();
        break;
      default:
        return fail('ERR_CONTROL_UNKNOWN_COMMAND', `unknown command ${JSON.stringify(cmd)}`);
    }
    log.debug('control request', { request: String(cmd) });
    return resultAnswer(id, result);
  } catch (err) {
    const code = err instanceof DaemonError ? err.code : 'ERR_CONTROL_FAILED';
    log.warn('control request failed', { request: String(cmd), err });
    return fail(code, (err as Error).message ?? String(err));
  }
}
