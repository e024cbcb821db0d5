import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  BnlStore,
  SeenSet,
  choosePullTargets,
  decodeGossip,
  encodeGossip,
  handlePull,
  handlePullReply,
  handlePush,
  jitteredInterval,
  makePullRequest,
  BnlError,
  type GossipMessage,
} from '../src/index.js';
import { createMemoryStorage, makeTestBnl } from '../src/testing.js';
import { newKey, signed, trustOf, type TestKey } from './helpers.js';

async function node(k: TestKey): Promise<{ store: BnlStore; seen: SeenSet }> {
  return { store: await BnlStore.open({ storage: createMemoryStorage(), trust: trustOf(1, k) }), seen: new SeenSet() };
}

test('gossip messages round trip through encode/decode', () => {
  const msgs: GossipMessage[] = [
    { type: 'pull', serial: 42, hash: 'ab'.repeat(32) },
    { type: 'pull', serial: 0, hash: null },
    { type: 'pull-not-newer', serial: 2 ** 53 - 1, hash: 'cd'.repeat(32) },
    { type: 'pull-list', bnl: Buffer.from('cluevpn-bnl 1\n{}\n') },
    { type: 'push', bnl: Buffer.from('xyz') },
    { type: 'push-reply', status: 'rejected', code: 'ERR_BNL_STALE' },
    { type: 'push-reply', status: 'accepted' },
  ];
  for (const m of msgs) {
    const back = decodeGossip(encodeGossip(m));
    if ('bnl' in m && 'bnl' in back) assert.deepEqual(Buffer.from(back.bnl), Buffer.from(m.bnl));
    else assert.deepEqual(back, m);
    assert.equal(back.type, m.type);
  }
});

test('malformed gossip is refused with codes, and the length cap is checked before reading the body', () => {
  const codeOf = (b: Uint8Array): string => {
    try {
      decodeGossip(b);
      return 'ok';
    } catch (e) {
      return (e as BnlError).code;
    }
  };
  assert.equal(codeOf(Buffer.from([])), 'ERR_BNL_GOSSIP');
  assert.equal(codeOf(Buffer.from([2, 1])), 'ERR_BNL_GOSSIP');
  assert.equal(codeOf(Buffer.from([1, 99])), 'ERR_BNL_GOSSIP');
  assert.equal(codeOf(Buffer.from([1, 1, 0, 0])), 'ERR_BNL_GOSSIP');
  const huge = Buffer.from([1, 4, 0xff, 0xff, 0xff, 0xff, 0x61]);
  assert.equal(codeOf(huge), 'ERR_BNL_TOO_LARGE');
  const short = Buffer.from([1, 4, 0, 0, 0, 10, 0x61]);
  assert.equal(codeOf(short), 'ERR_BNL_GOSSIP');
});

test('pull: a node behind gets the list, a node up to date gets "not newer", a node ahead is told to push back', async () => {
  const k = newKey();
  const a = await node(k);
  const b = await node(k);
  const v1 = signed(makeTestBnl(3, { serial: 1 }), k);
  const v2 = signed(makeTestBnl(4, { serial: 2 }), k);
  await a.store.offer(v2.bytes);
  // b has nothing
  let reply = handlePull(a.store, decodeGossip(encodeGossip(makePullRequest(b.store))) as Extract<GossipMessage, { type: 'pull' }>);
  assert.equal(reply.type, 'pull-list');
  let out = await handlePullReply(b.store, b.seen, decodeGossip(encodeGossip(reply)));
  assert.equal(out.result?.accepted, true);
  assert.equal(b.store.current?.hash, v2.hash);
  // now equal
  reply = handlePull(a.store, makePullRequest(b.store) as Extract<GossipMessage, { type: 'pull' }>);
  assert.equal(reply.type, 'pull-not-newer');
  out = await handlePullReply(b.store, b.seen, reply);
  assert.equal(out.pushBack, false);
  // a node behind asks b; b sees from the reply... here: c with v1 pulls from b → list; b pulling from c → pushBack
  const c = await node(k);
  await c.store.offer(v1.bytes);
  const fromC = handlePull(c.store, makePullRequest(b.store) as Extract<GossipMessage, { type: 'pull' }>);
  assert.equal(fromC.type, 'pull-not-newer');
  assert.equal((await handlePullReply(b.store, b.seen, fromC)).pushBack, true);
});

