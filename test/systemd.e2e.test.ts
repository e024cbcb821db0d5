/**
 * End to end: `cluevpnd` under a stand-in for systemd's notification socket
 * (issue 18 §2). A python3 listener binds the datagram socket named by
 * NOTIFY_SOCKET (packages/daemon/test/fixtures/notify-listener.py) and
 * records every datagram with its CLOCK_MONOTONIC time; a real daemon
 * (alpha) runs with NOTIFY_SOCKET and WATCHDOG_USEC=1 s in a namespace,
 * next to a second node (beta) to have a peer to count.
 *
 *  1. READY=1 arrives only when the device is up with its address, the
 *     peer's route is in place, the control channel listens on TCP 3406 and
 *     the control socket answers (all checked the moment READY is seen);
 *     STATUS says "0 of 1 peers up"; hooks do not inherit NOTIFY_SOCKET
 *  2. WATCHDOG=1 every ~0.5 s (half of WATCHDOG_USEC), never in bursts
 *  3. after a ping, STATUS changes to "1 of 1 peers up", sent once
 *  4. SIGHUP: RELOADING=1 with MONOTONIC_USEC (the listener's clock, within
 *     2 s), then READY=1 again
 *  5. SIGTERM: STOPPING=1, then nothing more; exit 0
 *
 * beta runs as systemd would run it with `logmethod=stderr` (§6): stderr is
 * a file named by JOURNAL_STREAM (its dev:inode), so every line carries its
 * syslog priority (`<5>` notice, `<4>` warning) and no timestamp. Its config
 * is the original ClueVPN's algorithm lines (§7): `cryptalgos=aescbc:128:20`,
 * `compalgos=none:0:5 zlib:6:2` — it starts, warns once per item, and
 * alpha reaches it (aes-256-gcm).
 *
 * Needs root, `ip netns`, /dev/net/tun, python3; skips otherwise.
 */
