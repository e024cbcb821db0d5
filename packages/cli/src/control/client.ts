/**
 * Client side of the daemon's control socket. Owned by the daemon work:
 * this first version only knows that no daemon protocol exists yet.
 */

/** Error of a control request; `code` is stable. */
export class ControlError extends Error {
  readonly code: 'ERR_NO_DAEMON' | 'ERR_CONTROL_PROTOCOL' | 'ERR_CONTROL_REFUSED';
  constructor(code: ControlError['code'], message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ControlError';
    this.code = code;
  }
}

/** How a command finds its daemon: the config file it runs with (`-c`) or its network name (`-n`). */
export interface DaemonTarget {
  configFile?: string;
  netname?: string;
}

/**
 * Asks the running daemon to reload the BNL from disk and push it to every
 * node. Resolves with the daemon's answer; rejects with `ERR_NO_DAEMON` when
 * no daemon answers.
 */
export async function requestReloadAndPush(target: DaemonTarget): Promise<{ serial: number; pushedTo: number }> {
  const where = target.configFile ?? (target.netname ? `/etc/cluevpn/${target.netname}/cluevpn.conf` : '/etc/cluevpn/cluevpn.conf');
  throw new ControlError('ERR_NO_DAEMON', `no running cluevpnd found for ${where}`);
}
