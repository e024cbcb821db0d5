/**
 * The in-memory TunDevice (@cluevpn/tun/testing) follows the TunDevice contract.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setImmediate as tick } from 'node:timers/promises';
import { createMemoryTun } from '../src/testing.js';
import { TunError, type PacketBatch } from '../src/index.js';

function pkt(tag: number, len = 40): Buffer {
  const b = Buffer.alloc(len, tag);
  b[0] = 0x45; // IPv4
  return b;
}

/** Copies the packets of a borrowed batch (they are only valid during the call). */
function copyOut(b: PacketBatch): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < b.count; i++) out.push(Buffer.from(b.buffer.subarray(b.offsets[i], b.offsets[i] + b.lengths[i])));
  return out;
}

test('options are validated like openTun (ERR_TUN_CONFIG) and defaults applied', () => {
  const t = createMemoryTun();
  assert.equal(t.batchSize, 64);
  assert.equal(t.slotSize, 2048);
  assert.equal(t.headroom, 64);
  assert.equal(t.mode, 'tun');
  assert.equal(t.mtu, 1500);
  assert.match(t.name, /^tun\d+$/);
  assert.equal(t.offload, false);
  assert.equal(createMemoryTun({ offload: true }).offload, false, 'the fake accepts and ignores offload');
  for (const bad of [{ batchSize: 0 }, { slotSize: 100 }, { headroom: -1 }, { mtu: 2048 - 64 - 63 }, { name: 'x'.repeat(16) }, { name: 'a b' }, { mode: 'bridge' as 'tun' }, { offload: 'yes' as unknown as boolean }, { offload: true, mode: 'tap' as const }, { offload: true, coalesceWrites: 1 as unknown as boolean }]) {
    assert.throws(() => createMemoryTun(bad), (e: unknown) => e instanceof TunError && e.code === 'ERR_TUN_CONFIG', JSON.stringify(bad));
  }
  assert.throws(() => t.setMtu(3000), { code: 'ERR_TUN_CONFIG' });
  t.setMtu(1420);
  assert.equal(t.mtu, 1420);
});

test('injected packets are delivered asynchronously in batches of at most batchSize, with the slab layout', async () => {
  const t = createMemoryTun({ batchSize: 4, slotSize: 512, headroom: 32, mtu: 400 });
  const got: Buffer[] = [];
  const sizes: number[] = [];
  let layoutOk = true;
  t.onPackets((b) => {
    sizes.push(b.count);
    for (let i = 0; i < b.count; i++) if (b.offsets[i] !== i * 512 + 32) layoutOk = false;
    assert.equal(b.buffer.length, 4 * 512);
    got.push(...copyOut(b));
  });
  const sent = Array.from({ length: 10 }, (_, i) => pkt(i + 1, 20 + i));
  assert.equal(t.inject(sent), 10);
  assert.equal(got.length, 0, 'not synchronous');
  await tick();
  assert.deepEqual(sizes, [4, 4, 2]);
  assert.deepEqual(got, sent);
  assert.equal(layoutOk, true);
  const s = t.stats();
  assert.equal(s.packetsIn, 10);
  assert.equal(s.batchesIn, 3);
  assert.equal(s.bytesIn, sent.reduce((a, p) => a + p.length, 0));
});

test('headroom and tailroom of a slot may be written in place', async () => {
  const t = createMemoryTun({ batchSize: 2, slotSize: 256, headroom: 20, mtu: 150 });
  let framed: Buffer | null = null;
  t.onPackets((b) => {
    const off = b.offsets[0];
    const len = b.lengths[0];
    b.buffer.fill(0xaa, off - 20, off); // header in front
    b.buffer.fill(0xbb, off + len, off + len + 16); // tag behind
    framed = Buffer.from(b.buffer.subarray(off - 20, off + len + 16));
  });
  t.inject(pkt(7, 100));
  t.flush();
  assert.ok(framed !== null);
  const f = framed as Buffer;
  assert.equal(f.length, 136);
  assert.deepEqual(f.subarray(20, 120), pkt(7, 100));
  assert.ok(f.subarray(0, 20).every((x) => x === 0xaa));
  assert.ok(f.subarray(120).every((x) => x === 0xbb));
});

