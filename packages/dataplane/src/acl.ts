/**
 * The access policy: compiled rules and connection tracking, enforced on
 * receive (receive.ts step 10) by the node that owns the destination, and
 * fed by every packet we send (send.ts step 6), so that replies to our own
 * traffic pass.
 *
 * Inbound packet (policy in force), in order:
 * 1. Parse the inner packet: protocol after IPv6 extension headers, ports
 *    (TCP/UDP), ICMP type and echo id, fragments. A header cut short is
 *    dropped.
 * 2. A non-first fragment passes only when the first fragment of the same
 *    datagram (source, destination, id, protocol) passed (fragment entry,
 *    `fragmentMs`); one arriving before its first fragment is dropped.
 * 3. ICMP errors (v4 3/4/11/12, v6 1-4) pass when the packet they quote is a
 *    tracked flow of ours (related traffic: path MTU, unreachables).
 * 4. The flow (local address/port, remote address/port, protocol; ICMP echo:
 *    the echo id) is looked up in the connection table. An entry created by
 *    our own outbound packet passes (a reply). An entry created by an
 *    inbound packet a rule allowed passes while the policy generation is
 *    the one that allowed it; after a policy change it is checked against
 *    the rules again on its next packet and removed if no rule allows it
 *    any more (so removing a rule cuts its established flows, and a flow the
 *    new rules still allow keeps passing without a break).
 * 5. Otherwise the rules: the first that matches protocol, destination port,
 *    source and destination allows it, and the flow is entered in the table.
 *    No rule: dropped (the caller counts 'acl').
 *
 * Outbound packet: its flow is entered (or refreshed) as ours, so the reply
 * passes step 4. ICMP: echo requests only (keyed by echo id; an inbound
 * echo request is never looked up, it always goes to the rules). Nothing is
 * ever dropped on send.
 *
 * Entries expire (TCP `tcpTransientMs` until a packet was seen each way,
 * then `tcpEstablishedMs`, `tcpClosingMs` after FIN/RST; UDP `udpMs`; ICMP
 * echo `icmpMs`; other protocols `otherMs`), refreshed by every packet; the
 * table holds at most `maxFlows` entries and evicts the least recently used
 * when full (conntrack.ts). Nothing is allocated per packet.
 *
 * No policy (`setPolicy(null)`, the list has no rules): nothing is parsed,
 * tracked or dropped, and the table is emptied. Flows started while no policy
 * was in force are learned from their next outbound packet.
 */
import { ConntrackTable, CtFlag, KEY_WORDS } from './conntrack.js';
import { DataplaneError } from './errors.js';
import { parsePrefix } from './ip-address.js';
import { PrefixTable } from './routing-table.js';

/** One rule of a compiled policy: allow `from` → `to`, protocol, destination ports. */
export interface AclRule {
  /** Source CIDRs, or 'any'. An empty array matches nothing. */
  from: readonly string[] | 'any';
  /** Destination CIDRs, or 'any'. */
  to: readonly string[] | 'any';
  /** 'icmp' is ICMP for IPv4 and ICMPv6 for IPv6. */
  proto: 'tcp' | 'udp' | 'icmp' | 'any';
  /** Inclusive destination port ranges (TCP/UDP only); absent or empty = every port. */
  ports?: ReadonlyArray<readonly [number, number]>;
}

/** The policy a node enforces on receive (the daemon compiles it from the node list). */
export interface AclPolicy {
  /** Shown in stats (the daemon: the list serial the rules come from). */
  serial: number;
  /** Allow rules; empty = nothing is allowed in except replies to our own traffic. */
  rules: readonly AclRule[];
}

/** Connection-tracking bounds and timeouts (implementation; tests shrink them). */
export interface AclLimits {
  /** Table size (default 65 536 flows; the least recently used is evicted when full). */
  maxFlows: number;
  tcpTransientMs: number;
  tcpEstablishedMs: number;
  tcpClosingMs: number;
  udpMs: number;
  icmpMs: number;
  otherMs: number;
  fragmentMs: number;
}

