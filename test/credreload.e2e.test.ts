/**
 * End to end, issue 18 §3: a node switches to a re-issued certificate
 * without a restart, and traffic pauses for one renegotiation at most.
 * Real `cluevpnd` nodes (alpha, beta) from `examples/make-network` in a lab;
 * a ping flow alpha → beta (every 0.2 s) runs through every step, and each
 * step counts the echo requests it lost (by sequence number).
 *
 *  1. the order — re-issue beta's certificate (new key) with the
 *     network CA and install it on beta, re-pin it in the master list,
 *     push (`bnl push` from alpha), SIGHUP beta: beta's control server
 *     presents the new certificate to a new TLS connection, alpha dropped
 *     beta's old sessions and renegotiated, at most MAX_LOST pings lost
 *  2. the other order — re-issue and install, SIGHUP beta first (beta warns
 *     that the list still pins its old certificate; the flow goes on over
 *     the sessions in place), then re-pin and push: one renegotiation
 *  3. refused credentials: a private key that is not the certificate's;
 *     `cluevpn reload` exits 1 with ERR_CREDENTIALS naming the file, beta
 *     keeps presenting its certificate, the flow goes on
 *  4. CA rollover: a second CA, both CAs in one `cacert` bundle on alpha and
 *     beta (`cluevpn reload`), beta re-issued by the second CA, re-pinned,
 *     pushed: alpha (old CA's certificate, bundle of both) accepts it
 *
 * Needs root, `ip netns`, /dev/net/tun and ping; skips otherwise.
 */
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { bnl, certPin, cluevpn, makeNetwork, pingFrom, startNode, type RunningNode } from './lib/cluevpn.js';
import { daemonTest } from './lib/daemon-test.js';
import type { LabHost } from './lib/lab.js';
import { repliedSeqs } from './lib/ping.js';
import type { TrackedProcess } from './lib/process.js';
import { waitFor } from './lib/wait-for.js';

const PORT = 3406;
/** Echo requests (0.2 s apart) a step may lose: one renegotiation on a busy two-core machine. */
const MAX_LOST = 10;
/** Replies the flow must show after a step before its loss is counted. */
const REPLIES_AFTER = 15;
const SETTLE_MS = 60_000;

/** A Node TLS client in `host` that prints the SHA-256 fingerprint of the certificate `ip:PORT` presents. */
const PRESENTED = `
const tls = require('node:tls'), fs = require('node:fs'), crypto = require('node:crypto');
const [host, port, cert, key, ca] = process.argv.slice(1);
const s = tls.connect({ host, port: Number(port), cert: fs.readFileSync(cert), key: fs.readFileSync(key), ca: fs.readFileSync(ca), rejectUnauthorized: false, minVersion: 'TLSv1.3' }, () => {
  process.stdout.write(crypto.createHash('sha256').update(s.getPeerCertificate().raw).digest('hex') + '\\n');
  s.destroy();
});
s.on('error', (e) => { console.error(e.message); process.exit(1); });
`;

