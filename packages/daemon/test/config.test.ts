import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CONFIG_KEYS, loadConfig, locateConfig, parseConfig } from '../src/config.js';
import { ConfigError } from '../src/errors.js';

const MINIMAL = ['name=alpha', 'cert=alpha.crt', 'privkey=alpha.key', 'cacert=/etc/ca.crt', 'bnlpubkey=bnl1.pub'].join('\n');
const FILE = '/etc/cluevpn/office/cluevpn.conf';
const parse = (text: string) => parseConfig(text, { file: FILE, netname: 'office', env: { CLUEVPN_RUNDIR: '/run/x' } });

function expectConfigError(text: string, code: string, line: number | undefined, key: string | undefined): ConfigError {
  try {
    parse(text);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    assert.equal(err.code, code);
    assert.equal(err.line, line);
    assert.equal(err.key, key);
    assert.equal(err.file, FILE);
    // the message starts with file:line: key: so an operator sees where
    const loc = line === undefined ? FILE : `${FILE}:${line}`;
    const prefix = key === undefined ? `${loc}: ` : `${loc}: ${key}: `;
    assert.ok(err.message.startsWith(prefix), err.message);
    return err;
  }
  assert.fail(`expected ${code}`);
}

test('minimal config gets documented defaults and resolved paths', () => {
  const c = parse(`# comment\n\n  ${MINIMAL.replace('\n', '\n   ')}\n`);
  assert.equal(c.name, 'alpha');
  assert.equal(c.cert, '/etc/cluevpn/office/alpha.crt');
  assert.equal(c.cacert, '/etc/ca.crt');
  assert.deepEqual(c.bnlpubkey, ['/etc/cluevpn/office/bnl1.pub']);
  assert.equal(c.port, 3406);
  assert.equal(c.mtu, 1420);
  assert.equal(c.udpbuffer, 256 * 1024);
  assert.equal(c.loglevel, 5);
  assert.equal(c.logmethod, 'stderr');
  assert.equal(c.devname, 'office');
  // run-time state lives outside the config directory (issue 15.5)
  assert.equal(c.statedir, '/var/lib/cluevpn/office');
  assert.equal(c.bnl, '/var/lib/cluevpn/office/bnl');
  assert.equal(c.statedb, '/var/lib/cluevpn/office/state.db');
  assert.equal(c.pullintervalMs, 90_000);
  assert.equal(c.resolveintervalMs, 300_000);
  assert.equal(c.keepaliveMs, 25_000);
  assert.equal(c.pmtudiscovery, true);
  assert.equal(c.clampmss, true);
  assert.equal(c.rekeyMs, 3_600_000);
  assert.equal(c.controlsocket, '/run/x/office.sock');
  assert.equal(c.pidfile, '/run/x/office.pid');
  assert.equal(c.user, undefined);
  assert.equal(c.disableipv6, false);
  assert.equal(c.express, true);
  assert.equal(c.udpoffload, true);
  assert.equal(c.tunoffload, true);
  assert.equal(c.mode, 'router');
  assert.equal(parse(`${MINIMAL}\nmode=switch`).mode, 'switch');
  assert.deepEqual(c.cryptalgos.map((a) => a.algo), ['aes256gcm', 'chacha20poly1305']);
});

test('$CLUEVPN_STATEDIR moves the state directory; explicit bnl= and statedb= win', () => {
  const env = { CLUEVPN_RUNDIR: '/run/x', CLUEVPN_STATEDIR: '/srv/state' };
  const c = parseConfig(MINIMAL, { file: FILE, netname: 'office', env });
  assert.equal(c.statedir, '/srv/state/office');
  assert.equal(c.bnl, '/srv/state/office/bnl');
  assert.equal(c.statedb, '/srv/state/office/state.db');
  const explicit = parseConfig(`${MINIMAL}\nbnl=bnl\nstatedb=/tmp/s.db\n`, { file: FILE, netname: 'office', env });
  assert.equal(explicit.bnl, '/etc/cluevpn/office/bnl');
  assert.equal(explicit.statedb, '/tmp/s.db');
});

