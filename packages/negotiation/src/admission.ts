/**
 * What the control server decides about a connection before any TLS work,
 * and how it reports refusals without letting anyone flood the log. Small
 * pieces with no I/O (the clock comes in), tested on their own:
 *
 * - `sourcePrefix`: the address block one attacker is assumed to hold — an
 *   IPv4 /24 or an IPv6 /64 — used for the per-prefix caps and the
 *   handshake rate limit of sources that are not listed member endpoints;
 * - `TokenBuckets`: the per-source handshake rate limit (token bucket);
 * - `RefusalLog`: per source (the control server uses the address) and
 *   reason, the first refusal of an interval is logged, later ones are
 *   counted and summed up in one line.
 */
import { isIPv4, isIPv6 } from 'node:net';
import type { Logger } from './logger.js';

/**
 * The prefix a source address belongs to: `a.b.c.0/24` for IPv4 (also
 * IPv4-mapped IPv6), the first four groups `x:x:x:x::/64` (lower-case, no
 * leading zeros) for IPv6. Anything else (not an IP literal) is returned
 * unchanged, so it groups only with itself.
 */
export function sourcePrefix(addr: string): string {
  let ip = addr;
  const zone = ip.indexOf('%');
  if (zone >= 0) ip = ip.slice(0, zone);
  if (ip.toLowerCase().startsWith('::ffff:') && isIPv4(ip.slice(7))) ip = ip.slice(7);
  if (isIPv4(ip)) {
    const o = ip.split('.');
    return `${o[0]}.${o[1]}.${o[2]}.0/24`;
  }
  if (!isIPv6(ip)) return addr;
  const groups = ipv6Groups(ip);
  return `${groups.slice(0, 4).map((g) => g.toString(16)).join(':')}::/64`;
}

/** The eight 16-bit groups of a valid IPv6 literal (`::` expanded, dotted IPv4 tail converted). */
function ipv6Groups(ip: string): number[] {
  let text = ip.toLowerCase();
  const lastColon = text.lastIndexOf(':');
  const tail = text.slice(lastColon + 1);
  if (tail.includes('.')) {
    const o = tail.split('.').map(Number);
    text = `${text.slice(0, lastColon + 1)}${((o[0]! << 8) | o[1]!).toString(16)}:${((o[2]! << 8) | o[3]!).toString(16)}`;
  }
  const [head, rest] = text.split('::') as [string, string | undefined];
  const parse = (s: string): number[] => (s === '' ? [] : s.split(':').map((g) => parseInt(g, 16)));
  const h = parse(head);
  if (rest === undefined) return h;
  const r = parse(rest);
  return [...h, ...new Array<number>(8 - h.length - r.length).fill(0), ...r];
}

/**
 * One token bucket per source: `burst` tokens, refilled at `ratePerSec`.
 * `take(source)` spends one token and says whether there was one. At most
 * `maxSources` buckets are kept: when more are needed, buckets that have
 * refilled completely (as good as new) are dropped first, then the oldest.
 */
export class TokenBuckets {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    private readonly ratePerSec: number,
    private readonly burst: number,
    private readonly now: () => number = Date.now,
    private readonly maxSources = 4096,
  ) {}

  /** Spends a token of `source`; false when its bucket is empty (the caller refuses). */
  take(source: string): boolean {
    const now = this.now();
    let b = this.buckets.get(source);
    if (b === undefined) {
      if (this.buckets.size >= this.maxSources) this.prune(now);
      b = { tokens: this.burst, at: now };
      this.buckets.set(source, b);
    } else {
      b.tokens = Math.min(this.burst, b.tokens + ((now - b.at) / 1000) * this.ratePerSec);
      b.at = now;
    }
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  /** Buckets held (for tests and stats). */
  get size(): number {
    return this.buckets.size;
  }

  private prune(now: number): void {
    for (const [k, b] of this.buckets) {
      if (b.tokens + ((now - b.at) / 1000) * this.ratePerSec >= this.burst) this.buckets.delete(k);
    }
    // Still full: forget the oldest (Map order = first use); it starts again with a full bucket.
    for (const k of this.buckets.keys()) {
      if (this.buckets.size < this.maxSources) break;
      this.buckets.delete(k);
    }
  }
}

/** Log level of a refusal line. */
export type RefusalLevel = 'warn' | 'info' | 'debug';

interface RefusalEntry {
  start: number;
  suppressed: number;
  level: RefusalLevel;
  source: string;
  reason: string;
}

/** Implementation: sources followed by one `RefusalLog` at once; refusals from further sources share one entry (`*`). */
export const REFUSAL_LOG_SOURCES = 256;

/**
 * Rate-limited refusal logging. Per (source, reason), the first refusal in
 * an interval of `intervalMs` is logged with its fields; the others are
 * counted, and one line `control connection refusals suppressed` with
 * `count` follows when the interval ends (at the next refusal of that
 * source and reason, or at the latest at the next `sweep`). At most
 * `maxSources` (source, reason) pairs are followed; refusals beyond that are
 * counted under source `*`. So one interval logs at most
 * 2 × (`maxSources` + 1) lines, whatever the number of refusals.
 */
export class RefusalLog {
  private readonly entries = new Map<string, RefusalEntry>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly log: Logger,
    private readonly intervalMs: number,
    private readonly now: () => number = Date.now,
    private readonly maxSources = REFUSAL_LOG_SOURCES,
  ) {}

  /** Reports one refusal of `source` for `reason`; `fields` are logged with the first one of the interval. */
  note(level: RefusalLevel, source: string, reason: string, fields: Record<string, unknown>): void {
    const now = this.now();
    let key = `${source}|${reason}`;
    let e = this.entries.get(key);
    if (e !== undefined && now - e.start < this.intervalMs) {
      e.suppressed++;
      return;
    }
    if (e !== undefined) this.end(key, e);
    if (this.entries.size >= this.maxSources) {
      key = `*|${reason}`;
      e = this.entries.get(key);
      if (e !== undefined) {
        e.suppressed++;
        return;
      }
      source = '*';
    }
    this.entries.set(key, { start: now, suppressed: 0, level, source, reason });
    this.log[level]('control connection refused', { reason, ...fields });
    if (this.timer === undefined) {
      this.timer = setInterval(() => this.sweep(), this.intervalMs);
      this.timer.unref();
    }
  }

  /** Ends every interval that is over (summary lines); stops the timer when nothing is followed. */
  sweep(): void {
    const now = this.now();
    for (const [k, e] of this.entries) if (now - e.start >= this.intervalMs) this.end(k, e);
    if (this.entries.size === 0) this.stopTimer();
  }

  /** Writes the pending summaries and stops (the server closes). */
  close(): void {
    for (const [k, e] of this.entries) this.end(k, e);
    this.stopTimer();
  }

  private end(key: string, e: RefusalEntry): void {
    this.entries.delete(key);
    if (e.suppressed > 0) {
      this.log[e.level]('control connection refusals suppressed', { reason: e.reason, endpoint: e.source, count: e.suppressed, ms: this.intervalMs });
    }
  }

  private stopTimer(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }
}
