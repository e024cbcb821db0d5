/** `@cluevpn/control`: the daemon's control protocol (see protocol.ts). The whole public surface. */
export * from './protocol.js';
export { livePid } from './pidfile.js';
export { CLUEVPN_VERSION, versionText } from './version.js';
