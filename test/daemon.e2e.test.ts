/**
 * End-to-end tests of `cluevpnd` as a process: configuration refusal, start
 * (BNL, TUN device, routes, control socket, hooks), reload-and-apply of a new
 * BNL (add node, remove node, rejected lists), graceful stop.
 *
 * The mesh between daemons (pings between every pair, push and pull of new
 * lists, revocation, bad lists over the wire, SIGKILL restart without
 * renegotiation or replay) is tested in mesh.e2e.test.ts.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { createUnsignedBnl, generateSigningKey, parsePrivateKey, signBnl, type BnlNode } from '@cluevpn/bnl';
import type { StatusReport } from '@cluevpn/control';
import { createLab, REPO_ROOT, requireLab } from './lib/lab.js';
import { waitFor } from './lib/wait-for.js';

const CLUEVPND = join(REPO_ROOT, 'packages', 'daemon', 'bin', 'cluevpnd');
const CLUEVPN = join(REPO_ROOT, 'packages', 'cli', 'bin', 'cluevpn');

function node(i: number): BnlNode {
  return { name: `n${i}`, id: i, endpoints: [{ host: `192.0.2.${i}`, port: 3406 }], prefer: 'ipv4', subnets: [`10.88.0.${i}/32`, `fd88::${i}/128`] };
}

function makeBnl(key: ReturnType<typeof generateSigningKey>, serial: number, ids: number[]): Uint8Array {
  return signBnl(createUnsignedBnl({ network: 'dmnlab', serial, timestamp: Date.now(), nodes: ids.map(node) }), [parsePrivateKey(key.privateKeyPem)]).bytes;
}

function cluevpn(conf: string, ...args: string[]): { code: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, [CLUEVPN, '-c', conf, ...args], { encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test('cluevpnd refuses an invalid config, naming the file and line, and exits 2', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dmn-e2e-'));
  try {
    const conf = join(dir, 'cluevpn.conf');
    writeFileSync(conf, 'name=n1\ncert=c\nprivkey=k\ncacert=ca\nbnlpubkey=x\nport=99999\n');
    const r = spawnSync(process.execPath, [CLUEVPND, '-D', '-c', conf], { encoding: 'utf8' });
    assert.equal(r.status, 2);
    assert.equal(r.stderr, `cluevpnd: ${conf}:6: port: 99999 is out of range 1–65535\n`);
    const unknown = spawnSync(process.execPath, [CLUEVPND, '-c', conf], { encoding: 'utf8', input: '' });
    assert.equal(unknown.status, 2, 'detaching mode checks the config before detaching');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('cluevpnd starts from a signed BNL, applies reloaded lists, refuses bad ones, stops cleanly', async (t) => {
  if (!requireLab(t)) return;
  const lab = await createLab({ hosts: 1, prefix: `dmn${process.pid % 10000}` });
  const dir = mkdtempSync(join(tmpdir(), 'dmn-e2e-'));
  t.after(async () => {
    await lab.destroy();
    rmSync(dir, { recursive: true, force: true });
  });
  const key = generateSigningKey();
  const conf = join(dir, 'cluevpn.conf');
  const hookLog = join(dir, 'hooks.log');
  writeFileSync(join(dir, 'bnl'), makeBnl(key, 1, [1, 2]));
  // The node's certificate, key and CA, as an admin makes them (the daemon reads them at start).
  const cli = join(REPO_ROOT, 'packages/cli/bin/cluevpn');
  execFileSync(cli, ['ca', 'init', '--dir', join(dir, 'ca')], { stdio: 'ignore' });
  execFileSync(cli, ['cert', 'issue', 'n1', '--ca', join(dir, 'ca'), '--out', dir], { stdio: 'ignore' });
  writeFileSync(
    conf,
    [
      '# test node',
      'name=n1',
      'devname=dmn0',
      'cert=n1.crt',
      'privkey=n1.key',
      'cacert=ca.crt',
      `bnlpubkey=${key.publicKey}`,
      // state next to the config, so that the test can put lists there (the default is /var/lib/cluevpn/NET)
      'bnl=bnl',
      'statedb=state.db',
      'controlsocket=ctl.sock',
      'pidfile=cluevpnd.pid',
      'loglevel=6',
      `upcmd=echo "up $TUNDEV $NODE $NODEID $NETNAME" >> ${hookLog}`,
      `mysubnetupcmd=echo "my $SUBNET" >> ${hookLog}`,
      `subnetupcmd=echo "subnet-up $SUBNET $PEER $PEERID" >> ${hookLog}`,
      `subnetdowncmd=echo "subnet-down $SUBNET $PEER" >> ${hookLog}`,
      `downcmd=echo "down $INTERFACE" >> ${hookLog}`,
      '',
    ].join('\n'),
  );
  const d = lab.spawn('h1', process.execPath, [CLUEVPND, '-D', '-c', conf, '--backend', 'js'], { label: 'cluevpnd n1' });
  await d.waitForOutput(/cluevpnd started/, { timeoutMs: 30_000 });

  // started: device, addresses, routes, hooks, control socket
  const addr = (await lab.exec('h1', 'ip', ['-o', 'addr', 'show', 'dev', 'dmn0'])).stdout;
  assert.match(addr, /inet 10\.88\.0\.1\/32/);
  assert.match(addr, /inet6 fd88::1\/128/);
  const routes = async () => (await lab.exec('h1', 'ip', ['route', 'show', 'dev', 'dmn0'])).stdout + (await lab.exec('h1', 'ip', ['-6', 'route', 'show', 'dev', 'dmn0'])).stdout;
  assert.match(await routes(), /10\.88\.0\.2 /);
  assert.match(await routes(), /fd88::2 /);
  await waitFor(() => existsSync(hookLog) && readFileSync(hookLog, 'utf8').includes('subnet-up fd88::2/128'), { description: 'start hooks' });
  assert.equal(
    readFileSync(hookLog, 'utf8'),
    'up dmn0 n1 1 cluevpn\nmy 10.88.0.1/32\nmy fd88::1/128\nsubnet-up 10.88.0.2/32 n2 2\nsubnet-up fd88::2/128 n2 2\n'.replace('cluevpn', dir.split('/').pop()!),
  );
  const st = JSON.parse(cluevpn(conf, 'status', '--json').out) as StatusReport;
  assert.equal(st.name, 'n1');
  // memory as the kernel sees it: rss agrees with /proc/PID/status VmRSS (taken right after)
  const vmRss = Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${st.pid}/status`, 'utf8'))![1]) * 1024;
  assert.ok(Math.abs(st.memory.rss - vmRss) < 16 * 1048576, `rss ${st.memory.rss} vs VmRSS ${vmRss}`);
  assert.ok(st.memory.heapUsed > 0 && st.memory.heapUsed <= st.memory.heapTotal && st.memory.arrayBuffers <= st.memory.external, JSON.stringify(st.memory));
  assert.equal(st.bnl.serial, 1);
  assert.deepEqual(st.peers.map((p) => [p.name, p.endpoint]), [['n2', '192.0.2.2:3406']]);

  // reload: a newer list adds n3 (peer, routes, hook)
  writeFileSync(join(dir, 'bnl'), makeBnl(key, 2, [1, 2, 3]));
  // n2 refuses at once (TCP reset), n3 never answers (SYNs dropped): the
  // answer comes after the reload's wait, not n3's handshake timeout, and says so
  await lab.exec('h1', 'iptables', ['-w', '-A', 'OUTPUT', '-d', '192.0.2.2', '-p', 'tcp', '--dport', '3406', '-j', 'REJECT', '--reject-with', 'tcp-reset']);
  await lab.exec('h1', 'iptables', ['-w', '-A', 'OUTPUT', '-d', '192.0.2.3', '-p', 'tcp', '--dport', '3406', '-j', 'DROP']);
  const t2 = Date.now();
  const r2 = cluevpn(conf, 'reload');
  const reloadMs = Date.now() - t2;
  assert.equal(r2.code, 0, r2.err);
  assert.match(r2.out, /applied BNL serial 2, pushed to 0 of 2 nodes \(1 failed, 1 still trying in the background\)/);
  // at least the 3 s wait; that it did not wait for n3 is what the answer
  // says ("still trying in the background"), so the upper bound only catches a hang
  assert.ok(reloadMs >= 2500 && reloadMs < 20_000, `reload answered after ${reloadMs} ms (waits 3 s)`);
  // the push to n3 ends in the background, at its handshake timeout, and is logged
  await d.waitForOutput(/BNL pushed .*count=0 .*failed=2/, { timeoutMs: 30_000 });
  await lab.exec('h1', 'iptables', ['-w', '-F', 'OUTPUT']);
  assert.match(await routes(), /10\.88\.0\.3 /);
  assert.deepEqual((JSON.parse(cluevpn(conf, 'peers', '--json').out) as { name: string }[]).map((p) => p.name), ['n2', 'n3']);

  // SIGHUP path: remove n2 (revoked): peer and routes gone, subnetdowncmd ran
  writeFileSync(join(dir, 'bnl'), makeBnl(key, 3, [1, 3]));
  process.kill(Number(readFileSync(join(dir, 'cluevpnd.pid'), 'utf8')), 'SIGHUP');
  await waitFor(async () => !(await routes()).includes('10.88.0.2 '), { description: 'route of n2 removed' });
  assert.deepEqual((JSON.parse(cluevpn(conf, 'peers', '--json').out) as { name: string }[]).map((p) => p.name), ['n3']);
  await waitFor(() => readFileSync(hookLog, 'utf8').includes('subnet-down fd88::2/128 n2'), { description: 'subnetdowncmd' });

  // refused: signed by an unknown key, older, garbage — the serial stays 3, the file on disk is kept as written
  const other = generateSigningKey();
  for (const [what, bytes] of [
    ['unknown key', makeBnl(other, 9, [1, 2, 3])],
    ['older', makeBnl(key, 2, [1, 2, 3])],
    ['garbage', Buffer.from('cluevpn-bnl 1\n{not json\n')],
  ] as const) {
    writeFileSync(join(dir, 'bnl.next'), bytes);
    execFileSync('mv', [join(dir, 'bnl.next'), join(dir, 'bnl')]);
    const r = cluevpn(conf, 'reload');
    if (what === 'older') assert.match(r.out, /not newer; serial 3 stays/, what);
    else assert.equal(r.code, 1, `${what}: ${r.out}${r.err}`);
    assert.equal((JSON.parse(cluevpn(conf, 'bnl-status', '--json').out) as { serial: number }).serial, 3, what);
  }

  // log level at run time
  assert.equal(cluevpn(conf, 'log-level', '7').out, 'log level 6 -> 7\n');

  // graceful stop within 2 s: downcmd ran, device, pidfile and socket gone
  const t0 = Date.now();
  const res = await d.stop('SIGTERM', 3000);
  assert.equal(res.code, 0);
  assert.ok(Date.now() - t0 < 2000, `stopped in ${Date.now() - t0} ms`);
  assert.match(readFileSync(hookLog, 'utf8'), /down dmn0\n$/);
  assert.equal(existsSync(join(dir, 'cluevpnd.pid')), false);
  assert.equal(existsSync(join(dir, 'ctl.sock')), false);
  const link = await lab.exec('h1', 'ip', ['link', 'show', 'dmn0'], { check: false });
  assert.notEqual(link.code, 0, 'device removed');

  // an older list put in place by hand (serial 2; this node held 3) does not start
  writeFileSync(join(dir, 'bnl'), makeBnl(key, 2, [1, 2, 3]));
  const old = await lab.exec('h1', process.execPath, [CLUEVPND, '-D', '-c', conf, '--backend', 'js'], { check: false, timeoutMs: 15_000 });
  assert.equal(old.code, 1, old.stdout + old.stderr);
  assert.match(old.stdout + old.stderr, /serial 2, older than serial 3 this node accepted before/);
  // the newest list starts it again
  writeFileSync(join(dir, 'bnl'), makeBnl(key, 3, [1, 3]));
  const again = lab.spawn('h1', process.execPath, [CLUEVPND, '-D', '-c', conf, '--backend', 'js'], { label: 'cluevpnd n1 again' });
  await again.waitForOutput(/cluevpnd started/, { timeoutMs: 30_000 });
  const againRes = await again.stop('SIGTERM', 3000);
  assert.equal(againRes.code, 0, JSON.stringify(againRes).slice(-1500));
  // SIGTERM while still starting (the pidfile is the first step): the start
  // finishes, then a clean stop (exit 0, downcmd, pidfile removed)
  const early = lab.spawn('h1', process.execPath, [CLUEVPND, '-D', '-c', conf, '--backend', 'js'], { label: 'cluevpnd n1 early stop' });
  await waitFor(() => existsSync(join(dir, 'cluevpnd.pid')), { timeoutMs: 10_000, intervalMs: 1, description: 'pidfile written' });
  const earlyRes = await early.stop('SIGTERM', 3000);
  assert.equal(earlyRes.code, 0, JSON.stringify(earlyRes).slice(-1500));
  assert.equal(existsSync(join(dir, 'cluevpnd.pid')), false);

  // without -D: the command starts a detached daemon, prints its pid once it
  // is ready and exits 0; the daemon runs without V8 flags (run directly, as
  // an installed command is, the bundle's code cache is accepted) and
  // without NODE_EXTRA_CA_CERTS (the shebang drops it: Node would parse it
  // at every start, and a file that is not there makes Node warn)
  const detached = await lab.exec('h1', CLUEVPND, ['-c', conf, '--backend', 'js'], {
    check: false,
    timeoutMs: 15_000,
    env: { ...process.env, NODE_EXTRA_CA_CERTS: join(dir, 'no-such-ca.pem') },
  });
  const pid = Number(/^cluevpnd: started, pid (\d+)\n$/.exec(detached.stdout)?.[1]);
  assert.equal(detached.code, 0, detached.stdout + detached.stderr);
  assert.ok(pid > 0, detached.stdout);
  try {
    assert.equal(readFileSync(join(dir, 'cluevpnd.pid'), 'utf8'), `${pid}\n`);
    assert.deepEqual(readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').slice(1, 2), [CLUEVPND], 'no V8 flags (src/heap.ts)');
    const environ = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
    assert.ok(environ.some((v) => v.startsWith('PATH=')), 'the daemon keeps the rest of its environment');
    assert.equal(environ.filter((v) => v.startsWith('NODE_EXTRA_CA_CERTS=')).length, 0);
    assert.doesNotMatch(detached.stderr, /extra certs/i);
  } finally {
    process.kill(pid, 'SIGTERM');
  }
  await waitFor(() => !existsSync(join(dir, 'cluevpnd.pid')), { timeoutMs: 30_000, description: 'detached daemon stopped' });
});
