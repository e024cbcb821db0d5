/**
 * BNL gossip over the control channel: the `bnl-pull` and `bnl-push`
 * handlers, pushes and pull rounds, and the pull timer.
 *
 * Gossip messages are `@cluevpn/bnl`'s binary messages, base64 in the JSON
 * body (`{ m }`). Incoming lists follow one order: parse, verify, dedupe (by
 * hash), apply (`GossipOptions.apply`: the daemon's list applier), forward
 * to a few random peers — never re-flooded.
 *
 *  1. `start`: the first pull round soon after start (catch up on lists
 *     signed while we were down, learn which serial our peers hold), then
 *     one every `pullinterval` (jittered) from `PULL_FANOUT` peers
 *  2. a pushed or pulled list that is accepted is applied, then forwarded
 *     to `FORWARD_FANOUT` peers
 *  3. `pushToAll` (a reload): every other node, peers with keys first,
 *     `KEYED_PUSH_CONCURRENCY` at a time to peers we hold keys with, `PUSH_CONCURRENCY` to the rest
 *
 * Owns: the seen-hash set, each peer's last known serial, the gossip
 * counters, the list encoded once per list, the pull timer.
 */
import {
  SeenSet,
  choosePullTargets,
  decodeGossip,
  encodeGossip,
  handlePull,
  handlePullReply,
  handlePush,
  jitteredInterval,
  makePullRequest,
  type BnlStore,
  type GossipMessage,
  type OfferResult,
} from '@cluevpn/bnl';
import type { ControlConnection, ControlServer } from '@cluevpn/negotiation';
import type { DaemonConfig } from './config.js';
import { DaemonError } from './errors.js';
import type { Logger } from './logging.js';
import { inParallel } from './parallel.js';

/** Implementation: peers asked per pull round. */
export const PULL_FANOUT = 3;
/** Implementation: peers an accepted pushed/pulled list is forwarded to. */
export const FORWARD_FANOUT = 3;
/** Implementation: delay of the first pull round after start (jittered). */
export const INITIAL_PULL_MS = 1_000;
/** Implementation: concurrent pushes of `pushToAll` to nodes we hold no keys with. */
export const PUSH_CONCURRENCY = 16;
/** Implementation: concurrent pushes of `pushToAll` to peers we hold keys with (they answer: short pushes). */
export const KEYED_PUSH_CONCURRENCY = 64;

/** Counters of one `pushToAll`, updated as pushes finish. */
export interface PushProgress {
  /** Nodes pushed to (every other node of the list). */
  readonly targets: number;
  /** Nodes that took the list or had it. */
  ok: number;
  /** Nodes that refused it or could not be reached. */
  failed: number;
  /** Settles when every push has finished. */
  done: Promise<void>;
}

/** Specification: request types of the gossip over the control channel. */
export const GossipRequest = { pull: 'bnl-pull', push: 'bnl-push' } as const;

/** Gossip counters (monotonic). */
export interface GossipStats {
  pullsSent: number;
  pullsFailed: number;
  pullsServed: number;
  pushesSent: number;
  pushesFailed: number;
  pushesReceived: number;
  listsAccepted: number;
  listsRejected: Record<string, number>;
}

function wrap(msg: GossipMessage): { m: string } {
  return { m: Buffer.from(encodeGossip(msg)).toString('base64') };
}

function unwrap(body: unknown): GossipMessage {
  const m = (body as { m?: unknown } | null)?.m;
  if (typeof m !== 'string') throw new DaemonError('ERR_GOSSIP', 'gossip body without message');
  return decodeGossip(Buffer.from(m, 'base64'));
}

/** What gossip needs from the mesh. */
export interface GossipOptions {
  config: Pick<DaemonConfig, 'pullintervalMs'>;
  /** The gossip logger (`cluevpnd:gossip`). */
  logger: Logger;
  bnl: BnlStore;
  selfName: string;
  /** The control server: the gossip handlers are attached to it. */
  server: Pick<ControlServer, 'handle'>;
  /** True when a node is a current peer (the data plane has it). */
  isPeer(name: string): boolean;
  /** The peers we hold keys with now (they answered us, so they are up). */
  keyedPeers(): readonly string[];
  /** A control connection of our own to `name` (never through a relay). */
  connect(name: string): Promise<ControlConnection>;
  /** Applies an accepted list; called once per accepted list. */
  apply(result: Extract<OfferResult, { accepted: true }>, source: string): Promise<void>;
}