test('every key parses to a typed value', () => {
  const text = [
    MINIMAL,
    'devname = cvpn0',
    'port=4000',
    'bnlpubkey=/keys/bnl2.pub',
    `bnlpubkey=${'ab'.repeat(32)}`,
    'bnlprivkey=bnl.key',
    'bnl=nodes.bnl',
    'statedb=/var/lib/cluevpn/state.db',
    'loglevel=7',
    'logmethod=file',
    'logfile=log/cluevpnd.log',
    'upcmd=/etc/cluevpn/up "$TUNDEV"',
    'downcmd=ip link set $INTERFACE down',
    'mysubnetupcmd=echo my $SUBNET',
    'subnetupcmd=echo up $SUBNET',
    'subnetdowncmd=echo down $SUBNET',
    'cryptalgos=chacha20poly1305:256:30 aes256gcm:256:5',
    'compalgos=lz4:9:7 none:0:1',
    'restrictouname=Cluenet',
    'disableipv6=yes',
    'preferipv6=no',
    'mtu=1200',
    'udpbuffer=1m',
    'express=no',
    'udpoffload=off',
    'tunoffload=false',
    'mode=switch',
    'rekey=2m',
    'pullinterval=1500ms',
    'resolveinterval=30s',
    'keepalive=10',
    'pmtudiscovery=no',
    'clampmss=off',
    'user=nobody',
    'group=65534',
    'controlsocket=ctl.sock',
    'pidfile=/tmp/x.pid',
    'metrics=10.99.0.1:9587',
  ].join('\n');
  const c = parse(text);
  assert.equal(c.devname, 'cvpn0');
  assert.equal(c.port, 4000);
  assert.deepEqual(c.bnlpubkey, ['/etc/cluevpn/office/bnl1.pub', '/keys/bnl2.pub', 'ab'.repeat(32)]);
  assert.equal(c.bnlprivkey, '/etc/cluevpn/office/bnl.key');
  assert.equal(c.bnl, '/etc/cluevpn/office/nodes.bnl');
  assert.equal(c.statedb, '/var/lib/cluevpn/state.db');
  assert.equal(c.loglevel, 7);
  assert.equal(c.logmethod, 'file');
  assert.equal(c.logfile, '/etc/cluevpn/office/log/cluevpnd.log');
  assert.equal(c.upcmd, '/etc/cluevpn/up "$TUNDEV"');
  assert.equal(c.subnetdowncmd, 'echo down $SUBNET');
  assert.deepEqual(c.cryptalgos, [
    { algo: 'chacha20poly1305', param: 256, pref: 30 },
    { algo: 'aes256gcm', param: 256, pref: 5 },
  ]);
  assert.deepEqual(c.compalgos, [
    { algo: 'lz4', param: 9, pref: 7 },
    { algo: 'none', param: 0, pref: 1 },
  ]);
  assert.equal(c.restrictouname, 'Cluenet');
  assert.equal(c.disableipv6, true);
  assert.equal(c.preferipv6, false);
  assert.equal(c.mtu, 1200);
  assert.equal(c.udpbuffer, 1024 * 1024);
  assert.equal(c.express, false);
  assert.equal(c.udpoffload, false);
  assert.equal(c.tunoffload, false);
  assert.equal(c.mode, 'switch');
  assert.equal(c.rekeyMs, 120_000);
  assert.equal(c.pullintervalMs, 1500);
  assert.equal(c.resolveintervalMs, 30_000);
  assert.equal(c.keepaliveMs, 10_000);
  assert.equal(c.pmtudiscovery, false);
  assert.equal(c.clampmss, false);
  assert.equal(c.user, 'nobody');
  assert.equal(c.group, '65534');
  assert.equal(c.controlsocket, '/etc/cluevpn/office/ctl.sock');
  assert.equal(c.pidfile, '/tmp/x.pid');
  assert.deepEqual(c.metrics, { host: '10.99.0.1', port: 9587 });
  // the test above sets every key the parser knows
  for (const key of CONFIG_KEYS) assert.ok(text.includes(`\n${key}`) || text.startsWith(key) || text.includes(`${key}=`), key);
});

