import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { PeerStatus, StatusReport } from '@cluevpn/control';
import type { ControlStats } from '@cluevpn/negotiation';
import { createDaemonMetrics, startMetricsServer } from '../src/metrics.js';
import { silentLogger } from '../src/logging.js';

function peer(name: string, over: Partial<PeerStatus> = {}): PeerStatus {
  return {
    name,
    id: 1,
    endpoint: '192.0.2.2:3406',
    state: 'up',
    cipher: 'aes-256-gcm',
    compression: 'none',
    keyAgeMs: 12_500,
    lastRxMs: 300,
    lastNegotiationMs: 12_500,
    lastKeepaliveTxMs: null,
    lastKeepaliveRxMs: null,
    pmtu: null,
    innerMtu: 1420,
    pmtuAgeMs: null,
    restored: false,
    negotiations: 2,
    rxPackets: 10,
    rxBytes: 840,
    txPackets: 11,
    txBytes: 924,
    drops: { replayed: 3 },
    bnlSerial: 7,
    subnets: ['10.99.0.2/32'],
    ...over,
  };
}

function report(peers: PeerStatus[], drops: Record<string, number> = {}): StatusReport {
  return {
    name: 'alpha',
    id: 1,
    netname: 'mesh',
    pid: 1234,
    version: '0.1.0',
    uptimeMs: 1000,
    device: 'mesh',
    port: 3406,
    logLevel: 5,
    bnl: { serial: 7, signedAt: null, nodes: 3, path: '/x/bnl', peers: {} },
    peers,
    drops,
    memory: { rss: 1, heapUsed: 1, heapTotal: 1, external: 1, arrayBuffers: 1 },
    loaded: '',
  };
}

/** The value of one sample line `name{labels} value` in the text format, or undefined. */
function sample(text: string, series: string): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1));
  }
  return undefined;
}

const quietLogger = () => silentLogger;

