/**
 * `createDataplane`: wires the backends, tables and pipelines of one data
 * plane and exposes the control surface the daemon drives.
 *
 * Buffer ownership at the hand-offs:
 *   - TUN → send pipeline: the TUN's read batch is borrowed for the
 *     handler call and rewritten in place (header, tag) before `sealBatch`
 *     and `sendBatch`, which both return before the handler does.
 *   - UDP → receive pipeline: the socket's batch is borrowed for the
 *     handler call and decrypted in place; `writeBatch` copies it into the
 *     kernel before the handler returns.
 *   - Keys passed to `installSession` are copied into the crypto backend
 *     and not retained; the caller should wipe its copies.
 */
import { Acl, type AclLimits, type AclPolicy, type AclStats } from './acl.js';
import { DEFAULT_SOCKET_BUFFER, MAX_SOCKET_BUFFER, type CryptoBackend, type UdpBackend, type BatchUdpSocket } from './backend.js';
import { nativeAvailable, nativeCryptoBackend, nativeUdpBackend, nativeUnavailableReason, type NativeUdpStats } from './backend-native.js';
import { jsCryptoBackend, jsUdpBackend } from './backend-js.js';
import { Lz4Codec } from './compression.js';
import { DEFAULT_LIMITS, type DataplaneLimits, type DataplaneTun, type PipelineContext } from './context.js';
import { DROP_REASON_COUNT, dropTableToRecord, type DropReasonName } from './drop-reasons.js';
import { DataplaneError } from './errors.js';
import { EventDispatcher, silentLogger, type DataplaneEvents, type DataplaneLogger } from './events.js';
import { COUNTER_MAX, OVERHEAD, RENDEZVOUS_MAX_PAYLOAD } from './framing.js';
import { IcmpResponder } from './icmp.js';
import { KeepaliveScheduler } from './keepalive.js';
import { PMTU_DEFAULTS, PmtuScheduler, type PmtuPhase, type PmtuTimers } from './pmtu.js';
import { PeerCounter, PeerTable, parseSubnets, type CipherName, type SessionParams } from './peer-table.js';
import { ReceivePipeline } from './receive.js';
import { PrefixTable } from './routing-table.js';
import { SendPipeline } from './send.js';
import { FRAME_EXTRA, SwitchPipeline } from './switch.js';
import { MAC_LOCAL, parseMac, type MacTableOptions } from './mac-table.js';
import { MessageType } from './framing.js';

/** Default UDP port of the data plane (specification). */
export const DEFAULT_PORT = 3406;
/** Default inner MTU: 1500 - IPv6 (40) - UDP (8) - overhead (36) rounded down (specification). */
export const DEFAULT_MTU = 1420;

/** Options of {@link createDataplane}. */
export interface DataplaneOptions {
  /** An open TUN device (`@cluevpn/tun`'s TunDevice or its memory fake). Not owned: close it yourself after `close()`. */
  tun: DataplaneTun;
  /** UDP port (default 3406; 0 = kernel-chosen, see {@link Dataplane.port}). */
  port?: number;
  /** Numeric address to bind (default `::`, dual stack). */
  bindAddress?: string;
  /** Inner MTU (default: the TUN's MTU). Larger packets are dropped ('oversize'). */
  mtu?: number;
  /** `'native'` (C batches; the default when built) or `'js'` (dgram + createCipheriv). */
  backend?: 'native' | 'js';
  /** Injected backends (tests, benchmarks); overrides `backend`. */
  backends?: { crypto: CryptoBackend; udp: UdpBackend; name?: string };
  /** Datagrams read per socket wake-up (default 64). */
  batchSize?: number;
  /** UDP SO_RCVBUF/SO_SNDBUF in bytes, 0 = kernel default (default {@link DEFAULT_SOCKET_BUFFER}). */
  socketBuffer?: number;
  logger?: DataplaneLogger;
  events?: DataplaneEvents;
  /** Overrides of {@link DEFAULT_LIMITS}. */
  limits?: Partial<DataplaneLimits>;
  /**
   * The express paths (default true): small reads (idle traffic) of a
   * leased flow go between the native socket and the TUN in C, both ways
   * (receive.ts and send.ts, step 12). Used only when the socket and the TUN
   * both offer it (native backend, real TUN device; sending also needs
   * in-place framing). cluevpnd passes its `express` config key.
   */
  express?: boolean;
  /**
   * Keepalive interval (ms; default 0 = off): a peer with a session that
   * we sent nothing to for this long gets an authenticated keepalive, and a
   * new primary session that has sent nothing yet gets one at once
   * (src/keepalive.ts; one coarse unref'd timer, nothing per packet).
   */
  keepaliveMs?: number;
  /**
   * Path MTU discovery per peer (default false; cluevpnd: `pmtudiscovery`,
   * default yes): authenticated probes find the largest datagram that
   * reaches each peer; larger inner packets get an ICMP "fragmentation
   * needed" / "packet too big" into the TUN (src/pmtu.ts). Probes from
   * peers are answered either way.
   */
  pmtuDiscovery?: boolean;
  /** Overrides of the search's timers (tests). */
  pmtuTimers?: Partial<PmtuTimers>;
  /** Clamp the MSS of TCP SYNs to each peer's inner path MTU, both directions (default false; cluevpnd: `clampmss`, default yes). */
  clampMss?: boolean;
  /** UDP GSO on send and GRO on receive (default true each; native backend only). cluevpnd: `udpoffload`, `CLUEVPN_DEBUG=no-gso,no-gro`. */
  gso?: boolean;
  gro?: boolean;
  /**
   * `'router'` (default): IP packets from a TUN, routed by the peers'
   * subnets. `'switch'`: Ethernet frames from a TAP device (`tun.mode` must
   * be 'tap'), forwarded by MAC address (src/switch.ts, src/mac-table.ts);
   * peers' subnets and the local subnets are not used; frames up to
   * `mtu + 18` bytes are carried as message type FRAME; no express path.
   */
  mode?: 'router' | 'switch';
  /** Switch mode: MAC table bounds and timers (defaults `MAC_TABLE_DEFAULTS`; tests shrink them). */
  macTable?: Partial<MacTableOptions>;
  /** Connection-tracking bounds and timeouts of the access policy (acl.ts; tests shrink them). */
  aclLimits?: Partial<AclLimits>;
}

