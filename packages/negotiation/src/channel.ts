/**
 * The control channel: TCP + TLS 1.3 with mutual authentication, carrying
 * the framed request/response protocol of `framing.ts`.
 *
 * Server pipeline for one connection:
 *   1. accept (plain TCP): total and per-IP connection caps; over a cap the
 *      socket is destroyed before any TLS work (counted `too-many-connections`
 *      / `too-many-from-ip`);
 *   2. TLS handshake, bounded by `handshakeTimeoutMs` and by OpenSSL's
 *      handshake message limits; garbage fails at the first record
 *      (counted `tls-error`, `handshake-timeout`);
 *   3. chain check against the network CA (`socket.authorized`): the
 *      server asks for a certificate with `rejectUnauthorized: false` only
 *      so that it learns *why* a peer failed (no certificate, untrusted,
 *      expired) and can count it; an unverified socket is destroyed before
 *      a single application byte is read;
 *   4. bytes read before authentication ≤ `maxPreAuthBytes`: one timer
 *      checks every connection still in its handshake each 20 ms (cut as
 *      soon as one is over) and each is checked once more when it completes;
 *   5. `authorize(identity)`: BNL membership, pin, OU (see `authorizePeer`);
 *   6. frames (cap checked on the header), requests dispatched one at a
 *      time to the handler registered for their `type`; idle time-out.
 *
 * The client verifies the server's chain (`rejectUnauthorized: true`),
 * that the server's CN is the node it meant to reach, and then the same
 * `authorize` checks.
 */
import net from 'node:net';
import tls from 'node:tls';
import { fingerprintDer } from './ca.js';
import { authorizePeer, reasonForVerifyError, type AuthDecision, type PeerIdentity, type PeerPolicy } from './authorize.js';
import { ChannelError, PeerRefusedError, type RefusalReason } from './errors.js';
import { CONTROL_PROTOCOL_VERSION, FrameDecoder, encodeFrame, parseMessage, type ControlMessage, type ErrorMessage, type RequestMessage, type ResponseMessage } from './framing.js';
import { silentLogger, type Logger } from './logger.js';

/** Specification: TLS exporter label (RFC 8446 §7.5) of the control channel. */
export const EXPORTER_LABEL = 'EXPORTER-cluevpn-control-v1';
/** Specification: bytes of the exporter value handed to handlers. */
export const EXPORTER_BYTES = 32;

/** Our TLS credentials and the network CA (PEM). `keyPem` is secret. */
export interface ControlCredentials {
  keyPem: string;
  certPem: string;
  caPem: string;
}

/** Resource bounds of the control channel. */
export interface ControlLimits {
  /** TLS handshake must finish within this (server and client). */
  handshakeTimeoutMs: number;
  /** An authenticated connection with no traffic for this long is closed. */
  idleTimeoutMs: number;
  /** Simultaneous connections the server keeps (ClueVPN: 200). */
  maxConnections: number;
  /** Simultaneous connections from one IP address. */
  maxConnectionsPerIp: number;
  /** Largest frame body accepted or sent. */
  maxFrameBytes: number;
  /** Raw bytes a peer may send before it is authenticated. */
  maxPreAuthBytes: number;
  /** Requests queued on one server connection before it is cut off. */
  maxQueuedRequests: number;
  /** A client request without an answer after this long fails with `ERR_CHANNEL_TIMEOUT`. */
  requestTimeoutMs: number;
}

/** Implementation defaults of `ControlLimits`. */
/** Implementation: how often a connection's byte count is checked during the handshake. */
const PRE_AUTH_WATCH_MS = 20;

export const DEFAULT_CONTROL_LIMITS: Readonly<ControlLimits> = Object.freeze({
  handshakeTimeoutMs: 5_000,
  idleTimeoutMs: 60_000,
  maxConnections: 200,
  maxConnectionsPerIp: 16,
  maxFrameBytes: 2 * 1024 * 1024,
  maxPreAuthBytes: 64 * 1024,
  maxQueuedRequests: 8,
  requestTimeoutMs: 10_000,
});

