/**
 * Rendezvous messages: the content of the data plane's type-3 datagrams
 * (sealed and authenticated by the sender↔receiver session, so only a
 * member with a session can send one; the data plane drops and counts
 * anything else before it gets here).
 *
 * ```
 *  0       1       2
 * +-------+-------+---------------------------------------------
 * |  ver  | kind  |  fields of the kind, in order:
 * +-------+-------+---------------------------------------------
 *   where-is      (1)  member → relay:  name            "where is NAME?"
 *   peer-at       (2)  relay → member:  name, host, port "NAME's packets come from host:port"
 *   splice-offer  (3)  relay → member:  name, token      "NAME asks for a control connection to you:
 *                                                          open one to me and present token"
 *   unknown-peer  (4)  relay → member:  name, code       "I cannot help with NAME (ERR_RELAY_…)"
 *
 *   name, host, code: u8 length + UTF-8 (1..64 bytes); port: u16 BE;
 *   token: 16 random bytes. Nothing may follow the last field.
 * ```
 *
 * A relay sends `peer-at` to both sides of a `where-is` (A learns C's
 * observed endpoint, C learns A's): both then send keepalives at once
 * (hole punching, src/relay.ts).
 */
import { DaemonError } from './errors.js';

/** Specification: version byte of every rendezvous message. */
export const RENDEZVOUS_VERSION = 1;
/** Specification: message kinds. */
export const RendezvousKind = { WHERE_IS: 1, PEER_AT: 2, SPLICE_OFFER: 3, UNKNOWN_PEER: 4 } as const;
/** Specification: bytes of a splice token. */
export const TOKEN_BYTES = 16;
/** Specification: longest name, host or code field. */
export const MAX_FIELD = 64;

/** A decoded rendezvous message. */
export type RendezvousMessage =
  | { kind: 'where-is'; name: string }
  | { kind: 'peer-at'; name: string; host: string; port: number }
  | { kind: 'splice-offer'; name: string; token: Buffer }
  | { kind: 'unknown-peer'; name: string; code: string };

const malformed = (why: string): DaemonError => new DaemonError('ERR_RENDEZVOUS_MALFORMED', `rendezvous message: ${why}`);

/** Encodes a message (throws `ERR_RENDEZVOUS_MALFORMED` for a field out of bounds: a programmer error). */
export function encodeRendezvous(m: RendezvousMessage): Buffer {
  const parts: Buffer[] = [];
  const str = (s: string): void => {
    const b = Buffer.from(s, 'utf8');
    if (b.length < 1 || b.length > MAX_FIELD) throw malformed(`field of ${b.length} bytes`);
    parts.push(Buffer.from([b.length]), b);
  };
  const kind = m.kind === 'where-is' ? RendezvousKind.WHERE_IS : m.kind === 'peer-at' ? RendezvousKind.PEER_AT : m.kind === 'splice-offer' ? RendezvousKind.SPLICE_OFFER : RendezvousKind.UNKNOWN_PEER;
  parts.push(Buffer.from([RENDEZVOUS_VERSION, kind]));
  str(m.name);
  if (m.kind === 'peer-at') {
    str(m.host);
    if (!Number.isInteger(m.port) || m.port < 1 || m.port > 65535) throw malformed(`port ${m.port}`);
    const p = Buffer.alloc(2);
    p.writeUInt16BE(m.port);
    parts.push(p);
  } else if (m.kind === 'splice-offer') {
    if (m.token.length !== TOKEN_BYTES) throw malformed(`token of ${m.token.length} bytes`);
    parts.push(m.token);
  } else if (m.kind === 'unknown-peer') {
    str(m.code);
  }
  return Buffer.concat(parts);
}

/** Decodes a message; throws `ERR_RENDEZVOUS_MALFORMED` (the caller counts and drops it). */
export function decodeRendezvous(b: Buffer): RendezvousMessage {
  let off = 0;
  const need = (n: number): void => {
    if (off + n > b.length) throw malformed('truncated');
  };
  const str = (): string => {
    need(1);
    const n = b[off++]!;
    if (n < 1 || n > MAX_FIELD) throw malformed(`field length ${n}`);
    need(n);
    const s = b.toString('utf8', off, off + n);
    off += n;
    return s;
  };
  need(2);
  if (b[0] !== RENDEZVOUS_VERSION) throw malformed(`version ${b[0]}`);
  const kind = b[1];
  off = 2;
  let m: RendezvousMessage;
  switch (kind) {
    case RendezvousKind.WHERE_IS:
      m = { kind: 'where-is', name: str() };
      break;
    case RendezvousKind.PEER_AT: {
      const name = str();
      const host = str();
      need(2);
      const port = b.readUInt16BE(off);
      off += 2;
      if (port === 0) throw malformed('port 0');
      m = { kind: 'peer-at', name, host, port };
      break;
    }
    case RendezvousKind.SPLICE_OFFER: {
      const name = str();
      need(TOKEN_BYTES);
      m = { kind: 'splice-offer', name, token: Buffer.from(b.subarray(off, off + TOKEN_BYTES)) };
      off += TOKEN_BYTES;
      break;
    }
    case RendezvousKind.UNKNOWN_PEER:
      m = { kind: 'unknown-peer', name: str(), code: str() };
      break;
    default:
      throw malformed(`kind ${kind}`);
  }
  if (off !== b.length) throw malformed(`${b.length - off} trailing bytes`);
  return m;
}
