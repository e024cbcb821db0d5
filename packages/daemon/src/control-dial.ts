/**
 * Our side of the control channel: the connections this node dials (gossip
 * and negotiation), and the set of them that are open.
 *
 *  1. `connectDirect`: the node's control addresses in turn (the endpoint
 *     book's candidates, the one in use first) until one answers; the book
 *     is told which one did, or that none did
 *  2. `connect`: a node listed without an endpoint (behind NAT), or one none
 *     of whose addresses answers, through a relay (`relay.ts`: the relay
 *     splices, TLS stays end to end) — for negotiation only: gossip does not
 *     load the relays (nodes behind NAT pull from the public ones themselves)
 *  3. every dialled connection is authorised like an accepted one, and
 *     `recheck` checks the open ones again against the current list
 *
 * Owns the set of open dialled connections.
 */
import type { BnlNode } from '@cluevpn/bnl';
import { connectControl, type ControlConnection, type ControlCredentials } from '@cluevpn/negotiation';
import type tls from 'node:tls';
import { DaemonError } from './errors.js';
import type { Logger } from './logging.js';

type ConnectOptions = Parameters<typeof connectControl>[0];

/** What the dialler needs. */
export interface ControlDialerOptions {
  /** The credentials for a new connection (`credentials.ts`). */
  credentials(): ControlCredentials;
  authorize: ConnectOptions['authorize'];
  limits: { maxFrameBytes: number };
  /** The negotiation logger. */
  logger: Logger;
  /** A node's record in the current list. */
  record(name: string): BnlNode | undefined;
  /** Where a node's control port may be, the endpoint in use first. */
  controlAddresses(name: string): readonly { host: string; port: number }[];
  /** Which address answered, or none (`null`). */
  reached(name: string, where: { host: string; port: number } | null): void;
  /** The relays that can reach a node, and a spliced stream through one (`relay.ts`). */
  relays: {
    relaysFor(name: string): readonly string[];
    dial(name: string): Promise<{ stream: tls.TLSSocket; relay: string }>;
  };
}

/** Dials control connections (see the file comment). */
export interface ControlDialer {
  /** Step 2 (`viaRelay` false: step 1 only). */
  connect(name: string, viaRelay?: boolean): Promise<ControlConnection>;
  /** Step 1. */
  connectDirect(name: string): Promise<ControlConnection>;
  /** Checks every open dialled connection against the current list and closes those that fail; returns how many. */
  recheck(): number;
}

/** Creates the dialler, with no connection open. */
export function createControlDialer(o: ControlDialerOptions): ControlDialer {
  const { authorize, limits } = o;
  const negLog = o.logger;
  /** Our dialled connections (gossip and negotiation), re-checked with the accepted ones. */
  const outgoing = new Set<ControlConnection>();
  /** Step 3: an open dialled connection is re-checked until it closes. */
  const track = (c: ControlConnection): ControlConnection => {
    outgoing.add(c);
    c.onClose(() => outgoing.delete(c));
    return c;
  };

  const connect = async (name: string, viaRelay = true): Promise<ControlConnection> => {
    const listedNone = (o.record(name)?.endpoints.length ?? 0) === 0;
    if (!viaRelay) return connectDirect(name);
    if (listedNone && o.relays.relaysFor(name).length > 0) return connectViaRelay(name);
    try {
      return await connectDirect(name);
    } catch (err) {
      if (o.relays.relaysFor(name).length === 0) throw err;
      negLog.debug('control channel unreachable, trying relays', { peer: name, err });
      return connectViaRelay(name);
    }
  };
  const connectViaRelay = async (name: string): Promise<ControlConnection> => {
    const { stream, relay: via } = await o.relays.dial(name);
    try {
      return track(await connectControl({ host: via, port: 0, peerName: name, socket: stream, credentials: o.credentials(), authorize, limits, logger: negLog }));
    } catch (err) {
      stream.destroy();
      throw err;
    }
  };
  const connectDirect = async (name: string): Promise<ControlConnection> => {
    const addresses = o.controlAddresses(name);
    if (addresses.length === 0) throw new DaemonError('ERR_GOSSIP', `no known address for ${name}`);
    let lastErr: unknown;
    for (const where of addresses) {
      try {
        const c = await connectControl({ host: where.host, port: where.port, peerName: name, credentials: o.credentials(), authorize, limits, logger: negLog });
        o.reached(name, where);
        return track(c);
      } catch (err) {
        lastErr = err;
        if (addresses.length > 1) negLog.debug('control address did not answer', { peer: name, endpoint: `${where.host}:${where.port}`, err });
      }
    }
    o.reached(name, null);
    throw lastErr;
  };

  return {
    connect,
    connectDirect,
    recheck: () => {
      let closed = 0;
      for (const c of [...outgoing]) if (!c.recheck()) closed++;
      return closed;
    },
  };
}