/** Defaults of {@link AclLimits}. */
export const DEFAULT_ACL_LIMITS: Readonly<AclLimits> = {
  maxFlows: 65_536,
  tcpTransientMs: 60_000,
  tcpEstablishedMs: 2 * 3600_000,
  tcpClosingMs: 30_000,
  udpMs: 60_000,
  icmpMs: 30_000,
  otherMs: 60_000,
  fragmentMs: 10_000,
};

/** The policy part of `Dataplane.stats()`. */
export interface AclStats {
  /** A policy is in force. */
  on: boolean;
  /** Its serial (null: none). */
  serial: number | null;
  rules: number;
  /** Tracked flows now, the table's size, and flows evicted because it was full. */
  flows: number;
  maxFlows: number;
  evicted: number;
}

/** Protocol numbers (specification). */
const P_ICMP = 1;
const P_TCP = 6;
const P_UDP = 17;
const P_ICMP6 = 58;
/** Rule protocol value: any. */
const ANY = -1;
/** Key kinds (word 9, bits 8-15). */
const KIND_FLOW = 0;
const KIND_FRAG = 1;
/** Fragment state of a parsed packet. */
const FRAG_NONE = 0;
const FRAG_FIRST = 1;
const FRAG_LATER = 2;

interface CompiledRule {
  proto: number;
  /** Pairs lo, hi; null = every port. */
  ports: Int32Array | null;
  src: PrefixTable | null;
  dst: PrefixTable | null;
}

function compileSet(v: unknown, what: string, i: number): PrefixTable | null {
  if (v === 'any') return null;
  if (!Array.isArray(v)) throw new DataplaneError('ERR_DP_CONFIG', `policy.rules[${i}].${what} must be 'any' or an array of CIDRs`);
  const t = new PrefixTable();
  for (const c of v as unknown[]) t.insert(parsePrefix(c as string), 0);
  return t;
}

/** Compiles and checks a policy; `ERR_DP_CONFIG` naming the rule and field. */
function compile(p: AclPolicy): CompiledRule[] {
  if (p === null || typeof p !== 'object' || !Number.isSafeInteger(p.serial) || p.serial < 0 || !Array.isArray(p.rules)) {
    throw new DataplaneError('ERR_DP_CONFIG', 'policy must be { serial: integer ≥ 0, rules: [...] } or null');
  }
  return p.rules.map((r, i) => {
    if (r === null || typeof r !== 'object') throw new DataplaneError('ERR_DP_CONFIG', `policy.rules[${i}] must be an object`);
    const proto = r.proto === 'tcp' ? P_TCP : r.proto === 'udp' ? P_UDP : r.proto === 'icmp' ? P_ICMP : r.proto === 'any' ? ANY : null;
    if (proto === null) throw new DataplaneError('ERR_DP_CONFIG', `policy.rules[${i}].proto must be tcp, udp, icmp or any`);
    let ports: Int32Array | null = null;
    if (r.ports !== undefined && r.ports.length > 0) {
      if (proto !== P_TCP && proto !== P_UDP) throw new DataplaneError('ERR_DP_CONFIG', `policy.rules[${i}].ports need proto tcp or udp`);
      ports = new Int32Array(2 * r.ports.length);
      r.ports.forEach((pr: readonly [number, number], k: number) => {
        const ok = Array.isArray(pr) && pr.length === 2 && Number.isInteger(pr[0]) && Number.isInteger(pr[1]) && pr[0] >= 0 && pr[0] <= pr[1] && pr[1] <= 65535;
        if (!ok) throw new DataplaneError('ERR_DP_CONFIG', `policy.rules[${i}].ports[${k}] must be [lo, hi] with 0 ≤ lo ≤ hi ≤ 65535`);
        ports![2 * k] = pr[0];
        ports![2 * k + 1] = pr[1];
      });
    }
    return { proto, ports, src: compileSet(r.from, 'from', i), dst: compileSet(r.to, 'to', i) };
  });
}

