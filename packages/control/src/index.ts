/** `@cluevpn/control`: the daemon's control protocol (see protocol.ts). The whole public surface. */
export * from './protocol.js';
