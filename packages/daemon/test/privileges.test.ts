/**
 * Privilege drop keeping CAP_NET_ADMIN (native/privileges.c via
 * src/privileges.ts). A drop cannot be undone, so each case runs in a child
 * Node process; route changes happen inside a network namespace created here
 * (prefix `priv`), removed in `finally`. Needs root and the built addon.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadPrivilegesAddon, dropPrivileges, resolveAccount } from '../src/privileges.js';
import { silentLogger } from '../src/logging.js';
import type { PrivilegeError } from '../src/errors.js';

const CAP_NET_ADMIN = 12;
const NET_ADMIN_MASK = 1n << BigInt(CAP_NET_ADMIN);
const addon = loadPrivilegesAddon();
const skip = process.getuid?.() !== 0 ? 'needs root' : addon === null ? 'addon not built (scripts/build-native)' : false;

const mod = new URL('../src/privileges.js', import.meta.url).href;

/** Runs `body` (ESM, top-level await) in a child Node, optionally inside `netns` and under `wrapper`; returns the JSON it prints last. */
async function runChild(body: string, opts: { netns?: string; wrapper?: string[] } = {}): Promise<Record<string, unknown>> {
  const script = `
    import { readFileSync, readdirSync } from 'node:fs';
    import { execFile, spawn } from 'node:child_process';
    const { dropPrivileges } = await import(${JSON.stringify(mod)});
    const log = { notice() {}, error() {}, warn() {}, info() {}, debug() {}, log() {}, enabled: () => false, child() { return this; } };
    const status = (p) => Object.fromEntries(readFileSync(p + '/status', 'utf8').split('\\n').filter((l) => l.includes(':')).map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1).trim()]));
    const run = (cmd, args) => new Promise((resolve) => execFile(cmd, args, (err, stdout, stderr) => resolve({ ok: !err, stdout, stderr })));
    ${body}
  `;
  const argv = [...(opts.netns ? ['ip', 'netns', 'exec', opts.netns] : []), ...(opts.wrapper ?? []), process.execPath, '--input-type=module', '-e', script];
  const out = await new Promise<string>((resolve, reject) => {
    const c = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    let s = '';
    let e = '';
    c.stdout.on('data', (d: Buffer) => (s += d.toString()));
    c.stderr.on('data', (d: Buffer) => (e += d.toString()));
    c.on('error', reject);
    c.on('exit', (code) => (code === 0 ? resolve(s) : reject(new Error(`child exited ${code}: ${e}`))));
  });
  const lines = out.trim().split('\n');
  return JSON.parse(lines[lines.length - 1]!) as Record<string, unknown>;
}

function withNetns<T>(suffix: string, fn: (ns: string) => Promise<T>): Promise<T> {
  const ns = `priv${process.pid}${suffix}`;
  execFileSync('ip', ['netns', 'add', ns]);
  return (async () => {
    try {
      execFileSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
      return await fn(ns);
    } finally {
      execFileSync('ip', ['netns', 'del', ns]);
    }
  })();
}

const capHex = (v: unknown): bigint => BigInt('0x' + String(v));

