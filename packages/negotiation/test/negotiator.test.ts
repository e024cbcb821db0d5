import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { Negotiator, StateStore, parseCompAlgos, parseCryptAlgos, type NegotiationTransport, type SessionParams, type SessionStore } from '../src/index.js';
import { ManualClock, MemoryNetwork, MemoryStore } from '../src/testing.js';
import { tempDir } from './helpers.js';

/** Every event of every node, in order: [node, event, localIndex]. */
type Trace = Array<[string, 'install-primary' | 'install-receive' | 'promote' | 'retire', number]>;

interface Node {
  name: string;
  neg: Negotiator;
  store: SessionStore;
  clock: ManualClock;
  /** Every session installed, in order. */
  sessions: SessionParams[];
  /** Local indexes promoted, in order. */
  promoted: number[];
  retired: number[];
  txEpochs: Array<[number, number]>;
  /** What a data plane would hold: installed, not retired. */
  live: Map<number, SessionParams>;
  /** The data plane's primary (sending) session. */
  primary: SessionParams | undefined;
  /** Events a data plane would refuse (promote/retire of an unknown index, double install). */
  violations: string[];
}

function makeNode(
  net: MemoryNetwork,
  name: string,
  opts: { store?: SessionStore; clock?: ManualClock; crypt?: string; comp?: string; trace?: Trace; transport?: (t: NegotiationTransport) => NegotiationTransport; rateMs?: number } = {},
): Node {
  const clock = opts.clock ?? new ManualClock();
  const store = opts.store ?? new MemoryStore();
  const node: Node = { name, neg: undefined as unknown as Negotiator, store, clock, sessions: [], promoted: [], retired: [], txEpochs: [], live: new Map(), primary: undefined, violations: [] };
  const trace = opts.trace ?? [];
  const ep = net.node(name);
  node.neg = new Negotiator({
    localName: name,
    cryptAlgos: parseCryptAlgos(opts.crypt ?? 'aes256gcm:256:20 chacha20poly1305:256:10'),
    compAlgos: parseCompAlgos(opts.comp ?? 'none:0:5 lz4:1:2'),
    store,
    transport: opts.transport ? opts.transport(ep.transport) : ep.transport,
    clock,
    rekeyIntervalMs: 3_600_000,
    overlapMs: 30_000,
    triggeredRekeyMinIntervalMs: opts.rateMs ?? 30_000,
    events: {
      onSession: (_peer, p, o) => {
        trace.push([name, o.primary ? 'install-primary' : 'install-receive', p.localIndex]);
        if (node.live.has(p.localIndex)) node.violations.push(`install of live ${p.localIndex}`);
        node.sessions.push(p);
        node.live.set(p.localIndex, p);
        if (o.primary) node.primary = p;
      },
      onPromote: (_peer, idx) => {
        trace.push([name, 'promote', idx]);
        const p = node.live.get(idx);
        if (!p) node.violations.push(`promote of unknown ${idx}`);
        node.promoted.push(idx);
        node.primary = p;
      },
      onRetire: (_peer, idx) => {
        trace.push([name, 'retire', idx]);
        if (!node.live.delete(idx)) node.violations.push(`retire of unknown ${idx}`);
        if (node.primary?.localIndex === idx) node.primary = undefined;
        node.retired.push(idx);
      },
      onTxEpoch: (_peer, idx, e) => node.txEpochs.push([idx, e]),
    },
  });
  node.neg.attach(ep);
  return node;
}

/** After the overlap: a node holds exactly its primary, and every other session it installed was retired with zeroed keys. */
function assertClean(n: Node): void {
  assert.deepEqual(n.violations, []);
  assert.ok(n.primary, `${n.name} has a primary`);
  assert.deepEqual([...n.live.keys()], [n.primary.localIndex], `${n.name} holds only its primary`);
  for (const s of n.sessions) {
    if (s === n.primary) continue;
    assert.ok(n.retired.includes(s.localIndex), `${n.name}: session ${s.localIndex} retired`);
    assert.deepEqual(s.txKey, Buffer.alloc(32), 'retired tx key zeroed');
    assert.deepEqual(s.rxKey, Buffer.alloc(32), 'retired rx key zeroed');
  }
}

