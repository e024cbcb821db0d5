/**
 * Per-pair negotiation, rekey and restart handling. No I/O of its own:
 * the channel, the clock, randomness and the store come in as typed
 * dependencies, so every flow here is testable without a network.
 *
 * Negotiation (initiator I = TLS client, responder R = TLS server, one
 * connection, both messages bound to its TLS exporter):
 *
 *   1. I → R  negotiate          { random, index, crypt, comp }
 *   2. R computes the choice and keys, holds them *pending* and installs
 *      them receive-only (`onSession(…, { primary: false })`), then
 *      R → I  (response)         { random, index, crypt, comp, choice }
 *   3. I checks R's choice against its own computation, derives the keys
 *      and installs them receive-only.
 *   4. I → R  negotiate-confirm  { index: R's index }
 *      R persists its pending session and promotes it (`onPromote`: R now
 *      sends with the new keys, which I already accepts), answers {}.
 *   5. I persists and promotes on the answer (R already accepts the new
 *      keys since step 2). Both keep the old session receiving for
 *      `overlapMs` (packets in flight), then retire it.
 *
 * So at every instant each side sends only with keys the other side
 * already accepts: a rekey loses no packet. A receive-only session that is
 * never confirmed is retired and its keys zeroed: at R when the connection
 * closes without a confirm (or a new negotiate replaces it), at I
 * `overlapMs` after a failed confirm (R may have promoted it before the
 * answer was lost, so I keeps accepting it for the overlap, and promotes it
 * after all if an authenticated packet arrives on it — proof that R
 * promoted), and I renegotiates.
 *
 * Simultaneous negotiations (fixes ClueVPN fault 4): a node that receives
 * `negotiate` while its own outbound negotiation to the same peer is
 * running lets the negotiation *initiated by the lower node name* (UTF-8
 * byte order) win: if the peer's name is lower, it abandons its own
 * outbound attempt (no confirm will be sent for it) and answers; otherwise
 * it refuses with `ERR_NEGOTIATION_CONFLICT`, and the refused side waits
 * for the winning negotiation to complete. An outbound negotiation that got
 * its response (step 3 on) is no longer abandoned: a `negotiate` arriving
 * then is refused whatever the names, so two negotiations never complete
 * concurrently. A node never starts an outbound negotiation while it holds
 * a pending inbound one for the same peer.
 *
 * Rekey (fixes fault 2): after `rekeyIntervalMs` (+ up to 5 % jitter), on
 * `requestRekey` (counter limit, burst of authentication failures —
 * rate-limited to one per `triggeredRekeyMinIntervalMs`), the same
 * negotiation runs again (steps 1–5); the new session becomes primary, the
 * old one stays installed for `overlapMs`, then `onRetire` is emitted and
 * its key buffers are zeroed. The store keeps only the current session per
 * peer (replaced keys are overwritten on disk); a session is stored when
 * it is promoted.
 *
 * Restart (fixes fault 3), `start()`: a stored session is resumed without
 * renegotiating, but nothing is sent or accepted on it until the peer has
 * handed us a send epoch. The stored file cannot be trusted to know which
 * epochs we used: it may be an older copy (a backup, a VM snapshot, a
 * clone of the node), and a reused epoch with the same key reuses nonces.
 * So every epoch a node sends with is *reserved for it by the receiver*,
 * durably, and never twice: the receiver's rx floor (`reservePeerEpoch`)
 * is the highest epoch the peer may have used. Epoch 1 of a negotiated
 * session is reserved by the negotiation itself (both floors start at 1).
 *
 *   1. `store.reservePeerEpoch` — a fresh epoch `g` for the peer's
 *      sending (we lost our replay window, so the peer must move on).
 *   2. `epoch-grant { index, epoch: g }` to the peer (retried with
 *      back-off). The peer answers only for its *live* current session
 *      (not one it is resuming itself, not a replaced one; otherwise
 *      `ERR_NO_SESSION`): it reserves an epoch for us from its own floor
 *      (`grant`), moves its send epoch to `g` if `g` is above it (persisted,
 *      then `onTxEpoch`; `moved`), and answers `{ grant, epoch, moved }`.
 *   3. Not moved means our copy of the floor was old: reserve above the
 *      peer's epoch and ask again (at most 3 rounds).
 *   4. We persist `grant` as our send epoch and install the session as the
 *      primary (`onSession(…, { primary: true })`) with floor `g`.
 *
 * A grant not above the send epoch in our own file, `ERR_NO_SESSION`, or
 * no move after 3 rounds drop the stored session and renegotiate (fresh
 * keys). Two ends that both restarted refuse each other (neither session
 * is live) and renegotiate, so even two old copies at once cannot repeat
 * a nonce; two running clones of one node get different grants.
 */
import { randomBytes } from 'node:crypto';
import {
  CIPHER_ORDER,
  COMPRESSION_ORDER,
  DATAPLANE_CIPHER,
  chooseAlgorithms,
  readWireAlgos,
  type AlgoChoice,
  type AlgoPreference,
  type CipherAlgo,
  type CompressionAlgo,
  type DataplaneCipher,
} from './algorithms.js';
import { NegotiationError } from './errors.js';
import { RANDOM_BYTES, deriveSessionKeys } from './keys.js';
import { silentLogger, type Logger } from './logger.js';
import { MAX_EPOCH, type SessionStore, type StoredSession } from './store.js';

/** Specification: request types of the negotiation protocol on the control channel. */
export const NegotiationMessage = {
  negotiate: 'negotiate',
  confirm: 'negotiate-confirm',
  epochGrant: 'epoch-grant',
} as const;

