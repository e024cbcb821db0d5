/**
 * The control channel: TCP + TLS 1.3 with mutual authentication, carrying
 * the framed request/response protocol of `framing.ts`.
 *
 * Server pipeline for one connection:
 *   1. accept (plain TCP), before any TLS work (see `admission.ts`):
 *      a. handshake rate per source (token bucket; a source is the exact
 *         address of a listed member endpoint, else its /24 or /64),
 *         counted `rate-limited`;
 *      b. total and per-IP connection caps (`too-many-connections`,
 *         `too-many-from-ip`);
 *      c. the budget of sockets not yet authenticated: sources that are
 *         listed member endpoints (`isListedSource`) have their own
 *         reserved budget, everyone else shares `maxUnauthenticated`, at
 *         most `maxUnauthenticatedPerPrefix` per /24 or /64
 *         (`too-many-from-prefix`); a full budget evicts its oldest socket
 *         (`evicted`) to make room;
 *   2. TLS handshake, bounded by `firstByteTimeoutMs` (no byte at all),
 *      `handshakeTimeoutMs` and by OpenSSL's handshake message limits;
 *      garbage fails at the first record (counted `first-byte-timeout`,
 *      `tls-error`, `handshake-timeout`);
 *   3. chain check against the network CA (`socket.authorized`): the
 *      server asks for a certificate with `rejectUnauthorized: false` only
 *      so that it learns *why* a peer failed (no certificate, untrusted,
 *      expired) and can count it; an unverified socket is destroyed before
 *      a single application byte is read;
 *   4. bytes read before authentication ≤ `maxPreAuthBytes`: one timer
 *      checks every connection still in its handshake each 20 ms (cut as
 *      soon as one is over; also the first-byte timeout) and each is
 *      checked once more when it completes;
 *   5. `authorize(identity)`: BNL membership, pin, OU (see `authorizePeer`);
 *      the socket leaves the pre-auth budget;
 *   6. frames (cap checked on the header), requests dispatched one at a
 *      time to the handler registered for their `type`, each authorised
 *      again against the current policy first (a revoked or re-pinned peer
 *      gets `ERR_PEER_REFUSED` and the connection is closed); idle time-out.
 *      `recheck()` re-runs `authorize` on every open connection (the daemon
 *      calls it for every accepted list) and closes those that fail.
 *
 * Refusals are logged through a `RefusalLog`: per address and reason, the
 * first of an interval, then one line with the count.
 *
 * The client verifies the server's chain (`rejectUnauthorized: true`),
 * that the server's CN is the node it meant to reach, and then the same
 * `authorize` checks — again before every request and on `recheck()`.
 *
 * Resumption: a client keeps the TLS 1.3 session ticket of its last direct
 * connection to each peer (per credentials, at most `RESUME_CACHE_MAX`,
 * up to `RESUME_LIFETIME_S` and never past the server certificate's end)
 * and offers it on the next one. A resumed handshake has no certificate
 * signature (the costly RSA work of a full one: about a third of the CPU
 * per connection), but keeps an (EC)DHE exchange, so the exporter and the
 * negotiated keys stay forward secret and unique per connection. Both ends
 * still authorise the peer against the current list (`authorize`: member,
 * pin, OU) on every connection and request: the server reads the client's
 * certificate from the session and checks its dates again; the client uses
 * the identity its full handshake authenticated (only the server that
 * issued the ticket can complete the resumption). New credentials (a CA
 * rollover) make a new client context with an empty cache, and rotate the
 * server's ticket keys, so nothing verified under the old CAs is resumed.
 */
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { RefusalLog, TokenBuckets, sourcePrefix, type RefusalLevel } from './admission.js';
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
  /** Sockets not yet authenticated from sources that are not listed member endpoints; when full, the oldest is evicted. */
  maxUnauthenticated: number;
  /** Of those, at most this many from one IPv4 /24 or IPv6 /64; more are refused. */
  maxUnauthenticatedPerPrefix: number;
  /** Sockets not yet authenticated from listed member endpoints (`isListedSource`), kept apart from `maxUnauthenticated`; when full, the oldest of them is evicted. */
  reservedUnauthenticated: number;
  /** A socket that has sent no byte this long after it was accepted is closed. */
  firstByteTimeoutMs: number;
  /** Handshakes per second per source (token bucket refill), checked before any TLS work. */
  handshakesPerSecond: number;
  /** Handshakes a source may start at once (token bucket size). */
  handshakeBurst: number;
  /** Refusals are logged once per address and reason in this interval, then summed up in one line. */
  refusalLogIntervalMs: number;
  /** Largest frame body accepted or sent. */
  maxFrameBytes: number;
  /** Raw bytes a peer may send before it is authenticated. */
  maxPreAuthBytes: number;
  /** Requests queued on one server connection before it is cut off. */
  maxQueuedRequests: number;
  /** A client request without an answer after this long fails with `ERR_CHANNEL_TIMEOUT`. */
  requestTimeoutMs: number;
}

