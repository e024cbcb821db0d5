/** The control client: how `cluevpn` and `bnl` talk to a running `cluevpnd`. */
export { ControlError, findDaemon, request, requestAt, requestReloadAndPush, readLivePid } from './client.js';
export type { DaemonTarget, DaemonLocation, ControlEnv, RequestOptions, ReloadAndPushAnswer } from './client.js';
export * from './protocol.js';
