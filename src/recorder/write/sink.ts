/**
 * Between the capture engine and the database: a bounded queue of batches, handed to the
 * appender in groups of whole batches (one transaction each), retries with back-off when the
 * database is locked, full or read-only, and upkeep (retention in small separate steps, WAL
 * checkpoints). Every batch that arrives is counted here, in the metrics.
 *
 * Group commit: when several batches wait (a replay, or live capture catching up after a slow
 * write), up to GROUP_ROWS rows of them go in one transaction. A batch is never split across
 * transactions, so appends stay atomic and idempotent per batch; a commit per batch writes
 * markedly slower (bench:writer measures both). Live capture at its own pace
 * queues one batch per interval, so each batch still commits on its own.
 *
 * Live capture never waits on the database: past `queueMax` batches the oldest is dropped and a
 * "lost-interval" event records it in the next transaction that succeeds. A replay waits
 * instead (nothing is lost; the engine thread blocks behind the bounded native queue).
 */
import { OPTION_DEFAULTS, type Batch } from '../../native';
import type { WriteDb } from './db';
import type { SessionSpec } from './writer';
import { Appender, type LostInterval } from './appender';
import { Pruner, type Retention } from '../upkeep/retention';
import { Checkpointer } from '../upkeep/checkpointer';
import type { Logger } from '../observe/log';
import type { Metrics } from '../observe/metrics';
import { TcError } from '../../errors';
import { DiskBudget } from '../budget/enforce';
import type { LocalNetwork, LocalNetworkChange } from './local-networks';

export interface SinkOptions {
  db: WriteDb;
  spec: SessionSpec;
  retention: Retention;
  queueMax: number;
  /** Bytes of batch data the queue may hold (default DEFAULT_QUEUE_MAX_BYTES): a flood's batches are large. */
  queueMaxBytes?: number;
  log: Logger;
  metrics: Metrics;
  /** Consecutive failed writes after which queued writes fail (replays); live retries forever. */
  giveUpAfter?: number;
  /** WAL checkpoints on a thread of their own (default); false: inline, on the writer's thread. */
  checkpointThread?: boolean;
  /** Bytes the database file may take (0 or absent: no budget). */
  maxDbBytes?: number;
  /** Tests only: 0 leaves the budget to its hard stop (SQLITE_FULL and retries), see enforce.ts. */
  budgetEstimateScale?: number;
  /** Called after each batch is written (interval line). */
  onWritten?(b: Batch, written: boolean): void;
}

const RETRY_MIN_MS = 250;
const RETRY_MAX_MS = 2_000;
const CHECKPOINT_EVERY_MS = 30_000;

/** Defaults of --queue-max and --queue-max-mib: the native hand-over's bounds (core options.rs). */
export const DEFAULT_QUEUE_MAX = OPTION_DEFAULTS.queueMaxBatches;
export const DEFAULT_QUEUE_MAX_BYTES = OPTION_DEFAULTS.queueMaxBytes;
/** Rows (per-IP and flow) that waiting batches are grouped up to in one transaction. */
const GROUP_ROWS = 100_000;
/** Batches a replay may have queued before `write` waits (fewer when `queueMax` is lower). */
const REPLAY_AHEAD = 16;
/** Retries of a group that hit the budget's hard stop, each keeping half the keys (the last, none). */
const MAX_FULL_RETRIES = 24;

/** What a JS string of `n` one-byte characters takes, about (its header and its characters). */
const STRING_BYTES = (n: number) => 32 + n;

/** Bytes of a batch's columns (what it holds in memory while queued). */
export function batchBytes(b: Batch): number {
  const { addr, ip, flow, names } = b;
  const cols: ArrayBufferView[] = [addr.fam, addr.bytes, ip.idx, ip.txPackets, ip.txBytes, ip.rxPackets, ip.rxBytes];
  cols.push(flow.src, flow.dst, flow.proto, flow.sport, flow.dport, flow.packets, flow.bytes, names.addr, names.fam, names.source);
  return cols.reduce((sum, c) => sum + c.byteLength, 0) + names.name.reduce((sum, n) => sum + 8 + STRING_BYTES(n.length), 0);
}

