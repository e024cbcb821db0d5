/**
 * Keepalives (src/keepalive.ts): the "sent nothing for keepaliveMs" decision
 * on a fake clock, and the timer of a real data plane pair counting the
 * keepalive frames on the (memory) wire.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EventDispatcher, silentLogger } from '../src/events.js';
import { MessageType } from '../src/framing.js';
import { KeepaliveScheduler, keepaliveTickMs, noReplyMs } from '../src/keepalive.js';
import { jsCryptoBackend } from '../src/backend-js.js';
import { Peer, PeerCounter, PeerTable, type Session } from '../src/peer-table.js';
import { makePair } from './pipeline-harness.js';
import { ipv4Packet, sessionPair, waitFor } from './pipeline-helpers.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A peer with a primary session stub and an endpoint; `send` counts like the send pipeline. */
function fakeTable(): { table: PeerTable; peer: Peer; sent: number[]; send: (p: Peer) => boolean; now: { ms: number } } {
  const peer = new Peer('b', 'b', 0);
  peer.hasEndpoint = true;
  peer.primary = { txCounter: 0, installedAtMs: 0 } as unknown as Session;
  const sent: number[] = [];
  const now = { ms: 0 };
  const send = (p: Peer): boolean => {
    (p.primary as { txCounter: number }).txCounter++;
    p.counters[PeerCounter.KEEPALIVES_TX]++;
    sent.push(now.ms);
    return true;
  };
  return { table: { withPrimary: new Set([peer]) } as unknown as PeerTable, peer, sent, send, now };
}

