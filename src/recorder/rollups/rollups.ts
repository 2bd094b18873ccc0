/**
 * Projections of the event log: per-IP minute/hour/day and per-flow minute/hour sums, kept by
 * the writer. A batch marks its minute buckets dirty; a bucket closes (is recomputed whole from
 * the level below, then marks the next level dirty) once the recorder has written a batch that
 * starts at or after the bucket's end. Recomputing whole buckets makes closing idempotent, so a
 * late or replayed batch only re-dirties its buckets. Buckets are written from running sums
 * (the writer's for minutes, the closed minutes' for hours, the hours' for days) while every
 * part of the bucket went through them; any other bucket is grouped in SQL.
 */
import type Database from 'better-sqlite3';

import { U32Map } from '../typed-arrays/u32map';
import { putNum, RowInsert } from '../write/rows';
import { byIpId } from '../typed-arrays/order';
import { FlowSums } from '../typed-arrays/flowsums';
import { SUMS_MAX_KEYS, SumsRoom } from '../typed-arrays/sums-room';
import { FLOW_KEY as FLOW_KEY_COLUMNS, FLOW_ROLLUP_COLUMNS, IP_ROLLUP_COLUMNS, IP_VALUES } from '../../schema/columns';
import { bucketOf, CLOSING_ORDER, FLOW_LEVELS, IP_LEVELS, isIpLevel, LEVELS, type FlowLevel, type IpLevel, type Level, type Family } from '../../schema/levels';

/** How a level's buckets are computed from the level below (its length and next level: LEVELS). */
interface LevelSql {
  /** SQL producing the bucket's rows from the level below; binds (:start, :end). */
  source: string;
  /** The same when the level below holds one interval / bucket in range: a copy, no sort. */
  copy: string;
  /** Counts the intervals / buckets of the level below in range; binds (:start, :end). */
  parts: string;
}

const IP_COLS = IP_VALUES.join(', ');
const IP_SUMS = IP_VALUES.map((c) => `sum(${c})`).join(', ');
const FLOW_KEY = FLOW_KEY_COLUMNS.join(', ');

/**
 * Counts the distinct buckets of `table` in (:start, :end) by seeking from one bucket to the next
 * on the primary key (bucket_ms first): a handful of index look-ups, where count(distinct) read
 * every row of the range (a bucket's 100,000 rows took ~40 ms at each close).
 */
function distinctBuckets(table: string): string {
  return `with recursive b(ms) as (
      select (select min(bucket_ms) from ${table} where bucket_ms >= :start and bucket_ms < :end)
      union all
      select (select min(bucket_ms) from ${table} where bucket_ms > b.ms and bucket_ms < :end) from b where b.ms is not null
    ) select count(ms) from b`;
}

const SQL: Record<Level, LevelSql> = {
  ip_1m: {
    source: `select :start, d.ip_id, ${IP_SUMS} from batches b join ip_deltas d on d.batch_id = b.id
             where b.start_ms >= :start and b.start_ms < :end group by d.ip_id`,
    copy: `select :start, d.ip_id, ${IP_COLS} from batches b join ip_deltas d on d.batch_id = b.id
           where b.start_ms >= :start and b.start_ms < :end`,
    parts: 'select count(*) from batches where start_ms >= :start and start_ms < :end',
  },
  ip_1h: {
    source: `select :start, ip_id, ${IP_SUMS} from ip_1m where bucket_ms >= :start and bucket_ms < :end group by ip_id`,
    copy: `select :start, ip_id, ${IP_COLS} from ip_1m where bucket_ms >= :start and bucket_ms < :end`,
    parts: distinctBuckets('ip_1m'),
  },
  ip_1d: {
    source: `select :start, ip_id, ${IP_SUMS} from ip_1h where bucket_ms >= :start and bucket_ms < :end group by ip_id`,
    copy: `select :start, ip_id, ${IP_COLS} from ip_1h where bucket_ms >= :start and bucket_ms < :end`,
    parts: distinctBuckets('ip_1h'),
  },
  flow_1m: {
    source: `select :start, ${FLOW_KEY.split(', ').map((c) => `d.${c}`).join(', ')}, sum(d.packets), sum(d.bytes)
             from batches b join flow_deltas d on d.batch_id = b.id
             where b.start_ms >= :start and b.start_ms < :end group by ${FLOW_KEY.split(', ').map((c) => `d.${c}`).join(', ')}`,
    copy: `select :start, ${FLOW_KEY.split(', ').map((c) => `d.${c}`).join(', ')}, d.packets, d.bytes
           from batches b join flow_deltas d on d.batch_id = b.id where b.start_ms >= :start and b.start_ms < :end`,
    parts: 'select count(*) from batches where start_ms >= :start and start_ms < :end',
  },
  flow_1h: {
    source: `select :start, ${FLOW_KEY}, sum(packets), sum(bytes) from flow_1m where bucket_ms >= :start and bucket_ms < :end group by ${FLOW_KEY}`,
    copy: `select :start, ${FLOW_KEY}, packets, bytes from flow_1m where bucket_ms >= :start and bucket_ms < :end`,
    parts: distinctBuckets('flow_1m'),
  },
};

