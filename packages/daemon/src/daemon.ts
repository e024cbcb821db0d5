/**
 * `cluevpnd`'s wiring. `startDaemon` reads like the list it runs: each part
 * is built from the config, started in order, and registers how it stops
 * (`teardown.ts`); `stop` runs those in reverse order (downcmd before the
 * device closes), bounded by the 2 s grace period of `signals.ts`.
 *
 *  0. with `user=`: refuse when that user could change a file root reads or
 *     runs (`protected-paths.ts`, `ERR_UNSAFE_PERMISSIONS`), before anything
 *  1. pidfile (refuse when another daemon runs for this network); the state
 *     directory (`state-dir.ts`: created, old state moved out of the config
 *     directory, handed to `user`)
 *  2. the stored list (`stored-list.ts`): trust from `bnlpubkey`, load and
 *     verify (refuse to start on a missing or invalid one, saying why), find
 *     ourselves by name
 *  3. the device (`device.ts`): TUN open, MTU, up, own host addresses
 *     (`mode=switch`: a TAP device, no address, no route: `switch-mode.ts`);
 *     the kernel routes (`routes.ts`) and the hook runner (`hooks.ts`) for it
 *  4. data plane on `port` (UDP), its events handed to the mesh
 *     (`dataplane-events.ts`); the peer directory (`peers.ts`: ids, names,
 *     endpoints) attached to it; the list applied (`list-applier.ts`): our
 *     subnets, the access rules, one peer per other node, their routes
 *  5. mesh (`mesh.ts`): state store (send epochs bumped before anything is
 *     sent), mutual-TLS control channel on `port` (TCP), negotiation wired
 *     into the data plane, BNL gossip (pull timer, push handler); every list
 *     it accepts goes to the list applier
 *  6. control socket (status and bnl-status: `status.ts`; set-log-level;
 *     reload-and-push: `reload.ts`); the metrics endpoint when `metrics=` is
 *     set (`metrics.ts`: it reads the same status)
 *  7. hooks: upcmd, mysubnetupcmd per own subnet, subnetupcmd per peer subnet
 *  8. drop privileges (`user`/`group`), then check the writable paths
 *  (timers — BNL pull, proactive negotiation, rekey — belong to step 5)
 *
 * Who owns what: the peer directory the data plane's peers (id ↔ name, the
 * endpoint book); the list applier every change a list makes (the one-at-a-
 * time queue); the BNL store the current list; the mesh the negotiation,
 * control channel and gossip state. `startDaemon` keeps no state of its own
 * but the mesh handle, which the data plane's events and the applier ask
 * for because the mesh starts after the data plane it needs.
 */
import { statSync } from 'node:fs';
import { dirname } from 'node:path';
import type { BnlNode } from '@cluevpn/bnl';
import { createDataplane } from '@cluevpn/dataplane';
import { CLUEVPN_VERSION } from '@cluevpn/control';
import type { DaemonConfig } from './config.js';
import { startControlServer, type ReloadResult, type StatusReport } from './control.js';
import { portClash } from './clash.js';
import { dataplaneEvents } from './dataplane-events.js';
import { openDevice } from './device.js';
import { resolveCandidates, type Endpoint } from './endpoints.js';
import { loadedAs } from './entry.js';
import { LARGE_LIST_BYTES, collectGarbage, keepHeapTight, keepYoungGenerationSmall } from './heap.js';
import { createHookRunner } from './hooks.js';
import { createListApplier } from './list-applier.js';
import type { Logger, RootLogger } from './logging.js';
import { startMesh, type Mesh } from './mesh.js';
import { createPeerDirectory } from './peers.js';
import { removePidfile, writePidfile } from './pidfile.js';
import { checkWritableAfterDrop, dropPrivileges, resolveAccount } from './privileges.js';
import { checkPrivilegeBoundary } from './protected-paths.js';
import { createReloader } from './reload.js';
import { createKernelRoutes } from './routes.js';
import { prepareStateDir } from './state-dir.js';
import { createStatusReporter } from './status.js';
import { loadStoredList } from './stored-list.js';
import { engineSwitches } from './switches.js';
import { createTeardown } from './teardown.js';

/** Version reported by `status`, `--version` and the "cluevpnd started" log line (the release's, see @cluevpn/control). */
export const DAEMON_VERSION = CLUEVPN_VERSION;

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

/**
 * The first endpoint a node is tried on: IPv6 dropped when `disableipv6`,
 * IPv6 first when `preferipv6` or the node prefers it, DNS names resolved.
 * `null` when the node lists none usable. (The daemon keeps every candidate:
 * `endpoints.ts`.)
 */
export async function chooseEndpoint(node: BnlNode, config: Pick<DaemonConfig, 'disableipv6' | 'preferipv6'>, log: Logger): Promise<Endpoint | null> {
  return (await resolveCandidates(node, config, log))[0] ?? null;
}

