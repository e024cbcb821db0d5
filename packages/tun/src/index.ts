/**
 * @cluevpn/tun: a native TUN/TAP binding with batched, non-blocking reads.
 *
 * The whole public surface: `openTun`, the `TunDevice` contract and its
 * types, `TunError`, and the parser of `CLUEVPN_DEBUG` (also alone as
 * `@cluevpn/tun/debug`, for the daemon's loader). The in-memory fake lives in
 * `@cluevpn/tun/testing`.
 */
export { openTun } from './device.js';
export { TunError, TunErrorCode, isTunError } from './errors.js';
export { DEBUG_WORDS, debugHas, debugWords, parseDebug, type DebugWord } from './debug.js';
export type { TunErrorCodeValue, TunErrorDetails } from './errors.js';
export { TUN_DEFAULTS } from './types.js';
export type {
  NativeHook,
  PacketBatch,
  PacketHandler,
  TunDevice,
  TunErrorHandler,
  TunMode,
  TunOptions,
  TunStats,
} from './types.js';
