/**
 * Access rules: the list's optional top-level `rules` array, its
 * validation, canonical form, human form, and compilation into the policy
 * one node enforces.
 *
 * A rule allows traffic `from` a set of nodes `to` a set of nodes, for a
 * protocol and, for TCP/UDP, destination ports:
 *
 *   {"from":"tag:office","ports":["80","8000-8080"],"proto":"tcp","to":"tag:web"}
 *
 * - `from` / `to`: `any`, `tag:TAG` (every node carrying the tag) or
 *   `node:NAME` (one node; names compare case-insensitively). A reference
 *   that matches no node matches nothing (fails closed).
 * - `proto`: `tcp`, `udp` or `icmp` (ICMP and ICMPv6); absent = any protocol
 *   (`any` is the default and therefore never written).
 * - `ports`: destination ports, TCP/UDP only: `"N"` or `"LO-HI"` (LO < HI),
 *   1-65535, sorted by LO, not overlapping; absent = every port.
 *
 * Canonical form: keys sorted, defaults omitted, rules sorted by their
 * canonical JSON text, no duplicates, and the array itself absent when
 * there are no rules — so a list without rules has exactly the bytes (and
 * signatures) it had before rules existed.
 *
 * Semantics: no rules at all = everything allowed (the behaviour before
 * rules); once the list has a rule, a node accepts only what a rule whose
 * `to` matches it allows (replies to its own traffic aside: connection
 * tracking, in the data plane). Rules only allow; there is no deny rule.
 */
import type { BnlProblem, BnlProblemCode } from './errors.js';
import type { Bnl, BnlNode } from './model.js';

/** Specification: most rules in one list. */
export const BNL_MAX_RULES = 4096;
/** Specification: most port items per rule. */
export const BNL_MAX_RULE_PORTS = 64;

/** Protocols a rule can name (`any` is the default and is omitted). */
export type BnlRuleProto = 'tcp' | 'udp' | 'icmp';

/** One access rule as stored in the list. */
export interface BnlRule {
  /** `any`, `tag:TAG` or `node:NAME`. */
  from: string;
  /** `any`, `tag:TAG` or `node:NAME`. */
  to: string;
  /** Absent = any protocol. */
  proto?: BnlRuleProto;
  /** Destination ports (`"80"`, `"8000-8080"`); absent = all. TCP and UDP only. */
  ports?: string[];
}

const RULE_FIELDS = new Set(['from', 'to', 'proto', 'ports']);
const TAG_RE = /^[A-Za-z0-9][A-Za-z0-9._:=/@+-]{0,63}$/;
const NODE_NAME_RE = /^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,62}[A-Za-z0-9])?$/;
const PORT_RE = /^([1-9][0-9]{0,4})(?:-([1-9][0-9]{0,4}))?$/;

/** A parsed `from`/`to` reference. */
export type RuleRef = { kind: 'any' } | { kind: 'tag'; tag: string } | { kind: 'node'; name: string };

/** Parses a canonical reference (`any`, `tag:T`, `node:N`); null when malformed. */
export function parseRuleRef(s: unknown): RuleRef | null {
  if (typeof s !== 'string') return null;
  if (s === 'any') return { kind: 'any' };
  if (s.startsWith('tag:') && TAG_RE.test(s.slice(4))) return { kind: 'tag', tag: s.slice(4) };
  if (s.startsWith('node:') && NODE_NAME_RE.test(s.slice(5))) return { kind: 'node', name: s.slice(5) };
  return null;
}