/** A peer as given to `addPeer`. */
export interface PeerConfig {
  /** Stable id (the node's id in the node list); events name peers by it. */
  id: string;
  /** Display name for stats (default: the id). */
  name?: string;
  /** CIDRs routed to this peer and accepted as inner sources from it. */
  subnets: readonly string[];
  /** Numeric UDP endpoint, if known. */
  endpoint?: { host: string; port: number };
  /** Switch mode: MACs fixed to this peer (its BNL record's `mac`), canonical `aa:bb:cc:dd:ee:ff`. Ignored in router mode. */
  macs?: readonly string[];
}

/** Options of {@link Dataplane.installSession}. */
export interface InstallOptions {
  /**
   * true (the default): the session becomes the primary for sending at
   * once. false: it only receives (packets for its `localIndex` are
   * accepted) until {@link Dataplane.promoteSession}; the current primary
   * keeps sending. Rekeys use false so that no side sends with keys the
   * other does not hold yet.
   */
  primary?: boolean;
}

/** Session info in stats (never keys). */
export interface SessionStats {
  localIndex: number;
  remoteIndex: number;
  cipher: CipherName;
  compression: { algo: 'none' | 'lz4'; level: number };
  /** The session every packet to the peer is sealed with. */
  primary: boolean;
  /** Installed receive-only and not promoted yet (see {@link InstallOptions}). */
  pending: boolean;
  txEpoch: number;
  /** Next counter to be sent. */
  txCounter: number;
  rxEpochFloor: number;
  /** Newest authenticated epoch, null before the first packet. */
  rxEpoch: number | null;
  /** Newest authenticated counter in `rxEpoch`. */
  rxCounter: number;
  installedAtMs: number;
}

/** Per-peer stats. */
export interface PeerStats {
  id: string;
  name: string;
  endpoint: { host: string; port: number } | null;
  subnets: string[];
  txPackets: number;
  /** Inner (IP packet) bytes, before compression. */
  txBytes: number;
  rxPackets: number;
  rxBytes: number;
  /** Wall-clock ms of the last authenticated datagram that came directly (not through a relay: see `relayed.lastRxMs`), null if never. */
  lastRxMs: number | null;
  authFailures: number;
  /** Keepalives sent to / authenticated from the peer (not in the packet counters). */
  keepalivesTx: number;
  keepalivesRx: number;
  /** Wall-clock ms of the last keepalive sent / received, null if never. */
  lastKeepaliveTxMs: number | null;
  lastKeepaliveRxMs: number | null;
  /** `installSession` calls refused with `ERR_DP_SESSIONS_FULL`. */
  sessionsRefused: number;
  /** The relay our datagrams to the peer go through (its peer id), or null: directly (`setPath`). */
  relay: string | null;
  /**
   * Relaying, member side: our datagrams to the peer sent through a relay
   * and their inner bytes; the peer's that came through one (also in the rx
   * counters) and when the last did. Relay side: the peer's relay requests
   * we forwarded (`fromPackets`/`fromBytes`) and what we forwarded to it.
   */
  relayed: { txPackets: number; txBytes: number; rxPackets: number; rxBytes: number; lastRxMs: number | null; fromPackets: number; fromBytes: number; toPackets: number; toBytes: number };
  /**
   * Path MTU to the peer (outer IP packet bytes) as last found, null
   * before the first search ended; the largest inner packet sent to it
   * (the configured MTU until then); the search's phase; ms since the last
   * search ended (null: never). src/pmtu.ts.
   */
  pmtu: number | null;
  innerMtu: number;
  pmtuPhase: PmtuPhase;
  pmtuAgeMs: number | null;
  drops: Partial<Record<DropReasonName, number>>;
  sessions: SessionStats[];
}

