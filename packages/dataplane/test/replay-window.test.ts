/**
 * Replay-window vectors in the style of wireguard-go `replay_test.go`
 * (RFC 6479 behaviour): each step is (counter, expected verdict), applied
 * as check() then update() on one window.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { REPLAY_WINDOW_SIZE, ReplayWindow } from '../src/replay-window.js';

const W = REPLAY_WINDOW_SIZE;

function run(steps: Array<[number, boolean]>, w = new ReplayWindow()): void {
  steps.forEach(([counter, expect], i) => {
    assert.equal(w.check(counter), expect, `step ${i}: check(${counter})`);
    assert.equal(w.update(counter), expect, `step ${i}: update(${counter})`);
  });
}

describe('replay window', () => {
  it('is at least 2048 packets wide', () => {
    assert.ok(W >= 2048);
    assert.equal(W, 8160);
  });

  it('follows the wireguard-go vectors', () => {
    run([
      [0, true],
      [1, true],
      [1, false],
      [9, true],
      [8, true],
      [7, true],
      [7, false],
      [W, true],
      [W - 1, true],
      [W - 1, false],
      [W - 2, true],
      [2, true],
      [2, false],
      [W + 16, true],
      [3, false], // now behind the window
      [W + 16, false],
      [W * 4, true],
      [W * 4 - (W - 1), true],
      [10, false],
      [W * 4 - W, true], // exactly W behind: still inside
      [W * 4 - W - 1, false], // W + 1 behind: outside
      [W * 4 - (W - 1), false],
      [W * 4 + 1, true],
      [W * 4 - (W - 1), false],
      [W * 4, false],
    ]);
  });

  it('accepts in-order and out-of-order counters within the window exactly once', () => {
    const w = new ReplayWindow();
    const order: number[] = [];
    for (let i = 0; i < 3000; i++) order.push(i);
    // shuffle inside blocks of 1000 (all within the window)
    for (let b = 0; b < 3; b++) order.slice(b * 1000, b * 1000 + 1000).reverse().forEach((c, k) => (order[b * 1000 + k] = c));
    for (const c of order) assert.equal(w.update(c), true, `first ${c}`);
    for (const c of order) assert.equal(w.check(c), false, `dup ${c}`);
  });

  it('check() never changes the state', () => {
    const w = new ReplayWindow();
    assert.equal(w.check(5), true);
    assert.equal(w.check(5), true);
    assert.equal(w.newest, 0);
    assert.equal(w.update(5), true);
    assert.equal(w.newest, 5);
  });

  it('clears wrapped bitmap blocks on one-block and big jumps', () => {
    const w = new ReplayWindow();
    // fill all 256 blocks (counters 0 .. 8191), every bit set
    for (let c = 0; c < 8192; c++) assert.equal(w.update(c), true);
    for (let round = 0; round < 600; round++) {
      const base = 8192 + round * 32; // first counter of the block that reuses a full ring slot
      assert.equal(w.update(base + 31), true, `advance (round ${round})`);
      for (let k = 0; k < 31; k++) assert.equal(w.update(base + k), true, `wrapped block bit ${k} (round ${round})`);
      assert.equal(w.check(base - 8192 + 3), false, `evicted block (round ${round})`);
    }
    // a jump larger than the ring clears everything
    const far = 10 ** 12;
    assert.equal(w.update(far), true);
    for (let c = far - W; c < far; c += 97) assert.equal(w.check(c), true, `after big jump ${c}`);
    assert.equal(w.check(far - W - 1), false);
  });

  it('handles counters up to 2^53 - 1 and rejects beyond', () => {
    const w = new ReplayWindow();
    const top = Number.MAX_SAFE_INTEGER;
    run([[top - 5, true], [top, true], [top - 1, true], [top - 5, false]], w);
    assert.equal(w.check(top + 1), false);
    assert.equal(w.update(-1), false);
    assert.equal(w.check(Number.NaN), false);
  });

  it('reset() forgets everything', () => {
    const w = new ReplayWindow();
    run([[100, true], [100, false]], w);
    w.reset();
    run([[100, true], [0, true]], w);
  });
});
