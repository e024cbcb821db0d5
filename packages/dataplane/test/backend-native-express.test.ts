/**
 * The express receive path (native/src/express.c; receive.ts step 12) on a
 * real TUN device in a throw-away network namespace: fixtures/express-child
 * sends hand-built datagrams to a native data plane and reports, per step,
 * what reached the TUN (read back from a UDP socket behind it), the express
 * counters and the drops; then packets routed into the TUN go out through
 * the express send path and are opened and checked. Needs root, /dev/net/tun and `ip netns`; skips
 * otherwise. Also run against the ASan/UBSan build by native/sanitize-test.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const CHILD = fileURLToPath(new URL('./fixtures/express-child.js', import.meta.url));

function skipReason(): string | false {
  if (process.getuid?.() !== 0) return 'needs root';
  if (!existsSync('/dev/net/tun')) return 'needs /dev/net/tun';
  if (spawnSync('ip', ['netns', 'list'], { stdio: 'ignore' }).status !== 0) return 'needs ip netns';
  return false;
}

interface Step {
  name: string;
  arrived: string[];
  express: { on: boolean; delivered: number; tunFailed: number; leases: number };
  drops: Record<string, number>;
  rxPackets: number;
}

interface SendStep {
  name: string;
  datagrams: Array<{ type: number; index: number; epoch: number; counter: number; payload: string | null; authentic: boolean; length: number }>;
  express: Step['express'] & { sendOn: boolean; sent: number; sendFailed: number; sendLeases: number };
  txCounter: number;
  txPackets: number;
}

interface Cross {
  expected: string[];
  arrived: string[];
  expressDelivered: number;
  sent: number;
}

let result: { steps: Step[]; sendSteps: SendStep[]; cross: Cross } | null = null;
const skip = skipReason();

/** Runs the child once (in a throw-away namespace) and keeps its report. */
function run(): { steps: Step[]; sendSteps: SendStep[]; cross: Cross } {
  if (result !== null) return result;
  const ns = `xr-${process.pid}`;
  execFileSync('ip', ['netns', 'add', ns]);
  let out: string;
  try {
    execFileSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    const r = spawnSync('ip', ['netns', 'exec', ns, process.execPath, CHILD], { encoding: 'utf8', timeout: 60_000, env: process.env });
    assert.equal(r.status, 0, `child failed: ${r.stderr}`);
    out = r.stdout;
  } finally {
    execFileSync('ip', ['netns', 'del', ns]);
  }
  const line = out.split('\n').find((l) => l.startsWith('RESULT '));
  assert.ok(line !== undefined, out);
  result = JSON.parse(line.slice(7)) as { steps: Step[]; sendSteps: SendStep[]; cross: Cross };
  return result;
}

test('express receive: lone datagrams of a leased session reach the TUN in C; everything else falls back to JavaScript intact', { skip }, () => {
  const steps = run().steps;
  const s = (name: string): Step => steps.find((x) => x.name === name)!;
  const drop = (st: Step, k: string): number => st.drops[k] ?? 0;

  // The first lone datagram goes through JavaScript and leases the session.
  assert.deepEqual(s('first').arrived, ['m1']);
  assert.equal(s('first').express.on, true);
  assert.equal(s('first').express.delivered, 0);
  assert.equal(s('first').express.leases, 1);
  // The next ones are delivered by C, counted in the peer's rx counters too.
  assert.deepEqual(s('second').arrived, ['m2']);
  assert.equal(s('second').express.delivered, 1);
  assert.equal(s('second').rxPackets, 2);
  assert.deepEqual(s('third').arrived, ['m3']);
  assert.equal(s('third').express.delivered, 2);
  assert.equal(s('third').express.tunFailed, 0);
  // A replay of a counter C accepted: refused (C shares the replay window) and counted by JavaScript.
  assert.deepEqual(s('replay').arrived, []);
  assert.equal(drop(s('replay'), 'replayed'), 1);
  assert.equal(s('replay').express.delivered, 2);
  // A forged tag: JavaScript still sees the datagram intact and counts it.
  assert.deepEqual(s('forged').arrived, []);
  assert.equal(drop(s('forged'), 'auth-failed'), 1);
  // An inner source outside the peer's subnets.
  assert.deepEqual(s('spoofed').arrived, []);
  assert.equal(drop(s('spoofed'), 'spoofed'), 1);
  // The compressed flag on a payload that is not LZ4: C leaves it, JavaScript refuses it.
  assert.deepEqual(s('compressed-flag').arrived, []);
  assert.equal(drop(s('compressed-flag'), 'decompress-failed'), 1);
  assert.equal(s('compressed-flag').express.delivered, 2);
  // The lease survives what it refused.
  assert.deepEqual(s('after-failures').arrived, ['m8']);
  assert.equal(s('after-failures').express.delivered, 3);
  assert.equal(s('after-failures').rxPackets, 4);
  // A newer epoch: JavaScript resets the window and voids the lease ...
  assert.deepEqual(s('new-epoch').arrived, ['e2m0']);
  assert.equal(s('new-epoch').express.delivered, 3);
  // ... so the old epoch is refused, not delivered by a stale lease.
  assert.deepEqual(s('old-epoch').arrived, []);
  assert.equal(drop(s('old-epoch'), 'old-epoch'), 1);
  assert.equal(s('old-epoch').express.delivered, 3);
  assert.deepEqual(s('epoch2-next').arrived, ['e2m1']);
  assert.equal(s('epoch2-next').express.delivered, 4);
  assert.deepEqual(s('epoch2-replay-of-express').arrived, []);
  assert.equal(drop(s('epoch2-replay-of-express'), 'replayed'), 2);
  // The endpoint moved: C does not roam; JavaScript delivers and moves the endpoint back.
  assert.deepEqual(s('endpoint-moved').arrived, ['roam']);
  assert.equal(s('endpoint-moved').express.delivered, 4);
  assert.deepEqual(s('after-roam').arrived, ['e2m3']);
  assert.equal(s('after-roam').express.delivered, 5);
  assert.equal(s('after-roam').rxPackets, 8);
  // Two datagrams in one batch: both by C, in order.
  assert.deepEqual(s('pair').arrived, ['pair-a', 'pair-b']);
  assert.equal(s('pair').express.delivered, 7);
  assert.equal(s('pair').rxPackets, 10);
});

