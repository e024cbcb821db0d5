/**
 * The mesh side of `cluevpnd`: the mutual-TLS control channel on the data
 * port number (TCP), per-pair negotiation wired into the data plane, and BNL
 * gossip (pull and push) over the same channel.
 *
 *  start:
 *   1. open the state store (send epochs, negotiated sessions); read
 *      the credentials in use (`credentials.ts`, `ERR_STARTUP` naming a file
 *      that fails); the dialler of our control connections (`control-dial.ts`)
 *   2. negotiator: stored sessions of nodes no longer in the list (or
 *      re-pinned) are deleted (`session-events.ts` `pruneStoredSessions`);
 *      the others are resumed at once — each peer is
 *      asked over the control channel for a send epoch it reserved for us
 *      (durable on both sides before anything is sent), and the session is
 *      installed in the data plane once granted, without renegotiating
 *      (`session-events.ts`).
 *      This starts before the control server exists, so that the TLS
 *      handshake and the peer's grant overlap with the rest of start-up.
 *   3. control server on [::]:port; a peer is accepted only when its CN is a
 *      node of the current BNL (not us), matches its pinned fingerprint, and
 *      carries `restrictouname` when configured — at the handshake, before
 *      every request, and again on every open connection (ours and theirs)
 *      when a list is accepted (`recheckConnections`); the BNL's endpoint
 *      addresses get the reserved pre-authentication budget
 *   4. gossip handlers `bnl-pull` and `bnl-push` (`gossip.ts`)
 *   5. timers: pull from a few random peers every `pullinterval` (jittered);
 *      proactive negotiation of a few peers per tick
 *
 * Each of those parts owns its state (see packages/daemon/README.md, "Parts,
 * and who owns what"); the mesh wires them and keeps the state store, the
 * control server, the relay service and the path selector. Gossip
 * (`gossip.ts`) owns the pull and push protocol and its timer; the mesh
 * hands it the lists to apply (`MeshOptions.apply`: the list applier).
 */
import { BNL_MAX_BYTES, type BnlNode, type BnlStore, type OfferResult } from '@cluevpn/bnl';
import type { Dataplane } from '@cluevpn/dataplane';
import {
  Negotiator,
  StateStore,
  authorizePeer,
  createControlServer,
  type ControlServer,
  type NegotiatorStats,
  type PeerIdentity,
  type PeerPolicy,
  type RekeyReason,
  type SessionSummary,
} from '@cluevpn/negotiation';
import type { DaemonConfig } from './config.js';
import { DaemonError } from './errors.js';
import { AttemptPlanner } from './attempts.js';
import { createGossip, type GossipStats, type PushProgress } from './gossip.js';
import { perList } from './per-list.js';
import { createControlDialer } from './control-dial.js';
import { createSessionEvents, pruneStoredSessions } from './session-events.js';
import { createCredentialKeeper, type CredentialKeeper, type CredentialsReload } from './credentials.js';
import { ListedAddresses } from './listed-addresses.js';
import type { Logger } from './logging.js';
import { createRelayService, type RelayStats } from './relay.js';
import { createPathSelector, type PathStats } from './relay-path.js';

/** Implementation: proactive-negotiation tick. */
export const TICK_MS = 5_000;
/** Implementation: largest control frame (a 4 MiB BNL in base64 plus slack). */
export const MAX_CONTROL_FRAME = Math.ceil((BNL_MAX_BYTES * 4) / 3) + 64 * 1024;

/** What the mesh needs from the daemon. */
export interface MeshOptions {
  config: DaemonConfig;
  logger: Logger;
  bnl: BnlStore;
  dataplane: Dataplane;
  selfName: string;
  /** Data-plane peer id of a node, or undefined when it is not a current peer. */
  peerId(name: string): string | undefined;
  /** Where a node's control port may be, the endpoint in use first; empty when none is known. */
  controlAddresses(name: string): readonly { host: string; port: number }[];
  /** The control channel reached `name` at `where`, or at none of its addresses (`null`). */
  reached(name: string, where: { host: string; port: number } | null): void;
  /** A relay told us where `name`'s packets come from (rendezvous): the endpoint book uses it (src/relay.ts). */
  punched?(name: string, where: { host: string; port: number }): void;
  /** Applies an accepted list (peers, routes, hooks); called once per accepted list. */
  apply(result: Extract<OfferResult, { accepted: true }>, source: string): Promise<void>;
}

/** Per-peer view for `status`. */
export interface MeshPeerView {
  /** Session summary (no keys) or null. */
  session: SessionSummary | null;
  /** The session was restored from the state store at start (no renegotiation). */
  restored: boolean;
  /** Negotiations completed with this peer since start. */
  negotiations: number;
  /** BNL serial the peer was last seen holding, or null when unknown. */
  bnlSerial: number | null;
}

