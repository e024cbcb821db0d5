/**
 * `cluevpn ca …` and `cluevpn cert …`: the network CA on files.
 *
 * ```
 * cluevpn ca init --dir DIR [--cn NAME] [--days N] [--force]
 * cluevpn cert request NAME --out DIR [--force]
 * cluevpn cert sign CSR --ca DIR [--days N] [--ou OU] [--out FILE] [--force]
 * cluevpn cert issue NAME --ca DIR --out DIR [--days N] [--ou OU] [--force]
 * cluevpn cert show FILE
 * ```
 *
 * Exit codes (the same as the rest of `cluevpn`): 0 success (`cert show`
 * also when expiry is near: a warning goes to stderr); 1 the operation
 * failed — bad or missing input file, invalid CSR, a file that already
 * exists (use --force), or `cert show` of an expired / not yet valid
 * certificate (details are still printed); 2 usage error. Errors are one
 * line on stderr, no stack trace.
 */
import { Command, InvalidArgumentError } from 'commander';
import {
  DEFAULT_CA_DAYS,
  DEFAULT_CERT_DAYS,
  EXPIRY_WARNING_DAYS,
  CaError,
  describeCertificate,
  initCaDir,
  issueCertFiles,
  requestCertFiles,
  signCsrFile,
  type Fingerprint,
} from '@cluevpn/negotiation';
import { readFileSync } from 'node:fs';

/** Where the commands write (tests capture it); default: process stdout/stderr. */
export interface CaCommandIo {
  out(text: string): void;
  err(text: string): void;
  /** Clock for `cert show` (tests). */
  now?(): Date;
}

const processIo: CaCommandIo = {
  out: (t) => void process.stdout.write(t),
  err: (t) => void process.stderr.write(t),
};

function days(v: string): number {
  if (!/^\d{1,5}$/.test(v) || Number(v) < 1 || Number(v) > 36500) throw new InvalidArgumentError('must be a whole number of days, 1-36500');
  return Number(v);
}

function fingerprintLines(fp: Fingerprint): string {
  return `SHA-256 fingerprint: ${fp.colon}\n  (for the BNL pin:)  ${fp.hex}\n`;
}

/**
 * Adds `ca` and `cert` to `program`. Actions throw `CaError` (stable
 * `code`, one-line message) on failure; the `cluevpn` entry point prints
 * it as `cluevpn: MESSAGE` and exits 1.
 */
export function registerCaCommands(program: Command, io: CaCommandIo = processIo): void {
  const ca = program.command('ca').description('the network CA (keep its directory offline)');
  ca.command('init')
    .description(`create a CA key (RSA 3072, mode 0600) and self-signed certificate in DIR (default validity ${DEFAULT_CA_DAYS} days)`)
    .requiredOption('--dir <dir>', 'CA directory (created 0700 if missing)')
    .option('--cn <name>', 'CA common name', 'ClueVPN CA')
    .option('--days <n>', 'validity in days', days, DEFAULT_CA_DAYS)
    .option('--force', 'overwrite an existing CA (destroys the old key!)')
    .action((o: { dir: string; cn: string; days: number; force?: boolean }) => {
      const r = initCaDir(o.dir, { cn: o.cn, days: o.days, force: o.force === true });
      io.out(`created CA "${r.cn}"\n  key:         ${r.files[0]} (mode 0600; keep it offline)\n  certificate: ${r.files[1]} (give it to every node as cacert)\n${fingerprintLines(r.fingerprint!)}`);
    });

  const cert = program.command('cert').description('node certificates');
  cert
    .command('request')
    .description('on the node: create its key (never leaves the node) and a CSR to send to the CA host')
    .argument('<name>', 'node name (the certificate CN; must equal `name` in cluevpn.conf)')
    .requiredOption('--out <dir>', 'directory for NAME.key and NAME.csr')
    .option('--force', 'overwrite existing files')
    .action((name: string, o: { out: string; force?: boolean }) => {
      const r = requestCertFiles(name, o.out, { force: o.force === true });
      io.out(`key: ${r.files[0]} (mode 0600; stays on this node)\nCSR: ${r.files[1]} -> on the CA host: cluevpn cert sign ${r.files[1]} --ca CA_DIR\n`);
    });

  cert
    .command('sign')
    .description(`on the CA host: sign a CSR (default validity ${DEFAULT_CERT_DAYS} days); only its CN and key are used`)
    .argument('<csr>', 'CSR file')
    .requiredOption('--ca <dir>', 'CA directory (ca.key, ca.crt)')
    .option('--days <n>', 'validity in days', days, DEFAULT_CERT_DAYS)
    .option('--ou <ou>', 'organisational unit (restrictouname)')
    .option('--out <file>', 'certificate file (default: the CSR path with .crt)')
    .option('--force', 'overwrite an existing certificate file')
    .action((csr: string, o: { ca: string; days: number; ou?: string; out?: string; force?: boolean }) => {
      const r = signCsrFile(csr, o.ca, { days: o.days, ou: o.ou, out: o.out, force: o.force === true });
      io.out(`signed "${r.cn}": ${r.files[0]}\n${fingerprintLines(r.fingerprint!)}`);
    });

  cert
    .command('issue')
    .description('on the CA host, one step: key + certificate for NAME, plus ca.crt, in DIR (ship them to the node securely)')
    .argument('<name>', 'node name (certificate CN)')
    .requiredOption('--ca <dir>', 'CA directory (ca.key, ca.crt)')
    .requiredOption('--out <dir>', 'output directory')
    .option('--days <n>', 'validity in days', days, DEFAULT_CERT_DAYS)
    .option('--ou <ou>', 'organisational unit (restrictouname)')
    .option('--force', 'overwrite existing files')
    .action((name: string, o: { ca: string; out: string; days: number; ou?: string; force?: boolean }) => {
      const r = issueCertFiles(name, o.ca, o.out, { days: o.days, ou: o.ou, force: o.force === true });
      io.out(`issued "${name}":\n${r.files.map((f) => `  ${f}\n`).join('')}${fingerprintLines(r.fingerprint!)}`);
    });

  cert
    .command('show')
    .description(`print subject, issuer, validity and fingerprint; warn when expiry is within ${EXPIRY_WARNING_DAYS} days`)
    .argument('<file>', 'certificate (PEM)')
    .action((file: string) => {
      let pem: string;
      try {
        pem = readFileSync(file, 'utf8');
      } catch (err) {
        throw new CaError('ERR_CA_INPUT', `cannot read certificate ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, { cause: err });
      }
      const now = io.now?.() ?? new Date();
      const i = describeCertificate(pem, now);
      io.out(
        `subject:     ${i.subject}\n` +
          `issuer:      ${i.issuer}\n` +
          `serial:      ${i.serial}\n` +
          `CA:          ${i.isCa ? 'yes' : 'no'}\n` +
          `not before:  ${i.notBefore.toISOString()}\n` +
          `not after:   ${i.notAfter.toISOString()} (${i.status}${i.status === 'expired' ? '' : `, ${i.daysLeft} days left`})\n` +
          fingerprintLines(i.fingerprint),
      );
      if (i.status === 'expiring') io.err(`cluevpn: warning: ${file} expires in ${i.daysLeft} days (${i.notAfter.toISOString()}); issue a new certificate\n`);
      if (i.status === 'expired') throw new CaError('ERR_CA_INVALID', `${file} expired on ${i.notAfter.toISOString()}; issue a new certificate`);
      if (i.status === 'not-yet-valid') throw new CaError('ERR_CA_INVALID', `${file} is not valid before ${i.notBefore.toISOString()}; check the clocks`);
    });
}
