/**
 * The relay service without a network: rendezvous answers and punch bursts,
 * and every refusal of the relay role (typed codes, limits per member),
 * with fakes for the data plane, the list and the control server.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { BnlNode } from '@cluevpn/bnl';
import type { ControlServer, RequestContext, RequestHandler } from '@cluevpn/negotiation';
import { silentLogger } from '../src/logging.js';
import { MAX_SPLICES_PER_MEMBER, PUNCH_COUNT, RENDEZVOUS_BURST, createRelayService, type RelayDeps } from '../src/relay.js';
import { decodeRendezvous, encodeRendezvous, type RendezvousMessage } from '../src/rendezvous.js';

const node = (name: string, id: number, o: Partial<BnlNode> = {}): BnlNode => ({ name, id, endpoints: [], prefer: 'ipv4', subnets: [], ...o });

interface World {
  deps: RelayDeps;
  sent: Array<[string, RendezvousMessage]>;
  punched: Array<[string, string]>;
  keepalives: string[];
  handlers: Map<string, RequestHandler>;
  sessions: Set<string>;
  observed: Map<string, { host: string; port: number; lastRxMs?: number }>;
}

function world(self: string, nodes: BnlNode[]): World {
  const handlers = new Map<string, RequestHandler>();
  const w: World = {
    sent: [],
    punched: [],
    keepalives: [],
    handlers,
    sessions: new Set(nodes.map((n) => n.name).filter((n) => n !== self)),
    observed: new Map(),
    deps: undefined as unknown as RelayDeps,
  };
  const byName = new Map(nodes.map((n) => [n.name, n]));
  w.deps = {
    selfName: self,
    logger: silentLogger,
    record: (n) => byName.get(n),
    nodes: () => nodes,
    isMember: (n) => n !== self && byName.has(n),
    hasSession: (n) => w.sessions.has(n),
    observed: (n) => w.observed.get(n) ?? null,
    send: (to, payload) => {
      w.sent.push([to, decodeRendezvous(payload)]);
      return true;
    },
    punched: (n, where) => w.punched.push([n, `${where.host}:${where.port}`]),
    keepalive: (n) => {
      w.keepalives.push(n);
      return true;
    },
    connectDirect: () => Promise.reject(new Error('no network in this test')),
  };
  return w;
}

/** The service under test, attached to a fake control server that records its handlers. */
function service(w: World) {
  const s = createRelayService(w.deps);
  s.attach({ handle: (type: string, h: RequestHandler) => w.handlers.set(type, h), adopt: () => undefined } as unknown as ControlServer);
  return s;
}

function ctxOf(name: string): RequestContext & { closeFns: Array<() => void> } {
  const closeFns: Array<() => void> = [];
  return {
    peer: { name, fingerprint: '00', ou: undefined },
    connectionId: 1,
    remoteAddress: '192.0.2.9',
    exporter: Buffer.alloc(32),
    state: new Map(),
    onClose: (fn) => closeFns.push(fn),
    upgrade: () => undefined,
    closeFns,
  };
}

const LIST = [node('rho', 1, { relay: true, endpoints: [{ host: '192.0.2.1', port: 3406 }] }), node('bravo', 2), node('charlie', 3), node('delta', 4, { endpoints: [{ host: '192.0.2.4', port: 3406 }] })];

test('rendezvous messages round-trip, and malformed ones are refused with a stable code', () => {
  const msgs: RendezvousMessage[] = [
    { kind: 'where-is', name: 'charlie' },
    { kind: 'peer-at', name: 'charlie', host: '2001:db8::3', port: 3406 },
    { kind: 'splice-offer', name: 'bravo', token: Buffer.alloc(16, 9) },
    { kind: 'unknown-peer', name: 'x', code: 'ERR_RELAY_UNKNOWN_TARGET' },
  ];
  for (const m of msgs) assert.deepEqual(decodeRendezvous(encodeRendezvous(m)), m);
  const ok = encodeRendezvous(msgs[1]!);
  const bad: Buffer[] = [Buffer.alloc(0), Buffer.from([2, 1, 1, 65]), Buffer.from([1, 9, 1, 65]), ok.subarray(0, ok.length - 1), Buffer.concat([ok, Buffer.from([0])]), Buffer.from([1, 1, 0])];
  for (const b of bad) assert.throws(() => decodeRendezvous(b), (e: { code?: string }) => e.code === 'ERR_RENDEZVOUS_MALFORMED', b.toString('hex'));
});

