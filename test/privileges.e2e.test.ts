/**
 * The privilege drop with `user=` between real daemons (issues 15.5, 16):
 *
 * 1. alpha runs with `user=nobody` and the default state directory
 *    (`$CLUEVPN_STATEDIR/NET`): the list make-network left in the config
 *    directory is moved there, the directory is handed to nobody, the
 *    process runs as nobody with CAP_NET_ADMIN only, and alpha and beta
 *    ping each other through the tunnel
 * 2. at stop, alpha's `downcmd` (run with the daemon's own credentials)
 *    tries to write the config file, the private key and the config
 *    directory: refused; the state directory: allowed
 * 3. the config directory handed to nobody: cluevpnd refuses to start,
 *    before creating anything, with exit status 3 and a message naming the
 *    directory, in the foreground and when detaching
 */
import assert from 'node:assert/strict';
import { chmodSync, chownSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { createLab, requireLab } from './lib/lab.js';
import { CLUEVPND, makeNetwork, pingFrom, startNode } from './lib/cluevpn.js';
import { waitFor } from './lib/wait-for.js';

const NOBODY = 65534;
const CAP_NET_ADMIN = 1n << 12n;

/** `Key: value` lines of /proc/PID/status. */
function procStatus(pid: number): Record<string, string> {
  return Object.fromEntries(
    readFileSync(`/proc/${pid}/status`, 'utf8')
      .split('\n')
      .filter((l) => l.includes(':'))
      .map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1).trim()]),
  );
}

