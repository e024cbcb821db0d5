/**
 * End to end, issue 15 §1: a control connection opened with a node's
 * certificate must not outlive that certificate's place in the list.
 * Real `cluevpnd` nodes (alpha, beta) from `examples/make-network` in a lab;
 * the attacker (test/fixtures/hold-control) runs in a third namespace with a
 * copy of beta's certificate and key:
 *
 *  1. alpha and beta up, keyed (ping over the VPN)
 *  2. re-pin: the attacker holds a connection opened with beta's old
 *     certificate; the admin issues beta a new certificate, re-pins it in the
 *     list and alpha reloads it — the held connection is closed, its
 *     `negotiate` fails, and alpha holds no session with beta any more
 *  3. remove: beta runs with its new certificate and is keyed again; the
 *     attacker holds a connection with that certificate; `bnl remove beta`
 *     reaches alpha — the connection is closed, its `negotiate` fails, alpha
 *     never logs a session with beta again and, once stopped, its state.db
 *     holds no session (no keys) for beta.
 *
 * Needs root, `ip netns`, /dev/net/tun and ping; skips otherwise.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { StateStore } from '@cluevpn/negotiation';
import { bnl, certPin, cluevpn, makeNetwork, pingFrom, startNode, type RunningNode } from './lib/cluevpn.js';
import { createLab, requireLab, listNamespaces, type Lab } from './lib/lab.js';
import type { TrackedProcess } from './lib/process.js';
import { daemonTest } from './lib/daemon-test.js';
import { waitFor } from './lib/wait-for.js';

const here = dirname(fileURLToPath(import.meta.url));
const HOLD_CONTROL = join(here, 'fixtures', 'hold-control.js');
const PORT = 3406;

interface HoldEvent {
  event: 'ready' | 'closed' | 'negotiate';
  ok?: boolean;
  code?: string;
}

const events = (p: TrackedProcess): HoldEvent[] =>
  p
    .stdout()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as HoldEvent);

test('a re-pinned or removed node loses its open control connections, its sessions and its stored keys', { timeout: 240_000 }, async (t) => {
  if (!requireLab(t)) return;
  const dir = mkdtempSync(join(tmpdir(), 'revoke-e2e-'));
  let lab: Lab | null = null;
  let prefix = '';
  const procs: TrackedProcess[] = [];
  const nodes: RunningNode[] = [];
  let ok = false;
  try {
    lab = await createLab({ hosts: 3 });
    prefix = lab.prefix;
    const L = lab;
    const [h1, h2, h3] = L.hosts;
    const net = await makeNetwork(join(dir, 'net'), { net: 'revk', pullInterval: '60s', nodes: [['alpha', h1.ipv4], ['beta', h2.ipv4]] });
    const alpha = await startNode(L, h1, net.nodeDir('alpha'));
    let beta = await startNode(L, h2, net.nodeDir('beta'));
    nodes.push(alpha, beta);
    procs.push(alpha.process, beta.process);
    const keyed = (): Promise<boolean> =>
      waitFor(async () => (await pingFrom(L, h1, '10.99.0.2', 1, 1)).received === 1, { timeoutMs: 20_000, intervalMs: 0, description: 'alpha → beta ping over the VPN' });
    /** Copies `from`'s credentials into DIR/name/ as make-network lays them out (what the attacker stole). */
    const steal = (label: string, crt: string, key: string): string => {
      const d = join(dir, label, 'beta');
      mkdirSync(d, { recursive: true });
      copyFileSync(crt, join(d, 'beta.crt'));
      copyFileSync(key, join(d, 'beta.key'));
      copyFileSync(join(net.nodeDir('alpha'), 'ca.crt'), join(d, 'ca.crt'));
      return d;
    };
    /** Starts the attacker in h3 and waits until alpha has served a request on its connection. */
    const hold = async (credsDir: string, trigger: string): Promise<TrackedProcess> => {
      const p = L.spawn(h3, process.execPath, [HOLD_CONTROL, credsDir, 'alpha', h1.ipv4, String(PORT), trigger], { label: 'hold-control' });
      procs.push(p);
      await p.waitForOutput(/"event":"ready"/, { timeoutMs: 20_000, stream: 'stdout' });
      return p;
    };
    /** Signs the master list, installs it on alpha and reloads alpha. */
    const reloadAlpha = async (): Promise<void> => {
      await bnl('--file', net.masterList, 'sign', '--key', net.signingKey);
      copyFileSync(net.masterList, join(net.nodeDir('alpha'), 'bnl'));
      const r = await cluevpn('-c', net.conf('alpha'), 'reload');
      assert.equal(r.code, 0, `reload: ${r.stdout}${r.stderr}`);
    };
    /** Lets the attacker try, then checks that its connection was closed and its negotiate failed. */
    const attackFails = async (p: TrackedProcess, trigger: string, what: string): Promise<void> => {
      writeFileSync(trigger, '');
      await Promise.race([p.exited, new Promise((r) => setTimeout(r, 30_000))]);
      if (p.running()) await p.stop('SIGKILL', 1000);
      const r = events(p);
      t.diagnostic(`${what}: attacker saw ${JSON.stringify(r)}`);
      const neg = r.find((e) => e.event === 'negotiate');
      assert.ok(neg !== undefined, `${what}: the attacker got to try (${p.stderr()})`);
      assert.equal(neg.ok, false, `${what}: negotiate over the held connection must fail`);
      assert.ok(r.some((e) => e.event === 'closed'), `${what}: alpha closed the held connection`);
    };

    // 1. keyed
    await keyed();
    const oldCreds = steal('stolen-old', join(net.nodeDir('beta'), 'beta.crt'), join(net.nodeDir('beta'), 'beta.key'));

    // 2. re-pin
    const trigger1 = join(dir, 'trigger-1');
    const attacker1 = await hold(oldCreds, trigger1);
    const fresh = join(dir, 'beta-new');
    const issued = await cluevpn('cert', 'issue', 'beta', '--ca', join(net.dir, 'ca'), '--out', fresh);
    assert.equal(issued.code, 0, issued.stderr);
    await bnl('--file', net.masterList, 'modify', 'beta', `fingerprint=${await certPin(join(fresh, 'beta.crt'))}`);
    await reloadAlpha();
    await attackFails(attacker1, trigger1, 're-pin');
    await waitFor(async () => (await alpha.peer('beta')).cipher === null, { timeoutMs: 5000, intervalMs: 100, description: 'alpha dropped the session negotiated under the old pin' });

    // 3. remove: beta with its new certificate, keyed again, then removed
    await beta.process.stop('SIGTERM', 3000);
    copyFileSync(join(fresh, 'beta.crt'), join(net.nodeDir('beta'), 'beta.crt'));
    copyFileSync(join(fresh, 'beta.key'), join(net.nodeDir('beta'), 'beta.key'));
    copyFileSync(net.masterList, join(net.nodeDir('beta'), 'bnl'));
    beta = await startNode(L, h2, net.nodeDir('beta'));
    nodes.push(beta);
    procs.push(beta.process);
    await keyed();
    const trigger2 = join(dir, 'trigger-2');
    const attacker2 = await hold(steal('stolen-new', join(fresh, 'beta.crt'), join(fresh, 'beta.key')), trigger2);
    await bnl('--file', net.masterList, 'remove', 'beta');
    await reloadAlpha();
    await attackFails(attacker2, trigger2, 'remove');
    await new Promise((r) => setTimeout(r, 1000)); // anything late would show now
    const log = alpha.log();
    const removedAt = log.lastIndexOf('node removed');
    assert.ok(removedAt > 0, 'alpha logged the removal');
    assert.doesNotMatch(log.slice(removedAt), /session negotiated.*peer=beta/, 'no session with beta after its removal');
    assert.equal((await alpha.status()).peers.some((p) => p.name === 'beta'), false);
    const stopped = await alpha.process.stop('SIGTERM', 3000);
    assert.equal(stopped.code, 0, alpha.process.stderr());
    const store = StateStore.open(join(net.nodeDir('alpha'), 'state.db'), { readonly: true });
    try {
      assert.deepEqual(store.listSessions().map((s) => s.peer), [], 'alpha stores no session (no keys) for the removed node');
    } finally {
      store.close();
    }
    ok = true;
  } finally {
    if (!ok) {
      for (const n of nodes) {
        t.diagnostic(`--- ${n.name} log (tail), stderr: ${n.process.stderr().slice(-1000)}`);
        for (const line of n.log().split('\n').slice(-30)) t.diagnostic(line);
      }
    }
    for (const p of procs) if (p.running()) await p.stop('SIGKILL', 1000);
    if (lab !== null) await lab.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
  assert.deepEqual(listNamespaces(prefix), [], 'no namespace left behind');
  for (const p of procs) assert.equal(p.running(), false, `${p.label} still running`);
});

