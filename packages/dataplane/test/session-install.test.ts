/**
 * The two-step session install: `installSession(…, { primary: false })`
 * accepts a session's packets without sending on it, `promoteSession`
 * makes it the sending session. Two data planes on memory TUNs joined by
 * the memory UDP network, where the receiver index of every datagram on
 * the wire shows which session sealed it.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MAX_SESSIONS_PER_PEER } from '../src/peer-table.js';
import { makePair, totalDrops, type Pair } from './pipeline-harness.js';
import { ipv4Packet, sessionPair, tick, waitFor } from './pipeline-helpers.js';

const code = (c: string) => (e: unknown) => (e as { code?: string }).code === c;

/** Receiver indexes of the datagrams sent from `port` since the last call (clears the record). */
function wireIndexes(p: Pair, port: number): number[] {
  const out = p.net!.sent.filter((d) => d.fromPort === port).map((d) => d.data.readUInt32BE(4));
  p.net!.sent.length = 0;
  return out;
}

function sessionsOf(p: Pair, who: 'a' | 'b') {
  return p[who].dp.stats().peers[0].sessions;
}

describe('two-step session install', () => {
  it('a receive-only session accepts packets but is not used for sending until promoted', async () => {
    const p = await makePair();
    try {
      const s2 = sessionPair();
      p.b.dp.installSession('a', s2.b, { primary: false });
      let bs = sessionsOf(p, 'b');
      assert.equal(bs.length, 2);
      assert.deepEqual(
        bs.map((s) => [s.localIndex, s.primary, s.pending]),
        [
          [s2.b.localIndex, false, true],
          [p.sessions.b.localIndex, true, false],
        ],
      );
      // B still sends with the old session: A (which knows only the old one) gets everything.
      p.b.tun.inject([ipv4Packet('10.0.2.9', '10.0.1.5', 30), ipv4Packet('10.0.2.9', '10.0.1.5', 31)]);
      await waitFor(() => p.a.tun.written.length === 2, 2000, 'B→A on the old session');
      assert.deepEqual(wireIndexes(p, p.b.dp.port), [p.sessions.a.localIndex, p.sessions.a.localIndex]);
      // A switches at once; B accepts the new index although it does not send on it yet.
      p.a.dp.installSession('b', s2.a);
      p.a.tun.inject([ipv4Packet('10.0.1.5', '10.0.2.9', 40)]);
      await waitFor(() => p.b.tun.written.length === 1, 2000, 'A→B on the new session');
      assert.deepEqual(wireIndexes(p, p.a.dp.port), [s2.b.localIndex]);
      // Promote: B now seals with the new session.
      p.b.dp.promoteSession('a', s2.b.localIndex);
      bs = sessionsOf(p, 'b');
      assert.deepEqual(
        bs.map((s) => [s.localIndex, s.primary, s.pending]),
        [
          [s2.b.localIndex, true, false],
          [p.sessions.b.localIndex, false, false],
        ],
      );
      p.b.tun.inject([ipv4Packet('10.0.2.9', '10.0.1.5', 50)]);
      await waitFor(() => p.a.tun.written.length === 3, 2000, 'B→A on the new session');
      assert.deepEqual(wireIndexes(p, p.b.dp.port), [s2.a.localIndex]);
      assert.equal(totalDrops(p.a.dp.stats().drops) + totalDrops(p.b.dp.stats().drops), 0);
      // Promoting the primary again changes nothing.
      p.b.dp.promoteSession('a', s2.b.localIndex);
      assert.equal(sessionsOf(p, 'b')[0].primary, true);
    } finally {
      p.close();
    }
  });

  it('with only a receive-only session there is nothing to send with (no-session, event)', async () => {
    const p = await makePair({ install: false });
    try {
      p.a.dp.installSession('b', p.sessions.a, { primary: false });
      p.a.tun.inject([ipv4Packet('10.0.1.5', '10.0.2.9', 20)]);
      p.a.tun.flush();
      await tick();
      assert.equal(p.a.dp.stats().peers[0].drops['no-session'] ?? 0, 0, 'held until a session can send');
      assert.deepEqual(p.a.events, [['noSession', 'b']]);
      assert.equal(wireIndexes(p, p.a.dp.port).length, 0);
      p.a.dp.promoteSession('b', p.sessions.a.localIndex);
      p.b.dp.installSession('a', p.sessions.b);
      p.a.tun.inject([ipv4Packet('10.0.1.5', '10.0.2.9', 20)]);
      // >= 1: the packet held while there was no sending session is sent at promotion too (send.ts step 5).
      await waitFor(() => p.b.tun.written.length >= 1, 2000, 'after promotion');
    } finally {
      p.close();
    }
  });

  it('refuses bad options and unknown sessions, changing nothing', async () => {
    const p = await makePair();
    try {
      const s2 = sessionPair();
      assert.throws(() => p.a.dp.installSession('b', s2.a, null as never), code('ERR_DP_CONFIG'));
      assert.throws(() => p.a.dp.installSession('b', s2.a, { primary: 'no' as never }), code('ERR_DP_CONFIG'));
      assert.throws(() => p.a.dp.installSession('zz', s2.a, { primary: false }), code('ERR_DP_PEER'));
      assert.equal(sessionsOf(p, 'a').length, 1);
      assert.throws(() => p.a.dp.promoteSession('b', s2.a.localIndex), code('ERR_DP_PEER'));
      assert.throws(() => p.a.dp.promoteSession('zz', p.sessions.a.localIndex), code('ERR_DP_PEER'));
      p.a.dp.installSession('b', s2.a, { primary: false });
      p.a.dp.retireSession('b', s2.a.localIndex);
      assert.throws(() => p.a.dp.promoteSession('b', s2.a.localIndex), code('ERR_DP_PEER'));
      assert.deepEqual(
        sessionsOf(p, 'a').map((s) => [s.localIndex, s.primary]),
        [[p.sessions.a.localIndex, true]],
      );
      p.a.dp.close();
      assert.throws(() => p.a.dp.promoteSession('b', p.sessions.a.localIndex), code('ERR_DP_CLOSED'));
    } finally {
      p.close();
    }
  });

  it('retiring the primary falls back to an older promoted session, never to a receive-only one', async () => {
    const p = await makePair();
    try {
      const s2 = sessionPair();
      const s3 = sessionPair();
      p.a.dp.installSession('b', s2.a); // primary; s1 overlaps
      p.a.dp.installSession('b', s3.a, { primary: false });
      p.a.dp.retireSession('b', s2.a.localIndex);
      const st = sessionsOf(p, 'a');
      assert.deepEqual(
        st.map((s) => [s.localIndex, s.primary, s.pending]),
        [
          [s3.a.localIndex, false, true],
          [p.sessions.a.localIndex, true, false],
        ],
      );
      p.a.dp.retireSession('b', p.sessions.a.localIndex);
      assert.equal(
        sessionsOf(p, 'a').some((s) => s.primary),
        false,
        'a receive-only session must not become primary',
      );
    } finally {
      p.close();
    }
  });

  it(`refuses a session beyond ${MAX_SESSIONS_PER_PEER} with ERR_DP_SESSIONS_FULL (counted) and evicts nothing`, async () => {
    const p = await makePair();
    try {
      const extra = Array.from({ length: MAX_SESSIONS_PER_PEER }, () => sessionPair());
      for (const s of extra.slice(0, MAX_SESSIONS_PER_PEER - 1)) p.a.dp.installSession('b', s.a, { primary: false });
      const before = sessionsOf(p, 'a').map((s) => s.localIndex);
      assert.equal(before.length, MAX_SESSIONS_PER_PEER);
      const last = extra[MAX_SESSIONS_PER_PEER - 1].a;
      assert.throws(() => p.a.dp.installSession('b', last, { primary: false }), code('ERR_DP_SESSIONS_FULL'));
      assert.throws(() => p.a.dp.installSession('b', last), code('ERR_DP_SESSIONS_FULL'));
      // nothing was evicted, nothing changed, and the refusals are counted
      assert.deepEqual(
        sessionsOf(p, 'a').map((s) => s.localIndex),
        before,
      );
      assert.equal(sessionsOf(p, 'a').find((s) => s.primary)?.localIndex, p.sessions.a.localIndex);
      assert.equal(p.a.dp.stats().peers[0].sessionsRefused, 2);
      // the owner retires one: now there is room
      p.a.dp.retireSession('b', extra[0].a.localIndex);
      p.a.dp.installSession('b', last, { primary: false });
      assert.equal(sessionsOf(p, 'a')[0].localIndex, last.localIndex);
    } finally {
      p.close();
    }
  });

  it('a replaced session keeps receiving past the old 120 s data-plane timer, until retireSession', async (t) => {
    const p = await makePair();
    try {
      const s2 = sessionPair();
      p.b.dp.installSession('a', s2.b, { primary: false });
      p.a.dp.installSession('b', s2.a, { primary: false });
      // Ten minutes of timers from the promotions on: nothing in the data plane may retire the old session.
      t.mock.timers.enable({ apis: ['setTimeout'] });
      try {
        p.a.dp.promoteSession('b', s2.a.localIndex);
        p.a.dp.promoteSession('b', p.sessions.a.localIndex); // taken back ...
        p.a.dp.promoteSession('b', s2.a.localIndex); // ... and replaced again
        t.mock.timers.tick(10 * 60_000);
      } finally {
        t.mock.timers.reset();
      }
      assert.deepEqual(
        sessionsOf(p, 'a').map((s) => [s.localIndex, s.primary]),
        [
          [s2.a.localIndex, true],
          [p.sessions.a.localIndex, false],
        ],
      );
      // B still seals with the old session: A accepts it.
      p.b.tun.inject([ipv4Packet('10.0.2.9', '10.0.1.5', 30)]);
      await waitFor(() => p.a.tun.written.length === 1, 2000, 'B→A on the replaced session');
      // The owner retires it: from now on its packets are refused.
      p.a.dp.retireSession('b', p.sessions.a.localIndex);
      p.b.tun.inject([ipv4Packet('10.0.2.9', '10.0.1.5', 31)]);
      await waitFor(() => (p.a.dp.stats().drops['unknown-index'] ?? 0) === 1, 2000, 'unknown-index after retire');
      assert.equal(p.a.tun.written.length, 1);
    } finally {
      p.close();
    }
  });

  it('limits are only the data plane\'s own: the old sessionOverlapMs is refused (ERR_DP_CONFIG)', async () => {
    await assert.rejects(makePair({ limits: { sessionOverlapMs: 40 } as object }), code('ERR_DP_CONFIG'));
  });

  it('the two-step switch loses nothing under traffic in both directions', async () => {
    const p = await makePair();
    try {
      const sentAB: Buffer[] = [];
      const sentBA: Buffer[] = [];
      let seq = 0;
      const burst = (): void => {
        const ab = Array.from({ length: 8 }, () => ipv4Packet('10.0.1.5', '10.0.2.9', 20 + (seq++ % 60)));
        const ba = Array.from({ length: 8 }, () => ipv4Packet('10.0.2.9', '10.0.1.5', 20 + (seq++ % 60)));
        sentAB.push(...ab);
        sentBA.push(...ba);
        p.a.tun.inject(ab);
        p.b.tun.inject(ba);
        p.a.tun.flush(); // sealed now, delivered on setImmediate: in flight across the next step
        p.b.tun.flush();
      };
      let prev = p.sessions;
      for (let round = 0; round < 5; round++) {
        const next = sessionPair();
        const initiator = round % 2 === 0 ? ('a' as const) : ('b' as const);
        const responder = initiator === 'a' ? ('b' as const) : ('a' as const);
        const idOf = (w: 'a' | 'b') => (w === 'a' ? 'b' : 'a');
        // The negotiator's order: responder receive-only, initiator receive-only,
        // responder promotes (confirm), initiator promotes (answer), olds retire.
        burst();
        p[responder].dp.installSession(idOf(responder), next[responder], { primary: false });
        burst();
        p[initiator].dp.installSession(idOf(initiator), next[initiator], { primary: false });
        burst();
        p[responder].dp.promoteSession(idOf(responder), next[responder].localIndex);
        burst();
        p[initiator].dp.promoteSession(idOf(initiator), next[initiator].localIndex);
        burst();
        await tick();
        burst();
        await tick();
        p.a.dp.retireSession('b', prev.a.localIndex);
        p.b.dp.retireSession('a', prev.b.localIndex);
        burst();
        prev = next;
      }
      await waitFor(() => p.b.tun.written.length === sentAB.length && p.a.tun.written.length === sentBA.length, 3000, 'all packets');
      assert.deepEqual(p.b.tun.takeWritten(), sentAB);
      assert.deepEqual(p.a.tun.takeWritten(), sentBA);
      assert.equal(totalDrops(p.a.dp.stats().drops) + totalDrops(p.b.dp.stats().drops), 0);
      assert.deepEqual(
        sessionsOf(p, 'a').map((s) => s.localIndex),
        [prev.a.localIndex],
      );
    } finally {
      p.close();
    }
  });
});
