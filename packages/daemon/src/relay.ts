/**
 * Relays and rendezvous for nodes behind NAT (issue 14, points 2 and 3).
 *
 * A relay is a node whose BNL record has `"relay":true` and a listed
 * endpoint (the list refuses a relay without one). Every member keeps a
 * session with relays (mesh.ts negotiates with them first), so a relay
 * knows each member's *observed* UDP endpoint: where its authenticated
 * packets come from (the data plane's roaming).
 *
 * Rendezvous (UDP, src/rendezvous.ts messages sealed by the sessions):
 *   1. A has keys for C (a new or restored session) but no endpoint, or none
 *      it heard from in `LOCATE_STALE_MS` (C is listed without one): A sends
 *      `where-is C` to up to two relays it has sessions with.
 *   2. The relay checks A's budget (token bucket per member), that C is a
 *      member with a session and an observed endpoint, then sends
 *      `peer-at C X` to A and `peer-at A Y` to C (else `unknown-peer`).
 *   3. A and C each take the other's address as its endpoint (the endpoint
 *      book, `punched`) and send authenticated keepalives to it at once, a
 *      burst spaced `PUNCH_SPACING_MS`: each side's first packets open its
 *      own NAT's mapping, so the other's get through (endpoint-independent
 *      mapping, e.g. Linux MASQUERADE). The first authenticated packet from
 *      the peer confirms the path (`direct` in status).
 *
 * Negotiation when TCP to the peer is impossible (control channel):
 *   1. A opens its (mutual TLS) control connection to a relay R and sends
 *      `relay-connect {target: C}`.
 *   2. R (relay role) checks: it is a relay; C is a member, not A, with a
 *      session here; A's concurrent splices < `MAX_SPLICES_PER_MEMBER`,
 *      all < `MAX_SPLICES`. It sends C `splice-offer A TOKEN` over their
 *      session (repeated every `OFFER_REPEAT_MS`) and waits up to
 *      `SPLICE_WAIT_MS` (`ERR_RELAY_TIMEOUT`).
 *   3. C (behind NAT, it can open TCP to R) checks the offer came from a
 *      relay of the list and names a member, opens its own control
 *      connection to R and sends `relay-accept {token}` (single use, bound
 *      to C's authenticated name: `ERR_RELAY_UNKNOWN_TOKEN` otherwise).
 *   4. R answers both, both connections leave frame mode
 *      (`RequestContext.upgrade`), and R copies bytes between them,
 *      counting them. A runs its TLS client over its stream, C hands its
 *      stream to its control server (`adopt`): the negotiation is mutual
 *      TLS 1.3 between A and C end to end with the usual authorisation
 *      (membership, pin, OU); R sees only that TLS's records, inside its own.
 * Refusals carry a typed code (`ERR_RELAY_*`) back to the requester; every
 * request is authorised by the control channel against the current list.
 *
 * Owner: this module owns splices and punch bursts; the endpoint book
 * still owns where each peer is (it is told through `punched`).
 */
import type { RelayReport } from '@cluevpn/control';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type tls from 'node:tls';
import type { BnlNode } from '@cluevpn/bnl';
import type { ControlConnection, ControlServer, RequestContext } from '@cluevpn/negotiation';
import { DaemonError } from './errors.js';
import type { Logger } from './logging.js';
import { decodeRendezvous, encodeRendezvous, TOKEN_BYTES, type RendezvousMessage } from './rendezvous.js';