/** Exactly what `Dataplane.installSession` takes. Key buffers stay owned by the Negotiator: valid until `onRetire` for the session returns, zeroed right after. */
export interface SessionParams {
  localIndex: number;
  remoteIndex: number;
  cipher: DataplaneCipher;
  txKey: Buffer;
  rxKey: Buffer;
  txEpoch: number;
  rxEpochFloor: number;
  compression: { algo: CompressionAlgo; level: number };
}

/** Non-secret description of a session. */
export interface SessionSummary {
  peer: string;
  localIndex: number;
  remoteIndex: number;
  cipher: DataplaneCipher;
  compression: { algo: CompressionAlgo; level: number };
  createdAt: number;
}

/** An authenticated channel to one peer (see `createControlTransport`). */
export interface NegotiationChannel {
  /** TLS exporter value of the connection (both ends see the same bytes). Borrowed. */
  readonly exporter: Buffer;
  request(type: string, body: unknown): Promise<unknown>;
  close(): void;
}

/** Opens authenticated channels (the peer's identity already checked). */
export interface NegotiationTransport {
  connect(peerName: string): Promise<NegotiationChannel>;
}

/** What an incoming request handler needs from its connection (a subset of the control channel's `RequestContext`). */
export interface IncomingContext {
  readonly peer: { readonly name: string };
  readonly exporter: Buffer;
  readonly state: Map<string, unknown>;
  onClose(fn: () => void): void;
}

/** Timers and time. Handles are opaque. */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** The real clock. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

/** How `onSession` wants a session installed (`Dataplane.installSession`'s options). */
export interface SessionInstallOptions {
  /**
   * true: the session becomes the primary send session at once (resumed
   * sessions, after the peer granted an epoch). false: accept the peer's packets on it but keep sending
   * with the current primary until `onPromote` (negotiated sessions).
   */
  primary: boolean;
}

/** What the Negotiator tells the daemon. Callbacks must not throw. */
export interface NegotiatorEvents {
  /** Install `params` for `peer` (`Dataplane.installSession(id, params, options)`). */
  onSession(peer: string, params: SessionParams, options: SessionInstallOptions): void;
  /** Make the installed session `localIndex` the primary send session (`Dataplane.promoteSession`). */
  onPromote(peer: string, localIndex: number): void;
  /** Remove the session with receiver index `localIndex`; its keys are zeroed when this returns. */
  onRetire(peer: string, localIndex: number): void;
  /** The send epoch of session `localIndex` changed (the counter restarts at 0). Persisted before this is called. */
  onTxEpoch(peer: string, localIndex: number, epoch: number): void;
}

/** Why a rekey was requested. */
export type RekeyReason = 'interval' | 'counter-soft-limit' | 'counter-limit' | 'auth-failures' | 'manual' | 'confirm-failed' | 'peer-lost-session' | 'epoch-exhausted';

/** Options of `Negotiator`. */
export interface NegotiatorOptions {
  localName: string;
  cryptAlgos: readonly AlgoPreference<CipherAlgo>[];
  compAlgos: readonly AlgoPreference<CompressionAlgo>[];
  store: SessionStore;
  transport: NegotiationTransport;
  events: NegotiatorEvents;
  clock?: Clock;
  /** Random bytes source; default `crypto.randomBytes`. */
  random?: (n: number) => Buffer;
  logger?: Logger;
  /** Default 1 hour. */
  rekeyIntervalMs?: number;
  /** How long a replaced session stays accepted; default 30 s. */
  overlapMs?: number;
  /** Minimum spacing of rekeys asked for by `requestRekey`; default 30 s. */
  triggeredRekeyMinIntervalMs?: number;
  /** `ensureSession` gives up after this; default 20 s. */
  negotiationTimeoutMs?: number;
  /** First retry delay of a failed resume (`epoch-grant` request; doubles up to 5 min); default 5 s. */
  resumeRetryMs?: number;
  /**
   * True when `peer` is a node of the current list. `negotiate`,
   * `negotiate-confirm` and `epoch-grant` from anyone else are refused with
   * `ERR_PEER_REFUSED` (the channel checks too; this guards the state).
   * Default: everyone is.
   */
  isMember?: (peer: string) => boolean;
}

/** Counters (monotonic). */
export interface NegotiatorStats {
  initiated: number;
  completed: number;
  failed: number;
  conflicts: number;
  abandoned: number;
  rekeys: Record<string, number>;
  rekeysRateLimited: number;
  /** `epoch-grant` requests sent (resuming stored sessions). */
  epochGrantsSent: number;
  /** `epoch-grant` requests answered with a grant. */
  epochGrantsGiven: number;
  /** Stored sessions resumed without renegotiating. */
  resumed: number;
}

interface Live {
  params: SessionParams;
  createdAt: number;
  /** Installation order (a failed-confirm session never replaces a newer one). */
  seq: number;
}

interface Outbound {
  abandoned: boolean;
  /** Got the response: the attempt is ours to finish and no longer yields to an incoming one. */
  committed: boolean;
}

interface Pending {
  localIndex: number;
  remoteIndex: number;
  choice: AlgoChoice;
  txKey: Buffer;
  rxKey: Buffer;
}

/** A responder's session: installed receive-only, promoted on confirm. */
interface PendingInbound {
  live: Live;
  choice: AlgoChoice;
}

interface Retiring {
  live: Live;
  timer: unknown;
  /** An initiator's session whose confirm failed: promoted after all if the peer is seen using it. */
  unconfirmed: boolean;
}

