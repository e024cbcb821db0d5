/**
 * Issue 15 §1: a revoked or re-pinned node must not keep using control
 * connections it opened under the previous list. Reproduces the attack on
 * the real channel: a connection authorised under the old pin is kept open,
 * the list re-pins (or removes) the node, and then
 *  - a request on it is refused at dispatch (`ERR_PEER_REFUSED`), nothing is
 *    negotiated and nothing is stored;
 *  - `recheck()` closes every such connection, server and client side;
 *  - after removal no session and no key of the node remains in the store,
 *    and the Negotiator itself refuses negotiate / confirm / epoch-grant.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { before, describe, test } from 'node:test';
import {
  NegotiationMessage,
  Negotiator,
  PeerRefusedError,
  connectControl,
  createControlServer,
  createControlTransport,
  fingerprintPem,
  parseCompAlgos,
  parseCryptAlgos,
  policyAuthorizer,
  type ControlConnection,
  type ControlCredentials,
  type ControlServer,
  type PeerPolicy,
  type SessionParams,
} from '../src/index.js';
import { MemoryNetwork, MemoryStore } from '../src/testing.js';
import { makeTestPki, type TestPki } from './helpers.js';

const algos = { cryptAlgos: parseCryptAlgos('aes256gcm:256:20 chacha20poly1305:256:10'), compAlgos: parseCompAlgos('none:0:5 lz4:1:2') };

let pki: TestPki;
let creds: (name: string) => ControlCredentials;
before(() => {
  pki = makeTestPki();
  creds = (name) => ({ ...pki.node(name, { ou: 'mesh' }), caPem: pki.ca.certPem });
});

/** A mutable list: members and pins, as the daemon's policy reads them from the current BNL. */
function makeList(): { members: Set<string>; pins: Map<string, string>; policy: PeerPolicy } {
  const members = new Set(['alpha', 'bravo', 'carol']);
  const pins = new Map<string, string>();
  return { members, pins, policy: { isMember: (n) => members.has(n), pinnedFingerprint: (n) => pins.get(n), requiredOu: 'mesh' } };
}

/** A negotiate request body as an initiator sends it. */
function negotiateBody(): unknown {
  return { random: randomBytes(32).toString('base64'), index: 7, crypt: algos.cryptAlgos, comp: algos.compAlgos };
}

async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** alpha: a control server with a Negotiator attached, recording what it installs. */
async function startAlpha(list: ReturnType<typeof makeList>): Promise<{ server: ControlServer; neg: Negotiator; store: MemoryStore; installed: Array<[string, SessionParams]> }> {
  const server = await createControlServer({ host: '127.0.0.1', port: 0, credentials: creds('alpha'), authorize: policyAuthorizer(list.policy) });
  server.handle('bnl-pull', () => ({ ok: true }));
  const store = new MemoryStore();
  const installed: Array<[string, SessionParams]> = [];
  const neg = new Negotiator({
    localName: 'alpha',
    ...algos,
    store,
    isMember: list.policy.isMember,
    transport: { connect: () => Promise.reject(new Error('alpha only answers')) },
    events: { onSession: (p, s) => installed.push([p, s]), onPromote: () => undefined, onRetire: () => undefined, onTxEpoch: () => undefined },
  });
  neg.attach(server);
  return { server, neg, store, installed };
}

const remoteCode = (e: unknown): string | undefined => (e as { remoteCode?: string }).remoteCode;

