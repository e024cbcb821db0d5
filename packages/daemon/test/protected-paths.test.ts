/**
 * The `user=` boundary check (src/protected-paths.ts) against a table of
 * file trees: every protected path kind made writable by the user as owner,
 * through its group, through "other", and through its directory.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { spawnSync } from 'node:child_process';
import { loadPrivilegesAddon } from '../src/privileges.js';
import { basename, dirname, join } from 'node:path';
import { aclAllowsWrite, checkPrivilegeBoundary, findWritable, hookPaths, type AccountIds, type BoundaryConfig, type StatFs } from '../src/protected-paths.js';
import { UnsafePermissionsError } from '../src/errors.js';

const NOBODY: AccountIds = { name: 'nobody', uid: 65534, gids: [65534, 100] };
const DIR = 0o040000;
const REG = 0o100000;

interface Node {
  uid: number;
  gid: number;
  mode: number;
  /** symlink target */
  link?: string;
  /** POSIX access ACL entries: [tag, perm, id] */
  acl?: [number, number, number][];
}

/** The xattr form of an access ACL (version 2, then u16 tag, u16 perm, u32 id, little endian). */
function aclBytes(entries: [number, number, number][]): Uint8Array {
  const b = Buffer.alloc(4 + 8 * entries.length);
  b.writeUInt32LE(2, 0);
  entries.forEach(([tag, perm, id], i) => {
    b.writeUInt16LE(tag, 4 + 8 * i);
    b.writeUInt16LE(perm, 6 + 8 * i);
    b.writeUInt32LE(id, 8 + 8 * i);
  });
  return b;
}
const NOID = 0xffffffff;
const [USER_OBJ, USER, GROUP_OBJ, GROUP, MASK, OTHER] = [0x01, 0x02, 0x04, 0x08, 0x10, 0x20];

/** A fake file system: path → inode. Symlinks are followed by `stat` and `realpath`. */
function fakeFs(tree: Record<string, Node>): StatFs {
  const enoent = (p: string) => Object.assign(new Error(`ENOENT ${p}`), { code: 'ENOENT' });
  const resolveLinks = (p: string, depth = 0): string => {
    if (depth > 8) throw new Error('loop');
    const parts = p.split('/').filter(Boolean);
    let cur = '';
    for (let i = 0; i < parts.length; i++) {
      cur = `${cur}/${parts[i]}`;
      const n = tree[cur];
      if (n === undefined) throw enoent(p);
      if (n.link !== undefined) return resolveLinks(n.link + (i + 1 < parts.length ? `/${parts.slice(i + 1).join('/')}` : ''), depth + 1);
    }
    return cur === '' ? '/' : cur;
  };
  const lstat = (p: string) => {
    const key = p === '/' ? '/' : join(resolveLinks(dirname(p)), basename(p));
    const n = tree[key];
    if (n === undefined) throw enoent(p);
    return { uid: n.uid, gid: n.gid, mode: n.mode, isSymbolicLink: () => n.link !== undefined };
  };
  return {
    lstat,
    stat: (p) => {
      const n = tree[resolveLinks(p)]!;
      return { uid: n.uid, gid: n.gid, mode: n.mode };
    },
    realpath: (p) => resolveLinks(p),
    acl: (p) => {
      const n = tree[resolveLinks(p)];
      return n?.acl ? aclBytes(n.acl) : null;
    },
  };
}

const rootDir = (mode = 0o755): Node => ({ uid: 0, gid: 0, mode: DIR | mode });
const rootFile = (mode = 0o644): Node => ({ uid: 0, gid: 0, mode: REG | mode });

/** A safe installation: everything root's, nothing writable by nobody. */
function baseTree(): Record<string, Node> {
  return {
    '/': rootDir(),
    '/etc': rootDir(),
    '/etc/cluevpn': rootDir(),
    '/etc/cluevpn/office': rootDir(0o750),
    '/etc/cluevpn/office/cluevpn.conf': rootFile(0o600),
    '/etc/cluevpn/office/up': rootFile(0o755),
    // each other kind under its own two directories, so that a directory case names one kind
    '/srv': rootDir(),
    '/srv/cert': rootDir(),
    '/srv/cert/d': rootDir(),
    '/srv/cert/d/alpha.crt': rootFile(),
    '/srv/key': rootDir(),
    '/srv/key/d': rootDir(0o700),
    '/srv/key/d/alpha.key': rootFile(0o600),
    '/srv/ca': rootDir(),
    '/srv/ca/d': rootDir(),
    '/srv/ca/d/ca.crt': rootFile(),
    '/srv/trust': rootDir(),
    '/srv/trust/d': rootDir(),
    '/srv/trust/d/bnl.pub': rootFile(),
    '/srv/hooks': rootDir(),
    '/srv/hooks/d': rootDir(),
    '/srv/hooks/d/up': rootFile(0o755),
    '/usr': rootDir(),
    '/usr/sbin': rootDir(),
    '/usr/sbin/ip': rootFile(0o755),
    '/bin': rootDir(),
    '/bin/sh': rootFile(0o755),
    '/dev': rootDir(),
    '/dev/null': { uid: 0, gid: 0, mode: 0o020000 | 0o666 },
    '/tmp': rootDir(0o1777),
  };
}

