/**
 * The kernel routes to the peers' subnets, through the TUN device.
 *
 *  1. added in one rtnetlink exchange per batch (a 1 000-node list took 3 s
 *     with one `ip` process per route); a route that fails is logged and the
 *     others still go in
 *  2. removed one at a time (a failure is logged)
 *  3. none in switch mode: the bridge forwards, nothing is routed
 *  4. none changed once privileges were dropped without CAP_NET_ADMIN
 *     (`frozen`): an added subnet is logged, relying on a covering route
 */
import type { TunDevice } from '@cluevpn/tun';
import type { DaemonConfig } from './config.js';
import type { Logger } from './logging.js';

/** The peers' routes (see the file comment). */
export interface KernelRoutes {
  /** Adds a route per CIDR (step 1). Never rejects: failures are logged. */
  add(cidrs: readonly string[]): Promise<void>;
  /** Removes the route of one CIDR (step 2). Never rejects: a failure is logged. */
  remove(cidr: string): Promise<void>;
  /** Privileges were dropped without CAP_NET_ADMIN: from now on routes are left as they are (step 4). */
  freeze(): void;
}

/** What the routes need. */
export interface KernelRoutesOptions {
  tun: TunDevice;
  mode: DaemonConfig['mode'];
  logger: Logger;
}

/** Creates the route part for an open device. */
export function createKernelRoutes(o: KernelRoutesOptions): KernelRoutes {
  const { tun, mode } = o;
  const log = o.logger;
  let frozen = false;
  return {
    async add(cidrs) {
      if (cidrs.length === 0 || mode === 'switch') return; // switch mode routes nothing: the bridge forwards
      if (frozen) {
        for (const cidr of cidrs) log.warn('cannot add a kernel route after dropping privileges; relying on an existing covering route', { subnet: cidr });
        return;
      }
      const results = await tun.addRoutes(cidrs);
      results.forEach((err, k) => {
        if (err !== null) log.error('cannot add route', { subnet: cidrs[k], err });
      });
    },
    async remove(cidr) {
      if (frozen || mode === 'switch') return;
      try {
        await tun.removeRoute(cidr);
      } catch (err) {
        log.warn('cannot remove route', { subnet: cidr, err });
      }
    },
    freeze() {
      frozen = true;
    },
  };
}
