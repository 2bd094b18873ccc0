/** `tc-query series`: traffic per step (total, or of an address / CIDR), with a bar chart. */
import { Duck, querySql, BIGINT } from './duck';
import { DbError, openReadOnly } from './db';
import type { Window } from './window';
import { render, type ColumnSpec, type Format } from './output';
import { collectColumns, plan, seriesSql } from './plan';
import { matchingIds, whereFor, type Filters } from './filters';
import { coverage, completenessLine } from './coverage';
import { resolveWindow } from './plan';
import { duckParam } from './top';
import type Database from 'better-sqlite3';
import { formatTime } from './time';
import { bitRate, bytes, si } from '../units';

export interface SeriesOptions {
  db: string;
  window: Window;
  stepMs: number;
  format: Format;
  filters: Filters;
  tz?: string;
}

const BAR_WIDTH = 40;
const MAX_STEPS = 100_000;

type SeriesRows = { columns: ArrayBufferView[]; count: number };

/** Reads series rows (t_ms, tx_packets, tx_bytes, rx_packets, rx_bytes) into typed columns. */
function readSeries(sqlite: Database.Database, window: Window, stepMs: number, ids: number[] | undefined): SeriesRows {
  const w = whereFor('ip', ids, {}, 'sqlite');
  const segments = window.toMs > window.fromMs ? plan(sqlite, 'ip', window.fromMs, window.toMs, { stepMs }) : [];
  // Few rows (one per interval or bucket), read into typed columns and copied into DuckDB whole.
  function* rows(): Generator<bigint[]> {
    for (const s of segments) yield* sqlite.prepare(seriesSql(s, w.where)).safeIntegers(true).raw(true).iterate(s.fromMs, s.toMs, ...w.params) as Iterable<bigint[]>;
  }
  return collectColumns(rows(), ['i64', 'i64', 'i64', 'i64', 'i64']);
}

/** Loads series_rows(t_ms, tx_packets, tx_bytes, rx_packets, rx_bytes) for the window. */
export async function loadSeries(sqlite: Database.Database, duck: Duck, window: Window, stepMs: number, ids: number[] | undefined, preRead?: SeriesRows): Promise<void> {
  if (duck.attached) {
    const w = whereFor('ip', ids, {}, 'duckdb');
    const segments = window.toMs > window.fromMs ? plan(sqlite, 'ip', window.fromMs, window.toMs, { stepMs }) : [];
    await duck.conn.run('create table series_rows (t_ms BIGINT, tx_packets HUGEINT, tx_bytes HUGEINT, rx_packets HUGEINT, rx_bytes HUGEINT)');
    for (const s of segments) {
      await duck.conn.run(`insert into series_rows ${seriesSql(s, w.where, duck.attached)}`, [s.fromMs, s.toMs, ...w.params].map(duckParam));
    }
    return;
  }
  const big = (name: string) => ({ name, sqlType: 'BIGINT', type: BIGINT });
  await duck.loadColumns('series_rows', [big('t_ms'), big('tx_packets'), big('tx_bytes'), big('rx_packets'), big('rx_bytes')], [preRead ?? readSeries(sqlite, window, stepMs, ids)]);
}

export async function series(o: SeriesOptions): Promise<string> {
  const sqlite = openReadOnly(o.db);
  let duck: Duck | undefined;
  try {
    // SQLite is read here while DuckDB starts (if DuckDB then reads the attached file itself,
    // these rows go unused).
    const opened = await Duck.openAlongside(() => {
      const window = resolveWindow(sqlite, o.window);
      const steps = Math.ceil((window.toMs - Math.floor(window.fromMs / o.stepMs) * o.stepMs) / o.stepMs);
      if (steps > MAX_STEPS) {
        throw new DbError(`the window has ${steps} steps of ${o.stepMs / 1000} s (at most ${MAX_STEPS}); choose a larger --step or a narrower window`, 'ERR_TC_USAGE');
      }
      const ids = matchingIds(sqlite, o.filters);
      return { window, ids, pre: readSeries(sqlite, window, o.stepMs, ids) };
    });
    duck = opened.duck;
    const { window, ids, pre } = opened.result;
    const perAddress = ids !== undefined;
    await duck.attachSqlite(sqlite);
    await loadSeries(sqlite, duck, window, o.stepMs, ids, pre);
    await duck.lockDown();
    const result = await duck.rows(querySql('series'), {
      from_ms: BigInt(window.fromMs),
      to_ms: BigInt(window.toMs),
      step_ms: BigInt(o.stepMs),
      per_address: perAddress,
    });
    const out = result.map((r) => {
      const row: Record<string, unknown> = {
        start: formatTime(Number(r.start_ms), o.format === 'json' || o.format === 'csv' ? undefined : o.tz),
        end: formatTime(Number(r.end_ms), o.format === 'json' || o.format === 'csv' ? undefined : o.tz),
        packets: r.packets,
        bytes: r.bytes,
      };
      if (perAddress) Object.assign(row, { tx_packets: r.tx_packets, tx_bytes: r.tx_bytes, rx_packets: r.rx_packets, rx_bytes: r.rx_bytes });
      return row;
    });
    if (o.format !== 'table') {
      const keys = perAddress ? ['start', 'end', 'packets', 'bytes', 'tx_packets', 'tx_bytes', 'rx_packets', 'rx_bytes'] : ['start', 'end', 'packets', 'bytes'];
      return render(o.format, keys.map((key) => ({ key })), out);
    }
    const max = out.reduce((m, r) => (Number(r.bytes) > m ? Number(r.bytes) : m), 0);
    const secs = o.stepMs / 1000;
    for (const r of out) {
      const n = max > 0 ? Math.round((Number(r.bytes) / max) * BAR_WIDTH) : 0;
      r.chart = '█'.repeat(n) || (Number(r.bytes) > 0 ? '▏' : '');
    }
    const cols: ColumnSpec[] = [
      { key: 'start', align: 'left' },
      { key: 'bytes', human: (v) => bytes(v as bigint) },
      { key: 'packets', header: 'pkts', human: (v) => si(v as bigint) },
      { key: 'bytes', header: 'bit/s', human: (v) => bitRate(v as bigint, secs) },
      { key: 'chart', align: 'left', header: '' },
    ];
    return render(
      'table',
      cols,
      out,
      completenessLine(coverage(sqlite, window), o.tz),
    );
  } finally {
    duck?.close();
    sqlite.close();
  }
}
