/**
 * 2026-11-27 0001: the event log.
 *
 * Frozen in time: written against Kysely<any>, never edited after release; later changes are
 * new migrations. All times are UTC epoch milliseconds; counters are SQLite INTEGER (64-bit).
 */
import { Kysely, sql } from '../src/schema/kysely';

export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('meta')
    .addColumn('key', 'text', (c) => c.primaryKey())
    .addColumn('value', 'text', (c) => c.notNull())
    .execute();

  // Address dictionary: 4-byte (IPv4) or 16-byte (IPv6) BLOBs; the empty BLOB is the overflow
  // row of a full table. `text` is the display form (RFC 5952 for IPv6).
  await db.schema
    .createTable('addresses')
    .addColumn('id', 'integer', (c) => c.primaryKey())
    .addColumn('addr', 'blob', (c) => c.notNull().unique())
    .addColumn('text', 'text', (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('sessions')
    .addColumn('id', 'integer', (c) => c.primaryKey())
    .addColumn('session_key', 'text', (c) => c.notNull().unique())
    .addColumn('node_id', 'text', (c) => c.notNull())
    .addColumn('kind', 'text', (c) => c.notNull().check(sql`kind in ('live', 'replay')`))
    .addColumn('source', 'text', (c) => c.notNull())
    .addColumn('interval_ms', 'integer', (c) => c.notNull())
    .addColumn('flows', 'integer', (c) => c.notNull())
    .addColumn('started_at', 'integer', (c) => c.notNull())
    .addColumn('ended_at', 'integer')
    .addColumn('options', 'text', (c) => c.notNull())
    .execute();

  // One row per interval of a session. Kernel ring and filter counters are NULL when the
  // session had none (replays; --no-ebpf).
  await sql`
    create table batches (
      id integer primary key,
      session_id integer not null references sessions(id),
      seq integer not null,
      start_ms integer not null,
      end_ms integer not null,
      frames integer not null,
      ip_packets integer not null,
      ip_bytes integer not null,
      ipv4_packets integer not null,
      ipv4_bytes integer not null,
      ipv6_packets integer not null,
      ipv6_bytes integer not null,
      non_ip integer not null,
      ip_header_incomplete integer not null,
      fragments_first integer not null,
      fragments_non_first integer not null,
      ip_length_field_zero integer not null,
      ignored integer not null,
      late integer not null,
      ring_packets integer,
      ring_drops integer,
      ring_freeze_q_cnt integer,
      filter_passed integer,
      filter_non_ip integer,
      filter_ignored integer,
      filter_not_accepted integer,
      ip_overflow_keys integer not null,
      flow_overflow_keys integer not null,
      ip_rows integer not null,
      flow_rows integer not null,
      last integer not null,
      written_at integer not null,
      unique (session_id, seq)
    )`.execute(db);
  await sql`create index batches_by_start on batches (start_ms)`.execute(db);

  // Delta rows: WITHOUT ROWID with the batch first, so a time window is one key range.
  await sql`
    create table ip_deltas (
      batch_id integer not null,
      ip_id integer not null,
      tx_packets integer not null,
      tx_bytes integer not null,
      rx_packets integer not null,
      rx_bytes integer not null,
      primary key (batch_id, ip_id)
    ) without rowid`.execute(db);
  await sql`
    create table flow_deltas (
      batch_id integer not null,
      src_id integer not null,
      dst_id integer not null,
      proto integer not null,
      sport integer not null,
      dport integer not null,
      packets integer not null,
      bytes integer not null,
      primary key (batch_id, src_id, dst_id, proto, sport, dport)
    ) without rowid`.execute(db);

  // Readable views for sqlite3 / DuckDB users.
  await sql`
    create view v_batches as
    select b.id, s.node_id, s.kind, s.source, b.seq,
           strftime('%Y-%m-%dT%H:%M:%fZ', b.start_ms / 1000.0, 'unixepoch') as start_utc,
           strftime('%Y-%m-%dT%H:%M:%fZ', b.end_ms / 1000.0, 'unixepoch') as end_utc,
           b.*
    from batches b join sessions s on s.id = b.session_id`.execute(db);
  await sql`
    create view v_ip_deltas as
    select strftime('%Y-%m-%dT%H:%M:%fZ', b.start_ms / 1000.0, 'unixepoch') as start_utc,
           a.text as ip, d.tx_packets, d.tx_bytes, d.rx_packets, d.rx_bytes, d.batch_id
    from ip_deltas d join batches b on b.id = d.batch_id join addresses a on a.id = d.ip_id`.execute(db);
  await sql`
    create view v_flow_deltas as
    select strftime('%Y-%m-%dT%H:%M:%fZ', b.start_ms / 1000.0, 'unixepoch') as start_utc,
           s.text as src, t.text as dst, d.proto, d.sport, d.dport, d.packets, d.bytes, d.batch_id
    from flow_deltas d join batches b on b.id = d.batch_id
    join addresses s on s.id = d.src_id join addresses t on t.id = d.dst_id`.execute(db);
}
