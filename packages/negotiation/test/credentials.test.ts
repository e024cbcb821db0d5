/**
 * Issue 18 §3: credentials checked as a whole before use (`loadCredentials`),
 * and a control server that switches to new credentials for new handshakes
 * (`setCredentials`) while open connections go on; a CA bundle with two CAs
 * (a rollover) verifies nodes of either.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  CredentialsError,
  connectControl,
  createControlServer,
  fingerprintPem,
  generatePrivateKeyPem,
  issueCertificate,
  loadCredentials,
  splitPemCertificates,
  type ControlCredentials,
  type CredentialFiles,
} from '../src/index.js';
import { makeTestPki, tempDir, type TestPki } from './helpers.js';

let pki: TestPki;
let tmp: ReturnType<typeof tempDir>;
let otherKey: string;
before(() => {
  pki = makeTestPki();
  tmp = tempDir('creds-');
  otherKey = generatePrivateKeyPem(2048);
});
after(() => tmp.cleanup());

let n = 0;
/** Writes the three files (fresh names each time) and returns their paths. */
function files(certPem: string, keyPem: string, caPem: string): CredentialFiles {
  n++;
  const f = { cert: join(tmp.dir, `${n}.crt`), privkey: join(tmp.dir, `${n}.key`), cacert: join(tmp.dir, `${n}-ca.crt`) };
  writeFileSync(f.cert, certPem);
  writeFileSync(f.privkey, keyPem);
  writeFileSync(f.cacert, caPem);
  return f;
}

/** Asserts that `fn` throws `ERR_CREDENTIALS` about `key` (its file) for `reason`. */
function refused(fn: () => unknown, key: CredentialsError['key'], reason: CredentialsError['reason'], f: CredentialFiles): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof CredentialsError, String(err));
    assert.equal(err.code, 'ERR_CREDENTIALS');
    assert.equal(err.key, key);
    assert.equal(err.reason, reason);
    assert.equal(err.file, f[key]);
    assert.ok(err.message.includes(f[key]), 'the message names the file');
    assert.ok(!err.message.includes('PRIVATE KEY'), 'no key material in the message');
    return true;
  });
}

describe('loadCredentials', () => {
  test('good files load; the fingerprint is the certificate pin', () => {
    const c = pki.node('alpha');
    const l = loadCredentials(files(c.certPem, c.keyPem, pki.ca.certPem), 'alpha');
    assert.equal(l.fingerprint.hex, fingerprintPem(c.certPem).hex);
    assert.deepEqual(l.credentials, { certPem: c.certPem.trim(), keyPem: c.keyPem, caPem: pki.ca.certPem });
    assert.equal(l.cas.length, 1);
  });

  test('each fault is refused with its file and reason', () => {
    const c = pki.node('alpha');
    const f1 = files(c.certPem, c.keyPem, pki.ca.certPem);
    refused(() => loadCredentials({ ...f1, privkey: join(tmp.dir, 'missing.key') }, 'alpha'), 'privkey', 'unreadable', { ...f1, privkey: join(tmp.dir, 'missing.key') });
    const f2 = files('not a certificate', c.keyPem, pki.ca.certPem);
    refused(() => loadCredentials(f2, 'alpha'), 'cert', 'unparsable', f2);
    const f3 = files(c.certPem, 'garbage', pki.ca.certPem);
    refused(() => loadCredentials(f3, 'alpha'), 'privkey', 'unparsable', f3);
    const f4 = files(c.certPem, otherKey, pki.ca.certPem);
    refused(() => loadCredentials(f4, 'alpha'), 'privkey', 'key-mismatch', f4);
    const f5 = files(c.certPem, c.keyPem, pki.ca.certPem);
    refused(() => loadCredentials(f5, 'bravo'), 'cert', 'wrong-name', f5);
    const f6 = files(c.certPem, c.keyPem, 'no CA here');
    refused(() => loadCredentials(f6, 'alpha'), 'cacert', 'unparsable', f6);
    const f7 = files(c.certPem, c.keyPem, pki.otherCa.certPem);
    refused(() => loadCredentials(f7, 'alpha'), 'cert', 'untrusted', f7);
    const old = pki.node('alpha', { days: 1, now: new Date(Date.now() - 3 * 86_400_000) });
    const f8 = files(old.certPem, old.keyPem, pki.ca.certPem);
    refused(() => loadCredentials(f8, 'alpha'), 'cert', 'expired', f8);
  });

  test('a CA bundle with two CAs accepts a certificate of either', () => {
    const bundle = `${pki.ca.certPem}${pki.otherCa.certPem}`;
    assert.equal(splitPemCertificates(bundle).length, 2);
    const byOld = pki.node('alpha');
    const byNew = pki.node('alpha', { ca: pki.otherCa });
    assert.equal(loadCredentials(files(byOld.certPem, byOld.keyPem, bundle), 'alpha').cas.length, 2);
    assert.equal(loadCredentials(files(byNew.certPem, byNew.keyPem, bundle), 'alpha').fingerprint.hex, fingerprintPem(byNew.certPem).hex);
    // and the bundle is really needed for the new CA's certificate
    const f = files(byNew.certPem, byNew.keyPem, pki.ca.certPem);
    refused(() => loadCredentials(f, 'alpha'), 'cert', 'untrusted', f);
  });
});

