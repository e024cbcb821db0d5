/**
 * Validation of a list: structure, every field, and the cross-node rules
 * (unique names and ids, no overlapping subnets). One problem per fault,
 * each with a code, the node and the field.
 */
import type { BnlProblem, BnlProblemCode } from './errors.js';
import { canonicalHostKind, parseCidr, type Cidr } from './ip.js';
import {
  BNL_MAX_ENDPOINTS,
  BNL_MAX_ID,
  BNL_MAX_NODES,
  BNL_MAX_SIGNER_KEYS,
  BNL_MAX_SUBNETS,
  BNL_MAX_MACS,
  BNL_MAX_TAGS,
  type Bnl,
} from './model.js';
import { validateRules } from './rules.js';

/** Node names: usable as a certificate CN and a file name (hostname-like, 1..64). */
export const NODE_NAME_RE = /^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,62}[A-Za-z0-9])?$/;
/** Network names: usable as a directory under /etc/cluevpn. */
export const NETWORK_NAME_RE = /^[A-Za-z0-9](?:[A-Za-z0-9_-]{0,62}[A-Za-z0-9])?$/;
/** Tags: printable, no spaces or commas, 1..64. */
export const TAG_RE = /^[A-Za-z0-9][A-Za-z0-9._:=/@+-]{0,63}$/;
/** Canonical certificate fingerprint: SHA-256, 64 lowercase hex. */
export const FINGERPRINT_RE = /^[0-9a-f]{64}$/;
/** Canonical Ed25519 public key: 32 bytes, 64 lowercase hex. */
export const PUBLIC_KEY_RE = /^[0-9a-f]{64}$/;

