/**
 * The `bnl` admin command: edit a draft node list, sign it, verify it,
 * compare lists and ask the local daemon to push the signed list.
 *
 * Files (paths.ts): the signed list, where cluevpnd reads it
 * (`/var/lib/cluevpn/NET/bnl` with `-n NET`, `--file PATH`) and its draft,
 * with the config (`/etc/cluevpn/NET/bnl.draft`, `<file>.draft`, `--draft PATH`). Edits go to
 * the draft (created from the signed list when there is none); `sign` turns
 * the draft into the next signed list. Every edit validates the whole list
 * and writes nothing when it is invalid.
 */
import { Command, CommanderError } from 'commander';
import {
  BnlError,
  compareBnl,
  createTrust,
  createUnsignedBnl,
  diffBnl,
  generateSigningKey,
  signBnl,
  verifyBnl,
  formatRule,
  ruleFromSpec,
  sameRule,
  type Bnl,
  type BnlRule,
  type BnlNode,
  type SignedBnl,
} from '@cluevpn/bnl';
import { versionText } from '@cluevpn/control';
import { ControlError, requestReloadAndPush } from '../control/client.js';
import { pushSummary } from '../control/render.js';
import { parseNodeCsv } from './csv.js';
import { applyKeyValues, cidrArg, parseKeyValues, type KeyValue } from './edit.js';
import { BnlCliError, BnlExit, EXIT_CODES_HELP } from './exit-codes.js';
import { exists, listError, loadDraft, loadList, loadPrivateKey, loadPublicKey, readBytes, saveDraft, writeFileAtomic } from './files.js';
import { ensureSignedDir, resolvePaths, type GlobalOptions } from './paths.js';
import { listJson, renderDiff, renderList } from './render.js';

/** Where the command writes and which environment it reads (tests pass their own). */
export interface BnlIo {
  out(text: string): void;
  err(text: string): void;
  env: NodeJS.ProcessEnv;
  now(): number;
}

const defaultIo: BnlIo = {
  out: (t) => process.stdout.write(t),
  err: (t) => process.stderr.write(t),
  env: process.env,
  now: () => Date.now(),
};

/**
 * Auto-assigned id: one above the highest id in the draft and in the signed
 * list (so a node removed in the draft does not hand its id to a new node
 * before the removal is even signed).
 */
function nextId(nodes: readonly BnlNode[], reserved: readonly number[] = []): number {
  const max = Math.max(nodes.reduce((m, n) => Math.max(m, n.id), 0), ...reserved);
  if (max < 0xffffffff) return max + 1;
  const used = new Set(nodes.map((n) => n.id));
  for (let i = 1; ; i++) if (!used.has(i) && !reserved.includes(i)) return i;
}

function findNode(bnl: Bnl, name: string): number {
  const i = bnl.nodes.findIndex((n) => n.name.toLowerCase() === name.toLowerCase());
  if (i === -1) throw new BnlCliError(BnlExit.invalid, `no node "${name}" in the list`, 'bnl print shows the nodes');
  return i;
}

function signedIds(path: string): number[] {
  return exists(path) ? loadList(path).bnl.nodes.map((n) => n.id) : [];
}

function addNode(bnl: Bnl, name: string, kvs: readonly KeyValue[], reserved: readonly number[], replace = false): void {
  const existing = bnl.nodes.findIndex((n) => n.name.toLowerCase() === name.toLowerCase());
  if (existing !== -1 && !replace) throw new BnlCliError(BnlExit.invalid, `node "${name}" is already in the list`, `use bnl modify ${name} key=value to change it`);
  const fresh: BnlNode = { name, id: existing !== -1 ? bnl.nodes[existing].id : nextId(bnl.nodes, reserved), endpoints: [], prefer: 'ipv4', subnets: [] };
  const node = applyKeyValues(fresh, kvs, 'add');
  if (!kvs.some((kv) => kv.key === 'prefer') && node.endpoints.length > 0 && node.endpoints.every((e) => e.host.includes(':'))) node.prefer = 'ipv6';
  if (existing !== -1) bnl.nodes[existing] = node;
  else bnl.nodes.push(node);
}

interface RuleOptions {
  from?: string;
  to?: string;
  proto?: string;
  port?: string;
}

