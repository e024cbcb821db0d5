/**
 * Events the data plane raises towards its owner (the daemon), with the
 * rate limits that keep a flood of packets from becoming a flood of calls.
 *
 * Handlers run synchronously inside the pipeline that noticed the event;
 * they must not block, may call the data plane's control methods (e.g.
 * `installSession` from `onNoSession`), and should not throw: an exception
 * is caught, counted in `stats().eventErrors` and logged at warn level.
 */
import type { Peer } from './peer-table.js';

/** Why a rekey is asked for. */
export type RekeyReason =
  /** The session passed `rekeyAfterMessages`: rekey soon, packets still flow. */
  | 'counter-soft-limit'
  /** The session reached `rejectAfterMessages`: packets to the peer are dropped until a new session. */
  | 'counter-limit'
  /**
   * Keepalives on, and nothing authenticated came from the peer for
   * `2 × keepaliveMs + 5 s` while we kept sending: the peer probably lost
   * the session (it restarted and cannot reach us to resume it, e.g. we are
   * behind NAT): renegotiate. Asked at most once per such period (keepalive.ts).
   */
  | 'no-reply';

/** Callbacks of the data plane; every one is optional. */
export interface DataplaneEvents {
  /** Traffic for a peer without a session (at most once per peer per `eventIntervalMs`): negotiate keys. */
  onNoSession?(peerId: string): void;
  /** The primary session should be replaced (see {@link RekeyReason}); rate-limited per peer except the soft signal (once per session). */
  onRekeyNeeded?(peerId: string, reason: RekeyReason): void;
  /** `count` authentication failures from a peer's sessions within `eventIntervalMs` reached `authFailureBurst`; at most once per interval. */
  onAuthFailures?(peerId: string, count: number): void;
  /** First authenticated packet of a new receive epoch: persist it as the floor. */
  onRxEpoch?(peerId: string, localIndex: number, epoch: number): void;
  /** The peer's packets authenticated from a new address (roaming); the data plane already sends there. */
  onEndpointChange?(peerId: string, host: string, port: number): void;
  /**
   * An authenticated rendezvous message (type 3) from the peer; `payload`
   * is a copy the handler owns. Not rate-limited here: the receiver of
   * these messages bounds its own work per peer.
   */
  onRendezvous?(peerId: string, payload: Buffer): void;
}

/** The logger the data plane needs (a subset of the daemon's; structural). */
export interface DataplaneLogger {
  error(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  debug(msg: string, fields?: Record<string, unknown>): void;
}

/** A logger that drops everything. */
export const silentLogger: DataplaneLogger = {
  error() {},
  warn() {},
  info() {},
  debug() {},
};

/** Delivers events with per-peer rate limits; counts handler exceptions. */
export class EventDispatcher {
  /** Exceptions thrown by event handlers. */
  errors = 0;

  constructor(
    private readonly events: DataplaneEvents,
    private readonly logger: DataplaneLogger,
    private readonly intervalMs: number,
    private readonly authBurst: number,
  ) {}

  private failed(event: string, peer: Peer, err: unknown): void {
    this.errors++;
    this.logger.warn('dataplane event handler threw', { event, peer: peer.id, err: String(err) });
  }

  /** A packet for `peer` found no session. */
  noSession(peer: Peer, nowMs: number): void {
    if (nowMs - peer.lastNoSessionEventMs < this.intervalMs) return;
    peer.lastNoSessionEventMs = nowMs;
    const h = this.events.onNoSession;
    if (h === undefined) return;
    try {
      h.call(this.events, peer.id);
    } catch (err) {
      this.failed('onNoSession', peer, err);
    }
  }

  /** Asks for a rekey; `'counter-limit'` is rate-limited, the soft signal is sent once per session by the caller. */
  rekeyNeeded(peer: Peer, reason: RekeyReason, nowMs: number): void {
    if (reason === 'counter-limit') {
      if (nowMs - peer.lastRekeyEventMs < this.intervalMs) return;
      peer.lastRekeyEventMs = nowMs;
    }
    const h = this.events.onRekeyNeeded;
    if (h === undefined) return;
    try {
      h.call(this.events, peer.id, reason);
    } catch (err) {
      this.failed('onRekeyNeeded', peer, err);
    }
  }

  /** Records one authentication failure attributed to `peer`; raises the burst event. */
  authFailure(peer: Peer, nowMs: number): void {
    if (nowMs - peer.authWindowStartMs >= this.intervalMs) {
      peer.authWindowStartMs = nowMs;
      peer.authFailuresInWindow = 0;
    }
    peer.authFailuresInWindow++;
    if (peer.authFailuresInWindow !== this.authBurst) return;
    if (nowMs - peer.lastAuthEventMs < this.intervalMs) return;
    peer.lastAuthEventMs = nowMs;
    const h = this.events.onAuthFailures;
    if (h === undefined) return;
    try {
      h.call(this.events, peer.id, peer.authFailuresInWindow);
    } catch (err) {
      this.failed('onAuthFailures', peer, err);
    }
  }

  /** A session authenticated a new receive epoch. */
  rxEpoch(peer: Peer, localIndex: number, epoch: number): void {
    const h = this.events.onRxEpoch;
    if (h === undefined) return;
    try {
      h.call(this.events, peer.id, localIndex, epoch);
    } catch (err) {
      this.failed('onRxEpoch', peer, err);
    }
  }

  /** Roaming to a reported source failed (logged, counted). */
  endpointError(peer: Peer, err: unknown): void {
    this.failed('setEndpoint', peer, err);
  }

  /** An authenticated rendezvous message from the peer. */
  rendezvous(peer: Peer, payload: Buffer): void {
    const h = this.events.onRendezvous;
    if (h === undefined) return;
    try {
      h.call(this.events, peer.id, payload);
    } catch (err) {
      this.failed('onRendezvous', peer, err);
    }
  }

  /** The peer roamed to `host:port`. */
  endpointChange(peer: Peer, host: string, port: number): void {
    const h = this.events.onEndpointChange;
    if (h === undefined) return;
    try {
      h.call(this.events, peer.id, host, port);
    } catch (err) {
      this.failed('onEndpointChange', peer, err);
    }
  }
}
