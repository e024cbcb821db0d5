import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BnlStore, createUnsignedBnl, BnlError, type OfferResult, type SignedBnl } from '../src/index.js';
import { createMemoryStorage, makeTestBnl } from '../src/testing.js';
import { newKey, signed, trustOf } from './helpers.js';

function code(r: OfferResult): string {
  return r.accepted ? 'accepted' : r.code;
}

async function withDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'bnl-store-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('every bad offer is rejected with its code and leaves the list and the file untouched', async () => {
  await withDir(async (dir) => {
    const k = newKey();
    const path = join(dir, 'bnl');
    const store = await BnlStore.open({ path, trust: trustOf(1, k) });
    assert.equal(store.current === null, true);
    const v5 = signed(makeTestBnl(3, { serial: 5 }), k);
    assert.equal(code(await store.offer(v5.bytes)), 'accepted');
    const onDisk = await readFile(path);
    const text = Buffer.from(v5.bytes).toString('ascii');
    const bad: [string, Uint8Array][] = [
      ['ERR_BNL_STALE', signed(makeTestBnl(3, { serial: 4 }), k).bytes],
      ['ERR_BNL_DUPLICATE', v5.bytes],
      ['ERR_BNL_UNTRUSTED', signed(makeTestBnl(3, { serial: 6 }), newKey()).bytes],
      ['ERR_BNL_UNSIGNED', createUnsignedBnl(makeTestBnl(3, { serial: 6 })).bytes],
      ['ERR_BNL_SIGNATURE', Buffer.from(text.replace('"serial":5', '"serial":9'))],
      ['ERR_BNL_TOO_LARGE', Buffer.alloc(4 * 1024 * 1024 + 1, 0x61)],
      ['ERR_BNL_TRUNCATED', v5.bytes.subarray(0, 200)],
      ['ERR_BNL_FORMAT', Buffer.from('\x00\x01garbage garbage garbage')],
      ['ERR_BNL_NETWORK', signed(makeTestBnl(3, { serial: 6, network: 'other' }), k).bytes],
      ['ERR_BNL_INVALID', Buffer.from(text.replace('10.0.2.0/24', '10.0.1.0/24'))],
    ];
    for (const [want, bytes] of bad) {
      const r = await store.offer(bytes);
      assert.equal(code(r), want);
      assert.equal(store.current?.hash, v5.hash, `list changed after ${want}`);
      assert.deepEqual(await readFile(path), onDisk, `file changed after ${want}`);
    }
    // across restarts: the file is the high-water mark
    const reopened = await BnlStore.open({ path, trust: trustOf(1, k) });
    assert.equal(reopened.current?.bnl.serial, 5);
    assert.equal(code(await reopened.offer(signed(makeTestBnl(3, { serial: 4 }), k).bytes)), 'ERR_BNL_STALE');
  });
});

test('rollback guard: an older list copied over the file refuses to open; a newer one, or deleting the mark, is accepted', async () => {
  await withDir(async (dir) => {
    const k = newKey();
    const path = join(dir, 'bnl');
    const store = await BnlStore.open({ path, trust: trustOf(1, k) });
    const v3 = signed(makeTestBnl(3, { serial: 3 }), k);
    const v7 = signed(makeTestBnl(3, { serial: 7 }), k);
    assert.equal(code(await store.offer(v3.bytes)), 'accepted');
    assert.equal(code(await store.offer(v7.bytes)), 'accepted');
    assert.equal(JSON.parse(await readFile(`${path}.highest`, 'utf8')).serial, 7);
    // an admin restores an old backup and restarts
    await writeFile(path, v3.bytes);
    await assert.rejects(BnlStore.open({ path, trust: trustOf(1, k) }), (e: BnlError) => {
      assert.equal(e.code, 'ERR_BNL_ROLLBACK');
      assert.match(e.message, /serial 3, older than serial 7/);
      assert.match(e.message, /bnl\.highest/);
      return true;
    });
    // a newer list in place opens and raises the mark
    const v9 = signed(makeTestBnl(3, { serial: 9 }), k);
    await writeFile(path, v9.bytes);
    assert.equal((await BnlStore.open({ path, trust: trustOf(1, k) })).current?.bnl.serial, 9);
    assert.equal(JSON.parse(await readFile(`${path}.highest`, 'utf8')).serial, 9);
    // the documented way out: delete the mark to accept an older list on purpose
    await writeFile(path, v3.bytes);
    await rm(`${path}.highest`);
    assert.equal((await BnlStore.open({ path, trust: trustOf(1, k) })).current?.bnl.serial, 3);
    assert.equal(JSON.parse(await readFile(`${path}.highest`, 'utf8')).serial, 3);
    // an unreadable mark is an error naming it, not silently ignored
    await writeFile(`${path}.highest`, 'junk');
    await assert.rejects(BnlStore.open({ path, trust: trustOf(1, k) }), (e: BnlError) => e.code === 'ERR_BNL_FORMAT' && /bnl\.highest/.test(e.message));
  });
});

