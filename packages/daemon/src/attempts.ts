/**
 * When the daemon tries to negotiate with a node that has no keys: the one
 * owner of the attempt schedule (per-node backoff, the per-tick pick).
 *
 *  1. `traffic(name)`: the data plane holds packets for the node: try now,
 *     unless the node is in backoff;
 *  2. `tick(pool, wanted)` (every TICK_MS): a few nodes without keys, the
 *     `preferred` ones (relays) first, then those
 *     reached before first, then random ones, so that no record is starved;
 *  3. each failure doubles the node's pause (jittered), from FIRST_RETRY_MS
 *     up to MAX_RETRY_MS; a success forgets it;
 *  4. a node never reached since start ("cold": most records of a large
 *     list, which may never answer) costs a token of one bucket shared by
 *     all of them (COLD_BURST, refilled at COLD_PER_MINUTE); without a token
 *     the attempt is not made (nor its backoff raised): later traffic or a
 *     later tick tries again. A node reached before (a session since start)
 *     is exempt, and the tick tries such nodes first.
 *
 * Bound (tested in test/attempts.test.ts): attempts per minute ≤
 * COLD_BURST + COLD_PER_MINUTE for all cold nodes together, whatever their
 * number or traffic, plus for each node reached before what its backoff
 * allows (about 8 in its first minute of failures, then one per
 * MAX_RETRY_MS): proportional to the peers with traffic, plus a constant.
 * Before step 4, traffic toward 10 000 unreachable records (a monitoring
 * sweep) started 60 000 attempts in the first minute.
 */
import { jitteredInterval } from '@cluevpn/bnl';

/** Implementation: first retry of a failed negotiation (doubles per failure, jittered). */
export const FIRST_RETRY_MS = 250;
/** Implementation: longest pause between negotiation attempts with an unreachable peer. */
export const MAX_RETRY_MS = 300_000;
/** Implementation: peers negotiated proactively per tick at most. */
export const PROACTIVE_PER_TICK = 2;
/** Implementation: random picks of one tick among a large pool (step 2). */
export const TICK_PROBES = 64;
/** Implementation: attempts toward cold nodes (never reached since start) at once, before the refill rate applies. */
export const COLD_BURST = 32;
/** Implementation: refill of the cold-attempt bucket, tokens per minute. */
export const COLD_PER_MINUTE = 60;

/** What the planner needs. */
export interface AttemptPlannerOptions {
  /** Monotonic-enough milliseconds (Date.now in the daemon; a fake clock in tests). */
  now(): number;
  /** [0, 1) (Math.random by default). */
  random?: () => number;
  /** Starts one negotiation with `name`: resolves once keyed, rejects when it failed. */
  attempt(name: string): Promise<unknown>;
  /**
   * False for a node we cannot dial for this reason (listed without
   * endpoints and no relay to reach it through for our traffic, or no
   * address known).
   */
  reachableFirst(name: string, why: 'traffic' | 'proactive'): boolean;
  /** Nodes tried before any other at each tick (the relays: nodes behind NAT find each other through them). */
  preferred?(): readonly string[];
  /** A failed attempt (logged by the caller at info). */
  failed(name: string, why: string, err: unknown, backoffMs: number): void;
}

/** Counters (monotonic). */
export interface AttemptStats {
  /** Attempts started. */
  started: number;
  /** Attempts toward cold nodes not made for want of a token (step 4). */
  deferred: number;
}

/** See the file comment. */
export class AttemptPlanner {
  private readonly last = new Map<string, { at: number; backoffMs: number }>();
  private readonly counters: AttemptStats = { started: 0, deferred: 0 };
  private readonly random: () => number;
  /** Nodes that had a session since start (step 4: exempt from the bucket). */
  private readonly reached = new Set<string>();
  private tokens = COLD_BURST;
  private tokensAt: number;

  constructor(private readonly o: AttemptPlannerOptions) {
    this.random = o.random ?? Math.random;
    this.tokensAt = o.now();
  }

  /** Step 1: packets wait for `name`. */
  traffic(name: string): void {
    this.tryNow(name, 'traffic');
  }

  /**
   * Step 2: up to PROACTIVE_PER_TICK nodes of `pool` for which `wanted`
   * holds (no keys, a current peer): nodes reached before first (they were
   * up), then cold ones at random. A pool over TICK_PROBES nodes is sampled
   * (TICK_PROBES random picks), so a tick costs the same for 10 000 records
   * as for 64; every record still has the same chance at each tick.
   */
  tick(pool: readonly string[], wanted: (name: string) => boolean): void {
    const now = this.o.now();
    const open = (n: string): boolean => wanted(n) && !this.inBackoff(n, now) && this.o.reachableFirst(n, 'proactive');
    let left = PROACTIVE_PER_TICK;
    for (const n of this.o.preferred?.() ?? []) {
      if (left === 0) return;
      if (open(n)) {
        this.tryNow(n, 'proactive');
        left--;
      }
    }
    for (const n of this.reached) {
      if (left === 0) return;
      if (open(n)) {
        this.tryNow(n, 'proactive');
        left--;
      }
    }
    const cold = (n: string): boolean => !this.reached.has(n) && open(n);
    if (pool.length <= TICK_PROBES) {
      const all = pool.filter(cold);
      for (let i = 0; i < all.length && left > 0; i++, left--) {
        const j = i + Math.floor(this.random() * (all.length - i));
        [all[i], all[j]] = [all[j]!, all[i]!];
        this.tryNow(all[i]!, 'proactive');
      }
      return;
    }
    const tried = new Set<string>();
    for (let probe = 0; probe < TICK_PROBES && left > 0; probe++) {
      const n = pool[Math.floor(this.random() * pool.length)]!;
      if (tried.has(n) || !cold(n)) continue;
      tried.add(n);
      this.tryNow(n, 'proactive');
      left--;
    }
  }

  /** Forgets a node (revoked). */
  forget(name: string): void {
    this.last.delete(name);
    this.reached.delete(name);
  }

  stats(): AttemptStats {
    return { ...this.counters };
  }

  private inBackoff(name: string, now: number): boolean {
    const a = this.last.get(name);
    return a !== undefined && now - a.at < a.backoffMs;
  }

  /** Step 4: one token of the cold bucket, if there is one. */
  private takeColdToken(now: number): boolean {
    this.tokens = Math.min(COLD_BURST, this.tokens + ((now - this.tokensAt) * COLD_PER_MINUTE) / 60_000);
    this.tokensAt = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  private tryNow(name: string, why: 'traffic' | 'proactive'): void {
    const now = this.o.now();
    // A node listed without an endpoint (behind NAT) is not reached first: it negotiates
    // with us, or our traffic reaches it through a relay (src/relay.ts).
    if (this.inBackoff(name, now) || !this.o.reachableFirst(name, why)) return;
    if (!this.reached.has(name) && !this.takeColdToken(now)) {
      this.counters.deferred++;
      return;
    }
    const prev = this.last.get(name)?.backoffMs;
    // A peer that is still starting (connection refused) is retried soon;
    // one that stays unreachable ever more rarely.
    const entry = { at: now, backoffMs: jitteredInterval(prev === undefined ? FIRST_RETRY_MS : Math.min(prev * 2, MAX_RETRY_MS), 0.25, this.random) };
    this.last.set(name, entry);
    this.counters.started++;
    this.o.attempt(name).then(
      () => {
        this.last.delete(name);
        this.reached.add(name);
      },
      (err: unknown) => this.o.failed(name, why, err, entry.backoffMs),
    );
  }
}