interface Waiter {
  resolve: (s: SessionSummary) => void;
  reject: (e: Error) => void;
  timer: unknown;
}

interface PeerState {
  current?: Live;
  retiring: Map<number, Retiring>;
  outbound?: Outbound;
  pending?: PendingInbound;
  /** The initiator's receive-only session while its confirm is in flight. */
  confirming?: Live;
  /** A stored session waiting for the peer's epoch grant: not installed, nothing sent or accepted on it. */
  restored?: Live;
  waiters: Set<Waiter>;
  rekeyTimer?: unknown;
  resumeTimer?: unknown;
  lastTriggered: number;
}

/** Orders node names by UTF-8 bytes (the tie-break and key-derivation order). */
export function compareNodeNames(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

function b64(value: unknown, min: number, max: number, what: string): Buffer {
  if (typeof value !== 'string' || value.length > 4 * Math.ceil(max / 3)) throw new NegotiationError('ERR_NEGOTIATION_PROTOCOL', `${what} missing or too long`);
  const b = Buffer.from(value, 'base64');
  if (b.length < min || b.length > max || b.toString('base64') !== value) throw new NegotiationError('ERR_NEGOTIATION_PROTOCOL', `${what} must be ${min}-${max} bytes of base64`);
  return b;
}

function u32(value: unknown, what: string, min = 1): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > MAX_EPOCH) throw new NegotiationError('ERR_NEGOTIATION_PROTOCOL', `${what} must be an integer ${min}-${MAX_EPOCH}`);
  return value;
}

function obj(value: unknown): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new NegotiationError('ERR_NEGOTIATION_PROTOCOL', 'body is not an object');
  return value as Record<string, unknown>;
}

function remoteCode(err: unknown): string | undefined {
  const rc = (err as { remoteCode?: unknown }).remoteCode;
  return typeof rc === 'string' ? rc : undefined;
}

const PENDING_KEY = 'cluevpn.negotiation.pending';

/**
 * Implementation: most replaced sessions per peer kept receiving for the
 * overlap. With the current one and one being negotiated this stays within
 * the data plane's per-peer session table (4), which refuses a fifth
 * (`ERR_DP_SESSIONS_FULL`) and never retires or evicts one by itself: the
 * Negotiator alone owns session lifetime (ARCHITECTURE.md).
 */
export const MAX_OVERLAPPING_SESSIONS = 2;

/** Implementation: first re-check of a scheduled rekey that has not replaced the keys yet (doubles per attempt). */
export const REKEY_RETRY_FIRST_MS = 1_000;
/** Implementation: longest pause between attempts of a scheduled rekey (and never more than the rekey interval). */
export const REKEY_RETRY_MAX_MS = 60_000;

/**
 * Delay before attempt `attempt + 1` of a scheduled rekey: 1 s doubling
 * per attempt, capped at {@link REKEY_RETRY_MAX_MS} and at the rekey
 * interval, times 0.9–1.1 (`unit` uniform in [0, 1]) so that nodes do not
 * retry in step.
 */
export function rekeyRetryDelayMs(attempt: number, rekeyIntervalMs: number, unit: number): number {
  const base = Math.min(REKEY_RETRY_FIRST_MS * 2 ** Math.min(attempt, 30), REKEY_RETRY_MAX_MS, rekeyIntervalMs);
  return Math.round(base * (0.9 + 0.2 * unit));
}

/**
 * Drives the negotiations of one node. Create, `attach` to the control
 * server, `start()`, then call `ensureSession` / `requestRekey` /
 * `noteRxEpoch` as the data plane asks; `stop()` on shutdown (after the
 * data plane is closed: it zeroes all keys).
 */
export class Negotiator {
  private readonly o: Required<Omit<NegotiatorOptions, 'logger' | 'clock' | 'random' | 'isMember'>>;
  private readonly isMember: (peer: string) => boolean;
  private readonly clock: Clock;
  private readonly random: (n: number) => Buffer;
  private readonly log: Logger;
  private readonly peers = new Map<string, PeerState>();
  private readonly usedIndexes = new Set<number>();
  private stopped = false;
  private seq = 0;
  private readonly counters: NegotiatorStats = {
    initiated: 0,
    completed: 0,
    failed: 0,
    conflicts: 0,
    abandoned: 0,
    rekeys: {},
    rekeysRateLimited: 0,
    epochGrantsSent: 0,
    epochGrantsGiven: 0,
    resumed: 0,
  };

  constructor(opts: NegotiatorOptions) {
    if (opts.cryptAlgos.length === 0 || opts.compAlgos.length === 0) throw new NegotiationError('ERR_ALGO_CONFIG', 'cryptalgos and compalgos must not be empty');
    this.o = {
      rekeyIntervalMs: 3_600_000,
      overlapMs: 30_000,
      triggeredRekeyMinIntervalMs: 30_000,
      negotiationTimeoutMs: 20_000,
      resumeRetryMs: 5_000,
      ...opts,
    } as Required<Omit<NegotiatorOptions, 'logger' | 'clock' | 'random' | 'isMember'>>;
    this.isMember = opts.isMember ?? (() => true);
    this.clock = opts.clock ?? systemClock;
    this.random = opts.random ?? ((n) => randomBytes(n));
    this.log = opts.logger ?? silentLogger;
  }

  /** Registers the negotiation request handlers on a control server (or anything with the same `handle`). */
  attach(server: { handle(type: string, handler: (body: unknown, ctx: IncomingContext) => unknown): void }): void {
    server.handle(NegotiationMessage.negotiate, (body, ctx) => this.onNegotiate(body, ctx));
    server.handle(NegotiationMessage.confirm, (body, ctx) => this.onConfirm(body, ctx));
    server.handle(NegotiationMessage.epochGrant, (body, ctx) => this.onEpochGrant(body, ctx));
  }

