import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BnlStore, createTrust, generateSigningKey, parseBnl, verifyBnl } from '../src/index.js';

const writer = fileURLToPath(new URL('./fixtures/writer.js', import.meta.url));

function runAndKill(path: string, pem: string, delayMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [writer], { env: { ...process.env, BNL_WRITER_PATH: path, BNL_WRITER_KEY: pem }, stdio: ['ignore', 'pipe', 'pipe'] });
    let last = 0;
    let timer: NodeJS.Timeout | undefined;
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout.on('data', (d: Buffer) => {
      const lines = d.toString().trim().split('\n');
      last = Number(lines[lines.length - 1]);
      timer ??= setTimeout(() => child.kill('SIGKILL'), delayMs);
    });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (timer) clearTimeout(timer);
      if (signal !== 'SIGKILL') reject(new Error(`writer exited with ${code}: ${stderr}`));
      else resolve(last);
    });
  });
}

test('atomic write: a writer SIGKILLed at random moments always leaves a whole, verifying list that never goes back', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'bnl-kill-'));
  try {
    const key = generateSigningKey();
    const trust = createTrust([key.publicKey]);
    const path = join(dir, 'bnl');
    let prevSerial = 0;
    const rounds = 15;
    for (let i = 0; i < rounds; i++) {
      const reported = await runAndKill(path, key.privateKeyPem, Math.floor(Math.random() * 40));
      const list = parseBnl(await readFile(path));
      verifyBnl(list, trust);
      assert.ok(list.bnl.serial >= reported, `file serial ${list.bnl.serial} behind reported ${reported}`);
      assert.ok(list.bnl.serial >= prevSerial, 'list went back');
      prevSerial = list.bnl.serial;
      // the store itself opens it and clears temporaries of the dead writer
      const store = await BnlStore.open({ path, trust });
      assert.equal(store.current?.hash, list.hash);
      await store.reloadFromDisk(); // the read that cleans up stale temporaries has happened
      assert.deepEqual((await readdir(dir)).filter((n) => n.endsWith('.tmp')), []);
    }
    assert.ok(prevSerial > rounds, `writer made progress (${prevSerial} lists)`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
