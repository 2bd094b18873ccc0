/** `tc-query sql` (ad hoc DuckDB SQL over the documented tables) and `tc-query export`. */
import { existsSync, mkdirSync } from 'node:fs';
import * as path from 'node:path';
import { Duck, sqlString, StatementType } from '../duck';
import { openReadOnly } from '../db';
import type { Window } from '../window';
import { render, type Format } from '../output';
import { resolveWindow } from '../plan';
import { coverage, emptyWindowNote } from '../coverage';
import { loadLabels, loadTable, tablesIn, timeColumns, TABLES, type ExtraColumns } from '../tables';
import type { LabelTable } from '../labels';
import { nameAt, sightingsByText } from '../names';
import { LEVELS, type Level } from '../../schema/levels';
import { BIGINT, VARCHAR } from '../duck';
import { idsOfEvery, matchingIds } from '../filters';
import { rowKeys, fieldsOf, type AddressKey, type AddressRow, type KeyContext, type KeySources } from '../keys';
import { parseAddr } from '../../addr';
import type Database from 'better-sqlite3';
import { checkFileOut, checkFolderOut, discard, publish, stagingPath, writeFailed } from '../out';
import { TcError } from '../../errors';
import { nearest } from '../../nearest';

/**
 * Statement types that would change the loaded tables. Others go to DuckDB, locked down: one
 * that reaches for a file or a setting is refused there and said by lockedOut.
 */
const CHANGING = new Set<number>([StatementType.INSERT, StatementType.UPDATE, StatementType.DELETE, StatementType.ALTER, StatementType.DROP]);

const noStatement = () => new TcError('sql: no statement given; give one, e.g. tc-query sql "select * from intervals limit 5"', 'ERR_TC_USAGE');

const SQLITE_NAMES: Record<string, keyof typeof TABLES> = { batches: 'intervals', v_batches: 'intervals' };

/**
 * What a statement that DuckDB refused after lockDown() tried to do, or the table it names that
 * is not one of the documented ones, in the words of the CLI; undefined for any other error (a
 * typo in a column, a syntax error), which is shown as DuckDB said it.
 */
function lockedOut(err: unknown): TcError | undefined {
  const msg = ((err as Error).message ?? String(err)).split('\n')[0];
  if (/disabled (by|through) configuration/.test(msg)) return new TcError(`sql: statements cannot read or write files (${msg})`, 'ERR_TC_SQL_FILES');
  if (/configuration has been locked/.test(msg)) return new TcError(`sql: statements cannot change DuckDB's settings (${msg})`, 'ERR_TC_SQL_SETTINGS');
  // DuckDB would suggest one of its own catalog tables ("Did you mean pg_sequences?"): only the documented ones are loaded.
  const missing = /^Catalog Error: Table with name (\S+) does not exist/.exec(msg);
  if (missing) {
    // The SQLite file's own name for it (docs/database.md), as sqlite3 users know it.
    const known = SQLITE_NAMES[missing[1].toLowerCase()];
    const near = known ? [known] : nearest(missing[1], Object.keys(TABLES));
    return new TcError(`sql: there is no table ${missing[1]}${near.length ? `; did you mean ${near.join(' or ')}?` : ''} (the tables are ${Object.keys(TABLES).join(', ')})`, 'ERR_TC_SQL_TABLE');
  }
  return undefined;
}

/** A statement that reads `labels` without a label file: said in the words of the CLI. */
function noLabels(err: unknown, labels: LabelTable | undefined): TcError | undefined {
  if (labels || !/Table with name labels does not exist/i.test((err as Error).message ?? '')) return undefined;
  return new TcError('sql: the labels table needs a label file: give --labels FILE (lines "CIDR label"), or set TC_LABELS', 'ERR_TC_USAGE');
}

export async function adhocSql(o: { db: string; window: Window; sql: string; format: Format; labels?: LabelTable }): Promise<string> {
  if (/^[\s;]*$/.test(o.sql)) throw noStatement();
  const sqlite = openReadOnly(o.db);
  let duck: Duck | undefined;
  try {
    duck = await Duck.open({ fresh: true });
    const window = resolveWindow(sqlite, o.window);
    for (const t of tablesIn(o.sql)) await loadTable(sqlite, duck, t, window);
    if (o.labels && /\blabels\b/i.test(o.sql)) await loadLabels(sqlite, duck, o.labels);
    // The statement sees the loaded tables and nothing else: no file, no extension, no setting.
    await duck.lockDown();
    let reader;
    try {
      const statements = await duck.conn.extractStatements(o.sql).catch((err: Error) => {
        err.message = err.message.replace(/^Failed to extract statements: /, '');
        throw err;
      });
      // Run one by one, as DuckDB runs a script (the last one's rows are the answer), each
      // checked first: the tables are copies loaded for the statement, so a change to them
      // would look done and change nothing in the file.
      for (let i = 0; i < statements.count; i++) {
        const statement = await statements.prepare(i);
        if (CHANGING.has(statement.statementType)) {
          throw new TcError(`sql: ${StatementType[statement.statementType]} is not run: the tables are copies loaded for the statement, and the file is never changed by tc-query (the recorder alone writes it); ask with SELECT`, 'ERR_TC_SQL_READ_ONLY');
        }
        reader = await statement.runAndReadAll();
      }
    } catch (err) {
      throw noLabels(err, o.labels) ?? lockedOut(err) ?? err;
    }
    if (!reader) throw noStatement();
    const names = reader.columnNames();
    const rows = reader.getRowObjectsJS() as Record<string, unknown>[];
    return render(o.format, names.map((key) => ({ key, align: 'left' as const })), rows.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, v instanceof Date ? v.toISOString() : v]))));
  } finally {
    duck?.close();
    sqlite.close();
  }
}