  /**
   * Starts resuming the stored sessions (see "Restart" above): each is
   * installed once its peer granted an epoch. Call once, before the data
   * plane sends anything. Throws the store's errors (`ERR_STATE_CORRUPT`).
   */
  start(): void {
    for (const s of this.o.store.listSessions()) {
      const st = this.peer(s.peer);
      const live: Live = { params: paramsOf(s), createdAt: s.createdAt, seq: ++this.seq };
      st.restored = live;
      this.usedIndexes.add(s.localIndex);
      this.log.debug('resuming stored session', { peer: s.peer });
      this.scheduleResume(s.peer, st, live, s.sendEpoch, 0);
    }
  }

  /**
   * Resolves when the pair has a session: at once if it has one, else after
   * the running or a new negotiation (deduplicated). Rejects with
   * `ERR_NEGOTIATION_TIMEOUT`, the failure of the negotiation, or
   * `ERR_NEGOTIATION_CLOSED` on `stop()`.
   */
  ensureSession(peer: string): Promise<SessionSummary> {
    if (this.stopped) return Promise.reject(new NegotiationError('ERR_NEGOTIATION_CLOSED', 'negotiator stopped'));
    if (peer === this.o.localName) return Promise.reject(new NegotiationError('ERR_NEGOTIATION_PROTOCOL', 'a node cannot negotiate with itself'));
    const st = this.peer(peer);
    if (st.current) return Promise.resolve(summaryOf(peer, st.current));
    const p = this.wait(peer, st);
    if (!st.restored) this.startOutbound(peer, st, 'initial'); // else the resume settles the waiters
    return p;
  }

  /**
   * Asks for a new session (counter limit, authentication-failure burst,
   * manual). Returns false when rate-limited or already negotiating.
   */
  requestRekey(peer: string, reason: RekeyReason): boolean {
    if (this.stopped) return false;
    const st = this.peer(peer);
    const now = this.clock.now();
    if (now - st.lastTriggered < this.o.triggeredRekeyMinIntervalMs) {
      this.counters.rekeysRateLimited++;
      return false;
    }
    if (st.outbound || st.pending) return false;
    st.lastTriggered = now;
    return this.startOutbound(peer, st, reason);
  }

  /**
   * Persists that the data plane authenticated `epoch` on session
   * `localIndex` (raises the rx floor). A packet on a session whose confirm
   * failed proves the peer promoted it: it is promoted here too (unless a
   * newer session already is).
   */
  noteRxEpoch(peer: string, localIndex: number, epoch: number): void {
    const st = this.peers.get(peer);
    const r = st?.retiring.get(localIndex);
    if (st && r?.unconfirmed && !this.stopped && (!st.current || st.current.seq < r.live.seq)) {
      this.clock.clearTimeout(r.timer);
      st.retiring.delete(localIndex);
      this.log.info('peer uses the unconfirmed session; promoting it', { peer });
      try {
        this.promote(peer, st, r.live, 'initiator');
      } catch (err) {
        this.log.error('promoting the unconfirmed session failed', { peer, err: (err as Error).message });
      }
    }
    this.o.store.noteRxEpoch(peer, localIndex, epoch);
  }

  /** Forgets a peer (removed from the BNL): retires its sessions now and deletes them from the store. */
  removePeer(peer: string): void {
    const st = this.peers.get(peer);
    if (!st) {
      this.o.store.deleteSession(peer); // nothing in memory, but never leave its keys on disk
      return;
    }
    if (st.outbound) st.outbound.abandoned = true;
    this.dropPending(peer, st);
    this.clearTimers(st);
    for (const w of st.waiters) this.settle(st, w, new NegotiationError('ERR_NEGOTIATION_CLOSED', `${peer} was removed`));
    for (const [idx, r] of st.retiring) {
      this.clock.clearTimeout(r.timer);
      this.retireNow(peer, st, idx);
    }
    if (st.confirming) {
      const live = st.confirming;
      st.confirming = undefined;
      this.emitRetire(peer, live);
    }
    if (st.current) {
      const live = st.current;
      st.current = undefined;
      this.emitRetire(peer, live);
    }
    this.dropRestored(st);
    this.o.store.deleteSession(peer);
    this.peers.delete(peer);
  }

  /** Non-secret view of the current sessions. */
  sessions(): SessionSummary[] {
    const out: SessionSummary[] = [];
    for (const [peer, st] of this.peers) if (st.current) out.push(summaryOf(peer, st.current));
    return out;
  }

  /** A snapshot of the counters. */
  stats(): NegotiatorStats {
    return { ...this.counters, rekeys: { ...this.counters.rekeys } };
  }

  /** Stops timers, rejects waiters and zeroes every key held (call after the data plane has closed). */
  stop(): void {
    this.stopped = true;
    for (const [peer, st] of this.peers) {
      if (st.outbound) st.outbound.abandoned = true;
      if (st.pending) this.forget(st.pending.live);
      st.pending = undefined;
      this.clearTimers(st);
      for (const w of st.waiters) this.settle(st, w, new NegotiationError('ERR_NEGOTIATION_CLOSED', 'negotiator stopped'));
      for (const r of st.retiring.values()) {
        this.clock.clearTimeout(r.timer);
        zero(r.live);
      }
      st.retiring.clear();
      if (st.confirming) this.forget(st.confirming);
      st.confirming = undefined;
      if (st.current) zero(st.current);
      st.current = undefined;
      this.dropRestored(st);
      this.log.debug('negotiator stopped for peer', { peer });
    }
  }

