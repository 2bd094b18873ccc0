/** Output of tc-query: table (human units), json (exactly one document), csv (exact integers). */
import type { Completeness, Coverage } from './coverage';
import type { Window } from './window';

export type Format = 'table' | 'json' | 'csv';

export interface ColumnSpec {
  key: string;
  header?: string;
  /** Formatter for the table form; json and csv print the exact value. */
  human?: (v: unknown) => string;
  align?: 'left' | 'right';
  /** Shown only in the table form (e.g. rates derived from another column). */
  tableOnly?: boolean;
  /** Shown only in json and csv (a field the table shows another way). */
  dataOnly?: boolean;
}

/** JSON with bigints written as exact integers. */
export function toJson(v: unknown): string {
  return JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? (x <= BigInt(Number.MAX_SAFE_INTEGER) && x >= -BigInt(Number.MAX_SAFE_INTEGER) ? Number(x) : `__BIG__${x}`) : x)).replace(
    /"__BIG__(-?\d+)"/g,
    '$1',
  );
}

function csvCell(v: unknown): string {
  const s = v === null || v === undefined ? '' : String(v);
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function render(format: Format, allCols: ColumnSpec[], rows: Record<string, unknown>[], footer?: string): string {
  const cols = format === 'table' ? allCols.filter((c) => !c.dataOnly) : allCols.filter((c) => !c.tableOnly);
  if (format === 'json') return `${toJson(rows.map((r) => Object.fromEntries(cols.map((c) => [c.key, r[c.key]]))))}\n`;
  if (format === 'csv') {
    const lines = [cols.map((c) => csvCell(c.key)).join(',')];
    for (const r of rows) lines.push(cols.map((c) => csvCell(r[c.key])).join(','));
    return `${lines.join('\n')}\n`;
  }
  const cells = rows.map((r) => cols.map((c) => (c.human ? c.human(r[c.key]) : String(r[c.key] ?? ''))));
  return `${boxTable(cols.map((c) => c.header ?? c.key), cols.map((c) => c.align ?? 'right'), cells)}\n${footer ? `${footer}\n` : ''}`;
}

/**
 * A boxed table, one line per row. Written here rather than with cli-table3, whose cost per row
 * makes a long series take minutes; this is one pass for the widths and one for the lines. Widths count code points (every cell is ASCII, or the
 * one-column block characters of the bar chart).
 */
function boxTable(head: string[], align: ('left' | 'right')[], rows: string[][]): string {
  const len = (s: string) => [...s].length;
  const widths = head.map((h, i) => rows.reduce((w, r) => Math.max(w, len(r[i])), len(h)));
  const line = (l: string, m: string, r: string) => `${l}${widths.map((w) => '─'.repeat(w + 2)).join(m)}${r}`;
  const row = (cells: string[]) => {
    const padded = cells.map((c, i) => {
      const fill = ' '.repeat(widths[i] - len(c));
      return align[i] === 'left' ? `${c}${fill}` : `${fill}${c}`;
    });
    return `│ ${padded.join(' │ ')} │`;
  };
  return [line('┌', '┬', '┐'), row(head), ...rows.map(row), line('└', '┴', '┘')].join('\n');
}

/** An error: one JSON document on stdout in json mode, else one line on stderr (with `hint`, what to read next). */
export function renderError(format: Format, message: string, code: string, hint = ''): { out?: string; err?: string } {
  if (format === 'json') return { out: `${toJson({ error: { message, code } })}\n` };
  return { err: `tc-query: error: ${message}${hint}\n` };
}

/**
 * An answer: the document for stdout, and notes for stderr that explain it (an empty window, ...);
 * with the window read (--all: the recorded span) and how complete it is, for what draws or
 * serves the same document (chart's caption).
 */
export interface Answer {
  out: string;
  notes: string[];
  window?: Window;
  coverage?: Coverage;
  /** How complete the window's answer is (sent by `tc-query serve` in a header; the table shows its line). */
  completeness?: Completeness;
}

/** "1 interval", "2 intervals" (with thousands separators): the recorder's words too. */
export { plural as counted } from '../units';
