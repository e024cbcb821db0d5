/**
 * Where each peer can be reached: the owner of the peers' endpoints.
 *
 * A BNL record lists one or more endpoints (addresses, or host names for
 * dynamic DNS). For each peer the book keeps
 *
 *  1. the candidates: every endpoint of the record, names resolved to every
 *     address they have; IPv6 left out with `disableipv6`; the preferred
 *     family first (`preferipv6` or the record's `prefer`), the record's
 *     order otherwise (canonical: by address text, so not a preference)
 *  2. the one in use (the data plane's endpoint for the peer): at first the
 *     first candidate; then the candidate the control channel last reached
 *     (`reached`), or the address the peer's authenticated packets came from
 *     (`roamed`, the data plane's roaming)
 *  3. when to look the names up again: every `resolveinterval`, and at once
 *     (at most once a second per peer) when the control channel reached none
 *     of the candidates. A changed answer replaces the candidates; the one in
 *     use stays if it is still among them, else the first new one takes over.
 *
 * The control channel tries the candidates in order, the one in use first
 * (`candidates`), so a node with two uplinks or an IPv4 and an IPv6 address
 * is reached on whichever answers. Names are resolved off the packet path,
 * through `node:dns/promises` (getaddrinfo: /etc/hosts, then DNS).
 */
import { isIP } from 'node:net';
import type { BnlNode } from '@cluevpn/bnl';
import type { DaemonConfig } from './config.js';
import { dnsPromises } from './lazy.js';
import type { Logger } from './logging.js';

/** Implementation: shortest pause between two look-ups of one peer's names after failures. */
export const FAILED_RESOLVE_MIN_MS = 1_000;

/** An address and port. */
export interface Endpoint {
  host: string;
  port: number;
}

/** What the book needs from the daemon. */
export interface EndpointBookOptions {
  config: Pick<DaemonConfig, 'disableipv6' | 'preferipv6' | 'resolveintervalMs'>;
  logger: Logger;
  /** Tells the data plane the endpoint in use changed (`null`: none known). */
  use(name: string, endpoint: Endpoint | null): void;
  /** Looks a name up: every address (default: `dns.lookup(name, { all: true })`). */
  lookup?: (host: string, family: 0 | 4) => Promise<{ address: string; family: number }[]>;
}

/** The endpoints of every peer (see the file comment). */
export interface EndpointBook {
  /** Takes a node's record (added or changed): resolves it and returns the endpoint in use, `null` when none is usable. */
  set(node: BnlNode): Promise<Endpoint | null>;
  /** Forgets a peer. */
  remove(name: string): void;
  /** The endpoint in use, undefined when none. */
  current(name: string): Endpoint | undefined;
  /** Every candidate, the one in use first (empty when none). */
  candidates(name: string): readonly Endpoint[];
  /** The control channel reached `name` at `where` (it becomes the one in use), or reached no candidate (`null`: names looked up again). */
  reached(name: string, where: Endpoint | null): void;
  /**
   * A relay told us where the peer's packets come from (rendezvous, src/relay.ts):
   * it becomes the one in use (the data plane sends there: hole punching).
   * Not a control address: a node listed without endpoints is reached through relays.
   */
  punched(name: string, where: Endpoint): void;
  /** The data plane authenticated the peer's packets from `host` (its data port `port`); the control port is kept. */
  roamed(name: string, host: string, port: number): void;
  /** Stops the periodic look-ups; look-ups still running change nothing any more. Idempotent. */
  close(): void;
}

interface Entry {
  node: BnlNode;
  candidates: Endpoint[];
  current: Endpoint | null;
  /** The record has host names (only those are looked up again). */
  named: boolean;
  lastFailedLookup: number;
  /** Bumped by every `set`, so a slow look-up of an older record is dropped. */
  generation: number;
}

const same = (a: Endpoint | null | undefined, b: Endpoint | null | undefined): boolean => a?.host === b?.host && a?.port === b?.port;
const text = (e: Endpoint): string => (e.host.includes(':') ? `[${e.host}]:${e.port}` : `${e.host}:${e.port}`);

/**
 * Step 1 for one record: the candidates, in order. Names that do not
 * resolve are logged and left out.
 */
export async function resolveCandidates(
  node: BnlNode,
  config: Pick<DaemonConfig, 'disableipv6' | 'preferipv6'>,
  log: Logger,
  lookup: NonNullable<EndpointBookOptions['lookup']> = defaultLookup,
): Promise<Endpoint[]> {
  const v6first = config.preferipv6 || node.prefer === 'ipv6';
  const out: (Endpoint & { family: number })[] = [];
  for (const ep of node.endpoints) {
    const family = isIP(ep.host);
    if (family !== 0) {
      out.push({ host: ep.host, port: ep.port, family });
      continue;
    }
    try {
      for (const r of await lookup(ep.host, config.disableipv6 ? 4 : 0)) out.push({ host: r.address, port: ep.port, family: r.family });
    } catch (err) {
      log.warn('cannot resolve endpoint', { peer: node.name, endpoint: ep.host, err });
    }
  }
  const usable = out.filter((c, i) => !(c.family === 6 && config.disableipv6) && out.findIndex((d) => same(c, d)) === i);
  usable.sort((a, b) => (a.family === b.family ? 0 : (a.family === 6) === v6first ? -1 : 1));
  return usable.map(({ host, port }) => ({ host, port }));
}

