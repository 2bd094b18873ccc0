/** `tc-query top`: the top talkers (per address) or the top flows of a window. */
import { BIGINT, UTINYINT, USMALLINT, VARCHAR } from '@duckdb/node-api';
import type Database from 'better-sqlite3';
import { Duck, querySql } from './duck';
import { openReadOnly } from './db';
import type { Window } from './window';
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

/** Yields the rows of `stmt` and records the dictionary ids found at `idCols`. */
function* collecting(rows: Iterable<unknown[]>, idCols: number[], ids: Set<number>): Generator<unknown[]> {
  for (const r of rows) {
    for (const c of idCols) ids.add(Number(r[c] as bigint));
    yield r;
  }
}

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

export async function top(o: TopOptions): Promise<string> {
  const sqlite = openReadOnly(o.db);
  let duck: Duck | undefined;
  try {
    duck = await Duck.open();
    const ids = new Set<number>();
    const w = [o.window.fromMs, o.window.toMs];
    let cols: ColumnSpec[];
    if (o.by === 'ip') {
      const stmt = sqlite
        .prepare(
          `select d.ip_id, d.tx_packets, d.tx_bytes, d.rx_packets, d.rx_bytes
           from batches b join ip_deltas d on d.batch_id = b.id where b.start_ms >= ? and b.start_ms < ?`,
        )
        .safeIntegers(true)
        .raw(true);
      const c = (name: string) => ({ name, sqlType: 'BIGINT', type: BIGINT });
      await duck.load('ip_deltas', [c('ip_id'), c('tx_packets'), c('tx_bytes'), c('rx_packets'), c('rx_bytes')], collecting(stmt.iterate(...w) as Iterable<unknown[]>, [0], ids));
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
      const stmt = sqlite
        .prepare(
          `select d.src_id, d.dst_id, d.proto, d.sport, d.dport, d.packets, d.bytes
           from batches b join flow_deltas d on d.batch_id = b.id where b.start_ms >= ? and b.start_ms < ?`,
        )
        .safeIntegers(true)
        .raw(true);
      const small = (name: string, sqlType: string, type: typeof UTINYINT | typeof USMALLINT) => ({ name, sqlType, type });
      const rows = function* (it: Iterable<unknown[]>) {
        for (const r of it) yield [r[0], r[1], Number(r[2]), Number(r[3]), Number(r[4]), r[5], r[6]];
      };
      await duck.load(
        'flow_deltas',
        [
          { name: 'src_id', sqlType: 'BIGINT', type: BIGINT },
          { name: 'dst_id', sqlType: 'BIGINT', type: BIGINT },
          small('proto', 'UTINYINT', UTINYINT),
          small('sport', 'USMALLINT', USMALLINT),
          small('dport', 'USMALLINT', USMALLINT),
          { name: 'packets', sqlType: 'BIGINT', type: BIGINT },
          { name: 'bytes', sqlType: 'BIGINT', type: BIGINT },
        ],
        collecting(rows(stmt.iterate(...w) as Iterable<unknown[]>), [0, 1], ids),
      );
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
    return render(o.format, cols, rows, o.format === 'table' ? footer(coverage(sqlite, o.window)) : undefined);
  } finally {
    duck?.close();
    sqlite.close();
  }
}
