/**
 * The daemon's one view of its counters: the control protocol's `status`
 * (and `bnl-status`) report, built on request from the parts that own the
 * counters — the data plane (peers, drops, the access policy, relayed data,
 * the switch), the mesh (sessions, gossip serials, the relay service), the
 * BNL store and the peer directory (names). `cluevpn status` and the
 * metrics endpoint (`metrics.ts`) both read it; nothing here is kept.
 */
import type { BnlNode, BnlStore, SignedBnl } from '@cluevpn/bnl';
import type { Dataplane, DataplaneStats, PeerStats } from '@cluevpn/dataplane';
import type { BnlStatusReport, MemoryReport, PeerStatus, StatusReport } from './control.js';
import type { DaemonConfig } from './config.js';
import { CLUEVPN_VERSION } from '@cluevpn/control';
import { loadedAs } from './entry.js';
import { isoTimestamp } from './logging.js';
import type { Mesh } from './mesh.js';
import type { PeerDirectory } from './peers.js';
import { switchReport } from './switch-mode.js';

/** What the reports are built from. */
export interface StatusSources {
  config: Pick<DaemonConfig, 'bnl' | 'netname' | 'keepaliveMs' | 'mode'>;
  /** This node's record in the list loaded at start (name and id). */
  self: Pick<BnlNode, 'name' | 'id'>;
  /** The device's name. */
  device: string;
  /** When the daemon started (`Date.now()`). */
  startedAt: number;
  /** The log level now (0–7). */
  logLevel(): number;
  dataplane: Dataplane;
  store: BnlStore;
  peers: Pick<PeerDirectory, 'names' | 'nameOf'>;
  mesh: Mesh;
}

/** The reports. */
export interface StatusReporter {
  /** The control protocol's `status` (also `peers`: its `peers` field). */
  status(): StatusReport;
  /** The control protocol's `bnl-status`. */
  bnlStatus(): BnlStatusReport;
}

/** Creates the reporter; every report is built when asked for. */
export function createStatusReporter(o: StatusSources): StatusReporter {
  const { config, self, dataplane, store, peers, mesh } = o;
  function bnlStatus(): BnlStatusReport {
    const cur: SignedBnl = store.current!;
    return {
      serial: cur.bnl.serial,
      signedAt: isoTimestamp(new Date(cur.bnl.timestamp)),
      nodes: cur.bnl.nodes.length,
      path: config.bnl,
      peers: Object.fromEntries([...peers.names()].map((name) => [name, mesh.peer(name).bnlSerial ?? null])),
    };
  }

  function peerStatus(p: PeerStats, now: number): PeerStatus {
    const primary = p.sessions.find((s) => s.primary) ?? null;
    const m = mesh.peer(p.name);
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
      path: primary !== null && p.relay !== null ? `via ${peers.nameOf(p.relay) ?? p.relay}` : primary !== null && endpoint !== null && lastRx !== null && lastRx < fresh ? 'direct' : null,
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
      relay: mesh.relayIsOn(),
      ...mesh.relayStats(),
      forwarded: st.relaying.forwarded,
      forwardedBytes: st.relaying.forwardedBytes,
      unauthenticated: st.relaying.unauthenticated,
      members,
    };
  }

  function status(): StatusReport {
    const now = Date.now();
    const st = dataplane.stats();
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
      version: CLUEVPN_VERSION,
      uptimeMs: now - o.startedAt,
      device: o.device,
      port: st.port,
      logLevel: o.logLevel(),
      bnl: bnlStatus(),
      policy: { serial: st.acl.serial, rules: st.acl.rules, flows: st.acl.flows, maxFlows: st.acl.maxFlows, evicted: st.acl.evicted },
      peers: st.peers.map((p) => peerStatus(p, now)).sort((a, b) => (a.name < b.name ? -1 : 1)),
      drops,
      memory: memoryReport(),
      loaded: loadedAs(),
      relay: relayReport(st),
      mode: config.mode,
      ...(st.switch !== null ? { switch: switchReport(st.switch, peers) } : {}),
    };
  }

  return { status, bnlStatus };
}

function memoryReport(): MemoryReport {
  const m = process.memoryUsage();
  return { rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, arrayBuffers: m.arrayBuffers };
}
