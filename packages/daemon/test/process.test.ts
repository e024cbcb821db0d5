import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { installSignalHandlers } from '../src/signals.js';
import { writePidfile, removePidfile, livePid } from '../src/pidfile.js';
import { silentLogger } from '../src/logging.js';
import type { PidfileError } from '../src/errors.js';

const tick = () => new Promise((r) => setImmediate(r));

test('reload signals only set a flag; the reload runs later and coalesces', async () => {
  const emitter = new EventEmitter();
  let reloads = 0;
  let release: () => void = () => undefined;
  const h = installSignalHandlers({
    emitter,
    logger: silentLogger,
    exit: () => assert.fail('must not exit'),
    actions: {
      reload: () => {
        reloads++;
        return new Promise<void>((r) => (release = r));
      },
      stop: async () => undefined,
    },
  });
  try {
    emitter.emit('SIGUSR1', 'SIGUSR1');
    assert.equal(reloads, 0, 'nothing runs inside the handler');
    await tick();
    await tick();
    assert.equal(reloads, 1);
    // three more while the first runs: exactly one more reload afterwards
    emitter.emit('SIGHUP', 'SIGHUP');
    emitter.emit('SIGUSR1', 'SIGUSR1');
    emitter.emit('SIGHUP', 'SIGHUP');
    await tick();
    assert.equal(reloads, 1);
    release();
    for (let i = 0; i < 5; i++) await tick();
    assert.equal(reloads, 2);
    release();
    for (let i = 0; i < 5; i++) await tick();
    assert.equal(reloads, 2);
  } finally {
    h.uninstall();
  }
});

test('SIGTERM stops gracefully and exits 0; a second signal exits at once; a hung stop is cut at the grace period', async () => {
  const emitter = new EventEmitter();
  const exits: number[] = [];
  let stopped: NodeJS.Signals | null = null;
  const h = installSignalHandlers({
    emitter,
    logger: silentLogger,
    graceMs: 150,
    exit: (c) => exits.push(c),
    actions: {
      reload: async () => undefined,
      stop: (sig) => {
        stopped = sig;
        return new Promise(() => undefined); // never finishes
      },
    },
  });
  try {
    emitter.emit('SIGTERM', 'SIGTERM');
    await tick();
    assert.equal(stopped, 'SIGTERM');
    emitter.emit('SIGINT', 'SIGINT');
    assert.deepEqual(exits, [1], 'second signal exits at once');
    await new Promise((r) => setTimeout(r, 250));
    assert.deepEqual(exits, [1, 1], 'grace period cut the hung stop');
  } finally {
    h.uninstall();
  }
  const emitter2 = new EventEmitter();
  const exits2: number[] = [];
  const h2 = installSignalHandlers({ emitter: emitter2, logger: silentLogger, exit: (c) => exits2.push(c), actions: { reload: async () => undefined, stop: async () => undefined } });
  emitter2.emit('SIGINT', 'SIGINT');
  await tick();
  await tick();
  assert.deepEqual(exits2, [0]);
  h2.uninstall();
});

test('pidfile: atomic write, refuses a live other process, replaces a dead one, removes only its own', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dmn-pid-'));
  try {
    const p = join(dir, 'run', 'lab.pid');
    writePidfile(p);
    assert.equal(readFileSync(p, 'utf8'), `${process.pid}\n`);
    assert.equal(livePid(p), process.pid);
    assert.deepEqual(readdirSync(join(dir, 'run')), ['lab.pid'], 'no temporary file left');
    writeFileSync(p, `${process.ppid}\n`); // another live process holds it
    assert.throws(() => writePidfile(p), (e: PidfileError) => e.code === 'ERR_PIDFILE_IN_USE');
    assert.equal(removePidfile(p), false, 'not ours');
    assert.ok(existsSync(p));
    // a dead process: replaced
    const dead = Number(execFileSync(process.execPath, ['-e', 'console.log(process.pid)'], { encoding: 'utf8' }).trim());
    writeFileSync(p, `${dead}\n`);
    writePidfile(p);
    assert.equal(livePid(p), process.pid);
    assert.equal(removePidfile(p), true);
    assert.equal(existsSync(p), false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('privilege drop: becomes nobody, keeps open descriptors, cannot regain root', { skip: process.getuid?.() !== 0 ? 'needs root' : false }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dmn-priv-'));
  try {
    const secret = join(dir, 'root-only');
    writeFileSync(secret, '', { mode: 0o600 });
    const mod = new URL('../src/privileges.js', import.meta.url).href;
    const script = `
      import { openSync, writeSync } from 'node:fs';
      const { dropPrivileges, checkWritableAfterDrop } = await import(${JSON.stringify(mod)});
      const fd = openSync(${JSON.stringify(secret)}, 'a');
      const log = { notice() {}, error() {}, warn() {}, info() {}, debug() {}, log() {}, enabled: () => false, child() { return this; } };
      const r = dropPrivileges({ user: 'nobody' }, log);
      writeSync(fd, 'written after drop\\n');
      let reopen = 'denied';
      try { openSync(${JSON.stringify(secret)}, 'a'); reopen = 'allowed'; } catch (e) { reopen = e.code; }
      let writable = 'ok';
      try { checkWritableAfterDrop([${JSON.stringify(dir)}]); } catch (e) { writable = e.code; }
      console.log(JSON.stringify({ ...r, uid: process.getuid(), groups: process.getgroups(), reopen, writable }));
    `;
    const out = await new Promise<string>((resolve, reject) => {
      const c = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
      let s = '';
      c.stdout.on('data', (d: Buffer) => (s += d.toString()));
      c.on('exit', (code) => (code === 0 ? resolve(s) : reject(new Error(`child exited ${code}`))));
    });
    const r = JSON.parse(out) as { uid: number; gid: number; groups: number[]; reopen: string; writable: string };
    const nobody = execFileSync('id', ['-u', 'nobody'], { encoding: 'utf8' }).trim();
    assert.equal(String(r.uid), nobody);
    assert.notEqual(r.gid, 0);
    assert.ok(!r.groups.includes(0), 'no root group left');
    assert.equal(r.reopen, 'EACCES');
    assert.equal(r.writable, 'ERR_PRIVILEGE_DROP');
    assert.equal(readFileSync(secret, 'utf8'), 'written after drop\n');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