describe('revocation of open control connections', () => {
  test('re-pinned node: a connection opened with the old certificate cannot negotiate, and recheck() closes it', async () => {
    const list = makeList();
    const carolOld = creds('carol');
    const carolNew = creds('carol');
    list.pins.set('carol', fingerprintPem(carolOld.certPem).hex);
    const alpha = await startAlpha(list);
    const conns: ControlConnection[] = [];
    try {
      const open = () => connectControl({ host: '127.0.0.1', port: alpha.server.port, peerName: 'alpha', credentials: carolOld, authorize: policyAuthorizer(list.policy) });
      const held = await open(); // kept alive as the attacker did (bnl-pull every 20 s)
      const idle = await open();
      conns.push(held, idle);
      assert.deepEqual(await held.request('bnl-pull', {}), { ok: true });
      assert.deepEqual(await idle.request('bnl-pull', {}), { ok: true }, 'both accepted by the server');

      // The admin re-pins carol to her new certificate; the list is accepted.
      list.pins.set('carol', fingerprintPem(carolNew.certPem).hex);

      // 1. the held connection asks to negotiate before any recheck: refused at dispatch.
      await assert.rejects(held.request('negotiate', negotiateBody()), (e: unknown) => remoteCode(e) === 'ERR_PEER_REFUSED' || (e as { code?: string }).code === 'ERR_CHANNEL_CLOSED');
      assert.deepEqual(alpha.installed, [], 'no session was installed for the old certificate');
      assert.deepEqual(alpha.store.listSessions(), [], 'nothing stored');
      await until(() => alpha.server.stats().cutOff.revoked === 1, 'the connection cut off as revoked');
      await assert.rejects(held.request('bnl-pull', {}), { code: 'ERR_CHANNEL_CLOSED' });

      // 2. the other idle connection is closed by recheck(), before it sends anything.
      let idleClosed = false;
      idle.onClose(() => (idleClosed = true));
      assert.equal(alpha.server.recheck(), 1);
      await until(() => idleClosed, 'the idle connection closed');
      assert.equal(alpha.server.stats().cutOff.revoked, 2);

      // New connections with the old certificate are refused; the new certificate works.
      // (TLS 1.3: the client may finish its handshake before the server refuses it.)
      await assert.rejects(
        open().then(async (c) => {
          try {
            await c.request('bnl-pull', {});
          } finally {
            c.close();
          }
        }),
        (e: unknown) => e instanceof Error,
      );
      await until(() => alpha.server.stats().refused['fingerprint-mismatch'] === 1, 'refusal of the old certificate');
      const fresh = await connectControl({ host: '127.0.0.1', port: alpha.server.port, peerName: 'alpha', credentials: carolNew, authorize: policyAuthorizer(list.policy) });
      conns.push(fresh);
      const answer = (await fresh.request('negotiate', negotiateBody())) as { index: number };
      assert.equal(typeof answer.index, 'number');
      assert.equal(alpha.installed.length, 1);
      assert.equal(alpha.server.recheck(), 0, 'the new certificate passes the recheck');
    } finally {
      for (const c of conns) c.close();
      alpha.neg.stop();
      await alpha.server.close();
    }
  });

  test('removed node: its sessions and stored keys are gone, its open connection is refused, nothing comes back', async () => {
    const list = makeList();
    const alpha = await startAlpha(list);
    const bravoSessions: SessionParams[] = [];
    const bravo = new Negotiator({
      localName: 'bravo',
      ...algos,
      store: new MemoryStore(),
      transport: createControlTransport({ resolve: () => ({ host: '127.0.0.1', port: alpha.server.port }), credentials: creds('bravo'), authorize: policyAuthorizer(list.policy) }),
      events: { onSession: (_p, s) => bravoSessions.push(s), onPromote: () => undefined, onRetire: () => undefined, onTxEpoch: () => undefined },
    });
    let held: ControlConnection | undefined;
    try {
      await bravo.ensureSession('alpha');
      await until(() => alpha.store.getSession('bravo') !== undefined, 'alpha stored the session');
      held = await connectControl({ host: '127.0.0.1', port: alpha.server.port, peerName: 'alpha', credentials: creds('bravo'), authorize: policyAuthorizer(list.policy) });
      assert.deepEqual(await held.request('bnl-pull', {}), { ok: true }, 'the server accepted the held connection');
      const stored = alpha.store.getSession('bravo')!;

      // `bnl remove bravo`, accepted and applied: what the daemon's applyDiff does.
      list.members.delete('bravo');
      alpha.neg.removePeer('bravo');
      assert.equal(alpha.store.getSession('bravo'), undefined, 'stored keys deleted');
      assert.deepEqual(alpha.installed[0]![1].txKey, Buffer.alloc(32), 'session keys zeroed in memory');
      assert.equal(alpha.neg.sessions().length, 0);
      assert.notDeepEqual(stored.txKey, Buffer.alloc(32));

      // The held connection tries again: refused, nothing installed or stored.
      const before = alpha.installed.length;
      await assert.rejects(held.request('negotiate', negotiateBody()), (e: unknown) => remoteCode(e) === 'ERR_PEER_REFUSED' || (e as { code?: string }).code === 'ERR_CHANNEL_CLOSED');
      await assert.rejects(held.request('epoch-grant', { index: stored.localIndex, epoch: 5 }), (e: unknown) => (e as { code?: string }).code === 'ERR_CHANNEL_CLOSED' || remoteCode(e) === 'ERR_PEER_REFUSED');
      assert.equal(alpha.installed.length, before);
      assert.equal(alpha.store.getSession('bravo'), undefined);
      assert.equal(alpha.neg.sessions().length, 0);
    } finally {
      held?.close();
      bravo.stop();
      alpha.neg.stop();
      await alpha.server.close();
    }
  });

  test('client side: a dialled connection whose server is re-pinned is refused before its next request and closed by recheck()', async () => {
    const list = makeList();
    const alphaCreds = creds('alpha');
    list.pins.set('alpha', fingerprintPem(alphaCreds.certPem).hex);
    const server = await createControlServer({ host: '127.0.0.1', port: 0, credentials: alphaCreds, authorize: () => ({ ok: true }) });
    server.handle('echo', (b) => b);
    const conns: ControlConnection[] = [];
    try {
      const dial = () => connectControl({ host: '127.0.0.1', port: server.port, peerName: 'alpha', credentials: creds('bravo'), authorize: policyAuthorizer(list.policy) });
      const a = await dial();
      const b = await dial();
      conns.push(a, b);
      assert.equal(await a.request('echo', 1), 1);
      assert.equal(a.recheck(), true);
      list.pins.set('alpha', fingerprintPem(creds('alpha').certPem).hex); // re-pinned
      await assert.rejects(a.request('echo', 2), (e: unknown) => e instanceof PeerRefusedError && e.reason === 'fingerprint-mismatch');
      let closed = false;
      b.onClose(() => (closed = true));
      assert.equal(b.recheck(), false);
      assert.equal(closed, true);
      await assert.rejects(b.request('echo', 3), (e: unknown) => e instanceof PeerRefusedError);
    } finally {
      for (const c of conns) c.close();
      await server.close();
    }
  });

  test('the Negotiator refuses every negotiation request (negotiate, confirm, epoch exchange) from a node that is not in the list', async () => {
    const members = new Set(['alpha', 'bravo']);
    const net = new MemoryNetwork();
    const store = new MemoryStore();
    const installed: string[] = [];
    const alphaEp = net.node('alpha');
    const alpha = new Negotiator({
      localName: 'alpha',
      ...algos,
      store,
      isMember: (n) => members.has(n),
      transport: alphaEp.transport,
      events: { onSession: (p) => installed.push(p), onPromote: () => undefined, onRetire: () => undefined, onTxEpoch: () => undefined },
    });
    alpha.attach(alphaEp);
    const zulu = net.node('zulu').transport;
    try {
      const ch = await zulu.connect('alpha');
      // Every request type of the protocol (negotiate, confirm, the epoch exchange), each with a well-formed body.
      const body = { ...(negotiateBody() as object), index: 7, minEpoch: 3, epoch: 3 };
      for (const type of Object.values(NegotiationMessage)) {
        await assert.rejects(ch.request(type, body), (e: unknown) => remoteCode(e) === 'ERR_PEER_REFUSED', type);
      }
      ch.close();
      assert.deepEqual(installed, []);
      assert.deepEqual(store.listSessions(), []);
    } finally {
      alpha.stop();
    }
  });
});

