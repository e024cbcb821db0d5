/**
 * Keepalives: a peer we have sent nothing to for `keepaliveMs` gets an
 * authenticated keepalive (framing type 2, empty payload), so that NAT
 * routers and stateful firewalls on the way keep the UDP mapping open and
 * the peer keeps following our address (receive.ts step 8, roaming). This
 * is wireguard-go's "persistent keepalive".
 *
 * One coarse timer per data plane, not per peer and nothing per packet:
 *
 * 1. Every tick (`tickMs`, about a second; unref'd) walk the peers that
 *    have a primary session once (`PeerTable.withPrimary`: the records of a
 *    large list without keys cost nothing).
 * 2. A peer without a primary session or without an endpoint is skipped
 *    (a keepalive could not be sent; counting a drop each tick would be
 *    noise).
 * 3. A primary session that has sent nothing at all yet (counter 0: just
 *    negotiated, or just moved to a new epoch) sends one at once (a new
 *    primary runs an extra tick right away, `soon()`, rather than waiting
 *    up to a second for the timer): the peer
 *    learns our address from it, so a node behind NAT becomes reachable
 *    without waiting for its own traffic.
 * 4. Otherwise the peer's sent-datagram count (tx packets, the express
 *    send path's included, plus keepalives) is compared with the last
 *    tick's: a change restarts the idle clock; `keepaliveMs` without a
 *    change sends one keepalive and restarts it.
 * 5. No reply: nothing authenticated from the peer (its last packet or
 *    keepalive, directly or through a relay, else the session's install
 *    time) for {@link noReplyMs} — two keepalive intervals and 5 s, so a
 *    peer with the same `keepalive` has sent at least one keepalive
 *    meanwhile — asks for a rekey (`onRekeyNeeded(peer, 'no-reply')`) and
 *    waits another such period before asking again. The silence is counted
 *    on the scheduler's *awake* clock: a gap between two ticks counts as at
 *    most two ticks. A process that did not run for a while (a starved
 *    machine: 40 daemons on 2 busy cores, start-up took 88 s in one run)
 *    has the peer's keepalives waiting in its socket, unread, and the
 *    timer may fire before the receive path reads them: that stall is
 *    not the peer's silence. (The 40-node mesh's renegotiation loop had
 *    another cause, the lab's: BENCHMARKS.md, session 9.) The peer lost our session (it restarted,
 *    and could not resume it because it cannot reach us: we are behind
 *    NAT); a new negotiation from our side repairs it, like WireGuard's
 *    handshake after keepalive-timeout + rekey-timeout without an answer.
 *
 * The owner of the timer is the data plane (`createDataplane`'s
 * `keepaliveMs`); the daemon only passes its configuration value.
 */
import type { EventDispatcher } from './events.js';
import { PeerCounter, type Peer, type PeerTable } from './peer-table.js';

/** Implementation: the longest tick of the keepalive timer (ms). */
export const KEEPALIVE_TICK_MS = 1000;

/** Silence from a peer after which the scheduler asks for a rekey ('no-reply'): two intervals and 5 s. */
export function noReplyMs(keepaliveMs: number): number {
  return 2 * keepaliveMs + 5000;
}

/** The tick for an interval: a quarter of it, between 10 ms and {@link KEEPALIVE_TICK_MS}. */
export function keepaliveTickMs(keepaliveMs: number): number {
  return Math.max(10, Math.min(KEEPALIVE_TICK_MS, Math.floor(keepaliveMs / 4)));
}

/**
 * Decides, per tick, which peers get a keepalive. `send` is the send
 * pipeline's `sendKeepalive` (it frames, seals, sends and counts). Its
 * per-peer state lives on the peer (`Peer.kaSeen`, `kaSinceMs`,
 * `kaNoReplyAskedMs`): no map, nothing to forget when a peer goes.
 */
export class KeepaliveScheduler {
  private timer: NodeJS.Timeout | null = null;
  /** Awake clock (step 5): monotonic ms the scheduler ran, each gap between ticks counted as at most two ticks. */
  private awakeMs = 0;
  private lastTickMs = NaN;

  constructor(
    private readonly peers: PeerTable,
    private readonly send: (peer: Peer) => boolean,
    /** Idle time before a keepalive (ms, > 0). */
    readonly intervalMs: number,
    /** Where 'no-reply' rekey requests go (step 5); none when absent. */
    private readonly events?: EventDispatcher,
  ) {}

  /** Starts the timer (unref'd: it never keeps the process alive). */
  start(): void {
    if (this.timer !== null) return;
    this.timer = setInterval(() => this.tick(performance.now(), Date.now()), keepaliveTickMs(this.intervalMs));
    this.timer.unref();
  }

  /**
   * Runs one extra tick on the next turn of the event loop (a session just
   * became primary: its first keepalive tells a peer behind NAT's relay or
   * public peer our address without waiting for the timer). Several calls
   * before it runs make one tick. No-op when stopped.
   */
  soon(): void {
    if (this.timer === null || this.soonPending !== null) return;
    this.soonPending = setImmediate(() => {
      this.soonPending = null;
      if (this.timer !== null) this.tick(performance.now(), Date.now());
    });
  }
  private soonPending: NodeJS.Immediate | null = null;

  /** Stops the timer. Idempotent. */
  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    if (this.soonPending !== null) clearImmediate(this.soonPending);
    this.soonPending = null;
  }

  /** One pass over the peers at monotonic time `nowMs` (steps 2–5; `wallMs` is kept for callers, the silence is on the awake clock). Returns the keepalives sent. */
  tick(nowMs: number, _wallMs: number): number {
    let sent = 0;
    const silence = noReplyMs(this.intervalMs);
    if (Number.isFinite(this.lastTickMs)) this.awakeMs += Math.min(Math.max(0, nowMs - this.lastTickMs), 2 * keepaliveTickMs(this.intervalMs));
    this.lastTickMs = nowMs;
    const awake = this.awakeMs;
    for (const peer of this.peers.withPrimary) {
      const s = peer.primary;
      if (s === null || !peer.hasEndpoint) {
        peer.kaSeen = -1;
        continue;
      }
      const c = peer.counters;
      const heardWall = Math.max(c[PeerCounter.LAST_RX_MS], c[PeerCounter.LAST_RELAYED_RX_MS], s.installedAtMs);
      if (heardWall > peer.kaHeardWallMs) {
        peer.kaHeardWallMs = heardWall;
        peer.kaHeardAwakeMs = awake;
      }
      if (this.events !== undefined && awake - Math.max(peer.kaHeardAwakeMs, peer.kaNoReplyAskedAwakeMs) >= silence) {
        peer.kaNoReplyAskedAwakeMs = awake;
        this.events.rekeyNeeded(peer, 'no-reply', nowMs);
      }
      const seen = c[PeerCounter.TX_PACKETS] + c[PeerCounter.KEEPALIVES_TX];
      if (s.txCounter !== 0 && seen !== peer.kaSeen) {
        peer.kaSeen = seen;
        peer.kaSinceMs = nowMs;
        continue;
      }
      if (s.txCounter !== 0 && nowMs - peer.kaSinceMs < this.intervalMs) continue;
      if (this.send(peer)) sent++;
      peer.kaSeen = c[PeerCounter.TX_PACKETS] + c[PeerCounter.KEEPALIVES_TX];
      peer.kaSinceMs = nowMs;
    }
    return sent;
  }
}