/**
 * The rows of `source` (one per key: bucket, key columns, counters) as the `:keep` keys with the
 * most bytes, every other key summed into the overflow key (`:ovf`, the overflow address; a
 * flow's protocol and ports 0), so the totals stay exact: a bucket closed under the disk
 * budget's hard stop, and a coarsest bucket compacted by its shedding (retention.ts). Binds
 * (:start, :keep, :ovf) and what `source` binds.
 */
export function foldedSelect(family: Family, source: string): string {
  if (family === 'ip') {
    return `with s(b, ip_id, tp, tb, rp, rb) as (${source}),
      r as (select *, row_number() over (order by tb + rb desc, ip_id) as rn from s)
      select :start, case when rn <= :keep then ip_id else :ovf end as k, sum(tp), sum(tb), sum(rp), sum(rb) from r group by k`;
  }
  const keep = (c: string, other: string) => `case when rn <= :keep then ${c} else ${other} end`;
  return `with s(b, src_id, dst_id, proto, sport, dport, p, y) as (${source}),
    r as (select *, row_number() over (order by y desc, src_id, dst_id, proto, sport, dport) as rn from s)
    select :start, ${keep('src_id', ':ovf')} as k1, ${keep('dst_id', ':ovf')} as k2, ${keep('proto', '0')} as k3, ${keep('sport', '0')} as k4, ${keep('dport', '0')} as k5,
      sum(p), sum(y) from r group by k1, k2, k3, k4, k5`;
}

/** What `Acc` and `FlowSums` share: the running sums of one open bucket. */
interface RunningSums<S> {
  /** Parts (batches, minutes or hours) summed in. */
  parts: number;
  /** False once a part went another way: the bucket is then grouped in SQL. */
  exact: boolean;
  checkRange(): void;
  addAll(other: S): void;
  spoil(): void;
}

/**
 * Running per-address sums of one open per-IP bucket: a minute's from the batches this writer
 * committed, an hour's from the minutes it closed, a day's from the hours. `exact` drops when a
 * part went another way (a value past 2^53, a bucket recomputed in SQL, no room left for its
 * keys in `SumsRoom`): the bucket is then recomputed from the level below in SQL.
 */
export class Acc {
  /** Parts (batches, minutes or hours) summed in. */
  parts = 0;
  exact = true;
  /** Dictionary id -> slot + 1. */
  private slot = new U32Map();
  ids: number[] = [];
  /** Four sums per slot: tx packets, tx bytes, rx packets, rx bytes. */
  sums = new Float64Array(4 * 1024);

  constructor(private readonly room: SumsRoom) {}

  /** Adds one key's values (ids up to U32Map.MAX_VALUE; a no-op once spoiled). */
  add(id: number, txp: number, txb: number, rxp: number, rxb: number): void {
    if (!this.exact) return;
    let s = this.slot.get(id);
    if (s === 0) {
      if (!this.room.take()) {
        this.spoil();
        return;
      }
      s = this.ids.push(id);
      this.slot.set(id, s);
      if (4 * s > this.sums.length) {
        const grown = new Float64Array(this.sums.length * 2);
        grown.set(this.sums);
        this.sums = grown;
      }
    }
    const o = 4 * (s - 1);
    const a = this.sums;
    a[o] += txp;
    a[o + 1] += txb;
    a[o + 2] += rxp;
    a[o + 3] += rxb;
  }