/** Parses one port item (`"80"`, `"8000-8080"`) to [lo, hi]; null when malformed or out of range. */
export function parsePortItem(s: unknown): [number, number] | null {
  if (typeof s !== 'string') return null;
  const m = PORT_RE.exec(s);
  if (!m) return null;
  const lo = Number(m[1]);
  const hi = m[2] === undefined ? lo : Number(m[2]);
  if (lo > 65535 || hi > 65535) return null;
  if (m[2] !== undefined && hi <= lo) return null;
  return [lo, hi];
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Canonical JSON text of one valid rule (keys sorted, defaults omitted). */
export function stringifyRule(r: BnlRule): string {
  let s = `{"from":${JSON.stringify(r.from)}`;
  if (r.ports !== undefined && r.ports.length > 0) s += `,"ports":[${r.ports.map((p) => JSON.stringify(p)).join(',')}]`;
  if (r.proto !== undefined) s += `,"proto":${JSON.stringify(r.proto)}`;
  return `${s},"to":${JSON.stringify(r.to)}}`;
}

/**
 * Checks the `rules` member of a list (present: the caller checks that);
 * adds one problem per fault (`ERR_BNL_RULE`, field `rules[i].key`).
 */
export function validateRules(input: unknown, add: (code: BnlProblemCode, message: string, node?: string, field?: string) => void): void {
  if (!Array.isArray(input) || input.length === 0 || input.length > BNL_MAX_RULES) {
    add('ERR_BNL_RULE', `rules is either absent or an array of 1 to ${BNL_MAX_RULES} rules`, undefined, 'rules');
    return;
  }
  const seen = new Set<string>();
  input.forEach((raw: unknown, i: number) => {
    const at = `rules[${i}]`;
    if (!isObject(raw)) {
      add('ERR_BNL_RULE', 'rule is not an object', undefined, at);
      return;
    }
    let ok = true;
    for (const k of Object.keys(raw)) {
      if (!RULE_FIELDS.has(k)) {
        add('ERR_BNL_FIELD', `unknown field "${k}" in a rule`, undefined, `${at}.${k}`);
        ok = false;
      }
    }
    for (const k of ['from', 'to'] as const) {
      if (parseRuleRef(raw[k]) === null) {
        add('ERR_BNL_RULE', `${k} must be "any", "tag:TAG" or "node:NAME", got ${JSON.stringify(raw[k])}`, undefined, `${at}.${k}`);
        ok = false;
      }
    }
    if (raw.proto !== undefined && raw.proto !== 'tcp' && raw.proto !== 'udp' && raw.proto !== 'icmp') {
      add('ERR_BNL_RULE', `proto must be "tcp", "udp" or "icmp" (absent = any), got ${JSON.stringify(raw.proto)}`, undefined, `${at}.proto`);
      ok = false;
    }
    if (raw.ports !== undefined) {
      if (raw.proto !== 'tcp' && raw.proto !== 'udp') {
        add('ERR_BNL_RULE', 'ports need proto "tcp" or "udp"', undefined, `${at}.ports`);
        ok = false;
      }
      if (!Array.isArray(raw.ports) || raw.ports.length === 0 || raw.ports.length > BNL_MAX_RULE_PORTS) {
        add('ERR_BNL_RULE', `ports is either absent or an array of 1 to ${BNL_MAX_RULE_PORTS} items`, undefined, `${at}.ports`);
        ok = false;
      } else {
        let prevHi = 0;
        for (const p of raw.ports as unknown[]) {
          const r = parsePortItem(p);
          if (r === null) {
            add('ERR_BNL_RULE', `port ${JSON.stringify(p)} must be "N" or "LO-HI" with 1 <= LO < HI <= 65535, no leading zeros`, undefined, `${at}.ports`);
            ok = false;
          } else if (r[0] <= prevHi) {
            add('ERR_BNL_RULE', `port ${String(p)} overlaps or is not after the item before it (sort ports, do not overlap)`, undefined, `${at}.ports`);
            ok = false;
          } else prevHi = r[1];
        }
      }
    }
    if (!ok) return;
    const text = stringifyRule(raw as unknown as BnlRule);
    if (seen.has(text)) add('ERR_BNL_RULE', `rule ${formatRule(raw as unknown as BnlRule)} appears twice`, undefined, at);
    seen.add(text);
  });
}

/** Canonical copy of valid rules: sorted by canonical text, ports sorted (no validation here). */
export function canonicalRules(rules: readonly BnlRule[]): BnlRule[] {
  const out = rules.map((r) => {
    const c: BnlRule = { from: r.from, to: r.to };
    if (r.proto !== undefined) c.proto = r.proto;
    if (r.ports !== undefined && r.ports.length > 0) {
      c.ports = [...r.ports].sort((a, b) => (parsePortItem(a)?.[0] ?? 0) - (parsePortItem(b)?.[0] ?? 0));
    }
    return c;
  });
  const key = out.map(stringifyRule);
  const idx = out.map((_, i) => i).sort((a, b) => (key[a] < key[b] ? -1 : key[a] > key[b] ? 1 : 0));
  return idx.map((i) => out[i]);
}

/** Human form: `from tag:office to tag:web tcp 80,8000-8080` (`any` protocol and ports spelled out). */
export function formatRule(r: BnlRule): string {
  const ports = r.ports !== undefined && r.ports.length > 0 ? ` port ${r.ports.join(',')}` : '';
  return `from ${r.from} to ${r.to} proto ${r.proto ?? 'any'}${ports}`;
}

/** Problem helper for callers building rules from admin input. */
export function ruleProblems(rules: readonly BnlRule[]): BnlProblem[] {
  const problems: BnlProblem[] = [];
  validateRules(rules, (code, message, node, field) => problems.push({ code, message, ...(node !== undefined ? { node } : {}), ...(field !== undefined ? { field } : {}) }));
  return problems;
}

/**
 * Reads a rule from admin input: `from` / `to` as `any`, `tag:T`, `tag=T`,
 * `node:N` or `node=N`; `proto` `tcp|udp|icmp|any` (default any); `ports`
 * as `80`, `8000-8080` or a comma-separated list of those (sorted here).
 * Throws a `RangeError` naming the bad part; the result still goes
 * through list validation when the list is built.
 */
export function ruleFromSpec(spec: { from: string; to: string; proto?: string; ports?: string }): BnlRule {
  const ref = (what: string, s: string): string => {
    const t = s.trim().replace(/^(tag|node)=/, '$1:');
    if (parseRuleRef(t) === null) throw new RangeError(`--${what} ${JSON.stringify(s)}: write any, tag:TAG or node:NAME`);
    return t;
  };
  const r: BnlRule = { from: ref('from', spec.from), to: ref('to', spec.to) };
  const proto = (spec.proto ?? 'any').trim().toLowerCase();
  if (proto === 'tcp' || proto === 'udp' || proto === 'icmp') r.proto = proto;
  else if (proto !== 'any') throw new RangeError(`--proto ${JSON.stringify(spec.proto)}: write tcp, udp, icmp or any`);
  if (spec.ports !== undefined && spec.ports.trim() !== '') {
    if (r.proto !== 'tcp' && r.proto !== 'udp') throw new RangeError('--port needs --proto tcp or --proto udp');
    const items = spec.ports.split(',').map((p) => p.trim());
    const parsed = items.map((p) => {
      const x = parsePortItem(p);
      if (x === null) throw new RangeError(`--port ${JSON.stringify(p)}: write N or LO-HI (1-65535, LO < HI)`);
      return x;
    });
    parsed.sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < parsed.length; i++) {
      if (parsed[i][0] <= parsed[i - 1][1]) throw new RangeError(`--port: ${spec.ports} has overlapping items`);
    }
    r.ports = parsed.map(([lo, hi]) => (lo === hi ? String(lo) : `${lo}-${hi}`));
  }
  return r;
}

