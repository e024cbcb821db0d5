/**
 * The control channel's credentials in use (`cert`, `privkey`, `cacert`)
 * and how they meet this node's pin in the list.
 *
 *  1. read and checked at start (`loadCredentials`, `ERR_STARTUP` naming the file)
 *  2. a reload reads them again; files that pass and differ replace them as a
 *     whole: the control server's TLS context (new handshakes) and the
 *     credentials of new dialled connections; open connections keep what
 *     they authenticated with. Files that fail change nothing
 *     (`ERR_CREDENTIALS` naming the file).
 *  3. the pin: when the current list pins another certificate for us than
 *     the one in use, a warning says peers refuse us until both agree
 *
 * Owns the credentials in use; nothing else keeps a copy.
 */
import type { BnlNode, BnlStore } from '@cluevpn/bnl';
import { CredentialsError, loadCredentials, normalizeFingerprint, type ControlCredentials, type ControlServer, type LoadedCredentials } from '@cluevpn/negotiation';
import type { DaemonConfig } from './config.js';
import { DaemonError } from './errors.js';
import type { Logger } from './logging.js';

/** What a credential reload did. */
export interface CredentialsReload {
  /** False when the files hold the certificate already in use. */
  switched: boolean;
  /** Fingerprint (lower hex) of the certificate in use now. */
  fingerprint: string;
}

/** What the keeper needs. */
export interface CredentialKeeperOptions {
  config: Pick<DaemonConfig, 'cert' | 'privkey' | 'cacert'>;
  selfName: string;
  bnl: Pick<BnlStore, 'current'>;
  /** A node's record in the current list. */
  record(name: string): BnlNode | undefined;
  /** The negotiation logger (`cluevpnd:negotiation`). */
  logger: Logger;
}

/** The credentials in use (see the file comment). */
export interface CredentialKeeper {
  /** The credentials for a new control connection, accepted or dialled. */
  current(): ControlCredentials;
  /** The pin the current list holds for us (lower hex), or undefined when it pins none. */
  ownPin(): string | undefined;
  /** True when the list pins the certificate in use or none; warns otherwise (step 3). */
  checkOwnPin(): boolean;
  /**
   * Step 2: reads the files again and, when they differ, switches `server`
   * and new dialled connections to them. `agrees` is `checkOwnPin()` after
   * the switch (a switched certificate the list does not pin yet).
   */
  reload(server: Pick<ControlServer, 'setCredentials'>): CredentialsReload & { agrees: boolean };
}

/** Reads and checks the credential files (`loadCredentials`); a refusal is `code` naming the file. */
function readCredentials(config: CredentialKeeperOptions['config'], selfName: string, code: 'ERR_STARTUP' | 'ERR_CREDENTIALS'): LoadedCredentials {
  try {
    return loadCredentials({ cert: config.cert, privkey: config.privkey, cacert: config.cacert }, selfName);
  } catch (err) {
    if (err instanceof CredentialsError) throw new DaemonError(code, err.message, { cause: err });
    throw err;
  }
}

/** Step 1: reads the credentials; throws `ERR_STARTUP` naming the file. */
export function createCredentialKeeper(o: CredentialKeeperOptions): CredentialKeeper {
  const { config, selfName, bnl } = o;
  const negLog = o.logger;
  // Replaced as a whole by `reload`: new connections (accepted and dialled)
  // use the new object; open ones keep what they authenticated with.
  let loaded: LoadedCredentials = readCredentials(config, selfName, 'ERR_STARTUP');

  const ownPin = (): string | undefined => {
    const pin = o.record(selfName)?.fingerprint;
    return pin === undefined ? undefined : normalizeFingerprint(pin) ?? pin;
  };
  /**
   * Warns when the list pins another certificate for us than the one we
   * present: peers refuse us until both agree (the operator installs the
   * pinned certificate and reloads, or pushes a list with our pin).
   */
  const checkOwnPin = (): boolean => {
    const pin = ownPin();
    if (pin === undefined || pin === loaded.fingerprint.hex) return true;
    negLog.warn('this node\'s certificate is not the one its BNL record pins: peers refuse it until they agree (install the pinned certificate and reload, or push a list with this pin)', {
      path: config.cert,
      fingerprint: loaded.fingerprint.hex,
      pin,
      serial: bnl.current?.bnl.serial,
    });
    return false;
  };

  return {
    current: () => loaded.credentials,
    ownPin,
    checkOwnPin,
    reload(server) {
      const next = readCredentials(config, selfName, 'ERR_CREDENTIALS');
      const c = next.credentials;
      const credentials = loaded.credentials;
      if (c.certPem === credentials.certPem && c.keyPem === credentials.keyPem && c.caPem === credentials.caPem) {
        return { switched: false, fingerprint: loaded.fingerprint.hex, agrees: checkOwnPin() };
      }
      try {
        server.setCredentials(next.credentials);
      } catch (err) {
        throw new DaemonError('ERR_CREDENTIALS', `cert ${config.cert}: the TLS library refused the new credentials: ${(err as Error).message}`, { cause: err });
      }
      const before = loaded.fingerprint.hex;
      loaded = next; // dialled connections: a new shared client context
      negLog.notice('credentials switched: new control connections use them', { path: config.cert, fingerprint: next.fingerprint.hex, reason: `was ${before}`, count: next.cas.length });
      return { switched: true, fingerprint: next.fingerprint.hex, agrees: checkOwnPin() };
    },
  };
}