  /** Adds another bucket's sums (a closed part of this one). */
  addAll(other: Acc): void {
    const o = other.sums;
    for (let k = 0; k < other.ids.length && this.exact; k++) this.add(other.ids[k], o[4 * k], o[4 * k + 1], o[4 * k + 2], o[4 * k + 3]);
  }

  /**
   * Sums past 2^53 cannot be kept exactly in doubles. Checked when the bucket closes: sums only
   * grow, so one past 2^53 stays past it.
   */
  checkRange(): void {
    const a = this.sums;
    for (let o = 0; o < 4 * this.ids.length && this.exact; o++) if (a[o] > Number.MAX_SAFE_INTEGER) this.spoil();
  }

  /** From now on the bucket is recomputed in SQL (or it was written); the sums' memory and room go. */
  spoil(): void {
    this.exact = false;
    this.room.give(this.ids.length);
    this.slot = new U32Map(1);
    this.ids = [];
    this.sums = new Float64Array(0);
  }
}

export class Rollups {
  private readonly stmts;
  private readonly acc = Object.fromEntries(IP_LEVELS.map((l) => [l, new Map()])) as Record<IpLevel, Map<number, Acc>>;
  /** Running sums of open flow minutes and hours, by bucket. */
  private readonly flowAcc = Object.fromEntries(FLOW_LEVELS.map((l) => [l, new Map()])) as Record<FlowLevel, Map<number, FlowSums>>;
  /** The keys every open bucket's sums hold in all. */
  private readonly room = new SumsRoom(SUMS_MAX_KEYS);

