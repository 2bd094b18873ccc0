/**
 * Between the capture engine and the database: a bounded queue of batches, one transaction
 * per batch (log rows, rollup upkeep, lost-interval records), retries with back-off when the
 * database is locked, full or read-only, and retention in small separate steps.
 *
 * Live capture never waits on the database: past `queueMax` batches the oldest is dropped and a
 * "lost-interval" event records it in the next transaction that succeeds. A replay waits
 * instead (nothing is lost; the engine thread blocks behind the bounded native queue).
 */
import type { Batch } from '../native';
import type { WriteDb } from './db';
import { BatchWriter, type SessionSpec } from './writer';
import { Rollups } from './rollups';
import { Pruner, type Retention } from './retention';
import { Checkpointer } from './checkpointer';
import type { Logger } from './log';
import type { Metrics } from './metrics';

export interface SinkOptions {
  db: WriteDb;
  spec: SessionSpec;
  retention: Retention;
  queueMax: number;
  /** Bytes of batch data the queue may hold (default 256 MiB): a flood's batches are large. */
  queueMaxBytes?: number;
  log: Logger;
  metrics: Metrics;
  /** Consecutive failed writes after which queued writes fail (replays); live retries forever. */
  giveUpAfter?: number;
  /** WAL checkpoints on a thread of their own (default); false: inline, on the writer's thread. */
  checkpointThread?: boolean;
  /** Called after each batch is written (interval line). */
  onWritten?(b: Batch, written: boolean): void;
}

const RETRY_MIN_MS = 250;
const RETRY_MAX_MS = 2_000;
const CHECKPOINT_EVERY_MS = 30_000;

const DEFAULT_QUEUE_MAX_BYTES = 256 * 2 ** 20;

/** Bytes of a batch's columns (what it holds in memory while queued). */
export function batchBytes(b: Batch): number {
  const { addr, ip, flow } = b;
  const cols: ArrayBufferView[] = [addr.fam, addr.bytes, ip.idx, ip.txPackets, ip.txBytes, ip.rxPackets, ip.rxBytes];
  cols.push(flow.src, flow.dst, flow.proto, flow.sport, flow.dport, flow.packets, flow.bytes);
  return cols.reduce((sum, c) => sum + c.byteLength, 0);
}

export class BatchSink {
  private readonly writer: BatchWriter;
  private readonly rollups: Rollups;
  private readonly pruner: Pruner;
  private readonly checkpointer: Checkpointer;
  private readonly queue: Batch[] = [];
  private queueBytes = 0;
  private readonly queueMaxBytes: number;
  private readonly lost: { startMs: number; endMs: number }[] = [];
  private readonly addEvent;
  private pumping = false;
  private retryMs = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private failing = false;
  private lastCheckpoint = Date.now();
  private idleWaiters: { resolve: () => void; reject: (e: Error) => void }[] = [];
  private failures = 0;
  /** Newest interval end in the log: the clock retention measures age against in replays. */
  private newestMs: number;

  constructor(private readonly o: SinkOptions) {
    const db = o.db.sqlite;
    this.writer = new BatchWriter(db, o.db.nodeId, o.spec);
    this.rollups = new Rollups(db);
    this.pruner = new Pruner(db, o.retention);
    this.checkpointer = new Checkpointer(o.db.file, db, o.log);
    this.queueMaxBytes = o.queueMaxBytes ?? DEFAULT_QUEUE_MAX_BYTES;
    this.newestMs = (db.prepare('select max(end_ms) from batches').pluck().get() as number | null) ?? 0;
    this.addEvent = db.prepare('insert into events (at_ms, session_id, kind, start_ms, end_ms, detail) values (?, ?, ?, ?, ?, ?)');
  }

  get sessionId(): number {
    return this.writer.sessionId;
  }

  event(kind: string, detail: string | null, startMs: number | null = null, endMs: number | null = null): void {
    try {
      this.addEvent.run(Date.now(), this.writer.sessionId, kind, startMs, endMs, detail);
    } catch {
      /* the database is failing: the event is in the log output */
    }
  }

  /** Closes the rollup buckets that end by `ms` (left open by a session that was killed). */
  closeStaleBuckets(ms: number): void {
    this.o.db.sqlite.transaction(() => this.rollups.closeUpTo(ms))();
  }

  /** Live: queue the batch and return at once. */
  push(b: Batch): void {
    this.queue.push(b);
    this.queueBytes += batchBytes(b);
    // Oldest first; the newest batch always stays.
    while (this.queue.length > this.o.queueMax || (this.queueBytes > this.queueMaxBytes && this.queue.length > 1)) {
      const dropped = this.queue.shift()!;
      this.queueBytes -= batchBytes(dropped);
      this.lost.push({ startMs: dropped.startMs, endMs: dropped.endMs });
      this.o.metrics.lostIntervals++;
      const why = this.queue.length >= this.o.queueMax ? `${this.o.queueMax} batches` : `${+(this.queueMaxBytes / 2 ** 20).toFixed(1)} MiB`;
      this.o.log.warn(`write queue full (${why}): interval ${new Date(dropped.startMs).toISOString()} dropped and recorded as lost`, {
        event: 'lost-interval',
        start_ms: dropped.startMs,
      });
    }
    this.o.metrics.queueDepth = this.queue.length;
    this.o.metrics.queueBytes = this.queueBytes;
    this.pump();
  }

  /** Replay: resolves once the batch is in the database (waiting through retries). */
  async write(b: Batch): Promise<void> {
    this.push(b);
    await this.idle();
  }

