/**
 * `tc-query series`: traffic per step (total, or of an address / CIDR), with a bar chart. Steps
 * are aligned to multiples of the step in UTC, or with `--tz` follow that zone's calendar.
 */
import { Duck, querySql, BIGINT } from '../duck';
import { openReadOnly } from '../db';
import { parseStep, SERIES_STEPS, stepText, type Window } from '../window';
import { counted, render, type Answer, type ColumnSpec, type Format } from '../output';
import { collectColumns, LOG, missingDetail, planWindow, readRange, resolveWindow, seriesSql, totalsFromLog } from '../plan';
import { idsBetween, matchingIds, whereFor, type AddressMatch, type Filters } from '../filters';
import { checkSide, LocalSet, networksOf, partialNote, type LocalNetworkRow, type Side } from '../local';
import type { LabelTable } from '../labels';
import { coverage, completenessLine, completenessOf, emptyWindowNote, missingDetailNote } from '../coverage';
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
  /** Also the bytes received (in) and sent (out) by this side's addresses. */
  side?: Side;
}

const BAR_WIDTH = 40;
/** Rows a series may have: a window and step past it are refused before anything is read. */
export const MAX_STEPS = 100_000;

/** Rows a step would make of the window (an upper bound: one more for a partial first step and local days). */
export function stepCount(w: Window, stepMs: number, tz?: string): number {
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

/**
 * Refuses a step that is not a multiple of every interval length recorded in the window: an
 * interval counts in the step its start lies in, so a shorter step (or one that cuts intervals)
 * puts an interval's bytes in one step and overstates that step's rate. Names the intervals and
 * the steps that fit (the intervals' common multiple, and the offered steps that are multiples).
 */
export function checkStep(sqlite: Database.Database, window: Window, stepMs: number, tz?: string): void {
  // Every session's intervals fit (a file's sessions mostly share one length): nothing to look up per interval.
  if ((sqlite.prepare('select distinct interval_ms from sessions').pluck().all() as number[]).every((l) => l <= 0 || stepMs % l === 0)) return;
  const r = readRange(window);
  const lengths = (sqlite.prepare('select distinct s.interval_ms from batches b join sessions s on s.id = b.session_id where b.start_ms >= ? and b.start_ms < ? order by 1').pluck().all(r.fromMs, r.toMs) as number[]).filter((l) => l > 0);
  if (lengths.every((l) => stepMs % l === 0)) return;
  const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));
  const lcm = lengths.reduce((m, l) => (m / gcd(m, l)) * l, 1);
  // The steps named must also fit the window's rows (stepBounds refuses more than MAX_STEPS).
  const fits = (ms: number) => stepCount(window, ms, tz) <= MAX_STEPS;
  const nearest = Math.max(1, Math.ceil(stepMs / lcm)) * lcm;
  let least = Math.max(1, Math.ceil(Math.max(stepMs, (window.toMs - window.fromMs) / MAX_STEPS) / lcm)) * lcm;
  while (!fits(least)) least += lcm;
  const offered = SERIES_STEPS.filter((s) => parseStep(s) % lcm === 0 && parseStep(s) > least && fits(parseStep(s))).slice(0, 3);
  // Raised by the row limit: an offered step (1d rather than 5955s) where one fits.
  if (least > nearest && offered.length > 0) least = parseStep(offered.shift()!);
  const recorded = lengths.length === 1 ? `the ${stepText(lengths[0])} intervals recorded in this window` : `each of the interval lengths recorded in this window (${lengths.map(stepText).join(', ')})`;
  throw new TcError(
    `--step ${stepText(stepMs)} is ${stepMs < lcm && lengths.length === 1 ? 'shorter than' : 'not a multiple of'} ${recorded}: an interval counts whole in the step its start lies in, so the rates of such steps would be too high; use --step ${stepText(least)}${offered.length ? ` (or ${offered.join(', ')})` : ''}, a multiple of ${stepText(lcm)}`,
    'ERR_TC_USAGE',
  );
}

type SeriesRows = { columns: ArrayBufferView[]; count: number };

const seriesKeys = (perAddress: boolean, side: boolean) => [
  ...(perAddress ? ['start', 'end', 'packets', 'bytes', 'tx_packets', 'tx_bytes', 'rx_packets', 'rx_bytes'] : ['start', 'end', 'packets', 'bytes']),
  ...(side ? ['in_bytes', 'out_bytes'] : []),
];