const CONFIG: BoundaryConfig = {
  file: '/etc/cluevpn/office/cluevpn.conf',
  cert: '/srv/cert/d/alpha.crt',
  privkey: '/srv/key/d/alpha.key',
  cacert: '/srv/ca/d/ca.crt',
  bnlpubkey: ['/srv/trust/d/bnl.pub', 'ab'.repeat(32)],
  upcmd: '/srv/hooks/d/up "$TUNDEV"',
  downcmd: undefined,
  mysubnetupcmd: undefined,
  subnetupcmd: 'ip route add $SUBNET dev $TUNDEV 2>/dev/null',
  subnetdowncmd: undefined,
};
const HOOKS = { pathEnv: '/usr/sbin:/usr/local/bin', cwd: '/' };

function check(tree: Record<string, Node>, config: BoundaryConfig = CONFIG): UnsafePermissionsError | null {
  try {
    checkPrivilegeBoundary(config, NOBODY, HOOKS, fakeFs(tree));
    return null;
  } catch (err) {
    if (err instanceof UnsafePermissionsError) return err;
    throw err;
  }
}

test('a root-owned installation passes (and /dev/null in a hook is not code)', () => {
  assert.equal(check(baseTree()), null);
});

// each protected kind × each way it can be open to the user
const KINDS: [key: string, path: string][] = [
  ['config', '/etc/cluevpn/office/cluevpn.conf'],
  ['cert', '/srv/cert/d/alpha.crt'],
  ['privkey', '/srv/key/d/alpha.key'],
  ['cacert', '/srv/ca/d/ca.crt'],
  ['bnlpubkey', '/srv/trust/d/bnl.pub'],
  ['upcmd', '/srv/hooks/d/up'],
  ['subnetupcmd', '/usr/sbin/ip'],
];
const WAYS: { way: string; apply: (t: Record<string, Node>, p: string) => void; entry: (p: string) => string; reason: string }[] = [
  { way: 'owned by the user (even mode 0500)', apply: (t, p) => (t[p] = { uid: 65534, gid: 0, mode: REG | 0o500 }), entry: (p) => p, reason: 'owner' },
  { way: 'group-writable, primary group', apply: (t, p) => (t[p] = { uid: 0, gid: 65534, mode: REG | 0o775 }), entry: (p) => p, reason: 'group-bits' },
  { way: 'group-writable, supplementary group', apply: (t, p) => (t[p] = { uid: 0, gid: 100, mode: REG | 0o775 }), entry: (p) => p, reason: 'group-bits' },
  { way: 'writable by other', apply: (t, p) => (t[p] = { uid: 0, gid: 0, mode: REG | 0o757 }), entry: (p) => p, reason: 'other-bits' },
  {
    way: 'its directory group-writable',
    apply: (t, p) => (t[dirname(p)] = { uid: 0, gid: 100, mode: DIR | 0o775 }),
    entry: (p) => dirname(p),
    reason: 'directory',
  },
  {
    way: 'its directory owned by the user',
    apply: (t, p) => (t[dirname(p)] = { uid: 65534, gid: 65534, mode: DIR | 0o700 }),
    entry: (p) => dirname(p),
    reason: 'directory',
  },
  {
    way: 'the directory above its directory writable by other (its directory can be replaced)',
    apply: (t, p) => (t[dirname(dirname(p))] = rootDir(0o777)),
    entry: (p) => dirname(dirname(p)),
    reason: 'directory',
  },
  {
    way: 'the directory above its directory owned by the user',
    apply: (t, p) => (t[dirname(dirname(p))] = { uid: 65534, gid: 0, mode: DIR | 0o555 }),
    entry: (p) => dirname(dirname(p)),
    reason: 'directory',
  },
];

for (const [key, path] of KINDS) {
  for (const w of WAYS) {
    test(`${key} ${path}: ${w.way} → ERR_UNSAFE_PERMISSIONS naming it`, () => {
      const tree = baseTree();
      w.apply(tree, path);
      const err = check(tree);
      assert.ok(err !== null, 'refused');
      assert.equal(err.code, 'ERR_UNSAFE_PERMISSIONS');
      assert.equal(err.key, key);
      assert.equal(err.protects, path);
      assert.equal(err.path, w.entry(path));
      assert.equal(err.reason, w.reason);
      assert.ok(err.message.includes(err.path), 'the message names the path');
    });
  }
}

