/**
 * A control connection carried through a relay: two connections to the
 * relay are upgraded out of frame mode and spliced; the two ends run their
 * own mutual TLS 1.3 inside (`connectControl({ socket })` and
 * `server.adopt(stream)`), with the usual authorisation. The relay sees
 * only the inner TLS records: no request body crosses it in the clear.
 */
import assert from 'node:assert/strict';
import type tls from 'node:tls';
import { before, test } from 'node:test';
import { connectControl, createControlServer, policyAuthorizer, type ControlCredentials, type ControlServer, type PeerPolicy } from '../src/index.js';
import { makeTestPki, type TestPki } from './helpers.js';

let pki: TestPki;
let creds: (name: string) => ControlCredentials;
before(() => {
  pki = makeTestPki();
  creds = (name) => ({ ...pki.node(name, { ou: 'mesh' }), caPem: pki.ca.certPem });
});

const members = new Set(['relay', 'bravo', 'charlie']);
const policyFor = (self: string, extra: Partial<PeerPolicy> = {}): PeerPolicy => ({ isMember: (n) => n !== self && members.has(n), pinnedFingerprint: () => undefined, requiredOu: 'mesh', ...extra });

test('a spliced control connection is mutual TLS end to end: the relay carries ciphertext only', async () => {
  const seenByRelay: Buffer[] = [];
  let waiting: { stream?: tls.TLSSocket; join?: (s: tls.TLSSocket) => void } = {};
  const relay = await createControlServer({ host: '127.0.0.1', port: 0, credentials: creds('relay'), authorize: policyAuthorizer(policyFor('relay')) });
  // the smallest relay: the first upgraded stream waits for the second, then bytes are copied both ways (and recorded)
  const splice = (a: tls.TLSSocket, b: tls.TLSSocket): void => {
    for (const [x, y] of [[a, b], [b, a]] as const) {
      x.on('data', (d: Buffer) => {
        seenByRelay.push(Buffer.from(d));
        y.write(d);
      });
      x.on('close', () => y.destroy());
      x.resume();
    }
  };
  const leg = (_body: unknown, ctx: { upgrade(fn: (s: tls.TLSSocket) => void): void }) => {
    ctx.upgrade((s) => {
      if (waiting.stream === undefined) waiting.stream = s;
      else splice(waiting.stream, s);
    });
    return { ok: true };
  };
  relay.handle('relay-connect', leg);
  relay.handle('relay-accept', leg);
  const charlie = await createControlServer({ host: '127.0.0.1', port: 0, credentials: creds('charlie'), authorize: policyAuthorizer(policyFor('charlie')) });
  charlie.handle('negotiate', (body, ctx) => ({ echo: body, peer: ctx.peer.name }));
  let bravoServer: ControlServer | undefined;
  try {
    // charlie's leg: its own connection to the relay, upgraded, handed to its control server
    const cLeg = await connectControl({ host: '127.0.0.1', port: relay.port, peerName: 'relay', credentials: creds('charlie'), authorize: policyAuthorizer(policyFor('charlie')) });
    const accepted = await cLeg.upgrade('relay-accept', { token: 'x' });
    assert.deepEqual(accepted.body, { ok: true });
    charlie.adopt(accepted.stream);
    // bravo's leg, then bravo's TLS to charlie over it
    const bLeg = await connectControl({ host: '127.0.0.1', port: relay.port, peerName: 'relay', credentials: creds('bravo'), authorize: policyAuthorizer(policyFor('bravo')) });
    const { stream } = await bLeg.upgrade('relay-connect', { target: 'charlie' });
    const inner = await connectControl({ host: 'relay', port: 0, peerName: 'charlie', socket: stream, credentials: creds('bravo'), authorize: policyAuthorizer(policyFor('bravo')) });
    assert.equal(inner.peer.name, 'charlie', 'bravo authenticated charlie, not the relay');
    const secret = 'SECRET-negotiation-random-0123456789';
    assert.deepEqual(await inner.request('negotiate', { r: secret }), { echo: { r: secret }, peer: 'bravo' }, 'charlie authenticated bravo');
    inner.close();
    const all = Buffer.concat(seenByRelay);
    assert.ok(all.length > 500, `the relay carried the inner handshake (${all.length} bytes)`);
    assert.equal(all.includes(Buffer.from(secret)), false, 'the request body never crossed the relay in the clear');
    assert.equal(all.includes(Buffer.from('negotiate')), false);

    // authorisation is end to end: charlie refuses a peer its own policy rejects, even through the relay
    waiting = {};
    bravoServer = await createControlServer({ host: '127.0.0.1', port: 0, credentials: creds('charlie'), authorize: policyAuthorizer(policyFor('charlie', { isMember: (n) => n === 'relay' })) });
    bravoServer.handle('negotiate', () => ({ ok: true }));
    const c2 = await connectControl({ host: '127.0.0.1', port: relay.port, peerName: 'relay', credentials: creds('charlie'), authorize: policyAuthorizer(policyFor('charlie')) });
    bravoServer.adopt((await c2.upgrade('relay-accept', {})).stream);
    const b2 = await connectControl({ host: '127.0.0.1', port: relay.port, peerName: 'relay', credentials: creds('bravo'), authorize: policyAuthorizer(policyFor('bravo')) });
    const s2 = (await b2.upgrade('relay-connect', {})).stream;
    const refused = await connectControl({ host: 'relay', port: 0, peerName: 'charlie', socket: s2, credentials: creds('bravo'), authorize: policyAuthorizer(policyFor('bravo')) })
      .then((c) => c.request('negotiate', {}))
      .then(
        () => undefined,
        (err: { code?: string }) => err,
      );
    assert.ok(refused !== undefined, 'bravo, not a member in charlie\'s view, is refused by charlie itself');
    assert.equal(bravoServer.stats().refused['not-member'], 1);
  } finally {
    await relay.close();
    await charlie.close();
    await bravoServer?.close();
  }
});

test('an upgrade with another request open is refused, and an ordinary request still works', async () => {
  const s = await createControlServer({ host: '127.0.0.1', port: 0, credentials: creds('relay'), authorize: policyAuthorizer(policyFor('relay')) });
  s.handle('slow', () => new Promise((r) => setTimeout(() => r({}), 200)));
  s.handle('up', (_b, ctx) => {
    ctx.upgrade((stream) => stream.end());
    return {};
  });
  try {
    const c = await connectControl({ host: '127.0.0.1', port: s.port, peerName: 'relay', credentials: creds('bravo'), authorize: policyAuthorizer(policyFor('bravo')) });
    const slow = c.request('slow', {});
    await assert.rejects(c.upgrade('up', {}), (e: { code?: string }) => e.code === 'ERR_CHANNEL_PROTOCOL');
    await slow;
    c.close();
  } finally {
    await s.close();
  }
});
