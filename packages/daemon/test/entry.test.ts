import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { BUNDLE_FILE, CACHE_FILE, MANIFEST_FILE, bundleStaleReason, compileBundle, entryInfo, loadDaemon, loadedAs, type BundleManifest } from '../src/entry.js';

const DAEMON_DIST = fileURLToPath(new URL('../', import.meta.url));

/** A fake dist: a bundle whose main records its argv, one input file, and a manifest of both. */
function fakeDist(): { dist: string; input: string; cleanup: () => void } {
  const dist = mkdtempSync(join(tmpdir(), 'entry-test-'));
  mkdirSync(join(dist, 'src'));
  const input = join(dist, 'src', 'a.js');
  writeFileSync(input, 'export const a = 1;\n');
  writeFileSync(join(dist, BUNDLE_FILE), 'exports.main = async (argv) => { globalThis.__entryTestRan = argv; };\nexports.dir = __dirname;\n');
  writeManifest(dist, ['src/a.js', BUNDLE_FILE]);
  return { dist, input, cleanup: () => rmSync(dist, { recursive: true, force: true }) };
}

function writeManifest(dist: string, files: string[]): void {
  const inputs: BundleManifest['inputs'] = {};
  for (const f of files) {
    const st = statSync(join(dist, f));
    inputs[f] = { size: st.size, mtimeMs: st.mtimeMs };
  }
  writeFileSync(join(dist, MANIFEST_FILE), JSON.stringify({ version: 1, inputs, nodeFlags: [] }));
}

test('the manifest decides: current, a file changed in size or time, a file gone, no manifest, an unknown version', () => {
  const { dist, input, cleanup } = fakeDist();
  try {
    assert.equal(bundleStaleReason(dist), undefined);
    const st = statSync(input);
    utimesSync(input, st.atime, new Date(st.mtimeMs + 5000));
    assert.match(bundleStaleReason(dist) ?? '', /^src\/a\.js changed since the bundle was made/);
    writeManifest(dist, ['src/a.js', BUNDLE_FILE]);
    assert.equal(bundleStaleReason(dist), undefined);
    const before = statSync(input);
    writeFileSync(input, 'export const a = 333;\n'); // other size, the time put back
    utimesSync(input, before.atime, before.mtime);
    assert.equal(statSync(input).mtimeMs, before.mtimeMs);
    assert.match(bundleStaleReason(dist) ?? '', /src\/a\.js changed/);
    rmSync(input);
    assert.equal(bundleStaleReason(dist), 'src/a.js is gone since the bundle was made');
    writeFileSync(join(dist, MANIFEST_FILE), JSON.stringify({ version: 1, inputs: { 'src/a.js': null } }));
    assert.match(bundleStaleReason(dist) ?? '', /malformed entry for src\/a\.js/);
    writeFileSync(join(dist, MANIFEST_FILE), JSON.stringify({ version: 2, inputs: {} }));
    assert.match(bundleStaleReason(dist) ?? '', /unknown version/);
    writeFileSync(join(dist, MANIFEST_FILE), '{"version": 1, "inp');
    assert.match(bundleStaleReason(dist) ?? '', /unreadable bundle manifest/);
    rmSync(join(dist, MANIFEST_FILE));
    assert.equal(bundleStaleReason(dist), 'no bundle (run scripts/setup)');
  } finally {
    cleanup();
  }
});

/** loadDaemon(dist) in a fresh Node (V8 would otherwise find the source in this process's compilation cache); its entryInfo. */
function loadInChild(dist: string): unknown {
  const entryUrl = new URL('../src/entry.js', import.meta.url).href;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', `const e = await import(${JSON.stringify(entryUrl)}); await e.loadDaemon(${JSON.stringify(dist)}); process.stdout.write(JSON.stringify(e.entryInfo()));`], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, '', 'no warning');
  return JSON.parse(r.stdout);
}

test('a current bundle runs, with its code cache accepted, rejected or missing', async () => {
  const { dist, cleanup } = fakeDist();
  const warnings: string[] = [];
  try {
    const entry = await loadDaemon(dist, (l) => warnings.push(l));
    assert.deepEqual(entryInfo(), { mode: 'bundle', cache: 'missing' });
    assert.equal(loadedAs(), 'bundle (code cache missing)');
    assert.equal((entry as unknown as { dir: string }).dir, dist.replace(/\/$/, ''), '__dirname is the bundle directory');
    await entry.main(['node', 'x', '-D']);
    assert.deepEqual((globalThis as Record<string, unknown>).__entryTestRan, ['node', 'x', '-D']);
    assert.deepEqual(warnings, []);

    assert.deepEqual(loadInChild(dist), { mode: 'bundle', cache: 'missing' });
    const script = compileBundle(join(dist, BUNDLE_FILE));
    script.runInThisContext();
    writeFileSync(join(dist, CACHE_FILE), script.createCachedData());
    assert.deepEqual(loadInChild(dist), { mode: 'bundle', cache: 'accepted' });
    writeFileSync(join(dist, CACHE_FILE), Buffer.alloc(256, 7));
    assert.deepEqual(loadInChild(dist), { mode: 'bundle', cache: 'rejected' }, 'a rejected cache only costs the compile');
  } finally {
    cleanup();
  }
});

