/**
 * Path MTU discovery per peer, on the underlay (tinc's `PMTUDiscovery`).
 *
 * The native socket sends every datagram with DF set and never fragments
 * (native/src/udp.c: `IP_MTU_DISCOVER` / `IPV6_MTU_DISCOVER` =
 * `PMTUDISC_DO`). This module finds, per peer, the largest outer IP packet
 * that reaches it, with authenticated probes sealed with the session like
 * keepalives (so nobody on the path can forge an answer):
 *
 * ```
 * probe (type 8):  header | u32 probe id | zero padding ... | tag    (the size probed)
 * reply (type 9):  header | u32 probe id | u32 probe datagram length as received | tag
 * ```
 *
 * 1. A peer gets a search when it first has a primary session and an
 *    endpoint, when its endpoint changes, every {@link PMTU_DEFAULTS}
 *    `reprobeMs` (10 min), and when the socket reports EMSGSIZE on data
 *    (the path shrank: the kernel learnt a smaller MTU from an ICMP error).
 * 2. The search probes the largest useful size first (the configured inner
 *    MTU plus overhead: a larger path buys nothing), so a clean path costs
 *    one round trip. When that fails it probes the floor (576 for an IPv4
 *    underlay, 1280 for IPv6): a peer that answers nothing (down, or too
 *    old to know probes) leaves the estimate as it was and is asked again
 *    after `retryMs`; otherwise a binary search between them follows.
 * 3. A probe fails after `probeTries` timeouts of `probeTimeoutMs`, or at
 *    once when the kernel refuses it locally (EMSGSIZE: it already knows a
 *    smaller path MTU).
 * 4. During a search the previous estimate stays in force; the result
 *    replaces it at the end ("fixed"). Before the first result a peer's
 *    inner MTU is the configured one.
 *
 * The estimate sizes what goes to the peer: its usable inner MTU is the path
 * MTU minus the outer IP and UDP headers (28 for IPv4, 48 for IPv6) and the
 * 36 bytes of header and tag, at most the configured inner MTU
 * ({@link innerMtuOf}). The send pipeline answers a larger packet with an
 * ICMP "fragmentation needed" / ICMPv6 "packet too big" into the TUN (or
 * fragments an IPv4 packet without DF) and clamps TCP MSS to it
 * (mss-clamp.ts). This file owns the estimate; nothing else writes it.
 *
 * The search itself ({@link PathMtuSearch}) is a pure state machine driven
 * with a monotonic clock; {@link PmtuScheduler} walks the peers on one
 * coarse, unref'd timer (nothing per packet).
 */
import type { PmtuHooks } from './context.js';
import { silentLogger, type DataplaneLogger } from './events.js';
import { OVERHEAD } from './framing.js';
import type { Peer, PeerTable } from './peer-table.js';

/** Specification: bytes of outer IP + UDP header by underlay family. */
export const OUTER_HEADERS = { 4: 28, 6: 48 } as const;
/** Specification: the smallest path MTU assumed to work (IPv4: RFC 791's 576 datagram; IPv6: RFC 8200). */
export const PMTU_FLOOR = { 4: 576, 6: 1280 } as const;

/** Timers and tries of the search (implementation; tests shrink them). */
export interface PmtuTimers {
  /** A probe without an answer for this long counts as lost (ms). */
  probeTimeoutMs: number;
  /** Lost probes of one size before it counts as too big. */
  probeTries: number;
  /** A fixed estimate is searched again after this long (ms). */
  reprobeMs: number;
  /** A search that got no answer at all is tried again after this long (ms). */
  retryMs: number;
}

/** Defaults of {@link PmtuTimers}. */
export const PMTU_DEFAULTS: Readonly<PmtuTimers> = {
  probeTimeoutMs: 1000,
  probeTries: 3,
  reprobeMs: 600_000,
  retryMs: 30_000,
};

/** The phase of a peer's search: never searched, searching now, or holding a result. */
export type PmtuPhase = 'unknown' | 'searching' | 'fixed';

/** What the caller's send of a probe came to. */
export type ProbeSendResult = 'sent' | 'too-big' | 'failed';

/**
 * Usable inner MTU for a path MTU `pmtu` (0 = unknown) over an underlay of
 * `family`, at most `configured`.
 */
export function innerMtuOf(pmtu: number, family: 4 | 6, configured: number): number {
  if (pmtu <= 0) return configured;
  return Math.max(0, Math.min(configured, pmtu - OUTER_HEADERS[family] - OVERHEAD));
}

/** The largest path MTU worth probing: the configured inner MTU fully used. */
export function pmtuCeiling(family: 4 | 6, configured: number): number {
  return configured + OVERHEAD + OUTER_HEADERS[family];
}

/**
 * One peer's search (steps 2–4). Sizes are outer IP packet bytes. Drive it
 * with {@link tick} (which says what to probe, with {@link probeId}) and
 * report the send ({@link onSent}) and authenticated replies ({@link onReply}).
 */
