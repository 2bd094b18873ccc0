/**
 * Multi-row INSERTs, the writer's one way of putting many rows in: a statement of
 * ROWS_PER_INSERT rows (multi-VALUES; measured here with a bare loop, 256-row statements reach
 * ~1.2x the rate of 50-row ones and ~2x that of single-row ones), and the remainder of a batch
 * in statements of 128, 64, ..., 1 rows (at most eight). Values go into one preallocated array
 * that is spread into `run()` as arguments: better-sqlite3 reads arguments faster than array
 * elements (measured here +30% rows/s), and a reused array is not regrown for every statement.
 */
import type Database from 'better-sqlite3';

/** A power of two: the remainder is inserted in statements of the lower powers. */
export const ROWS_PER_INSERT = 256;
const LOG2_ROWS = Math.log2(ROWS_PER_INSERT);

/** `(?, ?, ...)` repeated: `rows` rows of `cols` parameters. */
export const placeholders = (cols: number, rows: number) => Array(rows).fill(`(${Array(cols).fill('?').join(',')})`).join(',');

export class RowInsert {
  /** `bySize[k]` inserts 2^k rows. */
  private readonly bySize: Database.Statement[];
  private readonly values: (number | bigint)[];
  /** Values filled in `values`. */
  private n = 0;

  /** `table (col, ...)`: the target of the INSERTs. */
  constructor(db: Database.Database, table: string, columns: string[]) {
    const head = `insert into ${table} (${columns.join(', ')}) values `;
    this.bySize = Array.from({ length: LOG2_ROWS + 1 }, (_, k) => db.prepare(head + placeholders(columns.length, 2 ** k)));
    this.values = new Array<number>(columns.length * ROWS_PER_INSERT).fill(0);
  }

  /** Starts a batch of rows: forgets the values of one that failed part-way. */
  start(): this {
    this.n = 0;
    return this;
  }

  // row6/row8 rather than one `row(...values)`: a rest parameter would allocate an array per
  // row on the writer's hot path.

  /** One row of six values. */
  row6(a: number | bigint, b: number | bigint, c: number | bigint, d: number | bigint, e: number | bigint, f: number | bigint): void {
    const v = this.values;
    let n = this.n;
    v[n++] = a;
    v[n++] = b;
    v[n++] = c;
    v[n++] = d;
    v[n++] = e;
    v[n++] = f;
    this.n = n;
    if (n === v.length) this.flush();
  }

  /** One row of eight values. */
  row8(a: number | bigint, b: number | bigint, c: number | bigint, d: number | bigint, e: number | bigint, f: number | bigint, g: number | bigint, h: number | bigint): void {
    const v = this.values;
    let n = this.n;
    v[n++] = a;
    v[n++] = b;
    v[n++] = c;
    v[n++] = d;
    v[n++] = e;
    v[n++] = f;
    v[n++] = g;
    v[n++] = h;
    this.n = n;
    if (n === v.length) this.flush();
  }

  private flush(): void {
    this.bySize[LOG2_ROWS].run(...this.values);
    this.n = 0;
  }

  /** Inserts the rows left: 128 rows, then 64, ..., then 1, as many as needed. */
  end(): void {
    const width = this.values.length / ROWS_PER_INSERT;
    let rows = this.n / width;
    let at = 0;
    for (let k = LOG2_ROWS - 1; k >= 0; k--) {
      if (rows < 2 ** k) continue;
      const end = at + 2 ** k * width;
      this.bySize[k].run(...this.values.slice(at, end));
      at = end;
      rows -= 2 ** k;
    }
    this.n = 0;
  }
}