test('user=nobody: the daemon keeps working and cannot write its config; a config dir nobody can write is refused with exit 3', { timeout: 240_000 }, async (t) => {
  if (!requireLab(t)) return;
  const lab = await createLab({ hosts: 2, prefix: `prv${process.pid % 10000}` });
  const dir = mkdtempSync(join(tmpdir(), 'priv-e2e-'));
  t.after(async () => {
    await lab.destroy();
    rmSync(dir, { recursive: true, force: true });
  });
  chmodSync(dir, 0o755);
  const net = await makeNetwork(join(dir, 'net'), { net: 'prv', pullInterval: '2s', nodes: [['alpha', lab.hosts[0]!.ipv4], ['beta', lab.hosts[1]!.ipv4]] });
  const stateBase = join(dir, 'state');
  const env = { ...process.env, CLUEVPN_STATEDIR: stateBase };
  const ad = net.nodeDir('alpha');
  const conf = net.conf('alpha');
  // the network name of `-c DIR/alpha/cluevpn.conf` is its directory's name
  const stateDir = join(stateBase, 'alpha');
  const probeOut = join(stateDir, 'probe.out');

  // alpha: state at its default place, user=nobody, a downcmd that probes what it may write
  chmodSync(ad, 0o755);
  const probe = join(ad, 'probe');
  writeFileSync(
    probe,
    [
      '#!/bin/sh',
      'try() { if sh -c "$2" 2>/dev/null; then echo "$1=written"; else echo "$1=refused"; fi; }',
      '{',
      '  echo "uid=$(id -u)"',
      `  try conf 'echo "upcmd=/tmp/x" >> ${conf}'`,
      `  try key 'echo x >> ${join(ad, 'alpha.key')}'`,
      `  try dir 'touch ${join(ad, 'planted')}'`,
      `  try ca 'mv ${join(ad, 'ca.crt')} ${join(ad, 'ca.crt.old')}'`,
      `  try state 'touch ${join(stateDir, 'planted')}'`,
      `} > ${probeOut}`,
      '',
    ].join('\n'),
    { mode: 0o755 },
  );
  const text = readFileSync(conf, 'utf8').replace(/^(bnl|statedb)=.*\n/gm, '');
  writeFileSync(conf, `${text}user=nobody\ndowncmd=${probe}\n`, { mode: 0o600 });
  assert.ok(existsSync(join(ad, 'bnl')), 'make-network left the signed list in the config directory');

  await t.test('1. started as nobody with CAP_NET_ADMIN only; state moved and handed over; pings both ways', async (st1) => {
    const alpha = await startNode(lab, lab.hosts[0]!.name, ad, { env });
    const beta = await startNode(lab, lab.hosts[1]!.name, net.nodeDir('beta'), { env });
    st1.after(async () => {
      await beta.process.stop('SIGTERM');
      await alpha.process.stop('SIGTERM');
    });
    assert.ok(existsSync(join(stateDir, 'bnl')), 'the list now lives in the state directory');
    assert.equal(existsSync(join(ad, 'bnl')), false, 'and no longer in the config directory');
    assert.equal(statSync(stateDir).uid, NOBODY, 'the state directory belongs to nobody');
    assert.equal(statSync(stateDir).mode & 0o777, 0o700);
    assert.match(alpha.log(), /moved state out of the config directory/);
    await waitFor(() => /dropped privileges, kept only CAP_NET_ADMIN/.test(alpha.log()), { timeoutMs: 10_000, intervalMs: 100, description: 'alpha logs the drop' });
    const st = procStatus(alpha.process.pid);
    assert.deepEqual(st.Uid!.split(/\s+/).map(Number), [NOBODY, NOBODY, NOBODY, NOBODY], 'real, effective, saved, fs uid');
    assert.equal(BigInt(`0x${st.CapEff}`), CAP_NET_ADMIN);
    assert.equal(BigInt(`0x${st.CapPrm}`), CAP_NET_ADMIN);
    const pings = async (from: string, target: string) =>
      waitFor(async () => (await pingFrom(lab, from, target, 1, 1)).received === 1, { timeoutMs: 30_000, intervalMs: 0, description: `${from} → ${target}` });
    await pings(lab.hosts[0]!.name, '10.99.0.2');
    await pings(lab.hosts[1]!.name, '10.99.0.1');
    await pings(lab.hosts[0]!.name, 'fd99::2');
    const r = await pingFrom(lab, lab.hosts[0]!.name, '10.99.0.2', 5, 2);
    assert.equal(r.received, 5, 'steady traffic after the drop');
    assert.equal((await alpha.status()).pid, alpha.process.pid);

    // 2. the daemon's own credentials, through its downcmd at stop
    const stopped = await alpha.process.stop('SIGTERM', 5000);
    assert.equal(stopped.code, 0, stopped.stderr);
    const probed = Object.fromEntries(
      readFileSync(probeOut, 'utf8')
        .trim()
        .split('\n')
        .map((l) => l.split('=') as [string, string]),
    );
    assert.deepEqual(probed, { uid: String(NOBODY), conf: 'refused', key: 'refused', dir: 'refused', ca: 'refused', state: 'written' });
    assert.doesNotMatch(readFileSync(conf, 'utf8'), /upcmd=/);
  });

  await t.test('3. the config directory writable by nobody: refused, exit 3, naming it; nothing started', async () => {
    chownSync(ad, NOBODY, NOBODY);
    const p = lab.spawn(lab.hosts[0]!.name, CLUEVPND, ['-D', '-c', conf], { label: 'cluevpnd alpha (refused)', env });
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`cluevpnd kept running with user=nobody and ${ad} owned by nobody; log:\n${readFileSync(join(ad, 'cluevpnd.log'), 'utf8').slice(-1500)}`)), 20_000);
    });
    try {
      const r = await Promise.race([p.exited, deadline]);
      assert.equal(r.code, 3, r.stderr);
      assert.ok(r.stderr.startsWith(`cluevpnd: ${ad} is writable by user nobody`), `names the directory: ${r.stderr}`);
      assert.match(r.stderr, /user=nobody/);
    } finally {
      clearTimeout(timer);
      await p.stop('SIGKILL', 1000);
    }
    const dev = await lab.exec(lab.hosts[0]!.name, 'ip', ['link', 'show', 'prv'], { check: false });
    assert.notEqual(dev.code, 0, 'no TUN device was created');

    // detaching: the parent reports the child's verdict with the same status
    const d = await lab.exec(lab.hosts[0]!.name, CLUEVPND, ['-c', conf], { check: false, env, timeoutMs: 20_000 });
    assert.equal(d.code, 3, d.stderr);
    assert.ok(d.stderr.startsWith(`cluevpnd: ${ad} is writable by user nobody`), d.stderr);
    chownSync(ad, 0, 0);
  });
});
