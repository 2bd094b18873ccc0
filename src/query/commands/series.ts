/**
 * `tc-query series`: traffic per step (total, or of an address / CIDR), with a bar chart. Steps
 * are aligned to multiples of the step in UTC, or with `--tz` follow that zone's calendar.
 */
import { Duck, querySql, BIGINT } from '../duck';
import { openReadOnly } from '../db';
import { parseStep, SERIES_STEPS, stepText, type Window } from '../window';
import { counted, render, type Answer, type ColumnSpec, type Format } from '../output';
import { collectColumns, missingDetail, planWindow, resolveWindow, seriesSql } from '../plan';
import { matchingIds, whereFor, type AddressMatch, type Filters } from '../filters';
import type { LabelTable } from '../labels';
import { coverage, completenessLine, emptyWindowNote, missingDetailNote } from '../coverage';
import type Database from 'better-sqlite3';
import { formatTime, localSteps } from '../time';
import { bitRate, bytes, si } from '../../units';
import { TcError } from '../../errors';

export interface SeriesOptions {
  db: string;
  window: Window;
  stepMs: number;
  format: Format;
  filters: Filters;
  tz?: string;
  /** The label file of --label. */
  labels?: LabelTable;
}

const BAR_WIDTH = 40;
/** Rows a series may have: a window and step past it are refused before anything is read. */
export const MAX_STEPS = 100_000;

/** Rows a step would make of the window (an upper bound: one more for a partial first step and local days). */
function stepCount(w: Window, stepMs: number, tz?: string): number {
  const first = Math.floor(w.fromMs / stepMs) * stepMs;
  const n = Math.ceil((w.toMs - first) / stepMs);
  return tz && tz !== 'UTC' ? n + Math.ceil((w.toMs - w.fromMs) / 86_400_000) + 1 : n;
}

/**
 * The window's steps: their starts and the end of the last one, aligned to multiples of the
 * step in UTC, or in the zone's calendar. Refuses a window and step that would make more than
 * MAX_STEPS rows, naming a step that fits.
 */
export function stepBounds(w: Window, stepMs: number, tz?: string): number[] {
  if (w.toMs <= w.fromMs) return [];
  const n = stepCount(w, stepMs, tz);
  if (n > MAX_STEPS) {
    const fits = SERIES_STEPS.find((s) => parseStep(s) > stepMs && stepCount(w, parseStep(s), tz) <= MAX_STEPS);
    const range = `${formatTime(w.fromMs, tz)} to ${formatTime(w.toMs, tz)}`;
    throw new TcError(
      `--step ${stepText(stepMs)} over ${range} would make ${counted(n, 'row')} (at most ${counted(MAX_STEPS, 'row')}): ${fits ? `use --step ${fits} (${counted(stepCount(w, parseStep(fits), tz), 'row')}) or ` : ''}narrow the window with --since/--until`,
      'ERR_TC_USAGE',
    );
  }
  if (tz && tz !== 'UTC') return localSteps(w.fromMs, w.toMs, stepMs, tz);
  const out: number[] = [];
  for (let s = Math.floor(w.fromMs / stepMs) * stepMs; ; s += stepMs) {
    out.push(s);
    if (s >= w.toMs) return out;
  }
}

/** The largest duration every bound is a multiple of: rollup buckets of that size (or finer) fit the steps. */
function alignment(bounds: number[], stepMs: number): number {
  const gcd = (a: number, b: number): number => (b === 0 ? Math.abs(a) : gcd(b, a % b));
  return bounds.reduce((g, b) => gcd(g, b), stepMs);
}

type SeriesRows = { columns: ArrayBufferView[]; count: number };

const seriesKeys = (perAddress: boolean) => (perAddress ? ['start', 'end', 'packets', 'bytes', 'tx_packets', 'tx_bytes', 'rx_packets', 'rx_bytes'] : ['start', 'end', 'packets', 'bytes']);

/** The DuckDB table of the window's sums per interval or bucket start (see queries/series.sql). */
const TIME_SUMS = 'window_time_sums';
const TIME_SUMS_COLUMNS = ['t_ms', 'tx_packets', 'tx_bytes', 'rx_packets', 'rx_bytes'];

/**
 * Reads the window's sums per interval or bucket start (t_ms, tx_packets, tx_bytes, rx_packets,
 * rx_bytes) over the addresses `ids` (all without a filter) into typed columns.
 */