export class BatchSink {
  private readonly appender: Appender;
  private readonly pruner: Pruner;
  private readonly checkpointer: Checkpointer;
  private readonly budget: DiskBudget | undefined;
  /** Waiting batches with their bytes (`batchBytes`, taken once). */
  private readonly queue: { b: Batch; bytes: number }[] = [];
  private queueBytes = 0;
  private readonly queueMaxBytes: number;
  private readonly lost: LostInterval[] = [];
  /** Changes of the local networks, written with the next transaction that succeeds. */
  private readonly netChanges: LocalNetworkChange[] = [];
  private pumping = false;
  private retryMs = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private failing = false;
  private lastCheckpoint = Date.now();
  private idleWaiters: { resolve: () => void; reject: (e: Error) => void }[] = [];
  /** Replay writes waiting for room in the queue. */
  private roomWaiters: (() => void)[] = [];
  private scheduled: NodeJS.Immediate | undefined;
  /** Set once writes gave up (`giveUpAfter`): every later write and idle rejects with it. */
  private failed: Error | undefined;
  /** `close` ended the session: nothing more is written. */
  private closed = false;
  private failures = 0;
  /** Newest interval end in the log: the clock retention measures age against in replays. */
  private newestMs: number;

  constructor(private readonly o: SinkOptions) {
    const db = o.db.sqlite;
    this.appender = new Appender(db, o.db.nodeId, o.spec);
    this.pruner = new Pruner(db, o.retention, () => this.appender.forgetNames());
    this.checkpointer = new Checkpointer(o.db.file, db, o.log);
    this.queueMaxBytes = o.queueMaxBytes ?? DEFAULT_QUEUE_MAX_BYTES;
    this.newestMs = this.appender.newestEndMs();
    this.budget = o.maxDbBytes ? new DiskBudget(db, o.maxDbBytes, this.appender.sessionId, o.metrics, o.log, () => this.appender.reloadDictionary(), () => this.appender.pendingRollupRows(), o.budgetEstimateScale) : undefined;
  }

  get sessionId(): number {
    return this.appender.sessionId;
  }

  event(kind: string, detail: string | null, startMs: number | null = null, endMs: number | null = null): void {
    try {
      this.appender.event(kind, detail, startMs, endMs);
    } catch {
      /* the database is failing: the event is in the log output */
    }
  }

  /** Closes the rollup buckets that end by `ms` (left open by a session that was killed). */
  closeStaleBuckets(ms: number): void {
    this.appender.closeUpTo(ms);
  }

  /**
   * Records an interval that will never be written (dropped from a full queue, here or in the
   * engine): a "lost-interval" event goes in with the next transaction that succeeds.
   */
  lose(startMs: number, endMs: number, why: string): void {
    this.lost.push({ startMs, endMs, why });
    this.o.metrics.lostIntervals++;
    this.o.log.warn(`${why}: interval ${new Date(startMs).toISOString()} dropped and recorded as lost`, { event: 'lost-interval', start_ms: startMs });
  }

  /** The session's networks, local from `fromMs` on: written now (at the start of a session, or with its first batch). */
  addLocalNetworks(nets: readonly LocalNetwork[], fromMs: number): void {
    if (nets.length > 0) this.appender.addLocalNetworks(nets, fromMs);
  }

  /**
   * Networks that came or went while recording: written with the next batch's transaction
   * that succeeds, or when the session closes (a slow or locked database delays them, as it
   * does batches; they keep the time they were seen).
   */
  localNetworkChanges(changes: readonly LocalNetworkChange[]): void {
    this.netChanges.push(...changes);
  }

  /** Live: count and queue the batch and return at once (it is written once the event loop is free). */
  push(b: Batch): void {
    this.o.metrics.observe(b);
    this.enqueue(b, batchBytes(b));
  }