/** What a request handler learns about the connection it runs on. */
export interface RequestContext {
  /** The authenticated peer. */
  readonly peer: PeerIdentity;
  /** Unique per connection within this process. */
  readonly connectionId: number;
  /** Remote IP address. */
  readonly remoteAddress: string;
  /** TLS exporter value of this connection (borrowed: zeroed when the connection closes). */
  readonly exporter: Buffer;
  /** Per-connection state for handlers (dropped on close). */
  readonly state: Map<string, unknown>;
  /** Registers a callback run once when the connection closes. */
  onClose(fn: () => void): void;
}

/**
 * Handles one request type; its return value is the response body. A
 * thrown error with a string `code` is sent as that error code; any other
 * throw is logged and sent as `ERR_INTERNAL`.
 */
export type RequestHandler = (body: unknown, ctx: RequestContext) => unknown | Promise<unknown>;

/** Counters of a control server (monotonic except `connections`). */
export interface ControlStats {
  /** Currently open connections. */
  connections: number;
  /** Connections that passed authorisation. */
  accepted: number;
  /** Refused connections by reason (`RefusalReason`, `too-many-connections`, `too-many-from-ip`, `tls-error`, `handshake-timeout`). */
  refused: Record<string, number>;
  /** Authenticated connections cut off, by reason (`idle-timeout`, `frame-too-large`, `protocol-error`, `queue-full`). */
  cutOff: Record<string, number>;
}

/** Options of `createControlServer`. */
export interface ControlServerOptions {
  /** Address to listen on; '::' is every address, IPv4 included (dual stack; IPv4 only where IPv6 is off). */
  host: string;
  /** TCP port (0 = any; read it back from `port`). Default deployment: 3406, the data-plane port number. */
  port: number;
  credentials: ControlCredentials;
  /** The daemon's membership/pin/OU check, usually `(id) => authorizePeer(id, policy)`. */
  authorize: (id: PeerIdentity) => AuthDecision;
  limits?: Partial<ControlLimits>;
  logger?: Logger;
}

/** A listening control server. */
export interface ControlServer {
  readonly host: string;
  readonly port: number;
  /** Registers (or replaces) the handler of request type `type`. */
  handle(type: string, handler: RequestHandler): void;
  /** A snapshot of the counters. */
  stats(): ControlStats;
  /** Stops listening and destroys every open connection. */
  close(): Promise<void>;
}

function bump(rec: Record<string, number>, key: string): void {
  rec[key] = (rec[key] ?? 0) + 1;
}

function normIp(addr: string | undefined): string {
  if (!addr) return '?';
  return addr.startsWith('::ffff:') ? addr.slice(7) : addr;
}

function identityOf(socket: tls.TLSSocket): PeerIdentity | undefined {
  const cert = socket.getPeerCertificate();
  if (!cert || !cert.raw) return undefined;
  const cn = cert.subject?.CN;
  const ou = cert.subject?.OU;
  return {
    name: Array.isArray(cn) ? String(cn[0]) : String(cn ?? ''),
    fingerprint: fingerprintDer(cert.raw).hex,
    ou: ou === undefined ? undefined : Array.isArray(ou) ? String(ou[0]) : String(ou),
  };
}

let nextConnectionId = 1;

/**
 * Creates and starts a control server; resolves once it listens. The
 * caller must `close()` it. Rejects with the listen error (e.g. EADDRINUSE).
 */
