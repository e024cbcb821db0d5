/**
 * The node's current list. Pipeline of `offer`:
 *   1. size cap (before parsing), 2. strict parse and validation,
 *   3. network check, 4. order against the current list (older or same:
 *   rejected before spending a signature check), 5. signature check against
 *   the trust in force, 6. equal-serial conflict: lower hash wins, reported,
 *   7. persist (trust sidecar first when the signers change, then the list;
 *   both atomic), 8. swap in memory, 9. diff.
 * Any rejection leaves the in-memory list, the trust and the files untouched.
 * Offers are serialised: one runs at a time, in call order.
 */
import { diffBnl, type BnlDiff } from './diff.js';
import { BnlError, BnlValidationError, type BnlErrorCode, type BnlProblem } from './errors.js';
import { BNL_MAX_BYTES, type SignedBnl } from './model.js';
import { compareBnl, replaces } from './order.js';
import { parseBnl } from './parse.js';
import { createTrust, sameTrust, trustAfter, verifyBnl, type BnlTrust } from './sign.js';
import { createFileStorage, type BnlStorage } from './storage.js';

/** Minimal logger (structurally compatible with the daemon's). */
export interface BnlLogger {
  error(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
}

/** Options of {@link BnlStore.open}. Exactly one of `path` and `storage`. */
export interface BnlStoreOptions {
  /** List file (the daemon's `bnl` setting); the trust sidecar is `path + ".trust"`. */
  path?: string;
  storage?: BnlStorage;
  /** Configured trust (the `bnlpubkey` keys and threshold). */
  trust: BnlTrust;
  /** Expected network name; when absent, the name of the first list held. */
  network?: string;
  logger?: BnlLogger;
  /** Size cap for offers, at most (and by default) 4 MiB. */
  maxBytes?: number;
}

/** A list was taken. `conflict` is set when it replaced a different list with the same serial. */
export interface OfferAccepted {
  readonly accepted: true;
  readonly list: SignedBnl;
  readonly previous: SignedBnl | null;
  readonly diff: BnlDiff;
  readonly trustChanged: boolean;
  readonly conflict?: { readonly code: 'ERR_BNL_CONFLICT'; readonly replacedHash: string };
}

/**
 * A list was refused, with the stable `code` and a reason. `list` is set
 * when it parsed; `problems` for `ERR_BNL_INVALID`. `settled` is true when
 * the list's payload is known good or harmless to remember (stale, same,
 * lost conflict): gossip may then mark its hash as seen.
 */
export interface OfferRejected {
  readonly accepted: false;
  readonly code: BnlErrorCode;
  readonly reason: string;
  readonly list?: SignedBnl;
  readonly problems?: readonly BnlProblem[];
  readonly settled: boolean;
}

/** Outcome of {@link BnlStore.offer}. */
export type OfferResult = OfferAccepted | OfferRejected;

function encodeTrust(t: BnlTrust): Uint8Array {
  return Buffer.from(`${JSON.stringify({ keys: [...t.keys].sort(), threshold: t.threshold })}\n`, 'ascii');
}

function encodeHighest(serial: number): Uint8Array {
  return Buffer.from(`${JSON.stringify({ serial })}\n`, 'ascii');
}

function decodeHighest(bytes: Uint8Array, where: string): number {
  try {
    const j = JSON.parse(Buffer.from(bytes).toString('utf8')) as { serial?: unknown };
    if (typeof j.serial !== 'number' || !Number.isSafeInteger(j.serial) || j.serial < 0) throw new Error('no serial');
    return j.serial;
  } catch (err) {
    throw new BnlError('ERR_BNL_FORMAT', `${where}.highest is unreadable: ${(err as Error).message}; it holds the highest serial this node accepted (delete it to accept the stored list as it is)`, { cause: err });
  }
}

function decodeTrust(bytes: Uint8Array, where: string): BnlTrust {
  try {
    const j = JSON.parse(Buffer.from(bytes).toString('utf8')) as { keys?: unknown; threshold?: unknown };
    if (!Array.isArray(j.keys) || typeof j.threshold !== 'number') throw new Error('missing keys or threshold');
    return createTrust(j.keys as string[], j.threshold);
  } catch (err) {
    throw new BnlError('ERR_BNL_FORMAT', `trust file ${where}.trust is unreadable: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * Holds the current verified list of a node and decides on every offered
 * list. Create with {@link BnlStore.open}.
 */
export class BnlStore {
  #current: SignedBnl | null;
  #trust: BnlTrust;
  #network: string | undefined;
  readonly #storage: BnlStorage;
  readonly #logger: BnlLogger | undefined;
  readonly #maxBytes: number;
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(storage: BnlStorage, current: SignedBnl | null, trust: BnlTrust, options: BnlStoreOptions) {
    this.#storage = storage;
    this.#current = current;
    this.#trust = trust;
    this.#network = options.network ?? current?.bnl.network;
    this.#logger = options.logger;
    this.#maxBytes = Math.min(options.maxBytes ?? BNL_MAX_BYTES, BNL_MAX_BYTES);
  }

  /**
   * Loads the stored list, if any, and verifies it against the configured
   * trust, or else against the trust sidecar (a rotation this node accepted
   * earlier). Throws `BnlError` (parse, signature, `ERR_BNL_NETWORK`,
   * `ERR_BNL_IO` codes) when the stored list is unusable: the daemon must
   * then refuse to start and say why.
   */
  static async open(options: BnlStoreOptions): Promise<BnlStore> {
    const storage = options.storage ?? (options.path !== undefined ? createFileStorage(options.path) : undefined);
    if (!storage) throw new BnlError('ERR_BNL_IO', 'BnlStore.open needs a path or a storage');
    const configured = createTrust(options.trust.keys, options.trust.threshold);
    const bytes = await storage.readList();
    const sidecarBytes = await storage.readTrust();
    const sidecar = sidecarBytes ? decodeTrust(sidecarBytes, storage.where) : null;
    if (!bytes) return new BnlStore(storage, null, configured, options);
    let list: SignedBnl;
    try {
      list = parseBnl(bytes);
    } catch (err) {
      const e = err as BnlError;
      throw new BnlError(e.code ?? 'ERR_BNL_FORMAT', `stored list ${storage.where}: ${e.message}`, { cause: err });
    }
    if (options.network !== undefined && list.bnl.network !== options.network) {
      throw new BnlError('ERR_BNL_NETWORK', `stored list ${storage.where} is for network "${list.bnl.network}", expected "${options.network}"`);
    }
    let verifiedBy: BnlTrust | undefined;
    let firstError: unknown;
    for (const t of sidecar ? [configured, sidecar] : [configured]) {
      try {
        verifyBnl(list, t);
        verifiedBy = t;
        break;
      } catch (err) {
        firstError ??= err;
      }
    }
    if (!verifiedBy) {
      const e = firstError as BnlError;
      throw new BnlError(e.code, `stored list ${storage.where}: ${e.message}`, { cause: firstError });
    }
    // Rollback guard: an older list put in place by hand (a backup, a copy
    // from another node) would bring back revoked nodes until the next pull.
    const highestBytes = await storage.readHighest();
    const highest = highestBytes ? decodeHighest(highestBytes, storage.where) : null;
    if (highest !== null && list.bnl.serial < highest) {
      throw new BnlError(
        'ERR_BNL_ROLLBACK',
        `stored list ${storage.where} has serial ${list.bnl.serial}, older than serial ${highest} this node accepted before; put the newest list there (bnl sign gives a list a new serial), or delete ${storage.where}.highest to accept this one`,
      );
    }
    if (highest === null || list.bnl.serial > highest) await storage.writeHighest(encodeHighest(list.bnl.serial));
    return new BnlStore(storage, list, trustAfter(list, verifiedBy), options);
  }

  /** The current list, or `null` before the first one. Immutable. */
  get current(): SignedBnl | null {
    return this.#current;
  }

  /** The trust in force for the next offer. */
  get trust(): BnlTrust {
    return this.#trust;
  }

  /** Offers a list (file bytes, untrusted). Never throws for bad input; see {@link OfferResult}. */
  offer(bytes: Uint8Array): Promise<OfferResult> {
    const run = this.#queue.then(() => this.#offer(bytes));
    this.#queue = run.catch((err: unknown) => this.#logger?.error('bnl offer failed unexpectedly', { err: String(err) }));
    return run;
  }

  /** Reads the list file again (after an admin wrote a new one) and offers it. */
  async reloadFromDisk(): Promise<OfferResult> {
    let bytes: Uint8Array | null;
    try {
      bytes = await this.#storage.readList();
    } catch (err) {
      return { accepted: false, code: 'ERR_BNL_IO', reason: (err as Error).message, settled: false };
    }
    if (!bytes) return { accepted: false, code: 'ERR_BNL_IO', reason: `${this.#storage.where} does not exist`, settled: false };
    return this.offer(bytes);
  }

  async #offer(bytes: Uint8Array): Promise<OfferResult> {
    if (bytes.length > this.#maxBytes) {
      return { accepted: false, code: 'ERR_BNL_TOO_LARGE', reason: `${bytes.length} bytes, at most ${this.#maxBytes}`, settled: false };
    }
    let list: SignedBnl;
    try {
      list = parseBnl(bytes, { maxBytes: this.#maxBytes });
    } catch (err) {
      const e = err as BnlError;
      return {
        accepted: false,
        code: e.code ?? 'ERR_BNL_FORMAT',
        reason: e.message,
        settled: false,
        ...(err instanceof BnlValidationError ? { problems: err.problems } : {}),
      };
    }
    if (this.#network !== undefined && list.bnl.network !== this.#network) {
      return { accepted: false, code: 'ERR_BNL_NETWORK', reason: `list is for network "${list.bnl.network}", this node is in "${this.#network}"`, list, settled: false };
    }
    const cur = this.#current;
    const order = cur ? compareBnl(list, cur) : 'newer';
    if (order === 'older') {
      return { accepted: false, code: 'ERR_BNL_STALE', reason: `serial ${list.bnl.serial} is older than the current ${cur?.bnl.serial}`, list, settled: true };
    }
    if (order === 'same') return { accepted: false, code: 'ERR_BNL_DUPLICATE', reason: `serial ${list.bnl.serial} is the current list`, list, settled: true };
    try {
      verifyBnl(list, this.#trust);
    } catch (err) {
      const e = err as BnlError;
      return { accepted: false, code: e.code, reason: e.message, list, settled: false };
    }
    if (order === 'conflict-loses' && cur) {
      const reason = `two different lists carry serial ${list.bnl.serial}: keeping ${cur.hash.slice(0, 16)}… (lower hash) over ${list.hash.slice(0, 16)}…; sign a new list with a higher serial`;
      this.#logger?.error('bnl serial conflict', { serial: list.bnl.serial, kept: cur.hash, refused: list.hash });
      return { accepted: false, code: 'ERR_BNL_CONFLICT', reason, list, settled: true };
    }
    if (!replaces(order)) throw new Error(`unreachable order ${order}`);
    const nextTrust = trustAfter(list, this.#trust);
    const trustChanged = !sameTrust(nextTrust, this.#trust);
    try {
      if (trustChanged) await this.#storage.writeTrust(encodeTrust(nextTrust));
      await this.#storage.writeList(list.bytes);
    } catch (err) {
      this.#logger?.error('bnl write failed', { serial: list.bnl.serial, err: (err as Error).message });
      return { accepted: false, code: 'ERR_BNL_IO', reason: (err as Error).message, list, settled: false };
    }
    // After the list: a crash in between leaves the mark below the list (raised
    // at the next open), never above it. The list is in place by now, so a
    // failure here only weakens the rollback guard: logged, not a refusal.
    await this.#storage.writeHighest(encodeHighest(list.bnl.serial)).catch((err: Error) => {
      this.#logger?.error('bnl high-water mark write failed', { serial: list.bnl.serial, err: err.message });
    });
    const previous = cur;
    this.#current = list;
    this.#trust = nextTrust;
    this.#network ??= list.bnl.network;
    const diff = diffBnl(previous?.bnl ?? null, list.bnl);
    if (order === 'conflict-wins' && previous) {
      this.#logger?.error('bnl serial conflict', { serial: list.bnl.serial, kept: list.hash, refused: previous.hash });
      return { accepted: true, list, previous, diff, trustChanged, conflict: { code: 'ERR_BNL_CONFLICT', replacedHash: previous.hash } };
    }
    this.#logger?.info('bnl accepted', { serial: list.bnl.serial, added: diff.added.length, removed: diff.removed.length, changed: diff.changed.length });
    return { accepted: true, list, previous, diff, trustChanged };
  }
}
