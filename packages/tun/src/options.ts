/**
 * Validation of TunOptions, shared by the native device and the memory fake
 * so both reject the same input with the same code (ERR_TUN_CONFIG).
 */
import { TunError, TunErrorCode } from './errors.js';
import { TUN_DEFAULTS, type TunMode, type TunOptions } from './types.js';

/** TunOptions with defaults applied and every field checked. */
export interface ResolvedTunOptions {
  name: string;
  mode: TunMode;
  mtu: number | undefined;
  batchSize: number;
  slotSize: number;
  headroom: number;
  offload: boolean;
  coalesceWrites: boolean;
}

const MIN_MTU = 68;
const MAX_MTU = 65535;

function bad(message: string): TunError {
  return new TunError(TunErrorCode.CONFIG, message);
}

function intIn(key: string, v: unknown, lo: number, hi: number, dflt: number): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) {
    throw bad(`tun option ${key} must be an integer in ${lo}..${hi}, got ${String(v)}`);
  }
  return v;
}

/** Checks an interface name the way the kernel's dev_valid_name does. Throws ERR_TUN_CONFIG. */
export function checkIfName(name: string): void {
  if (Buffer.byteLength(name) > 15) throw bad(`interface name "${name}" is longer than 15 bytes`);
  if (name === '.' || name === '..' || /[/:\s]/.test(name) || name.includes('\0')) {
    throw bad(`interface name "${name}" is not valid (no '/', ':', whitespace; not '.' or '..')`);
  }
}

/** Throws ERR_TUN_CONFIG unless `mtu` fits the kernel's range and the slot layout. */
export function checkMtu(mtu: unknown, slotSize: number, headroom: number): number {
  const max = Math.min(MAX_MTU, slotSize - headroom - TUN_DEFAULTS.tailroom);
  if (typeof mtu !== 'number' || !Number.isInteger(mtu) || mtu < MIN_MTU || mtu > max) {
    throw bad(
      `mtu must be an integer in ${MIN_MTU}..${max} (slotSize ${slotSize} - headroom ${headroom} - ${TUN_DEFAULTS.tailroom}), got ${String(mtu)}`,
    );
  }
  return mtu;
}

/** Applies defaults and validates. Throws ERR_TUN_CONFIG naming the bad key. */
export function resolveTunOptions(opts: TunOptions = {}): ResolvedTunOptions {
  if (opts === null || typeof opts !== 'object') throw bad('tun options must be an object');
  const name = opts.name ?? '';
  if (typeof name !== 'string') throw bad('tun option name must be a string');
  if (name !== '') checkIfName(name);
  const mode = opts.mode ?? 'tun';
  if (mode !== 'tun' && mode !== 'tap') throw bad(`tun option mode must be 'tun' or 'tap', got ${String(mode)}`);
  const batchSize = intIn('batchSize', opts.batchSize, 1, 1024, TUN_DEFAULTS.batchSize);
  const slotSize = intIn('slotSize', opts.slotSize, 256, 65536 + 256, TUN_DEFAULTS.slotSize);
  const headroom = intIn('headroom', opts.headroom, 0, slotSize - TUN_DEFAULTS.tailroom - MIN_MTU, TUN_DEFAULTS.headroom);
  if (batchSize * slotSize > 64 * 1024 * 1024) throw bad('tun options batchSize * slotSize exceed 64 MiB');
  const mtu = opts.mtu === undefined ? undefined : checkMtu(opts.mtu, slotSize, headroom);
  const offload = opts.offload ?? mode === 'tun';
  if (typeof offload !== 'boolean') throw bad(`tun option offload must be a boolean, got ${String(offload)}`);
  if (offload && mode !== 'tun') throw bad("tun option offload needs mode 'tun'");
  const coalesceWrites = opts.coalesceWrites ?? true;
  if (typeof coalesceWrites !== 'boolean') throw bad(`tun option coalesceWrites must be a boolean, got ${String(coalesceWrites)}`);
  return { name, mode, mtu, batchSize, slotSize, headroom, offload, coalesceWrites };
}
