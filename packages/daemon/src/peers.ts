/**
 * The peer directory: the one owner of who the data plane's peers are.
 *
 * A node of the list other than us is a peer. The directory keeps, in step:
 *
 *  1. the data-plane peer id (the BNL id as a string) ↔ node name
 *  2. each peer's endpoints (the endpoint book, `endpoints.ts`)
 *  3. the data plane's peer entry (subnets, MACs, the endpoint in use)
 *
 * `add`, `update` and `remove` change all three together; nothing else
 * writes them. The negotiation side of a peer (sessions, stored keys) is the
 * mesh's: the list applier (`list-applier.ts`) asks both.
 */
import type { BnlNode } from '@cluevpn/bnl';
import type { Dataplane } from '@cluevpn/dataplane';
import type { DaemonConfig } from './config.js';
import { DaemonError } from './errors.js';
import { createEndpointBook, type Endpoint, type EndpointBook } from './endpoints.js';
import type { Logger } from './logging.js';

/** What the directory needs. */
export interface PeerDirectoryOptions {
  config: Pick<DaemonConfig, 'disableipv6' | 'preferipv6' | 'resolveintervalMs'>;
  /** The endpoint book's logger (`cluevpnd:endpoints`). */
  logger: Logger;
}

/** The peers (see the file comment). */
export interface PeerDirectory {
  /** Gives the directory the data plane whose peers it keeps; once, before the first `add`. */
  attach(dataplane: Dataplane): void;
  /** The node name of a data-plane peer id; undefined when it is not a current peer. */
  nameOf(id: string): string | undefined;
  /** The data-plane peer id of a node; undefined when it is not a current peer. */
  idOf(name: string): string | undefined;
  /** The current peers' names, in the order they were added. */
  names(): IterableIterator<string>;
  /** A node of the list becomes a peer: endpoints resolved, data-plane peer added. */
  add(node: BnlNode): Promise<void>;
  /** A peer's record changed (same id and pin): endpoints, subnets and MACs updated. */
  update(node: BnlNode): Promise<void>;
  /** Forgets a peer: data plane (sessions and keys), ids, endpoints. */
  remove(node: BnlNode): void;
  /** Where a node's control port may be, the endpoint in use first (`EndpointBook.candidates`). */
  candidates(name: string): readonly Endpoint[];
  /** The control channel reached `name` at `where`, or none of its addresses (`EndpointBook.reached`). */
  reached(name: string, where: Endpoint | null): void;
  /** A relay told us where `name`'s packets come from (`EndpointBook.punched`). */
  punched(name: string, where: Endpoint): void;
  /** The data plane authenticated `name`'s packets from a new address (`EndpointBook.roamed`). */
  roamed(name: string, host: string, port: number): void;
  /** Stops the endpoint look-ups. Idempotent. */
  close(): void;
}

/** Creates the directory, empty, with its endpoint book (whose look-up timer runs until `close`). */
export function createPeerDirectory(o: PeerDirectoryOptions): PeerDirectory {
  const idToName = new Map<string, string>();
  const nameToId = new Map<string, string>();
  let dataplane: Dataplane | undefined;
  const endpoints: EndpointBook = createEndpointBook({
    config: o.config,
    logger: o.logger,
    use: (name, ep) => {
      const id = nameToId.get(name);
      if (id !== undefined && ep !== null) dataplane?.setEndpoint(id, ep.host, ep.port);
    },
  });
  const dp = (): Dataplane => {
    if (dataplane === undefined) throw new DaemonError('ERR_STARTUP', 'peer directory used before the data plane was attached');
    return dataplane;
  };

  return {
    attach(d) {
      dataplane = d;
    },
    nameOf: (id) => idToName.get(id),
    idOf: (name) => nameToId.get(name),
    names: () => nameToId.keys(),
    async add(n) {
      const endpoint = await endpoints.set(n);
      const id = String(n.id);
      dp().addPeer({ id, name: n.name, subnets: n.subnets, macs: n.mac ?? [], ...(endpoint ? { endpoint } : {}) });
      idToName.set(id, n.name);
      nameToId.set(n.name, id);
    },
    async update(n) {
      const endpoint = await endpoints.set(n);
      dp().updatePeer(String(n.id), { subnets: n.subnets, macs: n.mac ?? [], ...(endpoint ? { endpoint } : {}) });
    },
    remove(n) {
      const id = String(n.id);
      dp().removePeer(id);
      idToName.delete(id);
      nameToId.delete(n.name);
      endpoints.remove(n.name);
    },
    candidates: (name) => endpoints.candidates(name),
    reached: (name, where) => endpoints.reached(name, where),
    punched: (name, where) => endpoints.punched(name, where),
    roamed: (name, host, port) => endpoints.roamed(name, host, port),
    close: () => endpoints.close(),
  };
}
