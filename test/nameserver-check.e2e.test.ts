/**
 * scripts/nameserver-check (run inside a lab host, against nameserver
 * addresses that live in the lab or nowhere) and the Cluenet up/down
 * scripts examples/cluevpn-up and examples/cluevpn-down (temp files).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createLab, labSkipReason, REPO_ROOT, type Lab } from './lib/lab.js';

const CHECK = join(REPO_ROOT, 'scripts', 'nameserver-check');
const UP = join(REPO_ROOT, 'examples', 'cluevpn-up');
const DOWN = join(REPO_ROOT, 'examples', 'cluevpn-down');

// In the lab: h1 runs the check, h2 (192.0.2.2, 2001:db8::2) answers; the
// .200/.201/::c8 addresses belong to no host until a test adds them to h2.
const UNREACH_A = '192.0.2.200';
const REACH_B = '192.0.2.2';
const UNREACH_C = '2001:db8::c8';
const REACH_D = '2001:db8::2';

// (under CI=true a missing requirement fails the run: scripts/test's skip reporter)
const skip = labSkipReason();

describe('nameserver-check', { skip: skip === null ? false : `end-to-end lab test skipped: ${skip}` }, () => {
  let lab: Lab;
  let dir: string;
  before(async () => {
    lab = await createLab({ hosts: 2 });
    dir = mkdtempSync(join(tmpdir(), 'nsc-'));
  });
  after(async () => {
    await lab?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  let n = 0;
  /** A fresh resolv.conf (mode 0640) and a master path that does not exist yet. */
  function files(content: string): { resolv: string; master: string } {
    n++;
    const resolv = join(dir, `resolv${n}.conf`);
    writeFileSync(resolv, content);
    chmodSync(resolv, 0o640);
    return { resolv, master: join(dir, `master${n}`) };
  }
  async function check(f: { resolv: string; master: string }, ...extra: string[]) {
    return lab.exec('h1', CHECK, ['--resolv', f.resolv, '--master', f.master, '--count', '1', '--timeout', '1', ...extra], {
      check: false,
    });
  }
  async function setAddr(op: 'add' | 'del', cidr: string) {
    await lab.exec('h2', 'ip', ['addr', op, cidr, 'dev', 'eth0', ...(cidr.includes(':') && op === 'add' ? ['nodad'] : [])]);
  }

  const ORIGINAL = [
    '# written by hand',
    'search example.net',
    `nameserver ${UNREACH_A}`,
    `nameserver ${REACH_B}`,
    'options rotate timeout:1',
    `nameserver ${UNREACH_C}`,
    `nameserver ${REACH_D} # cluevpn:mesh`,
    '; trailing comment',
    '',
  ].join('\n');

  test('first run creates the master; unreachable removed, order and other lines kept', async () => {
    const f = files(ORIGINAL);
    const r = await check(f);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(readFileSync(f.master, 'utf8'), ORIGINAL);
    assert.equal(statSync(f.master).mode & 0o777, 0o640);
    assert.equal(
      readFileSync(f.resolv, 'utf8'),
      [
        '# written by hand',
        'search example.net',
        `nameserver ${REACH_B}`,
        `nameserver ${REACH_D} # cluevpn:mesh`,
        'options rotate timeout:1',
        '; trailing comment',
        '',
      ].join('\n'),
    );
    assert.match(r.stdout, /created/);
    assert.match(r.stdout, new RegExp(`removed nameserver ${UNREACH_A.replace(/\./g, '\\.')}`));
    assert.match(r.stdout, new RegExp(`removed nameserver ${UNREACH_C}`));
    // A second run with nothing changed writes nothing and prints nothing.
    const ino = statSync(f.resolv).ino;
    const again = await check(f);
    assert.equal(again.code, 0);
    assert.equal(again.stdout, '');
    assert.equal(statSync(f.resolv).ino, ino);
  });

  test('a nameserver comes back, in the master order, once it answers again', async () => {
    const f = files(ORIGINAL);
    assert.equal((await check(f)).code, 0);
    await setAddr('add', `${UNREACH_A}/24`);
    try {
      const r = await check(f);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /added nameserver 192\.0\.2\.200/);
      const ns = readFileSync(f.resolv, 'utf8').split('\n').filter((l) => l.startsWith('nameserver'));
      assert.deepEqual(ns, [`nameserver ${UNREACH_A}`, `nameserver ${REACH_B}`, `nameserver ${REACH_D} # cluevpn:mesh`]);
    } finally {
      await setAddr('del', `${UNREACH_A}/24`);
    }
    // ...and goes again when it stops answering.
    const r2 = await check(f);
    assert.match(r2.stdout, /removed nameserver 192\.0\.2\.200 \(no answer\)/);
  });

  test('none answers: all of the master are kept', async () => {
    const f = files(`search x\nnameserver ${UNREACH_C}\n`);
    writeFileSync(f.master, `nameserver ${UNREACH_A}\nnameserver 192.0.2.201\nnameserver ${UNREACH_C}\n`);
    const r = await check(f);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(readFileSync(f.resolv, 'utf8'), `search x\nnameserver ${UNREACH_A}\nnameserver 192.0.2.201\nnameserver ${UNREACH_C}\n`);
    assert.match(r.stdout, /no nameserver .* answers/);
  });

  test('a nameserver not in the master is removed; a file without nameserver lines gets them appended', async () => {
    const f = files(`search x\nnameserver 192.0.2.99\n`);
    writeFileSync(f.master, `nameserver ${REACH_B}\n`);
    const r = await check(f);
    assert.match(r.stdout, /removed nameserver 192\.0\.2\.99 \(not in/);
    assert.equal(readFileSync(f.resolv, 'utf8'), `search x\nnameserver ${REACH_B}\n`);
    const g = files(`options ndots:2`); // no trailing newline either
    writeFileSync(g.master, `nameserver ${REACH_D}\n`);
    assert.equal((await check(g)).code, 0);
    assert.equal(readFileSync(g.resolv, 'utf8'), `options ndots:2\nnameserver ${REACH_D}\n`);
  });

  test('--dry-run prints the changes and writes nothing, not even the master', async () => {
    const f = files(ORIGINAL);
    const before = statSync(f.resolv);
    const r = await check(f, '--dry-run');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /would create/);
    assert.match(r.stdout, /would remove nameserver 192\.0\.2\.200/);
    assert.equal(readFileSync(f.resolv, 'utf8'), ORIGINAL);
    assert.equal(statSync(f.resolv).ino, before.ino);
    assert.equal(existsSync(f.master), false);
    const q = await check(f, '--quiet');
    assert.equal(q.code, 0);
    assert.equal(q.stdout, '');
    assert.notEqual(readFileSync(f.resolv, 'utf8'), ORIGINAL);
  });

  test('atomic: readers only ever see a whole file; mode kept; no temp file left', async () => {
    const f = files(ORIGINAL);
    const seen = new Set<string>();
    let reading = true;
    const reader = (async () => {
      while (reading) {
        seen.add(readFileSync(f.resolv, 'utf8'));
        await new Promise((r) => setImmediate(r));
      }
    })();
    const versions = new Set<string>([ORIGINAL]);
    try {
      for (let i = 0; i < 3; i++) {
        const ino = statSync(f.resolv).ino;
        if (i === 1) await setAddr('add', `${UNREACH_A}/24`);
        if (i === 2) await setAddr('del', `${UNREACH_A}/24`);
        const r = await check(f);
        assert.equal(r.code, 0, r.stderr);
        versions.add(readFileSync(f.resolv, 'utf8'));
        assert.notEqual(statSync(f.resolv).ino, ino, 'replaced by rename, not rewritten in place');
      }
    } finally {
      reading = false;
      await reader;
    }
    assert.ok(seen.size >= 2, 'the reader saw the change');
    for (const s of seen) assert.ok(versions.has(s), `partial or unexpected content observed: ${JSON.stringify(s)}`);
    assert.equal(statSync(f.resolv).mode & 0o777, 0o640);
    assert.deepEqual(readdirSync(dir).filter((x) => x.includes('nscheck')), []);
  });

  test('a live file edited during the check is not overwritten (exit 7)', async () => {
    const f = files(ORIGINAL);
    writeFileSync(f.master, ORIGINAL);
    const run = check(f); // the unreachable nameservers keep it busy ~1 s
    await sleep(300);
    const edited = `${ORIGINAL}search edited.example\n`;
    writeFileSync(f.resolv, edited);
    const r = await run;
    assert.equal(r.code, 7, r.stderr);
    assert.equal(readFileSync(f.resolv, 'utf8'), edited);
  });

  test('errors: usage 2, missing resolv.conf 3, master without nameservers 4', async () => {
    const f = files(ORIGINAL);
    assert.equal((await check(f, '--count', 'x')).code, 2);
    assert.equal((await check(f, '--bogus')).code, 2);
    assert.equal((await check({ resolv: join(dir, 'nope'), master: f.master })).code, 3);
    writeFileSync(f.master, 'search only\n');
    const r = await check(f);
    assert.equal(r.code, 4);
    assert.equal(readFileSync(f.resolv, 'utf8'), ORIGINAL);
    const help = await lab.exec('h1', CHECK, ['--help']);
    assert.match(help.stdout, /Exit codes:/);
  });
});

