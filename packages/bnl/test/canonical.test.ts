import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createUnsignedBnl, parseBnl, encodePayload, normaliseHost, parseCidr, normaliseFingerprint, normaliseMac, validateBnl, diffBnl, BnlError, type Bnl } from '../src/index.js';
import { makeTestBnl } from '../src/testing.js';
import { newKey, signed } from './helpers.js';

function rich(): Bnl {
  return {
    network: 'lab',
    serial: 7,
    timestamp: 2_208_988_800_000, // after 2038: 64-bit milliseconds
    nodes: [
      { name: 'zeta', id: 9, endpoints: [{ host: 'vpn.example.org', port: 655 }, { host: '2001:db8::1', port: 3406 }], prefer: 'ipv6', subnets: ['fd00:1::/64', '10.9.0.0/16'], tags: ['b', 'a'], relay: true },
      { name: 'alpha', id: 2, endpoints: [], prefer: 'ipv4', subnets: [], fingerprint: 'ab'.repeat(32) },
    ],
    signers: { keys: ['bb'.repeat(32), 'aa'.repeat(32)], threshold: 1 },
  };
}

test('canonical form round trips: parse(encode(x)) gives the same bytes and hash', () => {
  const a = createUnsignedBnl(rich());
  const b = parseBnl(a.bytes);
  assert.deepEqual(Buffer.from(b.bytes), Buffer.from(a.bytes));
  assert.equal(b.hash, a.hash);
  assert.deepEqual(b.bnl, a.bnl);
  assert.deepEqual(b.bnl.nodes.map((n) => n.id), [2, 9]);
  assert.deepEqual(b.bnl.nodes[1].subnets, ['10.9.0.0/16', 'fd00:1::/64']);
  assert.deepEqual(b.bnl.nodes[1].tags, ['a', 'b']);
  assert.equal(b.bnl.timestamp, 2_208_988_800_000);
});

test('one list, one byte form: any input order and dropped empty optionals give identical bytes', () => {
  const x = rich();
  const y: Bnl = { ...x, nodes: [...x.nodes].reverse().map((n) => ({ ...n, relay: n.relay ?? false, tags: n.tags ? [...n.tags].reverse() : [], subnets: [...n.subnets].reverse() })) };
  y.signers = { keys: [...(x.signers?.keys ?? [])].reverse(), threshold: 1 };
  assert.deepEqual(Buffer.from(encodePayload(y)), Buffer.from(encodePayload(x)));
  assert.equal(createUnsignedBnl(y).hash, createUnsignedBnl(x).hash);
  const z = { ...x, serial: 8 };
  assert.notEqual(createUnsignedBnl(z).hash, createUnsignedBnl(x).hash);
});

test('non-canonical spellings of the same list are rejected, not silently re-canonicalised', () => {
  const good = Buffer.from(createUnsignedBnl(makeTestBnl(2)).bytes).toString('ascii');
  const [head, payload] = good.split('\n');
  const obj = JSON.parse(payload) as Bnl;
  const variants = [
    JSON.stringify(obj, null, 1).replace(/\n/g, ''), // whitespace
    JSON.stringify({ ...obj, nodes: [...obj.nodes].reverse() }), // node order
    payload.replace('"serial":1', '"serial":1.0'), // number form
    payload.replace('{"network":"testnet",', '{"network":"testnet","network":"testnet",'), // duplicate key
    JSON.stringify({ timestamp: obj.timestamp, serial: obj.serial, nodes: obj.nodes, network: obj.network }), // key order
  ];
  for (const v of variants) {
    assert.throws(() => parseBnl(Buffer.from(`${head}\n${v}\n`)), (e: BnlError) => e.code === 'ERR_BNL_NONCANONICAL', v);
  }
  const k1 = newKey();
  const k2 = newKey();
  const s = Buffer.from(signed(makeTestBnl(2), k1, k2).bytes).toString('ascii').split('\n');
  const swapped = [s[0], s[1], s[3], s[2], ''].join('\n');
  assert.throws(() => parseBnl(Buffer.from(swapped)), (e: BnlError) => e.code === 'ERR_BNL_NONCANONICAL');
});

test('envelope errors: truncated, garbage, wrong version, oversized, non-ASCII', () => {
  const bytes = Buffer.from(signed(makeTestBnl(3), newKey()).bytes);
  const code = (b: Uint8Array): string => {
    try {
      parseBnl(b);
      return 'ok';
    } catch (e) {
      return (e as BnlError).code;
    }
  };
  assert.equal(code(bytes), 'ok');
  for (const cut of [0, 5, 20, 100, bytes.length - 1, bytes.length - 50]) assert.equal(code(bytes.subarray(0, cut)), 'ERR_BNL_TRUNCATED', `cut at ${cut}`);
  assert.equal(code(Buffer.from('hello world, this is not a list\n')), 'ERR_BNL_FORMAT');
  assert.equal(code(Buffer.from([0xff, 0x00, 0x13, 0x37, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42])), 'ERR_BNL_FORMAT');
  assert.equal(code(Buffer.from(bytes.toString('ascii').replace('cluevpn-bnl 1', 'cluevpn-bnl 2'))), 'ERR_BNL_VERSION');
  assert.equal(code(Buffer.from(bytes.toString('ascii').replace('node1', 'nöde1'))), 'ERR_BNL_FORMAT');
  assert.equal(code(Buffer.from(bytes.toString('ascii').replace('\nsig ', '\nsag '))), 'ERR_BNL_FORMAT');
  assert.equal(code(Buffer.concat([bytes, Buffer.alloc(4 * 1024 * 1024)])), 'ERR_BNL_TOO_LARGE');
  assert.equal(code(Buffer.from(bytes.toString('ascii').replace('"serial":1', '"serial":1,'))), 'ERR_BNL_FORMAT');
});

