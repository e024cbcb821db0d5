/** Shared test helpers (no work at import time). */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCa, generatePrivateKeyPem, issueCertificate, type CaMaterial, type NodeCredentials } from '../src/index.js';

/** A temp directory removed by the returned cleanup. */
export function tempDir(prefix = 'neg-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Test PKI: two unrelated CAs and node certificates, built from three 2048-bit keys (fast). */
export interface TestPki {
  ca: CaMaterial;
  otherCa: CaMaterial;
  node(name: string, opts?: { ou?: string; days?: number; now?: Date; ca?: CaMaterial }): NodeCredentials;
}

/** Builds the test PKI (about a second of RSA keygen). */
export function makeTestPki(): TestPki {
  const ca = createCa({ cn: 'Test CA', keyPem: generatePrivateKeyPem(2048) });
  const otherCa = createCa({ cn: 'Other CA', keyPem: generatePrivateKeyPem(2048) });
  const nodeKey = generatePrivateKeyPem(2048);
  return {
    ca,
    otherCa,
    node: (name, opts = {}) => issueCertificate(name, opts.ca ?? ca, { keyPem: nodeKey, ou: opts.ou, days: opts.days, now: opts.now }),
  };
}
