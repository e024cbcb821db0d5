/**
 * Test helpers for `@cluevpn/bnl` users: in-memory storage and a builder
 * for small valid lists.
 */
import type { Bnl, BnlNode } from './model.js';
export { createMemoryStorage } from './storage.js';

/**
 * A valid list of `count` nodes named `node1`…, ids 1…, each with one IPv4
 * endpoint 192.0.2.x / 198.51.100.x (documentation ranges) and the subnet
 * 10.<hi>.<lo>.0/24.
 */
export function makeTestBnl(count: number, overrides: Partial<Bnl> = {}): Bnl {
  const nodes: BnlNode[] = [];
  for (let i = 1; i <= count; i++) {
    nodes.push({
      name: `node${i}`,
      id: i,
      endpoints: [{ host: `${i < 256 ? '192.0.2' : '198.51.100'}.${i % 256}`, port: 3406 }],
      prefer: 'ipv4',
      subnets: [`10.${(i >> 8) & 0xff}.${i & 0xff}.0/24`],
    });
  }
  return { network: 'testnet', serial: 1, timestamp: 1_700_000_000_000, nodes, ...overrides };
}
