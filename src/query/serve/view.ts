/**
 * The view of `tc-query serve`'s page, as its URL holds it (the API's parameter names), and the
 * API requests its first load makes. The page (web/app.ts) builds its requests here, and the
 * server names the same requests in the page's `Link: rel=preload` header (server.ts), so the
 * browser asks for them while it still loads the page's script: one place says what the page
 * asks, or a preload would be a second request. No DOM and no Node here: both sides bundle it.
 */

export type By = 'ip' | 'name' | 'label' | 'flow';
export const BYS: By[] = ['ip', 'name', 'label', 'flow'];

export interface View {
  since?: string;
  until?: string;
  by: By;
  ip?: string;
  /** The chart's step (the API's `step`); chosen per window when absent. */
  step?: string;
  utc: boolean;
}

/** The window of a URL without one (a file without data in it opens on its recorded range). */
export const DEFAULT_SINCE = '1h';
/** Rows of the top table. */
export const TOP_LIMIT = 20;
/** The interval length the page assumes until the file's status tells it (the recorder's default). */
export const DEFAULT_INTERVAL_SECS = 5;
/** Steps the chart may use (seconds), the finest that keeps it under MAX_POINTS. */
const STEPS = [5, 10, 30, 60, 300, 900, 3600, 6 * 3600, 86400];
const MAX_POINTS = 400;

export function readView(p: URLSearchParams): View {
  const by = p.get('by') as By | null;
  return {
    since: p.get('since') ?? undefined,
    until: p.get('until') ?? undefined,
    by: by && BYS.includes(by) ? by : 'ip',
    ip: p.get('ip') ?? undefined,
    step: p.get('step') ?? undefined,
    utc: p.get('utc') === '1' || p.get('utc') === 'true',
  };
}

/** The query string of a view (without `?`): its parameters in the API's names, the defaults left out. */
export function viewQuery(v: View): string {
  const p = new URLSearchParams();
  if (v.since) p.set('since', v.since);
  if (v.until) p.set('until', v.until);
  if (v.by !== 'ip') p.set('by', v.by);
  if (v.ip) p.set('ip', v.ip);
  if (v.step) p.set('step', v.step);
  if (v.utc) p.set('utc', '1');
  return p.toString();
}

/** The window's parameters for the API. */
export function windowParams(v: View): Record<string, string> {
  return { since: v.since ?? DEFAULT_SINCE, ...(v.until ? { until: v.until } : {}) };
}

/** The path of an API request, as the page fetches it. */
export const apiPath = (route: string, params: Record<string, string>) => `/api/${route}?${new URLSearchParams(params)}`;

const UNIT_SECS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400, w: 7 * 86400 };

/** A time of the API's forms (a duration before now, ISO-8601, epoch seconds) in ms; undefined for another form. */
export function timeOf(v: string, now: number): number | undefined {
  const d = /^(\d+(?:\.\d+)?)\s*([smhdw])$/.exec(v.trim());
  if (d) return now - Number(d[1]) * UNIT_SECS[d[2]] * 1000;
  if (/^\d+(\.\d+)?$/.test(v.trim())) return Number(v) * 1000;
  const t = Date.parse(/T[^Z+-]*$/.test(v) ? `${v}Z` : v);
  return Number.isFinite(t) ? t : undefined;
}

/** The window's length in seconds as the page can tell it before an answer (the chart's step needs it), else an hour. */
export function windowSecs(v: View, now: number): number {
  const from = timeOf(v.since ?? DEFAULT_SINCE, now);
  const to = v.until ? timeOf(v.until, now) : now;
  return from !== undefined && to !== undefined && to > from ? (to - from) / 1000 : 3600;
}

/**
 * The step of the chart for a window (as the API takes it), unless the view names one: a short
 * window at the finest of STEPS at or above the interval (under MAX_POINTS), a longer one at
 * the length of the rollup level it is read from (a minute up to 3 h, an hour up to 3 d, a day
 * beyond), as a step finer than its level would read the level below: up to 60 times the rows.
 */
export function stepFor(v: View, secs: number, intervalSecs: number): string {
  if (v.step) return v.step;
  // A step the intervals divide: the server refuses others (an interval counts whole in one step).
  if (secs <= 15 * 60) return `${STEPS.find((s) => s % intervalSecs === 0 && secs / s <= MAX_POINTS) ?? 60}s`;
  return secs <= 3 * 3600 ? '1m' : secs <= 3 * 86400 ? '1h' : '1d';
}

/** The first requests of a load: the top table's and the total series'. */
export function loadRequests(v: View, intervalSecs: number, now: number): { top: string; total: string; step: string } {
  const step = stepFor(v, windowSecs(v, now), intervalSecs);
  return { step, total: apiPath('series', { ...windowParams(v), step }), top: apiPath('top', { ...windowParams(v), by: v.by, limit: String(TOP_LIMIT) }) };
}

/** A view without a window asks the whole file's status (its recorded range) beside its default window. */
export const WHOLE_STATUS = apiPath('status', {});

/**
 * What the page asks before it has an answer: a view without a window also asks the file's
 * status (which may move it to the recorded range: see openingRange).
 */
export function firstRequests(v: View, now: number): string[] {
  const { top, total } = loadRequests(v, DEFAULT_INTERVAL_SECS, now);
  return v.since === undefined && v.until === undefined ? [WHOLE_STATUS, total, top] : [total, top];
}

/**
 * A file whose data lies outside the default window (a replayed capture, a copy taken off a box
 * long ago) opens on its recorded range: that range, from the whole file's status, or undefined.
 */
export function openingRange(status: { first?: unknown; last?: unknown }, now: number): { since: string; until: string } | undefined {
  if (typeof status.last !== 'string' || typeof status.first !== 'string') return undefined;
  if (Date.parse(status.last) > timeOf(DEFAULT_SINCE, now)!) return undefined;
  return { since: status.first, until: status.last };
}
