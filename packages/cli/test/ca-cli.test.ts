import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, test } from 'node:test';
import { Command, CommanderError } from 'commander';
import { registerCaCommands } from '../src/ca/index.js';

const dir = mkdtempSync(join(tmpdir(), 'ca-cli-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const BIN = fileURLToPath(new URL('../../bin/cluevpn', import.meta.url));

async function cli(args: string[], now?: Date): Promise<{ out: string; err: string; error?: unknown }> {
  let out = '';
  let err = '';
  const program = new Command('cluevpn').exitOverride().configureOutput({ writeOut: (s) => (out += s), writeErr: (s) => (err += s) });
  registerCaCommands(program, { out: (s) => (out += s), err: (s) => (err += s), now: now ? () => now : undefined });
  try {
    await program.parseAsync(['node', 'cluevpn', ...args]);
    return { out, err };
  } catch (error) {
    return { out, err, error };
  }
}

function code(e: unknown): string | undefined {
  return (e as { code?: string } | undefined)?.code;
}

test('CA round trip: init, request, sign, show, issue', async () => {
  const ca = join(dir, 'ca');
  const node = join(dir, 'node');
  const init = await cli(['ca', 'init', '--dir', ca, '--cn', 'Lab CA', '--days', '100']);
  assert.equal(init.error, undefined);
  assert.equal(statSync(join(ca, 'ca.key')).mode & 0o777, 0o600);
  const caFp = new X509Certificate(readFileSync(join(ca, 'ca.crt'))).fingerprint256;
  assert.ok(init.out.includes(caFp));
  assert.ok(init.out.includes(caFp.replace(/:/g, '').toLowerCase()));

  const again = await cli(['ca', 'init', '--dir', ca]);
  assert.equal(code(again.error), 'ERR_CA_EXISTS');

  const req = await cli(['cert', 'request', 'alpha', '--out', node]);
  assert.equal(req.error, undefined);
  assert.equal(statSync(join(node, 'alpha.key')).mode & 0o777, 0o600);

  const sign = await cli(['cert', 'sign', join(node, 'alpha.csr'), '--ca', ca, '--ou', 'mesh', '--days', '20']);
  assert.equal(sign.error, undefined);
  const crt = new X509Certificate(readFileSync(join(node, 'alpha.crt')));
  assert.ok(sign.out.includes(crt.fingerprint256));
  assert.equal(crt.checkIssued(new X509Certificate(readFileSync(join(ca, 'ca.crt')))), true);
  assert.equal(crt.checkPrivateKey((await import('node:crypto')).createPrivateKey(readFileSync(join(node, 'alpha.key')))), true);

  const show = await cli(['cert', 'show', join(node, 'alpha.crt')]);
  assert.equal(show.error, undefined);
  assert.match(show.out, /subject: +OU=mesh, CN=alpha/);
  assert.match(show.out, /issuer: +CN=Lab CA/);
  assert.ok(show.out.includes(crt.fingerprint256));
  assert.match(show.err, /warning: .* expires in 19 days/); // 20-day certificate: within the 30-day warning

  const expired = await cli(['cert', 'show', join(node, 'alpha.crt')], new Date(Date.now() + 40 * 86_400_000));
  assert.equal(code(expired.error), 'ERR_CA_INVALID');
  assert.match(expired.out, /expired/);

  const issue = await cli(['cert', 'issue', 'bravo', '--ca', ca, '--out', join(dir, 'bravo')]);
  assert.equal(issue.error, undefined);
  const b = new X509Certificate(readFileSync(join(dir, 'bravo', 'bravo.crt')));
  assert.match(b.subject, /CN=bravo/);
  assert.deepEqual(readFileSync(join(dir, 'bravo', 'ca.crt')), readFileSync(join(ca, 'ca.crt')));
  const showCa = await cli(['cert', 'show', join(ca, 'ca.crt')]);
  assert.match(showCa.out, /CA: +yes/);
  assert.equal(showCa.err, '');
});

test('usage and input errors', async () => {
  const bad = await cli(['ca', 'init', '--dir', join(dir, 'x'), '--days', 'soon']);
  assert.ok(bad.error instanceof CommanderError);
  assert.equal(code(bad.error), 'commander.invalidArgument');
  const missing = await cli(['cert', 'show', join(dir, 'nope.crt')]);
  assert.equal(code(missing.error), 'ERR_CA_INPUT');
  const badName = await cli(['cert', 'request', 'no/slash', '--out', dir]);
  assert.equal(code(badName.error), 'ERR_CA_INPUT');
});

function run(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.stderr.on('data', (d: Buffer) => (err += d.toString()));
    c.on('exit', (code) => resolve({ code, out, err }));
  });
}

test('the cluevpn binary: exit codes and one-line errors', async () => {
  const ok = await run(['cert', 'show', join(dir, 'ca', 'ca.crt')]);
  assert.equal(ok.code, 0, ok.err);
  assert.match(ok.out, /SHA-256 fingerprint/);
  const missing = await run(['cert', 'show', join(dir, 'missing.crt')]);
  assert.equal(missing.code, 1);
  assert.equal(missing.err.trim().split('\n').length, 1);
  assert.match(missing.err, /^cluevpn: /);
  const usage = await run(['ca', 'init']);
  assert.equal(usage.code, 2);
});