/** The running mesh. */
export interface Mesh {
  readonly port: number;
  /** Data-plane event: traffic for `name` without keys. */
  noSession(name: string): void;
  /** Data-plane event: rekey wanted. */
  rekey(name: string, reason: RekeyReason): void;
  /** Data-plane event: an authenticated rendezvous message (src/relay.ts). */
  rendezvous(name: string, payload: Buffer): void;
  /** Relay and rendezvous counters (src/relay.ts). */
  relayStats(): RelayStats;
  /** This node serves as a relay now. */
  relayIsOn(): boolean;
  /** Path switches (src/relay-path.ts). */
  pathStats(): PathStats;
  /** Data-plane event: a new receive epoch authenticated. */
  rxEpoch(name: string, localIndex: number, epoch: number): void;
  /** Forgets a revoked node: sessions torn down, stored keys deleted. */
  removePeer(name: string): void;
  /**
   * Checks every open control connection, accepted and dialled, against the
   * current list (membership, pin, OU) and closes those that fail. Call for
   * every accepted list. Returns how many were closed.
   */
  recheckConnections(): number;
  /**
   * Reads `cert`, `privkey` and `cacert` again and, once they pass every
   * check (`loadCredentials`), uses them for every new control connection,
   * accepted and dialled. On any error the credentials in use stay and
   * `DaemonError` `ERR_CREDENTIALS` names the file.
   */
  reloadCredentials(): CredentialsReload;
  /**
   * After a list that changes this node's pin: when it pins the certificate
   * in use, asks every peer for a rekey (each peer that applies the list
   * drops the sessions of our old certificate); otherwise warns that peers
   * refuse us until we agree (the credential files are read only by a
   * reload). True when our certificate matches the list's pin.
   */
  followOwnPin(): boolean;
  /**
   * Pushes the current list to every node. Returns at once with live
   * counters; `done` settles when every push has finished (a node that does
   * not answer takes up to the handshake timeout).
   */
  pushToAll(): PushProgress;
  /** One pull round now (also run by the timer). */
  pullRound(): Promise<void>;
  peer(name: string): MeshPeerView;
  stats(): { gossip: GossipStats; negotiation: NegotiatorStats; control: ReturnType<ControlServer['stats']> };
  close(): Promise<void>;
}

