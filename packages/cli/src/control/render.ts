/**
 * Text renderings of control answers: the `cluevpn status` table and the
 * `cluevpn graph` Graphviz document. Pure functions of the report.
 */
import type { PeerStatus, StatusReport } from './protocol.js';

/** `1234` → `1.2K`; bytes or packets, base 1000 for packets-like brevity, 1024 for bytes. */
export function humanCount(n: number, base: 1000 | 1024 = 1000): string {
  const units = ['', 'K', 'M', 'G', 'T'];
  let v = n;
  let i = 0;
  while (v >= base && i < units.length - 1) {
    v /= base;
    i++;
  }
  return i === 0 ? String(n) : `${v < 10 ? v.toFixed(1) : Math.round(v)}${units[i]}`;
}

/** Bytes with binary units: `900 B`, `1.5KiB`, `70MiB` (the table style of humanCount). */
export function humanBytes(n: number): string {
  return n < 1024 ? `${n} B` : `${humanCount(n, 1024)}iB`;
}

/** Milliseconds as `3s`, `5m2s`, `2h5m`, `3d4h`; `never` for null. */
export function humanAgo(ms: number | null): string {
  if (ms === null) return 'never';
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${s % 60}s`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h}h${m % 60}m`;
  return `${Math.floor(h / 24)}d${h % 24}h`;
}

function dropsText(drops: Record<string, number>): string {
  const parts = Object.entries(drops)
    .filter(([, n]) => n > 0)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, n]) => `${k}=${n}`);
  return parts.length === 0 ? '-' : parts.join(',');
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows.map((r) => r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]!))).join('  ')).join('\n');
}

/** `pushed to 3 of 5 nodes (1 failed, 1 still trying in the background)` for a reload answer. */
export function pushSummary(r: { pushedTo: number | null; pushTargets: number | null; pushFailed: number | null; pushPending: number | null }): string {
  const failed = r.pushFailed ?? 0;
  const pending = r.pushPending ?? 0;
  const targets = r.pushTargets ?? 0;
  const extra = [failed > 0 ? `${failed} failed` : '', pending > 0 ? `${pending} still trying in the background` : ''].filter(Boolean);
  return `pushed to ${r.pushedTo ?? 0} of ${targets} node${targets === 1 ? '' : 's'}${extra.length ? ` (${extra.join(', ')})` : ''}`;
}

/** The human `cluevpn status` output: a header and one row per peer. */
export function renderStatus(s: StatusReport): string {
  const head = [
    `cluevpnd ${s.name} (id ${s.id}) network ${s.netname}, pid ${s.pid}, up ${humanAgo(s.uptimeMs)}, device ${s.device}, port ${s.port}, log level ${s.logLevel}`,
    `BNL serial ${s.bnl.serial}${s.bnl.signedAt ? ` signed ${s.bnl.signedAt}` : ''}, ${s.bnl.nodes} nodes, ${s.bnl.path}`,
  ];
  if (s.policy !== undefined) {
    const pol = s.policy;
    head.push(pol.serial === null ? 'access policy: none (the list has no rules: everything allowed)' : `access policy serial ${pol.serial}: ${pol.rules} rule${pol.rules === 1 ? '' : 's'} for this node, ${pol.flows} tracked flows of ${pol.maxFlows}${pol.evicted > 0 ? `, ${pol.evicted} evicted` : ''}`);
  }
  const m = s.memory;
  head.push(`memory: rss ${humanBytes(m.rss)}, V8 heap ${humanBytes(m.heapUsed)} used of ${humanBytes(m.heapTotal)}, external ${humanBytes(m.external)} (buffers ${humanBytes(m.arrayBuffers)})`);
  const r = s.relay;
  if (r !== undefined && (r.relay || r.punches > 0 || r.dialled > 0 || r.reverseLegs > 0)) {
    head.push(
      `${r.relay ? `relay: ${r.located} rendezvous answered, ${r.splices} connections joined (${r.splicesActive} open, ${humanBytes(r.splicedBytes)})${dropsText(r.refused) === '-' ? '' : `, refused ${dropsText(r.refused)}`}; ` : ''}` +
        `behind NAT: ${r.punches} punches, ${r.dialled} connections through relays, ${r.reverseLegs} answered`,
    );
  }
  const sw = s.switch;
  if (sw !== undefined) {
    head.push(`switch mode: ${sw.size} MACs (${sw.macs.filter((e) => e.owner === 'local').length} local), learned ${sw.learned}, moved ${sw.moved}, refused for room ${sw.full}; frames flooded ${sw.flooded}, unicast ${sw.unicast} (cluevpn status --json lists the MACs)`);
  }
  const own = dropsText(s.drops);
  if (own !== '-') head.push(`drops not tied to a peer: ${own}`);
  if (s.peers.length === 0) return `${head.join('\n')}\nno peers\n`;
  const rows = [['PEER', 'STATE', 'ENDPOINT', 'PATH', 'CIPHER', 'COMP', 'KEY AGE', 'NEGS', 'LAST RX', 'KEEPALIVE OUT/IN', 'PMTU', 'RX PKTS', 'RX BYTES', 'TX PKTS', 'TX BYTES', 'BNL', 'DROPS']];
  for (const p of s.peers) rows.push(peerRow(p, s.bnl.serial));
  return `${head.join('\n')}\n${table(rows)}\n`;
}

