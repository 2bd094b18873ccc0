/** `tc-query top`: the top talkers (per address) or the top flows of a window. */
import { BIGINT, HUGEINT, UTINYINT, USMALLINT, VARCHAR } from '@duckdb/node-api';
import type Database from 'better-sqlite3';
import { Duck, querySql } from './duck';
import { openReadOnly } from './db';
import type { Window } from './window';
import { plan, segmentSql, span, type Family } from './plan';
import { render, type ColumnSpec, type Format } from './output';
import { bytes, grouped, isoUtc, si } from '../units';

export interface TopOptions {
  db: string;
  by: 'ip' | 'flow';
  window: Window;
  limit: number;
  format: Format;
}

const PROTO: Record<number, string> = { 1: 'icmp', 2: 'igmp', 6: 'tcp', 17: 'udp', 41: 'ipv6', 47: 'gre', 50: 'esp', 51: 'ah', 58: 'icmpv6', 132: 'sctp' };

async function loadAddresses(sqlite: Database.Database, duck: Duck, ids: Set<number>): Promise<void> {
  const stmt = sqlite.prepare('select id, text from addresses where id in (select value from json_each(?))').safeIntegers(true).raw(true);
  await duck.load('addresses', [{ name: 'id', sqlType: 'BIGINT', type: BIGINT }, { name: 'text', sqlType: 'VARCHAR', type: VARCHAR }], stmt.iterate(JSON.stringify([...ids])) as Iterable<unknown[]>);
}

interface Coverage {
  intervals: number;
  first: number | null;
  last: number | null;
  ringPackets: number;
  ringDrops: number;
  filterDrops: number;
}

function coverage(sqlite: Database.Database, w: Window): Coverage {
  const r = sqlite
    .prepare(
      `select count(*) as intervals, min(start_ms) as first, max(end_ms) as last,
              coalesce(sum(ring_packets), 0) as ringPackets, coalesce(sum(ring_drops), 0) as ringDrops,
              coalesce(sum(coalesce(filter_ignored, 0) + coalesce(filter_not_accepted, 0) + ignored), 0) as filterDrops
       from batches where start_ms >= ? and start_ms < ?`,
    )
    .get(w.fromMs, w.toMs) as Coverage;
  return r;
}

function footer(c: Coverage): string {
  if (c.intervals === 0) return 'no intervals recorded in this window';
  const dropPct = c.ringPackets > 0 ? ` (${((100 * c.ringDrops) / c.ringPackets).toFixed(2)}%)` : '';
  return `${grouped(c.intervals)} intervals, ${isoUtc(c.first!)} to ${isoUtc(c.last!)}; kernel drops ${grouped(c.ringDrops)}${dropPct}; filtered out ${grouped(c.filterDrops)}`;
}

/** Resolves the window: `--all` becomes the recorded span of the log. */
export function resolveWindow(sqlite: Database.Database, w: Window): Window {
  if (!w.all) return w;
  const sp = span(sqlite);
  return sp ? { fromMs: sp.fromMs, toMs: sp.toMs, all: true } : { fromMs: 0, toMs: 0, all: true };
}

/** Loads the window's per-IP or per-flow rows (partially summed per segment) into DuckDB. */
export async function loadWindow(sqlite: Database.Database, duck: Duck, family: Family, w: Window, ids: Set<number>, where = '', params: unknown[] = []): Promise<void> {
  const segments = w.toMs > w.fromMs ? plan(sqlite, family, w.fromMs, w.toMs) : [];
  function* rows(): Generator<unknown[]> {
    for (const s of segments) {
      const stmt = sqlite.prepare(segmentSql(family, s, where)).safeIntegers(true).raw(true);
      for (const r of stmt.iterate(s.fromMs, s.toMs, ...params) as Iterable<unknown[]>) {
        if (family === 'ip') {
          ids.add(Number(r[0] as bigint));
          yield r;
        } else {
          ids.add(Number(r[0] as bigint));
          ids.add(Number(r[1] as bigint));
          yield [r[0], r[1], Number(r[2]), Number(r[3]), Number(r[4]), r[5], r[6]];
        }
      }
    }
  }
  const big = (name: string) => ({ name, sqlType: 'HUGEINT', type: HUGEINT });
  const id = (name: string) => ({ name, sqlType: 'BIGINT', type: BIGINT });
  if (family === 'ip') {
    await duck.load('ip_deltas', [id('ip_id'), big('tx_packets'), big('tx_bytes'), big('rx_packets'), big('rx_bytes')], rows());
  } else {
    await duck.load(
      'flow_deltas',
      [
        id('src_id'),
        id('dst_id'),
        { name: 'proto', sqlType: 'UTINYINT', type: UTINYINT },
        { name: 'sport', sqlType: 'USMALLINT', type: USMALLINT },
        { name: 'dport', sqlType: 'USMALLINT', type: USMALLINT },
        big('packets'),
        big('bytes'),
      ],
      rows(),
    );
  }
}

export async function top(o: TopOptions): Promise<string> {
  const sqlite = openReadOnly(o.db);
  let duck: Duck | undefined;
  try {
    duck = await Duck.open();
    const ids = new Set<number>();
    const window = resolveWindow(sqlite, o.window);
    let cols: ColumnSpec[];
    if (o.by === 'ip') {
      await loadWindow(sqlite, duck, 'ip', window, ids);
      cols = [
        { key: 'ip', align: 'left' },
        { key: 'tx_packets', header: 'tx pkts', human: (v) => si(v as bigint) },
        { key: 'tx_bytes', header: 'tx', human: (v) => bytes(v as bigint) },
        { key: 'rx_packets', header: 'rx pkts', human: (v) => si(v as bigint) },
        { key: 'rx_bytes', header: 'rx', human: (v) => bytes(v as bigint) },
        { key: 'packets', header: 'pkts', human: (v) => si(v as bigint) },
        { key: 'bytes', header: 'bytes', human: (v) => bytes(v as bigint) },
      ];
    } else {
      await loadWindow(sqlite, duck, 'flow', window, ids);
      cols = [
        { key: 'src', align: 'left' },
        { key: 'dst', align: 'left' },
        { key: 'proto', human: (v) => PROTO[v as number] ?? String(v) },
        { key: 'sport' },
        { key: 'dport' },
        { key: 'packets', header: 'pkts', human: (v) => si(v as bigint) },
        { key: 'bytes', human: (v) => bytes(v as bigint) },
      ];
    }
    await loadAddresses(sqlite, duck, ids);
    const rows = await duck.rows(querySql(o.by === 'ip' ? 'top_ip' : 'top_flow'), { limit: o.limit === 0 ? null : o.limit });
    return render(o.format, cols, rows, o.format === 'table' ? footer(coverage(sqlite, window)) : undefined);
  } finally {
    duck?.close();
    sqlite.close();
  }
}
