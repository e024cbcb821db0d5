/**
 * End to end: two networks side by side on the same hosts (issue 18 §5).
 * Two networks made by `examples/make-network` — net1 (port 3406, inner
 * 10.99.0.i) and net2 (port 3407, inner 10.98.0.i) — each with a node on
 * lab hosts h1 and h2, so each host runs two cluevpnd in one namespace.
 *
 *  1. a second network left on the first's port stops at start with
 *     ERR_PORT_IN_USE naming the holder (net1's daemon and its pid), and
 *     leaves nothing behind (device, pidfile)
 *  2. a second network given the first's device name stops with
 *     ERR_DEVICE_IN_USE naming net1's daemon
 *  3. with their own ports (and default devices, sockets, pidfiles and
 *     state), both run: each node pings its own network's peer, in IPv4 and
 *     IPv6, and each daemon sees only its own peer, on its own port
 *
 * Needs root, `ip netns`, /dev/net/tun and ping; skips otherwise.
 */
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { CLUEVPND, makeNetwork, pingFrom, startNode, type Network, type RunningNode } from './lib/cluevpn.js';
import { createLab, requireLab, type Lab } from './lib/lab.js';

/** A copy of `net`'s node directory with `key=value` lines replaced, for a start that must fail. */
function variant(net: Network, node: string, dir: string, set: Record<string, string>): string {
  cpSync(net.nodeDir(node), dir, { recursive: true });
  const conf = join(dir, 'cluevpn.conf');
  let text = readFileSync(conf, 'utf8');
  for (const [k, v] of Object.entries(set)) text = text.replace(new RegExp(`^${k}=.*$`, 'm'), `${k}=${v}`);
  writeFileSync(conf, text);
  return conf;
}

/** Starts `cluevpnd -D -c conf` in `host`, expecting it to fail; returns its output and its log. */
async function failedStart(lab: Lab, host: string, conf: string): Promise<{ code: number | null; out: string; log: string }> {
  const r = await lab.exec(host, CLUEVPND, ['-D', '-c', conf], { check: false, timeoutMs: 30_000 });
  const logFile = join(conf, '..', 'cluevpnd.log');
  return { code: r.code, out: r.stdout + r.stderr, log: existsSync(logFile) ? readFileSync(logFile, 'utf8') : '' };
}

test('two networks on the same hosts: clashes are refused naming the other network, then both run side by side', { timeout: 240_000 }, async (t) => {
  if (!requireLab(t)) return;
  const lab = await createLab({ hosts: 2, prefix: `nets${process.pid % 10000}` });
  const dir = mkdtempSync(join(tmpdir(), 'nets-e2e-'));
  t.after(async () => {
    await lab.destroy();
    rmSync(dir, { recursive: true, force: true });
  });
  const hosts = [['alpha', lab.hosts[0]!.ipv4], ['beta', lab.hosts[1]!.ipv4]] as const;
  const net1 = await makeNetwork(join(dir, 'net1'), { net: 'net1', nodes: hosts });
  const net2 = await makeNetwork(join(dir, 'net2'), { net: 'net2', port: 3407, inner4: '10.98.0', inner6: 'fd98::', nodes: hosts });
  const running: RunningNode[] = [];
  running.push(await startNode(lab, 'h1', net1.nodeDir('alpha')), await startNode(lab, 'h2', net1.nodeDir('beta')));
  const net1Pid = running[0]!.process.pid;

  // 1. net2 left on port 3406: refused, naming net1's daemon
  const samePort = await failedStart(lab, 'h1', variant(net2, 'alpha', join(dir, 'clash-port'), { port: '3406' }));
  assert.equal(samePort.code, 1, samePort.out);
  assert.match(samePort.log, /start-up failed err="ERR_PORT_IN_USE: /);
  // (run in place with -c, a node's network name is its directory's: alpha; the config names net1)
  assert.ok(samePort.out.includes(`port 3406/udp is already in use by cluevpnd of network alpha (pid ${net1Pid}, ${net1.conf('alpha')})`), samePort.out);
  assert.equal((await lab.exec('h1', 'ip', ['link', 'show', 'net2'], { check: false })).code, 1, 'the device it had made is gone again');
  assert.equal(existsSync(join(dir, 'clash-port', 'cluevpnd.pid')), false);

  // 2. net2 on net1's device name: refused, naming net1's daemon
  const sameDev = await failedStart(lab, 'h1', variant(net2, 'alpha', join(dir, 'clash-dev'), { devname: 'net1' }));
  assert.equal(sameDev.code, 1, sameDev.out);
  assert.match(sameDev.log, /start-up failed err="ERR_DEVICE_IN_USE: /);
  assert.ok(sameDev.out.includes(`device net1 is already in use by cluevpnd of network alpha (pid ${net1Pid}, ${net1.conf('alpha')})`), sameDev.out);

  // 3. net2 as made (port 3407, device net2): both networks run on both hosts
  running.push(await startNode(lab, 'h1', net2.nodeDir('alpha')), await startNode(lab, 'h2', net2.nodeDir('beta')));
  const [a1, b1, a2, b2] = running as [RunningNode, RunningNode, RunningNode, RunningNode];
  for (const [from, target] of [
    ['h1', '10.99.0.2'], ['h2', '10.99.0.1'], ['h1', '10.98.0.2'], ['h2', '10.98.0.1'],
    ['h1', 'fd99::2'], ['h1', 'fd98::2'],
  ] as const) {
    const p = await pingFrom(lab, from, target, 5, 2);
    assert.ok(p.received >= 1, `${from} -> ${target}: ${JSON.stringify(p)}`);
  }
  for (const [node, port, dev] of [[a1, 3406, 'net1'], [b1, 3406, 'net1'], [a2, 3407, 'net2'], [b2, 3407, 'net2']] as const) {
    const st = await node.status();
    assert.equal(st.port, port, `${node.conf}`);
    assert.equal(st.device, dev);
    assert.equal(st.peers.length, 1);
    const peer = st.peers[0]!;
    assert.ok(peer.endpoint!.endsWith(`:${port}`), `${node.conf}: peer endpoint ${peer.endpoint}`);
    assert.ok(peer.rxPackets > 0 && peer.state === 'up', `${node.conf}: ${JSON.stringify(peer)}`);
  }
  // each network's traffic stayed in its own network: net1's beta got only net1's pings
  const routes = (await lab.exec('h1', 'ip', ['route', 'show'])).stdout;
  assert.match(routes, /10\.99\.0\.2 dev net1/);
  assert.match(routes, /10\.98\.0\.2 dev net2/);
  for (const n of running.reverse()) assert.equal((await n.process.stop('SIGTERM', 5000)).code, 0, n.conf);
});
