/**
 * `cluevpn`: talks to a running `cluevpnd` over its control socket, and
 * (through `registerCaCommands`) manages the network CA.
 *
 * ```
 * cluevpn [-c FILE | -n NET] status [--json]
 * cluevpn [-c FILE | -n NET] peers [--json]
 * cluevpn [-c FILE | -n NET] bnl-status [--json]
 * cluevpn [-c FILE | -n NET] log-level N
 * cluevpn [-c FILE | -n NET] reload      (credentials, then the BNL)
 * cluevpn [-c FILE | -n NET] graph
 * ```
 *
 * Exit codes: 0 success; 1 the daemon refused or failed the request;
 * 2 usage error; 3 no daemon answers (or its config cannot be read).
 */
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { versionText } from '@cluevpn/control';
import { ControlError, request, requestReloadAndPush, type DaemonTarget } from './control/index.js';
import { pushSummary, renderGraph, renderPeers, renderStatus } from './control/render.js';
import { registerCaCommands } from './ca/index.js';
import { quietOnClosedStdout } from './stdout.js';

/** Exit codes of `cluevpn`. */
export const EXIT = { ok: 0, failed: 1, usage: 2, noDaemon: 3 } as const;

function target(program: Command): DaemonTarget {
  const o = program.opts<{ config?: string; net?: string }>();
  const t: DaemonTarget = {};
  if (o.config !== undefined) t.configFile = o.config;
  if (o.net !== undefined) t.netname = o.net;
  return t;
}

function print(text: string): void {
  process.stdout.write(text);
}

/** Builds the `cluevpn` program (exported for tests; `main` runs it). */
export function buildProgram(): Command {
  const program = new Command('cluevpn')
    .description('Inspect and control a running cluevpnd; manage the network CA.')
    .option('-c, --config <file>', 'config file of the daemon to talk to (default /etc/cluevpn/cluevpn.conf)')
    .option('-n, --net <netname>', 'network name: use /etc/cluevpn/NET/cluevpn.conf')
    .version(versionText('cluevpn'), '-V, --version', 'print the version and exit')
    .showHelpAfterError()
    .exitOverride();

  program
    .command('status')
    .description('per peer: endpoint, cipher/compression, key age, last packet, traffic, drops, BNL serial')
    .option('--json', 'print the raw status as JSON')
    .action(async (opts: { json?: boolean }) => {
      const s = await request(target(program), 'status');
      print(opts.json ? `${JSON.stringify(s, null, 2)}\n` : renderStatus(s));
    });

  program
    .command('peers')
    .description('list peers with state, endpoint and subnets')
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }) => {
      const p = await request(target(program), 'peers');
      print(opts.json ? `${JSON.stringify(p, null, 2)}\n` : renderPeers(p));
    });

  program
    .command('bnl-status')
    .description('the BNL serial in force and the serial each peer holds')
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }) => {
      const b = await request(target(program), 'bnl-status');
      if (opts.json) return print(`${JSON.stringify(b, null, 2)}\n`);
      const lines = [`serial ${b.serial}${b.signedAt ? ` signed ${b.signedAt}` : ''}, ${b.nodes} nodes, ${b.path}`];
      for (const [name, serial] of Object.entries(b.peers)) lines.push(`  ${name}: ${serial ?? '?'}${serial !== null && serial !== b.serial ? ' (differs)' : ''}`);
      print(`${lines.join('\n')}\n`);
    });

  program
    .command('log-level')
    .description('change the daemon log level at run time (0 emerg … 7 debug)')
    .argument('<level>', 'level 0–7', (v: string) => {
      if (!/^[0-7]$/.test(v)) throw new InvalidArgumentError('must be a number 0–7');
      return Number(v);
    })
    .action(async (level: number) => {
      const r = await request(target(program), 'set-log-level', { level });
      print(`log level ${r.previous} -> ${r.level}\n`);
    });

  program
    .command('reload')
    .description('re-read the certificate, key and CA bundle (refused ones are kept and reported: exit 1); reload the BNL from disk, if newer apply it and push it to every node (like SIGHUP/SIGUSR1)')
    .action(async () => {
      const r = await requestReloadAndPush(target(program));
      if (r.via === 'signal') print(`no control socket; sent SIGUSR1 to cluevpnd pid ${r.pid}\n`);
      else {
        if (r.credentials?.switched) print(`credentials reloaded: certificate ${r.credentials.fingerprint} for new control connections\n`);
        print(r.applied ? `applied BNL serial ${r.serial}, ${pushSummary(r)}\n` : `BNL on disk is not newer; serial ${r.serial} stays\n`);
      }
    });

  program
    .command('graph')
    .description('print the mesh as Graphviz DOT (nodes, links with state and traffic); e.g. cluevpn graph | dot -Tsvg > mesh.svg')
    .action(async () => {
      print(renderGraph(await request(target(program), 'status')));
    });

  return program;
}

/** Runs `cluevpn` with `argv` (process.argv form) and returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  registerCaCommands(program);
  try {
    await program.parseAsync(argv);
    return EXIT.ok;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
    if (err instanceof ControlError) {
      process.stderr.write(`cluevpn: ${err.message}\n`);
      return err.code === 'ERR_NO_DAEMON' || err.code === 'ERR_NO_CONFIG' ? EXIT.noDaemon : EXIT.failed;
    }
    process.stderr.write(`cluevpn: ${(err as Error).message ?? String(err)}\n`);
    if (process.env.CLUEVPN_DEBUG) process.stderr.write(`${(err as Error).stack}\n`);
    return EXIT.failed;
  }
}

if (process.argv[1] !== undefined && /(?:^|\/)(cluevpn|cluevpn-main\.js)$/.test(process.argv[1])) {
  quietOnClosedStdout('cluevpn');
  process.exitCode = await main(process.argv);
}
