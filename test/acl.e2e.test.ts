/**
 * End to end, issue 20 §1: access rules signed with the list. Four real
 * `cluevpnd` nodes from `examples/make-network` in a lab: web1, web2 (tag
 * web), office (tag office), guest (no tag); node i has 10.99.0.i and fd99::i.
 *
 *  1. The list has no rules: everything passes (guest reaches web1:80), no policy.
 *  2. The admin tags the nodes and adds rules (office → web: tcp/80, udp/5353,
 *     icmp), signs, reloads web1, which pushes the list: when the push is
 *     answered by every node, every node enforces policy serial 2.
 *  3. Allowed flows pass (IPv4 and IPv6, both web nodes), and their replies
 *     pass office's own policy (no rule lets anything into office: TCP, UDP
 *     and ICMP echo replies pass only by connection tracking). Everything
 *     else is dropped and counted as `acl` for the sending peer: guest →
 *     web1:80, office → web1:81, office → udp/80, web1 → office ping.
 *  4. A TCP stream office → web1:80 runs while a new list (serial 3: any →
 *     web tcp/8080 added) is pushed: the new rule is in force at every node
 *     when the push returns, and the stream loses nothing.
 *
 * Needs root, `ip netns`, /dev/net/tun and ping; skips otherwise.
 */
