/**
 * Plans a time window as the coarsest clean rollup buckets that fit inside it plus finer levels
 * at its edges, down to raw intervals; reads only those rows (partially summed per key in
 * SQLite, by key range on the read-only connection) and hands them to DuckDB.
 *
 * A bucket holds the intervals whose start lies in it; a dirty bucket (data not yet rolled up)
 * is covered by the next finer level instead. Edges that fall on interval boundaries are exact;
 * an interval that straddles an edge counts where its start lies.
 */
import type Database from 'better-sqlite3';
import type { Window } from './window';
import { ALL_LEVELS, DAY_MS, IP_LEVELS, LEVELS, levelsOf, type Family } from '../schema/levels';
import { TcError } from '../errors';
import { loadSqliteExtension } from '../native';

export type { Family };

/** A family's levels, coarsest first: a window is covered from the top down. */
const coarsestFirst = (family: Family) => levelsOf(family).map((l) => LEVELS[l]).reverse();

export interface Segment {
  /** Rollup table, or 'raw' for the interval delta rows. */
  source: string;
  fromMs: number;
  toMs: number;
  /** -1: the segment is subtracted (a coarser bucket minus the part outside the window). */
  sign: 1 | -1;
}

export interface PlanOptions {
  /** Only levels whose bucket divides the step (series); no subtraction then. */
  stepMs?: number;
}

/**
 * A source's floor: the oldest time from which it still holds every row (retention and the disk
 * budget remove the oldest first); read once per source.
 */
function floors(db: Database.Database, family: Family): (source: string) => number {
  const known = new Map<string, number>();
  return (source) => {
    let f = known.get(source);
    if (f === undefined) {
      const v =
        source === 'raw'
          ? db.prepare('select start_ms from batches where pruned != 3 and (pruned & ?) = 0 order by start_ms limit 1').pluck().get(family === 'ip' ? 1 : 2)
          : db.prepare(`select bucket_ms from ${source} order by bucket_ms limit 1`).pluck().get();
      f = (v as number | undefined) ?? Infinity;
      known.set(source, f);
    }
    return f;
  };
}

/**
 * Splits [from, to) into whole buckets of the coarsest level and finer edges, skipping dirty
 * buckets. An edge that covers more than half of a clean bucket is planned as that bucket minus
 * the rest of it (a clean bucket is exactly the sum of its finer buckets), which bounds an
 * edge to half a bucket of finer rows: an hour window at an unaligned time reads about a quarter
 * of the minute rows an additive plan would. Subtraction is used only where the finer levels
 * still hold every row of the part subtracted (retention removes finer levels first).
 */
