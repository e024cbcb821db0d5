/**
 * The CA and certificate operations on files (what `cluevpn ca` / `cluevpn
 * cert` run). Layout:
 *
 *   CA directory (mode 0700):   ca.key (0600)  ca.crt (0644)
 *   node output directory:      NAME.key (0600)  NAME.csr  NAME.crt  ca.crt
 *
 * Every file is written atomically; nothing is overwritten unless `force`
 * is set (`ERR_CA_EXISTS`), and all targets are checked before the first
 * write, so a refused command changes nothing.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomicSync } from '@cluevpn/atomic-file';
import {
  createCa,
  createCsr,
  csrCommonName,
  fingerprintPem,
  generatePrivateKeyPem,
  issueCertificate,
  isValidNodeName,
  signCsr,
  type CaMaterial,
  type Fingerprint,
} from './ca.js';
import { CaError } from './errors.js';

/** Specification: the CA key file name inside a CA directory. */
export const CA_KEY_FILE = 'ca.key';
/** Specification: the CA certificate file name inside a CA directory (and next to node credentials). */
export const CA_CERT_FILE = 'ca.crt';

/** Result of a file operation: the files written and the certificate's fingerprint. */
export interface WrittenFiles {
  files: string[];
  fingerprint?: Fingerprint;
  /** Common name of the certificate written. */
  cn?: string;
}

function readText(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? String(err);
    throw new CaError('ERR_CA_INPUT', `cannot read ${what} ${file}: ${code}`, { cause: err });
  }
}

function ensureDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new CaError('ERR_CA_INPUT', `cannot create directory ${dir}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, { cause: err });
  }
}

function refuseExisting(files: string[], force: boolean): void {
  if (force) return;
  const there = files.filter((f) => existsSync(f));
  if (there.length > 0) throw new CaError('ERR_CA_EXISTS', `${there.join(', ')} already exist${there.length === 1 ? 's' : ''}; use --force to overwrite`);
}

function write(file: string, data: string, mode: number, force: boolean): void {
  try {
    writeFileAtomicSync(file, data, { mode, overwrite: force });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') throw new CaError('ERR_CA_EXISTS', `${file} already exists; use --force to overwrite`, { cause: err });
    throw new CaError('ERR_CA_INPUT', `cannot write ${file}: ${code ?? String(err)}`, { cause: err });
  }
}

/** Loads a CA directory (`ca.key`, `ca.crt`). Throws `ERR_CA_INPUT`. */
export function loadCaDir(dir: string): CaMaterial {
  return { keyPem: readText(join(dir, CA_KEY_FILE), 'CA key'), certPem: readText(join(dir, CA_CERT_FILE), 'CA certificate') };
}

/** `ca init`: creates a CA key and self-signed certificate in `dir`. */
export function initCaDir(dir: string, opts: { cn?: string; days?: number; force?: boolean; now?: Date } = {}): WrittenFiles {
  const keyFile = join(dir, CA_KEY_FILE);
  const certFile = join(dir, CA_CERT_FILE);
  ensureDir(dir);
  refuseExisting([keyFile, certFile], opts.force === true);
  const ca = createCa({ cn: opts.cn, days: opts.days, now: opts.now });
  write(keyFile, ca.keyPem, 0o600, opts.force === true);
  write(certFile, ca.certPem, 0o644, opts.force === true);
  return { files: [keyFile, certFile], fingerprint: fingerprintPem(ca.certPem), cn: opts.cn ?? 'ClueVPN CA' };
}

/** `cert request`: a node key (never leaves the node) and a CSR for it in `outDir`. */
export function requestCertFiles(name: string, outDir: string, opts: { force?: boolean } = {}): WrittenFiles {
  if (!isValidNodeName(name)) throw new CaError('ERR_CA_INPUT', `"${name}" is not a valid node name (1-63 of A-Z a-z 0-9 _ . -, starting with a letter or digit)`);
  const keyFile = join(outDir, `${name}.key`);
  const csrFile = join(outDir, `${name}.csr`);
  ensureDir(outDir);
  refuseExisting([keyFile, csrFile], opts.force === true);
  const keyPem = generatePrivateKeyPem();
  const csrPem = createCsr(name, keyPem);
  write(keyFile, keyPem, 0o600, opts.force === true);
  write(csrFile, csrPem, 0o644, opts.force === true);
  return { files: [keyFile, csrFile], cn: name };
}

/** `cert sign`: signs a CSR file with the CA in `caDir`; default output: the CSR path with `.crt` instead of `.csr`. */
export function signCsrFile(csrFile: string, caDir: string, opts: { days?: number; ou?: string; out?: string; force?: boolean; now?: Date } = {}): WrittenFiles {
  const out = opts.out ?? (csrFile.endsWith('.csr') ? `${csrFile.slice(0, -4)}.crt` : `${csrFile}.crt`);
  const csrPem = readText(csrFile, 'CSR');
  const ca = loadCaDir(caDir);
  refuseExisting([out], opts.force === true);
  const certPem = signCsr(csrPem, ca, { days: opts.days, ou: opts.ou, now: opts.now });
  write(out, certPem, 0o644, opts.force === true);
  return { files: [out], fingerprint: fingerprintPem(certPem), cn: csrCommonName(csrPem) };
}

/** `cert issue`: key + certificate for `name` in one step, plus a copy of the CA certificate, in `outDir`. */
export function issueCertFiles(name: string, caDir: string, outDir: string, opts: { days?: number; ou?: string; force?: boolean; now?: Date } = {}): WrittenFiles {
  if (!isValidNodeName(name)) throw new CaError('ERR_CA_INPUT', `"${name}" is not a valid node name (1-63 of A-Z a-z 0-9 _ . -, starting with a letter or digit)`);
  const ca = loadCaDir(caDir);
  const keyFile = join(outDir, `${name}.key`);
  const certFile = join(outDir, `${name}.crt`);
  const caCopy = join(outDir, CA_CERT_FILE);
  ensureDir(outDir);
  const caCopySame = existsSync(caCopy) && readText(caCopy, 'CA certificate') === ca.certPem;
  refuseExisting(caCopySame ? [keyFile, certFile] : [keyFile, certFile, caCopy], opts.force === true);
  const creds = issueCertificate(name, ca, { days: opts.days, ou: opts.ou, now: opts.now });
  write(keyFile, creds.keyPem, 0o600, opts.force === true);
  write(certFile, creds.certPem, 0o644, opts.force === true);
  if (!caCopySame) write(caCopy, ca.certPem, 0o644, opts.force === true);
  return { files: caCopySame ? [keyFile, certFile] : [keyFile, certFile, caCopy], fingerprint: fingerprintPem(creds.certPem), cn: name };
}