/** The whole stats snapshot (JSON-serialisable). */
export interface DataplaneStats {
  backend: string;
  port: number;
  mtu: number;
  /** Whether packets are framed inside the TUN's slots without a copy. */
  zeroCopy: boolean;
  /**
   * The express paths. Receive (receive.ts step 12): whether it is on,
   * datagrams it delivered to the TUN without JavaScript (also counted in
   * the peers' rx counters), of those how many the TUN refused, and the
   * sessions leased now. Zeros when off.
   */
  express: {
    on: boolean;
    delivered: number;
    tunFailed: number;
    leases: number;
    /** The express send path (send.ts step 12): on, packets it sealed, of those not sent (socket), (destination, source) pairs leased now. */
    sendOn: boolean;
    sent: number;
    sendFailed: number;
    sendLeases: number;
  };
  /** Drops by reason, all peers and unattributed ones together (zero counts left out). */
  drops: Partial<Record<DropReasonName, number>>;
  /** ICMP errors written into the TUN (no route and too big), suppressed by the rate limit, and of `sent` the "too big" ones. */
  icmp: { sent: number; rateLimited: number; tooBig: number };
  /**
   * Path MTU (src/pmtu.ts): discovery on, the socket sends with DF
   * (native backend), datagrams the kernel refused as above the path MTU
   * (EMSGSIZE), IPv4 packets without DF cut into fragments, probes answered,
   * MSS clamp on.
   */
  pmtu: { on: boolean; dontFragment: boolean; tooBig: number; fragmented: number; repliesSent: number; clampMss: boolean };
  /** 'router' or 'switch'. */
  mode: 'router' | 'switch';
  /**
   * Switch mode (null in router mode): the MAC table (newest first, at most
   * 256 entries listed; `owner` is a peer id or 'local'; `seenAgoMs` null for
   * fixed entries), its size, MACs learned and moved since start, sources
   * refused for lack of room, and frames flooded / sent to one peer.
   */
  switch: {
    macs: Array<{ mac: string; owner: string; fixed: boolean; seenAgoMs: number | null }>;
    size: number;
    learned: number;
    moved: number;
    full: number;
    flooded: number;
    unicast: number;
  } | null;
  /** Keepalive interval in ms (0 = off) and keepalives sent / received, all peers. */
  keepalive: { intervalMs: number; sent: number; received: number };
  /** Rendezvous messages (type 3) sent / authenticated, all peers. */
  rendezvous: { sent: number; received: number };
  /** Relay role: whether this node forwards relay requests, datagrams and bytes forwarded, and type-4 datagrams dropped unauthenticated (a non-member's, or garbage). */
  relaying: { on: boolean; forwarded: number; forwardedBytes: number; unauthenticated: number };
  eventErrors: number;
  /** The access policy (acl.ts): in force or not, its serial and rules, tracked flows. */
  acl: AclStats;
  peers: PeerStats[];
}

/** The data plane's control surface. Methods throw `DataplaneError` (`ERR_DP_*`) on bad input; `ERR_DP_CLOSED` after close. */
export interface Dataplane {
  /** The bound UDP port. */
  readonly port: number;
  /** Which backend runs: 'native', 'js' or the injected name. */
  readonly backend: string;
  /** Adds a peer (`ERR_DP_PEER` if the id exists, `ERR_DP_CONFIG` on bad subnets/endpoint). */
  addPeer(peer: PeerConfig): void;
  /** Changes name, subnets, endpoint and/or fixed MACs of a peer; sessions stay. */
  updatePeer(id: string, changes: { name?: string; subnets?: readonly string[]; endpoint?: { host: string; port: number }; macs?: readonly string[] }): void;
  /** Removes a peer, its routes, sessions and keys. */
  removePeer(id: string): void;
  /** Sets a peer's UDP endpoint (numeric host). */
  setEndpoint(id: string, host: string, port: number): void;
  /**
   * Installs a session (see `SessionParams`). By default it becomes the
   * primary for sending at once and the previous primary keeps receiving
   * until `retireSession` (the data plane never retires one by itself);
   * with `{ primary: false }` it only receives until `promoteSession`.
   * `ERR_DP_PEER` for an unknown peer, `ERR_DP_CONFIG` / `ERR_DP_KEY` for
   * bad parameters, `ERR_DP_SESSIONS_FULL` (counted in the peer's
   * `sessionsRefused`) when the peer already holds MAX_SESSIONS_PER_PEER
   * sessions; nothing changes then.
   */
  installSession(peerId: string, params: SessionParams, options?: InstallOptions): void;
  /**
   * Makes the installed session with our `localIndex` the primary: packets
   * to the peer are sealed with it from the next one on; the previous
   * primary keeps receiving until `retireSession`. Idempotent for the
   * current primary.
   * `ERR_DP_PEER` if the peer has no such live session.
   */
  promoteSession(peerId: string, localIndex: number): void;
  /**
   * Moves the send epoch of session `localIndex` up to `epoch` (the peer
   * asked for it after its restart; the caller persisted it first). The
   * counter restarts at 0. `ERR_DP_CONFIG` if `epoch` is not above the
   * current one: (key, nonce) must never repeat. `ERR_DP_PEER` if unknown.
   */
  setTxEpoch(peerId: string, localIndex: number, epoch: number): void;
  /** Retires the session with our `localIndex` (keys destroyed). `ERR_DP_PEER` if the peer has no such session. */
  retireSession(peerId: string, localIndex: number): void;
  /** When non-empty, packets read from the TUN must have a source in these subnets ('bad-source'). Not used in switch mode. */
  setLocalSubnets(cidrs: readonly string[]): void;
  /** Switch mode: MACs fixed to this node (its own BNL record's `mac`); peers' frames from them are 'spoofed'. `ERR_DP_CONFIG` on a bad MAC. A MAC fixed to a peer before moves to us (the newest call wins). */
  setLocalMacs(macs: readonly string[]): void;
  /**
   * Puts an access policy in force (acl.ts), or none (`null`: everything
   * allowed, the default). Enforced on receive: an inner packet passes when
   * a rule allows it or it replies to traffic this node sent (connection
   * tracking, fed by the send pipeline); else it is dropped as 'acl'. A new
   * policy replaces the old at once; tracked flows survive it (flows that
   * were let in by a rule are checked against the new rules on their next
   * packet). While a policy is in force the express paths grant no leases
   * (existing ones are voided), so every packet passes the checks in the
   * TypeScript pipelines. `ERR_DP_CONFIG` on a malformed policy (nothing changes).
   */
  setPolicy(policy: AclPolicy | null): void;
  /** Sends an authenticated keepalive (through the peer's relay when it has one, unless `direct`: a probe of the direct path); false (counted) when it cannot. */
  sendKeepalive(peerId: string, direct?: boolean): boolean;
  /**
   * Sends the peer's datagrams through relay `relayId` (another peer, with
   * a numeric node id like the peer's) or, with null, directly to its
   * endpoint again. The caller (the daemon's path selector) owns this
   * decision; the data plane voids the express leases and keeps no other
   * state about it. `ERR_DP_PEER` for an unknown peer or relay,
   * `ERR_DP_CONFIG` for the peer itself or a non-numeric id.
   */
  setPath(peerId: string, relayId: string | null): void;
  /** Makes this node forward relay requests (type 4) between its peers, or stop (the daemon: while the list says it is a relay). */
  setRelaying(on: boolean): void;
  /**
   * Sends `payload` (1..512 bytes, not retained) as one rendezvous message
   * (type 3) sealed with the peer's primary session to its endpoint; false
   * (counted like a keepalive) when there is no session or endpoint.
   * `ERR_DP_CONFIG` for an empty or too large payload.
   */
  sendRendezvous(peerId: string, payload: Uint8Array): boolean;
  /**
   * The peer's endpoint when authenticated packets came from it (the
   * observed endpoint: roaming moves it to where they come from), with the
   * wall-clock ms of the last one; null when none came yet or it has no
   * endpoint. Cheap (no snapshot); `ERR_DP_PEER` for an unknown id.
   */
  observedEndpoint(peerId: string): { host: string; port: number; lastRxMs: number } | null;
  /**
   * A snapshot of the counters (allocates; not for the hot path). With
   * `activeOnly`, `peers` lists only the peers that hold a session or are
   * relayed (the totals still count every peer): what a timer needs, without
   * a record for each of the thousands of nodes of a large list that never
   * got keys (issue 19).
   */
  stats(options?: { activeOnly?: boolean }): DataplaneStats;
  /** Stops both pipelines, closes the socket and destroys every key. Idempotent. Does not close the TUN. */
  close(): void;
}