test('without a handler packets queue up to queueLimit, the rest are dropped and counted', () => {
  const t = createMemoryTun({ queueLimit: 3 });
  assert.equal(t.inject([pkt(1), pkt(2), pkt(3), pkt(4), pkt(5)]), 3);
  assert.equal(t.queued, 3);
  assert.equal(t.injectDropped, 2);
  const got: number[] = [];
  t.onPackets((b) => {
    for (let i = 0; i < b.count; i++) got.push(b.buffer[b.offsets[i] + 1]);
  });
  assert.equal(t.flush(), 1);
  assert.deepEqual(got, [1, 2, 3]);
  assert.equal(t.queued, 0);
});

test('a packet larger than the MTU cannot be injected', () => {
  const t = createMemoryTun({ mtu: 100 });
  assert.throws(() => t.inject(pkt(1, 101)), { code: 'ERR_OUT_OF_RANGE' });
  assert.equal(t.queued, 0);
});

test('write and writeBatch record copies; non-IP and forced drops are counted, not thrown', () => {
  const t = createMemoryTun();
  const slab = Buffer.alloc(300);
  pkt(1, 50).copy(slab, 0);
  pkt(2, 60).copy(slab, 100);
  slab[200] = 0x00; // not IPv4/IPv6
  pkt(3, 30).copy(slab, 250);
  assert.equal(t.write(slab, 0, 50), true);
  slab[1] = 99; // the device keeps a copy, not the caller's memory
  assert.equal(t.writeBatch(slab, Int32Array.of(100, 200, 250), Int32Array.of(60, 20, 30), 3), 2);
  t.dropNextWrites(1);
  assert.equal(t.write(slab, 250, 30), false);
  const w = t.takeWritten();
  assert.deepEqual(w, [pkt(1, 50), pkt(2, 60), pkt(3, 30)]);
  assert.equal(t.written.length, 0);
  const s = t.stats();
  assert.equal(s.packetsOut, 3);
  assert.equal(s.bytesOut, 140);
  assert.equal(s.writeErrors, 1);
  assert.equal(s.writeDropped, 1);
});

test('out-of-range writes throw before anything is written', () => {
  const t = createMemoryTun();
  const b = Buffer.alloc(100, 0x45);
  assert.throws(() => t.write(b, 90, 20), { code: 'ERR_OUT_OF_RANGE' });
  assert.throws(() => t.write(b, -1, 10), { code: 'ERR_OUT_OF_RANGE' });
  assert.throws(() => t.writeBatch(b, Int32Array.of(0, 95), Int32Array.of(10, 10), 2), { code: 'ERR_OUT_OF_RANGE' });
  assert.throws(() => t.writeBatch(b, Int32Array.of(0), Int32Array.of(10), 2), { code: 'ERR_OUT_OF_RANGE' });
  assert.equal(t.written.length, 0);
  assert.equal(t.stats().packetsOut, 0);
});

test('a throwing handler is reported as ERR_TUN_HANDLER and delivery continues', () => {
  const t = createMemoryTun({ batchSize: 1 });
  const errors: TunError[] = [];
  const seen: number[] = [];
  t.onError((e) => errors.push(e));
  t.onPackets((b) => {
    const tag = b.buffer[b.offsets[0] + 1];
    seen.push(tag);
    if (tag === 2) throw new Error('boom');
  });
  t.inject([pkt(1), pkt(2), pkt(3)]);
  t.flush();
  assert.deepEqual(seen, [1, 2, 3]);
  assert.equal(errors.length, 1);
  assert.equal(errors[0].code, 'ERR_TUN_HANDLER');
  assert.equal((errors[0].cause as Error).message, 'boom');
  t.onError(() => {
    throw new Error('error handler throws');
  });
  t.inject(pkt(2));
  t.flush();
  assert.equal(t.stats().handlerErrors, 3);
});