/** True if rule `a` and `b` are the same rule (canonical text). */
export function sameRule(a: BnlRule, b: BnlRule): boolean {
  return stringifyRule(canonicalRules([a])[0]) === stringifyRule(canonicalRules([b])[0]);
}

/** One rule of a compiled policy (structurally the data plane's `AclRule`). */
export interface CompiledRule {
  /** Source CIDRs, or `any`. */
  from: string[] | 'any';
  /** Destination CIDRs (this node's subnets). */
  to: string[];
  proto: 'tcp' | 'udp' | 'icmp' | 'any';
  /** Destination port ranges, inclusive; empty = all. */
  ports: [number, number][];
}

/** The policy one node enforces on receive (structurally the data plane's `AclPolicy`). */
export interface CompiledPolicy {
  /** The serial of the list the rules come from (the policy serial). */
  serial: number;
  /** Rules whose `to` matches this node; empty = nothing is allowed in (replies aside). */
  rules: CompiledRule[];
}

function matches(ref: RuleRef, n: BnlNode): boolean {
  if (ref.kind === 'any') return true;
  if (ref.kind === 'tag') return n.tags?.includes(ref.tag) ?? false;
  return ref.name.toLowerCase() === n.name.toLowerCase();
}

/**
 * Resolves the list's rules for node `selfName` into the policy its data
 * plane enforces: `null` when the list has no rules (everything allowed);
 * otherwise the rules whose `to` matches this node, with `from` resolved to
 * the subnets of the nodes it matches (`any` stays `any`) and `to` to this
 * node's subnets. A rule whose `from` matches no node is kept with an empty
 * source set (it allows nothing). Throws `RangeError` when `selfName` is
 * not in the list.
 */
export function compilePolicy(bnl: Bnl, selfName: string): CompiledPolicy | null {
  if (bnl.rules === undefined || bnl.rules.length === 0) return null;
  const self = bnl.nodes.find((n) => n.name === selfName);
  if (self === undefined) throw new RangeError(`node ${selfName} is not in the list`);
  const rules: CompiledRule[] = [];
  for (const r of bnl.rules) {
    const to = parseRuleRef(r.to);
    const from = parseRuleRef(r.from);
    if (to === null || from === null || !matches(to, self)) continue;
    const src = from.kind === 'any' ? 'any' : bnl.nodes.filter((n) => matches(from, n)).flatMap((n) => n.subnets);
    const ports = (r.ports ?? []).map((p) => parsePortItem(p) as [number, number]);
    rules.push({ from: src, to: [...self.subnets], proto: r.proto ?? 'any', ports });
  }
  return { serial: bnl.serial, rules };
}
