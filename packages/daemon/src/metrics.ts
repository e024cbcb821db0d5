/**
 * Prometheus metrics (`metrics=ADDRESS:PORT`): an HTTP endpoint that serves
 * the daemon's figures in Prometheus' text format, made with `prom-client`.
 *
 *  start:
 *   1. a registry of its own (never prom-client's global one) with the
 *      process metrics prom-client offers (`process_*`, `nodejs_*`: memory,
 *      CPU, descriptors, event-loop lag sampled once a second)
 *   2. the daemon's metrics below, each with a `collect()` callback
 *   3. an HTTP server on ADDRESS:PORT: `GET /metrics` → the text format,
 *      `/` → a pointer to it, other paths 404, other methods 405
 *
 *  per scrape:
 *   1. one snapshot of the source: `status()` (the very report `cluevpn
 *      status` shows: the data plane's and the negotiator's own counters)
 *      and the control channel's counters
 *   2. every metric's `collect()` copies its figures from that snapshot
 *   3. the registry renders the text
 *
 * Nothing here runs per packet: the counters are the data plane's and are
 * read only when Prometheus asks. A peer that leaves the list leaves the
 * metrics at the next scrape (every collect starts from `reset()`).
 *
 * This module is loaded only when `metrics=` is set (`daemon.ts` imports it
 * dynamically), so a daemon without metrics never loads prom-client or
 * `node:http`.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { StatusReport, PeerStatus } from '@cluevpn/control';
import type { ControlStats } from '@cluevpn/negotiation';
import type { ListenAddress } from './config.js';
import { DaemonError } from './errors.js';
import type { Logger } from './logging.js';

/** Implementation: how often the event-loop lag is sampled (prom-client's default, 10 ms, would wake the daemon 100 times a second). */
export const EVENT_LOOP_SAMPLE_MS = 1000;

/** The states a peer can be in (`PeerStatus['state']`), each a series of `cluevpn_peer_state`. */
const PEER_STATES: readonly PeerStatus['state'][] = ['up', 'keyed', 'negotiating', 'idle'];

/** Where the figures come from: read once per scrape, never per packet. */
export interface MetricsSource {
  /** The daemon's status report (the same one `cluevpn status` gets). */
  status(): StatusReport;
  /** The mutual-TLS control channel's counters, `undefined` when it is not running. */
  control(): ControlStats | undefined;
}

/** One scrape's figures. */
interface Snapshot {
  status: StatusReport;
  control: ControlStats | undefined;
}

/** A registry holding the daemon's metrics; `scrape()` renders it. */
export interface DaemonMetrics {
  readonly registry: Registry;
  /** One snapshot of the source, rendered in Prometheus' text format. */
  scrape(): Promise<string>;
}

/** Options of `startMetricsServer`. */
export interface MetricsServerOptions {
  listen: ListenAddress;
  source: MetricsSource;
  logger: Logger;
}

/** A listening metrics endpoint. */
export interface MetricsServer {
  /** The bound address and port (the port read back, so 0 works in tests). */
  readonly host: string;
  readonly port: number;
  /** Stops listening and closes open connections. Idempotent. */
  close(): Promise<void>;
}

type Labels<T extends string> = Partial<Record<T, string | number>>;