export async function createControlServer(opts: ControlServerOptions): Promise<ControlServer> {
  const limits: ControlLimits = { ...DEFAULT_CONTROL_LIMITS, ...opts.limits };
  const log = opts.logger ?? silentLogger;
  const handlers = new Map<string, RequestHandler>();
  const stats: ControlStats = { connections: 0, accepted: 0, refused: {}, cutOff: {} };
  const perIp = new Map<string, number>();
  const raws = new Map<string, net.Socket>();
  const open = new Set<net.Socket>();
  // Connections still in the handshake, checked together by one timer
  // (not one per connection: a flood of stalled handshakes costs one wake-up).
  const handshaking = new Map<net.Socket, string>();
  let watchTimer: NodeJS.Timeout | undefined;
  const stopWatchIfIdle = (): void => {
    if (handshaking.size === 0 && watchTimer !== undefined) {
      clearInterval(watchTimer);
      watchTimer = undefined;
    }
  };
  const watchPreAuth = (): void => {
    for (const [raw, ip] of handshaking) {
      if (raw.bytesRead <= limits.maxPreAuthBytes) continue;
      handshaking.delete(raw);
      bump(stats.refused, 'pre-auth-bytes');
      log.warn('control connection refused', { reason: 'pre-auth-bytes', endpoint: ip, err: `${raw.bytesRead} bytes during the handshake` });
      raw.destroy();
    }
    stopWatchIfIdle();
  };
  const unwatch = (raw: net.Socket): void => {
    handshaking.delete(raw);
    stopWatchIfIdle();
  };

  const tlsServer = tls.createServer({
    key: opts.credentials.keyPem,
    cert: opts.credentials.certPem,
    ca: [opts.credentials.caPem],
    minVersion: 'TLSv1.3',
    requestCert: true,
    rejectUnauthorized: false, // checked in secureConnection, see step 3 above
    handshakeTimeout: limits.handshakeTimeoutMs,
  });

  const refuse = (socket: tls.TLSSocket, reason: RefusalReason, detail: string, addr: string): void => {
    bump(stats.refused, reason);
    log.warn('control connection refused', { reason, endpoint: addr, err: detail });
    socket.destroy();
  };

  tlsServer.on('tlsClientError', (err: NodeJS.ErrnoException, socket: tls.TLSSocket) => {
    const reason = err.code === 'ERR_TLS_HANDSHAKE_TIMEOUT' ? 'handshake-timeout' : 'tls-error';
    bump(stats.refused, reason);
    log.debug('control handshake failed', { reason, endpoint: normIp(socket.remoteAddress), err: err.code ?? err.message });
    socket.destroy();
  });

  tlsServer.on('secureConnection', (socket: tls.TLSSocket) => {
    const addr = normIp(socket.remoteAddress);
    const raw = raws.get(`${socket.remoteAddress}|${socket.remotePort}`);
    if (raw !== undefined) unwatch(raw);
    const id = identityOf(socket);
    if (!socket.authorized || id === undefined) {
      const err = socket.authorizationError;
      const reason = reasonForVerifyError(typeof err === 'string' ? err : err?.message, id !== undefined);
      refuse(socket, reason, String(err ?? 'no certificate'), addr);
      return;
    }
    if (raw !== undefined && raw.bytesRead > limits.maxPreAuthBytes) {
      refuse(socket, 'pre-auth-bytes', `${raw.bytesRead} bytes before authentication`, addr);
      return;
    }
    const decision = opts.authorize(id);
    if (!decision.ok) {
      refuse(socket, decision.reason, decision.detail, addr);
      return;
    }
    stats.accepted++;
    serveConnection(socket, id, addr);
  });

  const serveConnection = (socket: tls.TLSSocket, peer: PeerIdentity, addr: string): void => {
    const exporter = socket.exportKeyingMaterial(EXPORTER_BYTES, EXPORTER_LABEL, Buffer.alloc(0));
    const closers: Array<() => void> = [];
    const ctx: RequestContext = {
      peer,
      connectionId: nextConnectionId++,
      remoteAddress: addr,
      exporter,
      state: new Map(),
      onClose: (fn) => closers.push(fn),
    };
    const decoder = new FrameDecoder(limits.maxFrameBytes);
    let queued = 0;
    let chain: Promise<void> = Promise.resolve();
    const cut = (reason: string, detail: string): void => {
      bump(stats.cutOff, reason);
      log.info('control connection cut off', { peer: peer.name, reason, err: detail });
      socket.destroy();
    };
    const send = (msg: ControlMessage): void => {
      if (socket.destroyed) return;
      try {
        socket.write(encodeFrame(msg, limits.maxFrameBytes));
      } catch (err) {
        const code = (err as { code?: string }).code ?? 'ERR_INTERNAL';
        if (msg.type !== 'error') {
          socket.write(encodeFrame({ v: CONTROL_PROTOCOL_VERSION, type: 'error', id: msg.id, code, message: 'response too large' }, limits.maxFrameBytes));
        } else {
          cut('protocol-error', String(err));
        }
      }
    };
    const dispatch = async (frame: Buffer): Promise<void> => {
      let msg: ControlMessage;
      try {
        msg = parseMessage(frame);
      } catch (err) {
        cut('protocol-error', (err as Error).message);
        return;
      }
      if (msg.v !== CONTROL_PROTOCOL_VERSION) {
        send({ v: CONTROL_PROTOCOL_VERSION, type: 'error', id: msg.id, code: 'ERR_VERSION', message: `protocol version ${CONTROL_PROTOCOL_VERSION} only` });
        socket.end();
        return;
      }
      if (msg.type === 'response' || msg.type === 'error') {
        cut('protocol-error', 'client sent a response');
        return;
      }
      const handler = handlers.get(msg.type);
      if (!handler) {
        send({ v: CONTROL_PROTOCOL_VERSION, type: 'error', id: msg.id, code: 'ERR_UNKNOWN_TYPE', message: `no handler for ${msg.type}` });
        return;
      }
      try {
        const body = await handler((msg as RequestMessage).body, ctx);
        send({ v: CONTROL_PROTOCOL_VERSION, type: 'response', id: msg.id, body: body ?? null });
      } catch (err) {
        const code = (err as { code?: unknown }).code;
        if (typeof code === 'string' && code.startsWith('ERR_')) {
          log.debug('control request failed', { peer: peer.name, type: msg.type, err: code });
          send({ v: CONTROL_PROTOCOL_VERSION, type: 'error', id: msg.id, code, message: (err as Error).message });
        } else {
          log.error('control handler threw', { peer: peer.name, type: msg.type, err: String(err) });
          send({ v: CONTROL_PROTOCOL_VERSION, type: 'error', id: msg.id, code: 'ERR_INTERNAL', message: 'internal error' });
        }
      }
    };
    socket.setTimeout(limits.idleTimeoutMs);
    socket.on('timeout', () => cut('idle-timeout', `no traffic for ${limits.idleTimeoutMs} ms`));
    socket.on('data', (chunk: Buffer) => {
      let frames: Buffer[];
      try {
        frames = decoder.push(chunk);
      } catch (err) {
        cut('frame-too-large', (err as Error).message);
        return;
      }
      for (const f of frames) {
        if (++queued > limits.maxQueuedRequests) {
          cut('queue-full', `more than ${limits.maxQueuedRequests} requests queued`);
          return;
        }
        chain = chain.then(() => dispatch(f)).finally(() => {
          queued--;
        });
      }
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      log.debug('control connection error', { peer: peer.name, err: err.code ?? err.message });
    });
    socket.on('close', () => {
      for (const fn of closers.splice(0)) {
        try {
          fn();
        } catch (err) {
          log.error('control close callback threw', { peer: peer.name, err: String(err) });
        }
      }
      ctx.state.clear();
      exporter.fill(0);
    });
  };

  const netServer = net.createServer({ pauseOnConnect: false }, (raw) => {
    const ip = normIp(raw.remoteAddress);
    if (stats.connections >= limits.maxConnections) {
      bump(stats.refused, 'too-many-connections');
      log.debug('control connection refused', { reason: 'too-many-connections', endpoint: ip });
      raw.destroy();
      return;
    }
    const n = perIp.get(ip) ?? 0;
    if (n >= limits.maxConnectionsPerIp) {
      bump(stats.refused, 'too-many-from-ip');
      log.debug('control connection refused', { reason: 'too-many-from-ip', endpoint: ip });
      raw.destroy();
      return;
    }
    stats.connections++;
    perIp.set(ip, n + 1);
    open.add(raw);
    const key = `${raw.remoteAddress}|${raw.remotePort}`;
    raws.set(key, raw);
    // Step 4 during the handshake too: OpenSSL reads a ClientHello of up to
    // 128 KiB while it waits, so watch the raw byte count until the peer is
    // authenticated (secureConnection clears the watch) or gone.
    handshaking.set(raw, ip);
    if (watchTimer === undefined) {
      watchTimer = setInterval(watchPreAuth, PRE_AUTH_WATCH_MS);
      watchTimer.unref();
    }
    raw.on('error', (err: NodeJS.ErrnoException) => log.debug('control socket error', { endpoint: ip, err: err.code ?? err.message }));
    raw.once('close', () => {
      unwatch(raw);
      stats.connections--;
      const left = (perIp.get(ip) ?? 1) - 1;
      if (left <= 0) perIp.delete(ip);
      else perIp.set(ip, left);
      raws.delete(key);
      open.delete(raw);
    });
    tlsServer.emit('connection', raw);
  });

  await new Promise<void>((resolve, reject) => {
    netServer.once('error', reject);
    const listening = (): void => {
      netServer.off('error', reject);
      resolve();
    };
    // '::' without naming it: Node binds the dual-stack unspecified address
    // (0.0.0.0 where IPv6 is off) without first checking the literal with its
    // IPv6 expression, which costs ~13 ms of every daemon start to compile.
    if (opts.host === '::') netServer.listen(opts.port, listening);
    else netServer.listen(opts.port, opts.host, listening);
  });
  netServer.on('error', (err) => log.error('control server error', { err: String(err) }));
  const address = netServer.address() as net.AddressInfo;

  return {
    host: opts.host,
    port: address.port,
    handle(type, handler) {
      handlers.set(type, handler);
    },
    stats() {
      return { connections: stats.connections, accepted: stats.accepted, refused: { ...stats.refused }, cutOff: { ...stats.cutOff } };
    },
    close() {
      return new Promise<void>((resolve) => {
        netServer.close(() => resolve());
        for (const s of open) s.destroy();
        handshaking.clear();
        stopWatchIfIdle();
      });
    },
  };
}

