/** How complete a window's answer is: intervals, gaps, drops, overflowed keys. */
import type Database from 'better-sqlite3';
import type { Window } from './window';
import { grouped } from '../units';
import { formatTime } from './time';
import { counted } from './output';
import { span } from './plan';
import { DAY_MS, HOUR_MS, IP_LEVELS, LEVELS, MINUTE_MS, bucketOf, type IpLevel } from '../schema/levels';

/** A stretch of time held only as the totals of a rollup level: the interval records of it are gone. */
export interface CoarserPart {
  level: IpLevel;
  from: number;
  to: number;
}

export interface Coverage {
  intervals: number;
  /** Time the intervals cover (sum of their lengths), and the time of `coarser`, ms: what rates are averaged over. */
  covered_ms: number;
  first: number | null;
  last: number | null;
  /** Places where a source's next interval starts after the previous one ended. */
  gaps: number;
  gap_ms: number;
  lost_intervals: number;
  unclean_shutdowns: number;
  /** Intervals with kernel ring counters (live capture; a replay has none). */
  ring_intervals: number;
  ring_packets: number;
  ring_drops: number;
  /** Intervals of sessions recorded with --flows. */
  flow_intervals: number;
  filter_drops: number;
  ip_overflow_keys: number;
  flow_overflow_keys: number;
  /** Intervals the disk budget stored as their heaviest keys, and the keys it folded into the overflow row. */
  budget_folded_intervals: number;
  budget_folded_ip_keys: number;
  budget_folded_flow_keys: number;
  /** Fewest / most addresses and flows a folded interval kept (null when none was folded). */
  budget_kept_ip_min: number | null;
  budget_kept_ip_max: number | null;
  budget_kept_flow_min: number | null;
  budget_kept_flow_max: number | null;
  /** Frames counted in a later interval than their own (replay: beyond the reorder window; live: handed over late). */
  late: number;
  /** Percentage of packets the kernel dropped (of those it received). */
  drop_pct: number;
  /**
   * The window's time before its first interval record (or all of it, without one) that only
   * rollup totals still hold, where retention or the disk budget removed the interval records:
   * the finest level holding each part, oldest first, each part ending where the next begins.
   */
  coarser: CoarserPart[];
}

/**
 * Time a live source was not recorded, as (source, prev_end, start_ms) rows: where a source's
 * next interval starts after the previous one ended, and where a recorder was killed (an
 * `unclean-shutdown` event spans from the end of its last written interval to the restart).
 * A restart inside the interval that was in flight writes that interval again, so the kill
 * leaves no hole between interval starts: the event's span is the gap then, and a gap that
 * starts where a killed session's last interval ended lasts at least to the restart.
 * Binds (from, to).
 */
export const GAPS_SQL = `with win(f, t) as (select ?, ?),
  ivals as (
    select s.source, b.start_ms, lag(b.end_ms) over (partition by s.node_id, s.source order by b.start_ms) as prev_end
    from batches b join sessions s on s.id = b.session_id, win
    where s.kind = 'live' and b.start_ms >= win.f and b.start_ms < win.t),
  holes as (select source, start_ms, prev_end from ivals where prev_end is not null and start_ms > prev_end),
  kills as (
    select s.source, e.start_ms, e.end_ms from events e join sessions s on s.id = e.session_id, win
    where e.kind = 'unclean-shutdown' and e.start_ms is not null and e.end_ms > e.start_ms and e.start_ms >= win.f and e.start_ms < win.t)
  select h.source, max(h.start_ms, coalesce((select max(k.end_ms) from kills k where k.source = h.source and k.start_ms = h.prev_end), h.start_ms)) as start_ms, h.prev_end
  from holes h
  union all
  select k.source, k.end_ms as start_ms, k.start_ms as prev_end from kills k
  where not exists (select 1 from holes h where h.source = k.source and h.prev_end = k.start_ms)`;

/**
 * The time an event is about, as SQL over `events`: its span's start, else (an event about no
 * span: start, stop) when it was written. A window holds an event by this time, as it holds an
 * interval by its start: a replay's events are about packet time, not the time of the replay.
 */
export const EVENT_TIME = 'coalesce(start_ms, at_ms)';

/** Bounds of the rows and events a window covers: `--all` covers every one (also events after the last interval). */
export function bounds(w: Window): [number, number] {
  return w.all ? [-8.64e15, 8.64e15] : [w.fromMs, w.toMs];
}

