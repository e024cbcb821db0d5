/**
 * Access rules in the list (rules.ts): canonical form, strict parsing,
 * signatures over them, the diff, and the policy compiled for one node.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  BnlValidationError,
  compilePolicy,
  createTrust,
  createUnsignedBnl,
  diffBnl,
  parseBnl,
  ruleFromSpec,
  verifyBnl,
  type Bnl,
  type BnlRule,
} from '../src/index.js';
import { makeTestBnl } from '../src/testing.js';
import { PRE_RULES_LIST, PRE_RULES_PUBKEY } from './fixtures/pre-rules.js';
import { newKey, signed, trustOf } from './helpers.js';

/** web (tag web), office (tags office, staff), guest (no tag), db (tag web). */
function mesh(rules?: BnlRule[]): Bnl {
  const b = makeTestBnl(4);
  const names = ['web', 'office', 'guest', 'db'];
  b.nodes.forEach((n, i) => (n.name = names[i]));
  b.nodes[0].tags = ['web'];
  b.nodes[1].tags = ['office', 'staff'];
  b.nodes[3].tags = ['web'];
  b.nodes[0].subnets.push('fd00:1::/64');
  if (rules !== undefined) b.rules = rules;
  return b;
}

const OFFICE_WEB: BnlRule = { from: 'tag:office', to: 'tag:web', proto: 'tcp', ports: ['80'] };

function payloadWith(rulesJson: string): Buffer {
  const base = Buffer.from(createUnsignedBnl(mesh()).payload).toString('ascii');
  return Buffer.from(`cluevpn-bnl 1\n${base.replace(',"serial":', `,"rules":${rulesJson},"serial":`)}\n`, 'ascii');
}

/** The problem codes and fields a file with these rules is refused with. */
function refusal(rulesJson: string): { code: string; problems: string[] } {
  try {
    parseBnl(payloadWith(rulesJson));
  } catch (err) {
    const e = err as BnlValidationError;
    return { code: e.code, problems: (e.problems ?? []).map((p) => `${p.code} ${p.field ?? ''}`) };
  }
  return { code: 'accepted', problems: [] };
}