  /** Resolves when the queue is empty. */
  idle(): Promise<void> {
    if (this.queue.length === 0 && !this.pumping) return Promise.resolve();
    return new Promise((resolve, reject) => this.idleWaiters.push({ resolve, reject }));
  }

  private pump(): void {
    if (this.pumping || this.retryTimer) return;
    this.pumping = true;
    try {
      while (this.queue.length > 0) {
        const b = this.queue[0];
        const t0 = process.hrtime.bigint();
        let written: boolean;
        try {
          written = this.writeOne(b);
        } catch (err) {
          this.onWriteError(err as Error);
          return;
        }
        const secs = Number(process.hrtime.bigint() - t0) / 1e9;
        this.queue.shift();
        this.queueBytes -= batchBytes(b);
        const m = this.o.metrics;
        m.queueDepth = this.queue.length;
        m.queueBytes = this.queueBytes;
        m.lastWriteSeconds = secs;
        m.writeSecondsSum += secs;
        if (written) m.batchesWritten++;
        else m.batchesSkipped++;
        if (this.failing) {
          this.failing = false;
          this.o.log.info('database writes work again');
        }
        this.retryMs = 0;
        this.failures = 0;
        this.o.onWritten?.(b, written);
        this.newestMs = Math.max(this.newestMs, b.endMs);
        // Started after the first write: by then a live recorder has dropped its privileges.
        if (this.o.checkpointThread !== false) this.checkpointer.start();
        this.maintain();
      }
    } finally {
      this.pumping = false;
      if (this.queue.length === 0 && !this.retryTimer) {
        const w = this.idleWaiters;
        this.idleWaiters = [];
        for (const r of w) r.resolve();
      }
    }
  }

  private writeOne(b: Batch): boolean {
    const db = this.o.db.sqlite;
    let r;
    try {
      r = db.transaction(() => {
        const res = this.writer.write(b, this.rollups.minuteSums(b.startMs), this.rollups.flowMinuteSums(b.startMs));
        if (res.written) {
          this.rollups.markBatch(b.startMs, res.ipRows > 0, res.flowRows > 0);
          this.rollups.closeUpTo(b.startMs);
        }
        for (const l of this.lost) this.addEvent.run(Date.now(), this.writer.sessionId, 'lost-interval', l.startMs, l.endMs, 'write queue full');
        return res;
      })();
    } catch (err) {
      // The batch's rows may be in its minute's running sums, and a rolled-back close may have
      // consumed some: recompute those minutes in SQL.
      this.rollups.forget();
      throw err;
    }
    if (r.written) this.rollups.summed(b.startMs);
    this.lost.length = 0;
    this.writer.advance();
    return r.written;
  }

  private onWriteError(err: Error & { code?: string }): void {
    this.o.metrics.writeErrors++;
    this.writer.forgetCache();
    this.failures++;
    if (this.o.giveUpAfter !== undefined && this.failures >= this.o.giveUpAfter) {
      const e = Object.assign(new Error(`cannot write to ${this.o.db.file} after ${this.failures} tries (${err.code ?? 'error'}: ${err.message}); the file is intact up to the last interval written`), {
        code: 'ERR_TC_WRITE',
      });
      this.queue.length = 0;
      this.queueBytes = 0;
      const w = this.idleWaiters;
      this.idleWaiters = [];
      for (const r of w) r.reject(e);
      return;
    }
    this.retryMs = Math.min(RETRY_MAX_MS, Math.max(RETRY_MIN_MS, this.retryMs * 2));
    if (!this.failing) {
      this.failing = true;
      this.o.log.error(`cannot write to ${this.o.db.file} (${err.code ?? 'error'}: ${err.message}); capture goes on, batches wait in memory (at most ${this.o.queueMax} batches, ${+(this.queueMaxBytes / 2 ** 20).toFixed(1)} MiB) and the write is retried`, {
        event: 'write-error',
        code: err.code ?? null,
      });
    }
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.pump();
    }, this.retryMs);
  }

  /**
   * Retention and WAL upkeep after a write; failures here only log. Retention runs in live
   * capture, against the clock: a replay (an analyst's file) keeps every row it writes.
   */
  private maintain(): void {
    try {
      if (this.o.spec.kind === 'live') this.pruner.step(Math.max(Date.now(), this.newestMs));
      if (!this.checkpointer.running && Date.now() - this.lastCheckpoint > CHECKPOINT_EVERY_MS) {
        this.lastCheckpoint = Date.now();
        this.o.db.sqlite.pragma('wal_checkpoint(PASSIVE)');
      }
    } catch (err) {
      this.o.log.warn(`retention step failed: ${(err as Error).message}`);
    }
  }

  /** Writes what is queued (retrying until `deadlineMs`), closes open rollup buckets, ends the session. */
  async close(deadlineMs: number): Promise<void> {
    const left = () => deadlineMs - Date.now();
    if (this.queue.length > 0) {
      await Promise.race([this.idle(), new Promise((r) => setTimeout(r, Math.max(0, left())))]);
    }
    if (this.retryTimer) {
      clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
    }
    if (this.queue.length > 0) {
      this.o.log.error(`${this.queue.length} interval(s) could not be written before exit`, { event: 'lost-interval', count: this.queue.length });
    }
    try {
      this.o.db.sqlite.transaction(() => {
        this.rollups.closeAll();
        this.writer.end();
      })();
    } catch (err) {
      this.o.log.warn(`closing the session failed: ${(err as Error).message}`);
    }
    await this.release();
  }

  /** Stops the checkpoint thread (also on error paths, before the database closes). */
  release(): Promise<void> {
    return this.checkpointer.stop();
  }
}
