/**
 * Fakes for tests of this package and of its users: an in-memory
 * negotiation network (no sockets), an in-memory session store and a
 * manual clock.
 */
import { randomBytes } from 'node:crypto';
import { ChannelError } from './errors.js';
import type { Clock, IncomingContext, NegotiationChannel, NegotiationTransport } from './negotiator.js';
import { MAX_EPOCH, type SessionStore, type StoredSession } from './store.js';

type Handler = (body: unknown, ctx: IncomingContext) => unknown;

/**
 * A set of nodes connected in memory. `node(name)` gives the object to
 * `attach` a Negotiator to and the `transport` it connects with. Each
 * connection gets its own random "exporter", seen by both ends. Every
 * request and answer is delivered asynchronously (after `delayMs`, via
 * JSON, as on the wire); `down(name)` makes a node unreachable.
 */
export class MemoryNetwork {
  private readonly handlers = new Map<string, Map<string, Handler>>();
  private readonly unreachable = new Set<string>();
  /** Every request sent: [from, to, type]. */
  readonly log: Array<[string, string, string]> = [];

  /** `delayMs`: fixed delay per delivery, or a function drawing one (to vary interleavings). */
  constructor(private readonly delayMs: number | (() => number) = 0) {}

  /** The server side (`handle`) and client side (`transport`) of node `name`. */
  node(name: string): { handle(type: string, h: Handler): void; transport: NegotiationTransport } {
    const table = new Map<string, Handler>();
    this.handlers.set(name, table);
    return {
      handle: (type, h) => void table.set(type, h),
      transport: { connect: (peer) => this.connect(name, peer) },
    };
  }

  /** Makes `name` unreachable (true) or reachable again. */
  down(name: string, isDown = true): void {
    if (isDown) this.unreachable.add(name);
    else this.unreachable.delete(name);
  }

  private later<T>(fn: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const run = (): void => {
        try {
          resolve(fn());
        } catch (err) {
          reject(err as Error);
        }
      };
      const d = typeof this.delayMs === 'number' ? this.delayMs : this.delayMs();
      if (d > 0) setTimeout(run, d);
      else setImmediate(run);
    });
  }

  private async connect(from: string, to: string): Promise<NegotiationChannel> {
    await this.later(() => undefined);
    if (this.unreachable.has(to) || !this.handlers.has(to)) throw new ChannelError('ERR_CHANNEL_CLOSED', `${to} unreachable`);
    const exporter = randomBytes(32);
    const closers: Array<() => void> = [];
    let closed = false;
    const ctx: IncomingContext = { peer: { name: from }, exporter: Buffer.from(exporter), state: new Map(), onClose: (fn) => closers.push(fn) };
    const table = this.handlers.get(to)!;
    return {
      exporter,
      request: async (type, body) => {
        if (closed) throw new ChannelError('ERR_CHANNEL_CLOSED', 'closed');
        this.log.push([from, to, type]);
        const wire = JSON.parse(JSON.stringify(body)) as unknown;
        const answer = await this.later(async () => {
          if (this.unreachable.has(to)) throw new ChannelError('ERR_CHANNEL_CLOSED', `${to} unreachable`);
          const h = table.get(type);
          if (!h) throw new ChannelError('ERR_CHANNEL_REMOTE', `no handler ${type}`, { remoteCode: 'ERR_UNKNOWN_TYPE' });
          try {
            return JSON.parse(JSON.stringify((await h(wire, ctx)) ?? null)) as unknown;
          } catch (err) {
            const code = (err as { code?: unknown }).code;
            throw new ChannelError('ERR_CHANNEL_REMOTE', (err as Error).message, { remoteCode: typeof code === 'string' ? code : 'ERR_INTERNAL' });
          }
        });
        const a = await answer;
        await this.later(() => undefined);
        if (closed) throw new ChannelError('ERR_CHANNEL_CLOSED', 'closed');
        return a;
      },
      close: () => {
        if (closed) return;
        closed = true;
        for (const fn of closers.splice(0)) fn();
        exporter.fill(0);
      },
    };
  }
}

/** `SessionStore` in memory (same semantics as `StateStore`, no persistence). */
export class MemoryStore implements SessionStore {
  readonly rows = new Map<string, StoredSession>();
  private copy(s: StoredSession): StoredSession {
    return { ...s, txKey: Buffer.from(s.txKey), rxKey: Buffer.from(s.rxKey), compression: { ...s.compression } };
  }
  listSessions(): StoredSession[] {
    return [...this.rows.values()].sort((a, b) => (a.peer < b.peer ? -1 : 1)).map((s) => this.copy(s));
  }
  getSession(peer: string): StoredSession | undefined {
    const s = this.rows.get(peer);
    return s ? this.copy(s) : undefined;
  }
  putSession(s: StoredSession): void {
    this.rows.set(s.peer, this.copy(s));
  }
  deleteSession(peer: string): void {
    this.rows.delete(peer);
  }
  reservePeerEpoch(peer: string, localIndex: number, atLeast = 0): number | undefined {
    const s = this.rows.get(peer);
    if (!s || s.localIndex !== localIndex) return undefined;
    const next = Math.max(s.rxEpochFloor + 1, atLeast);
    if (next > MAX_EPOCH) return undefined;
    s.rxEpochFloor = next;
    return next;
  }
  setSendEpoch(peer: string, localIndex: number, epoch: number): boolean {
    const s = this.rows.get(peer);
    if (!s || s.localIndex !== localIndex) return false;
    if (s.sendEpoch < epoch) s.sendEpoch = epoch;
    return true;
  }
  noteRxEpoch(peer: string, localIndex: number, epoch: number): void {
    const s = this.rows.get(peer);
    if (s && s.localIndex === localIndex && s.rxEpochFloor < epoch) s.rxEpochFloor = epoch;
  }
}

/** A clock that only moves when `advance` is called; timers fire in due order. */
export class ManualClock implements Clock {
  private t: number;
  private seq = 0;
  private readonly timers = new Map<number, { due: number; fn: () => void }>();
  constructor(start = 1_700_000_000_000) {
    this.t = start;
  }
  now(): number {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.seq;
    this.timers.set(id, { due: this.t + Math.max(0, ms), fn });
    return id;
  }
  clearTimeout(h: unknown): void {
    this.timers.delete(h as number);
  }
  /** Number of armed timers. */
  get pending(): number {
    return this.timers.size;
  }
  /** Moves time forward by `ms`, running every timer that falls due (in order). */
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      let next: [number, { due: number; fn: () => void }] | undefined;
      for (const e of this.timers) if (e[1].due <= end && (!next || e[1].due < next[1].due)) next = e;
      if (!next) break;
      this.timers.delete(next[0]);
      this.t = next[1].due;
      next[1].fn();
    }
    this.t = end;
  }
}
