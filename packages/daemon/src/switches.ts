/**
 * Which code paths the daemon's TUN device and data plane run: the
 * operator's configuration keys (`express`, `udpoffload`, `tunoffload`) and
 * the debug words of `CLUEVPN_DEBUG` (`no-gso`, `no-gro`, `no-tun-coalesce`,
 * parsed in `@cluevpn/tun`'s debug module), turned into the options of
 * `openTun` and `createDataplane`. The one place the two meet: below this,
 * nothing reads the environment (the C code gets flags from its setup calls).
 */
import { debugWords, type DebugWord } from '@cluevpn/tun';
import type { DaemonConfig } from './config.js';

/** Options for `openTun` and `createDataplane`. */
export interface EngineSwitches {
  /** `offload` only when it is turned off: left out, the device uses offloads when the kernel has them. */
  tun: { offload?: false; coalesceWrites: boolean };
  dataplane: { express: boolean; gso: boolean; gro: boolean };
}

/**
 * The switches for `config` and the debug words (default: this process's
 * `CLUEVPN_DEBUG`, which throws `ERR_TUN_CONFIG` for an unknown word).
 */
export function engineSwitches(config: Pick<DaemonConfig, 'express' | 'udpoffload' | 'tunoffload'>, debug: ReadonlySet<DebugWord> = debugWords()): EngineSwitches {
  return {
    tun: { ...(config.tunoffload ? {} : { offload: false as const }), coalesceWrites: !debug.has('no-tun-coalesce') },
    dataplane: {
      express: config.express,
      gso: config.udpoffload && !debug.has('no-gso'),
      gro: config.udpoffload && !debug.has('no-gro'),
    },
  };
}