test('errors name file, line and key with a stable code', () => {
  expectConfigError(`${MINIMAL}\nfrobnicate=1`, 'ERR_CONFIG_UNKNOWN_KEY', 6, 'frobnicate');
  expectConfigError(`${MINIMAL}\nport=70000`, 'ERR_CONFIG_BAD_VALUE', 6, 'port');
  expectConfigError(`${MINIMAL}\nport=12ab`, 'ERR_CONFIG_BAD_VALUE', 6, 'port');
  expectConfigError(`${MINIMAL}\nloglevel=8`, 'ERR_CONFIG_BAD_VALUE', 6, 'loglevel');
  expectConfigError(`${MINIMAL}\nlogmethod=journal`, 'ERR_CONFIG_BAD_VALUE', 6, 'logmethod');
  expectConfigError(`${MINIMAL}\ndisableipv6=maybe`, 'ERR_CONFIG_BAD_VALUE', 6, 'disableipv6');
  expectConfigError(`${MINIMAL}\nmode=bridge`, 'ERR_CONFIG_BAD_VALUE', 6, 'mode');
  expectConfigError(`${MINIMAL}\nmode=Switch`, 'ERR_CONFIG_BAD_VALUE', 6, 'mode');
  expectConfigError(`${MINIMAL}\ncryptalgos=aescbc:64:20`, 'ERR_CONFIG_BAD_VALUE', 6, 'cryptalgos'); // aescbc:128 is mapped, see below
  expectConfigError(`${MINIMAL}\ncryptalgos=aes256gcm:128:20`, 'ERR_CONFIG_BAD_VALUE', 6, 'cryptalgos');
  expectConfigError(`${MINIMAL}\ncompalgos=zlib:10:2`, 'ERR_CONFIG_BAD_VALUE', 6, 'compalgos'); // zlib:6 is mapped, see below
  expectConfigError(`${MINIMAL}\ncompalgos=lz4:1:2 lz4:2:3`, 'ERR_CONFIG_BAD_VALUE', 6, 'compalgos');
  expectConfigError(`${MINIMAL}\nrekey=1s`, 'ERR_CONFIG_BAD_VALUE', 6, 'rekey');
  expectConfigError(`${MINIMAL}\nkeepalive=500ms`, 'ERR_CONFIG_BAD_VALUE', 6, 'keepalive');
  expectConfigError(`${MINIMAL}\nkeepalive=2h`, 'ERR_CONFIG_BAD_VALUE', 6, 'keepalive');
  expectConfigError(`${MINIMAL}\nkeepalive=off`, 'ERR_CONFIG_BAD_VALUE', 6, 'keepalive');
  expectConfigError(`${MINIMAL}\npullinterval=soon`, 'ERR_CONFIG_BAD_VALUE', 6, 'pullinterval');
  expectConfigError(`${MINIMAL}\nresolveinterval=500ms`, 'ERR_CONFIG_BAD_VALUE', 6, 'resolveinterval');
  expectConfigError(`${MINIMAL}\nmtu=1000`, 'ERR_CONFIG_BAD_VALUE', 6, 'mtu');
  expectConfigError(`${MINIMAL}\nudpbuffer=lots`, 'ERR_CONFIG_BAD_VALUE', 6, 'udpbuffer');
  expectConfigError(`${MINIMAL}\nexpress=fast`, 'ERR_CONFIG_BAD_VALUE', 6, 'express');
  expectConfigError(`${MINIMAL}\nudpoffload=2`, 'ERR_CONFIG_BAD_VALUE', 6, 'udpoffload');
  expectConfigError(`${MINIMAL}\ntunoffload=auto`, 'ERR_CONFIG_BAD_VALUE', 6, 'tunoffload');
  expectConfigError(`${MINIMAL}\nclampmss=1400`, 'ERR_CONFIG_BAD_VALUE', 6, 'clampmss');
  expectConfigError(`${MINIMAL}\npmtudiscovery=maybe`, 'ERR_CONFIG_BAD_VALUE', 6, 'pmtudiscovery');
  expectConfigError(`${MINIMAL}\nexpress=no\nexpress=yes`, 'ERR_CONFIG_DUPLICATE_KEY', 7, 'express');
  expectConfigError(`${MINIMAL}\nudpbuffer=100`, 'ERR_CONFIG_BAD_VALUE', 6, 'udpbuffer');
  expectConfigError(`${MINIMAL}\nudpbuffer=65m`, 'ERR_CONFIG_BAD_VALUE', 6, 'udpbuffer');
  expectConfigError(`${MINIMAL}\ndevname=this-name-is-too-long`, 'ERR_CONFIG_BAD_VALUE', 6, 'devname');
  expectConfigError(`${MINIMAL}\nuser=bad user`, 'ERR_CONFIG_BAD_VALUE', 6, 'user');
  expectConfigError(`${MINIMAL}\nupcmd=`, 'ERR_CONFIG_BAD_VALUE', 6, 'upcmd');
  expectConfigError(`${MINIMAL}\n\nport=1\n#x\nport=2`, 'ERR_CONFIG_DUPLICATE_KEY', 9, 'port');
  expectConfigError(`${MINIMAL}\nname=beta`, 'ERR_CONFIG_DUPLICATE_KEY', 6, 'name');
  expectConfigError(`${MINIMAL}\ndisableipv6=yes\npreferipv6=yes`, 'ERR_CONFIG_BAD_VALUE', 7, 'preferipv6');
  expectConfigError(`${MINIMAL}\nlogfile=x.log`, 'ERR_CONFIG_BAD_VALUE', 6, 'logfile');
  expectConfigError(`${MINIMAL}\nlogmethod=file`, 'ERR_CONFIG_MISSING_KEY', 6, 'logfile');
  expectConfigError(MINIMAL.replace('name=alpha', '# no name'), 'ERR_CONFIG_MISSING_KEY', undefined, 'name');
  expectConfigError(MINIMAL.replace('bnlpubkey=bnl1.pub', ''), 'ERR_CONFIG_MISSING_KEY', undefined, 'bnlpubkey');
  expectConfigError(`${MINIMAL}\njust some words`, 'ERR_CONFIG_SYNTAX', 6, undefined);
});