import assert from 'node:assert/strict';
import { appendFileSync, existsSync, fstatSync, mkdtempSync, openSync, closeSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { CLUEVPND, controlRequest, makeNetwork, pingFrom, startNode } from './lib/cluevpn.js';
import { createLab, requireLab, REPO_ROOT } from './lib/lab.js';
import { spawnTracked } from './lib/process.js';
import { waitFor } from './lib/wait-for.js';

const LISTENER = join(REPO_ROOT, 'packages', 'daemon', 'test', 'fixtures', 'notify-listener.py');

interface Datagram {
  ms: number;
  msg: string;
}

test('cluevpnd tells systemd: READY when usable, STATUS on change, WATCHDOG, RELOADING/READY on SIGHUP, STOPPING on SIGTERM', { timeout: 180_000 }, async (t) => {
  if (!requireLab(t, { tools: { python3: 'python3' } })) return;
  const lab = await createLab({ hosts: 2, prefix: `sdn${process.pid % 10000}` });
  const dir = mkdtempSync(join(tmpdir(), 'sdn-e2e-'));
  t.after(async () => {
    await lab.destroy();
    rmSync(dir, { recursive: true, force: true });
  });
  const net = await makeNetwork(join(dir, 'net'), { net: 'sdn', nodes: [['alpha', lab.hosts[0]!.ipv4], ['beta', lab.hosts[1]!.ipv4]] });
  const hookEnv = join(dir, 'upcmd.env');
  appendFileSync(net.conf('alpha'), `upcmd=env > ${hookEnv}\n`);

  const socket = join(dir, 'notify.sock');
  const listener = spawnTracked('python3', [LISTENER, socket], { label: 'notify listener' });
  t.after(() => listener.stop('SIGTERM', 1000));
  await listener.waitForOutput(/^listening$/m, { timeoutMs: 10_000, stream: 'stdout' });
  const received = (): Datagram[] =>
    listener
      .stdout()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Datagram);
  const messages = (): string[] => received().map((d) => d.msg);

  const env: NodeJS.ProcessEnv = { ...process.env, NOTIFY_SOCKET: socket, WATCHDOG_USEC: '1000000' };
  delete env.WATCHDOG_PID;
  // beta: stderr is "the journal", config lines of the original ClueVPN
  const betaConf = net.conf('beta');
  writeFileSync(betaConf, readFileSync(betaConf, 'utf8').replace(/^log(method|file)=.*\n/gm, '') + 'cryptalgos=aescbc:128:20\ncompalgos=none:0:5 zlib:6:2\n');
  const journal = join(dir, 'beta.journal');
  const jfd = openSync(journal, 'w');
  const jst = fstatSync(jfd, { bigint: true });
  closeSync(jfd);
  const beta = lab.spawn('h2', 'sh', ['-c', 'exec "$0" -D -c "$1" 2>>"$2"', CLUEVPND, betaConf, journal], {
    label: 'cluevpnd beta (journal)',
    env: { ...process.env, JOURNAL_STREAM: `${jst.dev}:${jst.ino}` },
  });
  await waitFor(async () => (await controlRequest(betaConf, 'status')).pid === beta.pid, { timeoutMs: 30_000, intervalMs: 100, description: `beta answering; journal: ${readFileSync(journal, 'utf8')}` });
  // startNode returns once the control socket answers; READY is checked on its own below
  const alphaStart = startNode(lab, 'h1', net.nodeDir('alpha'), { env });

  // 1. READY only once everything is in place: checked the moment it arrives
  const ready = await waitFor(() => received().find((d) => d.msg.startsWith('READY=1')), { timeoutMs: 30_000, intervalMs: 10, description: 'READY=1' });
  const status = await controlRequest(net.conf('alpha'), 'status');
  const [addr, route, listening] = await Promise.all([
    lab.exec('h1', 'ip', ['-o', 'addr', 'show', 'dev', 'sdn']),
    lab.exec('h1', 'ip', ['route', 'show', 'dev', 'sdn']),
    lab.exec('h1', 'ss', ['-Hltn', 'sport = :3406']),
  ]);
  assert.equal(status.name, 'alpha');
  assert.match(addr.stdout, /inet 10\.99\.0\.1\/32/);
  assert.match(route.stdout, /10\.99\.0\.2 /);
  assert.match(listening.stdout, /:3406/);
  assert.equal(ready.msg, 'READY=1\nSTATUS=0 of 1 peers up');
  const alpha = await alphaStart;
  assert.equal(messages().filter((m) => m.startsWith('READY=1')).length, 1, 'READY once at start');
  assert.ok(existsSync(hookEnv));
  assert.doesNotMatch(readFileSync(hookEnv, 'utf8'), /^(NOTIFY_SOCKET|WATCHDOG_USEC)=/m, 'hooks do not inherit the notification socket');

  // 2. watchdog pings at ~500 ms
  const wd0 = received().filter((d) => d.msg === 'WATCHDOG=1').length;
  await waitFor(() => received().filter((d) => d.msg === 'WATCHDOG=1').length >= wd0 + 4, { timeoutMs: 20_000, description: 'four more WATCHDOG=1' });
  const wd = received().filter((d) => d.msg === 'WATCHDOG=1');
  const gaps = wd.slice(1).map((d, i) => d.ms - wd[i]!.ms);
  assert.ok(Math.min(...gaps) >= 250, `watchdog gaps ${gaps.map((g) => g.toFixed(0)).join(',')} ms: never a burst`);

  // 3. the peer comes up: STATUS changes, once
  const p = await pingFrom(lab, 'h1', '10.99.0.2', 3, 2);
  assert.ok(p.received > 0, `ping alpha -> beta: ${JSON.stringify(p)}`);
  assert.equal((await alpha.peer('beta')).cipher, 'aes-256-gcm', 'beta offered only aescbc, read as aes256gcm');
  await waitFor(() => messages().includes('STATUS=1 of 1 peers up'), { timeoutMs: 30_000, description: 'STATUS=1 of 1 peers up' });
  await new Promise((r) => setTimeout(r, 6000)); // one more status poll: unchanged, so nothing sent
  assert.equal(messages().filter((m) => m.startsWith('STATUS=1 of 1')).length, 1);

  // 4. SIGHUP: RELOADING (with MONOTONIC_USEC) then READY
  const n0 = received().length;
  alpha.process.child.kill('SIGHUP');
  await waitFor(() => received().slice(n0).some((d) => d.msg.startsWith('READY=1')), { timeoutMs: 20_000, description: 'READY=1 after the reload' });
  const after = received().slice(n0).filter((d) => d.msg !== 'WATCHDOG=1');
  assert.match(after[0]!.msg, /^RELOADING=1\nMONOTONIC_USEC=\d+$/);
  const usec = Number(/MONOTONIC_USEC=(\d+)/.exec(after[0]!.msg)![1]);
  assert.ok(Math.abs(usec / 1000 - after[0]!.ms) < 2000, `MONOTONIC_USEC ${usec} vs received at ${after[0]!.ms} ms (CLOCK_MONOTONIC)`);
  assert.equal(after[1]!.msg, 'READY=1\nSTATUS=1 of 1 peers up');

  // 5. SIGTERM: STOPPING=1 is the last word
  const res = await alpha.process.stop('SIGTERM', 5000);
  assert.equal(res.code, 0, res.stderr);
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(messages().at(-1), 'STOPPING=1');
  assert.equal(messages().filter((m) => m === 'STOPPING=1').length, 1);
  assert.equal((await beta.stop('SIGTERM', 5000)).code, 0);

  // beta's "journal": priorities, no timestamps; one warning per old item
  const lines = readFileSync(journal, 'utf8').split('\n').filter((l) => l !== '');
  assert.ok(lines.length > 3 && lines.every((l) => /^<[0-7]>cluevpnd[:\w]*: /.test(l)), lines.join('\n'));
  assert.ok(lines.includes('<5>cluevpnd: stopping signal=SIGTERM'), lines.join('\n'));
  assert.ok(lines.some((l) => l.startsWith('<5>cluevpnd: cluevpnd started ')));
  const warnings = lines.filter((l) => l.startsWith('<4>') && l.includes("original ClueVPN's"));
  assert.equal(warnings.length, 2, warnings.join('\n'));
  assert.match(warnings[0]!, /cluevpn\.conf:\d+: cryptalgos: .*aescbc:128:20.*aes256gcm:256:20/);
  assert.match(warnings[1]!, /cluevpn\.conf:\d+: compalgos: .*zlib:6:2.*lz4:1:2/);
});
