/**
 * `tc-query chart`: the answer of `series` or `top` drawn as an SVG or PNG file. The numbers are
 * the JSON document those commands print (the same functions are called with format json), so
 * a chart never disagrees with `tc-query series|top --format json` for the same options.
 */
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { openReadOnly } from '../db';
import { resolveWindow } from '../plan';
import { MAX_CHART_PX, SERIES_STEPS, parseStep, stepText, type Window } from '../window';
import type { Filters } from '../filters';
import type { LabelTable } from '../labels';
import { addressKey, isKeyBy, type KeySources } from '../keys';
import type { Side } from '../local';
import { completenessLine, type Coverage } from '../coverage';
import { formatTime } from '../time';
import { counted, toJson, type Answer } from '../output';
import { checkFileOut, discard, publish, stagingPath, writeFailed } from '../out';
import { series, stepCount } from './series';
import { top, PROTO, type TopBy } from './top';
import { readAheadTop } from '../prefetch';
import { barHeight, barSvg, plotWidth, timeSvg, type Part } from '../chart/svg';
import { TcError } from '../../errors';
import { DAY_MS } from '../../schema/levels';

export const CHART_WHATS = ['series', 'top'] as const;
export type ChartWhat = (typeof CHART_WHATS)[number];

/** The file types chart writes, by the extension of --out. */
export const CHART_TYPES = ['svg', 'png'] as const;
export type ChartType = (typeof CHART_TYPES)[number];

/** Size of a chart unless --width / --height say otherwise (a bar chart's height: what its bars need). */
export const CHART_WIDTH = 800;
export const SERIES_HEIGHT = 400;
/** Pixels of the plot a step gets at least without --step: wide enough to see. */
const AUTO_STEP_PX = 2;

export interface ChartOptions {
  db: string;
  what: ChartWhat;
  out: string;
  force: boolean;
  width: number;
  height?: number;
  title?: string;
  window: Window;
  filters: Filters;
  tz?: string;
  /** --what series: the step (undefined: the first of SERIES_STEPS whose steps are AUTO_STEP_PX wide or more). */
  stepMs?: number;
  labels?: LabelTable;
  /** --what top: top's own options. */
  by: TopBy;
  limit: number;
  keys: KeySources;
  side?: Side;
}

/** What was written: the document `--format json` prints. */
export interface ChartResult {
  path: string;
  format: ChartType;
  width: number;
  height: number;
  what: ChartWhat;
  /** The drawn series (data-series in the SVG): total, or tx and rx; top's bars: bytes, or tx and rx. */
  series: string[];
  window: { since: string; until: string };
  step?: string;
  bars?: number;
  completeness: { line: string; intervals: number; gaps: number; gap_seconds: number; lost_intervals: number; drop_pct: number };
  notes: string[];
}

/** The file type of --out, refused before anything is read. */
export function chartType(out: string): ChartType {
  const ext = path.extname(out).toLowerCase().replace(/^\./, '');
  if ((CHART_TYPES as readonly string[]).includes(ext)) return ext as ChartType;
  const named = ext ? `ends in .${ext}` : 'has no extension';
  throw new TcError(`--out ${out} ${named}: chart writes ${CHART_TYPES.map((t) => `.${t}`).join(' or ')}; name the file FILE.png or FILE.svg`, 'ERR_TC_USAGE');
}

/** Who the series is of, for the title. */
function subject(f: Filters): string {
  if (f.ip !== undefined) return f.ip;
  if (f.cidr !== undefined) return `the addresses in ${f.cidr}`;
  if (f.label !== undefined) return `the addresses labelled ${f.label}`;
  return 'all traffic';
}

const range = (w: Window, tz?: string) => `${formatTime(w.fromMs, tz)} to ${formatTime(w.toMs, tz)}`;

/**
 * No data to draw. `empty`: the window holds no intervals, and the answer's notes say what the
 * file covers; else `what` found nothing in the window, said with its completeness line (and the
 * notes, time counted as 0 ...).
 */
function nothing(what: string, a: Answer, tz: string | undefined, empty: boolean): TcError {
  const why = empty && a.notes.length > 0 ? a.notes.join('; ') : [`${what} in ${range(a.window!, tz)} (${completenessLine(a.coverage!, tz)})`, ...a.notes].join('; ');
  return new TcError(`nothing to draw: ${why}`, 'ERR_TC_NO_DATA');
}

/**
 * The step of a series chart: --step, refused when its steps would be narrower than a pixel of
 * the plot (drawn there they blend into a band that shows neither the peaks nor the mean); without
 * it the first offered step whose steps are AUTO_STEP_PX wide, else the fewest whole days whose
 * steps are a pixel wide (a window of years).
 */