test('a stale bundle is not run: the modules are loaded, with a warning; CLUEVPN_DEBUG=modules does it quietly', async () => {
  const { dist, input, cleanup } = fakeDist();
  const warnings: string[] = [];
  try {
    writeFileSync(input, 'export const a = 4444;\n');
    delete (globalThis as Record<string, unknown>).__entryTestRan;
    const entry = await loadDaemon(dist, (l) => warnings.push(l));
    assert.equal(entryInfo()?.mode, 'modules');
    assert.match(loadedAs(), /^modules \(src\/a\.js changed since the bundle was made/);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /^cluevpnd: warning: src\/a\.js changed .*; loading the modules instead/);
    assert.equal(entry, await import('../src/main.js'), 'the real main module');

    writeManifest(dist, ['src/a.js', BUNDLE_FILE]);
    process.env.CLUEVPN_DEBUG = 'modules';
    try {
      await loadDaemon(dist, (l) => warnings.push(l));
    } finally {
      delete process.env.CLUEVPN_DEBUG;
    }
    assert.deepEqual(entryInfo(), { mode: 'modules', reason: 'CLUEVPN_DEBUG=modules' });
    assert.equal(warnings.length, 1, 'no second warning');

    // a bundle that does not compile, or exports no main, still lets the daemon start (from the modules)
    for (const [text, why] of [['exports.main = (;\n', /cannot load .*cluevpnd\.cjs: Unexpected token/], ['exports.other = 1;\n', /cannot load .*cluevpnd\.cjs: it exports no main\(\)/]] as const) {
      writeFileSync(join(dist, BUNDLE_FILE), text);
      writeManifest(dist, ['src/a.js', BUNDLE_FILE]);
      assert.equal(bundleStaleReason(dist), undefined);
      assert.equal(await loadDaemon(dist, (l) => warnings.push(l)), await import('../src/main.js'));
      assert.equal(entryInfo()?.mode, 'modules');
      assert.match(warnings.at(-1)!, why);
    }
  } finally {
    cleanup();
  }
});

test('the built daemon bundle is current, covers the daemon modules and exports main', async () => {
  assert.equal(bundleStaleReason(DAEMON_DIST), undefined, 'scripts/bundle-daemon ran after the last tsc -b');
  const manifest = JSON.parse(readFileSync(join(DAEMON_DIST, MANIFEST_FILE), 'utf8')) as BundleManifest & { nodeFlags: string[] };
  for (const m of [BUNDLE_FILE, 'src/main.js', 'src/daemon.js', '../../dataplane/dist/src/send.js', '../../negotiation/dist/src/store.js', '../../tun/dist/src/native.js']) {
    assert.ok(m in manifest.inputs, `${m} is in the bundle`);
  }
  const shebang = readFileSync(fileURLToPath(new URL('../../bin/cluevpnd', import.meta.url)), 'utf8').split('\n')[0]!;
  assert.equal(shebang, ['#!/usr/bin/env -S -u NODE_EXTRA_CA_CERTS node', ...manifest.nodeFlags].join(' '), 'the cache was made with the flags of the entry point');
});

test('loading the daemon (bundle or modules) does not load node:child_process, node:dgram or node:dns (used on demand only)', () => {
  const entryUrl = new URL('../src/entry.js', import.meta.url).href;
  const script = `const before = new Set(process.moduleLoadList);
    const e = await import(${JSON.stringify(entryUrl)});
    await e.loadDaemon(${JSON.stringify(DAEMON_DIST)});
    process.stdout.write(JSON.stringify({ loaded: e.loadedAs(), added: process.moduleLoadList.filter((m) => !before.has(m)) }));`;
  for (const env of [{}, { CLUEVPN_DEBUG: 'modules' }]) {
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', env: { ...process.env, ...env } });
    assert.equal(r.status, 0, r.stderr);
    const { loaded, added } = JSON.parse(r.stdout) as { loaded: string; added: string[] };
    assert.match(loaded, 'CLUEVPN_DEBUG' in env ? /^modules/ : /^bundle \(code cache accepted\)$/);
    assert.ok(added.includes('NativeModule tls'), `${loaded}: the daemon's modules were loaded (tls among them)`);
    assert.deepEqual(added.filter((m) => /^NativeModule (child_process|dgram|dns)/.test(m)), [], loaded);
  }
});
