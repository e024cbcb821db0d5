import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import {
  Negotiator,
  PeerRefusedError,
  connectControl,
  createControlServer,
  createControlTransport,
  fingerprintPem,
  parseCompAlgos,
  parseCryptAlgos,
  policyAuthorizer,
  type ControlCredentials,
  type ControlLimits,
  type ControlServer,
  type PeerPolicy,
  type SessionParams,
} from '../src/index.js';
import { MemoryStore } from '../src/testing.js';
import { makeTestPki, type TestPki } from './helpers.js';

let pki: TestPki;
let creds: (name: string, opts?: { ou?: string; days?: number; now?: Date; other?: boolean }) => ControlCredentials;
before(() => {
  pki = makeTestPki();
  creds = (name, opts = {}) => ({ ...pki.node(name, { ou: opts.ou ?? 'mesh', days: opts.days, now: opts.now, ca: opts.other ? pki.otherCa : pki.ca }), caPem: pki.ca.certPem });
});

const members = new Set(['alpha', 'bravo', 'carol', 'dave', 'echo']);
let carolPin = '';
const policy: PeerPolicy = {
  isMember: (n) => members.has(n),
  pinnedFingerprint: (n) => (n === 'carol' ? carolPin : undefined),
  requiredOu: 'mesh',
};

async function startServer(limits: Partial<ControlLimits> = {}, host = '127.0.0.1'): Promise<ControlServer> {
  const s = await createControlServer({ host, port: 0, credentials: creds('alpha'), authorize: policyAuthorizer(policy), limits });
  s.handle('echo', (body, ctx) => ({ body, peer: ctx.peer.name, exporter: ctx.exporter.toString('base64') }));
  s.handle('fail', () => {
    throw Object.assign(new Error('nope'), { code: 'ERR_TEST_REFUSED' });
  });
  return s;
}