test('group- or other-readable, or group-writable by a group the user is not in: allowed', () => {
  const tree = baseTree();
  tree['/srv/ca/d/ca.crt'] = { uid: 0, gid: 4, mode: REG | 0o664 };
  tree['/srv/ca/d'] = { uid: 0, gid: 4, mode: DIR | 0o775 };
  assert.equal(check(tree), null);
});

test('POSIX ACLs decide instead of the mode bits, as the kernel reads them', () => {
  const base = [[USER_OBJ, 6, NOID], [GROUP_OBJ, 4, NOID], [OTHER, 4, NOID]] as [number, number, number][];
  const cases: { what: string; acl: [number, number, number][]; gid?: number; refused: boolean }[] = [
    { what: 'a named-user entry granting write', acl: [...base, [USER, 6, 65534], [MASK, 6, NOID]], refused: true },
    { what: 'a named-user entry granting write, but the mask does not', acl: [...base, [USER, 6, 65534], [MASK, 4, NOID]], refused: false },
    { what: 'a named-group entry for a supplementary group', acl: [...base, [GROUP, 6, 100], [MASK, 6, NOID]], refused: true },
    { what: 'a named group without write: other is not consulted', acl: [[USER_OBJ, 6, NOID], [GROUP_OBJ, 4, NOID], [GROUP, 4, 100], [MASK, 6, NOID], [OTHER, 6, NOID]], refused: false },
    { what: 'the owning group (the user\'s) with write under the mask', acl: [[USER_OBJ, 6, NOID], [GROUP_OBJ, 6, NOID], [USER, 4, 1000], [MASK, 6, NOID], [OTHER, 4, NOID]], gid: 65534, refused: true },
    { what: 'another user named, other read-only', acl: [...base, [USER, 6, 1000], [MASK, 6, NOID]], refused: false },
  ];
  for (const c of cases) {
    const tree = baseTree();
    // mode 0644: by the mode bits alone nobody could not write it
    tree['/srv/key/d/alpha.key'] = { uid: 0, gid: c.gid ?? 0, mode: REG | 0o644, acl: c.acl };
    const err = check(tree);
    assert.equal(err !== null, c.refused, c.what);
    if (c.refused) assert.deepEqual([err?.key, err?.reason, err?.path], ['privkey', 'acl', '/srv/key/d/alpha.key'], c.what);
  }
  // malformed: wrong version, torn entry → counted as granting (refused rather than guessed)
  assert.equal(aclAllowsWrite(Uint8Array.of(1, 0, 0, 0), 0, NOBODY), true);
  assert.equal(aclAllowsWrite(aclBytes(base).subarray(0, 10), 0, NOBODY), true);
  assert.equal(aclAllowsWrite(aclBytes(base), 0, NOBODY), false);
  const dirAcl = baseTree();
  dirAcl['/srv/ca/d'] = { uid: 0, gid: 0, mode: DIR | 0o755, acl: [[USER_OBJ, 7, NOID], [GROUP_OBJ, 5, NOID], [GROUP, 7, 65534], [MASK, 7, NOID], [OTHER, 5, NOID]] };
  assert.deepEqual([check(dirAcl)?.key, check(dirAcl)?.reason, check(dirAcl)?.path], ['cacert', 'directory', '/srv/ca/d'], 'a directory writable through its ACL');
});

test('sticky directory: an existing root-owned entry cannot be replaced; a missing one can be created', () => {
  const tree = baseTree();
  tree['/tmp/up'] = rootFile(0o755);
  assert.equal(check(tree, { ...CONFIG, upcmd: '/tmp/up' }), null);
  const missing = check(tree, { ...CONFIG, upcmd: '/tmp/not-there' });
  assert.equal(missing?.reason, 'directory');
  assert.equal(missing?.path, '/tmp');
  tree['/tmp/mine'] = { uid: 65534, gid: 65534, mode: REG | 0o755 };
  assert.equal(check(tree, { ...CONFIG, upcmd: '/tmp/mine' })?.reason, 'owner');
});

test('a symlink in a safe directory to a file in an open one is refused through its target', () => {
  const tree = baseTree();
  tree['/var'] = rootDir(0o777);
  tree['/var/ca.crt'] = rootFile();
  tree['/srv/ca/d/ca.crt'] = { uid: 0, gid: 0, mode: 0o120777, link: '/var/ca.crt' };
  const err = check(tree);
  assert.equal(err?.key, 'cacert');
  assert.equal(err?.path, '/var');
  assert.equal(err?.reason, 'directory');
});

