/**
 * The list at start: trust from `bnlpubkey` (inline hex, or files holding
 * hex or PEM), the stored list loaded and verified (`BnlStore`), and this
 * node found in it by `name`. The daemon refuses to start on a missing or
 * invalid list (`ERR_BNL_INVALID`, saying why) or one without this node
 * (`ERR_SELF_NOT_IN_BNL`).
 */
import { readFileSync } from 'node:fs';
import { BnlStore, createTrust, parsePublicKey, type BnlNode, type SignedBnl } from '@cluevpn/bnl';
import { INLINE_PUBKEY_RE, type DaemonConfig } from './config.js';
import { DaemonError } from './errors.js';
import type { Logger } from './logging.js';

/** The loaded list. */
export interface StoredList {
  /** The store: the owner of the current list from now on (gossip and reloads replace it). */
  store: BnlStore;
  /** The list as loaded. */
  list: SignedBnl;
  /** This node's record in it. */
  self: BnlNode;
  /** Milliseconds spent loading and verifying. */
  ms: number;
}

/** Reads the trust keys: inline hex or files holding hex/PEM. Throws `ERR_STARTUP` naming the file. */
function readTrustKeys(config: DaemonConfig): string[] {
  return config.bnlpubkey.map((k) => {
    if (INLINE_PUBKEY_RE.test(k)) return parsePublicKey(k);
    try {
      return parsePublicKey(readFileSync(k, 'utf8'));
    } catch (err) {
      throw new DaemonError('ERR_STARTUP', `bnlpubkey ${k}: ${(err as Error).message}`, { cause: err });
    }
  });
}

/** Loads and verifies the stored list and finds this node in it; logs 'BNL loaded'. */
export async function loadStoredList(config: DaemonConfig, log: Logger): Promise<StoredList> {
  const trust = createTrust(readTrustKeys(config));
  const bnlLog = log.child('bnl');
  let ms = performance.now();
  let store: BnlStore;
  try {
    store = await BnlStore.open({ path: config.bnl, trust, logger: bnlLog });
  } catch (err) {
    throw new DaemonError('ERR_BNL_INVALID', `BNL ${config.bnl}: ${(err as Error).message}`, { cause: err });
  }
  const list = store.current;
  if (list === null) throw new DaemonError('ERR_BNL_INVALID', `no BNL at ${config.bnl}; install a signed list there (bnl sign)`);
  const self = list.bnl.nodes.find((n) => n.name === config.name);
  if (self === undefined) throw new DaemonError('ERR_SELF_NOT_IN_BNL', `this node (name=${config.name}) is not in BNL serial ${list.bnl.serial} (${config.bnl})`);
  ms = performance.now() - ms;
  log.notice('BNL loaded', { serial: list.bnl.serial, nodes: list.bnl.nodes.length, node: self.name, id: self.id, ms: Math.round(ms) });
  return { store, list, self, ms };
}
