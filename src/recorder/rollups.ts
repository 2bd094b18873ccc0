/**
 * Projections of the event log: per-IP minute/hour/day and per-flow minute/hour sums, kept by
 * the writer. A batch marks its minute buckets dirty; a bucket closes (is recomputed whole from
 * the level below, then marks the next level dirty) once the recorder has written a batch that
 * starts at or after the bucket's end. Recomputing whole buckets makes closing idempotent, so a
 * late or replayed batch only re-dirties its buckets.
 */
import type Database from 'better-sqlite3';
import { u64At, type Batch } from '../native';

export type Level = 'ip_1m' | 'ip_1h' | 'ip_1d' | 'flow_1m' | 'flow_1h';

interface LevelSpec {
  ms: number;
  next?: Level;
  /** SQL producing the bucket's rows from the level below; binds (:start, :end). */
  source: string;
  /** The same when the level below holds one interval / bucket in range: a copy, no sort. */
  copy: string;
  /** Counts the intervals / buckets of the level below in range; binds (:start, :end). */
  parts: string;
}

const IP_COLS = 'tx_packets, tx_bytes, rx_packets, rx_bytes';
const IP_SUMS = 'sum(tx_packets), sum(tx_bytes), sum(rx_packets), sum(rx_bytes)';
const FLOW_KEY = 'src_id, dst_id, proto, sport, dport';

export const LEVELS: Record<Level, LevelSpec> = {
  ip_1m: {
    ms: 60_000,
    next: 'ip_1h',
    source: `select :start, d.ip_id, ${IP_SUMS} from batches b join ip_deltas d on d.batch_id = b.id
             where b.start_ms >= :start and b.start_ms < :end group by d.ip_id`,
    copy: `select :start, d.ip_id, ${IP_COLS} from batches b join ip_deltas d on d.batch_id = b.id
           where b.start_ms >= :start and b.start_ms < :end`,
    parts: 'select count(*) from batches where start_ms >= :start and start_ms < :end',
  },
  ip_1h: {
    ms: 3_600_000,
    next: 'ip_1d',
    source: `select :start, ip_id, ${IP_SUMS} from ip_1m where bucket_ms >= :start and bucket_ms < :end group by ip_id`,
    copy: `select :start, ip_id, ${IP_COLS} from ip_1m where bucket_ms >= :start and bucket_ms < :end`,
    parts: 'select count(distinct bucket_ms) from ip_1m where bucket_ms >= :start and bucket_ms < :end',
  },
  ip_1d: {
    ms: 86_400_000,
    source: `select :start, ip_id, ${IP_SUMS} from ip_1h where bucket_ms >= :start and bucket_ms < :end group by ip_id`,
    copy: `select :start, ip_id, ${IP_COLS} from ip_1h where bucket_ms >= :start and bucket_ms < :end`,
    parts: 'select count(distinct bucket_ms) from ip_1h where bucket_ms >= :start and bucket_ms < :end',
  },
  flow_1m: {
    ms: 60_000,
    next: 'flow_1h',
    source: `select :start, ${FLOW_KEY.split(', ').map((c) => `d.${c}`).join(', ')}, sum(d.packets), sum(d.bytes)
             from batches b join flow_deltas d on d.batch_id = b.id
             where b.start_ms >= :start and b.start_ms < :end group by ${FLOW_KEY.split(', ').map((c) => `d.${c}`).join(', ')}`,
    copy: `select :start, ${FLOW_KEY.split(', ').map((c) => `d.${c}`).join(', ')}, d.packets, d.bytes
           from batches b join flow_deltas d on d.batch_id = b.id where b.start_ms >= :start and b.start_ms < :end`,
    parts: 'select count(*) from batches where start_ms >= :start and start_ms < :end',
  },
  flow_1h: {
    ms: 3_600_000,
    source: `select :start, ${FLOW_KEY}, sum(packets), sum(bytes) from flow_1m where bucket_ms >= :start and bucket_ms < :end group by ${FLOW_KEY}`,
    copy: `select :start, ${FLOW_KEY}, packets, bytes from flow_1m where bucket_ms >= :start and bucket_ms < :end`,
    parts: 'select count(distinct bucket_ms) from flow_1m where bucket_ms >= :start and bucket_ms < :end',
  },
};