test('express send: lone TUN packets are sealed and sent in C with counters JavaScript never uses; bursts, new epochs and new sessions stay correct', { skip }, () => {
  const steps = run().sendSteps;
  const s = (name: string): SendStep => steps.find((x) => x.name === name)!;
  const expected: Record<string, string[]> = {
    lone: Array.from({ length: 70 }, (_, i) => `s${i}`),
    burst: Array.from({ length: 200 }, (_, i) => `b${i}`),
    'after-burst': Array.from({ length: 5 }, (_, i) => `t${i}`),
    'new-epoch': Array.from({ length: 5 }, (_, i) => `e${i}`),
    'new-session': Array.from({ length: 5 }, (_, i) => `n${i}`),
  };
  const fragments = s('fragments');
  const used = new Set<string>();
  let total = 0;
  for (const step of steps) {
    const d = step.datagrams;
    total += d.length;
    // every packet arrived once, authentic, as DATA, in order
    assert.ok(d.every((x) => x.authentic), `${step.name}: authentic`);
    if (step !== fragments) assert.deepEqual(d.map((x) => x.payload), expected[step.name], `${step.name}: payloads`);
    assert.ok(d.every((x) => x.type === 0x11), `${step.name}: DATA`);
    for (let i = 1; i < d.length; i++) assert.ok(d[i].counter > d[i - 1].counter, `${step.name}: counters increase (${d[i - 1].counter}, ${d[i].counter})`);
    // no nonce twice: (key = receiver index here, epoch, counter) unique over the whole run
    for (const x of d) {
      const k = `${x.index}/${x.epoch}/${x.counter}`;
      assert.ok(!used.has(k), `${step.name}: nonce ${k} used twice`);
      used.add(k);
    }
    // the session's counter is past every counter used, by C or JavaScript
    const epochNow = step.name === 'new-epoch' || step.name === 'new-session' ? d[d.length - 1].epoch : 1;
    const maxUsed = Math.max(...d.filter((x) => x.epoch === epochNow).map((x) => x.counter));
    assert.ok(step.txCounter > maxUsed, `${step.name}: txCounter ${step.txCounter} > ${maxUsed}`);
    assert.equal(step.txPackets, total, `${step.name}: peer tx counter`);
    assert.equal(step.express.sendFailed, 0);
  }
  // lone packets went through C, but for the first and one per block of 64
  assert.equal(s('lone').express.sendOn, true);
  assert.ok(s('lone').express.sent >= 50, `express sent ${s('lone').express.sent} of 70 lone packets`);
  assert.ok(s('lone').express.sent <= 68, 'the first packet and each new block go through JavaScript');
  assert.equal(s('lone').datagrams[0].counter, 0);
  // after the burst (sent by JavaScript) C starts again
  assert.ok(s('after-burst').express.sent > s('burst').express.sent);
  // a new send epoch and a new session are used at once, also by C
  assert.ok(s('new-epoch').datagrams.every((x) => x.epoch === 2 && x.index === 9));
  assert.ok(s('new-epoch').express.sent > s('after-burst').express.sent);
  assert.ok(s('new-session').datagrams.every((x) => x.epoch === 1 && x.index === 10));
  assert.ok(s('new-session').express.sent > s('new-epoch').express.sent);
  // 2000-byte datagrams leave as two fragments (1420 + the rest) each, sealed by C too
  assert.equal(fragments.datagrams.length, 6);
  assert.deepEqual(fragments.datagrams.map((x) => x.length > 1000), [true, false, true, false, true, false]);
  assert.ok(fragments.express.sent - s('new-session').express.sent >= 4, `fragments sent by C: ${fragments.express.sent - s('new-session').express.sent}`);
});

test('express receive: C and JavaScript share one replay window; 600 random counters (replays, old, jumps) give exactly what a model ReplayWindow accepts', { skip }, () => {
  const c = run().cross;
  assert.equal(c.sent, 600);
  assert.ok(c.expected.length > 200, `model accepted ${c.expected.length}`);
  assert.ok(c.expected.length < 560, `model refused ${600 - c.expected.length}`);
  assert.deepEqual(c.arrived, c.expected);
  // most accepted datagrams were C's (the rest: the first of the epoch and those after a JavaScript one)
  assert.ok(c.expressDelivered > c.expected.length / 2, `C delivered ${c.expressDelivered} of ${c.expected.length}`);
});