/** Implementation: how often a connection's byte count is checked during the handshake. */
const PRE_AUTH_WATCH_MS = 20;

/** Implementation defaults of `ControlLimits`. */
export const DEFAULT_CONTROL_LIMITS: Readonly<ControlLimits> = Object.freeze({
  handshakeTimeoutMs: 5_000,
  idleTimeoutMs: 60_000,
  maxConnections: 200,
  maxConnectionsPerIp: 16,
  maxUnauthenticated: 64,
  maxUnauthenticatedPerPrefix: 16,
  reservedUnauthenticated: 32,
  firstByteTimeoutMs: 1_000,
  handshakesPerSecond: 10,
  handshakeBurst: 32,
  refusalLogIntervalMs: 60_000,
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
  /**
   * Takes the connection out of frame mode once the response to this
   * request has been written: `onStream` then gets the TLS socket, and its
   * bytes both ways are the caller's (the relay splices two such streams,
   * `packages/daemon/src/relay.ts`). The client must send nothing after the
   * request until it has the response (else the connection is cut as a
   * protocol error). Recheck, revocation and the idle timeout still apply.
   */
  upgrade(onStream: (stream: tls.TLSSocket) => void): void;
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
  /** Currently open connections not yet authenticated (both budgets). */
  unauthenticated: number;
  /** Connections that passed authorisation. */
  accepted: number;
  /** TLS handshakes started (connections that passed every check of step 1). */
  handshakesStarted: number;
  /** Of the accepted connections, those that resumed a TLS session (no certificate signature: see "Resumption"). */
  resumed: number;
  /** Refused connections by reason (`RefusalReason`, `rate-limited`, `too-many-connections`, `too-many-from-ip`, `too-many-from-prefix`, `evicted`, `first-byte-timeout`, `tls-error`, `handshake-timeout`). */
  refused: Record<string, number>;
  /** Authenticated connections cut off, by reason (`idle-timeout`, `frame-too-large`, `protocol-error`, `queue-full`, `revoked`). */
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
  /**
   * True when `ip` (normalised: no `::ffff:` prefix) is a member endpoint
   * listed in the BNL: its unauthenticated sockets use the reserved budget,
   * and its rate limit is its own rather than its /24's or /64's.
   * Default: none is.
   */
  isListedSource?: (ip: string) => boolean;
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
  /**
   * Runs `authorize` again for every open authenticated connection (after
   * the node list changed) and closes those it refuses now (counted
   * `cutOff.revoked`). Returns how many were closed.
   */
  recheck(): number;
  /**
   * Uses `credentials` for every handshake from now on (the certificate we
   * present, our key, the CAs a client's chain must verify against); open
   * connections keep what they were authenticated with. The caller checks
   * the credentials first (`loadCredentials`): a key that does not match its
   * certificate throws here and changes nothing.
   */
  setCredentials(credentials: ControlCredentials): void;
  /**
   * Runs the server side (TLS handshake, authorisation, requests) over a
   * stream that is already connected: the reverse leg a node behind NAT
   * opens to a relay (`packages/daemon/src/relay.ts`). The TLS handshake
   * timeout applies; the pre-TLS admission of step 1 is the caller's.
   */
  adopt(stream: tls.TLSSocket | net.Socket): void;
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

/** The TLS context of our credentials, server and client alike (a `caPem` bundle may hold several CAs). */
const contextOptions = (c: ControlCredentials): tls.SecureContextOptions => ({ key: c.keyPem, cert: c.certPem, ca: [c.caPem], minVersion: 'TLSv1.3' });

/** A socket of step 1–4: accepted, not yet authenticated. */
interface Unauthenticated {
  ip: string;
  /** Rate-limit and refusal-log key: the exact address of a listed endpoint, else its /24 or /64. */
  source: string;
  /** From a listed member endpoint: counted against the reserved budget. */
  listed: boolean;
  acceptedAt: number;
}

/**
 * Creates and starts a control server; resolves once it listens. The
 * caller must `close()` it. Rejects with the listen error (e.g. EADDRINUSE).
 */
export async function createControlServer(opts: ControlServerOptions): Promise<ControlServer> {
  const limits: ControlLimits = { ...DEFAULT_CONTROL_LIMITS, ...opts.limits };
  const log = opts.logger ?? silentLogger;
  const handlers = new Map<string, RequestHandler>();
  const stats: ControlStats = { connections: 0, unauthenticated: 0, accepted: 0, handshakesStarted: 0, resumed: 0, refused: {}, cutOff: {} };
  const perIp = new Map<string, number>();
  const raws = new Map<string, net.Socket>();
  const open = new Set<net.Socket>();
  /** Authenticated connections and whom they authenticated, for `recheck`. */
  const authed = new Map<tls.TLSSocket, { peer: PeerIdentity; revoke: (reason: string, detail: string) => void }>();
  const buckets = new TokenBuckets(limits.handshakesPerSecond, limits.handshakeBurst);
  const refusals = new RefusalLog(log, limits.refusalLogIntervalMs);
  // Sockets not yet authenticated, oldest first (Map order), checked together
  // by one timer (not one per connection: a flood of stalled handshakes costs
  // one wake-up); the budgets of step 1c count them.
  const handshaking = new Map<net.Socket, Unauthenticated>();
  let listedCount = 0;
  const perPrefix = new Map<string, number>();
  /** Sockets this server cut during the handshake (already counted: TLS's error about them is not another refusal). */
  const cutByUs = new WeakSet<net.Socket>();
  let watchTimer: NodeJS.Timeout | undefined;

  // The log follows each address (what an operator looks for; several nodes may share a /24),
  // the rate limit and the caps its prefix; RefusalLog bounds the lines either way.
  const noteRefusal = (level: RefusalLevel, reason: string, u: { ip: string; source: string }, detail?: string): void => {
    bump(stats.refused, reason);
    refusals.note(level, u.ip, reason, detail === undefined ? { endpoint: u.ip } : { endpoint: u.ip, err: detail });
  };
  const stopWatchIfIdle = (): void => {
    if (handshaking.size === 0 && watchTimer !== undefined) {
      clearInterval(watchTimer);
      watchTimer = undefined;
    }
  };
  /** Takes a socket out of the pre-auth budget (authenticated, refused or gone). */
  const unwatch = (raw: net.Socket): void => {
    const u = handshaking.get(raw);
    if (u === undefined) return;
    handshaking.delete(raw);
    stats.unauthenticated--;
    if (u.listed) listedCount--;
    else {
      const left = (perPrefix.get(u.source) ?? 1) - 1;
      if (left <= 0) perPrefix.delete(u.source);
      else perPrefix.set(u.source, left);
    }
    stopWatchIfIdle();
  };
  const watchPreAuth = (): void => {
    const now = Date.now();
    for (const [raw, u] of handshaking) {
      if (raw.bytesRead > limits.maxPreAuthBytes) {
        unwatch(raw);
        cutByUs.add(raw);
        noteRefusal('warn', 'pre-auth-bytes', u, `${raw.bytesRead} bytes during the handshake`);
        raw.destroy();
      } else if (raw.bytesRead === 0 && now - u.acceptedAt >= limits.firstByteTimeoutMs) {
        unwatch(raw);
        cutByUs.add(raw);
        noteRefusal('debug', 'first-byte-timeout', u, `no byte in ${limits.firstByteTimeoutMs} ms`);
        raw.destroy();
      }
    }
    stopWatchIfIdle();
  };
  /** Evicts the oldest unauthenticated socket of one budget; false when it has none. */
  const evictOldest = (listed: boolean): boolean => {
    for (const [raw, u] of handshaking) {
      if (u.listed !== listed) continue;
      unwatch(raw);
      cutByUs.add(raw);
      noteRefusal('debug', 'evicted', u, 'oldest unauthenticated connection, budget full');
      raw.destroy();
      return true;
    }
    return false;
  };

  const tlsServer = tls.createServer({
    ...contextOptions(opts.credentials),
    requestCert: true,
    rejectUnauthorized: false, // checked in secureConnection, see step 3 above
    handshakeTimeout: limits.handshakeTimeoutMs,
    sessionTimeout: RESUME_LIFETIME_S, // lifetime of the session tickets we issue ("Resumption")
  });

  const refuse = (socket: tls.TLSSocket, reason: RefusalReason, detail: string, u: { ip: string; source: string }): void => {
    noteRefusal('warn', reason, u, detail);
    socket.destroy();
  };

  /**
   * The TCP socket under a TLS socket of this server. After a destroy the
   * TLS socket no longer knows its address, so Node's own link to the
   * wrapped socket (`_parent`) comes first.
   */
  const rawOf = (socket: tls.TLSSocket): net.Socket | undefined =>
    (socket as unknown as { _parent?: net.Socket })._parent ?? raws.get(`${socket.remoteAddress}|${socket.remotePort}`);

  tlsServer.on('tlsClientError', (err: NodeJS.ErrnoException, socket: tls.TLSSocket) => {
    const reason = err.code === 'ERR_TLS_HANDSHAKE_TIMEOUT' ? 'handshake-timeout' : 'tls-error';
    const raw = rawOf(socket);
    const ip = normIp(socket.remoteAddress ?? raw?.remoteAddress);
    if (raw === undefined || !cutByUs.has(raw)) {
      const u = (raw !== undefined ? handshaking.get(raw) : undefined) ?? { ip, source: sourcePrefix(ip) };
      noteRefusal('debug', reason, u, err.code ?? err.message);
    }
    socket.destroy();
  });

  tlsServer.on('secureConnection', (socket: tls.TLSSocket) => {
    const addr = normIp(socket.remoteAddress);
    const raw = rawOf(socket);
    const u = (raw !== undefined ? handshaking.get(raw) : undefined) ?? { ip: addr, source: sourcePrefix(addr) };
    if (raw !== undefined) unwatch(raw);
    const id = identityOf(socket);
    if (!socket.authorized || id === undefined) {
      const err = socket.authorizationError;
      const reason = reasonForVerifyError(typeof err === 'string' ? err : err?.message, id !== undefined);
      refuse(socket, reason, String(err ?? 'no certificate'), u);
      return;
    }
    if (raw !== undefined && raw.bytesRead > limits.maxPreAuthBytes) {
      refuse(socket, 'pre-auth-bytes', `${raw.bytesRead} bytes before authentication`, u);
      return;
    }
    // A resumed session's chain was verified when the ticket was issued; its dates are checked again now.
    const resumed = socket.isSessionReused();
    if (resumed && !withinValidity(socket.getPeerCertificate(), Date.now())) {
      refuse(socket, 'expired', 'resumed session of a certificate outside its validity', u);
      return;
    }
    const decision = opts.authorize(id);
    if (!decision.ok) {
      refuse(socket, decision.reason, decision.detail, u);
      return;
    }
    stats.accepted++;
    if (resumed) stats.resumed++;
    serveConnection(socket, id, addr);
  });

  const serveConnection = (socket: tls.TLSSocket, peer: PeerIdentity, addr: string): void => {
    const exporter = socket.exportKeyingMaterial(EXPORTER_BYTES, EXPORTER_LABEL, Buffer.alloc(0));
    const closers: Array<() => void> = [];
    let upgradeTo: ((stream: tls.TLSSocket) => void) | undefined;
    let upgraded = false;
    const ctx: RequestContext = {
      peer,
      connectionId: nextConnectionId++,
      remoteAddress: addr,
      exporter,
      state: new Map(),
      onClose: (fn) => closers.push(fn),
      upgrade: (fn) => {
        upgradeTo = fn;
      },
    };
    const decoder = new FrameDecoder(limits.maxFrameBytes);
    let queued = 0;
    let revoked = false;
    let chain: Promise<void> = Promise.resolve();
    const cut = (reason: string, detail: string): void => {
      bump(stats.cutOff, reason);
      log.info('control connection cut off', { peer: peer.name, reason, err: detail });
      socket.destroy();
    };
    /** The peer no longer passes `authorize`: no further request is served, the connection closes. */
    const revoke = (reason: string, detail: string): void => {
      if (revoked) return;
      revoked = true;
      authed.delete(socket);
      cut('revoked', `${reason}: ${detail}`);
    };
    authed.set(socket, { peer, revoke });
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
      if (revoked || socket.destroyed) return;
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
      // Every request against the current policy: the list may have revoked or re-pinned the peer since the handshake.
      const decision = opts.authorize(peer);
      if (!decision.ok) {
        send({ v: CONTROL_PROTOCOL_VERSION, type: 'error', id: msg.id, code: 'ERR_PEER_REFUSED', message: decision.reason });
        revoke(decision.reason, decision.detail);
        return;
      }
      const handler = handlers.get(msg.type);
      if (!handler) {
        send({ v: CONTROL_PROTOCOL_VERSION, type: 'error', id: msg.id, code: 'ERR_UNKNOWN_TYPE', message: `no handler for ${msg.type}` });
        return;
      }
      try {
        upgradeTo = undefined;
        const body = await handler((msg as RequestMessage).body, ctx);
        send({ v: CONTROL_PROTOCOL_VERSION, type: 'response', id: msg.id, body: body ?? null });
        const onStream = upgradeTo as ((stream: tls.TLSSocket) => void) | undefined;
        if (onStream !== undefined && !socket.destroyed) {
          // Frame mode ends here: nothing may have followed the request.
          socket.off('data', onData);
          socket.pause();
          if (decoder.pendingBytes > 0 || queued > 1) {
            cut('protocol-error', 'bytes after an upgrade request');
            return;
          }
          upgraded = true;
          onStream(socket);
        }
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
    const onData = (chunk: Buffer): void => {
      if (upgraded) return;
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
    };
    socket.on('data', onData);
    socket.on('error', (err: NodeJS.ErrnoException) => {
      log.debug('control connection error', { peer: peer.name, err: err.code ?? err.message });
    });
    socket.on('close', () => {
      authed.delete(socket);
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

  const netServer = net.createServer({ pauseOnConnect: false, noDelay: true /* small request/reply frames */ }, (raw) => {
    const ip = normIp(raw.remoteAddress);
    const listed = opts.isListedSource?.(ip) === true;
    const u: Unauthenticated = { ip, source: listed ? ip : sourcePrefix(ip), listed, acceptedAt: Date.now() };
    const drop = (reason: string): void => {
      noteRefusal('debug', reason, u);
      raw.destroy();
    };
    // 1a. handshake rate per source
    if (!buckets.take(u.source)) return drop('rate-limited');
    // 1b. per-IP and total caps (a full server makes room by evicting an unauthenticated socket)
    if ((perIp.get(ip) ?? 0) >= limits.maxConnectionsPerIp) return drop('too-many-from-ip');
    // 1c. the pre-auth budgets
    if (listed) {
      if (listedCount >= limits.reservedUnauthenticated) evictOldest(true);
    } else {
      if ((perPrefix.get(u.source) ?? 0) >= limits.maxUnauthenticatedPerPrefix) return drop('too-many-from-prefix');
      if (stats.unauthenticated - listedCount >= limits.maxUnauthenticated) evictOldest(false);
    }
    if (stats.connections >= limits.maxConnections && !evictOldest(false) && !(listed && evictOldest(true))) return drop('too-many-connections');
    stats.connections++;
    perIp.set(ip, (perIp.get(ip) ?? 0) + 1);
    open.add(raw);
    const key = `${raw.remoteAddress}|${raw.remotePort}`;
    raws.set(key, raw);
    // Steps 2 and 4 while the handshake runs: OpenSSL reads a ClientHello of up
    // to 128 KiB while it waits, so watch the raw byte count (and the first
    // byte) until the peer is authenticated (secureConnection unwatches) or gone.
    handshaking.set(raw, u);
    stats.unauthenticated++;
    if (listed) listedCount++;
    else perPrefix.set(u.source, (perPrefix.get(u.source) ?? 0) + 1);
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
    stats.handshakesStarted++;
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
      return { ...stats, refused: { ...stats.refused }, cutOff: { ...stats.cutOff } };
    },
    recheck() {
      let closed = 0;
      for (const { peer, revoke } of [...authed.values()]) {
        const decision = opts.authorize(peer);
        if (decision.ok) continue;
        revoke(decision.reason, decision.detail);
        closed++;
      }
      return closed;
    },
    setCredentials(credentials) {
      tlsServer.setSecureContext(contextOptions(credentials));
      // Tickets issued under the old credentials (their CAs) are resumed no more.
      tlsServer.setTicketKeys(randomBytes(48));
    },
    adopt(stream) {
      stats.handshakesStarted++;
      tlsServer.emit('connection', stream);
    },
    close() {
      return new Promise<void>((resolve) => {
        netServer.close(() => resolve());
        for (const s of open) s.destroy();
        handshaking.clear();
        stopWatchIfIdle();
        refusals.close();
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
  /**
   * Membership/pin/OU check of the server (usually `authorizePeer` with the
   * daemon's policy), run after the handshake, before every request and on
   * `recheck()`; default: accept any chain-verified server named `peerName`.
   */
  authorize?: (id: PeerIdentity) => AuthDecision;
  /** Local address to connect from (default: the system's choice). */
  localAddress?: string;
  /**
   * Run the TLS handshake over this already connected stream instead of
   * dialling `host:port` (which then only name the relay in messages): a
   * connection spliced by a relay (`ControlConnection.upgrade` on the
   * relay's own control connection). Authentication is unchanged, end to end.
   */
  socket?: Duplex;
  limits?: Partial<ControlLimits>;
  logger?: Logger;
}

/** An authenticated client connection. */
export interface ControlConnection {
  /** The server's verified identity. */
  readonly peer: PeerIdentity;
  /** TLS exporter value of this connection (borrowed: zeroed on close). */
  readonly exporter: Buffer;
  /**
   * Sends a request; resolves with the response body, rejects with
   * `ChannelError` (`ERR_CHANNEL_REMOTE` carries `remoteCode`), or with
   * `PeerRefusedError` when `authorize` refuses the server now (the
   * connection is closed then).
   */
  request(type: string, body: unknown): Promise<unknown>;
  /**
   * Runs `authorize` again (the node list changed); when it refuses now,
   * closes the connection (pending requests reject with the
   * `PeerRefusedError`) and returns false.
   */
  recheck(): boolean;
  /** Registers a callback run once when the connection closes (at once if it is closed). */
  onClose(fn: () => void): void;
  /**
   * Sends a request whose handler upgrades the connection (see
   * `RequestContext.upgrade`): resolves with the response body and the TLS
   * socket, now out of frame mode; its bytes are the caller's, who must
   * close it. No other request may be pending or follow.
   */
  upgrade(type: string, body: unknown): Promise<{ body: unknown; stream: tls.TLSSocket }>;
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
    ctx = tls.createSecureContext(contextOptions(c));
    clientContexts.set(c, ctx);
  }
  return ctx;
}

/**
 * Implementation: lifetime of the TLS session tickets a control server
 * issues (seconds), and how long a client keeps one (slightly less).
 */
export const RESUME_LIFETIME_S = 3600;
/** Implementation: TLS sessions a client keeps per credentials (the least recently stored is dropped). */
export const RESUME_CACHE_MAX = 512;

/** A session a client may resume, with the identity its full handshake authenticated. */
interface Resumable {
  session: Buffer;
  peer: PeerIdentity;
  /** Wall-clock ms after which the session is not offered: the ticket's age or the server certificate's end, whichever is first. */
  usableUntil: number;
}
/** Per client TLS context (so per credentials): peer name and address → session. */
const resumeCaches = new WeakMap<tls.SecureContext, Map<string, Resumable>>();

/** True when `now` is within the certificate's validity (`getPeerCertificate()` dates). */
function withinValidity(cert: { valid_from?: string; valid_to?: string } | undefined, now: number): boolean {
  const from = Date.parse(cert?.valid_from ?? '');
  const to = Date.parse(cert?.valid_to ?? '');
  return Number.isFinite(from) && Number.isFinite(to) && from <= now && now <= to;
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
    const secureContext = clientContext(opts.credentials);
    // Resumption (direct connections only; a relayed one is keyed by its relay, not the peer).
    let cache = resumeCaches.get(secureContext);
    if (cache === undefined) resumeCaches.set(secureContext, (cache = new Map()));
    const key = opts.socket === undefined ? `${opts.peerName}|${opts.host}|${opts.port}` : undefined;
    let offered = key === undefined ? undefined : cache.get(key);
    if (offered !== undefined && (Date.now() >= offered.usableUntil || offered.peer.name !== opts.peerName)) {
      cache.delete(key!);
      offered = undefined;
    }
    let authenticated: { peer: PeerIdentity; validTo: number } | undefined;
    const socket = tls.connect({
      ...(opts.socket !== undefined ? { socket: opts.socket } : { host: opts.host, port: opts.port }),
      ...(opts.localAddress !== undefined ? { localAddress: opts.localAddress } : {}),
      ...(offered !== undefined ? { session: offered.session } : {}),
      secureContext,
      minVersion: 'TLSv1.3',
      rejectUnauthorized: true,
      checkServerIdentity: (_host, cert) => {
        const cn = cert.subject?.CN;
        return cn === opts.peerName ? undefined : new PeerRefusedError('wrong-peer', `reached "${String(cn)}" instead of "${opts.peerName}"`);
      },
    });
    socket.setNoDelay(true); // requests are small frames awaiting a reply: no Nagle delay
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
    // TLS 1.3 tickets arrive after the handshake: each replaces the peer's entry (the newest first to go last).
    if (key !== undefined) {
      socket.on('session', (session: Buffer) => {
        if (authenticated === undefined) return;
        cache.delete(key);
        cache.set(key, { session, peer: authenticated.peer, usableUntil: Math.min(Date.now() + (RESUME_LIFETIME_S - 60) * 1000, authenticated.validTo) });
        for (const old of cache.keys()) {
          if (cache.size <= RESUME_CACHE_MAX) break;
          cache.delete(old);
        }
      });
    }
    socket.once('secureConnect', () => {
      // A resumed session proves the server holds the secret of the full handshake that
      // authenticated `offered.peer` (OpenSSL keeps no server certificate on the client side then).
      const reused = socket.isSessionReused();
      if (reused && offered === undefined) return fail(new PeerRefusedError('no-certificate', 'resumed a session that was not offered'));
      const cert = reused ? undefined : socket.getPeerCertificate();
      const id = reused ? offered!.peer : identityOf(socket);
      if (id === undefined) return fail(new PeerRefusedError('no-certificate', 'server sent no certificate'));
      if (id.name !== opts.peerName) return fail(new PeerRefusedError('wrong-peer', `reached "${id.name}" instead of "${opts.peerName}"`));
      const decision = opts.authorize ? opts.authorize(id) : ({ ok: true } as AuthDecision);
      if (!decision.ok) {
        if (key !== undefined) cache.delete(key);
        return fail(new PeerRefusedError(decision.reason, decision.detail));
      }
      authenticated = { peer: id, validTo: reused ? offered!.usableUntil : Date.parse(cert?.valid_to ?? '') || 0 };
      settled = true;
      clearTimeout(hsTimer);
      resolve(clientConnection(socket, id, limits, log, opts.authorize));
    });
  });
}

function clientConnection(socket: tls.TLSSocket, peer: PeerIdentity, limits: ControlLimits, log: Logger, authorize: ((id: PeerIdentity) => AuthDecision) | undefined): ControlConnection {
  const exporter = socket.exportKeyingMaterial(EXPORTER_BYTES, EXPORTER_LABEL, Buffer.alloc(0));
  const decoder = new FrameDecoder(limits.maxFrameBytes);
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout; upgrade?: boolean }>();
  let upgraded = false;
  let nextId = 1;
  let closedErr: Error | undefined;
  const closers: Array<() => void> = [];
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
    for (const fn of closers.splice(0)) {
      try {
        fn();
      } catch (e) {
        log.error('control close callback threw', { peer: peer.name, err: String(e) });
      }
    }
  };
  /** Undefined while `authorize` accepts the server; else closes the connection and returns the refusal. */
  const refusedNow = (): PeerRefusedError | undefined => {
    const decision = authorize?.(peer);
    if (decision === undefined || decision.ok) return undefined;
    const err = new PeerRefusedError(decision.reason, `${peer.name} no longer passes authorisation: ${decision.detail}`);
    log.info('control connection closed: peer refused by the current list', { peer: peer.name, reason: decision.reason });
    failAll(err);
    return err;
  };
  const onData = (chunk: Buffer): void => {
    if (upgraded) return;
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
      if (msg.type === 'response' && p.upgrade === true) {
        // Frame mode ends: whatever follows belongs to the stream (nothing may have yet).
        socket.off('data', onData);
        socket.pause();
        if (decoder.pendingBytes > 0) return failAll(new ChannelError('ERR_CHANNEL_PROTOCOL', `bytes after the upgrade response from ${peer.name}`));
        upgraded = true;
        p.resolve((msg as ResponseMessage).body);
        return;
      }
      if (msg.type === 'response') {
        p.resolve((msg as ResponseMessage).body);
      } else {
        const e = msg as ErrorMessage;
        p.reject(new ChannelError('ERR_CHANNEL_REMOTE', `${peer.name} answered ${e.code}: ${e.message}`, { remoteCode: e.code }));
      }
    }
  };
  socket.on('data', onData);
  socket.on('error', (err: NodeJS.ErrnoException) => {
    log.debug('control connection error', { peer: peer.name, err: err.code ?? err.message });
    failAll(new ChannelError('ERR_CHANNEL_CLOSED', `control connection to ${peer.name} failed`, { cause: err }));
  });
  socket.on('close', () => failAll(new ChannelError('ERR_CHANNEL_CLOSED', `control connection to ${peer.name} closed`)));
  /** The frame of a request with a fresh id, or why none may be sent now (refused by the current list, or too large). */
  const frameRequest = (type: string, body: unknown): { id: number; frame: Buffer } | Error => {
    const refused = refusedNow();
    if (refused) return refused;
    const id = nextId++;
    try {
      return { id, frame: encodeFrame({ v: CONTROL_PROTOCOL_VERSION, type, id, body }, limits.maxFrameBytes) };
    } catch (err) {
      return err as Error;
    }
  };
  return {
    peer,
    exporter,
    request(type, body) {
      if (closedErr) return Promise.reject(closedErr);
      const next = frameRequest(type, body);
      if (next instanceof Error) return Promise.reject(next);
      const { id, frame } = next;
      return new Promise<unknown>((resolve, reject) => {
        const timer = setTimeout(() => {
          pending.delete(id);
          reject(new ChannelError('ERR_CHANNEL_TIMEOUT', `${type} to ${peer.name} got no answer in ${limits.requestTimeoutMs} ms`));
        }, limits.requestTimeoutMs);
        pending.set(id, { resolve, reject, timer });
        socket.write(frame);
      });
    },
    recheck() {
      return closedErr !== undefined || refusedNow() === undefined;
    },
    upgrade(type, body) {
      if (closedErr) return Promise.reject(closedErr);
      if (upgraded || pending.size > 0) return Promise.reject(new ChannelError('ERR_CHANNEL_PROTOCOL', `upgrade to ${peer.name} with other requests open`));
      const next = frameRequest(type, body);
      if (next instanceof Error) return Promise.reject(next);
      const { id, frame } = next;
      return new Promise<{ body: unknown; stream: tls.TLSSocket }>((resolve, reject) => {
        const timer = setTimeout(() => {
          pending.delete(id);
          reject(new ChannelError('ERR_CHANNEL_TIMEOUT', `${type} to ${peer.name} got no answer in ${limits.requestTimeoutMs} ms`));
          socket.destroy();
        }, limits.requestTimeoutMs);
        pending.set(id, { resolve: (b) => resolve({ body: b, stream: socket }), reject, timer, upgrade: true });
        socket.write(frame);
      });
    },
    onClose(fn) {
      if (closedErr) fn();
      else closers.push(fn);
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