/** Closing order: finer levels first, so a coarser bucket is computed from closed ones. */
const ORDER: Level[] = ['ip_1m', 'flow_1m', 'ip_1h', 'flow_1h', 'ip_1d'];

export const bucketOf = (ms: number, level: Level) => Math.floor(ms / LEVELS[level].ms) * LEVELS[level].ms;

/** Per-address sums of one open minute, accumulated from the batches this writer committed. */
interface MinuteAcc {
  batches: number;
  exact: boolean;
  rows: Map<number, number[]>;
}

const ACC_INSERT_ROWS = 50;

export class Rollups {
  private readonly stmts;
  private readonly minutes = new Map<number, MinuteAcc>();

  constructor(private readonly db: Database.Database) {
    const per = (level: Level) => {
      const cols = level.startsWith('ip') ? `bucket_ms, ip_id, ${IP_COLS}` : `bucket_ms, ${FLOW_KEY}, packets, bytes`;
      return {
        del: db.prepare(`delete from ${level} where bucket_ms = ?`),
        ins: db.prepare(`insert into ${level} (${cols}) ${LEVELS[level].source}`),
        copy: db.prepare(`insert into ${level} (${cols}) ${LEVELS[level].copy}`),
        parts: db.prepare(LEVELS[level].parts).pluck(),
      };
    };
    this.stmts = {
      level: Object.fromEntries(ORDER.map((l) => [l, per(l)])) as Record<Level, ReturnType<typeof per>>,
      dirty: db.prepare('insert or ignore into rollup_dirty (level, bucket_ms, end_ms) values (?, ?, ?)'),
      closable: db.prepare('select bucket_ms from rollup_dirty where level = ? and end_ms <= ? order by bucket_ms limit 64').pluck(),
      clean: db.prepare('delete from rollup_dirty where level = ? and bucket_ms = ?'),
      accMany: db.prepare(`insert into ip_1m (bucket_ms, ip_id, ${IP_COLS}) values ${Array(ACC_INSERT_ROWS).fill('(?,?,?,?,?,?)').join(',')}`),
      accOne: db.prepare(`insert into ip_1m (bucket_ms, ip_id, ${IP_COLS}) values (?,?,?,?,?,?)`),
    };
  }

  markDirty(level: Level, ms: number): void {
    const b = bucketOf(ms, level);
    this.stmts.dirty.run(level, b, b + LEVELS[level].ms);
  }

  /**
   * Marks every bucket a batch written to the log falls in, at every level at once, so that no
   * rollup is taken as complete while data below it is still waiting to be rolled up.
   */
  markBatch(startMs: number, hasIpRows: boolean, hasFlowRows: boolean): void {
    if (hasIpRows) for (const l of ['ip_1m', 'ip_1h', 'ip_1d'] as const) this.markDirty(l, startMs);
    if (hasFlowRows) for (const l of ['flow_1m', 'flow_1h'] as const) this.markDirty(l, startMs);
  }

  /**
   * Adds a committed batch's per-IP rows to its minute's running sums, so that closing the
   * minute inserts them instead of re-reading the raw rows. `ids` are the dictionary ids of
   * the batch's address table.
   */
  accumulate(b: Batch, ids: Float64Array): void {
    const m = bucketOf(b.startMs, 'ip_1m');
    let a = this.minutes.get(m);
    if (!a) this.minutes.set(m, (a = { batches: 0, exact: true, rows: new Map() }));
    a.batches++;
    const ip = b.ip;
    for (let i = 0; i < ip.count; i++) {
      const v = [u64At(ip.txPackets, i), u64At(ip.txBytes, i), u64At(ip.rxPackets, i), u64At(ip.rxBytes, i)];
      if (v.some((x) => typeof x === 'bigint')) {
        a.exact = false;
        continue;
      }
      const id = ids[ip.idx[i]];
      const r = a.rows.get(id);
      if (r) for (let k = 0; k < 4; k++) r[k] += v[k] as number;
      else a.rows.set(id, v as number[]);
    }
    // Sums past 2^53 cannot be kept exactly in doubles: recompute such a minute in SQL.
    if (a.exact) for (const r of a.rows.values()) if (r[1] > Number.MAX_SAFE_INTEGER || r[3] > Number.MAX_SAFE_INTEGER) a.exact = false;
  }

