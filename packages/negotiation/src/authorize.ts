/**
 * Who may talk to us: the checks after the TLS chain has verified.
 *
 * 1. the CN names a node in the current BNL (`isMember`),
 * 2. the certificate's SHA-256 fingerprint equals the node's pin, when the
 *    BNL pins one (fixes ClueVPN fault 6: any CA-signed certificate with
 *    the right CN was accepted),
 * 3. the OU equals `requiredOu`, when configured (`restrictouname`).
 */
import { timingSafeEqual } from 'node:crypto';
import { normalizeFingerprint } from './ca.js';
import type { RefusalReason } from './errors.js';

/** The identity a verified peer certificate presents. */
export interface PeerIdentity {
  /** Certificate CN: the node name. */
  name: string;
  /** SHA-256 of the DER certificate, lower-case hex. */
  fingerprint: string;
  /** Certificate OU, if any. */
  ou: string | undefined;
}

/** The daemon's view of the node list, for `authorizePeer`. */
export interface PeerPolicy {
  /** True when `name` is a node in the current BNL. */
  isMember(name: string): boolean;
  /** The node's pinned fingerprint (hex, colons allowed), or undefined when not pinned. */
  pinnedFingerprint(name: string): string | undefined;
  /** OU every certificate must carry, or undefined. */
  requiredOu?: string | undefined;
}

/** Outcome of an authorisation check. */
export type AuthDecision = { ok: true } | { ok: false; reason: RefusalReason; detail: string };

/**
 * Applies the BNL membership, pin and OU checks to an already
 * chain-verified identity. Pure; the caller logs and counts refusals.
 */
export function authorizePeer(id: PeerIdentity, policy: PeerPolicy): AuthDecision {
  if (!policy.isMember(id.name)) return { ok: false, reason: 'not-member', detail: `"${id.name}" is not in the BNL` };
  const pin = policy.pinnedFingerprint(id.name);
  if (pin !== undefined) {
    const want = normalizeFingerprint(pin);
    const got = normalizeFingerprint(id.fingerprint);
    if (want === undefined || got === undefined || !timingSafeEqual(Buffer.from(want, 'hex'), Buffer.from(got, 'hex'))) {
      return { ok: false, reason: 'fingerprint-mismatch', detail: `certificate of "${id.name}" does not match its pinned fingerprint` };
    }
  }
  if (policy.requiredOu !== undefined && id.ou !== policy.requiredOu) {
    return { ok: false, reason: 'wrong-ou', detail: `certificate of "${id.name}" has OU ${JSON.stringify(id.ou ?? null)}, required ${JSON.stringify(policy.requiredOu)}` };
  }
  return { ok: true };
}

/**
 * Maps an OpenSSL verification error (`socket.authorizationError`) to a
 * refusal reason.
 */
export function reasonForVerifyError(code: string | undefined, hasCertificate: boolean): RefusalReason {
  if (!hasCertificate) return 'no-certificate';
  if (code === 'CERT_HAS_EXPIRED') return 'expired';
  if (code === 'CERT_NOT_YET_VALID') return 'not-yet-valid';
  return 'untrusted-certificate';
}
