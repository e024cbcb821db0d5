/**
 * Two data planes ("a" = 10.0.1.0/24 + fd00:1::/64, "b" = 10.0.2.0/24 +
 * fd00:2::/64) on memory TUNs, joined either by the in-memory UDP network
 * (deterministic; tests capture and inject datagrams) or by real loopback
 * UDP with a named backend.
 */
import { createMemoryTun, type MemoryTun } from '@cluevpn/tun/testing';
import type { CryptoBackend, UdpBackend } from '../src/backend.js';
import { jsCryptoBackend, jsUdpBackend } from '../src/backend-js.js';
import { nativeAvailable, nativeCryptoBackend, nativeUdpBackend } from '../src/backend-native.js';
import type { DataplaneLimits } from '../src/context.js';
import { createDataplane, type Dataplane, type DataplaneOptions } from '../src/dataplane.js';
import type { DataplaneEvents } from '../src/events.js';
import type { SessionParams } from '../src/peer-table.js';
import { createMemoryUdpNetwork, type MemoryUdpNetwork } from '../src/testing.js';
import { sessionPair } from './pipeline-helpers.js';

/** One recorded event. */
export type EventRecord = [string, ...unknown[]];

/** A node of the harness. */
export interface Node {
  dp: Dataplane;
  tun: MemoryTun;
  events: EventRecord[];
}

/** The pair and its plumbing. */
export interface Pair {
  a: Node;
  b: Node;
  net: MemoryUdpNetwork | null;
  sessions: { a: SessionParams; b: SessionParams };
  close(): void;
}

/** Crypto backends under test: always 'js', plus 'native' when the addon is built. */
export function cryptoBackends(): Array<[string, () => CryptoBackend]> {
  const list: Array<[string, () => CryptoBackend]> = [['js', jsCryptoBackend]];
  if (nativeAvailable()) list.push(['native', nativeCryptoBackend]);
  return list;
}

/** Full backends (crypto + real UDP) under test. */
export function fullBackends(): Array<[string, () => { crypto: CryptoBackend; udp: UdpBackend; name: string }]> {
  const list: Array<[string, () => { crypto: CryptoBackend; udp: UdpBackend; name: string }]> = [
    ['js', () => ({ crypto: jsCryptoBackend(), udp: jsUdpBackend(), name: 'js' })],
  ];
  if (nativeAvailable()) list.push(['native', () => ({ crypto: nativeCryptoBackend(), udp: nativeUdpBackend(), name: 'native' })]);
  return list;
}

function recorder(into: EventRecord[]): DataplaneEvents {
  return {
    onNoSession: (...a) => into.push(['noSession', ...a]),
    onRekeyNeeded: (...a) => into.push(['rekeyNeeded', ...a]),
    onAuthFailures: (...a) => into.push(['authFailures', ...a]),
    onRxEpoch: (...a) => into.push(['rxEpoch', ...a]),
    onEndpointChange: (...a) => into.push(['endpointChange', ...a]),
    onRendezvous: (...a) => into.push(['rendezvous', ...a]),
  };
}

/** Builds the pair. `udp`: 'memory' or a real backend factory; `host`: loopback address for real UDP. */
export async function makePair(
  o: {
    crypto?: () => CryptoBackend;
    real?: () => { crypto: CryptoBackend; udp: UdpBackend };
    host?: string;
    limits?: Partial<DataplaneLimits>;
    compression?: SessionParams['compression'];
    cipher?: SessionParams['cipher'];
    install?: boolean;
    keepaliveMs?: number;
    /** More options for both data planes (path MTU tests). */
    extra?: Partial<DataplaneOptions>;
    /** Options for b only, over `extra`. */
    extraB?: Partial<DataplaneOptions>;
  } = {},
): Promise<Pair> {
  const net = o.real === undefined ? createMemoryUdpNetwork() : null;
  const host = o.host ?? '127.0.0.1';
  const mk = async (isB = false): Promise<Node> => {
    const events: EventRecord[] = [];
    const tun = createMemoryTun({ mtu: 1420 });
    const backends = net !== null ? { crypto: (o.crypto ?? jsCryptoBackend)(), udp: net, name: 'memory' } : (o.real as () => { crypto: CryptoBackend; udp: UdpBackend })();
    const dp = await createDataplane({ tun, port: 0, bindAddress: net !== null ? undefined : host, backends, events: recorder(events), limits: o.limits, keepaliveMs: o.keepaliveMs, ...(o.extra ?? {}), ...(isB ? (o.extraB ?? {}) : {}) });
    return { dp, tun, events };
  };
  const a = await mk();
  const b = await mk(true);
  a.dp.addPeer({ id: 'b', name: 'node-b', subnets: ['10.0.2.0/24', 'fd00:2::/64'], endpoint: { host, port: b.dp.port } });
  b.dp.addPeer({ id: 'a', name: 'node-a', subnets: ['10.0.1.0/24', 'fd00:1::/64'], endpoint: { host, port: a.dp.port } });
  const sessions = sessionPair({ compression: o.compression, cipher: o.cipher });
  if (o.install !== false) {
    a.dp.installSession('b', sessions.a);
    b.dp.installSession('a', sessions.b);
  }
  return {
    a,
    b,
    net,
    sessions,
    close() {
      a.dp.close();
      b.dp.close();
      a.tun.close();
      b.tun.close();
    },
  };
}

/** Sum of every drop counter in a stats snapshot. */
export function totalDrops(d: Partial<Record<string, number>>): number {
  let n = 0;
  for (const v of Object.values(d)) n += v ?? 0;
  return n;
}
