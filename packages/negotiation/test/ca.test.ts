import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  createCsr,
  describeCertificate,
  fingerprintPem,
  generatePrivateKeyPem,
  initCaDir,
  issueCertFiles,
  normalizeFingerprint,
  requestCertFiles,
  signCsr,
  signCsrFile,
  type CaMaterial,
} from '../src/index.js';
import { makeTestPki, tempDir, type TestPki } from './helpers.js';

let pki: TestPki;
let nodeKey: string;
before(() => {
  pki = makeTestPki();
  nodeKey = generatePrivateKeyPem(2048);
});

describe('certificates', () => {
  test('node certificate: CN, OU, usages, chain, fingerprint', () => {
    const csr = createCsr('alpha', nodeKey);
    const pem = signCsr(csr, pki.ca, { ou: 'mesh', days: 10 });
    const x = new X509Certificate(pem);
    const caX = new X509Certificate(pki.ca.certPem);
    assert.equal(x.verify(caX.publicKey), true);
    assert.equal(x.checkIssued(caX), true);
    assert.match(x.subject, /CN=alpha/);
    assert.match(x.subject, /OU=mesh/);
    assert.equal(x.ca, false);
    assert.equal(caX.ca, true);
    assert.deepEqual([...(x.keyUsage ?? [])].sort(), ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']);
    assert.equal(fingerprintPem(pem).colon, x.fingerprint256);
    assert.equal(normalizeFingerprint(x.fingerprint256), fingerprintPem(pem).hex);
    const info = describeCertificate(pem);
    assert.equal(info.subjectCn, 'alpha');
    assert.equal(info.subjectOu, 'mesh');
    assert.equal(info.status, 'expiring');
    assert.equal(info.isCa, false);
    assert.match(info.issuer, /CN=Test CA/);
  });

  test('random serials differ', () => {
    const a = describeCertificate(pki.node('a').certPem).serial;
    const b = describeCertificate(pki.node('a').certPem).serial;
    assert.notEqual(a, b);
  });

  test('status: expired, not yet valid, valid', () => {
    const now = new Date();
    const past = pki.node('old', { now: new Date(now.getTime() - 5 * 86_400_000), days: 1 });
    assert.equal(describeCertificate(past.certPem, now).status, 'expired');
    assert.ok(describeCertificate(past.certPem, now).daysLeft < 0);
    const future = pki.node('new', { now: new Date(now.getTime() + 5 * 86_400_000), days: 100 });
    assert.equal(describeCertificate(future.certPem, now).status, 'not-yet-valid');
    assert.equal(describeCertificate(pki.node('x', { days: 365 }).certPem, now).status, 'valid');
  });

  test('a tampered CSR is refused', () => {
    const csr = createCsr('alpha', nodeKey);
    const other = createCsr('bravo', nodeKey);
    // splice bravo's subject signature onto alpha's body: take the body of one and the tail of the other
    const a = Buffer.from(csr.replace(/-----[A-Z ]+-----|\s/g, ''), 'base64');
    const b = Buffer.from(other.replace(/-----[A-Z ]+-----|\s/g, ''), 'base64');
    const mixed = Buffer.concat([a.subarray(0, a.length - 64), b.subarray(b.length - 64)]);
    const pem = `-----BEGIN CERTIFICATE REQUEST-----\n${mixed.toString('base64').replace(/.{64}/g, '$&\n')}\n-----END CERTIFICATE REQUEST-----\n`;
    assert.throws(() => signCsr(pem, pki.ca), { code: 'ERR_CA_INVALID' });
  });

  test('bad input has codes', () => {
    assert.throws(() => createCsr('bad name', nodeKey), { code: 'ERR_CA_INPUT' });
    assert.throws(() => signCsr('not a csr', pki.ca), { code: 'ERR_CA_INPUT' });
    assert.throws(() => signCsr(createCsr('a', nodeKey), pki.ca, { days: 0 }), { code: 'ERR_CA_INPUT' });
    assert.throws(() => signCsr(createCsr('a', nodeKey), pki.ca, { ou: '' }), { code: 'ERR_CA_INPUT' });
    const mismatched: CaMaterial = { keyPem: pki.otherCa.keyPem, certPem: pki.ca.certPem };
    assert.throws(() => signCsr(createCsr('a', nodeKey), mismatched), { code: 'ERR_CA_INVALID' });
    assert.throws(() => describeCertificate('garbage'), { code: 'ERR_CA_INPUT' });
  });
});

describe('files', () => {
  const t = tempDir();
  after(t.cleanup);

  test('init, request, sign, issue: modes, no overwrite without force', () => {
    const caDir = join(t.dir, 'ca');
    const init = initCaDir(caDir, { cn: 'Net CA', days: 30 });
    assert.equal(statSync(join(caDir, 'ca.key')).mode & 0o777, 0o600);
    assert.equal(statSync(caDir).mode & 0o777, 0o700);
    assert.equal(init.fingerprint!.hex, fingerprintPem(readFileSync(join(caDir, 'ca.crt'), 'utf8')).hex);
    const keyBefore = readFileSync(join(caDir, 'ca.key'));
    assert.throws(() => initCaDir(caDir), { code: 'ERR_CA_EXISTS' });
    assert.deepEqual(readFileSync(join(caDir, 'ca.key')), keyBefore);

    const nodeDir = join(t.dir, 'node');
    const req = requestCertFiles('alpha', nodeDir);
    assert.equal(statSync(join(nodeDir, 'alpha.key')).mode & 0o777, 0o600);
    assert.throws(() => requestCertFiles('alpha', nodeDir), { code: 'ERR_CA_EXISTS' });
    assert.equal(req.files.length, 2);
    const signed = signCsrFile(join(nodeDir, 'alpha.csr'), caDir, { ou: 'ops' });
    assert.equal(signed.files[0], join(nodeDir, 'alpha.crt'));
    assert.equal(signed.cn, 'alpha');
    assert.throws(() => signCsrFile(join(nodeDir, 'alpha.csr'), caDir), { code: 'ERR_CA_EXISTS' });
    const again = signCsrFile(join(nodeDir, 'alpha.csr'), caDir, { force: true });
    assert.notEqual(again.fingerprint!.hex, signed.fingerprint!.hex);
    assert.throws(() => signCsrFile(join(nodeDir, 'missing.csr'), caDir), { code: 'ERR_CA_INPUT' });

    const issueDir = join(t.dir, 'issued');
    const issued = issueCertFiles('bravo', caDir, issueDir, { ou: 'ops' });
    assert.equal(issued.files.length, 3);
    const x = new X509Certificate(readFileSync(join(issueDir, 'bravo.crt')));
    assert.equal(x.checkIssued(new X509Certificate(readFileSync(join(issueDir, 'ca.crt')))), true);
    assert.equal(statSync(join(issueDir, 'bravo.key')).mode & 0o777, 0o600);
    // a second node into the same directory shares the identical ca.crt without --force
    assert.equal(issueCertFiles('charlie', caDir, issueDir).files.length, 2);
    // a different CA's ca.crt there is not silently replaced
    writeFileSync(join(issueDir, 'ca.crt'), 'other');
    assert.throws(() => issueCertFiles('delta', caDir, issueDir), { code: 'ERR_CA_EXISTS' });
    assert.equal(readFileSync(join(issueDir, 'ca.crt'), 'utf8'), 'other');
  });
});
