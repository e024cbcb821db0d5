/**
 * In-process tests of `bnl rule add/remove/list`, and of rules in `bnl print` and `bnl diff`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseBnl } from '@cluevpn/bnl';
import { runBnl } from '../src/bnl/commands.js';

async function session(dir: string): Promise<(...args: string[]) => Promise<{ code: number; out: string; err: string }>> {
  let t = 1_700_000_000_000;
  return async (...args) => {
    let out = '';
    let err = '';
    const code = await runBnl(['--file', join(dir, 'bnl'), ...args], { out: (s) => (out += s), err: (s) => (err += s), env: { CLUEVPN_CONFDIR: dir }, now: () => (t += 1000) });
    return { code, out, err };
  };
}

test('bnl rule add, list, remove (by number and by spec); print and diff show rules; bad input exits 2 or 3 and writes nothing', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'bnl-rules-'));
  try {
    const bnl = await session(dir);
    assert.equal((await bnl('keygen', '--out', join(dir, 'k'))).code, 0);
    await bnl('new', '--network', 'lab');
    await bnl('add', 'web', 'ipv4=192.0.2.1', 'subnet=10.0.1.0/24', 'tag=web');
    await bnl('add', 'office', 'ipv4=192.0.2.2', 'subnet=10.0.2.0/24', 'tag=office');
    assert.equal((await bnl('rule', 'list')).out, 'no rules: everything is allowed\n');
    assert.equal((await bnl('sign', '--key', join(dir, 'k.key'))).code, 0);
    copyFileSync(join(dir, 'bnl'), join(dir, 'before'));
    const add = await bnl('rule', 'add', '--from', 'tag=office', '--to', 'tag:web', '--proto', 'tcp', '--port', '80');
    assert.equal(add.code, 0, add.err);
    assert.equal(add.out, 'added rule from tag:office to tag:web proto tcp port 80\n');
    assert.equal((await bnl('rule', 'add', '--from', 'any', '--to', 'node:web', '--proto', 'icmp')).code, 0);
    assert.equal((await bnl('rule', 'add', '--from', 'any', '--to', 'node:web', '--proto', 'icmp')).code, 3, 'duplicate');
    assert.equal((await bnl('rule', 'add', '--from', 'any', '--to', 'web')).code, 2, 'bad reference');
    assert.equal((await bnl('rule', 'add', '--from', 'any', '--to', 'any', '--port', '80')).code, 2, 'port without tcp/udp');
    assert.equal((await bnl('rule', 'add', '--to', 'any')).code, 2, 'no --from');
    assert.equal((await bnl('rule', 'list')).out, '  1  from any to node:web proto icmp\n  2  from tag:office to tag:web proto tcp port 80\n');
    assert.equal((await bnl('rule', 'add', '--from', 'any', '--to', 'any', '--proto', 'udp', '--port', '53')).code, 0);
    assert.match((await bnl('rule', 'list')).out, /^ {2}1 {2}from any to any proto udp port 53\n {2}2 {2}from any to node:web/, 'numbers follow the canonical order');
    assert.equal((await bnl('rule', 'remove', '--from', 'any', '--to', 'any', '--proto', 'udp', '--port', '53')).code, 0);
    assert.equal((await bnl('rule', 'remove', '9')).code, 3, 'no rule 9');
    assert.equal((await bnl('rule', 'remove', '1')).out, 'removed rule from any to node:web proto icmp\n');
    assert.equal((await bnl('rule', 'remove', '--from', 'any', '--to', 'any')).code, 3, 'no such rule');
    assert.deepEqual(JSON.parse((await bnl('rule', 'list', '--json')).out), [{ from: 'tag:office', ports: ['80'], proto: 'tcp', to: 'tag:web' }]);
    assert.equal((await bnl('sign', '--key', join(dir, 'k.key'))).code, 0);
    assert.deepEqual(parseBnl(readFileSync(join(dir, 'bnl'))).bnl.rules, [{ from: 'tag:office', ports: ['80'], proto: 'tcp', to: 'tag:web' }]);
    const print = await bnl('print', join(dir, 'bnl'));
    assert.match(print.out, /1 rule\(s\): only what a rule allows\n {2}1 {2}from tag:office to tag:web proto tcp port 80\n/);
    const diff = await bnl('diff', join(dir, 'before'), join(dir, 'bnl'));
    assert.match(diff.out, /\+ rule {4}from tag:office to tag:web proto tcp port 80/);
    const json = JSON.parse((await bnl('diff', '--json', join(dir, 'before'), join(dir, 'bnl'))).out) as { rulesChanged: boolean };
    assert.equal(json.rulesChanged, true);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