function readSeries(sqlite: Database.Database, window: Window, stepMs: number, ids: AddressMatch | undefined): SeriesRows {
  const kinds = TIME_SUMS_COLUMNS.map(() => 'i64' as const);
  // A filter that matches no address has no rows: the steps are all zero.
  if (ids?.some((c) => c.length === 0)) return collectColumns([], kinds);
  const w = whereFor('ip', ids, {});
  const segments = planWindow(sqlite, 'ip', window, { stepMs });
  // Few rows (one per interval or bucket), read into typed columns and copied into DuckDB whole.
  function* rows(): Generator<bigint[]> {
    for (const s of segments) yield* sqlite.prepare(seriesSql(s, w.where)).safeIntegers(true).raw(true).iterate(s.fromMs, s.toMs, ...w.params) as Iterable<bigint[]>;
  }
  return collectColumns(rows(), kinds);
}

export async function series(o: SeriesOptions): Promise<Answer> {
  const sqlite = openReadOnly(o.db);
  let duck: Duck | undefined;
  try {
    // SQLite is read here while DuckDB starts; a window without intervals reads no rows (its
    // note is the answer).
    const opened = await Duck.openAlongside(() => {
      const window = resolveWindow(sqlite, o.window);
      const bounds = stepBounds(window, o.stepMs, o.tz);
      const alignMs = alignment(bounds, o.stepMs);
      const ids = matchingIds(sqlite, o.filters, o.labels);
      const cov = coverage(sqlite, window);
      const empty = emptyWindowNote(sqlite, cov, window, o.tz);
      const read: { empty: string } | { sums: SeriesRows } = empty ? { empty } : { sums: readSeries(sqlite, window, alignMs, ids) };
      const missing = empty
        ? undefined
        : missingDetailNote(missingDetail(sqlite, 'ip', planWindow(sqlite, 'ip', window, { stepMs: alignMs })), 'detail at this step', 'use a coarser --step there (1d keeps every day)', o.tz);
      return { bounds, ids, cov, read, notes: missing ? [missing] : [] };
    });
    duck = opened.duck;
    const { bounds, ids, cov, read, notes } = opened.result;
    const perAddress = ids !== undefined;
    if ('empty' in read) return { out: o.format === 'json' ? '[]\n' : o.format === 'csv' ? `${seriesKeys(perAddress).join(',')}\n` : '', notes: [read.empty] };
    const big = (name: string) => ({ name, sqlType: 'BIGINT', type: BIGINT });
    await duck.loadColumns(TIME_SUMS, TIME_SUMS_COLUMNS.map(big), [read.sums]);
    const starts = BigInt64Array.from(bounds.slice(0, -1), BigInt);
    const ends = BigInt64Array.from(bounds.slice(1), BigInt);
    await duck.loadColumns('steps', [big('start_ms'), big('end_ms')], [{ columns: [starts, ends], count: starts.length }]);
    await duck.lockDown();
    const result = await duck.rows(querySql('series'), { per_address: perAddress });
    const out = result.map((r) => {
      const row: Record<string, unknown> = {
        start: formatTime(Number(r.start_ms), o.format === 'json' || o.format === 'csv' ? undefined : o.tz),
        end: formatTime(Number(r.end_ms), o.format === 'json' || o.format === 'csv' ? undefined : o.tz),
        packets: r.packets,
        bytes: r.bytes,
      };
      if (perAddress) Object.assign(row, { tx_packets: r.tx_packets, tx_bytes: r.tx_bytes, rx_packets: r.rx_packets, rx_bytes: r.rx_bytes });
      return row;
    });
    if (o.format !== 'table') return { out: render(o.format, seriesKeys(perAddress).map((key) => ({ key })), out), notes };
    const footer = completenessLine(cov, o.tz);
    // Nothing to chart: the completeness line says what the window holds.
    if (!result.some((r) => Number(r.packets) > 0)) return { out: `${footer}\n`, notes };
    const max = out.reduce((m, r) => (Number(r.bytes) > m ? Number(r.bytes) : m), 0);
    result.forEach((r, i) => {
      const n = max > 0 ? Math.round((Number(out[i].bytes) / max) * BAR_WIDTH) : 0;
      out[i].chart = '█'.repeat(n) || (Number(out[i].bytes) > 0 ? '▏' : '');
      // Steps of the local calendar differ in length (a daylight-saving day has 23 or 25 hours).
      out[i].secs = (Number(r.end_ms) - Number(r.start_ms)) / 1000;
    });
    const cols: ColumnSpec[] = [
      { key: 'start', align: 'left' },
      { key: 'bytes', human: (v) => bytes(v as bigint) },
      { key: 'packets', header: 'pkts', human: (v) => si(v as bigint) },
      { key: 'rate', header: 'bit/s' },
      { key: 'chart', align: 'left', header: '' },
    ];
    for (const r of out) r.rate = bitRate(r.bytes as bigint, r.secs as number);
    return { out: render('table', cols, out, footer), notes };
  } finally {
    duck?.close();
    sqlite.close();
  }
}