/** Options of `connectControl`. */
export interface ConnectOptions {
  host: string;
  port: number;
  /** The node we mean to reach: the server certificate's CN must equal it. */
  peerName: string;
  credentials: ControlCredentials;
  /** Membership/pin/OU check of the server (usually `authorizePeer` with the daemon's policy); default: accept any chain-verified server named `peerName`. */
  authorize?: (id: PeerIdentity) => AuthDecision;
  limits?: Partial<ControlLimits>;
  logger?: Logger;
}

/** An authenticated client connection. */
export interface ControlConnection {
  /** The server's verified identity. */
  readonly peer: PeerIdentity;
  /** TLS exporter value of this connection (borrowed: zeroed on close). */
  readonly exporter: Buffer;
  /** Sends a request; resolves with the response body, rejects with `ChannelError` (`ERR_CHANNEL_REMOTE` carries `remoteCode`). */
  request(type: string, body: unknown): Promise<unknown>;
  /** Closes the connection; pending requests reject with `ERR_CHANNEL_CLOSED`. */
  close(): void;
}

/**
 * One TLS context per credentials object, shared by every outgoing
 * connection: parsing the key and certificates for each attempt cost CPU
 * and OpenSSL heap on a node that retries hundreds of unreachable peers.
 * New credentials (another object) get a new context.
 */
