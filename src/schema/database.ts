/**
 * Kysely table types of the database (the tables migrations/ creates, all 16), and a cold
 * Kysely instance that builds the recorder's cold-path statements (sessions, events, meta) for
 * better-sqlite3 to run synchronously, inside its transactions. The hot path (batches, delta
 * and rollup rows) keeps its prepared statements and tc_rows (src/recorder/write/rows.ts).
 */
import type SQLite from 'better-sqlite3';
import { DummyDriver, Kysely, SqliteAdapter, SqliteIntrospector, SqliteQueryCompiler, type Compilable, type Generated } from './kysely';
import type { BudgetCounterColumn, CounterColumn } from './counters';
import type { Level } from './levels';

export interface MetaTable {
  key: string;
  value: string;
}

export interface AddressesTable {
  id: Generated<number>;
  /** 4 bytes (IPv4), 16 (IPv6), or empty: the overflow row of a full table. */
  addr: Uint8Array;
  text: string;
}

export interface SessionsTable {
  id: Generated<number>;
  session_key: string;
  node_id: string;
  kind: 'live' | 'replay';
  source: string;
  interval_ms: number;
  /** 0 or 1. */
  flows: number;
  started_at: number;
  ended_at: number | null;
  /** JSON of the counting options the session was recorded with. */
  options: string;
}

/** One column per counter (counters.ts); ring and filter counters are NULL when absent. */
type BatchCounters = { [C in CounterColumn]: C extends `ring_${string}` | `filter_${string}` ? number | null : number };

/** Keys the disk budget folded into the overflow row (counters.ts BUDGET_COUNTERS). */
type BudgetCounters = { [C in BudgetCounterColumn]: Generated<number> };

export interface BatchesTable extends BatchCounters, BudgetCounters {
  id: Generated<number>;
  session_id: number;
  seq: number;
  start_ms: number;
  end_ms: number;
  ip_rows: number;
  flow_rows: number;
  last: number;
  written_at: number;
  /** Bits of the delta rows retention removed: 1 per-IP, 2 flows. */
  pruned: Generated<number>;
}

export interface IpDeltasTable {
  batch_id: number;
  ip_id: number;
  tx_packets: number;
  tx_bytes: number;
  rx_packets: number;
  rx_bytes: number;
}

export interface FlowDeltasTable {
  batch_id: number;
  src_id: number;
  dst_id: number;
  proto: number;
  sport: number;
  dport: number;
  packets: number;
  bytes: number;
}

export type IpRollupTable = Omit<IpDeltasTable, 'batch_id'> & { bucket_ms: number };
export type FlowRollupTable = Omit<FlowDeltasTable, 'batch_id'> & { bucket_ms: number };

/** Rollup buckets whose data below is not yet rolled up. */
export interface RollupDirtyTable {
  level: Level;
  bucket_ms: number;
  end_ms: number;
}

export interface EventsTable {
  id: Generated<number>;
  at_ms: number;
  session_id: number | null;
  kind: string;
  start_ms: number | null;
  end_ms: number | null;
  detail: string | null;
}

/** The name dictionary: lower case, no trailing dot. */
export interface HostnamesTable {
  id: Generated<number>;
  name: string;
}

/** A name seen for an address in a session: its first and last interval (their start). */
export interface NamesTable {
  ip_id: number;
  name_id: number;
  /** Index into NAME_SOURCES (columns.ts): 0 dns, 1 sni. */
  source: number;
  session_id: number;
  first_ms: number;
  last_ms: number;
  /** Position of the last sighting among the names of the interval `last_ms` (capture order). */
  last_pos: number;
  /** 1 once the address is known to have traffic rows (0/1). */
  traffic: number;
  /** The newest time the row is known to be needed (its last sighting, or its address's traffic found then). */
  needed_ms: number;
}

/** This host's networks during a session (migration 0005): the interface's or a --local-networks file's. */
export interface LocalNetworksTable {
  id: Generated<number>;
  session_id: number;
  /** CIDR text of the network (its address masked to the prefix). */
  network: string;
  /** The network's 4 or 16 bytes. */
  net: Uint8Array;
  prefix: number;
  /** The interface's own address in the network (origin 'interface'), else null. */
  address: string | null;
  origin: 'interface' | 'file';
  /** The interface name, or the file's path. */
  source: string;
  from_ms: number;
  /** Null: still local (the session runs, or it stopped before closing the row). */
  to_ms: number | null;
}

export interface Database {
  meta: MetaTable;
  addresses: AddressesTable;
  sessions: SessionsTable;
  batches: BatchesTable;
  ip_deltas: IpDeltasTable;
  flow_deltas: FlowDeltasTable;
  ip_1m: IpRollupTable;
  ip_1h: IpRollupTable;
  ip_1d: IpRollupTable;
  flow_1m: FlowRollupTable;
  flow_1h: FlowRollupTable;
  rollup_dirty: RollupDirtyTable;
  events: EventsTable;
  local_networks: LocalNetworksTable;
  hostnames: HostnamesTable;
  names: NamesTable;
}

/** Builds statements only (a DummyDriver): they run through `run`/`get` on a better-sqlite3 connection. */
export const build = new Kysely<Database>({
  dialect: {
    createAdapter: () => new SqliteAdapter(),
    createDriver: () => new DummyDriver(),
    createIntrospector: (db) => new SqliteIntrospector(db),
    createQueryCompiler: () => new SqliteQueryCompiler(),
  },
});

/** Runs a built statement that changes rows. */
export function run(db: SQLite.Database, q: Compilable): SQLite.RunResult {
  const c = q.compile();
  return db.prepare(c.sql).run(...(c.parameters as unknown[]));
}

/** The first row of a built query, or undefined. */
export function get<R>(db: SQLite.Database, q: Compilable<R>): R | undefined {
  const c = q.compile();
  return db.prepare(c.sql).get(...(c.parameters as unknown[])) as R | undefined;
}

/** Every row of a built query. */
export function all<R>(db: SQLite.Database, q: Compilable<R>): R[] {
  const c = q.compile();
  return db.prepare(c.sql).all(...(c.parameters as unknown[])) as R[];
}