function peerRow(p: PeerStatus, mySerial: number): string[] {
  const serial = p.bnlSerial === null ? '?' : p.bnlSerial === mySerial ? String(p.bnlSerial) : `${p.bnlSerial}*`;
  return [
    p.name,
    p.restored && p.state !== 'idle' ? `${p.state}(restored)` : p.state,
    p.endpoint ?? '-',
    p.path ?? '-',
    p.cipher ?? '-',
    p.compression ?? '-',
    humanAgo(p.keyAgeMs),
    String(p.negotiations),
    humanAgo(p.lastRxMs),
    `${humanAgo(p.lastKeepaliveTxMs ?? null)}/${humanAgo(p.lastKeepaliveRxMs ?? null)}`,
    pmtuText(p),
    humanCount(p.rxPackets),
    humanCount(p.rxBytes, 1024),
    humanCount(p.txPackets),
    humanCount(p.txBytes, 1024),
    serial,
    dropsText(p.drops),
  ];
}

/** Path MTU column: `1280 (inner 1216, 2m ago)`; `-` before the first search ended. */
function pmtuText(p: PeerStatus): string {
  if (p.pmtu === null || p.pmtu === undefined) return '-';
  return `${p.pmtu} (inner ${p.innerMtu}, ${humanAgo(p.pmtuAgeMs ?? null)})`;
}

/** The `cluevpn peers` output: name, id, state, endpoint, subnets. */
export function renderPeers(peers: PeerStatus[]): string {
  const rows = [['PEER', 'ID', 'STATE', 'ENDPOINT', 'SUBNETS']];
  for (const p of peers) rows.push([p.name, String(p.id), p.state, p.endpoint ?? '-', p.subnets.join(',') || '-']);
  return `${table(rows)}\n`;
}

/** Escapes text for inside a DOT quoted string. */
const esc = (s: string): string => s.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/[\r\n]/g, ' ');
/** A quoted DOT id from raw text. */
const dotId = (s: string): string => `"${esc(s)}"`;
/** A quoted DOT label from raw lines (joined with DOT's `\n`). */
const dotLabel = (parts: string[]): string => `"${parts.map(esc).join('\\n')}"`;

const EDGE_STYLE: Record<PeerStatus['state'], string> = {
  up: 'color=darkgreen, penwidth=2',
  keyed: 'color=darkgreen, style=dashed',
  negotiating: 'color=orange, style=dashed',
  idle: 'color=gray, style=dotted',
};

/**
 * `cluevpn graph`: the mesh as seen from this node, in Graphviz DOT (like
 * `tinc dump graph`). Nodes carry name, id and the BNL serial they hold (a
 * red outline when it differs from ours); each link carries its state,
 * cipher and traffic in both directions. Render with `dot -Tsvg`.
 */
export function renderGraph(s: StatusReport): string {
  const lines = [`digraph ${dotId(`cluevpn ${s.netname}`)} {`, '  graph [overlap=false, splines=true];', '  node [shape=box, style=rounded];'];
  lines.push(`  ${dotId(s.name)} [label=${dotLabel([s.name, `id ${s.id}`, `BNL ${s.bnl.serial}`])}, style="rounded,bold"];`);
  for (const p of s.peers) {
    const stale = p.bnlSerial !== null && p.bnlSerial !== s.bnl.serial;
    const serial = p.bnlSerial === null ? '?' : String(p.bnlSerial);
    lines.push(`  ${dotId(p.name)} [label=${dotLabel([p.name, `id ${p.id}`, `BNL ${serial}`])}${stale ? ', color=red' : ''}];`);
  }
  for (const p of s.peers) {
    const label = [
      p.state + (p.restored ? ' (restored)' : ''),
      p.cipher ? `${p.cipher}${p.compression && p.compression !== 'none' ? ` + ${p.compression}` : ''}` : '',
      `out ${humanCount(p.txPackets)} pkts ${humanCount(p.txBytes, 1024)}B`,
      `in ${humanCount(p.rxPackets)} pkts ${humanCount(p.rxBytes, 1024)}B`,
    ]
      .filter((x) => x !== '');
    const via = p.path?.startsWith('via ') === true ? p.path.slice(4) : undefined;
    if (via !== undefined) {
      // relayed: drawn blue and dashed, labelled with the relay, plus a thin hint through it
      lines.push(`  ${dotId(s.name)} -> ${dotId(p.name)} [label=${dotLabel([`via ${via}`, ...label])}, color=blue, style="dashed,bold"];`);
      lines.push(`  ${dotId(via)} -> ${dotId(p.name)} [color=blue, style=dotted, arrowhead=none, constraint=false];`);
    } else {
      lines.push(`  ${dotId(s.name)} -> ${dotId(p.name)} [label=${dotLabel(label)}, ${EDGE_STYLE[p.state]}];`);
    }
  }
  lines.push('}');
  return `${lines.join('\n')}\n`;
}