describe('keepalives', () => {
  it('the tick is a quarter of the interval, at most a second', () => {
    assert.equal(keepaliveTickMs(25_000), 1000);
    assert.equal(keepaliveTickMs(400), 100);
    assert.equal(keepaliveTickMs(1), 10);
  });

  it('sends one at once on a fresh session, then only after keepaliveMs without any send (fake clock)', () => {
    const f = fakeTable();
    const k = new KeepaliveScheduler(f.table, f.send, 25_000);
    const step = (to: number): void => {
      for (; f.now.ms < to; f.now.ms += 1000) k.tick(f.now.ms, f.now.ms);
    };
    step(1000);
    assert.deepEqual(f.sent, [0], 'a fresh session announces itself at once');
    step(25_000);
    assert.deepEqual(f.sent, [0], 'nothing before 25 s idle');
    step(26_000);
    assert.deepEqual(f.sent, [0, 25_000], 'one after 25 s idle');
    // Traffic every 10 s: no keepalive while it lasts.
    for (let t = 26_000; t < 100_000; t += 1000) {
      if (t % 10_000 === 0) f.peer.counters[PeerCounter.TX_PACKETS]++;
      f.now.ms = t;
      k.tick(t, t);
    }
    assert.deepEqual(f.sent, [0, 25_000], 'traffic keeps the peer from idling');
    // The last packet went at 90 s: the next keepalive is due at 115 s.
    step(130_000);
    assert.deepEqual(f.sent, [0, 25_000, 115_000]);
  });

  it("asks for a rekey ('no-reply') after 2 intervals + 5 s without a word from the peer, then once per such period", () => {
    const f = fakeTable();
    const asked: number[] = [];
    const events = new EventDispatcher({ onRekeyNeeded: (id, reason) => asked.push(reason === 'no-reply' && id === 'b' ? f.now.ms : -1) }, silentLogger, 1000, 8);
    const k = new KeepaliveScheduler(f.table, f.send, 10_000, events);
    assert.equal(noReplyMs(10_000), 25_000);
    const run = (to: number, rxEvery?: number): void => {
      for (; f.now.ms < to; f.now.ms += 1000) {
        if (rxEvery !== undefined && f.now.ms % rxEvery === 0) f.peer.counters[PeerCounter.LAST_RX_MS] = f.now.ms;
        k.tick(f.now.ms, f.now.ms);
      }
    };
    run(100_000, 10_000);
    assert.deepEqual(asked, [], 'the peer answers every 10 s: no request');
    run(115_000);
    assert.deepEqual(asked, [], 'silent since 90 s: not yet at 114 s');
    run(116_000);
    assert.deepEqual(asked, [115_000], 'asked at 90 + 25 s');
    run(200_000);
    assert.deepEqual(asked, [115_000, 140_000, 165_000, 190_000], 'then once per 25 s while it stays silent');
    f.peer.counters[PeerCounter.LAST_RX_MS] = f.now.ms;
    run(220_000);
    assert.equal(asked.length, 4, 'a word from the peer stops it');
  });

  it("a stall of our own process is not the peer's silence: no 'no-reply' rekey after it, one after a real silence", () => {
    const f = fakeTable();
    const asked: number[] = [];
    const events = new EventDispatcher({ onRekeyNeeded: (id, reason) => asked.push(reason === 'no-reply' && id === 'b' ? f.now.ms : -1) }, silentLogger, 1000, 8);
    const k = new KeepaliveScheduler(f.table, f.send, 10_000, events);
    for (; f.now.ms < 100_000; f.now.ms += 1000) {
      if (f.now.ms % 10_000 === 0) f.peer.counters[PeerCounter.LAST_RX_MS] = f.now.ms;
      k.tick(f.now.ms, f.now.ms);
    }
    // The process does not run from 100 s to 160 s (the peer's keepalives wait in the socket);
    // the timer fires first when it runs again, before the receive path has read them.
    f.now.ms = 160_000;
    k.tick(f.now.ms, f.now.ms);
    assert.deepEqual(asked, [], 'the stall is not counted as the peer\'s silence');
    f.peer.counters[PeerCounter.LAST_RX_MS] = f.now.ms; // now read
    for (f.now.ms += 1000; f.now.ms < 200_000; f.now.ms += 1000) {
      if (f.now.ms % 10_000 === 0) f.peer.counters[PeerCounter.LAST_RX_MS] = f.now.ms;
      k.tick(f.now.ms, f.now.ms);
    }
    assert.deepEqual(asked, [], 'the peer answers every 10 s');
    // a real silence from 190 s (the last word) is still noticed after 25 s awake
    for (; f.now.ms < 230_000; f.now.ms += 1000) k.tick(f.now.ms, f.now.ms);
    assert.deepEqual(asked, [215_000]);
  });

  it('skips peers without a session or an endpoint (nothing counted)', () => {
    const f = fakeTable();
    const k = new KeepaliveScheduler(f.table, f.send, 1000);
    f.peer.hasEndpoint = false;
    for (let t = 0; t < 10_000; t += 100) k.tick(t, t);
    f.peer.hasEndpoint = true;
    f.peer.primary = null;
    for (let t = 10_000; t < 20_000; t += 100) k.tick(t, t);
    assert.deepEqual(f.sent, []);
  });

  it('the tick reads only peers with a primary session: records of a large list without keys cost it nothing (issue 19)', () => {
    const table = new PeerTable(jsCryptoBackend(), () => {}, () => {});
    const keyed = table.add('1', 'n1', ['10.0.1.0/24'], { host: '192.0.2.1', port: 3406 });
    const records: Peer[] = [];
    for (let k = 2; k < 200; k++) records.push(table.add(String(k), `n${k}`, [`10.1.${k}.0/24`], { host: '192.0.2.9', port: 4000 + k }));
    let reads = 0;
    for (const p of records) {
      Object.defineProperty(p, 'primary', { get: () => (reads++, null), set: () => {}, configurable: true });
    }
    const sent: string[] = [];
    const k = new KeepaliveScheduler(table, (p) => (sent.push(p.id), true), 1000);
    k.tick(0, 0);
    assert.equal(reads, 0, 'no peer without keys was looked at');
    assert.deepEqual(sent, [], 'no session yet');
    const s = table.install(keyed, sessionPair().a, 0);
    k.tick(100, 100);
    assert.deepEqual(sent, ['1'], 'the keyed peer gets its first keepalive');
    assert.deepEqual([...table.withPrimary].map((p) => p.id), ['1']);
    table.retire(s);
    assert.equal(table.withPrimary.size, 0, 'retiring the last session takes the peer out');
    assert.equal(reads, 0);
  });

  it('a session that becomes primary sends its first keepalive on the next turn of the event loop, not at the next tick', async () => {
    const p = await makePair({ keepaliveMs: 60_000, install: false });
    try {
      const frames = (): number => p.net!.sent.filter((d) => d.fromPort === p.a.dp.port && d.data[0] === 0x10 + MessageType.KEEPALIVE).length;
      p.b.dp.installSession('a', p.sessions.b);
      p.a.dp.installSession('b', p.sessions.a, { primary: false });
      await new Promise((r) => setImmediate(r));
      assert.equal(frames(), 0, 'a receive-only session sends nothing');
      p.a.dp.promoteSession('b', p.sessions.a.localIndex);
      await new Promise((r) => setImmediate(r));
      await new Promise((r) => setImmediate(r));
      assert.equal(frames(), 1, 'one keepalive right after the promotion (the timer ticks only every second)');
    } finally {
      p.close();
    }
  });

  it('a pair with keepaliveMs sends authenticated keepalives while idle, counted on both ends', async () => {
    const p = await makePair({ keepaliveMs: 100 });
    try {
      const frames = (fromPort: number): number => p.net!.sent.filter((d) => d.fromPort === fromPort && d.data[0] === 0x10 + MessageType.KEEPALIVE).length;
      await waitFor(() => frames(p.a.dp.port) >= 3 && frames(p.b.dp.port) >= 3, 10_000, 'three keepalives each way');
      // sent is not yet received: wait for b to have authenticated three (delivery is asynchronous, slower under load)
      await waitFor(() => p.b.dp.stats().peers[0]!.keepalivesRx >= 3, 10_000, 'b authenticated three keepalives');
      const a = p.a.dp.stats();
      const b = p.b.dp.stats();
      assert.ok(a.keepalive.sent >= 3 && a.peers[0].keepalivesTx === a.keepalive.sent);
      assert.ok(b.peers[0].keepalivesRx >= 3, 'b authenticated them');
      assert.equal(a.keepalive.intervalMs, 100);
      assert.notEqual(b.peers[0].lastKeepaliveRxMs, null);
      assert.notEqual(a.peers[0].lastKeepaliveTxMs, null);
      assert.equal(b.peers[0].rxPackets, 0, 'keepalives are not packets');
      assert.equal(p.b.tun.written.length, 0);
      assert.deepEqual(b.drops, {});
    } finally {
      p.close();
    }
  });

  it('sends none while traffic flows, and none at all when off', async () => {
    const p = await makePair({ keepaliveMs: 2000 });
    const off = await makePair();
    try {
      const frames = (net: NonNullable<typeof p.net>, port: number): number => net.sent.filter((d) => d.fromPort === port && d.data[0] === 0x10 + MessageType.KEEPALIVE).length;
      // The fresh session's announcement first.
      await waitFor(() => frames(p.net!, p.a.dp.port) === 1, 10_000, 'the first keepalive');
      const t0 = performance.now();
      while (performance.now() - t0 < 2600) {
        p.a.tun.inject([ipv4Packet('10.0.1.5', '10.0.2.9', 56)]);
        p.a.tun.flush();
        off.a.tun.inject([ipv4Packet('10.0.1.5', '10.0.2.9', 56)]);
        off.a.tun.flush();
        await sleep(100);
      }
      assert.equal(frames(p.net!, p.a.dp.port), 1, 'traffic every 100 ms: no keepalive from a');
      assert.ok(p.b.tun.written.length > 0);
      assert.equal(frames(off.net!, off.a.dp.port) + frames(off.net!, off.b.dp.port), 0, 'keepaliveMs 0: none');
      assert.equal(off.a.dp.stats().keepalive.sent, 0);
    } finally {
      p.close();
      off.close();
    }
  });
});
