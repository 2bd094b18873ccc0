/**
 * DuckDB for tc-query: an in-memory instance with extension auto-install/auto-load off (an
 * offline host never waits on the network), fed from the SQLite file through the DataChunk
 * appender path, with its SQL read from queries/*.sql.
 */
import type * as DuckDBApi from '@duckdb/node-api';
import type { DuckDBConnection, DuckDBInstance, DuckDBType, DuckDBValue } from '@duckdb/node-api';
import duckdb from '@duckdb/node-bindings';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { loadBundled } from '../vendor';

/**
 * @duckdb/node-api from its one-file bundle: the package is about a hundred small modules, and
 * resolving and compiling them is a visible part of every answer. The only module that loads it.
 */
const api = loadBundled<typeof DuckDBApi>('duckdb-node-api.js', '@duckdb/node-api');
export const { BIGINT, HUGEINT, INTEGER, TIMESTAMP, UTINYINT, USMALLINT, VARCHAR, DuckDBTimestampValue, StatementType } = api;

const QUERIES_DIR = path.join(__dirname, '..', '..', '..', 'queries');
const CHUNK_ROWS = 2048;

/** A SQL string literal. */
export const sqlString = (s: string): string => `'${s.replace(/'/g, "''")}'`;

export function querySql(name: string): string {
  return readFileSync(path.join(QUERIES_DIR, `${name}.sql`), 'utf8');
}

export interface Column {
  name: string;
  sqlType: string;
  type: DuckDBType;
}

/**
 * Instances kept for the next command (see Duck.keepInstances): idle ones, each locked down
 * and holding no table.
 */
const idle: DuckDBInstance[] = [];
let keepMax = 0;
/** Instances lockDown locked with no path allowed: those may be kept (a kept one stays locked). */
const locked = new WeakSet<DuckDBInstance>();

export class Duck {
  private constructor(
    private readonly instance: DuckDBInstance,
    readonly conn: DuckDBConnection,
    /** Never kept: it runs the user's SQL (`tc-query sql`, `export`), whose objects could outlive it. */
    private readonly fresh = false,
  ) {}

  /**
   * Keeps up to `n` instances for the commands that follow in this process instead of closing
   * them (`tc-query serve`, which runs a command per request): starting one costs ~18 ms of CPU
   * here, more than most answers' own query. A kept instance is handed on with every table and
   * view of the command that used it dropped and its connection closed (temporary objects are
   * the connection's); it stays locked down, so a command that needs paths allowed (an export)
   * gets a new one. The CLI runs one command and keeps none.
   */
  static keepInstances(n: number): void {
    keepMax = n;
  }

  /**
   * Takes away DuckDB's access to the file system for the rest of this instance: no COPY TO,
   * ATTACH of a file, read_csv/read_parquet/read_text, INSTALL/LOAD or EXPORT DATABASE, and the
   * settings locked so that no statement turns it back on (SET, RESET and PRAGMA all refuse).
   * `allow`: the paths an export writes, which stay writable (DuckDB's allowed_paths).
   * Called once the tables are loaded.
   */
  async lockDown(allow: string[] = []): Promise<void> {
    if (locked.has(this.instance)) {
      if (allow.length > 0) throw new Error('a kept DuckDB instance is locked down already: open a fresh one to allow paths');
      return;
    }
    if (allow.length === 0 && !this.fresh) locked.add(this.instance);
    if (allow.length > 0) await this.conn.run(`SET allowed_paths = [${allow.map(sqlString).join(', ')}]`);
    await this.conn.run('SET enable_external_access = false');
    await this.conn.run('SET lock_configuration = true');
  }

  /** `fresh`: a new instance, never kept (for the user's SQL). */
  static async open(o: { fresh?: boolean } = {}): Promise<Duck> {
    const kept = o.fresh ? undefined : idle.pop();
    if (kept) return new Duck(kept, await kept.connect());
    const instance = await api.DuckDBInstance.create(':memory:', {
      autoinstall_known_extensions: 'false',
      autoload_known_extensions: 'false',
      enable_external_access: 'true',
      // No spill files: the query side writes nothing (and DuckDB allows its temp folder,
      // ./.tmp by default, even with external access off).
      temp_directory: '',
    });
    try {
      const conn = await instance.connect();
      return new Duck(instance, conn, o.fresh);
    } catch (err) {
      instance.closeSync();
      throw err;
    }
  }

