/**
 * The short versions of `scripts/bench/faults` (issue 16; the full runs and
 * their figures are in RELIABILITY.md): the datagram fuzz with 3 000
 * datagrams, and TCP through the tunnel at 5 % loss per datagram for 2 s,
 * each asserting the zeros the suite promises.
 *
 * Needs root, `ip netns`, /dev/net/tun, ping, tcpdump and nft; skips
 * otherwise (fails under CI=true).
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { REPO_ROOT, requireLab } from './lib/lab.js';
import { runCommand } from './lib/process.js';

const FAULTS = join(REPO_ROOT, 'scripts', 'bench', 'faults');

/** Runs `scripts/bench/faults ARGS` and returns its figures line for `name` as key → value. */
async function figures(name: string, args: string[]): Promise<{ line: string; fig: Map<string, string> }> {
  const r = await runCommand(FAULTS, [name, ...args], { timeoutMs: 280_000 });
  const line = r.stdout.split('\n').find((l) => l.startsWith(`${name}:`)) ?? '';
  assert.equal(r.code, 0, `faults ${name} exited ${r.code}: ${r.stdout}${r.stderr.slice(-2000)}`);
  const fig = new Map([...line.matchAll(/([a-z-]+)=(\S+)/g)].map((m) => [m[1]!, m[2]!]));
  return { line, fig };
}

test('faults, short: 3 000 fuzzed datagrams at a live node: no crash, no forgery, every datagram counted, the live flow loses only what the kernel dropped', { timeout: 300_000 }, async (t) => {
  if (!requireLab(t, { tools: { tcpdump: 'tcpdump' } })) return;
  const { line, fig } = await figures('fuzz', ['--datagrams', '3000', '--rate', '3000']);
  t.diagnostic(line);
  assert.equal(fig.get('sent'), '3000');
  assert.equal(fig.get('crashes'), '0', line);
  assert.equal(fig.get('forgeries'), '0', line);
  assert.equal(fig.get('unaccounted'), '0', `drops by reason add up to what was sent: ${line}`);
  assert.ok(Number(fig.get('dropped')) > 0, line);
  // the flow loses nothing, unless the kernel's receive buffer overflowed (counted) on a busy machine
  assert.ok(Number(fig.get('flow-lost')) <= Number(fig.get('kernel-drops')), line);
  assert.ok(Number(fig.get('flow-replies')) > 10, line);
});

test('faults, short: TCP through the tunnel at 5 % loss per datagram; no peer stuck after the loss stops', { timeout: 300_000 }, async (t) => {
  if (!requireLab(t, { tools: { tcpdump: 'tcpdump', nft: 'nftables' } })) return;
  const { line } = await figures('loss', ['--rates', '5', '--seconds', '2']);
  t.diagnostic(line);
  const m = /5%: tunnel=([\d.]+) plain=([\d.]+) Mbit\/s ratio=[\d.]+ measured-loss=([\d.]+)%/.exec(line);
  assert.ok(m, line);
  assert.ok(Number(m[1]) > 0 && Number(m[2]) > 0, `goodput through the tunnel and plain: ${line}`);
  // the wire dropped about the asked 5 % per datagram (thousands of packets: ±2 points is many sd)
  assert.ok(Math.abs(Number(m[3]) - 5) < 2, `measured loss ${m[3]} %`);
  assert.match(line, /stuck=0/);
});
