/**
 * Signals. Handlers only set a flag and wake the event loop; the work runs
 * in a normal event-loop turn (the original did file I/O inside its signal
 * handler, fault 8).
 *
 * | signal            | effect                                                     |
 * |-------------------|------------------------------------------------------------|
 * | SIGUSR1, SIGHUP   | re-read cert, privkey, cacert (switch when they pass every |
 * |                   | check); reload the BNL from disk; if newer, apply, push it |
 * | SIGINT, SIGTERM   | graceful stop (downcmd, close device, flush state) ≤ 2 s  |
 * | second INT/TERM   | exit at once                                               |
 *
 * tinc raises the debug level on SIGINT; here SIGINT stops, because Ctrl-C
 * in a foreground (`-D`) daemon is expected to stop it. The level changes at
 * run time with `cluevpn log-level N`.
 *
 * Several reload signals while a reload runs coalesce into one more reload.
 */
import type { Logger } from './logging.js';

/** What the daemon does when signalled. */
export interface SignalActions {
  /** Reload and push. Errors are logged, never fatal. */
  reload(): Promise<void>;
  /** Graceful stop; the process should exit when it resolves. */
  stop(signal: NodeJS.Signals): Promise<void>;
}

/** Installed handlers. */
export interface SignalHandle {
  /** Removes the handlers. */
  uninstall(): void;
}

/** Options of `installSignalHandlers`. */
export interface SignalOptions {
  actions: SignalActions;
  logger: Logger;
  /** Hard limit of a graceful stop; default 2000 ms. */
  graceMs?: number;
  /** How to exit (tests); default `process.exit`. */
  exit?: (code: number) => void;
  /** Where signals come from (tests); default `process`. */
  emitter?: NodeJS.EventEmitter;
}

/** Installs the handlers of the table above. */
export function installSignalHandlers(opts: SignalOptions): SignalHandle {
  const log = opts.logger;
  const emitter = opts.emitter ?? process;
  const exit = opts.exit ?? ((code: number) => process.exit(code));
  const graceMs = opts.graceMs ?? 2000;
  const flags = { reload: false, stop: null as NodeJS.Signals | null, stopping: false, reloading: false, woken: false };

  const work = async (): Promise<void> => {
    flags.woken = false;
    if (flags.stop !== null && !flags.stopping) {
      flags.stopping = true;
      const sig = flags.stop;
      log.notice('stopping', { signal: sig });
      const hard = setTimeout(() => {
        log.error('graceful stop took too long; exiting now', { ms: graceMs });
        exit(1);
      }, graceMs);
      hard.unref();
      try {
        await opts.actions.stop(sig);
        clearTimeout(hard);
        exit(0);
      } catch (err) {
        clearTimeout(hard);
        log.error('stop failed', { err });
        exit(1);
      }
      return;
    }
    if (flags.stopping) return;
    if (flags.reload && !flags.reloading) {
      flags.reload = false;
      flags.reloading = true;
      try {
        await opts.actions.reload();
      } catch (err) {
        log.error('reload failed', { err });
      } finally {
        flags.reloading = false;
      }
      if (flags.reload || flags.stop !== null) wake();
    }
  };
  const wake = (): void => {
    if (flags.woken) return;
    flags.woken = true;
    setImmediate(() => void work());
  };

  const onReload = (sig: NodeJS.Signals): void => {
    flags.reload = true;
    log.info('reload requested', { signal: sig });
    wake();
  };
  const onStop = (sig: NodeJS.Signals): void => {
    if (flags.stop !== null) {
      log.warn('second stop signal; exiting at once', { signal: sig });
      exit(1);
      return;
    }
    flags.stop = sig;
    wake();
  };
  const table: [NodeJS.Signals, (s: NodeJS.Signals) => void][] = [
    ['SIGUSR1', onReload],
    ['SIGHUP', onReload],
    ['SIGINT', onStop],
    ['SIGTERM', onStop],
  ];
  for (const [sig, fn] of table) emitter.on(sig, fn);
  return {
    uninstall: () => {
      for (const [sig, fn] of table) emitter.off(sig, fn);
    },
  };
}