test('a node re-pinned while its peer was down: the peer deletes the stored session at start instead of resuming it', { timeout: 180_000 }, async (t) => {
  const env = await daemonTest(t, { hosts: 2 }, 'repin-down-e2e-');
  if (env === null) return;
  const { lab: L, dir } = env;
  const [h1, h2] = L.hosts;
  const net = await makeNetwork(join(dir, 'net'), { net: 'rpin', pullInterval: '60s', nodes: [['alpha', h1.ipv4], ['beta', h2.ipv4]] });
  let alpha = await startNode(L, h1, net.nodeDir('alpha'));
  env.nodes.push(alpha, await startNode(L, h2, net.nodeDir('beta')));
  await waitFor(async () => (await pingFrom(L, h1, '10.99.0.2', 1, 1)).received === 1, { timeoutMs: 20_000, intervalMs: 0, description: 'alpha → beta ping over the VPN' });
  const stopped = await alpha.process.stop('SIGTERM', 3000);
  assert.equal(stopped.code, 0, alpha.process.stderr());
  const db = join(net.nodeDir('alpha'), 'state.db');
  const storedPeers = (): string[] => {
    const store = StateStore.open(db, { readonly: true });
    try {
      return store.listSessions().map((s) => s.peer);
    } finally {
      store.close();
    }
  };
  assert.deepEqual(storedPeers(), ['beta'], 'alpha stored its session with beta');
  // The admin re-issues beta's certificate and re-pins it; the new list reaches alpha's disk while alpha is down.
  const fresh = join(dir, 'beta-new');
  const issued = await cluevpn('cert', 'issue', 'beta', '--ca', join(net.dir, 'ca'), '--out', fresh);
  assert.equal(issued.code, 0, issued.stderr);
  await bnl('--file', net.masterList, 'modify', 'beta', `fingerprint=${await certPin(join(fresh, 'beta.crt'))}`);
  await bnl('--file', net.masterList, 'sign', '--key', net.signingKey);
  copyFileSync(net.masterList, join(net.nodeDir('alpha'), 'bnl'));
  alpha = await startNode(L, h1, net.nodeDir('alpha'));
  env.nodes.push(alpha);
  await waitFor(async () => /stored session of a re-pinned node deleted.*peer=beta/.test(alpha.log()), { timeoutMs: 10_000, intervalMs: 100, description: 'alpha logs the deletion' });
  assert.equal((await alpha.peer('beta')).restored, false, 'nothing restored for beta');
  const again = await alpha.process.stop('SIGTERM', 3000);
  assert.equal(again.code, 0, alpha.process.stderr());
  assert.deepEqual(storedPeers(), [], 'no keys of the old certificate left in state.db');
  env.passed();
});
