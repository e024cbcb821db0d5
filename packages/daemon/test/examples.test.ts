import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CONFIG_KEYS, parseConfig } from '../src/config.js';

const ROOT = fileURLToPath(new URL('../../../../', import.meta.url));

test('examples/cluevpn.conf parses and documents every key', () => {
  const file = join(ROOT, 'examples', 'cluevpn.conf');
  const text = readFileSync(file, 'utf8');
  const c = parseConfig(text, { file, netname: 'mesh', env: {} });
  assert.equal(c.name, 'alpha');
  assert.equal(c.logmethod, 'syslog');
  for (const key of CONFIG_KEYS) assert.match(text, new RegExp(`^#?${key}=`, 'm'), `${key} is not in the example`);
  // state outside the config directory (issue 15.5)
  assert.equal(c.bnl, '/var/lib/cluevpn/mesh/bnl');
  assert.equal(c.statedb, '/var/lib/cluevpn/mesh/state.db');
});

test('the systemd unit keeps /etc/cluevpn read-only, writes state under StateDirectory, and does not retry exit 2 or 3', () => {
  const unit = readFileSync(join(ROOT, 'examples', 'cluevpnd@.service'), 'utf8');
  const rw = [...unit.matchAll(/^ReadWritePaths=(.*)$/gm)].flatMap((m) => m[1]!.split(/\s+/));
  assert.ok(rw.length > 0);
  for (const p of rw) assert.doesNotMatch(p, /^-?\/etc\/cluevpn/, `ReadWritePaths makes ${p} writable`);
  assert.match(unit, /^StateDirectory=cluevpn\/%i$/m);
  assert.match(unit, /^RestartPreventExitStatus=.*\b3\b/m);
  assert.match(unit, /^CapabilityBoundingSet=.*\bCAP_CHOWN\b/m, 'handing the state directory to user= needs CAP_CHOWN');
});

test('scripts/install puts wrappers, the unit and the examples under --prefix, and the wrappers run', { skip: existsSync(join(ROOT, 'packages', 'cli', 'dist', 'src', 'bnl-main.js')) ? false : 'cli not built' }, () => {
  const prefix = mkdtempSync(join(tmpdir(), 'dmn-install-'));
  try {
    const r = spawnSync(join(ROOT, 'scripts', 'install'), ['--prefix', prefix], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    for (const cmd of ['cluevpnd', 'cluevpn', 'bnl', 'nameserver-check']) assert.equal(statSync(join(prefix, 'bin', cmd)).mode & 0o777, 0o755, cmd);
    assert.match(spawnSync(join(prefix, 'bin', 'nameserver-check'), ['--help'], { encoding: 'utf8' }).stdout, /nameserver-check/);
    const help = spawnSync(join(prefix, 'bin', 'cluevpnd'), ['--help'], { encoding: 'utf8' });
    assert.match(help.stdout, /Usage: cluevpnd/);
    if (existsSync(join(ROOT, 'examples', 'cluevpnd@.service'))) {
      assert.match(readFileSync(join(prefix, 'lib', 'systemd', 'system', 'cluevpnd@.service'), 'utf8'), new RegExp(`ExecStart=${prefix}/bin/cluevpnd -n %i -D`));
    }
    assert.ok(existsSync(join(prefix, 'share', 'doc', 'cluevpn', 'examples', 'cluevpn.conf')));
    const bad = spawnSync(join(ROOT, 'scripts', 'install'), ['--bogus'], { encoding: 'utf8' });
    assert.equal(bad.status, 2);
  } finally {
    rmSync(prefix, { recursive: true, force: true });
  }
});

const SYSTEMD_ANALYZE = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' });
test('examples/cluevpnd@.service is Type=notify with a watchdog, and systemd-analyze verify finds nothing to say', { skip: SYSTEMD_ANALYZE.status === 0 ? false : 'systemd-analyze not installed' }, () => {
  const unit = readFileSync(join(ROOT, 'examples', 'cluevpnd@.service'), 'utf8');
  assert.match(unit, /^Type=notify$/m);
  assert.match(unit, /^NotifyAccess=main$/m);
  assert.match(unit, /^WatchdogSec=\d+s$/m);
  assert.match(unit, /^ExecReload=\/bin\/kill -HUP \$MAINPID$/m);
  const dir = mkdtempSync(join(tmpdir(), 'dmn-unit-'));
  try {
    // verify wants ExecStart to exist: point it at a stand-in
    const bin = join(dir, 'cluevpnd');
    writeFileSync(bin, '#!/bin/sh\n', { mode: 0o755 });
    writeFileSync(join(dir, 'cluevpnd@.service'), unit.replace('/usr/local/bin/cluevpnd', bin));
    symlinkSync('cluevpnd@.service', join(dir, 'cluevpnd@mesh.service'));
    const r = spawnSync('systemd-analyze', ['verify', '--man=no', join(dir, 'cluevpnd@mesh.service')], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, SYSTEMD_LOG_TARGET: 'console' } });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr + r.stdout, '', 'no warning about any line of the unit');
    // the check can fail: a bad line is reported
    writeFileSync(join(dir, 'cluevpnd@.service'), unit.replace('/usr/local/bin/cluevpnd', bin).replace(/^Type=notify$/m, 'Type=notifyy'));
    assert.match(spawnSync('systemd-analyze', ['verify', '--man=no', join(dir, 'cluevpnd@mesh.service')], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, SYSTEMD_LOG_TARGET: 'console' } }).stderr, /notifyy/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