const LIST_FIELDS = new Set(['network', 'serial', 'timestamp', 'nodes', 'signers', 'rules']);
const NODE_FIELDS = new Set(['name', 'id', 'endpoints', 'prefer', 'subnets', 'fingerprint', 'relay', 'tags', 'mac']);
/** Canonical MAC address: six lowercase hex pairs joined by ':'. */
export const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isSafeUint(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/**
 * Checks a candidate list (typically straight out of `JSON.parse`) and
 * returns every problem found; an empty array means valid. Never throws.
 * Runs in O(n log n) in the number of subnets.
 */
export function validateBnl(input: unknown): BnlProblem[] {
  const problems: BnlProblem[] = [];
  const add = (code: BnlProblemCode, message: string, node?: string, field?: string): void => {
    problems.push({ code, message, ...(node !== undefined ? { node } : {}), ...(field !== undefined ? { field } : {}) });
  };
  if (!isObject(input)) {
    add('ERR_BNL_FIELD', 'the list is not an object');
    return problems;
  }
  for (const k of Object.keys(input)) if (!LIST_FIELDS.has(k)) add('ERR_BNL_FIELD', `unknown field "${k}"`, undefined, k);
  if (typeof input.network !== 'string' || !NETWORK_NAME_RE.test(input.network)) {
    add('ERR_BNL_NETWORK_NAME', 'network name must be 1-64 letters, digits, "-" or "_", starting and ending with a letter or digit', undefined, 'network');
  }
  if (!isSafeUint(input.serial)) add('ERR_BNL_SERIAL', 'serial must be a non-negative integer below 2^53', undefined, 'serial');
  if (!isSafeUint(input.timestamp)) add('ERR_BNL_TIMESTAMP', 'timestamp must be non-negative integer milliseconds below 2^53', undefined, 'timestamp');
  if (input.signers !== undefined) validateSigners(input.signers, add);
  if (input.rules !== undefined) validateRules(input.rules, add);
  if (!Array.isArray(input.nodes)) {
    add('ERR_BNL_FIELD', 'nodes must be an array', undefined, 'nodes');
    return problems;
  }
  if (input.nodes.length > BNL_MAX_NODES) {
    add('ERR_BNL_TOO_MANY_NODES', `${input.nodes.length} nodes, at most ${BNL_MAX_NODES} allowed`, undefined, 'nodes');
    return problems;
  }
  const names = new Map<string, number>();
  const ids = new Map<number, string>();
  const prefixes: { cidr: Cidr; node: string; text: string }[] = [];
  const macs = new Map<string, string>();
  input.nodes.forEach((raw: unknown, index: number) => {
    if (!isObject(raw)) {
      add('ERR_BNL_FIELD', 'node is not an object', `#${index}`);
      return;
    }
    const nameOk = typeof raw.name === 'string' && NODE_NAME_RE.test(raw.name);
    const label = nameOk ? (raw.name as string) : `#${index}`;
    for (const k of Object.keys(raw)) if (!NODE_FIELDS.has(k)) add('ERR_BNL_FIELD', `unknown field "${k}"`, label, k);
    if (!nameOk) {
      add('ERR_BNL_NAME_SYNTAX', 'name must be 1-64 letters, digits, ".", "-" or "_", starting and ending with a letter or digit', label, 'name');
    } else if (names.has(label.toLowerCase())) {
      add('ERR_BNL_NAME_DUPLICATE', 'name is used by another node (names compare case-insensitively)', label, 'name');
    } else {
      names.set(label.toLowerCase(), index);
    }
    if (!isSafeUint(raw.id) || raw.id < 1 || raw.id > BNL_MAX_ID) {
      add('ERR_BNL_ID_RANGE', `id must be an integer from 1 to ${BNL_MAX_ID}`, label, 'id');
    } else if (ids.has(raw.id)) {
      add('ERR_BNL_ID_DUPLICATE', `id ${raw.id} is also used by node "${ids.get(raw.id)}"`, label, 'id');
    } else {
      ids.set(raw.id, label);
    }
    if (raw.prefer !== 'ipv4' && raw.prefer !== 'ipv6') add('ERR_BNL_PREFER', 'prefer must be "ipv4" or "ipv6"', label, 'prefer');
    validateEndpoints(raw.endpoints, label, add);
    if (!Array.isArray(raw.subnets) || raw.subnets.length > BNL_MAX_SUBNETS) {
      add('ERR_BNL_FIELD', `subnets must be an array of at most ${BNL_MAX_SUBNETS} CIDR strings`, label, 'subnets');
    } else {
      for (const s of raw.subnets as unknown[]) {
        if (typeof s !== 'string') {
          add('ERR_BNL_SUBNET', 'subnet is not a string', label, 'subnets');
          continue;
        }
        const r = parseCidr(s);
        if (!r.ok && r.reason === 'host-bits') {
          add('ERR_BNL_SUBNET_HOST_BITS', `subnet ${s} has host bits set; write ${r.canonical}`, label, 'subnets');
        } else if (!r.ok) {
          add('ERR_BNL_SUBNET', `subnet ${s} is not an IPv4 or IPv6 CIDR prefix`, label, 'subnets');
        } else if (r.canonical !== s) {
          add('ERR_BNL_SUBNET', `subnet ${s} is not in canonical form; write ${r.canonical}`, label, 'subnets');
        } else {
          prefixes.push({ cidr: r.cidr, node: label, text: s });
        }
      }
    }
    if (raw.fingerprint !== undefined && (typeof raw.fingerprint !== 'string' || !FINGERPRINT_RE.test(raw.fingerprint))) {
      add('ERR_BNL_FINGERPRINT', 'fingerprint must be a SHA-256 digest: 64 lowercase hex digits', label, 'fingerprint');
    }
    if (raw.relay !== undefined && raw.relay !== true) add('ERR_BNL_FIELD', 'relay is either absent or true', label, 'relay');
    // A relay without an endpoint is accepted when read (lists signed before relays
    // needed one stay valid); `bnl add/modify` refuse to write one, and the daemon
    // never uses it as a relay (packages/daemon/src/relay.ts, isRelayNode).
    if (raw.tags !== undefined) {
      if (!Array.isArray(raw.tags) || raw.tags.length === 0 || raw.tags.length > BNL_MAX_TAGS) {
        add('ERR_BNL_TAG', `tags is either absent or an array of 1 to ${BNL_MAX_TAGS} tags`, label, 'tags');
      } else {
        const seen = new Set<string>();
        for (const t of raw.tags as unknown[]) {
          if (typeof t !== 'string' || !TAG_RE.test(t)) add('ERR_BNL_TAG', `tag ${JSON.stringify(t)} must be 1-64 characters of letters, digits and ._:=/@+-`, label, 'tags');
          else if (seen.has(t)) add('ERR_BNL_TAG', `tag ${t} appears twice`, label, 'tags');
          else seen.add(t);
        }
      }
    }
    if (raw.mac !== undefined) {
      if (!Array.isArray(raw.mac) || raw.mac.length === 0 || raw.mac.length > BNL_MAX_MACS) {
        add('ERR_BNL_MAC', `mac is either absent or an array of 1 to ${BNL_MAX_MACS} MAC addresses`, label, 'mac');
      } else {
        for (const m of raw.mac as unknown[]) {
          if (typeof m !== 'string' || !MAC_RE.test(m)) add('ERR_BNL_MAC', `mac ${JSON.stringify(m)} must be aa:bb:cc:dd:ee:ff in lowercase hex`, label, 'mac');
          else if ((parseInt(m.slice(0, 2), 16) & 1) === 1) add('ERR_BNL_MAC', `mac ${m} is a group (multicast) address; a node owns unicast addresses only`, label, 'mac');
          else if (m === '00:00:00:00:00:00') add('ERR_BNL_MAC', 'mac 00:00:00:00:00:00 is not an address', label, 'mac');
          else if (macs.has(m)) add('ERR_BNL_MAC_DUPLICATE', `mac ${m} is also listed for node "${macs.get(m)}"`, label, 'mac');
          else macs.set(m, label);
        }
      }
    }
  });
  checkOverlaps(prefixes, add);
  return problems;
}

function validateSigners(s: unknown, add: (c: BnlProblemCode, m: string, n?: string, f?: string) => void): void {
  if (!isObject(s) || !Array.isArray(s.keys) || Object.keys(s).some((k) => k !== 'keys' && k !== 'threshold')) {
    add('ERR_BNL_SIGNERS', 'signers must be {"keys": [...], "threshold": M}', undefined, 'signers');
    return;
  }
  const keys = s.keys as unknown[];
  if (keys.length === 0 || keys.length > BNL_MAX_SIGNER_KEYS) add('ERR_BNL_SIGNERS', `signers must list 1 to ${BNL_MAX_SIGNER_KEYS} keys`, undefined, 'signers.keys');
  const seen = new Set<string>();
  for (const k of keys) {
    if (typeof k !== 'string' || !PUBLIC_KEY_RE.test(k)) add('ERR_BNL_SIGNERS', 'signer key must be a raw Ed25519 public key: 64 lowercase hex digits', undefined, 'signers.keys');
    else if (seen.has(k)) add('ERR_BNL_SIGNERS', `signer key ${k.slice(0, 16)}… appears twice`, undefined, 'signers.keys');
    else seen.add(k);
  }
  if (!isSafeUint(s.threshold) || s.threshold < 1 || s.threshold > keys.length) {
    add('ERR_BNL_SIGNERS', 'threshold must be between 1 and the number of signer keys', undefined, 'signers.threshold');
  }
}

function validateEndpoints(eps: unknown, label: string, add: (c: BnlProblemCode, m: string, n?: string, f?: string) => void): void {
  if (!Array.isArray(eps) || eps.length > BNL_MAX_ENDPOINTS) {
    add('ERR_BNL_FIELD', `endpoints must be an array of at most ${BNL_MAX_ENDPOINTS} {host, port}`, label, 'endpoints');
    return;
  }
  const seen = new Set<string>();
  for (const ep of eps as unknown[]) {
    if (!isObject(ep) || Object.keys(ep).some((k) => k !== 'host' && k !== 'port')) {
      add('ERR_BNL_FIELD', 'endpoint must be {"host": ..., "port": ...}', label, 'endpoints');
      continue;
    }
    if (typeof ep.host !== 'string' || canonicalHostKind(ep.host) === null) {
      add('ERR_BNL_HOST', `host ${JSON.stringify(ep.host)} is not a canonical IPv4 address, IPv6 address (RFC 5952) or lowercase DNS name`, label, 'endpoints.host');
    }
    if (!isSafeUint(ep.port) || ep.port < 1 || ep.port > 65535) add('ERR_BNL_PORT', `port ${JSON.stringify(ep.port)} must be 1-65535`, label, 'endpoints.port');
    const key = `${String(ep.host)}|${String(ep.port)}`;
    if (seen.has(key)) add('ERR_BNL_ENDPOINT_DUPLICATE', `endpoint ${String(ep.host)} port ${String(ep.port)} appears twice`, label, 'endpoints');
    seen.add(key);
  }
}

/**
 * Sweep over prefixes sorted by start: a prefix overlaps an earlier one iff
 * it starts at or before the largest end seen so far (prefixes nest or are
 * disjoint, so the holder of that end is the one it overlaps).
 */
function checkOverlaps(prefixes: { cidr: Cidr; node: string; text: string }[], add: (c: BnlProblemCode, m: string, n?: string, f?: string) => void): void {
  for (const family of [4, 6] as const) {
    const list = prefixes.filter((p) => p.cidr.family === family);
    list.sort((a, b) => (a.cidr.start < b.cidr.start ? -1 : a.cidr.start > b.cidr.start ? 1 : a.cidr.prefix - b.cidr.prefix));
    let holder: { cidr: Cidr; node: string; text: string } | undefined;
    for (const p of list) {
      if (holder && p.cidr.start <= holder.cidr.end) {
        const whose = holder.node === p.node ? 'its own subnet' : `node "${holder.node}"'s subnet`;
        add('ERR_BNL_SUBNET_OVERLAP', `subnet ${p.text} overlaps ${whose} ${holder.text}`, p.node, 'subnets');
        if (p.cidr.end > holder.cidr.end) holder = p;
      } else {
        holder = p;
      }
    }
  }
}