function defaultLookup(host: string, family: 0 | 4): Promise<{ address: string; family: number }[]> {
  return dnsPromises().lookup(host, { family, all: true });
}

/** Creates the book and starts its periodic look-ups (an unref'd timer). */
export function createEndpointBook(o: EndpointBookOptions): EndpointBook {
  const log = o.logger;
  const lookup = o.lookup ?? defaultLookup;
  const entries = new Map<string, Entry>();
  let closed = false;

  /** Tells the data plane; a refusal (bad address, closed) is logged, never thrown into the caller. */
  const tell = (name: string, endpoint: Endpoint | null): void => {
    if (closed) return;
    try {
      o.use(name, endpoint);
    } catch (err) {
      log.error('cannot change peer endpoint', { peer: name, endpoint: endpoint === null ? 'none' : text(endpoint), err });
    }
  };

  /** Puts `candidates` in place; keeps the one in use if it is still a candidate. */
  const adopt = (e: Entry, candidates: Endpoint[], why: string): void => {
    const before = e.current;
    e.candidates = candidates;
    e.current = candidates.find((c) => same(c, before)) ?? candidates[0] ?? null;
    if (!same(before, e.current)) {
      log.notice('peer endpoint changed', { peer: e.node.name, endpoint: e.current === null ? 'none' : text(e.current), reason: why });
      tell(e.node.name, e.current);
    }
  };

  /** Looks the record's names up again and adopts the answer (if the record did not change meanwhile). */
  const refresh = async (e: Entry, why: string): Promise<void> => {
    const gen = e.generation;
    const candidates = await resolveCandidates(e.node, o.config, log, lookup);
    if (entries.get(e.node.name) !== e || e.generation !== gen) return;
    // a name that failed this time keeps its last addresses rather than losing the peer
    if (candidates.length === 0) return;
    adopt(e, candidates, why);
  };

  const timer = setInterval(() => {
    for (const e of entries.values()) {
      if (e.named) refresh(e, 'resolved again').catch((err: unknown) => log.error('endpoint look-up failed', { peer: e.node.name, err }));
    }
  }, o.config.resolveintervalMs);
  timer.unref();

  return {
    async set(node) {
      const prev = entries.get(node.name);
      const e: Entry = prev ?? { node, candidates: [], current: null, named: false, lastFailedLookup: 0, generation: 0 };
      e.node = node;
      e.named = node.endpoints.some((ep) => isIP(ep.host) === 0);
      const gen = ++e.generation;
      entries.set(node.name, e);
      const candidates = await resolveCandidates(node, o.config, log, lookup);
      if (e.generation === gen && entries.get(node.name) === e) {
        const before = e.current;
        e.candidates = candidates;
        e.current = candidates.find((c) => same(c, before)) ?? candidates[0] ?? null;
      }
      return e.current;
    },
    remove(name) {
      entries.delete(name);
    },
    current(name) {
      return entries.get(name)?.current ?? undefined;
    },
    candidates(name) {
      const e = entries.get(name);
      if (e === undefined) return [];
      return e.current === null ? e.candidates : [e.current, ...e.candidates.filter((c) => !same(c, e.current))];
    },
    reached(name, where) {
      const e = entries.get(name);
      if (e === undefined) return;
      if (where !== null) {
        if (!same(where, e.current)) {
          e.current = where;
          log.notice('peer endpoint changed', { peer: name, endpoint: text(where), reason: 'answered' });
          tell(name, where);
        }
        return;
      }
      const now = Date.now();
      if (!e.named || now - e.lastFailedLookup < FAILED_RESOLVE_MIN_MS) return;
      e.lastFailedLookup = now;
      refresh(e, 'unreachable, resolved again').catch((err: unknown) => log.error('endpoint look-up failed', { peer: name, err }));
    },
    punched(name, where) {
      const e = entries.get(name);
      if (e === undefined || same(where, e.current)) return;
      e.current = { host: where.host, port: where.port };
      log.info('peer endpoint changed', { peer: name, endpoint: text(where), reason: 'rendezvous' });
      tell(name, e.current);
    },
    roamed(name, host, port) {
      const e = entries.get(name);
      if (e === undefined) return;
      // the control port is the record's; only the address moved
      e.current = { host, port: e.current?.port ?? port };
    },
    close() {
      closed = true;
      clearInterval(timer);
    },
  };
}