/** Steps 1 and 2: the registry and the daemon's metrics, reading `source` once per scrape. */
export function createDaemonMetrics(source: MetricsSource): DaemonMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });

  let snap: Snapshot | null = null;
  const now = (): Snapshot => (snap ??= { status: source.status(), control: source.control() });

  /** A counter (or gauge) whose series are rebuilt from the snapshot at each scrape. */
  function series<T extends string>(kind: 'counter' | 'gauge', name: string, help: string, labelNames: readonly T[], fill: (s: Snapshot, put: (labels: Labels<T>, value: number) => void) => void): void {
    const config = {
      name,
      help,
      labelNames,
      registers: [registry],
      collect(this: Counter<T> | Gauge<T>) {
        this.reset();
        const m = this;
        fill(now(), m instanceof Counter ? (labels, value) => m.inc(labels, value) : (labels, value) => m.set(labels, value));
      },
    };
    if (kind === 'counter') new Counter<T>(config);
    else new Gauge<T>(config);
  }
  /** A per-peer series: one value per peer, left out where `value` is null. */
  const perPeer = (kind: 'counter' | 'gauge', name: string, help: string, value: (p: PeerStatus) => number | null): void =>
    series(kind, name, help, ['peer'], (s, put) => {
      for (const p of s.status.peers) {
        const v = value(p);
        if (v !== null) put({ peer: p.name }, v);
      }
    });

  // node
  series('gauge', 'cluevpn_info', 'Always 1: this node, its network and the release', ['node', 'netname', 'version'], (s, put) =>
    put({ node: s.status.name, netname: s.status.netname, version: s.status.version }, 1),
  );
  series('gauge', 'cluevpn_bnl_serial', 'Serial of the BNL this node applies', [], (s, put) => put({}, s.status.bnl.serial));
  series('gauge', 'cluevpn_bnl_nodes', 'Nodes in the BNL this node applies', [], (s, put) => put({}, s.status.bnl.nodes));
  series('gauge', 'cluevpn_peers', 'Peers by state', ['state'], (s, put) => {
    for (const state of PEER_STATES) put({ state }, s.status.peers.filter((p) => p.state === state).length);
  });
  series('counter', 'cluevpn_drops_total', 'Packets dropped and not tied to a current peer (unknown receiver index, bad header, no route, bad source...), by reason', ['reason'], (s, put) => {
    for (const [reason, n] of Object.entries(s.status.drops)) put({ reason }, n);
  });
  series('gauge', 'cluevpn_control_connections', 'Open connections of the mutual-TLS control channel', [], (s, put) => {
    if (s.control) put({}, s.control.connections);
  });
  series('gauge', 'cluevpn_control_unauthenticated', 'Open control-channel connections not yet authenticated', [], (s, put) => {
    if (s.control) put({}, s.control.unauthenticated);
  });
  series('counter', 'cluevpn_control_handshakes_started_total', 'TLS handshakes started on the control channel (after the pre-TLS checks)', [], (s, put) => {
    if (s.control) put({}, s.control.handshakesStarted);
  });
  series('counter', 'cluevpn_control_accepted_total', 'Control-channel connections that passed authorisation', [], (s, put) => {
    if (s.control) put({}, s.control.accepted);
  });
  series('counter', 'cluevpn_control_refused_total', 'Control-channel connections refused, by reason', ['reason'], (s, put) => {
    for (const [reason, n] of Object.entries(s.control?.refused ?? {})) put({ reason }, n);
  });
  series('counter', 'cluevpn_control_cut_off_total', 'Authenticated control-channel connections cut off, by reason', ['reason'], (s, put) => {
    for (const [reason, n] of Object.entries(s.control?.cutOff ?? {})) put({ reason }, n);
  });

  // per peer
  perPeer('counter', 'cluevpn_peer_rx_packets_total', 'Authenticated data packets received from the peer', (p) => p.rxPackets);
  perPeer('counter', 'cluevpn_peer_rx_bytes_total', 'Inner (IP packet) bytes received from the peer', (p) => p.rxBytes);
  perPeer('counter', 'cluevpn_peer_tx_packets_total', 'Data packets sent to the peer', (p) => p.txPackets);
  perPeer('counter', 'cluevpn_peer_tx_bytes_total', 'Inner (IP packet) bytes sent to the peer, before compression', (p) => p.txBytes);
  series('counter', 'cluevpn_peer_drops_total', 'Packets from or to the peer dropped, by reason', ['peer', 'reason'], (s, put) => {
    for (const p of s.status.peers) for (const [reason, n] of Object.entries(p.drops)) put({ peer: p.name, reason }, n);
  });
  perPeer('counter', 'cluevpn_peer_negotiations_total', 'Negotiations completed with the peer since the daemon started', (p) => p.negotiations);
  perPeer('gauge', 'cluevpn_peer_key_age_seconds', 'Age of the current keys (absent without keys)', (p) => (p.keyAgeMs === null ? null : p.keyAgeMs / 1000));
  perPeer('gauge', 'cluevpn_peer_last_rx_seconds', 'Seconds since the last authenticated packet from the peer (absent when never)', (p) => (p.lastRxMs === null ? null : p.lastRxMs / 1000));
  perPeer('gauge', 'cluevpn_peer_path_mtu_bytes', 'Path MTU to the peer as probed, outer IP packet bytes (absent before the first search ended)', (p) => p.pmtu ?? null);
  perPeer('gauge', 'cluevpn_peer_bnl_serial', 'BNL serial the peer was last seen holding (absent when unknown)', (p) => p.bnlSerial);
  series('gauge', 'cluevpn_peer_state', 'Session state of the peer: 1 for the current state, 0 for the others', ['peer', 'state'], (s, put) => {
    for (const p of s.status.peers) for (const state of PEER_STATES) put({ peer: p.name, state }, p.state === state ? 1 : 0);
  });
  series('gauge', 'cluevpn_peer_path', 'Path to the peer (direct: its own endpoint); absent when no endpoint is known', ['peer', 'path', 'endpoint'], (s, put) => {
    for (const p of s.status.peers) if (p.endpoint !== null) put({ peer: p.name, path: 'direct', endpoint: p.endpoint }, 1);
  });

  return {
    registry,
    async scrape() {
      snap = null;
      try {
        now();
        return await registry.metrics();
      } finally {
        snap = null;
      }
    },
  };
}