const clientContexts = new WeakMap<ControlCredentials, tls.SecureContext>();
function clientContext(c: ControlCredentials): tls.SecureContext {
  let ctx = clientContexts.get(c);
  if (ctx === undefined) {
    ctx = tls.createSecureContext({ key: c.keyPem, cert: c.certPem, ca: [c.caPem], minVersion: 'TLSv1.3' });
    clientContexts.set(c, ctx);
  }
  return ctx;
}

/**
 * Connects to a control server and authenticates it. Rejects with
 * `PeerRefusedError` (reason: chain failure, `wrong-peer`, or the
 * `authorize` reason) or `ChannelError` (`ERR_CHANNEL_TIMEOUT`, `ERR_CHANNEL_CLOSED`).
 */
export function connectControl(opts: ConnectOptions): Promise<ControlConnection> {
  const limits: ControlLimits = { ...DEFAULT_CONTROL_LIMITS, ...opts.limits };
  const log = opts.logger ?? silentLogger;
  return new Promise<ControlConnection>((resolve, reject) => {
    let settled = false;
    const socket = tls.connect({
      host: opts.host,
      port: opts.port,
      secureContext: clientContext(opts.credentials),
      minVersion: 'TLSv1.3',
      rejectUnauthorized: true,
      checkServerIdentity: (_host, cert) => {
        const cn = cert.subject?.CN;
        return cn === opts.peerName ? undefined : new PeerRefusedError('wrong-peer', `reached "${String(cn)}" instead of "${opts.peerName}"`);
      },
    });
    const fail = (err: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(hsTimer);
      socket.destroy();
      reject(err);
    };
    const hsTimer = setTimeout(() => fail(new ChannelError('ERR_CHANNEL_TIMEOUT', `TLS handshake with ${opts.peerName} timed out`)), limits.handshakeTimeoutMs);
    socket.once('error', (err: NodeJS.ErrnoException) => {
      if (err instanceof PeerRefusedError) return fail(err);
      const code = err.code ?? '';
      if (/CERT|UNABLE_TO|SELF_SIGNED|VERIFY/.test(code)) {
        return fail(new PeerRefusedError(reasonForVerifyError(code, true), `server certificate of ${opts.peerName} refused: ${code}`, { cause: err }));
      }
      fail(new ChannelError('ERR_CHANNEL_CLOSED', `control connection to ${opts.peerName} failed: ${code || err.message}`, { cause: err }));
    });
    socket.once('close', () => fail(new ChannelError('ERR_CHANNEL_CLOSED', `control connection to ${opts.peerName} closed during the handshake`)));
    socket.once('secureConnect', () => {
      const id = identityOf(socket);
      if (id === undefined) return fail(new PeerRefusedError('no-certificate', 'server sent no certificate'));
      const decision = opts.authorize ? opts.authorize(id) : ({ ok: true } as AuthDecision);
      if (!decision.ok) return fail(new PeerRefusedError(decision.reason, decision.detail));
      settled = true;
      clearTimeout(hsTimer);
      resolve(clientConnection(socket, id, limits, log));
    });
  });
}

