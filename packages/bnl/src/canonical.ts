/**
 * The canonical encoder: one list, one byte form.
 *
 * File layout (all ASCII, every line ends in "\n"):
 *
 *   cluevpn-bnl 1                     <- magic and format version
 *   {"network":...,"nodes":[...],...} <- the payload: canonical JSON, one line
 *   sig <pubkey hex> <signature hex>  <- zero or more, sorted by pubkey, unique
 *
 * Canonical JSON: object keys sorted, no whitespace, integers only, optional
 * fields omitted rather than empty/false, nodes sorted by id, endpoints by
 * host then port, subnets IPv4 first then by address and prefix length,
 * tags and signer keys sorted, rules sorted by their canonical text (rules.ts;
 * the `rules` key is absent when there are none, so older lists keep their bytes).
 */
import { createHash } from 'node:crypto';
import { BnlValidationError } from './errors.js';
import { compareCidr, parseCidr } from './ip.js';
import { BNL_MAGIC, BNL_VERSION, type Bnl, type BnlEndpoint, type BnlNode, type BnlSignature } from './model.js';
import { canonicalRules, stringifyRule } from './rules.js';
import { validateBnl } from './validate.js';

function cmpStr(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function canonicalNode(n: BnlNode): BnlNode {
  const endpoints: BnlEndpoint[] = n.endpoints.map((e) => ({ host: e.host, port: e.port }));
  endpoints.sort((a, b) => cmpStr(a.host, b.host) || a.port - b.port);
  const subnetText = n.subnets.length < 2 ? [...n.subnets] : n.subnets
    .map((text) => {
      const r = parseCidr(text);
      if (!r.ok) throw new Error(`unreachable: subnet ${text} passed validation`);
      return { cidr: r.cidr, text };
    })
    .sort((a, b) => compareCidr(a.cidr, b.cidr))
    .map((x) => x.text);
  const out: BnlNode = { name: n.name, id: n.id, endpoints, prefer: n.prefer, subnets: subnetText };
  if (n.fingerprint !== undefined) out.fingerprint = n.fingerprint;
  if (n.relay === true) out.relay = true;
  if (n.tags !== undefined && n.tags.length > 0) out.tags = [...n.tags].sort(cmpStr);
  if (n.mac !== undefined && n.mac.length > 0) out.mac = [...n.mac].sort(cmpStr);
  return out;
}

/**
 * Returns the canonical copy of a list (sorted, optional fields normalised)
 * without touching the input. Throws {@link BnlValidationError} if the list
 * is invalid. `relay: false`, `tags: []` and `mac: []` are accepted here and dropped.
 */
export function canonicaliseBnl(bnl: Bnl): Bnl {
  const cleaned = {
    ...bnl,
    nodes: bnl.nodes.map((n) => {
      const c: BnlNode = { ...n };
      if (c.relay !== true) delete c.relay;
      if (c.tags !== undefined && c.tags.length === 0) delete c.tags;
      if (c.mac !== undefined && c.mac.length === 0) delete c.mac;
      if (c.fingerprint === undefined) delete c.fingerprint;
      return c;
    }),
  };
  if (cleaned.signers === undefined) delete cleaned.signers;
  if (cleaned.rules === undefined || (Array.isArray(cleaned.rules) && cleaned.rules.length === 0)) delete cleaned.rules;
  const problems = validateBnl(cleaned);
  if (problems.length > 0) throw new BnlValidationError(problems);
  return canonicaliseValid(cleaned);
}

/** Canonical copy of a list that already passed {@link validateBnl} (no second validation; internal). */
export function canonicaliseValid(bnl: Bnl): Bnl {
  const out: Bnl = {
    network: bnl.network,
    serial: bnl.serial,
    timestamp: bnl.timestamp,
    nodes: bnl.nodes.map(canonicalNode).sort((a, b) => a.id - b.id),
  };
  if (bnl.signers) out.signers = { keys: [...bnl.signers.keys].sort(cmpStr), threshold: bnl.signers.threshold };
  if (bnl.rules !== undefined && bnl.rules.length > 0) out.rules = canonicalRules(bnl.rules);
  return out;
}

/** JSON with sorted keys and no whitespace; `undefined` members are omitted. */
function stringifySorted(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stringifySorted).join(',')}]`;
  if (typeof v === 'object' && v !== null) {
    const obj = v as Record<string, unknown>;
    const keys = Object.keys(obj).filter((k) => obj[k] !== undefined).sort(cmpStr);
    return `{${keys.map((k) => `${JSON.stringify(k)}:${stringifySorted(obj[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

/** Canonical payload bytes of a list (validates and canonicalises first; throws {@link BnlValidationError}). */
export function encodePayload(bnl: Bnl): Uint8Array {
  return Buffer.from(stringifyCanonical(canonicaliseBnl(bnl)), 'ascii');
}

const q = JSON.stringify;

/** Same output as `stringifySorted` for a canonical node, without sorting keys at run time (hot: 65 535 nodes). */
function stringifyNode(n: BnlNode): string {
  let s = `{"endpoints":[${n.endpoints.map((e) => `{"host":${q(e.host)},"port":${e.port}}`).join(',')}]`;
  if (n.fingerprint !== undefined) s += `,"fingerprint":${q(n.fingerprint)}`;
  s += `,"id":${n.id}`;
  if (n.mac !== undefined) s += `,"mac":[${n.mac.map((x) => q(x)).join(',')}]`;
  s += `,"name":${q(n.name)},"prefer":${q(n.prefer)}`;
  if (n.relay === true) s += ',"relay":true';
  s += `,"subnets":[${n.subnets.map((x) => q(x)).join(',')}]`;
  if (n.tags !== undefined) s += `,"tags":[${n.tags.map((x) => q(x)).join(',')}]`;
  return `${s}}`;
}

/** Payload text of an already canonical list, without re-validating (internal). Keys in sorted order. */
export function stringifyCanonical(bnl: Bnl): string {
  let s = `{"network":${q(bnl.network)},"nodes":[${bnl.nodes.map(stringifyNode).join(',')}]`;
  if (bnl.rules !== undefined) s += `,"rules":[${bnl.rules.map(stringifyRule).join(',')}]`;
  s += `,"serial":${bnl.serial}`;
  if (bnl.signers) s += `,"signers":${stringifySorted(bnl.signers)}`;
  return `${s},"timestamp":${bnl.timestamp}}`;
}

/** SHA-256 of the canonical payload, lowercase hex: the list's identity. */
export function hashPayload(payload: Uint8Array): string {
  return createHash('sha256').update(payload).digest('hex');
}

/**
 * The file bytes for a payload and its signatures (sorted by key, duplicates
 * of the same key rejected). The payload must be canonical; this is not checked.
 */
export function encodeEnvelope(payload: Uint8Array, signatures: readonly BnlSignature[]): Uint8Array {
  const sigs = [...signatures].sort((a, b) => cmpStr(a.publicKey, b.publicKey));
  for (let i = 1; i < sigs.length; i++) {
    if (sigs[i].publicKey === sigs[i - 1].publicKey) throw new Error(`two signatures by key ${sigs[i].publicKey}`);
  }
  const lines = [`${BNL_MAGIC} ${BNL_VERSION}\n`, Buffer.from(payload).toString('ascii'), '\n', ...sigs.map((s) => `sig ${s.publicKey} ${s.signature}\n`)];
  return Buffer.from(lines.join(''), 'ascii');
}
