/**
 * Numbered steps of one end-to-end test that build on each other (a mesh
 * grown step by step): each runs as a subtest; after a failure the later
 * ones are skipped, and `failed` tells the test to print the logs.
 *
 * ```ts
 * const steps = createSteps(t);
 * await steps.step('1. nodes start', async (st) => { … });
 * // in finally: if (steps.failed) print the daemons' logs
 * ```
 */
import type { TestContext } from 'node:test';

/** See {@link createSteps}. */
export interface Steps {
  /** Runs `fn` as the subtest `name`, or skips it when an earlier step failed. */
  step(name: string, fn: (st: TestContext) => Promise<void>): Promise<void>;
  /** True once a step failed. */
  readonly failed: boolean;
}

/** Steps of the test `t`. */
export function createSteps(t: TestContext): Steps {
  let failed = false;
  return {
    get failed() {
      return failed;
    },
    step: (name, fn) =>
      t.test(name, async (st) => {
        if (failed) {
          st.skip('an earlier step failed');
          return;
        }
        try {
          await fn(st);
        } catch (err) {
          failed = true;
          throw err;
        }
      }),
  };
}