/** Starts the daemon (steps 0–8 above). On failure, undoes what it did and rethrows. */
export async function startDaemon(opts: DaemonOptions): Promise<RunningDaemon> {
  const { config, logger: root } = opts;
  const log = root;
  const startedAt = Date.now();

  // 0. the privilege boundary, before anything changes
  const account = resolveAccount({ user: config.user, group: config.group });
  if (account !== null) checkPrivilegeBoundary(config, { name: account.name, uid: account.uid, gids: [account.gid, ...account.groups] });

  const parts = createTeardown(log);
  /** The mesh once it runs (step 5); the data plane's events and the list applier ask for it. */
  let mesh: Mesh | undefined;
  try {
    const peers = createPeerDirectory({ config, logger: log.child('endpoints') });
    parts.push('endpoint look-ups', () => peers.close());

    // 1. pidfile, state directory
    writePidfile(config.pidfile);
    parts.push('pidfile', () => removePidfile(config.pidfile));
    prepareStateDir(config, account, log);

    // 2. BNL
    /** The list file is large (heap.ts, LARGE_LIST_BYTES): the heap is kept tight, garbage collected after start and after each apply. */
    const largeList = (statSync(config.bnl, { throwIfNoEntry: false })?.size ?? 0) >= LARGE_LIST_BYTES;
    if (largeList) keepHeapTight(); // before the load grows the heap (heap.ts)
    const { store, list, self, ms: loadMs } = await loadStoredList(config, log);

    // 3. device, routes, hook runner
    const switches = engineSwitches(config);
    const dev = await openDevice(config, list.bnl, self, switches.tun, log, (d) => parts.push('tun', () => d.close()));
    const routes = createKernelRoutes({ tun: dev, mode: config.mode, logger: log });
    // Created now, run from step 7 on (upcmd first): a list applied before then finds it.
    const hooks = createHookRunner({
      commands: config,
      env: { TUNDEV: dev.name, NETNAME: config.netname, NODE: self.name, NODEID: String(self.id) },
      logger: log.child('hooks'),
    });

    // 4. data plane, peers, the list
    const dpLog = log.child('dataplane');
    const dp = await createDataplane({
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
      events: dataplaneEvents({ peers, mesh: () => mesh, logger: dpLog }),
    }).catch((err: unknown) => { throw portClash(err, 'udp', config.port); }); // ERR_PORT_IN_USE naming the holder
    parts.push('dataplane', () => dp.close());
    parts.push('endpoint look-ups', () => peers.close()); // before the data plane closes
    peers.attach(dp);
    const applier = createListApplier({ selfName: self.name, dataplane: dp, peers, routes, hooks, mesh: () => mesh, logger: log });
    const t = performance.now();
    await applier.start(list.bnl); // access rules, peers, their routes
    /** The list's cost at start (load and verify, routes, peer table), logged with 'cluevpnd started' (scripts/bench/scale). */
    const listMs = loadMs + (performance.now() - t);

    // 5. mesh: state, control channel, negotiation, gossip
    const m = await startMesh({
      config,
      logger: log,
      bnl: store,
      dataplane: dp,
      selfName: self.name,
      peerId: (name) => peers.idOf(name),
      controlAddresses: (name) => peers.candidates(name),
      reached: (name, where) => peers.reached(name, where),
      punched: (name, where) => peers.punched(name, where),
      apply: (result, source) =>
        applier.apply(result.diff, result.list.bnl).then(() => {
          log.notice('BNL applied', { serial: result.list.bnl.serial, peer: source, added: result.diff.added.length, removed: result.diff.removed.length, changed: result.diff.changed.length });
          if (result.list.bytes.length >= LARGE_LIST_BYTES) setImmediate(collectGarbage); // the old list and the diff's garbage (heap.ts)
        }),
    }).catch((err: unknown) => { throw portClash(err, 'tcp', config.port); });
    mesh = m;
    parts.push('mesh', () => m.close());

    // 6. control socket, metrics
    const reports = createStatusReporter({ config, self, device: dev.name, startedAt, logLevel: () => root.level, dataplane: dp, store, peers, mesh: m });
    const reloadAndPush = createReloader({ store, applier, mesh: m, logger: log });
    const control = await startControlServer({
      path: config.controlsocket,
      logger: log.child('control'),
      handlers: {
        status: () => reports.status(),
        peers: () => reports.status().peers,
        bnlStatus: () => reports.bnlStatus(),
        setLogLevel: (level) => {
          const previous = root.level;
          root.setLevel(level);
          log.notice('log level changed', { level, reason: `was ${previous}` });
          return { level, previous };
        },
        reloadAndPush: () => reloadAndPush(),
      },
    });
    parts.push('control socket', () => control.close());
    if (config.metrics !== undefined) {
      // loaded only when asked for: prom-client and node:http cost every start otherwise
      const { startMetricsServer } = await import('./metrics.js');
      const metrics = await startMetricsServer({ listen: config.metrics, logger: log.child('metrics'), source: { status: () => reports.status(), control: () => m.stats().control } });
      parts.push('metrics', () => metrics.close());
    }

    // 7. hooks
    parts.push('downcmd', () => hooks.run('downcmd', {}, { timeoutMs: 1000 }));
    await hooks.run('upcmd');
    for (const s of self.subnets) await hooks.run('mysubnetupcmd', { SUBNET: s });
    await applier.startHooks(list.bnl);

    // 8. privileges
    const dropped = dropPrivileges({ user: config.user, group: config.group }, log);
    if (dropped !== null) {
      // With CAP_NET_ADMIN kept (the native drop), routes still follow the BNL.
      if (!dropped.keptNetAdmin) routes.freeze();
      checkWritableAfterDrop([dirname(config.bnl), dirname(config.statedb)]);
    }

    log.notice('cluevpnd started', {
      node: self.name,
      id: self.id,
      device: dev.name,
      port: dp.port,
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

    let stopping: Promise<void> | undefined;
    return {
      status: () => reports.status(),
      reloadAndPush,
      stop: () => (stopping ??= parts.run().then(() => log.notice('cluevpnd stopped'))),
    };
  } catch (err) {
    await parts.run();
    throw err;
  }
}
