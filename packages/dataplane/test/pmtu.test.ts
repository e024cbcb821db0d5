import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { jsCryptoBackend } from '../src/backend-js.js';
import { PeerTable, type Peer } from '../src/peer-table.js';
import { OUTER_HEADERS, PMTU_FLOOR, PathMtuSearch, PmtuScheduler, endpointFamily, innerMtuOf, pmtuCeiling, type PmtuTimers } from '../src/pmtu.js';
import { sessionPair } from './pipeline-helpers.js';

const timers: PmtuTimers = { probeTimeoutMs: 1000, probeTries: 3, reprobeMs: 600_000, retryMs: 30_000 };

/**
 * Drives a search against a model path with a fake clock: probes up to
 * `path` bytes are answered after `rtt` ms; larger ones are lost (a router
 * drops them) or, with `localRefusal`, refused at once by the kernel.
 */
function run(
  s: PathMtuSearch,
  path: number,
  opts: { rtt?: number; localRefusal?: boolean; answers?: boolean; start?: number; until?: number } = {},
): { now: number; sizes: number[] } {
  const rtt = opts.rtt ?? 5;
  let now = opts.start ?? 0;
  const sizes: number[] = [];
  const until = opts.until ?? now + 120_000;
  let pending: { id: number; at: number } | null = null;
  while (now < until && s.phase === 'searching') {
    const size = s.tick(now);
    if (size > 0) {
      sizes.push(size);
      if (size > path && opts.localRefusal === true) s.onSent('too-big', now);
      else {
        s.onSent('sent', now);
        if (size <= path && opts.answers !== false) pending = { id: s.probeId, at: now + rtt };
      }
      continue;
    }
    if (pending !== null && pending.at <= now + 10) {
      now = pending.at;
      const p = pending;
      pending = null;
      s.onReply(p.id, now);
      continue;
    }
    now += 10;
  }
  return { now, sizes };
}

describe('path MTU search (fake clock)', () => {
  it('a clean path costs one probe at the ceiling', () => {
    const s = new PathMtuSearch(timers);
    s.start(576, 1484, 0);
    const r = run(s, 1500);
    assert.equal(s.phase, 'fixed');
    assert.equal(s.pmtu, 1484);
    assert.deepEqual(r.sizes, [1484]);
  });

  for (const path of [1280, 1400, 1000, 577]) {
    it(`finds a ${path}-byte path exactly when the router drops larger probes`, () => {
      const s = new PathMtuSearch(timers);
      s.start(576, 1484, 0);
      const r = run(s, path);
      assert.equal(s.phase, 'fixed');
      assert.equal(s.pmtu, path);
      assert.equal(r.sizes[0], 1484, 'the ceiling first');
      assert.equal(r.sizes[3], 576, 'then (after three losses) the floor, to see that the peer answers');
      assert.ok(r.sizes.length < 45, `bounded: ${r.sizes.length} probes`);
      assert.ok(r.now < 40_000, `bounded time: ${r.now} ms`);
    });
  }

  it('a size the kernel refuses (EMSGSIZE) fails at once, without waiting for timeouts', () => {
    const s = new PathMtuSearch(timers);
    s.start(576, 1484, 0);
    const r = run(s, 1280, { localRefusal: true });
    assert.equal(s.pmtu, 1280);
    assert.ok(r.now < 200, `only round trips, no timeouts: ${r.now} ms`);
    assert.equal(r.sizes.filter((x) => x > 1280).length, r.sizes.filter((x, i) => x > 1280 && r.sizes.indexOf(x) === i).length, 'no size above the path twice');
  });

  it('a peer that answers nothing keeps the previous estimate and is asked again after retryMs', () => {
    const s = new PathMtuSearch(timers);
    s.start(576, 1484, 0);
    const r = run(s, 1500, { answers: false });
    assert.equal(s.phase, 'unknown', 'nothing learnt');
    assert.equal(s.pmtu, 0);
    assert.deepEqual(r.sizes, [1484, 1484, 1484, 576, 576, 576]);
    assert.ok(s.doneAtMs > 0 && s.doneAtMs <= r.now);
    assert.equal(s.due(s.doneAtMs + timers.retryMs - 1), false);
    assert.equal(s.due(s.doneAtMs + timers.retryMs), true);
  });

  it('re-probes after reprobeMs, keeping the old value until the new search ends; expire() makes it due at once', () => {
    const s = new PathMtuSearch(timers);
    s.start(576, 1484, 0);
    let r = run(s, 1400);
    assert.equal(s.pmtu, 1400);
    const done = s.doneAtMs;
    assert.equal(s.due(done + timers.reprobeMs - 1), false);
    assert.equal(s.due(done + timers.reprobeMs), true);
    s.start(576, 1484, done + timers.reprobeMs);
    assert.equal(s.tick(done + timers.reprobeMs), 1484);
    assert.equal(s.pmtu, 1400, 'in force while searching');
    r = run(s, 1300, { start: done + timers.reprobeMs });
    assert.equal(s.pmtu, 1300, 'the path shrank');
    assert.equal(s.due(r.now + 1), false);
    s.expire();
    assert.equal(s.due(r.now + 1), true);
  });

  it('ignores replies to other probe ids (stale or forged inside a session)', () => {
    const s = new PathMtuSearch(timers);
    s.start(576, 1484, 0);
    assert.equal(s.tick(0), 1484);
    s.onSent('sent', 0);
    s.onReply(s.probeId + 1, 5);
    assert.equal(s.phase, 'searching');
    s.onReply(s.probeId, 6);
    assert.equal(s.pmtu, 1484);
  });

  it('inner MTU: path minus outer IP/UDP and 36 bytes, at most the configured MTU', () => {
    assert.equal(innerMtuOf(1280, 4, 1420), 1280 - 28 - 36);
    assert.equal(innerMtuOf(1400, 4, 1420), 1400 - 28 - 36);
    assert.equal(innerMtuOf(1400, 6, 1420), 1400 - 48 - 36);
    assert.equal(innerMtuOf(1500, 4, 1420), 1420);
    assert.equal(innerMtuOf(0, 4, 1420), 1420, 'unknown: the configured MTU');
    assert.equal(pmtuCeiling(4, 1420), 1484);
    assert.equal(pmtuCeiling(6, 1420), 1504);
    assert.deepEqual(PMTU_FLOOR, { 4: 576, 6: 1280 });
  });
});

