/**
 * Keeps the database file within its budget (disk.ts): PRAGMA max_page_count is the hard stop
 * (a write past it fails with SQLITE_FULL and its group rolls back); before each write group,
 * detail is shed oldest first (retention.ts shedStep) until the group fits under the high-water
 * mark, and an interval larger than its share keeps only its heaviest keys (fold.ts). Each
 * shedding step is a `budget-shed` event; consecutive steps of a level within a minute extend
 * one event, so a sustained flood adds a few events a minute, not one per step.
 */
import type Database from 'better-sqlite3';
import type { Batch } from '../../native';
import { foldBatch, type StoredBatch } from './fold';
import { CLOSE_SHARE, BYTES_PER_BATCH, BYTES_PER_FLOW_KEY, BYTES_PER_FLOW_ROLLUP_ROW, BYTES_PER_IP_KEY, BYTES_PER_IP_ROLLUP_ROW, BYTES_PER_NAME, HIGH_WATER, INTERVAL_SHARE, NAMES_SHARE } from './disk';
import { shedStep, type Shed } from '../upkeep/retention';
import type { Metrics } from '../observe/metrics';
import type { Logger } from '../observe/log';
import { bytes, isoUtc, plural } from '../../units';

/** Shed events of a level closer together than this extend one event. */
const EVENT_MERGE_MS = 60_000;
/** Steps one write group may shed before it is written anyway (max_page_count still holds). */
const MAX_STEPS = 100_000;

interface OpenEvent {
  id: number;
  atMs: number;
  startMs: number;
  endMs: number;
  rows: number;
  parts: number;
  bytesFreed: number;
  addresses: number;
}

export class DiskBudget {
  private readonly page: number;
  private readonly open = new Map<string, OpenEvent>();
  private warnedFull = false;

  constructor(
    private readonly db: Database.Database,
    readonly maxBytes: number,
    private readonly sessionId: number,
    private readonly metrics: Metrics,
    private readonly log: Logger,
    /** Called after shedding removed addresses (the writer's cached ids may name them). */
    private readonly onAddressesRemoved: () => void,
    /** Rows the closes of open rollup buckets will write: room is kept for them. */
    private readonly pendingRows: () => { ip: number; flow: number },
    /**
     * 1: shed and fold before the write as estimated. 0 (tests): a first attempt neither sheds
     * nor folds, so the hard stop (SQLITE_FULL) and its retries are what holds.
     */
    private readonly estimateScale = 1,
  ) {
    this.page = db.pragma('page_size', { simple: true }) as number;
    const pages = Math.floor(maxBytes / this.page);
    const set = db.pragma(`max_page_count = ${pages}`, { simple: true }) as number;
    metrics.budgetBytes = maxBytes;
    if (set > pages) {
      log.warn(
        `${bytes(set * this.page)} file is above its budget of ${bytes(maxBytes)}: detail is shed until its used pages fit, and the file keeps its size (free pages are reused; VACUUM it offline to shrink it)`,
        { event: 'budget-over', file_bytes: set * this.page, max_db_size: maxBytes },
      );
    }
    this.metrics.usedBytes = this.used();
  }

  /** Bytes of the file's pages in use: (page_count - freelist_count) * page_size. */
  used(): number {
    const pages = this.db.pragma('page_count', { simple: true }) as number;
    const free = this.db.pragma('freelist_count', { simple: true }) as number;
    return (pages - free) * this.page;
  }

  /** The most a write group may add and stay under the high-water mark (or the hard stop). */
  private get highWater(): number {
    return this.maxBytes * HIGH_WATER;
  }

  /** Estimated bytes a stored batch adds. */
  private static estimate(b: Batch): number {
    return BYTES_PER_BATCH + b.ip.count * BYTES_PER_IP_KEY + b.flow.count * BYTES_PER_FLOW_KEY + b.names.name.length * BYTES_PER_NAME;
  }