async function until(cond: () => boolean, what: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

const settle = () => new Promise((r) => setTimeout(r, 30));

function assertPaired(a: SessionParams, b: SessionParams): void {
  assert.deepEqual(a.txKey, b.rxKey);
  assert.deepEqual(a.rxKey, b.txKey);
  assert.notDeepEqual(a.txKey, a.rxKey);
  assert.equal(a.localIndex, b.remoteIndex);
  assert.equal(a.remoteIndex, b.localIndex);
  assert.equal(a.cipher, b.cipher);
  assert.deepEqual(a.compression, b.compression);
}

const last = <T>(xs: T[]): T => xs[xs.length - 1]!;

describe('Negotiator', () => {
  test('a negotiation gives both ends the same keys, once (deduplicated)', async () => {
    const net = new MemoryNetwork();
    const a = makeNode(net, 'alpha');
    const b = makeNode(net, 'bravo', { crypt: 'chacha20poly1305:256:50 aes256gcm:256:1', comp: 'lz4:4:9 none:0:1' });
    const [s1, s2] = await Promise.all([a.neg.ensureSession('bravo'), a.neg.ensureSession('bravo')]);
    assert.deepEqual(s1, s2);
    await until(() => b.primary !== undefined, 'responder promotion');
    assert.equal(a.sessions.length, 1);
    assert.equal(b.sessions.length, 1);
    assert.equal(a.primary, a.sessions[0]);
    assertPaired(a.sessions[0]!, b.sessions[0]!);
    assert.equal(a.sessions[0]!.cipher, 'chacha20-poly1305'); // 10+50 > 20+1
    assert.deepEqual(a.sessions[0]!.compression, { algo: 'lz4', level: 4 });
    assert.equal(a.sessions[0]!.txEpoch, 1);
    assert.equal(net.log.filter(([, , t]) => t === 'negotiate').length, 1);
    await a.neg.ensureSession('bravo');
    assert.equal(net.log.filter(([, , t]) => t === 'negotiate').length, 1);
    assert.deepEqual(a.store.getSession('bravo')!.txKey, a.sessions[0]!.txKey);
    assert.deepEqual(b.store.getSession('alpha')!.txKey, b.sessions[0]!.txKey);
    assertClean(a);
    assertClean(b);
  });

  test('no side ever sends with keys the other does not accept: install receive-only, then promote in order', async () => {
    for (const [initiator, responder] of [
      ['alpha', 'bravo'],
      ['bravo', 'alpha'],
    ] as const) {
      const net = new MemoryNetwork(() => Math.floor(Math.random() * 3));
      const trace: Trace = [];
      const clock = new ManualClock();
      const nodes = { alpha: makeNode(net, 'alpha', { trace, clock }), bravo: makeNode(net, 'bravo', { trace, clock }) };
      const i = nodes[initiator];
      const r = nodes[responder];
      await i.neg.ensureSession(responder);
      await until(() => r.primary !== undefined, 'responder promotion');
      for (let round = 0; round < 3; round++) {
        clock.advance(30_000); // past the rate limit; the previous round's old sessions retire
        trace.length = 0;
        assert.equal(i.neg.requestRekey(responder, 'manual'), true);
        await until(() => i.promoted.length === round + 2 && r.promoted.length === round + 2, 'rekey');
        const ri = r.primary!.localIndex;
        const ii = i.primary!.localIndex;
        assert.deepEqual(trace, [
          [responder, 'install-receive', ri], // before it answers: the initiator may send on the new keys from then on
          [initiator, 'install-receive', ii], // before it confirms: the responder may send on the new keys from then on
          [responder, 'promote', ri],
          [initiator, 'promote', ii],
        ]);
        assertPaired(i.primary!, r.primary!);
      }
      clock.advance(30_000);
      assertClean(i);
      assertClean(r);
    }
  });

  test('simultaneous negotiations from both ends converge on one key pair', async () => {
    let collisions = 0;
    for (let i = 0; i < 40; i++) {
      const net = new MemoryNetwork(() => Math.floor(Math.random() * 3));
      const a = makeNode(net, 'alpha');
      const b = makeNode(net, 'bravo');
      await Promise.all([a.neg.ensureSession('bravo'), b.neg.ensureSession('alpha')]);
      await settle();
      assert.ok(a.primary && b.primary);
      assertPaired(a.primary, b.primary);
      assert.deepEqual(a.store.getSession('bravo')!.txKey, b.store.getSession('alpha')!.rxKey);
      a.clock.advance(30_000);
      b.clock.advance(30_000);
      assertClean(a);
      assertClean(b);
      const sa = a.neg.stats();
      const sb = b.neg.stats();
      collisions += sa.conflicts + sb.conflicts + sa.abandoned + sb.abandoned;
    }
    assert.ok(collisions > 0, 'the runs must include real collisions');
  });

  test('simultaneous rekeys from both ends converge too', async () => {
    for (let i = 0; i < 20; i++) {
      const net = new MemoryNetwork(() => Math.floor(Math.random() * 3));
      const a = makeNode(net, 'alpha');
      const b = makeNode(net, 'bravo');
      await a.neg.ensureSession('bravo');
      await until(() => b.primary !== undefined, 'first session');
      assert.equal(a.neg.requestRekey('bravo', 'manual'), true);
      assert.equal(b.neg.requestRekey('alpha', 'auth-failures'), true);
      await until(() => a.promoted.length >= 2 && b.promoted.length >= 2, 'rekey');
      await settle();
      assertPaired(a.primary!, b.primary!);
      a.clock.advance(30_000);
      b.clock.advance(30_000);
      assertClean(a);
      assertClean(b);
    }
  });

  test('rekey after the interval without loss: old session accepted for the overlap, then retired and zeroed', async () => {
    const net = new MemoryNetwork();
    const clock = new ManualClock();
    const a = makeNode(net, 'alpha', { clock });
    const b = makeNode(net, 'bravo', { clock });
    await a.neg.ensureSession('bravo');
    await until(() => b.primary !== undefined, 'first session');
    const oldA = a.sessions[0]!;
    const oldB = b.sessions[0]!;
    const oldKey = Buffer.from(oldA.txKey);
    clock.advance(3_600_000 * 1.06); // interval + max jitter: both timers fire, tie-break resolves it
    await until(() => a.promoted.length >= 2 && b.promoted.length >= 2, 'rekey');
    await settle();
    assertPaired(a.primary!, b.primary!);
    assert.notDeepEqual(a.primary!.txKey, oldKey);
    // overlap: old sessions still installed, keys intact, so in-flight packets still decrypt
    assert.ok(a.live.has(oldA.localIndex) && b.live.has(oldB.localIndex));
    assert.deepEqual(oldA.txKey, oldKey);
    clock.advance(30_000);
    assert.ok(a.retired.includes(oldA.localIndex));
    assert.ok(b.retired.includes(oldB.localIndex));
    assert.deepEqual(oldA.txKey, Buffer.alloc(32));
    assert.deepEqual(oldB.rxKey, Buffer.alloc(32));
    assert.equal(a.store.getSession('bravo')!.localIndex, a.primary!.localIndex);
    assertClean(a);
    assertClean(b);
  });

  test('triggered rekeys are rate-limited', async () => {
    const net = new MemoryNetwork();
    const clock = new ManualClock();
    const a = makeNode(net, 'alpha', { clock });
    makeNode(net, 'bravo', { clock });
    await a.neg.ensureSession('bravo');
    assert.equal(a.neg.requestRekey('bravo', 'auth-failures'), true);
    await until(() => a.promoted.length === 2, 'rekey');
    assert.equal(a.neg.requestRekey('bravo', 'auth-failures'), false);
    assert.equal(a.neg.stats().rekeysRateLimited, 1);
    clock.advance(30_000);
    assert.equal(a.neg.requestRekey('bravo', 'counter-limit'), true);
    await until(() => a.promoted.length === 3, 'second rekey');
    assert.deepEqual(a.neg.stats().rekeys, { 'auth-failures': 1, 'counter-limit': 1 });
  });

  test('no common algorithm: clear error, no session', async () => {
    const net = new MemoryNetwork();
    const a = makeNode(net, 'alpha', { crypt: 'aes256gcm:256:1' });
    const b = makeNode(net, 'bravo', { crypt: 'chacha20poly1305:256:1' });
    await assert.rejects(a.neg.ensureSession('bravo'), (err: unknown) => (err as { remoteCode?: string }).remoteCode === 'ERR_NO_COMMON_ALGO');
    assert.equal(a.sessions.length + b.sessions.length, 0);
  });

  test('unreachable peer: the negotiation fails with the channel error', async () => {
    const net = new MemoryNetwork();
    const a = makeNode(net, 'alpha');
    makeNode(net, 'bravo');
    net.down('bravo');
    await assert.rejects(a.neg.ensureSession('bravo'), { code: 'ERR_CHANNEL_CLOSED' });
  });

  /** A transport whose next `negotiate-confirm` fails: before reaching the peer ('request') or after it was handled ('answer'). */
  function losingConfirm(mode: { lose: 'request' | 'answer' | null }) {
    return (t: NegotiationTransport): NegotiationTransport => ({
      connect: async (peer) => {
        const ch = await t.connect(peer);
        return {
          exporter: ch.exporter,
          close: () => ch.close(),
          request: async (type, body) => {
            if (type !== 'negotiate-confirm' || mode.lose === null) return ch.request(type, body);
            const lose = mode.lose;
            mode.lose = null;
            if (lose === 'answer') await ch.request(type, body);
            ch.close();
            throw new Error(`confirm ${lose} lost`);
          },
        };
      },
    });
  }

  test('a receive-only session whose confirm is lost is retired and zeroed on both sides, and the pair renegotiates', async () => {
    const net = new MemoryNetwork();
    const clock = new ManualClock();
    const mode = { lose: null as 'request' | 'answer' | null };
    const a = makeNode(net, 'alpha', { clock, transport: losingConfirm(mode) });
    const b = makeNode(net, 'bravo', { clock });
    await a.neg.ensureSession('bravo');
    await until(() => b.primary !== undefined, 'first session');
    const first = a.primary!;
    clock.advance(30_000);
    mode.lose = 'request';
    assert.equal(a.neg.requestRekey('bravo', 'manual'), true);
    await until(() => a.sessions.length === 2 && b.retired.length === 1, 'responder dropped its pending session');
    const [lostA, lostB] = [a.sessions[1]!, b.sessions[1]!];
    assert.deepEqual(b.retired, [lostB.localIndex]);
    assert.deepEqual(lostB.rxKey, Buffer.alloc(32), 'responder zeroed the unconfirmed keys');
    assert.equal(a.primary, first, 'the initiator keeps sending with the old session');
    assert.equal(b.primary, b.sessions[0], 'the responder keeps sending with the old session');
    assert.ok(a.live.has(lostA.localIndex), 'the initiator accepts the unconfirmed session for the overlap');
    clock.advance(1_000); // renegotiation
    await until(() => a.promoted.length === 2 && b.promoted.length === 2, 'renegotiated');
    assertPaired(a.primary!, b.primary!);
    assert.equal(a.neg.stats().rekeys['confirm-failed'], 1);
    clock.advance(30_000);
    assert.ok(a.retired.includes(lostA.localIndex));
    assert.deepEqual(lostA.txKey, Buffer.alloc(32), 'initiator zeroed the unconfirmed keys');
    assertClean(a);
    assertClean(b);
    assert.equal(a.store.getSession('bravo')!.localIndex, a.primary!.localIndex);
  });

  test('a lost confirm answer: the initiator promotes the session once the peer is seen using it', async () => {
    const net = new MemoryNetwork();
    const clock = new ManualClock();
    const mode = { lose: null as 'request' | 'answer' | null };
    const a = makeNode(net, 'alpha', { clock, transport: losingConfirm(mode) });
    const b = makeNode(net, 'bravo', { clock });
    await a.neg.ensureSession('bravo');
    await until(() => b.primary !== undefined, 'first session');
    clock.advance(30_000);
    mode.lose = 'answer';
    assert.equal(a.neg.requestRekey('bravo', 'manual'), true);
    await until(() => b.promoted.length === 2 && a.sessions.length === 2, 'responder promoted');
    await settle();
    const pendingA = a.sessions[1]!;
    assert.equal(a.primary, a.sessions[0], 'not promoted without the answer');
    assertPaired(pendingA, b.primary!);
    a.neg.noteRxEpoch('bravo', pendingA.localIndex, 1); // the data plane authenticated a packet on it
    assert.equal(a.primary, pendingA);
    assert.equal(a.store.getSession('bravo')!.localIndex, pendingA.localIndex);
    const negotiations = net.log.filter(([, , t]) => t === 'negotiate').length;
    clock.advance(1_000);
    await settle();
    assert.equal(net.log.filter(([, , t]) => t === 'negotiate').length, negotiations, 'no needless renegotiation');
    clock.advance(30_000);
    assertClean(a);
    assertClean(b);
  });

  test('rekeys faster than the overlap keep at most two replaced sessions receiving (the data plane table holds four)', async () => {
    const net = new MemoryNetwork();
    const clock = new ManualClock();
    const a = makeNode(net, 'alpha', { clock, rateMs: 0 });
    const b = makeNode(net, 'bravo', { clock, rateMs: 0 });
    await a.neg.ensureSession('bravo');
    await until(() => b.primary !== undefined, 'first session');
    for (let round = 0; round < 5; round++) {
      assert.equal(a.neg.requestRekey('bravo', 'manual'), true);
      await until(() => a.promoted.length === round + 2 && b.promoted.length === round + 2, 'rekey');
      for (const n of [a, b]) assert.ok(n.live.size <= 3, `${n.name} holds ${n.live.size} sessions`);
    }
    assert.equal(a.retired.length, 3, 'the three oldest retired before their overlap ended');
    assert.deepEqual(a.sessions[0]!.txKey, Buffer.alloc(32));
    clock.advance(30_000);
    assertClean(a);
    assertClean(b);
  });

  test('removePeer retires now, zeroes and forgets', async () => {
    const net = new MemoryNetwork();
    const a = makeNode(net, 'alpha');
    makeNode(net, 'bravo');
    await a.neg.ensureSession('bravo');
    const s = a.sessions[0]!;
    a.neg.removePeer('bravo');
    assert.deepEqual(a.retired, [s.localIndex]);
    assert.deepEqual(s.rxKey, Buffer.alloc(32));
    assert.equal(a.store.getSession('bravo'), undefined);
  });
});

describe('restart', () => {
  const t = tempDir('neg-restart-');
  after(t.cleanup);

  test('restart restores without renegotiating, bumps epochs, raises floors, and moves the peer', async () => {
    const net = new MemoryNetwork();
    const file = join(t.dir, 'alpha.db');
    let store = StateStore.open(file);
    let a = makeNode(net, 'alpha', { store });
    const b = makeNode(net, 'bravo');
    await a.neg.ensureSession('bravo');
    await until(() => b.primary !== undefined, 'session');
    const first = a.sessions[0]!;
    const keyCopy = Buffer.from(first.txKey);
    a.neg.noteRxEpoch('bravo', first.localIndex, 1);
    const seenEpochs: number[] = [1];
    for (let round = 0; round < 3; round++) {
      a.neg.stop();
      store.close();
      const negotiationsBefore = net.log.filter(([, , type]) => type === 'negotiate').length;
      store = StateStore.open(file);
      a = makeNode(net, 'alpha', { store });
      a.neg.start();
      assert.equal(a.sessions.length, 1);
      const s = a.sessions[0]!;
      assert.equal(a.primary, s, 'restored as the primary at once');
      assert.deepEqual(s.txKey, keyCopy);
      assert.equal(s.localIndex, first.localIndex);
      assert.ok(s.txEpoch > Math.max(...seenEpochs), `epoch ${s.txEpoch} must exceed ${seenEpochs.join(',')}`);
      seenEpochs.push(s.txEpoch);
      assert.equal(s.rxEpochFloor, 2 + round);
      await until(() => b.txEpochs.length === round + 1, 'epoch-bump at the peer');
      const [idx, epoch] = last(b.txEpochs);
      assert.equal(idx, b.sessions[0]!.localIndex);
      assert.ok(epoch >= s.rxEpochFloor);
      assert.equal(b.store.getSession('alpha')!.sendEpoch, epoch);
      assert.equal(net.log.filter(([, , type]) => type === 'negotiate').length, negotiationsBefore);
    }
    a.neg.stop();
    store.close();
  });

  test('a peer that lost the session answers the epoch-bump with ERR_NO_SESSION and the pair renegotiates', async () => {
    const net = new MemoryNetwork();
    const a = makeNode(net, 'alpha');
    let b = makeNode(net, 'bravo');
    await a.neg.ensureSession('bravo');
    await until(() => b.primary !== undefined, 'session');
    a.neg.stop();
    b.neg.stop();
    const a2 = makeNode(net, 'alpha', { store: a.store });
    b = makeNode(net, 'bravo'); // fresh, empty store
    a2.neg.start();
    await until(() => a2.promoted.length === 1 && b.promoted.length === 1, 'renegotiation');
    assertPaired(a2.primary!, b.primary!);
  });
});