/**
 * Coverages this process computed, by file, the state of what coverage reads and window:
 * `tc-query serve` answers a page's top, series and status over one window, each a command
 * of its own, and the coverage of a day's intervals costs ~20 ms here. The state is read from
 * the command's own snapshot, so an answer never takes a coverage of other data: the ends of
 * the interval log (rows are appended, retention removes the oldest), the newest session and
 * event, and each rollup level's ends (coarserParts). Files read into memory are not kept.
 */
const computed = new Map<string, Coverage>();
const KEEP_COVERAGES = 32;

function stateOf(db: Database.Database): string {
  const ends = (table: string, col: string) => db.prepare(`select (select min(${col}) from ${table}), (select max(${col}) from ${table})`).raw().get() as unknown[];
  return JSON.stringify([ends('batches', 'id'), ends('sessions', 'id'), ends('events', 'id'), ...IP_LEVELS.map((l) => ends(l, 'bucket_ms'))]);
}

export function coverage(db: Database.Database, w: Window): Coverage {
  if (db.memory) return computeCoverage(db, w);
  const key = `${db.name}\n${stateOf(db)}\n${bounds(w).join(' ')}`;
  let c = computed.get(key);
  if (!c) {
    c = computeCoverage(db, w);
    if (computed.size >= KEEP_COVERAGES) computed.delete(computed.keys().next().value!);
    computed.set(key, c);
  }
  return structuredClone(c);
}

function computeCoverage(db: Database.Database, w: Window): Coverage {
  const [from, to] = bounds(w);
  const a = db
    .prepare(
      `select count(*) as intervals, coalesce(sum(end_ms - start_ms), 0) as covered_ms, min(start_ms) as first, max(end_ms) as last,
              count(ring_packets) as ring_intervals, coalesce(sum(ring_packets), 0) as ring_packets, coalesce(sum(ring_drops), 0) as ring_drops,
              coalesce(sum(coalesce(filter_ignored, 0) + coalesce(filter_not_accepted, 0) + ignored), 0) as filter_drops,
              coalesce(sum(ip_overflow_keys), 0) as ip_overflow_keys, coalesce(sum(flow_overflow_keys), 0) as flow_overflow_keys,
              coalesce(sum(s.flows = 1), 0) as flow_intervals, coalesce(sum(late), 0) as late,
              coalesce(sum(budget_folded_ip_keys + budget_folded_flow_keys > 0), 0) as budget_folded_intervals,
              coalesce(sum(budget_folded_ip_keys), 0) as budget_folded_ip_keys, coalesce(sum(budget_folded_flow_keys), 0) as budget_folded_flow_keys,
              -- a folded table's rows are its kept keys and the overflow row
              min(case when budget_folded_ip_keys > 0 then ip_rows - 1 end) as budget_kept_ip_min, max(case when budget_folded_ip_keys > 0 then ip_rows - 1 end) as budget_kept_ip_max,
              min(case when budget_folded_flow_keys > 0 then flow_rows - 1 end) as budget_kept_flow_min, max(case when budget_folded_flow_keys > 0 then flow_rows - 1 end) as budget_kept_flow_max
       from batches b join sessions s on s.id = b.session_id where start_ms >= ? and start_ms < ?`,
    )
    .get(from, to) as Omit<Coverage, 'gaps' | 'gap_ms' | 'lost_intervals' | 'unclean_shutdowns' | 'drop_pct'>;
  const g = db
    .prepare(
      `select count(*) as gaps, coalesce(sum(start_ms - prev_end), 0) as gap_ms from (${GAPS_SQL})`,
    )
    .get(from, to) as { gaps: number; gap_ms: number };
  const e = db
    .prepare(
      `select coalesce(sum(kind = 'lost-interval'), 0) as lost, coalesce(sum(kind = 'unclean-shutdown'), 0) as unclean
       from events where ${EVENT_TIME} >= ? and ${EVENT_TIME} < ?`,
    )
    .get(from, to) as { lost: number; unclean: number };
  const drop_pct = a.ring_packets > 0 ? (100 * a.ring_drops) / a.ring_packets : 0;
  const coarser = coarserParts(db, from, to, a.first);
  const covered_ms = a.covered_ms + coarser.reduce((n, p) => n + p.to - p.from, 0);
  return { ...a, covered_ms, gaps: g.gaps, gap_ms: g.gap_ms, lost_intervals: e.lost, unclean_shutdowns: e.unclean, drop_pct, coarser };
}