export function plan(db: Database.Database, family: Family, fromMs: number, toMs: number, o: PlanOptions = {}): Segment[] {
  const stepMs = o.stepMs;
  const levels = coarsestFirst(family).filter((l) => stepMs === undefined || (l.ms <= stepMs && stepMs % l.ms === 0));
  const subtract = stepMs === undefined;
  const dirtyStmt = db.prepare('select bucket_ms from rollup_dirty where level = ? and bucket_ms >= ? and bucket_ms < ? order by bucket_ms').pluck();
  const floorOf = floors(db, family);
  let logStart: number | undefined;
  /** The oldest interval record left (the disk budget sheds the oldest last). */
  const logFloor = (): number => (logStart ??= (db.prepare('select min(start_ms) from batches').pluck().get() as number | null) ?? Infinity);
  const cover = (from: number, to: number, li: number, sign: 1 | -1, out: Segment[]): void => {
    if (from >= to) return;
    if (li === levels.length) {
      out.push({ source: 'raw', fromMs: from, toMs: to, sign });
      return;
    }
    const L = levels[li];
    const a = Math.ceil(from / L.ms) * L.ms;
    const b = Math.floor(to / L.ms) * L.ms;
    if (a > b) {
      // Inside one bucket of this level.
      edge(from, to, b, li, sign, out);
      return;
    }
    edge(from, a, a - L.ms, li, sign, out);
    // Clean runs of whole buckets use this level; dirty buckets go one level finer.
    let runStart = a;
    for (const d of dirtyStmt.all(L.table, a, b) as number[]) {
      if (d > runStart) out.push({ source: L.table, fromMs: runStart, toMs: d, sign });
      cover(d, d + L.ms, li + 1, sign, out);
      runStart = d + L.ms;
    }
    if (runStart < b) out.push({ source: L.table, fromMs: runStart, toMs: b, sign });
    edge(b, to, b, li, sign, out);
  };
  /** [from, to): part of the bucket starting at `bucket` of level `li`. */
  const edge = (from: number, to: number, bucket: number, li: number, sign: 1 | -1, out: Segment[]): void => {
    if (from >= to) return;
    const L = levels[li];
    if (subtract && (to - from) * 2 > L.ms && bucket >= floorOf(L.table) && (dirtyStmt.all(L.table, bucket, bucket + 1) as number[]).length === 0) {
      const tried: Segment[] = [{ source: L.table, fromMs: bucket, toMs: bucket + L.ms, sign }];
      const minus = sign === 1 ? -1 : 1;
      cover(bucket, from, li + 1, minus, tried);
      cover(to, bucket + L.ms, li + 1, minus, tried);
      if (tried.every((s) => s.fromMs >= floorOf(s.source))) {
        out.push(...tried);
        return;
      }
    }
    const finer: Segment[] = [];
    cover(from, to, li + 1, sign, finer);
    // Finer rows of this part are gone (retention, the disk budget): the whole bucket is the
    // exact answer when every interval of it starts inside the part, which only the interval
    // log can tell (where its records of the bucket are gone too, it cannot).
    if (!finer.every((s) => s.fromMs >= floorOf(s.source)) && bucket >= floorOf(L.table) && bucket >= logFloor() && (dirtyStmt.all(L.table, bucket, bucket + 1) as number[]).length === 0) {
      const outside = db
        .prepare(`select 1 from batches where start_ms >= ? and start_ms < ? and (start_ms < ? or start_ms >= ?) and ${family}_rows > 0 limit 1`)
        .pluck()
        .get(bucket, bucket + L.ms, from, to);
      if (!outside) {
        out.push({ source: L.table, fromMs: bucket, toMs: bucket + L.ms, sign });
        return;
      }
    }
    out.push(...finer);
  };
  const out: Segment[] = [];
  cover(fromMs, toMs, 0, 1, out);
  return out;
}


/** Plans a window (see readRange); an empty window reads nothing. */
export function planWindow(db: Database.Database, family: Family, w: Window, o: PlanOptions = {}): Segment[] {
  const r = readRange(w);
  return r.toMs > r.fromMs ? plan(db, family, r.fromMs, r.toMs, o) : [];
}

/**
 * The recorded span of the file: [first interval start, last interval end), or null when it
 * holds none. Where retention removed the oldest intervals' rows, the first bucket of the
 * finest rollup that still holds them starts the span.
 */
export function span(db: Database.Database): { fromMs: number; toMs: number } | null {
  const r = db.prepare('select min(start_ms) as a, max(end_ms) as b from batches').get() as { a: number | null; b: number | null };
  let from = r.a ?? Infinity;
  for (const table of IP_LEVELS) {
    const first = db.prepare(`select min(bucket_ms) from ${table}`).pluck().get() as number | null;
    // A bucket before the one holding the first interval left: rows older than the log.
    if (first !== null && first < Math.floor(from / BUCKET_MS[table]) * BUCKET_MS[table]) from = first;
  }
  if (from === Infinity) return null;
  const lastDay = db.prepare('select max(bucket_ms) from ip_1d').pluck().get() as number | null;
  return { fromMs: from, toMs: r.b ?? lastDay! + DAY_MS };
}

/**
 * The range to read for a window. `--all` reads whole days around the span: no row lies
 * outside it, and whole days are read from the day rollup even where retention removed the
 * finer rows an exact edge would need.
 */
export function readRange(w: Window): { fromMs: number; toMs: number } {
  if (!w.all || w.toMs <= w.fromMs) return w;
  return { fromMs: Math.floor(w.fromMs / DAY_MS) * DAY_MS, toMs: Math.ceil(w.toMs / DAY_MS) * DAY_MS };
}

