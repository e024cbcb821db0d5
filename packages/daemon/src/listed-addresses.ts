/**
 * The endpoint addresses of the current list's nodes, for the control
 * channel's reserved pre-authentication budget (mesh.ts, `isListedSource`).
 *
 * Rebuilt at most once a tick from the list, it must stay cheap for a large
 * list: a `net.BlockList` entry costs a native `SocketAddress` each (366 ms
 * of CPU for 10 000 nodes, measured, on the first connection after start —
 * the one of a live peer; issue 19). IPv4 addresses are kept as strings:
 * Node's `isIPv4` accepts only dotted-decimal without leading zeros, so one
 * address has one string. IPv6 addresses have several spellings and go to a
 * BlockList, which compares them as numbers.
 */
import { BlockList, isIPv4, isIPv6 } from 'node:net';

export class ListedAddresses {
  readonly #v4 = new Set<string>();
  readonly #v6 = new BlockList();

  /** Adds an address; host names and anything else that is not an IP address are ignored. */
  add(host: string): void {
    if (isIPv4(host)) this.#v4.add(host);
    else if (isIPv6(host)) this.#v6.addAddress(host, 'ipv6');
  }

  /** True when `ip` (as the socket reports it, IPv4-mapped prefix removed) is a listed address. */
  has(ip: string): boolean {
    if (isIPv4(ip)) return this.#v4.has(ip);
    return isIPv6(ip) && this.#v6.check(ip, 'ipv6');
  }
}