export class PathMtuSearch {
  /** Current phase. */
  phase: PmtuPhase = 'unknown';
  /** The path MTU in force (outer IP packet bytes); 0 = not known yet. */
  pmtu = 0;
  /** Monotonic ms the last search ended (0 = never). */
  doneAtMs = 0;
  /** Searches started, probes sent, replies matched (stats). */
  searches = 0;
  probes = 0;
  replies = 0;
  // the search: [lo, hi] holds the answer; lo is the floor or a size that got through
  private lo = 0;
  private hi = 0;
  private answered = false;
  private ceilingTried = false;
  private floorTried = false;
  // the probe in flight (size 0 = none)
  private size = 0;
  private id = 0;
  private sentAtMs = 0;
  private tries = 0;
  private nextId = 1;
  /** Monotonic ms of the next search (phases unknown and fixed). */
  private nextSearchMs = 0;

  constructor(private readonly timers: PmtuTimers = PMTU_DEFAULTS) {}

  /** Starts a search now between `floor` and `ceiling` (a running one restarts). */
  start(floor: number, ceiling: number, nowMs: number): void {
    this.phase = 'searching';
    this.searches++;
    this.lo = floor;
    this.hi = Math.max(floor, ceiling);
    this.answered = false;
    this.ceilingTried = false;
    this.floorTried = false;
    this.size = 0;
    this.tries = 0;
    this.nextSearchMs = nowMs;
  }

  /** True when a search should start now: never searched, or the re-probe / retry time came, or {@link expire}d. */
  due(nowMs: number): boolean {
    return this.phase !== 'searching' && this.nextSearchMs <= nowMs;
  }

  /** Makes {@link due} true now (endpoint change, EMSGSIZE on data). A running search goes on. */
  expire(): void {
    if (this.phase !== 'searching') this.nextSearchMs = 0;
  }

  /** The id to put in the probe {@link tick} asked for. */
  get probeId(): number {
    return this.id;
  }

  /**
   * Advances the search at `nowMs` (step 3 timeouts included): returns the
   * size to probe now, or 0 when nothing is to be sent.
   */
  tick(nowMs: number): number {
    if (this.phase !== 'searching') return 0;
    if (this.size !== 0) {
      if (nowMs - this.sentAtMs < this.timers.probeTimeoutMs) return 0;
      this.tries++;
      if (this.tries < this.timers.probeTries) return this.launch(this.size, nowMs);
      this.fail(nowMs);
      if (this.phase !== 'searching') return 0;
    }
    const next = this.choose(nowMs);
    if (next === 0) return 0;
    this.tries = 0;
    return this.launch(next, nowMs);
  }

  private launch(size: number, nowMs: number): number {
    this.size = size;
    this.id = this.nextId;
    this.nextId = this.nextId >= 0x7fff_ffff ? 1 : this.nextId + 1;
    this.sentAtMs = nowMs;
    this.probes++;
    return size;
  }

  /** Step 2: the ceiling, then (when it failed and nothing answered yet) the floor, then bisection. */
  private choose(nowMs: number): number {
    if (!this.answered) {
      if (!this.ceilingTried) {
        this.ceilingTried = true;
        return this.hi;
      }
      if (!this.floorTried) {
        this.floorTried = true;
        return this.lo;
      }
    }
    if (this.lo >= this.hi) {
      this.finish(this.lo, nowMs);
      return 0;
    }
    return this.lo + Math.ceil((this.hi - this.lo) / 2);
  }

  /** Reports the send of the probe {@link tick} asked for: 'too-big' (EMSGSIZE) fails that size at once. */
  onSent(result: ProbeSendResult, nowMs: number): void {
    if (this.phase === 'searching' && this.size !== 0 && result === 'too-big') this.fail(nowMs);
  }

  /** An authenticated reply to probe `id`. Replies to older probes are ignored. */
  onReply(id: number, nowMs: number): void {
    if (this.phase !== 'searching' || this.size === 0 || id !== this.id) return;
    this.replies++;
    this.answered = true;
    const size = this.size;
    this.size = 0;
    if (size >= this.hi) this.finish(size, nowMs);
    else this.lo = Math.max(this.lo, size);
  }

  /** The size in flight is too big, or lost `probeTries` times. */
  private fail(nowMs: number): void {
    const size = this.size;
    this.size = 0;
    if (!this.answered && size <= this.lo) {
      // Not even the floor came back: the peer does not answer probes. Keep what we had.
      this.phase = this.pmtu > 0 ? 'fixed' : 'unknown';
      this.doneAtMs = nowMs;
      this.nextSearchMs = nowMs + this.timers.retryMs;
      return;
    }
    this.hi = Math.max(this.lo, Math.min(this.hi, size - 1));
  }

  private finish(pmtu: number, nowMs: number): void {
    this.phase = 'fixed';
    this.pmtu = pmtu;
    this.size = 0;
    this.doneAtMs = nowMs;
    this.nextSearchMs = nowMs + this.timers.reprobeMs;
  }
}

