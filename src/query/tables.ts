/**
 * The documented tables of `tc-query sql` and `tc-query export`, loaded into DuckDB from the
 * SQLite file for a window (only the tables a statement names are loaded):
 *
 *   intervals(node, source, session, seq, start, "end", frames, ip_packets, ip_bytes, non_ip,
 *             kernel_packets, kernel_drops, filter_passed, filter_ignored, filter_not_accepted,
 *             ip_overflow_keys, flow_overflow_keys, budget_folded_ip_keys, budget_folded_flow_keys)
 *   ip_deltas(node, start, "end", ip, tx_packets, tx_bytes, rx_packets, rx_bytes)
 *   flow_deltas(node, start, "end", src, dst, proto, sport, dport, packets, bytes)
 *   ip_1m / ip_1h / ip_1d(node, bucket, ip, tx_packets, tx_bytes, rx_packets, rx_bytes)
 *   flow_1m / flow_1h(node, bucket, src, dst, proto, sport, dport, packets, bytes)
 *   events(at, kind, start, "end", detail): a window holds an event by the time it is about
 *             (start, else at)
 *   local_networks(node, session, source, network, address, origin, origin_source, "from", "to")
 *   names(node, ip, name, source, first, last, session): the names seen for addresses (DNS
 *         answers, TLS server names), a row per session, address, name and source with the start
 *         of the first and the last interval it was seen in; a window holds the rows seen in it
 *         (first before its end, last at or after its start)
 *   labels(ip, label): with --labels, each address of the file that a line of the label file
 *          labels (longest prefix), to join on `ip`
 * Times are TIMESTAMP (UTC), addresses text, counters BIGINT: every stored count is a SQLite
 * integer, so it fits exactly (in every export format too); DuckDB's sum() of them is HUGEINT.
 */
import type { DuckDBType } from '@duckdb/node-api';
import { BIGINT, INTEGER, TIMESTAMP, VARCHAR, DuckDBTimestampValue, type Duck } from './duck';
import type Database from 'better-sqlite3';
import type { Window } from './window';
import { bounds, EVENT_TIME } from './coverage';
import { ALL_LEVELS, LEVELS } from '../schema/levels';
import { BUDGET_COUNTERS } from '../schema/counters';
import { NAME_SOURCES } from '../schema/columns';
import type { LabelTable } from './labels';
import { LOCAL_NETWORKS_SQL } from './local';

interface Col {
  name: string;
  sqlType: string;
  type: DuckDBType;
  conv?: (v: unknown) => unknown;
}

const ts = (name: string): Col => ({ name, sqlType: 'TIMESTAMP', type: TIMESTAMP, conv: (v) => (v === null ? null : new DuckDBTimestampValue(BigInt(v as bigint) * 1000n)) });
const txt = (name: string): Col => ({ name, sqlType: 'VARCHAR', type: VARCHAR });
const big = (name: string): Col => ({ name, sqlType: 'BIGINT', type: BIGINT });
const int = (name: string): Col => ({ name, sqlType: 'INTEGER', type: INTEGER, conv: (v) => (v === null ? null : Number(v)) });
const id = (name: string): Col => ({ name, sqlType: 'BIGINT', type: BIGINT });

const NODE = '(select node_id from sessions s where s.id = b.session_id)';

/**
 * A documented table: its columns and the SQL that reads them for [from, to) (binding from, to);
 * `ids` are the SQL's dictionary-id columns of its addresses (an address filter's terms).
 */
interface TableDef {
  cols: Col[];
  sql: string;
  ids?: string[];
}

