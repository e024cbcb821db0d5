/**
 * The mesh side of `cluevpnd`: the mutual-TLS control channel on the data
 * port number (TCP), per-pair negotiation wired into the data plane, and BNL
 * gossip (pull and push) over the same channel.
 *
 *  start:
 *   1. open the state store (send epochs, negotiated sessions)
 *   2. negotiator: stored sessions of nodes no longer in the list (or
 *      re-pinned) are deleted; the others are resumed at once — each peer is
 *      asked over the control channel for a send epoch it reserved for us
 *      (durable on both sides before anything is sent), and the session is
 *      installed in the data plane once granted, without renegotiating.
 *      This starts before the control server exists, so that the TLS
 *      handshake and the peer's grant overlap with the rest of start-up.
 *   3. control server on [::]:port; a peer is accepted only when its CN is a
 *      node of the current BNL (not us), matches its pinned fingerprint, and
 *      carries `restrictouname` when configured — at the handshake, before
 *      every request, and again on every open connection (ours and theirs)
 *      when a list is accepted (`recheckConnections`); the BNL's endpoint
 *      addresses get the reserved pre-authentication budget
 *   4. gossip handlers `bnl-pull` and `bnl-push`
 *   5. timers: pull from a few random peers every `pullinterval` (jittered);
 *      proactive negotiation of a few peers per tick
 *
 * Gossip messages are `@cluevpn/bnl`'s binary messages, base64 in the JSON
 * body (`{ m }`). Incoming lists follow one order: parse, verify, dedupe (by
 * hash), apply, forward to a few random peers — never re-flooded.
 */
import { BlockList, isIPv4, isIPv6 } from 'node:net';
import {
  BNL_MAX_BYTES,
  SeenSet,
  choosePullTargets,
  decodeGossip,
  encodeGossip,
  handlePull,
  handlePullReply,
  handlePush,
  jitteredInterval,
  makePullRequest,
  type BnlNode,
  type BnlStore,
  type GossipMessage,
  type OfferResult,
} from '@cluevpn/bnl';
import type { Dataplane } from '@cluevpn/dataplane';
import {
  CredentialsError,
  Negotiator,
  StateStore,
  loadCredentials,
  normalizeFingerprint,
  authorizePeer,
  connectControl,
  createControlServer,
  type ControlConnection,
  type ControlCredentials,
  type ControlServer,
  type LoadedCredentials,
  type NegotiatorStats,
  type PeerIdentity,
  type PeerPolicy,
  type RekeyReason,
  type SessionSummary,
} from '@cluevpn/negotiation';
import type { DaemonConfig } from './config.js';
import { DaemonError } from './errors.js';
import { AttemptPlanner } from './attempts.js';
import { inParallel } from './parallel.js';
import type { Logger } from './logging.js';
import { createRelayService, type RelayStats } from './relay.js';
import { createPathSelector, type PathStats } from './relay-path.js';

/** Implementation: peers asked per pull round. */
export const PULL_FANOUT = 3;
/** Implementation: peers an accepted pushed/pulled list is forwarded to. */
export const FORWARD_FANOUT = 3;
/** Implementation: proactive-negotiation tick. */
export const TICK_MS = 5_000;
/** Implementation: delay of the first pull round after start (jittered). */
export const INITIAL_PULL_MS = 1_000;
/** Implementation: concurrent pushes of `pushToAll` to nodes we hold no keys with. */
export const PUSH_CONCURRENCY = 16;
/** Implementation: concurrent pushes of `pushToAll` to peers we hold keys with (they answer: short pushes). */
export const KEYED_PUSH_CONCURRENCY = 64;
/** Implementation: largest control frame (a 4 MiB BNL in base64 plus slack). */
export const MAX_CONTROL_FRAME = Math.ceil((BNL_MAX_BYTES * 4) / 3) + 64 * 1024;

/** Counters of one `pushToAll`, updated as pushes finish. */
export interface PushProgress {
  /** Nodes pushed to (every other node of the list). */
  readonly targets: number;
  /** Nodes that took the list or had it. */
  ok: number;
  /** Nodes that refused it or could not be reached. */
  failed: number;
  /** Settles when every push has finished. */
  done: Promise<void>;
}

