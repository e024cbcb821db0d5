import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createConnection } from 'node:net';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startControlServer, type ControlHandlers, type StatusReport } from '../src/control.js';
import { silentLogger } from '../src/logging.js';
import { DaemonError } from '../src/errors.js';

function exchange(path: string, lines: string[]): Promise<Record<string, unknown>[]> {
  return new Promise((resolve, reject) => {
    const s = createConnection(path);
    let buf = '';
    const out: Record<string, unknown>[] = [];
    s.setEncoding('utf8');
    s.on('connect', () => s.write(lines.map((l) => `${l}\n`).join('')));
    s.on('data', (d: string) => {
      buf += d;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        out.push(JSON.parse(buf.slice(0, nl)) as Record<string, unknown>);
        buf = buf.slice(nl + 1);
        if (out.length === lines.length) {
          s.end();
          resolve(out);
        }
      }
    });
    s.on('error', reject);
    s.on('close', () => resolve(out));
  });
}

function handlers(state: { level: number; reloads: number }): ControlHandlers {
  const status = { name: 'alpha', id: 1, netname: 'lab', pid: process.pid, peers: [] } as unknown as StatusReport;
  return {
    status: () => status,
    peers: async () => [],
    bnlStatus: () => ({ serial: 3, signedAt: null, nodes: 2, path: '/x', peers: { beta: 2 } }),
    setLogLevel: (level) => {
      const previous = state.level;
      state.level = level;
      return { level, previous };
    },
    reloadAndPush: async () => {
      state.reloads++;
      if (state.reloads > 1) throw new DaemonError('ERR_BNL_INVALID', 'signature does not verify');
      return { serial: 4, applied: true, pushedTo: 2, pushTargets: 3, pushFailed: 1, pushPending: 0 };
    },
  };
}

test('control socket: mode 0600, every command, typed errors, in-order answers', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dmn-ctl-'));
  const path = join(dir, 'run', 'lab.sock');
  const state = { level: 5, reloads: 0 };
  const server = await startControlServer({ path, handlers: handlers(state), logger: silentLogger });
  try {
    assert.equal(statSync(path).mode & 0o777, 0o600);
    const answers = await exchange(path, [
      '{"v":1,"id":1,"cmd":"status"}',
      '{"v":1,"id":2,"cmd":"set-log-level","level":7}',
      '{"v":1,"id":3,"cmd":"set-log-level","level":9}',
      '{"v":1,"id":4,"cmd":"bnl-status"}',
      '{"v":1,"id":5,"cmd":"reload-and-push"}',
      '{"v":1,"id":6,"cmd":"reload-and-push"}',
      '{"v":2,"id":7,"cmd":"status"}',
      '{"v":1,"id":8,"cmd":"launch-missiles"}',
      'not json',
      '{"v":1,"id":"p","cmd":"peers"}',
    ]);
    assert.equal(answers.length, 10);
    assert.deepEqual(answers.map((a) => a.id), [1, 2, 3, 4, 5, 6, 7, 8, null, 'p']);
    assert.equal((answers[0]!.result as StatusReport).name, 'alpha');
    assert.deepEqual(answers[1]!.result, { level: 7, previous: 5 });
    assert.equal(state.level, 7);
    const codeOf = (a: Record<string, unknown>) => (a.error as { code: string }).code;
    assert.equal(codeOf(answers[2]!), 'ERR_CONTROL_BAD_REQUEST');
    assert.equal((answers[3]!.result as { serial: number }).serial, 3);
    assert.deepEqual(answers[4]!.result, { serial: 4, applied: true, pushedTo: 2, pushTargets: 3, pushFailed: 1, pushPending: 0 });
    assert.equal(codeOf(answers[5]!), 'ERR_BNL_INVALID');
    assert.equal(codeOf(answers[6]!), 'ERR_CONTROL_VERSION');
    assert.equal(answers[6]!.v, 1);
    assert.equal(codeOf(answers[7]!), 'ERR_CONTROL_UNKNOWN_COMMAND');
    assert.equal(codeOf(answers[8]!), 'ERR_CONTROL_PROTOCOL');
    assert.deepEqual(answers[9]!.result, []);
    // a second server on the same path refuses: a live daemon answers there
    await assert.rejects(startControlServer({ path, handlers: handlers(state), logger: silentLogger }), (e: DaemonError) => e.code === 'ERR_CONTROL_IN_USE');
  } finally {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
  assert.equal(existsSync(path), false);
});

test('control socket: a stale socket is replaced, a regular file is never removed', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dmn-ctl-'));
  try {
    const stale = join(dir, 'stale.sock');
    // a socket file left behind by a crashed process: bound, nobody listening
    execFileSync('python3', ['-c', 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])', stale]);
    assert.ok(statSync(stale).isSocket());
    const s = await startControlServer({ path: stale, handlers: handlers({ level: 5, reloads: 0 }), logger: silentLogger });
    const [a] = await exchange(stale, ['{"v":1,"id":1,"cmd":"bnl-status"}']);
    assert.equal(a!.ok, true);
    await s.close();

    const regular = join(dir, 'regular');
    writeFileSync(regular, 'precious');
    await assert.rejects(startControlServer({ path: regular, handlers: handlers({ level: 5, reloads: 0 }), logger: silentLogger }), (e: DaemonError) => e.code === 'ERR_CONTROL_NOT_SOCKET');
    assert.equal(statSync(regular).size, 8);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('control socket: an over-long line is a protocol error and closes the connection', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dmn-ctl-'));
  const path = join(dir, 'x.sock');
  const server = await startControlServer({ path, handlers: handlers({ level: 5, reloads: 0 }), logger: silentLogger });
  try {
    const answers = await exchange(path, ['x'.repeat(70 * 1024)]);
    assert.equal((answers[0]!.error as { code: string }).code, 'ERR_CONTROL_PROTOCOL');
  } finally {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
