import { setTimeout as sleep } from 'node:timers/promises';
import { TestLibError } from './errors.js';

/** Options for {@link waitFor}. */
export interface WaitForOptions {
  /** Give up after this long (default 20 000 ms: generous, a deadline only catches a hang). */
  timeoutMs?: number;
  /** Pause between attempts (default 50 ms). */
  intervalMs?: number;
  /** What is awaited, for the timeout message. */
  description?: string;
}

/**
 * Calls `fn` until it returns (or resolves to) a truthy value and resolves
 * with that value. A throw or rejection from `fn` counts as "not yet". After
 * `timeoutMs` it rejects with `ERR_WAIT_TIMEOUT`, whose `cause` is the last
 * error `fn` threw (if it threw). `fn` is always tried at least once, and
 * attempts never overlap.
 */
export async function waitFor<T>(fn: () => T | Promise<T>, opts: WaitForOptions = {}): Promise<NonNullable<T>> {
  const timeoutMs = opts.timeoutMs ?? 20_000;
  const intervalMs = opts.intervalMs ?? 50;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  let attempts = 0;
  for (;;) {
    attempts++;
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
      lastError = undefined;
    } catch (err) {
      lastError = err;
    }
    const left = deadline - Date.now();
    if (left <= 0) break;
    await sleep(Math.min(intervalMs, left));
  }
  const what = opts.description ?? 'condition';
  throw new TestLibError(
    'ERR_WAIT_TIMEOUT',
    `timed out after ${timeoutMs} ms (${attempts} attempts) waiting for ${what}` +
      (lastError instanceof Error ? `; last error: ${lastError.message}` : ''),
    lastError === undefined ? undefined : { cause: lastError },
  );
}
