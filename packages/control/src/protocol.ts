/**
 * The control protocol between `cluevpnd` and the commands that talk to it
 * (`cluevpn`, `bnl push`): JSON lines over the daemon's unix socket (mode
 * 0600), version 1. Both ends import these definitions, so the CLI never
 * imports daemon code and the two cannot drift apart (like wireguard-go's
 * `ipc` package).
 *
 * ```
 * request  {"v":1,"id":7,"cmd":"status"}
 *          {"v":1,"id":8,"cmd":"set-log-level","level":7}
 * response {"v":1,"id":7,"ok":true,"result":{…}}
 *          {"v":1,"id":8,"ok":false,"error":{"code":"ERR_CONTROL_BAD_REQUEST","message":"…"}}
 * ```
 *
 * One request per line, answered in order on the same connection; `id` is
 * echoed. A request with another `v` gets `ERR_CONTROL_VERSION` (the answer
 * carries the server's `v`). A line over `CONTROL_MAX_LINE` bytes or not JSON
 * gets `ERR_CONTROL_PROTOCOL` and the connection closes.
 */

/** Specification: the protocol version both ends speak. */
export const CONTROL_PROTOCOL_VERSION = 1;
/** Specification: longest request line a server accepts, in bytes. */
export const CONTROL_MAX_LINE = 64 * 1024;

/** Drop counters of one peer, by reason (names from the data plane). */
export type DropCounts = Record<string, number>;

/** One peer as `status` and `peers` report it. Times are milliseconds ago, `null` when never. */
export interface PeerStatus {
  name: string;
  id: number;
  /** Current data endpoint `host:port` (`[v6]:port`), `null` when none is known. */
  endpoint: string | null;
  /**
   * How data reaches the peer: `direct` (keys, and its authenticated packets
   * came from `observedEndpoint` recently: within 2 × keepalive + 5 s, or
   * 3 minutes with keepalives off), `via NAME` (relayed through that node),
   * `null` (no working path known yet). Optional: older daemons lack it.
   */
  path?: 'direct' | `via ${string}` | null;
  /** Where the peer's authenticated packets come from (its NAT's address for a node behind NAT), `null` before any. */
  observedEndpoint?: string | null;
  /** `up` (keys installed and traffic within 3 minutes), `keyed` (keys, no recent traffic), `negotiating`, `idle` (no keys). */
  state: 'up' | 'keyed' | 'negotiating' | 'idle';
  /** Negotiated cipher, e.g. `aes-256-gcm`; `null` before negotiation. */
  cipher: string | null;
  /** Negotiated compression, e.g. `lz4:1` or `none`; `null` before negotiation. */
  compression: string | null;
  /** Age of the current keys. */
  keyAgeMs: number | null;
  /** Since the last authenticated packet from this peer. */
  lastRxMs: number | null;
  /** Since the last keepalive sent to this peer (`keepalive` config key; null when never, e.g. off or traffic kept it busy). */
  lastKeepaliveTxMs: number | null;
  /** Since the last authenticated keepalive received from this peer. */
  lastKeepaliveRxMs: number | null;
  /** Path MTU to this peer (outer IP packet bytes) as last found by probing (`pmtudiscovery`); `null` before the first search ended. */
  pmtu: number | null;
  /** Largest inner packet sent to this peer: the path MTU less 64 (IPv4 underlay) or 84 (IPv6), at most the configured `mtu`. */
  innerMtu: number;
  /** Since the last path-MTU search ended (re-probed every 10 minutes). */
  pmtuAgeMs: number | null;
  /** Since the last negotiation with this peer completed (in this process or restored from state). */
  lastNegotiationMs: number | null;
  /** Whether the current keys were restored from the state store at start (no renegotiation). */
  restored: boolean;
  /** Negotiations completed with this peer since the daemon started (0 after a restart that restored the keys). */
  negotiations: number;
  rxPackets: number;
  rxBytes: number;
  txPackets: number;
  txBytes: number;
  /**
   * Through a relay (issue 14 point 4): our datagrams to the peer sent via
   * a relay and their inner bytes, the peer's that came via one (also in
   * rx*). Optional: older daemons lack it.
   */
  relayed?: { txPackets: number; txBytes: number; rxPackets: number; rxBytes: number };
  drops: DropCounts;
  /** The BNL serial this peer holds, as learned from pulls and pushes; `null` when unknown. */
  bnlSerial: number | null;
  subnets: string[];
}

/** The answer to `status`. */
export interface StatusReport {
  name: string;
  id: number;
  netname: string;
  pid: number;
  version: string;
  uptimeMs: number;
  device: string;
  port: number;
  logLevel: number;
  bnl: BnlStatusReport;
  /**
   * The access policy (the list's rules, issue 20): `serial` is the serial
   * of the list whose rules are in force, `null` when the list has no rules
   * (everything allowed); `rules` how many of them apply to this node; tracked
   * flows now, the table's size and flows evicted because it was full.
   * Absent from daemons without access rules.
   */
  policy?: { serial: number | null; rules: number; flows: number; maxFlows: number; evicted: number };
  peers: PeerStatus[];
  /**
   * Drops not tied to a current peer (unknown receiver index, bad header, no
   * route, bad source…; a removed peer's drops stay here): the data plane's
   * whole table less what each peer in `peers` reports.
   */
  drops: DropCounts;
  /** The daemon's memory, from `process.memoryUsage()`, in bytes. */
  memory: MemoryReport;
  /** Relays and rendezvous (`packages/daemon/src/relay.ts`); optional: older daemons lack it. */
  relay?: RelayReport;
  /**
   * How the daemon's code was loaded (`packages/daemon/src/entry.ts`):
   * "bundle (code cache accepted)" — or "rejected" / "missing" — or
   * "modules (why)"; "" when the daemon was started in-process (tests).
   */
  loaded: string;
  /** `mode=`: 'router' (IP over a TUN) or 'switch' (Ethernet over a TAP). Absent from older daemons. */
  mode?: 'router' | 'switch';
  /** Switch mode only: the MAC table and its counters. */
  switch?: SwitchReport;
}

