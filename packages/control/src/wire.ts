/**
 * Encoding and decoding of the protocol's lines (see protocol.ts), the one
 * implementation both ends use: the daemon decodes requests and encodes
 * answers, the commands do the opposite.
 *
 *   1. encode: one JSON object and a newline; `v`, `id` and `cmd` are set
 *      last, so arguments can never override them
 *   2. decode: length, JSON, object, version, then the fields; every
 *      failure is a `ControlProtocolError` with a stable code, never a
 *      TypeError or SyntaxError
 */
import { ControlProtocolError, type ControlRequestId } from './errors.js';
import { CONTROL_COMMANDS, CONTROL_MAX_LINE, CONTROL_PROTOCOL_VERSION, type ControlCommand } from './protocol.js';

/** A decoded request: the command, the id to echo, and the other fields as arguments. */
export interface ControlRequest {
  id: ControlRequestId;
  cmd: ControlCommand;
  /** Every field except `v`, `id` and `cmd` (e.g. `{ level: 7 }`); the command's handler validates them. */
  args: Record<string, unknown>;
}

/** An answer line: a result, or an error with a stable code (`ERR_…`, the daemon's or the protocol's). */
export type ControlAnswer =
  | { v: number; id: ControlRequestId; ok: true; result: unknown }
  | { v: number; id: ControlRequestId; ok: false; error: { code: string; message: string } };

/** The line (with its newline) that asks for `cmd` with `args`. */
export function encodeRequest(cmd: ControlCommand, args: Readonly<Record<string, unknown>> = {}, id: number | string = 1): string {
  return `${JSON.stringify({ ...args, v: CONTROL_PROTOCOL_VERSION, id, cmd })}\n`;
}

/** A successful answer to request `id`. */
export function resultAnswer(id: ControlRequestId, result: unknown): ControlAnswer {
  return { v: CONTROL_PROTOCOL_VERSION, id, ok: true, result };
}

/** An error answer to request `id`. */
export function errorAnswer(id: ControlRequestId, code: string, message: string): ControlAnswer {
  return { v: CONTROL_PROTOCOL_VERSION, id, ok: false, error: { code, message } };
}

/** The line (with its newline) of an answer. */
export function encodeAnswer(a: ControlAnswer): string {
  return `${JSON.stringify(a)}\n`;
}

/** Parses one line into a JSON object, or throws `ERR_CONTROL_PROTOCOL`. */
function parseObject(line: string, what: string): Record<string, unknown> {
  if (Buffer.byteLength(line) > CONTROL_MAX_LINE) throw new ControlProtocolError('ERR_CONTROL_PROTOCOL', `${what} line over ${CONTROL_MAX_LINE} bytes`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch (err) {
    throw new ControlProtocolError('ERR_CONTROL_PROTOCOL', `${what} is not a JSON object: ${(err as Error).message}`, null, { cause: err });
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new ControlProtocolError('ERR_CONTROL_PROTOCOL', `${what} is not a JSON object: ${parsed === null ? 'null' : Array.isArray(parsed) ? 'an array' : typeof parsed}`);
  }
  return parsed as Record<string, unknown>;
}

function idOf(msg: Record<string, unknown>): ControlRequestId {
  return typeof msg.id === 'number' || typeof msg.id === 'string' ? msg.id : null;
}

/**
 * Decodes a request line (without its newline). Throws `ControlProtocolError`:
 * `ERR_CONTROL_PROTOCOL` (too long, not a JSON object), `ERR_CONTROL_VERSION`
 * (`v` missing or another version), `ERR_CONTROL_UNKNOWN_COMMAND`; the
 * error's `id` is the request's when the line carried one.
 */
export function decodeRequest(line: string): ControlRequest {
  const msg = parseObject(line, 'request');
  const id = idOf(msg);
  if (msg.v !== CONTROL_PROTOCOL_VERSION) {
    throw new ControlProtocolError('ERR_CONTROL_VERSION', `protocol version ${JSON.stringify(msg.v)} not supported; this daemon speaks ${CONTROL_PROTOCOL_VERSION}`, id);
  }
  const cmd = msg.cmd;
  if (typeof cmd !== 'string' || !(CONTROL_COMMANDS as readonly string[]).includes(cmd)) {
    throw new ControlProtocolError('ERR_CONTROL_UNKNOWN_COMMAND', `unknown command ${JSON.stringify(cmd)}`, id);
  }
  const { v: _v, id: _id, cmd: _cmd, ...args } = msg;
  return { id, cmd: cmd as ControlCommand, args };
}

/**
 * Decodes an answer line (without its newline). Throws `ControlProtocolError`:
 * `ERR_CONTROL_PROTOCOL` (too long, not a JSON object, `ok` not a boolean,
 * an error without a string `code` and `message`), `ERR_CONTROL_VERSION`
 * (an answer of another version: the daemon speaks another protocol).
 */
export function decodeAnswer(line: string): ControlAnswer {
  const msg = parseObject(line, 'answer');
  const id = idOf(msg);
  if (msg.v !== CONTROL_PROTOCOL_VERSION) {
    throw new ControlProtocolError('ERR_CONTROL_VERSION', `the daemon speaks protocol version ${JSON.stringify(msg.v)}; this command speaks ${CONTROL_PROTOCOL_VERSION}`, id);
  }
  if (msg.ok === true) return { v: CONTROL_PROTOCOL_VERSION, id, ok: true, result: msg.result };
  if (msg.ok !== false) throw new ControlProtocolError('ERR_CONTROL_PROTOCOL', `answer has no boolean "ok" (${JSON.stringify(msg.ok)})`, id);
  const e = msg.error as { code?: unknown; message?: unknown } | null | undefined;
  if (e === null || typeof e !== 'object' || typeof e.code !== 'string' || typeof e.message !== 'string') {
    throw new ControlProtocolError('ERR_CONTROL_PROTOCOL', 'error answer without a string "code" and "message"', id);
  }
  return { v: CONTROL_PROTOCOL_VERSION, id, ok: false, error: { code: e.code, message: e.message } };
}