/** A rule from `--from --to [--proto] [--port]` (exit 2 naming the option when malformed). */
function ruleArg(o: RuleOptions): BnlRule {
  if (o.from === undefined || o.to === undefined) throw new BnlCliError(BnlExit.usage, 'a rule needs --from and --to', 'e.g. bnl rule add --from tag:office --to tag:web --proto tcp --port 80');
  try {
    return ruleFromSpec({ from: o.from, to: o.to, ...(o.proto !== undefined ? { proto: o.proto } : {}), ...(o.port !== undefined ? { ports: o.port } : {}) });
  } catch (err) {
    throw new BnlCliError(BnlExit.usage, (err as Error).message, 'bnl rule add --help shows the syntax', { cause: err });
  }
}

/** The numbered rule lines of `bnl rule list` (and `bnl print`). */
export function ruleLines(rules: readonly BnlRule[]): string[] {
  return rules.map((r, i) => `${String(i + 1).padStart(3)}  ${formatRule(r)}`);
}

/** Builds the commander program; actions write through `io`. */
export function buildBnlProgram(io: BnlIo): Command {
  const program = new Command('bnl');
  program
    .description('Edit, sign, verify and distribute the ClueVPN signed node list (BNL).')
    .option('--file <path>', 'signed list (default /var/lib/cluevpn/cluevpn/bnl, or /var/lib/cluevpn/NET/bnl with -n)')
    .option('--draft <path>', 'draft being edited (default: /etc/cluevpn/[NET/]bnl.draft, or <file>.draft with --file)')
    .option('-n, --net <name>', 'network name: the list in /var/lib/cluevpn/NAME/, the draft in /etc/cluevpn/NAME/')
    .option('--debug', 'print stack traces of errors')
    .version(versionText('bnl'), '-V, --version', 'print the version and exit')
    .addHelpText('after', `\nFiles: edits go to the draft; "bnl sign" writes the signed list that cluevpnd reads.\nDefault signed list: /var/lib/cluevpn/NET/bnl (-n NET), its draft /etc/cluevpn/NET/bnl.draft;\n$CLUEVPN_STATEDIR replaces /var/lib/cluevpn, $CLUEVPN_CONFDIR /etc/cluevpn.\n\n${EXIT_CODES_HELP}\n`)
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s), outputError: () => undefined })
    .showSuggestionAfterError(true);

  const paths = (cmd: Command) => resolvePaths(cmd.optsWithGlobals<GlobalOptions>(), io.env);

  program
    .command('keygen')
    .description('make an Ed25519 signing key pair: PREFIX.key (mode 0600, secret) and PREFIX.pub')
    .requiredOption('--out <prefix>', 'file name prefix')
    .option('--force', 'overwrite existing files')
    .action(async (opts: { out: string; force?: boolean }) => {
      const keyPath = `${opts.out}.key`;
      const pubPath = `${opts.out}.pub`;
      for (const p of [keyPath, pubPath]) {
        if (!opts.force && exists(p)) throw new BnlCliError(BnlExit.file, `${p} already exists`, 'choose another --out prefix, or add --force to replace the key');
      }
      const pair = generateSigningKey();
      await writeFileAtomic(keyPath, pair.privateKeyPem, 0o600);
      await writeFileAtomic(pubPath, `${pair.publicKey}\n`, 0o644);
      io.out(`wrote ${keyPath} (private, mode 0600) and ${pubPath}\npublic key ${pair.publicKey}\n`);
    });

  program
    .command('new')
    .description('start a new, empty draft')
    .requiredOption('--network <name>', 'network name')
    .option('--force', 'replace an existing draft')
    .action(async (opts: { network: string; force?: boolean }, cmd: Command) => {
      const p = paths(cmd);
      if (!opts.force && exists(p.draft)) throw new BnlCliError(BnlExit.file, `a draft already exists at ${p.draft}`, 'edit it, or add --force to start over');
      const prev = exists(p.signed) ? loadList(p.signed) : null;
      await saveDraft(p, { network: opts.network, serial: prev?.bnl.serial ?? 0, timestamp: 0, nodes: [] });
      io.out(`new draft for network ${opts.network}: ${p.draft}\n`);
    });

  program
    .command('add')
    .description('add a node: bnl add NAME ipv4=… ipv6=… port=… subnet=CIDR [subnet=…] [fingerprint=…] [relay=yes] [tag=…] [mac=…] [id=N] [prefer=ipv6]')
    .argument('<name>', 'node name (its certificate CN)')
    .argument('[settings...]', 'key=value settings')
    .action(async (name: string, settings: string[], _o: unknown, cmd: Command) => {
      const p = paths(cmd);
      const bnl = loadDraft(p);
      addNode(bnl, name, parseKeyValues(settings, false), signedIds(p.signed));
      await saveDraft(p, bnl);
      io.out(`added ${name}\n`);
    });

  program
    .command('modify')
    .description('change a node: bnl modify NAME key=value… (subnet=/tag=/mac= replace the whole list; empty value removes)')
    .argument('<name>')
    .argument('<settings...>')
    .action(async (name: string, settings: string[], _o: unknown, cmd: Command) => {
      const p = paths(cmd);
      const bnl = loadDraft(p);
      const i = findNode(bnl, name);
      bnl.nodes[i] = applyKeyValues(bnl.nodes[i], parseKeyValues(settings, true), 'modify');
      await saveDraft(p, bnl);
      io.out(`modified ${name}\n`);
    });

  program
    .command('remove')
    .description('remove (revoke) a node')
    .argument('<name>')
    .action(async (name: string, _o: unknown, cmd: Command) => {
      const p = paths(cmd);
      const bnl = loadDraft(p);
      bnl.nodes.splice(findNode(bnl, name), 1);
      await saveDraft(p, bnl);
      io.out(`removed ${name}\n`);
    });

  program
    .command('addsubnet')
    .description('add subnets to a node')
    .argument('<name>')
    .argument('<cidr...>')
    .action(async (name: string, cidrs: string[], _o: unknown, cmd: Command) => {
      const p = paths(cmd);
      const bnl = loadDraft(p);
      const n = bnl.nodes[findNode(bnl, name)];
      for (const c of cidrs.map((x) => cidrArg(name, x))) {
        if (n.subnets.includes(c)) throw new BnlCliError(BnlExit.invalid, `node "${name}" already has subnet ${c}`, 'nothing to add');
        n.subnets.push(c);
      }
      await saveDraft(p, bnl);
      io.out(`${name}: added ${cidrs.length} subnet(s)\n`);
    });

  program
    .command('delsubnet')
    .description('remove subnets from a node')
    .argument('<name>')
    .argument('<cidr...>')
    .action(async (name: string, cidrs: string[], _o: unknown, cmd: Command) => {
      const p = paths(cmd);
      const bnl = loadDraft(p);
      const n = bnl.nodes[findNode(bnl, name)];
      for (const c of cidrs.map((x) => cidrArg(name, x))) {
        const i = n.subnets.indexOf(c);
        if (i === -1) throw new BnlCliError(BnlExit.invalid, `node "${name}" has no subnet ${c}`, `its subnets are: ${n.subnets.join(' ') || '(none)'}`);
        n.subnets.splice(i, 1);
      }
      await saveDraft(p, bnl);
      io.out(`${name}: removed ${cidrs.length} subnet(s)\n`);
    });

  const rule = program
    .command('rule')
    .description('access rules: what may reach whom (no rules = everything allowed; once one exists, only what a rule allows)');
  const ruleOpts = (c: Command): Command =>
    c
      .option('--from <who>', 'source: any, tag:TAG or node:NAME')
      .option('--to <who>', 'destination: any, tag:TAG or node:NAME')
      .option('--proto <p>', 'tcp, udp, icmp or any (default any)')
      .option('--port <ports>', 'destination ports, tcp/udp only: 80, 8000-8080 or a comma-separated list (default all)');
  ruleOpts(rule.command('add').description('allow traffic: bnl rule add --from tag:office --to tag:web --proto tcp --port 80')).action(
    async (opts: RuleOptions, cmd: Command) => {
      const p = paths(cmd);
      const r = ruleArg(opts);
      const bnl = loadDraft(p);
      const rules = bnl.rules ?? [];
      if (rules.some((x) => sameRule(x, r))) throw new BnlCliError(BnlExit.invalid, `the list already has the rule ${formatRule(r)}`, 'bnl rule list shows the rules');
      bnl.rules = [...rules, r];
      await saveDraft(p, bnl);
      io.out(`added rule ${formatRule(r)}\n`);
    },
  );
  ruleOpts(
    rule
      .command('remove')
      .description('remove a rule by its number in bnl rule list, or by --from/--to/--proto/--port')
      .argument('[number]', 'the rule number shown by bnl rule list'),
  ).action(async (num: string | undefined, opts: RuleOptions, cmd: Command) => {
    const p = paths(cmd);
    const bnl = loadDraft(p);
    const rules = bnl.rules ?? [];
    let i: number;
    if (num !== undefined) {
      if (!/^[1-9][0-9]*$/.test(num)) throw new BnlCliError(BnlExit.usage, `rule number ${JSON.stringify(num)} is not a positive integer`, 'bnl rule list shows the numbers');
      i = Number(num) - 1;
      if (i >= rules.length) throw new BnlCliError(BnlExit.invalid, `there is no rule ${num} (the list has ${rules.length})`, 'bnl rule list shows the numbers');
    } else {
      const r = ruleArg(opts);
      i = rules.findIndex((x) => sameRule(x, r));
      if (i === -1) throw new BnlCliError(BnlExit.invalid, `no rule ${formatRule(r)} in the list`, 'bnl rule list shows the rules');
    }
    const [gone] = rules.splice(i, 1);
    bnl.rules = rules;
    await saveDraft(p, bnl);
    io.out(`removed rule ${formatRule(gone)}${rules.length === 0 ? ' (no rules left: everything is allowed)' : ''}\n`);
  });
  rule
    .command('list')
    .description('show the rules, numbered (default: the draft if there is one, else the signed list)')
    .argument('[file]', 'list or draft file')
    .option('--json', 'machine-readable output')
    .action((file: string | undefined, opts: { json?: boolean }, cmd: Command) => {
      const p = paths(cmd);
      const list = loadList(file ?? (exists(p.draft) ? p.draft : p.signed));
      const rules = list.bnl.rules ?? [];
      if (opts.json) io.out(`${JSON.stringify(rules, null, 2)}\n`);
      else if (rules.length === 0) io.out('no rules: everything is allowed\n');
      else io.out(`${ruleLines(rules).join('\n')}\n`);
    });

  program
    .command('print')
    .description('show a list (default: the draft if there is one, else the signed list)')
    .argument('[file]', 'list or draft file')
    .option('--json', 'machine-readable output')
    .action((file: string | undefined, opts: { json?: boolean }, cmd: Command) => {
      const p = paths(cmd);
      const path = file ?? (exists(p.draft) ? p.draft : p.signed);
      const list = loadList(path);
      if (opts.json) io.out(`${JSON.stringify(listJson(list), null, 2)}\n`);
      else io.out(renderList(list, path, list.signatures.length ? 'signed' : 'draft'));
    });

  program
    .command('sign')
    .description('bump serial and timestamp of the draft, sign it, and write the signed list')
    .requiredOption('--key <file...>', 'private key file(s) from bnl keygen (several for m-of-n)')
    .option('--cosign', 'add signatures to the existing signed list without changing it (m-of-n by several admins)')
    .option('--signers <pubkey...>', 'key rotation: public keys (files or hex) trusted for every later list')
    .option('--threshold <m>', 'with --signers: how many of them must sign later lists', '1')
    .action(async (opts: { key: string[]; cosign?: boolean; signers?: string[]; threshold: string }, cmd: Command) => {
      const p = paths(cmd);
      const keys = opts.key.map(loadPrivateKey);
      let list: SignedBnl;
      if (opts.cosign) {
        if (opts.signers) throw new BnlCliError(BnlExit.usage, '--cosign cannot change the signers', 'sign a new list with --signers instead');
        list = signBnl(loadList(p.signed), keys);
      } else {
        const hasDraft = exists(p.draft);
        const prev = exists(p.signed) ? loadList(p.signed) : null;
        if (!hasDraft && !prev) throw new BnlCliError(BnlExit.file, `no draft at ${p.draft} and no list at ${p.signed}`, 'start one with bnl new --network NAME');
        const base: Bnl = hasDraft ? loadDraft(p) : (prev as SignedBnl).bnl;
        if (opts.signers) {
          const m = Number(opts.threshold);
          try {
            const t = createTrust(opts.signers.map(loadPublicKey), m);
            base.signers = { keys: [...t.keys], threshold: t.threshold };
          } catch (err) {
            if (err instanceof BnlError) throw new BnlCliError(BnlExit.usage, err.message, 'give 1 to 16 public keys and a threshold between 1 and their number', { cause: err });
            throw err;
          }
        }
        const serial = Math.max(base.serial, prev?.bnl.serial ?? 0) + 1;
        let unsigned: SignedBnl;
        try {
          unsigned = createUnsignedBnl({ ...base, serial, timestamp: io.now() });
        } catch (err) {
          throw listError(err, hasDraft ? p.draft : p.signed, BnlExit.invalid);
        }
        list = signBnl(unsigned, keys);
        if (prev?.bnl.signers) {
          try {
            verifyBnl(list, prev.bnl.signers);
          } catch (err) {
            io.err(`bnl: warning: nodes holding serial ${prev.bnl.serial} trust only its declared signers and will refuse this list (${(err as BnlError).code}); sign with those keys\n`);
          }
        }
        ensureSignedDir(p);
        await writeFileAtomic(p.signed, list.bytes, 0o644);
        if (hasDraft) await writeFileAtomic(p.draft, createUnsignedBnl(list.bnl).bytes, 0o644);
      }
      if (opts.cosign) await writeFileAtomic(p.signed, list.bytes, 0o644);
      io.out(`signed ${p.signed}: network ${list.bnl.network} serial ${list.bnl.serial}, ${list.signatures.length} signature(s), hash ${list.hash}\nnext: bnl push (or copy the file to the nodes)\n`);
    });

  program
    .command('verify')
    .description('exit 0 only for a valid list signed by the given key(s)')
    .argument('[file]', 'list file (default: the signed list)')
    .requiredOption('--pubkey <key...>', 'trusted public key(s): .pub files or 64 hex digits')
    .option('--threshold <m>', 'how many of the keys must have signed', '1')
    .action((file: string | undefined, opts: { pubkey: string[]; threshold: string }, cmd: Command) => {
      const path = file ?? paths(cmd).signed;
      let trust;
      try {
        trust = createTrust(opts.pubkey.map(loadPublicKey), Number(opts.threshold));
      } catch (err) {
        if (err instanceof BnlError) throw new BnlCliError(BnlExit.usage, err.message, 'give a threshold between 1 and the number of keys', { cause: err });
        throw err;
      }
      const list = loadList(path);
      try {
        const v = verifyBnl(list, trust);
        io.out(`valid: ${path}: network ${list.bnl.network} serial ${list.bnl.serial}, signed by ${v.signers.length} trusted key(s) (${trust.threshold} required), hash ${list.hash}\n`);
      } catch (err) {
        const e = err as BnlError;
        const hint = e.code === 'ERR_BNL_UNSIGNED' ? 'sign it with bnl sign --key KEY' : e.code === 'ERR_BNL_SIGNATURE' ? 'the file was altered after signing; sign it again or fetch a good copy' : 'check that --pubkey names the signing key (bnl keygen printed it)';
        throw new BnlCliError(BnlExit.verify, `${path}: ${e.message} [${e.code}]`, hint, { cause: err });
      }
    });

  program
    .command('diff')
    .description('show what would change from OLD to NEW (nodes added, removed/revoked, changed)')
    .argument('<old>')
    .argument('<new>')
    .option('--json', 'machine-readable output')
    .action((oldPath: string, newPath: string, opts: { json?: boolean }) => {
      const a = loadList(oldPath);
      const b = loadList(newPath);
      const d = diffBnl(a.bnl, b.bnl);
      const order = compareBnl(b, a);
      const orderText = { newer: 'newer', older: 'OLDER: nodes will refuse it', same: 'same list', 'conflict-wins': 'SAME SERIAL, different content: sign again to get a new serial', 'conflict-loses': 'SAME SERIAL, different content: sign again to get a new serial' }[order];
      if (opts.json) io.out(`${JSON.stringify({ order, oldSerial: a.bnl.serial, newSerial: b.bnl.serial, ...d }, null, 2)}\n`);
      else io.out(renderDiff(a, b, d, orderText));
    });

  program
    .command('push')
    .description('ask the running local cluevpnd to reload the signed list from disk and push it to every node')
    .option('-c, --config <file>', 'config file of the daemon (default /etc/cluevpn/cluevpn.conf, or /etc/cluevpn/NET/cluevpn.conf with -n)')
    .action(async (opts: { config?: string }, cmd: Command) => {
      const g = cmd.optsWithGlobals<GlobalOptions>();
      try {
        const r = await requestReloadAndPush({ ...(opts.config !== undefined ? { configFile: opts.config } : {}), ...(g.net !== undefined ? { netname: g.net } : {}) }, { env: io.env });
        if (r.via === 'signal') io.out(`sent SIGUSR1 to cluevpnd${r.pid !== null ? ` (pid ${r.pid})` : ''}: it reloads and pushes; check with cluevpn status\n`);
        else io.out(`cluevpnd holds serial ${r.serial}${r.applied ? ` (just applied), ${pushSummary(r)}` : ' (the file was not newer)'}\n`);
      } catch (err) {
        if (!(err instanceof ControlError)) throw err;
        if (err.code === 'ERR_NO_DAEMON') throw new BnlCliError(BnlExit.daemon, `no running cluevpnd answered (${err.message})`, 'start cluevpnd (the nodes get the list by pulling, too), or name the daemon with -c FILE / -n NET', { cause: err });
        if (err.code === 'ERR_NO_CONFIG') throw new BnlCliError(BnlExit.file, err.message.split('; ')[0], 'give the daemon config with -c FILE or -n NET', { cause: err });
        throw new BnlCliError(BnlExit.daemon, `cluevpnd did not push: ${err.message} [${err.remoteCode ?? err.code}]`, 'see the daemon log; check the list with bnl verify', { cause: err });
      }
    });

  program
    .command('import-csv')
    .description('add nodes from a CSV file (header: name,id,ipv4,ipv6,host,port,subnets,fingerprint,relay,prefer,tags)')
    .argument('<file>')
    .option('--network <name>', 'start a new draft for this network when there is none')
    .option('--replace', 'replace nodes that exist already instead of refusing')
    .action(async (file: string, opts: { network?: string; replace?: boolean }, cmd: Command) => {
      const p = paths(cmd);
      const rows = parseNodeCsv(readBytes(file, 'give the path of the CSV file').toString('utf8'), file);
      const bnl: Bnl = !exists(p.draft) && !exists(p.signed) && opts.network ? { network: opts.network, serial: 0, timestamp: 0, nodes: [] } : loadDraft(p);
      const reserved = signedIds(p.signed);
      for (const row of rows) {
        try {
          addNode(bnl, row.name, row.kvs, reserved, opts.replace);
        } catch (err) {
          if (err instanceof BnlCliError) throw new BnlCliError(err.exit, `${file} line ${row.line}: ${err.message}`, err.hint, { cause: err });
          throw err;
        }
      }
      await saveDraft(p, bnl);
      io.out(`imported ${rows.length} node(s) into ${p.draft}\n`);
    });

  return program;
}

/**
 * Runs `bnl` with `argv` (without the node and script names) and returns
 * the exit code. Errors are printed as one line `bnl: <what>; <what to do>`
 * (plus a stack trace with --debug); nothing is thrown.
 */
export async function runBnl(argv: readonly string[], io: BnlIo = defaultIo): Promise<number> {
  const program = buildBnlProgram(io);
  const debug = argv.includes('--debug');
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return BnlExit.ok;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.help' || err.code === 'commander.version') return BnlExit.ok;
      const what = err.message.replace(/^error: /, '').split('\n')[0];
      io.err(`bnl: ${what}; see bnl --help\n`);
      return BnlExit.usage;
    }
    if (err instanceof BnlCliError) {
      io.err(`bnl: ${err.message}; ${err.hint}\n`);
      if (debug && err.stack) io.err(`${err.stack}\n`);
      return err.exit;
    }
    io.err(`bnl: internal error: ${(err as Error).message ?? String(err)}; run again with --debug and report it\n`);
    if (debug) io.err(`${(err as Error).stack ?? ''}\n`);
    return BnlExit.internal;
  }
}