import assert from 'node:assert/strict';
import { copyFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { ReloadResult } from '@cluevpn/control';
import { bnl, controlRequest, makeNetwork, startNode, type RunningNode } from './lib/cluevpn.js';
import { daemonTest } from './lib/daemon-test.js';
import type { Lab, LabHost } from './lib/lab.js';
import { waitFor } from './lib/wait-for.js';

const here = dirname(fileURLToPath(import.meta.url));
const FLOW = join(here, 'fixtures', 'acl-flow.js');
/** How long a probe that should be dropped waits for an answer. */
const NEGATIVE_MS = 3000;

async function probe(L: Lab, from: LabHost, proto: 'tcp' | 'udp', host: string, port: number, ms: number): Promise<boolean> {
  const r = await L.exec(from, process.execPath, [FLOW, 'probe', proto, host, String(port), String(ms)], { timeoutMs: ms + 20_000 });
  return (JSON.parse(r.stdout.trim().split('\n').pop() as string) as { ok: boolean }).ok;
}

test('access rules in the signed list: enforced on receive with connection tracking, counted as acl, changed by a push without breaking allowed flows', { timeout: 300_000 }, async (t) => {
  const env = await daemonTest(t, { hosts: 4 }, 'acl-e2e-', { ping: 'ping' });
  if (env === null) return;
  const { lab: L, dir } = env;
  const [h1, h2, h3, h4] = L.hosts;
  const net = await makeNetwork(join(dir, 'net'), {
    net: 'acl',
    pullInterval: '60s',
    nodes: [['web1', h1.ipv4], ['web2', h2.ipv4], ['office', h3.ipv4], ['guest', h4.ipv4]],
  });
  const names = ['web1', 'web2', 'office', 'guest'];
  const hosts = [h1, h2, h3, h4];
  const nodes: RunningNode[] = [];
  for (let i = 0; i < 4; i++) nodes.push(await startNode(L, hosts[i], net.nodeDir(names[i])));
  env.nodes.push(...nodes);
  const [web1, , office] = nodes;
  for (const h of [h1, h2]) {
    const srv = L.spawn(h, process.execPath, [FLOW, 'serve', '80', '81', '5353', '8080'], { label: `servers ${h.name}` });
    await srv.waitForOutput(/"ready":true/, { timeoutMs: 20_000, stream: 'stdout' });
  }
  /** A probe that should pass: retried (the first packets wait for a negotiation). */
  const passes = async (from: LabHost, proto: 'tcp' | 'udp', host: string, port: number, what: string): Promise<void> => {
    await waitFor(() => probe(L, from, proto, host, port, 2000), { timeoutMs: 30_000, intervalMs: 200, description: what });
  };
  const acl = async (n: RunningNode, peer: string): Promise<number> => (await n.peer(peer)).drops.acl ?? 0;
  /** Signs the master list, installs it at web1 and reloads web1, which pushes it to the others. */
  const push = async (): Promise<ReloadResult> => {
    const signed = await bnl('--file', net.masterList, 'sign', '--key', net.signingKey);
    assert.equal(signed.code, 0, signed.stderr);
    copyFileSync(net.masterList, join(net.nodeDir('web1'), 'bnl'));
    const r = (await controlRequest(net.conf('web1'), 'reload-and-push')) as ReloadResult;
    t.diagnostic(`reload-and-push: ${JSON.stringify(r)}`);
    return r;
  };

  // 1. no rules: everything passes
  await passes(h4, 'tcp', '10.99.0.1', 80, 'guest → web1:80 with no rules');
  assert.equal((await web1.status()).policy?.serial, null, 'no policy in force');

  // 2. tags and rules, pushed
  for (const [n, tag] of [['web1', 'web'], ['web2', 'web'], ['office', 'office']]) await bnl('--file', net.masterList, 'modify', n, `tag=${tag}`);
  for (const spec of [['tcp', '80'], ['udp', '5353'], ['icmp']]) {
    const r = await bnl('--file', net.masterList, 'rule', 'add', '--from', 'tag:office', '--to', 'tag:web', '--proto', spec[0], ...(spec[1] ? ['--port', spec[1]] : []));
    assert.equal(r.code, 0, r.stderr);
  }
  const r2 = await push();
  assert.equal(r2.serial, 2);
  assert.equal(r2.pushFailed, 0);
  await waitFor(async () => (await Promise.all(nodes.map((n) => n.status()))).every((s) => s.policy?.serial === 2), { timeoutMs: 30_000, intervalMs: 200, description: 'policy serial 2 everywhere' });
  for (const n of nodes) t.diagnostic(`${n.name}: ${JSON.stringify((await n.status()).policy)}`);
  assert.deepEqual((await office.status()).policy?.rules, 0, 'no rule targets office');
  assert.deepEqual((await web1.status()).policy?.rules, 3);

  // 3. allowed flows and their replies pass; the rest is dropped and counted
  await passes(h3, 'tcp', '10.99.0.1', 80, 'office → web1:80');
  await passes(h3, 'tcp', 'fd99::1', 80, 'office → web1:80 over IPv6');
  await passes(h3, 'tcp', '10.99.0.2', 80, 'office → web2:80 (the tag covers both web nodes)');
  await passes(h3, 'udp', '10.99.0.1', 5353, 'office → web1 udp/5353 and its reply');
  const pingOk = await waitFor(async () => (await L.ping(h3, '10.99.0.1', { count: 1, timeoutS: 2 })).received === 1, { timeoutMs: 20_000, intervalMs: 200, description: 'office pings web1: the echo reply passes office' });
  assert.ok(pingOk);
  const before = { guest: await acl(web1, 'guest'), office: await acl(web1, 'office'), web1AtOffice: await acl(office, 'web1') };
  assert.equal(await probe(L, h4, 'tcp', '10.99.0.1', 80, NEGATIVE_MS), false, 'guest → web1:80 is dropped');
  assert.equal(await probe(L, h4, 'tcp', 'fd99::1', 80, NEGATIVE_MS), false, 'guest → web1:80 over IPv6 is dropped');
  assert.equal(await probe(L, h3, 'tcp', '10.99.0.1', 81, NEGATIVE_MS), false, 'office → web1:81 is dropped');
  assert.equal(await probe(L, h3, 'udp', '10.99.0.1', 80, NEGATIVE_MS), false, 'office → web1 udp/80 is dropped');
  assert.equal((await L.ping(h1, '10.99.0.3', { count: 2, timeoutS: 1 })).received, 0, 'web1 → office ping is dropped by office');
  await waitFor(async () => (await acl(web1, 'guest')) >= before.guest + 2, { timeoutMs: 10_000, intervalMs: 200, description: "web1 counts guest's packets as acl" });
  await waitFor(async () => (await acl(web1, 'office')) >= before.office + 2, { timeoutMs: 10_000, intervalMs: 200, description: "web1 counts office's packets to 81 and udp/80 as acl" });
  await waitFor(async () => (await acl(office, 'web1')) >= before.web1AtOffice + 2, { timeoutMs: 10_000, intervalMs: 200, description: "office counts web1's pings as acl" });
  assert.equal((await web1.peer('office')).drops.spoofed ?? 0, 0);

  // 4. a rule change pushed while an allowed stream runs
  const stream = L.spawn(h3, process.execPath, [FLOW, 'stream', '10.99.0.1', '80'], { label: 'stream office → web1:80' });
  await stream.waitForOutput(/"echoed":[1-9]/, { timeoutMs: 20_000, stream: 'stdout' });
  assert.equal(await probe(L, h4, 'tcp', '10.99.0.2', 8080, NEGATIVE_MS), false, 'guest → web2:8080 before the change');
  const r3 = await bnl('--file', net.masterList, 'rule', 'add', '--from', 'any', '--to', 'tag:web', '--proto', 'tcp', '--port', '8080');
  assert.equal(r3.code, 0, r3.stderr);
  const started = Date.now();
  const pushed = await push();
  const pushMs = Date.now() - started;
  assert.equal(pushed.serial, 3);
  assert.equal(pushed.pushedTo + pushed.pushPending + pushed.pushFailed, 3);
  if (pushed.pushPending === 0 && pushed.pushFailed === 0) {
    // a push is answered after the receiver applied the list, policy first: in force now, no waiting
    for (const n of nodes) assert.equal((await n.status()).policy?.serial, 3, `${n.name} enforces serial 3 when the push returns`);
  }
  await waitFor(async () => (await Promise.all(nodes.map((n) => n.status()))).every((s) => s.policy?.serial === 3), { timeoutMs: 30_000, intervalMs: 200, description: 'policy serial 3 everywhere' });
  t.diagnostic(`sign + reload + push of serial 3 took ${pushMs} ms; every node enforced it when the push returned: ${pushed.pushPending === 0}`);
  assert.equal(await probe(L, h4, 'tcp', '10.99.0.2', 8080, 10_000), true, 'guest → web2:8080 after the change');
  const progress = (): number => Number(/"echoed":(\d+)\}\n$/.exec(stream.stdout())?.[1] ?? 0);
  const mark = progress();
  await waitFor(() => progress() > mark + 10, { timeoutMs: 20_000, intervalMs: 200, description: 'the stream goes on after the change' });
  assert.equal(stream.running(), true, `the stream broke: ${stream.stdout().slice(-300)}`);
  const end = await stream.stop('SIGTERM', 15_000);
  const last = JSON.parse(end.stdout.trim().split('\n').pop() as string) as { done?: boolean; sent: number; echoed: number; error?: string };
  t.diagnostic(`stream: ${JSON.stringify(last)}`);
  assert.equal(last.done, true, `stream ended with ${JSON.stringify(last)}`);
  assert.equal(last.echoed, last.sent, 'every line came back, in order, across the change');
  env.passed();
});