/** Bucket length by rollup table (a segment's `source`). */
export const BUCKET_MS: Record<string, number> = Object.fromEntries(ALL_LEVELS.map((l) => [l, LEVELS[l].ms]));

/**
 * The segment's bucket starts as a table t(b), binding (from, to): with an address filter,
 * one primary-key seek per (bucket, address) instead of a scan of every address of the range.
 */
function bucketsCte(s: Segment): string {
  const step = BUCKET_MS[s.source];
  return `with recursive t(b) as (select ? union all select b + ${step} from t where b + ${step} < ?)`;
}

const IP_SUMS = 'sum(tx_packets), sum(tx_bytes), sum(rx_packets), sum(rx_bytes)';
const KEYS: Record<Family, string[]> = { ip: ['ip_id'], flow: ['src_id', 'dst_id', 'proto', 'sport', 'dport'] };
const VALUES: Record<Family, string[]> = { ip: ['tx_packets', 'tx_bytes', 'rx_packets', 'rx_bytes'], flow: ['packets', 'bytes'] };

/** One segment's rows (keys, then counters negated when the segment is subtracted). */
function segmentRows(family: Family, s: Segment, where: string): string {
  const cols = [...KEYS[family].map((c) => `d.${c}`), ...VALUES[family].map((c) => `${s.sign < 0 ? '-' : ''}d.${c}`)].join(', ');
  const table = family === 'ip' ? 'ip_deltas' : 'flow_deltas';
  if (s.source === 'raw') return `select ${cols} from batches b join ${table} d on d.batch_id = b.id where b.start_ms >= ? and b.start_ms < ? ${where}`;
  if (where) return `select * from (${bucketsCte(s)} select ${cols} from t join ${s.source} d on d.bucket_ms = t.b where true ${where})`;
  return `select ${cols} from ${s.source} d where d.bucket_ms >= ? and d.bucket_ms < ?`;
}

/** Value columns of which a key needs one non-zero sum to be kept (bit 0: the first value): rows that cancel out leave. */
const KEEP_MASK: Record<Family, number> = { ip: 0b0101, flow: 0b01 };

/**
 * SQL that sums a planned window per key, in one statement: each segment's rows (subtracted
 * segments negated), grouped once by tc_group (native/sqlite/tc_group.c) into one BLOB of
 * columns: per-IP (ip_id, tx_packets, tx_bytes, rx_packets, rx_bytes) or per-flow (src_id,
 * dst_id, proto, sport, dport, packets, bytes); keys whose rows cancel out are left out.
 * Binds, per segment: (from, to, ...filter params); see `windowParams`.
 */
export function windowSql(family: Family, segments: Segment[], where: string): string {
  const keys = KEYS[family];
  const values = VALUES[family];
  const members = segments.map((s) => segmentRows(family, s, where)).join('\n  union all\n  ');
  return `with u(${[...keys, ...values].join(', ')}) as (\n  ${members}\n)
select tc_group(${keys.length}, ${KEEP_MASK[family]}, ${[...keys, ...values].join(', ')}) from u`;
}

export function windowParams(segments: Segment[], params: unknown[]): unknown[] {
  return segments.flatMap((s) => [s.fromMs, s.toMs, ...params]);
}

/**
 * SQL reading one segment as a time series: (t_ms, tx_packets, tx_bytes, rx_packets, rx_bytes)
 * per interval or bucket start, summed over the addresses matched by `where`; the interval
 * log's totals (source LOG) per multiple of `alignMs`.
 */
export function seriesSql(s: Segment, where: string, alignMs = 1): string {
  if (s.sign !== 1) throw new TcError('series plans add segments only', 'ERR_TC_INTERNAL');
  if (s.source === LOG) {
    if (where.trim()) throw new TcError('the interval log holds totals only', 'ERR_TC_INTERNAL');
    // Each counted packet has one source: the totals are the sums of the tx counters (and of the
    // rx ones). Summed per multiple of `alignMs` (which every step bound is), not per interval:
    // handing a row to JS costs more than SQLite's sum.
    const t = `start_ms - start_ms % ${Math.trunc(alignMs)}`;
    return `select ${t}, sum(ip_packets), sum(ip_bytes), sum(ip_packets), sum(ip_bytes) from batches where start_ms >= ? and start_ms < ? group by ${t}`;
  }
  if (s.source === 'raw') {
    return `select b.start_ms, ${IP_SUMS} from batches b join ip_deltas d on d.batch_id = b.id
            where b.start_ms >= ? and b.start_ms < ? ${where} group by b.start_ms`;
  }
  if (where) return `${bucketsCte(s)} select d.bucket_ms, ${IP_SUMS} from t join ${s.source} d on d.bucket_ms = t.b where true ${where} group by d.bucket_ms`;
  return `select bucket_ms, ${IP_SUMS} from ${s.source} d where bucket_ms >= ? and bucket_ms < ? ${where} group by bucket_ms`;
}