/** Specification: control request types of the relay. */
export const RelayRequest = { connect: 'relay-connect', accept: 'relay-accept' } as const;
/** Implementation: relays asked per `where-is`. */
export const LOCATE_FANOUT = 2;
/** Implementation: shortest pause between two `where-is` for one peer. */
export const LOCATE_MIN_MS = 1_000;
/** Implementation: a peer behind NAT not heard from for this long is located again when a session with it comes up. */
export const LOCATE_STALE_MS = 30_000;
/** Implementation: keepalives of one punch burst, and their spacing. */
export const PUNCH_COUNT = 10;
export const PUNCH_SPACING_MS = 150;
/** Implementation: a peer heard from this recently needs no punching (its path works). */
export const PUNCH_FRESH_MS = 3_000;
/** Implementation: how long a relay waits for the target's leg of a splice. */
export const SPLICE_WAIT_MS = 5_000;
/** Implementation: repeat of the `splice-offer` (UDP) until the target's leg arrives. */
export const OFFER_REPEAT_MS = 400;
/** Implementation: concurrent splices one member may hold open at a relay, and all together. */
export const MAX_SPLICES_PER_MEMBER = 4;
export const MAX_SPLICES = 64;
/** Implementation: reverse legs a member opens at once (answers to offers). */
export const MAX_REVERSE_LEGS = 8;
/** Implementation: rendezvous messages a relay serves per member: token bucket refill per second and size. */
export const RENDEZVOUS_PER_SECOND = 10;
export const RENDEZVOUS_BURST = 20;

/** What the relay service needs from the mesh and the daemon. */
export interface RelayDeps {
  selfName: string;
  logger: Logger;
  /** The current list's record of a node. */
  record(name: string): BnlNode | undefined;
  /** Every node of the current list. */
  nodes(): readonly BnlNode[];
  /** Membership as the control channel checks it (in the list, not us). */
  isMember(name: string): boolean;
  /** We hold keys with the peer. */
  hasSession(name: string): boolean;
  /** Where the peer's authenticated packets come from (the data plane's endpoint once it heard from the peer) and when the last came (wall ms), or null. */
  observed(name: string): { host: string; port: number; lastRxMs?: number } | null;
  /** Sends a rendezvous message over the session; false when it could not (no session or endpoint). */
  send(name: string, payload: Buffer): boolean;
  /** A relay told us where `name` is: make it the peer's endpoint (the endpoint book). */
  punched(name: string, where: { host: string; port: number }): void;
  /** One authenticated keepalive to the peer. */
  keepalive(name: string): boolean;
  /** A direct (TCP) control connection to a relay at its listed endpoint. */
  connectDirect(name: string): Promise<ControlConnection>;
}

/**
 * Counters of the relay service (monotonic except the `active` ones): the
 * control protocol's `RelayReport` (field docs there) less what the status
 * adds (`relay`, from the list) and the data plane's forwarding counters.
 */
export type RelayStats = Omit<RelayReport, 'relay' | 'forwarded' | 'forwardedBytes' | 'unauthenticated' | 'members'>;

/** The running service. */
export interface RelayService {
  /** This node serves as a relay (its record says `relay` and lists an endpoint). */
  isRelay(): boolean;
  /**
   * Registers the relay's control handlers (`relay-connect`, `relay-accept`)
   * on our control server, and serves reverse legs with it. Until then
   * splice offers are dropped (`no-server`).
   */
  attach(server: ControlServer): void;
  /** A rendezvous message authenticated from `from` (data plane `onRendezvous`). */
  onMessage(from: string, payload: Buffer): void;
  /** A session with `name` is in place: when we have no endpoint for it, ask relays (rendezvous). */
  sessionUp(name: string): void;
  /** A control stream to `target` spliced by a relay (the first relay that agrees), for `connectControl({ socket })`. */
  dial(target: string): Promise<{ stream: tls.TLSSocket; relay: string }>;
  /** Relays that could splice to `target` (none: the caller gives up). */
  relaysFor(target: string): string[];
  stats(): RelayStats;
  close(): void;
}

const bump = (rec: Record<string, number>, key: string): void => {
  rec[key] = (rec[key] ?? 0) + 1;
};

interface PendingSplice {
  token: Buffer;
  from: string;
  target: string;
  /** Resolved by the target's `relay-accept` with its request context. */
  accepted: (ctx: RequestContext) => void;
  fromStream?: tls.TLSSocket;
  targetStream?: tls.TLSSocket;
}