function chartStep(o: ChartOptions): number {
  const sqlite = openReadOnly(o.db);
  let window: Window;
  try {
    window = resolveWindow(sqlite, o.window);
  } finally {
    sqlite.close();
  }
  const px = plotWidth(o.width);
  // An upper bound of the steps, which (unlike stepBounds) never refuses a step too fine for `series`.
  const steps = (stepMs: number) => stepCount(window, stepMs, o.tz);
  const offered = SERIES_STEPS.map(parseStep);
  const days = () => {
    let k = Math.max(1, Math.ceil(steps(DAY_MS) / px));
    while (steps(k * DAY_MS) > px) k++;
    return k * DAY_MS;
  };
  if (o.stepMs === undefined) return offered.find((s) => steps(s) * AUTO_STEP_PX <= px) ?? days();
  const n = steps(o.stepMs);
  if (n <= px) return o.stepMs;
  const fits = offered.find((s) => s > o.stepMs! && steps(s) <= px) ?? days();
  // A wider chart only where --width allows it (at most MAX_CHART_PX); else a coarser step is the way.
  const wide = n + (o.width - px);
  const ways = [`use --step ${stepText(fits)} (${counted(steps(fits), 'step')})`, ...(wide <= MAX_CHART_PX ? [`give --width ${wide} or more`] : []), 'leave --step out'];
  throw new TcError(
    `--step ${stepText(o.stepMs)} over ${range(window, o.tz)} makes ${counted(n, 'step')}, more than the ${px} pixels across the plot of a ${o.width} px wide chart: ${ways.map((w, i) => (i < ways.length - 1 ? `${w}, ` : `or ${w}`)).join('')}`,
    'ERR_TC_USAGE',
  );
}

type Row = Record<string, number | string | null>;

async function seriesChart(o: ChartOptions) {
  const stepMs = chartStep(o);
  const a = await series({ db: o.db, window: o.window, stepMs, format: 'json', filters: o.filters, tz: o.tz, labels: o.labels });
  const rows = JSON.parse(a.out) as Row[];
  if (rows.length === 0) throw nothing('no intervals', a, o.tz, true);
  if (!rows.some((r) => Number(r.bytes) > 0)) throw nothing(`${subject(o.filters)} has no traffic`, a, o.tz, false);
  const window = a.window!;
  // tx and rx when the series is of some addresses (their sum is the bytes); else the total.
  const split = 'tx_bytes' in rows[0];
  const parts: Part[] = split
    ? [
        { name: 'rx', label: 'rx (received)' },
        { name: 'tx', label: 'tx (sent)' },
      ]
    : [{ name: 'total', label: 'total (each packet once)' }];
  const steps = rows.map((r) => ({
    start: Math.max(Date.parse(String(r.start)), window.fromMs),
    end: Math.min(Date.parse(String(r.end)), window.toMs),
    bytes: split ? [Number(r.rx_bytes), Number(r.tx_bytes)] : [Number(r.bytes)],
  }));
  const texts = {
    title: o.title ?? `${subject(o.filters)}: bytes/s`,
    subtitle: `${range(window, o.tz)}, step ${stepText(stepMs)} (${counted(steps.length, 'step')}), ${path.basename(o.db)}`,
    caption: completenessLine(a.coverage!, o.tz),
    notes: a.notes,
  };
  const height = o.height ?? SERIES_HEIGHT;
  const svg = await timeSvg({ ...texts, steps, parts, width: o.width, height, tz: o.tz });
  return { svg, a, parts, width: o.width, height, extra: { step: stepText(stepMs) } };
}

/** A bar's words: the address (with its name), the flow, or the key. */
function barLabel(r: Row, o: ChartOptions): string {
  if (o.by === 'flow') {
    const proto = PROTO[Number(r.proto)] ?? String(r.proto);
    const port = (p: unknown) => (Number(p) > 0 ? `:${p}` : '');
    return `${r.src}${port(r.sport)} → ${r.dst}${port(r.dport)} ${proto}`;
  }
  if (isKeyBy(o.by)) {
    const key = addressKey(o.by, o.keys);
    if (o.by === 'asn') return r.asn === null ? String(r.as_name ?? key.none) : `AS${r.asn} ${r.as_name ?? ''}`.trim();
    const v = r[key.fields[0].key];
    return v === null || v === undefined ? key.none : String(v);
  }
  return r.name ? `${r.ip} (${r.name})` : String(r.ip);
}

