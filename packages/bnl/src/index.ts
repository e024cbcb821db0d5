/**
 * `@cluevpn/bnl`: the signed Bootstrap Node List. This file is the whole
 * public surface. See README.md for the format, trust and gossip design.
 */
export {
  BnlError,
  BnlValidationError,
  BnlSignatureError,
  formatProblem,
  type BnlErrorCode,
  type BnlProblem,
  type BnlProblemCode,
} from './errors.js';
export {
  BNL_MAGIC,
  BNL_VERSION,
  BNL_SIGNATURE_DOMAIN,
  BNL_MAX_BYTES,
  BNL_MAX_NODES,
  BNL_DEFAULT_PORT,
  BNL_MAX_ID,
  BNL_MAX_SIGNER_KEYS,
  BNL_MAX_ENDPOINTS,
  BNL_MAX_SUBNETS,
  BNL_MAX_TAGS,
  BNL_MAX_MACS,
  type Bnl,
  type BnlNode,
  type BnlEndpoint,
  type BnlSigners,
  type BnlSignature,
  type SignedBnl,
} from './model.js';
export { normaliseHost, parseCidr, canonicalHostKind, type HostKind, type Cidr, type CidrResult } from './ip.js';
export { validateBnl, NODE_NAME_RE, NETWORK_NAME_RE, TAG_RE, FINGERPRINT_RE, PUBLIC_KEY_RE, MAC_RE } from './validate.js';
export { canonicaliseBnl, encodePayload, encodeEnvelope, hashPayload } from './canonical.js';
export { parseBnl, createUnsignedBnl, peekPayloadHash, type ParseOptions } from './parse.js';
export { generateSigningKey, parsePublicKey, parsePrivateKey, rawPublicKeyHex, type SigningKeyPair } from './keys.js';
export { createTrust, signBnl, verifyBnl, trustAfter, signatureMessage, type BnlTrust, type BnlVerification } from './sign.js';
export { compareBnl, compareSerialHash, replaces, type BnlOrder } from './order.js';
export {
  BNL_MAX_RULES,
  BNL_MAX_RULE_PORTS,
  compilePolicy,
  formatRule,
  parsePortItem,
  parseRuleRef,
  ruleFromSpec,
  ruleProblems,
  sameRule,
  stringifyRule,
  type BnlRule,
  type BnlRuleProto,
  type CompiledPolicy,
  type CompiledRule,
  type RuleRef,
} from './rules.js';
export { diffBnl, isEmptyDiff, type BnlDiff, type BnlNodeChange, type BnlNodeField } from './diff.js';
export { atomicWriteFile, createFileStorage, removeStaleTemporaries, type BnlStorage } from './storage.js';
export { BnlStore, type BnlStoreOptions, type BnlLogger, type OfferResult, type OfferAccepted, type OfferRejected } from './store.js';
export {
  GOSSIP_VERSION,
  GOSSIP_MAX_MESSAGE,
  GossipType,
  GossipTypeName,
  SeenSet,
  encodeGossip,
  decodeGossip,
  makePullRequest,
  handlePull,
  handlePullReply,
  handlePush,
  choosePullTargets,
  jitteredInterval,
  type GossipMessage,
  type PullReplyOutcome,
  type PushOutcome,
} from './gossip.js';

/** Normalises a MAC address typed by an admin (`AA:BB:…` or `aa-bb-…`, any case) to canonical `aa:bb:cc:dd:ee:ff`; `null` if it is not one. */
export function normaliseMac(input: string): string | null {
  const s = input.trim().toLowerCase().replace(/-/g, ':');
  return /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(s) ? s : null;
}

/** Normalises a certificate fingerprint typed by an admin (`AB:CD:…` or hex, any case) to 64 lowercase hex; `null` if it is not a SHA-256 digest. */
export function normaliseFingerprint(input: string): string | null {
  const s = input.trim().toLowerCase().replace(/^sha256[:=]/, '').replace(/:/g, '');
  return /^[0-9a-f]{64}$/.test(s) ? s : null;
}
