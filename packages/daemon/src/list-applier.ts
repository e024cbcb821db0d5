/**
 * The list applier: the one place a BNL reaches the data plane, the kernel
 * routes, the negotiation state and the subnet hooks — for the list loaded
 * at start and for every newer list (reload from disk, push, pull).
 *
 * A newer list (`apply`), one at a time, in the order the lists were accepted:
 *
 *  1. its access rules (`policy.ts`): a node the list adds meets them, never the old ones
 *  2. open control connections authorised under the previous list (a revoked
 *     node, an old pin) are closed (`Mesh.recheckConnections`)
 *  3. removed nodes: negotiation state and stored keys, then the peer
 *     (sessions and keys gone from the data plane), routes, `subnetdowncmd`
 *  4. added nodes: peers, then their routes (one batch), `subnetupcmd`
 *  5. changed nodes: our own record moves our subnets, MACs and pin; a changed
 *     id or pin replaces the peer (revoke, then add: no session or stored key
 *     negotiated under the old certificate survives); otherwise endpoints,
 *     subnets and MACs are updated; changed subnets move routes and run hooks
 *
 * The list loaded at start (`start`) goes through the same steps with
 * nothing to remove or change: steps 1 and 4, our own subnets and MACs, and
 * the `subnetupcmd` hooks later (`startHooks`, after `upcmd`).
 */
import type { Bnl, BnlDiff, BnlNode } from '@cluevpn/bnl';
import type { Dataplane } from '@cluevpn/dataplane';
import type { HookRunner } from './hooks.js';
import type { Logger } from './logging.js';
import type { Mesh } from './mesh.js';
import type { PeerDirectory } from './peers.js';
import { applyPolicy } from './policy.js';
import type { KernelRoutes } from './routes.js';

/** What the applier needs. */
export interface ListApplierOptions {
  /** This node's name: its record is never a peer. */
  selfName: string;
  dataplane: Dataplane;
  peers: PeerDirectory;
  routes: KernelRoutes;
  hooks: HookRunner;
  /** The mesh once it runs (started after the first list is applied). */
  mesh(): Mesh | undefined;
  logger: Logger;
}

/** Applies lists (see the file comment). */
export interface ListApplier {
  /** Applies the list loaded at start: our subnets and MACs, access rules, every other node a peer with its routes. No hooks. */
  start(list: Bnl): Promise<void>;
  /** Runs `subnetupcmd` for every peer subnet of `list` (at start, after `upcmd`). */
  startHooks(list: Bnl): Promise<void>;
  /**
   * Applies a newer list once every list accepted before it is applied.
   * Rejects with this list's failure; the next list is applied regardless.
   */
  apply(diff: BnlDiff, list: Bnl): Promise<void>;
}

/** Creates the applier. */
export function createListApplier(o: ListApplierOptions): ListApplier {
  const { selfName, dataplane, peers, routes, hooks } = o;
  const log = o.logger;
  /** Applying lists one at a time, in the order they were accepted. */
  let applying: Promise<unknown> = Promise.resolve();

  const others = (nodes: readonly BnlNode[]): BnlNode[] => nodes.filter((n) => n.name !== selfName);
  const subnetUp = (n: BnlNode, s: string) => hooks.run('subnetupcmd', { SUBNET: s, PEER: n.name, PEERID: String(n.id) });
  const subnetDown = (n: BnlNode, s: string) => hooks.run('subnetdowncmd', { SUBNET: s, PEER: n.name, PEERID: String(n.id) });

  /** Step 4 without the hooks: each node a peer, then all their routes in one batch. */
  const addPeers = async (nodes: readonly BnlNode[]): Promise<void> => {
    for (const n of nodes) await peers.add(n);
    await routes.add(nodes.flatMap((n) => n.subnets));
  };
  /** Forgets a peer everywhere: negotiation (stored keys), then the data plane (sessions and keys), ids and endpoints. */
  const forgetPeer = (n: BnlNode): void => {
    o.mesh()?.removePeer(n.name);
    peers.remove(n);
  };

  async function applyDiff(diff: BnlDiff, list: Bnl): Promise<void> {
    // 1.
    applyPolicy(dataplane, list, selfName, log);
    // 2.
    o.mesh()?.recheckConnections();
    // 3.
    for (const n of diff.removed) {
      if (n.name === selfName) {
        log.error('this node was removed from the BNL; it keeps running but peers will refuse it', { node: n.name });
        continue;
      }
      forgetPeer(n);
      for (const s of n.subnets) {
        await routes.remove(s);
        await subnetDown(n, s);
      }
      log.notice('node removed', { peer: n.name, id: n.id });
    }
    // 4.
    const added = others(diff.added);
    await addPeers(added);
    for (const n of added) {
      for (const s of n.subnets) await subnetUp(n, s);
      log.notice('node added', { peer: n.name, id: n.id });
    }
    // 5.
    for (const c of diff.changed) {
      if (c.name === selfName) {
        if (c.fields.includes('subnets')) dataplane.setLocalSubnets(c.after.subnets);
        if (c.fields.includes('mac')) dataplane.setLocalMacs(c.after.mac ?? []);
        if (c.fields.includes('fingerprint')) o.mesh()?.followOwnPin();
        continue;
      }
      if (c.fields.includes('id') || c.fields.includes('fingerprint')) {
        // The id is the data-plane identity, the pin the certificate's: replace the peer
        // entirely (revoke, then add), so that no session or stored key negotiated under
        // the old certificate survives.
        if (c.fields.includes('fingerprint')) log.notice('node re-pinned: its sessions and keys are dropped', { peer: c.name });
        forgetPeer(c.before);
        await peers.add(c.after);
      } else {
        await peers.update(c.after);
      }
      if (c.fields.includes('subnets')) {
        const before = new Set(c.before.subnets);
        const after = new Set(c.after.subnets);
        for (const s of c.before.subnets) if (!after.has(s)) {
          await routes.remove(s);
          await subnetDown(c.after, s);
        }
        const fresh = c.after.subnets.filter((s) => !before.has(s));
        await routes.add(fresh);
        for (const s of fresh) await subnetUp(c.after, s);
      }
      log.info('node changed', { peer: c.name, changed: c.fields });
    }
  }

  return {
    async start(list) {
      const self = list.nodes.find((n) => n.name === selfName);
      dataplane.setLocalSubnets(self?.subnets ?? []);
      dataplane.setLocalMacs(self?.mac ?? []);
      applyPolicy(dataplane, list, selfName, log);
      await addPeers(others(list.nodes));
    },
    async startHooks(list) {
      for (const n of others(list.nodes)) for (const s of n.subnets) await subnetUp(n, s);
    },
    apply(diff, list) {
      const done = applying.then(() => applyDiff(diff, list));
      applying = done.catch(() => undefined);
      return done;
    },
  };
}
