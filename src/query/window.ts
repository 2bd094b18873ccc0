/**
 * Time windows of tc-query: `--since X`, `--until Y` (a duration before now such as 30s, 15m,
 * 1h, 7d; an ISO-8601 time; or epoch seconds) and `--all`. A window is [from, to) in UTC epoch
 * ms; an interval belongs to it when its start lies inside.
 */
import ms from 'ms';
import { InvalidArgumentError } from 'commander';

export interface Window {
  fromMs: number;
  toMs: number;
  all: boolean;
}

/** Parses one edge; `now` is fixed once per command so both edges agree. */
export function parseTime(v: string, now: number): number {
  const t = parseEdge(v, now);
  // Recorded times start at epoch 0, and a Date holds at most ±8.64e15 ms: a time outside
  // both is a typo (a duration of millennia), not a window.
  if (t < 0 || t > MAX_TIME_MS) {
    throw new InvalidArgumentError(`${JSON.stringify(v)} is ${t < 0 ? 'before 1970-01-01 (epoch 0)' : 'past the year 275760'}, where nothing can be recorded; give a shorter duration or a time since then, or --all for the whole file`);
  }
  return t;
}

/** The latest time a Date can hold (ms). */
const MAX_TIME_MS = 8.64e15;

function parseEdge(v: string, now: number): number {
  const s = v.trim();
  // Digits alone are epoch seconds, whatever their number: `--since 0` is 1970-01-01.
  if (/^\d+(\.\d+)?$/.test(s)) return Math.round(Number(s) * 1000);
  if (/^\d+(\.\d+)?\s*[a-z]+$/i.test(s)) {
    const d = ms(s.replace(/\s+/g, '') as ms.StringValue);
    if (typeof d === 'number' && Number.isFinite(d) && d >= 0) return now - d;
  }
  if (/^\d{4}-\d{2}-\d{2}/.test(s)) {
    // A time without a zone is UTC (storage is UTC; time zones are for display only).
    const iso = /[zZ]|[+-]\d{2}:?\d{2}$/.test(s) || !s.includes('T') ? s : `${s}Z`;
    const t = Date.parse(/^\d{4}-\d{2}-\d{2}$/.test(iso) ? `${iso}T00:00:00Z` : iso);
    if (Number.isFinite(t)) return t;
  }
  throw new InvalidArgumentError(`${JSON.stringify(v)} is not a duration (30s, 15m, 1h, 7d), an ISO-8601 time or epoch seconds`);
}

/** Steps offered by `series --step` (any whole number of seconds works). */
export const SERIES_STEPS = ['30s', '1m', '5m', '15m', '1h', '1d'];

/** `--step`: a duration of whole seconds, in ms. */
export function parseStep(v: string): number {
  const d = /^\d+$/.test(v.trim()) ? Number(v) * 1000 : ms(v.trim() as ms.StringValue);
  if (typeof d !== 'number' || !Number.isFinite(d) || d < 1000 || d % 1000 !== 0) {
    throw new InvalidArgumentError(`${JSON.stringify(v)} is not a whole number of seconds (${SERIES_STEPS.join(', ')}, or any whole number of seconds)`);
  }
  return d;
}

/** A step as the user would type it: `1d`, `6h`, `15m`, `90s`. */
export function stepText(stepMs: number): string {
  for (const [unit, len] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000]] as const) if (stepMs % len === 0) return `${stepMs / len}${unit}`;
  return `${stepMs / 1000}s`;
}

export function makeWindow(o: { since?: string; until?: string; all?: boolean }, now = Date.now(), defaultSince = '1h'): Window {
  if (o.all) {
    if (o.since || o.until) throw new InvalidArgumentError('--all cannot be combined with --since/--until');
    return { fromMs: -8.64e15, toMs: 8.64e15, all: true };
  }
  const fromMs = parseTime(o.since ?? defaultSince, now);
  const toMs = o.until ? parseTime(o.until, now) : now;
  if (toMs <= fromMs) {
    throw new InvalidArgumentError(`--until must be later than --since${o.since === undefined ? ` (here its default, ${defaultSince} before now); give --since too` : ''}`);
  }
  return { fromMs, toMs, all: false };
}

/** The largest --width and --height of `chart`, in pixels: the chart's step advice keeps within it. */
export const MAX_CHART_PX = 8000;
