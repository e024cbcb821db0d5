/**
 * The control protocol as the CLI sees it: JSON lines over the daemon's unix
 * socket, version 1. This mirrors `packages/daemon/src/control.ts` (the CLI
 * never imports daemon code); the daemon README documents the protocol.
 */

/** Protocol version the CLI speaks. */
export const CONTROL_PROTOCOL_VERSION = 1;

/** Commands of version 1. */
export type ControlCommand = 'status' | 'peers' | 'bnl-status' | 'set-log-level' | 'reload-and-push';

/** Drop counters by reason. */
export type DropCounts = Record<string, number>;

/** One peer in `status` / `peers`. Times are milliseconds ago, `null` when never. */
export interface PeerStatus {
  name: string;
  id: number;
  endpoint: string | null;
  state: 'up' | 'keyed' | 'negotiating' | 'idle';
  cipher: string | null;
  compression: string | null;
  keyAgeMs: number | null;
  lastRxMs: number | null;
  lastNegotiationMs: number | null;
  restored: boolean;
  /** Negotiations completed with this peer since the daemon started. */
  negotiations: number;
  rxPackets: number;
  rxBytes: number;
  txPackets: number;
  txBytes: number;
  drops: DropCounts;
  bnlSerial: number | null;
  subnets: string[];
}

/** `bnl-status` answer. */
export interface BnlStatusReport {
  serial: number;
  signedAt: string | null;
  nodes: number;
  path: string;
  peers: Record<string, number | null>;
}

/** `status` answer. */
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
  peers: PeerStatus[];
  drops: DropCounts;
}

/** `reload-and-push` answer. */
export interface ReloadResult {
  serial: number;
  applied: boolean;
  pushedTo: number;
}

/** `set-log-level` answer. */
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