/**
 * Coverage.coarser: from the first interval back (or from the window's last bucket, without
 * one), each level, finest first, holds the time from its first bucket in the window to where
 * the finer one begins, when a whole bucket of it lies before that (the bucket holding the
 * first interval starts before it without meaning older time).
 */
function coarserParts(db: Database.Database, from: number, to: number, first: number | null): CoarserPart[] {
  const parts: CoarserPart[] = [];
  let limit = first ?? Infinity;
  for (const level of IP_LEVELS) {
    // Two seeks on the key: SQLite answers min() and max() over a range by reading the range.
    const edge = (order: string) => `(select bucket_ms from ${level} where bucket_ms >= @from and bucket_ms < @to order by bucket_ms ${order} limit 1)`;
    const r = db.prepare(`select ${edge('asc')} as lo, ${edge('desc')} as hi`).get({ from, to: Math.min(to, limit) }) as { lo: number | null; hi: number | null };
    if (r.lo === null) continue;
    const end = limit === Infinity ? Math.min(to, r.hi! + LEVELS[level].ms) : limit;
    if (limit !== Infinity && r.lo >= bucketOf(limit, level)) continue;
    parts.unshift({ level, from: r.lo, to: end });
    limit = r.lo;
  }
  return parts;
}

const TOTALS: Record<number, string> = { [MINUTE_MS]: 'minute', [HOUR_MS]: 'hour', [DAY_MS]: 'day' };

/**
 * "day totals from 2026-09-21T00:00:00Z, hour totals from 2026-09-24T00:00:00Z": the time
 * only coarser totals hold (each part up to the next, the last up to `until` when given).
 */
export function coarserText(parts: CoarserPart[], tz?: string, until = false): string {
  const text = parts.map((p) => `${TOTALS[LEVELS[p.level].ms]} totals from ${formatTime(p.from, tz)}`).join(', ');
  return until && parts.length > 0 ? `${text} to ${formatTime(parts[parts.length - 1].to, tz)}` : text;
}

/** The line that ends every table answer. */
export function completenessLine(c: Coverage, tz?: string): string {
  // Time whose interval records are gone is answered from coarser totals: said first, oldest first.
  if (c.intervals === 0) return c.coarser.length ? `${coarserText(c.coarser, tz, true)}, no interval records (removed by retention or the disk budget)` : 'no intervals recorded in this window';
  const parts = [
    `${c.coarser.length ? `${coarserText(c.coarser, tz)}, then ` : ''}${counted(c.intervals, 'interval')} ${formatTime(c.first!, tz)} to ${formatTime(c.last!, tz)}`,
    `${counted(c.gaps, 'gap')}${c.gaps ? ` (${Math.round(c.gap_ms / 1000)} s)` : ''}`,
  ];
  // Replayed intervals have no kernel ring: no drop there to speak of.
  if (c.ring_intervals > 0) {
    parts.push(`${c.drop_pct.toFixed(2)}% dropped by the kernel${c.ring_intervals < c.intervals ? ` (in the ${counted(c.ring_intervals, 'live interval')})` : ''}`);
  }
  if (c.lost_intervals) parts.push(`${counted(c.lost_intervals, 'interval')} lost`);
  if (c.filter_drops) parts.push(`${counted(c.filter_drops, 'frame')} filtered by CIDR rules`);
  if (c.late) parts.push(`${counted(c.late, 'frame')} counted late (outside ${c.late === 1 ? 'its' : 'their'} own interval)`);
  if (c.ip_overflow_keys + c.flow_overflow_keys) parts.push(`~${counted(c.ip_overflow_keys + c.flow_overflow_keys, 'key')} overflowed`);
  if (c.budget_folded_intervals) parts.push(budgetLine(c));
  return parts.join(', ');
}

/**
 * The completeness of an answer as data: the completeness line and the figures behind it, in
 * UTC. `tc-query serve` sends it beside each answer (a response header), the body staying the
 * CLI's JSON.
 */
export interface Completeness {
  line: string;
  window: { from: string; to: string };
  intervals: number;
  /** Seconds the recorded intervals (and coarser totals) cover: what average rates are over. */
  covered_seconds: number;
  first: string | null;
  last: string | null;
  gaps: number;
  gap_seconds: number;
  lost_intervals: number;
  kernel_drops: number;
  kernel_drop_pct: number;
  ip_overflow_keys: number;
  flow_overflow_keys: number;
  /** The window's time held only as rollup totals (retention or the disk budget removed its intervals). */
  coarser: { level: string; from: string; to: string }[];
}

