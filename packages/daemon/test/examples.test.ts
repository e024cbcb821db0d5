import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
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
