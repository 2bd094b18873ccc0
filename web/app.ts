/**
 * The page of `tc-query serve`: the window's top talkers, its bytes/s chart (the total and the
 * top 5 stacked), the completeness line and the status facts; an address's series, flows and
 * names on a click. Everything it shows comes from the JSON API, which answers as the CLI's
 * --format json does; the table uses the CLI's columns and units (src/query/columns.ts). The
 * view lives in the URL with the API's parameter names (since, until, by, ip, utc).
 */
import uPlot from 'uplot';
import { FLOW_COLS, IP_COLS, LOCAL_COL, rateCols } from '../src/query/columns';
import type { ColumnSpec } from '../src/query/output';
import type { Completeness } from '../src/query/coverage';
import { grouped, iec } from '../src/units';
import { apiPath, DEFAULT_INTERVAL_SECS, DEFAULT_SINCE, loadRequests, openingRange, readView, stepFor, viewQuery, WHOLE_STATUS, windowParams as paramsOf, windowSecs, type By, type View } from '../src/query/serve/view';

type Row = Record<string, unknown>;

interface Reply<T> {
  body: T;
  completeness?: Completeness;
  notes: string[];
}

class ApiError extends Error {
  constructor(message: string, readonly code: string, readonly status: number) {
    super(message);
  }
}

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const STACKED = 5;
const COLORS = ['#2563eb', '#16a34a', '#f59e0b', '#dc2626', '#9333ea'];
const LINE_COLORS = ['#111', '#db2777'];
const TOKEN_KEY = 'tc-query-token';

let state: View = readView(new URLSearchParams(location.search));