test('addresses and routes are recorded; duplicates are ERR_TUN_CONFIG with EEXIST; bad CIDRs rejected', async () => {
  const t = createMemoryTun();
  t.up();
  assert.equal(t.isUp, true);
  await t.addAddress('10.1.0.1/24');
  await t.addAddress('fd00::1/64');
  await t.addRoute('10.2.0.0/16');
  await assert.rejects(t.addAddress('10.1.0.1/24'), { code: 'ERR_TUN_CONFIG', errno: 'EEXIST' });
  await assert.rejects(t.addRoute('10.2.0.0/33'), { code: 'ERR_TUN_CONFIG' });
  await assert.rejects(t.addRoute('not-an-ip/8'), { code: 'ERR_TUN_CONFIG' });
  assert.deepEqual(t.addresses, ['10.1.0.1/24', 'fd00::1/64']);
  const batch = await t.addRoutes(['10.3.0.0/16', '10.2.0.0/16', 'bad', 'fd01::/64']);
  assert.deepEqual(batch.map((e) => e?.code ?? null), [null, 'ERR_TUN_CONFIG', 'ERR_TUN_CONFIG', null]);
  assert.equal(batch[1]!.errno, 'EEXIST');
  assert.deepEqual(t.routes, ['10.2.0.0/16', '10.3.0.0/16', 'fd01::/64']);
  await t.removeRoute('10.3.0.0/16');
  await assert.rejects(t.removeRoute('10.3.0.0/16'), { code: 'ERR_TUN_CONFIG', errno: 'ESRCH' });
  assert.deepEqual(t.routes, ['10.2.0.0/16', 'fd01::/64']);
  t.down();
  assert.equal(t.isUp, false);
});

test('CIDR text is checked without node:net: dotted quads without leading zeros, IPv6 without zones, prefix within the family', async () => {
  const t = createMemoryTun();
  for (const good of ['0.0.0.0/0', '255.255.255.255/32', '10.0.0.1', '::/0', '::1/128', 'fd00:1:2:3:4:5:6:7/128', '::ffff:10.0.0.1/128', 'FD00::A/64', '2001:db8::/32']) {
    await t.addRoute(good);
  }
  for (const bad of ['01.2.3.4/32', '256.1.1.1/32', '1.2.3/24', '1.2.3.4.5/32', '1.2.3.4/33', '1.2.3.4/', '1.2.3.4/+1', 'fe80::1%eth0/64', '1:2:3/64', 'fd00::1::2/64', '::/129', '[::1]/128', 'fd00::g/64', '', ' 10.0.0.0/8']) {
    await assert.rejects(t.addRoute(bad), { code: 'ERR_TUN_CONFIG' }, bad);
  }
});

test('close is idempotent; afterwards every operation but stats throws ERR_TUN_CLOSED and queued packets are gone', async () => {
  const t = createMemoryTun();
  let calls = 0;
  t.onPackets(() => calls++);
  t.inject(pkt(1));
  t.close();
  t.close();
  await tick();
  assert.equal(calls, 0);
  assert.equal(t.closed, true);
  const closed = { code: 'ERR_TUN_CLOSED' };
  assert.throws(() => t.write(Buffer.alloc(20, 0x45), 0, 20), closed);
  assert.throws(() => t.writeBatch(Buffer.alloc(20), new Int32Array(1), new Int32Array(1), 1), closed);
  assert.throws(() => t.inject(pkt(1)), closed);
  assert.throws(() => t.onPackets(() => {}), closed);
  assert.throws(() => t.up(), closed);
  await assert.rejects(t.addAddress('10.0.0.1/8'), closed);
  assert.equal(t.stats().packetsIn, 0);
});

test('close from inside the handler stops delivery after the current batch', () => {
  const t = createMemoryTun({ batchSize: 2 });
  const sizes: number[] = [];
  t.onPackets((b) => {
    sizes.push(b.count);
    t.close();
  });
  t.inject([pkt(1), pkt(2), pkt(3)]);
  t.flush();
  assert.deepEqual(sizes, [2]);
});