test('hook commands: program by absolute path, relative to cwd, or through PATH; absolute words; not devices', () => {
  const fs = fakeFs(baseTree());
  assert.deepEqual(hookPaths('/etc/cluevpn/office/up "$TUNDEV"', '/', HOOKS.pathEnv, fs), ['/etc/cluevpn/office/up']);
  // a bare name: every PATH place up to the one that has it (a program planted earlier would run instead)
  assert.deepEqual(hookPaths('ip route add $SUBNET dev $TUNDEV >/dev/null', '/', '/usr/local/bin:/usr/sbin:/bin', fs), ['/usr/local/bin/ip', '/usr/sbin/ip']);
  assert.deepEqual(hookPaths('nosuch', '/', '/usr/local/bin:/usr/sbin', fs), ['/usr/local/bin/nosuch', '/usr/sbin/nosuch']);
  assert.deepEqual(hookPaths("sh '/etc/cluevpn/office/up' /dev/null", '/', '/bin', fs), ['/bin/sh', '/etc/cluevpn/office/up']);
  assert.deepEqual(hookPaths('./up', '/etc/cluevpn/office', HOOKS.pathEnv, fs), ['/etc/cluevpn/office/up']);
  assert.deepEqual(hookPaths('/usr/sbin/ip link; logger up', '/', HOOKS.pathEnv, fs), ['/usr/sbin/ip']);
});

test('a PATH directory before the program\'s, writable by the user, is refused (it could plant its own ip)', () => {
  const tree = baseTree();
  tree['/usr/local'] = rootDir();
  tree['/usr/local/bin'] = { uid: 0, gid: 100, mode: DIR | 0o775 };
  assert.throws(
    () => checkPrivilegeBoundary(CONFIG, NOBODY, { ...HOOKS, pathEnv: '/usr/local/bin:/usr/sbin' }, fakeFs(tree)),
    (e: UnsafePermissionsError) => e.key === 'subnetupcmd' && e.path === '/usr/local/bin' && e.protects === '/usr/local/bin/ip' && e.reason === 'directory',
  );
  // PATH in the other order: /usr/sbin/ip is found first, the writable directory is never searched
  assert.equal(check(tree), null);
});

test('a hook program that does not exist in a directory the user can write is refused (it could be created)', () => {
  const tree = baseTree();
  tree['/opt'] = { uid: 65534, gid: 0, mode: DIR | 0o755 };
  const err = check(tree, { ...CONFIG, downcmd: '/opt/hooks/down' });
  assert.equal(err?.key, 'downcmd');
  assert.equal(err?.path, '/opt');
  assert.equal(err?.reason, 'directory');
});

test('findWritable on the real file system (root only: chown)', { skip: process.getuid?.() !== 0 ? 'needs root' : false }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'protected-'));
  try {
    chmodSync(dir, 0o755);
    const conf = join(dir, 'etc', 'cluevpn.conf');
    mkdirSync(join(dir, 'etc'), { mode: 0o755 });
    writeFileSync(conf, 'x', { mode: 0o600 });
    assert.equal(findWritable(conf, NOBODY), null);
    chownSync(join(dir, 'etc'), 65534, 65534);
    assert.deepEqual(findWritable(conf, NOBODY), { entry: conf, reason: 'directory' });
    chownSync(join(dir, 'etc'), 0, 0);
    symlinkSync(conf, join(dir, 'link'));
    assert.equal(findWritable(join(dir, 'link'), NOBODY), null);
    chmodSync(conf, 0o602);
    assert.deepEqual(findWritable(join(dir, 'link'), NOBODY), { entry: conf, reason: 'other-bits' });
    chmodSync(conf, 0o600);
    // an ACL granting nobody write (set with python's os.setxattr: Node has no xattr API); read through the addon
    const set = spawnSync('python3', ['-c', 'import os,sys; os.setxattr(sys.argv[1], "system.posix_acl_access", bytes.fromhex(sys.argv[2]))', conf, Buffer.from(aclBytes([[USER_OBJ, 6, NOID], [USER, 6, 65534], [GROUP_OBJ, 0, NOID], [MASK, 6, NOID], [OTHER, 0, NOID]])).toString('hex')]);
    if (set.status === 0 && loadPrivilegesAddon() !== null) {
      assert.deepEqual(findWritable(conf, NOBODY), { entry: conf, reason: 'acl' });
      const su = spawnSync('su', ['nobody', '-s', '/bin/sh', '-c', `echo x >> ${conf}`]);
      assert.equal(su.status, 0, 'the kernel agrees: nobody can write it');
    } else {
      // no python3 or no ACL support here: nothing to compare against
      assert.ok(set.status !== 0 || loadPrivilegesAddon() === null);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