function checkLimits(l: DataplaneLimits): void {
  const ok = (n: number): boolean => typeof n === 'number' && Number.isFinite(n) && n >= 0;
  for (const [k, v] of Object.entries(l)) {
    if (!(k in DEFAULT_LIMITS)) throw new DataplaneError('ERR_DP_CONFIG', `limits.${k} is not a limit of the data plane`);
    if (!ok(v)) throw new DataplaneError('ERR_DP_CONFIG', `limits.${k} must be a finite number ≥ 0`);
  }
  if (!Number.isInteger(l.rejectAfterMessages) || l.rejectAfterMessages > COUNTER_MAX) {
    throw new DataplaneError('ERR_DP_CONFIG', 'limits.rejectAfterMessages must be an integer ≤ 2^53 - 1');
  }
  if (l.rekeyAfterMessages > l.rejectAfterMessages) {
    throw new DataplaneError('ERR_DP_CONFIG', 'limits.rekeyAfterMessages must not exceed rejectAfterMessages');
  }
  if (l.authFailureBurst < 1) throw new DataplaneError('ERR_DP_CONFIG', 'limits.authFailureBurst must be ≥ 1');
}

function pickBackends(o: DataplaneOptions): { crypto: CryptoBackend; udp: UdpBackend; name: string } {
  if (o.backends !== undefined) return { crypto: o.backends.crypto, udp: o.backends.udp, name: o.backends.name ?? 'custom' };
  const want = o.backend ?? (nativeAvailable() ? 'native' : 'js');
  if (want === 'js') return { crypto: jsCryptoBackend(), udp: jsUdpBackend(), name: 'js' };
  if (want === 'native') {
    if (!nativeAvailable()) {
      throw new DataplaneError('ERR_DP_NATIVE', `native backend unavailable: ${nativeUnavailableReason() ?? 'unknown reason'}`);
    }
    return { crypto: nativeCryptoBackend(), udp: nativeUdpBackend(), name: 'native' };
  }
  throw new DataplaneError('ERR_DP_CONFIG', `backend must be 'native' or 'js', got ${JSON.stringify(want)}`);
}

/**
 * Creates a data plane over an open TUN device: binds the UDP socket
 * (`ERR_DP_BIND` when taken), starts both pipelines and returns the control
 * surface. Asynchronous because the JavaScript backend binds
 * asynchronously. Configuration errors reject with `ERR_DP_CONFIG`.
 */