describe('ControlServer.setCredentials', () => {
  test('new handshakes present the new certificate; an open connection goes on', async () => {
    const before = pki.node('alpha');
    const reissued = issueCertificate('alpha', pki.ca, { keyPem: otherKey }); // re-issued: a new key
    const server = await createControlServer({ host: '127.0.0.1', port: 0, credentials: { ...before, caPem: pki.ca.certPem }, authorize: () => ({ ok: true }) });
    server.handle('echo', (body) => body);
    const client: ControlCredentials = { ...pki.node('bravo'), caPem: pki.ca.certPem };
    const dial = () => connectControl({ host: '127.0.0.1', port: server.port, peerName: 'alpha', credentials: client });
    try {
      const old = await dial();
      assert.equal(old.peer.fingerprint, fingerprintPem(before.certPem).hex);
      server.setCredentials({ ...reissued, caPem: pki.ca.certPem });
      const fresh = await dial();
      assert.equal(fresh.peer.fingerprint, fingerprintPem(reissued.certPem).hex, 'a new connection sees the re-issued certificate');
      assert.deepEqual(await old.request('echo', { still: 'open' }), { still: 'open' }, 'the connection opened before the switch is served');
      assert.deepEqual(await fresh.request('echo', 1), 1);
      old.close();
      fresh.close();
      // a key that is not the certificate's is refused by TLS and changes nothing
      assert.throws(() => server.setCredentials({ certPem: before.certPem, keyPem: otherKey, caPem: pki.ca.certPem }));
      const again = await dial();
      assert.equal(again.peer.fingerprint, fingerprintPem(reissued.certPem).hex);
      again.close();
    } finally {
      await server.close();
    }
  });

  test('with a bundle of two CAs, nodes of either CA authenticate both ways', async () => {
    const bundle = `${pki.ca.certPem}${pki.otherCa.certPem}`;
    const server = await createControlServer({ host: '127.0.0.1', port: 0, credentials: { ...pki.node('alpha'), caPem: pki.ca.certPem }, authorize: () => ({ ok: true }) });
    server.handle('echo', (body) => body);
    const byNewCa: ControlCredentials = { ...pki.node('bravo', { ca: pki.otherCa }), caPem: bundle };
    const dial = () => connectControl({ host: '127.0.0.1', port: server.port, peerName: 'alpha', credentials: byNewCa });
    try {
      // the server knows only the old CA: the new CA's node is refused
      const before = server.stats().refused['untrusted-certificate'] ?? 0;
      await dial().then(
        (c) => {
          // TLS 1.3: the client may finish before the server refuses; the first request then fails
          return c.request('echo', 1).then(
            () => assert.fail('a node of an unknown CA was served'),
            () => c.close(),
          );
        },
        () => undefined,
      );
      await new Promise((r) => setTimeout(r, 50));
      assert.equal((server.stats().refused['untrusted-certificate'] ?? 0) - before, 1, 'refused as untrusted');
      // the server switches to the bundle (its own certificate by the new CA, too): accepted
      server.setCredentials({ ...pki.node('alpha', { ca: pki.otherCa }), caPem: bundle });
      const c = await dial();
      assert.deepEqual(await c.request('echo', 'ok'), 'ok');
      c.close();
      // and a node of the old CA with the bundle is still accepted
      const byOldCa = await connectControl({ host: '127.0.0.1', port: server.port, peerName: 'alpha', credentials: { ...pki.node('carol'), caPem: bundle } });
      assert.deepEqual(await byOldCa.request('echo', 'old'), 'old');
      byOldCa.close();
    } finally {
      await server.close();
    }
  });
});
