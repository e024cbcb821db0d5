/**
 * @cluevpn/tun: a native TUN/TAP binding with batched, non-blocking reads.
 *
 * The whole public surface: `openTun`, the `TunDevice` contract and its
 * types, and `TunError`. The in-memory fake lives in `@cluevpn/tun/testing`.
 */
export { openTun } from './device.js';
export { TunError, TunErrorCode, isTunError } from './errors.js';
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
