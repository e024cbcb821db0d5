/**
 * `cluevpnd [-c FILE] [-n NETNAME] [-D] [-d LEVEL]`
 *
 * 1. parse arguments; read and check the config (a bad config prints one
 *    line naming file, line and key, and exits 2)
 * 2. without `-D`: start a detached copy of itself with `-D` and wait until
 *    it reports ready (exit 0) or failed (print its reason, exit 1). The
 *    detached daemon's stderr goes nowhere: use `logmethod=syslog` or `file`.
 *    Under systemd use `-D` (see `examples/cluevpnd@.service`).
 * 3. with `-D`: create the logger (`<N>` priorities when stderr is the
 *    journal), log the config's warnings, start the daemon, install the
 *    signal handlers; a start-up failure prints one line and exits 1
 * 4. under systemd (`systemd.ts`): READY=1 once started, RELOADING=1/READY=1
 *    around a signalled reload, STOPPING=1 when a stop begins, WATCHDOG=1
 *
 * Exit codes: 0 stopped cleanly; 1 start-up or run-time failure; 2 bad
 * arguments or config; 3 `user=` refused because that user could change a
 * file root reads or runs (`ERR_UNSAFE_PERMISSIONS`, protected-paths.ts).
 */
import { closeSync, writeSync } from 'node:fs';
import { parseDaemonArgs, type DaemonArgs } from './args.js';
import { loadConfig, type DaemonConfig } from './config.js';
import { startDaemon } from './daemon.js';
import { ConfigError, DaemonError } from './errors.js';
import { createLogger } from './logging.js';
import { installSignalHandlers } from './signals.js';
import { createNotifier, stderrIsJournal, type PeerCount } from './systemd.js';
import { childProcess } from './lazy.js';

/** Exit codes of `cluevpnd`. */
export const EXIT = { ok: 0, failed: 1, config: 2, unsafe: 3 } as const;

/** The exit status for a start-up failure: 3 for `ERR_UNSAFE_PERMISSIONS`, else 1. */
function startupExit(err: unknown): number {
  return (err as { code?: unknown }).code === 'ERR_UNSAFE_PERMISSIONS' ? EXIT.unsafe : EXIT.failed;
}

function fail(code: number, message: string): never {
  process.stderr.write(`cluevpnd: ${message}\n`);
  process.exit(code);
}

/** Step 2: detach and wait for the child's verdict on the ready pipe. */
async function detach(argv: string[], config: DaemonConfig): Promise<number> {
  if (config.logmethod === 'stderr') {
    process.stderr.write('cluevpnd: note: logmethod=stderr and no -D: the detached daemon\'s log is discarded; use -D, syslog or a file\n');
  }
  // The same entry point (bin/cluevpnd: bundle or modules) with the same
  // Node flags (its shebang's: the small young generation).
  const script = argv[1]!;
  const child = childProcess().spawn(process.execPath, [...process.execArgv, script, ...argv.slice(2), '-D', '--ready-fd', '3'], {
    detached: true,
    stdio: ['ignore', 'ignore', 'ignore', 'pipe'],
  });
  const pipe = child.stdio[3] as NodeJS.ReadableStream;
  let text = '';
  return new Promise((resolveExit) => {
    pipe.setEncoding('utf8');
    pipe.on('data', (d: string) => {
      text += d;
      if (text.includes('\n')) {
        const line = text.slice(0, text.indexOf('\n'));
        child.unref();
        (pipe as unknown as { destroy(): void }).destroy();
        if (line === 'ready') {
          process.stdout.write(`cluevpnd: started, pid ${child.pid}\n`);
          resolveExit(EXIT.ok);
        } else {
          // `error: MESSAGE`, or `error N: MESSAGE` with the exit status to use
          const m = /^error(?: (\d+))?: (.*)$/.exec(line);
          process.stderr.write(`cluevpnd: ${m ? m[2] : line}\n`);
          resolveExit(m?.[1] !== undefined ? Number(m[1]) : EXIT.failed);
        }
      }
    });
    child.on('exit', (code) => {
      if (!text.includes('\n')) {
        process.stderr.write(`cluevpnd: the daemon exited (${code}) before it was ready\n`);
        resolveExit(EXIT.failed);
      }
    });
  });
}

