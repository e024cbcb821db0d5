/** `@cluevpn/control`: the daemon's control protocol (see protocol.ts). The whole public surface. */
export * from './protocol.js';
export { livePid } from './pidfile.js';
