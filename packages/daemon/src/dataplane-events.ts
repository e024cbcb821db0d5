/**
 * The data plane's events, turned from peer ids into node names and handed
 * on: negotiation needs (no session, rekey, authentication failures, a new
 * receive epoch, rendezvous) to the mesh, a roamed peer to the peer
 * directory. The data plane is created before the mesh (the mesh needs it),
 * so the mesh is asked for when an event comes: until it runs, negotiation
 * events are dropped (no session can exist yet) and logged as before.
 */
import type { DataplaneEvents, RekeyReason as DataplaneRekeyReason } from '@cluevpn/dataplane';
import type { RekeyReason } from '@cluevpn/negotiation';
import type { Logger } from './logging.js';
import type { Mesh } from './mesh.js';
import type { PeerDirectory } from './peers.js';

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

/** What the events need. */
export interface DataplaneEventOptions {
  peers: Pick<PeerDirectory, 'nameOf' | 'roamed'>;
  /** The mesh once it runs. */
  mesh(): Mesh | undefined;
  /** The data plane's logger (`cluevpnd:dataplane`). */
  logger: Logger;
}

/** The data plane's `events` option. */
export function dataplaneEvents(o: DataplaneEventOptions): DataplaneEvents {
  const { peers } = o;
  const dpLog = o.logger;
  return {
    onNoSession: (peerId) => {
      const name = peers.nameOf(peerId);
      if (name !== undefined) o.mesh()?.noSession(name);
    },
    onRekeyNeeded: (peerId, reason) => {
      const name = peers.nameOf(peerId);
      if (name !== undefined) o.mesh()?.rekey(name, rekeyReasonOf(reason));
      dpLog.info('rekey needed', { peer: name, reason });
    },
    onAuthFailures: (peerId, count) => {
      const name = peers.nameOf(peerId);
      dpLog.warn('authentication failures: renegotiating', { peer: name, count });
      if (name !== undefined) o.mesh()?.rekey(name, 'auth-failures');
    },
    onRxEpoch: (peerId, localIndex, epoch) => {
      const name = peers.nameOf(peerId);
      if (name !== undefined) o.mesh()?.rxEpoch(name, localIndex, epoch);
    },
    onEndpointChange: (peerId, host, port) => {
      const name = peers.nameOf(peerId);
      if (name !== undefined) peers.roamed(name, host, port);
      dpLog.info('peer roamed', { peer: name, endpoint: `${host}:${port}` });
    },
    onRendezvous: (peerId, payload) => {
      const name = peers.nameOf(peerId);
      if (name !== undefined) o.mesh()?.rendezvous(name, payload);
    },
  };
}