function checkLimits(l: AclLimits): void {
  for (const [k, v] of Object.entries(l)) {
    if (!(k in DEFAULT_ACL_LIMITS)) throw new DataplaneError('ERR_DP_CONFIG', `aclLimits.${k} is not a limit of the access policy`);
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new DataplaneError('ERR_DP_CONFIG', `aclLimits.${k} must be a finite number > 0`);
  }
  if (!Number.isInteger(l.maxFlows) || l.maxFlows < 16 || l.maxFlows > 1 << 22) throw new DataplaneError('ERR_DP_CONFIG', 'aclLimits.maxFlows must be an integer 16..4194304');
}

/** The access policy of one data plane: rules, connection table, and the per-packet checks. */
export class Acl {
  /** A policy is in force (read per packet by the pipelines). */
  active = false;
  private serial: number | null = null;
  private rules: CompiledRule[] = [];
  /** Bumped on every policy change: inbound-created entries of an older generation are checked again. */
  private gen = 0;
  private ct: ConntrackTable | null = null;
  private readonly limits: AclLimits;
  private readonly key = new Uint32Array(KEY_WORDS);
  // the parsed packet (scratch, valid during one call)
  private fam: 4 | 6 = 4;
  private proto = 0;
  private l4 = -1;
  private end = 0;
  private frag = FRAG_NONE;
  private fragId = 0;
  private sport = 0;
  private dport = 0;
  private tcpFlags = 0;
  private icmpType = -1;

  constructor(limits: Partial<AclLimits> = {}) {
    this.limits = { ...DEFAULT_ACL_LIMITS, ...limits };
    checkLimits(this.limits);
  }

  /** Puts `p` in force (null: none). Throws `ERR_DP_CONFIG` and changes nothing on a bad policy. */
  setPolicy(p: AclPolicy | null): void {
    if (p === null) {
      this.active = false;
      this.serial = null;
      this.rules = [];
      this.ct?.clear();
      return;
    }
    const rules = compile(p);
    this.rules = rules;
    this.serial = p.serial;
    this.gen++;
    this.ct ??= new ConntrackTable(this.limits.maxFlows);
    this.active = true;
  }

  stats(): AclStats {
    return {
      on: this.active,
      serial: this.serial,
      rules: this.rules.length,
      flows: this.ct?.size ?? 0,
      maxFlows: this.limits.maxFlows,
      evicted: this.ct?.evicted ?? 0,
    };
  }

