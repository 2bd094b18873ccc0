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

export type Family = 'ip' | 'flow';

interface Level {
  table: string;
  ms: number;
}

const LEVELS: Record<Family, Level[]> = {
  ip: [
    { table: 'ip_1d', ms: 86_400_000 },
    { table: 'ip_1h', ms: 3_600_000 },
    { table: 'ip_1m', ms: 60_000 },
  ],
  flow: [
    { table: 'flow_1h', ms: 3_600_000 },
    { table: 'flow_1m', ms: 60_000 },
  ],
};

export interface Segment {
  /** Rollup table, or 'raw' for the interval delta rows. */
  source: string;
  fromMs: number;
  toMs: number;
}

/**
 * Splits [from, to) into whole buckets of the coarsest level and finer edges, skipping dirty
 * buckets. `stepMs`: only levels whose bucket divides the step (for series).
 */
export function plan(db: Database.Database, family: Family, fromMs: number, toMs: number, stepMs?: number): Segment[] {
  const levels = LEVELS[family].filter((l) => stepMs === undefined || (l.ms <= stepMs && stepMs % l.ms === 0));
  const dirtyStmt = db.prepare('select bucket_ms from rollup_dirty where level = ? and bucket_ms >= ? and bucket_ms < ? order by bucket_ms').pluck();
  const out: Segment[] = [];
  const cover = (from: number, to: number, li: number): void => {
    if (from >= to) return;
    if (li === levels.length) {
      out.push({ source: 'raw', fromMs: from, toMs: to });
      return;
    }
    const L = levels[li];
    const a = Math.ceil(from / L.ms) * L.ms;
    const b = Math.floor(to / L.ms) * L.ms;
    if (a >= b) {
      cover(from, to, li + 1);
      return;
    }
    cover(from, a, li + 1);
    // Clean runs of whole buckets use this level; dirty buckets go one level finer.
    let runStart = a;
    for (const d of dirtyStmt.all(L.table, a, b) as number[]) {
      if (d > runStart) out.push({ source: L.table, fromMs: runStart, toMs: d });
      cover(d, d + L.ms, li + 1);
      runStart = d + L.ms;
    }
    if (runStart < b) out.push({ source: L.table, fromMs: runStart, toMs: b });
    cover(b, to, li + 1);
  };
  cover(fromMs, toMs, 0);
  return out;
}

/** The recorded span of the log: [first interval start, last interval end), or null. */
export function span(db: Database.Database): { fromMs: number; toMs: number } | null {
  const r = db.prepare('select min(start_ms) as a, max(end_ms) as b from batches').get() as { a: number | null; b: number | null };
  const rolled = db.prepare('select min(bucket_ms) from ip_1d').pluck().get() as number | null;
  if (r.a === null && rolled === null) return null;
  const from = Math.min(r.a ?? Infinity, rolled ?? Infinity);
  const day = 86_400_000;
  return { fromMs: Math.floor(from / day) * day, toMs: Math.ceil(Math.max(r.b ?? 0, (rolled ?? 0) + day) / day) * day };
}

const BUCKET_MS: Record<string, number> = { ip_1m: 60_000, ip_1h: 3_600_000, ip_1d: 86_400_000, flow_1m: 60_000, flow_1h: 3_600_000 };

/**
 * The segment's bucket starts as a table t(b), binding (from, to): with an address filter,
 * one primary-key seek per (bucket, address) instead of a scan of every address of the range.
 */
function bucketsCte(s: Segment): string {
  const step = BUCKET_MS[s.source];
  return `with recursive t(b) as (select ? union all select b + ${step} from t where b + ${step} < ?)`;
}

const IP_SUMS = 'sum(tx_packets), sum(tx_bytes), sum(rx_packets), sum(rx_bytes)';
const FLOW_KEY = 'src_id, dst_id, proto, sport, dport';

/**
 * SQL that reads one segment, summed per key: per-IP rows (ip_id, tx_packets, tx_bytes,
 * rx_packets, rx_bytes) or per-flow rows (src_id, dst_id, proto, sport, dport, packets, bytes).
 * Binds (from, to) and optional key filters appended by the caller.
 */
export function segmentSql(family: Family, s: Segment, where: string, schema = ''): string {
  const t = (name: string) => `${schema}${name}`;
  if (family === 'ip') {
    if (s.source === 'raw') {
      return `select d.ip_id, ${IP_SUMS} from ${t('batches')} b join ${t('ip_deltas')} d on d.batch_id = b.id
              where b.start_ms >= ? and b.start_ms < ? ${where} group by d.ip_id`;
    }
    if (where) return `${bucketsCte(s)} select d.ip_id, ${IP_SUMS} from t join ${t(s.source)} d on d.bucket_ms = t.b where true ${where} group by d.ip_id`;
    return `select ip_id, ${IP_SUMS} from ${t(s.source)} d where bucket_ms >= ? and bucket_ms < ? ${where} group by ip_id`;
  }
  if (s.source === 'raw') {
    return `select ${FLOW_KEY.split(', ').map((c) => `d.${c}`).join(', ')}, sum(d.packets), sum(d.bytes)
            from ${t('batches')} b join ${t('flow_deltas')} d on d.batch_id = b.id
            where b.start_ms >= ? and b.start_ms < ? ${where} group by ${FLOW_KEY.split(', ').map((c) => `d.${c}`).join(', ')}`;
  }
  return `select ${FLOW_KEY}, sum(packets), sum(bytes) from ${t(s.source)} d where bucket_ms >= ? and bucket_ms < ? ${where} group by ${FLOW_KEY}`;
}

/**
 * SQL reading one segment as a time series: (t_ms, tx_packets, tx_bytes, rx_packets, rx_bytes)
 * per interval or bucket start, summed over the addresses matched by `where`.
 */
export function seriesSql(s: Segment, where: string, schema = ''): string {
  const t = (name: string) => `${schema}${name}`;
  if (s.source === 'raw') {
    return `select b.start_ms, ${IP_SUMS} from ${t('batches')} b join ${t('ip_deltas')} d on d.batch_id = b.id
            where b.start_ms >= ? and b.start_ms < ? ${where} group by b.start_ms`;
  }
  if (where) return `${bucketsCte(s)} select d.bucket_ms, ${IP_SUMS} from t join ${t(s.source)} d on d.bucket_ms = t.b where true ${where} group by d.bucket_ms`;
  return `select bucket_ms, ${IP_SUMS} from ${t(s.source)} d where bucket_ms >= ? and bucket_ms < ? ${where} group by bucket_ms`;
}

/** Resolves the window: `--all` becomes the recorded span of the log. */
export function resolveWindow(db: Database.Database, w: Window): Window {
  if (!w.all) return w;
  const sp = span(db);
  return sp ? { fromMs: sp.fromMs, toMs: sp.toMs, all: true } : { fromMs: 0, toMs: 0, all: true };
}

/**
 * Reads planned segments from SQLite as the segment SQL returns them (counters as BigInt) and
 * records the dictionary ids the rows refer to. One reader for the main thread and the
 * prefetch worker.
 */
export function* readSegments(db: Database.Database, family: Family, segments: Segment[], where: string, params: unknown[], ids: Set<number>): Generator<unknown[]> {
  for (const s of segments) {
    const stmt = db.prepare(segmentSql(family, s, where)).safeIntegers(true).raw(true);
    for (const r of stmt.iterate(s.fromMs, s.toMs, ...params) as Iterable<unknown[]>) {
      ids.add(Number(r[0] as bigint));
      if (family === 'flow') ids.add(Number(r[1] as bigint));
      yield r;
    }
  }
}