  // ---- outbound ----------------------------------------------------------

  private startOutbound(peer: string, st: PeerState, reason: RekeyReason | 'initial'): boolean {
    if (this.stopped || st.outbound || st.pending) return false;
    const ob: Outbound = { abandoned: false, committed: false };
    st.outbound = ob;
    this.counters.initiated++;
    if (reason !== 'initial') this.counters.rekeys[reason] = (this.counters.rekeys[reason] ?? 0) + 1;
    this.runOutbound(peer, st, ob, reason)
      .catch((err: unknown) => {
        this.counters.failed++;
        const rc = remoteCode(err);
        if (rc === 'ERR_NEGOTIATION_CONFLICT') {
          this.counters.conflicts++;
          this.log.debug('negotiation yielded to the peer', { peer });
          return; // the peer's negotiation wins; waiters stay until it completes
        }
        // An unreachable peer (down, starting, refusing connections) is routine in a mesh: info.
        const code = (err as { code?: unknown }).code;
        const unreachable = code === 'ERR_CHANNEL_CLOSED' || code === 'ERR_CHANNEL_TIMEOUT';
        this.log[unreachable ? 'info' : 'warn']('negotiation failed', { peer, reason, err: (err as Error).message });
        if (!st.pending) for (const w of st.waiters) this.settle(st, w, err as Error);
      })
      .finally(() => {
        if (st.outbound === ob) st.outbound = undefined;
      });
    return true;
  }

  private async runOutbound(peer: string, st: PeerState, ob: Outbound, reason: RekeyReason | 'initial'): Promise<void> {
    const myRandom = this.random(RANDOM_BYTES);
    const myIndex = this.allocIndex();
    let installed = false;
    let ch: NegotiationChannel | undefined;
    try {
      ch = await this.o.transport.connect(peer);
      if (ob.abandoned) return this.noteAbandoned(peer);
      const resp = obj(
        await ch.request(NegotiationMessage.negotiate, {
          random: myRandom.toString('base64'),
          index: myIndex,
          crypt: this.o.cryptAlgos,
          comp: this.o.compAlgos,
        }),
      );
      if (ob.abandoned) return this.noteAbandoned(peer);
      const peerRandom = b64(resp.random, RANDOM_BYTES, 64, 'random');
      const remoteIndex = u32(resp.index, 'index');
      const choice = chooseAlgorithms(
        { crypt: this.o.cryptAlgos, comp: this.o.compAlgos },
        { crypt: readWireAlgos(resp.crypt, CIPHER_ORDER, 256), comp: readWireAlgos(resp.comp, COMPRESSION_ORDER, 12) },
      );
      const theirChoice = obj(resp.choice);
      const theirComp = obj(theirChoice.compression);
      if (theirChoice.cipher !== choice.cipher || theirComp.algo !== choice.compression.algo || theirComp.level !== choice.compression.level) {
        throw new NegotiationError('ERR_NEGOTIATION_PROTOCOL', `${peer} chose ${JSON.stringify(theirChoice)}, expected ${JSON.stringify(choice)}`);
      }
      const keys = deriveSessionKeys({ exporter: ch.exporter, localName: this.o.localName, peerName: peer, localRandom: myRandom, peerRandom, localIndex: myIndex, remoteIndex, choice });
      peerRandom.fill(0);
      ob.committed = true; // from here on the attempt cannot be abandoned: it is ours
      const live = this.installReceiveOnly(peer, { localIndex: myIndex, remoteIndex, choice, ...keys });
      installed = true;
      st.confirming = live;
      let confirmed = false;
      try {
        await ch.request(NegotiationMessage.confirm, { index: remoteIndex });
        confirmed = true;
      } catch (err) {
        this.log.warn('negotiation confirm failed; renegotiating', { peer, err: (err as Error).message });
      }
      if (st.confirming !== live) return; // removed or stopped meanwhile: already retired and zeroed
      st.confirming = undefined;
      if (st.outbound === ob) st.outbound = undefined; // done: a new negotiation may start as soon as waiters resume
      if (confirmed) {
        try {
          this.promote(peer, st, live, 'initiator');
          this.log.info('session negotiated', { peer, role: 'initiator', reason, cipher: choice.cipher });
          return;
        } catch (err) {
          this.log.error('storing the negotiated session failed; renegotiating', { peer, err: (err as Error).message });
        }
      }
      // Not confirmed: the peer may have promoted it before the answer was lost, so keep
      // accepting it for the overlap (noteRxEpoch promotes it if it is used), then retire it.
      this.retireLater(peer, st, live, true);
      const before = st.current;
      this.clock.setTimeout(() => {
        // Skipped when a session was promoted meanwhile (the peer's negotiation, or this one after all).
        if (!this.stopped && this.peers.get(peer) === st && st.current === before) this.startOutbound(peer, st, 'confirm-failed');
      }, 1_000);
    } finally {
      myRandom.fill(0);
      if (!installed) this.usedIndexes.delete(myIndex);
      ch?.close();
    }
  }

  private noteAbandoned(peer: string): void {
    this.counters.abandoned++;
    this.log.debug('outbound negotiation abandoned for the peer-initiated one', { peer });
  }

  // ---- incoming ----------------------------------------------------------