test('a failed high-water mark write does not refuse a list already in place', async () => {
  const k = newKey();
  const storage = createMemoryStorage();
  const store = await BnlStore.open({ storage, trust: trustOf(1, k) });
  storage.writeHighest = async () => {
    throw new BnlError('ERR_BNL_IO', 'disk full');
  };
  assert.equal(code(await store.offer(signed(makeTestBnl(3, { serial: 2 }), k).bytes)), 'accepted');
  assert.equal(store.current?.bnl.serial, 2);
  assert.equal(storage.highest, null);
});

test('a write failure rejects with ERR_BNL_IO and keeps the current list', async () => {
  const k = newKey();
  const storage = createMemoryStorage();
  const store = await BnlStore.open({ storage, trust: trustOf(1, k) });
  await store.offer(signed(makeTestBnl(2, { serial: 1 }), k).bytes);
  storage.failWrites = true;
  const r = await store.offer(signed(makeTestBnl(2, { serial: 2 }), k).bytes);
  assert.equal(code(r), 'ERR_BNL_IO');
  assert.equal(store.current?.bnl.serial, 1);
});

test('equal serial, different content: every node keeps the lower hash, whatever the arrival order, and reports ERR_BNL_CONFLICT', async () => {
  const k = newKey();
  const a = signed(makeTestBnl(2, { serial: 3 }), k);
  const b = signed(makeTestBnl(3, { serial: 3 }), k);
  const [low, high] = a.hash < b.hash ? [a, b] : [b, a];
  const s1 = await BnlStore.open({ storage: createMemoryStorage(), trust: trustOf(1, k) });
  const s2 = await BnlStore.open({ storage: createMemoryStorage(), trust: trustOf(1, k) });
  assert.equal(code(await s1.offer(low.bytes)), 'accepted');
  const r1 = await s1.offer(high.bytes);
  assert.equal(code(r1), 'ERR_BNL_CONFLICT');
  assert.equal(code(await s2.offer(high.bytes)), 'accepted');
  const r2 = await s2.offer(low.bytes);
  assert.ok(r2.accepted);
  assert.equal(r2.conflict?.code, 'ERR_BNL_CONFLICT');
  assert.equal(s1.current?.hash, low.hash);
  assert.equal(s2.current?.hash, low.hash);
  // and no oscillation: offering the loser again changes nothing
  assert.equal(code(await s2.offer(high.bytes)), 'ERR_BNL_CONFLICT');
  assert.equal(s2.current?.hash, low.hash);
});

test('the diff names added, removed and changed nodes with their fields', async () => {
  const k = newKey();
  const store = await BnlStore.open({ storage: createMemoryStorage(), trust: trustOf(1, k) });
  const first = await store.offer(signed(makeTestBnl(3, { serial: 1 }), k).bytes);
  assert.ok(first.accepted);
  assert.deepEqual(first.diff.added.map((n) => n.name), ['node1', 'node2', 'node3']);
  const next = makeTestBnl(4, { serial: 2 });
  next.nodes.splice(1, 1); // remove node2
  next.nodes[0].endpoints = [{ host: '2001:db8::5', port: 4000 }];
  next.nodes[0].fingerprint = 'cd'.repeat(32);
  next.nodes[1].subnets = ['10.0.3.0/25'];
  next.nodes[1].relay = true;
  const r = await store.offer(signed(next, k).bytes);
  assert.ok(r.accepted);
  assert.deepEqual(r.diff.added.map((n) => n.name), ['node4']);
  assert.deepEqual(r.diff.removed.map((n) => n.name), ['node2']);
  assert.deepEqual(r.diff.changed.map((c) => [c.name, c.fields]), [['node1', ['endpoints', 'fingerprint']], ['node3', ['subnets', 'relay']]]);
});

