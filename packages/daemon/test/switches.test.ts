/**
 * The data-path switches: the config keys `express`, `udpoffload`,
 * `tunoffload` and the debug words of CLUEVPN_DEBUG become the options of
 * openTun and createDataplane (switches.ts), and nothing else reads them.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseDebug } from '@cluevpn/tun';
import { engineSwitches } from '../src/switches.js';

const on = { express: true, udpoffload: true, tunoffload: true };

test('defaults: everything on, the TUN decides offloads itself', () => {
  assert.deepEqual(engineSwitches(on, parseDebug(undefined)), { tun: { coalesceWrites: true }, dataplane: { express: true, gso: true, gro: true } });
});

test('config keys turn paths off', () => {
  assert.deepEqual(engineSwitches({ express: false, udpoffload: false, tunoffload: false }, parseDebug('')), {
    tun: { offload: false, coalesceWrites: true },
    dataplane: { express: false, gso: false, gro: false },
  });
});

test('debug words turn single paths off, never on against the config', () => {
  assert.deepEqual(engineSwitches(on, parseDebug(' no-gro , no-tun-coalesce')), { tun: { coalesceWrites: false }, dataplane: { express: true, gso: true, gro: false } });
  assert.deepEqual(engineSwitches(on, parseDebug('no-gso')).dataplane, { express: true, gso: false, gro: true });
  assert.deepEqual(engineSwitches({ ...on, udpoffload: false }, parseDebug('modules')).dataplane, { express: true, gso: false, gro: false });
});

test('CLUEVPN_DEBUG: an unknown word is an error (ERR_TUN_CONFIG), not ignored', () => {
  assert.throws(() => parseDebug('no-express'), (e: unknown) => (e as { code?: string }).code === 'ERR_TUN_CONFIG');
  assert.throws(() => parseDebug('no-gro,nogso'), (e: unknown) => (e as { code?: string }).code === 'ERR_TUN_CONFIG');
  assert.deepEqual([...parseDebug('sanitize-tun,stack,,')], ['sanitize-tun', 'stack']);
});