/** Implementation: the scheduler's tick (ms): probes of a search follow each other at most this far apart when the kernel refuses sizes locally. */
export const PMTU_TICK_MS = 200;
/** Implementation: probes one peer may send in one step when the kernel refuses them for their size (no round trip needed). */
const LOCAL_REFUSALS_PER_STEP = 16;

/** What the scheduler needs from the send pipeline. */
export interface PmtuSender {
  sendProbe(peer: Peer, payloadLen: number, id: number): ProbeSendResult;
  sendProbeReply(peer: Peer, id: number, wireLen: number): boolean;
  /** The socket's EMSGSIZE count so far (0 when the backend cannot tell). */
  tooBigCount(): number;
}

/** The underlay family of a peer's endpoint (IPv4 as v4-mapped in the endpoint key). */
export function endpointFamily(peer: Peer): 4 | 6 {
  const k = peer.endpointKey;
  if (k[10] !== 0xff || k[11] !== 0xff) return 6;
  for (let i = 0; i < 10; i++) if (k[i] !== 0) return 6;
  return 4;
}

/**
 * Runs the searches of all peers on one coarse unref'd timer and answers
 * probes (the receive pipeline's {@link PmtuHooks}). Owns `Peer.pmtu`,
 * `Peer.pmtuEndpoint` and `Peer.innerMtu`; a change of a peer's inner MTU
 * voids the express send leases (they carry it as `maxLen`).
 */
export class PmtuScheduler implements PmtuHooks {
  private timer: NodeJS.Timeout | null = null;
  private tooBigSeen = 0;
  /** Probes answered (stats). */
  repliesSent = 0;

  constructor(
    private readonly peers: PeerTable,
    private readonly sender: PmtuSender,
    /** The configured inner MTU (the TUN's): the ceiling of every search. */
    private readonly mtu: number,
    private readonly timers: PmtuTimers = PMTU_DEFAULTS,
    private readonly logger: DataplaneLogger = silentLogger,
  ) {}

  /** Starts discovery (without it probes are still answered). Idempotent. */
  start(): void {
    if (this.timer !== null) return;
    this.timer = setInterval(() => this.tick(performance.now()), PMTU_TICK_MS);
    this.timer.unref();
  }

  /** Stops the timer. Idempotent. */
  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /** True while discovery runs. */
  get running(): boolean {
    return this.timer !== null;
  }

  /** One pass over the peers at monotonic `nowMs` (step 1 and the searches' timeouts). */
  tick(nowMs: number): void {
    const tb = this.sender.tooBigCount();
    const shrank = tb > this.tooBigSeen;
    this.tooBigSeen = tb;
    for (const peer of this.peers.withPrimary) {
      if (peer.primary === null || !peer.hasEndpoint) continue;
      let st = peer.pmtu;
      if (st === null) st = peer.pmtu = new PathMtuSearch(this.timers);
      const where = `${peer.endpointHost}|${peer.endpointPort}`;
      if (where !== peer.pmtuEndpoint) {
        peer.pmtuEndpoint = where;
        st.expire();
        if (st.phase === 'searching') this.begin(peer, st, nowMs);
      }
      if (shrank) st.expire(); // EMSGSIZE on data: some path shrank; which one the counter does not say
      if (st.due(nowMs)) this.begin(peer, st, nowMs);
      this.step(peer, st, nowMs);
    }
  }

  private begin(peer: Peer, st: PathMtuSearch, nowMs: number): void {
    const fam = endpointFamily(peer);
    st.start(PMTU_FLOOR[fam], pmtuCeiling(fam, this.mtu), nowMs);
  }

  /** Sends what the search wants now and publishes its result. */
  private step(peer: Peer, st: PathMtuSearch, nowMs: number): void {
    const fam = endpointFamily(peer);
    for (let k = 0; k < LOCAL_REFUSALS_PER_STEP; k++) {
      const size = st.tick(nowMs);
      if (size === 0) break;
      const r = this.sender.sendProbe(peer, size - OUTER_HEADERS[fam] - OVERHEAD, st.probeId);
      st.onSent(r, nowMs);
      if (r !== 'too-big') break;
    }
    const inner = st.pmtu === 0 ? 65535 : innerMtuOf(st.pmtu, fam, this.mtu);
    if (inner !== peer.innerMtu) {
      peer.innerMtu = inner;
      this.peers.voidExpressTx();
      this.logger.info('path mtu', { peer: peer.id, endpoint: `${peer.endpointHost}:${peer.endpointPort}`, pmtu: st.pmtu, innerMtu: inner });
    }
  }

  /** {@inheritDoc PmtuHooks.onProbe} */
  onProbe(peer: Peer, id: number, wireLen: number): void {
    if (this.sender.sendProbeReply(peer, id, wireLen)) this.repliesSent++;
  }

  /** {@inheritDoc PmtuHooks.onReply} The next probe goes out at once, not at the next tick. */
  onReply(peer: Peer, id: number): void {
    const st = peer.pmtu;
    if (st === null) return;
    const now = performance.now();
    st.onReply(id, now);
    this.step(peer, st, now);
  }
}
