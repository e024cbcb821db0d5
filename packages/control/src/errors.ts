/**
 * Errors of the control protocol. Tests assert `code`, never the message.
 *
 * - `ERR_CONTROL_PROTOCOL`: a line that is not a protocol message (over
 *   `CONTROL_MAX_LINE` bytes, not JSON, not an object, a field of the wrong
 *   type).
 * - `ERR_CONTROL_VERSION`: a message of another protocol version.
 * - `ERR_CONTROL_UNKNOWN_COMMAND`: a request for a command version 1 does
 *   not have.
 */
export type ControlProtocolErrorCode = 'ERR_CONTROL_PROTOCOL' | 'ERR_CONTROL_VERSION' | 'ERR_CONTROL_UNKNOWN_COMMAND';

/** A request or answer id as the protocol carries it: echoed, `null` when the line had none (or could not be read). */
export type ControlRequestId = number | string | null;

/** A line that is not a valid message of this protocol version. */
export class ControlProtocolError extends Error {
  /** Stable machine-readable code. */
  readonly code: ControlProtocolErrorCode;
  /** The id of the request the line carried, so that a server can echo it in its error answer; `null` when unknown. */
  readonly id: ControlRequestId;
  constructor(code: ControlProtocolErrorCode, message: string, id: ControlRequestId = null, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.id = id;
    this.name = 'ControlProtocolError';
  }
}
