/**
 * A node's control-channel credentials read from its files and checked as a
 * whole before anyone uses them (at start and on every reload):
 *
 *  1. read `cert`, `privkey`, `cacert` (each error names its file)
 *  2. the certificate parses (the first PEM block of `cert`)
 *  3. the key parses and is the certificate's key
 *  4. the certificate's CN is our node name
 *  5. `cacert` holds one or more CA certificates (a bundle during a CA
 *     rollover), each parsing
 *  6. the certificate was issued and signed by one of them, and is within
 *     its validity period
 *
 * Uses Node's `X509Certificate`, not node-forge: the daemon never loads forge.
 */
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { ControlCredentials } from './channel.js';
import { fingerprintDer, type Fingerprint } from './ca.js';
import { CredentialsError, type CredentialsFileKey } from './errors.js';

/** Where a node's credentials are (the daemon's config keys of the same names). */
export interface CredentialFiles {
  cert: string;
  privkey: string;
  cacert: string;
}

/** Checked credentials: what the control channel uses, and what to log about them (never the key). */
export interface LoadedCredentials {
  credentials: ControlCredentials;
  /** Fingerprint of our certificate (the pin the list should carry). */
  fingerprint: Fingerprint;
  /** Subjects of the CA certificates in the bundle, in file order. */
  cas: string[];
  /** The certificate's `validTo`, as X509Certificate prints it. */
  validTo: string;
}

const PEM_CERT_RE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** The certificates of a PEM file, in order (a CA bundle holds several). */
export function splitPemCertificates(pem: string): string[] {
  return pem.match(PEM_CERT_RE) ?? [];
}

function readText(file: string, key: CredentialsFileKey): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new CredentialsError(key, file, 'unreadable', `cannot read (${(err as NodeJS.ErrnoException).code ?? 'EIO'})`, { cause: err });
  }
}

function parseCert(pem: string, key: CredentialsFileKey, file: string, what: string): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch (err) {
    throw new CredentialsError(key, file, 'unparsable', `${what} is not a PEM certificate`, { cause: err });
  }
}

/** The CN of an `X509Certificate#subject` (`C=…\nCN=…\nOU=…`). */
function commonName(subject: string): string | undefined {
  for (const line of subject.split('\n')) if (line.startsWith('CN=')) return line.slice(3);
  return undefined;
}

/**
 * Reads and checks steps 1–6 above. Throws `CredentialsError`
 * (`ERR_CREDENTIALS`, with `key`, `file` and `reason`) at the first failure;
 * nothing is returned half checked. `now` is for tests.
 */
export function loadCredentials(files: CredentialFiles, nodeName: string, now: Date = new Date()): LoadedCredentials {
  // 1. read
  const certText = readText(files.cert, 'cert');
  const keyPem = readText(files.privkey, 'privkey');
  const caPem = readText(files.cacert, 'cacert');
  // 2. certificate
  const certPem = splitPemCertificates(certText)[0];
  if (certPem === undefined) throw new CredentialsError('cert', files.cert, 'unparsable', 'holds no PEM certificate');
  const cert = parseCert(certPem, 'cert', files.cert, 'the certificate');
  // 3. key
  let key: KeyObject;
  try {
    key = createPrivateKey(keyPem);
  } catch (err) {
    throw new CredentialsError('privkey', files.privkey, 'unparsable', 'is not an unencrypted PEM private key', { cause: err });
  }
  if (!cert.checkPrivateKey(key)) throw new CredentialsError('privkey', files.privkey, 'key-mismatch', `is not the key of the certificate in ${files.cert}`);
  // 4. our name
  const cn = commonName(cert.subject);
  if (cn !== nodeName) throw new CredentialsError('cert', files.cert, 'wrong-name', `is issued to CN "${cn ?? ''}", not to this node (name=${nodeName})`);
  // 5. CA bundle
  const caPems = splitPemCertificates(caPem);
  if (caPems.length === 0) throw new CredentialsError('cacert', files.cacert, 'unparsable', 'holds no PEM certificate');
  const cas = caPems.map((p, i) => parseCert(p, 'cacert', files.cacert, `certificate ${i + 1}`));
  // 6. chained to one of them, and valid now
  if (!cas.some((ca) => cert.checkIssued(ca) && cert.verify(ca.publicKey))) {
    throw new CredentialsError('cert', files.cert, 'untrusted', `is not signed by ${cas.length === 1 ? 'the CA' : `any of the ${cas.length} CAs`} in ${files.cacert}`);
  }
  const t = now.getTime();
  if (t < Date.parse(cert.validFrom)) throw new CredentialsError('cert', files.cert, 'not-yet-valid', `is valid only from ${cert.validFrom}`);
  if (t > Date.parse(cert.validTo)) throw new CredentialsError('cert', files.cert, 'expired', `expired on ${cert.validTo}`);
  return {
    credentials: { certPem, keyPem, caPem },
    fingerprint: fingerprintDer(cert.raw),
    cas: cas.map((c) => c.subject.replace(/\n/g, ', ')),
    validTo: cert.validTo,
  };
}
