/**
 * A reload (SIGHUP/SIGUSR1, `cluevpn reload`, `bnl push`):
 *
 *  1. the credentials (`cert`, `privkey`, `cacert`: `Mesh.reloadCredentials`);
 *     refused ones leave those in use and do not stop step 2
 *  2. the BNL from disk: a list that is not newer changes nothing; a refused
 *     one is `ERR_BNL_INVALID`; a newer one is applied (`ListApplier.apply`,
 *     after any list accepted before it)
 *  3. the applied list is pushed to every node; the answer waits for the
 *     pushes up to `RELOAD_PUSH_WAIT_MS` from the request and says how many
 *     are still pending (they finish in the background and are logged then)
 *
 * Refused credentials then fail the reload with their `ERR_CREDENTIALS`
 * (naming the file), so `cluevpn reload` exits 1 and a signalled reload logs it.
 */
import type { BnlStore } from '@cluevpn/bnl';
import type { ReloadResult } from './control.js';
import { DaemonError } from './errors.js';
import type { ListApplier } from './list-applier.js';
import type { Logger } from './logging.js';
import type { Mesh } from './mesh.js';

/**
 * Implementation: how long a reload waits for the pushes, counted from the
 * request (loading and applying a large list is part of it: 1.5 s for
 * 10 000 nodes on a busy machine). The answer is bound to come within 3 s of
 * the request (issue 19); the 500 ms left are for what runs after the wait
 * (the answer itself, and a timer that fires late on a loaded event loop:
 * 3 022 ms measured with a 3 000 ms wait). A node that does not answer costs
 * a handshake timeout; those pushes go on in the background and the answer
 * says how many are still pending.
 */
export const RELOAD_PUSH_WAIT_MS = 2500;

/** What a reload needs. */
export interface ReloaderOptions {
  store: BnlStore;
  applier: ListApplier;
  mesh: Mesh;
  logger: Logger;
}

/** Runs steps 1–3 above; see the file comment for what it answers. */
export function createReloader(o: ReloaderOptions): () => Promise<ReloadResult> {
  const { store, applier, mesh } = o;
  const log = o.logger;

  async function reloadAndPush(): Promise<ReloadResult> {
    let creds: ReloadResult['credentials'];
    let credErr: unknown;
    try {
      creds = mesh.reloadCredentials();
    } catch (err) {
      credErr = err;
      log.error('credentials refused; the ones in use stay', { err, code: (err as { code?: string }).code });
    }
    const result = await reloadBnlAndPush();
    if (credErr !== undefined) {
      const e = credErr as Error;
      throw new DaemonError('ERR_CREDENTIALS', `${e.message} (credentials in use kept; BNL serial ${result.serial}${result.applied ? ' applied' : ' unchanged'})`, { cause: e });
    }
    return creds === undefined ? result : { ...result, credentials: creds };
  }

  async function reloadBnlAndPush(): Promise<ReloadResult> {
    const asked = performance.now();
    const r = await store.reloadFromDisk();
    if (!r.accepted) {
      if (r.code === 'ERR_BNL_DUPLICATE' || r.code === 'ERR_BNL_STALE') {
        log.info('BNL on disk is not newer', { serial: store.current!.bnl.serial, code: r.code });
        return { serial: store.current!.bnl.serial, applied: false, pushedTo: 0, pushTargets: 0, pushFailed: 0, pushPending: 0 };
      }
      throw new DaemonError('ERR_BNL_INVALID', `BNL on disk refused (${r.code}): ${r.reason}`);
    }
    await applier.apply(r.diff, r.list.bnl);
    log.notice('BNL applied from disk', { serial: r.list.bnl.serial, added: r.diff.added.length, removed: r.diff.removed.length, changed: r.diff.changed.length });
    // Wait for the pushes a while, not for every unreachable node's timeout:
    // the rest finish in the background and are logged then.
    const p = mesh.pushToAll();
    const serial = r.list.bnl.serial;
    void p.done.then(
      () => log.notice('BNL pushed', { serial, count: p.ok, failed: p.failed, targets: p.targets }),
      (err: unknown) => log.error('BNL push stopped', { serial, count: p.ok, failed: p.failed, targets: p.targets, err }),
    );
    let timer: NodeJS.Timeout | undefined;
    const waitMs = Math.max(0, RELOAD_PUSH_WAIT_MS - (performance.now() - asked));
    await Promise.race([p.done, new Promise<void>((res) => (timer = setTimeout(res, waitMs)))]);
    clearTimeout(timer);
    return { serial, applied: true, pushedTo: p.ok, pushTargets: p.targets, pushFailed: p.failed, pushPending: p.targets - p.ok - p.failed };
  }

  return reloadAndPush;
}
