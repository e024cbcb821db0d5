/**
 * The express lease generations (shared with C) never wrap: a lease taken
 * at some generation can never become valid again after later changes.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { jsCryptoBackend } from '../src/backend-js.js';
import { EXPRESS_GEN_LAST, PeerTable } from '../src/peer-table.js';

function table(): PeerTable {
  return new PeerTable(jsCryptoBackend(), () => {}, () => {});
}

test('express generations count up, one per change, in both cells', () => {
  const t = table();
  const rx = t.expressGen[0]!;
  const tx = t.expressTxGen[0]!;
  t.voidExpress();
  t.voidExpressTx();
  assert.equal(t.expressGen[0], rx + 1);
  assert.equal(t.expressTxGen[0], tx + 2);
});

test('a generation far beyond 32 bits still counts exactly (no wrap back onto an old lease)', () => {
  const t = table();
  const start = 2 ** 32 - 2; // an Int32Array cell would have wrapped twice over by here
  t.expressGen[0] = start;
  t.expressTxGen[0] = start;
  const seen = new Set<number>([start]);
  for (let i = 0; i < 5; i++) {
    t.voidExpress();
    assert.ok(!seen.has(t.expressGen[0]!), `generation ${t.expressGen[0]} came back`);
    seen.add(t.expressGen[0]!);
  }
  assert.equal(t.expressGen[0], start + 5);
});

test('at the last exact generation express is switched off instead of wrapping or stalling', () => {
  const t = table();
  let exhausted = 0;
  t.onExpressGenExhausted = () => exhausted++;
  t.expressGen[0] = EXPRESS_GEN_LAST - 1;
  t.expressTxGen[0] = EXPRESS_GEN_LAST - 1;
  t.voidExpress();
  assert.equal(exhausted, 0);
  assert.equal(t.expressGen[0], EXPRESS_GEN_LAST);
  t.voidExpress();
  assert.equal(exhausted, 2, 'both cells report it');
  assert.equal(t.expressGen[0], EXPRESS_GEN_LAST, 'never moves onto a value that equals an older one');
});

test('a peer holds no drop counters until its first drop (records of a large list never drop: issue 19)', () => {
  const t = table();
  const p = t.add('7', 'n7', ['10.0.7.0/24'], { host: '192.0.2.7', port: 3406 });
  const drops = (): Float64Array | null => p.drops;
  assert.equal(drops(), null);
  p.countDrop(3);
  p.countDrop(3, 4);
  assert.equal(drops()?.[3], 5);
  assert.equal(drops()?.filter((x) => x !== 0).length, 1);
});

test('removing a peer looks only at the relayed peers, not at every peer (no O(n) scan per removal: issue 19)', () => {
  const t = table();
  const relay = t.add('1', 'r', ['10.0.1.0/24'], { host: '192.0.2.1', port: 3406 });
  const member = t.add('2', 'm', ['10.0.2.0/24'], { host: '192.0.2.2', port: 3406 });
  t.setRelay(member, relay);
  let reads = 0;
  for (let k = 3; k < 250; k++) {
    const p = t.add(String(k), `n${k}`, [`10.1.${k}.0/24`]);
    Object.defineProperty(p, 'relay', { get: () => (reads++, null), set: () => {}, configurable: true });
  }
  t.remove('1');
  assert.equal(reads, 0, 'no unrelated peer was looked at');
  assert.equal(member.relay, null, 'the member relayed through the removed relay goes direct');
  assert.equal(t.relayed.size, 0);
});
