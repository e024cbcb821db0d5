/**
 * The device at start: the TUN device `devname` opened (a TAP with
 * `mode=switch`, `switch-mode.ts`), its MTU, up; this node's host subnets
 * (`/32`, `/128`) become its addresses (none in switch mode: a notice says
 * what that mode changes). Held by another network's daemon:
 * `ERR_DEVICE_IN_USE` naming it (`clash.ts`). The peers' routes are the
 * route part's (`routes.ts`).
 */
import type { Bnl, BnlNode } from '@cluevpn/bnl';
import { openTun, type TunDevice } from '@cluevpn/tun';
import { deviceClash } from './clash.js';
import type { DaemonConfig } from './config.js';
import type { Logger } from './logging.js';
import { switchModeNotice } from './switch-mode.js';
import type { EngineSwitches } from './switches.js';

/** Host addresses (/32, /128) among a node's subnets: assigned to the device for our own node. */
function hostAddresses(subnets: readonly string[]): string[] {
  return subnets.filter((s) => s.endsWith('/32') || s.endsWith('/128'));
}

/**
 * Opens the device and brings it up. `onOpen` is called as soon as it is
 * open (the caller registers its close there), before anything else can fail.
 */
export async function openDevice(
  config: Pick<DaemonConfig, 'devname' | 'mode' | 'mtu'>,
  list: Bnl,
  self: BnlNode,
  tunSwitches: EngineSwitches['tun'],
  log: Logger,
  onOpen: (dev: TunDevice) => void,
): Promise<TunDevice> {
  let dev: TunDevice;
  try {
    dev = openTun({ name: config.devname, mode: config.mode === 'switch' ? 'tap' : 'tun', mtu: config.mtu, ...tunSwitches });
  } catch (err) {
    throw deviceClash(err, config.devname); // another network's device: ERR_DEVICE_IN_USE naming its daemon
  }
  onOpen(dev);
  dev.up();
  if (config.mode === 'switch') switchModeNotice(list, log);
  else for (const a of hostAddresses(self.subnets)) await dev.addAddress(a);
  return dev;
}
