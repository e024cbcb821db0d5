/**
 * Process management for end-to-end tests: every process started here is
 * tracked and killed (by pid) when the test process exits, even if the test
 * forgot to, so no daemon outlives its test.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { TestLibError, type ExecResult } from './errors.js';

/** Output kept per stream; older output is dropped beyond this. */
const OUTPUT_CAP = 1 << 20;

/** Options for {@link spawnTracked} and {@link runCommand}. */
export interface SpawnTrackedOptions {
  /** Environment (default: this process's). */
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Name used in error messages (default: the command). */
  label?: string;
  /** Written to stdin, which is then closed. Without it stdin is /dev/null. */
  input?: string | Buffer;
}

/** A child process whose output is collected and whose life is tracked. */
export interface TrackedProcess {
  readonly child: ChildProcess;
  /** The pid (spawn failures reject `exited` instead). */
  readonly pid: number;
  readonly label: string;
  /** stdout so far (at most the last 1 MiB). */
  stdout(): string;
  /** stderr so far (at most the last 1 MiB). */
  stderr(): string;
  /** True until the process has exited. */
  running(): boolean;
  /** Settles once the process has exited; rejects only if it could not be started. */
  readonly exited: Promise<ExecResult>;
  /**
   * Resolves with the first match of `re` in the collected output (stdout,
   * stderr or both; default both). Rejects with `ERR_PROC_TIMEOUT` after
   * `timeoutMs` (default 20 000) or when the process exits without a match.
   */
  waitForOutput(re: RegExp, opts?: { timeoutMs?: number; stream?: 'stdout' | 'stderr' | 'both' }): Promise<RegExpMatchArray>;
  /**
   * Sends `signal` (default SIGTERM), then SIGKILL after `graceMs`
   * (default 2000) if still running. Resolves with the exit result.
   */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<ExecResult>;
}

const live = new Set<TrackedProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', killAllTrackedSync);
}

/** Kills every tracked process that is still running, with SIGKILL, synchronously. */
export function killAllTrackedSync(): void {
  for (const p of live) {
    if (!p.running()) continue;
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch (err) {
      // ESRCH: it exited between the check and the kill; nothing to do.
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
    }
  }
  live.clear();
}

/**
 * Starts `cmd args` and tracks it until it exits; killed with SIGKILL when
 * this process exits. The caller should still `stop()` it when done.
 */
export function spawnTracked(cmd: string, args: readonly string[] = [], opts: SpawnTrackedOptions = {}): TrackedProcess {
  installExitHook();
  const label = opts.label ?? cmd;
  const spawnOpts: SpawnOptions = {
    env: opts.env ?? process.env,
    stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
  };
  if (opts.cwd !== undefined) spawnOpts.cwd = opts.cwd;
  const child = spawn(cmd, args, spawnOpts);
  let out = '';
  let err = '';
  let isRunning = true;
  const waiters = new Set<() => void>();
  const notify = (): void => {
    for (const w of waiters) w();
  };
  child.stdout?.setEncoding('utf8').on('data', (d: string) => {
    out += d;
    if (out.length > OUTPUT_CAP) out = out.slice(-OUTPUT_CAP);
    notify();
  });
  child.stderr?.setEncoding('utf8').on('data', (d: string) => {
    err += d;
    if (err.length > OUTPUT_CAP) err = err.slice(-OUTPUT_CAP);
    notify();
  });
  if (opts.input !== undefined && child.stdin) {
    child.stdin.on('error', (e: NodeJS.ErrnoException) => {
      // The child may exit before reading its input; that is its business.
      if (e.code !== 'EPIPE') err += `\n[stdin error: ${e.message}]`;
    });
    child.stdin.end(opts.input);
  }
  const exited = new Promise<ExecResult>((resolve, reject) => {
    child.once('error', (e) => {
      isRunning = false;
      live.delete(proc);
      notify();
      reject(new TestLibError('ERR_PROC_SPAWN', `${label}: could not start ${cmd}: ${e.message}`, { cause: e }));
    });
    child.once('close', (code, signal) => {
      isRunning = false;
      live.delete(proc);
      notify();
      resolve({ code, signal, stdout: out, stderr: err });
    });
  });
  // Avoid an unhandled rejection when nobody awaits a failed spawn.
  exited.catch(() => undefined);

  const proc: TrackedProcess = {
    child,
    pid: child.pid ?? -1,
    label,
    stdout: () => out,
    stderr: () => err,
    running: () => isRunning,
    exited,
    waitForOutput(re, wopts = {}) {
      const timeoutMs = wopts.timeoutMs ?? 20_000;
      const stream = wopts.stream ?? 'both';
      const text = (): string => (stream === 'stdout' ? out : stream === 'stderr' ? err : `${out}\n${err}`);
      return new Promise<RegExpMatchArray>((resolve, reject) => {
        const check = (): void => {
          const m = text().match(re);
          if (m) {
            done();
            resolve(m);
          } else if (!isRunning) {
            done();
            reject(new TestLibError('ERR_PROC_TIMEOUT', `${label} exited without printing ${re}; stderr: ${err.slice(-2000)}`));
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(new TestLibError('ERR_PROC_TIMEOUT', `${label} did not print ${re} within ${timeoutMs} ms; stderr: ${err.slice(-2000)}`));
        }, timeoutMs);
        const done = (): void => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
    async stop(signal = 'SIGTERM', graceMs = 2000) {
      if (isRunning) {
        child.kill(signal);
        const timer = setTimeout(() => {
          if (isRunning) child.kill('SIGKILL');
        }, graceMs);
        try {
          return await exited;
        } finally {
          clearTimeout(timer);
        }
      }
      return exited;
    },
  };
  if (child.pid !== undefined) live.add(proc);
  return proc;
}

/** Options for {@link runCommand}. */
export interface RunOptions extends SpawnTrackedOptions {
  /** Kill the command (SIGKILL) after this long (default 30000 ms). */
  timeoutMs?: number;
}

/**
 * Runs a command to completion and resolves with its result, whatever the
 * exit code (the caller checks `code`). Killed after `timeoutMs`, in which
 * case `signal` is `SIGKILL`.
 */
export async function runCommand(cmd: string, args: readonly string[] = [], opts: RunOptions = {}): Promise<ExecResult> {
  const p = spawnTracked(cmd, args, opts);
  const timer = setTimeout(() => {
    if (p.running()) p.child.kill('SIGKILL');
  }, opts.timeoutMs ?? 30_000);
  try {
    return await p.exited;
  } finally {
    clearTimeout(timer);
  }
}
