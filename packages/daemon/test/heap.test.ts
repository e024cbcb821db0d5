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
