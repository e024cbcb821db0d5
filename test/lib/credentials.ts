/**
 * A node's control-channel credentials as `examples/make-network` lays them
 * out: `NODE_DIR/NAME.crt`, `NODE_DIR/NAME.key`, `NODE_DIR/ca.crt`, NAME
 * being the directory's name. Used by the fixtures that speak the control
 * channel as a node would.
 */
import { readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { ControlCredentials } from '@cluevpn/negotiation';

/** Reads the credentials of the node whose directory is `nodeDir` (throws the read error). */
export function nodeCredentials(nodeDir: string): ControlCredentials {
  const name = basename(nodeDir);
  return {
    certPem: readFileSync(join(nodeDir, `${name}.crt`), 'utf8'),
    keyPem: readFileSync(join(nodeDir, `${name}.key`), 'utf8'),
    caPem: readFileSync(join(nodeDir, 'ca.crt'), 'utf8'),
  };
}
