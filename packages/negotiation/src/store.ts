/**
 * The state database (better-sqlite3): one row per peer with the pair's
 * current session, so that a restart does not renegotiate.
 *
 * - File mode 0600, created with that mode before SQLite opens it
 *   (the -wal/-shm files inherit it from the database file).
 * - WAL, `synchronous = FULL` (an epoch bump is durable when the call
 *   returns), `secure_delete = ON` plus a WAL checkpoint after keys are
 *   replaced or deleted, so retired keys do not linger in the file.
 * - Schema version in `PRAGMA user_version`; migrations run in one
 *   transaction; a database from a newer version is refused.
 * - Anything unreadable (not a database, failed integrity check, bad row)
 *   throws `StateCorruptError` (`ERR_STATE_CORRUPT`) naming the file and
 *   the way out — it is never reset silently.
 */
import { chmodSync, closeSync, constants, openSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import Database from 'better-sqlite3';
import type { CompressionAlgo } from './algorithms.js';
import { DATAPLANE_CIPHER, type DataplaneCipher } from './algorithms.js';
import { NegotiationError, StateCorruptError } from './errors.js';
import { KEY_BYTES } from './keys.js';

/**
 * The addon's path, handed to better-sqlite3 so that it does not search for
 * it with the `bindings` package (about 5 ms of every daemon start).
 */
const SQLITE_ADDON = createRequire(import.meta.url).resolve('better-sqlite3/build/Release/better_sqlite3.node');

/** Specification: current schema version (`PRAGMA user_version`). */
export const SCHEMA_VERSION = 2;
/** Specification: largest send epoch (u32 on the wire). */
export const MAX_EPOCH = 0xffffffff;

const MIGRATIONS: Record<number, string> = {
  1: `CREATE TABLE sessions (
        peer TEXT PRIMARY KEY NOT NULL,
        local_index INTEGER NOT NULL UNIQUE,
        remote_index INTEGER NOT NULL,
        cipher TEXT NOT NULL,
        comp_algo TEXT NOT NULL,
        comp_level INTEGER NOT NULL,
        tx_key BLOB NOT NULL,
        rx_key BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        send_epoch INTEGER NOT NULL,
        rx_epoch_floor INTEGER NOT NULL
      ) STRICT`,
  // The certificate pin (BNL fingerprint) a peer's stored session was keyed or resumed under.
  2: `CREATE TABLE session_pins (
        peer TEXT PRIMARY KEY NOT NULL,
        fingerprint TEXT NOT NULL
      ) STRICT`,
};

/** A pair's session as persisted. Key buffers are secret; the reader owns the returned copies. */
export interface StoredSession {
  peer: string;
  localIndex: number;
  remoteIndex: number;
  cipher: DataplaneCipher;
  compression: { algo: CompressionAlgo; level: number };
  txKey: Buffer;
  rxKey: Buffer;
  /** Milliseconds since the epoch. */
  createdAt: number;
  /** The highest send epoch we used (persisted before use). Not trusted after a restart: an older copy of the file may hold a lower one (see `Negotiator`, "Restart"). */
  sendEpoch: number;
  /** The highest epoch the peer may have sent with: reserved for it here (`reservePeerEpoch`) or seen from it (`noteRxEpoch`). */
  rxEpochFloor: number;
}

/** The store operations the `Negotiator` needs (implemented by `StateStore` and by the memory store in `./testing`). */
export interface SessionStore {
  listSessions(): StoredSession[];
  getSession(peer: string): StoredSession | undefined;
  /** Inserts or replaces the peer's session (the old keys are erased). */
  putSession(s: StoredSession): void;
  /** Deletes the peer's session (keys erased); no-op when absent. */
  deleteSession(peer: string): void;
  /**
   * Reserves a new epoch for the peer's sending on session `localIndex`:
   * rx floor := max(floor + 1, `atLeast`), durable when it returns. The rx
   * floor is the highest epoch the peer may have sent with (reserved for it
   * here or seen from it), so a reserved epoch is never handed out twice.
   * Returns it, or undefined when there is no such session or it would pass
   * `MAX_EPOCH` (renegotiate).
   */
  reservePeerEpoch(peer: string, localIndex: number, atLeast?: number): number | undefined;
  /** Records that we send with `epoch` on session `localIndex` (only ever raised); durable when it returns. False when there is no such session. */
  setSendEpoch(peer: string, localIndex: number, epoch: number): boolean;
  /** Raises the peer's rx floor to `epoch` if it is higher and the session's local index matches. */
  noteRxEpoch(peer: string, localIndex: number, epoch: number): void;
}

interface Row {
  peer: string;
  local_index: number;
  remote_index: number;
  cipher: string;
  comp_algo: string;
  comp_level: number;
  tx_key: Buffer;
  rx_key: Buffer;
  created_at: number;
  send_epoch: number;
  rx_epoch_floor: number;
}

function isSqliteCorruption(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && /^SQLITE_(NOTADB|CORRUPT|CANTOPEN|IOERR|PERM|READONLY|AUTH)/.test(code);
}

/** Options of `StateStore.open`. */
export interface StateStoreOptions {
  /** Open read-only (inspection tools). */
  readonly?: boolean;
}

/** The SQLite state store. One instance per file per process; `close()` when done. */
export class StateStore implements SessionStore {
  private constructor(
    /** Path of the database file. */
    readonly file: string,
    private readonly db: Database.Database,
  ) {}

  /**
   * Opens (creating with mode 0600 if absent) and migrates the database.
   * Throws `StateCorruptError` when the file is not a usable database;
   * `NegotiationError('ERR_STATE_IO')` when it cannot be created.
   */
  static open(file: string, opts: StateStoreOptions = {}): StateStore {
    try {
      const fd = openSync(file, constants.O_RDWR | constants.O_CREAT, 0o600);
      closeSync(fd);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EACCES' || code === 'EISDIR' || code === 'EPERM') throw new StateCorruptError(file, `cannot open: ${code}`, { cause: err });
      throw new NegotiationError('ERR_STATE_IO', `cannot create state database ${file}: ${String(code ?? err)}`, { cause: err });
    }
    if ((statSync(file).mode & 0o077) !== 0) chmodSync(file, 0o600);
    let db: Database.Database | undefined;
    try {
      db = new Database(file, { readonly: opts.readonly === true, fileMustExist: true, nativeBinding: SQLITE_ADDON });
      const store = new StateStore(file, db);
      store.init(opts.readonly === true);
      return store;
    } catch (err) {
      db?.close();
      if (err instanceof NegotiationError) throw err;
      if (isSqliteCorruption(err)) throw new StateCorruptError(file, String((err as Error).message), { cause: err });
      throw err;
    }
  }

  private init(readonly: boolean): void {
    const db = this.db;
    if (!readonly) {
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
    }
    db.pragma('secure_delete = ON');
    db.pragma('foreign_keys = ON');
    const check = db.pragma('quick_check', { simple: true });
    if (check !== 'ok') throw new StateCorruptError(this.file, `integrity check: ${String(check)}`);
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version > SCHEMA_VERSION) throw new StateCorruptError(this.file, `schema version ${version} is newer than this program (${SCHEMA_VERSION})`);
    if (version < SCHEMA_VERSION) {
      if (readonly) throw new StateCorruptError(this.file, `schema version ${version} needs a migration; open it read-write`);
      db.transaction(() => {
        for (let v = version + 1; v <= SCHEMA_VERSION; v++) {
          db.exec(MIGRATIONS[v]!);
          db.pragma(`user_version = ${v}`);
        }
      }).immediate();
    }
    // Validate every row now, so corruption is reported at start, not mid-traffic.
    this.listSessions();
  }

  private toSession(r: Row): StoredSession {
    const cipherOk = (Object.values(DATAPLANE_CIPHER) as string[]).includes(r.cipher);
    const compOk = r.comp_algo === 'none' || r.comp_algo === 'lz4';
    if (!cipherOk || !compOk || !Buffer.isBuffer(r.tx_key) || r.tx_key.length !== KEY_BYTES || !Buffer.isBuffer(r.rx_key) || r.rx_key.length !== KEY_BYTES) {
      throw new StateCorruptError(this.file, `bad session row for peer ${JSON.stringify(r.peer)}`);
    }
    return {
      peer: r.peer,
      localIndex: r.local_index,
      remoteIndex: r.remote_index,
      cipher: r.cipher as DataplaneCipher,
      compression: { algo: r.comp_algo as CompressionAlgo, level: r.comp_level },
      txKey: r.tx_key,
      rxKey: r.rx_key,
      createdAt: r.created_at,
      sendEpoch: r.send_epoch,
      rxEpochFloor: r.rx_epoch_floor,
    };
  }

  private wrap<T>(fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      if (isSqliteCorruption(err)) throw new StateCorruptError(this.file, String((err as Error).message), { cause: err });
      throw err;
    }
  }

  /** All sessions (fresh key copies owned by the caller). */
  listSessions(): StoredSession[] {
    return this.wrap(() => (this.db.prepare('SELECT * FROM sessions ORDER BY peer').all() as Row[]).map((r) => this.toSession(r)));
  }

  /** The peer's session, or undefined. */
  getSession(peer: string): StoredSession | undefined {
    return this.wrap(() => {
      const r = this.db.prepare('SELECT * FROM sessions WHERE peer = ?').get(peer) as Row | undefined;
      return r ? this.toSession(r) : undefined;
    });
  }

  /** Inserts or replaces the peer's session; the replaced keys are overwritten (secure_delete) and the WAL checkpointed. */
  putSession(s: StoredSession): void {
    this.wrap(() => {
      this.db.transaction(() => {
        this.db.prepare('DELETE FROM sessions WHERE peer = ? OR local_index = ?').run(s.peer, s.localIndex);
        this.db.prepare('DELETE FROM session_pins WHERE peer = ?').run(s.peer); // a new session: its pin is noted anew
        this.db
          .prepare(
            `INSERT INTO sessions (peer, local_index, remote_index, cipher, comp_algo, comp_level, tx_key, rx_key, created_at, send_epoch, rx_epoch_floor)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
          )
          .run(s.peer, s.localIndex, s.remoteIndex, s.cipher, s.compression.algo, s.compression.level, s.txKey, s.rxKey, Math.floor(s.createdAt), s.sendEpoch, s.rxEpochFloor);
      }).immediate();
      this.db.pragma('wal_checkpoint(TRUNCATE)');
    });
  }

  /** Deletes the peer's session (keys overwritten, WAL checkpointed). */
  deleteSession(peer: string): void {
    this.wrap(() => {
      this.db.prepare('DELETE FROM sessions WHERE peer = ?').run(peer);
      this.db.prepare('DELETE FROM session_pins WHERE peer = ?').run(peer);
      this.db.pragma('wal_checkpoint(TRUNCATE)');
    });
  }

  /**
   * Notes the certificate pin (`''` for none) the peer's stored session was
   * keyed or resumed under, so that a start with a list that re-pinned the
   * peer meanwhile drops the session (`sessionPin`). No-op without a session.
   */
  setSessionPin(peer: string, fingerprint: string): void {
    this.wrap(() => {
      if (this.db.prepare('SELECT 1 FROM sessions WHERE peer = ?').get(peer) === undefined) return;
      this.db.prepare('INSERT INTO session_pins (peer, fingerprint) VALUES (?, ?) ON CONFLICT (peer) DO UPDATE SET fingerprint = excluded.fingerprint').run(peer, fingerprint);
    });
  }

  /** The pin noted by `setSessionPin` for the peer's stored session, or undefined (none noted: a session stored by an older version). */
  sessionPin(peer: string): string | undefined {
    return this.wrap(() => (this.db.prepare('SELECT fingerprint FROM session_pins WHERE peer = ?').get(peer) as { fingerprint: string } | undefined)?.fingerprint);
  }

  /** See `SessionStore.reservePeerEpoch`. */
  reservePeerEpoch(peer: string, localIndex: number, atLeast = 0): number | undefined {
    return this.wrap(() =>
      this.db.transaction(() => {
        const r = this.db.prepare('SELECT rx_epoch_floor FROM sessions WHERE peer = ? AND local_index = ?').get(peer, localIndex) as { rx_epoch_floor: number } | undefined;
        if (!r) return undefined;
        const next = Math.max(r.rx_epoch_floor + 1, atLeast);
        if (next > MAX_EPOCH) return undefined;
        this.db.prepare('UPDATE sessions SET rx_epoch_floor = ? WHERE peer = ?').run(next, peer);
        return next;
      }).immediate(),
    );
  }

  /** See `SessionStore.setSendEpoch`. */
  setSendEpoch(peer: string, localIndex: number, epoch: number): boolean {
    return this.wrap(() => {
      if (this.db.prepare('UPDATE sessions SET send_epoch = ? WHERE peer = ? AND local_index = ? AND send_epoch < ?').run(epoch, peer, localIndex, epoch).changes > 0) return true;
      return this.db.prepare('SELECT 1 FROM sessions WHERE peer = ? AND local_index = ?').get(peer, localIndex) !== undefined;
    });
  }

  /** See `SessionStore.noteRxEpoch`. */
  noteRxEpoch(peer: string, localIndex: number, epoch: number): void {
    this.wrap(() => {
      this.db.prepare('UPDATE sessions SET rx_epoch_floor = ? WHERE peer = ? AND local_index = ? AND rx_epoch_floor < ?').run(epoch, peer, localIndex, epoch);
    });
  }

  /** Closes the database. */
  close(): void {
    this.db.close();
  }
}