/** Runs `cluevpnd` with `argv` as `process.argv` (node, script, arguments). */
export async function main(argv: string[]): Promise<void> {
  const parsed = parseDaemonArgs(argv.slice(2));
  if (!parsed.ok) {
    process.stdout.write(parsed.stdout);
    process.stderr.write(parsed.stderr);
    process.exit(parsed.exitCode === 0 ? EXIT.ok : EXIT.config);
  }
  const args: DaemonArgs = parsed.args;
  // Synchronous: `fail` exits right after reporting.
  let readyFd = args.readyFd;
  const report = (line: string): void => {
    if (readyFd === undefined) return;
    try {
      writeSync(readyFd, `${line.replace(/\n/g, ' ')}\n`);
      closeSync(readyFd);
    } catch (err) {
      process.stderr.write(`cluevpnd: cannot report to the starting process: ${(err as Error).message}\n`);
    }
    readyFd = undefined;
  };

  let config: DaemonConfig;
  try {
    config = loadConfig({ configFile: args.config, netname: args.net });
  } catch (err) {
    if (err instanceof ConfigError) {
      report(`error: ${err.message}`);
      fail(EXIT.config, err.message);
    }
    throw err;
  }
  if (args.debug !== undefined) config.loglevel = args.debug;

  if (!args.foreground) process.exit(await detach(argv, config));

  let logger;
  try {
    logger = createLogger({ level: config.loglevel, method: config.logmethod, file: config.logfile, journal: config.logmethod === 'stderr' && stderrIsJournal() });
  } catch (err) {
    report(`error: ${(err as Error).message}`);
    fail(EXIT.failed, (err as Error).message);
  }
  for (const w of config.warnings) logger.warn(`${w.file}:${w.line}: ${w.key}: ${w.message}`);
  // systemd (Type=notify): READY once started, RELOADING/READY around a reload, STOPPING, WATCHDOG
  const notifier = createNotifier({ logger: logger.child('systemd') });
  const peerCount = (d: Awaited<ReturnType<typeof startDaemon>>) => (): PeerCount => {
    const peers = d.status().peers;
    return { up: peers.filter((p) => p.state === 'up').length, total: peers.length };
  };
  // Signals are handled from before the start: a SIGTERM while starting
  // waits for the start to finish and then stops cleanly (hooks, pidfile),
  // instead of killing the process half set up.
  // (Installed first: the handlers run from the event loop, after `starting` is set.)
  let starting: Promise<Awaited<ReturnType<typeof startDaemon>>> = new Promise(() => undefined);
  installSignalHandlers({
    logger,
    actions: {
      reload: async () => {
        const running = await starting;
        notifier.reloading();
        try {
          const r = await running.reloadAndPush();
          logger.notice('reload done', { serial: r.serial, count: r.pushedTo, failed: r.pushFailed, pending: r.pushPending });
        } finally {
          notifier.ready(peerCount(running));
        }
      },
      stop: async () => {
        notifier.stopping();
        const running = await starting.catch(() => undefined);
        if (running === undefined) return new Promise<void>(() => undefined); // the start-up failure path exits
        await running.stop();
        await logger.close();
      },
    },
  });
  starting = startDaemon({ config, logger, ...(args.backend ? { backend: args.backend } : {}) });
  starting.catch(() => undefined); // handled below; the signal actions only wait on it
  try {
    await starting;
  } catch (err) {
    const msg = err instanceof DaemonError || (err as { code?: string }).code ? `${(err as Error).message}` : String(err);
    logger.error('start-up failed', { err });
    const status = startupExit(err);
    report(`error ${status}: ${msg}`);
    await logger.close();
    fail(status, msg);
  }
  report('ready');
  notifier.ready(peerCount(await starting));
}
