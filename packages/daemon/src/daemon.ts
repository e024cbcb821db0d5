/**
 * `cluevpnd`'s wiring. `startDaemon` reads like the list it runs:
 *
 *  0. with `user=`: refuse when that user could change a file root reads or
 *     runs (`protected-paths.ts`, `ERR_UNSAFE_PERMISSIONS`), before anything
 *  1. pidfile (refuse when another daemon runs for this network); the state
 *     directory (`state-dir.ts`: created, old state moved out of the config
 *     directory, handed to `user`)
 *  2. BNL: trust from `bnlpubkey`, load and verify the stored list (refuse
 *     to start on a missing or invalid one, saying why), find ourselves by name
 *  3. TUN: open, MTU, up, own host addresses, routes for peers' subnets
 *     (`mode=switch`: a TAP device, no address, no route: `switch-mode.ts`)
 *  4. data plane on `port` (UDP), one peer per other node
 *  5. mesh (`mesh.ts`): state store (send epochs bumped before anything is
 *     sent), mutual-TLS control channel on `port` (TCP), negotiation wired
 *     into the data plane, BNL gossip (pull timer, push handler)
 *  6. control socket (status, peers, bnl-status, set-log-level, reload-and-push:
 *     the credentials, then the BNL);
 *     the metrics endpoint when `metrics=` is set (`metrics.ts`: it reads `status()`)
 *  7. hooks: upcmd, mysubnetupcmd per own subnet, subnetupcmd per peer subnet
 *  8. drop privileges (`user`/`group`), then check the writable paths
 *  (timers — BNL pull, proactive negotiation, rekey — belong to step 5)
 *
 * `stop` undoes the steps in reverse order (downcmd before the device
 * closes) and is bounded by the 2 s grace period of `signals.ts`.
 *
 * Applying a BNL (reload from disk, push, pull) is one function,
 * `applyDiff`: close the open control connections the new list no longer
 * authorises, add peers and routes, remove revoked nodes (peer, sessions
 * and keys gone from the data plane and the state store; their subnets'
 * routes removed), treat a changed id or pin as revoke-then-add, update
 * changed endpoints and subnets, run the subnet hooks.
 */
import { readFileSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { BnlStore, createTrust, parsePublicKey, type Bnl, type BnlDiff, type BnlNode, type SignedBnl } from '@cluevpn/bnl';
import { openTun, type TunDevice } from '@cluevpn/tun';
import { createDataplane, type Dataplane, type DataplaneStats, type PeerStats, type RekeyReason as DataplaneRekeyReason } from '@cluevpn/dataplane';
import type { RekeyReason } from '@cluevpn/negotiation';
import type { DaemonConfig } from './config.js';
import { startMesh, type Mesh } from './mesh.js';
import { INLINE_PUBKEY_RE } from './config.js';
import { startControlServer, type BnlStatusReport, type ControlServer, type MemoryReport, type PeerStatus, type ReloadResult, type StatusReport } from './control.js';
import { loadedAs } from './entry.js';
import { CLUEVPN_VERSION } from '@cluevpn/control';
import { LARGE_LIST_BYTES, collectGarbage, keepHeapTight, keepYoungGenerationSmall } from './heap.js';
import { DaemonError } from './errors.js';
import { createHookRunner, type HookRunner } from './hooks.js';
import type { Logger, RootLogger } from './logging.js';
import { removePidfile, writePidfile } from './pidfile.js';
import { checkWritableAfterDrop, dropPrivileges, resolveAccount } from './privileges.js';
import { checkPrivilegeBoundary } from './protected-paths.js';
import { prepareStateDir } from './state-dir.js';
import { dnsPromises } from './lazy.js';
import { deviceClash, portClash } from './clash.js';
import { createEndpointBook, resolveCandidates, type Endpoint } from './endpoints.js';
import { engineSwitches } from './switches.js';
import { switchModeNotice, switchReport } from './switch-mode.js';
import { applyPolicy } from './policy.js';

/** Version reported by `status`, `--version` and the "cluevpnd started" log line (the release's, see @cluevpn/control). */

/** The negotiator's reason for a rekey the data plane asks for (the one counted and logged). */
export function rekeyReasonOf(reason: DataplaneRekeyReason): RekeyReason {
  switch (reason) {
    case 'no-reply':
      return 'peer-lost-session'; // nothing authenticated came back: the peer probably lost the session
    case 'counter-soft-limit':
      return 'counter-soft-limit';
    case 'counter-limit':
      return 'counter-limit';
  }
}

export const DAEMON_VERSION = CLUEVPN_VERSION;

/**
 * Implementation: how long a reload waits before answering, counted from the
 * request (loading and applying a large list is part of it: 1.5 s for
 * 10 000 nodes on a busy machine). A node that does not answer costs a
 * handshake timeout; those pushes go on in the background and the answer
 * says how many are still pending.
 */
export const RELOAD_PUSH_WAIT_MS = 3000;

/** Options of `startDaemon`. */
export interface DaemonOptions {
  config: DaemonConfig;
  logger: RootLogger;
  /** Data-plane backend; default: native when built. */
  backend?: 'native' | 'js';
}

/** A running daemon. */
export interface RunningDaemon {
  status(): StatusReport;
  /** Reloads the BNL from disk; if newer, applies and pushes it. */
  reloadAndPush(): Promise<ReloadResult>;
  /** Stops in reverse order. Idempotent. */
  stop(): Promise<void>;
}

/** Host addresses (/32, /128) among a node's subnets: assigned to the device for our own node. */
function hostAddresses(subnets: readonly string[]): string[] {
  return subnets.filter((s) => s.endsWith('/32') || s.endsWith('/128'));
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

/**
 * The first endpoint a node is tried on: IPv6 dropped when `disableipv6`,
 * IPv6 first when `preferipv6` or the node prefers it, DNS names resolved.
 * `null` when the node lists none usable. (The daemon keeps every candidate:
 * `endpoints.ts`.)
 */
export async function chooseEndpoint(node: BnlNode, config: Pick<DaemonConfig, 'disableipv6' | 'preferipv6'>, log: Logger): Promise<Endpoint | null> {
  return (await resolveCandidates(node, config, log))[0] ?? null;
}

/** Starts the daemon (steps 1–9 above). On failure, undoes what it did and rethrows. */
export async function startDaemon(opts: DaemonOptions): Promise<RunningDaemon> {
  const { config, logger: root } = opts;
  const log = root;
  const startedAt = Date.now();
  const undo: { what: string; fn: () => unknown }[] = [];
  /** Data-plane peer id (the BNL id as a string) ↔ node name; each peer's endpoints. */
  const idToName = new Map<string, string>();
  const nameToId = new Map<string, string>();
  const endpoints = createEndpointBook({
    config,
    logger: log.child('endpoints'),
    use: (name, ep) => {
      const id = nameToId.get(name);
      if (id !== undefined && ep !== null) dataplane?.setEndpoint(id, ep.host, ep.port);
    },
  });
  let mesh: Mesh | undefined;
  /** Applying lists one at a time, in the order they were accepted. */
  let applying: Promise<unknown> = Promise.resolve();
  let tun: TunDevice | undefined;
  let dataplane: Dataplane | undefined;
  let hooks: HookRunner | undefined;
  let control: ControlServer | undefined;
  let store: BnlStore;
  let self: BnlNode;
  let privilegesDropped = false;

  const stopAll = async (): Promise<void> => {
    while (undo.length > 0) {
      const step = undo.pop()!;
      try {
        await step.fn();
      } catch (err) {
        log.error('stop step failed', { reason: step.what, err });
      }
    }
  };

  /** The list's cost at start (load and verify, routes, peer table), logged with 'cluevpnd started' (scripts/bench/scale). */
  let listMs = 0;
  /** The list file is large (heap.ts, LARGE_LIST_BYTES): garbage is collected after start and after each apply. */
  let largeList = false;
  // 0. the privilege boundary, before anything changes
  const account = resolveAccount({ user: config.user, group: config.group });
  if (account !== null) checkPrivilegeBoundary(config, { name: account.name, uid: account.uid, gids: [account.gid, ...account.groups] });

  try {
    undo.push({ what: 'endpoint look-ups', fn: () => endpoints.close() });
    // 1. pidfile, state directory
    writePidfile(config.pidfile);
    undo.push({ what: 'pidfile', fn: () => removePidfile(config.pidfile) });
    prepareStateDir(config, account, log);

    // 2. BNL
    const trust = createTrust(readTrustKeys(config));
    const bnlLog = log.child('bnl');
    largeList = (statSync(config.bnl, { throwIfNoEntry: false })?.size ?? 0) >= LARGE_LIST_BYTES;
    if (largeList) keepHeapTight(); // before the load grows the heap (heap.ts)
    listMs = performance.now();
    try {
      store = await BnlStore.open({ path: config.bnl, trust, logger: bnlLog });
    } catch (err) {
      throw new DaemonError('ERR_BNL_INVALID', `BNL ${config.bnl}: ${(err as Error).message}`, { cause: err });
    }
    const list = store.current;
    if (list === null) throw new DaemonError('ERR_BNL_INVALID', `no BNL at ${config.bnl}; install a signed list there (bnl sign)`);
    const me = list.bnl.nodes.find((n) => n.name === config.name);
    if (me === undefined) throw new DaemonError('ERR_SELF_NOT_IN_BNL', `this node (name=${config.name}) is not in BNL serial ${list.bnl.serial} (${config.bnl})`);
    self = me;
    listMs = performance.now() - listMs;
    log.notice('BNL loaded', { serial: list.bnl.serial, nodes: list.bnl.nodes.length, node: self.name, id: self.id, ms: Math.round(listMs) });

    // 3. TUN
    const switches = engineSwitches(config);
    try {
      tun = openTun({ name: config.devname, mode: config.mode === 'switch' ? 'tap' : 'tun', mtu: config.mtu, ...switches.tun });
    } catch (err) {
      throw deviceClash(err, config.devname); // another network's device: ERR_DEVICE_IN_USE naming its daemon
    }
    const dev = tun;
    undo.push({ what: 'tun', fn: () => dev.close() });
    dev.up();
    if (config.mode === 'switch') switchModeNotice(list.bnl, log);
    else for (const a of hostAddresses(self.subnets)) await dev.addAddress(a);
    // All routes in one rtnetlink exchange (a 1 000-node list took 3 s with one `ip` process per route).
    let t = performance.now();
    await addRoutes(list.bnl.nodes.filter((n) => n.name !== self.name).flatMap((n) => n.subnets));
    listMs += performance.now() - t;

    // 4. data plane
    const dpLog = log.child('dataplane');
    dataplane = await createDataplane({
      tun: dev,
      port: config.port,
      mtu: config.mtu,
      socketBuffer: config.udpbuffer,
      keepaliveMs: config.keepaliveMs,
      pmtuDiscovery: config.pmtudiscovery, // path MTU (dataplane src/pmtu.ts)
      clampMss: config.clampmss,
      mode: config.mode,
      ...switches.dataplane,
      logger: dpLog,
      ...(opts.backend ? { backend: opts.backend } : {}),
      events: {
        onNoSession: (peerId) => {
          const name = idToName.get(peerId);
          if (name !== undefined) mesh?.noSession(name);
        },
        onRekeyNeeded: (peerId, reason) => {
          const name = idToName.get(peerId);
          if (name !== undefined) mesh?.rekey(name, rekeyReasonOf(reason));
          dpLog.info('rekey needed', { peer: name, reason });
        },
        onAuthFailures: (peerId, count) => {
          const name = idToName.get(peerId);
          dpLog.warn('authentication failures: renegotiating', { peer: name, count });
          if (name !== undefined) mesh?.rekey(name, 'auth-failures');
        },
        onRxEpoch: (peerId, localIndex, epoch) => {
          const name = idToName.get(peerId);
          if (name !== undefined) mesh?.rxEpoch(name, localIndex, epoch);
        },
        onEndpointChange: (peerId, host, port) => {
          const name = idToName.get(peerId);
          if (name !== undefined) endpoints.roamed(name, host, port);
          dpLog.info('peer roamed', { peer: name, endpoint: `${host}:${port}` });
        },
        onRendezvous: (peerId, payload) => {
          const name = idToName.get(peerId);
          if (name !== undefined) mesh?.rendezvous(name, payload);
        },
      },
    }).catch((err: unknown) => { throw portClash(err, 'udp', config.port); }); // ERR_PORT_IN_USE naming the holder
    const dp = dataplane;
    undo.push({ what: 'dataplane', fn: () => dp.close() });
    undo.push({ what: 'endpoint look-ups', fn: () => endpoints.close() }); // before the data plane closes
    dp.setLocalSubnets(self.subnets);
    dp.setLocalMacs(self.mac ?? []);
    t = performance.now();
    for (const n of list.bnl.nodes) if (n.name !== self.name) await addPeer(n);
    listMs += performance.now() - t;
    applyPolicy(dp, list.bnl, self.name, log); // access rules (policy.ts)

    // 5. mesh: state, control channel, negotiation, gossip
    mesh = await startMesh({
      config,
      logger: log,
      bnl: store,
      dataplane: dp,
      selfName: self.name,
      peerId: (name) => nameToId.get(name),
      controlAddresses: (name) => endpoints.candidates(name),
      reached: (name, where) => endpoints.reached(name, where),
      punched: (name, where) => endpoints.punched(name, where),
      apply: (result, source) => {
        const done = applying.then(() => applyDiff(result.diff, result.list.bnl)).then(() => {
          log.notice('BNL applied', { serial: result.list.bnl.serial, peer: source, added: result.diff.added.length, removed: result.diff.removed.length, changed: result.diff.changed.length });
          if (result.list.bytes.length >= LARGE_LIST_BYTES) setImmediate(collectGarbage); // the old list and the diff's garbage (heap.ts)
        });
        applying = done.catch(() => undefined);
        return done;
      },
    }).catch((err: unknown) => { throw portClash(err, 'tcp', config.port); });
    const ms = mesh;
    undo.push({ what: 'mesh', fn: () => ms.close() });

    // 6. control socket
    control = await startControlServer({
      path: config.controlsocket,
      logger: log.child('control'),
      handlers: {
        status: () => status(),
        peers: () => status().peers,
        bnlStatus: () => bnlStatus(),
        setLogLevel: (level) => {
          const previous = root.level;
          root.setLevel(level);
          log.notice('log level changed', { level, reason: `was ${previous}` });
          return { level, previous };
        },
        reloadAndPush: () => reloadAndPush(),
      },
    });
    const ctl = control;
    undo.push({ what: 'control socket', fn: () => ctl.close() });
    if (config.metrics !== undefined) {
      // loaded only when asked for: prom-client and node:http cost every start otherwise
      const { startMetricsServer } = await import('./metrics.js');
      const metrics = await startMetricsServer({ listen: config.metrics, logger: log.child('metrics'), source: { status: () => status(), control: () => mesh?.stats().control } });
      undo.push({ what: 'metrics', fn: () => metrics.close() });
    }

    // 7. hooks
    hooks = createHookRunner({
      commands: config,
      env: { TUNDEV: dev.name, NETNAME: config.netname, NODE: self.name, NODEID: String(self.id) },
      logger: log.child('hooks'),
    });
    const hk = hooks;
    undo.push({ what: 'downcmd', fn: () => hk.run('downcmd', {}, { timeoutMs: 1000 }) });
    await hk.run('upcmd');
    for (const s of self.subnets) await hk.run('mysubnetupcmd', { SUBNET: s });
    for (const n of list.bnl.nodes) if (n.name !== self.name) for (const s of n.subnets) await hk.run('subnetupcmd', { SUBNET: s, PEER: n.name, PEERID: String(n.id) });

    // 8. privileges
    const dropped = dropPrivileges({ user: config.user, group: config.group }, log);
    if (dropped !== null) {
      // With CAP_NET_ADMIN kept (the native drop), routes still follow the BNL.
      privilegesDropped = !dropped.keptNetAdmin;
      checkWritableAfterDrop([dirname(config.bnl), dirname(config.statedb)]);
    }
  } catch (err) {
    await stopAll();
    throw err;
  }

  log.notice('cluevpnd started', {
    node: self.name,
    id: self.id,
    device: tun.name,
    port: dataplane.port,
    serial: store.current!.bnl.serial,
    nodes: store.current!.bnl.nodes.length,
    listms: Math.round(listMs),
    pid: process.pid,
    loaded: loadedAs(),
    version: DAEMON_VERSION,
  });
  // After the first packets can flow: node:v8 costs ~3 ms to load (see heap.ts).
  setImmediate(keepYoungGenerationSmall);
  if (largeList) setTimeout(collectGarbage, 1000).unref(); // start-up's garbage (heap.ts)

  async function addRoutes(cidrs: readonly string[]): Promise<void> {
    if (cidrs.length === 0 || config.mode === 'switch') return; // switch mode routes nothing: the bridge forwards
    if (privilegesDropped) {
      for (const cidr of cidrs) log.warn('cannot add a kernel route after dropping privileges; relying on an existing covering route', { subnet: cidr });
      return;
    }
    const results = await tun!.addRoutes(cidrs);
    results.forEach((err, k) => {
      if (err !== null) log.error('cannot add route', { subnet: cidrs[k], err });
    });
  }

  async function delRoute(cidr: string): Promise<void> {
    if (privilegesDropped || config.mode === 'switch') return;
    try {
      await tun!.removeRoute(cidr);
    } catch (err) {
      log.warn('cannot remove route', { subnet: cidr, err });
    }
  }

  async function addPeer(n: BnlNode): Promise<void> {
    const endpoint = await endpoints.set(n);
    const id = String(n.id);
    dataplane!.addPeer({ id, name: n.name, subnets: n.subnets, macs: n.mac ?? [], ...(endpoint ? { endpoint } : {}) });
    idToName.set(id, n.name);
    nameToId.set(n.name, id);
  }

  /** Forgets a peer everywhere: data plane (sessions and keys), negotiation (stored keys), maps. */
  function forgetPeer(n: BnlNode): void {
    const id = String(n.id);
    mesh?.removePeer(n.name);
    dataplane!.removePeer(id);
    idToName.delete(id);
    nameToId.delete(n.name);
    endpoints.remove(n.name);
  }

  /** Applies a new list: its access rules, then its diff to routes, the data plane and hooks. */
  async function applyDiff(diff: BnlDiff, list: Bnl): Promise<void> {
    const hk = hooks!;
    // The new access rules first (policy.ts): a node the list adds meets them, never the old ones.
    applyPolicy(dataplane!, list, self.name, log);
    // First: connections authorised under the previous list (a revoked node, an old pin) go now.
    mesh?.recheckConnections();
    for (const n of diff.removed) {
      if (n.name === self.name) {
        log.error('this node was removed from the BNL; it keeps running but peers will refuse it', { node: n.name });
        continue;
      }
      forgetPeer(n);
      for (const s of n.subnets) {
        await delRoute(s);
        await hk.run('subnetdowncmd', { SUBNET: s, PEER: n.name, PEERID: String(n.id) });
      }
      log.notice('node removed', { peer: n.name, id: n.id });
    }
    const added = diff.added.filter((n) => n.name !== self.name);
    for (const n of added) await addPeer(n);
    await addRoutes(added.flatMap((n) => n.subnets));
    for (const n of added) {
      for (const s of n.subnets) await hk.run('subnetupcmd', { SUBNET: s, PEER: n.name, PEERID: String(n.id) });
      log.notice('node added', { peer: n.name, id: n.id });
    }
    for (const c of diff.changed) {
      if (c.name === self.name) {
        if (c.fields.includes('subnets')) dataplane!.setLocalSubnets(c.after.subnets);
        if (c.fields.includes('mac')) dataplane!.setLocalMacs(c.after.mac ?? []);
        if (c.fields.includes('fingerprint')) mesh?.followOwnPin();
        continue;
      }
      if (c.fields.includes('id') || c.fields.includes('fingerprint')) {
        // The id is the data-plane identity, the pin the certificate's: replace the peer
        // entirely (revoke, then add), so that no session or stored key negotiated under
        // the old certificate survives.
        if (c.fields.includes('fingerprint')) log.notice('node re-pinned: its sessions and keys are dropped', { peer: c.name });
        forgetPeer(c.before);
        await addPeer(c.after);
      } else {
        const endpoint = await endpoints.set(c.after);
        dataplane!.updatePeer(String(c.after.id), { subnets: c.after.subnets, macs: c.after.mac ?? [], ...(endpoint ? { endpoint } : {}) });
      }
      if (c.fields.includes('subnets')) {
        const before = new Set(c.before.subnets);
        const after = new Set(c.after.subnets);
        for (const s of c.before.subnets) if (!after.has(s)) {
          await delRoute(s);
          await hk.run('subnetdowncmd', { SUBNET: s, PEER: c.name, PEERID: String(c.after.id) });
        }
        const fresh = c.after.subnets.filter((s) => !before.has(s));
        await addRoutes(fresh);
        for (const s of fresh) {
          await hk.run('subnetupcmd', { SUBNET: s, PEER: c.name, PEERID: String(c.after.id) });
        }
      }
      log.info('node changed', { peer: c.name, changed: c.fields });
    }
  }

  /**
   * A reload: the credentials (`cert`, `privkey`, `cacert`), then the BNL.
   * Refused credentials leave the ones in use and do not stop the BNL part;
   * the reload then fails with their `ERR_CREDENTIALS` (naming the file), so
   * `cluevpn reload` exits 1 and a signalled reload logs it.
   */
  async function reloadAndPush(): Promise<ReloadResult> {
    let creds: ReloadResult['credentials'];
    let credErr: unknown;
    try {
      creds = mesh!.reloadCredentials();
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
    const done = applying.then(() => applyDiff(r.diff, r.list.bnl));
    applying = done.catch(() => undefined);
    await done;
    log.notice('BNL applied from disk', { serial: r.list.bnl.serial, added: r.diff.added.length, removed: r.diff.removed.length, changed: r.diff.changed.length });
    // Wait for the pushes a while, not for every unreachable node's timeout:
    // the rest finish in the background and are logged then.
    const p = mesh!.pushToAll();
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

  function bnlStatus(): BnlStatusReport {
    const cur: SignedBnl = store.current!;
    return {
      serial: cur.bnl.serial,
      signedAt: new Date(cur.bnl.timestamp).toISOString(),
      nodes: cur.bnl.nodes.length,
      path: config.bnl,
      peers: Object.fromEntries([...nameToId.keys()].map((name) => [name, mesh?.peer(name).bnlSerial ?? null])),
    };
  }

  function peerStatus(p: PeerStats, now: number): PeerStatus {
    const primary = p.sessions.find((s) => s.primary) ?? null;
    const m = mesh?.peer(p.name) ?? { session: null, restored: false, negotiations: 0, bnlSerial: null };
    const lastRx = p.lastRxMs === null ? null : Math.max(0, now - p.lastRxMs);
    const state: PeerStatus['state'] = primary === null ? 'idle' : lastRx !== null && lastRx < 180_000 ? 'up' : 'keyed';
    const drops: Record<string, number> = {};
    for (const [k, v] of Object.entries(p.drops)) if (v) drops[k] = v;
    const endpoint = p.endpoint === null ? null : p.endpoint.host.includes(':') ? `[${p.endpoint.host}]:${p.endpoint.port}` : `${p.endpoint.host}:${p.endpoint.port}`;
    // direct: keys, and the peer's authenticated packets came from the endpoint in use lately (relay.ts; `via NAME` is for relayed data)
    const fresh = config.keepaliveMs > 0 ? 2 * config.keepaliveMs + 5_000 : 180_000;
    return {
      name: p.name,
      id: Number(p.id),
      endpoint,
      path: primary !== null && p.relay !== null ? `via ${idToName.get(p.relay) ?? p.relay}` : primary !== null && endpoint !== null && lastRx !== null && lastRx < fresh ? 'direct' : null,
      observedEndpoint: lastRx === null ? null : endpoint,
      state,
      cipher: primary?.cipher ?? null,
      compression: primary === null ? null : primary.compression.algo === 'none' ? 'none' : `${primary.compression.algo}:${primary.compression.level}`,
      keyAgeMs: m.session === null ? null : Math.max(0, now - m.session.createdAt),
      lastRxMs: lastRx,
      lastKeepaliveTxMs: p.lastKeepaliveTxMs === null ? null : Math.max(0, now - p.lastKeepaliveTxMs),
      lastKeepaliveRxMs: p.lastKeepaliveRxMs === null ? null : Math.max(0, now - p.lastKeepaliveRxMs),
      pmtu: p.pmtu, // path MTU (dataplane src/pmtu.ts)
      innerMtu: p.innerMtu,
      pmtuAgeMs: p.pmtuAgeMs,
      lastNegotiationMs: m.session === null ? null : Math.max(0, now - m.session.createdAt),
      restored: m.restored,
      negotiations: m.negotiations,
      rxPackets: p.rxPackets,
      rxBytes: p.rxBytes,
      txPackets: p.txPackets,
      txBytes: p.txBytes,
      relayed: { txPackets: p.relayed.txPackets, txBytes: p.relayed.txBytes, rxPackets: p.relayed.rxPackets, rxBytes: p.relayed.rxBytes },
      drops,
      bnlSerial: m.bnlSerial,
      subnets: p.subnets,
    };
  }

  /** The status `relay` block: the relay service's counters (relay.ts) and the data plane's relayed data. */
  function relayReport(st: DataplaneStats): NonNullable<StatusReport['relay']> {
    const members: NonNullable<NonNullable<StatusReport['relay']>['members']> = {};
    for (const p of st.peers) {
      const r = p.relayed;
      if (r.fromPackets + r.toPackets > 0) members[p.name] = { fromPackets: r.fromPackets, fromBytes: r.fromBytes, toPackets: r.toPackets, toBytes: r.toBytes };
    }
    return {
      relay: mesh!.relayIsOn(),
      ...mesh!.relayStats(),
      forwarded: st.relaying.forwarded,
      forwardedBytes: st.relaying.forwardedBytes,
      unauthenticated: st.relaying.unauthenticated,
      members,
    };
  }

  function status(): StatusReport {
    const now = Date.now();
    const st = dataplane!.stats();
    // The data plane's table counts every drop; a current peer's own are in its report.
    const drops: Record<string, number> = {};
    for (const [k, v] of Object.entries(st.drops)) {
      const own = v - st.peers.reduce((sum, p) => sum + (p.drops[k as keyof typeof p.drops] ?? 0), 0);
      if (own > 0) drops[k] = own;
    }
    return {
      name: self.name,
      id: self.id,
      netname: config.netname,
      pid: process.pid,
      version: DAEMON_VERSION,
      uptimeMs: now - startedAt,
      device: tun!.name,
      port: st.port,
      logLevel: root.level,
      bnl: bnlStatus(),
      policy: { serial: st.acl.serial, rules: st.acl.rules, flows: st.acl.flows, maxFlows: st.acl.maxFlows, evicted: st.acl.evicted },
      peers: st.peers.map((p) => peerStatus(p, now)).sort((a, b) => (a.name < b.name ? -1 : 1)),
      drops,
      memory: memoryReport(),
      loaded: loadedAs(),
      ...(mesh ? { relay: relayReport(st) } : {}),
      mode: config.mode,
      ...(st.switch !== null ? { switch: switchReport(st.switch, idToName) } : {}),
    };
  }

  let stopping: Promise<void> | undefined;
  return {
    status,
    reloadAndPush,
    stop: () => (stopping ??= stopAll().then(() => log.notice('cluevpnd stopped'))),
  };
}

function memoryReport(): MemoryReport {
  const m = process.memoryUsage();
  return { rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, arrayBuffers: m.arrayBuffers };
}
