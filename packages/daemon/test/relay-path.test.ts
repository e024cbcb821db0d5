/**
 * Path selection for relayed data (src/relay-path.ts), driven tick by tick
 * with a fake data plane: when a peer goes `via R`, back to direct, and
 * from one relay to another.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { silentLogger } from '../src/logging.js';
import { PATH_GRACE_MS, createPathSelector, type PathPeer } from '../src/relay-path.js';

const K = 2_000; // keepalive
const DEAD = 2 * K + 1_000;

function fake() {
  const t0 = 1_000_000;
  const peers = new Map<string, PathPeer>();
  const add = (id: string, name: string, lastDirectRxMs: number): PathPeer => {
    const p = { id, name, keyed: true, installedAtMs: t0, lastDirectRxMs, relay: null, hasEndpoint: true };
    peers.set(name, p);
    return p;
  };
  const calls: Array<[string, string | null]> = [];
  const probes: string[] = [];
  let relaying: boolean | undefined;
  const sel = createPathSelector(
    {
      logger: silentLogger,
      keepaliveMs: K,
      peers: () => [...peers.values()],
      relaysFor: (name) => ['rho', 'sigma'].filter((r) => r !== name),
      isRelayNode: (name) => name === 'rho' || name === 'sigma',
      isRelay: () => false,
      setPath: (id, relayId) => {
        calls.push([id, relayId]);
        for (const p of peers.values()) if (p.id === id) p.relay = relayId;
      },
      setRelaying: (on) => void (relaying = on),
      probe: (id) => (probes.push(id), true),
    },
    false,
  );
  return { t0, peers, add, calls, probes, sel, relaying: () => relaying };
}

test('a peer never heard directly goes via the first live relay after the grace period, is probed directly, and comes back on a direct datagram', () => {
  const f = fake();
  const rho = f.add('1', 'rho', f.t0);
  f.add('4', 'sigma', f.t0);
  const c = f.add('3', 'charlie', 0);
  f.sel.tick(f.t0 + 1_000);
  assert.equal(f.relaying(), false, 'the relay role follows the list');
  assert.deepEqual(f.calls, [], 'punching still has its chance');
  rho.lastDirectRxMs = sigmaFresh(f, f.t0 + PATH_GRACE_MS + 500);
  f.sel.tick(f.t0 + PATH_GRACE_MS + 500);
  assert.deepEqual(f.calls, [['3', '1']], 'via rho (the first relay)');
  f.sel.tick(f.t0 + PATH_GRACE_MS + 600);
  assert.deepEqual(f.probes, ['3'], 'a direct probe at the next tick');
  f.sel.tick(f.t0 + PATH_GRACE_MS + 700);
  assert.deepEqual(f.probes, ['3'], 'probes are spaced');
  // a direct datagram after the switch: back to direct
  c.lastDirectRxMs = f.t0 + PATH_GRACE_MS + 800;
  f.sel.tick(f.t0 + PATH_GRACE_MS + 900);
  assert.deepEqual(f.calls.at(-1), ['3', null]);
  assert.deepEqual(f.sel.stats(), { toRelay: 1, toDirect: 1, failovers: 0 });
});

/** Marks both relays heard at `now` and returns it. */
function sigmaFresh(f: ReturnType<typeof fake>, now: number): number {
  f.peers.get('sigma')!.lastDirectRxMs = now;
  return now;
}

test('a direct path that stops working goes via a relay; a relay that stops answering is replaced by the next', () => {
  const f = fake();
  const rho = f.add('1', 'rho', f.t0);
  const sigma = f.add('4', 'sigma', f.t0);
  const d = f.add('6', 'delta', f.t0 + 5_000);
  let now = f.t0 + 5_000 + DEAD - 100;
  rho.lastDirectRxMs = sigma.lastDirectRxMs = now;
  f.sel.tick(now);
  assert.deepEqual(f.calls, [], 'heard directly within 2 × keepalive + 1 s: direct');
  now = f.t0 + 5_000 + DEAD + 100;
  rho.lastDirectRxMs = sigma.lastDirectRxMs = now;
  f.sel.tick(now);
  assert.deepEqual(f.calls, [['6', '1']]);
  // rho goes silent, sigma keeps answering
  now += DEAD + 100;
  sigma.lastDirectRxMs = now;
  f.sel.tick(now);
  assert.deepEqual(f.calls.at(-1), ['6', '4'], 'failover to sigma');
  assert.equal(d.relay, '4');
  assert.equal(f.sel.stats().failovers, 1);
  // a relay is never relayed through another, and a peer that loses its keys goes direct
  d.keyed = false;
  f.sel.tick(now + 10);
  assert.deepEqual(f.calls.at(-1), ['6', null]);
  assert.equal(rho.relay, null);
});

test('without keepalives nothing is relayed (silence says nothing)', () => {
  const calls: unknown[] = [];
  const sel = createPathSelector(
    {
      logger: silentLogger,
      keepaliveMs: 0,
      peers: () => [
        { id: '1', name: 'rho', keyed: true, installedAtMs: 0, lastDirectRxMs: Date.now(), relay: null, hasEndpoint: true },
        { id: '3', name: 'charlie', keyed: true, installedAtMs: 0, lastDirectRxMs: 0, relay: null, hasEndpoint: true },
      ],
      relaysFor: () => ['rho'],
      isRelayNode: (n) => n === 'rho',
      isRelay: () => true,
      setPath: (...a) => void calls.push(a),
      setRelaying: () => undefined,
      probe: () => true,
    },
    false,
  );
  sel.tick(Date.now());
  assert.deepEqual(calls, []);
});

test('a relayed peer without an endpoint is not probed (the probe could only count a drop)', () => {
  const f = fake();
  f.add('1', 'rho', f.t0);
  const c = f.add('3', 'charlie', 0);
  c.hasEndpoint = false;
  const now = f.t0 + PATH_GRACE_MS + 500;
  f.peers.get('rho')!.lastDirectRxMs = now;
  f.sel.tick(now);
  assert.deepEqual(f.calls, [['3', '1']]);
  f.sel.tick(now + 2_000);
  assert.deepEqual(f.probes, []);
  c.hasEndpoint = true;
  f.sel.tick(now + 4_000);
  assert.deepEqual(f.probes, ['3']);
});
