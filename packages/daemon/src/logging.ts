/**
 * Logging: syslog severities 0–7 like the original, to stderr, syslog or a
 * file; one line per record with structured `key=value` fields.
 *
 * 1. guard: `enabled(level)` is one comparison, so hot paths build no
 *    arguments when the level is off (`if (log.enabled(7)) log.debug(…)`)
 * 2. format: `scope: message key=value …`; values quoted when needed,
 *    newlines escaped (a BNL name cannot forge a log line)
 * 3. redact: a field whose name looks secret (`key`, `secret`, `priv…`,
 *    `password`, `token`, `psk`) is printed as `[redacted]`; byte buffers are
 *    never printed, only their length
 * 4. sink: stderr and file get an ISO timestamp and the level name; syslog
 *    gets `<PRI>` (facility daemon) through a long-lived
 *    `logger --prio-prefix -t cluevpnd` child, because Node has no unix
 *    datagram sockets to talk to `/dev/log` itself; stderr connected to the
 *    journal (`journal: true`, see `systemd.ts` `stderrIsJournal`) gets
 *    `<LEVEL>` and no timestamp, which journald turns into the record's
 *    priority (`journalctl -p warning`) and time
 *
 * Children (`log.child('bnl')` → `cluevpnd:bnl`) share the root's level, so
 * `setLevel` at run time applies everywhere at once.
 */
import type { ChildProcess } from 'node:child_process';
import { closeSync, openSync, writeSync } from 'node:fs';
import { DaemonError } from './errors.js';
import type { LogMethod } from './config.js';
import { childProcess } from './lazy.js';

/** Syslog severities, the numeric log levels of `loglevel=` and `-d`. */
export const LogLevel = {
  emerg: 0,
  alert: 1,
  crit: 2,
  err: 3,
  warning: 4,
  notice: 5,
  info: 6,
  debug: 7,
} as const;

/** A level number 0–7. */
export type LogLevelNumber = (typeof LogLevel)[keyof typeof LogLevel];

/** Level names for log lines, indexed by level number. */
export const LOG_LEVEL_NAMES = ['emerg', 'alert', 'crit', 'err', 'warning', 'notice', 'info', 'debug'] as const;

/**
 * The fixed field vocabulary. Components may only pass these names (the type
 * says so); a name outside it still prints, but review should catch it.
 */
export type LogFieldName =
  | 'peer' | 'peerid' | 'node' | 'id' | 'endpoint' | 'serial' | 'err' | 'code' | 'reason'
  | 'subnet' | 'subnets' | 'device' | 'port' | 'path' | 'cmd' | 'hook' | 'status' | 'signal'
  | 'ms' | 'count' | 'pid' | 'level' | 'cipher' | 'compression' | 'epoch' | 'index' | 'version'
  | 'user' | 'group' | 'request' | 'added' | 'removed' | 'changed' | 'nodes' | 'targets' | 'failed' | 'pending' | 'loaded'
  | 'fingerprint' | 'pin' | 'relay' | 'target' | 'listms';

/** Structured fields of one record. */
export type LogFields = { [K in LogFieldName]?: unknown };

/**
 * What every component receives (structurally; packages declare the same
 * shape themselves rather than import the daemon).
 */
