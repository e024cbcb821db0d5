/**
 * CI must not pass by skipping (issue 16): the decision (skip here, fail
 * under CI=true), the lab's requirement probe with a fake machine, and the
 * skip reporter that `scripts/test` adds, run on a real node:test run.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { labSkipReason, NETNS_LAB, requireLab, type LabProbe } from './lib/lab.js';
import { isCi, requirementOutcome, skipSummary } from './lib/requirements.js';
import { skippedTests } from './lib/skip-reporter.js';

const here = dirname(fileURLToPath(import.meta.url));

/** A machine that has everything; override a member to take something away. */
function machine(over: Partial<LabProbe> = {}): LabProbe {
  return { platform: 'linux', uid: 0, ipNetns: () => true, tunError: () => null, hasCommand: () => true, exists: () => true, ...over };
}

/** A node:test context that records its skip. */
function fakeContext(): { skipped: string | undefined; skip(m?: string): void } {
  return {
    skipped: undefined,
    skip(m) {
      this.skipped = m ?? '';
    },
  };
}

test('isCi: CI=true or 1 (any case) is CI; unset, empty, false are not', () => {
  for (const v of ['true', 'TRUE', '1', ' true ']) assert.equal(isCi({ CI: v }), true, v);
  for (const v of [undefined, '', 'false', '0', 'no']) assert.equal(isCi({ CI: v }), false, String(v));
});

test('the lab probe names what is missing, one requirement at a time', () => {
  assert.equal(labSkipReason(machine()), null);
  const cases: Array<[Partial<LabProbe>, RegExp]> = [
    [{ platform: 'darwin' }, /Linux/],
    [{ uid: 1000 }, /root/],
    [{ ipNetns: () => false }, /ip netns/],
    [{ tunError: () => 'ENOENT' }, /\/dev\/net\/tun unavailable \(ENOENT\)/],
    [{ hasCommand: (c) => c !== 'ping' }, /ping/],
    [{ exists: (p) => p !== NETNS_LAB }, /netns-lab not found/],
  ];
  for (const [over, re] of cases) assert.match(labSkipReason(machine(over)) ?? 'null', re, JSON.stringify(Object.keys(over)));
  assert.match(labSkipReason(machine({ hasCommand: (c) => c !== 'tcpdump' }), { tcpdump: 'tcpdump' }) ?? 'null', /tcpdump.*install tcpdump/);
  assert.equal(labSkipReason(machine({ hasCommand: (c) => c !== 'tcpdump' })), null, 'tcpdump only when asked for');
});

test('requireLab: runs when all is there; skips with the reason outside CI; fails with ERR_TEST_REQUIREMENT naming it under CI=true', () => {
  const ok = fakeContext();
  assert.equal(requireLab(ok, { probe: machine(), env: { CI: 'true' } }), true);
  assert.equal(ok.skipped, undefined);

  const noTun = machine({ tunError: () => 'EACCES' });
  const dev = fakeContext();
  assert.equal(requireLab(dev, { probe: noTun, env: {} }), false);
  assert.match(dev.skipped ?? '', /\/dev\/net\/tun unavailable \(EACCES\)/);

  const ci = fakeContext();
  assert.throws(() => requireLab(ci, { probe: noTun, env: { CI: 'true' } }), (err: { code?: string; message?: string }) => {
    assert.equal(err.code, 'ERR_TEST_REQUIREMENT');
    assert.match(err.message ?? '', /\/dev\/net\/tun unavailable \(EACCES\)/);
    return true;
  });
  assert.equal(ci.skipped, undefined, 'under CI nothing is skipped');
  assert.throws(() => requireLab(fakeContext(), { probe: machine({ uid: 1000 }), env: { CI: '1' } }), { code: 'ERR_TEST_REQUIREMENT' });
});

test('requirementOutcome: run / skip / fail', () => {
  assert.deepEqual(requirementOutcome('x', null, { CI: 'true' }), { kind: 'run' });
  assert.equal(requirementOutcome('x', 'needs y', {}).kind, 'skip');
  assert.equal(requirementOutcome('x', 'needs y', { CI: 'false' }).kind, 'skip');
  assert.equal(requirementOutcome('x', 'needs y', { CI: 'true' }).kind, 'fail');
});

test('skipSummary: nothing outside CI or without skips; under CI every reason with its count', () => {
  const skips = skippedTests([
    { type: 'test:pass', data: { name: 'a', file: '/x/a.test.js', skip: 'needs root' } },
    { type: 'test:pass', data: { name: 'b', file: '/x/a.test.js', skip: 'needs root' } },
    { type: 'test:pass', data: { name: 'c', skip: true } },
    { type: 'test:pass', data: { name: 'ran' } },
    { type: 'test:pass', data: { name: 'ran too', skip: false } },
    { type: 'test:fail', data: { name: 'failed' } },
    { type: 'test:start', data: { name: 'a', skip: 'needs root' } },
  ]);
  assert.deepEqual(skips.map((s) => [s.name, s.reason]), [['a', 'needs root'], ['b', 'needs root'], ['c', '']]);
  assert.equal(skipSummary(skips, {}), null);
  assert.equal(skipSummary([], { CI: 'true' }), null);
  const msg = skipSummary(skips, { CI: 'true' }) ?? '';
  assert.match(msg, /CI=true: 3 test\(s\) skipped/);
  assert.match(msg, /needs root — 2 test\(s\), e\.g\. "a" \(\/x\/a\.test\.js\)/);
  assert.match(msg, /\(no reason given\) — 1 test\(s\)/);
});

test('on a real run, the skip reporter writes every skip under CI=true and nothing otherwise; requireOrSkip fails the test under CI', () => {
  const dir = mkdtempSync(join(tmpdir(), 'skips-'));
  try {
    const run = (ci: boolean): { status: number | null; report: string; out: string } => {
      const dest = join(dir, `report-${ci}`);
      const env = { ...process.env };
      delete env.CI;
      // a run of its own, not a child of this test run
      delete env.NODE_TEST_CONTEXT;
      if (ci) env.CI = 'true';
      const r = spawnSync(
        process.execPath,
        ['--test', '--test-reporter=tap', '--test-reporter-destination=stdout', `--test-reporter=${join(here, 'lib', 'skip-reporter.js')}`, `--test-reporter-destination=${dest}`, join(here, 'fixtures', 'skipping.js')],
        { encoding: 'utf8', env, timeout: 60_000 },
      );
      // (node:test creates the destination only when the reporter writes)
      return { status: r.status, report: existsSync(dest) ? readFileSync(dest, 'utf8') : '', out: r.stdout };
    };
    const dev = run(false);
    assert.equal(dev.status, 0, dev.out);
    assert.equal(dev.report, '', 'nothing to say outside CI');
    assert.match(dev.out, /# skipped 2/);

    const ci = run(true);
    assert.notEqual(ci.status, 0, 'the requireOrSkip test fails under CI');
    assert.match(ci.out, /ERR_TEST_REQUIREMENT/);
    assert.match(ci.out, /needs another thing/);
    assert.match(ci.report, /CI=true: 1 test\(s\) skipped/);
    assert.match(ci.report, /needs a thing — 1 test\(s\), e\.g\. "skipped by option"/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