/** The DuckDB table of the window's sums per interval or bucket start (see queries/series.sql). */
const TIME_SUMS = 'window_time_sums';
const TIME_SUMS_COLUMNS = ['t_ms', 'tx_packets', 'tx_bytes', 'rx_packets', 'rx_bytes', 'in_bytes', 'out_bytes'];

/**
 * Reads the window's sums per interval or bucket start over the addresses `ids` (all without a
 * filter), and `where` besides, as rows of TIME_SUMS_COLUMNS: the counters, or with `asSide`
 * the bytes those addresses received and sent as in_bytes and out_bytes.
 */
function* readSeries(sqlite: Database.Database, window: Window, stepMs: number, ids: AddressMatch | undefined, extra = { where: '', params: [] as unknown[] }, asSide = false): Generator<bigint[]> {
  // A filter that matches no address has no rows: the steps are all zero.
  if (ids?.some((c) => c.length === 0)) return;
  const w = whereFor('ip', ids, {});
  const where = `${w.where} ${extra.where}`;
  const planned = planWindow(sqlite, 'ip', window, { stepMs });
  const segments = ids === undefined && extra.where === '' ? totalsFromLog(sqlite, planned) : planned;
  // Few rows (one per interval or bucket), read into typed columns and copied into DuckDB whole.
  for (const s of segments) {
    for (const [t, txp, txb, rxp, rxb] of sqlite.prepare(seriesSql(s, where, stepMs)).safeIntegers(true).raw(true).iterate(s.fromMs, s.toMs, ...w.params, ...extra.params) as Iterable<bigint[]>) {
      yield asSide ? [t, 0n, 0n, 0n, 0n, rxb, txb] : [t, txp, txb, rxp, rxb, 0n, 0n];
    }
  }
}

/**
 * The in/out rows of `side` (see readSeries): each step by the networks local at some time of
 * it, steps with the same networks read together. Returns the rows and which steps have local
 * networks (the others' in_bytes and out_bytes are unknown: null).
 */
function readSide(sqlite: Database.Database, window: Window, bounds: number[], stepMs: number, ids: AddressMatch | undefined, side: Side, nets: LocalNetworkRow[]): { rows: bigint[][]; known: boolean[] } {
  const rows: bigint[][] = [];
  const known: boolean[] = [];
  const overflow = sqlite.prepare('select id from addresses where length(addr) = 0').pluck().all() as number[];
  const flush = (from: number, to: number, key: string, applying: LocalNetworkRow[]) => {
    if (from >= to || key === '') return;
    const set = new LocalSet(applying);
    const local = set.ranges().flatMap((r) => idsBetween(sqlite, r.lo, r.hi));
    const list = '(select value from json_each(?))';
    // Remote: every address but the local ones and the overflow row (on neither side).
    const extra = side === 'local' ? { where: `and d.ip_id in ${list}`, params: [JSON.stringify(local)] } : { where: `and d.ip_id not in ${list}`, params: [JSON.stringify([...local, ...overflow])] };
    rows.push(...readSeries(sqlite, { fromMs: from, toMs: to, all: false }, stepMs, ids, extra, true));
  };
  let run = { from: 0, to: 0, key: '', nets: [] as LocalNetworkRow[] };
  for (let i = 0; i + 1 < bounds.length; i++) {
    const from = Math.max(bounds[i], window.fromMs);
    const to = Math.min(bounds[i + 1], window.toMs);
    const applying = nets.filter((n) => n.from_ms < to && n.to_ms > from);
    const key = [...new Set(applying.map((n) => n.network))].sort().join(' ');
    known.push(key !== '');
    if (i > 0 && key === run.key) run.to = to;
    else {
      flush(run.from, run.to, run.key, run.nets);
      run = { from, to, key, nets: applying };
    }
  }
  flush(run.from, run.to, run.key, run.nets);
  return { rows, known };
}

