import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { BUNDLE_FILE, CACHE_FILE, MANIFEST_FILE, bundleStaleReason, compileBundle, entryInfo, loadDaemon, loadedAs, type BundleManifest, type FileStamp } from '../src/entry.js';

const DAEMON_DIST = fileURLToPath(new URL('../', import.meta.url));

/** A fake dist: a bundle whose main records its argv, one input file with its stamp (a .tsbuildinfo), and a manifest of them. */
function fakeDist(): { dist: string; input: string; stamp: string; cleanup: () => void } {
  const dist = mkdtempSync(join(tmpdir(), 'entry-test-'));
  mkdirSync(join(dist, 'src'));
  const input = join(dist, 'src', 'a.js');
  writeFileSync(input, 'export const a = 1;\n');
  const stamp = join(dist, '.tsbuildinfo');
  writeFileSync(stamp, '{"version":"5"}\n');
  writeFileSync(join(dist, BUNDLE_FILE), 'exports.main = async (argv) => { globalThis.__entryTestRan = argv; };\nexports.dir = __dirname;\n');
  writeManifest(dist);
  return { dist, input, stamp, cleanup: () => rmSync(dist, { recursive: true, force: true }) };
}

function writeManifest(dist: string, inputFiles = ['src/a.js', BUNDLE_FILE], stampFiles = ['.tsbuildinfo', BUNDLE_FILE]): void {
  const of = (files: string[]): Record<string, FileStamp> => {
    const out: Record<string, FileStamp> = {};
    for (const f of files) {
      const st = statSync(join(dist, f));
      out[f] = { size: st.size, mtimeMs: st.mtimeMs };
    }
    return out;
  };
  const manifest: BundleManifest = { version: 2, inputs: of(inputFiles), stamps: of(stampFiles), nodeFlags: [] };
  writeFileSync(join(dist, MANIFEST_FILE), JSON.stringify(manifest));
}

test('the stamps decide: current, a stamp changed in size or time, a stamp gone, no manifest, an unknown version', () => {
  const { dist, stamp, cleanup } = fakeDist();
  try {
    assert.equal(bundleStaleReason(dist), undefined);
    const st = statSync(stamp);
    utimesSync(stamp, st.atime, new Date(st.mtimeMs + 5000)); // tsc -b rewrote it
    assert.match(bundleStaleReason(dist) ?? '', /^\.tsbuildinfo changed since the bundle was made/);
    writeManifest(dist);
    assert.equal(bundleStaleReason(dist), undefined);
    const before = statSync(stamp);
    writeFileSync(stamp, '{"version":"5","more":1}\n'); // other size, the time put back
    utimesSync(stamp, before.atime, before.mtime);
    assert.equal(statSync(stamp).mtimeMs, before.mtimeMs);
    assert.match(bundleStaleReason(dist) ?? '', /\.tsbuildinfo changed/);
    rmSync(stamp);
    assert.equal(bundleStaleReason(dist), '.tsbuildinfo is gone since the bundle was made');
    writeFileSync(join(dist, MANIFEST_FILE), JSON.stringify({ version: 2, inputs: {}, stamps: { [BUNDLE_FILE]: null } }));
    assert.match(bundleStaleReason(dist) ?? '', /malformed entry for cluevpnd\.cjs/);
    writeFileSync(join(dist, MANIFEST_FILE), JSON.stringify({ version: 2, inputs: {}, stamps: {} }));
    assert.match(bundleStaleReason(dist) ?? '', /the bundle itself is not stamped/);
    writeFileSync(join(dist, MANIFEST_FILE), JSON.stringify({ version: 1, inputs: {} })); // the format before stamps
    assert.match(bundleStaleReason(dist) ?? '', /unknown version/);
    writeFileSync(join(dist, MANIFEST_FILE), '{"version": 2, "inp');
    assert.match(bundleStaleReason(dist) ?? '', /unreadable bundle manifest/);
    rmSync(join(dist, MANIFEST_FILE));
    assert.equal(bundleStaleReason(dist), 'no bundle (run scripts/setup)');
  } finally {
    cleanup();
  }
});

test('a bundle changed by hand is stale; an input changed without its stamp is seen by the deep check only', () => {
  const { dist, input, cleanup } = fakeDist();
  try {
    const bundle = join(dist, BUNDLE_FILE);
    const st = statSync(bundle);
    utimesSync(bundle, st.atime, new Date(st.mtimeMs + 5000));
    assert.match(bundleStaleReason(dist) ?? '', /^cluevpnd\.cjs changed since the bundle was made/);
    writeManifest(dist);
    writeFileSync(input, 'export const a = 22;\n'); // edited in dist/ by hand, not by tsc -b
    assert.equal(bundleStaleReason(dist), undefined);
    assert.match(bundleStaleReason(dist, { deep: true }) ?? '', /^src\/a\.js changed since the bundle was made/);
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
  const { dist, input, stamp, cleanup } = fakeDist();
  const warnings: string[] = [];
  try {
    writeFileSync(input, 'export const a = 4444;\n');
    writeFileSync(stamp, '{"version":"5","rebuilt":true}\n'); // as tsc -b does
    delete (globalThis as Record<string, unknown>).__entryTestRan;
    const entry = await loadDaemon(dist, (l) => warnings.push(l));
    assert.equal(entryInfo()?.mode, 'modules');
    assert.match(loadedAs(), /^modules \(\.tsbuildinfo changed since the bundle was made/);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /^cluevpnd: warning: \.tsbuildinfo changed .*; loading the modules instead/);
    assert.equal(entry, await import('../src/main.js'), 'the real main module');

    writeManifest(dist);
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
      writeManifest(dist);
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
  assert.equal(bundleStaleReason(DAEMON_DIST, { deep: true }), undefined, 'and every input is as bundled');
  for (const s of [BUNDLE_FILE, '.tsbuildinfo', '../../dataplane/dist/.tsbuildinfo']) assert.ok(s in manifest.stamps, `${s} is a stamp`);
  assert.ok(Object.keys(manifest.stamps).length < Object.keys(manifest.inputs).length / 4, 'far fewer stamps than inputs');
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