test('key rotation: the old key introduces the new one; later lists signed only by the new key are accepted, also after a restart', async () => {
  await withDir(async (dir) => {
    const oldK = newKey();
    const newK = newKey();
    const path = join(dir, 'bnl');
    const configured = trustOf(1, oldK);
    const store = await BnlStore.open({ path, trust: configured });
    await store.offer(signed(makeTestBnl(2, { serial: 1 }), oldK).bytes);
    // a list signed only by the new key is not trusted yet
    assert.equal(code(await store.offer(signed(makeTestBnl(2, { serial: 2 }), newK).bytes)), 'ERR_BNL_UNTRUSTED');
    const intro = await store.offer(signed(makeTestBnl(2, { serial: 2, signers: { keys: [newK.pub], threshold: 1 } }), oldK).bytes);
    assert.ok(intro.accepted);
    assert.equal(intro.trustChanged, true);
    assert.deepEqual(store.trust.keys, [newK.pub]);
    const byNew = signed(makeTestBnl(3, { serial: 3, signers: { keys: [newK.pub], threshold: 1 } }), newK);
    assert.equal(code(await store.offer(byNew.bytes)), 'accepted');
    // the old key is retired now
    assert.equal(code(await store.offer(signed(makeTestBnl(3, { serial: 4 }), oldK).bytes)), 'ERR_BNL_UNTRUSTED');
    // restart with the config still naming only the old key
    const again = await BnlStore.open({ path, trust: configured });
    assert.equal(again.current?.hash, byNew.hash);
    assert.deepEqual(again.trust.keys, [newK.pub]);
    assert.equal(code(await again.offer(signed(makeTestBnl(4, { serial: 5 }), newK).bytes)), 'accepted');
    // without the sidecar, a list signed by an unknown key does not load
    await rm(`${path}.trust`);
    await assert.rejects(BnlStore.open({ path, trust: configured }), (e: BnlError) => e.code === 'ERR_BNL_UNTRUSTED');
  });
});

test('rotation to 2-of-3: the next list needs two of the new keys', async () => {
  const root = newKey();
  const [a, b, c] = [newKey(), newKey(), newKey()];
  const store = await BnlStore.open({ storage: createMemoryStorage(), trust: trustOf(1, root) });
  const signers = { keys: [a.pub, b.pub, c.pub], threshold: 2 };
  assert.equal(code(await store.offer(signed(makeTestBnl(2, { serial: 1, signers }), root).bytes)), 'accepted');
  assert.equal(code(await store.offer(signed(makeTestBnl(2, { serial: 2, signers }), a).bytes)), 'ERR_BNL_UNTRUSTED');
  assert.equal(code(await store.offer(signed(makeTestBnl(2, { serial: 2, signers }), a, c).bytes)), 'accepted');
});

test('open refuses a stored list that is corrupt or signed by an unknown key', async () => {
  await withDir(async (dir) => {
    const k = newKey();
    const path = join(dir, 'bnl');
    await writeFile(path, 'garbage');
    await assert.rejects(BnlStore.open({ path, trust: trustOf(1, k) }), (e: BnlError) => e.code === 'ERR_BNL_FORMAT');
    await writeFile(path, signed(makeTestBnl(2), newKey()).bytes);
    await assert.rejects(BnlStore.open({ path, trust: trustOf(1, k) }), (e: BnlError) => e.code === 'ERR_BNL_UNTRUSTED');
  });
});

test('concurrent offers are serialised: the highest serial ends up current', async () => {
  const k = newKey();
  const store = await BnlStore.open({ storage: createMemoryStorage(), trust: trustOf(1, k) });
  const lists: SignedBnl[] = [];
  for (let s = 1; s <= 8; s++) lists.push(signed(makeTestBnl(2, { serial: s }), k));
  const order = [5, 2, 8, 1, 7, 3, 6, 4];
  const results = await Promise.all(order.map((i) => store.offer(lists[i - 1].bytes)));
  assert.equal(store.current?.bnl.serial, 8);
  assert.deepEqual(results.map((r) => r.accepted), [true, false, true, false, false, false, false, false]);
});