  /**
   * Step 1: reads family, protocol, L4 offset, ports, TCP flags, ICMP type
   * and echo id (in `sport`), fragment state. False when a header is cut
   * short. The IP header itself was checked by the caller (version, length).
   */
  private parse(b: Uint8Array, off: number, len: number): boolean {
    const v = b[off] >>> 4;
    let nh: number;
    let p: number;
    this.frag = FRAG_NONE;
    this.sport = 0;
    this.dport = 0;
    this.tcpFlags = 0;
    this.icmpType = -1;
    if (v === 4) {
      this.fam = 4;
      const total = (b[off + 2] << 8) | b[off + 3];
      this.end = off + (total < len ? total : len);
      p = off + (b[off] & 0x0f) * 4;
      nh = b[off + 9];
      const ff = (b[off + 6] << 8) | b[off + 7];
      if ((ff & 0x3fff) !== 0) {
        this.fragId = (b[off + 4] << 8) | b[off + 5];
        this.frag = (ff & 0x1fff) !== 0 ? FRAG_LATER : FRAG_FIRST;
      }
    } else {
      this.fam = 6;
      const total = 40 + ((b[off + 4] << 8) | b[off + 5]);
      this.end = off + (total < len ? total : len);
      p = off + 40;
      nh = b[off + 6];
      for (let n = 0; n < 8; n++) {
        if (nh === 0 || nh === 43 || nh === 60) {
          if (p + 2 > this.end) return false;
          const next = b[p];
          p += (b[p + 1] + 1) * 8;
          nh = next;
        } else if (nh === 44) {
          if (p + 8 > this.end) return false;
          const fo = ((b[p + 2] << 8) | b[p + 3]) & 0xfff8;
          this.fragId = ((b[p + 4] << 24) | (b[p + 5] << 16) | (b[p + 6] << 8) | b[p + 7]) >>> 0;
          const more = b[p + 3] & 1;
          nh = b[p];
          p += 8;
          if (fo !== 0) this.frag = FRAG_LATER;
          else if (more !== 0) this.frag = FRAG_FIRST;
          if (fo !== 0) break;
        } else break;
      }
    }
    this.proto = nh;
    if (this.frag === FRAG_LATER) {
      this.l4 = -1;
      return true;
    }
    this.l4 = p;
    const room = this.end - p;
    if (nh === P_TCP) {
      if (room < 14) return false;
      this.sport = (b[p] << 8) | b[p + 1];
      this.dport = (b[p + 2] << 8) | b[p + 3];
      this.tcpFlags = b[p + 13];
    } else if (nh === P_UDP) {
      if (room < 8) return false;
      this.sport = (b[p] << 8) | b[p + 1];
      this.dport = (b[p + 2] << 8) | b[p + 3];
    } else if ((nh === P_ICMP && this.fam === 4) || (nh === P_ICMP6 && this.fam === 6)) {
      if (room < 8) return false;
      this.icmpType = b[p];
      this.sport = (b[p + 4] << 8) | b[p + 5]; // echo id (meaningful for echo only)
    }
    return true;
  }

  /** Fills the key: `localOff`/`remoteOff` are the addresses' offsets in `b`. */
  private setKey(b: Uint8Array, localOff: number, remoteOff: number, fam: 4 | 6, ports: number, kind: number, proto: number): void {
    const k = this.key;
    const words = fam === 4 ? 1 : 4;
    for (let w = 0; w < 4; w++) {
      if (w < words) {
        const a = localOff + 4 * w;
        const r = remoteOff + 4 * w;
        k[w] = ((b[a] << 24) | (b[a + 1] << 16) | (b[a + 2] << 8) | b[a + 3]) >>> 0;
        k[4 + w] = ((b[r] << 24) | (b[r + 1] << 16) | (b[r + 2] << 8) | b[r + 3]) >>> 0;
      } else {
        k[w] = 0;
        k[4 + w] = 0;
      }
    }
    k[8] = ports >>> 0;
    k[9] = (fam << 16) | (kind << 8) | proto;
  }

  private isIcmp(): boolean {
    return this.fam === 4 ? this.proto === P_ICMP : this.proto === P_ICMP6;
  }

  private isEchoRequest(): boolean {
    return this.fam === 4 ? this.icmpType === 8 : this.icmpType === 128;
  }

  private isEchoReply(): boolean {
    return this.fam === 4 ? this.icmpType === 0 : this.icmpType === 129;
  }

  private isIcmpError(): boolean {
    const t = this.icmpType;
    return this.fam === 4 ? t === 3 || t === 4 || t === 11 || t === 12 : t >= 1 && t <= 4;
  }

  private expiry(e: number, now: number): number {
    const l = this.limits;
    const p = this.proto;
    if (p === P_TCP) {
      const f = (this.ct as ConntrackTable).flags[e];
      if ((f & CtFlag.CLOSING) !== 0) return now + l.tcpClosingMs;
      return now + ((f & (CtFlag.SEEN_IN | CtFlag.SEEN_OUT)) === (CtFlag.SEEN_IN | CtFlag.SEEN_OUT) ? l.tcpEstablishedMs : l.tcpTransientMs);
    }
    if (p === P_UDP) return now + l.udpMs;
    if (this.isIcmp()) return now + l.icmpMs;
    return now + l.otherMs;
  }