export type ExportFormat = 'parquet' | 'csv' | 'jsonl';

/** The formats --format takes, and the --out extensions that choose each when it is not given. */
export const EXPORT_EXTENSIONS: Record<string, ExportFormat> = { '.parquet': 'parquet', '.csv': 'csv', '.jsonl': 'jsonl', '.ndjson': 'jsonl' };

export interface ExportOptions {
  db: string;
  window: Window;
  what: 'ip' | 'flow' | 'names';
  resolution: 'raw' | '1m' | '1h' | '1d';
  /** Undefined: from the --out extension (a partitioned folder: parquet). */
  format?: ExportFormat;
  /** A file, a folder with `partition`, or `-` for stdout (csv and jsonl). */
  out: string;
  partition: boolean;
  force: boolean;
  /** Only rows of addresses with this label (a flow row: either end). */
  label?: string;
  /** With --labels / --asn, per-IP rows (and names rows) gain label / asn, as_name, country columns, flow rows src_label, dst_label. */
  keys?: KeySources;
}

const SQL_TYPES: Record<string, { sqlType: string; type: typeof BIGINT }> = { asn: { sqlType: 'BIGINT', type: BIGINT } };

/** The index of column `name` in a documented table (-1 when it has none). */
const colIndex = (table: string, name: string) => TABLES[table].cols.findIndex((c) => c.name === name);

/**
 * The key columns of rows with an address (label; asn, as_name, country), computed once per
 * address: per-IP and names rows gain every key's fields, flow rows the label of each end
 * (src_label, dst_label).
 */
function keyColumns(keys: AddressKey[], table: string, ctx: KeyContext): ExtraColumns | undefined {
  const ip = colIndex(table, 'ip');
  const ends: [string, number][] = ip >= 0 ? [['', ip]] : [['src_', colIndex(table, 'src')], ['dst_', colIndex(table, 'dst')]];
  const mine = ip >= 0 ? keys : keys.filter((k) => k.by === 'label');
  if (mine.length === 0 || ends.some(([, i]) => i < 0)) return undefined;
  const fields = mine.flatMap((k) => k.fields.map((f) => f.key));
  const cache = new Map<string, unknown[]>();
  const valuesOf = (text: string): unknown[] => {
    let v = cache.get(text);
    if (!v) {
      const a: AddressRow = { id: 0, addr: parseAddr(text) ?? new Uint8Array(0), text };
      const values = mine.flatMap((k) => {
        const f = fieldsOf(k, k.keysOf([a], ctx)[0]);
        return k.fields.map((c) => f[c.key]);
      });
      v = values.map((x, i) => (fields[i] === 'asn' && x !== null ? BigInt(x as number) : x));
      cache.set(text, v);
    }
    return v;
  };
  return {
    cols: ends.flatMap(([prefix]) => fields.map((name) => ({ name: `${prefix}${name}`, ...(SQL_TYPES[name] ?? { sqlType: 'VARCHAR', type: VARCHAR }) }))),
    of: (row) => ends.flatMap(([, i]) => valuesOf(row[i] as string)),
  };
}

/**
 * The name columns of rows with an address: per-IP rows gain `name`, flow rows `src_name` and
 * `dst_name`: the name seen for the address up to the row's end (names.ts has the rule), as
 * `top` gives it for a window ending there.
 */
