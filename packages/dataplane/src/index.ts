/**
 * @cluevpn/dataplane: the encrypted, replay-protected, optionally
 * compressed UDP data plane between mesh nodes. The whole public surface.
 */
export { createDataplane, DEFAULT_MTU, DEFAULT_PORT } from './dataplane.js';
export type { Dataplane, DataplaneOptions, DataplaneStats, InstallOptions, PeerConfig, PeerStats, SessionStats } from './dataplane.js';
export type { DataplaneEvents, DataplaneLogger, RekeyReason } from './events.js';
export type { DataplaneLimits, DataplaneTun } from './context.js';
export { DEFAULT_LIMITS } from './context.js';
export type { CipherName, CompressionParams, SessionParams } from './peer-table.js';
export { DataplaneError } from './errors.js';
export { DEFAULT_ACL_LIMITS } from './acl.js';
export type { AclLimits, AclPolicy, AclRule, AclStats } from './acl.js';
export { ConntrackTable } from './conntrack.js';
export type { DataplaneErrorCode } from './errors.js';
export { DropReason, dropReasonName } from './drop-reasons.js';
export type { DropReasonName, DropReasonValue } from './drop-reasons.js';
export {
  COUNTER_MAX,
  Flags,
  HEADER_LEN,
  MessageType,
  OVERHEAD,
  PROTOCOL_VERSION,
  TAG_LEN,
  decodeHeader,
  encodeHeader,
  messageTypeName,
  PMTU_REPLY_PAYLOAD,
  PMTU_PROBE_MAX_PAYLOAD,
} from './framing.js';
export type { Header, MessageTypeValue } from './framing.js';
export { REPLAY_WINDOW_SIZE, ReplayWindow } from './replay-window.js';
export { PrefixTable, contains } from './routing-table.js';
export { parsePrefix } from './ip-address.js';
export type { Prefix } from './ip-address.js';
export type { BatchUdpSocket, CryptoBackend, DatagramBatch, ExpressLease, ExpressSetup, ExpressTxLease, UdpBackend, UdpOpenOptions } from './backend.js';
export { CipherId, DEFAULT_SOCKET_BUFFER, MAX_SOCKET_BUFFER, SOURCE_LEN } from './backend.js';
export { jsCryptoBackend, jsUdpBackend } from './backend-js.js';
export { nativeAvailable, nativeCryptoBackend, nativeUdpBackend } from './backend-native.js';
export { PMTU_DEFAULTS, PMTU_FLOOR, OUTER_HEADERS, PathMtuSearch, innerMtuOf, pmtuCeiling } from './pmtu.js';
export type { PmtuPhase, PmtuTimers, ProbeSendResult } from './pmtu.js';
export { clampMss, MSS_OVERHEAD_V4, MSS_OVERHEAD_V6 } from './mss-clamp.js';
export { ETH_HEADER_LEN, FRAME_EXTRA } from './switch.js';
export { MAC_TABLE_DEFAULTS } from './mac-table.js';
export type { MacTableOptions } from './mac-table.js';
