/**
 * Prometheus' text exposition format (version 0.0.4), read strictly enough
 * for tests: every line is a `# HELP`, a `# TYPE`, a sample or blank, every
 * sample belongs to a family declared by `# TYPE` before it, and label
 * values are unescaped. Anything else is `ERR_PROM_FORMAT`.
 *
 * ```ts
 * const m = parsePrometheusText(await (await fetch(url)).text());
 * m.value('cluevpn_peer_rx_packets_total', { peer: 'beta' });
 * ```
 */
import { TestLibError } from './errors.js';

/** One sample line. */
export interface PromSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** A parsed exposition. */
export interface PromText {
  samples: PromSample[];
  /** Family name → `counter` | `gauge` | `histogram` | `summary` | `untyped`. */
  types: Map<string, string>;
  /**
   * The value of the one sample `name` whose labels include `labels`;
   * undefined when none matches, `ERR_PROM_FORMAT` when several do.
   */
  value(name: string, labels?: Record<string, string>): number | undefined;
}

const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
const SAMPLE_RE = new RegExp(`^(${NAME})(?:\\{(.*)\\})?\\s+(\\S+)(?:\\s+-?\\d+)?$`);
const LABEL_RE = /\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)/y;

/** A float as Prometheus reads it (Go's ParseFloat: NaN and Inf in any case; prom-client writes `Nan`). */
function parseValue(raw: string, line: string): number {
  const lower = raw.toLowerCase();
  if (lower === '+inf' || lower === 'inf') return Infinity;
  if (lower === '-inf') return -Infinity;
  if (lower === 'nan') return NaN;
  const v = Number(raw);
  if (Number.isNaN(v)) throw new TestLibError('ERR_PROM_FORMAT', `bad sample value in: ${line}`);
  return v;
}

function parseLabels(raw: string, line: string): Record<string, string> {
  const out: Record<string, string> = {};
  LABEL_RE.lastIndex = 0;
  while (LABEL_RE.lastIndex < raw.length) {
    const m = LABEL_RE.exec(raw);
    if (m === null) throw new TestLibError('ERR_PROM_FORMAT', `bad labels in: ${line}`);
    out[m[1]!] = m[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    if (m[3] === '') break;
  }
  return out;
}

/** Parses the text; throws `ERR_PROM_FORMAT` on the first line that is not the format. */
export function parsePrometheusText(text: string): PromText {
  const samples: PromSample[] = [];
  const types = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    if (line.startsWith('#')) {
      const m = new RegExp(`^# (HELP|TYPE) (${NAME})(?: (.*))?$`).exec(line);
      if (m === null) continue; // other comments are allowed
      if (m[1] === 'TYPE') {
        if (!['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(m[3] ?? '')) throw new TestLibError('ERR_PROM_FORMAT', `bad type in: ${line}`);
        types.set(m[2]!, m[3]!);
      }
      continue;
    }
    const m = SAMPLE_RE.exec(line);
    if (m === null) throw new TestLibError('ERR_PROM_FORMAT', `not a sample line: ${line}`);
    const name = m[1]!;
    const family = [name, name.replace(/_(bucket|sum|count)$/, '')].find((f) => types.has(f));
    if (family === undefined) throw new TestLibError('ERR_PROM_FORMAT', `sample before its # TYPE: ${line}`);
    samples.push({ name, labels: m[2] === undefined ? {} : parseLabels(m[2], line), value: parseValue(m[3]!, line) });
  }
  return {
    samples,
    types,
    value(name, labels = {}) {
      const found = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
      if (found.length > 1) throw new TestLibError('ERR_PROM_FORMAT', `${found.length} samples of ${name} match ${JSON.stringify(labels)}`);
      return found[0]?.value;
    },
  };
}
