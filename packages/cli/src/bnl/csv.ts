/**
 * `bnl import-csv`: bulk set-up, like ClueVPN's csv2bnl. The first line is a
 * header naming the columns (any order, case-insensitive):
 *
 *   name,id,ipv4,ipv6,host,port,subnets,fingerprint,relay,prefer,tags
 *
 * Only `name` is required. `subnets` and `tags` hold several values
 * separated by spaces or semicolons. Empty cells mean "not set". Quoted
 * cells ("a,b") follow RFC 4180. Blank lines and lines starting with `#`
 * are skipped. Every row becomes `bnl add NAME key=value…`.
 */
import { BnlCliError, BnlExit } from './exit-codes.js';
import type { KeyValue } from './edit.js';

const COLUMNS = new Set(['name', 'id', 'ipv4', 'ipv6', 'host', 'port', 'subnets', 'fingerprint', 'relay', 'prefer', 'tags']);

/** One row: the node name, its key=value settings, and its line number. */
export interface CsvRow {
  line: number;
  name: string;
  kvs: KeyValue[];
}

function splitCsvLine(text: string, line: number, file: string): string[] {
  const cells: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        cur += '"';
        i++;
      } else if (c === '"') quoted = false;
      else cur += c;
    } else if (c === '"' && cur === '') quoted = true;
    else if (c === ',') {
      cells.push(cur.trim());
      cur = '';
    } else cur += c;
  }
  if (quoted) throw new BnlCliError(BnlExit.invalid, `${file} line ${line}: unterminated quote`, 'close the quoted cell');
  cells.push(cur.trim());
  return cells;
}

/** Parses the CSV text into rows; throws an `invalid` error naming the file and line. */
export function parseNodeCsv(text: string, file: string): CsvRow[] {
  const lines = text.split(/\r?\n/);
  let header: string[] | undefined;
  const rows: CsvRow[] = [];
  lines.forEach((raw, i) => {
    const line = i + 1;
    if (raw.trim() === '' || raw.trimStart().startsWith('#')) return;
    const cells = splitCsvLine(raw, line, file);
    if (!header) {
      header = cells.map((c) => c.toLowerCase());
      const unknown = header.filter((h) => !COLUMNS.has(h));
      if (unknown.length) throw new BnlCliError(BnlExit.invalid, `${file} line ${line}: unknown column "${unknown[0]}"`, `columns are ${[...COLUMNS].join(',')}`);
      if (!header.includes('name')) throw new BnlCliError(BnlExit.invalid, `${file} line ${line}: no "name" column in the header`, `start the file with a header such as name,ipv4,port,subnets`);
      if (new Set(header).size !== header.length) throw new BnlCliError(BnlExit.invalid, `${file} line ${line}: a column appears twice`, 'name each column once');
      return;
    }
    if (cells.length !== header.length) throw new BnlCliError(BnlExit.invalid, `${file} line ${line}: ${cells.length} cells, the header has ${header.length}`, 'give one cell per column (empty cells are allowed)');
    let name = '';
    const kvs: KeyValue[] = [];
    header.forEach((h, j) => {
      const v = cells[j];
      if (v === '') return;
      if (h === 'name') name = v;
      else if (h === 'subnets' || h === 'tags') for (const part of v.split(/[\s;]+/).filter(Boolean)) kvs.push({ key: h === 'subnets' ? 'subnet' : 'tag', value: part });
      else kvs.push({ key: h, value: v });
    });
    if (!name) throw new BnlCliError(BnlExit.invalid, `${file} line ${line}: empty name`, 'every row needs a node name');
    rows.push({ line, name, kvs });
  });
  if (!header) throw new BnlCliError(BnlExit.invalid, `${file}: no header line`, 'start the file with a header such as name,ipv4,port,subnets');
  return rows;
}