test('push: accepted once and forwarded once; the same list again is a duplicate, not re-flooded', async () => {
  const k = newKey();
  const a = await node(k);
  const v = signed(makeTestBnl(3, { serial: 7 }), k);
  const first = await handlePush(a.store, a.seen, { type: 'push', bnl: v.bytes });
  assert.deepEqual([first.reply, first.forward], [{ type: 'push-reply', status: 'accepted' }, true]);
  const second = await handlePush(a.store, a.seen, { type: 'push', bnl: v.bytes });
  assert.deepEqual([second.reply, second.forward, second.result], [{ type: 'push-reply', status: 'duplicate' }, false, undefined]);
  const stale = await handlePush(a.store, a.seen, { type: 'push', bnl: signed(makeTestBnl(3, { serial: 6 }), k).bytes });
  assert.deepEqual([stale.reply, stale.forward], [{ type: 'push-reply', status: 'rejected', code: 'ERR_BNL_STALE' }, false]);
});

test('a forged copy (bad signature) does not poison the seen-set: the genuine list is still taken afterwards', async () => {
  const k = newKey();
  const a = await node(k);
  const v = signed(makeTestBnl(3, { serial: 2 }), k);
  const text = Buffer.from(v.bytes).toString('ascii');
  const forged = Buffer.from(text.slice(0, -10) + (text.at(-10) === 'a' ? 'b' : 'a') + text.slice(-9));
  const bad = await handlePush(a.store, a.seen, { type: 'push', bnl: forged });
  assert.deepEqual(bad.reply, { type: 'push-reply', status: 'rejected', code: 'ERR_BNL_SIGNATURE' });
  const good = await handlePush(a.store, a.seen, { type: 'push', bnl: v.bytes });
  assert.equal(good.forward, true);
  assert.equal(a.store.current?.hash, v.hash);
});

test('choosePullTargets picks k distinct peers and covers all peers over many draws; jitter stays in range', () => {
  const peers = Array.from({ length: 20 }, (_, i) => i);
  const counts = new Array<number>(20).fill(0);
  for (let i = 0; i < 2000; i++) {
    const t = choosePullTargets(peers, 3);
    assert.equal(t.length, 3);
    assert.equal(new Set(t).size, 3);
    for (const p of t) counts[p]++;
  }
  assert.ok(counts.every((c) => c > 150 && c < 450), `uneven: ${counts.join(',')}`);
  assert.deepEqual(choosePullTargets([1, 2], 5).sort(), [1, 2]);
  assert.deepEqual(peers.length, 20);
  for (let i = 0; i < 1000; i++) {
    const v = jitteredInterval(90_000, 0.25);
    assert.ok(v >= 67_500 && v <= 112_500, String(v));
  }
  assert.equal(jitteredInterval(1000, 0.5, () => 0), 500);
});

test('small pull simulation: 40 nodes with fanout 2 all converge', async () => {
  const k = newKey();
  const nodes = await Promise.all(Array.from({ length: 40 }, () => node(k)));
  const v = signed(makeTestBnl(40, { serial: 3 }), k);
  await nodes[0].store.offer(v.bytes);
  let rounds = 0;
  while (nodes.some((n) => n.store.current?.hash !== v.hash) && rounds < 30) {
    rounds++;
    const replies = nodes.map((n, i) => choosePullTargets(nodes.filter((_, j) => j !== i), 2).map((p) => handlePull(p.store, makePullRequest(n.store) as Extract<GossipMessage, { type: 'pull' }>)));
    for (let i = 0; i < nodes.length; i++) for (const r of replies[i]) await handlePullReply(nodes[i].store, nodes[i].seen, r);
  }
  assert.ok(nodes.every((n) => n.store.current?.hash === v.hash), `not converged after ${rounds} rounds`);
  assert.ok(rounds <= 12, `took ${rounds} rounds`);
});
