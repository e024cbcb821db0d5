/**
 * A node killed with SIGKILL mid-traffic, again and again, never sends
 * the same (epoch, counter) twice with its persisted key: each start
 * bumps the epoch durably before the first packet.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, test } from 'node:test';
import { StateStore } from '../src/index.js';
import { tempDir } from './helpers.js';

const t = tempDir('neg-kill-');
after(t.cleanup);

const indexJs = fileURLToPath(new URL('../src/index.js', import.meta.url));

const CHILD = `
import { writeSync } from 'node:fs';
import { Negotiator, StateStore, parseCryptAlgos, parseCompAlgos } from ${JSON.stringify(indexJs)};
const store = StateStore.open(process.argv[2]);
const neg = new Negotiator({
  localName: 'alpha',
  cryptAlgos: parseCryptAlgos('aes256gcm:256:1'),
  compAlgos: parseCompAlgos('none:0:1'),
  store,
  transport: { connect: () => new Promise(() => {}) },
  events: {
    onSession(peer, p) {
      // the "data plane": send packets numbered (epoch, counter) from counter 0
      let counter = 0;
      const burst = () => {
        let out = '';
        for (let i = 0; i < 50; i++) out += p.txEpoch + ' ' + counter++ + '\\n';
        writeSync(1, out);
        setImmediate(burst);
      };
      burst();
    },
    onPromote() {},
    onRetire() {},
    onTxEpoch() {},
  },
});
neg.start();
`;

function runOnce(script: string, db: string, killAfterMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, db], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let timer: NodeJS.Timeout | undefined;
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => {
      out += d;
      if (timer === undefined) timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
    });
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const guard = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearTimeout(guard);
      clearTimeout(timer);
      if (signal !== 'SIGKILL') reject(new Error(`child exited ${code} ${signal}: ${err}`));
      else resolve(out);
    });
  });
}

test('SIGKILL mid-traffic, repeatedly: epochs strictly increase, no (epoch, counter) repeats, no renegotiation', async () => {
  const db = join(t.dir, 'alpha.db');
  const store = StateStore.open(db);
  store.putSession({
    peer: 'bravo',
    localIndex: 42,
    remoteIndex: 43,
    cipher: 'aes-256-gcm',
    compression: { algo: 'none', level: 0 },
    txKey: Buffer.alloc(32, 7),
    rxKey: Buffer.alloc(32, 8),
    createdAt: Date.now(),
    sendEpoch: 1,
    rxEpochFloor: 1,
  });
  store.close();
  const script = join(t.dir, 'child.mjs');
  writeFileSync(script, CHILD);

  const seen = new Set<string>();
  let maxEpoch = 1;
  let total = 0;
  for (let run = 0; run < 8; run++) {
    const out = await runOnce(script, db, 5 + ((run * 37) % 60));
    const lines = out.split('\n');
    lines.pop(); // the last line may be cut by the kill
    assert.ok(lines.length > 0, `run ${run} sent nothing`);
    const epochs = new Set<number>();
    for (const line of lines) {
      assert.ok(!seen.has(line), `(epoch counter) ${line} sent twice`);
      seen.add(line);
      epochs.add(Number(line.split(' ')[0]));
    }
    assert.equal(epochs.size, 1);
    const epoch = [...epochs][0]!;
    assert.ok(epoch > maxEpoch, `run ${run}: epoch ${epoch} not above ${maxEpoch}`);
    maxEpoch = epoch;
    total += lines.length;
  }
  const after = StateStore.open(db);
  const s = after.getSession('bravo')!;
  after.close();
  assert.equal(s.sendEpoch, maxEpoch);
  assert.equal(s.localIndex, 42); // same session throughout: never renegotiated
  assert.deepEqual(s.txKey, Buffer.alloc(32, 7));
  assert.ok(total > 8);
});