test('metrics: one status snapshot per scrape, counters and gauges from it, removed peers and unknown values left out', async () => {
  let calls = 0;
  let st = report([peer('beta', { pmtu: 1280, innerMtu: 1216, pmtuAgeMs: 1000 }), peer('gamma', { state: 'idle', keyAgeMs: null, lastRxMs: null, bnlSerial: null, endpoint: null, drops: {}, rxPackets: 0 })], { 'unknown-index': 4 });
  const control: ControlStats = { connections: 1, unauthenticated: 1, accepted: 5, handshakesStarted: 7, resumed: 2, refused: { 'not-member': 2 }, cutOff: {} };
  const m = createDaemonMetrics({
    status: () => {
      calls++;
      return st;
    },
    control: () => control,
  });
  const text = await m.scrape();
  assert.equal(calls, 1, 'every metric read the same snapshot');
  assert.match(text, /^# TYPE cluevpn_peer_rx_packets_total counter$/m);
  assert.equal(sample(text, 'cluevpn_peer_rx_packets_total{peer="beta"}'), 10);
  assert.equal(sample(text, 'cluevpn_peer_rx_packets_total{peer="gamma"}'), 0);
  assert.equal(sample(text, 'cluevpn_peer_tx_bytes_total{peer="beta"}'), 924);
  assert.equal(sample(text, 'cluevpn_peer_drops_total{peer="beta",reason="replayed"}'), 3);
  assert.equal(sample(text, 'cluevpn_peer_negotiations_total{peer="beta"}'), 2);
  assert.equal(sample(text, 'cluevpn_peer_key_age_seconds{peer="beta"}'), 12.5);
  assert.equal(sample(text, 'cluevpn_peer_key_age_seconds{peer="gamma"}'), undefined, 'no keys: no key age');
  assert.equal(sample(text, 'cluevpn_peer_bnl_serial{peer="beta"}'), 7);
  assert.equal(sample(text, 'cluevpn_peer_bnl_serial{peer="gamma"}'), undefined);
  assert.equal(sample(text, 'cluevpn_peer_path_mtu_bytes{peer="beta"}'), 1280);
  assert.equal(sample(text, 'cluevpn_peer_path_mtu_bytes{peer="gamma"}'), undefined, 'absent before the first search');
  assert.equal(sample(text, 'cluevpn_peer_state{peer="beta",state="up"}'), 1);
  assert.equal(sample(text, 'cluevpn_peer_state{peer="beta",state="idle"}'), 0);
  assert.equal(sample(text, 'cluevpn_peer_state{peer="gamma",state="idle"}'), 1);
  assert.equal(sample(text, 'cluevpn_peer_path{peer="beta",path="direct",endpoint="192.0.2.2:3406"}'), 1);
  assert.doesNotMatch(text, /cluevpn_peer_path\{peer="gamma"/);
  assert.equal(sample(text, 'cluevpn_peers{state="up"}'), 1);
  assert.equal(sample(text, 'cluevpn_bnl_serial'), 7);
  assert.equal(sample(text, 'cluevpn_drops_total{reason="unknown-index"}'), 4);
  assert.equal(sample(text, 'cluevpn_control_connections'), 1);
  assert.equal(sample(text, 'cluevpn_control_unauthenticated'), 1);
  assert.equal(sample(text, 'cluevpn_control_handshakes_started_total'), 7);
  assert.equal(sample(text, 'cluevpn_control_refused_total{reason="not-member"}'), 2);
  assert.equal(sample(text, 'cluevpn_info{node="alpha",netname="mesh",version="0.1.0"}'), 1);
  assert.ok((sample(text, 'process_resident_memory_bytes') ?? 0) > 0, 'process memory from prom-client default metrics');

  // the next scrape reads the source again: figures move, a removed peer is gone
  st = report([peer('beta', { rxPackets: 25 })]);
  const text2 = await m.scrape();
  assert.equal(calls, 2);
  assert.equal(sample(text2, 'cluevpn_peer_rx_packets_total{peer="beta"}'), 25);
  assert.doesNotMatch(text2, /peer="gamma"/);
  assert.doesNotMatch(text2, /^cluevpn_drops_total\{/m, 'no drop reasons left');
});

test('metrics server: GET /metrics answers the text format, other paths 404, other methods 405; close frees the port', async () => {
  const srv = await startMetricsServer({
    listen: { host: '127.0.0.1', port: 0 },
    logger: quietLogger(),
    source: { status: () => report([peer('beta')]), control: () => undefined },
  });
  try {
    assert.ok(srv.port > 0);
    const base = `http://127.0.0.1:${srv.port}`;
    const r = await fetch(`${base}/metrics`);
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    const text = await r.text();
    assert.equal(sample(text, 'cluevpn_peer_rx_packets_total{peer="beta"}'), 10);
    assert.equal((await fetch(`${base}/other`)).status, 404);
    assert.equal((await fetch(`${base}/metrics`, { method: 'POST', body: 'x' })).status, 405);
  } finally {
    await srv.close();
  }
  await assert.rejects(fetch(`http://127.0.0.1:${srv.port}/metrics`), 'nothing listens after close');
});

test('metrics server: an address that cannot be bound is ERR_STARTUP naming it', async () => {
  const first = await startMetricsServer({ listen: { host: '127.0.0.1', port: 0 }, logger: quietLogger(), source: { status: () => report([]), control: () => undefined } });
  try {
    await assert.rejects(
      startMetricsServer({ listen: { host: '127.0.0.1', port: first.port }, logger: quietLogger(), source: { status: () => report([]), control: () => undefined } }),
      (err: Error & { code?: string }) => err.code === 'ERR_STARTUP' && err.message.includes(`127.0.0.1:${first.port}`),
    );
  } finally {
    await first.close();
  }
});

test('metrics server: a failing source answers 500 and the daemon goes on', async () => {
  let fail = true;
  const srv = await startMetricsServer({
    listen: { host: '127.0.0.1', port: 0 },
    logger: quietLogger(),
    source: {
      status: () => {
        if (fail) throw new Error('boom');
        return report([]);
      },
      control: () => undefined,
    },
  });
  try {
    assert.equal((await fetch(`http://127.0.0.1:${srv.port}/metrics`)).status, 500);
    fail = false;
    assert.equal((await fetch(`http://127.0.0.1:${srv.port}/metrics`)).status, 200);
  } finally {
    await srv.close();
  }
});