/** The source of segments read from the interval log's own totals (see totalsFromLog). */
export const LOG = 'log';

/**
 * A total over every address as the interval log's totals (`batches`: a row per interval)
 * where the log still holds every interval of a segment, instead of the per-address rows (a
 * row per address per interval or bucket): the raw, minute and hour segments, which read a
 * row per address and bucket where the log has at most 720 rows an hour (at 5 s intervals).
 * The day level stays (17,280 intervals a day against a day's addresses). The log outlives
 * the per-address detail (retention and the disk budget shed it last, oldest first), so a
 * total stays exact where that detail is gone.
 */
export function totalsFromLog(db: Database.Database, segments: Segment[]): Segment[] {
  const floor = (db.prepare('select min(start_ms) from batches').pluck().get() as number | null) ?? Infinity;
  return segments.flatMap((s): Segment[] => {
    const step = s.source === 'raw' ? 1 : BUCKET_MS[s.source];
    if (s.sign !== 1 || step >= DAY_MS) return [s];
    // From the first whole bucket whose intervals the log holds: the buckets before it are read as planned.
    const from = Math.max(s.fromMs, Math.ceil(floor / step) * step);
    if (from >= s.toMs) return [s];
    return [...(from > s.fromMs ? [{ ...s, toMs: from }] : []), { ...s, fromMs: from, source: LOG }];
  });
}

/** Resolves the window: `--all` becomes the recorded span of the log. */
export function resolveWindow(db: Database.Database, w: Window): Window {
  if (!w.all) return w;
  const sp = span(db);
  return sp ? { fromMs: sp.fromMs, toMs: sp.toMs, all: true } : { fromMs: 0, toMs: 0, all: true };
}

/** A typed column of segment rows: counters and ids as BigInt64, proto as u8, ports as u16. */
export type ColumnData = BigInt64Array | Uint8Array | Uint16Array;

/**
 * A window's rows summed per key, column by column (as windowSql returns them), with the
 * dictionary ids they refer to. Columnar so that a worker hands them over without copying and
 * DuckDB takes them in whole vectors.
 */
export interface SegmentRows {
  count: number;
  columns: ColumnData[];
  ids: number[];
}

/** Column names of windowSql's rows. */
export const SEGMENT_NAMES: Record<Family, string[]> = { ip: [...KEYS.ip, ...VALUES.ip], flow: [...KEYS.flow, ...VALUES.flow] };

/** Column kinds of windowSql's rows. */
export const SEGMENT_COLUMNS: Record<Family, ColumnKind[]> = {
  ip: ['i64', 'i64', 'i64', 'i64', 'i64'],
  flow: ['i64', 'i64', 'u8', 'u16', 'u16', 'i64', 'i64'],
};

export type ColumnKind = 'i64' | 'u8' | 'u16';

function allocColumn(kind: ColumnKind, n: number): ColumnData {
  return kind === 'i64' ? new BigInt64Array(n) : kind === 'u8' ? new Uint8Array(n) : new Uint16Array(n);
}

/** Rows (integers as BigInt, as better-sqlite3 returns them with safeIntegers) into typed columns. */
export function collectColumns(rows: Iterable<bigint[]>, kinds: ColumnKind[]): { count: number; columns: ColumnData[] } {
  let cap = 4096;
  let columns = kinds.map((k) => allocColumn(k, cap));
  let n = 0;
  for (const r of rows) {
    if (n === cap) {
      cap *= 2;
      columns = columns.map((c, i) => {
        const g = allocColumn(kinds[i], cap);
        g.set(c as never);
        return g;
      });
    }
    for (let i = 0; i < kinds.length; i++) {
      if (kinds[i] === 'i64') (columns[i] as BigInt64Array)[n] = r[i];
      else columns[i][n] = Number(r[i]);
    }
    n++;
  }
  return { count: n, columns: columns.map((c) => c.subarray(0, n)) };
}

