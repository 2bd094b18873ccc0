/**
 * Retention: old rows leave in small steps (a few buckets or batches per step, each step its
 * own short transaction), so a write never waits on a large delete; freed pages are reused by
 * later writes.
 */
import type Database from 'better-sqlite3';
import ms from 'ms';
import { ALL_LEVELS, bucketOf, HOUR_MS, LEVELS, levelsOf, type Level } from '../../schema/levels';
import { TcError } from '../../errors';
import { foldedSelect } from '../rollups/rollups';
import { recentFrom, dropNamesOf, pruneNames, shedNames, withoutTraffic } from './names';

export interface Retention {
  rawIpMs: number;
  rawFlowMs: number;
  minutesMs: number;
  hoursMs: number;
  /** Infinity = kept forever. */
  daysMs: number;
}

/** The defaults as a person writes them (shown by `record --help`). */
export const DEFAULT_RETENTION_TEXT: Record<keyof Retention, string> = {
  rawIpMs: '48h',
  rawFlowMs: '6h',
  minutesMs: '14d',
  hoursMs: '400d',
  daysMs: 'forever',
};

/** Parses "48h", "14d", "forever". */
export function parseRetention(v: string): number {
  if (/^(forever|never|inf)$/i.test(v.trim())) return Infinity;
  const d = ms(v.trim() as ms.StringValue);
  if (typeof d !== 'number' || !Number.isFinite(d) || d <= 0) throw new TcError(`${JSON.stringify(v)} is not a retention period (e.g. 48h, 14d, forever)`, 'ERR_TC_BAD_OPTION');
  return d;
}

export const DEFAULT_RETENTION: Retention = Object.fromEntries(
  Object.entries(DEFAULT_RETENTION_TEXT).map(([k, v]) => [k, parseRetention(v)]),
) as unknown as Retention;

const BATCHES_PER_STEP = 16;
const BUCKETS_PER_STEP = 2;
/** How often retention looks for names whose address has no traffic left (each look reads every traffic table once). */
const NAMES_PRUNE_EVERY_MS = HOUR_MS;

export class Pruner {
  private readonly stmts;
  /** When retention last looked at the names (see NAMES_PRUNE_EVERY_MS). */
  private namesAt = -Infinity;

  /** `onNamesRemoved`: names left the name dictionary (the writer's cached ids may name them). */
  constructor(private readonly db: Database.Database, private readonly r: Retention, private readonly onNamesRemoved: () => void = () => undefined) {
    this.stmts = {
      oldBatches: db.prepare('select id, pruned from batches where pruned != 3 and (pruned & ?) = 0 and start_ms < ? order by start_ms limit ?'),
      delIp: db.prepare('delete from ip_deltas where batch_id = ?'),
      delFlow: db.prepare('delete from flow_deltas where batch_id = ?'),
      setPruned: db.prepare('update batches set pruned = ? where id = ?'),
      oldestBucket: Object.fromEntries(
        ALL_LEVELS.map((t) => [t, db.prepare(`select bucket_ms from ${t} order by bucket_ms limit 1`).pluck()]),
      ),
      delBucket: Object.fromEntries(ALL_LEVELS.map((t) => [t, db.prepare(`delete from ${t} where bucket_ms = ?`)])),
      delBatchRows: db.prepare('delete from batches where pruned = 3 and start_ms < ?'),
    };
  }

  /** One bounded step of retention at time `now`; returns rows removed. */
  step(now: number): number {
    let removed = 0;
    this.db.transaction(() => {
      const cutIp = now - this.r.rawIpMs;
      const cutFlow = now - this.r.rawFlowMs;
      for (const [bit, cut, del] of [
        [1, cutIp, this.stmts.delIp],
        [2, cutFlow, this.stmts.delFlow],
      ] as const) {
        const rows = this.stmts.oldBatches.all(bit, cut, BATCHES_PER_STEP) as { id: number; pruned: number }[];
        for (const b of rows) {
          removed += del.run(b.id).changes;
          this.stmts.setPruned.run(b.pruned | bit, b.id);
        }
      }
      for (const t of ALL_LEVELS) {
        const age = this.r[LEVELS[t].keep];
        if (!Number.isFinite(age)) continue;
        for (let i = 0; i < BUCKETS_PER_STEP; i++) {
          const oldest = this.stmts.oldestBucket[t].get() as number | undefined;
          if (oldest === undefined || oldest >= now - age) break;
          removed += this.stmts.delBucket[t].run(oldest).changes;
        }
      }
      // Interval records (small) stay as long as minute rollups, for status and gap reports.
      removed += this.stmts.delBatchRows.run(now - Math.max(this.r.minutesMs, this.r.rawIpMs, this.r.rawFlowMs)).changes;
      removed += this.pruneNames(now);
    })();
    return removed;
  }

