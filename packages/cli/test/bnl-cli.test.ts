/**
 * End to end: the real `bnl` binary in a temporary directory.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseBnl } from '@cluevpn/bnl';

const BIN = fileURLToPath(new URL('../../bin/bnl', import.meta.url));

interface Run {
  code: number;
  out: string;
  err: string;
}

function makeRunner(dir: string): (...args: string[]) => Run {
  return (...args) => {
    const r = spawnSync(process.execPath, [BIN, ...args], { cwd: dir, env: { ...process.env, CLUEVPN_CONFDIR: dir, CLUEVPN_RUNDIR: dir, CLUEVPN_STATEDIR: join(dir, 'state') }, encoding: 'utf8' });
    return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
  };
}

function oneLineError(r: Run): void {
  const lines = r.err.trim().split('\n');
  assert.equal(lines.length, 1, `expected one error line, got: ${r.err}`);
  assert.match(lines[0], /^bnl: .+; .+/);
  assert.doesNotMatch(r.err, /\n\s+at /, 'no stack trace');
}

test('bnl end to end: keygen, new, add ×3, sign, verify, print, diff, and bad input exit codes', () => {
  const dir = mkdtempSync(join(tmpdir(), 'bnl-cli-'));
  // the daemon's default list without -n: $CLUEVPN_STATEDIR/cluevpn/bnl (the draft stays in $CLUEVPN_CONFDIR)
  const signedList = join(dir, 'state', 'cluevpn', 'bnl');
  try {
    const bnl = makeRunner(dir);
    const ok = (...args: string[]): Run => {
      const r = bnl(...args);
      assert.equal(r.code, 0, `bnl ${args.join(' ')} → ${r.code}: ${r.err}`);
      return r;
    };
    // keygen: private key 0600, never printed
    const kg = ok('keygen', '--out', join(dir, 'admin'));
    assert.equal(statSync(join(dir, 'admin.key')).mode & 0o777, 0o600);
    const pub = readFileSync(join(dir, 'admin.pub'), 'utf8').trim();
    assert.match(pub, /^[0-9a-f]{64}$/);
    assert.ok(kg.out.includes(pub));
    assert.ok(!kg.out.includes('PRIVATE KEY') && !kg.out.includes(readFileSync(join(dir, 'admin.key'), 'utf8').split('\n')[1]));
    ok('keygen', '--out', join(dir, 'other'));

    ok('new', '--network', 'lab');
    ok('add', 'alpha', 'ipv4=192.0.2.1', 'port=3406', 'subnet=10.1.0.0/16');
    ok('add', 'beta', 'ipv4=192.0.2.2', 'ipv6=2001:DB8::2', 'subnet=10.2.0.0/16', 'subnet=fd00:2::/64', `fingerprint=${'AB:'.repeat(31)}AB`, 'relay=yes');
    ok('add', 'gamma', 'host=vpn.example.org', 'port=4000', 'subnet=10.3.0.0/16', 'tag=dc1', 'prefer=ipv4');
    const signed1 = ok('sign', '--key', join(dir, 'admin.key'));
    assert.match(signed1.out, /serial 1\b/);
    const list1 = parseBnl(readFileSync(signedList));
    assert.deepEqual(list1.bnl.nodes.map((n) => [n.name, n.id]), [['alpha', 1], ['beta', 2], ['gamma', 3]]);
    assert.equal(list1.bnl.nodes[1].fingerprint, 'ab'.repeat(32));
    assert.deepEqual(list1.bnl.nodes[1].endpoints, [{ host: '192.0.2.2', port: 3406 }, { host: '2001:db8::2', port: 3406 }]);
    assert.ok(list1.bnl.timestamp > 1_600_000_000_000);

    ok('verify', '--pubkey', join(dir, 'admin.pub'));
    ok('verify', signedList, '--pubkey', pub);
    const wrongKey = bnl('verify', '--pubkey', join(dir, 'other.pub'));
    assert.equal(wrongKey.code, 5);
    oneLineError(wrongKey);
    assert.match(wrongKey.err, /ERR_BNL_UNTRUSTED/);

    const printed = ok('print', signedList).out;
    for (const s of ['alpha', 'beta', 'gamma', '10.2.0.0/16', 'fd00:2::/64', 'vpn.example.org:4000', 'serial 1']) assert.ok(printed.includes(s), s);
    const json = JSON.parse(ok('print', '--json').out) as { nodes: unknown[]; serial: number };
    assert.equal(json.nodes.length, 3);

    // second version: diff before pushing
    writeFileSync(join(dir, 'bnl.1'), readFileSync(signedList));
    ok('modify', 'alpha', 'ipv4=192.0.2.10', 'subnet=10.1.0.0/17');
    ok('remove', 'gamma');
    ok('addsubnet', 'beta', '10.20.0.0/16');
    ok('delsubnet', 'beta', 'fd00:2::/64');
    ok('add', 'delta', 'ipv4=192.0.2.4', 'subnet=10.4.0.0/16');
    ok('sign', '--key', join(dir, 'admin.key'));
    const list2 = parseBnl(readFileSync(signedList));
    assert.equal(list2.bnl.serial, 2);
    assert.equal(list2.bnl.nodes.find((n) => n.name === 'delta')?.id, 4, 'ids are not reused');
    const diff = ok('diff', join(dir, 'bnl.1'), signedList).out;
    assert.match(diff, /serial 1 → 2 \(newer\)/);
    assert.match(diff, /\+ added\s+delta/);
    assert.match(diff, /- removed gamma/);
    assert.match(diff, /~ changed alpha\n\s+endpoints: 192\.0\.2\.1:3406 → 192\.0\.2\.10:3406\n\s+subnets: 10\.1\.0\.0\/16 → 10\.1\.0\.0\/17/);
    const dj = JSON.parse(ok('diff', '--json', signedList, join(dir, 'bnl.1')).out) as { order: string };
    assert.equal(dj.order, 'older');

    // bad input: every failure one line, documented exit code, nothing written
    const before = readFileSync(join(dir, 'bnl.draft'));
    const cases: [string[], number][] = [
      [['add', 'alpha', 'ipv4=192.0.2.50'], 3], // duplicate name
      [['add', 'eps', 'ipv4=999.0.0.1'], 3], // bad address
      [['add', 'eps', 'ipv4=192.0.2.5', 'port=70000'], 3], // bad port
      [['add', 'eps', 'subnet=10.1.0.0/16'], 3], // overlap with alpha
      [['add', 'eps', 'subnet=10.9.0.1/16'], 3], // host bits
      [['add', 'bad name!', 'ipv4=192.0.2.5'], 3], // name syntax
      [['add', 'eps', 'id=1'], 3], // duplicate id
      [['add', 'eps', 'fingerprint=abc'], 3],
      [['add', 'eps', 'colour=red'], 2], // unknown key
      [['modify', 'nosuch', 'ipv4=192.0.2.9'], 3],
      [['delsubnet', 'beta', '10.99.0.0/16'], 3],
      [['frobnicate'], 2],
      [['sign'], 2], // missing --key
      [['verify', join(dir, 'nosuch'), '--pubkey', pub], 4],
      [['print', join(dir, 'admin.pub')], 5], // garbage file
      [['new', '--network', 'lab'], 4], // draft exists
      [['keygen', '--out', join(dir, 'admin')], 4], // would overwrite a key
    ];
    for (const [args, want] of cases) {
      const r = bnl(...args);
      assert.equal(r.code, want, `bnl ${args.join(' ')}: ${r.err}`);
      oneLineError(r);
    }
    assert.deepEqual(readFileSync(join(dir, 'bnl.draft')), before, 'a refused edit wrote nothing');

    // verify: unsigned draft, tampered file, truncated file
    const unsigned = bnl('verify', join(dir, 'bnl.draft'), '--pubkey', pub);
    assert.equal(unsigned.code, 5);
    assert.match(unsigned.err, /ERR_BNL_UNSIGNED/);
    writeFileSync(join(dir, 'tampered'), readFileSync(signedList, 'latin1').replace('192.0.2.10', '192.0.2.66'), 'latin1');
    const tampered = bnl('verify', join(dir, 'tampered'), '--pubkey', pub);
    assert.equal(tampered.code, 5);
    assert.match(tampered.err, /ERR_BNL_SIGNATURE/);
    writeFileSync(join(dir, 'truncated'), readFileSync(signedList).subarray(0, 100));
    const trunc = bnl('verify', join(dir, 'truncated'), '--pubkey', pub);
    assert.equal(trunc.code, 5);
    assert.match(trunc.err, /ERR_BNL_TRUNCATED/);

    // a private key readable by others is refused
    chmodSync(join(dir, 'other.key'), 0o644);
    const loose = bnl('sign', '--key', join(dir, 'other.key'));
    assert.equal(loose.code, 6);
    oneLineError(loose);

    // --debug adds a stack trace
    const dbg = bnl('--debug', 'modify', 'nosuch', 'ipv4=192.0.2.9');
    assert.equal(dbg.code, 3);
    assert.match(dbg.err, /\n\s+at /);

    // help lists the exit codes
    const help = bnl('--help');
    assert.equal(help.code, 0);
    assert.match(help.out, /Exit codes:[\s\S]*7 {2}no running daemon/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('bnl push without a daemon: exit 7 and one clear line', () => {
  const dir = mkdtempSync(join(tmpdir(), 'bnl-push-'));
  try {
    writeFileSync(join(dir, 'cluevpn.conf'), `controlsocket = ${join(dir, 'none.sock')}\npidfile = ${join(dir, 'none.pid')}\n`);
    const r = makeRunner(dir)('push', '-c', join(dir, 'cluevpn.conf'));
    assert.equal(r.code, 7, r.err);
    assert.match(r.err, /^bnl: no running cluevpnd answered/);
    oneLineError(r);
    const noConf = makeRunner(dir)('-n', 'nosuchnet', 'push');
    assert.equal(noConf.code, 4, noConf.err);
    oneLineError(noConf);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('-n NET signs into the daemon\'s default state directory and keeps the draft with the config', () => {
  const dir = mkdtempSync(join(tmpdir(), 'bnl-net-'));
  try {
    const bnl = makeRunner(dir);
    assert.equal(bnl('keygen', '--out', join(dir, 'k')).code, 0);
    mkdirSync(join(dir, 'office'));
    assert.equal(bnl('-n', 'office', 'new', '--network', 'office').code, 0);
    assert.equal(bnl('-n', 'office', 'add', 'n1', 'ipv4=192.0.2.1', 'subnet=10.0.0.0/24').code, 0);
    assert.ok(existsSync(join(dir, 'office', 'bnl.draft')), 'the draft is in $CLUEVPN_CONFDIR/NET/');
    assert.equal(bnl('-n', 'office', 'sign', '--key', join(dir, 'k.key')).code, 0);
    const signed = join(dir, 'state', 'office', 'bnl');
    assert.equal(parseBnl(readFileSync(signed)).bnl.network, 'office', 'the signed list is $CLUEVPN_STATEDIR/NET/bnl, where cluevpnd reads it');
    assert.equal(statSync(join(dir, 'state', 'office')).mode & 0o777, 0o700, 'its directory created 0700');
    assert.equal(existsSync(join(dir, 'office', 'bnl')), false, 'nothing signed lands in the config directory');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('bnl and cluevpn run through their shebang without NODE_EXTRA_CA_CERTS, and stop quietly when stdout is closed', () => {
  for (const bin of [BIN, fileURLToPath(new URL('../../bin/cluevpn', import.meta.url))]) {
    // The reader (`true`) is gone long before Node has started: every write gets EPIPE.
    // A kept NODE_EXTRA_CA_CERTS pointing nowhere would make Node warn on stderr.
    const r = spawnSync('bash', ['-c', '"$1" --help | true; echo "rc=${PIPESTATUS[0]}"', '_', bin], {
      encoding: 'utf8',
      env: { ...process.env, NODE_EXTRA_CA_CERTS: '/nonexistent/ca.pem' },
    });
    assert.equal(r.stdout.trim(), 'rc=0', `${bin}: ${r.stderr}`);
    assert.equal(r.stderr, '', `${bin}: nothing on stderr (no EPIPE stack trace, no extra-certs warning)`);
  }
});

test('bnl and cluevpn print the release version (the root package.json one) with -V and --version, exit 0', () => {
  const pkg = JSON.parse(readFileSync(fileURLToPath(new URL('../../../../package.json', import.meta.url)), 'utf8')) as { version: string };
  for (const [bin, tool] of [
    [BIN, 'bnl'],
    [fileURLToPath(new URL('../../bin/cluevpn', import.meta.url)), 'cluevpn'],
  ] as const) {
    for (const flag of ['-V', '--version']) {
      const r = spawnSync(bin, [flag], { encoding: 'utf8' });
      assert.equal(r.status, 0, `${tool} ${flag}: ${r.stderr}`);
      assert.equal(r.stdout, `${tool} ${pkg.version} (node ${process.version})\n`);
      assert.equal(r.stderr, '');
    }
  }
});
