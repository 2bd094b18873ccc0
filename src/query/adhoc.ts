/** `tc-query sql` (ad hoc DuckDB SQL over the documented tables) and `tc-query export`. */
import { mkdirSync } from 'node:fs';
import * as path from 'node:path';
import { Duck } from './duck';
import { openReadOnly } from './db';
import type { Window } from './window';
import { render, type Format } from './output';
import { resolveWindow } from './plan';
import { loadTable, tablesIn } from './tables';

export async function adhocSql(o: { db: string; window: Window; sql: string; format: Format }): Promise<string> {
  const sqlite = openReadOnly(o.db);
  let duck: Duck | undefined;
  try {
    duck = await Duck.open();
    const window = resolveWindow(sqlite, o.window);
    for (const t of tablesIn(o.sql)) await loadTable(sqlite, duck, t, window);
    const reader = await duck.conn.runAndReadAll(o.sql);
    const names = reader.columnNames();
    const rows = reader.getRowObjectsJS() as Record<string, unknown>[];
    return render(o.format, names.map((key) => ({ key, align: 'left' as const })), rows.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, v instanceof Date ? v.toISOString() : v]))));
  } finally {
    duck?.close();
    sqlite.close();
  }
}

export type ExportFormat = 'parquet' | 'csv' | 'jsonl';

export interface ExportOptions {
  db: string;
  window: Window;
  what: 'ip' | 'flow';
  resolution: 'raw' | '1m' | '1h' | '1d';
  format: ExportFormat;
  out: string;
  partition: boolean;
}

/**
 * Writes the window's rows to a file, or with `partition` to a Hive-partitioned folder
 * (node=.../date=YYYY-MM-DD/...) that DuckDB, ClickHouse, Spark or Trino read as one table.
 */
export async function exportRows(o: ExportOptions): Promise<{ rows: number; out: string }> {
  const sqlite = openReadOnly(o.db);
  let duck: Duck | undefined;
  try {
    duck = await Duck.open();
    const window = resolveWindow(sqlite, o.window);
    const table = o.resolution === 'raw' ? `${o.what}_deltas` : `${o.what}_${o.resolution}`;
    if (o.what === 'flow' && o.resolution === '1d') throw new Error('flows have minute and hour rollups only (--resolution raw, 1m or 1h)');
    await loadTable(sqlite, duck, table, window, 'rows');
    const timeCol = o.resolution === 'raw' ? 'start' : 'bucket';
    const fmt = o.format === 'jsonl' ? "FORMAT json" : o.format === 'csv' ? 'FORMAT csv, HEADER true' : 'FORMAT parquet';
    const select = `select *, strftime("${timeCol}", '%Y-%m-%d') as date from rows`;
    if (o.partition) {
      mkdirSync(o.out, { recursive: true });
      await duck.conn.run(`copy (${select}) to '${o.out.replace(/'/g, "''")}' (${fmt}, PARTITION_BY (node, date), OVERWRITE_OR_IGNORE)`);
    } else {
      mkdirSync(path.dirname(path.resolve(o.out)), { recursive: true });
      await duck.conn.run(`copy (select * exclude (date) from (${select})) to '${o.out.replace(/'/g, "''")}' (${fmt})`);
    }
    const n = await duck.conn.runAndReadAll('select count(*) from rows');
    return { rows: Number(n.getRows()[0][0]), out: o.out };
  } finally {
    duck?.close();
    sqlite.close();
  }
}