  /**
   * Keys `b` may keep in `share` bytes: its names what they need up to NAMES_SHARE of it (all
   * of it in an interval without traffic), then per-IP and flows half each (when both are
   * there), a family that needs less leaving the rest to the other.
   */
  private static keys(b: Batch, share: number): { ip: number; flow: number; names: number } {
    const all = Math.max(0, share - BYTES_PER_BATCH);
    const namesShare = Math.min(b.names.name.length * BYTES_PER_NAME, b.ip.count + b.flow.count > 0 ? all * NAMES_SHARE : all);
    const room = all - namesShare;
    const ipNeed = b.ip.count * BYTES_PER_IP_KEY;
    const flowNeed = b.flow.count * BYTES_PER_FLOW_KEY;
    let ipShare = b.flow.count > 0 ? room / 2 : room;
    if (ipNeed < ipShare) ipShare = ipNeed;
    let flowShare = room - ipShare;
    if (flowNeed < flowShare) {
      flowShare = flowNeed;
      ipShare = room - flowShare;
    }
    return { ip: Math.floor(ipShare / BYTES_PER_IP_KEY), flow: Math.floor(flowShare / BYTES_PER_FLOW_KEY), names: Math.floor(namesShare / BYTES_PER_NAME) };
  }

  /**
   * The group as it is to be written: each batch within its share of the budget (`tighten`
   * halves the share per step, after SQLITE_FULL), with detail shed first until it fits under
   * the high-water mark; when nothing more may be shed, the batches keep fewer keys so that it
   * fits under the hard stop.
   */
  prepare(group: readonly Batch[], tighten = 0): StoredBatch[] {
    const scale = tighten > 0 ? 1 : this.estimateScale;
    const share = scale === 0 ? Infinity : (this.maxBytes * INTERVAL_SHARE) / 2 ** tighten;
    let out = group.map((b) => this.fold(b, share));
    let need = scale * out.reduce((s, b) => s + DiskBudget.estimate(b), 0);
    // What the file holds, and what closing the open buckets will add (a flood's hour and day
    // rows are written when they close, all at once).
    const p = this.pendingRows();
    const pending = p.ip * BYTES_PER_IP_ROLLUP_ROW + p.flow * BYTES_PER_FLOW_ROLLUP_ROW;
    let used = this.used() + pending;
    let steps = 0;
    while (scale > 0 && used + need > this.highWater && steps++ < MAX_STEPS) {
      const s = this.shedOne();
      if (!s) break;
      used = this.used() + pending;
    }
    const room = this.maxBytes - used - this.page * 8;
    if (used + need > this.maxBytes && need > 0) {
      // Nothing older is left to shed: the present keeps fewer keys, never fewer intervals.
      const scale = Math.max(0, room) / need;
      out = group.map((b) => this.fold(b, Math.min(share, DiskBudget.estimate(b)) * scale));
      need = out.reduce((s, b) => s + DiskBudget.estimate(b), 0);
    }
    this.metrics.usedBytes = used - pending;
    return out;
  }

  private fold(b: Batch, share: number): StoredBatch {
    if (DiskBudget.estimate(b) <= share) return b;
    const k = DiskBudget.keys(b, share);
    const f = foldBatch(b, k.ip, k.flow, k.names);
    if (f !== b) {
      this.metrics.budgetFoldedIntervals++;
      this.metrics.budgetFoldedIpKeys += f.budgetFoldedIpKeys ?? 0;
      this.metrics.budgetFoldedFlowKeys += f.budgetFoldedFlowKeys ?? 0;
      this.metrics.budgetFoldedNames += b.names.name.length - f.names.name.length;
    }
    return f;
  }

  /**
   * Keys a bucket closed on attempt `attempt` of a write may keep: all on the first two; then
   * the close's share of the budget, halved per attempt (see CLOSE_SHARE).
   */
  closeKeep(attempt: number): number | undefined {
    if (attempt < 2) return undefined;
    return Math.floor((this.maxBytes * CLOSE_SHARE) / BYTES_PER_IP_ROLLUP_ROW / 2 ** (attempt - 2));
  }