  /** Marks entry `e` seen in direction `seen` (and FIN/RST), then sets its expiry. */
  private refresh(e: number, seen: number, now: number): void {
    const ct = this.ct as ConntrackTable;
    let f = ct.flags[e] | seen;
    if (this.proto === P_TCP && (this.tcpFlags & 0x05) !== 0) f |= CtFlag.CLOSING;
    ct.flags[e] = f;
    ct.expires[e] = this.expiry(e, now);
  }

  /** Step 5: does a rule allow the parsed packet? */
  private ruleAllows(b: Uint8Array, srcOff: number, dstOff: number): boolean {
    const rules = this.rules;
    const fam = this.fam;
    const proto = this.proto;
    const l4known = this.l4 >= 0;
    for (let i = 0; i < rules.length; i++) {
      const r = rules[i];
      if (r.proto !== ANY) {
        if (r.proto === P_ICMP) {
          if (!this.isIcmp()) continue;
        } else if (r.proto !== proto) continue;
      }
      if (r.ports !== null) {
        if (!l4known) continue;
        const d = this.dport;
        const ps = r.ports;
        let hit = false;
        for (let k = 0; k < ps.length; k += 2) {
          if (d >= ps[k] && d <= ps[k + 1]) {
            hit = true;
            break;
          }
        }
        if (!hit) continue;
      }
      if (r.src !== null && r.src.lookup(b, srcOff, fam) < 0) continue;
      if (r.dst !== null && r.dst.lookup(b, dstOff, fam) < 0) continue;
      return true;
    }
    return false;
  }

  /** After an inbound first fragment passed: lets its later fragments pass (step 2). */
  private noteFirstFragment(b: Uint8Array, srcOff: number, dstOff: number, now: number): void {
    const ct = this.ct as ConntrackTable;
    this.setKey(b, dstOff, srcOff, this.fam, this.fragId, KIND_FRAG, this.proto);
    const e = ct.find(this.key, now);
    if (e >= 0) ct.expires[e] = now + this.limits.fragmentMs;
    else ct.insert(this.key, now + this.limits.fragmentMs, 0, this.gen, now);
  }

  /**
   * Checks an inbound packet (a well-formed IPv4/IPv6 packet, `len` bytes
   * at `off`, from a peer whose source address already passed the spoof
   * check). True: deliver. False: drop and count 'acl'. Only call while
   * {@link active}.
   */
  inbound(b: Uint8Array, off: number, len: number, now: number): boolean {
    const ct = this.ct as ConntrackTable;
    if (!this.parse(b, off, len)) return false;
    const fam = this.fam;
    const srcOff = off + (fam === 4 ? 12 : 8);
    const dstOff = off + (fam === 4 ? 16 : 24);
    // 2. later fragments
    if (this.frag === FRAG_LATER) {
      this.setKey(b, dstOff, srcOff, fam, this.fragId, KIND_FRAG, this.proto);
      return ct.find(this.key, now) >= 0;
    }
    let ports: number;
    let track = true;
    if (this.proto === P_TCP || this.proto === P_UDP) ports = ((this.dport << 16) | this.sport) >>> 0;
    else if (this.isIcmp()) {
      // 3. related: an error quoting a packet of a tracked flow
      if (this.isIcmpError() && this.related(b, (this.l4 as number) + 8, now)) return true;
      // echo replies are looked up (our requests' flows); requests always go to the rules, untracked
      if (this.isEchoReply()) ports = (this.sport << 16) >>> 0;
      else {
        ports = 0;
        track = false;
      }
    } else ports = 0;
    // 4. the connection table
    if (track) {
      this.setKey(b, dstOff, srcOff, fam, ports, KIND_FLOW, this.proto);
      const e = ct.find(this.key, now);
      if (e >= 0) {
        const ours = (ct.flags[e] & CtFlag.OUTBOUND) !== 0;
        if (!ours && ct.gen[e] !== this.gen) {
          if (!this.ruleAllows(b, srcOff, dstOff)) {
            ct.remove(e);
            return false;
          }
          ct.gen[e] = this.gen;
        }
        this.refresh(e, CtFlag.SEEN_IN, now);
        if (this.frag === FRAG_FIRST) this.noteFirstFragment(b, srcOff, dstOff, now);
        return true;
      }
    }
    // 5. the rules
    if (!this.ruleAllows(b, srcOff, dstOff)) return false;
    // An echo reply nobody asked for is allowed by a rule but starts no flow.
    if (track && !this.isEchoReply()) {
      const e = ct.insert(this.key, now, CtFlag.SEEN_IN, this.gen, now);
      this.refresh(e, CtFlag.SEEN_IN, now);
    }
    if (this.frag === FRAG_FIRST) this.noteFirstFragment(b, srcOff, dstOff, now);
    return true;
  }