test('a relay answers where-is to both sides; each punches with a burst of keepalives', async () => {
  const r = world('rho', LIST);
  const relay = service(r);
  r.observed.set('bravo', { host: '192.0.2.2', port: 3406 });
  r.observed.set('charlie', { host: '192.0.2.3', port: 40001 });
  relay.onMessage('bravo', encodeRendezvous({ kind: 'where-is', name: 'charlie' }));
  assert.deepEqual(r.sent, [
    ['bravo', { kind: 'peer-at', name: 'charlie', host: '192.0.2.3', port: 40001 }],
    ['charlie', { kind: 'peer-at', name: 'bravo', host: '192.0.2.2', port: 3406 }],
  ]);
  assert.equal(relay.stats().located, 1);

  // the member side: only a relay of the list is believed
  const b = world('bravo', LIST);
  const member = service(b);
  member.onMessage('delta', encodeRendezvous({ kind: 'peer-at', name: 'charlie', host: '192.0.2.66', port: 1 }));
  assert.deepEqual(b.punched, []);
  assert.equal(member.stats().dropped['from-non-relay'], 1);
  member.onMessage('rho', encodeRendezvous({ kind: 'peer-at', name: 'charlie', host: '192.0.2.3', port: 40001 }));
  assert.deepEqual(b.punched, [['charlie', '192.0.2.3:40001']]);
  const deadline = Date.now() + 20_000;
  while (b.keepalives.length < PUNCH_COUNT && Date.now() < deadline) await new Promise((res) => setTimeout(res, 50));
  assert.equal(b.keepalives.length, PUNCH_COUNT);
  // a peer we hear from right now is not moved
  b.observed.set('charlie', { host: '10.0.0.3', port: 3406, lastRxMs: Date.now() });
  member.onMessage('rho', encodeRendezvous({ kind: 'peer-at', name: 'charlie', host: '192.0.2.99', port: 1 }));
  assert.equal(b.punched.length, 1);
  assert.equal(member.stats().dropped['path-works'], 1);
  // a member that is not a relay serves no rendezvous
  member.onMessage('charlie', encodeRendezvous({ kind: 'where-is', name: 'rho' }));
  assert.equal(member.stats().dropped['not-a-relay'], 1);
  assert.equal(b.sent.length, 0);
  relay.close();
  member.close();
});

test('a session with a peer behind NAT asks the relays where it is, unless we hear from it', () => {
  const b = world('bravo', [...LIST, node('sigma', 5, { relay: true, endpoints: [{ host: '192.0.2.5', port: 3406 }] }), node('tau', 6, { relay: true, endpoints: [{ host: '192.0.2.6', port: 3406 }] })]);
  const member = service(b);
  member.sessionUp('delta'); // listed with an endpoint: found by itself
  assert.equal(b.sent.length, 0);
  b.observed.set('charlie', { host: '192.0.2.3', port: 3406, lastRxMs: Date.now() });
  member.sessionUp('charlie'); // heard from just now
  assert.equal(b.sent.length, 0);
  b.observed.set('charlie', { host: '192.0.2.3', port: 3406, lastRxMs: Date.now() - 60_000 });
  member.sessionUp('charlie'); // silent for a minute (renegotiated after no-reply): locate again
  assert.deepEqual(b.sent.map(([to, m]) => [to, m.kind, m.name]), [['rho', 'where-is', 'charlie'], ['sigma', 'where-is', 'charlie']], 'two relays at most');
  member.sessionUp('charlie'); // at most once a second per peer
  assert.equal(b.sent.length, 2);
  assert.equal(member.stats().locateSent, 2);
  member.close();
});

