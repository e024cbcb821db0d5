import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';

const heapUrl = new URL('../src/heap.js', import.meta.url).href;

/** Runs a child that churns through short-lived objects; returns V8's new space size in MiB. */
function newSpaceAfterChurn(limit: boolean): number {
  const script = `const v8 = await import('node:v8');
    ${limit ? `(await import(${JSON.stringify(heapUrl)})).keepYoungGenerationSmall();` : ''}
    const keep = [];
    for (let r = 0; r < 150; r++) { const a = []; for (let i = 0; i < 20000; i++) a.push({ x: i, y: [i] }); keep.push(a.length); }
    const ns = v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space');
    process.stdout.write(String(ns.space_size / 1048576));`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return Number(r.stdout);
}

test('keepYoungGenerationSmall stops V8 from growing the young generation (without it, it grows)', () => {
  const grown = newSpaceAfterChurn(false);
  const kept = newSpaceAfterChurn(true);
  assert.ok(grown > 4, `without the limit the new space grows (${grown} MiB)`);
  assert.ok(kept <= 2, `with the limit it stays at the initial 2 × 1 MiB (${kept} MiB)`);
});

test('collectGarbage runs a full collection without --expose-gc: old-generation garbage is gone at once', () => {
  const script = `const { collectGarbage } = await import(${JSON.stringify(heapUrl)});
    let keep = [];
    for (let i = 0; i < 200_000; i++) keep.push({ i, s: 'x' + i }); // survives scavenges: promoted
    await new Promise((r) => setTimeout(r, 50));
    keep = null;
    const before = process.memoryUsage().heapUsed;
    collectGarbage();
    const after = process.memoryUsage().heapUsed;
    process.stdout.write(JSON.stringify({ before, after, exposed: typeof globalThis.gc }));`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const { before, after, exposed } = JSON.parse(r.stdout) as { before: number; after: number; exposed: string };
  assert.equal(exposed, 'undefined', 'gc is not made global');
  assert.ok(before - after > 8 * 1048576, `at least 8 MiB collected (${before} → ${after})`);
});