/** Creates the service; `attach` it to the control server once there is one. */
export function createRelayService(deps: RelayDeps): RelayService {
  const log = deps.logger;
  const st: RelayStats = { located: 0, splices: 0, splicesActive: 0, splicedBytes: 0, refused: {}, locateSent: 0, punches: 0, dialled: 0, reverseLegs: 0, dropped: {} };
  const buckets = new Map<string, { tokens: number; at: number }>();
  const pending = new Map<string, PendingSplice>();
  const perMember = new Map<string, number>();
  const lastLocate = new Map<string, number>();
  const bursts = new Map<string, NodeJS.Timeout>();
  const offersSeen = new Map<string, number>();
  const open = new Set<tls.TLSSocket>();
  let reverseOpen = 0;
  let closed = false;
  let server: ControlServer | undefined;

  const isRelayNode = (n: BnlNode | undefined): boolean => n?.relay === true && n.endpoints.length > 0;
  const isRelay = (): boolean => isRelayNode(deps.record(deps.selfName));

  /** Per-member token bucket of the relay role. */
  const take = (name: string): boolean => {
    const now = Date.now();
    const b = buckets.get(name) ?? { tokens: RENDEZVOUS_BURST, at: now };
    b.tokens = Math.min(RENDEZVOUS_BURST, b.tokens + ((now - b.at) / 1000) * RENDEZVOUS_PER_SECOND);
    b.at = now;
    buckets.set(name, b);
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  };
  const refuse = (code: string, detail: string): never => {
    bump(st.refused, code);
    throw new DaemonError(code as 'ERR_RELAY_LIMIT', detail);
  };
  const sendMsg = (to: string, m: RendezvousMessage): boolean => deps.send(to, encodeRendezvous(m));

  // ---- relay role: where-is ----
  const serveWhereIs = (from: string, target: string): void => {
    const there = target !== from && deps.isMember(target) && deps.hasSession(target) ? deps.observed(target) : null;
    const here = deps.observed(from);
    if (there === null || here === null) {
      bump(st.refused, 'ERR_RELAY_UNKNOWN_TARGET');
      sendMsg(from, { kind: 'unknown-peer', name: target, code: 'ERR_RELAY_UNKNOWN_TARGET' });
      return;
    }
    st.located++;
    sendMsg(from, { kind: 'peer-at', name: target, host: there.host, port: there.port });
    sendMsg(target, { kind: 'peer-at', name: from, host: here.host, port: here.port });
    log.debug('rendezvous', { peer: from, target, endpoint: `${there.host}:${there.port}` });
  };

  // ---- member role: punching ----
  const punch = (name: string, where: { host: string; port: number }): void => {
    st.punches++;
    deps.punched(name, where);
    const prev = bursts.get(name);
    if (prev !== undefined) clearInterval(prev);
    let left = PUNCH_COUNT;
    deps.keepalive(name);
    const t = setInterval(() => {
      if (closed || --left <= 0) {
        clearInterval(t);
        bursts.delete(name);
        return;
      }
      deps.keepalive(name);
    }, PUNCH_SPACING_MS);
    t.unref();
    bursts.set(name, t);
    log.info('hole punching', { peer: name, endpoint: `${where.host}:${where.port}` });
  };

  const relays = (exclude: string): string[] => {
    const list = deps.nodes().filter((n) => n.name !== deps.selfName && n.name !== exclude && isRelayNode(n)).map((n) => n.name);
    // relays we hold keys with first: they know our observed endpoint
    return [...list.filter((n) => deps.hasSession(n)), ...list.filter((n) => !deps.hasSession(n))];
  };

  const locate = (name: string): void => {
    const now = Date.now();
    if (now - (lastLocate.get(name) ?? 0) < LOCATE_MIN_MS) return;
    lastLocate.set(name, now);
    let asked = 0;
    for (const r of relays(name)) {
      if (asked >= LOCATE_FANOUT) break;
      if (!deps.hasSession(r)) continue;
      if (sendMsg(r, { kind: 'where-is', name })) {
        asked++;
        st.locateSent++;
      }
    }
  };

  /** C's side of a splice: open our own control connection to the relay and serve the stream. */
  const openReverseLeg = (relay: string, from: string, token: Buffer): void => {
    const key = token.toString('hex');
    const now = Date.now();
    for (const [k, at] of offersSeen) if (now - at > SPLICE_WAIT_MS * 2) offersSeen.delete(k);
    if (offersSeen.has(key)) return; // the relay repeats its offer until we arrive
    const srv = server;
    if (srv === undefined) return void bump(st.dropped, 'no-server');
    if (reverseOpen >= MAX_REVERSE_LEGS) {
      bump(st.dropped, 'reverse-legs-full');
      return;
    }
    offersSeen.set(key, now);
    reverseOpen++;
    deps
      .connectDirect(relay)
      .then(async (conn) => {
        try {
          const { stream } = await conn.upgrade(RelayRequest.accept, { token: token.toString('base64') });
          st.reverseLegs++;
          log.info('control connection through relay', { peer: from, relay });
          srv.adopt(stream);
        } catch (err) {
          conn.close();
          throw err;
        }
      })
      .catch((err: unknown) => log.info('reverse leg to relay failed', { peer: from, relay, err }))
      .finally(() => {
        reverseOpen--;
      });
  };

  const onMessage = (from: string, payload: Buffer): void => {
    if (closed) return;
    let m: RendezvousMessage;
    try {
      m = decodeRendezvous(payload);
    } catch (err) {
      bump(st.dropped, 'malformed');
      log.debug('rendezvous message dropped', { peer: from, err });
      return;
    }
    if (m.kind === 'where-is') {
      if (!isRelay()) return void bump(st.dropped, 'not-a-relay');
      if (!take(from)) return void bump(st.dropped, 'over-budget');
      serveWhereIs(from, m.name);
      return;
    }
    // The other kinds come only from relays of the current list.
    if (!isRelayNode(deps.record(from))) return void bump(st.dropped, 'from-non-relay');
    if (!deps.isMember(m.name)) return void bump(st.dropped, 'unknown-peer');
    switch (m.kind) {
      case 'peer-at': {
        // a path that works (we heard from the peer just now) is not moved
        const seen = deps.observed(m.name);
        if (seen?.lastRxMs !== undefined && Date.now() - seen.lastRxMs < PUNCH_FRESH_MS) return void bump(st.dropped, 'path-works');
        punch(m.name, { host: m.host, port: m.port });
        return;
      }
      case 'splice-offer':
        openReverseLeg(from, m.name, m.token);
        return;
      case 'unknown-peer':
        log.debug('relay cannot locate peer', { peer: m.name, relay: from, err: m.code });
        return;
    }
  };

  // ---- relay role: splices over the control channel ----
  const join = (p: PendingSplice): void => {
    const a = p.fromStream;
    const b = p.targetStream;
    if (a === undefined || b === undefined) return;
    st.splices++;
    st.splicesActive++;
    open.add(a);
    open.add(b);
    perMember.set(p.from, (perMember.get(p.from) ?? 0) + 1);
    let done = false;
    const end = (): void => {
      if (done) return;
      done = true;
      st.splicesActive--;
      const left = (perMember.get(p.from) ?? 1) - 1;
      if (left <= 0) perMember.delete(p.from);
      else perMember.set(p.from, left);
      open.delete(a);
      open.delete(b);
      a.destroy();
      b.destroy();
    };
    const copy = (src: tls.TLSSocket, dst: tls.TLSSocket): void => {
      src.on('data', (chunk: Buffer) => {
        st.splicedBytes += chunk.length;
        if (!dst.write(chunk)) src.pause();
      });
      dst.on('drain', () => src.resume());
      src.on('close', end);
      src.on('error', (err: Error) => log.debug('spliced connection error', { peer: p.from, target: p.target, err }));
      src.resume();
    };
    copy(a, b);
    copy(b, a);
    log.info('splice open', { peer: p.from, target: p.target });
  };

  const onConnect = async (body: unknown, ctx: RequestContext): Promise<unknown> => {
    const from = ctx.peer.name;
    const target = (body as { target?: unknown } | null)?.target;
    if (!isRelay()) refuse('ERR_RELAY_NOT_RELAY', `${deps.selfName} is not a relay`);
    if (typeof target !== 'string' || target === from || !deps.isMember(target) || !deps.hasSession(target) || deps.observed(target) === null) {
      refuse('ERR_RELAY_UNKNOWN_TARGET', `no member ${String(target)} reachable through ${deps.selfName}`);
    }
    const t = target as string;
    let mine = 0;
    for (const p of pending.values()) if (p.from === from) mine++;
    if (mine + (perMember.get(from) ?? 0) >= MAX_SPLICES_PER_MEMBER) refuse('ERR_RELAY_LIMIT', `${from} has ${MAX_SPLICES_PER_MEMBER} splices open`);
    if (pending.size + st.splicesActive >= MAX_SPLICES) refuse('ERR_RELAY_LIMIT', `${MAX_SPLICES} splices open`);
    const token = randomBytes(TOKEN_BYTES);
    const key = token.toString('hex');
    let timer: NodeJS.Timeout | undefined;
    let repeat: NodeJS.Timeout | undefined;
    const p: PendingSplice = { token, from, target: t, accepted: () => undefined };
    try {
      await new Promise<RequestContext>((resolve, reject) => {
        p.accepted = resolve;
        pending.set(key, p);
        const offer = (): boolean => sendMsg(t, { kind: 'splice-offer', name: from, token });
        offer();
        repeat = setInterval(offer, OFFER_REPEAT_MS);
        timer = setTimeout(() => reject(new DaemonError('ERR_RELAY_TIMEOUT', `${t} did not answer the splice offer in ${SPLICE_WAIT_MS} ms`)), SPLICE_WAIT_MS);
        ctx.onClose(() => reject(new DaemonError('ERR_RELAY_TIMEOUT', `${from} left before ${t} answered`)));
      });
      ctx.upgrade((stream) => {
        p.fromStream = stream;
        join(p);
      });
      return { relay: deps.selfName };
    } catch (err) {
      bump(st.refused, (err as DaemonError).code ?? 'ERR_RELAY_TIMEOUT');
      throw err;
    } finally {
      clearTimeout(timer);
      clearInterval(repeat);
      pending.delete(key);
    }
  };

  const onAccept = (body: unknown, ctx: RequestContext): unknown => {
    const raw = (body as { token?: unknown } | null)?.token;
    const token = typeof raw === 'string' ? Buffer.from(raw, 'base64') : Buffer.alloc(0);
    const p = token.length === TOKEN_BYTES ? pending.get(token.toString('hex')) : undefined;
    if (p === undefined || p.target !== ctx.peer.name || !timingSafeEqual(p.token, token)) {
      refuse('ERR_RELAY_UNKNOWN_TOKEN', `no splice waits for ${ctx.peer.name} with this token`);
    }
    const q = p!;
    pending.delete(q.token.toString('hex')); // single use
    ctx.upgrade((stream) => {
      q.targetStream = stream;
      join(q);
    });
    q.accepted(ctx);
    return { relay: deps.selfName };
  };

  return {
    attach(srv) {
      server = srv;
      srv.handle(RelayRequest.connect, onConnect);
      srv.handle(RelayRequest.accept, onAccept);
    },
    isRelay,
    onMessage,
    sessionUp(name) {
      if (closed) return;
      // only peers we cannot find ourselves: listed without an endpoint, and not heard from lately
      // (a renegotiation after silence: the NAT may have moved it)
      if ((deps.record(name)?.endpoints.length ?? 0) > 0) return;
      const seen = deps.observed(name);
      if (seen !== null && (seen.lastRxMs === undefined || Date.now() - seen.lastRxMs < LOCATE_STALE_MS)) return;
      locate(name);
    },
    relaysFor: (target) => relays(target),
    async dial(target) {
      const candidates = relays(target);
      if (candidates.length === 0) throw new DaemonError('ERR_RELAY_NONE', `no relay in the list to reach ${target} through`);
      let lastErr: unknown;
      for (const r of candidates) {
        let conn: ControlConnection | undefined;
        try {
          conn = await deps.connectDirect(r);
          const { stream } = await conn.upgrade(RelayRequest.connect, { target });
          st.dialled++;
          return { stream, relay: r };
        } catch (err) {
          conn?.close();
          lastErr = err;
          log.debug('relay could not splice', { peer: target, relay: r, err });
        }
      }
      throw lastErr;
    },
    stats: () => ({ ...st, refused: { ...st.refused }, dropped: { ...st.dropped } }),
    close() {
      closed = true;
      for (const t of bursts.values()) clearInterval(t);
      bursts.clear();
      for (const s of open) s.destroy();
      open.clear();
    },
  };
}
