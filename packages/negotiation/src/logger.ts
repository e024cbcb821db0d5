/**
 * The logger this package needs: a structural subset of the daemon's
 * `Logger` (the daemon passes its own, scoped with `child`).
 */
export interface Logger {
  error(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  debug(msg: string, fields?: Record<string, unknown>): void;
}

/** A logger that discards everything (the default when none is given). */
export const silentLogger: Logger = {
  error() {},
  warn() {},
  info() {},
  debug() {},
};