  /**
   * Opens DuckDB (its instance starts on the thread pool) while `work` runs on this thread, so
   * reading SQLite overlaps with DuckDB's start; when `work` throws, DuckDB is closed once open.
   */
  static async openAlongside<T>(work: () => T): Promise<{ duck: Duck; result: T }> {
    const opening = Duck.open();
    let result: T;
    try {
      result = work();
    } catch (err) {
      void opening.then((d) => d.close(), () => undefined);
      throw err;
    }
    return { duck: await opening, result };
  }

  /** Creates `table` and appends `rows` in DataChunks. */
  async load(table: string, columns: Column[], rows: Iterable<unknown[]>): Promise<number> {
    await this.conn.run(`create table ${table} (${columns.map((c) => `${c.name} ${c.sqlType}`).join(', ')})`);
    const appender = await this.conn.createAppender(table);
    const types = columns.map((c) => c.type);
    let cols: DuckDBValue[][] = columns.map(() => []);
    let n = 0;
    let total = 0;
    const flush = () => {
      const chunk = api.DuckDBDataChunk.create(types, n);
      chunk.setColumns(cols);
      appender.appendDataChunk(chunk);
      cols = columns.map(() => []);
      total += n;
      n = 0;
    };
    try {
      for (const r of rows) {
        for (let i = 0; i < cols.length; i++) cols[i].push(r[i] as DuckDBValue);
        if (++n === CHUNK_ROWS) flush();
      }
      if (n > 0) flush();
      appender.flushSync();
    } finally {
      appender.closeSync();
    }
    return total;
  }

  /**
   * Creates `table` and appends typed columns (each part: `count` rows per column) in
   * DataChunks whose vectors are filled by one memory copy each: no value is converted one by
   * one (converting through DuckDBValues costs microseconds a row, a copy nanoseconds).
   */
  async loadColumns(table: string, columns: Column[], parts: { columns: ArrayBufferView[]; count: number }[]): Promise<void> {
    await this.conn.run(`create table ${table} (${columns.map((c) => `${c.name} ${c.sqlType}`).join(', ')})`);
    const appender = await this.conn.createAppender(table);
    const types = columns.map((c) => c.type);
    try {
      for (const { columns: data, count } of parts) {
        for (let off = 0; off < count; off += CHUNK_ROWS) {
          const n = Math.min(CHUNK_ROWS, count - off);
          const chunk = api.DuckDBDataChunk.create(types, n);
          data.forEach((col, i) => {
            const width = (col as unknown as { BYTES_PER_ELEMENT: number }).BYTES_PER_ELEMENT;
            const vector = duckdb.data_chunk_get_vector(chunk.chunk, i);
            duckdb.copy_data_to_vector(vector, 0, col.buffer as ArrayBuffer, col.byteOffset + off * width, n * width);
          });
          appender.appendDataChunk(chunk);
        }
      }
      appender.flushSync();
    } finally {
      appender.closeSync();
    }
  }

  async rows(sql: string, params: Record<string, DuckDBValue>): Promise<Record<string, unknown>[]> {
    const reader = await this.conn.runAndReadAll(sql, params);
    return reader.getRowObjectsJS() as Record<string, unknown>[];
  }

  close(): void {
    if (keepMax > idle.length && locked.has(this.instance)) void this.recycle();
    else {
      this.conn.closeSync();
      this.instance.closeSync();
    }
  }

  /** Drops what the command made and keeps the instance for the next one (or closes it, when that fails). */
  private async recycle(): Promise<void> {
    try {
      const made = (await this.conn.runAndReadAll("select 'table', table_name from duckdb_tables() where not internal union all select 'view', view_name from duckdb_views() where not internal and not temporary")).getRows();
      for (const [kind, name] of made) await this.conn.run(`drop ${String(kind)} if exists "${String(name).replace(/"/g, '""')}"`);
      this.conn.closeSync();
      if (idle.length < keepMax) return void idle.push(this.instance);
    } catch {
      this.conn.closeSync();
    }
    this.instance.closeSync();
  }
}
