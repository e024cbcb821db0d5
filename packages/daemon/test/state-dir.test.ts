/**
 * The state directory (src/state-dir.ts): created with safe modes, old
 * state moved out of the config directory once and whole, handed to the
 * user of `user=`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { parseConfig } from '../src/config.js';
import { prepareStateDir } from '../src/state-dir.js';
import type { Logger, LogFields } from '../src/logging.js';
import { DaemonError } from '../src/errors.js';

function recorder(): Logger & { lines: { level: string; msg: string; fields?: LogFields }[] } {
  const lines: { level: string; msg: string; fields?: LogFields }[] = [];
  const rec = (level: string) => (msg: string, fields?: LogFields) => void lines.push({ level, msg, ...(fields ? { fields } : {}) });
  const log = {
    lines,
    error: rec('error'),
    warn: rec('warn'),
    notice: rec('notice'),
    info: rec('info'),
    debug: rec('debug'),
    log: (_l: number, msg: string, fields?: LogFields) => rec('log')(msg, fields),
    enabled: () => true,
    child: () => log,
  };
  return log;
}

function setup(extra = ''): { base: string; conf: ReturnType<typeof parseConfig>; etc: string } {
  const base = mkdtempSync(join(tmpdir(), 'statedir-'));
  const etc = join(base, 'etc', 'office');
  mkdirSync(etc, { recursive: true });
  const conf = parseConfig(`name=alpha\ncert=a.crt\nprivkey=a.key\ncacert=ca.crt\nbnlpubkey=${'ab'.repeat(32)}\n${extra}`, {
    file: join(etc, 'cluevpn.conf'),
    netname: 'office',
    env: { CLUEVPN_STATEDIR: join(base, 'var', 'lib', 'cluevpn'), CLUEVPN_RUNDIR: join(base, 'run') },
  });
  return { base, conf, etc };
}

test('creates <statebase> 0755 and <statebase>/NET 0700 when missing', () => {
  const { base, conf } = setup();
  const umask = process.umask(0o077);
  try {
    prepareStateDir(conf, null, recorder());
    assert.equal(statSync(join(base, 'var', 'lib', 'cluevpn')).mode & 0o777, 0o755, 'exact under umask 077 (the user must traverse it)');
    assert.equal(statSync(conf.statedir).mode & 0o7777, 0o700);
    prepareStateDir(conf, null, recorder()); // again: nothing to do, no error
  } finally {
    process.umask(umask);
    rmSync(base, { recursive: true, force: true });
  }
});

test('the old default files in the config directory move once, whole, with one log line each; nothing is lost', () => {
  const { base, conf, etc } = setup();
  try {
    writeFileSync(join(etc, 'bnl'), 'LIST', { mode: 0o644 });
    writeFileSync(join(etc, 'bnl.highest'), '7\n', { mode: 0o600 });
    writeFileSync(join(etc, 'bnl.trust'), '{"keys":[]}', { mode: 0o644 });
    writeFileSync(join(etc, 'state.db'), 'DB', { mode: 0o600 });
    writeFileSync(join(etc, 'state.db-wal'), 'WAL', { mode: 0o600 });
    writeFileSync(join(etc, 'state.db-shm'), 'SHM', { mode: 0o600 });
    const log = recorder();
    prepareStateDir(conf, null, log);
    const d = conf.statedir;
    assert.equal(readFileSync(join(d, 'bnl'), 'utf8'), 'LIST');
    assert.equal(readFileSync(join(d, 'bnl.highest'), 'utf8'), '7\n');
    assert.equal(readFileSync(join(d, 'bnl.trust'), 'utf8'), '{"keys":[]}');
    assert.equal(readFileSync(join(d, 'state.db'), 'utf8'), 'DB');
    assert.equal(readFileSync(join(d, 'state.db-wal'), 'utf8'), 'WAL', 'the WAL moves with the database (committed data may be only there)');
    assert.equal(existsSync(join(d, 'state.db-shm')), false, 'the shared-memory index is rebuilt by SQLite');
    assert.equal(statSync(join(d, 'state.db')).mode & 0o777, 0o600, 'mode kept');
    assert.equal(statSync(join(d, 'bnl')).mode & 0o777, 0o644);
    for (const f of ['bnl', 'bnl.highest', 'bnl.trust', 'state.db', 'state.db-wal', 'state.db-shm']) assert.equal(existsSync(join(etc, f)), false, `${f} gone from the config dir`);
    assert.deepEqual(
      log.lines.filter((l) => l.level === 'notice').map((l) => l.fields?.path),
      [join(etc, 'bnl'), join(etc, 'state.db')],
    );
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
});

test('a config directory that cannot be changed (read-only under systemd): the copy is made, the old files stay, a warning names them', { skip: process.getuid?.() !== 0 ? 'needs root (chattr)' : false }, (t) => {
  const { base, conf, etc } = setup();
  writeFileSync(join(etc, 'bnl'), 'LIST');
  writeFileSync(join(etc, 'state.db'), 'DB', { mode: 0o600 });
  // immutable: unlink fails with EPERM even for root, as EROFS would on a read-only /etc
  const immutable = spawnSync('chattr', ['+i', etc]);
  try {
    if (immutable.status !== 0) return t.skip(`chattr +i not supported here: ${immutable.stderr}`);
    const log = recorder();
    prepareStateDir(conf, null, log);
    assert.equal(readFileSync(join(conf.statedir, 'bnl'), 'utf8'), 'LIST');
    assert.equal(readFileSync(join(conf.statedir, 'state.db'), 'utf8'), 'DB');
    assert.ok(existsSync(join(etc, 'bnl')) && existsSync(join(etc, 'state.db')));
    assert.deepEqual(
      log.lines.filter((l) => l.level === 'warn').map((l) => l.fields?.path),
      [join(etc, 'bnl'), join(etc, 'state.db')],
    );
    // the next start uses the new files and names the old ones again
    const again = recorder();
    prepareStateDir(conf, null, again);
    assert.equal(again.lines.filter((l) => l.level === 'warn').length, 2);
    assert.equal(again.lines.filter((l) => l.level === 'notice').length, 0);
  } finally {
    spawnSync('chattr', ['-i', etc]);
    rmSync(base, { recursive: true, force: true });
  }
});

test('old and new both present: the new one is used, the old one named in a warning and left alone', () => {
  const { base, conf, etc } = setup();
  try {
    mkdirSync(conf.statedir, { recursive: true });
    writeFileSync(join(conf.statedir, 'bnl'), 'NEW');
    writeFileSync(join(etc, 'bnl'), 'OLD');
    const log = recorder();
    prepareStateDir(conf, null, log);
    assert.equal(readFileSync(join(conf.statedir, 'bnl'), 'utf8'), 'NEW');
    assert.equal(readFileSync(join(etc, 'bnl'), 'utf8'), 'OLD');
    assert.equal(log.lines.filter((l) => l.level === 'warn' && l.fields?.path === join(etc, 'bnl')).length, 1);
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
});

test('an interrupted move (new sidecar, no new list) is redone without lowering the rollback guard', () => {
  const { base, conf, etc } = setup();
  try {
    mkdirSync(conf.statedir, { recursive: true });
    writeFileSync(join(conf.statedir, 'bnl.highest'), '9\n');
    writeFileSync(join(conf.statedir, 'state.db-wal'), 'STALE-WAL');
    writeFileSync(join(etc, 'bnl'), 'LIST');
    writeFileSync(join(etc, 'bnl.highest'), '7\n');
    writeFileSync(join(etc, 'state.db'), 'DB');
    prepareStateDir(conf, null, recorder());
    assert.equal(readFileSync(join(conf.statedir, 'bnl.highest'), 'utf8'), '9\n');
    assert.equal(existsSync(join(conf.statedir, 'state.db-wal')), false, 'a WAL not belonging to the moved database is removed');
    assert.equal(readFileSync(join(conf.statedir, 'state.db'), 'utf8'), 'DB');
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
});

test('explicit bnl= and statedb= are used where they are: no directory made, nothing moved', () => {
  const { base, conf, etc } = setup('bnl=bnl\nstatedb=state.db\n');
  try {
    writeFileSync(join(etc, 'bnl'), 'LIST');
    prepareStateDir(conf, null, recorder());
    assert.equal(existsSync(conf.statedir), false);
    assert.equal(readFileSync(join(etc, 'bnl'), 'utf8'), 'LIST');
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
});

test('a symlink in place of the state directory is refused (ERR_STATE)', () => {
  const { base, conf } = setup();
  try {
    mkdirSync(join(base, 'var', 'lib', 'cluevpn'), { recursive: true });
    mkdirSync(join(base, 'elsewhere'));
    symlinkSync(join(base, 'elsewhere'), conf.statedir);
    assert.throws(() => prepareStateDir(conf, null, recorder()), (e: unknown) => e instanceof DaemonError && e.code === 'ERR_STATE');
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
});

test('with user=: the directory (only) is handed to that user', { skip: process.getuid?.() !== 0 ? 'needs root (chown)' : false }, () => {
  const { base, conf, etc } = setup();
  try {
    writeFileSync(join(etc, 'bnl'), 'LIST');
    prepareStateDir(conf, { uid: 65534, gid: 65534 }, recorder());
    assert.equal(statSync(conf.statedir).uid, 65534);
    assert.equal(statSync(conf.statedir).gid, 65534);
    assert.equal(statSync(join(conf.statedir, 'bnl')).uid, 0, 'files are not chowned');
    assert.equal(statSync(join(base, 'var', 'lib', 'cluevpn')).uid, 0, 'the base stays root\'s');
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
});
