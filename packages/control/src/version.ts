/**
 * The release these programs belong to: the root package.json's "version".
 * A constant rather than a file read, so that `--version` works from the
 * daemon's bundle and costs nothing at start; tests keep the two equal.
 */
export const CLUEVPN_VERSION = '0.1.0';

/** What `cluevpnd`, `cluevpn` and `bnl` print for `--version` (without the newline). */
export function versionText(tool: string): string {
  return `${tool} ${CLUEVPN_VERSION} (node ${process.version})`;
}