  /**
   * A write group failed with SQLITE_FULL (rolled back): sheds one more step, so the retry
   * (tighter, see `prepare`) finds room. The fold metrics of the failed attempt are not undone:
   * they count attempts; the `batches` columns count what was stored.
   */
  onFull(attempt: number): void {
    this.metrics.budgetFullWrites++;
    if (!this.warnedFull) {
      this.warnedFull = true;
      this.log.warn(`a write reached the budget of ${bytes(this.maxBytes)} (SQLITE_FULL): it was rolled back, detail is shed and the intervals are written with fewer keys`, {
        event: 'budget-full',
        max_db_size: this.maxBytes,
        attempt,
      });
    }
    this.shedOne();
  }

  /** One shedding step in its own transaction, with its event; undefined when nothing may go. */
  private shedOne(): Shed | undefined {
    const s = this.db.transaction(() => {
      const shed = shedStep(this.db);
      if (shed) this.record(shed);
      return shed;
    })();
    if (!s) return undefined;
    this.metrics.shed(s.level, s.bytesFreed, s.rows);
    // A compaction may also have added the overflow address; names leaving may take names out of the dictionary.
    if (s.addresses > 0 || s.keptKeys !== undefined || (s.names ?? 0) > 0) this.onAddressesRemoved();
    return s;
  }

  /** The step's `budget-shed` event: a new one, or the level's last one extended. */
  private record(s: Shed): void {
    const now = Date.now();
    const prev = this.open.get(s.level);
    const e: OpenEvent =
      prev && now - prev.atMs < EVENT_MERGE_MS
        ? { ...prev, startMs: Math.min(prev.startMs, s.startMs), endMs: Math.max(prev.endMs, s.endMs), rows: prev.rows + s.rows, parts: prev.parts + s.parts, bytesFreed: prev.bytesFreed + s.bytesFreed, addresses: prev.addresses + s.addresses }
        : { id: 0, atMs: now, startMs: s.startMs, endMs: s.endMs, rows: s.rows, parts: s.parts, bytesFreed: s.bytesFreed, addresses: s.addresses };
    const what = s.level.endsWith('_deltas') ? plural(e.parts, 'interval') : s.level === 'names' ? `${plural(e.parts, 'address', 'addresses')} without traffic seen` : plural(e.parts, 'bucket');
    const detail = JSON.stringify({
      level: s.level,
      rows: e.rows,
      parts: e.parts,
      bytes_freed: e.bytesFreed,
      addresses_removed: e.addresses,
      max_db_size: this.maxBytes,
      ...(s.keptKeys !== undefined ? { compacted: true } : {}),
      text:
        s.keptKeys !== undefined
          ? `${s.level} of ${what} ${isoUtc(e.startMs)} to ${isoUtc(e.endMs)} compacted: ${plural(e.rows, 'key')} folded into the overflow row, totals kept (${bytes(e.bytesFreed)} freed${e.addresses ? `, ${plural(e.addresses, 'address', 'addresses')} no longer used` : ''}) to stay within ${bytes(this.maxBytes)}`
          : `${s.level} of ${what} ${isoUtc(e.startMs)} to ${isoUtc(e.endMs)} shed (${plural(e.rows, 'row')}, ${bytes(e.bytesFreed)} freed${e.addresses ? `, ${plural(e.addresses, 'address', 'addresses')} no longer used` : ''}) to stay within ${bytes(this.maxBytes)}`,
    });
    if (e.id) {
      this.db.prepare('update events set start_ms = ?, end_ms = ?, detail = ? where id = ?').run(e.startMs, e.endMs, detail, e.id);
    } else {
      e.id = Number(this.db.prepare("insert into events (at_ms, session_id, kind, start_ms, end_ms, detail) values (?, ?, 'budget-shed', ?, ?, ?)").run(now, this.sessionId, e.startMs, e.endMs, detail).lastInsertRowid);
    }
    this.open.set(s.level, e);
  }
}
