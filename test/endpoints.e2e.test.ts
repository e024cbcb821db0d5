/**
 * Endpoints that change, end to end:
 *  - a node listed with several endpoints is reached on the one that
 *    answers, not only on the first;
 *  - a node listed by host name is looked up again: every `resolveinterval`
 *    (dynamic DNS), and at once when it stops answering.
 * Names come from per-namespace hosts files (/etc/netns/NS/hosts, which
 * `ip netns exec` mounts over /etc/hosts for the daemons it starts).
 */
import assert from 'node:assert/strict';
import { appendFileSync, copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { bnl, makeNetwork, pingFrom, startNode, type Network, type RunningNode } from './lib/cluevpn.js';
import { createLab, requireLab, type Lab } from './lib/lab.js';
import { waitFor } from './lib/wait-for.js';

const NAME = 'beta.cluevpn.test';

/** Signs the master list after `edits` and gives it to every node. */
async function editList(net: Network, names: readonly string[], ...edits: string[][]): Promise<void> {
  for (const e of edits) await bnl('--file', net.masterList, ...e);
  await bnl('--file', net.masterList, 'sign', '--key', net.signingKey);
  for (const n of names) copyFileSync(net.masterList, join(net.nodeDir(n), 'bnl'));
}

/** The endpoint `node` uses for `peer`, as `cluevpn status` shows it. */
const endpointOf = async (node: RunningNode, peer: string): Promise<string | null> => (await node.peer(peer)).endpoint;

async function withLab(t: { after(fn: () => Promise<void>): void }, hosts: number): Promise<{ lab: Lab; dir: string; nodes: RunningNode[] }> {
  const dir = mkdtempSync(join(tmpdir(), 'endpoints-e2e-'));
  const lab = await createLab({ hosts });
  const nodes: RunningNode[] = [];
  t.after(async () => {
    for (const n of nodes) if (n.process.running()) await n.process.stop('SIGTERM', 3000);
    await lab.destroy();
    for (const h of lab.hosts) rmSync(join('/etc/netns', h.ns), { recursive: true, force: true });
    rmSync(dir, { recursive: true, force: true });
  });
  return { lab, dir, nodes };
}

test('endpoints: a node listed with a dead endpoint first and a live one second is reached on the live one', { timeout: 180_000 }, async (t) => {
  if (!requireLab(t)) return;
  const { lab, dir, nodes } = await withLab(t, 3);
  const net = await makeNetwork(join(dir, 'net'), { net: 'eps', pullInterval: '2s', nodes: [['alpha', lab.hosts[0]!.ipv4], ['beta', lab.hosts[1]!.ipv4]] });
  // beta: an address of h3 where nothing listens (refused) and its own; a
  // record's endpoints are kept in canonical order (by address text), so the
  // dead 192.0.2.10 comes first. alpha: no address at all (as behind NAT), so
  // only alpha can start anything and beta learns alpha's address from
  // alpha's packets.
  const dead = '192.0.2.10';
  await lab.exec('h3', 'ip', ['addr', 'add', `${dead}/24`, 'dev', 'eth0']);
  await editList(net, ['alpha', 'beta'], ['modify', 'beta', `ipv4=${dead}`, `endpoint=${lab.hosts[1]!.ipv4}:3406`], ['modify', 'alpha', 'ipv4=']);
  const listed = (await bnl('--file', net.masterList, 'print')).stdout;
  assert.match(listed, new RegExp(`endpoints: +${dead.replace(/\./g, '\\.')}:3406, ${lab.hosts[1]!.ipv4.replace(/\./g, '\\.')}:3406`), `the dead endpoint is listed first:\n${listed}`);
  nodes.push(await startNode(lab, 'h1', net.nodeDir('alpha')));
  nodes.push(await startNode(lab, 'h2', net.nodeDir('beta')));
  const [alpha] = nodes as [RunningNode, RunningNode];
  // alpha's pings reach beta only once alpha negotiated on beta's live endpoint
  const t0 = Date.now();
  await waitFor(async () => (await pingFrom(lab, 'h1', '10.99.0.2', 1, 1)).received === 1, { timeoutMs: 40_000, intervalMs: 0, description: 'alpha → beta through the tunnel' });
  t.diagnostic(`alpha reached beta ${Date.now() - t0} ms after beta started`);
  assert.equal(await endpointOf(alpha, 'beta'), `${lab.hosts[1]!.ipv4}:3406`);
  assert.equal((await pingFrom(lab, 'h1', '10.99.0.2', 3, 2)).received, 3);
});

test('endpoints: a host name is looked up again every resolveinterval, and at once when its address stops answering', { timeout: 240_000 }, async (t) => {
  if (!requireLab(t)) return;
  const { lab, dir, nodes } = await withLab(t, 3);
  const [h1, h2, h3] = lab.hosts as [typeof lab.hosts[0], typeof lab.hosts[0], typeof lab.hosts[0]];
  const oldAddr = h2.ipv4;
  const newAddr = '192.0.2.77';
  // the hosts files of alpha (h1) and gamma (h3); written in place, never replaced: the mount follows the inode
  const hostsFiles = [h1, h3].map((h) => {
    mkdirSync(join('/etc/netns', h.ns), { recursive: true });
    return join('/etc/netns', h.ns, 'hosts');
  });
  const pointTo = (addr: string): void => {
    for (const f of hostsFiles) writeFileSync(f, `127.0.0.1 localhost\n::1 localhost\n${addr} ${NAME}\n`);
  };
  pointTo(oldAddr);
  const net = await makeNetwork(join(dir, 'net'), { net: 'eps', pullInterval: '2s', nodes: [['alpha', h1.ipv4], ['beta', h2.ipv4], ['gamma', h3.ipv4]] });
  await editList(net, ['alpha', 'beta', 'gamma'], ['modify', 'beta', 'ipv4=', `host=${NAME}`, 'port=3406']);
  // alpha looks names up every second; gamma keeps the default (5 minutes)
  appendFileSync(net.conf('alpha'), 'resolveinterval=1s\n');
  // beta answers on both addresses for now (the new one secondary: its packets still leave from the old)
  await lab.exec('h2', 'ip', ['addr', 'add', `${newAddr}/24`, 'dev', 'eth0']);
  // without this, deleting the primary address deletes the secondary too
  await lab.exec('h2', 'sysctl', ['-qw', 'net.ipv4.conf.eth0.promote_secondaries=1']);
  nodes.push(await startNode(lab, 'h1', net.nodeDir('alpha')));
  nodes.push(await startNode(lab, 'h2', net.nodeDir('beta')));
  nodes.push(await startNode(lab, 'h3', net.nodeDir('gamma')));
  const [alpha, , gamma] = nodes as [RunningNode, RunningNode, RunningNode];
  for (const h of ['h1', 'h3']) {
    await waitFor(async () => (await pingFrom(lab, h, '10.99.0.2', 1, 1)).received === 1, { timeoutMs: 40_000, intervalMs: 0, description: `${h} → beta through the tunnel` });
  }
  assert.equal(await endpointOf(alpha, 'beta'), `${oldAddr}:3406`);
  assert.equal(await endpointOf(gamma, 'beta'), `${oldAddr}:3406`);

  // 1. the name moves; the old address still answers: only the periodic look-up (alpha's) notices
  pointTo(newAddr);
  const t1 = Date.now();
  await waitFor(async () => (await endpointOf(alpha, 'beta')) === `${newAddr}:3406`, { timeoutMs: 15_000, intervalMs: 200, description: 'alpha follows the name' });
  t.diagnostic(`alpha moved to ${newAddr} ${Date.now() - t1} ms after the hosts file changed (resolveinterval=1s)`);
  await new Promise((r) => setTimeout(r, 3000)); // gamma pulls from beta meanwhile (every ~2 s), on the old address
  assert.equal(await endpointOf(gamma, 'beta'), `${oldAddr}:3406`, 'gamma (5 min interval, old address still answering) stays');

  // 2. the old address goes: gamma's next connection fails, it looks the name up at once and moves
  await lab.exec('h2', 'ip', ['addr', 'del', `${oldAddr}/24`, 'dev', 'eth0']);
  assert.match((await lab.exec('h2', 'ip', ['-4', '-o', 'addr', 'show', 'dev', 'eth0'])).stdout, new RegExp(` ${newAddr.replace(/\./g, '\\.')}/24 `), 'beta keeps its new address');
  const t2 = Date.now();
  await waitFor(async () => (await endpointOf(gamma, 'beta')) === `${newAddr}:3406`, { timeoutMs: 40_000, intervalMs: 200, description: 'gamma follows the name after a failure' });
  t.diagnostic(`gamma moved to ${newAddr} ${Date.now() - t2} ms after the old address went (no periodic look-up due)`);
  assert.equal((await pingFrom(lab, 'h3', '10.99.0.2', 3, 2)).received, 3, 'gamma → beta at its new address');
  assert.equal((await pingFrom(lab, 'h1', '10.99.0.2', 3, 2)).received, 3, 'alpha → beta at its new address');
});