test('udpbuffer takes bytes with k/m suffixes, and 0 for the kernel default', () => {
  assert.equal(parse(`${MINIMAL}\nudpbuffer=262144`).udpbuffer, 262144);
  assert.equal(parse(`${MINIMAL}\nudpbuffer=512k`).udpbuffer, 512 * 1024);
  assert.equal(parse(`${MINIMAL}\nudpbuffer=4M`).udpbuffer, 4 * 1024 * 1024);
  assert.equal(parse(`${MINIMAL}\nudpbuffer=0`).udpbuffer, 0);
});

test('metrics: off by default; ADDRESS:PORT with an IP literal, IPv6 in brackets; anything else names file, line and key', () => {
  assert.equal(parse(MINIMAL).metrics, undefined);
  assert.deepEqual(parse(`${MINIMAL}\nmetrics=127.0.0.1:9587`).metrics, { host: '127.0.0.1', port: 9587 });
  assert.deepEqual(parse(`${MINIMAL}\nmetrics = [::1]:1`).metrics, { host: '::1', port: 1 });
  assert.deepEqual(parse(`${MINIMAL}\nmetrics=[fd99::1]:65535`).metrics, { host: 'fd99::1', port: 65535 });
  for (const bad of ['yes', '127.0.0.1', '127.0.0.1:', ':9587', '127.0.0.1:0', '127.0.0.1:65536', '127.0.0.1:95a7', 'localhost:9587', '300.1.2.3:9587', '::1:9587', '[127.0.0.1]:9587', '[::1]', '[::1]:9587x', '127.0.0.1:9587 extra']) {
    expectConfigError(`${MINIMAL}\n#\nmetrics=${bad}`, 'ERR_CONFIG_BAD_VALUE', 7, 'metrics');
  }
  expectConfigError(`${MINIMAL}\nmetrics=127.0.0.1:1\nmetrics=127.0.0.1:2`, 'ERR_CONFIG_DUPLICATE_KEY', 7, 'metrics');
});

test('keepalive: seconds by default, any unit, 0 turns it off', () => {
  assert.equal(parse(`${MINIMAL}\nkeepalive=25`).keepaliveMs, 25_000);
  assert.equal(parse(`${MINIMAL}\nkeepalive=1500ms`).keepaliveMs, 1500);
  assert.equal(parse(`${MINIMAL}\nkeepalive=0`).keepaliveMs, 0);
  assert.equal(parse(`${MINIMAL}\nkeepalive=0s`).keepaliveMs, 0);
});

test('a low MTU is fine with IPv6 disabled', () => {
  assert.equal(parse(`${MINIMAL}\nmtu=1000\ndisableipv6=yes`).mtu, 1000);
});

test('devname defaults to the network name only when it is a valid interface name', () => {
  try {
    parseConfig(MINIMAL, { file: '/x/cluevpn.conf', netname: 'a-very-long-network-name', env: {} });
    assert.fail('expected an error');
  } catch (err) {
    assert.equal((err as ConfigError).code, 'ERR_CONFIG_MISSING_KEY');
    assert.equal((err as ConfigError).key, 'devname');
  }
});

test('locateConfig: -c, -n and the default, with an overridable base directory', () => {
  const env = { CLUEVPN_CONFDIR: '/cfg' };
  assert.deepEqual(locateConfig({}, env), { file: '/cfg/cluevpn.conf', netname: 'cluevpn' });
  assert.deepEqual(locateConfig({ netname: 'office' }, env), { file: '/cfg/office/cluevpn.conf', netname: 'office' });
  assert.deepEqual(locateConfig({ configFile: '/cfg/lab/cluevpn.conf' }, env), { file: '/cfg/lab/cluevpn.conf', netname: 'lab' });
  assert.deepEqual(locateConfig({ configFile: '/cfg/cluevpn.conf' }, env), { file: '/cfg/cluevpn.conf', netname: 'cluevpn' });
  assert.deepEqual(locateConfig({ configFile: '/tmp/n1/c.conf', netname: 'x' }, env), { file: '/tmp/n1/c.conf', netname: 'x' });
  assert.deepEqual(locateConfig({}, {}), { file: '/etc/cluevpn/cluevpn.conf', netname: 'cluevpn' });
  assert.throws(() => locateConfig({ netname: '../etc' }, env), (e: ConfigError) => e.code === 'ERR_CONFIG_BAD_VALUE');
});

