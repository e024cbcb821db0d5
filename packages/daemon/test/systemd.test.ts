import { test, mock } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { closeSync, fstatSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { silentLogger } from '../src/logging.js';
import { createNotifier, stderrIsJournal, STATUS_POLL_MS, type SystemdEnv } from '../src/systemd.js';

const LISTENER = fileURLToPath(new URL('../../test/fixtures/notify-listener.py', import.meta.url));

test('stderrIsJournal: JOURNAL_STREAM must name the very file stderr is', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dmn-journal-'));
  const fd = openSync(join(dir, 'a'), 'w');
  const other = openSync(join(dir, 'b'), 'w');
  try {
    const st = fstatSync(fd, { bigint: true });
    const stream = `${st.dev}:${st.ino}`;
    assert.equal(stderrIsJournal({ JOURNAL_STREAM: stream }, fd), true);
    assert.equal(stderrIsJournal({ JOURNAL_STREAM: stream }, other), false, 'stderr redirected elsewhere');
    assert.equal(stderrIsJournal({}, fd), false);
    assert.equal(stderrIsJournal({ JOURNAL_STREAM: '' }, fd), false);
    assert.equal(stderrIsJournal({ JOURNAL_STREAM: `${st.dev}-${st.ino}` }, fd), false);
    assert.equal(stderrIsJournal({ JOURNAL_STREAM: `${st.dev}:${st.ino}:1` }, fd), false);
  } finally {
    closeSync(fd);
    closeSync(other);
    rmSync(dir, { recursive: true, force: true });
  }
});

function fakeNotifier(env: SystemdEnv, pid = 1234) {
  const sent: string[] = [];
  const n = createNotifier({ logger: silentLogger, env, pid, send: (_s, m) => void sent.push(m) });
  return { n, sent };
}

test('notifier: READY with STATUS, STATUS only when it changes, watchdog at half WATCHDOG_USEC, RELOADING with MONOTONIC_USEC, STOPPING ends the timers', () => {
  mock.timers.enable({ apis: ['setInterval'] });
  try {
    const env: SystemdEnv = { NOTIFY_SOCKET: '/run/x', WATCHDOG_USEC: '4000000', WATCHDOG_PID: '1234', JOURNAL_STREAM: '1:2' };
    const { n, sent } = fakeNotifier(env);
    // the variables are gone from the environment hooks inherit (JOURNAL_STREAM stays)
    assert.deepEqual(env, { JOURNAL_STREAM: '1:2' });
    assert.equal(n.enabled, true);
    assert.equal(n.watchdogMs, 2000);
    let peers = { up: 0, total: 2 };
    n.ready(() => peers);
    assert.deepEqual(sent, ['READY=1\nSTATUS=0 of 2 peers up', 'WATCHDOG=1']);
    sent.length = 0;
    mock.timers.tick(STATUS_POLL_MS);
    assert.equal(sent.filter((m) => m.startsWith('STATUS=')).length, 0, 'unchanged status is not sent');
    assert.equal(sent.filter((m) => m === 'WATCHDOG=1').length, Math.floor(STATUS_POLL_MS / 2000));
    peers = { up: 1, total: 2 };
    sent.length = 0;
    mock.timers.tick(STATUS_POLL_MS);
    assert.deepEqual(sent.filter((m) => m.startsWith('STATUS=')), ['STATUS=1 of 2 peers up']);
    const before = process.hrtime.bigint() / 1000n;
    n.reloading();
    const after = process.hrtime.bigint() / 1000n;
    const m = /^RELOADING=1\nMONOTONIC_USEC=(\d+)$/.exec(sent.at(-1)!);
    assert.ok(m, sent.at(-1));
    assert.ok(BigInt(m[1]!) >= before && BigInt(m[1]!) <= after, 'CLOCK_MONOTONIC in µs');
    n.ready(() => peers);
    assert.equal(sent.at(-1), 'READY=1\nSTATUS=1 of 2 peers up');
    n.stopping();
    assert.equal(sent.at(-1), 'STOPPING=1');
    sent.length = 0;
    mock.timers.tick(10 * STATUS_POLL_MS);
    assert.deepEqual(sent, [], 'nothing after STOPPING');
  } finally {
    mock.timers.reset();
  }
});