  private onNegotiate(body: unknown, ctx: IncomingContext): unknown {
    if (this.stopped) throw new NegotiationError('ERR_NEGOTIATION_CLOSED', 'shutting down');
    const peer = ctx.peer.name;
    if (peer === this.o.localName) throw new NegotiationError('ERR_NEGOTIATION_PROTOCOL', 'a node cannot negotiate with itself');
    this.requireMember(peer);
    const b = obj(body);
    const peerRandom = b64(b.random, RANDOM_BYTES, 64, 'random');
    const remoteIndex = u32(b.index, 'index');
    const theirs = { crypt: readWireAlgos(b.crypt, CIPHER_ORDER, 256), comp: readWireAlgos(b.comp, COMPRESSION_ORDER, 12) };
    const choice = chooseAlgorithms({ crypt: this.o.cryptAlgos, comp: this.o.compAlgos }, theirs);
    const st = this.peer(peer);
    if (st.outbound?.committed) {
      this.counters.conflicts++;
      throw new NegotiationError('ERR_NEGOTIATION_CONFLICT', 'our own negotiation is completing');
    }
    if (st.outbound) {
      if (compareNodeNames(peer, this.o.localName) < 0) {
        st.outbound.abandoned = true; // the lower name's negotiation wins
        st.outbound = undefined;
      } else {
        this.counters.conflicts++;
        throw new NegotiationError('ERR_NEGOTIATION_CONFLICT', 'a negotiation initiated by the lower name is running');
      }
    }
    const myRandom = this.random(RANDOM_BYTES);
    const localIndex = this.allocIndex();
    const keys = deriveSessionKeys({ exporter: ctx.exporter, localName: this.o.localName, peerName: peer, localRandom: myRandom, peerRandom, localIndex, remoteIndex, choice });
    peerRandom.fill(0);
    this.dropPending(peer, st);
    // Accept the initiator's packets on the new keys before it can have them (it derives them from the answer).
    const pending: PendingInbound = { live: this.installReceiveOnly(peer, { localIndex, remoteIndex, choice, ...keys }), choice };
    st.pending = pending;
    ctx.state.set(PENDING_KEY, pending);
    ctx.onClose(() => {
      if (st.pending !== pending) return;
      this.dropPending(peer, st);
      if (st.waiters.size > 0 && !st.current) this.startOutbound(peer, st, 'initial');
    });
    const answer = {
      random: myRandom.toString('base64'),
      index: localIndex,
      crypt: this.o.cryptAlgos,
      comp: this.o.compAlgos,
      choice: { cipher: choice.cipher, compression: choice.compression },
    };
    myRandom.fill(0);
    return answer;
  }

  private onConfirm(body: unknown, ctx: IncomingContext): unknown {
    const peer = ctx.peer.name;
    this.requireMember(peer);
    const b = obj(body);
    const st = this.peers.get(peer);
    const pending = ctx.state.get(PENDING_KEY) as PendingInbound | undefined;
    if (!st || !pending || st.pending !== pending || b.index !== pending.live.params.localIndex) {
      throw new NegotiationError('ERR_NEGOTIATION_CONFLICT', 'no matching pending negotiation');
    }
    st.pending = undefined;
    ctx.state.delete(PENDING_KEY);
    try {
      this.promote(peer, st, pending.live, 'responder');
    } catch (err) {
      // Not stored, so not promoted: the initiator's confirm fails and it renegotiates.
      this.emitRetire(peer, pending.live);
      throw err;
    }
    this.log.info('session negotiated', { peer, role: 'responder', cipher: pending.choice.cipher });
    return {};
  }

  /** Step 2 of "Restart", at the peer that did not restart: grant an epoch, move to the one granted to us. */
  private onEpochGrant(body: unknown, ctx: IncomingContext): unknown {
    const peer = ctx.peer.name;
    this.requireMember(peer);
    const b = obj(body);
    const index = u32(b.index, 'index');
    const epoch = u32(b.epoch, 'epoch');
    const st = this.peers.get(peer);
    const cur = st?.current;
    if (!st || !cur || cur.params.localIndex !== index) throw new NegotiationError('ERR_NO_SESSION', 'no such live session');
    const grant = this.o.store.reservePeerEpoch(peer, index);
    if (grant === undefined) {
      st.current = undefined;
      this.retireLater(peer, st, cur, false);
      this.startOutbound(peer, st, 'epoch-exhausted');
      throw new NegotiationError('ERR_NO_SESSION', 'epochs exhausted; renegotiating');
    }
    this.counters.epochGrantsGiven++;
    cur.params.rxEpochFloor = grant;
    let moved = false;
    if (epoch > cur.params.txEpoch) {
      if (!this.o.store.setSendEpoch(peer, index, epoch)) throw new NegotiationError('ERR_NO_SESSION', 'session not stored');
      cur.params.txEpoch = epoch;
      moved = true;
      this.o.events.onTxEpoch(peer, index, epoch);
    }
    return { grant, epoch: cur.params.txEpoch, moved };
  }

  // ---- session lifecycle ------------------------------------------------

  /** Emits `onSession(…, { primary: false })` for freshly derived keys; the Live owns the key buffers from here on. */
  private installReceiveOnly(peer: string, s: Pending): Live {
    const params: SessionParams = {
      localIndex: s.localIndex,
      remoteIndex: s.remoteIndex,
      cipher: DATAPLANE_CIPHER[s.choice.cipher],
      txKey: s.txKey,
      rxKey: s.rxKey,
      txEpoch: 1,
      rxEpochFloor: 1,
      compression: { algo: s.choice.compression.algo, level: s.choice.compression.level },
    };
    const live: Live = { params, createdAt: this.clock.now(), seq: ++this.seq };
    this.o.events.onSession(peer, params, { primary: false });
    return live;
  }

