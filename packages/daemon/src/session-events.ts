/**
 * What the negotiator's session events do on this node:
 *
 *  1. `onSession`: the session goes into the data plane (receive-only, or
 *     primary at once for a resumed stored session, then counted as
 *     restored and its pin recorded in the state store)
 *  2. `onPromote`: the session becomes the sending one; its pin is
 *     recorded, the peer's negotiation count goes up
 *  3. `onRetire`, `onTxEpoch`: passed to the data plane
 *  4. after 1 (primary) and 2: `sessionUp` (rendezvous when we cannot find
 *     the peer ourselves, `relay.ts`)
 *
 * A data-plane refusal is logged, never thrown into the negotiator; an
 * event for a node that is no longer a peer is logged and dropped. Owns the
 * per-peer counters `status` shows (restored, negotiations).
 *
 * Also here: the stored sessions that must not be resumed at start
 * (`pruneStoredSessions`).
 */
import type { BnlNode } from '@cluevpn/bnl';
import type { Dataplane } from '@cluevpn/dataplane';
import type { NegotiatorEvents, StateStore } from '@cluevpn/negotiation';
import type { Logger } from './logging.js';

/** What the events need. */
export interface SessionEventOptions {
  dataplane: Dataplane;
  state: StateStore;
  /** Data-plane peer id of a node, or undefined when it is not a current peer. */
  peerId(name: string): string | undefined;
  /** A node's record in the current list (its pin). */
  record(name: string): BnlNode | undefined;
  /** A session is in place for `peer` (step 4). */
  sessionUp(peer: string): void;
  /** The negotiation logger. */
  logger: Logger;
}

/** The events and the counters they keep. */
export interface SessionEvents {
  /** The negotiator's `events` option. */
  events: NegotiatorEvents;
  /** The session in use was restored from the state store at start (no renegotiation since). */
  restored(name: string): boolean;
  /** Negotiations completed with `name` since start. */
  negotiations(name: string): number;
  /** Forgets a revoked node's counters. */
  forget(name: string): void;
}

/** Creates the events (steps 1–4 above). */
export function createSessionEvents(o: SessionEventOptions): SessionEvents {
  const { dataplane, state, record, sessionUp } = o;
  const negLog = o.logger;
  const restored = new Set<string>();
  const negotiations = new Map<string, number>();
  const withPeer = (name: string, what: string, fn: (id: string) => void): void => {
    const id = o.peerId(name);
    if (id === undefined) {
      negLog.warn(`${what} for a node that is not a peer`, { peer: name });
      return;
    }
    try {
      fn(id);
    } catch (err) {
      negLog.error(`${what} failed`, { peer: name, err });
    }
  };
  return {
    events: {
      onSession: (peer, params, options) => {
        if (options.primary) {
          restored.add(peer); // only a resumed stored session is installed as the primary at once
          state.setSessionPin(peer, record(peer)?.fingerprint ?? ''); // the peer just proved it holds the keys under this pin
        }
        withPeer(peer, 'install session', (id) => dataplane.installSession(id, params, options));
        if (options.primary) sessionUp(peer);
      },
      onPromote: (peer, localIndex) => {
        restored.delete(peer);
        state.setSessionPin(peer, record(peer)?.fingerprint ?? ''); // stored just before: keyed under the current pin
        negotiations.set(peer, (negotiations.get(peer) ?? 0) + 1);
        withPeer(peer, 'promote session', (id) => dataplane.promoteSession(id, localIndex));
        sessionUp(peer);
      },
      onRetire: (peer, localIndex) => withPeer(peer, 'retire session', (id) => dataplane.retireSession(id, localIndex)),
      onTxEpoch: (peer, localIndex, epoch) => withPeer(peer, 'move send epoch', (id) => dataplane.setTxEpoch(id, localIndex, epoch)),
    },
    restored: (name) => restored.has(name),
    negotiations: (name) => negotiations.get(name) ?? 0,
    forget: (name) => {
      restored.delete(name);
      negotiations.delete(name);
    },
  };
}

/**
 * Keys of nodes that left the list while we were down (or were kept by an
 * older version), and of nodes re-pinned meanwhile (revoke-then-add, as
 * when the list arrives at run time), are not restored: deleted before the
 * negotiator starts. The keys read here are zeroed.
 */
export function pruneStoredSessions(state: StateStore, isMember: (name: string) => boolean, record: (name: string) => BnlNode | undefined, negLog: Logger): void {
  for (const s of state.listSessions()) {
    s.txKey.fill(0);
    s.rxKey.fill(0);
    if (!isMember(s.peer)) {
      state.deleteSession(s.peer);
      negLog.notice('stored session of a node not in the list deleted', { peer: s.peer });
      continue;
    }
    const pin = state.sessionPin(s.peer);
    if (pin !== undefined && pin !== (record(s.peer)?.fingerprint ?? '')) {
      state.deleteSession(s.peer);
      negLog.notice('stored session of a re-pinned node deleted', { peer: s.peer });
    }
  }
}
