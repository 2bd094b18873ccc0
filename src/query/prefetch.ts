/**
 * Read-ahead for `tc-query top`: plans the window and its filters before DuckDB is asked for,
 * so the command reads SQLite while DuckDB starts (top.ts) and a window or option that cannot
 * be answered is refused before either. Light on purpose: this module loads no DuckDB.
 * The reading stays on this thread: summed by tc_group (plan.ts), a 24 h window of 5,000
 * addresses reads in ~25 ms, and a worker thread for half of it cost more CPU than it saved
 * (~40 ms to start one, a second connection and plan per answer).
 */
import type Database from 'better-sqlite3';
import type { Window } from './window';
import { matchingIds, whereFor, type AddressMatch, type Filters } from './filters';
import type { LabelTable } from './labels';
import { planWindow, resolveWindow, type Family, type Segment, type SegmentRows } from './plan';
import { openReadOnly } from './db';
import { checkSide, type Side } from './local';

export interface ReadAhead {
  /** The window with `--all` resolved. */
  window: Window;
  /** The address filter's conditions (undefined without --ip / --cidr / --label). */
  match: AddressMatch | undefined;
  family: Family;
  where: string;
  params: unknown[];
  /** The window's segments, planned. */
  segments: Segment[];
  /** Their rows, once read (while DuckDB starts). */
  rows?: SegmentRows;
}

export function readAhead(sqlite: Database.Database, family: Family, w: Window, filters: Filters, labels?: LabelTable): ReadAhead {
  const window = resolveWindow(sqlite, w);
  const match = matchingIds(sqlite, filters, labels);
  const { where, params } = whereFor(family, match, filters);
  return { window, match, family, where, params, segments: planWindow(sqlite, family, window) };
}

/**
 * The read-ahead of a `top` answer from its options (`tc-query top`, `chart --what top`): the
 * family its grouping and filters read, the window planned and refused (--side needs local
 * networks) before DuckDB starts.
 */
export function readAheadTop(file: string, o: { by: string; window: Window; filters: Filters; labels?: LabelTable; side?: Side; tz?: string }): ReadAhead {
  const family: Family = o.by === 'flow' || o.filters.proto !== undefined || o.filters.port !== undefined ? 'flow' : 'ip';
  const planning = openReadOnly(file);
  try {
    const resolved = resolveWindow(planning, o.window);
    checkSide(planning, o.side, resolved.fromMs, resolved.toMs, o.tz);
    return readAhead(planning, family, o.window, o.filters, o.labels);
  } finally {
    planning.close();
  }
}