/** The URL of the view: its parameters in the API's names, the defaults left out. */
function writeState(replace = false): void {
  const q = viewQuery(state);
  const url = `${location.pathname}${q ? `?${q}` : ''}`;
  if (replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
}

const windowParams = () => paramsOf(state);

/** An API answer: by route and parameters, or by the path loadRequests built (which the server may have preloaded). */
async function api<T>(route: string, params?: Record<string, string>): Promise<Reply<T>> {
  const headers: Record<string, string> = {};
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  const res = await fetch(params ? apiPath(route, params) : route, { headers });
  const body = (await res.json()) as T & { error?: { message: string; code: string } };
  if (!res.ok) {
    if (res.status === 401) $('auth').hidden = false;
    throw new ApiError(body.error?.message ?? `HTTP ${res.status}`, body.error?.code ?? 'ERR_TC', res.status);
  }
  const header = (name: string) => {
    const v = res.headers.get(name);
    return v ? JSON.parse(v) : undefined;
  };
  return { body, completeness: header('X-TC-Completeness'), notes: header('X-TC-Notes') ?? [] };
}

/** A time as the page shows it: the browser's zone (with its offset), or UTC. */
function showTime(iso: string | null | undefined): string {
  if (!iso) return '-';
  const d = new Date(iso);
  if (state.utc) return d.toISOString().replace('.000Z', 'Z');
  const off = -d.getTimezoneOffset();
  const pad = (n: number) => String(Math.abs(n)).padStart(2, '0');
  const local = new Date(d.getTime() + off * 60_000).toISOString().replace(/(\.000)?Z$/, '');
  return `${local}${off < 0 ? '-' : '+'}${pad(Math.trunc(off / 60))}:${pad(off % 60)}`;
}

const nameCol = (key: string): ColumnSpec => ({ key, align: 'left', human: (v) => (v === null || v === undefined ? '' : String(v)) });
const NONE: Record<string, string> = { name: '(no name)', label: '(no label)' };

/** The table columns of a top answer, as `tc-query top --by BY` shows them. */
function topColumns(by: By, secs: number): ColumnSpec[] {
  const rates = rateCols(secs);
  if (by === 'flow') return [FLOW_COLS[0], nameCol('src_name'), FLOW_COLS[1], nameCol('dst_name'), ...FLOW_COLS.slice(2), ...rates];
  if (by === 'ip') return [IP_COLS[0], nameCol('name'), LOCAL_COL, ...IP_COLS.slice(1), ...rates];
  return [{ ...nameCol(by), human: (v) => (v === null || v === undefined ? NONE[by] : String(v)) }, ...IP_COLS.slice(1), ...rates];
}

const ADDRESS_KEYS = new Set(['ip', 'src', 'dst']);

function renderTable(table: HTMLTableElement, cols: ColumnSpec[], rows: Row[]): void {
  table.replaceChildren();
  const head = table.createTHead().insertRow();
  for (const c of cols) {
    const th = document.createElement('th');
    th.textContent = c.header ?? c.key;
    if (c.align === 'left') th.className = 'left';
    head.appendChild(th);
  }
  const body = table.createTBody();
  for (const r of rows) {
    const tr = body.insertRow();
    tr.dataset.row = JSON.stringify(r);
    for (const c of cols) {
      const td = tr.insertCell();
      if (c.align === 'left') td.className = 'left';
      const v = r[c.key];
      const text = c.human ? c.human(v) : v === null || v === undefined ? '' : String(v);
      // An address (not the overflow row) opens its own series, flows and names.
      if (ADDRESS_KEYS.has(c.key) && typeof v === 'string' && /^[0-9a-f.:]+$/i.test(v)) {
        const a = document.createElement('a');
        a.className = 'addr';
        a.textContent = text;
        a.dataset.ip = v;
        a.addEventListener('click', () => {
          state.ip = v;
          writeState();
          void loadDetail();
        });
        td.appendChild(a);
      } else td.textContent = text;
    }
  }
}

const chartStep = () => stepFor(state, windowSecs(state, Date.now()), intervalSecs);

interface SeriesRow {
  start: string;
  end: string;
  bytes: number;
  tx_bytes?: number;
  rx_bytes?: number;
}

/** The window's recorded span: steps outside it are gaps, not zeros. */
let recorded: { from: number; to: number } | undefined;

/**
 * The recorded span of an answer's window, from its completeness: from the time only coarser
 * totals hold (else the first interval) to the end of the last interval; none recorded: empty.
 */
function recordedIn(c: Completeness): { from: number; to: number } {
  const from = c.coarser[0]?.from ?? c.first;
  const to = c.last ?? c.coarser[c.coarser.length - 1]?.to;
  return from && to ? { from: Date.parse(from), to: Date.parse(to) } : { from: Infinity, to: -Infinity };
}

const perSecond = (rows: SeriesRow[], key: 'bytes' | 'tx_bytes' | 'rx_bytes') =>
  rows.map((r) => {
    const [from, to] = [Date.parse(r.start), Date.parse(r.end)];
    if (recorded && (to <= recorded.from || from >= recorded.to)) return null;
    return Number(r[key] ?? 0) / Math.max((to - from) / 1000, 1e-9);
  });

const fmtDay = uPlot.fmtDate('{MM}-{DD}');
const fmtMinute = uPlot.fmtDate('{HH}:{mm}');
const fmtSecond = uPlot.fmtDate('{HH}:{mm}:{ss}');

const charts = new Map<string, uPlot>();

/**
 * Draws a chart into `el`: `lines` drawn as lines, `stacked` drawn as areas each on top of the
 * ones before (their legend shows each one's own value).
 */
function drawChart(el: HTMLElement, xs: number[], lines: { label: string; values: (number | null)[] }[], stacked: { label: string; values: (number | null)[] }[]): void {
  charts.get(el.id)?.destroy();
  // Each area is its own value plus those after it in the table: the first row's area is the
  // outermost, drawn first, and each later one covers it down to its own top; the legend keeps the table's order.
  const sums: (number | null)[][] = [];
  for (let i = stacked.length - 1; i >= 0; i--) sums[i] = stacked[i].values.map((v, j) => (v === null ? null : v + (i + 1 < stacked.length ? (sums[i + 1][j] ?? 0) : 0)));
  const rate = (v: number | null) => (v === null ? '-' : iec(v, '/s'));
  const own = (i: number) => (_u: uPlot, _v: number | null, _s: number, idx: number | null) => (idx === null ? '-' : rate(stacked[i].values[idx]));
  const dateOf = (ts: number) => (state.utc ? uPlot.tzDate(new Date(ts * 1e3), 'Etc/UTC') : new Date(ts * 1e3));
  const opts: uPlot.Options = {
    width: Math.max(el.clientWidth || document.body.clientWidth - 40, 400),
    height: 260,
    tzDate: state.utc ? (ts) => uPlot.tzDate(new Date(ts * 1e3), 'Etc/UTC') : undefined,
    scales: { x: { time: true } },
    axes: [
      // 24-hour times, as the CLI and the PNG charts write them.
      { values: (_u, splits, _a, _space, incr) => splits.map((ts) => (incr >= 86400 ? fmtDay : incr >= 60 ? fmtMinute : fmtSecond)(dateOf(ts))) },
      { values: (_u, vals) => vals.map((v) => rate(v)), size: 80 },
    ],
    // The lines after the areas: drawn over them.
    series: [
      {},
      ...stacked.map((s, i) => ({ label: s.label, stroke: COLORS[i], fill: `${COLORS[i]}cc`, width: 1, value: own(i) })),
      ...lines.map((l, i) => ({ label: l.label, stroke: LINE_COLORS[i % LINE_COLORS.length], width: 1.5, value: (_u: uPlot, v: number | null) => rate(v) })),
    ],
  };
  const data = [xs, ...sums, ...lines.map((l) => l.values)] as uPlot.AlignedData;
  const u = new uPlot(opts, data, el);
  charts.set(el.id, u);
  el.dataset.series = String(lines.length + stacked.length);
}

let intervalSecs = DEFAULT_INTERVAL_SECS;
let refreshTimer: ReturnType<typeof setTimeout> | undefined;
let generation = 0;

const errorText = (err: unknown) => (err instanceof ApiError ? `${err.message} (${err.code})` : String(err));

function showError(err: unknown): void {
  const e = $('error');
  e.hidden = false;
  e.textContent = errorText(err);
}

function setPressed(): void {
  const relative = state.until === undefined ? (state.since ?? DEFAULT_SINCE) : undefined;
  for (const b of document.querySelectorAll<HTMLButtonElement>('#windows button[data-since]')) b.setAttribute('aria-pressed', String(b.dataset.since === relative));
  for (const b of document.querySelectorAll<HTMLButtonElement>('#bys button')) b.setAttribute('aria-pressed', String(b.dataset.by === state.by));
  ($('utc') as HTMLInputElement).checked = state.utc;
  ($('step') as HTMLSelectElement).value = state.step ?? '';
}

/** Status facts of the window: what limits how far its numbers can be trusted. */
function renderStatus(s: Row): void {
  const gaps = s.gaps as { count: number; seconds: number };
  const sessions = s.sessions as { kind: string; ended_at: string | null }[];
  const facts: [string, string][] = [
    ['file', `${s.file} (node ${s.node_id})`],
    ['covers', `${showTime(s.first as string)} to ${showTime(s.last as string)}, ${grouped(s.intervals as number)} intervals`],
    ['gaps', `${gaps.count}${gaps.count ? ` (${Math.round(gaps.seconds)} s)` : ''}`],
    ['kernel drops', `${grouped(s.kernel_drops as number)} of ${grouped(s.kernel_packets as number)} packets (${Number(s.kernel_drop_pct).toFixed(2)}%)`],
    ['lost intervals', `${s.lost_intervals}; unclean shutdowns ${s.unclean_shutdowns}`],
    ['overflow', `~${grouped(s.ip_overflow_keys as number)} address keys, ~${grouped(s.flow_overflow_keys as number)} flow keys`],
    ['late frames', grouped(s.late_frames as number)],
    ['sessions', `${sessions.length}${sessions.some((x) => x.kind === 'live' && x.ended_at === null) ? ' (one recording now)' : ''}`],
  ];
  const dl = $('status');
  dl.replaceChildren();
  for (const [k, v] of facts) {
    const dt = document.createElement('dt');
    dt.textContent = k;
    const dd = document.createElement('dd');
    dd.textContent = v;
    dl.append(dt, dd);
  }
}

/** The series of the top keys: addresses (by ip, name, flow) or labels (by label). */
async function stackedSeries(by: By, top: Row[], step: string): Promise<{ label: string; values: (number | null)[] }[]> {
  let keys: { param: 'ip' | 'label'; value: string; label: string }[];
  if (by === 'label') keys = top.filter((r) => typeof r.label === 'string').map((r) => ({ param: 'label', value: r.label as string, label: r.label as string }));
  else {
    const rows = by === 'ip' ? top : (await api<Row[]>('top', { ...windowParams(), by: 'ip', limit: String(STACKED + 1) })).body;
    keys = rows.filter((r) => typeof r.ip === 'string' && /^[0-9a-f.:]+$/i.test(r.ip as string)).map((r) => ({ param: 'ip', value: r.ip as string, label: r.name ? `${r.ip} (${r.name})` : (r.ip as string) }));
  }
  keys = keys.slice(0, STACKED);
  const replies = await Promise.all(keys.map((k) => api<SeriesRow[]>('series', { ...windowParams(), step, [k.param]: k.value })));
  return replies.map((r, i) => ({ label: keys[i].label, values: perSecond(r.body, 'bytes') }));
}

/** True while the page decides which window to open on: the default window's answer is not final yet. */
let deciding = false;

/**
 * Tells that load `n`'s table and whole chart are drawn (the tests and bench/serve.ts wait for
 * it; `tc-first-N` marks the table and the total's chart before the top 5 join it).
 */
function markReady(n: number): void {
  if (deciding || document.body.dataset.ready === String(n)) return;
  document.body.dataset.ready = String(n);
  performance.mark('tc-ready');
}

/** Loads the window's answers and draws them; a later load supersedes one still running. */
async function load(): Promise<void> {
  const mine = ++generation;
  clearTimeout(refreshTimer);
  setPressed();
  $('error').hidden = true;
  try {
    // The total series does not wait for the top: only the stacked ones need its rows.
    const first = loadRequests(state, intervalSecs, Date.now());
    const step = first.step;
    const totalReply = api<SeriesRow[]>(first.total);
    totalReply.catch(() => undefined);
    // A top the server cannot answer (by=label without --labels) is the table's error only: the chart and status still show.
    const topReply = await api<Row[]>(first.top).then(
      (r) => ({ ok: r, err: undefined }),
      (err: unknown) => ({ ok: undefined, err }),
    );
    if (mine !== generation) return;
    const top = topReply.ok ?? { body: [] as Row[], notes: [errorText(topReply.err)], completeness: undefined };
    // The status facts are not on the first screen's path: asked for once the table's and the
    // chart's answers are in (the server answers the page's requests on one thread), unless the
    // table has no completeness of its own.
    let statusReply: Promise<Reply<Row>> | undefined;
    const askStatus = () => {
      statusReply ??= api<Row>('status', windowParams());
      return statusReply;
    };
    const c = top.completeness ?? (await askStatus()).completeness;
    if (mine !== generation) return;
    renderTable($('top') as HTMLTableElement, topColumns(state.by, c?.covered_seconds ?? 0), top.body);
    $('top-footer').textContent = top.notes.join(' ');
    $('completeness').textContent = c ? c.line.replace(/\d{4}-\d\d-\d\dT[\d:.]+Z/g, (t) => showTime(t)) : '';
    $('window').textContent = c ? `window ${showTime(c.window.from)} to ${showTime(c.window.to)}` : '';
    recorded = c ? recordedIn(c) : undefined;
    if (c) {
      ($('from') as HTMLInputElement).value = inputValue(c.window.from);
      ($('to') as HTMLInputElement).value = inputValue(c.window.to);
    }
    const total = await totalReply;
    if (mine !== generation) return;
    const xs = total.body.map((r) => Date.parse(r.start) / 1000);
    const totalLine = [{ label: 'total', values: perSecond(total.body, 'bytes') }];
    // The total is drawn as soon as it is there; the top 5 join it when their series are,
    // asked for once the first screen is drawn (the server and the browser share the host's
    // CPUs: answering them while the page draws would delay what it draws first).
    drawChart($('chart'), xs, totalLine, []);
    performance.mark(`tc-first-${mine}`);
    const stacking = topReply.ok ? stackedSeries(state.by, top.body, step) : Promise.resolve([]);
    stacking.catch(() => undefined);
    const status = await askStatus();
    if (mine !== generation) return;
    const live = (status.body.sessions as { kind: string; ended_at: string | null; interval_ms: number }[]).filter((s) => s.ended_at === null && s.kind === 'live');
    const sessions = status.body.sessions as { interval_ms: number }[];
    intervalSecs = Math.max(1, (sessions[sessions.length - 1]?.interval_ms ?? 5000) / 1000);
    renderStatus(status.body);
    const stacked = await stacking;
    if (mine !== generation) return;
    drawChart($('chart'), xs, totalLine, stacked);
    document.body.dataset.drawn = String(mine);
    markReady(mine);
    if (state.ip) await loadDetail();
    // A live file (a live session still recording) and a window up to now: again after one interval.
    if (live.length > 0 && state.until === undefined) refreshTimer = setTimeout(() => void load(), Math.max(live[live.length - 1].interval_ms, 1000));
  } catch (err) {
    if (mine === generation) {
      showError(err);
      document.body.dataset.drawn = String(mine);
      markReady(mine);
    }
  }
}

/** An address's own series (tx and rx), its flows and the names it had in the window. */
async function loadDetail(): Promise<void> {
  const ip = state.ip;
  if (!ip) {
    $('detail').hidden = true;
    return;
  }
  $('detail').hidden = false;
  $('detail-title').textContent = ip;
  try {
    const step = chartStep();
    const [series, flows, names] = await Promise.all([
      api<SeriesRow[]>('series', { ...windowParams(), ip, step }),
      api<Row[]>('flows', { ...windowParams(), ip, limit: '20' }),
      api<Row[]>('names', { ...windowParams(), ip }),
    ]);
    if (state.ip !== ip) return;
    const xs = series.body.map((r) => Date.parse(r.start) / 1000);
    drawChart($('detail-chart'), xs, [{ label: `${ip} tx`, values: perSecond(series.body, 'tx_bytes') }, { label: `${ip} rx`, values: perSecond(series.body, 'rx_bytes') }], []);
    renderTable($('detail-flows') as HTMLTableElement, topColumns('flow', flows.completeness?.covered_seconds ?? 0), flows.body);
    const timeCol = (key: string): ColumnSpec => ({ key, align: 'left', human: (v) => showTime(v as string) });
    renderTable($('detail-names') as HTMLTableElement, [nameCol('name'), nameCol('source'), timeCol('first'), timeCol('last')], names.body);
    $('detail').dataset.ready = ip;
  } catch (err) {
    showError(err);
  }
}

/**
 * A file whose data lies outside the default window (a replayed capture, a copy taken off a box
 * long ago) opens on its recorded range, and says so.
 */
async function openingWindow(whole: Promise<Reply<Row>>): Promise<boolean> {
  const range = openingRange((await whole).body, Date.now());
  if (!range) return false;
  state.since = range.since;
  state.until = range.until;
  writeState(true);
  const note = $('note');
  note.hidden = false;
  note.textContent = `This file holds no data of the last hour: showing its recorded range, ${showTime(range.since)} to ${showTime(range.until)}.`;
  return true;
}

/** An ISO-8601 time as a datetime-local value, in the browser's zone or UTC. */
function inputValue(iso: string): string {
  const d = new Date(iso);
  const shifted = state.utc ? d : new Date(d.getTime() - d.getTimezoneOffset() * 60_000);
  return shifted.toISOString().slice(0, 19);
}

/** A datetime-local value in the browser's zone, or UTC with the toggle on, as ISO-8601 UTC. */
function inputTime(v: string): string {
  const t = state.utc ? Date.parse(`${v}Z`) : new Date(v).getTime();
  return new Date(t).toISOString().replace('.000Z', 'Z');
}

function wire(): void {
  for (const b of document.querySelectorAll<HTMLButtonElement>('#windows button[data-since]')) {
    b.addEventListener('click', () => {
      state = { ...state, since: b.dataset.since, until: undefined };
      $('note').hidden = true;
      writeState();
      void load();
    });
  }
  $('range').addEventListener('submit', (e) => {
    e.preventDefault();
    const from = ($('from') as HTMLInputElement).value;
    const to = ($('to') as HTMLInputElement).value;
    if (!from) return showError('give the start of the window (from)');
    state = { ...state, since: inputTime(from), until: to ? inputTime(to) : undefined };
    writeState();
    void load();
  });
  for (const b of document.querySelectorAll<HTMLButtonElement>('#bys button')) {
    b.addEventListener('click', () => {
      state.by = b.dataset.by as By;
      writeState();
      void load();
    });
  }
  $('step').addEventListener('change', () => {
    const v = ($('step') as HTMLSelectElement).value;
    state.step = v === '' ? undefined : v;
    writeState();
    void load();
  });
  $('utc').addEventListener('change', () => {
    state.utc = ($('utc') as HTMLInputElement).checked;
    writeState();
    void load();
  });
  $('detail-close').addEventListener('click', () => {
    state.ip = undefined;
    writeState();
    void loadDetail();
  });
  $('auth').addEventListener('submit', (e) => {
    e.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, ($('token') as HTMLInputElement).value.trim());
    $('auth').hidden = true;
    void start();
  });
  window.addEventListener('popstate', () => {
    state = readView(new URLSearchParams(location.search));
    void load();
  });
}

/**
 * Without a window in the URL the default window loads at once, while the file's range is
 * asked for; a file without data in it then loads its recorded range instead.
 */
async function start(): Promise<void> {
  if (state.since !== undefined || state.until !== undefined) return load();
  const whole = api<Row>(WHOLE_STATUS);
  deciding = true;
  const first = load();
  let moved = false;
  try {
    moved = await openingWindow(whole);
  } catch (err) {
    showError(err);
  } finally {
    deciding = false;
  }
  if (moved) return load();
  await first;
  // Drawn while the window was being decided: it is the answer.
  if (generation === 1 && document.body.dataset.drawn === '1') markReady(1);
}

wire();
void start();
