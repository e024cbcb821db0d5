import assert from 'node:assert/strict';
import { test } from 'node:test';
import { inParallel } from '../src/parallel.js';

test('inParallel runs every item once with at most `limit` in flight', async () => {
  let inFlight = 0;
  let peak = 0;
  const seen: number[] = [];
  await inParallel([1, 2, 3, 4, 5, 6, 7], 3, async (n) => {
    inFlight++;
    peak = Math.max(peak, inFlight);
    await new Promise((r) => setTimeout(r, 5 * (n % 3)));
    seen.push(n);
    inFlight--;
  });
  assert.deepEqual(seen.sort(), [1, 2, 3, 4, 5, 6, 7]);
  assert.equal(peak, 3);
  await inParallel([], 4, async () => assert.fail('no items, no calls'));
});
