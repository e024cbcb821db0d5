/**
 * Path selection for relayed data (issue 14 point 4): per peer, whether
 * our datagrams go directly to its endpoint or through a relay, `via R`.
 *
 * One coarse timer (`PATH_TICK_MS`, unref'd), nothing per packet:
 *   1. This node forwards relay requests while the list says it is a relay
 *      (`setRelaying`).
 *   2. A peer that is itself a relay, or has no keys: direct.
 *   3. Direct, and the direct path does not work — nothing authenticated
 *      came from the peer *directly* (the data plane's `lastRxMs`; relayed
 *      datagrams do not count) for `2 × keepalive + 1 s` while keepalives
 *      go out, or never since the session came up `PATH_GRACE_MS` ago
 *      (punching had its chance): `via R`, R the first relay of the list
 *      (ones we hold keys with first, relay.ts `relaysFor`) that is alive —
 *      heard from directly within `RELAY_FRESH_MS`.
 *   4. Via R: every `PROBE_MS` a keepalive goes to the peer's endpoint
 *      directly (a probe; the ordinary keepalives and the data go via R).
 *      The first authenticated direct datagram from the peer after the
 *      switch sends the path back to direct. R no longer alive (nothing
 *      from it for `2 × keepalive + 1 s` although it forwards the peer's
 *      keepalives: killed; or no longer a relay of the list): the next alive
 *      relay takes over.
 *
 * Needs keepalives (`keepalive` > 0): without them silence does not tell a
 * broken path from an idle one, and nothing is relayed. Switch mode relays
 * nothing either (its frames have their own send pipeline).
 *
 * Owner: this module owns the path decision; the data plane only applies it
 * (`Dataplane.setPath`) and keeps no state of its own about it.
 */
import type { Logger } from './logging.js';

/** Implementation: tick of the path selector. */
export const PATH_TICK_MS = 1_000;
/** Implementation: time a new session gets to reach the peer directly (hole punching: relay.ts PUNCH_COUNT × PUNCH_SPACING_MS) before relaying. */
export const PATH_GRACE_MS = 3_000;
/**
 * Implementation: a relay we do not send through yet counts as alive when
 * heard from directly this recently (its own keepalive may be the default
 * 25 s); the one we send through must have been heard within
 * `2 × keepalive + 1 s` (it forwards the peer's keepalives to us).
 */
export const RELAY_FRESH_MS = 60_000;
/** Implementation: interval of direct probes while relayed. */
export const PROBE_MS = 1_000;

/** A peer as the selector sees it (from the data plane's stats). */
export interface PathPeer {
  id: string;
  name: string;
  /** Holds a primary session; wall ms it was installed. */
  keyed: boolean;
  installedAtMs: number;
  /** Wall ms of the last authenticated datagram that came directly, 0 = never. */
  lastDirectRxMs: number;
  /** Relay id the data plane sends through now, or null. */
  relay: string | null;
  /** The data plane has an endpoint for the peer (a probe needs one; without, it would only count a drop). */
  hasEndpoint: boolean;
}

/** What the selector needs. */
export interface PathDeps {
  logger: Logger;
  keepaliveMs: number;
  peers(): PathPeer[];
  /** Relays to reach `name` through, in preference order (relay.ts `relaysFor`). */
  relaysFor(name: string): string[];
  /** The node is a relay of the current list. */
  isRelayNode(name: string): boolean;
  /** This node is a relay of the current list. */
  isRelay(): boolean;
  setPath(id: string, relayId: string | null): void;
  setRelaying(on: boolean): void;
  /** A keepalive straight to the peer's endpoint (not through its relay). */
  probe(id: string): boolean;
}

/** Counters of the selector (monotonic). */
export interface PathStats {
  /** Switches to a relay, back to direct, and from one relay to another. */
  toRelay: number;
  toDirect: number;
  failovers: number;
}

/** The running selector. */
export interface PathSelector {
  /** One pass at wall time `now` (the timer calls it; tests may too). */
  tick(now: number): void;
  stats(): PathStats;
  close(): void;
}

/** Starts the selector (its timer when `start`). */
export function createPathSelector(deps: PathDeps, start = true): PathSelector {
  const log = deps.logger;
  const st: PathStats = { toRelay: 0, toDirect: 0, failovers: 0 };
  /** Per relayed peer: since when (wall ms) and the last probe. */
  const via = new Map<string, { relay: string; since: number; probedAt: number }>();
  const deadMs = 2 * deps.keepaliveMs + 1_000;
  let relayingOn: boolean | undefined;

  const tick = (now: number): void => {
    const on = deps.isRelay();
    if (on !== relayingOn) {
      relayingOn = on;
      deps.setRelaying(on);
    }
    if (deps.keepaliveMs <= 0) return;
    const all = deps.peers();
    const byName = new Map(all.map((p) => [p.name, p]));
    /** A relay answers: heard directly within `windowMs`. */
    const alive = (name: string, windowMs: number): boolean => {
      const r = byName.get(name);
      return r !== undefined && r.keyed && deps.isRelayNode(name) && r.lastDirectRxMs > 0 && now - r.lastDirectRxMs < windowMs;
    };
    const pick = (name: string, exclude: string | null): PathPeer | undefined => {
      for (const r of deps.relaysFor(name)) if (r !== exclude && alive(r, Math.max(deadMs, RELAY_FRESH_MS))) return byName.get(r);
      return undefined;
    };
    for (const p of all) {
      const cur = via.get(p.name);
      if (!p.keyed || deps.isRelayNode(p.name)) {
        if (cur !== undefined || p.relay !== null) {
          via.delete(p.name);
          deps.setPath(p.id, null);
        }
        continue;
      }
      if (cur === undefined) {
        const age = now - p.installedAtMs;
        const dead = age > PATH_GRACE_MS && (p.lastDirectRxMs === 0 || now - p.lastDirectRxMs > deadMs);
        if (!dead) {
          if (p.relay !== null) deps.setPath(p.id, null);
          continue;
        }
        const r = pick(p.name, null);
        if (r === undefined) continue;
        deps.setPath(p.id, r.id);
        via.set(p.name, { relay: r.name, since: now, probedAt: 0 });
        st.toRelay++;
        log.info('path via relay', { peer: p.name, relay: r.name });
        continue;
      }
      if (p.lastDirectRxMs > cur.since) {
        via.delete(p.name);
        deps.setPath(p.id, null);
        st.toDirect++;
        log.info('path direct again', { peer: p.name, relay: cur.relay });
        continue;
      }
      if (!alive(cur.relay, deadMs)) {
        const r = pick(p.name, cur.relay);
        if (r !== undefined) {
          deps.setPath(p.id, r.id);
          log.info('relay failover', { peer: p.name, relay: r.name, reason: `${cur.relay} stopped answering` });
          cur.relay = r.name;
          st.failovers++;
        }
      }
      if (p.hasEndpoint && now - cur.probedAt >= PROBE_MS) {
        cur.probedAt = now;
        deps.probe(p.id);
      }
    }
    for (const name of via.keys()) if (!byName.has(name)) via.delete(name);
  };

  const timer = start ? setInterval(() => tick(Date.now()), PATH_TICK_MS) : null;
  timer?.unref();
  return {
    tick,
    stats: () => ({ ...st }),
    close() {
      if (timer !== null) clearInterval(timer);
    },
  };
}