  private enqueue(b: Batch, bytes: number): void {
    this.queue.push({ b, bytes });
    this.queueBytes += bytes;
    // Oldest first; the newest batch always stays.
    while (this.queue.length > this.o.queueMax || (this.queueBytes > this.queueMaxBytes && this.queue.length > 1)) {
      const { b: dropped, bytes: droppedBytes } = this.queue.shift()!;
      this.queueBytes -= droppedBytes;
      const why = this.queue.length >= this.o.queueMax ? `${this.o.queueMax} batches` : `${+(this.queueMaxBytes / 2 ** 20).toFixed(1)} MiB`;
      this.lose(dropped.startMs, dropped.endMs, `write queue full (${why})`);
    }
    this.o.metrics.queueDepth = this.queue.length;
    this.o.metrics.queueBytes = this.queueBytes;
    this.schedule();
  }

  /**
   * Replay: counts the batch, queues it once the queue has room (never dropping one), and
   * resolves then; `idle()` resolves once everything queued is in the database. Rejects once
   * writes gave up.
   */
  async write(b: Batch): Promise<void> {
    this.o.metrics.observe(b);
    const size = batchBytes(b);
    const ahead = Math.min(REPLAY_AHEAD, this.o.queueMax);
    while (!this.failed && this.queue.length > 0 && (this.queue.length >= ahead || this.queueBytes + size > this.queueMaxBytes)) {
      await new Promise<void>((resolve) => this.roomWaiters.push(resolve));
    }
    if (this.failed) throw this.failed;
    this.enqueue(b, size);
  }

  /** Resolves when the queue is empty; rejects once writes gave up. */
  idle(): Promise<void> {
    if (this.failed) return Promise.reject(this.failed);
    if (this.queue.length === 0 && !this.pumping) return Promise.resolve();
    return new Promise((resolve, reject) => this.idleWaiters.push({ resolve, reject }));
  }

  /** Writes on a later turn of the event loop, so that batches arriving together form one group. */
  private schedule(): void {
    if (this.scheduled || this.pumping || this.retryTimer) return;
    this.scheduled = setImmediate(() => {
      this.scheduled = undefined;
      this.pump();
    });
  }

