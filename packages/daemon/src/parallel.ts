/** Bounded concurrency for the daemon's fan-outs (routes at start, pushes to every node). */

/** Runs `fn` over `items` with at most `limit` calls in flight; resolves when all are done. `fn` must not reject. */
export async function inParallel<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
