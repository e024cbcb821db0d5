/** `@cluevpn/control`: the daemon's control protocol (see protocol.ts, wire.ts). The whole public surface. */
export * from './protocol.js';
export { ControlProtocolError, type ControlProtocolErrorCode, type ControlRequestId } from './errors.js';
export { decodeAnswer, decodeRequest, encodeAnswer, encodeRequest, errorAnswer, resultAnswer, type ControlAnswer, type ControlRequest } from './wire.js';
export { livePid } from './pidfile.js';
export { CLUEVPN_VERSION, versionText } from './version.js';
