/**
 * Human and JSON views of lists and diffs (`bnl print`, `bnl diff`).
 */
import { formatRule, type BnlDiff, type BnlEndpoint, type BnlNode, type SignedBnl } from '@cluevpn/bnl';

function ep(e: BnlEndpoint): string {
  return e.host.includes(':') ? `[${e.host}]:${e.port}` : `${e.host}:${e.port}`;
}

function nodeLines(n: BnlNode, indent = '  '): string[] {
  const lines = [`${n.name} (id ${n.id}, prefer ${n.prefer}${n.relay ? ', relay' : ''})`];
  lines.push(`${indent}endpoints:   ${n.endpoints.length ? n.endpoints.map(ep).join(', ') : '(none)'}`);
  lines.push(`${indent}subnets:     ${n.subnets.length ? n.subnets.join(', ') : '(none)'}`);
  if (n.fingerprint) lines.push(`${indent}fingerprint: ${n.fingerprint}`);
  if (n.tags) lines.push(`${indent}tags:        ${n.tags.join(', ')}`);
  if (n.mac) lines.push(`${indent}mac:         ${n.mac.join(', ')}`);
  return lines;
}

/** The `bnl print` text. `kind` says whether it is the draft or the signed list. */
export function renderList(list: SignedBnl, path: string, kind: 'draft' | 'signed'): string {
  const b = list.bnl;
  const out = [
    `${kind === 'draft' ? 'draft' : 'list'} ${path}`,
    `network ${b.network}  serial ${b.serial}  timestamp ${b.timestamp ? new Date(b.timestamp).toISOString() : '(not signed yet)'}`,
    `hash ${list.hash}`,
    list.signatures.length ? `signed by ${list.signatures.map((s) => s.publicKey).join(', ')}` : 'unsigned',
  ];
  if (b.signers) out.push(`declares signers (${b.signers.threshold} of ${b.signers.keys.length}): ${b.signers.keys.join(', ')}`);
  out.push(`${b.nodes.length} node(s)`);
  for (const n of b.nodes) out.push(...nodeLines(n));
  const rules = b.rules ?? [];
  out.push(rules.length === 0 ? 'no rules: everything is allowed' : `${rules.length} rule(s): only what a rule allows`);
  rules.forEach((r, i) => out.push(`${String(i + 1).padStart(3)}  ${formatRule(r)}`));
  return out.join('\n') + '\n';
}

/** The `bnl print --json` object. */
export function listJson(list: SignedBnl): unknown {
  return { ...list.bnl, hash: list.hash, signatures: list.signatures.map((s) => s.publicKey) };
}

function fieldText(n: BnlNode, f: string): string {
  switch (f) {
    case 'endpoints':
      return n.endpoints.map(ep).join(', ') || '(none)';
    case 'subnets':
      return n.subnets.join(', ') || '(none)';
    case 'tags':
      return n.tags?.join(', ') ?? '(none)';
    case 'mac':
      return n.mac?.join(', ') ?? '(none)';
    case 'relay':
      return n.relay ? 'yes' : 'no';
    default: {
      const v = (n as unknown as Record<string, unknown>)[f];
      return v === undefined ? '(none)' : String(v);
    }
  }
}

/** The `bnl diff` text. */
export function renderDiff(oldList: SignedBnl, newList: SignedBnl, d: BnlDiff, order: string): string {
  const out = [`serial ${oldList.bnl.serial} → ${newList.bnl.serial} (${order})`];
  for (const n of d.added) out.push(`+ added   ${nodeLines(n, '            ').join('\n')}`);
  for (const n of d.removed) out.push(`- removed ${n.name} (id ${n.id}): revoked`);
  for (const c of d.changed) {
    out.push(`~ changed ${c.name}`);
    for (const f of c.fields) out.push(`    ${f}: ${fieldText(c.before, f)} → ${fieldText(c.after, f)}`);
  }
  if (d.signersChanged) out.push(`! signers: ${JSON.stringify(oldList.bnl.signers ?? null)} → ${JSON.stringify(newList.bnl.signers ?? null)}`);
  for (const r of d.rulesRemoved) out.push(`- rule    ${formatRule(r)}`);
  for (const r of d.rulesAdded) out.push(`+ rule    ${formatRule(r)}`);
  if (out.length === 1) out.push('no node or rule changes');
  return out.join('\n') + '\n';
}
