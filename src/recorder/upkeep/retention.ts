/**
 * Retention: old rows leave in small steps (a few buckets or batches per step, each step its
 * own short transaction), so a write never waits on a large delete; freed pages are reused by
 * later writes.
 */
import type Database from 'better-sqlite3';
import ms from 'ms';
import { ALL_LEVELS, LEVELS } from '../../schema/levels';
import { TcError } from '../../errors';

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

export class Pruner {
  private readonly stmts;
  constructor(private readonly db: Database.Database, private readonly r: Retention) {
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
    })();
    return removed;
  }
}
