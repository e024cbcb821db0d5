import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { Negotiator, StateStore, parseCompAlgos, parseCryptAlgos, type SessionParams, type SessionStore } from '../src/index.js';
import { ManualClock, MemoryNetwork, MemoryStore } from '../src/testing.js';
import { tempDir } from './helpers.js';

interface Node {
  name: string;
  neg: Negotiator;
  store: SessionStore;
  clock: ManualClock;
  sessions: SessionParams[];
  retired: number[];
  txEpochs: Array<[number, number]>;
}

function makeNode(net: MemoryNetwork, name: string, opts: { store?: SessionStore; clock?: ManualClock; crypt?: string; comp?: string } = {}): Node {
  const clock = opts.clock ?? new ManualClock();
  const store = opts.store ?? new MemoryStore();
  const node: Node = { name, neg: undefined as unknown as Negotiator, store, clock, sessions: [], retired: [], txEpochs: [] };
  const ep = net.node(name);
  node.neg = new Negotiator({
    localName: name,
    cryptAlgos: parseCryptAlgos(opts.crypt ?? 'aes256gcm:256:20 chacha20poly1305:256:10'),
    compAlgos: parseCompAlgos(opts.comp ?? 'none:0:5 lz4:1:2'),
    store,
    transport: ep.transport,
    clock,
    rekeyIntervalMs: 3_600_000,
    overlapMs: 30_000,
    events: {
      onSession: (_peer, p) => node.sessions.push(p),
      onRetire: (_peer, idx) => node.retired.push(idx),
      onTxEpoch: (_peer, idx, e) => node.txEpochs.push([idx, e]),
    },
  });
  node.neg.attach(ep);
  return node;
}

async function until(cond: () => boolean, what: string, ms = 3000): Promise<void> {
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
    await until(() => b.sessions.length === 1, 'responder install');
    assert.equal(a.sessions.length, 1);
    assertPaired(a.sessions[0]!, b.sessions[0]!);
    assert.equal(a.sessions[0]!.cipher, 'chacha20-poly1305'); // 10+50 > 20+1
    assert.deepEqual(a.sessions[0]!.compression, { algo: 'lz4', level: 4 });
    assert.equal(a.sessions[0]!.txEpoch, 1);
    assert.equal(net.log.filter(([, , t]) => t === 'negotiate').length, 1);
    await a.neg.ensureSession('bravo');
    assert.equal(net.log.filter(([, , t]) => t === 'negotiate').length, 1);
    assert.deepEqual(a.store.getSession('bravo')!.txKey, a.sessions[0]!.txKey);
    assert.deepEqual(b.store.getSession('alpha')!.txKey, b.sessions[0]!.txKey);
  });

  test('simultaneous negotiations from both ends converge on one key pair', async () => {
    let collisions = 0;
    for (let i = 0; i < 40; i++) {
      const net = new MemoryNetwork(() => Math.floor(Math.random() * 3));
      const a = makeNode(net, 'alpha');
      const b = makeNode(net, 'bravo');
      await Promise.all([a.neg.ensureSession('bravo'), b.neg.ensureSession('alpha')]);
      await settle();
      assert.ok(a.sessions.length >= 1 && b.sessions.length >= 1);
      assertPaired(last(a.sessions), last(b.sessions));
      assert.deepEqual(a.store.getSession('bravo')!.txKey, b.store.getSession('alpha')!.rxKey);
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
      await until(() => b.sessions.length === 1, 'first session');
      assert.equal(a.neg.requestRekey('bravo', 'manual'), true);
      assert.equal(b.neg.requestRekey('alpha', 'auth-failures'), true);
      await until(() => a.sessions.length >= 2 && b.sessions.length >= 2, 'rekey');
      await settle();
      assertPaired(last(a.sessions), last(b.sessions));
    }
  });

  test('rekey after the interval without loss: old session accepted for the overlap, then retired and zeroed', async () => {
    const net = new MemoryNetwork();
    const clock = new ManualClock();
    const a = makeNode(net, 'alpha', { clock });
    const b = makeNode(net, 'bravo', { clock });
    await a.neg.ensureSession('bravo');
    await until(() => b.sessions.length === 1, 'first session');
    const oldA = a.sessions[0]!;
    const oldB = b.sessions[0]!;
    const oldKey = Buffer.from(oldA.txKey);
    clock.advance(3_600_000 * 1.06); // interval + max jitter: both timers fire, tie-break resolves it
    await until(() => a.sessions.length >= 2 && b.sessions.length >= 2, 'rekey');
    await settle();
    assertPaired(last(a.sessions), last(b.sessions));
    assert.notDeepEqual(last(a.sessions).txKey, oldKey);
    // overlap: nothing retired yet, old keys intact, so in-flight packets still decrypt
    assert.deepEqual(a.retired, []);
    assert.deepEqual(b.retired, []);
    assert.deepEqual(oldA.txKey, oldKey);
    clock.advance(30_000);
    assert.deepEqual(a.retired, [oldA.localIndex]);
    assert.deepEqual(b.retired, [oldB.localIndex]);
    assert.deepEqual(oldA.txKey, Buffer.alloc(32));
    assert.deepEqual(oldB.rxKey, Buffer.alloc(32));
    assert.equal(a.store.getSession('bravo')!.localIndex, last(a.sessions).localIndex);
  });

  test('triggered rekeys are rate-limited', async () => {
    const net = new MemoryNetwork();
    const clock = new ManualClock();
    const a = makeNode(net, 'alpha', { clock });
    makeNode(net, 'bravo', { clock });
    await a.neg.ensureSession('bravo');
    assert.equal(a.neg.requestRekey('bravo', 'auth-failures'), true);
    await until(() => a.sessions.length === 2, 'rekey');
    assert.equal(a.neg.requestRekey('bravo', 'auth-failures'), false);
    assert.equal(a.neg.stats().rekeysRateLimited, 1);
    clock.advance(30_000);
    assert.equal(a.neg.requestRekey('bravo', 'counter-limit'), true);
    await until(() => a.sessions.length === 3, 'second rekey');
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
    await until(() => b.sessions.length === 1, 'session');
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
    await until(() => b.sessions.length === 1, 'session');
    a.neg.stop();
    b.neg.stop();
    const a2 = makeNode(net, 'alpha', { store: a.store });
    b = makeNode(net, 'bravo'); // fresh, empty store
    a2.neg.start();
    await until(() => a2.sessions.length === 2 && b.sessions.length === 1, 'renegotiation');
    assertPaired(last(a2.sessions), b.sessions[0]!);
  });
});
