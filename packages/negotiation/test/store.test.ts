import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { SCHEMA_VERSION, StateStore, type StoredSession } from '../src/index.js';
import { tempDir } from './helpers.js';

const t = tempDir('neg-store-');
after(t.cleanup);
let n = 0;
const dbPath = () => join(t.dir, `s${++n}.db`);

function session(peer: string, localIndex: number, fill: number): StoredSession {
  return {
    peer,
    localIndex,
    remoteIndex: localIndex + 1000,
    cipher: 'chacha20-poly1305',
    compression: { algo: 'lz4', level: 1 },
    txKey: Buffer.alloc(32, fill),
    rxKey: Buffer.alloc(32, fill + 1),
    createdAt: 1_700_000_000_000,
    sendEpoch: 1,
    rxEpochFloor: 1,
  };
}

describe('StateStore', () => {
  test('created 0600, WAL, schema version', () => {
    const f = dbPath();
    const s = StateStore.open(f);
    s.close();
    assert.equal(statSync(f).mode & 0o777, 0o600);
    const db = new Database(f, { readonly: true });
    assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
    assert.equal(db.pragma('user_version', { simple: true }), SCHEMA_VERSION);
    db.close();
  });

  test('an existing file with a wide mode is tightened', () => {
    const f = dbPath();
    writeFileSync(f, '', { mode: 0o644 });
    StateStore.open(f).close();
    assert.equal(statSync(f).mode & 0o777, 0o600);
  });

  test('sessions persist across reopen; epochs reserved for the peer are durable and never handed out twice', () => {
    const f = dbPath();
    let s = StateStore.open(f);
    s.putSession(session('bravo', 7, 0xaa));
    s.putSession(session('carol', 8, 0xbb));
    assert.equal(s.reservePeerEpoch('bravo', 7), 2);
    assert.equal(s.reservePeerEpoch('bravo', 7), 3);
    s.close();
    s = StateStore.open(f);
    assert.equal(s.reservePeerEpoch('bravo', 7), 4, 'the reservation survived the reopen');
    assert.equal(s.reservePeerEpoch('bravo', 7, 10), 10);
    assert.equal(s.reservePeerEpoch('bravo', 99), undefined, 'another session: nothing reserved');
    assert.equal(s.reservePeerEpoch('nobody', 7), undefined);
    const got = s.getSession('bravo')!;
    assert.deepEqual(got.txKey, Buffer.alloc(32, 0xaa));
    assert.equal(got.rxEpochFloor, 10);
    s.noteRxEpoch('bravo', 7, 12);
    s.noteRxEpoch('bravo', 7, 3); // never lowers
    s.noteRxEpoch('bravo', 99, 50); // other session: ignored
    assert.equal(s.getSession('bravo')!.rxEpochFloor, 12);
    assert.equal(s.reservePeerEpoch('bravo', 7), 13, 'a seen epoch is never reserved again');
    assert.equal(s.setSendEpoch('bravo', 7, 5), true);
    assert.equal(s.setSendEpoch('bravo', 7, 4), true, 'never lowered, but the session exists');
    assert.equal(s.getSession('bravo')!.sendEpoch, 5);
    assert.equal(s.setSendEpoch('bravo', 99, 9), false);
    assert.equal(s.getSession('carol')!.rxEpochFloor, 1, 'other peers untouched');
    s.deleteSession('carol');
    assert.deepEqual(s.listSessions().map((x) => x.peer), ['bravo']);
    s.close();
  });

  test('an exhausted epoch space reserves nothing (the negotiator renegotiates)', () => {
    const s = StateStore.open(dbPath());
    s.putSession({ ...session('bravo', 7, 1), rxEpochFloor: 0xffffffff });
    s.putSession({ ...session('carol', 8, 1), rxEpochFloor: 0xfffffffe });
    assert.equal(s.reservePeerEpoch('bravo', 7), undefined);
    assert.equal(s.reservePeerEpoch('carol', 8), 0xffffffff);
    assert.equal(s.reservePeerEpoch('carol', 8), undefined);
    s.close();
  });

  test('replaced keys are erased from the file', () => {
    const f = dbPath();
    const s = StateStore.open(f);
    s.putSession(session('bravo', 7, 0x5a));
    s.putSession(session('bravo', 9, 0x11));
    s.close();
    const bytes = Buffer.concat([readFileSync(f), existsSync(`${f}-wal`) ? readFileSync(`${f}-wal`) : Buffer.alloc(0)]);
    assert.equal(bytes.indexOf(Buffer.alloc(32, 0x5a)), -1);
    assert.equal(bytes.indexOf(Buffer.alloc(32, 0x5b)), -1);
    assert.notEqual(bytes.indexOf(Buffer.alloc(32, 0x11)), -1);
  });

  test('garbage file: ERR_STATE_CORRUPT naming the file, file left alone', () => {
    const f = dbPath();
    const junk = Buffer.alloc(8192, 0x42);
    writeFileSync(f, junk, { mode: 0o600 });
    assert.throws(() => StateStore.open(f), (err: unknown) => (err as { code?: string }).code === 'ERR_STATE_CORRUPT' && (err as { file?: string }).file === f);
    assert.deepEqual(readFileSync(f), junk);
  });

  test('damaged pages: ERR_STATE_CORRUPT', () => {
    const f = dbPath();
    const s = StateStore.open(f);
    for (let i = 0; i < 50; i++) s.putSession(session(`peer${i}`, 100 + i, i));
    s.close();
    const buf = readFileSync(f);
    buf.fill(0xff, 4096, 8192); // trash page 2, the root of the sessions table
    writeFileSync(f, buf);
    assert.throws(() => StateStore.open(f), { code: 'ERR_STATE_CORRUPT' });
  });

  test('the pin a session was keyed under is kept with it, replaced with it and deleted with it', () => {
    const f = dbPath();
    let s = StateStore.open(f);
    s.setSessionPin('bravo', 'aa'.repeat(32)); // no session yet: nothing noted
    assert.equal(s.sessionPin('bravo'), undefined);
    s.putSession(session('bravo', 7, 1));
    assert.equal(s.sessionPin('bravo'), undefined, 'not noted yet');
    s.setSessionPin('bravo', 'aa'.repeat(32));
    s.close();
    s = StateStore.open(f);
    assert.equal(s.sessionPin('bravo'), 'aa'.repeat(32), 'durable');
    s.putSession(session('bravo', 9, 2)); // a new session: the old pin does not carry over
    assert.equal(s.sessionPin('bravo'), undefined);
    s.setSessionPin('bravo', '');
    assert.equal(s.sessionPin('bravo'), '');
    s.deleteSession('bravo');
    assert.equal(s.sessionPin('bravo'), undefined);
    s.close();
  });

  test('a version 1 database is migrated: its sessions are kept, with no pin noted', () => {
    const f = dbPath();
    const db = new Database(f);
    db.exec(`CREATE TABLE sessions (peer TEXT PRIMARY KEY NOT NULL, local_index INTEGER NOT NULL UNIQUE, remote_index INTEGER NOT NULL,
      cipher TEXT NOT NULL, comp_algo TEXT NOT NULL, comp_level INTEGER NOT NULL, tx_key BLOB NOT NULL, rx_key BLOB NOT NULL,
      created_at INTEGER NOT NULL, send_epoch INTEGER NOT NULL, rx_epoch_floor INTEGER NOT NULL) STRICT`);
    db.prepare('INSERT INTO sessions VALUES (?, 7, 8, ?, ?, 0, ?, ?, 1, 3, 2)').run('bravo', 'aes-256-gcm', 'none', Buffer.alloc(32, 1), Buffer.alloc(32, 2));
    db.pragma('user_version = 1');
    db.close();
    const s = StateStore.open(f);
    assert.deepEqual(s.listSessions().map((x) => [x.peer, x.sendEpoch, x.rxEpochFloor]), [['bravo', 3, 2]]);
    assert.equal(s.sessionPin('bravo'), undefined);
    s.setSessionPin('bravo', 'bb'.repeat(32));
    assert.equal(s.sessionPin('bravo'), 'bb'.repeat(32));
    s.close();
  });

  test('a database from a newer version is refused', () => {
    const f = dbPath();
    StateStore.open(f).close();
    const db = new Database(f);
    db.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
    db.close();
    assert.throws(() => StateStore.open(f), { code: 'ERR_STATE_CORRUPT' });
  });

  test('a bad row is reported at open', () => {
    const f = dbPath();
    const s = StateStore.open(f);
    s.putSession(session('bravo', 7, 1));
    s.close();
    const db = new Database(f);
    db.prepare("UPDATE sessions SET tx_key = x'00'").run();
    db.close();
    assert.throws(() => StateStore.open(f), { code: 'ERR_STATE_CORRUPT' });
  });
});