  /**
   * Names not known to be needed within the longest retention period whose address has no
   * traffic rows left (none when a level is kept forever: its rows keep every address).
   */
  private pruneNames(now: number): number {
    const longest = Math.max(this.r.rawIpMs, this.r.rawFlowMs, this.r.minutesMs, this.r.hoursMs, this.r.daysMs);
    if (!Number.isFinite(longest) || now - this.namesAt < NAMES_PRUNE_EVERY_MS) return 0;
    const keepOf = (table: string) => (table === 'ip_deltas' ? this.r.rawIpMs : table === 'flow_deltas' ? this.r.rawFlowMs : this.r[LEVELS[table as Level].keep]);
    const { removed, more } = pruneNames(this.db, now, longest, keepOf);
    // A look that could not take every candidate goes on at the next step.
    if (!more) this.namesAt = now;
    if (removed.hostnames > 0) this.onNamesRemoved();
    return removed.rows;
  }
}

/**
 * What the disk budget sheds, in order: one kind at a time, each oldest first. Raw flows go
 * first and per-IP hours and days last (together, oldest first: a day only once its hours are
 * gone).
 */
/**
 * `names`: the names of addresses without traffic (an answer never shows them beside traffic),
 * once raw rows and minutes are gone (the look-up reads every traffic table, cheaper then) and
 * before the last copies of the traffic totals are compacted; a names flood therefore never
 * takes traffic totals with it.
 * `batches` last: the interval log (a row per interval, counters and gaps) of time whose raw rows
 * are gone, once nothing else may go (a long capture under a small budget).
 */
export const SHED_ORDER = ['flow_deltas', 'ip_deltas', 'flow_1m', 'ip_1m', 'names', 'flow_1h', 'ip_1h+ip_1d', 'batches'] as const;
export type ShedKind = (typeof SHED_ORDER)[number];
/** What a shed step removed (for its `budget-shed` event). */
export interface Shed {
  /** The table the rows left: ip_deltas, flow_deltas, or a rollup level. */
  level: string;
  rows: number;
  /** Span of the intervals or buckets removed. */
  startMs: number;
  endMs: number;
  /** Bytes of pages freed (free pages are reused by later writes). */
  bytesFreed: number;
  /** Intervals (raw) or buckets (rollups) removed. */
  parts: number;
  /** Addresses no row refers to any more, removed from `addresses`. */
  addresses: number;
  /** Name rows removed (names of addresses whose traffic is gone; the name dictionary changed). */
  names?: number;
  /**
   * A coarsest bucket (per-IP day, flow hour) compacted rather than removed: the keys it kept,
   * the rest folded into the overflow row (its totals stay). The dictionary then changed.
   */
  keptKeys?: number;
}

const SHED_BATCHES = 64;

/**
 * One step of the disk budget's shedding: removes the oldest rows of the first kind in
 * SHED_ORDER that has any it may remove, in the current transaction. Rules: raw rows only of
 * intervals whose minute is closed (rolled up, not dirty); a rollup bucket only when it is
 * closed, its coarser bucket is closed (has summed it) and no finer level holds rows of it.
 * Returns undefined when nothing may be removed. Shedding the coarsest level of a family (per-IP
 * days, flow hours) also removes the addresses no row refers to any more.
 */
export function shedStep(db: Database.Database): Shed | undefined {
  const page = db.pragma('page_size', { simple: true }) as number;
  const free = () => db.pragma('freelist_count', { simple: true }) as number;
  for (const kind of SHED_ORDER) {
    const before = free();
    const s = kind === 'flow_deltas' || kind === 'ip_deltas' ? shedRaw(db, kind) : kind === 'batches' ? shedLog(db) : kind === 'names' ? shedNameRows(db) : shedBucket(db, kind);
    if (s) return { ...s, bytesFreed: (free() - before) * page };
  }
  return undefined;
}