  /** Step 3: is the packet quoted at `q` (inside an ICMP error) one of a tracked flow? Sent by us: source = local. */
  private related(b: Uint8Array, q: number, now: number): boolean {
    const end = this.end;
    if (q + 20 > end) return false;
    const v = b[q] >>> 4;
    let fam: 4 | 6;
    let p: number;
    let proto: number;
    if (v === 4) {
      fam = 4;
      p = q + (b[q] & 0x0f) * 4;
      proto = b[q + 9];
    } else if (v === 6 && q + 40 <= end) {
      fam = 6;
      p = q + 40;
      proto = b[q + 6];
    } else return false;
    if (fam !== this.fam) return false;
    let ports = 0;
    if (proto === P_TCP || proto === P_UDP) {
      if (p + 4 > end) return false;
      ports = ((((b[p] << 8) | b[p + 1]) << 16) | ((b[p + 2] << 8) | b[p + 3])) >>> 0;
    } else if (proto === (fam === 4 ? P_ICMP : P_ICMP6)) {
      if (p + 6 > end) return false;
      ports = (((b[p + 4] << 8) | b[p + 5]) << 16) >>> 0;
    }
    const srcOff = q + (fam === 4 ? 12 : 8);
    const dstOff = q + (fam === 4 ? 16 : 24);
    this.setKey(b, srcOff, dstOff, fam, ports, KIND_FLOW, proto);
    return (this.ct as ConntrackTable).find(this.key, now) >= 0;
  }

  /**
   * Records an outbound packet (well-formed IPv4/IPv6, `len` bytes at
   * `off`, not yet compressed or framed) so its replies pass. Never drops.
   * Only call while {@link active}.
   */
  outbound(b: Uint8Array, off: number, len: number, now: number): void {
    const ct = this.ct as ConntrackTable;
    if (!this.parse(b, off, len) || this.frag === FRAG_LATER) return;
    const fam = this.fam;
    const srcOff = off + (fam === 4 ? 12 : 8);
    const dstOff = off + (fam === 4 ? 16 : 24);
    let ports: number;
    let create = true;
    if (this.proto === P_TCP || this.proto === P_UDP) ports = ((this.sport << 16) | this.dport) >>> 0;
    else if (this.isIcmp()) {
      if (this.isEchoRequest()) ports = (this.sport << 16) >>> 0;
      else if (this.isEchoReply()) {
        ports = (this.sport << 16) >>> 0;
        create = false;
      } else return;
    } else ports = 0;
    this.setKey(b, srcOff, dstOff, fam, ports, KIND_FLOW, this.proto);
    let e = ct.find(this.key, now);
    if (e < 0) {
      if (!create) return;
      e = ct.insert(this.key, now, CtFlag.OUTBOUND, 0, now);
    }
    this.refresh(e, CtFlag.SEEN_OUT, now);
  }
}
