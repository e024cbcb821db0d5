/**
 * Hook commands: `upcmd`, `downcmd`, `mysubnetupcmd`, `subnetupcmd`,
 * `subnetdowncmd`.
 *
 * 1. the command text comes from the config file only (written by root);
 *    it runs as `/bin/sh -c COMMAND`
 * 2. data about nodes and subnets (which may come from the BNL) is passed
 *    ONLY as environment variables, never spliced into the command text, so
 *    a node name or subnet cannot inject shell syntax
 * 3. one hook at a time (a FIFO queue), each with a timeout: SIGTERM to the
 *    hook's process group, SIGKILL 1 s later
 * 4. the exit status is logged; output lines are logged at info (at most
 *    4 KiB per hook)
 *
 * Environment (in addition to the daemon's own):
 *
 * | variable    | value                                              |
 * |-------------|----------------------------------------------------|
 * | `TUNDEV`    | TUN device name (ClueVPN's name)                   |
 * | `INTERFACE` | the same (tinc's name)                             |
 * | `NETNAME`   | network name                                       |
 * | `NODE`      | this node's name                                   |
 * | `NODEID`    | this node's numeric id                             |
 * | `HOOK`      | which hook runs (`upcmd`, `subnetupcmd`, …)        |
 * | `SUBNET`    | subnet hooks: the subnet (CIDR)                    |
 * | `PEER`      | `subnetupcmd`/`subnetdowncmd`: the owner's name    |
 * | `PEERID`    | `subnetupcmd`/`subnetdowncmd`: the owner's id      |
 */
import type { Logger } from './logging.js';
import { childProcess } from './lazy.js';

/** The hooks a config may define. */
export type HookName = 'upcmd' | 'downcmd' | 'mysubnetupcmd' | 'subnetupcmd' | 'subnetdowncmd';

/** Variables every hook gets. */
export interface HookBaseEnv {
  TUNDEV: string;
  NETNAME: string;
  NODE: string;
  NODEID: string;
}

/** Per-run variables. */
export interface HookExtraEnv {
  SUBNET?: string;
  PEER?: string;
  PEERID?: string;
}

/** What happened to one hook run. */
export interface HookResult {
  hook: HookName;
  /** False when the hook is not configured (nothing ran). */
  ran: boolean;
  /** Exit status, `null` when killed by a signal or not run. */
  status: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  ms: number;
}

/** Runs hooks one at a time. */
export interface HookRunner {
  /**
   * Queues `hook` and resolves when it has finished (never rejects: failures
   * are logged and reported in the result). Resolves at once with
   * `ran: false` when the hook is not configured.
   */
  run(hook: HookName, extra?: HookExtraEnv, opts?: { timeoutMs?: number }): Promise<HookResult>;
  /** Resolves when the queue is empty. */
  idle(): Promise<void>;
}

/** Options of `createHookRunner`. */
export interface HookRunnerOptions {
  commands: Partial<Record<HookName, string | undefined>>;
  env: HookBaseEnv;
  logger: Logger;
  /** Default 30 s. */
  timeoutMs?: number;
  /** Shell; default `/bin/sh`. */
  shell?: string;
}

const OUTPUT_CAP = 4096;

/** Creates the hook runner (steps 1–4 above). */
export function createHookRunner(opts: HookRunnerOptions): HookRunner {
  const log = opts.logger;
  const shell = opts.shell ?? '/bin/sh';
  let tail: Promise<unknown> = Promise.resolve();

  const runOne = (hook: HookName, command: string, extra: HookExtraEnv, timeoutMs: number): Promise<HookResult> =>
    new Promise((resolveRun) => {
      const started = Date.now();
      const env: NodeJS.ProcessEnv = { ...process.env, ...opts.env, INTERFACE: opts.env.TUNDEV, HOOK: hook };
      for (const [k, v] of Object.entries(extra)) if (v !== undefined) env[k] = v;
      for (const [k, v] of Object.entries(env)) {
        // spawn would throw on a NUL byte; refuse cleanly instead
        if (typeof v === 'string' && v.includes('\0')) {
          log.error('hook not run: environment value contains NUL', { hook, reason: k });
          return resolveRun({ hook, ran: false, status: null, signal: null, timedOut: false, ms: 0 });
        }
      }
      const fields = { hook, subnet: extra.SUBNET, peer: extra.PEER };
      log.info('running hook', fields);
      const child = childProcess().spawn(shell, ['-c', command], { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
      let timedOut = false;
      let output = '';
      const collect = (d: Buffer) => {
        if (output.length < OUTPUT_CAP) output += d.toString('utf8');
      };
      child.stdout.on('data', collect);
      child.stderr.on('data', collect);
      const killGroup = (sig: NodeJS.Signals) => {
        try {
          if (child.pid !== undefined) process.kill(-child.pid, sig);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ESRCH') log.warn('cannot signal hook', { hook, err });
        }
      };
      let killTimer: NodeJS.Timeout | undefined;
      const timer = setTimeout(() => {
        timedOut = true;
        log.error('hook timed out; terminating it', { hook, ms: timeoutMs });
        killGroup('SIGTERM');
        killTimer = setTimeout(() => killGroup('SIGKILL'), 1000);
      }, timeoutMs);
      child.on('error', (err) => {
        clearTimeout(timer);
        log.error('hook could not start', { hook, err });
        resolveRun({ hook, ran: false, status: null, signal: null, timedOut: false, ms: Date.now() - started });
      });
      child.on('close', (status, signal) => {
        clearTimeout(timer);
        if (killTimer) clearTimeout(killTimer);
        const ms = Date.now() - started;
        for (const line of output.slice(0, OUTPUT_CAP).split('\n')) if (line.trim() !== '') log.info(`hook output: ${line}`, { hook });
        if (status === 0) log.info('hook finished', { ...fields, status, ms });
        else log.error('hook failed', { ...fields, status, signal, ms });
        resolveRun({ hook, ran: true, status, signal, timedOut, ms });
      });
    });

  return {
    run(hook, extra = {}, runOpts = {}) {
      const command = opts.commands[hook];
      if (command === undefined) return Promise.resolve({ hook, ran: false, status: null, signal: null, timedOut: false, ms: 0 });
      const p = tail.then(() => runOne(hook, command, extra, runOpts.timeoutMs ?? opts.timeoutMs ?? 30_000));
      tail = p;
      return p;
    },
    idle: () => tail.then(() => undefined),
  };
}
