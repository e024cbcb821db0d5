/**
 * A node killed with SIGKILL mid-traffic, again and again, never sends
 * the same (key, epoch, counter) twice: each start resumes the stored
 * session with an epoch its peer reserved for it, durably, before the
 * first packet. The peer (bravo) lives in this process for the whole test
 * and talks to the child over Node's IPC channel, as over the control
 * channel.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, test } from 'node:test';
import { Negotiator, StateStore, parseCompAlgos, parseCryptAlgos, type IncomingContext } from '../src/index.js';
import { MemoryStore } from '../src/testing.js';
import { tempDir } from './helpers.js';

const t = tempDir('neg-kill-');
after(t.cleanup);

const indexJs = fileURLToPath(new URL('../src/index.js', import.meta.url));

// The child: alpha with its state file; its transport sends requests to the parent over IPC.
const CHILD = `
import { writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { Negotiator, StateStore, parseCryptAlgos, parseCompAlgos } from ${JSON.stringify(indexJs)};
const store = StateStore.open(process.argv[2]);
const waiting = new Map();
let nextId = 0;
process.on('message', (m) => {
  const w = waiting.get(m.id);
  if (!w) return;
  waiting.delete(m.id);
  if (m.ok) w.resolve(m.body);
  else w.reject(Object.assign(new Error(m.message), { code: 'ERR_CHANNEL_REMOTE', remoteCode: m.code }));
});
const transport = {
  async connect() {
    const conn = nextId++;
    const exporter = randomBytes(32);
    return {
      exporter,
      request: (type, body) => new Promise((resolve, reject) => {
        const id = nextId++;
        waiting.set(id, { resolve, reject });
        process.send({ conn, exporter: exporter.toString('base64'), id, type, body });
      }),
      close: () => process.send({ conn, close: true }),
    };
  },
};
const keys = new Map();
let sending;
const neg = new Negotiator({
  localName: 'alpha',
  cryptAlgos: parseCryptAlgos('aes256gcm:256:1'),
  compAlgos: parseCompAlgos('none:0:1'),
  store,
  transport,
  events: {
    onSession(peer, p, o) {
      keys.set(p.localIndex, p);
      if (o.primary) sending = { p, epoch: p.txEpoch, counter: 0 };
    },
    onPromote(peer, idx) { const p = keys.get(idx); sending = { p, epoch: p.txEpoch, counter: 0 }; },
    onRetire() {},
    onTxEpoch(peer, idx, e) { if (sending && sending.p.localIndex === idx) { sending.epoch = e; sending.counter = 0; } },
  },
});
// the "data plane": send packets numbered (key, epoch, counter) from counter 0
const burst = () => {
  if (sending) {
    let out = '';
    const key = sending.p.txKey.subarray(0, 4).toString('hex');
    for (let i = 0; i < 50; i++) out += key + ' ' + sending.epoch + ' ' + sending.counter++ + '\\n';
    writeSync(1, out);
  }
  setImmediate(burst);
};
neg.start();
neg.ensureSession('bravo').then(burst, (err) => { process.stderr.write(String(err) + '\\n'); process.exit(3); });
`;

/** bravo, in this process: answers the child's requests with its Negotiator's handlers. */
function makeBravo(): { neg: Negotiator; serve(child: ChildProcess): void; negotiations: number; lostReplies: number } {
  const handlers = new Map<string, (body: unknown, ctx: IncomingContext) => unknown>();
  const neg = new Negotiator({
    localName: 'bravo',
    cryptAlgos: parseCryptAlgos('aes256gcm:256:1'),
    compAlgos: parseCompAlgos('none:0:1'),
    store: new MemoryStore(),
    transport: { connect: () => Promise.reject(Object.assign(new Error('bravo never connects'), { code: 'ERR_CHANNEL_CLOSED' })) },
    events: { onSession() {}, onPromote() {}, onRetire() {}, onTxEpoch() {} },
  });
  neg.attach({ handle: (type, h) => void handlers.set(type, h) });
  const bravo = {
    neg,
    negotiations: 0,
    lostReplies: 0,
    serve(child: ChildProcess) {
      const conns = new Map<number, { ctx: IncomingContext; closers: Array<() => void> }>();
      child.on('message', (raw) => {
        const m = raw as { conn: number; exporter?: string; id?: number; type?: string; body?: unknown; close?: boolean };
        let c = conns.get(m.conn);
        if (m.close) {
          for (const fn of c?.closers.splice(0) ?? []) fn();
          conns.delete(m.conn);
          return;
        }
        if (!c) {
          const closers: Array<() => void> = [];
          c = { closers, ctx: { peer: { name: 'alpha' }, exporter: Buffer.from(m.exporter!, 'base64'), state: new Map(), onClose: (fn) => closers.push(fn) } };
          conns.set(m.conn, c);
        }
        if (m.type === 'negotiate') bravo.negotiations++;
        let reply: object;
        try {
          reply = { id: m.id, ok: true, body: handlers.get(m.type!)!(m.body, c.ctx) ?? null };
        } catch (err) {
          reply = { id: m.id, ok: false, code: (err as { code?: string }).code ?? 'ERR_INTERNAL', message: (err as Error).message };
        }
        if (child.connected) child.send(reply);
        else bravo.lostReplies++; // killed mid-request: counted, the child never sees the answer
      });
      child.on('exit', () => {
        for (const c of conns.values()) for (const fn of c.closers.splice(0)) fn();
      });
    },
  };
  return bravo;
}

function runOnce(script: string, db: string, killAfterMs: number, bravo: ReturnType<typeof makeBravo>): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, db], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
    bravo.serve(child);
    let out = '';
    let err = '';
    let timer: NodeJS.Timeout | undefined;
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (d: string) => {
      out += d;
      if (timer === undefined) timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
    });
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
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

test('SIGKILL mid-traffic, repeatedly: epochs strictly increase, no (key, epoch, counter) repeats, no renegotiation', async () => {
  const db = join(t.dir, 'alpha.db');
  const script = join(t.dir, 'child.mjs');
  writeFileSync(script, CHILD);
  const bravo = makeBravo();

  const seen = new Set<string>();
  let maxEpoch = 0;
  let total = 0;
  let key: string | undefined;
  for (let run = 0; run < 8; run++) {
    const out = await runOnce(script, db, 5 + ((run * 37) % 60), bravo);
    const lines = out.split('\n');
    lines.pop(); // the last line may be cut by the kill
    assert.ok(lines.length > 0, `run ${run} sent nothing`);
    const epochs = new Set<number>();
    for (const line of lines) {
      assert.ok(!seen.has(line), `(key epoch counter) ${line} sent twice`);
      seen.add(line);
      const [k, e] = line.split(' ');
      key ??= k;
      assert.equal(k, key, 'the same session throughout');
      epochs.add(Number(e));
    }
    assert.equal(epochs.size, 1);
    const epoch = [...epochs][0]!;
    assert.ok(epoch > maxEpoch, `run ${run}: epoch ${epoch} not above ${maxEpoch}`);
    maxEpoch = epoch;
    total += lines.length;
  }
  bravo.neg.stop();
  const after = StateStore.open(db);
  const s = after.getSession('bravo')!;
  after.close();
  assert.equal(s.sendEpoch, maxEpoch);
  assert.equal(bravo.negotiations, 1, 'negotiated once, resumed on every later start');
  assert.ok(total > 8);
});