async function topChart(o: ChartOptions) {
  const prefetched = readAheadTop(o.db, { by: o.by, window: o.window, filters: o.filters, labels: o.keys.labels, side: o.side, tz: o.tz });
  const a = await top({ db: o.db, by: o.by, window: o.window, limit: o.limit, format: 'json', filters: o.filters, tz: o.tz, prefetched, keys: o.keys, side: o.side });
  const rows = JSON.parse(a.out) as Row[];
  if (rows.length === 0) throw nothing(`no ${o.by === 'flow' ? 'flows' : 'traffic'}${Object.values(o.filters).some((v) => v !== undefined) ? ' matching the filters' : ''}`, a, o.tz, a.coverage!.intervals === 0);
  const window = a.window!;
  const split = 'tx_bytes' in rows[0];
  const parts: Part[] = split
    ? [
        { name: 'tx', label: 'tx (sent)' },
        { name: 'rx', label: 'rx (received)' },
      ]
    : [{ name: 'bytes', label: o.by === 'src' ? 'bytes sent' : o.by === 'dst' ? 'bytes received' : 'bytes' }];
  const bars = rows.map((r) => ({ label: barLabel(r, o), bytes: split ? [Number(r.tx_bytes), Number(r.rx_bytes)] : [Number(r.bytes)] }));
  const noun = o.by === 'flow' ? 'flows' : isKeyBy(o.by) ? `${o.by === 'asn' ? 'ASes' : `${o.by}s`}` : o.by === 'src' ? 'senders' : o.by === 'dst' ? 'receivers' : 'addresses';
  const texts = {
    title: o.title ?? `top ${noun} by bytes`,
    subtitle: `${range(window, o.tz)}, ${counted(bars.length, 'bar')}${o.side ? `, ${o.side} side` : ''}, ${path.basename(o.db)}`,
    caption: completenessLine(a.coverage!, o.tz),
    notes: a.notes,
  };
  const height = o.height ?? barHeight(bars.length, parts.length, texts, o.width);
  const svg = await barSvg({ ...texts, bars, parts, width: o.width, height });
  return { svg, a, parts, width: o.width, height, extra: { bars: bars.length } };
}

/**
 * Draws the chart and writes --out (staged beside it and renamed, so a reader sees the old or
 * the new file whole). Returns what was written, and the caption (the completeness line in the
 * display zone; the result's times are UTC, as every JSON document's).
 */
export async function chart(o: ChartOptions): Promise<{ result: ChartResult; caption: string }> {
  const type = chartType(o.out);
  checkFileOut(o.out, o.db, o.force);
  const drawn = o.what === 'series' ? await seriesChart(o) : await topChart(o);
  const tmp = stagingPath(o.out);
  let size = { width: drawn.width, height: drawn.height };
  try {
    if (type === 'svg') writeFileSync(tmp, drawn.svg);
    else {
      // resvg loads only when a PNG is asked for.
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const { renderPng } = require('../chart/png') as typeof import('../chart/png');
      const r = renderPng(drawn.svg);
      size = { width: r.width, height: r.height };
      writeFileSync(tmp, r.png);
    }
    publish(tmp, o.out);
  } catch (err) {
    discard(tmp);
    throw writeFailed(o.out, tmp, err);
  }
  const cov: Coverage = drawn.a.coverage!;
  const result: ChartResult = {
    path: path.resolve(o.out),
    format: type,
    ...size,
    what: o.what,
    series: drawn.parts.map((p) => p.name),
    window: { since: formatTime(drawn.a.window!.fromMs), until: formatTime(drawn.a.window!.toMs) },
    ...drawn.extra,
    completeness: { line: completenessLine(cov), intervals: cov.intervals, gaps: cov.gaps, gap_seconds: Math.round(cov.gap_ms / 1000), lost_intervals: cov.lost_intervals, drop_pct: cov.drop_pct },
    notes: drawn.a.notes,
  };
  return { result, caption: completenessLine(cov, o.tz) };
}

/** The text report of a chart written (stderr, as export and copy report theirs). */
export function chartText(r: ChartResult, caption: string, tz?: string): string {
  const what = r.what === 'series' ? `series ${r.series.join(', ')}, step ${r.step}` : `${counted(r.bars!, 'bar')} (${r.series.join(', ')})`;
  return `wrote ${r.path} (${r.format.toUpperCase()} ${r.width}x${r.height}; ${what}; ${formatTime(Date.parse(r.window.since), tz)} to ${formatTime(Date.parse(r.window.until), tz)}; ${caption})`;
}

export const chartJson = (r: ChartResult) => `${toJson(r)}\n`;