function nameColumns(sqlite: Database.Database, table: string): ExtraColumns | undefined {
  const ip = colIndex(table, 'ip');
  const ends: [string, number][] = ip >= 0 ? [['name', ip]] : [['src_name', colIndex(table, 'src')], ['dst_name', colIndex(table, 'dst')]];
  const end = colIndex(table, 'end');
  const bucket = colIndex(table, 'bucket');
  if (table === 'names' || ends.some(([, i]) => i < 0) || (end < 0 && bucket < 0)) return undefined;
  const seen = sightingsByText(sqlite);
  const length = bucket >= 0 ? LEVELS[table as Level].ms : 0;
  const endOf = (row: unknown[]) => (end >= 0 ? Number(row[end]) : Number(row[bucket]) + length);
  return {
    cols: ends.map(([name]) => ({ name, sqlType: 'VARCHAR', type: VARCHAR })),
    of: (row) => ends.map(([, i]) => nameAt(seen.get(row[i] as string), endOf(row))),
  };
}

/** Both sets of computed columns, in this order. */
function bothColumns(a: ExtraColumns | undefined, b: ExtraColumns | undefined): ExtraColumns | undefined {
  if (!a || !b) return a ?? b;
  return { cols: [...a.cols, ...b.cols], of: (row) => [...a.of(row), ...b.of(row)] };
}

function labelIds(sqlite: Database.Database, o: ExportOptions): number[] | undefined {
  const m = o.label !== undefined ? matchingIds(sqlite, { label: o.label }, o.keys?.labels) : undefined;
  return m ? idsOfEvery(m) : undefined;
}

const usage = (msg: string) => new TcError(msg, 'ERR_TC_USAGE');

/** The format of an export, or the reason it cannot be written: decided before anything is created. */
export function exportFormat(o: Pick<ExportOptions, 'what' | 'resolution' | 'format' | 'out' | 'partition'>): ExportFormat {
  if (o.what === 'flow' && o.resolution === '1d') throw usage('flows have minute and hour rollups only (--resolution raw, 1m or 1h)');
  if (o.what === 'names' && o.resolution !== 'raw') throw usage('names have no rollups: a row is a name seen for an address, with its first and last interval (--resolution raw, the default)');
  const choices = Object.keys(EXPORT_EXTENSIONS).join(', ');
  if (o.out === '-') {
    if (o.partition) throw usage('--partition writes a folder; it cannot go to stdout (--out -)');
    if (o.format === undefined) throw usage('--out - (stdout) needs --format csv or jsonl');
    if (o.format === 'parquet') throw usage('parquet cannot be written to stdout (its footer is written last, over a file); give --out FILE.parquet, or --format csv or jsonl');
    return o.format;
  }
  if (o.format) return o.format;
  if (o.partition) return 'parquet';
  const ext = path.extname(o.out).toLowerCase();
  const f = EXPORT_EXTENSIONS[ext];
  if (!f) throw usage(`--out ${o.out}: ${ext ? `the extension "${ext}" names no format` : 'no extension to tell the format'}; give --format parquet, csv or jsonl, or end the name in ${choices}`);
  return f;
}

const COPY_OPTIONS: Record<ExportFormat, string> = { parquet: 'FORMAT parquet', csv: 'FORMAT csv, HEADER true', jsonl: 'FORMAT json' };
const FILE_EXT: Record<ExportFormat, string> = { parquet: 'parquet', csv: 'csv', jsonl: 'jsonl' };

/** ISO-8601 UTC with `Z`, as tc-query prints times (milliseconds only when there are some). */
const isoTime = (col: string) => `(case when epoch_ms("${col}") % 1000 = 0 then strftime("${col}", '%Y-%m-%dT%H:%M:%SZ') else strftime("${col}", '%Y-%m-%dT%H:%M:%S.%gZ') end)`;

