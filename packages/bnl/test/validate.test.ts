import { test } from 'node:test';
import assert from 'node:assert/strict';
import { validateBnl, createUnsignedBnl, BnlValidationError, type Bnl, type BnlNode, type BnlProblemCode } from '../src/index.js';
import { makeTestBnl } from '../src/testing.js';

function withNode(patch: Partial<BnlNode> & Record<string, unknown>, index = 0): Bnl {
  const b = makeTestBnl(3);
  b.nodes[index] = { ...b.nodes[index], ...patch } as BnlNode;
  return b;
}

const cases: [string, unknown, BnlProblemCode, string | undefined, string | undefined][] = [
  ['unknown list field', { ...makeTestBnl(1), extra: 1 }, 'ERR_BNL_FIELD', undefined, 'extra'],
  ['bad network name', makeTestBnl(1, { network: 'a b' }), 'ERR_BNL_NETWORK_NAME', undefined, 'network'],
  ['negative serial', makeTestBnl(1, { serial: -1 }), 'ERR_BNL_SERIAL', undefined, 'serial'],
  ['fractional timestamp', makeTestBnl(1, { timestamp: 1.5 }), 'ERR_BNL_TIMESTAMP', undefined, 'timestamp'],
  ['name syntax', withNode({ name: 'bad name' }), 'ERR_BNL_NAME_SYNTAX', '#0', 'name'],
  ['name ends with dash', withNode({ name: 'node-' }), 'ERR_BNL_NAME_SYNTAX', '#0', 'name'],
  ['duplicate name (case-insensitive)', withNode({ name: 'NODE1' }, 1), 'ERR_BNL_NAME_DUPLICATE', 'NODE1', 'name'],
  ['id zero', withNode({ id: 0 }), 'ERR_BNL_ID_RANGE', 'node1', 'id'],
  ['id too big', withNode({ id: 2 ** 32 }), 'ERR_BNL_ID_RANGE', 'node1', 'id'],
  ['duplicate id', withNode({ id: 1 }, 2), 'ERR_BNL_ID_DUPLICATE', 'node3', 'id'],
  ['bad host', withNode({ endpoints: [{ host: '300.1.1.1', port: 1 }] }), 'ERR_BNL_HOST', 'node1', 'endpoints.host'],
  ['non-canonical ipv6 host', withNode({ endpoints: [{ host: '2001:DB8::1', port: 1 }] }), 'ERR_BNL_HOST', 'node1', 'endpoints.host'],
  ['port zero', withNode({ endpoints: [{ host: '192.0.2.1', port: 0 }] }), 'ERR_BNL_PORT', 'node1', 'endpoints.port'],
  ['port too big', withNode({ endpoints: [{ host: '192.0.2.1', port: 65536 }] }), 'ERR_BNL_PORT', 'node1', 'endpoints.port'],
  ['duplicate endpoint', withNode({ endpoints: [{ host: '192.0.2.1', port: 1 }, { host: '192.0.2.1', port: 1 }] }), 'ERR_BNL_ENDPOINT_DUPLICATE', 'node1', 'endpoints'],
  ['prefer', withNode({ prefer: 'ipv5' as 'ipv4' }), 'ERR_BNL_PREFER', 'node1', 'prefer'],
  ['subnet syntax', withNode({ subnets: ['10.0.0.0/40'] }), 'ERR_BNL_SUBNET', 'node1', 'subnets'],
  ['subnet not canonical text', withNode({ subnets: ['fd00:0::/64'] }), 'ERR_BNL_SUBNET', 'node1', 'subnets'],
  ['subnet host bits', withNode({ subnets: ['10.0.1.1/24'] }), 'ERR_BNL_SUBNET_HOST_BITS', 'node1', 'subnets'],
  ['subnet overlap between nodes', withNode({ subnets: ['10.0.0.0/16'] }, 2), 'ERR_BNL_SUBNET_OVERLAP', 'node1', 'subnets'],
  ['ipv6 overlap', (() => { const b = withNode({ subnets: ['fd00::/48'] }); b.nodes[1].subnets = ['fd00:0:0:1::/64']; return b; })(), 'ERR_BNL_SUBNET_OVERLAP', 'node2', 'subnets'],
  ['overlap within one node', withNode({ subnets: ['10.0.1.0/24', '10.0.1.128/25'] }), 'ERR_BNL_SUBNET_OVERLAP', 'node1', 'subnets'],
  ['fingerprint', withNode({ fingerprint: 'AB:CD' }), 'ERR_BNL_FINGERPRINT', 'node1', 'fingerprint'],
  ['relay false is not canonical', withNode({ relay: false }), 'ERR_BNL_FIELD', 'node1', 'relay'],
  ['tag syntax', withNode({ tags: ['has space'] }), 'ERR_BNL_TAG', 'node1', 'tags'],
  ['duplicate tag', withNode({ tags: ['a', 'a'] }), 'ERR_BNL_TAG', 'node1', 'tags'],
  ['empty tags', withNode({ tags: [] }), 'ERR_BNL_TAG', 'node1', 'tags'],
  ['unknown node field', withNode({ colour: 'red' }), 'ERR_BNL_FIELD', 'node1', 'colour'],
  ['mac upper case', withNode({ mac: ['02:00:00:00:00:AA'] }), 'ERR_BNL_MAC', 'node1', 'mac'],
  ['mac with dashes', withNode({ mac: ['02-00-00-00-00-aa'] }), 'ERR_BNL_MAC', 'node1', 'mac'],
  ['mac multicast', withNode({ mac: ['01:00:5e:00:00:01'] }), 'ERR_BNL_MAC', 'node1', 'mac'],
  ['mac broadcast', withNode({ mac: ['ff:ff:ff:ff:ff:ff'] }), 'ERR_BNL_MAC', 'node1', 'mac'],
  ['mac zero', withNode({ mac: ['00:00:00:00:00:00'] }), 'ERR_BNL_MAC', 'node1', 'mac'],
  ['mac empty list', withNode({ mac: [] }), 'ERR_BNL_MAC', 'node1', 'mac'],
  ['mac not a list', withNode({ mac: '02:00:00:00:00:aa' as unknown as string[] }), 'ERR_BNL_MAC', 'node1', 'mac'],
  ['mac twice in one node', withNode({ mac: ['02:00:00:00:00:aa', '02:00:00:00:00:aa'] }), 'ERR_BNL_MAC_DUPLICATE', 'node1', 'mac'],
  ['mac listed for two nodes', (() => { const b = withNode({ mac: ['02:00:00:00:00:aa'] }); b.nodes[1].mac = ['02:00:00:00:00:aa']; return b; })(), 'ERR_BNL_MAC_DUPLICATE', 'node2', 'mac'],
  ['signers threshold', makeTestBnl(1, { signers: { keys: ['aa'.repeat(32)], threshold: 2 } }), 'ERR_BNL_SIGNERS', undefined, 'signers.threshold'],
  ['signers key', makeTestBnl(1, { signers: { keys: ['xyz'], threshold: 1 } }), 'ERR_BNL_SIGNERS', undefined, 'signers.keys'],
  ['nodes not array', { ...makeTestBnl(1), nodes: {} }, 'ERR_BNL_FIELD', undefined, 'nodes'],
];