/** The running gossip. */
export interface Gossip {
  /** Starts the pull timer (step 1). */
  start(): void;
  /**
   * Pushes the current list to every node. Returns at once with live
   * counters; `done` settles when every push has finished (a node that does
   * not answer takes up to the handshake timeout).
   */
  pushToAll(): PushProgress;
  /** One pull round now (also run by the timer). */
  pullRound(): Promise<void>;
  /** The BNL serial `name` was last seen holding, undefined when unknown. */
  serialOf(name: string): number | undefined;
  /** Forgets a revoked node's serial. */
  forget(name: string): void;
  /** A copy of the counters. */
  stats(): GossipStats;
  /** Stops the timer; pushes not yet started do nothing. */
  close(): void;
}

/** Attaches the handlers to the server (steps 2–3); the timer starts with `start`. */
export function createGossip(o: GossipOptions): Gossip {
  const { config, bnl, selfName } = o;
  const log = o.logger;
  let closed = false;
  const seen = new SeenSet();
  const serials = new Map<string, number>();
  const gs: GossipStats = { pullsSent: 0, pullsFailed: 0, pullsServed: 0, pushesSent: 0, pushesFailed: 0, pushesReceived: 0, listsAccepted: 0, listsRejected: {} };
  const noteSerial = (name: string, msg: GossipMessage): void => {
    if (msg.type === 'pull' || msg.type === 'pull-not-newer') serials.set(name, msg.serial);
  };
  const others = (): string[] => (bnl.current?.bnl.nodes ?? []).map((n) => n.name).filter((n) => n !== selfName && o.isPeer(n));
  /**
   * Gossip targets: up to k−1 peers we hold keys with (they answered us, so
   * they are up), the rest at random among every other node (so that a
   * node we have no session with still hears from us, and partitions heal).
   * With a large list of mostly unreachable records, a choice among all of
   * them would almost never reach a live peer (3 of 10 000). Never `exclude`.
   */
  const gossipTargets = (k: number, exclude?: string): string[] => {
    const all = others().filter((n) => n !== exclude);
    const keyed = new Set(o.keyedPeers());
    const picked = choosePullTargets(all.filter((n) => keyed.has(n)), Math.max(1, k - 1));
    const chosen = new Set(picked);
    const rest = choosePullTargets(all.filter((n) => !chosen.has(n)), k - picked.length);
    return [...picked, ...rest];
  };
  /**
   * The current list as a push and as a pull answer, each encoded once per
   * list rather than once per peer (a 10 000-node list is 1.2 MB, 1.7 MB in
   * base64): what stays per connection is its frame, bounded by the pushes
   * in flight (PUSH_CONCURRENCY) and the pulls served at once.
   */
  let encoded: { hash: string; push: { m: string }; pullList: { m: string } } | undefined;
  const encodedList = (cur: NonNullable<BnlStore['current']>): { push: { m: string }; pullList: { m: string } } => {
    if (encoded?.hash !== cur.hash) encoded = { hash: cur.hash, push: wrap({ type: 'push', bnl: cur.bytes }), pullList: wrap({ type: 'pull-list', bnl: cur.bytes }) };
    return encoded;
  };

  /** After an offer: count, apply, forward. */
  const afterOffer = async (result: OfferResult, from: string, forward: boolean): Promise<void> => {
    if (!result.accepted) {
      if (result.code !== 'ERR_BNL_DUPLICATE' && result.code !== 'ERR_BNL_STALE') {
        gs.listsRejected[result.code] = (gs.listsRejected[result.code] ?? 0) + 1;
        log.warn('list refused', { peer: from, code: result.code, reason: result.reason });
      }
      return;
    }
    gs.listsAccepted++;
    serials.set(from, result.list.bnl.serial);
    if (result.conflict) log.error('two different lists with the same serial: the lower hash wins on every node; sign a new list', { serial: result.list.bnl.serial, code: result.conflict.code });
    log.notice('new list accepted', { peer: from, serial: result.list.bnl.serial });
    await o.apply(result, from);
    if (forward) for (const t of gossipTargets(FORWARD_FANOUT, from)) void pushTo(t);
  };

  o.server.handle(GossipRequest.pull, (body, ctx) => {
    const msg = unwrap(body);
    if (msg.type !== 'pull') throw new DaemonError('ERR_GOSSIP', `expected pull, got ${msg.type}`);
    gs.pullsServed++;
    noteSerial(ctx.peer.name, msg);
    const reply = handlePull(bnl, msg);
    return reply.type === 'pull-list' && bnl.current !== null && reply.bnl === bnl.current.bytes ? encodedList(bnl.current).pullList : wrap(reply);
  });
  o.server.handle(GossipRequest.push, async (body, ctx) => {
    const msg = unwrap(body);
    if (msg.type !== 'push') throw new DaemonError('ERR_GOSSIP', `expected push, got ${msg.type}`);
    gs.pushesReceived++;
    const out = await handlePush(bnl, seen, msg);
    if (out.result) await afterOffer(out.result, ctx.peer.name, out.forward);
    else if (out.reply.type === 'push-reply' && out.reply.status === 'duplicate' && bnl.current) serials.set(ctx.peer.name, bnl.current.bnl.serial);
    return wrap(out.reply);
  });

  async function pushTo(name: string, conn?: ControlConnection): Promise<boolean> {
    const cur = bnl.current;
    if (!cur || closed) return false;
    let c = conn;
    try {
      if (c === undefined) {
        c = await o.connect(name); // gossip never goes through a relay
        // A small request first, on a connection of our own: the peer answers
        // it only after it authenticated us (a list sent at once, more than
        // its pre-authentication budget of 64 KiB, is cut: every list over
        // ~48 KB was), and the answer says whether it holds our list already.
        const held = unwrap(await c.request(GossipRequest.pull, wrap(makePullRequest(bnl))));
        noteSerial(name, held);
        if (held.type === 'pull-not-newer' && held.hash === cur.hash) {
          serials.set(name, cur.bnl.serial);
          return true;
        }
        if (held.type === 'pull-list') {
          // the peer holds a list that replaces ours: take it rather than push
          const out = await handlePullReply(bnl, seen, held);
          if (out.result) await afterOffer(out.result, name, out.forward);
          return true;
        }
      }
      gs.pushesSent++;
      const reply = unwrap(await c.request(GossipRequest.push, encodedList(cur).push));
      if (reply.type !== 'push-reply') throw new DaemonError('ERR_GOSSIP', `expected push-reply, got ${reply.type}`);
      if (reply.status === 'rejected') {
        log.warn('peer refused our list', { peer: name, serial: cur.bnl.serial, code: reply.code });
        return false;
      }
      serials.set(name, cur.bnl.serial);
      return true;
    } catch (err) {
      gs.pushesFailed++;
      log.info('push failed', { peer: name, err });
      return false;
    } finally {
      if (conn === undefined) c?.close();
    }
  }

  async function pullFrom(name: string): Promise<void> {
    let c: ControlConnection | undefined;
    try {
      c = await o.connect(name);
      gs.pullsSent++;
      const reply = unwrap(await c.request(GossipRequest.pull, wrap(makePullRequest(bnl))));
      noteSerial(name, reply);
      const out = await handlePullReply(bnl, seen, reply);
      if (out.result) await afterOffer(out.result, name, out.forward);
      if (out.pushBack) await pushTo(name, c);
    } catch (err) {
      gs.pullsFailed++;
      log.info('pull failed', { peer: name, err });
    } finally {
      c?.close();
    }
  }

  const pullRound = async (): Promise<void> => {
    await Promise.all(gossipTargets(PULL_FANOUT).map((n) => pullFrom(n)));
  };

  const pushToAll = (): PushProgress => {
    const cur = bnl.current;
    if (cur) seen.add(cur.hash);
    // Peers we hold keys with first: they are up, so a list reaches the live
    // part of a large network before the pushes toward unreachable records
    // (each a connection timeout) fill the PUSH_CONCURRENCY slots.
    // Those keyed peers get slots of their own (KEYED_PUSH_CONCURRENCY): they answer, so
    // their pushes are short; the rest keep PUSH_CONCURRENCY (mostly connection timeouts).
    const keyed = new Set(o.keyedPeers());
    const all = others();
    const live = all.filter((n) => keyed.has(n));
    const rest = all.filter((n) => !keyed.has(n));
    const progress: PushProgress = { targets: all.length, ok: 0, failed: 0, done: Promise.resolve() };
    const one = async (n: string): Promise<void> => {
      if (await pushTo(n)) progress.ok++;
      else progress.failed++;
    };
    progress.done = Promise.all([inParallel(live, KEYED_PUSH_CONCURRENCY, one), inParallel(rest, PUSH_CONCURRENCY, one)]).then(() => undefined);
    return progress;
  };

  let pullTimer: NodeJS.Timeout | undefined;
  const schedulePull = (delayMs: number): void => {
    if (closed) return;
    pullTimer = setTimeout(() => {
      void pullRound().finally(() => schedulePull(jitteredInterval(config.pullintervalMs)));
    }, delayMs);
    pullTimer.unref();
  };

  return {
    start: () => schedulePull(jitteredInterval(Math.min(INITIAL_PULL_MS, config.pullintervalMs))),
    pushToAll,
    pullRound,
    serialOf: (name) => serials.get(name),
    forget: (name) => {
      serials.delete(name);
    },
    stats: () => ({ ...gs, listsRejected: { ...gs.listsRejected } }),
    close: () => {
      closed = true;
      if (pullTimer) clearTimeout(pullTimer);
    },
  };
}