/** A Hive partition value: characters other than letters, digits, `.`, `_` and `-` percent-encoded. */
const hiveValue = (v: string) => v.replace(/[^A-Za-z0-9._-]/g, (c) => [...Buffer.from(c)].map((b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join(''));

/** A CSV field as DuckDB's COPY writes it: quoted only when it holds a delimiter, quote or line break. */
const csvField = (v: unknown) => {
  if (v === null || v === undefined) return '';
  const t = String(v);
  return /[",\n\r]/.test(t) ? `"${t.replace(/"/g, '""')}"` : t;
};

/** A JSON value as DuckDB's COPY (FORMAT json) writes it: integers as digits (64-bit exact). */
const jsonValue = (v: unknown) => (typeof v === 'bigint' || typeof v === 'number' ? String(v) : v === null || v === undefined ? 'null' : JSON.stringify(String(v)));

/**
 * Streams `select` as csv or jsonl to `stream`, in the bytes COPY ... TO a file writes (the
 * export test compares them): DuckDB cannot open /dev/stdout when stdout is a socket, as it is
 * under a Node parent.
 */
async function writeText(duck: Duck, select: string, format: 'csv' | 'jsonl', stream: NodeJS.WritableStream): Promise<void> {
  const result = await duck.conn.stream(select);
  const names = result.columnNames();
  const write = (s: string) => new Promise<void>((resolve, reject) => (stream.write(s, (err) => (err ? reject(err) : resolve()))));
  if (format === 'csv') await write(`${names.map(csvField).join(',')}\n`);
  const keys = names.map((n) => `${JSON.stringify(n)}:`);
  for (let chunk = await result.fetchChunk(); chunk && chunk.rowCount > 0; chunk = await result.fetchChunk()) {
    const lines = chunk.getRows().map((r) => (format === 'csv' ? r.map(csvField).join(',') : `{${r.map((v, i) => keys[i] + jsonValue(v)).join(',')}}`));
    await write(`${lines.join('\n')}\n`);
  }
}

/**
 * Writes the window's rows to a file (or stdout), or with `partition` to a Hive-partitioned
 * folder (node=<the file's node id>/date=YYYY-MM-DD/data_0.<ext>) that DuckDB, ClickHouse,
 * Spark or Trino read as one table. Counters stay 64-bit integers in every format; times are
 * TIMESTAMP in parquet and ISO-8601 UTC text in csv and jsonl. DuckDB may write only the
 * output's own paths (lockDown's allowed paths).
 */
export async function exportRows(o: ExportOptions): Promise<{ rows: number; out: string; files: number; note?: string }> {
  const format = exportFormat(o);
  if (o.out !== '-') {
    if (o.partition) checkFolderOut(o.out, o.db, o.force);
    else checkFileOut(o.out, o.db, o.force);
  }
  const sqlite = openReadOnly(o.db);
  let duck: Duck | undefined;
  let staged: string | undefined;
  try {
    duck = await Duck.open({ fresh: true });
    const window = resolveWindow(sqlite, o.window);
    const table = o.what === 'names' ? 'names' : o.resolution === 'raw' ? `${o.what}_deltas` : `${o.what}_${o.resolution}`;
    // The files' keys (when given) then the names, after the table's own columns.
    const extra = bothColumns(o.keys ? keyColumns(rowKeys(o.keys), table, { sqlite, window }) : undefined, nameColumns(sqlite, table));
    await loadTable(sqlite, duck, table, window, 'rows', { ids: labelIds(sqlite, o), extra });
    // One file, one node: rows carry the node id the file was created with.
    const node = (sqlite.prepare("select value from meta where key = 'node_id'").pluck().get() as string | undefined) ?? 'unknown';
    const times = timeColumns(table);
    const isoTimes = format === 'parquet' ? [] : times.map((c) => `${isoTime(c)} as "${c}"`);
    // In a partitioned folder the node is in the path (node=...), as Hive readers expect.
    const replace = o.partition ? isoTimes : [`${sqlString(node)} as node`, ...isoTimes];
    const select = `select * ${o.partition ? 'exclude (node) ' : ''}${replace.length ? `replace (${replace.join(', ')}) ` : ''}from rows`;
    const rows = Number((await duck.conn.runAndReadAll('select count(*) from rows')).getRows()[0][0]);
    // Nothing to export: say what the file covers, as the table answers do.
    const note = rows === 0 ? emptyWindowNote(sqlite, coverage(sqlite, window), window) : undefined;
    const opts = COPY_OPTIONS[format];

    if (o.out === '-') {
      await duck.lockDown();
      await writeText(duck, select, format as 'csv' | 'jsonl', process.stdout);
      return { rows, out: o.out, files: 1, note };
    }
    if (!o.partition) {
      staged = stagingPath(o.out);
      await duck.lockDown([staged]);
      await duck.conn.run(`copy (${select}) to ${sqlString(staged)} (${opts})`);
      publish(staged, o.out);
      return { rows, out: o.out, files: 1, note };
    }

    const dates = (await duck.conn.runAndReadAll(`select distinct strftime("${times[0]}", '%Y-%m-%d') as d from rows order by d`)).getRows().map((r) => String(r[0]));
    if (!existsSync(o.out)) mkdirSync(o.out);
    const nodeDir = path.join(o.out, `node=${hiveValue(node)}`);
    if (dates.length === 0) return { rows, out: o.out, files: 0, note };
    staged = stagingPath(nodeDir);
    const files = dates.map((d) => path.join(staged!, `date=${d}`, `data_0.${FILE_EXT[format]}`));
    for (const f of files) mkdirSync(path.dirname(f), { recursive: true });
    await duck.lockDown(files);
    for (let i = 0; i < dates.length; i++) {
      await duck.conn.run(`copy (${select} where strftime("${times[0]}", '%Y-%m-%d') = ${sqlString(dates[i])}) to ${sqlString(files[i])} (${opts})`);
    }
    publish(staged, nodeDir);
    return { rows, out: o.out, files: files.length, note };
  } catch (err) {
    if (staged && existsSync(staged)) discard(staged);
    throw staged ? writeFailed(o.out, staged, err) : err;
  } finally {
    duck?.close();
    sqlite.close();
  }
}