async function until(cond: () => boolean, what: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Connects as `client` and tries one request; resolves with the error (or undefined on success). */
async function attempt(server: ControlServer, client: ControlCredentials): Promise<Error | undefined> {
  try {
    const c = await connectControl({ host: '127.0.0.1', port: server.port, peerName: 'alpha', credentials: client, authorize: policyAuthorizer(policy) });
    try {
      await c.request('echo', 1);
    } finally {
      c.close();
    }
    return undefined;
  } catch (err) {
    return err as Error;
  }
}

describe('mutual TLS', () => {
  let server: ControlServer;
  before(async () => {
    server = await startServer();
  });
  after(() => server.close());

  test('a good peer is accepted; request/response; both ends share the exporter', async () => {
    const c = await connectControl({ host: '127.0.0.1', port: server.port, peerName: 'alpha', credentials: creds('bravo'), authorize: policyAuthorizer(policy) });
    assert.equal(c.peer.name, 'alpha');
    assert.equal(c.peer.ou, 'mesh');
    const r = (await c.request('echo', { x: [1, 2] })) as { body: unknown; peer: string; exporter: string };
    assert.deepEqual(r.body, { x: [1, 2] });
    assert.equal(r.peer, 'bravo');
    assert.equal(r.exporter, c.exporter.toString('base64'));
    await assert.rejects(c.request('fail', null), (e: unknown) => (e as { remoteCode?: string }).remoteCode === 'ERR_TEST_REFUSED');
    await assert.rejects(c.request('no-such-type', null), (e: unknown) => (e as { remoteCode?: string }).remoteCode === 'ERR_UNKNOWN_TYPE');
    c.close();
    assert.ok(server.stats().accepted >= 1);
  });

  test('the server refuses, with a reason each: no certificate, wrong CA, expired, not in the BNL, pin mismatch, wrong OU', async () => {
    carolPin = fingerprintPem(pki.node('carol', { ou: 'mesh' }).certPem).colon; // a different certificate than the one carol presents
    const cases: Array<[string, () => Promise<unknown>]> = [
      [
        'no-certificate',
        () =>
          new Promise<void>((resolve) => {
            const s = tls.connect({ host: '127.0.0.1', port: server.port, ca: [pki.ca.certPem], minVersion: 'TLSv1.3', checkServerIdentity: () => undefined });
            s.on('error', () => resolve());
            s.on('close', () => resolve());
            s.resume();
          }),
      ],
      ['untrusted-certificate', () => attempt(server, creds('bravo', { other: true }))],
      ['expired', () => attempt(server, creds('bravo', { now: new Date(Date.now() - 10 * 86_400_000), days: 1 }))],
      ['not-member', () => attempt(server, creds('zulu'))],
      ['fingerprint-mismatch', () => attempt(server, creds('carol'))],
      ['wrong-ou', () => attempt(server, creds('dave', { ou: 'other' }))],
    ];
    for (const [reason, run] of cases) {
      const before = server.stats().refused[reason] ?? 0;
      const err = await run();
      if (reason !== 'no-certificate') assert.ok(err instanceof Error, `${reason}: the client must fail`);
      await until(() => (server.stats().refused[reason] ?? 0) === before + 1, `refusal ${reason}`);
    }
    const ok = await attempt(server, creds('echo'));
    assert.equal(ok, undefined);
  });

  test('the client refuses a server that is not the node it meant to reach, or not a member', async () => {
    await assert.rejects(
      connectControl({ host: '127.0.0.1', port: server.port, peerName: 'bravo', credentials: creds('echo'), authorize: policyAuthorizer(policy) }),
      (e: unknown) => e instanceof PeerRefusedError && e.reason === 'wrong-peer',
    );
    await assert.rejects(
      connectControl({ host: '127.0.0.1', port: server.port, peerName: 'alpha', credentials: creds('echo'), authorize: policyAuthorizer({ ...policy, isMember: (n) => n !== 'alpha' }) }),
      (e: unknown) => e instanceof PeerRefusedError && e.reason === 'not-member',
    );
    const foreign = await createControlServer({ host: '127.0.0.1', port: 0, credentials: { ...creds('alpha', { other: true }), caPem: pki.otherCa.certPem }, authorize: () => ({ ok: true }) });
    try {
      await assert.rejects(
        connectControl({ host: '127.0.0.1', port: foreign.port, peerName: 'alpha', credentials: creds('echo') }),
        (e: unknown) => e instanceof PeerRefusedError && e.reason === 'untrusted-certificate',
      );
    } finally {
      await foreign.close();
    }
  });

  test('the next connection resumes the TLS session: a fresh exporter, and the current list still decides on both ends', async () => {
    const s = await startServer();
    const me = creds('bravo');
    const connect = (authorize = policyAuthorizer(policy)) => connectControl({ host: '127.0.0.1', port: s.port, peerName: 'alpha', credentials: me, authorize });
    const echo = async (c: Awaited<ReturnType<typeof connect>>) => ((await c.request('echo', 1)) as { exporter: string }).exporter;
    try {
      const c1 = await connect();
      const x1 = await echo(c1);
      c1.close();
      assert.equal(s.stats().resumed, 0, 'the first connection is a full handshake');
      const c2 = await connect();
      const x2 = await echo(c2);
      assert.equal(x2, c2.exporter.toString('base64'), 'both ends share the exporter');
      c2.close();
      assert.equal(s.stats().resumed, 1, 'the second connection resumed');
      assert.equal(c2.peer.name, 'alpha');
      assert.notEqual(x2, x1, 'a resumed connection has its own exporter');
      // the client: a server re-pinned since the ticket was issued is refused on resumption
      await assert.rejects(
        connect(policyAuthorizer({ ...policy, pinnedFingerprint: (n) => (n === 'alpha' ? '00'.repeat(32) : undefined) })),
        (e: unknown) => e instanceof PeerRefusedError && e.reason === 'fingerprint-mismatch',
      );
      // the server: a client removed from the list is refused though it offers a valid ticket
      const c3 = await connect();
      await echo(c3);
      c3.close();
      const resumedBefore = s.stats().resumed;
      const refusedBefore = s.stats().refused['not-member'] ?? 0;
      members.delete('bravo');
      try {
        const err = await attempt(s, me);
        assert.ok(err instanceof Error, 'a removed member is refused');
        await until(() => (s.stats().refused['not-member'] ?? 0) === refusedBefore + 1, 'refusal not-member');
      } finally {
        members.add('bravo');
      }
      assert.equal(s.stats().resumed, resumedBefore, 'the refused connection is not counted as resumed');
      // new server credentials rotate the ticket keys: nothing issued before is resumed
      const c4 = await connect();
      await echo(c4);
      c4.close();
      s.setCredentials(creds('alpha'));
      const atSwitch = s.stats().resumed;
      const c5 = await connect();
      await echo(c5);
      c5.close();
      assert.equal(s.stats().resumed, atSwitch, 'no resumption across a credentials switch');
    } finally {
      await s.close();
    }
  });

  test('IPv6 loopback works', async () => {
    const s6 = await startServer({}, '::1');
    try {
      const c = await connectControl({ host: '::1', port: s6.port, peerName: 'alpha', credentials: creds('bravo'), authorize: policyAuthorizer(policy) });
      assert.equal(((await c.request('echo', 6)) as { body: number }).body, 6);
      c.close();
    } finally {
      await s6.close();
    }
  });

  test("'::' listens on every address: IPv4 and IPv6 loopback both reach it", async () => {
    const any = await startServer({}, '::');
    try {
      assert.equal(any.host, '::');
      for (const host of ['127.0.0.1', '::1']) {
        const c = await connectControl({ host, port: any.port, peerName: 'alpha', credentials: creds('bravo'), authorize: policyAuthorizer(policy) });
        assert.equal(((await c.request('echo', host.length)) as { body: number }).body, host.length, host);
        c.close();
      }
    } finally {
      await any.close();
    }
  });
});

describe('bounds', () => {
  test('an oversized frame header cuts the connection off before its body', async () => {
    const server = await startServer({ maxFrameBytes: 1024 });
    try {
      const c = creds('bravo');
      const s = tls.connect({ host: '127.0.0.1', port: server.port, key: c.keyPem, cert: c.certPem, ca: [c.caPem], minVersion: 'TLSv1.3', checkServerIdentity: () => undefined });
      await new Promise<void>((resolve) => {
        s.on('secureConnect', () => s.write(Buffer.from([0, 0, 4, 1])));
        s.on('error', () => resolve());
        s.on('close', () => resolve());
        s.resume();
      });
      await until(() => server.stats().cutOff['frame-too-large'] === 1, 'frame cut-off');
    } finally {
      await server.close();
    }
  });

  test('idle connections are closed', async () => {
    const server = await startServer({ idleTimeoutMs: 150 });
    try {
      const c = await connectControl({ host: '127.0.0.1', port: server.port, peerName: 'alpha', credentials: creds('bravo') });
      await until(() => server.stats().cutOff['idle-timeout'] === 1, 'idle cut-off');
      await assert.rejects(c.request('echo', 1), { code: 'ERR_CHANNEL_CLOSED' });
    } finally {
      await server.close();
    }
  });

  test('per-IP cap: excess connections are dropped before TLS', async () => {
    const server = await startServer({ maxConnectionsPerIp: 3, handshakeTimeoutMs: 2000 });
    const socks: net.Socket[] = [];
    try {
      for (let i = 0; i < 3; i++) {
        const s = net.connect(server.port, '127.0.0.1');
        s.on('error', () => undefined);
        socks.push(s);
      }
      await until(() => server.stats().connections === 3, 'three connections');
      const extra = net.connect(server.port, '127.0.0.1');
      extra.on('error', () => undefined);
      await new Promise((r) => extra.once('close', r));
      assert.equal(server.stats().refused['too-many-from-ip'], 1);
    } finally {
      for (const s of socks) s.destroy();
      await server.close();
    }
  });

  test('a handshake that streams more than maxPreAuthBytes is cut while it runs, not at its timeout', async () => {
    // long, so that a busy machine never reaches it: the refusal reason tells the two apart
    const hsTimeout = 20_000;
    const server = await startServer({ handshakeTimeoutMs: hsTimeout, maxPreAuthBytes: 64 * 1024 });
    // A ClientHello that claims 130 000 bytes (OpenSSL accepts up to ~128 KiB
    // and waits for the rest), sent in 16 KiB handshake records.
    const body = Buffer.alloc(130_000);
    const hello = Buffer.concat([Buffer.from([0x01, (body.length >> 16) & 0xff, (body.length >> 8) & 0xff, body.length & 0xff]), body]);
    const records: Buffer[] = [];
    for (let off = 0; off < 100_000; off += 16_384) {
      const frag = hello.subarray(off, Math.min(off + 16_384, 100_000));
      records.push(Buffer.concat([Buffer.from([0x16, 0x03, 0x01, frag.length >> 8, frag.length & 0xff]), frag]));
    }
    const t0 = Date.now();
    const sock = net.connect(server.port, '127.0.0.1', () => {
      for (const r of records) sock.write(r);
    });
    sock.on('error', () => undefined);
    sock.resume();
    try {
      await new Promise<void>((resolve) => sock.once('close', () => resolve()));
      const lived = Date.now() - t0;
      assert.ok(lived < hsTimeout / 2, `the connection lived ${lived} ms`);
      const st = server.stats();
      assert.equal(st.refused['pre-auth-bytes'], 1, JSON.stringify(st.refused));
      assert.equal(st.refused['handshake-timeout'], undefined);
      await until(() => server.stats().connections === 0, 'connection released');
    } finally {
      sock.destroy();
      await server.close();
    }
  });

  test('garbage and slow-loris connections are cut off and do not delay a good negotiation in parallel', async () => {
    // The good negotiation must finish while the slow-loris connections still
    // hang (an order of events, not a speed): the timeout that cuts them is
    // long enough for a handshake on a busy machine.
    const hsTimeout = 3000;
    const server = await startServer({ handshakeTimeoutMs: hsTimeout, maxConnectionsPerIp: 64 });
    const alphaSessions: SessionParams[] = [];
    const bravoSessions: SessionParams[] = [];
    const algos = { cryptAlgos: parseCryptAlgos('aes256gcm:256:20 chacha20poly1305:256:10'), compAlgos: parseCompAlgos('none:0:5 lz4:1:2') };
    const noop = { onPromote: () => undefined, onRetire: () => undefined, onTxEpoch: () => undefined };
    const alpha = new Negotiator({ localName: 'alpha', ...algos, store: new MemoryStore(), transport: { connect: () => Promise.reject(new Error('alpha only answers')) }, events: { onSession: (_p, s) => alphaSessions.push(s), ...noop } });
    alpha.attach(server);
    const bravo = new Negotiator({
      localName: 'bravo',
      ...algos,
      store: new MemoryStore(),
      transport: createControlTransport({ resolve: () => ({ host: '127.0.0.1', port: server.port }), credentials: creds('bravo'), authorize: policyAuthorizer(policy) }),
      events: { onSession: (_p, s) => bravoSessions.push(s), ...noop },
    });
    const bad: net.Socket[] = [];
    const closedAt: number[] = [];
    let lorisClosed = 0;
    const t0 = Date.now();
    try {
      for (let i = 0; i < 10; i++) {
        const loris = net.connect(server.port, '127.0.0.1', () => loris.write(Buffer.from([0x16, 0x03])));
        const garbage = net.connect(server.port, '127.0.0.1', () => garbage.write(Buffer.alloc(4096, 0x47)));
        loris.on('close', () => lorisClosed++);
        for (const s of [loris, garbage]) {
          s.on('error', () => undefined);
          s.on('close', () => closedAt.push(Date.now() - t0));
          s.resume();
          bad.push(s);
        }
      }
      await until(() => server.stats().connections >= 10, 'bad connections open');
      const start = Date.now();
      await bravo.ensureSession('alpha');
      await until(() => alphaSessions.length === 1, 'responder install');
      const took = Date.now() - start;
      assert.equal(lorisClosed, 0, `negotiation (${took} ms) done before any stalled connection was cut`);
      assert.deepEqual(bravoSessions[0]!.txKey, alphaSessions[0]!.rxKey);
      assert.deepEqual(bravoSessions[0]!.rxKey, alphaSessions[0]!.txKey);
      await until(() => closedAt.length === 20, 'bad connections closed', hsTimeout * 4);
      assert.ok(Math.max(...closedAt) < hsTimeout * 3, `slow-loris lived ${Math.max(...closedAt)} ms`);
      const st = server.stats();
      assert.equal(st.refused['tls-error'], 10);
      assert.equal(st.refused['handshake-timeout'], 10);
      assert.equal(st.connections, 0);
    } finally {
      for (const s of bad) s.destroy();
      bravo.stop();
      alpha.stop();
      await server.close();
    }
  });
});