function shedRaw(db: Database.Database, table: 'ip_deltas' | 'flow_deltas'): Omit<Shed, 'bytesFreed'> | undefined {
  const family = table === 'ip_deltas' ? 'ip' : 'flow';
  const bit = family === 'ip' ? 1 : 2;
  // Raw rows of a minute still dirty are what closing it reads.
  const openFrom = db.prepare("select min(bucket_ms) from rollup_dirty where level = ?").pluck().get(`${family}_1m`) as number | null;
  const rows = db
    .prepare('select id, pruned, start_ms, end_ms from batches where pruned != 3 and (pruned & ?) = 0 and start_ms < ? order by start_ms limit ?')
    .all(bit, openFrom ?? 8.64e15, SHED_BATCHES) as { id: number; pruned: number; start_ms: number; end_ms: number }[];
  if (rows.length === 0) return undefined;
  const del = db.prepare(`delete from ${table} where batch_id = ?`);
  const mark = db.prepare('update batches set pruned = ? where id = ?');
  let n = 0;
  for (const b of rows) {
    n += del.run(b.id).changes;
    mark.run(b.pruned | bit, b.id);
  }
  return { level: table, rows: n, startMs: rows[0].start_ms, endMs: Math.max(...rows.map((r) => r.end_ms)), parts: rows.length, addresses: 0 };
}

/** The names of addresses without traffic (names.ts shedNames); parts: the addresses. */
function shedNameRows(db: Database.Database): Omit<Shed, 'bytesFreed'> | undefined {
  const r = shedNames(db);
  if (!r) return undefined;
  return { level: 'names', rows: r.rows, startMs: r.fromMs, endMs: r.toMs, parts: r.addresses, addresses: r.addressesRemoved, names: r.rows };
}

function shedBucket(db: Database.Database, kind: Exclude<ShedKind, 'ip_deltas' | 'flow_deltas' | 'batches' | 'names'>): Omit<Shed, 'bytesFreed'> | undefined {
  // Hours before days: an hour leaves once its day holds it; a day (the last copy of its
  // totals) is only ever compacted.
  const levels: Level[] = kind === 'ip_1h+ip_1d' ? ['ip_1h', 'ip_1d'] : [kind];
  const dirty = db.prepare('select 1 from rollup_dirty where level = ? and bucket_ms = ?').pluck();
  for (const level of levels) {
    const L = LEVELS[level];
    const coarsest = L.next === undefined;
    // The oldest bucket: of a coarsest level, the oldest with more than its overflow row left.
    const bucket = coarsest ? oldestCompactable(db, level) : (db.prepare(`select bucket_ms from ${level} order by bucket_ms limit 1`).pluck().get() as number | undefined);
    if (bucket === undefined) continue;
    const end = bucket + L.ms;
    if (dirty.get(level, bucket)) continue;
    if (L.next && dirty.get(L.next, bucketOf(bucket, L.next))) continue;
    const finer = levelsOf(L.family).find((l) => LEVELS[l].next === level);
    const finerHolds = finer
      ? db.prepare(`select 1 from ${finer} where bucket_ms >= ? and bucket_ms < ? limit 1`).pluck().get(bucket, end)
      : db
          .prepare(`select 1 from batches where start_ms >= ? and start_ms < ? and (pruned & ?) = 0 and ${L.family}_rows > 0 limit 1`)
          .pluck()
          .get(bucket, end, L.family === 'ip' ? 1 : 2);
    if (finerHolds) continue;
    if (coarsest) return compact(db, level, bucket);
    const rows = db.prepare(`delete from ${level} where bucket_ms = ?`).run(bucket).changes;
    return { level, rows, startMs: bucket, endMs: end, parts: 1, addresses: 0 };
  }
  return undefined;
}