/** `w`: the window as resolved (plan.ts resolveWindow: --all is the recorded span). */
export function completenessOf(c: Coverage, w: Window): Completeness {
  const t = (ms: number | null) => (ms === null ? null : formatTime(ms));
  return {
    line: completenessLine(c),
    window: { from: formatTime(w.fromMs), to: formatTime(w.toMs) },
    intervals: c.intervals,
    covered_seconds: c.covered_ms / 1000,
    first: t(c.first),
    last: t(c.last),
    gaps: c.gaps,
    gap_seconds: c.gap_ms / 1000,
    lost_intervals: c.lost_intervals,
    kernel_drops: c.ring_drops,
    kernel_drop_pct: Number(c.drop_pct.toFixed(4)),
    ip_overflow_keys: c.ip_overflow_keys,
    flow_overflow_keys: c.flow_overflow_keys,
    coarser: c.coarser.map((p) => ({ level: p.level, from: formatTime(p.from), to: formatTime(p.to) })),
  };
}

const range = (a: number | null, b: number | null) => (a === b ? grouped(a ?? 0) : `${grouped(a ?? 0)}-${grouped(b ?? 0)}`);

/**
 * "3 intervals kept as the top 240 addresses and 120 flows during a flood (...)": intervals the
 * disk budget stored as their heaviest keys; their totals and kept keys are exact.
 */
function budgetLine(c: Coverage): string {
  const kept = [
    c.budget_folded_ip_keys ? `${range(c.budget_kept_ip_min, c.budget_kept_ip_max)} addresses` : '',
    c.budget_folded_flow_keys ? `${range(c.budget_kept_flow_min, c.budget_kept_flow_max)} flows` : '',
  ].filter(Boolean);
  return `${counted(c.budget_folded_intervals, 'interval')} kept as the top ${kept.join(' and ')} by bytes during a flood (disk budget; ${counted(c.budget_folded_ip_keys + c.budget_folded_flow_keys, 'other key')} folded into the overflow row, totals exact)`;
}

/**
 * What to say when a window holds no intervals: what the file covers and what to type.
 * Undefined when it holds some, or rollup totals of time whose interval records are gone.
 */
export function emptyWindowNote(db: Database.Database, c: Coverage, w: Window, tz?: string): string | undefined {
  if (c.intervals > 0 || c.coarser.length > 0) return undefined;
  const sp = span(db);
  if (!sp) return 'the file holds no intervals yet (record into it with `traffic-counter record`)';
  const range = (a: number, b: number) => `${formatTime(a, tz)} to ${formatTime(b, tz)}`;
  // A window inside the recorded span holds no interval start (an interval is counted where it starts).
  if (w.fromMs < sp.toMs && w.toMs > sp.fromMs) {
    return `no interval starts in this window (${range(w.fromMs, w.toMs)}; an interval belongs to the window its start lies in); the file covers ${range(sp.fromMs, sp.toMs)}; widen the window, or try --all`;
  }
  return `no intervals in this window (${range(w.fromMs, w.toMs)}); the file covers ${range(sp.fromMs, sp.toMs)}; try --all`;
}

/**
 * What to say when an answer needs flow rows (flows, --by flow, --proto, --port) and some or
 * all of the window's intervals were recorded without --flows (sessions.flows). Undefined
 * when every interval has them, or there is none.
 */
export function flowsNote(c: Coverage): string | undefined {
  if (c.intervals === 0 || c.flow_intervals === c.intervals) return undefined;
  if (c.flow_intervals === 0) {
    return `the file was recorded without --flows in this window (none of its ${counted(c.intervals, 'interval')} has flow rows): flows, --by flow, --proto and --port need \`traffic-counter record --flows\``;
  }
  return `${grouped(c.intervals - c.flow_intervals)} of the window's ${counted(c.intervals, 'interval')} were recorded without --flows: their traffic is not in this answer`;
}

/**
 * The note of an answer whose plan reads detail no longer in the file (plan.ts missingDetail):
 * which time, and what to ask instead.
 */
export function missingDetailNote(missing: { fromMs: number; toMs: number }[], what: string, instead: string, tz?: string): string | undefined {
  if (missing.length === 0) return undefined;
  const spans = missing.map((m) => `${formatTime(m.fromMs, tz)} to ${formatTime(m.toMs, tz)}`);
  const shown = spans.length > 3 ? [...spans.slice(0, 3), `${spans.length - 3} more`] : spans;
  return `${what} of ${shown.join(', ')} is no longer in the file (removed by the disk budget or retention, see \`tc-query status\`): this answer counts that time as 0; ${instead}`;
}
