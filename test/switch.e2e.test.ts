/**
 * Switch mode end to end (HOWTO.md, "Switch mode"): three nodes with
 * `mode=switch`, each TAP bridged in its namespace (br0) with the veth of a
 * LAN host; the three LAN hosts share one subnet, 10.77.0.0/24 and
 * fd77::/64, and know nothing of the VPN.
 *
 *  1. ARP and IPv6 neighbour discovery resolve across the mesh (the LAN
 *     hosts' neighbour tables hold each other's real MACs); pings pass
 *     between every pair, over IPv4 and IPv6.
 *  2. A 4 MiB TCP transfer from l1 to l3 arrives intact (SHA-256).
 *  3. Every node's MAC table names the node behind which each LAN host is.
 *  4. Spoofing: while l1 (behind alpha) uses its MAC, l2 (behind beta)
 *     takes the same MAC and sends: gamma drops those frames as `spoofed`,
 *     counted on peer beta.
 *  5. A move: l1 goes silent (link down); gamma learns that the MAC is now
 *     behind beta within a second, and a ping to the moved host works.
 *  6. A MAC listed in the BNL (`mac=` on gamma's record, pushed at run
 *     time): l1 comes back with l3's MAC; alpha refuses to send it
 *     (`bad-source`), the others keep it fixed to gamma, and l2 ↔ l3 still
 *     works.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { appendFileSync, copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { bnl, controlRequest, makeNetwork, pingFrom, startNode, type RunningNode } from './lib/cluevpn.js';
import { daemonTest } from './lib/daemon-test.js';
import { waitFor } from './lib/wait-for.js';

const MTU = 1400;
const LAN4 = (i: number): string => `10.77.0.${i}`;
const LAN6 = (i: number): string => `fd77::${i}`;
const TRANSFER_BYTES = 4 * 1024 * 1024;
const PORT = 5001;

/** TCP sink: prints "got BYTES SHA256" when the sender closes. */
const SINK = `
const net = require('node:net'), crypto = require('node:crypto');
const [host, port] = process.argv.slice(1);
const srv = net.createServer((c) => {
  const h = crypto.createHash('sha256'); let n = 0;
  c.on('data', (d) => { h.update(d); n += d.length; });
  c.on('end', () => { process.stdout.write('got ' + n + ' ' + h.digest('hex') + '\\n'); c.end(); srv.close(); });
});
srv.listen(Number(port), host, () => process.stdout.write('listening\\n'));
`;
/** TCP source: sends BYTES random bytes, prints "sent BYTES SHA256". */
const SOURCE = `
const net = require('node:net'), crypto = require('node:crypto');
const [host, port, bytes] = process.argv.slice(1);
const data = crypto.randomBytes(Number(bytes));
const c = net.connect(Number(port), host, () => c.end(data));
c.on('close', () => process.stdout.write('sent ' + data.length + ' ' + crypto.createHash('sha256').update(data).digest('hex') + '\\n'));
c.on('error', (e) => { console.error(e.message); process.exit(1); });
`;