export async function createDataplane(options: DataplaneOptions): Promise<Dataplane> {
  if (options === null || typeof options !== 'object') throw new DataplaneError('ERR_DP_CONFIG', 'options must be an object');
  const tun = options.tun;
  if (tun === null || typeof tun !== 'object' || typeof tun.onPackets !== 'function' || typeof tun.writeBatch !== 'function') {
    throw new DataplaneError('ERR_DP_CONFIG', 'options.tun must be an open TunDevice');
  }
  const mtu = options.mtu ?? tun.mtu;
  if (!Number.isInteger(mtu) || mtu < 576 || mtu > 9000) throw new DataplaneError('ERR_DP_CONFIG', `mtu must be 576..9000, got ${String(mtu)}`);
  const port = options.port ?? DEFAULT_PORT;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new DataplaneError('ERR_DP_CONFIG', `port must be 0..65535, got ${String(port)}`);
  const batchSize = options.batchSize ?? 64;
  if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > 1024) throw new DataplaneError('ERR_DP_CONFIG', 'batchSize must be 1..1024');
  const socketBuffer = options.socketBuffer ?? DEFAULT_SOCKET_BUFFER;
  if (!Number.isInteger(socketBuffer) || socketBuffer < 0 || socketBuffer > MAX_SOCKET_BUFFER) {
    throw new DataplaneError('ERR_DP_CONFIG', `socketBuffer must be 0..${MAX_SOCKET_BUFFER} bytes, got ${String(socketBuffer)}`);
  }
  const limits: DataplaneLimits = { ...DEFAULT_LIMITS, ...(options.limits ?? {}) };
  checkLimits(limits);
  const logger = options.logger ?? silentLogger;
  const keepaliveMs = options.keepaliveMs ?? 0;
  if (!Number.isInteger(keepaliveMs) || keepaliveMs < 0 || keepaliveMs > 86_400_000) {
    throw new DataplaneError('ERR_DP_CONFIG', `keepaliveMs must be 0 (off) .. 86400000, got ${String(keepaliveMs)}`);
  }
  const mode = options.mode ?? 'router';
  if (mode !== 'router' && mode !== 'switch') throw new DataplaneError('ERR_DP_CONFIG', `mode must be 'router' or 'switch', got ${JSON.stringify(mode)}`);
  const switching = mode === 'switch';
  if (switching && tun.mode !== undefined && tun.mode !== 'tap') throw new DataplaneError('ERR_DP_CONFIG', "mode 'switch' needs a TAP device (openTun({ mode: 'tap' }))");
  /** Largest payload carried: the IP MTU, or in switch mode the frame (Ethernet header and a VLAN tag on top). */
  const carried = switching ? mtu + FRAME_EXTRA : mtu;
  const backends = pickBackends(options);

  const headroom = 64;
  const slotSize = Math.max(2048, (headroom + OVERHEAD + carried + 63) & ~63);
  const socket: BatchUdpSocket = backends.udp.open({ port, bindAddress: options.bindAddress, batchSize, slotSize, headroom, socketBuffer, gso: options.gso, gro: options.gro });
  const ready = (socket as { ready?: Promise<void> }).ready;
  if (ready !== undefined) await ready;

  const events = new EventDispatcher(options.events ?? {}, logger, limits.eventIntervalMs, limits.authFailureBurst);
  const peers = new PeerTable(
    backends.crypto,
    (slot, host, p) => socket.setEndpoint(slot, host, p),
    (slot) => socket.clearEndpoint(slot),
  );
  const ctx: PipelineContext = {
    peers,
    crypto: backends.crypto,
    socket,
    tun,
    mtu: carried,
    limits,
    events,
    codec: new Lz4Codec(carried),
    icmp: new IcmpResponder(limits.icmpPerSecond, limits.icmpBurst),
    drops: new Float64Array(DROP_REASON_COUNT),
    localSubnets: new PrefixTable(),
    rendezvousRx: 0,
    rendezvousTx: 0,
    relaying: false,
    relayForwarded: 0,
    relayForwardedBytes: 0,
    relayUnauthenticated: 0,
    dataType: switching ? MessageType.FRAME : MessageType.DATA,
    frames: null as SwitchPipeline | null,
    acl: new Acl(options.aclLimits ?? {}),
    clampMss: options.clampMss ?? false,
    pmtu: {
      onProbe: (peer, id, wireLen) => pmtu.onProbe(peer, id, wireLen),
      onReply: (peer, id) => pmtu.onReply(peer, id),
    },
  };
  const sw = switching ? new SwitchPipeline(ctx, options.macTable) : null;
  ctx.frames = sw;
  const send = new SendPipeline(ctx);
  const pmtuTimers: PmtuTimers = { ...PMTU_DEFAULTS, ...(options.pmtuTimers ?? {}) };
  for (const [k, v] of Object.entries(pmtuTimers)) {
    if (!(k in PMTU_DEFAULTS) || typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
      throw new DataplaneError('ERR_DP_CONFIG', `pmtuTimers.${k} must be a finite number > 0`);
    }
  }
  const pmtu = new PmtuScheduler(peers, send, mtu, pmtuTimers, logger);
  const receive = new ReceivePipeline(ctx);
  let closed = false;
  const live = (): void => {
    if (closed) throw new DataplaneError('ERR_DP_CLOSED', 'the data plane is closed');
  };
  // Switch mode grants no express lease: the C path knows only IP packets, and the MAC decisions live once, in switch.ts.
  const express = (options.express ?? true) && !switching;
  // Whether each express half is set up; a policy in force holds both off (setPolicy).
  let expressRx = false;
  let expressTx = false;
  if (express && socket.expressSetup !== undefined && typeof tun.expressWriter === 'function') {
    socket.expressSetup({ gen: peers.expressGen, writer: tun.expressWriter(), mtu });
    receive.expressOn = expressRx = true;
  }
  if (express && send.zeroCopy && socket.expressTxSetup !== undefined && typeof tun.setExpressSender === 'function') {
    tun.setExpressSender(socket.expressTxSetup(peers.expressTxGen, mtu));
    send.expressOn = expressTx = true;
  }
  peers.onExpressGenExhausted = () => {
    expressRx = expressTx = false;
    if (receive.expressOn) socket.expressSetup?.(null);
    if (send.expressOn && typeof tun.setExpressSender === 'function') tun.setExpressSender(null);
    receive.expressOn = false;
    send.expressOn = false;
    logger.warn('express paths off for good: lease generation exhausted');
  };
  const expressStats = (): DataplaneStats['express'] => {
    const st = receive.expressOn || send.expressOn ? (socket as { stats?: () => Partial<NativeUdpStats> }).stats?.() : undefined;
    return {
      on: receive.expressOn,
      delivered: st?.rxExpress ?? 0,
      tunFailed: st?.rxExpressTunFailed ?? 0,
      leases: st?.expressLeases ?? 0,
      sendOn: send.expressOn,
      sent: st?.txExpress ?? 0,
      sendFailed: st?.txExpressFailed ?? 0,
      sendLeases: st?.expressTxLeases ?? 0,
    };
  };
  // Bound once: the pipelines' handlers are not closures per packet.
  socket.onDatagrams((b) => receive.onDatagrams(b));
  if (sw !== null) tun.onPackets((b) => sw.onTunBatch(b));
  else tun.onPackets((b) => send.onTunBatch(b));
  const macsOf = (list: readonly string[] | undefined): number[] => {
    if (list === undefined) return [];
    if (!Array.isArray(list)) throw new DataplaneError('ERR_DP_CONFIG', 'macs must be an array of MAC addresses');
    return list.map((m) => {
      try {
        return parseMac(m);
      } catch (err) {
        throw new DataplaneError('ERR_DP_CONFIG', `bad MAC ${JSON.stringify(m)} (expected aa:bb:cc:dd:ee:ff, lowercase)`, { cause: err });
      }
    });
  };
  const setFixed = (owner: number, macs: number[]): void => sw?.macs.setFixed(owner, macs);
  const keepalives = keepaliveMs > 0 ? new KeepaliveScheduler(peers, (peer) => send.sendKeepalive(peer), keepaliveMs, events) : null;
  keepalives?.start();
  if (options.pmtuDiscovery === true) pmtu.start();
  logger.info('dataplane started', { port: socket.port, backend: backends.name, mode, mtu, zeroCopy: send.zeroCopy, express: receive.expressOn, expressSend: send.expressOn, keepaliveMs, pmtuDiscovery: pmtu.running, clampMss: ctx.clampMss });

  const switchStats = (w: SwitchPipeline): NonNullable<DataplaneStats['switch']> => {
    const all = w.macs.entries(performance.now());
    return {
      macs: all.slice(0, 256).map((e) => ({ mac: e.mac, owner: e.owner === MAC_LOCAL ? 'local' : (peers.bySlot[e.owner]?.id ?? `slot ${e.owner}`), fixed: e.fixed, seenAgoMs: e.seenAgoMs })),
      size: all.length,
      learned: w.macs.learned,
      moved: w.macs.moved,
      full: w.macs.full,
      flooded: w.counters.flooded,
      unicast: w.counters.unicast,
    };
  };
  const dp: Dataplane = {
    get port() {
      return socket.port;
    },
    backend: backends.name,
    addPeer(p: PeerConfig): void {
      live();
      if (p === null || typeof p !== 'object') throw new DataplaneError('ERR_DP_CONFIG', 'peer must be an object');
      const macs = macsOf(p.macs);
      const peer = peers.add(p.id, p.name ?? p.id, p.subnets, p.endpoint);
      setFixed(peer.slot, macs);
    },
    updatePeer(id, changes): void {
      live();
      const peer = peers.get(id);
      const prefixes = changes.subnets === undefined ? undefined : parseSubnets(changes.subnets);
      const macs = changes.macs === undefined ? undefined : macsOf(changes.macs);
      if (macs !== undefined) setFixed(peer.slot, macs);
      if (prefixes !== undefined) peers.setSubnets(peer, prefixes);
      if (changes.endpoint !== undefined) peers.setEndpoint(peer, changes.endpoint.host, changes.endpoint.port);
      if (typeof changes.name === 'string' && changes.name !== '') peer.name = changes.name;
    },
    removePeer(id: string): void {
      live();
      const peer = peers.get(id);
      peers.remove(id);
      send.dropHeld(peer);
      sw?.macs.removeOwner(peer.slot); // the slot may be re-used by another peer
    },
    setEndpoint(id: string, host: string, p: number): void {
      live();
      peers.setEndpoint(peers.get(id), host, p);
    },
    installSession(peerId: string, params: SessionParams, options?: InstallOptions): void {
      live();
      if (options !== undefined && (options === null || typeof options !== 'object')) {
        throw new DataplaneError('ERR_DP_CONFIG', 'install options must be an object');
      }
      const peer = peers.get(peerId);
      peers.install(peer, params, Date.now(), options?.primary ?? true);
      send.flushHeld(peer); // packets held while there was no session (send.ts step 5)
      if (options?.primary ?? true) keepalives?.soon(); // its first keepalive now, not at the next tick
    },
    promoteSession(peerId: string, localIndex: number): void {
      live();
      const s = peers.get(peerId).sessions.find((x) => x.localIndex === localIndex);
      if (s === undefined) throw new DataplaneError('ERR_DP_PEER', `peer ${peerId} has no session with localIndex ${localIndex}`);
      peers.promote(s);
      send.flushHeld(s.peer); // packets held while there was no session (send.ts step 5)
      keepalives?.soon(); // its first keepalive now, not at the next tick
    },
    setTxEpoch(peerId: string, localIndex: number, epoch: number): void {
      live();
      const s = peers.get(peerId).sessions.find((x) => x.localIndex === localIndex);
      if (s === undefined) throw new DataplaneError('ERR_DP_PEER', `peer ${peerId} has no session with localIndex ${localIndex}`);
      if (!Number.isInteger(epoch) || epoch <= s.txEpoch || epoch > 0xffffffff) {
        throw new DataplaneError('ERR_DP_CONFIG', `send epoch ${epoch} must be a u32 above the current ${s.txEpoch}`);
      }
      peers.voidExpress();
      s.txEpoch = epoch;
      s.txCounter = 0;
      s.softRekeyAsked = false;
    },
    retireSession(peerId: string, localIndex: number): void {
      live();
      const peer = peers.get(peerId);
      const s = peer.sessions.find((x) => x.localIndex === localIndex);
      if (s === undefined) throw new DataplaneError('ERR_DP_PEER', `peer ${peerId} has no session with localIndex ${localIndex}`);
      peers.retire(s);
    },
    setLocalSubnets(cidrs: readonly string[]): void {
      live();
      const prefixes = parseSubnets(cidrs);
      peers.voidExpress();
      ctx.localSubnets.clear();
      for (const p of prefixes) ctx.localSubnets.insert(p, 0);
    },
    setLocalMacs(macs: readonly string[]): void {
      live();
      setFixed(MAC_LOCAL, macsOf(macs));
    },
    setPolicy(policy: AclPolicy | null): void {
      live();
      ctx.acl.setPolicy(policy); // throws before changing anything
      const on = ctx.acl.active;
      // One check, in TypeScript: no express leases while a policy is in force (the C paths do not know it).
      receive.expressOn = expressRx && !on;
      send.expressOn = expressTx && !on;
      if (on) peers.voidExpress();
      logger.info('access policy', on ? { serial: policy!.serial, rules: policy!.rules.length } : { serial: null });
    },
    sendKeepalive(peerId: string, direct = false): boolean {
      live();
      return send.sendKeepalive(peers.get(peerId), direct === true);
    },
    setPath(peerId: string, relayId: string | null): void {
      live();
      const peer = peers.get(peerId);
      const via = relayId === null ? null : peers.get(relayId);
      if (via === peer) throw new DataplaneError('ERR_DP_CONFIG', `peer ${peerId} cannot be its own relay`);
      if (via !== null && (peer.num < 0 || via.num < 0)) throw new DataplaneError('ERR_DP_CONFIG', 'relaying needs numeric node ids');
      if (peer.relay === via) return;
      peers.voidExpress();
      peers.setRelay(peer, via);
    },
    setRelaying(on: boolean): void {
      live();
      ctx.relaying = on === true;
    },
    observedEndpoint(peerId: string) {
      live();
      const peer = peers.get(peerId);
      const last = peer.counters[PeerCounter.LAST_RX_MS];
      return peer.hasEndpoint && last !== 0 ? { host: peer.endpointHost, port: peer.endpointPort, lastRxMs: last } : null;
    },
    sendRendezvous(peerId: string, payload: Uint8Array): boolean {
      live();
      if (payload.length === 0 || payload.length > RENDEZVOUS_MAX_PAYLOAD) {
        throw new DataplaneError('ERR_DP_CONFIG', `rendezvous payload must be 1..${RENDEZVOUS_MAX_PAYLOAD} bytes, got ${payload.length}`);
      }
      return send.sendRendezvous(peers.get(peerId), payload);
    },
    stats(options?: { activeOnly?: boolean }): DataplaneStats {
      const out: PeerStats[] = [];
      let kaSent = 0;
      let kaReceived = 0;
      const activeOnly = options?.activeOnly === true;
      for (const peer of peers.byId.values()) {
        const c = peer.counters;
        kaSent += c[PeerCounter.KEEPALIVES_TX];
        kaReceived += c[PeerCounter.KEEPALIVES_RX];
        if (activeOnly && peer.sessions.length === 0 && peer.relay === null) continue;
        out.push({
          id: peer.id,
          name: peer.name,
          endpoint: peer.hasEndpoint ? { host: peer.endpointHost, port: peer.endpointPort } : null,
          subnets: peer.subnets.map((s) => s.text),
          txPackets: c[PeerCounter.TX_PACKETS],
          txBytes: c[PeerCounter.TX_BYTES],
          rxPackets: c[PeerCounter.RX_PACKETS],
          rxBytes: c[PeerCounter.RX_BYTES],
          lastRxMs: c[PeerCounter.LAST_RX_MS] === 0 ? null : c[PeerCounter.LAST_RX_MS],
          authFailures: c[PeerCounter.AUTH_FAILURES],
          keepalivesTx: c[PeerCounter.KEEPALIVES_TX],
          keepalivesRx: c[PeerCounter.KEEPALIVES_RX],
          lastKeepaliveTxMs: c[PeerCounter.LAST_KEEPALIVE_TX_MS] === 0 ? null : c[PeerCounter.LAST_KEEPALIVE_TX_MS],
          lastKeepaliveRxMs: c[PeerCounter.LAST_KEEPALIVE_RX_MS] === 0 ? null : c[PeerCounter.LAST_KEEPALIVE_RX_MS],
          sessionsRefused: peer.sessionsRefused,
          relay: peer.relay === null ? null : peer.relay.id,
          relayed: {
            txPackets: c[PeerCounter.RELAYED_TX_PACKETS],
            txBytes: c[PeerCounter.RELAYED_TX_BYTES],
            rxPackets: c[PeerCounter.RELAYED_RX_PACKETS],
            rxBytes: c[PeerCounter.RELAYED_RX_BYTES],
            lastRxMs: c[PeerCounter.LAST_RELAYED_RX_MS] === 0 ? null : c[PeerCounter.LAST_RELAYED_RX_MS],
            fromPackets: c[PeerCounter.RELAY_FROM_PACKETS],
            fromBytes: c[PeerCounter.RELAY_FROM_BYTES],
            toPackets: c[PeerCounter.RELAY_TO_PACKETS],
            toBytes: c[PeerCounter.RELAY_TO_BYTES],
          },
          pmtu: peer.pmtu === null || peer.pmtu.pmtu === 0 ? null : peer.pmtu.pmtu,
          innerMtu: peer.innerMtu < mtu ? peer.innerMtu : mtu,
          pmtuPhase: peer.pmtu?.phase ?? 'unknown',
          pmtuAgeMs: peer.pmtu === null || peer.pmtu.doneAtMs === 0 ? null : Math.round(performance.now() - peer.pmtu.doneAtMs),
          drops: peer.drops === null ? {} : dropTableToRecord(peer.drops),
          sessions: peer.sessions.map((s) => ({
            localIndex: s.localIndex,
            remoteIndex: s.remoteIndex,
            cipher: s.cipher,
            compression: { algo: s.compressAlgo === 1 ? ('lz4' as const) : ('none' as const), level: s.compressLevel },
            primary: peer.primary === s,
            pending: !s.promoted,
            txEpoch: s.txEpoch,
            txCounter: s.txCounter,
            rxEpochFloor: s.rxEpochFloor,
            rxEpoch: s.rxEpoch < 0 ? null : s.rxEpoch,
            rxCounter: s.window.newest,
            installedAtMs: s.installedAtMs,
          })),
        });
      }
      return {
        backend: backends.name,
        port: closed ? 0 : socket.port,
        mtu,
        zeroCopy: send.zeroCopy,
        express: expressStats(),
        drops: dropTableToRecord(ctx.drops),
        icmp: { sent: ctx.icmp.sent, rateLimited: ctx.icmp.rateLimited, tooBig: ctx.icmp.tooBigSent },
        pmtu: {
          on: pmtu.running,
          dontFragment: ((socket as { stats?: () => { pmtuDiscovery?: number } }).stats?.().pmtuDiscovery ?? 0) === 1,
          tooBig: send.tooBigCount(),
          fragmented: send.fragmented,
          repliesSent: pmtu.repliesSent,
          clampMss: ctx.clampMss,
        },
        mode,
        switch: sw === null ? null : switchStats(sw),
        keepalive: { intervalMs: keepaliveMs, sent: kaSent, received: kaReceived },
        rendezvous: { sent: ctx.rendezvousTx, received: ctx.rendezvousRx },
        relaying: { on: ctx.relaying, forwarded: ctx.relayForwarded, forwardedBytes: ctx.relayForwardedBytes, unauthenticated: ctx.relayUnauthenticated },
        eventErrors: events.errors,
        acl: ctx.acl.stats(),
        peers: out,
      };
    },
    close(): void {
      if (closed) return;
      closed = true;
      keepalives?.stop();
      pmtu.stop();
      try {
        tun.onPackets(null);
      } catch (err) {
        // A TUN closed before us has no handler to clear: nothing to undo.
        logger.debug('dataplane close: tun already closed', { err: String(err) });
      }
      receive.expressOn = false;
      if (send.expressOn) {
        send.expressOn = false;
        try {
          tun.setExpressSender?.(null);
        } catch (err) {
          logger.debug('dataplane close: tun already closed', { err: String(err) });
        }
      }
      socket.close(); // drops the express leases and the TUN writer with it
      peers.retireAll();
      logger.info('dataplane stopped', {});
    },
  };
  return dp;
}
