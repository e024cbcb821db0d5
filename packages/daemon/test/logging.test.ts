import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, renameSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger, formatRecord, isoTimestamp, type LogFields } from '../src/logging.js';

function memoryLogger(level: number) {
  const lines: string[] = [];
  const log = createLogger({ level, method: 'stderr', stream: { write: (s: string) => lines.push(s) }, now: () => new Date(0) });
  return { log, lines };
}

test('levels filter, children share the root level, setLevel applies at run time', () => {
  const { log, lines } = memoryLogger(5);
  const bnl = log.child('bnl');
  bnl.info('hidden');
  bnl.notice('shown', { serial: 7, peer: 'bob' });
  assert.deepEqual(lines, ['1970-01-01T00:00:00.000Z notice cluevpnd:bnl: shown serial=7 peer=bob\n']);
  assert.equal(bnl.enabled(6), false);
  log.setLevel(7);
  assert.equal(bnl.enabled(7), true);
  bnl.child('pull').debug('now visible');
  assert.equal(lines[1], '1970-01-01T00:00:00.000Z debug cluevpnd:bnl:pull: now visible\n');
  log.setLevel(0);
  bnl.error('dropped at level 0');
  log.log(0, 'emergency');
  assert.equal(lines.length, 3);
  assert.match(lines[2]!, / emerg cluevpnd: emergency\n$/);
  assert.throws(() => log.setLevel(8), RangeError);
  assert.equal(log.level, 0);
});

test('secret-looking fields are never printed; buffers print only their length', () => {
  const { log, lines } = memoryLogger(7);
  const secret = 'SUPERSECRET-0123456789';
  log.info('keys installed', {
    peer: 'bob',
    ...({ key: secret, secret, privkey: secret, txKey: secret, password: secret } as LogFields),
    err: Object.assign(new Error('boom'), { code: 'ERR_X' }),
  });
  log.info('object', { status: { name: 'bob', rxKey: secret, nested: { psk: secret } } });
  log.info('bytes', { count: Buffer.from(secret) });
  const all = lines.join('');
  assert.ok(!all.includes(secret), all);
  assert.ok(!all.includes('SUPERSECRET'), all);
  assert.match(all, /key=\[redacted\]/);
  assert.match(all, /err="ERR_X: boom"/);
  assert.match(all, /count=<22 bytes>/);
});

test('values with spaces or newlines are quoted so one record stays one line', () => {
  assert.equal(formatRecord('s', 'a\nb', { peer: 'evil\nnotice forged', node: 'plain', count: 3 }), 's: a\\nb peer="evil\\nnotice forged" node=plain count=3');
  assert.equal(formatRecord('s', 'm', { subnets: ['10.0.0.0/24', 'fd00::/64'], reason: '' }), 's: m subnets=10.0.0.0/24,fd00::/64 reason=""');
});

test('file method appends and reopens after rotation', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dmn-log-'));
  try {
    const file = join(dir, 'd.log');
    const log = createLogger({ level: 6, method: 'file', file });
    log.info('first', { peer: 'a' });
    renameSync(file, `${file}.1`);
    log.reopen();
    log.warn('second');
    await log.close();
    assert.match(readFileSync(`${file}.1`, 'utf8'), /info cluevpnd: first peer=a\n$/);
    assert.match(readFileSync(file, 'utf8'), /warning cluevpnd: second\n$/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('isoTimestamp is toISOString, from the UTC fields (years 0-9999), and toISOString itself outside them', () => {
  const times = [0, 1, 9, 10, 99, 100, 999, 951782400000, 1765155970123, Date.UTC(2024, 1, 29, 23, 59, 59, 999), Date.UTC(9999, 11, 31, 23, 59, 59, 999), Date.UTC(0, 0, 1), -1, -62198755200001, 253402300800000, 8.64e15, -8.64e15];
  for (const t of times) assert.equal(isoTimestamp(new Date(t)), new Date(t).toISOString(), `time ${t}`);
  assert.throws(() => isoTimestamp(new Date(Number.NaN)), RangeError);
});

test('log lines are stamped without Date.prototype.toISOString (it loads ICU time-zone data: 640 KiB resident)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dmn-log-'));
  const real = Object.getOwnPropertyDescriptor(Date.prototype, 'toISOString')!;
  let calls = 0;
  Object.defineProperty(Date.prototype, 'toISOString', { ...real, value: function (this: Date) { calls++; return real.value.call(this); } });
  try {
    const file = join(dir, 'd.log');
    const log = createLogger({ level: 6, method: 'file', file });
    log.info('stamped');
    await log.close();
    assert.match(readFileSync(file, 'utf8'), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z info cluevpnd: stamped\n$/);
    assert.equal(calls, 0);
  } finally {
    Object.defineProperty(Date.prototype, 'toISOString', real);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('file method with an unwritable path is ERR_LOG_SETUP', () => {
  assert.throws(() => createLogger({ level: 5, method: 'file', file: '/nonexistent-dir/x.log' }), (e: { code?: string }) => e.code === 'ERR_LOG_SETUP');
});

test('syslog method reaches a datagram socket through the logger child with the right priority', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dmn-syslog-'));
  const sock = join(dir, 'log.sock');
  // A tiny syslog receiver: Node has no AF_UNIX datagram sockets, python does.
  const rx = spawn('python3', ['-c', `
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("ready", flush=True)
for _ in range(2):
    print(s.recv(4096).decode(), flush=True)
`, sock], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    let out = '';
    rx.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const until = async (pred: () => boolean, what: string) => {
      const end = Date.now() + 5000;
      while (!pred()) {
        if (Date.now() > end) assert.fail(`timeout waiting for ${what}; got ${JSON.stringify(out)}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    await until(() => out.includes('ready') && existsSync(sock), 'receiver');
    const log = createLogger({ level: 6, method: 'syslog', syslogSocket: sock });
    log.child('bnl').notice('applied', { serial: 42 });
    log.error('failed', { key: 'secret-value' } as LogFields);
    await until(() => out.split('\n').filter((l) => l.startsWith('<')).length >= 2, 'two records');
    await log.close();
    const recs = out.split('\n').filter((l) => l.startsWith('<'));
    // facility daemon (3) * 8 + severity
    assert.match(recs[0]!, /^<29>.*cluevpnd.*: cluevpnd:bnl: applied serial=42$/);
    assert.match(recs[1]!, /^<27>.*: cluevpnd: failed key=\[redacted\]$/);
    assert.ok(!out.includes('secret-value'));
  } finally {
    rx.kill();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('journal: stderr lines carry <LEVEL> for journald and no timestamp', () => {
  const lines: string[] = [];
  const log = createLogger({ level: 7, method: 'stderr', journal: true, stream: { write: (s: string) => lines.push(s) }, now: () => new Date(0) });
  log.error('e', { peer: 'bob' });
  log.warn('w');
  log.child('bnl').notice('n');
  log.info('i');
  log.debug('d');
  log.log(0, 'emergency');
  assert.deepEqual(lines, ['<3>cluevpnd: e peer=bob\n', '<4>cluevpnd: w\n', '<5>cluevpnd:bnl: n\n', '<6>cluevpnd: i\n', '<7>cluevpnd: d\n', '<0>cluevpnd: emergency\n']);
  // the file and plain stderr methods keep their timestamped form
  const plain: string[] = [];
  createLogger({ level: 7, method: 'stderr', stream: { write: (s: string) => plain.push(s) }, now: () => new Date(0) }).warn('w');
  assert.deepEqual(plain, ['1970-01-01T00:00:00.000Z warning cluevpnd: w\n']);
});