describe('access rules in the list', () => {
  it('a list signed before rules existed still parses, verifies and canonicalises to the same bytes', () => {
    const list = parseBnl(Buffer.from(PRE_RULES_LIST, 'ascii'));
    assert.equal(list.bnl.rules, undefined);
    assert.equal(verifyBnl(list, createTrust([PRE_RULES_PUBKEY], 1)).signers.length, 1);
    assert.deepEqual(Buffer.from(createUnsignedBnl(list.bnl).payload), Buffer.from(list.payload));
    // `rules: []` is "no rules": same bytes, same hash
    assert.equal(createUnsignedBnl({ ...list.bnl, rules: [] }).hash, list.hash);
    assert.equal(compilePolicy(list.bnl, 'web'), null, 'no rules: no policy, everything allowed');
  });

  it('writes rules in one canonical form: sorted, defaults omitted, keys sorted', () => {
    const rules: BnlRule[] = [
      ruleFromSpec({ from: 'tag=office', to: 'tag:web', proto: 'tcp', ports: '8080,80,9000-9100' }),
      ruleFromSpec({ from: 'any', to: 'node:db', proto: 'any' }),
      { from: 'node:guest', to: 'tag:web', proto: 'icmp' },
    ];
    const list = createUnsignedBnl(mesh(rules));
    const text = Buffer.from(list.payload).toString('ascii');
    assert.match(
      text,
      /,"rules":\[\{"from":"any","to":"node:db"\},\{"from":"node:guest","proto":"icmp","to":"tag:web"\},\{"from":"tag:office","ports":\["80","8080","9000-9100"\],"proto":"tcp","to":"tag:web"\}\],"serial":/,
    );
    const again = createUnsignedBnl(mesh([...rules].reverse()));
    assert.equal(again.hash, list.hash, 'order of entry does not matter');
    assert.deepEqual(parseBnl(list.bytes).bnl.rules, list.bnl.rules);
  });

  it('refuses rules that are not canonical or not valid, naming the rule and field', () => {
    const r = (j: unknown): string => JSON.stringify(j);
    assert.equal(refusal(r([{ from: 'tag:web', to: 'any' }, { from: 'any', to: 'any' }])).code, 'ERR_BNL_NONCANONICAL', 'unsorted');
    assert.equal(refusal(r([{ to: 'any', from: 'any' }])).code, 'ERR_BNL_NONCANONICAL', 'keys unsorted');
    assert.deepEqual(refusal(r([])), { code: 'ERR_BNL_INVALID', problems: ['ERR_BNL_RULE rules'] });
    assert.deepEqual(refusal(r([{ action: 'deny', from: 'any', to: 'any' }])), { code: 'ERR_BNL_INVALID', problems: ['ERR_BNL_FIELD rules[0].action'] });
    assert.deepEqual(refusal(r([{ from: 'any', proto: 'any', to: 'any' }])).problems, ['ERR_BNL_RULE rules[0].proto'], 'the default is omitted, never written');
    assert.deepEqual(refusal(r([{ from: 'web', to: 'any' }])).problems, ['ERR_BNL_RULE rules[0].from']);
    assert.deepEqual(refusal(r([{ from: 'any', to: 'tag:' }])).problems, ['ERR_BNL_RULE rules[0].to']);
    assert.deepEqual(refusal(r([{ from: 'any', ports: ['80'], to: 'any' }])).problems, ['ERR_BNL_RULE rules[0].ports'], 'ports need tcp/udp');
    assert.deepEqual(refusal(r([{ from: 'any', ports: ['80'], proto: 'icmp', to: 'any' }])).problems, ['ERR_BNL_RULE rules[0].ports']);
    assert.deepEqual(refusal(r([{ from: 'any', ports: ['080'], proto: 'tcp', to: 'any' }])).problems, ['ERR_BNL_RULE rules[0].ports']);
    assert.deepEqual(refusal(r([{ from: 'any', ports: ['90', '80'], proto: 'tcp', to: 'any' }])).problems, ['ERR_BNL_RULE rules[0].ports'], 'unsorted ports');
    assert.deepEqual(refusal(r([{ from: 'any', ports: ['80-90', '85'], proto: 'tcp', to: 'any' }])).problems, ['ERR_BNL_RULE rules[0].ports'], 'overlap');
    assert.deepEqual(refusal(r([{ from: 'any', ports: ['90-80'], proto: 'tcp', to: 'any' }])).problems, ['ERR_BNL_RULE rules[0].ports']);
    assert.deepEqual(refusal(r([{ from: 'any', ports: ['70000'], proto: 'udp', to: 'any' }])).problems, ['ERR_BNL_RULE rules[0].ports']);
    assert.deepEqual(refusal(r([{ from: 'any', ports: [80], proto: 'udp', to: 'any' }])).problems, ['ERR_BNL_RULE rules[0].ports'], 'ports are strings');
    assert.deepEqual(refusal(r([{ from: 'any', to: 'any' }, { from: 'any', to: 'any' }])).problems, ['ERR_BNL_RULE rules[1]'], 'duplicate');
    assert.equal(refusal(r([{ from: 'any', ports: ['80', '443'], proto: 'tcp', to: 'tag:web' }])).code, 'accepted');
    assert.throws(() => ruleFromSpec({ from: 'any', to: 'any', proto: 'sctp' }), RangeError);
    assert.throws(() => ruleFromSpec({ from: 'any', to: 'any', proto: 'tcp', ports: '80,70-90' }), RangeError);
  });

  it('a tampered rule fails verification like any other field', () => {
    const k = newKey();
    const list = signed(mesh([OFFICE_WEB]), k);
    assert.equal(verifyBnl(list, trustOf(1, k)).signers.length, 1);
    const text = Buffer.from(list.bytes).toString('ascii');
    for (const [from, to] of [['"ports":["80"]', '"ports":["22"]'], ['"from":"tag:office"', '"from":"any"'], [',"rules":[{"from":"tag:office","ports":["80"],"proto":"tcp","to":"tag:web"}]', '']]) {
      assert.ok(text.includes(from));
      const forged = parseBnl(Buffer.from(text.replace(from, to), 'ascii'));
      assert.throws(() => verifyBnl(forged, trustOf(1, k)), { code: 'ERR_BNL_SIGNATURE' }, `${from} → ${to}`);
    }
  });

  it('diffs rules', () => {
    const a = createUnsignedBnl(mesh([OFFICE_WEB])).bnl;
    const b = createUnsignedBnl(mesh([{ ...OFFICE_WEB, ports: ['80', '443'] }])).bnl;
    const d = diffBnl(a, b);
    assert.equal(d.rulesChanged, true);
    assert.deepEqual(d.rulesRemoved, [OFFICE_WEB]);
    assert.deepEqual(d.rulesAdded, [{ ...OFFICE_WEB, ports: ['80', '443'] }]);
    assert.equal(diffBnl(a, a).rulesChanged, false);
    assert.equal(diffBnl(null, a).rulesAdded.length, 1);
  });

  it('compiles the rules that target a node, with sources resolved to subnets', () => {
    const b = createUnsignedBnl(mesh([OFFICE_WEB, { from: 'any', to: 'node:DB', proto: 'icmp' }, { from: 'tag:nobody', to: 'tag:web' }])).bnl;
    assert.deepEqual(compilePolicy(b, 'web'), {
      serial: 1,
      rules: [
        { from: [], to: ['10.0.1.0/24', 'fd00:1::/64'], proto: 'any', ports: [] },
        { from: ['10.0.2.0/24'], to: ['10.0.1.0/24', 'fd00:1::/64'], proto: 'tcp', ports: [[80, 80]] },
      ],
    });
    const db = compilePolicy(b, 'db');
    assert.deepEqual(db?.rules.map((r) => [r.from, r.proto]), [['any', 'icmp'], [[], 'any'], [['10.0.2.0/24'], 'tcp']], 'node names compare case-insensitively');
    assert.deepEqual(compilePolicy(b, 'office'), { serial: 1, rules: [] }, 'no rule targets office: nothing is let in');
    assert.throws(() => compilePolicy(b, 'nobody'), RangeError);
  });
});
