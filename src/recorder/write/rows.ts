/**
 * Bulk inserts, the writer's one way of putting many rows in. Rows are packed as 64-bit
 * little-endian integers (two 32-bit words each, low word first) into a reused buffer, and a
 * chunk of up to ROWS_PER_INSERT rows goes in with one statement,
 * `INSERT INTO t (...) SELECT c0, .. FROM tc_rows(?, width)`, binding one BLOB: the table
 * function of native/sqlite/tc_rows.c, loaded into the writer's connection by db.ts.
 *
 * Faster than multi-row VALUES statements (values spread into `run()`), whose every value
 * better-sqlite3 binds through V8. Counters go in as the engine's own 64-bit words, without a JS
 * number or BigInt on the way.
 */
import type Database from 'better-sqlite3';

/** Rows per statement: buffers stay small (at most 256 KiB for eight columns). */
export const ROWS_PER_INSERT = 4096;

const TWO32 = 4294967296;

/** Words `o`, `o + 1` of `w` = `v`, an integer in [0, 2^53). */
export function putNum(w: Uint32Array, o: number, v: number): void {
  w[o] = v % TWO32;
  w[o + 1] = v / TWO32;
}

/**
 * Words `o`, `o + 1` of `w` = row `i` of an engine column of (low, high) words. SQLite integers
 * are signed: a counter past 2^63 - 1 (never reached by a real interval) is refused, as a
 * bound BigInt would be.
 */
export function putU64(w: Uint32Array, o: number, col: Uint32Array, i: number): void {
  const hi = col[2 * i + 1];
  // A RangeError (as Node's own out-of-range errors are), with a code like every other error.
  if (hi >= 0x80000000) throw Object.assign(new RangeError(`counter value ${(BigInt(hi) << 32n) | BigInt(col[2 * i])} is past SQLite's 64-bit signed range`), { code: 'ERR_TC_COUNTER_RANGE' });
  w[o] = col[2 * i];
  w[o + 1] = hi;
}

/**
 * Rows of `columns` packed for tc_rows. A row's values go at `row() + col.<name>`:
 *
 *   const o = rows.row();
 *   putNum(rows.words, o + rows.col.batch_id, batchId);
 */
export class RowInsert<C extends string = string> {
  /** The packed rows: row k's column c at words 2 * (k * width + c) and the next. */
  readonly words: Uint32Array;
  /** Each column's first word within a row. */
  readonly col: Readonly<Record<C, number>>;
  private readonly bytes: Buffer;
  private readonly stmt: Database.Statement;
  private readonly rowWords: number;
  /** Word index of the next row. */
  private at = 0;

  /** `table (col, ...)`: the target of the INSERTs (at most eight columns). */
  constructor(db: Database.Database, table: string, columns: readonly C[]) {
    const width = columns.length;
    this.col = Object.fromEntries(columns.map((c, i) => [c, 2 * i])) as Record<C, number>;
    this.stmt = db.prepare(`insert into ${table} (${columns.join(', ')}) select ${columns.map((_, i) => `c${i}`).join(', ')} from tc_rows(?, ${width})`);
    this.rowWords = 2 * width;
    this.words = new Uint32Array(ROWS_PER_INSERT * this.rowWords);
    this.bytes = Buffer.from(this.words.buffer);
  }

  /** Starts a set of rows: forgets the rows of one that failed part-way. */
  start(): this {
    this.at = 0;
    return this;
  }

  /** The word index the next row's values go at (inserting a full chunk first). */
  row(): number {
    if (this.at === this.words.length) this.flush();
    const o = this.at;
    this.at += this.rowWords;
    return o;
  }

  private flush(): void {
    this.stmt.run(this.bytes.subarray(0, 4 * this.at));
    this.at = 0;
  }

  /** Inserts the rows left. */
  end(): void {
    if (this.at > 0) this.flush();
  }
}