const grouping = new WeakSet<Database.Database>();

/**
 * Reads a planned window from SQLite, summed per key, into columns, with the dictionary ids the
 * rows refer to; the columns are views of one buffer.
 */
export function readSegments(db: Database.Database, family: Family, segments: Segment[], where: string, params: unknown[]): SegmentRows {
  const kinds = SEGMENT_COLUMNS[family];
  if (segments.length === 0) return { count: 0, columns: kinds.map((k) => allocColumn(k, 0)), ids: [] };
  if (!grouping.has(db)) {
    loadSqliteExtension(db);
    grouping.add(db);
  }
  const blob = db.prepare(windowSql(family, segments, where)).pluck().get(...windowParams(segments, params)) as Buffer;
  const count = blob.length / 8 / kinds.length;
  // A copy: the blob's bytes need not be 8-aligned. Little-endian, as this host is.
  const all = new BigInt64Array(count * kinds.length);
  new Uint8Array(all.buffer).set(blob);
  const columns = kinds.map((k, c): ColumnData => {
    const col = all.subarray(c * count, (c + 1) * count);
    return k === 'i64' ? col : k === 'u8' ? Uint8Array.from(col, Number) : Uint16Array.from(col, Number);
  });
  const ids = new Set<number>();
  const keyCols = family === 'ip' ? [columns[0]] : [columns[0], columns[1]];
  for (const c of keyCols) for (let i = 0; i < count; i++) ids.add(Number(c[i]));
  return { count, columns, ids: [...ids] };
}

/**
 * The parts of a plan's segments that read a source below its floor although intervals were
 * recorded then: detail the disk budget (or retention) removed, which such an answer counts as 0.
 * Sources lose their oldest rows first, so a source holds every row from its first one on.
 * Only time inside the file's recorded span (see span) can have been removed: before its first
 * interval or after its last nothing was recorded, however early the bucket holding them starts.
 * Merged [from, to) spans, oldest first.
 */
export function missingDetail(db: Database.Database, family: Family, segments: Segment[]): { fromMs: number; toMs: number }[] {
  const sp = span(db);
  if (!sp) return [];
  const floorOf = floors(db, family);
  // Recorded then: an interval record with rows of the family, or a bucket of any level of the
  // family (the interval log itself may have been shed). Where interval records remain and none
  // had rows (no traffic, as before the first packet of a live capture), a coarser bucket that
  // starts earlier says nothing of this time: only buckets starting in it count.
  const inLog = db.prepare(`select 1 from batches where start_ms >= ? and start_ms < ? and ${family}_rows > 0 limit 1`).pluck();
  const logged = db.prepare('select 1 from batches where start_ms >= ? and start_ms < ? limit 1').pluck();
  const inLevel = levelsOf(family).map((l) => ({ ms: LEVELS[l].ms, q: db.prepare(`select 1 from ${l} where bucket_ms >= ? and bucket_ms < ? limit 1`).pluck() }));
  const recorded = {
    get: (from: number, to: number) => {
      if (inLog.get(from, to)) return true;
      const quiet = logged.get(from, to) !== undefined;
      return inLevel.some((l) => l.q.get(quiet ? from : Math.floor(from / l.ms) * l.ms, to));
    },
  };
  const out: { fromMs: number; toMs: number }[] = [];
  for (const s of segments) {
    if (s.sign < 0) continue;
    const from = Math.max(s.fromMs, sp.fromMs);
    const to = Math.min(s.toMs, floorOf(s.source), sp.toMs);
    if (from >= to || !recorded.get(from, to)) continue;
    const last = out[out.length - 1];
    if (last && last.toMs >= from) last.toMs = Math.max(last.toMs, to);
    else out.push({ fromMs: from, toMs: to });
  }
  return out.sort((a, b) => a.fromMs - b.fromMs);
}
