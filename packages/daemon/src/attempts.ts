/**
 * When the daemon tries to negotiate with a node that has no keys: the one
 * owner of the attempt schedule (per-node backoff, the per-tick pick).
 *
 *  1. `traffic(name)`: the data plane holds packets for the node: try now,
 *     unless the node is in backoff;
 *  2. `tick(candidates)` (every TICK_MS): a few nodes without keys, in random
 *     order so that no record is starved;
 *  3. each failure doubles the node's pause (jittered), from FIRST_RETRY_MS
 *     up to MAX_RETRY_MS; a success forgets it.
 */
import { jitteredInterval } from '@cluevpn/bnl';

/** Implementation: first retry of a failed negotiation (doubles per failure, jittered). */
export const FIRST_RETRY_MS = 250;
/** Implementation: longest pause between negotiation attempts with an unreachable peer. */
export const MAX_RETRY_MS = 300_000;
/** Implementation: peers negotiated proactively per tick at most. */
export const PROACTIVE_PER_TICK = 2;

/** What the planner needs. */
export interface AttemptPlannerOptions {
  /** Monotonic-enough milliseconds (Date.now in the daemon; a fake clock in tests). */
  now(): number;
  /** [0, 1) (Math.random by default). */
  random?: () => number;
  /** Starts one negotiation with `name`: resolves once keyed, rejects when it failed. */
  attempt(name: string): Promise<unknown>;
  /** False for a node nobody dials first (listed without endpoints, or none known). */
  reachableFirst(name: string): boolean;
  /** A failed attempt (logged by the caller at info). */
  failed(name: string, why: string, err: unknown, backoffMs: number): void;
}

/** Counters (monotonic). */
export interface AttemptStats {
  /** Attempts started. */
  started: number;
}

/** See the file comment. */
export class AttemptPlanner {
  private readonly last = new Map<string, { at: number; backoffMs: number }>();
  private readonly counters: AttemptStats = { started: 0 };
  private readonly random: () => number;

  constructor(private readonly o: AttemptPlannerOptions) {
    this.random = o.random ?? Math.random;
  }

  /** Step 1: packets wait for `name`. */
  traffic(name: string): void {
    this.tryNow(name, 'traffic');
  }

  /** Step 2: `candidates` are the nodes without keys; a few of them are tried. */
  tick(candidates: readonly string[]): void {
    const now = this.o.now();
    const open = candidates.filter((n) => !this.inBackoff(n, now) && this.o.reachableFirst(n));
    for (let i = 0; i < open.length && i < PROACTIVE_PER_TICK; i++) {
      const j = i + Math.floor(this.random() * (open.length - i));
      [open[i], open[j]] = [open[j]!, open[i]!];
      this.tryNow(open[i]!, 'proactive');
    }
  }

  /** Forgets a node (revoked). */
  forget(name: string): void {
    this.last.delete(name);
  }

  stats(): AttemptStats {
    return { ...this.counters };
  }

  private inBackoff(name: string, now: number): boolean {
    const a = this.last.get(name);
    return a !== undefined && now - a.at < a.backoffMs;
  }

  private tryNow(name: string, why: string): void {
    const now = this.o.now();
    // A node listed without an endpoint (behind NAT) is not reached first: it negotiates with us.
    if (this.inBackoff(name, now) || !this.o.reachableFirst(name)) return;
    const prev = this.last.get(name)?.backoffMs;
    // A peer that is still starting (connection refused) is retried soon;
    // one that stays unreachable ever more rarely.
    const entry = { at: now, backoffMs: jitteredInterval(prev === undefined ? FIRST_RETRY_MS : Math.min(prev * 2, MAX_RETRY_MS), 0.25, this.random) };
    this.last.set(name, entry);
    this.counters.started++;
    this.o.attempt(name).then(
      () => this.last.delete(name),
      (err: unknown) => this.o.failed(name, why, err, entry.backoffMs),
    );
  }
}
