/**
 * Errors of the end-to-end test helpers. Tests assert `code`, never the
 * message text.
 *
 * Codes:
 * - `ERR_LAB_SETUP`: `scripts/netns-lab up` failed (the script has already
 *   removed what it built).
 * - `ERR_LAB_EXEC`: a command run in a lab host exited non-zero or was
 *   killed (see `result`).
 * - `ERR_LAB_DESTROYED`: the lab was used after `destroy()`.
 * - `ERR_LAB_HOST`: no such host in this lab.
 * - `ERR_WAIT_TIMEOUT`: `waitFor` ran out of time (`cause` holds the last
 *   error the condition threw, if any).
 * - `ERR_PROC_TIMEOUT`: a tracked process did not produce the awaited
 *   output or exit in time.
 * - `ERR_PROM_FORMAT`: text that is not Prometheus' exposition format, or
 *   an ambiguous sample lookup (`prometheus.ts`).
 */
export class TestLibError extends Error {
  /** Stable machine-readable code (`ERR_…`). */
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = 'TestLibError';
  }
}

/** Result of a command that ran to completion (or was killed). */
export interface ExecResult {
  /** Exit code, or null when the process was killed by a signal. */
  code: number | null;
  /** Signal that killed the process, or null. */
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** A command in a lab host failed; `result` has its output. */
export class LabExecError extends TestLibError {
  readonly result: ExecResult;
  constructor(message: string, result: ExecResult) {
    super('ERR_LAB_EXEC', message);
    this.name = 'LabExecError';
    this.result = result;
  }
}
