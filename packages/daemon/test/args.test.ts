import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseDaemonArgs, USAGE } from '../src/args.js';

const BIN = fileURLToPath(new URL('../../bin/cluevpnd', import.meta.url));

function expectUsageError(argv: string[], pattern: RegExp): void {
  const r = parseDaemonArgs(argv);
  assert.equal(r.ok, false, `${argv.join(' ')} must be refused`);
  if (r.ok) return;
  assert.equal(r.exitCode, 2);
  assert.equal(r.stdout, '');
  assert.match(r.stderr, pattern);
  assert.ok(r.stderr.endsWith(USAGE), 'the usage follows the error');
}

test('every option, long and short, and bundled short flags', () => {
  assert.deepEqual(parseDaemonArgs([]), { ok: true, args: {} });
  assert.deepEqual(parseDaemonArgs(['-c', '/x/c.conf', '-n', 'office', '-D', '-d', '7', '--backend', 'js', '--ready-fd', '3']), {
    ok: true,
    args: { config: '/x/c.conf', net: 'office', foreground: true, debug: 7, backend: 'js', readyFd: 3 },
  });
  assert.deepEqual(parseDaemonArgs(['--config=/y', '--net', 'n', '--foreground', '--debug', '0', '--backend=native']), {
    ok: true,
    args: { config: '/y', net: 'n', foreground: true, debug: 0, backend: 'native' },
  });
  assert.deepEqual(parseDaemonArgs(['-Dd', '5']), { ok: true, args: { foreground: true, debug: 5 } });
});

test('help prints the usage on stdout and exits 0, whatever else is given', () => {
  for (const argv of [['-h'], ['--help'], ['-D', '--help']]) {
    const r = parseDaemonArgs(argv);
    assert.deepEqual(r, { ok: false, exitCode: 0, stdout: USAGE, stderr: '' });
  }
});

test('bad input is a usage error naming the option (exit 2)', () => {
  expectUsageError(['--bogus'], /^error: unknown option '--bogus'\n/);
  expectUsageError(['-x'], /^error: unknown option '-x'\n/);
  expectUsageError(['-c'], /^error: option '-c, --config <value>' argument missing\n/);
  expectUsageError(['--foreground=yes'], /does not take an argument/);
  expectUsageError(['-d', '8'], /'-d, --debug <level>' argument '8' is invalid: must be a number 0–7/);
  expectUsageError(['-d', '1x'], /argument '1x' is invalid/);
  expectUsageError(['--backend', 'kernel'], /'--backend <name>' argument 'kernel' is invalid: allowed choices are native, js/);
  expectUsageError(['--ready-fd', '-1'], /--ready-fd/);
  expectUsageError(['--ready-fd', 'x'], /'--ready-fd <fd>' argument 'x' is invalid/);
  expectUsageError(['start'], /too many arguments: 'start'/);
});

test('the installed entry point exits 2 with the error on stderr, 0 with the usage on stdout', () => {
  const bad = spawnSync(BIN, ['-d', '9'], { encoding: 'utf8' });
  assert.equal(bad.status, 2);
  assert.equal(bad.stdout, '');
  assert.match(bad.stderr, /^error: option '-d, --debug <level>' argument '9' is invalid/);
  const help = spawnSync(BIN, ['--help'], { encoding: 'utf8' });
  assert.equal(help.status, 0);
  assert.equal(help.stdout, USAGE);
});

test('-V / --version print the release version (the root package.json one) and exit 0, from the parser and from bin/cluevpnd', () => {
  const pkg = JSON.parse(readFileSync(fileURLToPath(new URL('../../../../package.json', import.meta.url)), 'utf8')) as { version: string };
  const line = `cluevpnd ${pkg.version} (node ${process.version})\n`;
  for (const argv of [['-V'], ['--version'], ['-D', '--version']]) {
    assert.deepEqual(parseDaemonArgs(argv), { ok: false, exitCode: 0, stdout: line, stderr: '' });
  }
  const r = spawnSync(BIN, ['--version'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, line);
  assert.equal(r.stderr, '');
  assert.match(USAGE, /-V, --version/);
});
