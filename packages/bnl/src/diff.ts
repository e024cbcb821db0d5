/**
 * Differences between two lists, node by node (nodes are matched by name,
 * their identity). The daemon acts on this: add peers, revoke removed nodes,
 * update endpoints, routes and pins.
 */
import type { Bnl, BnlNode } from './model.js';
import { stringifyRule, type BnlRule } from './rules.js';

/** Node fields a change can touch. */
export type BnlNodeField = 'id' | 'endpoints' | 'prefer' | 'subnets' | 'fingerprint' | 'relay' | 'tags' | 'mac';

/** One changed node: before, after, and which fields differ (never empty). */
export interface BnlNodeChange {
  readonly name: string;
  readonly fields: readonly BnlNodeField[];
  readonly before: BnlNode;
  readonly after: BnlNode;
}

/**
 * Result of {@link diffBnl}. Arrays are sorted by node name. `removed`
 * nodes are revoked. `signersChanged` is true when the trusted signer set
 * changes.
 */
export interface BnlDiff {
  readonly added: readonly BnlNode[];
  readonly removed: readonly BnlNode[];
  readonly changed: readonly BnlNodeChange[];
  readonly signersChanged: boolean;
  /** The access rules differ (rules.ts): the policy of every node is compiled again. */
  readonly rulesChanged: boolean;
  /** Rules only in `before` / only in `after` (canonical order). */
  readonly rulesRemoved: readonly BnlRule[];
  readonly rulesAdded: readonly BnlRule[];
}

const FIELDS: readonly BnlNodeField[] = ['id', 'endpoints', 'prefer', 'subnets', 'fingerprint', 'relay', 'tags', 'mac'];

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a ?? null) === JSON.stringify(b ?? null);
}

/** Diff from `before` (null: nothing yet, every node is added) to `after`. Both must be canonical. */
export function diffBnl(before: Bnl | null, after: Bnl): BnlDiff {
  const old = new Map((before?.nodes ?? []).map((n) => [n.name, n]));
  const now = new Map(after.nodes.map((n) => [n.name, n]));
  const added: BnlNode[] = [];
  const changed: BnlNodeChange[] = [];
  for (const n of after.nodes) {
    const o = old.get(n.name);
    if (!o) {
      added.push(n);
      continue;
    }
    const fields = FIELDS.filter((f) => !same(o[f], n[f]));
    if (fields.length > 0) changed.push({ name: n.name, fields, before: o, after: n });
  }
  const removed = (before?.nodes ?? []).filter((n) => !now.has(n.name));
  const oldRules = new Set((before?.rules ?? []).map(stringifyRule));
  const newRules = new Set(after.rules?.map(stringifyRule) ?? []);
  const rulesAdded = (after.rules ?? []).filter((r) => !oldRules.has(stringifyRule(r)));
  const rulesRemoved = (before?.rules ?? []).filter((r) => !newRules.has(stringifyRule(r)));
  const byName = <T extends { name: string }>(a: T, b: T): number => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  return {
    added: added.sort(byName),
    removed: removed.sort(byName),
    changed: changed.sort(byName),
    signersChanged: before !== null && !same(before.signers, after.signers),
    rulesChanged: rulesAdded.length > 0 || rulesRemoved.length > 0,
    rulesRemoved,
    rulesAdded,
  };
}

/** True if the diff changes nothing about the nodes or signers. */
export function isEmptyDiff(d: BnlDiff): boolean {
  return d.added.length === 0 && d.removed.length === 0 && d.changed.length === 0 && !d.signersChanged && !d.rulesChanged;
}