  /** A transaction that ran `accumulate` callers' batches failed: forget the running sums. */
  forget(): void {
    this.minutes.clear();
  }

  /** Recomputes one bucket from the level below and marks the next level dirty. */
  private close(level: Level, bucket: number): void {
    const s = this.stmts.level[level];
    s.del.run(bucket);
    const range = { start: bucket, end: bucket + LEVELS[level].ms };
    if (level === 'ip_1m') {
      const a = this.minutes.get(bucket);
      this.minutes.delete(bucket);
      // The running sums are the bucket only when every interval of the minute in the log
      // went through them (no other session, no re-appended batch).
      if (a && a.exact && a.batches === (s.parts.get(range) as number)) {
        this.insertSums(bucket, a.rows);
        this.finish(level, bucket);
        return;
      }
    }
    // One interval (or bucket) below: its rows are already one per key, so copy them in key
    // order instead of sorting and grouping.
    if ((s.parts.get(range) as number) === 1) s.copy.run(range);
    else s.ins.run(range);
    this.finish(level, bucket);
  }

  private finish(level: Level, bucket: number): void {
    this.stmts.clean.run(level, bucket);
    const next = LEVELS[level].next;
    if (next) this.markDirty(next, bucket);
  }

  private insertSums(bucket: number, rows: Map<number, number[]>): void {
    const ids = [...rows.keys()].sort((x, y) => x - y);
    const p: number[] = [];
    for (const id of ids) {
      const r = rows.get(id)!;
      p.push(bucket, id, r[0], r[1], r[2], r[3]);
      if (p.length === 6 * ACC_INSERT_ROWS) {
        this.stmts.accMany.run(p);
        p.length = 0;
      }
    }
    for (let i = 0; i < p.length; i += 6) this.stmts.accOne.run(p.slice(i, i + 6));
  }

  /** Closes every dirty bucket that ends at or before `ms` (call inside a transaction). */
  closeUpTo(ms: number): number {
    let n = 0;
    for (const level of ORDER) {
      for (;;) {
        const buckets = this.stmts.closable.all(level, ms) as number[];
        if (buckets.length === 0) break;
        for (const b of buckets) this.close(level, b);
        n += buckets.length;
      }
    }
    return n;
  }

  closeAll(): number {
    return this.closeUpTo(8.64e15);
  }

  /**
   * Recomputes every projection from the log: the buckets covered by delta rows still in the
   * log are rebuilt from scratch; older buckets (their raw rows gone to retention) are kept.
   */
  rebuild(): { buckets: number } {
    return this.db.transaction(() => {
      const rawFrom = (table: string, bit: number) =>
        this.db.prepare(`select min(start_ms) from batches where pruned & ${bit} = 0 and ${table === 'ip' ? 'ip_rows' : 'flow_rows'} > 0`).pluck().get() as number | null;
      for (const [family, bit, levels] of [
        ['ip', 1, ['ip_1m', 'ip_1h', 'ip_1d']],
        ['flow', 2, ['flow_1m', 'flow_1h']],
      ] as const) {
        const from = rawFrom(family, bit);
        if (from === null) continue;
        for (const level of levels) {
          const b = bucketOf(from, level);
          this.db.prepare(`delete from ${level} where bucket_ms >= ?`).run(b);
          this.db.prepare('delete from rollup_dirty where level = ?').run(level);
        }
        const rows = this.db
          .prepare(`select distinct start_ms from batches where start_ms >= ? and ${family === 'ip' ? 'ip_rows' : 'flow_rows'} > 0`)
          .pluck()
          .all(from) as number[];
        for (const s of rows) this.markBatch(s, family === 'ip', family === 'flow');
      }
      return { buckets: this.closeAll() };
    })();
  }
}
