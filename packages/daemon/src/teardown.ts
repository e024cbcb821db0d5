/**
 * The daemon's stop order: each part, once started, registers how it is
 * stopped; `run` stops them in reverse order (the last started first), on a
 * failed start as on a normal stop. A step that fails is logged and the
 * others still run.
 */
import type { Logger } from './logging.js';

/** The registered stop steps. */
export interface Teardown {
  /** Registers the stop step of a part that just started; `what` names it in the log. */
  push(what: string, fn: () => unknown): void;
  /** Runs every registered step, last first, each once. Never rejects: failures are logged ('stop step failed'). */
  run(): Promise<void>;
}

/** Creates an empty stop order. */
export function createTeardown(log: Logger): Teardown {
  const steps: { what: string; fn: () => unknown }[] = [];
  return {
    push(what, fn) {
      steps.push({ what, fn });
    },
    async run() {
      while (steps.length > 0) {
        const step = steps.pop()!;
        try {
          await step.fn();
        } catch (err) {
          log.error('stop step failed', { reason: step.what, err });
        }
      }
    },
  };
}