test('a re-issued certificate is taken on SIGHUP without a restart; pings keep flowing; a CA bundle carries a rollover', { timeout: 420_000 }, async (t) => {
  const env = await daemonTest(t, { hosts: 2 }, 'credreload-e2e-');
  if (env === null) return;
  const { lab: L, dir } = env;
  const [h1, h2] = L.hosts as [LabHost, LabHost];
  const net = await makeNetwork(join(dir, 'net'), { net: 'crel', pullInterval: '60s', logLevel: 6, nodes: [['alpha', h1.ipv4], ['beta', h2.ipv4]] });
  const alpha = await startNode(L, h1, net.nodeDir('alpha'));
  const beta = await startNode(L, h2, net.nodeDir('beta'));
  env.nodes.push(alpha, beta);
  const betaDir = net.nodeDir('beta');
  const alphaDir = net.nodeDir('alpha');
  await waitFor(async () => (await pingFrom(L, h1, '10.99.0.2', 1, 1)).received === 1, { timeoutMs: SETTLE_MS, intervalMs: 0, description: 'alpha → beta ping over the VPN' });

  /** The fingerprint of the certificate beta's control server presents to a new connection (from h1, with alpha's credentials). */
  const presented = async (): Promise<string> => {
    const r = await L.exec(h1, process.execPath, ['-e', PRESENTED, h2.ipv4, String(PORT), join(alphaDir, 'alpha.crt'), join(alphaDir, 'alpha.key'), join(alphaDir, 'ca.crt')], { timeoutMs: 20_000 });
    return r.stdout.trim();
  };
  /** Issues beta a certificate with a new key (by the CA in `caDir`) and installs its files on beta; returns its pin. */
  const reissueBeta = async (label: string, caDir = join(net.dir, 'ca')): Promise<string> => {
    const out = join(dir, label);
    const r = await cluevpn('cert', 'issue', 'beta', '--ca', caDir, '--out', out);
    assert.equal(r.code, 0, r.stderr);
    copyFileSync(join(out, 'beta.crt'), join(betaDir, 'beta.crt'));
    copyFileSync(join(out, 'beta.key'), join(betaDir, 'beta.key'));
    return certPin(join(out, 'beta.crt'));
  };
  /** Re-pins beta in the master list, signs it, installs it on alpha and pushes it from there. */
  const rePinAndPush = async (pin: string): Promise<number> => {
    await bnl('--file', net.masterList, 'modify', 'beta', `fingerprint=${pin}`);
    await bnl('--file', net.masterList, 'sign', '--key', net.signingKey);
    copyFileSync(net.masterList, join(alphaDir, 'bnl'));
    const t0 = Date.now();
    const pushed = await bnl('push', '-c', net.conf('alpha'));
    assert.equal(pushed.code, 0, pushed.stdout + pushed.stderr);
    return t0;
  };
  const count = (n: RunningNode, re: RegExp): number => n.log().split('\n').filter((l) => re.test(l)).length;
  /** SIGHUP to beta; resolves once beta logged the end of that reload. */
  const sighupBeta = async (): Promise<void> => {
    const before = count(beta, /reload done|reload failed/);
    beta.process.child.kill('SIGHUP');
    await waitFor(() => count(beta, /reload done|reload failed/) > before, { timeoutMs: SETTLE_MS, intervalMs: 100, description: 'beta finished its reload' });
  };

  const flow: TrackedProcess = L.spawn(h1, 'ping', ['-n', '-i', '0.2', '-W', '5', '10.99.0.2'], { label: 'ping flow' });
  t.after(() => flow.stop('SIGINT', 3000));
  await flow.waitForOutput(/icmp_seq=1 /, { timeoutMs: SETTLE_MS, stream: 'stdout' });
  /**
   * Runs a step under the flow: the echo requests sent from its start until
   * REPLIES_AFTER replies came after its end, and those of them never answered.
   */
  const underFlow = async (what: string, fn: () => Promise<void>): Promise<number[]> => {
    const first = Math.max(0, ...repliedSeqs(flow.stdout())) + 1;
    await fn();
    const seen = repliedSeqs(flow.stdout()).length;
    await waitFor(() => repliedSeqs(flow.stdout()).length >= seen + REPLIES_AFTER, { timeoutMs: SETTLE_MS, intervalMs: 100, description: `${what}: the flow answers again` });
    const seqs = repliedSeqs(flow.stdout());
    const last = Math.max(...seqs) - REPLIES_AFTER;
    const got = new Set(seqs);
    const lost: number[] = [];
    for (let s = first; s <= last; s++) if (!got.has(s)) lost.push(s);
    t.diagnostic(`${what}: echo requests ${first}..${last}, lost ${lost.length}: ${lost.join(' ')}`);
    return lost;
  };
  /** alpha holds fresh keys with beta (negotiated after `since`). */
  const renegotiatedSince = async (since: number): Promise<void> => {
    const p = await alpha.peer('beta');
    assert.notEqual(p.cipher, null, 'alpha is keyed with beta');
    assert.ok(p.negotiations >= 1 && p.keyAgeMs !== null && p.keyAgeMs <= Date.now() - since, `alpha renegotiated with beta after the switch (negotiations ${p.negotiations}, key age ${p.keyAgeMs} ms)`);
  };

  const pin0 = await presented();
  assert.equal(pin0, await certPin(join(betaDir, 'beta.crt')));

  // 1. re-issue, re-pin, push, SIGHUP
  let pin1 = '';
  let t1 = 0;
  const lost1 = await underFlow('1. re-issue, re-pin, push, SIGHUP', async () => {
    pin1 = await reissueBeta('beta-1');
    t1 = await rePinAndPush(pin1);
    await sighupBeta();
    await waitFor(async () => (await alpha.peer('beta')).cipher !== null, { timeoutMs: SETTLE_MS, intervalMs: 100, description: 'alpha keyed with beta again' });
  });
  assert.notEqual(pin1, pin0);
  assert.equal(await presented(), pin1, 'beta presents its new certificate to a new connection');
  assert.ok(count(alpha, /node re-pinned.*peer=beta/) >= 1, 'alpha dropped the sessions of beta\'s old certificate');
  await renegotiatedSince(t1);
  assert.ok(lost1.length <= MAX_LOST, `step 1 lost ${lost1.length} pings (at most ${MAX_LOST})`);

  // 2. re-issue, SIGHUP first (the list still pins the previous certificate), then re-pin and push
  let pin2 = '';
  let t2 = 0;
  const lost2 = await underFlow('2. re-issue, SIGHUP, re-pin, push', async () => {
    pin2 = await reissueBeta('beta-2');
    const warned = count(beta, /is not the one its BNL record pins/);
    await sighupBeta();
    assert.equal(await presented(), pin2, 'beta switched on SIGHUP');
    assert.ok(count(beta, /is not the one its BNL record pins/) > warned, 'beta warns that the list pins another certificate');
    t2 = await rePinAndPush(pin2);
    await waitFor(async () => (await alpha.peer('beta')).cipher !== null, { timeoutMs: SETTLE_MS, intervalMs: 100, description: 'alpha keyed with beta again' });
  });
  await renegotiatedSince(t2);
  assert.ok(lost2.length <= MAX_LOST, `step 2 lost ${lost2.length} pings (at most ${MAX_LOST})`);

  // 3. refused credentials: nothing changes, the reload says why
  const lost3 = await underFlow('3. a key that is not the certificate\'s', async () => {
    const goodKey = readFileSync(join(betaDir, 'beta.key'));
    copyFileSync(join(alphaDir, 'alpha.key'), join(betaDir, 'beta.key'));
    const r = await cluevpn('-c', net.conf('beta'), 'reload');
    assert.equal(r.code, 1, `reload with a wrong key fails: ${r.stdout}${r.stderr}`);
    assert.match(r.stderr, /ERR_CREDENTIALS|beta\.key/);
    assert.ok(r.stderr.includes(join(betaDir, 'beta.key')), `the error names the file: ${r.stderr}`);
    assert.equal(await presented(), pin2, 'beta kept its certificate');
    writeFileSync(join(betaDir, 'beta.key'), goodKey);
  });
  assert.ok(lost3.length <= 1, `refused credentials cost no traffic (lost ${lost3.length})`);

  // 4. CA rollover: both CAs in every node's bundle, beta re-issued by the new CA
  let pin4 = '';
  let t4 = 0;
  const lost4 = await underFlow('4. CA rollover', async () => {
    const ca2 = join(net.dir, 'ca2');
    const init = await cluevpn('ca', 'init', '--dir', ca2, '--cn', 'crel CA 2');
    assert.equal(init.code, 0, init.stderr);
    const bundle = readFileSync(join(net.dir, 'ca', 'ca.crt'), 'utf8') + readFileSync(join(ca2, 'ca.crt'), 'utf8');
    for (const [n, d] of [[alpha, alphaDir], [beta, betaDir]] as const) {
      writeFileSync(join(d, 'ca.crt'), bundle);
      const r = await cluevpn('-c', n.conf, 'reload');
      assert.equal(r.code, 0, `${n.name} reload with the bundle: ${r.stdout}${r.stderr}`);
      assert.match(r.stdout, /credentials reloaded/, `${n.name} switched to the bundle`);
    }
    pin4 = await reissueBeta('beta-4', ca2);
    t4 = await rePinAndPush(pin4);
    await sighupBeta();
    await waitFor(async () => (await alpha.peer('beta')).cipher !== null, { timeoutMs: SETTLE_MS, intervalMs: 100, description: 'alpha keyed with beta again' });
  });
  assert.equal(await presented(), pin4, 'beta presents the certificate of the second CA');
  await renegotiatedSince(t4);
  assert.ok(lost4.length <= MAX_LOST, `step 4 lost ${lost4.length} pings (at most ${MAX_LOST})`);
  assert.equal(alpha.process.running() && beta.process.running(), true, 'no restart');
  for (const n of [alpha, beta]) {
    for (const l of n.log().split('\n').filter((x) => /credentials|pins|re-pinned|reload done|renegotiating/.test(x))) t.diagnostic(`${n.name}: ${l.slice(0, 200)}`);
  }
  env.passed();
});