test('switch mode: three nodes bridge one LAN; ARP/ND, ping and TCP across the mesh; MAC spoof refused; a moved MAC learned within a second', { timeout: 300_000 }, async (t) => {
  const env = await daemonTest(t, { hosts: 3, lans: { h1: '10.77.1.0/24', h2: '10.77.2.0/24', h3: '10.77.3.0/24' } }, 'switch-e2e-');
  if (env === null) return;
  const { lab, dir } = env;
  const names = ['alpha', 'beta', 'gamma'] as const;
  const net = await makeNetwork(join(dir, 'net'), { net: 'sw', pullInterval: '30s', logLevel: 6, nodes: names.map((n, i) => [n, lab.hosts[i]!.ipv4] as const) });
  const nodes: RunningNode[] = [];
  for (const [i, n] of names.entries()) {
    appendFileSync(net.conf(n), `mode=switch\nmtu=${MTU}\n`);
    const node = await startNode(lab, `h${i + 1}`, net.nodeDir(n));
    nodes.push(node);
    env.nodes.push(node);
  }
  const [alpha, beta, gamma] = nodes as [RunningNode, RunningNode, RunningNode];

  // The bridge on each node, and the LAN hosts on one subnet (the lab gave each LAN its own: replace it).
  const macOf: string[] = [];
  for (let i = 1; i <= 3; i++) {
    const h = `h${i}`;
    const l = `l${i}`;
    const dev = (await nodes[i - 1]!.status()).device;
    assert.equal((await nodes[i - 1]!.status()).mode, 'switch');
    const tap = await lab.exec(h, 'ip', ['-d', 'link', 'show', 'dev', dev]);
    assert.match(tap.stdout, /\btun type tap\b/, `${dev} is a TAP device`);
    for (const args of [
      ['addr', 'flush', 'dev', 'lan0'],
      ['link', 'set', 'lan0', 'mtu', String(MTU)],
      ['link', 'add', 'br0', 'type', 'bridge'],
      ['link', 'set', 'lan0', 'master', 'br0'],
      ['link', 'set', dev, 'master', 'br0'],
      ['link', 'set', 'br0', 'up'],
    ]) await lab.exec(h, 'ip', args);
    const routes = await lab.exec(h, 'ip', ['route', 'show', 'dev', dev]);
    assert.equal(routes.stdout.trim(), '', `switch mode adds no route to ${dev}`);
    for (const args of [
      ['addr', 'flush', 'dev', 'eth0'],
      ['link', 'set', 'eth0', 'mtu', String(MTU)],
      ['addr', 'add', `${LAN4(i)}/24`, 'dev', 'eth0'],
      ['-6', 'addr', 'add', `${LAN6(i)}/64`, 'dev', 'eth0', 'nodad'],
    ]) {
      if (args[0] === '-6') await lab.exec(l, 'sysctl', ['-qw', 'net.ipv6.conf.eth0.disable_ipv6=0']); // the lab's LAN hosts start without IPv6
      await lab.exec(l, 'ip', args);
    }
    macOf[i] = (await lab.exec(l, 'cat', ['/sys/class/net/eth0/address'])).stdout.trim();
  }

  // 1. ARP and ND across the mesh; pings between every pair, both families
  await waitFor(async () => (await pingFrom(lab, 'l1', LAN4(2), 1, 1)).received === 1, { timeoutMs: 60_000, intervalMs: 0, description: 'l1 → l2 across the mesh' });
  for (const [a, b] of [[1, 2], [1, 3], [2, 3], [3, 1]] as const) {
    await waitFor(async () => (await pingFrom(lab, `l${a}`, LAN4(b), 1, 1)).received === 1, { timeoutMs: 30_000, intervalMs: 0, description: `l${a} → l${b}` });
    const p4 = await pingFrom(lab, `l${a}`, LAN4(b), 5, 2);
    assert.equal(p4.received, 5, `IPv4 l${a} → l${b}`);
    await waitFor(async () => (await pingFrom(lab, `l${a}`, LAN6(b), 1, 1)).received === 1, { timeoutMs: 30_000, intervalMs: 0, description: `IPv6 l${a} → l${b}` });
    const p6 = await pingFrom(lab, `l${a}`, LAN6(b), 5, 2);
    assert.equal(p6.received, 5, `IPv6 l${a} → l${b}`);
    const n4 = (await lab.exec(`l${a}`, 'ip', ['-4', 'neigh', 'show', LAN4(b)])).stdout;
    const n6 = (await lab.exec(`l${a}`, 'ip', ['-6', 'neigh', 'show', LAN6(b)])).stdout;
    assert.match(n4, new RegExp(`lladdr ${macOf[b]}`), `ARP: l${a} resolved ${LAN4(b)} to l${b}'s MAC (${n4.trim()})`);
    assert.match(n6, new RegExp(`lladdr ${macOf[b]}`), `ND: l${a} resolved ${LAN6(b)} to l${b}'s MAC (${n6.trim()})`);
  }

  // 2. TCP, 4 MiB l1 → l3
  const sink = lab.spawn('l3', process.execPath, ['-e', SINK, LAN4(3), String(PORT)], { label: 'tcp sink' });
  await sink.waitForOutput(/listening/, { timeoutMs: 20_000 });
  const src = await lab.exec('l1', process.execPath, ['-e', SOURCE, LAN4(3), String(PORT), String(TRANSFER_BYTES)], { timeoutMs: 120_000 });
  const got = (await sink.waitForOutput(/got (\d+) ([0-9a-f]{64})/, { timeoutMs: 60_000 }));
  const sent = /sent (\d+) ([0-9a-f]{64})/.exec(src.stdout);
  assert.ok(sent, `the source finished: ${src.stdout} ${src.stderr}`);
  t.diagnostic(`TCP l1 → l3: sent ${sent[1]} bytes ${sent[2]!.slice(0, 16)}…, received ${got[1]} bytes ${got[2]!.slice(0, 16)}…`);
  assert.equal(Number(got[1]), TRANSFER_BYTES);
  assert.equal(got[2], sent[2], 'the bytes arrived intact');

  // 3. the MAC tables
  const owners = async (node: RunningNode): Promise<Map<string, string>> => new Map(((await node.status()).switch?.macs ?? []).map((e) => [e.mac, e.owner]));
  const tables = await Promise.all(nodes.map(owners));
  for (const [k, table] of tables.entries()) {
    for (let i = 1; i <= 3; i++) {
      const want = i === k + 1 ? 'local' : names[i - 1];
      assert.equal(table.get(macOf[i]!), want, `${names[k]} sees l${i}'s MAC ${macOf[i]} ${want === 'local' ? 'on its own side' : `behind ${want}`}`);
    }
  }
  const gammaSt = await gamma.status();
  t.diagnostic(`gamma: ${JSON.stringify({ ...gammaSt.switch, macs: gammaSt.switch?.macs.length })}, drops ${JSON.stringify(gammaSt.peers.map((p) => [p.name, p.drops]))}`);
  assert.ok((gammaSt.switch?.flooded ?? 0) > 0 && (gammaSt.switch?.unicast ?? 0) > 0, 'gamma flooded broadcasts and sent unicast frames to their owner');

  // 4. spoof: l2 takes l1's MAC while l1 keeps using it
  const m1 = macOf[1]!;
  const l1ping = lab.spawn('l1', 'ping', ['-n', '-i', '0.1', LAN4(3)], { label: 'l1 ping' });
  await l1ping.waitForOutput(/icmp_seq=3 /, { timeoutMs: 20_000 });
  const spoofBefore = (await gamma.peer('beta')).drops.spoofed ?? 0;
  for (const args of [
    ['addr', 'flush', 'dev', 'eth0'],
    ['link', 'set', 'eth0', 'down'],
    ['link', 'set', 'eth0', 'address', m1],
    ['link', 'set', 'eth0', 'up'],
    ['addr', 'add', `${LAN4(11)}/24`, 'dev', 'eth0'],
    // l3's MAC is known: no ARP needed before the first frame goes out
    ['neigh', 'replace', LAN4(3), 'lladdr', macOf[3]!, 'dev', 'eth0', 'nud', 'permanent'],
  ]) await lab.exec('l2', 'ip', args);
  const l2ping = lab.spawn('l2', 'ping', ['-n', '-i', '0.1', LAN4(3)], { label: 'l2 ping' });
  await waitFor(async () => ((await gamma.peer('beta')).drops.spoofed ?? 0) >= spoofBefore + 5, { timeoutMs: 20_000, description: "gamma drops beta's frames from alpha's MAC" });
  assert.equal((await owners(gamma)).get(m1), 'alpha', 'the MAC stays with alpha while alpha uses it');

  // 5. the move: l1 falls silent; gamma must learn that the MAC is behind beta
  const t0 = Date.now();
  await l1ping.stop('SIGKILL');
  await lab.exec('l1', 'ip', ['link', 'set', 'eth0', 'down']);
  const t0down = Date.now();
  const movedBefore = (await gamma.status()).switch!.moved;
  await waitFor(async () => (await owners(gamma)).get(m1) === 'beta', { timeoutMs: 20_000, intervalMs: 20, description: 'gamma learns the moved MAC behind beta' });
  const t1 = Date.now();
  t.diagnostic(`move learned ${t1 - t0} ms after l1 was told to stop, ${t1 - t0down} ms after its link was down`);
  assert.ok(t1 - t0down < 1000, `the move was learned within a second (${t1 - t0down} ms after l1's link went down)`);
  assert.ok((await gamma.status()).switch!.moved > movedBefore, 'counted as a move');
  await l2ping.stop('SIGINT');
  const l3tol2 = await pingFrom(lab, 'l3', LAN4(11), 5, 2);
  assert.equal(l3tol2.received, 5, 'a ping to the moved host works after the move');
  assert.ok((await l2ping.exited).stdout.match(/(\d+) received/)![1] !== '0', 'the moved host got replies from l3');
  assert.equal((await alpha.peer('gamma')).state, 'up');
  assert.equal((await beta.peer('gamma')).state, 'up');

  // 6. l3's MAC fixed to gamma in the list, pushed while running; l1 returns wearing it
  const m3 = macOf[3]!;
  const serial = (await alpha.status()).bnl.serial;
  await bnl('--file', net.masterList, 'modify', 'gamma', `mac=${m3.toUpperCase()}`);
  await bnl('--file', net.masterList, 'sign', '--key', net.signingKey);
  copyFileSync(net.masterList, join(net.nodeDir('alpha'), 'bnl'));
  await controlRequest(alpha.conf, 'reload-and-push');
  for (const node of nodes) await waitFor(async () => (await node.status()).bnl.serial > serial, { timeoutMs: 30_000, description: `${node.name} holds the list with gamma's MAC` });
  for (const node of [alpha, beta]) {
    const e = (await node.status()).switch!.macs.find((x) => x.mac === m3);
    assert.deepEqual([e?.owner, e?.fixed], ['gamma', true], `${node.name}: l3's MAC is fixed to gamma`);
  }
  const badBefore = (await alpha.status()).drops['bad-source'] ?? 0;
  for (const args of [
    ['link', 'set', 'eth0', 'address', m3],
    ['link', 'set', 'eth0', 'up'],
    ['addr', 'flush', 'dev', 'eth0'],
    ['addr', 'add', `${LAN4(21)}/24`, 'dev', 'eth0'],
  ]) await lab.exec('l1', 'ip', args);
  const impostor = await pingFrom(lab, 'l1', LAN4(11), 3, 1);
  assert.equal(impostor.received, 0, 'the host wearing a MAC listed for gamma gets nowhere through alpha');
  await waitFor(async () => ((await alpha.status()).drops['bad-source'] ?? 0) > badBefore, { timeoutMs: 20_000, description: 'alpha drops frames from a MAC the list gives gamma (bad-source)' });
  const e3 = (await beta.status()).switch!.macs.find((x) => x.mac === m3);
  assert.deepEqual([e3?.owner, e3?.fixed], ['gamma', true], "beta still has l3's MAC at gamma");
  assert.equal((await pingFrom(lab, 'l3', LAN4(11), 3, 2)).received, 3, 'l3 ↔ the moved host still works');
  env.passed();
});