/** Starts steps 1–3 above. Rejects with `ERR_STARTUP` when the address cannot be bound. */
export async function startMetricsServer(o: MetricsServerOptions): Promise<MetricsServer> {
  const log = o.logger;
  const metrics = createDaemonMetrics(o.source);
  const server: Server = createServer((req, res) => void serve(req, res, metrics, log));
  server.keepAliveTimeout = 5_000;
  server.headersTimeout = 10_000;
  server.requestTimeout = 10_000;
  server.maxConnections = 16;
  await new Promise<void>((resolveListen, rejectListen) => {
    server.once('error', (err) =>
      rejectListen(new DaemonError('ERR_STARTUP', `metrics ${formatAddress(o.listen)}: cannot listen (${(err as NodeJS.ErrnoException).code ?? err.message})`, { cause: err })),
    );
    server.listen({ host: o.listen.host, port: o.listen.port }, () => resolveListen());
  });
  server.removeAllListeners('error');
  server.on('error', (err) => log.error('metrics server error', { err }));
  const addr = server.address();
  const port = addr !== null && typeof addr === 'object' ? addr.port : o.listen.port;
  log.notice('metrics listening', { endpoint: formatAddress({ host: o.listen.host, port }) });
  let closed: Promise<void> | undefined;
  return {
    host: o.listen.host,
    port,
    close() {
      closed ??= new Promise<void>((resolveClose) => {
        server.close(() => resolveClose());
        server.closeAllConnections();
      });
      return closed;
    },
  };
}

/** `host:port`, IPv6 in brackets. */
function formatAddress(a: ListenAddress): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

async function serve(req: IncomingMessage, res: ServerResponse, metrics: DaemonMetrics, log: Logger): Promise<void> {
  const path = (req.url ?? '/').split('?')[0];
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' }).end('method not allowed\n');
    return;
  }
  if (path === '/') {
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' }).end('cluevpnd: metrics at /metrics\n');
    return;
  }
  if (path !== '/metrics') {
    res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found: metrics are at /metrics\n');
    return;
  }
  let body: string;
  try {
    body = await metrics.scrape();
  } catch (err) {
    log.error('metrics scrape failed', { err });
    res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end('scrape failed; see the daemon log\n');
    return;
  }
  res.writeHead(200, { 'content-type': metrics.registry.contentType });
  res.end(req.method === 'HEAD' ? undefined : body);
}
