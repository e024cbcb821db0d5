import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHookRunner } from '../src/hooks.js';
import { createLogger } from '../src/logging.js';

const env = { TUNDEV: 'dmn0', NETNAME: 'lab', NODE: 'alpha', NODEID: '1' };

test('hooks get the documented environment and run one at a time, in order', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dmn-hook-'));
  const out = join(dir, 'out');
  try {
    const lines: string[] = [];
    const logger = createLogger({ level: 6, method: 'stderr', stream: { write: (s: string) => lines.push(s) } });
    const hooks = createHookRunner({
      env,
      logger,
      commands: {
        upcmd: `echo "up $TUNDEV $INTERFACE $NETNAME $NODE $NODEID $HOOK" >> ${out}`,
        // sleeps: a second hook started concurrently would overtake it
        subnetupcmd: `sleep 0.2; echo "subnet $SUBNET $PEER $PEERID" >> ${out}`,
        mysubnetupcmd: `echo "my $SUBNET" >> ${out}`,
      },
    });
    const results = await Promise.all([
      hooks.run('upcmd'),
      hooks.run('subnetupcmd', { SUBNET: '10.1.0.0/24', PEER: 'beta', PEERID: '2' }),
      hooks.run('mysubnetupcmd', { SUBNET: 'fd00:1::/64' }),
      hooks.run('downcmd'),
    ]);
    assert.deepEqual(results.map((r) => [r.hook, r.ran, r.status]), [
      ['upcmd', true, 0],
      ['subnetupcmd', true, 0],
      ['mysubnetupcmd', true, 0],
      ['downcmd', false, null],
    ]);
    assert.equal(readFileSync(out, 'utf8'), 'up dmn0 dmn0 lab alpha 1 upcmd\nsubnet 10.1.0.0/24 beta 2\nmy fd00:1::/64\n');
    assert.ok(lines.some((l) => l.includes('hook finished') && l.includes('hook=subnetupcmd') && l.includes('status=0')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('data from the BNL cannot inject shell syntax: it is only ever an environment value', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dmn-hook-'));
  const pwned = join(dir, 'pwned');
  const out = join(dir, 'out');
  try {
    const hooks = createHookRunner({ env, logger: createLogger({ level: 0, method: 'stderr' }), commands: { subnetupcmd: `printf '%s\\n' "$PEER" > ${out}` } });
    const evil = `x"; touch ${pwned}; echo "$(touch ${pwned})`;
    const r = await hooks.run('subnetupcmd', { SUBNET: '10.0.0.0/8', PEER: evil, PEERID: '3' });
    assert.equal(r.status, 0);
    assert.equal(existsSync(pwned), false);
    assert.equal(readFileSync(out, 'utf8'), `${evil}\n`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a failing hook is reported with its status; a hanging hook is killed at the timeout', async () => {
  const lines: string[] = [];
  const logger = createLogger({ level: 6, method: 'stderr', stream: { write: (s: string) => lines.push(s) } });
  const hooks = createHookRunner({ env, logger, commands: { upcmd: 'echo oops >&2; exit 3', downcmd: 'sleep 30' } });
  const failed = await hooks.run('upcmd');
  assert.equal(failed.status, 3);
  assert.equal(failed.timedOut, false);
  assert.ok(lines.some((l) => l.includes('hook failed') && l.includes('status=3')));
  assert.ok(lines.some((l) => l.includes('hook output: oops')));
  const t0 = Date.now();
  const hung = await hooks.run('downcmd', {}, { timeoutMs: 200 });
  assert.equal(hung.timedOut, true);
  assert.equal(hung.signal, 'SIGTERM');
  // killed at its 200 ms timeout, long before its own `sleep 30` ends (a
  // generous bound: a busy machine spawns and reaps slowly)
  assert.ok(Date.now() - t0 < 15_000, `killed at the timeout, not after sleep 30 (${Date.now() - t0} ms)`);
});