test('a relay refuses unknown targets, itself as target, and members over their budget or splice limit', async () => {
  const r = world('rho', LIST);
  const relay = service(r);
  r.observed.set('bravo', { host: '192.0.2.2', port: 3406 });
  r.observed.set('charlie', { host: '192.0.2.3', port: 3406 });
  // where-is for a non-member, or one without an observed endpoint
  relay.onMessage('bravo', encodeRendezvous({ kind: 'where-is', name: 'mallory' }));
  relay.onMessage('bravo', encodeRendezvous({ kind: 'where-is', name: 'delta' }));
  assert.deepEqual(r.sent.map(([to, m]) => [to, m.kind]), [['bravo', 'unknown-peer'], ['bravo', 'unknown-peer']]);
  assert.equal(relay.stats().refused.ERR_RELAY_UNKNOWN_TARGET, 2);
  // budget per member
  for (let i = 0; i < RENDEZVOUS_BURST + 5; i++) relay.onMessage('charlie', encodeRendezvous({ kind: 'where-is', name: 'bravo' }));
  assert.ok((relay.stats().dropped['over-budget'] ?? 0) >= 4, JSON.stringify(relay.stats().dropped));
  assert.ok(relay.stats().located <= RENDEZVOUS_BURST + 1);
  // malformed
  relay.onMessage('bravo', Buffer.from([1, 77]));
  assert.equal(relay.stats().dropped.malformed, 1);

  const connect = r.handlers.get('relay-connect')!;
  const accept = r.handlers.get('relay-accept')!;
  const code = (c: string) => (e: { code?: string }) => e.code === c;
  await assert.rejects(Promise.resolve().then(() => connect({ target: 'mallory' }, ctxOf('bravo'))), code('ERR_RELAY_UNKNOWN_TARGET'));
  await assert.rejects(Promise.resolve().then(() => connect({ target: 'bravo' }, ctxOf('bravo'))), code('ERR_RELAY_UNKNOWN_TARGET'));
  await assert.rejects(Promise.resolve().then(() => connect({ target: 'delta' }, ctxOf('bravo'))), code('ERR_RELAY_UNKNOWN_TARGET'), 'no observed endpoint');
  await assert.rejects(Promise.resolve().then(() => accept({ token: Buffer.alloc(16).toString('base64') }, ctxOf('charlie'))), code('ERR_RELAY_UNKNOWN_TOKEN'));
  // per-member limit: bravo's splices wait for charlie (who never answers here)
  r.sent.length = 0;
  const waiting = Array.from({ length: MAX_SPLICES_PER_MEMBER }, () => Promise.resolve().then(() => connect({ target: 'charlie' }, ctxOf('bravo'))));
  await new Promise((res) => setTimeout(res, 50));
  await assert.rejects(Promise.resolve().then(() => connect({ target: 'charlie' }, ctxOf('bravo'))), code('ERR_RELAY_LIMIT'));
  // the offers went to charlie over the session; a token is single use and bound to charlie
  const offer = r.sent.find(([to, m]) => to === 'charlie' && m.kind === 'splice-offer')![1] as Extract<RendezvousMessage, { kind: 'splice-offer' }>;
  assert.equal(offer.name, 'bravo');
  await assert.rejects(Promise.resolve().then(() => accept({ token: offer.token.toString('base64') }, ctxOf('delta'))), code('ERR_RELAY_UNKNOWN_TOKEN'), 'another member cannot take the leg');
  assert.deepEqual(await accept({ token: offer.token.toString('base64') }, ctxOf('charlie')), { relay: 'rho' });
  await assert.rejects(Promise.resolve().then(() => accept({ token: offer.token.toString('base64') }, ctxOf('charlie'))), code('ERR_RELAY_UNKNOWN_TOKEN'), 'single use');
  const settled = await Promise.allSettled(waiting);
  assert.equal(settled.filter((s) => s.status === 'fulfilled').length, 1, 'the accepted splice');
  assert.ok(settled.filter((s) => s.status === 'rejected').every((s) => (s as PromiseRejectedResult).reason.code === 'ERR_RELAY_TIMEOUT'));

  // a node that is not a relay refuses to splice at all
  const b = world('bravo', LIST);
  service(b);
  await assert.rejects(Promise.resolve().then(() => b.handlers.get('relay-connect')!({ target: 'charlie' }, ctxOf('rho'))), code('ERR_RELAY_NOT_RELAY'));
  relay.close();
});
