import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { BnlNode } from '@cluevpn/bnl';
import { createEndpointBook, resolveCandidates, FAILED_RESOLVE_MIN_MS, type Endpoint } from '../src/endpoints.js';
import { silentLogger } from '../src/logging.js';

const node = (endpoints: { host: string; port: number }[], prefer: 'ipv4' | 'ipv6' = 'ipv4'): BnlNode => ({ name: 'beta', id: 2, endpoints, prefer, subnets: ['10.99.0.2/32'] });
const CFG = { disableipv6: false, preferipv6: false, resolveintervalMs: 3_600_000 };

/** A resolver whose answers the test changes; counts look-ups. */
function fakeDns(answers: Record<string, string[]>) {
  const calls: string[] = [];
  return {
    calls,
    answers,
    lookup: async (host: string, family: 0 | 4) => {
      calls.push(host);
      const a = answers[host];
      if (a === undefined) throw Object.assign(new Error(`${host} not found`), { code: 'ENOTFOUND' });
      return a.map((address) => ({ address, family: address.includes(':') ? 6 : 4 })).filter((r) => family === 0 || r.family === family);
    },
  };
}

const waitUntil = async (cond: () => boolean, what: string): Promise<void> => {
  const deadline = Date.now() + 10_000;
  while (!cond()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};

test('resolveCandidates: every endpoint, every address of a name, preferred family first, record order kept, duplicates and unresolvable names left out', async () => {
  const dns = fakeDns({ 'beta.test': ['192.0.2.7', '2001:db8::7', '192.0.2.2'] });
  const n = node([
    { host: '198.51.100.2', port: 3406 },
    { host: 'beta.test', port: 4000 },
    { host: 'gone.test', port: 3406 },
    { host: '2001:db8::2', port: 3406 },
    { host: '198.51.100.2', port: 3406 },
  ]);
  assert.deepEqual(await resolveCandidates(n, CFG, silentLogger, dns.lookup), [
    { host: '198.51.100.2', port: 3406 },
    { host: '192.0.2.7', port: 4000 },
    { host: '192.0.2.2', port: 4000 },
    { host: '2001:db8::7', port: 4000 },
    { host: '2001:db8::2', port: 3406 },
  ]);
  assert.deepEqual((await resolveCandidates({ ...n, prefer: 'ipv6' }, CFG, silentLogger, dns.lookup)).map((c) => c.host).slice(0, 2), ['2001:db8::7', '2001:db8::2']);
  assert.deepEqual((await resolveCandidates(n, { ...CFG, disableipv6: true }, silentLogger, dns.lookup)).map((c) => c.host), ['198.51.100.2', '192.0.2.7', '192.0.2.2']);
});

test('endpoint book: the first candidate at first; the one the control channel reached becomes the one in use and is tried first', async () => {
  const used: (Endpoint | null)[] = [];
  const dns = fakeDns({});
  const book = createEndpointBook({ config: CFG, logger: silentLogger, use: (_, ep) => used.push(ep), lookup: dns.lookup });
  try {
    const first = await book.set(node([{ host: '192.0.2.3', port: 3406 }, { host: '192.0.2.2', port: 3406 }]));
    assert.deepEqual(first, { host: '192.0.2.3', port: 3406 });
    assert.deepEqual(book.candidates('beta').map((c) => c.host), ['192.0.2.3', '192.0.2.2']);
    book.reached('beta', { host: '192.0.2.2', port: 3406 });
    assert.deepEqual(used, [{ host: '192.0.2.2', port: 3406 }], 'the data plane follows');
    assert.deepEqual(book.current('beta'), { host: '192.0.2.2', port: 3406 });
    assert.deepEqual(book.candidates('beta').map((c) => c.host), ['192.0.2.2', '192.0.2.3']);
    book.reached('beta', { host: '192.0.2.2', port: 3406 });
    assert.equal(used.length, 1, 'reaching the one in use again changes nothing');
    // addresses only: a failure has no name to look up
    book.reached('beta', null);
    assert.deepEqual(dns.calls, []);
    // roaming moves the address, keeps the control port
    book.roamed('beta', '192.0.2.9', 51000);
    assert.deepEqual(book.current('beta'), { host: '192.0.2.9', port: 3406 });
    book.remove('beta');
    assert.deepEqual(book.candidates('beta'), []);
  } finally {
    book.close();
  }
});

test('endpoint book: names are looked up again when no candidate answers (at most once a second), and the new address takes over', async () => {
  const used: (Endpoint | null)[] = [];
  const dns = fakeDns({ 'beta.test': ['192.0.2.2'] });
  const book = createEndpointBook({ config: CFG, logger: silentLogger, use: (_, ep) => used.push(ep), lookup: dns.lookup });
  try {
    assert.deepEqual(await book.set(node([{ host: 'beta.test', port: 3406 }])), { host: '192.0.2.2', port: 3406 });
    assert.equal(dns.calls.length, 1);
    dns.answers['beta.test'] = ['192.0.2.7'];
    book.reached('beta', null);
    await waitUntil(() => used.length === 1, 'the new address');
    assert.deepEqual(used, [{ host: '192.0.2.7', port: 3406 }]);
    assert.equal(dns.calls.length, 2);
    book.reached('beta', null);
    assert.equal(dns.calls.length, 2, `not again within ${FAILED_RESOLVE_MIN_MS} ms`);
    // a name that stops resolving keeps its last addresses
    delete dns.answers['beta.test'];
    await new Promise((r) => setTimeout(r, FAILED_RESOLVE_MIN_MS + 50));
    book.reached('beta', null);
    await waitUntil(() => dns.calls.length === 3, 'a third look-up');
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(book.current('beta'), { host: '192.0.2.7', port: 3406 });
  } finally {
    book.close();
  }
});

test('endpoint book: names are looked up again every resolveinterval; the one in use stays while it is still an answer', async () => {
  const used: (Endpoint | null)[] = [];
  const dns = fakeDns({ 'beta.test': ['192.0.2.2', '192.0.2.5'] });
  const book = createEndpointBook({ config: { ...CFG, resolveintervalMs: 50 }, logger: silentLogger, use: (_, ep) => used.push(ep), lookup: dns.lookup });
  try {
    await book.set(node([{ host: 'beta.test', port: 3406 }]));
    book.reached('beta', { host: '192.0.2.5', port: 3406 });
    assert.equal(used.length, 1);
    dns.answers['beta.test'] = ['192.0.2.7', '192.0.2.5'];
    const calls = dns.calls.length;
    await waitUntil(() => dns.calls.length >= calls + 2, 'two periodic look-ups');
    assert.equal(used.length, 1, '192.0.2.5 is still an answer: kept');
    assert.deepEqual(book.candidates('beta').map((c) => c.host), ['192.0.2.5', '192.0.2.7']);
    dns.answers['beta.test'] = ['192.0.2.8'];
    await waitUntil(() => used.length === 2, 'the move');
    assert.deepEqual(used[1], { host: '192.0.2.8', port: 3406 });
  } finally {
    book.close();
  }
  // records of addresses only are never looked up
  const dns2 = fakeDns({});
  const book2 = createEndpointBook({ config: { ...CFG, resolveintervalMs: 20 }, logger: silentLogger, use: () => undefined, lookup: dns2.lookup });
  try {
    await book2.set(node([{ host: '192.0.2.2', port: 3406 }]));
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(dns2.calls, []);
  } finally {
    book2.close();
  }
});