test('drop to nobody keeps exactly CAP_NET_ADMIN; exec\'d ip gets it and adds a route; nothing else is kept', { skip }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'priv-'));
  chmodSync(dir, 0o755);
  const secret = join(dir, 'root-only');
  writeFileSync(secret, 'secret\n', { mode: 0o600 });
  try {
    await withNetns('a', async (ns) => {
      const r = await runChild(
        `
        const res = dropPrivileges({ user: 'nobody' }, log);
        const self = status('/proc/self');
        // other threads of this process: the setxid broadcast gave them the new uid, and no capability
        const threads = readdirSync('/proc/self/task').filter((t) => t !== String(process.pid)).map((t) => status('/proc/self/task/' + t));
        // a long-running ip child: read its own capability sets while it runs
        const mon = spawn('ip', ['monitor', 'route'], { stdio: 'ignore' });
        let ipStatus = null;
        for (let i = 0; i < 200 && !ipStatus; i++) {
          try { const s = status('/proc/' + mon.pid); if (s.Name === 'ip') ipStatus = s; } catch (e) { if (e.code !== 'ENOENT') throw e; }
          if (!ipStatus) await new Promise((r) => setTimeout(r, 10));
        }
        mon.kill();
        const add = await run('ip', ['route', 'add', '10.77.0.0/24', 'dev', 'lo']);
        let readSecret = 'allowed';
        try { readFileSync(${JSON.stringify(secret)}); } catch (e) { readSecret = e.code; }
        const catSecret = await run('cat', [${JSON.stringify(secret)}]);
        let setuid0 = 'allowed';
        try { process.setuid(0); } catch (e) { setuid0 = e.code; }
        console.log(JSON.stringify({ res, self, threads, ipStatus, add, readSecret, catOk: catSecret.ok, setuid0, uid: process.getuid(), gid: process.getgid(), groups: process.getgroups() }));
        `,
        { netns: ns },
      );
      const nobody = Number(execFileSync('id', ['-u', 'nobody'], { encoding: 'utf8' }).trim());
      const nobodyGid = Number(execFileSync('id', ['-g', 'nobody'], { encoding: 'utf8' }).trim());
      const self = r.self as Record<string, string>;
      assert.deepEqual(r.res, { uid: nobody, gid: nobodyGid, keptNetAdmin: true });
      assert.equal(r.uid, nobody);
      assert.equal(r.gid, nobodyGid);
      assert.deepEqual(self.Uid!.split(/\s+/).map(Number), [nobody, nobody, nobody, nobody], 'real, effective, saved, fs uid');
      assert.deepEqual(self.Gid!.split(/\s+/).map(Number), [nobodyGid, nobodyGid, nobodyGid, nobodyGid]);
      assert.ok(!(r.groups as number[]).includes(0), 'no root group left');
      for (const set of ['CapEff', 'CapPrm', 'CapInh', 'CapAmb']) assert.equal(capHex(self[set]), NET_ADMIN_MASK, `${set} = CAP_NET_ADMIN only`);
      assert.equal(capHex(self.CapBnd), NET_ADMIN_MASK, 'bounding set reduced (root holds CAP_SETPCAP)');
      assert.equal(self.NoNewPrivs, '1');
      const threads = r.threads as Record<string, string>[];
      assert.ok(threads.length > 0, 'Node has other threads');
      for (const t of threads) {
        assert.equal(Number(t.Uid!.split(/\s+/)[1]), nobody, `thread ${t.Name} has the new euid`);
        assert.equal(capHex(t.CapEff), 0n, `thread ${t.Name} keeps no capability`);
        assert.equal(capHex(t.CapPrm), 0n);
      }
      const ip = r.ipStatus as Record<string, string> | null;
      assert.ok(ip !== null, 'saw the ip child running');
      assert.equal(Number(ip.Uid!.split(/\s+/)[1]), nobody, 'ip runs as nobody');
      assert.equal(capHex(ip.CapEff), NET_ADMIN_MASK, 'ip child CapEff = CAP_NET_ADMIN (ambient)');
      assert.equal(capHex(ip.CapPrm), NET_ADMIN_MASK);
      assert.equal((r.add as { ok: boolean; stderr: string }).ok, true, `ip route add failed: ${(r.add as { stderr: string }).stderr}`);
      assert.equal(r.readSecret, 'EACCES', 'CAP_DAC_OVERRIDE not kept');
      assert.equal(r.catOk, false, 'an exec\'d child cannot read it either');
      assert.equal(r.setuid0, 'EPERM', 'root cannot be regained');
      // the route really is in the namespace's kernel table
      assert.match(execFileSync('ip', ['-n', ns, 'route', 'show', '10.77.0.0/24'], { encoding: 'utf8' }), /10\.77\.0\.0\/24 dev lo/);
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('without the addon (fallback): no capability kept, ip route add fails', { skip }, async () => {
  await withNetns('b', async (ns) => {
    const r = await runChild(
      `
      const res = dropPrivileges({ user: 'nobody' }, log, { addon: null });
      const add = await run('ip', ['route', 'add', '10.77.1.0/24', 'dev', 'lo']);
      console.log(JSON.stringify({ res, capEff: status('/proc/self').CapEff, addOk: add.ok }));
      `,
      { netns: ns },
    );
    assert.equal((r.res as { keptNetAdmin: boolean }).keptNetAdmin, false);
    assert.equal(capHex(r.capEff), 0n);
    assert.equal(r.addOk, false);
    assert.equal(execFileSync('ip', ['-n', ns, 'route', 'show', '10.77.1.0/24'], { encoding: 'utf8' }).trim(), '');
  });
});

test('without CAP_NET_ADMIN to keep: ERR_PRIVILEGE_DROP (EPERM) and nothing changed', { skip }, async () => {
  const r = await runChild(
    `
    let code = null, cause = null;
    try { dropPrivileges({ user: 'nobody' }, log); } catch (e) { code = e.code; cause = e.cause?.code; }
    const s = status('/proc/self');
    console.log(JSON.stringify({ code, cause, uid: process.getuid(), euid: process.geteuid(), groups: process.getgroups(), capEff: s.CapEff }));
    `,
    { wrapper: ['setpriv', '--bounding-set=-net_admin', '--'] },
  );
  assert.equal(r.code, 'ERR_PRIVILEGE_DROP');
  assert.equal(r.cause, 'EPERM');
  assert.equal(r.uid, 0);
  assert.equal(r.euid, 0);
  assert.equal(capHex(r.capEff) & NET_ADMIN_MASK, 0n);
  assert.notEqual(capHex(r.capEff), 0n, 'still root with its other capabilities');
});

test('as under the systemd unit (bounding set NET_ADMIN+SETUID+SETGID, no CAP_SETPCAP, no_new_privs): keeps CAP_NET_ADMIN, ip still gets it', { skip }, async () => {
  await withNetns('c', async (ns) => {
    const r = await runChild(
      `
      const before = status('/proc/self');
      const res = dropPrivileges({ user: 'nobody' }, log);
      const after = status('/proc/self');
      const add = await run('ip', ['route', 'add', '10.77.2.0/24', 'dev', 'lo']);
      console.log(JSON.stringify({ res, before, after, add }));
      `,
      { netns: ns, wrapper: ['setpriv', '--bounding-set=-all,+net_admin,+setuid,+setgid', '--no-new-privs', '--'] },
    );
    const before = r.before as Record<string, string>;
    const after = r.after as Record<string, string>;
    assert.equal(capHex(before.CapEff), NET_ADMIN_MASK | (1n << 6n) | (1n << 7n), 'started with exactly NET_ADMIN, SETGID, SETUID');
    assert.equal((r.res as { keptNetAdmin: boolean }).keptNetAdmin, true);
    for (const set of ['CapEff', 'CapPrm', 'CapInh', 'CapAmb']) assert.equal(capHex(after[set]), NET_ADMIN_MASK, set);
    assert.equal((r.add as { ok: boolean; stderr: string }).ok, true, (r.add as { stderr: string }).stderr);
    assert.match(execFileSync('ip', ['-n', ns, 'route', 'show', '10.77.2.0/24'], { encoding: 'utf8' }), /10\.77\.2\.0\/24 dev lo/);
  });
});

test('bad targets are refused before anything changes', { skip }, () => {
  const a = addon!;
  assert.equal(a.netAdminCapability, CAP_NET_ADMIN);
  assert.throws(() => dropPrivileges({ user: 'no-such-user-priv' }, silentLogger), (e: PrivilegeError) => e.code === 'ERR_PRIVILEGE_DROP');
  assert.throws(() => dropPrivileges({ user: 'root' }, silentLogger), (e: PrivilegeError) => e.code === 'ERR_PRIVILEGE_DROP');
  assert.throws(() => dropPrivileges({ user: 'nobody', group: 'no-such-group-priv' }, silentLogger), (e: PrivilegeError) => e.code === 'ERR_PRIVILEGE_DROP');
  assert.throws(() => a.dropPrivilegesKeepNetAdmin(0, 0, []), (e: Error & { code?: string }) => e.code === 'ERR_INVALID_ARG');
  assert.throws(() => a.dropPrivilegesKeepNetAdmin(65534, -1, []), (e: Error & { code?: string }) => e.code === 'ERR_INVALID_ARG');
  assert.throws(() => a.dropPrivilegesKeepNetAdmin(65534, 65534, [1.5]), (e: Error & { code?: string }) => e.code === 'ERR_INVALID_ARG');
  assert.equal(process.getuid!(), 0, 'the test process is still root');
  const nobody = a.lookupUser('nobody');
  assert.ok(nobody !== null && nobody.groups.includes(nobody.gid));
  assert.equal(a.lookupUser('no-such-user-priv'), null);
  assert.equal(a.lookupGroup('no-such-group-priv'), null);
});

test('resolveAccount: the ids the drop switches to, the same with the addon (NSS) and without (/etc/passwd, /etc/group), as id(1) reports them', () => {
  const uid = Number(execFileSync('id', ['-u', 'nobody'], { encoding: 'utf8' }).trim());
  const gid = Number(execFileSync('id', ['-g', 'nobody'], { encoding: 'utf8' }).trim());
  const groups = execFileSync('id', ['-G', 'nobody'], { encoding: 'utf8' }).trim().split(/\s+/).map(Number).sort();
  const fromFiles = resolveAccount({ user: 'nobody' }, { addon: null });
  assert.deepEqual({ uid: fromFiles!.uid, gid: fromFiles!.gid, groups: [...fromFiles!.groups].sort() }, { uid, gid, groups });
  if (addon !== null) {
    const fromNss = resolveAccount({ user: 'nobody' }, { addon });
    assert.deepEqual({ uid: fromNss!.uid, gid: fromNss!.gid, groups: [...fromNss!.groups].sort() }, { uid, gid, groups });
  }
  assert.equal(resolveAccount({ group: 'nogroup' }), null, 'no user: no drop, nothing to check');
  assert.throws(() => resolveAccount({ user: 'no-such-user-xyz' }, { addon: null }), (e: PrivilegeError) => e.code === 'ERR_PRIVILEGE_DROP');
  assert.throws(() => resolveAccount({ user: 'root' }, { addon: null }), (e: PrivilegeError) => e.code === 'ERR_PRIVILEGE_DROP', 'root is not a drop');
});
