/**
 * In-process tests of the `bnl` command: rotation, m-of-n, CSV import.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BnlStore, createTrust, parseBnl } from '@cluevpn/bnl';
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

test('key rotation through the CLI: old key introduces the new one; a node holding the old key follows', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'bnl-rot-'));
  try {
    const bnl = await session(dir);
    for (const k of ['old', 'new']) assert.equal((await bnl('keygen', '--out', join(dir, k))).code, 0);
    assert.equal((await bnl('new', '--network', 'lab')).code, 0);
    assert.equal((await bnl('add', 'a', 'ipv4=192.0.2.1', 'subnet=10.0.1.0/24')).code, 0);
    assert.equal((await bnl('sign', '--key', join(dir, 'old.key'))).code, 0);
    const oldPub = readFileSync(join(dir, 'old.pub'), 'utf8').trim();
    const node = await BnlStore.open({ path: join(dir, 'node-bnl'), trust: createTrust([oldPub]) });
    assert.equal((await node.offer(readFileSync(join(dir, 'bnl')))).accepted, true);
    const intro = await bnl('sign', '--key', join(dir, 'old.key'), '--signers', join(dir, 'new.pub'));
    assert.equal(intro.code, 0, intro.err);
    assert.equal((await node.offer(readFileSync(join(dir, 'bnl')))).accepted, true);
    assert.equal((await bnl('add', 'b', 'ipv4=192.0.2.2', 'subnet=10.0.2.0/24')).code, 0);
    // signing with the retired key only draws a warning from the CLI, and the node refuses the list
    const stale = await bnl('sign', '--key', join(dir, 'old.key'));
    assert.match(stale.err, /warning/);
    const refused = await node.offer(readFileSync(join(dir, 'bnl')));
    assert.equal(refused.accepted ? 'accepted' : refused.code, 'ERR_BNL_UNTRUSTED');
    assert.equal((await bnl('sign', '--key', join(dir, 'new.key'))).code, 0);
    const r = await node.offer(readFileSync(join(dir, 'bnl')));
    assert.equal(r.accepted, true);
    assert.equal(node.current?.bnl.nodes.length, 2);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('m-of-n through the CLI: two admins cosign; verify with threshold 2', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'bnl-mofn-'));
  try {
    const bnl = await session(dir);
    for (const k of ['a', 'b', 'c']) await bnl('keygen', '--out', join(dir, k));
    await bnl('new', '--network', 'lab');
    await bnl('add', 'x', 'ipv4=192.0.2.1');
    assert.equal((await bnl('sign', '--key', join(dir, 'a.key'))).code, 0);
    const pubs = ['a', 'b', 'c'].map((k) => join(dir, `${k}.pub`));
    const one = await bnl('verify', '--pubkey', ...pubs, '--threshold', '2');
    assert.equal(one.code, 5);
    assert.match(one.err, /ERR_BNL_UNTRUSTED/);
    const serial = parseBnl(readFileSync(join(dir, 'bnl'))).bnl.serial;
    assert.equal((await bnl('sign', '--cosign', '--key', join(dir, 'c.key'))).code, 0);
    assert.equal(parseBnl(readFileSync(join(dir, 'bnl'))).bnl.serial, serial, 'cosign keeps the serial');
    assert.equal((await bnl('verify', '--pubkey', ...pubs, '--threshold', '2')).code, 0);
    assert.equal((await bnl('verify', '--pubkey', ...pubs, '--threshold', '4')).code, 2);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('import-csv adds every row or nothing', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'bnl-csv-'));
  try {
    const bnl = await session(dir);
    writeFileSync(
      join(dir, 'nodes.csv'),
      ['# bulk set-up', 'name,ipv4,ipv6,port,subnets,relay,tags', 'n1,192.0.2.1,,3406,10.1.0.0/16;10.11.0.0/16,,', 'n2,192.0.2.2,2001:db8::2,4000,"10.2.0.0/16 fd00:2::/64",yes,dc1 rack2', 'n3,,2001:db8::3,,fd00:3::/64,,'].join('\n'),
    );
    const r = await bnl('import-csv', join(dir, 'nodes.csv'), '--network', 'lab');
    assert.equal(r.code, 0, r.err);
    const draft = parseBnl(readFileSync(join(dir, 'bnl.draft'))).bnl;
    assert.deepEqual(draft.nodes.map((n) => n.name), ['n1', 'n2', 'n3']);
    assert.deepEqual(draft.nodes[1].subnets, ['10.2.0.0/16', 'fd00:2::/64']);
    assert.deepEqual(draft.nodes[1].tags, ['dc1', 'rack2']);
    assert.equal(draft.nodes[1].relay, true);
    assert.equal(draft.nodes[2].prefer, 'ipv6');
    assert.deepEqual(draft.nodes[1].endpoints.map((e) => e.port), [4000, 4000]);
    // a bad row (overlap on line 3) refuses the whole file
    writeFileSync(join(dir, 'more.csv'), 'name,ipv4,subnets\nn4,192.0.2.4,10.4.0.0/16\nn5,192.0.2.5,10.1.2.0/24\n');
    const before = readFileSync(join(dir, 'bnl.draft'));
    const bad = await bnl('import-csv', join(dir, 'more.csv'));
    assert.equal(bad.code, 3);
    assert.match(bad.err, /ERR_BNL_SUBNET_OVERLAP/);
    assert.deepEqual(readFileSync(join(dir, 'bnl.draft')), before);
    writeFileSync(join(dir, 'bad.csv'), 'name,colour\nn9,red\n');
    const col = await bnl('import-csv', join(dir, 'bad.csv'));
    assert.equal(col.code, 3);
    assert.match(col.err, /line 1: unknown column "colour"/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('mac= (switch mode): normalised, sorted, replaced on modify, removed by an empty value; a bad one is refused', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'bnl-mac-'));
  try {
    const bnl = await session(dir);
    assert.equal((await bnl('new', '--network', 'lab')).code, 0);
    const add = await bnl('add', 'a', 'ipv4=192.0.2.1', 'mac=02-00-00-00-00-0B', 'mac=02:00:00:00:00:0a');
    assert.equal(add.code, 0, add.err);
    const macs = async (): Promise<unknown> => (JSON.parse((await bnl('print', '--json')).out) as { nodes: { mac?: string[] }[] }).nodes[0]!.mac;
    assert.deepEqual(await macs(), ['02:00:00:00:00:0a', '02:00:00:00:00:0b']);
    assert.equal((await bnl('modify', 'a', 'mac=02:00:00:00:00:0c')).code, 0);
    assert.deepEqual(await macs(), ['02:00:00:00:00:0c']);
    assert.equal((await bnl('modify', 'a', 'mac=')).code, 0);
    assert.equal(await macs(), undefined, 'no MACs: the field is left out');
    const bad = await bnl('modify', 'a', 'mac=02:00:00:00:00');
    assert.notEqual(bad.code, 0);
    assert.match(bad.err, /mac/);
    const group = await bnl('modify', 'a', 'mac=01:00:5e:00:00:01');
    assert.notEqual(group.code, 0, 'a multicast MAC fails validation');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('bnl add/modify refuse relay=yes without a listed endpoint (a relay must be reachable)', async () => {
  const { applyKeyValues } = await import('../src/bnl/edit.js');
  const base = { name: 'rho', id: 9, endpoints: [], prefer: 'ipv4' as const, subnets: [] };
  assert.throws(() => applyKeyValues(base, [{ key: 'relay', value: 'yes' }], 'add'), /relay=yes needs a listed endpoint \[ERR_BNL_RELAY_ENDPOINT\]/);
  const ok = applyKeyValues(base, [{ key: 'ipv4', value: '192.0.2.9' }, { key: 'relay', value: 'yes' }], 'add');
  assert.equal(ok.relay, true);
  assert.throws(() => applyKeyValues(ok, [{ key: 'ipv4', value: '' }], 'modify'), /ERR_BNL_RELAY_ENDPOINT/);
});