const rollupIp = (t: string): TableDef => ({
  ids: ['r.ip_id'],
  cols: [txt('node'), ts('bucket'), txt('ip'), big('tx_packets'), big('tx_bytes'), big('rx_packets'), big('rx_bytes')],
  sql: `select (select value from meta where key = 'node_id'), r.bucket_ms, a.text, r.tx_packets, r.tx_bytes, r.rx_packets, r.rx_bytes
        from ${t} r join addresses a on a.id = r.ip_id where r.bucket_ms >= ? and r.bucket_ms < ?`,
});
const rollupFlow = (t: string): TableDef => ({
  ids: ['r.src_id', 'r.dst_id'],
  cols: [txt('node'), ts('bucket'), txt('src'), txt('dst'), int('proto'), int('sport'), int('dport'), big('packets'), big('bytes')],
  sql: `select (select value from meta where key = 'node_id'), r.bucket_ms, s.text, d.text, r.proto, r.sport, r.dport, r.packets, r.bytes
        from ${t} r join addresses s on s.id = r.src_id join addresses d on d.id = r.dst_id where r.bucket_ms >= ? and r.bucket_ms < ?`,
});

export const TABLES: Record<string, TableDef> = {
  intervals: {
    cols: [txt('node'), txt('source'), id('session'), id('seq'), ts('start'), ts('end'), big('frames'), big('ip_packets'), big('ip_bytes'), big('non_ip'),
      big('kernel_packets'), big('kernel_drops'), big('filter_passed'), big('filter_ignored'), big('filter_not_accepted'), big('ip_overflow_keys'), big('flow_overflow_keys'),
      ...BUDGET_COUNTERS.map((k) => big(k.column))],
    sql: `select ${NODE}, (select source from sessions s where s.id = b.session_id), b.session_id, b.seq, b.start_ms, b.end_ms, b.frames, b.ip_packets, b.ip_bytes, b.non_ip,
                 b.ring_packets, b.ring_drops, b.filter_passed, b.filter_ignored, b.filter_not_accepted, b.ip_overflow_keys, b.flow_overflow_keys, ${BUDGET_COUNTERS.map((k) => `b.${k.column}`).join(', ')}
          from batches b where b.start_ms >= ? and b.start_ms < ?`,
  },
  ip_deltas: {
    ids: ['d.ip_id'],
    cols: [txt('node'), ts('start'), ts('end'), txt('ip'), big('tx_packets'), big('tx_bytes'), big('rx_packets'), big('rx_bytes')],
    sql: `select ${NODE}, b.start_ms, b.end_ms, a.text, d.tx_packets, d.tx_bytes, d.rx_packets, d.rx_bytes
          from batches b join ip_deltas d on d.batch_id = b.id join addresses a on a.id = d.ip_id where b.start_ms >= ? and b.start_ms < ?`,
  },
  flow_deltas: {
    ids: ['d.src_id', 'd.dst_id'],
    cols: [txt('node'), ts('start'), ts('end'), txt('src'), txt('dst'), int('proto'), int('sport'), int('dport'), big('packets'), big('bytes')],
    sql: `select ${NODE}, b.start_ms, b.end_ms, s.text, t.text, d.proto, d.sport, d.dport, d.packets, d.bytes
          from batches b join flow_deltas d on d.batch_id = b.id join addresses s on s.id = d.src_id join addresses t on t.id = d.dst_id
          where b.start_ms >= ? and b.start_ms < ?`,
  },
  ...Object.fromEntries(ALL_LEVELS.map((l) => [l, LEVELS[l].family === 'ip' ? rollupIp(l) : rollupFlow(l)])),
  events: {
    cols: [ts('at'), txt('kind'), ts('start'), ts('end'), txt('detail')],
    // By the time the event is about (coverage.ts EVENT_TIME), as coverage() counts events.
    sql: `select at_ms, kind, start_ms, end_ms, detail from events where ${EVENT_TIME} >= ? and ${EVENT_TIME} < ?`,
  },
  // This host's networks local at some time of the window (src/query/local.ts says which);
  // "to" is NULL while a network still is.
  local_networks: {
    cols: [txt('node'), id('session'), txt('source'), txt('network'), txt('address'), txt('origin'), txt('origin_source'), ts('from'), ts('to')],
    sql: `select s.node_id, n.session_id, s.source, n.network, n.address, n.origin, n.source, n.from_ms, case when n.closed then n.to_ms end
          from (${LOCAL_NETWORKS_SQL}) n join sessions s on s.id = n.session_id where n.to_ms > ? and n.from_ms < ?`,
  },
  names: {
    ids: ['n.ip_id'],
    cols: [txt('node'), txt('ip'), txt('name'), txt('source'), ts('first'), ts('last'), id('session')],
    sql: `select (select value from meta where key = 'node_id'), a.text, h.name, case n.source ${NAME_SOURCES.map((x, i) => `when ${i} then '${x}'`).join(' ')} end,
                 n.first_ms, n.last_ms, n.session_id
          from names n join addresses a on a.id = n.ip_id join hostnames h on h.id = n.name_id
          where n.last_ms >= ? and n.first_ms < ?`,
  },
};