  /**
   * Stores `live` as the peer's session and makes it the sending one
   * (`onPromote`); the previous one keeps receiving for the overlap. Throws
   * the store's error and changes nothing then (the caller retires `live`).
   */
  private promote(peer: string, st: PeerState, live: Live, role: 'initiator' | 'responder'): void {
    const p = live.params;
    this.o.store.putSession({ peer, localIndex: p.localIndex, remoteIndex: p.remoteIndex, cipher: p.cipher, compression: p.compression, txKey: p.txKey, rxKey: p.rxKey, createdAt: live.createdAt, sendEpoch: p.txEpoch, rxEpochFloor: p.rxEpochFloor });
    const old = st.current;
    st.current = live;
    this.counters.completed++;
    this.o.events.onPromote(peer, p.localIndex);
    this.log.debug('session promoted', { peer, role });
    if (old) this.retireLater(peer, st, old, false);
    this.dropRestored(st); // a negotiated session replaces one still waiting for its grant
    this.scheduleRekey(peer, st);
    const summary = summaryOf(peer, live);
    for (const w of st.waiters) this.settle(st, w, undefined, summary);
  }

  private retireLater(peer: string, st: PeerState, live: Live, unconfirmed: boolean): void {
    const idx = live.params.localIndex;
    const timer = this.clock.setTimeout(() => this.retireNow(peer, st, idx), this.o.overlapMs);
    st.retiring.set(idx, { live, timer, unconfirmed });
    // Rekeys faster than the overlap: retire the oldest at once, so that the data plane never
    // has to evict a session on its own (current + one being negotiated + these fit its table).
    while (st.retiring.size > MAX_OVERLAPPING_SESSIONS) {
      let oldest: [number, Retiring] | undefined;
      for (const e of st.retiring) if (!oldest || e[1].live.seq < oldest[1].live.seq) oldest = e;
      this.clock.clearTimeout(oldest![1].timer);
      this.retireNow(peer, st, oldest![0]);
    }
  }

  private retireNow(peer: string, st: PeerState, idx: number): void {
    const r = st.retiring.get(idx);
    if (!r) return;
    st.retiring.delete(idx);
    this.emitRetire(peer, r.live);
  }

  private emitRetire(peer: string, live: Live): void {
    try {
      this.o.events.onRetire(peer, live.params.localIndex);
    } finally {
      this.forget(live);
    }
  }

  /** Zeroes a session's keys and frees its index (no event: stop(), after the data plane closed). */
  private forget(live: Live): void {
    zero(live);
    this.usedIndexes.delete(live.params.localIndex);
  }

  private scheduleRekey(peer: string, st: PeerState): void {
    if (st.rekeyTimer !== undefined) this.clock.clearTimeout(st.rekeyTimer);
    const cur = st.current;
    if (!cur) return;
    const jitter = (this.random(2).readUInt16BE(0) / 65535) * 0.05 * this.o.rekeyIntervalMs;
    const due = cur.createdAt + this.o.rekeyIntervalMs + jitter - this.clock.now();
    st.rekeyTimer = this.clock.setTimeout(() => this.rekeyDue(peer, st, cur, 0), Math.max(0, due));
  }

  /**
   * A scheduled rekey of `cur`: started unless one already runs, then
   * checked again after {@link rekeyRetryDelayMs} until a newer session
   * replaced `cur` (`promote` reschedules, which clears this timer). So a
   * rekey that fails — the peer unreachable, a connection cut — is retried
   * with bounded back-off instead of leaving the keys to age.
   */
  private rekeyDue(peer: string, st: PeerState, cur: Live, attempt: number): void {
    st.rekeyTimer = undefined;
    if (this.stopped || st.current !== cur) return;
    if (attempt > 0) this.log.debug('scheduled rekey not done yet; trying again', { peer, attempt });
    this.startOutbound(peer, st, 'interval');
    const delay = rekeyRetryDelayMs(attempt, this.o.rekeyIntervalMs, this.random(2).readUInt16BE(0) / 65535);
    st.rekeyTimer = this.clock.setTimeout(() => this.rekeyDue(peer, st, cur, attempt + 1), delay);
  }

  /** Runs "Restart" steps 1-4 for a stored session, retried with back-off while the peer is unreachable. */
  private scheduleResume(peer: string, st: PeerState, live: Live, storedSendEpoch: number, attempt: number): void {
    const run = (): void => {
      st.resumeTimer = undefined;
      if (this.stopped || st.restored !== live) return;
      this.resume(peer, live, storedSendEpoch).then(
        ({ txEpoch, rxFloor }) => {
          if (this.stopped || st.restored !== live) return; // replaced by a negotiation meanwhile
          st.restored = undefined;
          live.params.txEpoch = txEpoch;
          live.params.rxEpochFloor = rxFloor;
          st.current = live;
          this.counters.resumed++;
          this.log.info('session resumed', { peer, epoch: txEpoch, floor: rxFloor });
          this.o.events.onSession(peer, live.params, { primary: true });
          this.scheduleRekey(peer, st);
          const summary = summaryOf(peer, live);
          for (const w of st.waiters) this.settle(st, w, undefined, summary);
        },
        (err: unknown) => {
          if (this.stopped || st.restored !== live) return;
          // The peer answered and refused (any remote code), or its answer cannot be used: renegotiate.
          // Only an unreachable peer (channel errors) is retried.
          const code = (err as { code?: unknown }).code;
          if (remoteCode(err) !== undefined || code === 'ERR_NO_SESSION' || code === 'ERR_NEGOTIATION_PROTOCOL') {
            this.log.info('stored session cannot be resumed; renegotiating', { peer, err: (err as Error).message });
            this.dropRestored(st);
            this.startOutbound(peer, st, 'peer-lost-session');
            return;
          }
          this.log.debug('resuming the stored session failed; will retry', { peer, err: (err as Error).message });
          this.scheduleResume(peer, st, live, storedSendEpoch, attempt + 1);
        },
      );
    };
    if (attempt === 0) run();
    else st.resumeTimer = this.clock.setTimeout(run, Math.min(this.o.resumeRetryMs * 2 ** (attempt - 1), 300_000));
  }

