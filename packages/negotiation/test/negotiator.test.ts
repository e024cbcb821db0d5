import assert from 'node:assert/strict';
import { copyFileSync } from 'node:fs';
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
  /** Every (tx key, send epoch) the node's data plane would send with, in order: `hex(key)/epoch`. */
  sendsWith: string[];
}

function makeNode(
  net: MemoryNetwork,
  name: string,
  opts: { store?: SessionStore; clock?: ManualClock; crypt?: string; comp?: string; trace?: Trace; transport?: (t: NegotiationTransport) => NegotiationTransport; rateMs?: number } = {},
): Node {
  const clock = opts.clock ?? new ManualClock();
  const store = opts.store ?? new MemoryStore();
  const node: Node = { name, neg: undefined as unknown as Negotiator, store, clock, sessions: [], promoted: [], retired: [], txEpochs: [], live: new Map(), primary: undefined, violations: [], sendsWith: [] };
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
        if (o.primary) {
          node.primary = p;
          node.sendsWith.push(`${p.txKey.toString('hex')}/${p.txEpoch}`);
        }
      },
      onPromote: (_peer, idx) => {
        trace.push([name, 'promote', idx]);
        const p = node.live.get(idx);
        if (!p) node.violations.push(`promote of unknown ${idx}`);
        node.promoted.push(idx);
        node.primary = p;
        if (p) node.sendsWith.push(`${p.txKey.toString('hex')}/${p.txEpoch}`);
      },
      onRetire: (_peer, idx) => {
        trace.push([name, 'retire', idx]);
        if (!node.live.delete(idx)) node.violations.push(`retire of unknown ${idx}`);
        if (node.primary?.localIndex === idx) node.primary = undefined;
        node.retired.push(idx);
      },
      onTxEpoch: (_peer, idx, e) => {
        node.txEpochs.push([idx, e]);
        const p = node.live.get(idx);
        if (p) node.sendsWith.push(`${p.txKey.toString('hex')}/${e}`);
        else node.violations.push(`epoch of unknown ${idx}`);
      },
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

  test('a scheduled rekey that fails is retried with growing, bounded back-off until the peer is back', async () => {
    const net = new MemoryNetwork();
    const clock = new ManualClock();
    const attempts: number[] = [];
    const counting = (t: NegotiationTransport): NegotiationTransport => ({
      connect: (peer) => {
        attempts.push(clock.now());
        return t.connect(peer);
      },
    });
    const a = makeNode(net, 'alpha', { clock, transport: counting });
    const b = makeNode(net, 'bravo', { clock });
    await a.neg.ensureSession('bravo');
    await until(() => b.primary !== undefined, 'first session');
    const interval = 3_600_000;
    const keyAge = (): number => clock.now() - a.neg.sessions()[0]!.createdAt;
    // Rounds of the memory network run on setImmediate: let an attempt finish between clock steps.
    const flush = async (): Promise<void> => {
      for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
    };
    attempts.length = 0;
    net.down('alpha');
    net.down('bravo');
    clock.advance(interval * 0.99);
    await flush();
    // Unreachable for the rekey (due within interval + 5 %) and 10 minutes more.
    while (clock.now() - a.neg.sessions()[0]!.createdAt < interval * 1.05 + 600_000) {
      clock.advance(200);
      await flush();
    }
    assert.ok(keyAge() > interval, 'the keys are overdue');
    assert.equal(a.promoted.length, 1, 'no rekey while unreachable');
    const gaps = attempts.slice(1).map((t, i) => t - attempts[i]!);
    assert.ok(attempts.length >= 12, `retried: ${attempts.length} attempts in 10 minutes`);
    assert.ok(gaps[0]! < 2_000 && gaps[1]! > gaps[0]! && gaps[2]! > gaps[1]!, `back-off grows: ${gaps.slice(0, 4).join(', ')}`);
    assert.ok(Math.max(...gaps) <= 66_000, `and is bounded: longest gap ${Math.max(...gaps)} ms`);
    assert.ok(gaps.at(-1)! >= 54_000, `and reaches its bound: ${gaps.at(-1)} ms`);
    // Back: the next retry rekeys; the key age falls under the interval within a bounded time.
    net.down('alpha', false);
    net.down('bravo', false);
    const back = clock.now();
    while (keyAge() >= interval && clock.now() - back < 120_000) {
      clock.advance(200);
      await flush();
    }
    await until(() => a.promoted.length >= 2 && b.promoted.length >= 2, 'rekey after the peer is back');
    assert.ok(clock.now() - back <= 66_000, `rekeyed ${clock.now() - back} ms after the peer came back`);
    assert.ok(keyAge() < interval);
    await settle();
    assertPaired(a.primary!, b.primary!);
    assert.deepEqual(a.violations, []);
    assert.deepEqual(b.violations, []);
    // Replaced: no more retries.
    const n = attempts.length;
    clock.advance(300_000);
    await flush();
    assert.equal(attempts.length, n, 'no retries once the keys were replaced');
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

/** Fails when any (key, epoch) pair appears twice across the given nodes (a nonce reuse). */
function assertNoReuse(...nodes: Node[]): void {
  const seen = new Map<string, string>();
  for (const n of nodes) {
    for (const k of n.sendsWith) {
      assert.ok(!seen.has(k), `(key, epoch) ${k.slice(0, 8)}…/${k.split('/')[1]} used by ${seen.get(k)} and again by ${n.name}`);
      seen.set(k, n.name);
    }
  }
}

describe('restart', () => {
  const t = tempDir('neg-restart-');
  after(t.cleanup);
  const negotiations = (net: MemoryNetwork) => net.log.filter(([, , type]) => type === 'negotiate').length;

  test('restart resumes without renegotiating: installed only once the peer granted an epoch above every one used', async () => {
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
    const runs: Node[] = [a];
    for (let round = 0; round < 3; round++) {
      a.neg.stop();
      store.close();
      const negotiationsBefore = negotiations(net);
      store = StateStore.open(file);
      a = makeNode(net, 'alpha', { store });
      runs.push(a);
      a.neg.start();
      assert.equal(a.sessions.length, 0, 'nothing installed before the grant');
      await until(() => a.primary !== undefined, 'resumed');
      const s = a.sessions[0]!;
      assert.equal(a.sessions.length, 1);
      assert.deepEqual(s.txKey, keyCopy);
      assert.equal(s.localIndex, first.localIndex);
      assert.equal(store.getSession('bravo')!.sendEpoch, s.txEpoch, 'the granted epoch is stored before use');
      const [idx, epoch] = last(b.txEpochs);
      assert.equal(b.txEpochs.length, round + 1, 'the peer moved its send epoch once per restart');
      assert.equal(idx, b.sessions[0]!.localIndex);
      assert.equal(s.rxEpochFloor, epoch, 'we accept from the epoch the peer moved to');
      assert.equal(b.store.getSession('alpha')!.sendEpoch, epoch);
      assert.equal(negotiations(net), negotiationsBefore, 'no renegotiation');
    }
    assertNoReuse(...runs);
    a.neg.stop();
    store.close();
  });

  test('an older copy of state.db never repeats a (key, epoch): the grant comes from the peer, not the file', async () => {
    const net = new MemoryNetwork();
    const file = join(t.dir, 'alpha-old.db');
    const backup = join(t.dir, 'alpha-old.db.backup');
    let store = StateStore.open(file);
    let a = makeNode(net, 'alpha', { store });
    const b = makeNode(net, 'bravo');
    await a.neg.ensureSession('bravo');
    await until(() => b.primary !== undefined, 'session');
    const runs: Node[] = [a];
    const restart = async (): Promise<void> => {
      a.neg.stop();
      store.close();
      store = StateStore.open(file);
      a = makeNode(net, 'alpha', { store });
      runs.push(a);
      a.neg.start();
      await until(() => a.primary !== undefined, 'resumed');
    };
    await restart();
    a.neg.stop();
    store.close();
    copyFileSync(file, backup); // the backup / VM snapshot
    store = StateStore.open(file);
    await restart();
    await restart();
    a.neg.stop();
    store.close();
    copyFileSync(backup, file); // put the old copy back
    store = StateStore.open(file);
    await restart();
    assertNoReuse(...runs);
    assert.equal(negotiations(net), 1, 'still the first session: resumed every time');
    a.neg.stop();
    store.close();
  });

  test('two running clones of one node get different epochs from the peer', async () => {
    const net = new MemoryNetwork();
    const file = join(t.dir, 'alpha-clone.db');
    let store = StateStore.open(file);
    const a = makeNode(net, 'alpha', { store });
    const b = makeNode(net, 'bravo');
    await a.neg.ensureSession('bravo');
    await until(() => b.primary !== undefined, 'session');
    a.neg.stop();
    store.close();
    copyFileSync(file, `${file}.1`);
    copyFileSync(file, `${file}.2`);
    const s1 = StateStore.open(`${file}.1`);
    const s2 = StateStore.open(`${file}.2`);
    const c1 = makeNode(net, 'alpha', { store: s1 });
    c1.neg.start();
    await until(() => c1.primary !== undefined, 'clone 1 resumed');
    const c2 = makeNode(net, 'alpha', { store: s2 });
    c2.neg.start();
    await until(() => c2.primary !== undefined, 'clone 2 resumed');
    assert.deepEqual(c1.primary!.txKey, c2.primary!.txKey, 'same stored keys');
    assert.notEqual(c1.primary!.txEpoch, c2.primary!.txEpoch);
    assertNoReuse(a, c1, c2);
    c1.neg.stop();
    c2.neg.stop();
    s1.close();
    s2.close();
  });

  test('both ends restarted from their files: neither session is live, so they renegotiate fresh keys', async () => {
    const net = new MemoryNetwork();
    const a = makeNode(net, 'alpha');
    const b = makeNode(net, 'bravo');
    await a.neg.ensureSession('bravo');
    await until(() => b.primary !== undefined, 'session');
    const oldKey = Buffer.from(a.primary!.txKey);
    a.neg.stop();
    b.neg.stop();
    const a2 = makeNode(net, 'alpha', { store: a.store });
    const b2 = makeNode(net, 'bravo', { store: b.store });
    a2.neg.start();
    b2.neg.start();
    await until(() => a2.primary !== undefined && b2.primary !== undefined && a2.promoted.length > 0 && b2.promoted.length > 0, 'renegotiation');
    await settle();
    assertPaired(a2.primary!, b2.primary!);
    assert.notDeepEqual(a2.primary!.txKey, oldKey, 'fresh keys');
    assertNoReuse(a, a2);
    assertNoReuse(b, b2);
  });

  test('the peer restarted from an older copy: it reserves above our epoch and we move there, never back', async () => {
    const net = new MemoryNetwork();
    const a = makeNode(net, 'alpha');
    const file = join(t.dir, 'bravo-old.db');
    let store = StateStore.open(file);
    let b = makeNode(net, 'bravo', { store });
    await a.neg.ensureSession('bravo');
    await until(() => b.primary !== undefined, 'session');
    b.neg.stop();
    store.close();
    copyFileSync(file, `${file}.backup`);
    for (let i = 0; i < 2; i++) {
      store = StateStore.open(file);
      b = makeNode(net, 'bravo', { store });
      b.neg.start();
      await until(() => b.primary !== undefined, 'bravo resumed');
      b.neg.stop();
      store.close();
    }
    const epochBefore = a.primary!.txEpoch;
    const movesBefore = a.txEpochs.length;
    copyFileSync(`${file}.backup`, file);
    store = StateStore.open(file);
    b = makeNode(net, 'bravo', { store });
    b.neg.start();
    await until(() => b.primary !== undefined, 'bravo resumed from the old copy');
    assert.equal(a.txEpochs.length, movesBefore + 1, 'alpha moved once more');
    const [, moved] = last(a.txEpochs);
    assert.ok(moved > epochBefore, `alpha moved up (${epochBefore} -> ${moved})`);
    assert.equal(b.primary!.rxEpochFloor, moved);
    assertNoReuse(a);
    b.neg.stop();
    store.close();
  });

  test('a peer that lost the session answers ERR_NO_SESSION and the pair renegotiates', async () => {
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

  test('an unreachable peer: the stored session waits (nothing sent), ensureSession waits for it, resumed once the peer answers', async () => {
    const net = new MemoryNetwork();
    const clock = new ManualClock();
    const a = makeNode(net, 'alpha', { clock });
    const b = makeNode(net, 'bravo');
    await a.neg.ensureSession('bravo');
    await until(() => b.primary !== undefined, 'session');
    a.neg.stop();
    net.down('bravo');
    const a2 = makeNode(net, 'alpha', { store: a.store, clock });
    a2.neg.start();
    const waiting = a2.neg.ensureSession('bravo');
    await settle();
    assert.equal(a2.sessions.length, 0, 'nothing installed while the peer cannot grant');
    net.down('bravo', false);
    clock.advance(5_000);
    const s = await waiting;
    assert.equal(s.localIndex, a.sessions[0]!.localIndex, 'the stored session, resumed');
    assert.equal(negotiations(net), 1);
    assertNoReuse(a, a2);
  });
});
