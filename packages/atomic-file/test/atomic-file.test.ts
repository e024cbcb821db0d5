import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { TEMP_FILE_RE, writeFileAtomic, writeFileAtomicSync } from '../src/index.js';

function dir(t: { after(fn: () => void): void }): string {
  const d = mkdtempSync(join(tmpdir(), 'atomic-'));
  t.after(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

for (const [name, write] of [
  ['sync', async (p: string, d: string | Uint8Array, o?: object) => writeFileAtomicSync(p, d, o)],
  ['async', writeFileAtomic],
] as const) {
  test(`${name}: replaces the content, applies the mode, leaves no temporary file`, async (t) => {
    const d = dir(t);
    const f = join(d, 'state');
    writeFileSync(f, 'old');
    await write(f, 'new content', { mode: 0o600 });
    assert.equal(readFileSync(f, 'utf8'), 'new content');
    assert.equal(statSync(f).mode & 0o777, 0o600);
    assert.deepEqual(readdirSync(d), ['state']);
  });

  test(`${name}: durable false still replaces atomically with the mode (only the fsyncs are skipped)`, async (t) => {
    const d = dir(t);
    const f = join(d, 'pid');
    writeFileSync(f, '1\n');
    await write(f, '4242\n', { mode: 0o640, durable: false });
    assert.equal(readFileSync(f, 'utf8'), '4242\n');
    assert.equal(statSync(f).mode & 0o777, 0o640);
    assert.deepEqual(readdirSync(d), ['pid']);
  });

  test(`${name}: overwrite false refuses an existing target with EEXIST and keeps it`, async (t) => {
    const d = dir(t);
    const f = join(d, 'key');
    await write(f, Buffer.from([1, 2, 3]), { overwrite: false });
    await assert.rejects(async () => write(f, 'other', { overwrite: false }), (e: NodeJS.ErrnoException) => e.code === 'EEXIST');
    assert.deepEqual([...readFileSync(f)], [1, 2, 3]);
    assert.deepEqual(readdirSync(d), ['key']);
  });

  test(`${name}: a failing write leaves the target untouched and no temporary file`, async (t) => {
    const d = dir(t);
    const f = join(d, 'gone', 'file'); // the directory does not exist
    await assert.rejects(async () => write(f, 'x'), (e: NodeJS.ErrnoException) => e.code === 'ENOENT');
    assert.deepEqual(readdirSync(d), []);
  });
}

test('temporary names are recognisable with the writer pid', () => {
  const m = TEMP_FILE_RE.exec(`.bnl.${process.pid}.0123456789ab.tmp`);
  assert.equal(m?.[1], 'bnl');
  assert.equal(Number(m?.[2]), process.pid);
  assert.equal(TEMP_FILE_RE.exec('.bnl.tmp'), null);
});
