/**
 * The write protocol of one session: appends whole batches to the log and keeps the rollups'
 * running sums in step with it, in one transaction per group. It owns the transaction, the
 * sequence numbers, the running sums and the rollback, so callers cannot order the steps
 * wrongly: a group is written whole, or it leaves the appender as it was before (and is retried
 * from its first sequence number).
 */
import { LEVELS } from '../../schema/levels';
import type Database from 'better-sqlite3';
import type { StoredBatch } from '../budget/fold';
import { BatchWriter, newestEndMs, type SessionSpec } from './writer';
import { Rollups } from '../rollups/rollups';
import { addLocalNetworks, applyLocalNetworkChanges, closeLocalNetworks, type LocalNetwork, type LocalNetworkChange } from './local-networks';

/** An interval that will never be written (dropped from a full queue), recorded as an event. */
export interface LostInterval {
  startMs: number;
  endMs: number;
  why: string;
}

export class Appender {
  private readonly writer: BatchWriter;
  private readonly rollups: Rollups;

  constructor(private readonly db: Database.Database, nodeId: string, private readonly spec: SessionSpec) {
    this.writer = new BatchWriter(db, nodeId, spec);
    this.rollups = new Rollups(db);
  }

  get sessionId(): number {
    return this.writer.sessionId;
  }

  /** Newest interval end in the log (0 when empty). */
  newestEndMs(): number {
    return newestEndMs(this.db);
  }

  /**
   * Appends the batches, then the `lost` intervals' events and the local networks' `changes`,
   * in one transaction; returns for each batch whether it was new to the log. On failure
   * nothing of the group stays: neither in the file nor in the sequence, the running sums or
   * the address cache.
   */
  append(group: readonly StoredBatch[], lost: readonly LostInterval[], changes: readonly LocalNetworkChange[] = []): boolean[] {
    const seq = this.writer.sequence;
    try {
      return this.db.transaction(() => {
        const out = group.map((b) => {
          const res = this.writer.write(b, this.rollups.minuteSums(b.startMs), this.rollups.flowMinuteSums(b.startMs));
          this.writer.advance();
          if (res.written) {
            // Counted as a part of its minute now: a later batch of the group may close that minute.
            this.rollups.summed(b.startMs);
            this.rollups.markBatch(b.startMs, res.ipRows > 0, res.flowRows > 0);
            this.rollups.closeUpTo(b.startMs);
          }
          return res.written;
        });
        for (const l of lost) this.writer.event('lost-interval', l.why, l.startMs, l.endMs);
        applyLocalNetworkChanges(this.db, this.sessionId, changes);
        return out;
      })();
    } catch (err) {
      // The batches' rows may be in their minutes' running sums, and a rolled-back close may
      // have consumed some: those minutes are recomputed in SQL. Cached dictionary ids may
      // name rows that were rolled back.
      this.rollups.forget();
      this.writer.sequence = seq;
      this.writer.forgetCache();
      throw err;
    }
  }

  /** Rows the closes of the open rollup buckets will write (the disk budget keeps room for them). */
  pendingRollupRows(): { ip: number; flow: number } {
    return this.rollups.pendingRows();
  }

  /** Addresses left the `addresses` table: the writer's cached ids are reloaded. */
  reloadDictionary(): void {
    this.writer.reloadDictionary();
  }

  /** Names left the name dictionary (retention): the writer's cached name ids are dropped. */
  forgetNames(): void {
    this.writer.forgetNames();
  }

  /** Adds an event of this session (outside any group). */
  event(kind: string, detail: string | null, startMs: number | null = null, endMs: number | null = null): void {
    this.writer.event(kind, detail, startMs, endMs);
  }

  /** Closes the rollup buckets that end by `ms` (left open by a session that was killed). */
  closeUpTo(ms: number): void {
    this.db.transaction(() => this.rollups.closeUpTo(ms))();
  }

  /** This session's networks, local from `fromMs` on (outside any group). */
  addLocalNetworks(nets: readonly LocalNetwork[], fromMs: number): void {
    this.db.transaction(() => addLocalNetworks(this.db, this.sessionId, nets, fromMs))();
  }

  /**
   * Closes every open rollup bucket, records the local networks' last `changes` and, when
   * `end`, ends the session and the time its networks were local, in one transaction.
   */
  finish(end: boolean, changes: readonly LocalNetworkChange[] = []): void {
    try {
      this.db.transaction(() => {
        this.rollups.closeAll();
        applyLocalNetworkChanges(this.db, this.sessionId, changes);
        if (end) {
          closeLocalNetworks(this.db, this.sessionId, this.spec.kind, Date.now());
          this.writer.end();
        }
      })();
    } catch (err) {
      // A rolled-back close may have consumed running sums (a retry recomputes those in SQL)
      // and added the overflow address.
      this.rollups.forget();
      this.writer.forgetCache();
      throw err;
    }
  }

  /**
   * Buckets closed from now on keep at most `keep` keys, the others folded into the overflow
   * key (the disk budget's last resort at its hard stop); undefined: every key.
   */
  foldCloses(keep: number | undefined): void {
    this.rollups.fold =
      keep === undefined
        ? undefined
        : {
            keep,
            ovf: () => this.writer.overflowAddressId(),
            folded: (level, bucket, keys, kept) =>
              this.writer.event('budget-fold', `${level} bucket kept as its ${kept} heaviest of ${keys} keys, the rest folded into the overflow row, to close within the disk budget`, bucket, bucket + LEVELS[level].ms),
          };
  }
}