/** The oldest interval records whose raw rows are gone and whose minutes are closed. */
function shedLog(db: Database.Database): Omit<Shed, 'bytesFreed'> | undefined {
  const openFrom = db.prepare("select min(bucket_ms) from rollup_dirty where level in ('ip_1m', 'flow_1m')").pluck().get() as number | null;
  const rows = db.prepare('select id, start_ms, end_ms from batches where pruned = 3 and start_ms < ? order by start_ms limit ?').all(openFrom ?? 8.64e15, SHED_BATCHES) as { id: number; start_ms: number; end_ms: number }[];
  if (rows.length === 0) return undefined;
  const del = db.prepare('delete from batches where id = ?');
  for (const r of rows) del.run(r.id);
  return { level: 'batches', rows: rows.length, startMs: rows[0].start_ms, endMs: Math.max(...rows.map((r) => r.end_ms)), parts: rows.length, addresses: 0 };
}

/** Buckets looked at per step for one with more than its overflow row. */
const COMPACT_SCAN = 4096;

function oldestCompactable(db: Database.Database, level: Level): number | undefined {
  const next = db.prepare(`select bucket_ms, count(*) as n from ${level} where bucket_ms >= ? group by bucket_ms order by bucket_ms limit 1`);
  let from = -8.64e15;
  for (let i = 0; i < COMPACT_SCAN; i++) {
    const r = next.get(from) as { bucket_ms: number; n: number } | undefined;
    if (!r) return undefined;
    if (r.n > 1) return r.bucket_ms;
    from = r.bucket_ms + 1;
  }
  return undefined;
}

/**
 * Rewrites a coarsest bucket as its heavier half of keys (by bytes), the rest summed into the
 * overflow key (the overflow address; a flow's protocol and ports 0): the bucket's totals stay
 * exact, its detail halves each time it is compacted, down to the overflow row alone.
 */
function compact(db: Database.Database, level: Level, bucket: number): Omit<Shed, 'bytesFreed'> {
  const L = LEVELS[level];
  const n = db.prepare(`select count(*) from ${level} where bucket_ms = ?`).pluck().get(bucket) as number;
  const keep = Math.floor((n - 1) / 2);
  db.prepare("insert or ignore into addresses (addr, text) values (x'', 'overflow')").run();
  const ovf = db.prepare("select id from addresses where addr = x''").pluck().get() as number;
  db.exec('create temp table if not exists shed_ids (id integer primary key)');
  const refs = L.family === 'ip' ? ['ip_id'] : ['src_id', 'dst_id'];
  for (const c of refs) db.prepare(`insert or ignore into temp.shed_ids select ${c} from ${level} where bucket_ms = ?`).run(bucket);
  // The bucket's own rows as the source: they are one per key already.
  const cols = L.family === 'ip' ? 'ip_id, tx_packets, tx_bytes, rx_packets, rx_bytes' : 'src_id, dst_id, proto, sport, dport, packets, bytes';
  const temp = `temp.compact_${L.family}`;
  db.exec(`create temp table if not exists compact_${L.family} (bucket_ms, ${cols})`);
  db.prepare(`insert into ${temp} ${foldedSelect(L.family, `select :start, ${cols} from ${level} where bucket_ms = :start`)}`).run({ start: bucket, keep, ovf });
  db.prepare(`delete from ${level} where bucket_ms = ?`).run(bucket);
  db.prepare(`insert into ${level} select * from ${temp}`).run();
  db.prepare(`delete from ${temp}`).run();
  const dropped = dropUnreferenced(db);
  return { level, rows: n - keep - 1, startMs: bucket, endMs: bucket + L.ms, parts: 1, addresses: dropped.addresses, names: dropped.names, keptKeys: keep };
}

/**
 * Removes the addresses in temp.shed_ids that no traffic table refers to any more, with their
 * names (a name stays as long as a traffic row of its address); one seen in the newest minute
 * stays, and keeps its address (its traffic may come in the next interval).
 */
function dropUnreferenced(db: Database.Database): { addresses: number; names: number } {
  withoutTraffic(db, 'temp.shed_ids');
  const names = dropNamesOf(db, 'temp.shed_ids', 'last_ms < :guard', { guard: recentFrom(db) }).rows;
  const addresses = db.prepare('delete from addresses where id in temp.shed_ids and not exists (select 1 from names where ip_id = addresses.id)').run().changes;
  db.prepare('delete from temp.shed_ids').run();
  return { addresses, names };
}