describe('path MTU scheduler (fake sender and clock)', () => {
  /** A peer table with one keyed peer at an IPv4 endpoint and a sender that models a path of `path` bytes. */
  function setup(path: { v: number }, refuseLocally = false) {
    const peers = new PeerTable(jsCryptoBackend(), () => {}, () => {});
    const peer = peers.add('b', 'b', ['10.0.2.0/24'], { host: '192.0.2.2', port: 3406 });
    peers.install(peer, sessionPair().a, 0);
    const replies: Array<{ id: number; at: number }> = [];
    let tooBig = 0;
    let now = 0;
    const sender = {
      sendProbe(p: Peer, payloadLen: number, id: number): 'sent' | 'too-big' | 'failed' {
        const size = payloadLen + 36 + OUTER_HEADERS[endpointFamily(p)];
        if (size > path.v) {
          if (refuseLocally) return 'too-big';
          return 'sent';
        }
        replies.push({ id, at: now + 5 });
        return 'sent';
      },
      sendProbeReply: () => true,
      tooBigCount: () => tooBig,
    };
    const sched = new PmtuScheduler(peers, sender, 1420, timers);
    const run = (until: number): void => {
      for (; now < until; now += 10) {
        sched.tick(now);
        while (replies.length > 0 && replies[0]!.at <= now + 10) sched.onReply(peer, replies.shift()!.id);
      }
    };
    return { peers, peer, sched, run, bumpTooBig: () => tooBig++, now: () => now };
  }

  it('publishes the inner MTU on the peer and voids the express send leases when it changes', () => {
    const path = { v: 1280 };
    const s = setup(path, true);
    const gen0 = s.peers.expressTxGen[0]!;
    assert.equal(s.peer.innerMtu, 65535, 'no estimate yet');
    s.run(5_000);
    assert.equal(s.peer.pmtu?.pmtu, 1280);
    assert.equal(s.peer.innerMtu, 1216);
    assert.ok(s.peers.expressTxGen[0]! > gen0, 'express send leases voided');
  });

  it('searches again for every peer when the socket reports EMSGSIZE on data, and when the endpoint moves', () => {
    const path = { v: 1400 };
    const s = setup(path, true);
    s.run(5_000);
    assert.equal(s.peer.innerMtu, 1400 - 64);
    path.v = 1300;
    s.run(10_000);
    assert.equal(s.peer.innerMtu, 1400 - 64, 'nothing asked for a new search yet');
    s.bumpTooBig();
    s.run(15_000);
    assert.equal(s.peer.innerMtu, 1300 - 64, 'EMSGSIZE on data: searched again');
    path.v = 1500;
    s.peers.setEndpoint(s.peer, '192.0.2.9', 3406);
    s.run(20_000);
    assert.equal(s.peer.innerMtu, 1420, 'the new endpoint has a clean path');
  });

  it('an IPv6 endpoint: floor 1280, 48 bytes of outer headers', () => {
    const path = { v: 1400 };
    const s = setup(path, true);
    s.peers.setEndpoint(s.peer, '2001:db8::2', 3406);
    s.run(5_000);
    assert.equal(s.peer.pmtu?.pmtu, 1400);
    assert.equal(s.peer.innerMtu, 1400 - 48 - 36);
    path.v = 1000;
    s.peers.setEndpoint(s.peer, '2001:db8::3', 3406);
    s.run(10_000);
    assert.equal(s.peer.pmtu?.pmtu, 1400, 'not even the IPv6 floor got through: nothing learnt, the previous estimate stays');
  });
});
