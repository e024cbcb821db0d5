/**
 * Differential test of the two backends (issue 17 point 4): the `js`
 * backend (the TypeScript pipelines with dgram and createCipheriv: the
 * reference) and the `native` backend (the same pipelines with C batches,
 * plus the C express path for reads of up to 4 packets on a real TUN) are
 * driven with the same seeded random sequence of commands and packets
 * (fixtures/differential-child.ts, one child per backend, each in its own
 * throw-away network namespace with a real TUN). They must agree, step by
 * step, on the events, the counters and drops, what reached the peers, and
 * (byte-exact, from a tcpdump capture of the TUN) what was written into the
 * TUN.
 *
 * Knobs: CLUEVPN_DIFF_SEED=<n> replays one seed (a failure prints it);
 * CLUEVPN_DIFF_ROUNDS (default 2 random seeds) and CLUEVPN_DIFF_STEPS
 * (default 120) make it a soak. Needs root, /dev/net/tun, `ip netns` and
 * tcpdump; skips otherwise. native/sanitize-test runs it against the
 * ASan/UBSan build too.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const CHILD = fileURLToPath(new URL('./fixtures/differential-child.js', import.meta.url));

function skipReason(): string | false {
  if (process.getuid?.() !== 0) return 'needs root';
  if (!existsSync('/dev/net/tun')) return 'needs /dev/net/tun';
  if (spawnSync('ip', ['netns', 'list'], { stdio: 'ignore' }).status !== 0) return 'needs ip netns';
  if (spawnSync('tcpdump', ['--version'], { stdio: 'ignore' }).status !== 0) return 'needs tcpdump';
  return false;
}

interface Step {
  step: number;
  op: string;
  events: string[];
  sent: string[];
  stats: { tunOut: number } & Record<string, unknown>;
}
interface Run {
  backend: string;
  seed: number;
  steps: Step[];
  tunPackets: string[];
  tunWritten: number;
  reuse: string[];
  express: { delivered: number; sent: number };
}

/** Runs one backend with `seed` in its own namespace. */
function runChild(backend: 'js' | 'native', seed: number, steps: number): Promise<Run> {
  const ns = `df-${backend}-${process.pid}-${seed}`;
  execFileSync('ip', ['netns', 'add', ns]);
  execFileSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
  return new Promise<Run>((resolve, reject) => {
    const c = spawn('ip', ['netns', 'exec', ns, process.execPath, CHILD, backend, String(seed), String(steps)], { env: process.env });
    let out = '';
    let err = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => c.kill('SIGKILL'), 300_000);
    c.on('exit', (code) => {
      clearTimeout(timer);
      execFileSync('ip', ['netns', 'del', ns]);
      const line = out.split('\n').find((l) => l.startsWith('RESULT '));
      if (code !== 0 || line === undefined) reject(new Error(`${backend} child (seed ${seed}) failed with ${code}: ${err}`));
      else resolve(JSON.parse(line.slice(7)) as Run);
    });
  });
}

/** The first disagreement between the two runs, or null. */
function firstDifference(js: Run, nat: Run): string | null {
  if (js.steps.length !== nat.steps.length) return `step counts ${js.steps.length} / ${nat.steps.length}`;
  if (js.tunPackets.length !== js.tunWritten) return `js: the capture has ${js.tunPackets.length} of ${js.tunWritten} TUN packets`;
  if (nat.tunPackets.length !== nat.tunWritten) return `native: the capture has ${nat.tunPackets.length} of ${nat.tunWritten} TUN packets`;
  let jOut = 0;
  let nOut = 0;
  for (let i = 0; i < js.steps.length; i++) {
    const a = js.steps[i];
    const b = nat.steps[i];
    const where = `step ${i} (${a.op})`;
    if (a.op !== b.op) return `${where}: the commands differ: ${a.op} / ${b.op}`;
    // TUN writes of this step, byte-exact; sorted, because a batch writes its decompressed packets after its others
    const ja = js.tunPackets.slice(jOut, a.stats.tunOut).sort();
    const nb = nat.tunPackets.slice(nOut, b.stats.tunOut).sort();
    jOut = a.stats.tunOut;
    nOut = b.stats.tunOut;
    if (JSON.stringify(ja) !== JSON.stringify(nb)) {
      const onlyJs = ja.filter((x) => !nb.includes(x));
      const onlyNat = nb.filter((x) => !ja.includes(x));
      return `${where}: TUN writes differ\n  only js:     ${onlyJs.map((x) => x.slice(0, 120)).join('\n               ')}\n  only native: ${onlyNat.map((x) => x.slice(0, 120)).join('\n               ')}`;
    }
    for (const k of ['events', 'sent', 'stats'] as const) {
      const x = JSON.stringify(a[k]);
      const y = JSON.stringify(b[k]);
      if (x !== y) return `${where}: ${k} differ\n  js:     ${x}\n  native: ${y}`;
    }
  }
  return null;
}

const skip = skipReason();
const fixedSeed = process.env.CLUEVPN_DIFF_SEED;
const rounds = fixedSeed !== undefined ? 1 : Number(process.env.CLUEVPN_DIFF_ROUNDS ?? 2);
const stepCount = Number(process.env.CLUEVPN_DIFF_STEPS ?? 120);

test('differential: js and native (with the express path) agree on TUN writes (byte-exact), drops, counters, events and sent datagrams for seeded random commands and packets', { skip, timeout: 900_000 }, async (t) => {
  let expressDelivered = 0;
  let expressSent = 0;
  for (let r = 0; r < rounds; r++) {
    const seed = fixedSeed !== undefined ? Number(fixedSeed) : randomInt(1, 2 ** 31);
    t.diagnostic(`seed ${seed}, ${stepCount} steps (replay: CLUEVPN_DIFF_SEED=${seed} CLUEVPN_DIFF_STEPS=${stepCount} scripts/test differential)`);
    const [js, nat] = await Promise.all([runChild('js', seed, stepCount), runChild('native', seed, stepCount)]);
    const diff = firstDifference(js, nat);
    if (diff !== null) {
      const file = join(tmpdir(), `cluevpn-differential-${seed}.json`);
      writeFileSync(file, JSON.stringify({ js, native: nat }, null, 1));
      assert.fail(`seed ${seed}: ${diff}\n(both runs in ${file}; replay: CLUEVPN_DIFF_SEED=${seed} CLUEVPN_DIFF_STEPS=${stepCount} scripts/test differential)`);
    }
    assert.deepEqual(js.reuse, [], `seed ${seed}: js sent a (index, epoch, counter) twice`);
    assert.deepEqual(nat.reuse, [], `seed ${seed}: native sent a (index, epoch, counter) twice`);
    assert.equal(js.express.delivered + js.express.sent, 0, 'the js backend has no express path');
    assert.ok(js.tunWritten > 0, `seed ${seed}: nothing reached the TUN`);
    expressDelivered += nat.express.delivered;
    expressSent += nat.express.sent;
    t.diagnostic(`seed ${seed}: ${js.tunWritten} TUN packets; native express delivered ${nat.express.delivered}, sent ${nat.express.sent}`);
  }
  // the comparison means something only if C took part
  assert.ok(expressDelivered > 0, 'the native express receive path delivered nothing');
  assert.ok(expressSent > 0, 'the native express send path sent nothing');
});
