/** Bounded concurrency for the daemon's fan-outs (routes at start, pushes to every node). */
import { setImmediate as nextTurn } from 'node:timers/promises';

/**
 * Runs `fn` over `items` with at most `limit` calls in flight; resolves when
 * all are done. `fn` must not reject. Each worker yields to the event loop
 * between items: calls that settle at once (a push to 10 000 records whose
 * connections fail with ENETUNREACH) would otherwise run as one chain of
 * promise callbacks and starve every socket of the process for seconds (a
 * live peer's TLS handshake then timed out in the middle of such a push).
 */
export async function inParallel<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      await fn(items[next++]!);
      await nextTurn();
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