/** The TIMESTAMP columns of a documented table. */
export const timeColumns = (name: string): string[] => TABLES[name].cols.filter((c) => c.sqlType === 'TIMESTAMP').map((c) => c.name);

/** Columns computed from each row (e.g. an address's label), appended to a loaded table. */
export interface ExtraColumns {
  cols: { name: string; sqlType: string; type: DuckDBType }[];
  /** The values of `cols` for a row (its values in the table's column order). */
  of(row: unknown[]): unknown[];
}

/**
 * Loads `name` for the window into DuckDB: the rows whose time (an interval's or a bucket's
 * start, the time an event is about) lies in it. `--all` loads every row of the table
 * (coverage.ts bounds), events after the last interval included. `ids`: only rows with an
 * address among these dictionary ids (either end of a flow); `extra`: computed columns.
 */
export async function loadTable(sqlite: Database.Database, duck: Duck, name: string, window: Window, as = name, o: { ids?: number[]; extra?: ExtraColumns } = {}): Promise<void> {
  const [fromMs, toMs] = bounds(window);
  const t = TABLES[name];
  const filter = o.ids && t.ids ? ` and (${t.ids.map((c) => `${c} in (select value from json_each(?))`).join(' or ')})` : '';
  const params = filter ? t.ids!.map(() => JSON.stringify(o.ids)) : [];
  const stmt = sqlite.prepare(t.sql + filter).safeIntegers(true).raw(true);
  const convs = t.cols.map((c) => c.conv);
  const extra = o.extra;
  function* rows(): Generator<unknown[]> {
    for (const r of stmt.iterate(fromMs, toMs, ...params) as Iterable<unknown[]>) {
      const out = r.map((v, i) => (convs[i] ? convs[i]!(v) : v));
      yield extra ? [...out, ...extra.of(r)] : out;
    }
  }
  await duck.load(as, [...t.cols.map((c) => ({ ...c, name: `"${c.name}"` })), ...(extra?.cols ?? []).map((c) => ({ ...c, name: `"${c.name}"` }))], rows());
}

/** Names of the documented tables that `sql` mentions. */
export function tablesIn(sql: string): string[] {
  return Object.keys(TABLES).filter((t) => new RegExp(`\\b${t}\\b`, 'i').test(sql));
}

/**
 * Loads labels(ip, label): every address of the file the label file labels. The file's
 * addresses, not a window's: a statement joins it with whichever table it reads.
 */
export async function loadLabels(sqlite: Database.Database, duck: Duck, labels: LabelTable): Promise<void> {
  const stmt = sqlite.prepare('select addr, text from addresses where length(addr) in (4, 16)').raw(true);
  function* rows(): Generator<unknown[]> {
    for (const [addr, text] of stmt.iterate() as Iterable<[Buffer, string]>) {
      const label = labels.labelOf(addr);
      if (label !== null) yield [text, label];
    }
  }
  await duck.load('labels', [txt('ip'), txt('label')].map((c) => ({ ...c, name: `"${c.name}"` })), rows());
}
