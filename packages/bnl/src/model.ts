/**
 * The BNL data model and the format's specification constants.
 */

/** Specification: first line of every BNL file is `cluevpn-bnl 1`. */
export const BNL_MAGIC = 'cluevpn-bnl';
/** Specification: the one format version this code reads and writes. */
export const BNL_VERSION = 1;
/** Specification: signature domain (length-prefixed, followed by the version). */
export const BNL_SIGNATURE_DOMAIN = 'cluevpn-bnl';
/** Specification: largest file accepted, checked before anything is parsed. */
export const BNL_MAX_BYTES = 4 * 1024 * 1024;
/** Specification: most nodes in one list. */
export const BNL_MAX_NODES = 65_535;
/** Specification: default UDP/TCP port of a node. */
export const BNL_DEFAULT_PORT = 3406;
/** Specification: node ids are 1 ..= this (u32, 0 is reserved for "none"). */
export const BNL_MAX_ID = 0xffff_ffff;
/** Specification: most signer keys a list may declare. */
export const BNL_MAX_SIGNER_KEYS = 16;
/** Specification: most endpoints, subnets and tags per node. */
export const BNL_MAX_ENDPOINTS = 16;
/** Specification: most subnets per node. */
export const BNL_MAX_SUBNETS = 256;
/** Specification: most tags per node. */
export const BNL_MAX_TAGS = 32;
/** Specification: most MAC addresses per node (switch mode). */
export const BNL_MAX_MACS = 256;

import type { BnlRule } from './rules.js';

/** One real address of a node: IPv4, IPv6 or DNS name (canonical text), and port. */
export interface BnlEndpoint {
  host: string;
  port: number;
}

/**
 * One node. `name` is its identity (the certificate CN); `id` the numeric id
 * used on the wire. Optional fields are absent rather than empty/false in
 * the canonical form: `fingerprint` (SHA-256 of the certificate DER, 64
 * lowercase hex), `relay` (only `true`), `tags` (non-empty, sorted),
 * `mac` (switch mode: the unicast MAC addresses that are this node's,
 * `aa:bb:cc:dd:ee:ff` lowercase, non-empty, sorted, unique across the list).
 */
export interface BnlNode {
  name: string;
  id: number;
  endpoints: BnlEndpoint[];
  prefer: 'ipv4' | 'ipv6';
  subnets: string[];
  fingerprint?: string;
  relay?: boolean;
  tags?: string[];
  mac?: string[];
}

/**
 * Signer keys trusted from this list on (key rotation): raw Ed25519 public
 * keys as 64 lowercase hex, sorted, and how many of them must sign.
 */
export interface BnlSigners {
  keys: string[];
  threshold: number;
}

/**
 * The list itself (the signed payload). `serial` orders lists (higher wins);
 * `timestamp` is milliseconds since the epoch (informational, 53-bit safe
 * integer: good until the year 287396). `signers`, when present, replaces
 * the receiver's trust for every later list.
 */
export interface Bnl {
  network: string;
  serial: number;
  timestamp: number;
  nodes: BnlNode[];
  signers?: BnlSigners;
  /** Access rules (rules.ts); absent = no rules = everything allowed. Non-empty, sorted when present. */
  rules?: BnlRule[];
}

/** One signature line: signer public key and Ed25519 signature, both lowercase hex. */
export interface BnlSignature {
  publicKey: string;
  signature: string;
}

/**
 * A parsed BNL file. `payload` is the canonical payload (what is signed and
 * hashed), `hash` its SHA-256 in hex, `bytes` the whole file. Immutable by
 * contract: callers must not modify any member.
 */
export interface SignedBnl {
  readonly bnl: Bnl;
  readonly payload: Uint8Array;
  readonly hash: string;
  readonly signatures: readonly BnlSignature[];
  readonly bytes: Uint8Array;
}