/** Switch mode's view in `status`: which node owns which MAC, and what the switch did. */
export interface SwitchReport {
  /** Newest first, at most 256 listed; `owner` is a node name or "local" (behind our own TAP); `seenAgoMs` null for MACs fixed by the BNL. */
  macs: Array<{ mac: string; owner: string; fixed: boolean; seenAgoMs: number | null }>;
  /** MACs in the table (learned and fixed). */
  size: number;
  /** Since start: MACs learned, moved from one owner to another, new sources refused for lack of room. */
  learned: number;
  moved: number;
  full: number;
  /** Frames from the TAP flooded to every peer, and sent to the one owning peer. */
  flooded: number;
  unicast: number;
}

/** Relay and rendezvous counters of one daemon. */
export interface RelayReport {
  /** This node serves as a relay (`"relay":true` and a listed endpoint in the list). */
  relay: boolean;
  /** Relay role: rendezvous answered, splices made / open now, bytes they carried, refusals by `ERR_RELAY_*` code. */
  located: number;
  splices: number;
  splicesActive: number;
  splicedBytes: number;
  refused: Record<string, number>;
  /** Member role: rendezvous asked, punch bursts started, control connections through relays (dialled / answered). */
  locateSent: number;
  punches: number;
  dialled: number;
  reverseLegs: number;
  /** Rendezvous messages dropped by reason (malformed, from-non-relay, over-budget, not-a-relay, …). */
  dropped: Record<string, number>;
  /**
   * Relay role, data (issue 14 point 4; optional: older daemons lack it):
   * datagrams forwarded between members and their bytes; type-4 datagrams
   * dropped before authentication (a non-member's: also counted in the
   * drops as `unknown-index` / `auth-failed`); per member, what we forwarded
   * from it and to it (packets, bytes). Refusals are drops by reason
   * (`relay-refused`, `relay-no-target`, `relay-limit`, `relay-malformed`).
   */
  forwarded?: number;
  forwardedBytes?: number;
  unauthenticated?: number;
  members?: Record<string, { fromPackets: number; fromBytes: number; toPackets: number; toBytes: number }>;
}

/** Where the daemon's memory is: resident set, V8 heap, and memory outside it. */
export interface MemoryReport {
  /** Resident set size of the whole process. */
  rss: number;
  /** V8 heap in use and reserved. */
  heapUsed: number;
  heapTotal: number;
  /** Memory of C++ objects bound to JavaScript (Buffers, native addons' external memory). */
  external: number;
  /** ArrayBuffers and Buffers (part of `external`). */
  arrayBuffers: number;
}

/** The answer to `bnl-status`. */
export interface BnlStatusReport {
  serial: number;
  /** Signing time, ISO 8601, when the format carries one. */
  signedAt: string | null;
  nodes: number;
  path: string;
  /** Per peer name: the serial it holds (`null` unknown). */
  peers: Record<string, number | null>;
}

/** The answer to `reload-and-push`. */
export interface ReloadResult {
  /** The serial in force after the reload. */
  serial: number;
  /** Whether the file on disk was newer and was applied. */
  applied: boolean;
  /** Peers the list was pushed to (0 when nothing was newer). */
  pushedTo: number;
  /** Peers a push was started for (every other node; 0 when nothing was newer). */
  pushTargets: number;
  /** Pushes that failed (refused or unreachable). */
  pushFailed: number;
  /** Pushes still running when the answer was sent: they go on in the background. */
  pushPending: number;
  /**
   * The credential files read again: whether the daemon switched to another
   * certificate, key or CA bundle, and the fingerprint of the certificate in
   * use. Absent from daemons that do not reload credentials. (Refused
   * credentials make the whole request fail with `ERR_CREDENTIALS`.)
   */
  credentials?: { switched: boolean; fingerprint: string };
}

/** Specification: the commands of version 1. */
export const CONTROL_COMMANDS = ['status', 'peers', 'bnl-status', 'set-log-level', 'reload-and-push'] as const;
/** A command of version 1. */
export type ControlCommand = (typeof CONTROL_COMMANDS)[number];

/** The answer to `set-log-level`. */
export interface SetLogLevelResult {
  level: number;
  previous: number;
}

/** Result type of each command. */
export interface ControlResults {
  status: StatusReport;
  peers: PeerStatus[];
  'bnl-status': BnlStatusReport;
  'set-log-level': SetLogLevelResult;
  'reload-and-push': ReloadResult;
}
