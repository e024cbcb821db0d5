/**
 * What `mode=switch` changes in the daemon, kept apart from the wiring
 * (daemon.ts only asks): the device is a TAP, the data plane forwards
 * Ethernet frames by MAC address (`@cluevpn/dataplane`, src/switch.ts), and
 * the BNL's subnets mean nothing to forwarding — no route, no device
 * address (the operator bridges the TAP and puts addresses on the bridge;
 * HOWTO.md, "Switch mode"). Subnet hooks still run with the listed subnets.
 * Each node record's `mac` list fixes those MACs to that node.
 */
import type { Bnl } from '@cluevpn/bnl';
import type { DataplaneStats } from '@cluevpn/dataplane';
import type { SwitchReport } from '@cluevpn/control';
import type { Logger } from './logging.js';

/** Logs once at start that listed subnets are not routed in switch mode (when any node lists some). */
export function switchModeNotice(list: Bnl, log: Logger): void {
  const withSubnets = list.nodes.filter((n) => n.subnets.length > 0).map((n) => n.name);
  log.notice('switch mode: Ethernet frames over a TAP device; bridge it to carry a LAN', {});
  if (withSubnets.length > 0) {
    log.notice('switch mode: the subnets in the list are not routed and no address is assigned (subnet hooks still run)', { count: withSubnets.length });
  }
  if ((list.rules?.length ?? 0) > 0) {
    log.warn('switch mode: the access rules in the list apply to IP packets in router mode only; Ethernet frames are not filtered', { count: list.rules!.length });
  }
}

/** The data plane's switch stats for `status`, peers named by node name. */
export function switchReport(st: NonNullable<DataplaneStats['switch']>, peers: { nameOf(id: string): string | undefined }): SwitchReport {
  return {
    ...st,
    macs: st.macs.map((m) => ({ ...m, owner: m.owner === 'local' ? 'local' : (peers.nameOf(m.owner) ?? m.owner) })),
  };
}