/** Starts steps 1–5 above. On failure nothing is left open. */
export async function startMesh(o: MeshOptions): Promise<Mesh> {
  const { config, bnl, dataplane, selfName } = o;
  const log = o.logger;
  const gossipLog = log.child('gossip');
  const negLog = log.child('negotiation');

  // 1. state store
  let state: StateStore;
  try {
    state = StateStore.open(config.statedb);
  } catch (err) {
    const code = (err as { code?: string }).code;
    throw new DaemonError('ERR_STATE', `state database ${config.statedb}: ${(err as Error).message}${code === 'ERR_STATE_CORRUPT' ? ' (move it aside and start again: peers renegotiate)' : ''}`, { cause: err });
  }

  /** The current list's records by name (every request is authorised against it). */
  const byName = perList(bnl, (list) => new Map((list?.bnl.nodes ?? []).map((n) => [n.name, n])));
  const record = (name: string): BnlNode | undefined => byName().get(name);
  // The credentials in use (credentials.ts)
  let creds: CredentialKeeper;
  try {
    creds = createCredentialKeeper({ config, selfName, bnl, record, logger: negLog });
  } catch (err) {
    state.close();
    throw err;
  }
  const policy: PeerPolicy = {
    isMember: (name) => name !== selfName && record(name) !== undefined,
    pinnedFingerprint: (name) => record(name)?.fingerprint,
    requiredOu: config.restrictouname,
  };
  const authorize = (id: PeerIdentity) => authorizePeer(id, policy);
  creds.checkOwnPin();
  const limits = { maxFrameBytes: MAX_CONTROL_FRAME };
  // Our dialled connections (control-dial.ts)
  const dialer = createControlDialer({
    credentials: () => creds.current(),
    authorize,
    limits,
    logger: negLog,
    record,
    controlAddresses: (name) => o.controlAddresses(name),
    reached: (name, where) => o.reached(name, where),
    relays: { relaysFor: (name) => relay.relaysFor(name), dial: (name) => relay.dial(name) },
  });

  // The endpoint addresses of the current list (and every address the endpoint
  // book knows for them, DNS names resolved), for the reserved pre-authentication budget.
  let listed: { list: unknown; at: number; addrs: ListedAddresses } | undefined;
  const isListedSource = (ip: string): boolean => {
    const list = bnl.current;
    const now = Date.now();
    if (listed === undefined || listed.list !== list || now - listed.at > TICK_MS) {
      const addrs = new ListedAddresses();
      for (const n of list?.bnl.nodes ?? []) {
        if (n.name === selfName) continue;
        for (const ep of n.endpoints) addrs.add(ep.host);
        for (const a of o.controlAddresses(n.name)) addrs.add(a.host);
      }
      listed = { list, at: now, addrs };
    }
    return listed.addrs.has(ip);
  };

  // 2a. relays and rendezvous (src/relay.ts); its control handlers are attached with the server
  const relay = createRelayService({
    selfName,
    logger: log.child('relay'),
    record,
    nodes: () => bnl.current?.bnl.nodes ?? [],
    isMember: policy.isMember,
    hasSession: (name) => negotiator.sessions().some((x) => x.peer === name),
    observed: (name) => {
      const id = o.peerId(name);
      return id === undefined ? null : dataplane.observedEndpoint(id);
    },
    send: (name, payload) => {
      const id = o.peerId(name);
      return id !== undefined && dataplane.sendRendezvous(id, payload);
    },
    punched: (name, where) => o.punched?.(name, where),
    keepalive: (name) => {
      const id = o.peerId(name);
      return id !== undefined && dataplane.sendKeepalive(id);
    },
    connectDirect: (name) => dialer.connectDirect(name),
  });
  // 2b. path selection for relayed data (src/relay-path.ts): direct, or via a relay when the direct path does not work
  const paths = createPathSelector(
    {
      logger: log.child('path'),
      keepaliveMs: config.mode === 'switch' ? 0 : config.keepaliveMs,
      peers: () =>
        dataplane.stats({ activeOnly: true }).peers.map((p) => {
          const primary = p.sessions.find((x) => x.primary);
          return { id: p.id, name: p.name, keyed: primary !== undefined, installedAtMs: primary?.installedAtMs ?? 0, lastDirectRxMs: p.lastRxMs ?? 0, relay: p.relay, hasEndpoint: p.endpoint !== null };
        }),
      relaysFor: (name) => relay.relaysFor(name),
      isRelayNode: (name) => record(name)?.relay === true && (record(name)?.endpoints.length ?? 0) > 0,
      isRelay: () => relay.isRelay(),
      setPath: (id, relayId) => dataplane.setPath(id, relayId),
      setRelaying: (on) => dataplane.setRelaying(on),
      probe: (id) => dataplane.sendKeepalive(id, true),
    },
    true,
  );
  /** After a session is in place (new or restored): rendezvous when we cannot find the peer ourselves. */
  const sessionUp = (peer: string): void => {
    setImmediate(() => relay.sessionUp(peer)).unref();
  };

  // 2. negotiator, its sessions installed in the data plane (session-events.ts)
  const sessions = createSessionEvents({ dataplane, state, peerId: o.peerId, record, sessionUp, logger: negLog });
  const negotiator = new Negotiator({
    localName: selfName,
    cryptAlgos: config.cryptalgos,
    compAlgos: config.compalgos,
    store: state,
    transport: { connect: (name) => dialer.connect(name, true) },
    logger: negLog,
    rekeyIntervalMs: config.rekeyMs,
    isMember: policy.isMember,
    events: sessions.events,
  });
  pruneStoredSessions(state, policy.isMember, record, negLog);
  // Resuming starts before the control server exists: the TLS handshake and the
  // peer's epoch grant overlap with setting up the server (restart → first packet).
  negotiator.start();

  // 3. control server
  let server: ControlServer;
  try {
    server = await createControlServer({ host: '::', port: config.port, credentials: creds.current(), authorize, isListedSource, limits, logger: log.child('control-channel') });
  } catch (err) {
    negotiator.stop();
    state.close();
    throw new DaemonError('ERR_STARTUP', `control channel on TCP port ${config.port}: ${(err as Error).message}`, { cause: err });
  }

  negotiator.attach(server);
  relay.attach(server);

  // 4. gossip
  const gossip = createGossip({
    config,
    logger: gossipLog,
    bnl,
    selfName,
    server,
    isPeer: (name) => o.peerId(name) !== undefined,
    keyedPeers: () => negotiator.sessions().map((x) => x.peer),
    connect: (name) => dialer.connect(name, false),
    apply: (result, source) => o.apply(result, source),
  });

  // 5. timers: the first pull round soon after start (gossip.ts), proactive negotiation
  gossip.start();

  /** False for a node listed without endpoints (behind NAT: it opens the connections) or with none known. */
  const reachableFirst = (name: string): boolean => (record(name)?.endpoints.length ?? 0) > 0 && o.controlAddresses(name).length > 0;
  // Who is tried when: the planner owns the schedule (packages/daemon/src/attempts.ts).
  const attempts = new AttemptPlanner({
    now: Date.now,
    attempt: (name) => negotiator.ensureSession(name),
    // Through a relay when our traffic needs it (src/relay.ts).
    reachableFirst: (name, why) => reachableFirst(name) || (why === 'traffic' && relay.relaysFor(name).length > 0),
    // Relays first: they are how nodes behind NAT find each other.
    preferred: () => relayNames(),
    failed: (name, why, err, backoffMs) => negLog.info('negotiation failed', { peer: name, reason: why, err, ms: backoffMs }),
  });
  /** The current list's node names (the tick samples it). */
  const names = perList(bnl, (list) => (list?.bnl.nodes ?? []).map((n) => n.name));
  /** The current list's relays (not us). */
  const relayNames = perList(bnl, (list): readonly string[] => (list?.bnl.nodes ?? []).filter((n) => n.relay === true && n.name !== selfName).map((n) => n.name));
  /** Proactive negotiation: the planner picks among the peers without keys. */
  const proactive = (): void => {
    const keyed = new Set(negotiator.sessions().map((s) => s.peer));
    attempts.tick(names(), (n) => n !== selfName && !keyed.has(n) && o.peerId(n) !== undefined);
  };
  /**
   * The list now pins our new certificate: every peer that applies it drops
   * the sessions negotiated under the old one. Renegotiate them now rather
   * than wait for the peers' traffic (a peer still on the older list refuses,
   * keeps its session, and negotiates itself once it gets the list).
   */
  const renegotiateAll = (): void => {
    const peers = negotiator.sessions().map((x) => x.peer);
    if (peers.length > 0) negLog.notice('the list pins our certificate: renegotiating with every peer', { count: peers.length });
    for (const p of peers) negotiator.requestRekey(p, 'manual');
  };
  /**
   * A peer's session summary for `peer()`: `status` asks for every peer of
   * the list in one synchronous loop, so the summaries are built once per
   * turn of the event loop, not once per peer (O(peers × sessions) before).
   */
  let sessionsNow: Map<string, SessionSummary> | undefined;
  const sessionOf = (name: string): SessionSummary | null => {
    if (sessionsNow === undefined) {
      sessionsNow = new Map(negotiator.sessions().map((x) => [x.peer, x]));
      queueMicrotask(() => (sessionsNow = undefined));
    }
    return sessionsNow.get(name) ?? null;
  };
  const first = setImmediate(proactive);
  const tick = setInterval(proactive, TICK_MS);
  tick.unref();

  return {
    port: server.port,
    noSession: (name) => attempts.traffic(name),
    rekey: (name, reason) => {
      negotiator.requestRekey(name, reason);
    },
    rxEpoch: (name, localIndex, epoch) => negotiator.noteRxEpoch(name, localIndex, epoch),
    rendezvous: (name, payload) => relay.onMessage(name, payload),
    relayStats: () => relay.stats(),
    pathStats: () => paths.stats(),
    relayIsOn: () => relay.isRelay(),
    removePeer: (name) => {
      negotiator.removePeer(name);
      gossip.forget(name);
      sessions.forget(name);
      attempts.forget(name);
    },
    recheckConnections: () => {
      const closed = server.recheck() + dialer.recheck();
      if (closed > 0) negLog.notice('control connections closed: peers no longer pass the current list', { count: closed });
      return closed;
    },
    reloadCredentials: () => {
      const { switched, fingerprint, agrees } = creds.reload(server);
      // Switched but not pinned yet: the list that pins it may be out already (peers
      // that hold it refused our old certificate, so their push did not reach us).
      if (switched && !agrees) void gossip.pullRound();
      return { switched, fingerprint };
    },
    followOwnPin: () => {
      if (!creds.checkOwnPin()) return false;
      if (creds.ownPin() !== undefined) renegotiateAll();
      return true;
    },
    pushToAll: () => gossip.pushToAll(),
    pullRound: () => gossip.pullRound(),
    peer: (name) => ({
      session: sessionOf(name),
      restored: sessions.restored(name),
      negotiations: sessions.negotiations(name),
      bnlSerial: gossip.serialOf(name) ?? null,
    }),
    stats: () => ({ gossip: gossip.stats(), negotiation: negotiator.stats(), control: server.stats() }),
    close: async () => {
      gossip.close();
      clearImmediate(first);
      clearInterval(tick);
      paths.close();
      relay.close();
      await server.close();
      negotiator.stop();
      state.close();
    },
  };
}
