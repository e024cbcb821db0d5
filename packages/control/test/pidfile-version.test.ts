/** `livePid` (the daemon's pidfile) and the version text both ends print. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { CLUEVPN_VERSION, livePid, versionText } from '../src/index.js';

test('livePid: the pid of a live process; null for a missing file, garbage, pid 0/1 or a dead process', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ctl-pid-'));
  const file = join(dir, 'cluevpnd.pid');
  try {
    assert.equal(livePid(file), null, 'no file');
    writeFileSync(file, `${process.pid}\n`);
    assert.equal(livePid(file), process.pid);
    for (const junk of ['', 'abc', '12abc', '-5', '0', '1', '3.5', ' \n']) {
      writeFileSync(file, junk);
      assert.equal(livePid(file), null, JSON.stringify(junk));
    }
    // a process that has exited
    const child = spawn(process.execPath, ['-e', '']);
    const pid = child.pid!;
    await new Promise((r) => child.on('exit', r));
    writeFileSync(file, String(pid));
    assert.equal(livePid(file), null, 'dead pid');
    // other read errors are not swallowed
    assert.throws(() => livePid(dir), { code: 'EISDIR' });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the version constant is the root package.json version; versionText names tool, version and node', () => {
  const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..', 'package.json');
  assert.equal(CLUEVPN_VERSION, (JSON.parse(readFileSync(root, 'utf8')) as { version: string }).version);
  assert.equal(versionText('cluevpnd'), `cluevpnd ${CLUEVPN_VERSION} (node ${process.version})`);
});