export async function series(o: SeriesOptions): Promise<Answer> {
  const sqlite = openReadOnly(o.db);
  let duck: Duck | undefined;
  try {
    // SQLite is read here while DuckDB starts; a window without intervals reads no rows (its
    // note is the answer).
    const opened = await Duck.openAlongside(() => {
      const window = resolveWindow(sqlite, o.window);
      checkStep(sqlite, window, o.stepMs, o.tz);
      const bounds = stepBounds(window, o.stepMs, o.tz);
      const alignMs = alignment(bounds, o.stepMs);
      const ids = matchingIds(sqlite, o.filters, o.labels);
      const cov = coverage(sqlite, window);
      const empty = emptyWindowNote(sqlite, cov, window, o.tz);
      // --side: the networks of the window, and each step's.
      checkSide(sqlite, o.side, window.fromMs, window.toMs, o.tz);
      const nets = o.side ? networksOf(sqlite, window.fromMs, window.toMs) : [];
      const kinds = TIME_SUMS_COLUMNS.map(() => 'i64' as const);
      let known: boolean[] = [];
      let read: { empty: string } | { sums: SeriesRows } = { empty: empty ?? '' };
      if (!empty) {
        const sideRows = o.side ? readSide(sqlite, window, bounds, alignMs, ids, o.side, nets) : { rows: [], known: [] };
        known = sideRows.known;
        read = { sums: collectColumns((function* () { yield* readSeries(sqlite, window, alignMs, ids); yield* sideRows.rows; })(), kinds) };
      }
      // A total is read from the interval log where it still holds the intervals: no detail is missing there.
      const planned = planWindow(sqlite, 'ip', window, { stepMs: alignMs });
      const fromDetail = ids === undefined && !o.side ? totalsFromLog(sqlite, planned).filter((s) => s.source !== LOG) : planned;
      const missing = empty ? undefined : missingDetailNote(missingDetail(sqlite, 'ip', fromDetail), 'detail at this step', 'use a coarser --step there (1d keeps every day)', o.tz);
      const partial = o.side && !empty ? partialNote(sqlite, window.fromMs, window.toMs) : undefined;
      return { window, bounds, ids, cov, read, known, notes: [missing, partial].filter((n): n is string => n !== undefined) };
    });
    duck = opened.duck;
    const { window, bounds, ids, cov, read, known, notes } = opened.result;
    const facts = { window, coverage: cov, completeness: completenessOf(cov, window) };
    const perAddress = ids !== undefined;
    const side = o.side !== undefined;
    if ('empty' in read) return { out: o.format === 'json' ? '[]\n' : o.format === 'csv' ? `${seriesKeys(perAddress, side).join(',')}\n` : '', notes: [read.empty], ...facts };
    const big = (name: string) => ({ name, sqlType: 'BIGINT', type: BIGINT });
    await duck.loadColumns(TIME_SUMS, TIME_SUMS_COLUMNS.map(big), [read.sums]);
    const starts = BigInt64Array.from(bounds.slice(0, -1), BigInt);
    const ends = BigInt64Array.from(bounds.slice(1), BigInt);
    await duck.loadColumns('steps', [big('start_ms'), big('end_ms')], [{ columns: [starts, ends], count: starts.length }]);
    await duck.lockDown();
    const result = await duck.rows(querySql('series'), { per_address: perAddress });
    const out = result.map((r, i) => {
      const row: Record<string, unknown> = {
        start: formatTime(Number(r.start_ms), o.format === 'json' || o.format === 'csv' ? undefined : o.tz),
        end: formatTime(Number(r.end_ms), o.format === 'json' || o.format === 'csv' ? undefined : o.tz),
        packets: r.packets,
        bytes: r.bytes,
      };
      if (perAddress) Object.assign(row, { tx_packets: r.tx_packets, tx_bytes: r.tx_bytes, rx_packets: r.rx_packets, rx_bytes: r.rx_bytes });
      // A step without local networks has no side: its in and out are unknown.
      if (side) Object.assign(row, known[i] ? { in_bytes: r.in_bytes, out_bytes: r.out_bytes } : { in_bytes: null, out_bytes: null });
      return row;
    });
    if (o.format !== 'table') return { out: render(o.format, seriesKeys(perAddress, side).map((key) => ({ key })), out), notes, ...facts };
    const footer = completenessLine(cov, o.tz);
    // Nothing to chart: the completeness line says what the window holds.
    if (!result.some((r) => Number(r.packets) > 0)) return { out: `${footer}\n`, notes, ...facts };
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
      ...(side
        ? [
            { key: 'in_bytes', header: `${o.side} in`, human: (v: unknown) => (v === null ? '' : bytes(v as bigint)) },
            { key: 'out_bytes', header: `${o.side} out`, human: (v: unknown) => (v === null ? '' : bytes(v as bigint)) },
          ]
        : []),
      { key: 'chart', align: 'left', header: '' },
    ];
    for (const r of out) r.rate = bitRate(r.bytes as bigint, r.secs as number);
    return { out: render('table', cols, out, footer), notes, ...facts };
  } finally {
    duck?.close();
    sqlite.close();
  }
}
