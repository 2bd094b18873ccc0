/** How complete a window's answer is: intervals, gaps, drops, overflowed keys. */
import type Database from 'better-sqlite3';
import type { Window } from './window';
import { grouped } from '../units';
import { formatTime } from './time';

export interface Coverage {
  intervals: number;
  /** Time the intervals cover (sum of their lengths), ms. */
  covered_ms: number;
  first: number | null;
  last: number | null;
  /** Places where a source's next interval starts after the previous one ended. */
  gaps: number;
  gap_ms: number;
  lost_intervals: number;
  unclean_shutdowns: number;
  ring_packets: number;
  ring_drops: number;
  filter_drops: number;
  ip_overflow_keys: number;
  flow_overflow_keys: number;
  /** Frames counted in a later interval than their own (replay: beyond the reorder window; live: handed over late). */
  late: number;
  /** Percentage of packets the kernel dropped (of those it received). */
  drop_pct: number;
}

/**
 * Intervals of live sessions with the end of the same source's previous interval; a gap is a
 * row whose start lies after that end. Binds (from, to).
 */
export const GAPS_SQL = `select source, start_ms, prev_end from (
    select s.source, b.start_ms, lag(b.end_ms) over (partition by s.node_id, s.source order by b.start_ms) as prev_end
    from batches b join sessions s on s.id = b.session_id
    where s.kind = 'live' and b.start_ms >= ? and b.start_ms < ?)
  where prev_end is not null and start_ms > prev_end`;

export function coverage(db: Database.Database, w: Window): Coverage {
  const a = db
    .prepare(
      `select count(*) as intervals, coalesce(sum(end_ms - start_ms), 0) as covered_ms, min(start_ms) as first, max(end_ms) as last,
              coalesce(sum(ring_packets), 0) as ring_packets, coalesce(sum(ring_drops), 0) as ring_drops,
              coalesce(sum(coalesce(filter_ignored, 0) + coalesce(filter_not_accepted, 0) + ignored), 0) as filter_drops,
              coalesce(sum(ip_overflow_keys), 0) as ip_overflow_keys, coalesce(sum(flow_overflow_keys), 0) as flow_overflow_keys,
              coalesce(sum(late), 0) as late
       from batches where start_ms >= ? and start_ms < ?`,
    )
    .get(w.fromMs, w.toMs) as Omit<Coverage, 'gaps' | 'gap_ms' | 'lost_intervals' | 'unclean_shutdowns' | 'drop_pct'>;
  const g = db
    .prepare(
      `select count(*) as gaps, coalesce(sum(start_ms - prev_end), 0) as gap_ms from (${GAPS_SQL})`,
    )
    .get(w.fromMs, w.toMs) as { gaps: number; gap_ms: number };
  const e = db
    .prepare(
      `select coalesce(sum(kind = 'lost-interval'), 0) as lost, coalesce(sum(kind = 'unclean-shutdown'), 0) as unclean
       from events where coalesce(start_ms, at_ms) >= ? and coalesce(start_ms, at_ms) < ?`,
    )
    .get(w.fromMs, w.toMs) as { lost: number; unclean: number };
  const drop_pct = a.ring_packets > 0 ? (100 * a.ring_drops) / a.ring_packets : 0;
  return { ...a, gaps: g.gaps, gap_ms: g.gap_ms, lost_intervals: e.lost, unclean_shutdowns: e.unclean, drop_pct };
}

/** The line that ends every table answer. */
export function completenessLine(c: Coverage, tz?: string): string {
  if (c.intervals === 0) return 'no intervals recorded in this window';
  const parts = [
    `${grouped(c.intervals)} intervals ${formatTime(c.first!, tz)} to ${formatTime(c.last!, tz)}`,
    `${c.gaps} gap${c.gaps === 1 ? '' : 's'}${c.gaps ? ` (${Math.round(c.gap_ms / 1000)} s)` : ''}`,
    `${c.drop_pct.toFixed(2)}% dropped by the kernel`,
  ];
  if (c.lost_intervals) parts.push(`${c.lost_intervals} intervals lost`);
  if (c.filter_drops) parts.push(`${grouped(c.filter_drops)} frames filtered out`);
  if (c.late) parts.push(`${grouped(c.late)} frame${c.late === 1 ? ' counted late (outside its' : 's counted late (outside their'} own interval)`);
  if (c.ip_overflow_keys + c.flow_overflow_keys) parts.push(`~${grouped(c.ip_overflow_keys + c.flow_overflow_keys)} keys overflowed`);
  return parts.join(', ');
}
