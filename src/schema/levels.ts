/**
 * The rollup levels: one table per (family, bucket length), each bucket closed from the level
 * below. The recorder (rollups.ts, retention.ts), the planner (plan.ts), `tc-query sql`'s table
 * list (tables.ts) and the tests read them from here.
 */

export type Family = 'ip' | 'flow';
export type Level = 'ip_1m' | 'ip_1h' | 'ip_1d' | 'flow_1m' | 'flow_1h';
/** The retention period (retention.ts) a level's buckets are kept for. */
export type Keep = 'minutesMs' | 'hoursMs' | 'daysMs';

export interface LevelSpec {
  table: Level;
  family: Family;
  /** Bucket length; a bucket holds the intervals whose start lies in it. */
  ms: number;
  /** The coarser level this one's closed buckets are summed into. */
  next?: Level;
  keep: Keep;
}

export const MINUTE_MS = 60_000;
export const HOUR_MS = 3_600_000;
export const DAY_MS = 86_400_000;

export const LEVELS: Record<Level, LevelSpec> = {
  ip_1m: { table: 'ip_1m', family: 'ip', ms: MINUTE_MS, next: 'ip_1h', keep: 'minutesMs' },
  ip_1h: { table: 'ip_1h', family: 'ip', ms: HOUR_MS, next: 'ip_1d', keep: 'hoursMs' },
  ip_1d: { table: 'ip_1d', family: 'ip', ms: DAY_MS, keep: 'daysMs' },
  flow_1m: { table: 'flow_1m', family: 'flow', ms: MINUTE_MS, next: 'flow_1h', keep: 'minutesMs' },
  flow_1h: { table: 'flow_1h', family: 'flow', ms: HOUR_MS, keep: 'hoursMs' },
};

export type IpLevel = Extract<Level, `ip_${string}`>;
export type FlowLevel = Extract<Level, `flow_${string}`>;

/** Every level, per-IP first, each family finest first (the order of the documented tables). */
export const ALL_LEVELS = Object.keys(LEVELS) as Level[];
export const IP_LEVELS = ALL_LEVELS.filter((l): l is IpLevel => LEVELS[l].family === 'ip');
export const FLOW_LEVELS = ALL_LEVELS.filter((l): l is FlowLevel => LEVELS[l].family === 'flow');
/** A family's levels, finest first. */
export const levelsOf = (family: Family): Level[] => (family === 'ip' ? IP_LEVELS : FLOW_LEVELS);

/** Closing order: finer levels first, so a coarser bucket is computed from closed ones. */
export const CLOSING_ORDER: Level[] = [...ALL_LEVELS].sort((a, b) => LEVELS[a].ms - LEVELS[b].ms);

export const isIpLevel = (l: Level): l is IpLevel => LEVELS[l].family === 'ip';

/** Start of the `level` bucket that holds `ms`. */
export const bucketOf = (ms: number, level: Level) => Math.floor(ms / LEVELS[level].ms) * LEVELS[level].ms;