  private pump(): void {
    if (this.pumping || this.retryTimer || this.closed) return;
    this.pumping = true;
    try {
      while (this.queue.length > 0) {
        // The batches at the head of the queue up to GROUP_ROWS rows; always at least one.
        let n = 0;
        let rows = 0;
        const rowsOf = (k: number) => this.queue[k].b.ip.count + this.queue[k].b.flow.count + this.queue[k].b.names.name.length;
        do rows += rowsOf(n);
        while (++n < this.queue.length && rows + rowsOf(n) <= GROUP_ROWS);
        const group = this.queue.slice(0, n).map((e) => e.b);
        const t0 = process.hrtime.bigint();
        let written: boolean[];
        try {
          written = this.writeGroup(group);
        } catch (err) {
          this.onWriteError(err as Error);
          return;
        }
        const secs = Number(process.hrtime.bigint() - t0) / 1e9;
        for (const e of this.queue.splice(0, n)) this.queueBytes -= e.bytes;
        const m = this.o.metrics;
        m.queueDepth = this.queue.length;
        m.queueBytes = this.queueBytes;
        m.lastWriteSeconds = secs;
        m.writeSecondsSum += secs;
        m.writeTransactions++;
        if (this.failing) {
          this.failing = false;
          this.o.log.info('database writes work again');
        }
        this.retryMs = 0;
        this.failures = 0;
        group.forEach((b, i) => {
          if (written[i]) m.batchesWritten++;
          else m.batchesSkipped++;
          this.o.onWritten?.(b, written[i]);
          this.newestMs = Math.max(this.newestMs, b.endMs);
        });
        const room = this.roomWaiters;
        this.roomWaiters = [];
        for (const r of room) r();
        // Started after the first write: by then a live recorder has dropped its privileges.
        if (this.o.checkpointThread !== false) this.checkpointer.start();
        this.maintain(n);
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

  /**
   * Appends the batches in one transaction; returns for each whether it was new to the log.
   * Under a budget the group is first brought within it (budget/enforce.ts); a write that
   * still reaches the hard stop (SQLITE_FULL) was rolled back whole, and is retried with more
   * detail shed and fewer keys kept, down to the totals alone.
   */
  private writeGroup(group: Batch[]): boolean[] {
    let written: boolean[];
    if (!this.budget) written = this.appender.append(group, this.lost, this.netChanges);
    else {
      try {
        for (let attempt = 0; ; attempt++) {
          this.appender.foldCloses(this.budget.closeKeep(attempt));
          try {
            written = this.appender.append(this.budget.prepare(group, attempt), this.lost, this.netChanges);
            break;
          } catch (err) {
            if ((err as { code?: string }).code !== 'SQLITE_FULL' || attempt >= MAX_FULL_RETRIES) throw err;
            this.budget.onFull(attempt);
          }
        }
      } finally {
        this.appender.foldCloses(undefined);
      }
    }
    this.lost.length = 0;
    this.netChanges.length = 0;
    return written;
  }

  private onWriteError(err: Error & { code?: string }): void {
    this.o.metrics.writeErrors++;
    this.failures++;
    if (this.o.giveUpAfter !== undefined && this.failures >= this.o.giveUpAfter) {
      const e = new TcError(
        `cannot write to ${this.o.db.file} after ${this.failures} tries (${err.code ?? 'error'}: ${err.message}); the file is intact up to the last interval written`,
        'ERR_TC_WRITE',
      );
      this.failed = e;
      this.queue.length = 0;
      this.queueBytes = 0;
      const w = this.idleWaiters;
      this.idleWaiters = [];
      for (const r of w) r.reject(e);
      const room = this.roomWaiters;
      this.roomWaiters = [];
      for (const r of room) r();
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
   * Retention and WAL upkeep after a transaction of `batches` batches; failures here only log.
   * Retention runs in live capture, against the clock: a replay (an analyst's file) keeps every
   * row it writes.
   */
  private maintain(batches: number): void {
    try {
      // A step per batch written keeps pace with what came in (a step takes out more than one
      // batch adds); steps end early once nothing is due.
      if (this.o.spec.kind === 'live') for (let i = 0; i < batches && this.pruner.step(Math.max(Date.now(), this.newestMs)) > 0; i++);
      if (!this.checkpointer.running && Date.now() - this.lastCheckpoint > CHECKPOINT_EVERY_MS) {
        this.lastCheckpoint = Date.now();
        this.o.db.sqlite.pragma('wal_checkpoint(PASSIVE)');
      }
    } catch (err) {
      this.o.log.warn(`retention step failed: ${(err as Error).message}`);
    }
  }

  /**
   * Writes what is queued (retrying until `deadlineMs`), closes open rollup buckets, and ends the
   * session unless `end` is false (a replay stopped before the end of its file stays open).
   */
  async close(deadlineMs: number, end = true): Promise<void> {
    const left = () => deadlineMs - Date.now();
    if (this.queue.length > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([this.idle().catch(() => undefined), new Promise((r) => (timer = setTimeout(r, Math.max(0, left()))))]);
      clearTimeout(timer);
    }
    this.closed = true;
    if (this.scheduled) {
      clearImmediate(this.scheduled);
      this.scheduled = undefined;
    }
    if (this.retryTimer) {
      clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
    }
    if (this.queue.length > 0) {
      this.o.log.error(`${this.queue.length} interval(s) could not be written before exit`, { event: 'lost-interval', count: this.queue.length });
    }
    // Closing writes the open buckets' rollup rows: under a budget at its hard stop, detail is
    // shed and the close retried, as a write group is.
    for (let attempt = 0; ; attempt++) {
      this.appender.foldCloses(this.budget?.closeKeep(attempt));
      try {
        this.appender.finish(end, this.netChanges);
        this.netChanges.length = 0;
        break;
      } catch (err) {
        if (this.budget && (err as { code?: string }).code === 'SQLITE_FULL' && attempt < MAX_FULL_RETRIES) {
          this.budget.onFull(attempt);
          continue;
        }
        this.o.log.warn(`closing the session failed: ${(err as Error).message}`);
        break;
      }
    }
    this.appender.foldCloses(undefined);
    await this.release();
  }

  /** Stops the checkpoint thread (also on error paths, before the database closes). */
  release(): Promise<void> {
    return this.checkpointer.stop();
  }
}