/** Specification: request types of the gossip over the control channel. */
export const GossipRequest = { pull: 'bnl-pull', push: 'bnl-push' } as const;

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

/** Gossip counters (monotonic). */
export interface GossipStats {
  pullsSent: number;
  pullsFailed: number;
  pullsServed: number;
  pushesSent: number;
  pushesFailed: number;
  pushesReceived: number;
  listsAccepted: number;
  listsRejected: Record<string, number>;
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

/** What a credential reload did. */
export interface CredentialsReload {
  /** False when the files hold the certificate already in use. */
  switched: boolean;
  /** Fingerprint (lower hex) of the certificate in use now. */
  fingerprint: string;
}

/** Reads and checks the credential files (`loadCredentials`); a refusal is `code` naming the file. */
function readCredentials(config: DaemonConfig, selfName: string, code: 'ERR_STARTUP' | 'ERR_CREDENTIALS'): LoadedCredentials {
  try {
    return loadCredentials({ cert: config.cert, privkey: config.privkey, cacert: config.cacert }, selfName);
  } catch (err) {
    if (err instanceof CredentialsError) throw new DaemonError(code, err.message, { cause: err });
    throw err;
  }
}

function wrap(msg: GossipMessage): { m: string } {
  return { m: Buffer.from(encodeGossip(msg)).toString('base64') };
}

function unwrap(body: unknown): GossipMessage {
  const m = (body as { m?: unknown } | null)?.m;
  if (typeof m !== 'string') throw new DaemonError('ERR_GOSSIP', 'gossip body without message');
  return decodeGossip(Buffer.from(m, 'base64'));
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

  // Replaced as a whole by `reloadCredentials`: new connections (accepted and
  // dialled) use the new object; open ones keep what they authenticated with.
  let loaded: LoadedCredentials;
  try {
    loaded = readCredentials(config, selfName, 'ERR_STARTUP');
  } catch (err) {
    state.close();
    throw err;
  }
  let credentials: ControlCredentials = loaded.credentials;
  /** The current list's records by name, built once per list (every request is authorised against it). */
  let byName: { list: unknown; nodes: Map<string, BnlNode> } | undefined;
  const record = (name: string): BnlNode | undefined => {
    const list = bnl.current;
    if (byName === undefined || byName.list !== list) byName = { list, nodes: new Map((list?.bnl.nodes ?? []).map((n) => [n.name, n])) };
    return byName.nodes.get(name);
  };
  const policy: PeerPolicy = {
    isMember: (name) => name !== selfName && record(name) !== undefined,
    pinnedFingerprint: (name) => record(name)?.fingerprint,
    requiredOu: config.restrictouname,
  };
  const authorize = (id: PeerIdentity) => authorizePeer(id, policy);
  /** The pin the current list holds for us (lower hex), or undefined when it pins none. */
  const ownPin = (): string | undefined => {
    const pin = record(selfName)?.fingerprint;
    return pin === undefined ? undefined : normalizeFingerprint(pin) ?? pin;
  };
  /**
   * Warns when the list pins another certificate for us than the one we
   * present: peers refuse us until both agree (the operator installs the
   * pinned certificate and reloads, or pushes a list with our pin).
   */
  const checkOwnPin = (): boolean => {
    const pin = ownPin();
    if (pin === undefined || pin === loaded.fingerprint.hex) return true;
    negLog.warn('this node\'s certificate is not the one its BNL record pins: peers refuse it until they agree (install the pinned certificate and reload, or push a list with this pin)', {
      path: config.cert,
      fingerprint: loaded.fingerprint.hex,
      pin,
      serial: bnl.current?.bnl.serial,
    });
    return false;
  };
  checkOwnPin();
  /** Uses checked credentials for every new control connection, accepted and dialled. */
  const switchTo = (next: LoadedCredentials): void => {
    try {
      server.setCredentials(next.credentials);
    } catch (err) {
      throw new DaemonError('ERR_CREDENTIALS', `cert ${config.cert}: the TLS library refused the new credentials: ${(err as Error).message}`, { cause: err });
    }
    const before = loaded.fingerprint.hex;
    loaded = next;
    credentials = next.credentials; // dialled connections: a new shared client context
    negLog.notice('credentials switched: new control connections use them', { path: config.cert, fingerprint: next.fingerprint.hex, reason: `was ${before}`, count: next.cas.length });
  };
  const limits = { maxFrameBytes: MAX_CONTROL_FRAME };
  /** Our dialled connections (gossip and negotiation), re-checked with the accepted ones. */
  const outgoing = new Set<ControlConnection>();

  /**
   * A control connection to `name`: its addresses in turn, the one in use
   * first, until one answers; a node listed without an endpoint (behind
   * NAT), or one none of whose addresses answers, through a relay
   * (src/relay.ts: the relay splices, TLS stays end to end) — for
   * negotiation only: gossip does not load the relays (nodes behind NAT
   * pull from the public ones themselves).
   */
  const connect = async (name: string, viaRelay = true): Promise<ControlConnection> => {
    const listedNone = (record(name)?.endpoints.length ?? 0) === 0;
    if (!viaRelay) return connectDirect(name);
    if (listedNone && relay.relaysFor(name).length > 0) return connectViaRelay(name);
    try {
      return await connectDirect(name);
    } catch (err) {
      if (relay.relaysFor(name).length === 0) throw err;
      negLog.debug('control channel unreachable, trying relays', { peer: name, err });
      return connectViaRelay(name);
    }
  };
  const connectViaRelay = async (name: string): Promise<ControlConnection> => {
    const { stream, relay: via } = await relay.dial(name);
    try {
      const c = await connectControl({ host: via, port: 0, peerName: name, socket: stream, credentials, authorize, limits, logger: negLog });
      outgoing.add(c);
      c.onClose(() => outgoing.delete(c));
      return c;
    } catch (err) {
      stream.destroy();
      throw err;
    }
  };
  /** A control connection dialled to `name`'s own addresses. */
  const connectDirect = async (name: string): Promise<ControlConnection> => {
    const addresses = o.controlAddresses(name);
    if (addresses.length === 0) throw new DaemonError('ERR_GOSSIP', `no known address for ${name}`);
    let lastErr: unknown;
    for (const where of addresses) {
      try {
        const c = await connectControl({ host: where.host, port: where.port, peerName: name, credentials, authorize, limits, logger: negLog });
        o.reached(name, where);
        outgoing.add(c);
        c.onClose(() => outgoing.delete(c));
        return c;
      } catch (err) {
        lastErr = err;
        if (addresses.length > 1) negLog.debug('control address did not answer', { peer: name, endpoint: `${where.host}:${where.port}`, err });
      }
    }
    o.reached(name, null);
    throw lastErr;
  };

  // The endpoint addresses of the current list (and every address the endpoint
  // book knows for them, DNS names resolved), for the reserved pre-authentication budget.
  let listed: { list: unknown; at: number; addrs: BlockList } | undefined;
  const isListedSource = (ip: string): boolean => {
    const list = bnl.current;
    const now = Date.now();
    if (listed === undefined || listed.list !== list || now - listed.at > TICK_MS) {
      const addrs = new BlockList();
      const add = (host: string): void => {
        if (isIPv4(host)) addrs.addAddress(host, 'ipv4');
        else if (isIPv6(host)) addrs.addAddress(host, 'ipv6');
      };
      for (const n of list?.bnl.nodes ?? []) {
        if (n.name === selfName) continue;
        for (const ep of n.endpoints) add(ep.host);
        for (const a of o.controlAddresses(n.name)) add(a.host);
      }
      listed = { list, at: now, addrs };
    }
    if (isIPv4(ip)) return listed.addrs.check(ip, 'ipv4');
    return isIPv6(ip) && listed.addrs.check(ip, 'ipv6');
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
    connectDirect: (name) => connectDirect(name),
  });
  // 2b. path selection for relayed data (src/relay-path.ts): direct, or via a relay when the direct path does not work
  const paths = createPathSelector(
    {
      logger: log.child('path'),
      keepaliveMs: config.mode === 'switch' ? 0 : config.keepaliveMs,
      peers: () =>
        dataplane.stats().peers.map((p) => {
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

  // 2. negotiator
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
  const negotiator = new Negotiator({
    localName: selfName,
    cryptAlgos: config.cryptalgos,
    compAlgos: config.compalgos,
    store: state,
    transport: { connect: (name) => connect(name, true) },
    logger: negLog,
    rekeyIntervalMs: config.rekeyMs,
    isMember: policy.isMember,
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
  });
  // Keys of nodes that left the list while we were down (or were kept by an
  // older version), and of nodes re-pinned meanwhile (revoke-then-add, as
  // when the list arrives at run time), are not restored: delete them first.
  for (const s of state.listSessions()) {
    s.txKey.fill(0);
    s.rxKey.fill(0);
    if (!policy.isMember(s.peer)) {
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
  // Resuming starts before the control server exists: the TLS handshake and the
  // peer's epoch grant overlap with setting up the server (restart → first packet).
  negotiator.start();

  // 3. control server
  let server: ControlServer;
  try {
    server = await createControlServer({ host: '::', port: config.port, credentials, authorize, isListedSource, limits, logger: log.child('control-channel') });
  } catch (err) {
    negotiator.stop();
    state.close();
    throw new DaemonError('ERR_STARTUP', `control channel on TCP port ${config.port}: ${(err as Error).message}`, { cause: err });
  }

  negotiator.attach(server);
  relay.attach(server);

  // 4. gossip
  const seen = new SeenSet();
  const serials = new Map<string, number>();
  const gs: GossipStats = { pullsSent: 0, pullsFailed: 0, pullsServed: 0, pushesSent: 0, pushesFailed: 0, pushesReceived: 0, listsAccepted: 0, listsRejected: {} };
  const noteSerial = (name: string, msg: GossipMessage): void => {
    if (msg.type === 'pull' || msg.type === 'pull-not-newer') serials.set(name, msg.serial);
  };
  const others = (): string[] => (bnl.current?.bnl.nodes ?? []).map((n) => n.name).filter((n) => n !== selfName && o.peerId(n) !== undefined);
  /**
   * Gossip targets: up to k−1 peers we hold keys with (they answered us, so
   * they are up), the rest at random among every other node (so that a
   * node we have no session with still hears from us, and partitions heal).
   * With a large list of mostly unreachable records, a choice among all of
   * them would almost never reach a live peer (3 of 10 000). Never `exclude`.
   */
  const gossipTargets = (k: number, exclude?: string): string[] => {
    const all = others().filter((n) => n !== exclude);
    const keyed = new Set(negotiator.sessions().map((x) => x.peer));
    const picked = choosePullTargets(all.filter((n) => keyed.has(n)), Math.max(1, k - 1));
    const chosen = new Set(picked);
    const rest = choosePullTargets(all.filter((n) => !chosen.has(n)), k - picked.length);
    return [...picked, ...rest];
  };
  /**
   * The current list as a push and as a pull answer, each encoded once per
   * list rather than once per peer (a 10 000-node list is 1.2 MB, 1.7 MB in
   * base64): what stays per connection is its frame, bounded by the pushes
   * in flight (PUSH_CONCURRENCY) and the pulls served at once.
   */
  let encoded: { hash: string; push: { m: string }; pullList: { m: string } } | undefined;
  const encodedList = (cur: NonNullable<BnlStore['current']>): { push: { m: string }; pullList: { m: string } } => {
    if (encoded?.hash !== cur.hash) encoded = { hash: cur.hash, push: wrap({ type: 'push', bnl: cur.bytes }), pullList: wrap({ type: 'pull-list', bnl: cur.bytes }) };
    return encoded;
  };

  /** After an offer: count, apply, forward. */
  const afterOffer = async (result: OfferResult, from: string, forward: boolean): Promise<void> => {
    if (!result.accepted) {
      if (result.code !== 'ERR_BNL_DUPLICATE' && result.code !== 'ERR_BNL_STALE') {
        gs.listsRejected[result.code] = (gs.listsRejected[result.code] ?? 0) + 1;
        gossipLog.warn('list refused', { peer: from, code: result.code, reason: result.reason });
      }
      return;
    }
    gs.listsAccepted++;
    serials.set(from, result.list.bnl.serial);
    if (result.conflict) gossipLog.error('two different lists with the same serial: the lower hash wins on every node; sign a new list', { serial: result.list.bnl.serial, code: result.conflict.code });
    gossipLog.notice('new list accepted', { peer: from, serial: result.list.bnl.serial });
    await o.apply(result, from);
    if (forward) for (const t of gossipTargets(FORWARD_FANOUT, from)) void pushTo(t);
  };

  server.handle(GossipRequest.pull, (body, ctx) => {
    const msg = unwrap(body);
    if (msg.type !== 'pull') throw new DaemonError('ERR_GOSSIP', `expected pull, got ${msg.type}`);
    gs.pullsServed++;
    noteSerial(ctx.peer.name, msg);
    const reply = handlePull(bnl, msg);
    return reply.type === 'pull-list' && bnl.current !== null && reply.bnl === bnl.current.bytes ? encodedList(bnl.current).pullList : wrap(reply);
  });
  server.handle(GossipRequest.push, async (body, ctx) => {
    const msg = unwrap(body);
    if (msg.type !== 'push') throw new DaemonError('ERR_GOSSIP', `expected push, got ${msg.type}`);
    gs.pushesReceived++;
    const out = await handlePush(bnl, seen, msg);
    if (out.result) await afterOffer(out.result, ctx.peer.name, out.forward);
    else if (out.reply.type === 'push-reply' && out.reply.status === 'duplicate' && bnl.current) serials.set(ctx.peer.name, bnl.current.bnl.serial);
    return wrap(out.reply);
  });

  async function pushTo(name: string, conn?: ControlConnection): Promise<boolean> {
    const cur = bnl.current;
    if (!cur || closed) return false;
    let c = conn;
    try {
      if (c === undefined) {
        c = await connect(name, false); // gossip never goes through a relay
        // A small request first, on a connection of our own: the peer answers
        // it only after it authenticated us (a list sent at once, more than
        // its pre-authentication budget of 64 KiB, is cut: every list over
        // ~48 KB was), and the answer says whether it holds our list already.
        const held = unwrap(await c.request(GossipRequest.pull, wrap(makePullRequest(bnl))));
        noteSerial(name, held);
        if (held.type === 'pull-not-newer' && held.hash === cur.hash) {
          serials.set(name, cur.bnl.serial);
          return true;
        }
        if (held.type === 'pull-list') {
          // the peer holds a list that replaces ours: take it rather than push
          const out = await handlePullReply(bnl, seen, held);
          if (out.result) await afterOffer(out.result, name, out.forward);
          return true;
        }
      }
      gs.pushesSent++;
      const reply = unwrap(await c.request(GossipRequest.push, encodedList(cur).push));
      if (reply.type !== 'push-reply') throw new DaemonError('ERR_GOSSIP', `expected push-reply, got ${reply.type}`);
      if (reply.status === 'rejected') {
        gossipLog.warn('peer refused our list', { peer: name, serial: cur.bnl.serial, code: reply.code });
        return false;
      }
      serials.set(name, cur.bnl.serial);
      return true;
    } catch (err) {
      gs.pushesFailed++;
      gossipLog.info('push failed', { peer: name, err });
      return false;
    } finally {
      if (conn === undefined) c?.close();
    }
  }

  async function pullFrom(name: string): Promise<void> {
    let c: ControlConnection | undefined;
    try {
      c = await connect(name, false);
      gs.pullsSent++;
      const reply = unwrap(await c.request(GossipRequest.pull, wrap(makePullRequest(bnl))));
      noteSerial(name, reply);
      const out = await handlePullReply(bnl, seen, reply);
      if (out.result) await afterOffer(out.result, name, out.forward);
      if (out.pushBack) await pushTo(name, c);
    } catch (err) {
      gs.pullsFailed++;
      gossipLog.info('pull failed', { peer: name, err });
    } finally {
      c?.close();
    }
  }

  const pullRound = async (): Promise<void> => {
    await Promise.all(gossipTargets(PULL_FANOUT).map((n) => pullFrom(n)));
  };

  const pushToAll = (): PushProgress => {
    const cur = bnl.current;
    if (cur) seen.add(cur.hash);
    // Peers we hold keys with first: they are up, so a list reaches the live
    // part of a large network before the pushes toward unreachable records
    // (each a connection timeout) fill the PUSH_CONCURRENCY slots.
    // Those keyed peers get slots of their own (KEYED_PUSH_CONCURRENCY): they answer, so
    // their pushes are short; the rest keep PUSH_CONCURRENCY (mostly connection timeouts).
    const keyed = new Set(negotiator.sessions().map((x) => x.peer));
    const all = others();
    const live = all.filter((n) => keyed.has(n));
    const rest = all.filter((n) => !keyed.has(n));
    const progress: PushProgress = { targets: all.length, ok: 0, failed: 0, done: Promise.resolve() };
    const one = async (n: string): Promise<void> => {
      if (await pushTo(n)) progress.ok++;
      else progress.failed++;
    };
    progress.done = Promise.all([inParallel(live, KEYED_PUSH_CONCURRENCY, one), inParallel(rest, PUSH_CONCURRENCY, one)]).then(() => undefined);
    return progress;
  };

  // 5. timers
  let pullTimer: NodeJS.Timeout | undefined;
  let closed = false;
  const schedulePull = (delayMs: number): void => {
    if (closed) return;
    pullTimer = setTimeout(() => {
      void pullRound().finally(() => schedulePull(jitteredInterval(config.pullintervalMs)));
    }, delayMs);
    pullTimer.unref();
  };
  // The first round soon after start: catch up on lists signed while we were
  // down, and learn which serial our peers hold (the convergence view).
  schedulePull(jitteredInterval(Math.min(INITIAL_PULL_MS, config.pullintervalMs)));

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
  /** The current list's node names, built once per list (the tick samples it). */
  let names: { list: unknown; all: string[] } | undefined;
  /** The current list's relays (not us), built once per list. */
  let relays: { list: unknown; all: string[] } | undefined;
  const relayNames = (): readonly string[] => {
    const list = bnl.current;
    if (relays === undefined || relays.list !== list) relays = { list, all: (list?.bnl.nodes ?? []).filter((n) => n.relay === true && n.name !== selfName).map((n) => n.name) };
    return relays.all;
  };
  /** Proactive negotiation: the planner picks among the peers without keys. */
  const proactive = (): void => {
    const list = bnl.current;
    if (names === undefined || names.list !== list) names = { list, all: (list?.bnl.nodes ?? []).map((n) => n.name) };
    const keyed = new Set(negotiator.sessions().map((s) => s.peer));
    attempts.tick(names.all, (n) => n !== selfName && !keyed.has(n) && o.peerId(n) !== undefined);
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
      serials.delete(name);
      restored.delete(name);
      negotiations.delete(name);
      attempts.forget(name);
    },
    recheckConnections: () => {
      let closed = server.recheck();
      for (const c of [...outgoing]) if (!c.recheck()) closed++;
      if (closed > 0) negLog.notice('control connections closed: peers no longer pass the current list', { count: closed });
      return closed;
    },
    reloadCredentials: () => {
      const next = readCredentials(config, selfName, 'ERR_CREDENTIALS');
      const c = next.credentials;
      if (c.certPem === credentials.certPem && c.keyPem === credentials.keyPem && c.caPem === credentials.caPem) {
        checkOwnPin();
        return { switched: false, fingerprint: loaded.fingerprint.hex };
      }
      switchTo(next);
      // Not pinned yet: the list that pins it may be out already (peers that
      // hold it refused our old certificate, so their push did not reach us).
      if (!checkOwnPin()) void pullRound();
      return { switched: true, fingerprint: next.fingerprint.hex };
    },
    followOwnPin: () => {
      if (!checkOwnPin()) return false;
      if (ownPin() !== undefined) renegotiateAll();
      return true;
    },
    pushToAll,
    pullRound,
    peer: (name) => ({
      session: sessionOf(name),
      restored: restored.has(name),
      negotiations: negotiations.get(name) ?? 0,
      bnlSerial: serials.get(name) ?? null,
    }),
    stats: () => ({ gossip: { ...gs, listsRejected: { ...gs.listsRejected } }, negotiation: negotiator.stats(), control: server.stats() }),
    close: async () => {
      closed = true;
      if (pullTimer) clearTimeout(pullTimer);
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
