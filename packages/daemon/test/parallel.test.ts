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

test('inParallel lets the event loop run between items that settle at once (no starved sockets)', async () => {
  let done = 0;
  let doneWhenIoRan = -1;
  setImmediate(() => (doneWhenIoRan = done)); // stands for a socket's callback, queued before the fan-out
  await inParallel(Array.from({ length: 1000 }, (_, k) => k), 16, async () => {
    done++;
  });
  assert.equal(done, 1000);
  assert.ok(doneWhenIoRan >= 0 && doneWhenIoRan < 100, `the event loop's turn came after ${doneWhenIoRan} of 1000 items`);
});
