import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:net';
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ControlError, findDaemon, request, requestReloadAndPush } from '../src/control/client.js';

/** A stand-in daemon: answers each JSON line with `reply(request)`. */
async function fakeDaemon(path: string, reply: (req: Record<string, unknown>) => unknown): Promise<{ server: Server; seen: Record<string, unknown>[] }> {
  const seen: Record<string, unknown>[] = [];
  const server = createServer((s) => {
    let buf = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      const req = JSON.parse(buf.slice(0, nl)) as Record<string, unknown>;
      seen.push(req);
      s.write(`${JSON.stringify(reply(req))}\n`);
    });
  });
  await new Promise<void>((r) => server.listen(path, r));
  return { server, seen };
}

function tree() {
  const base = mkdtempSync(join(tmpdir(), 'dmn-cli-'));
  const env = { CLUEVPN_CONFDIR: join(base, 'etc'), CLUEVPN_RUNDIR: join(base, 'run') };
  mkdirSync(join(base, 'etc', 'lab'), { recursive: true });
  mkdirSync(join(base, 'run'));
  return { base, env };
}

test('findDaemon follows -c / -n / default and reads controlsocket and pidfile', () => {
  const { base, env } = tree();
  try {
    writeFileSync(join(base, 'etc', 'cluevpn.conf'), 'name=a\n');
    writeFileSync(join(base, 'etc', 'lab', 'cluevpn.conf'), 'name=a\n# controlsocket=/nope\ncontrolsocket = ctl/lab.sock\npidfile=/p/lab.pid\n');
    assert.deepEqual(findDaemon({}, env), {
      configFile: join(base, 'etc', 'cluevpn.conf'),
      netname: 'cluevpn',
      socket: join(base, 'run', 'cluevpn.sock'),
      pidfile: join(base, 'run', 'cluevpn.pid'),
    });
    assert.deepEqual(findDaemon({ netname: 'lab' }, env), {
      configFile: join(base, 'etc', 'lab', 'cluevpn.conf'),
      netname: 'lab',
      socket: join(base, 'etc', 'lab', 'ctl', 'lab.sock'),
      pidfile: '/p/lab.pid',
    });
    assert.equal(findDaemon({ configFile: join(base, 'etc', 'lab', 'cluevpn.conf') }, env).netname, 'lab');
    assert.throws(() => findDaemon({ netname: 'missing' }, env), (e: ControlError) => e.code === 'ERR_NO_CONFIG');
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
});

test('request sends a versioned line and maps answers to results and ControlError codes', async () => {
  const { base, env } = tree();
  const sock = join(base, 'run', 'lab.sock');
  writeFileSync(join(base, 'etc', 'lab', 'cluevpn.conf'), 'name=a\n');
  const { server, seen } = await fakeDaemon(sock, (req) => {
    if (req.cmd === 'set-log-level') return { v: 1, id: req.id, ok: true, result: { level: req.level, previous: 5 } };
    if (req.cmd === 'status') return { v: 1, id: req.id, ok: false, error: { code: 'ERR_CONTROL_VERSION', message: 'speaks 2' } };
    return { v: 1, id: req.id, ok: false, error: { code: 'ERR_BNL_INVALID', message: 'bad signature' } };
  });
  try {
    assert.deepEqual(await request({ netname: 'lab' }, 'set-log-level', { level: 7 }, { env }), { level: 7, previous: 5 });
    assert.equal(seen[0]!.v, 1);
    assert.equal(seen[0]!.cmd, 'set-log-level');
    assert.equal(seen[0]!.level, 7);
    await assert.rejects(request({ netname: 'lab' }, 'status', {}, { env }), (e: ControlError) => e.code === 'ERR_CONTROL_VERSION');
    await assert.rejects(request({ netname: 'lab' }, 'reload-and-push', {}, { env }), (e: ControlError) => e.code === 'ERR_CONTROL_REFUSED' && e.remoteCode === 'ERR_BNL_INVALID');
  } finally {
    await new Promise<void>((r) => server.close(() => r()));
    rmSync(base, { recursive: true, force: true });
  }
});

test('requestReloadAndPush uses the socket when it answers', async () => {
  const { base, env } = tree();
  writeFileSync(join(base, 'etc', 'lab', 'cluevpn.conf'), 'name=a\n');
  const { server } = await fakeDaemon(join(base, 'run', 'lab.sock'), (req) => ({ v: 1, id: req.id, ok: true, result: { serial: 9, applied: true, pushedTo: 3, pushTargets: 5, pushFailed: 1, pushPending: 1 } }));
  try {
    // an answer without `credentials` (a daemon before issue 18 §3) reads as null
    assert.deepEqual(await requestReloadAndPush({ netname: 'lab' }, { env }), { via: 'socket', serial: 9, pushedTo: 3, pushTargets: 5, pushFailed: 1, pushPending: 1, applied: true, pid: null, credentials: null });
  } finally {
    await new Promise<void>((r) => server.close(() => r()));
    rmSync(base, { recursive: true, force: true });
  }
});

test('requestReloadAndPush falls back to SIGUSR1 through the pidfile; no live pid is ERR_NO_DAEMON', async () => {
  const { base, env } = tree();
  writeFileSync(join(base, 'etc', 'lab', 'cluevpn.conf'), 'name=a\n');
  await assert.rejects(requestReloadAndPush({ netname: 'lab' }, { env }), (e: ControlError) => e.code === 'ERR_NO_DAEMON');
  const child = spawn(process.execPath, ['-e', "process.on('SIGUSR1', () => { console.log('usr1'); process.exit(0); }); console.log('ready'); setTimeout(() => {}, 10000);"], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    while (!out.includes('ready')) await new Promise((r) => setTimeout(r, 10));
    writeFileSync(join(base, 'run', 'lab.pid'), `${child.pid}\n`);
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    const answer = await requestReloadAndPush({ netname: 'lab' }, { env });
    assert.equal(answer.via, 'signal');
    assert.equal(answer.pid, child.pid);
    assert.equal(answer.serial, null);
    assert.equal(await exited, 0);
    assert.match(out, /usr1/);
    // the process is gone now: the stale pidfile names no live process
    await assert.rejects(requestReloadAndPush({ netname: 'lab' }, { env }), (e: ControlError) => e.code === 'ERR_NO_DAEMON');
  } finally {
    child.kill();
    rmSync(base, { recursive: true, force: true });
  }
});