describe('examples/cluevpn-up and cluevpn-down', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'nsc-updown-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  function run(script: string, args: string[], env: Record<string, string>) {
    return spawnSync(script, args, { encoding: 'utf8', env: { ...process.env, ...env } });
  }

  test('up puts the VPN nameservers first (and in the master), down restores both exactly', () => {
    const resolv = join(dir, 'resolv.conf');
    const master = join(dir, 'resolv.conf-master');
    const original = '# hand-made\nsearch example.net\nnameserver 198.51.100.1\noptions edns0\nnameserver 198.51.100.2\n';
    writeFileSync(resolv, original);
    chmodSync(resolv, 0o644);
    writeFileSync(master, original);
    const env = { CLUEVPN_RESOLV_CONF: resolv, CLUEVPN_RESOLV_MASTER: master, NETNAME: 'mesh' };
    const up = run(UP, ['10.66.0.53', 'fd66::53'], env);
    assert.equal(up.status, 0, up.stderr);
    const expected =
      '# hand-made\nsearch example.net\nnameserver 10.66.0.53 # cluevpn:mesh\nnameserver fd66::53 # cluevpn:mesh\n' +
      'nameserver 198.51.100.1\noptions edns0\nnameserver 198.51.100.2\n';
    assert.equal(readFileSync(resolv, 'utf8'), expected);
    assert.equal(readFileSync(master, 'utf8'), expected);
    // Twice is harmless; the env var form is accepted too.
    const again = run(UP, [], { ...env, CLUEVPN_NAMESERVERS: '10.66.0.53,fd66::53' });
    assert.equal(again.status, 0, again.stderr);
    assert.equal(readFileSync(resolv, 'utf8'), expected);
    // Another network's lines are independent.
    assert.equal(run(UP, ['10.77.0.53'], { ...env, NETNAME: 'other' }).status, 0);
    assert.match(readFileSync(resolv, 'utf8'), /^nameserver 10\.77\.0\.53 # cluevpn:other\nnameserver 10\.66\.0\.53/m);
    assert.equal(run(DOWN, [], { ...env, NETNAME: 'other' }).status, 0);
    assert.equal(readFileSync(resolv, 'utf8'), expected);

    const ino = statSync(resolv).ino;
    const down = run(DOWN, [], env);
    assert.equal(down.status, 0, down.stderr);
    assert.equal(readFileSync(resolv, 'utf8'), original);
    assert.equal(readFileSync(master, 'utf8'), original);
    assert.notEqual(statSync(resolv).ino, ino, 'replaced by rename');
    assert.equal(statSync(resolv).mode & 0o777, 0o644);
    // Down again: nothing to do, file untouched.
    const ino2 = statSync(resolv).ino;
    assert.equal(run(DOWN, [], env).status, 0);
    assert.equal(statSync(resolv).ino, ino2);
    assert.deepEqual(readdirSync(dir).filter((x) => x.startsWith('.')), []);
  });

  test('up without nameservers changes nothing; a bad address is refused (exit 2); a missing file is exit 3', () => {
    const resolv = join(dir, 'r2');
    writeFileSync(resolv, 'nameserver 198.51.100.1\n');
    const env = { CLUEVPN_RESOLV_CONF: resolv, CLUEVPN_RESOLV_MASTER: join(dir, 'absent'), CLUEVPN_NAMESERVERS: '' };
    assert.equal(run(UP, [], env).status, 0);
    assert.equal(run(UP, ['not-an-ip'], env).status, 2);
    assert.equal(run(UP, ['10.0.0.1;rm'], env).status, 2);
    assert.equal(readFileSync(resolv, 'utf8'), 'nameserver 198.51.100.1\n');
    assert.equal(run(UP, ['10.0.0.1'], { ...env, CLUEVPN_RESOLV_CONF: join(dir, 'missing') }).status, 3);
    assert.equal(run(DOWN, [], { ...env, CLUEVPN_RESOLV_CONF: join(dir, 'missing') }).status, 3);
  });
});
