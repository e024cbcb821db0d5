/**
 * Control-channel framing and messages.
 *
 * ```
 *  0               1               2               3
 * +---------------------------------------------------------------+
 * |                  length (u32, big endian)                     |
 * +---------------------------------------------------------------+
 * |  JSON message, UTF-8, `length` bytes                       ...|
 * +---------------------------------------------------------------+
 * ```
 *
 * The length is checked against the cap before a single body byte is
 * buffered. Messages:
 *
 *   request   { v: 1, type: <string>, id: <u32>, body: <any> }
 *   response  { v: 1, type: 'response', id, body }
 *   error     { v: 1, type: 'error', id, code: <string>, message: <string> }
 *
 * Binary values travel as base64 strings. A message with another `v` is
 * answered with an `ERR_VERSION` error and the connection is closed.
 */
import { ChannelError } from './errors.js';

/** Specification: the protocol version every message carries. */
export const CONTROL_PROTOCOL_VERSION = 1;
/** Specification: bytes of the length prefix. */
export const FRAME_HEADER_BYTES = 4;

/** A request as sent on the wire. */
export interface RequestMessage {
  v: number;
  type: string;
  id: number;
  body: unknown;
}

/** A successful answer to request `id`. */
export interface ResponseMessage {
  v: number;
  type: 'response';
  id: number;
  body: unknown;
}

/** A failed answer to request `id`; `code` is a stable `ERR_…` string. */
export interface ErrorMessage {
  v: number;
  type: 'error';
  id: number;
  code: string;
  message: string;
}

/** Any control message. */
export type ControlMessage = RequestMessage | ResponseMessage | ErrorMessage;

/** Encodes one message as a frame. Throws `ERR_CHANNEL_FRAME_TOO_LARGE` above `maxFrameBytes`. */
export function encodeFrame(msg: ControlMessage, maxFrameBytes: number): Buffer {
  const json = Buffer.from(JSON.stringify(msg), 'utf8');
  if (json.length > maxFrameBytes) {
    throw new ChannelError('ERR_CHANNEL_FRAME_TOO_LARGE', `message of ${json.length} bytes exceeds the frame cap of ${maxFrameBytes}`);
  }
  const out = Buffer.allocUnsafe(FRAME_HEADER_BYTES + json.length);
  out.writeUInt32BE(json.length, 0);
  json.copy(out, FRAME_HEADER_BYTES);
  return out;
}

/**
 * Incremental frame decoder. `push` returns the complete frame bodies;
 * it throws `ERR_CHANNEL_FRAME_TOO_LARGE` as soon as a header announces
 * more than `maxFrameBytes` (before buffering the body). The decoder
 * owns the chunks pushed into it.
 */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private need = -1;

  constructor(private readonly maxFrameBytes: number) {}

  /** Bytes buffered and not yet returned as a frame. */
  get pendingBytes(): number {
    return this.buffered;
  }

  /** Takes every buffered byte that is not part of a returned frame (a connection leaving frame mode). */
  takeRest(): Buffer {
    const rest = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.buffered);
    this.chunks = [];
    this.buffered = 0;
    this.need = -1;
    return rest;
  }

  /** Adds received bytes; returns the frames completed by them (possibly none). */
  push(chunk: Buffer): Buffer[] {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const frames: Buffer[] = [];
    for (;;) {
      if (this.need < 0) {
        if (this.buffered < FRAME_HEADER_BYTES) break;
        const head = this.take(FRAME_HEADER_BYTES);
        const len = head.readUInt32BE(0);
        if (len > this.maxFrameBytes) {
          throw new ChannelError('ERR_CHANNEL_FRAME_TOO_LARGE', `peer announced a frame of ${len} bytes, cap is ${this.maxFrameBytes}`);
        }
        this.need = len;
      }
      if (this.buffered < this.need) break;
      frames.push(this.take(this.need));
      this.need = -1;
    }
    return frames;
  }

  private take(n: number): Buffer {
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.buffered);
    const out = Buffer.from(all.subarray(0, n));
    const rest = all.subarray(n);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.buffered = rest.length;
    return out;
  }
}

/**
 * Parses a frame body into a message. Throws `ERR_CHANNEL_PROTOCOL` on
 * anything that is not a well-formed message object (the version is
 * checked by the caller, so it can answer with `ERR_VERSION`).
 */
export function parseMessage(frame: Buffer): ControlMessage {
  let m: unknown;
  try {
    m = JSON.parse(frame.toString('utf8'));
  } catch (err) {
    throw new ChannelError('ERR_CHANNEL_PROTOCOL', 'frame is not JSON', { cause: err });
  }
  if (typeof m !== 'object' || m === null || Array.isArray(m)) throw new ChannelError('ERR_CHANNEL_PROTOCOL', 'message is not an object');
  const o = m as Record<string, unknown>;
  if (typeof o.v !== 'number' || typeof o.type !== 'string' || o.type.length === 0 || o.type.length > 64) {
    throw new ChannelError('ERR_CHANNEL_PROTOCOL', 'message lacks v or type');
  }
  if (typeof o.id !== 'number' || !Number.isInteger(o.id) || o.id < 0 || o.id > 0xffffffff) {
    throw new ChannelError('ERR_CHANNEL_PROTOCOL', 'message lacks a valid id');
  }
  if (o.type === 'error' && (typeof o.code !== 'string' || typeof o.message !== 'string')) {
    throw new ChannelError('ERR_CHANNEL_PROTOCOL', 'error message lacks code or message');
  }
  return o as unknown as ControlMessage;
}
