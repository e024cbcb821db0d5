/**
 * Errors of the BNL package. Every error carries a stable `code`; callers
 * and tests branch on `code`, never on message text.
 */

/** Every `code` a {@link BnlError} can carry. */
export type BnlErrorCode =
  | 'ERR_BNL_TOO_LARGE'
  | 'ERR_BNL_TRUNCATED'
  | 'ERR_BNL_FORMAT'
  | 'ERR_BNL_VERSION'
  | 'ERR_BNL_NONCANONICAL'
  | 'ERR_BNL_INVALID'
  | 'ERR_BNL_UNSIGNED'
  | 'ERR_BNL_SIGNATURE'
  | 'ERR_BNL_UNTRUSTED'
  | 'ERR_BNL_STALE'
  | 'ERR_BNL_DUPLICATE'
  | 'ERR_BNL_CONFLICT'
  | 'ERR_BNL_NETWORK'
  | 'ERR_BNL_KEY'
  | 'ERR_BNL_IO'
  | 'ERR_BNL_ROLLBACK'
  | 'ERR_BNL_GOSSIP';

/** Codes of single validation problems (see {@link BnlProblem}). */
export type BnlProblemCode =
  | 'ERR_BNL_FIELD'
  | 'ERR_BNL_NETWORK_NAME'
  | 'ERR_BNL_SERIAL'
  | 'ERR_BNL_TIMESTAMP'
  | 'ERR_BNL_TOO_MANY_NODES'
  | 'ERR_BNL_NAME_SYNTAX'
  | 'ERR_BNL_NAME_DUPLICATE'
  | 'ERR_BNL_ID_RANGE'
  | 'ERR_BNL_ID_DUPLICATE'
  | 'ERR_BNL_HOST'
  | 'ERR_BNL_PORT'
  | 'ERR_BNL_ENDPOINT_DUPLICATE'
  | 'ERR_BNL_PREFER'
  | 'ERR_BNL_SUBNET'
  | 'ERR_BNL_SUBNET_HOST_BITS'
  | 'ERR_BNL_SUBNET_OVERLAP'
  | 'ERR_BNL_FINGERPRINT'
  | 'ERR_BNL_TAG'
  | 'ERR_BNL_MAC'
  | 'ERR_BNL_MAC_DUPLICATE'
  | 'ERR_BNL_SIGNERS'
  | 'ERR_BNL_RULE';

/**
 * One validation problem: a stable code, the node it concerns (name, or
 * `#index` when the name itself is unusable; absent for list-level fields)
 * and the field.
 */
export interface BnlProblem {
  readonly code: BnlProblemCode;
  readonly node?: string;
  readonly field?: string;
  readonly message: string;
}

/** Base error of the package. */
export class BnlError extends Error {
  readonly code: BnlErrorCode;
  constructor(code: BnlErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BnlError';
    this.code = code;
  }
}

/** A list that parsed but breaks one or more rules; `problems` lists each one. */
export class BnlValidationError extends BnlError {
  readonly problems: readonly BnlProblem[];
  constructor(problems: readonly BnlProblem[]) {
    const first = problems[0];
    const more = problems.length > 1 ? ` (and ${problems.length - 1} more)` : '';
    super('ERR_BNL_INVALID', `${first ? formatProblem(first) : 'invalid list'}${more}`);
    this.name = 'BnlValidationError';
    this.problems = problems;
  }
}

/** A signature problem: missing, broken, or not enough trusted signers. */
export class BnlSignatureError extends BnlError {
  constructor(code: 'ERR_BNL_UNSIGNED' | 'ERR_BNL_SIGNATURE' | 'ERR_BNL_UNTRUSTED', message: string) {
    super(code, message);
    this.name = 'BnlSignatureError';
  }
}

/** Human form of one problem: `node "a" field subnets: message [CODE]`. */
export function formatProblem(p: BnlProblem): string {
  const where = [p.node !== undefined ? `node "${p.node}"` : undefined, p.field !== undefined ? `field ${p.field}` : undefined]
    .filter((s) => s !== undefined)
    .join(' ');
  return `${where ? where + ': ' : ''}${p.message} [${p.code}]`;
}
