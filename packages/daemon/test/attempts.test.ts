/**
 * The negotiation attempt schedule with a large list (issue 19): attempts
 * are counted per simulated minute with a fake clock, never timed.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AttemptPlanner, MAX_RETRY_MS, PROACTIVE_PER_TICK } from '../src/attempts.js';
import { TICK_MS } from '../src/mesh.js';

/** A network of `n` unreachable records (every attempt fails) plus the live ones in `live`. */
function world(n: number, live: ReadonlySet<string> = new Set()) {
  let now = 0;
  let seed = 42;
  const perMinute: number[] = [];
  const started: string[] = [];
  const keyed = new Set<string>();
  const planner = new AttemptPlanner({
    now: () => now,
    random: () => ((seed = (seed * 1103515245 + 12345) % 2147483648), seed / 2147483648),
    attempt: (name) => {
      const m = Math.floor(now / 60_000);
      perMinute[m] = (perMinute[m] ?? 0) + 1;
      started.push(name);
      if (live.has(name)) {
        keyed.add(name);
        return Promise.resolve();
      }
      return Promise.reject(Object.assign(new Error('unreachable'), { code: 'ERR_CHANNEL_CLOSED' }));
    },
    reachableFirst: () => true,
    failed: () => undefined,
  });
  const names = Array.from({ length: n }, (_, k) => `far${k}`);
  const pool = [...names, ...live];
  const settle = () => new Promise<void>((r) => setImmediate(r));
  return {
    planner,
    names,
    perMinute,
    started,
    keyed,
    /** Runs `minutes` of simulated time in 1 s steps: `each(second)` every second, then the tick every TICK_MS. */
    async run(minutes: number, each: (second: number) => void = () => undefined): Promise<void> {
      const end = now + minutes * 60_000;
      while (now < end) {
        each(now / 1000); // traffic first: it may take every token before the tick
        if (now % TICK_MS === 0) planner.tick(pool, (x) => !keyed.has(x));
        await settle();
        now += 1000;
      }
      for (let m = 0; m < end / 60_000; m++) perMinute[m] ??= 0;
    },
  };
}

test('10 000 unreachable records and no traffic: a constant number of attempts per minute', async () => {
  const w = world(10_000);
  await w.run(30);
  const bound = PROACTIVE_PER_TICK * (60_000 / TICK_MS);
  assert.equal(w.perMinute.length, 30);
  for (const [m, c] of w.perMinute.entries()) assert.ok(c <= bound, `minute ${m}: ${c} attempts (bound ${bound})`);
  assert.ok(w.perMinute.every((c) => c > 0), 'the records are still explored');
});

test('traffic toward 10 000 unreachable records (a sweep every 10 s) is no connection storm', async () => {
  const w = world(10_000);
  await w.run(10, (s) => {
    if (s % 10 === 0) for (const n of w.names) w.planner.traffic(n);
  });
  // a small constant for nodes never reached, whatever their number or traffic
  const bound = 150;
  for (const [m, c] of w.perMinute.entries()) assert.ok(c <= bound, `minute ${m}: ${c} attempts (bound ${bound})`);
});

test('a peer reached before is retried on traffic at once, even while unreachable records use up the budget', async () => {
  const live = new Set(['alive']);
  const w = world(10_000, live);
  w.planner.traffic('alive');
  await w.run(1);
  assert.ok(w.keyed.has('alive'));
  // it loses its session (restart); a sweep keeps the budget for never-reached records busy
  w.keyed.delete('alive');
  live.delete('alive'); // down for a while: its attempts fail
  // the sweep comes every second, before the peer's own traffic: it takes every token as it refills
  const sweep = () => {
    for (const n of w.names) w.planner.traffic(n);
    w.planner.traffic('alive');
  };
  await w.run(2, sweep);
  live.add('alive');
  const before = w.started.filter((x) => x === 'alive').length;
  await w.run(Math.ceil(MAX_RETRY_MS / 60_000) + 1, sweep);
  assert.ok(w.started.filter((x) => x === 'alive').length > before, 'retried');
  assert.ok(w.keyed.has('alive'), 'negotiated again once it was back');
});

test('relays (preferred) are tried first at a tick; a node not dialled first is tried for traffic only when reachableFirst says so for traffic', async () => {
  const started: string[] = [];
  const asked: string[] = [];
  const planner = new AttemptPlanner({
    now: () => 0,
    random: () => 0.5,
    attempt: (name) => {
      started.push(name);
      return new Promise(() => undefined);
    },
    // nat1 is listed without endpoints: reachable through a relay for our traffic only
    reachableFirst: (name, why) => {
      asked.push(`${name}:${why}`);
      return name !== 'nat1' || why === 'traffic';
    },
    preferred: () => ['relay1', 'relay2'],
    failed: () => undefined,
  });
  const pool = Array.from({ length: 40 }, (_, k) => `n${k}`).concat(['relay1', 'relay2', 'nat1']);
  planner.tick(pool, () => true);
  assert.deepEqual(started, ['relay1', 'relay2'], 'both picks of the tick are the relays');
  planner.tick(pool, (n) => n === 'nat1');
  assert.deepEqual(started, ['relay1', 'relay2'], 'a node nobody dials first is not tried by the tick');
  assert.ok(asked.includes('nat1:proactive'));
  planner.traffic('nat1');
  assert.deepEqual(started, ['relay1', 'relay2', 'nat1'], 'traffic tries it (through a relay)');
});