test('notifier: no watchdog for another WATCHDOG_PID or without WATCHDOG_USEC; nothing at all without NOTIFY_SOCKET', () => {
  mock.timers.enable({ apis: ['setInterval'] });
  try {
    for (const env of [{ NOTIFY_SOCKET: '/run/x', WATCHDOG_USEC: '4000000', WATCHDOG_PID: '999' }, { NOTIFY_SOCKET: '/run/x' }]) {
      const { n, sent } = fakeNotifier(env);
      assert.equal(n.watchdogMs, null);
      n.ready(() => ({ up: 0, total: 0 }));
      mock.timers.tick(60_000);
      assert.deepEqual(sent, ['READY=1\nSTATUS=0 of 0 peers up']);
      n.stopping();
    }
    const { n, sent } = fakeNotifier({ WATCHDOG_USEC: '4000000' });
    assert.equal(n.enabled, false);
    n.ready(() => ({ up: 0, total: 0 }));
    n.reloading();
    n.stopping();
    mock.timers.tick(60_000);
    assert.deepEqual(sent, []);
  } finally {
    mock.timers.reset();
  }
});

test('notifier: a failing send is logged once per error and never throws', () => {
  const warnings: unknown[] = [];
  const logger = { ...silentLogger, warn: (msg: string, f?: unknown) => void warnings.push([msg, f]) };
  const n = createNotifier({ logger, env: { NOTIFY_SOCKET: '/run/nothing' }, send: () => { throw Object.assign(new Error('sendto: Connection refused'), { code: 'ECONNREFUSED' }); } });
  n.ready(() => ({ up: 0, total: 0 }));
  n.reloading();
  n.stopping();
  assert.equal(warnings.length, 1);
});

/** Runs the fixture listener on `socket` and collects what it receives. */
async function listen(socket: string): Promise<{ messages: string[]; stop(): void }> {
  const p = spawn('python3', [LISTENER, socket], { stdio: ['pipe', 'pipe', 'inherit'] });
  const messages: string[] = [];
  const lines = createInterface({ input: p.stdout! });
  await new Promise<void>((res, rej) => {
    p.once('error', rej);
    p.once('exit', (code) => rej(new Error(`listener exited ${code}`)));
    lines.on('line', (l) => {
      if (l === 'listening') return res();
      messages.push((JSON.parse(l) as { msg: string }).msg);
    });
  });
  return { messages, stop: () => void p.kill('SIGTERM') };
}

test('the native sdNotify reaches a datagram socket at a path and at an @abstract name; errors carry the errno code', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dmn-notify-'));
  const path = join(dir, 'notify');
  const abstract = `@cluevpn-test-${process.pid}`;
  const a = await listen(path);
  const b = await listen(abstract);
  try {
    const warnings: unknown[] = [];
    const logger = { ...silentLogger, warn: (msg: string, f?: unknown) => void warnings.push([msg, f]) };
    for (const socket of [path, abstract]) {
      const n = createNotifier({ logger, env: { NOTIFY_SOCKET: socket } });
      assert.equal(n.enabled, true, 'the sd_notify addon is built');
      n.ready(() => ({ up: 3, total: 4 }));
      n.stopping();
    }
    const want = ['READY=1\nSTATUS=3 of 4 peers up', 'STOPPING=1'];
    const deadline = Date.now() + 10_000;
    while ((a.messages.length < 2 || b.messages.length < 2) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(a.messages, want);
    assert.deepEqual(b.messages, want);
    assert.deepEqual(warnings, []);
    // nothing listening: logged with the errno code, not thrown
    const n = createNotifier({ logger, env: { NOTIFY_SOCKET: join(dir, 'missing') } });
    n.ready(() => ({ up: 0, total: 0 }));
    assert.equal(((warnings[0] as [string, { err: { code: string } }])[1]).err.code, 'ENOENT');
  } finally {
    a.stop();
    b.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