test('host, CIDR and fingerprint normalisation vectors', () => {
  const hosts: [string, string | null][] = [
    ['10.0.0.1', '10.0.0.1'],
    ['010.0.0.1', null],
    ['256.1.1.1', null],
    ['2001:DB8:0:0:0:0:0:1', '2001:db8::1'],
    ['[2001:db8::1]', '2001:db8::1'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['2001:0db8:0000:0001:0001:0001:0001:0001', '2001:db8:0:1:1:1:1:1'],
    ['::ffff:192.0.2.1', '::ffff:c000:201'],
    ['::', '::'],
    ['fe80::1%eth0', null],
    ['VPN.Example.ORG.', 'vpn.example.org'],
    ['bad_name.example', null],
    ['1.2.3', null],
  ];
  for (const [i, want] of hosts) assert.equal(normaliseHost(i)?.host ?? null, want, i);
  const cidrs: [string, string, string][] = [
    ['10.1.0.0/16', 'ok', '10.1.0.0/16'],
    ['10.1.2.3/16', 'host-bits', '10.1.0.0/16'],
    ['fd00::1/64', 'host-bits', 'fd00::/64'],
    ['10.0.0.0/33', 'syntax', ''],
    ['10.0.0.0', 'syntax', ''],
    ['10.0.0.0/08', 'syntax', ''],
  ];
  for (const [i, kind, canon] of cidrs) {
    const r = parseCidr(i);
    assert.equal(r.ok ? 'ok' : r.reason, kind, i);
    if (canon) assert.equal(r.canonical, canon, i);
  }
  assert.equal(normaliseFingerprint('AB:'.repeat(31) + 'AB'), 'ab'.repeat(32));
  assert.equal(normaliseFingerprint('ab'.repeat(31)), null);
});

test('a node without a reachable listed endpoint: "endpoints":[] is its one canonical spelling; the field itself is required', () => {
  const list = createUnsignedBnl({
    network: 'lab',
    serial: 1,
    timestamp: 1_700_000_000_000,
    nodes: [
      { name: 'alpha', id: 1, endpoints: [{ host: '192.0.2.1', port: 3406 }], prefer: 'ipv4', subnets: ['10.99.0.1/32'] },
      { name: 'gamma', id: 3, endpoints: [], prefer: 'ipv4', subnets: ['10.99.0.3/32'] },
    ],
  });
  const text = Buffer.from(list.bytes).toString('ascii');
  assert.match(text, /\{"endpoints":\[\],"id":3,"name":"gamma",/);
  const back = parseBnl(list.bytes);
  assert.deepEqual(back.bnl.nodes[1].endpoints, []);
  assert.equal(back.hash, list.hash);
  // Leaving the field out is not another spelling of "none": it is refused.
  const [head, payload] = text.split('\n');
  const missing = payload.replace('{"endpoints":[],"id":3', '{"id":3');
  assert.notEqual(missing, payload);
  assert.throws(() => parseBnl(Buffer.from(`${head}\n${missing}\n`)), (e: BnlError) => e.code === 'ERR_BNL_INVALID' && JSON.stringify(e).includes('endpoints'));
  assert.deepEqual(validateBnl(back.bnl), []);
});

test('mac (switch mode): sorted, between id and name, omitted when empty, so lists without it keep their bytes', () => {
  const x = rich();
  const withMac: Bnl = { ...x, nodes: x.nodes.map((n) => (n.name === 'zeta' ? { ...n, mac: ['02:00:00:00:00:0b', '02:00:00:00:00:0a'] } : n)) };
  const a = createUnsignedBnl(withMac);
  const text = Buffer.from(a.bytes).toString('ascii');
  assert.match(text, /"id":9,"mac":\["02:00:00:00:00:0a","02:00:00:00:00:0b"\],"name":"zeta"/);
  assert.deepEqual(Buffer.from(parseBnl(a.bytes).bytes), Buffer.from(a.bytes), 'parses back to the same bytes');
  // an empty list is the field left out: the same bytes as a list written before the field existed
  const empty: Bnl = { ...x, nodes: x.nodes.map((n) => ({ ...n, mac: [] })) };
  assert.deepEqual(Buffer.from(encodePayload(empty)), Buffer.from(encodePayload(x)));
  assert.doesNotMatch(Buffer.from(encodePayload(x)).toString('ascii'), /"mac"/);
  // a diff names the field
  const d = diffBnl(createUnsignedBnl(x).bnl, a.bnl);
  assert.deepEqual(d.changed.map((c) => [c.name, c.fields]), [['zeta', ['mac']]]);
  assert.equal(normaliseMac(' 02-00-00-00-00-0A '), '02:00:00:00:00:0a');
  assert.equal(normaliseMac('02:00:00:00:00'), null);
});
