/**
 * The command line of `cluevpnd`, parsed with `node:util`'s `parseArgs`.
 *
 * The daemon used `commander` (as the `cluevpn` and `bnl` commands still
 * do); loading it cost every daemon start about 14 ms of a ~200 ms module
 * graph on the benchmark machine, for six options. The behaviour is the
 * same: `-h/--help` prints the usage and `-V/--version` the version, and
 * both exit 0; an unknown option, a
 * missing or invalid value, or a stray argument prints `error: …` and the
 * usage on stderr and exits 2 (a configuration error).
 */
import { parseArgs } from 'node:util';
import { versionText } from '@cluevpn/control';

/** What the daemon was asked to do. */
export interface DaemonArgs {
  config?: string;
  net?: string;
  foreground?: boolean;
  debug?: number;
  /** Internal: the pipe on which a detached daemon reports `ready` or `error: …`. */
  readyFd?: number;
  backend?: 'native' | 'js';
}

/** Either the arguments, or what to print and the exit code. */
export type ParsedArgs = { ok: true; args: DaemonArgs } | { ok: false; exitCode: 0 | 2; stdout: string; stderr: string };

/** The usage text (`--ready-fd` is internal and not listed). */
export const USAGE = `Usage: cluevpnd [options]

The ClueVPN mesh daemon.

Options:
  -c, --config <file>  config file (default /etc/cluevpn/cluevpn.conf)
  -n, --net <netname>  network name: read /etc/cluevpn/NETNAME/cluevpn.conf
  -D, --foreground     stay in the foreground (for systemd)
  -d, --debug <level>  log level 0–7 (overrides loglevel=)
  --backend <name>     data-plane backend: native | js
  -V, --version        print the version and exit
  -h, --help           display help for command
`;

const OPTIONS = {
  config: { type: 'string', short: 'c' },
  net: { type: 'string', short: 'n' },
  foreground: { type: 'boolean', short: 'D' },
  debug: { type: 'string', short: 'd' },
  'ready-fd': { type: 'string' },
  backend: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'V' },
} as const;

function usageError(message: string): ParsedArgs {
  return { ok: false, exitCode: 2, stdout: '', stderr: `error: ${message}\n\n${USAGE}` };
}

/** Parses `argv` without the node and script paths (`process.argv.slice(2)`). */
export function parseDaemonArgs(argv: readonly string[]): ParsedArgs {
  let parsed;
  try {
    parsed = parseArgs({ args: [...argv], options: OPTIONS, strict: true, allowPositionals: true });
  } catch (err) {
    // ERR_PARSE_ARGS_UNKNOWN_OPTION, ERR_PARSE_ARGS_INVALID_OPTION_VALUE: Node's message names the option.
    if (!String((err as { code?: unknown }).code).startsWith('ERR_PARSE_ARGS_')) throw err;
    const m = (err as Error).message;
    const unknown = /^Unknown option ('[^']*')/.exec(m);
    return usageError(unknown ? `unknown option ${unknown[1]}` : m.charAt(0).toLowerCase() + m.slice(1));
  }
  const v = parsed.values;
  if (v.help === true) return { ok: false, exitCode: 0, stdout: USAGE, stderr: '' };
  if (v.version === true) return { ok: false, exitCode: 0, stdout: `${versionText('cluevpnd')}\n`, stderr: '' };
  if (parsed.positionals.length > 0) return usageError(`too many arguments: '${parsed.positionals[0]}' (cluevpnd takes options only)`);
  const args: DaemonArgs = {};
  if (v.config !== undefined) args.config = v.config;
  if (v.net !== undefined) args.net = v.net;
  if (v.foreground === true) args.foreground = true;
  if (v.debug !== undefined) {
    if (!/^[0-7]$/.test(v.debug)) return usageError(`option '-d, --debug <level>' argument '${v.debug}' is invalid: must be a number 0–7`);
    args.debug = Number(v.debug);
  }
  if (v['ready-fd'] !== undefined) {
    if (!/^[0-9]{1,9}$/.test(v['ready-fd'])) return usageError(`option '--ready-fd <fd>' argument '${v['ready-fd']}' is invalid: must be a file descriptor number`);
    args.readyFd = Number(v['ready-fd']);
  }
  if (v.backend !== undefined) {
    if (v.backend !== 'native' && v.backend !== 'js') return usageError(`option '--backend <name>' argument '${v.backend}' is invalid: allowed choices are native, js`);
    args.backend = v.backend;
  }
  return { ok: true, args };
}
