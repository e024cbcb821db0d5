/**
 * The strict parser. Pipeline:
 *   1. size cap, before anything else is looked at;
 *   2. header line (magic, version);
 *   3. ASCII-only, line structure (every line ends in "\n", else truncated);
 *   4. JSON payload → validation (one problem per fault);
 *   5. canonical check: re-encoding must give the same bytes, so there is
 *      exactly one accepted byte form per list;
 *   6. signature lines: syntax, sorted by key, no duplicates.
 * Signatures are not verified here (see `verifyBnl`).
 */
import { canonicaliseBnl, canonicaliseValid, hashPayload, stringifyCanonical } from './canonical.js';
import { BnlError, BnlValidationError } from './errors.js';
import { BNL_MAGIC, BNL_MAX_BYTES, BNL_VERSION, type Bnl, type BnlSignature, type SignedBnl } from './model.js';
import { validateBnl } from './validate.js';

const HEADER = `${BNL_MAGIC} ${BNL_VERSION}\n`;
const SIG_RE = /^sig ([0-9a-f]{64}) ([0-9a-f]{128})$/;

/** Options of {@link parseBnl}. */
export interface ParseOptions {
  /** Largest accepted input in bytes; default and upper bound {@link BNL_MAX_BYTES}. */
  maxBytes?: number;
}

/**
 * Parses a BNL file strictly. Throws {@link BnlError} with `ERR_BNL_TOO_LARGE`,
 * `ERR_BNL_TRUNCATED`, `ERR_BNL_FORMAT`, `ERR_BNL_VERSION`,
 * `ERR_BNL_NONCANONICAL`, or {@link BnlValidationError} (`ERR_BNL_INVALID`).
 * The returned object shares no memory with `bytes`.
 */
export function parseBnl(bytes: Uint8Array, options: ParseOptions = {}): SignedBnl {
  const max = Math.min(options.maxBytes ?? BNL_MAX_BYTES, BNL_MAX_BYTES);
  if (bytes.length > max) throw new BnlError('ERR_BNL_TOO_LARGE', `the list is ${bytes.length} bytes, at most ${max} allowed`);
  const buf = Buffer.from(bytes);
  if (buf.length < HEADER.length) {
    if (HEADER.startsWith(buf.toString('latin1'))) throw new BnlError('ERR_BNL_TRUNCATED', 'the file ends inside its header');
    throw new BnlError('ERR_BNL_FORMAT', 'not a BNL file (no "cluevpn-bnl" header)');
  }
  const firstNl = buf.indexOf(0x0a);
  const first = buf.subarray(0, firstNl === -1 ? Math.min(buf.length, 32) : firstNl).toString('latin1');
  if (first !== HEADER.slice(0, -1)) {
    const m = /^cluevpn-bnl ([0-9]{1,9})$/.exec(first);
    if (m) throw new BnlError('ERR_BNL_VERSION', `BNL format version ${m[1]} is not supported (this build reads version ${BNL_VERSION})`);
    throw new BnlError('ERR_BNL_FORMAT', 'not a BNL file (no "cluevpn-bnl 1" header)');
  }
  const text = buf.toString('latin1');
  const bad = /[^\n\x20-\x7e]/.exec(text);
  if (bad) throw new BnlError('ERR_BNL_FORMAT', `byte ${bad.index} is not printable ASCII`);
  const payloadEnd = text.indexOf('\n', HEADER.length);
  if (payloadEnd === -1) throw new BnlError('ERR_BNL_TRUNCATED', 'the file ends inside the payload line');
  const payloadText = text.slice(HEADER.length, payloadEnd);
  const signatures: BnlSignature[] = [];
  let pos = payloadEnd + 1;
  while (pos < text.length) {
    const nl = text.indexOf('\n', pos);
    if (nl === -1) throw new BnlError('ERR_BNL_TRUNCATED', 'the file ends inside a signature line');
    const m = SIG_RE.exec(text.slice(pos, nl));
    if (!m) throw new BnlError('ERR_BNL_FORMAT', `line ${signatures.length + 3} is not "sig <64 hex> <128 hex>"`);
    const prev = signatures[signatures.length - 1];
    if (prev && prev.publicKey >= m[1]) throw new BnlError('ERR_BNL_NONCANONICAL', 'signature lines must be sorted by key, one per key');
    signatures.push({ publicKey: m[1], signature: m[2] });
    pos = nl + 1;
  }
  let json: unknown;
  try {
    json = JSON.parse(payloadText);
  } catch (err) {
    throw new BnlError('ERR_BNL_FORMAT', 'the payload line is not JSON', { cause: err });
  }
  const problems = validateBnl(json);
  if (problems.length > 0) throw new BnlValidationError(problems);
  const bnl = canonicaliseValid(json as Bnl);
  if (stringifyCanonical(bnl) !== payloadText) {
    throw new BnlError('ERR_BNL_NONCANONICAL', 'the payload is not in canonical form (key order, node/subnet order, whitespace or number form)');
  }
  const payload = Buffer.from(payloadText, 'ascii');
  return { bnl, payload, hash: hashPayload(payload), signatures, bytes: buf };
}

/** Builds the unsigned file for a list (validating and canonicalising it); throws like {@link parseBnl}. */
export function createUnsignedBnl(bnl: Bnl): SignedBnl {
  const canon = canonicaliseBnl(bnl);
  const payloadText = stringifyCanonical(canon);
  return parseBnl(Buffer.from(`${HEADER}${payloadText}\n`, 'ascii'));
}

/** Hash of the payload of a BNL file found by splitting the envelope only (no JSON parse); `null` if malformed. Used to deduplicate before parsing. */
export function peekPayloadHash(bytes: Uint8Array, hashFn: (p: Uint8Array) => string = hashPayload): string | null {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.length < HEADER.length || buf.toString('latin1', 0, HEADER.length) !== HEADER) return null;
  const nl = buf.indexOf(0x0a, HEADER.length);
  if (nl === -1) return null;
  return hashFn(buf.subarray(HEADER.length, nl));
}