  constructor(private readonly db: Database.Database) {
    const per = (level: Level) => {
      const cols = isIpLevel(level) ? `bucket_ms, ip_id, ${IP_COLS}` : `bucket_ms, ${FLOW_KEY}, packets, bytes`;
      return {
        del: db.prepare(`delete from ${level} where bucket_ms = ?`),
        ins: db.prepare(`insert into ${level} (${cols}) ${SQL[level].source}`),
        copy: db.prepare(`insert into ${level} (${cols}) ${SQL[level].copy}`),
        folded: db.prepare(`insert into ${level} (${cols}) ${foldedSelect(LEVELS[level].family, SQL[level].source)}`),
        keys: db.prepare(`select count(*) from (${SQL[level].source})`).pluck(),
        parts: db.prepare(SQL[level].parts).pluck(),
      };
    };
    this.stmts = {
      level: Object.fromEntries(CLOSING_ORDER.map((l) => [l, per(l)])) as Record<Level, ReturnType<typeof per>>,
      dirty: db.prepare('insert or ignore into rollup_dirty (level, bucket_ms, end_ms) values (?, ?, ?)'),
      closable: db.prepare('select bucket_ms from rollup_dirty where level = ? and end_ms <= ? order by bucket_ms limit 64').pluck(),
      clean: db.prepare('delete from rollup_dirty where level = ? and bucket_ms = ?'),
      flowSums: Object.fromEntries(FLOW_LEVELS.map((l) => [l, new RowInsert(db, l, FLOW_ROLLUP_COLUMNS)])) as Record<FlowLevel, RowInsert<(typeof FLOW_ROLLUP_COLUMNS)[number]>>,
      sums: Object.fromEntries(IP_LEVELS.map((l) => [l, new RowInsert(db, l, IP_ROLLUP_COLUMNS)])) as Record<IpLevel, RowInsert<(typeof IP_ROLLUP_COLUMNS)[number]>>,
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
    if (hasIpRows) for (const l of IP_LEVELS) this.markDirty(l, startMs);
    if (hasFlowRows) for (const l of FLOW_LEVELS) this.markDirty(l, startMs);
  }

  /**
   * The running sums of the minute a batch starting at `startMs` falls in. The writer adds the
   * batch's per-IP rows to them while it inserts them (one pass over the rows), so that closing
   * the minute (and then its hour and day) inserts sums instead of re-reading and grouping the
   * level below. A failed transaction must be followed by `forget()`.
   */
  minuteSums(startMs: number): Acc {
    return this.accOf('ip_1m', bucketOf(startMs, 'ip_1m'));
  }

  /** The running flow sums of the minute a batch starting at `startMs` falls in (as `minuteSums`). */
  flowMinuteSums(startMs: number): FlowSums {
    return this.flowSumsOf('flow_1m', bucketOf(startMs, 'flow_1m'));
  }

  private flowSumsOf(level: FlowLevel, bucket: number): FlowSums {
    let a = this.flowAcc[level].get(bucket);
    if (!a) this.flowAcc[level].set(bucket, (a = new FlowSums(this.room)));
    return a;
  }

  /** A batch went into the minute's running sums and was written: one more part of its minute. */
  summed(startMs: number): void {
    this.minuteSums(startMs).parts++;
    this.flowMinuteSums(startMs).parts++;
  }

  private accOf(level: IpLevel, bucket: number): Acc {
    let a = this.acc[level].get(bucket);
    if (!a) this.acc[level].set(bucket, (a = new Acc(this.room)));
    return a;
  }

  /**
   * Rows the closes of the open buckets will write (per-IP and flow): the keys of their running
   * sums, or SUMS_MAX_KEYS for a bucket whose sums went to SQL. The disk budget keeps room for them.
   */
  pendingRows(): { ip: number; flow: number } {
    let ip = 0;
    let flow = 0;
    for (const l of IP_LEVELS) for (const a of this.acc[l].values()) ip += a.exact ? a.ids.length : SUMS_MAX_KEYS;
    for (const l of FLOW_LEVELS) for (const a of this.flowAcc[l].values()) flow += a.exact ? a.size : SUMS_MAX_KEYS;
    return { ip, flow };
  }

  /** A transaction that added to or closed running sums failed: forget them all. */
  forget(): void {
    for (const l of IP_LEVELS) this.drop(this.acc[l], () => true);
    for (const l of FLOW_LEVELS) this.drop(this.flowAcc[l], () => true);
  }

  /** Drops the sums of the buckets `which` picks, giving their room back. */
  private drop<S extends RunningSums<S>>(open: Map<number, S>, which: (bucket: number) => boolean): void {
    for (const [b, a] of open) {
      if (!which(b)) continue;
      a.spoil();
      open.delete(b);
    }
  }

  /**
   * Set by the disk budget when a close reached its hard stop: buckets closed from now on keep
   * at most `keep` keys (the most bytes) and fold the others into the overflow key (`ovf()`, the
   * overflow address's id). Undefined: every key is kept.
   */
  fold: { keep: number; ovf: () => number; folded(level: Level, bucket: number, keys: number, kept: number): void } | undefined;

  /** Recomputes one bucket from the level below and marks the next level dirty. */
  private close(level: Level, bucket: number): void {
    const s = this.stmts.level[level];
    s.del.run(bucket);
    const range = { start: bucket, end: bucket + LEVELS[level].ms };
    if (this.fold) {
      // The running sums would hold every key: this bucket, and the next level's, go through SQL.
      const open: Map<number, { spoil(): void }> = isIpLevel(level) ? this.acc[level] : this.flowAcc[level as FlowLevel];
      open.get(bucket)?.spoil();
      open.delete(bucket);
      const next = LEVELS[level].next;
      if (next) (isIpLevel(next) ? this.acc[next] : this.flowAcc[next as FlowLevel]).get(bucketOf(bucket, next))?.spoil();
      const keys = s.keys.get(range) as number;
      s.folded.run({ ...range, keep: this.fold.keep, ovf: this.fold.ovf() });
      if (keys > this.fold.keep) this.fold.folded(level, bucket, keys, this.fold.keep);
      this.finish(level, bucket);
      return;
    }
    const parts = s.parts.get(range) as number;
    const next = LEVELS[level].next;
    const written = isIpLevel(level)
      ? this.closeFromSums(this.acc[level], next && this.accOf(next as IpLevel, bucketOf(bucket, next)), bucket, parts, (a) => this.insertSums(level, bucket, a))
      : this.closeFromSums(this.flowAcc[level as FlowLevel], next && this.flowSumsOf(next as FlowLevel, bucketOf(bucket, next)), bucket, parts, (a) =>
          this.insertFlowSums(level as FlowLevel, bucket, a),
        );
    // One interval (or bucket) below: its rows are already one per key, so copy them in key
    // order instead of sorting and grouping.
    if (!written && parts === 1) s.copy.run(range);
    else if (!written) s.ins.run(range);
    this.finish(level, bucket);
  }

  /**
   * Writes a bucket from its running sums, and adds them to the next level's, when every part
   * of the bucket in the log went through them (no other session, no re-appended batch, no part
   * recomputed in SQL); returns whether it did. Otherwise the next level's sums are spoiled and
   * the caller groups the bucket in SQL.
   */
  private closeFromSums<S extends RunningSums<S>>(open: Map<number, S>, nextSums: S | undefined, bucket: number, parts: number, insert: (a: S) => void): boolean {
    const a = open.get(bucket);
    open.delete(bucket);
    a?.checkRange();
    if (a && a.exact && a.parts === parts) {
      insert(a);
      if (nextSums) {
        nextSums.parts++;
        nextSums.addAll(a);
      }
      a.spoil();
      return true;
    }
    a?.spoil();
    nextSums?.spoil();
    return false;
  }

  private finish(level: Level, bucket: number): void {
    this.stmts.clean.run(level, bucket);
    const next = LEVELS[level].next;
    if (next) this.markDirty(next, bucket);
  }

  private insertSums(level: IpLevel, bucket: number, a: Acc): void {
    const order = byIpId(a.ids);
    const sums = a.sums;
    const rows = this.stmts.sums[level].start();
    const w = rows.words;
    const { bucket_ms, ip_id, tx_packets, tx_bytes, rx_packets, rx_bytes } = rows.col;
    for (let k = 0; k < a.ids.length; k++) {
      const s = order ? order[k] : k;
      const v = 4 * s;
      const o = rows.row();
      putNum(w, o + bucket_ms, bucket);
      putNum(w, o + ip_id, a.ids[s]);
      putNum(w, o + tx_packets, sums[v]);
      putNum(w, o + tx_bytes, sums[v + 1]);
      putNum(w, o + rx_packets, sums[v + 2]);
      putNum(w, o + rx_bytes, sums[v + 3]);
    }
    rows.end();
  }

  private insertFlowSums(level: FlowLevel, bucket: number, a: FlowSums): void {
    const order = a.order();
    const rows = this.stmts.flowSums[level].start();
    const w = rows.words;
    const { bucket_ms, src_id, dst_id, proto, sport, dport, packets, bytes } = rows.col;
    for (let k = 0; k < a.size; k++) {
      const s = order[k];
      const ports = a.ports[s];
      const o = rows.row();
      putNum(w, o + bucket_ms, bucket);
      putNum(w, o + src_id, a.src[s]);
      putNum(w, o + dst_id, a.dst[s]);
      putNum(w, o + proto, a.proto[s]);
      putNum(w, o + sport, ports >>> 16);
      putNum(w, o + dport, ports & 0xffff);
      putNum(w, o + packets, a.packets[s]);
      putNum(w, o + bytes, a.bytes[s]);
    }
    rows.end();
  }

  /** Closes every dirty bucket that ends at or before `ms` (call inside a transaction). */
  closeUpTo(ms: number): number {
    let n = 0;
    for (const level of CLOSING_ORDER) {
      for (;;) {
        const buckets = this.stmts.closable.all(level, ms) as number[];
        if (buckets.length === 0) break;
        for (const b of buckets) this.close(level, b);
        n += buckets.length;
      }
    }
    // Sums of buckets that ended without being dirty (intervals without per-IP rows) go.
    for (const l of IP_LEVELS) this.drop(this.acc[l], (b) => b + LEVELS[l].ms <= ms);
    for (const l of FLOW_LEVELS) this.drop(this.flowAcc[l], (b) => b + LEVELS[l].ms <= ms);
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
        ['ip', 1, IP_LEVELS],
        ['flow', 2, FLOW_LEVELS],
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