for (const [name, input, code, node, field] of cases) {
  test(`validation: ${name} → ${code}`, () => {
    const problems = validateBnl(input);
    const hit = problems.find((p) => p.code === code);
    assert.ok(hit, `expected ${code}, got ${JSON.stringify(problems)}`);
    assert.equal(hit.node, node);
    assert.equal(hit.field, field);
  });
}

test('validation: a relay without an endpoint is accepted when read (lists signed before the rule stay valid; bnl add/modify refuse to write one)', () => {
  assert.deepEqual(validateBnl(withNode({ relay: true, endpoints: [] })), []);
});

test('validation: a valid list has no problems, and createUnsignedBnl throws ERR_BNL_INVALID listing every problem', () => {
  assert.deepEqual(validateBnl(makeTestBnl(5)), []);
  const b = makeTestBnl(3);
  b.nodes[0].id = 2;
  b.nodes[1].endpoints = [{ host: 'x y', port: 99999 }];
  try {
    createUnsignedBnl(b);
    assert.fail('expected a throw');
  } catch (e) {
    assert.ok(e instanceof BnlValidationError);
    assert.equal(e.code, 'ERR_BNL_INVALID');
    assert.deepEqual(e.problems.map((p) => p.code).sort(), ['ERR_BNL_HOST', 'ERR_BNL_ID_DUPLICATE', 'ERR_BNL_PORT']);
  }
});

test('validation: too many nodes', () => {
  const b = makeTestBnl(1);
  b.nodes = new Array(65_536).fill(b.nodes[0]);
  assert.deepEqual(validateBnl(b).map((p) => p.code), ['ERR_BNL_TOO_MANY_NODES']);
});

test('validation: overlap check on 65 535 nodes is sub-quadratic and reports every overlap', () => {
  const b = makeTestBnl(65_535);
  b.nodes[40_000].subnets = ['10.156.0.0/16', 'fd00:9c40::/32'];
  b.nodes[50_000].subnets.push('fd00:9c40:1::/48');
  const t0 = process.hrtime.bigint();
  const problems = validateBnl(b);
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  // node40001's 10.156.0.0/16 contains 255 other nodes' /24s (10.156.x.0/24 for x ≠ 65); the v6 pair is one more.
  assert.equal(problems.filter((p) => p.code === 'ERR_BNL_SUBNET_OVERLAP').length, 256);
  assert.ok(problems.some((p) => p.node === 'node50001' && p.message.includes('fd00:9c40::/32')));
  assert.ok(ms < 5000, `validation took ${ms} ms`);
});
