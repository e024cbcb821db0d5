/**
 * The lab's NAT routers (scripts/netns-lab --nat, test/lib/lab.ts `nat`):
 * a host behind MASQUERADE keeps its source port, behind `random-fully`
 * gets a random one; unsolicited inbound is dropped; a silent UDP mapping
 * expires after the router's conntrack timeout; link MTU; `down` removes
 * the routers too.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createLab, listNamespaces, requireLab } from './lib/lab.js';

/** UDP server on 5000: answers "echo" at once, "late" DELAY ms after a "later". */
const SERVER = `
const s = require('node:dgram').createSocket('udp4');
s.on('message', (m, r) => {
  console.log('from ' + r.address + ':' + r.port + ' ' + m);
  if (String(m) === 'now') s.send('echo', r.port, r.address);
  else setTimeout(() => s.send('late', r.port, r.address), Number(process.argv[1]));
});
s.bind(5000, () => console.log('ready'));`;

/** UDP client from port 3406: "now", then "later", and prints what comes back within WAIT ms. */
const CLIENT = `
const s = require('node:dgram').createSocket('udp4');
s.on('message', (m) => console.log('got ' + m));
s.bind(3406, () => {
  s.send('now', 5000, process.argv[1]);
  setTimeout(() => s.send('later', 5000, process.argv[1]), 500);
  setTimeout(() => process.exit(0), Number(process.argv[2]));
});`;

test('NAT routers: port mapping by mode, unsolicited inbound dropped, mappings expire, link MTU, all removed by down', async (t) => {
  if (!requireLab(t)) return;
  const lab = await createLab({ hosts: 3, nat: { h2: { mode: 'random-fully' }, h3: { udpTimeoutS: 2, mtu: 1400 } } });
  let destroyed = false;
  t.after(() => (destroyed ? undefined : lab.destroy()));
  const [h1, h2, h3] = lab.hosts;
  assert.deepEqual(h1!.nat, undefined);
  assert.equal(h1!.ipv4, '192.0.2.1');
  assert.deepEqual([h2!.ipv4, h2!.ipv6, h2!.nat], ['172.16.2.2', '', { mode: 'random-fully', publicIpv4: '192.0.2.2' }]);
  assert.deepEqual([h3!.ipv4, h3!.nat], ['172.16.3.2', { mode: 'masquerade', publicIpv4: '192.0.2.3' }]);
  assert.deepEqual(listNamespaces(lab.prefix).sort(), ['h1', 'h2', 'h3', 'r2', 'r3', 'sw'].map((n) => `${lab.prefix}-${n}`));

  // Out through the router works; in without a mapping does not (to the router or through it).
  assert.equal((await lab.ping('h3', '192.0.2.1', { count: 1 })).received, 1);
  assert.equal((await lab.ping('h1', '192.0.2.3', { count: 2, timeoutS: 1 })).received, 0);
  assert.equal((await lab.ping('h3', '192.0.2.2', { count: 2, timeoutS: 1 })).received, 0, 'NAT to NAT: nothing');

  // The conntrack timeouts are the router namespace's own; the root namespace keeps its default.
  const sysctl = await lab.exec('h3', 'ip', ['netns', 'exec', `${lab.prefix}-r3`, 'cat', '/proc/sys/net/netfilter/nf_conntrack_udp_timeout', '/proc/sys/net/netfilter/nf_conntrack_udp_timeout_stream']);
  assert.equal(sysctl.stdout, '2\n2\n');
  const mtu = await lab.exec('h3', 'cat', ['/sys/class/net/eth0/mtu']);
  assert.equal(mtu.stdout.trim(), '1400');

  // Port mapping and expiry: the answer 300 ms later gets through, the one 4 s later (mapping gone) does not.
  const server = lab.spawn('h1', process.execPath, ['-e', SERVER, '4000']);
  await server.waitForOutput(/ready/, { timeoutMs: 20_000 });
  const c3 = await lab.exec('h3', process.execPath, ['-e', CLIENT, '192.0.2.1', '7000'], { timeoutMs: 30_000 });
  const c2 = await lab.exec('h2', process.execPath, ['-e', CLIENT, '192.0.2.1', '1500'], { timeoutMs: 30_000 });
  await server.waitForOutput(/from 192\.0\.2\.2:\d+ later/, { timeoutMs: 10_000 });
  assert.match(c3.stdout, /got echo/);
  assert.doesNotMatch(c3.stdout, /got late/, 'the silent mapping expired after 2 s');
  assert.match(server.stdout(), /from 192\.0\.2\.3:3406 now/, 'MASQUERADE keeps the source port');
  const port2 = /from 192\.0\.2\.2:(\d+) now/.exec(server.stdout())?.[1];
  assert.ok(port2 !== undefined && port2 !== '3406', `random-fully draws a port (got ${port2})`);
  assert.match(c2.stdout, /got echo/);

  await lab.destroy();
  destroyed = true;
  assert.deepEqual(listNamespaces(lab.prefix), []);
});