function clientConnection(socket: tls.TLSSocket, peer: PeerIdentity, limits: ControlLimits, log: Logger): ControlConnection {
  const exporter = socket.exportKeyingMaterial(EXPORTER_BYTES, EXPORTER_LABEL, Buffer.alloc(0));
  const decoder = new FrameDecoder(limits.maxFrameBytes);
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  let nextId = 1;
  let closedErr: Error | undefined;
  const failAll = (err: Error): void => {
    if (closedErr) return;
    closedErr = err;
    for (const p of pending.values()) {
      clearTimeout(p.timer);
      p.reject(err);
    }
    pending.clear();
    socket.destroy();
    exporter.fill(0);
  };
  socket.on('data', (chunk: Buffer) => {
    let frames: Buffer[];
    try {
      frames = decoder.push(chunk);
    } catch (err) {
      return failAll(err as Error);
    }
    for (const f of frames) {
      let msg: ControlMessage;
      try {
        msg = parseMessage(f);
      } catch (err) {
        return failAll(err as Error);
      }
      const p = pending.get(msg.id);
      if (!p || (msg.type !== 'response' && msg.type !== 'error')) {
        return failAll(new ChannelError('ERR_CHANNEL_PROTOCOL', `unexpected ${msg.type} #${msg.id} from ${peer.name}`));
      }
      pending.delete(msg.id);
      clearTimeout(p.timer);
      if (msg.type === 'response') {
        p.resolve((msg as ResponseMessage).body);
      } else {
        const e = msg as ErrorMessage;
        p.reject(new ChannelError('ERR_CHANNEL_REMOTE', `${peer.name} answered ${e.code}: ${e.message}`, { remoteCode: e.code }));
      }
    }
  });
  socket.on('error', (err: NodeJS.ErrnoException) => {
    log.debug('control connection error', { peer: peer.name, err: err.code ?? err.message });
    failAll(new ChannelError('ERR_CHANNEL_CLOSED', `control connection to ${peer.name} failed`, { cause: err }));
  });
  socket.on('close', () => failAll(new ChannelError('ERR_CHANNEL_CLOSED', `control connection to ${peer.name} closed`)));
  return {
    peer,
    exporter,
    request(type, body) {
      if (closedErr) return Promise.reject(closedErr);
      const id = nextId++;
      let frame: Buffer;
      try {
        frame = encodeFrame({ v: CONTROL_PROTOCOL_VERSION, type, id, body }, limits.maxFrameBytes);
      } catch (err) {
        return Promise.reject(err as Error);
      }
      return new Promise<unknown>((resolve, reject) => {
        const timer = setTimeout(() => {
          pending.delete(id);
          reject(new ChannelError('ERR_CHANNEL_TIMEOUT', `${type} to ${peer.name} got no answer in ${limits.requestTimeoutMs} ms`));
        }, limits.requestTimeoutMs);
        pending.set(id, { resolve, reject, timer });
        socket.write(frame);
      });
    },
    close() {
      failAll(new ChannelError('ERR_CHANNEL_CLOSED', `control connection to ${peer.name} closed locally`));
    },
  };
}

/** Convenience: an `authorize` function for `createControlServer` / `connectControl` from a `PeerPolicy`. */
export function policyAuthorizer(policy: PeerPolicy): (id: PeerIdentity) => AuthDecision {
  return (id) => authorizePeer(id, policy);
}