test('loadConfig reads -n NET under CLUEVPN_CONFDIR; a missing file is ERR_CONFIG_READ', () => {
  const base = mkdtempSync(join(tmpdir(), 'dmn-conf-'));
  try {
    mkdirSync(join(base, 'net1'));
    writeFileSync(join(base, 'net1', 'cluevpn.conf'), MINIMAL);
    const c = loadConfig({ netname: 'net1' }, { CLUEVPN_CONFDIR: base, CLUEVPN_RUNDIR: join(base, 'run') });
    assert.equal(c.file, join(base, 'net1', 'cluevpn.conf'));
    assert.equal(c.cert, join(base, 'net1', 'alpha.crt'));
    assert.equal(c.controlsocket, join(base, 'run', 'net1.sock'));
    assert.throws(() => loadConfig({ netname: 'nope' }, { CLUEVPN_CONFDIR: base }), (e: ConfigError) => e.code === 'ERR_CONFIG_READ' && e.file === join(base, 'nope', 'cluevpn.conf'));
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
});

test("the original ClueVPN's cryptalgos/compalgos are read as their modern counterparts, one warning each", () => {
  const c = parse(`${MINIMAL}\ncryptalgos=aescbc:128:20\ncompalgos=none:0:5 zlib:6:2\n`);
  assert.deepEqual(c.cryptalgos, [{ algo: 'aes256gcm', param: 256, pref: 20 }]);
  assert.deepEqual(c.compalgos, [
    { algo: 'none', param: 0, pref: 5 },
    { algo: 'lz4', param: 1, pref: 2 },
  ]);
  assert.deepEqual(
    c.warnings.map((w) => [w.file, w.line, w.key]),
    [
      [FILE, 6, 'cryptalgos'],
      [FILE, 7, 'compalgos'],
    ],
  );
  assert.match(c.warnings[0]!.message, /aescbc:128:20.*aes256gcm:256:20/);
  assert.match(c.warnings[1]!.message, /zlib:6:2.*lz4:1:2/);
  // modern names: no warning
  assert.deepEqual(parse(`${MINIMAL}\ncryptalgos=aes256gcm:256:20\ncompalgos=none:0:5 lz4:1:2\n`).warnings, []);
  // every AES key size of the original maps; the preference is kept
  for (const bits of [128, 192, 256]) assert.deepEqual(parse(`${MINIMAL}\ncryptalgos=aescbc:${bits}:7 chacha20poly1305:256:3\n`).cryptalgos.map((a) => `${a.algo}:${a.param}:${a.pref}`), ['aes256gcm:256:7', 'chacha20poly1305:256:3']);
});

test('what cannot be mapped is still refused with file, line and key', () => {
  for (const [line, key] of [
    ['cryptalgos=aescbc:100:20', 'cryptalgos'], // no such AES key size
    ['cryptalgos=aescbc:128:20 aes256gcm:256:1', 'cryptalgos'], // would name aes256gcm twice
    ['cryptalgos=blowfish:128:20', 'cryptalgos'], // neither version knows it
    ['compalgos=zlib:12:2', 'compalgos'], // not a zlib level
    ['compalgos=zlib:6:2 lz4:1:1', 'compalgos'],
    ['compalgos=bzip2:9:1', 'compalgos'],
  ] as const) {
    expectConfigError(`${MINIMAL}\n${line}\n`, 'ERR_CONFIG_BAD_VALUE', 6, key);
  }
});

test("a second network's defaults do not collide with the first's, except the port (refused at start: ERR_PORT_IN_USE)", () => {
  const env = { CLUEVPN_RUNDIR: '/run/cluevpn' };
  const [a, b] = ['net1', 'net2'].map((net) => parseConfig(MINIMAL, { file: `/etc/cluevpn/${net}/cluevpn.conf`, netname: net, env }));
  for (const key of ['devname', 'controlsocket', 'pidfile', 'statedb', 'bnl'] as const) {
    assert.notEqual(a![key], b![key], key);
    assert.ok(String(b![key]).includes('net2'), `${key}: ${b![key]}`);
  }
  assert.equal(a!.port, b!.port, 'the port is written in the BNL too: a second network sets port=');
});
