/**
 * The `NegotiationTransport` over the real control channel: one TLS
 * connection per negotiation, to the address the daemon resolves from the
 * BNL.
 */
import type { AuthDecision, PeerIdentity } from './authorize.js';
import { connectControl, type ControlCredentials, type ControlLimits } from './channel.js';
import { ChannelError } from './errors.js';
import type { Logger } from './logger.js';
import type { NegotiationTransport } from './negotiator.js';

/** Options of `createControlTransport`. */
export interface ControlTransportOptions {
  /** Where `peerName`'s control port is (from the BNL), or undefined when unknown. */
  resolve(peerName: string): { host: string; port: number } | undefined;
  credentials: ControlCredentials;
  /** The same membership/pin/OU check the server uses. */
  authorize: (id: PeerIdentity) => AuthDecision;
  limits?: Partial<ControlLimits>;
  logger?: Logger;
}

/** Builds a transport whose `connect` opens an authenticated control connection (`ERR_CHANNEL_CLOSED` when the peer has no address). */
export function createControlTransport(opts: ControlTransportOptions): NegotiationTransport {
  return {
    async connect(peerName) {
      const where = opts.resolve(peerName);
      if (!where) throw new ChannelError('ERR_CHANNEL_CLOSED', `no known address for ${peerName}`);
      return connectControl({ host: where.host, port: where.port, peerName, credentials: opts.credentials, authorize: opts.authorize, limits: opts.limits, logger: opts.logger });
    },
  };
}