  /** One resume exchange; resolves to the epoch granted to us and the one the peer moved to. */
  private async resume(peer: string, live: Live, storedSendEpoch: number): Promise<{ txEpoch: number; rxFloor: number }> {
    const idx = live.params.localIndex;
    const reserve = (atLeast: number): number => {
      const e = this.o.store.reservePeerEpoch(peer, idx, atLeast);
      if (e === undefined) throw new NegotiationError('ERR_NO_SESSION', 'stored session gone or its epochs exhausted');
      return e;
    };
    const ch = await this.o.transport.connect(peer);
    try {
      let floor = reserve(0);
      for (let round = 0; round < 3; round++) {
        this.counters.epochGrantsSent++;
        const r = obj(await ch.request(NegotiationMessage.epochGrant, { index: live.params.remoteIndex, epoch: floor }));
        const grant = u32(r.grant, 'grant');
        const theirs = u32(r.epoch, 'epoch');
        // Our file says we already sent with an epoch at or above the grant: the peer's view is older than ours.
        if (grant <= storedSendEpoch) throw new NegotiationError('ERR_NO_SESSION', `granted epoch ${grant} is not above our stored ${storedSendEpoch}`);
        if (r.moved === true && theirs === floor) {
          if (!this.o.store.setSendEpoch(peer, idx, grant)) throw new NegotiationError('ERR_NO_SESSION', 'stored session gone');
          return { txEpoch: grant, rxFloor: floor };
        }
        floor = reserve(theirs + 1); // our floor was older than the peer's epoch: reserve above it
      }
      throw new NegotiationError('ERR_NO_SESSION', 'the peer did not move to a reserved epoch');
    } finally {
      ch.close();
    }
  }

  // ---- helpers -----------------------------------------------------------

  /** Refuses a request from a node that is not (or no longer) in the list. */
  private requireMember(peer: string): void {
    if (!this.isMember(peer)) throw new NegotiationError('ERR_PEER_REFUSED', `${peer} is not in the node list`);
  }

  private peer(name: string): PeerState {
    let st = this.peers.get(name);
    if (!st) {
      st = { retiring: new Map(), waiters: new Set(), lastTriggered: -Infinity };
      this.peers.set(name, st);
    }
    return st;
  }

  private wait(peer: string, st: PeerState): Promise<SessionSummary> {
    return new Promise<SessionSummary>((resolve, reject) => {
      const w: Waiter = { resolve, reject, timer: undefined };
      w.timer = this.clock.setTimeout(() => {
        this.settle(st, w, new NegotiationError('ERR_NEGOTIATION_TIMEOUT', `no session with ${peer} after ${this.o.negotiationTimeoutMs} ms`));
      }, this.o.negotiationTimeoutMs);
      st.waiters.add(w);
    });
  }

  private settle(st: PeerState, w: Waiter, err: Error | undefined, s?: SessionSummary): void {
    if (!st.waiters.delete(w)) return;
    this.clock.clearTimeout(w.timer);
    if (err) w.reject(err);
    else w.resolve(s!);
  }

  /** Retires the responder's unconfirmed receive-only session (keys zeroed). */
  private dropPending(peer: string, st: PeerState): void {
    const p = st.pending;
    if (!p) return;
    st.pending = undefined;
    this.emitRetire(peer, p.live);
  }

  private clearTimers(st: PeerState): void {
    if (st.rekeyTimer !== undefined) this.clock.clearTimeout(st.rekeyTimer);
    if (st.resumeTimer !== undefined) this.clock.clearTimeout(st.resumeTimer);
    st.rekeyTimer = undefined;
    st.resumeTimer = undefined;
  }

  /** Forgets a stored session that was never installed (keys zeroed, index freed; no event: the data plane never had it). */
  private dropRestored(st: PeerState): void {
    const r = st.restored;
    if (!r) return;
    st.restored = undefined;
    if (st.resumeTimer !== undefined) this.clock.clearTimeout(st.resumeTimer);
    st.resumeTimer = undefined;
    this.forget(r);
  }

  private allocIndex(): number {
    for (;;) {
      const idx = this.random(4).readUInt32BE(0);
      if (idx !== 0 && !this.usedIndexes.has(idx)) {
        this.usedIndexes.add(idx);
        return idx;
      }
    }
  }
}

function zero(live: Live): void {
  live.params.txKey.fill(0);
  live.params.rxKey.fill(0);
}

function paramsOf(s: StoredSession): SessionParams {
  return {
    localIndex: s.localIndex,
    remoteIndex: s.remoteIndex,
    cipher: s.cipher,
    txKey: s.txKey,
    rxKey: s.rxKey,
    txEpoch: s.sendEpoch,
    rxEpochFloor: s.rxEpochFloor,
    compression: { ...s.compression },
  };
}

function summaryOf(peer: string, live: Live): SessionSummary {
  const p = live.params;
  return { peer, localIndex: p.localIndex, remoteIndex: p.remoteIndex, cipher: p.cipher, compression: { ...p.compression }, createdAt: live.createdAt };
}