export interface Logger {
  error(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  notice(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  debug(msg: string, fields?: LogFields): void;
  /** Any severity 0–7. */
  log(level: number, msg: string, fields?: LogFields): void;
  /** True when a record at `level` would be written: guard hot-path logging with it. */
  enabled(level: number): boolean;
  /** A logger scoped `parent:scope`, sharing the parent's level and sink. */
  child(scope: string): Logger;
}

/** The root logger: a `Logger` that also owns the level and the sink. */
export interface RootLogger extends Logger {
  /** Current level 0–7. */
  readonly level: number;
  /** Changes the level of this logger and every child at once. Throws `RangeError` outside 0–7. */
  setLevel(level: number): void;
  /** Re-opens the log file (after rotation); no-op for other methods. */
  reopen(): void;
  /** Flushes and releases the sink (ends the `logger` child, closes the file). */
  close(): Promise<void>;
}

/** Options of `createLogger`. */
export interface LoggerOptions {
  /** Initial level 0–7. */
  level: number;
  method: LogMethod;
  /** Required for `method: 'file'`. */
  file?: string | undefined;
  /** Root scope; default `cluevpnd`. Also the syslog tag. */
  scope?: string;
  /** For `stderr`: where to write instead of `process.stderr` (tests). */
  stream?: { write(chunk: string): unknown };
  /** For `stderr`: it is the journal's stream, so prefix `<LEVEL>` instead of a timestamp. */
  journal?: boolean;
  /** For `syslog`: a unix datagram socket instead of `/dev/log` (tests). */
  syslogSocket?: string;
  /** Clock for timestamps (tests). */
  now?: () => Date;
}

const SECRET_FIELD = /key|secret|priv|passw|token|psk/i;
const SYSLOG_FACILITY_DAEMON = 3;

/** Formats one field value: quoted when it holds spaces, quotes, `=` or control characters. */
function formatValue(name: string, value: unknown): string {
  if (SECRET_FIELD.test(name)) return '[redacted]';
  let s: string;
  if (value instanceof Uint8Array) return `<${value.byteLength} bytes>`;
  if (value instanceof Error) {
    const code = (value as { code?: unknown }).code;
    s = typeof code === 'string' ? `${code}: ${value.message}` : value.message;
  } else if (typeof value === 'string') s = value;
  else if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  else if (value === null || value === undefined) return '-';
  else if (Array.isArray(value)) s = value.map((v) => (typeof v === 'object' && v !== null ? JSON.stringify(v, redactingReplacer) : String(v))).join(',');
  else s = JSON.stringify(value, redactingReplacer) ?? String(value);
  return /^[^\s"=\\\x00-\x1f\x7f]+$/.test(s) && s.length > 0 ? s : JSON.stringify(s);
}

function redactingReplacer(this: unknown, name: string, value: unknown): unknown {
  if (name !== '' && SECRET_FIELD.test(name)) return '[redacted]';
  if (value instanceof Uint8Array) return `<${value.byteLength} bytes>`;
  if (value !== null && typeof value === 'object' && (value as { type?: unknown }).type === 'Buffer') return '<bytes>';
  if (typeof value === 'bigint') return value.toString();
  return value;
}

/** Renders `scope: msg k=v …` (no timestamp, no level). Exported for tests and the control socket. */
export function formatRecord(scope: string, msg: string, fields?: LogFields): string {
  // eslint-disable-next-line no-control-regex
  let line = `${scope}: ${msg.replace(/[\x00-\x1f\x7f]/g, (c) => JSON.stringify(c).slice(1, -1))}`;
  if (fields !== undefined) {
    for (const name of Object.keys(fields)) {
      const value = (fields as Record<string, unknown>)[name];
      if (value === undefined) continue;
      line += ` ${name}=${formatValue(name, value)}`;
    }
  }
  return line;
}

/**
 * `d.toISOString()`, written from the UTC fields. V8's `toISOString` works
 * out the local time zone first (ICU's time-zone data: 640 KiB of the node
 * binary's pages stay resident after the first call, measured with
 * `scripts/bench/memory-small`; `getUTC*` touch none of it). Years outside
 * 0–9999 and invalid dates go to `toISOString` itself (its ±YYYYYY form, its
 * RangeError).
 */
export function isoTimestamp(d: Date): string {
  const y = d.getUTCFullYear();
  if (!(y >= 0 && y <= 9999)) return d.toISOString();
  const p2 = (n: number): string => (n < 10 ? `0${n}` : `${n}`);
  const ms = d.getUTCMilliseconds();
  return `${String(y).padStart(4, '0')}-${p2(d.getUTCMonth() + 1)}-${p2(d.getUTCDate())}T${p2(d.getUTCHours())}:${p2(d.getUTCMinutes())}:${p2(d.getUTCSeconds())}.${ms < 10 ? `00${ms}` : ms < 100 ? `0${ms}` : ms}Z`;
}

interface Sink {
  write(level: number, line: string): void;
  reopen(): void;
  close(): Promise<void>;
}

function stderrSink(stream: { write(chunk: string): unknown }, now: () => Date): Sink {
  return {
    write: (level, line) => void stream.write(`${isoTimestamp(now())} ${LOG_LEVEL_NAMES[level]} ${line}\n`),
    reopen: () => undefined,
    close: async () => undefined,
  };
}

/** stderr read by journald: `<N>` is the priority (SyslogLevelPrefix=, on by default); journald adds the time. */
function journalSink(stream: { write(chunk: string): unknown }): Sink {
  return {
    write: (level, line) => void stream.write(`<${level}>${line}\n`),
    reopen: () => undefined,
    close: async () => undefined,
  };
}

function fileSink(path: string, now: () => Date): Sink {
  const open = (): number => {
    try {
      return openSync(path, 'a', 0o640);
    } catch (err) {
      throw new DaemonError('ERR_LOG_SETUP', `cannot open log file ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, { cause: err });
    }
  };
  let fd = open();
  return {
    // Synchronous appends: ordered, and nothing is lost when the process dies.
    write: (level, line) => {
      writeSync(fd, `${isoTimestamp(now())} ${LOG_LEVEL_NAMES[level]} ${line}\n`);
    },
    reopen: () => {
      const next = open();
      closeSync(fd);
      fd = next;
    },
    close: async () => closeSync(fd),
  };
}

function syslogSink(tag: string, socket: string | undefined): Sink {
  const args = ['--prio-prefix', '-t', tag];
  if (socket !== undefined) args.push('-u', socket, '--socket-errors=on');
  let child: ChildProcess | undefined;
  let lastSpawn = 0;
  let closing = false;
  const start = (): ChildProcess | undefined => {
    // At most one respawn per second if the logger child dies.
    const t = Date.now();
    if (t - lastSpawn < 1000) return undefined;
    lastSpawn = t;
    const c = childProcess().spawn('logger', args, { stdio: ['pipe', 'ignore', 'inherit'] });
    c.on('error', (err) => {
      process.stderr.write(`cluevpnd: syslog: cannot run logger: ${err.message}\n`);
      if (child === c) child = undefined;
    });
    c.on('exit', (code, signal) => {
      if (!closing) process.stderr.write(`cluevpnd: syslog: logger exited (${signal ?? code}); restarting on the next record\n`);
      if (child === c) child = undefined;
    });
    c.stdin!.on('error', (err) => {
      if (!closing) process.stderr.write(`cluevpnd: syslog: write to logger failed: ${err.message}\n`);
    });
    // The logger child must not keep the daemon's event loop alive.
    c.unref();
    (c.stdin as unknown as { unref?: () => void }).unref?.();
    return c;
  };
  child = start();
  return {
    write: (level, line) => {
      child ??= start();
      if (child === undefined) {
        process.stderr.write(`${LOG_LEVEL_NAMES[level]} ${line}\n`);
        return;
      }
      child.stdin!.write(`<${SYSLOG_FACILITY_DAEMON * 8 + level}>${line}\n`);
    },
    reopen: () => undefined,
    close: () =>
      new Promise<void>((resolveClose) => {
        closing = true;
        const c = child;
        child = undefined;
        if (c === undefined || c.exitCode !== null) return resolveClose();
        const timer = setTimeout(() => {
          c.kill('SIGKILL');
          resolveClose();
        }, 1000);
        c.once('exit', () => {
          clearTimeout(timer);
          resolveClose();
        });
        c.stdin!.end();
      }),
  };
}

class ScopedLogger implements Logger {
  constructor(
    protected readonly state: { level: number; sink: Sink },
    protected readonly scope: string,
  ) {}
  log(level: number, msg: string, fields?: LogFields): void {
    if (level > this.state.level) return;
    this.state.sink.write(level, formatRecord(this.scope, msg, fields));
  }
  error(msg: string, fields?: LogFields): void {
    this.log(3, msg, fields);
  }
  warn(msg: string, fields?: LogFields): void {
    this.log(4, msg, fields);
  }
  notice(msg: string, fields?: LogFields): void {
    this.log(5, msg, fields);
  }
  info(msg: string, fields?: LogFields): void {
    this.log(6, msg, fields);
  }
  debug(msg: string, fields?: LogFields): void {
    this.log(7, msg, fields);
  }
  enabled(level: number): boolean {
    return level <= this.state.level;
  }
  child(scope: string): Logger {
    return new ScopedLogger(this.state, `${this.scope}:${scope}`);
  }
}

class Root extends ScopedLogger implements RootLogger {
  get level(): number {
    return this.state.level;
  }
  setLevel(level: number): void {
    if (!Number.isInteger(level) || level < 0 || level > 7) throw new RangeError(`log level ${level} is not 0–7`);
    this.state.level = level;
  }
  reopen(): void {
    this.state.sink.reopen();
  }
  close(): Promise<void> {
    return this.state.sink.close();
  }
}

/**
 * Creates the root logger. Throws `DaemonError` `ERR_LOG_SETUP` when the log
 * file cannot be opened; `RangeError` for a level outside 0–7.
 */
export function createLogger(opts: LoggerOptions): RootLogger {
  const now = opts.now ?? (() => new Date());
  const scope = opts.scope ?? 'cluevpnd';
  let sink: Sink;
  if (opts.method === 'file') {
    if (opts.file === undefined) throw new DaemonError('ERR_LOG_SETUP', 'logmethod=file needs logfile');
    sink = fileSink(opts.file, now);
  } else if (opts.method === 'syslog') sink = syslogSink(scope, opts.syslogSocket);
  else if (opts.journal === true) sink = journalSink(opts.stream ?? process.stderr);
  else sink = stderrSink(opts.stream ?? process.stderr, now);
  const root = new Root({ level: 5, sink }, scope);
  root.setLevel(opts.level);
  return root;
}

/** A logger that drops everything (for tests and library defaults). */
export const silentLogger: Logger = {
  error: () => undefined,
  warn: () => undefined,
  notice: () => undefined,
  info: () => undefined,
  debug: () => undefined,
  log: () => undefined,
  enabled: () => false,
  child: () => silentLogger,
};
