/**
 * 2026-11-27 0002: projections of the event log and the recorder's own events.
 *
 * - ip_1m / ip_1h / ip_1d and flow_1m / flow_1h: per-IP and per-flow sums per UTC minute, hour
 *   and day, bucketed by interval start. A bucket is recomputed whole from the level below when
 *   it closes, so recomputing is idempotent.
 * - rollup_dirty: buckets with data not yet in their rollup (queries read the level below for
 *   them).
 * - events: starts, stops, unclean shutdowns, lost intervals, write errors.
 * - batches.pruned: how far retention has removed a batch's delta rows.
 * Frozen in time: never edited after release.
 */
import { Kysely, sql } from '../src/schema/kysely';

export async function up(db: Kysely<any>): Promise<void> {
  for (const t of ['ip_1m', 'ip_1h', 'ip_1d']) {
    await sql`
      create table ${sql.raw(t)} (
        bucket_ms integer not null,
        ip_id integer not null,
        tx_packets integer not null,
        tx_bytes integer not null,
        rx_packets integer not null,
        rx_bytes integer not null,
        primary key (bucket_ms, ip_id)
      ) without rowid`.execute(db);
  }
  for (const t of ['flow_1m', 'flow_1h']) {
    await sql`
      create table ${sql.raw(t)} (
        bucket_ms integer not null,
        src_id integer not null,
        dst_id integer not null,
        proto integer not null,
        sport integer not null,
        dport integer not null,
        packets integer not null,
        bytes integer not null,
        primary key (bucket_ms, src_id, dst_id, proto, sport, dport)
      ) without rowid`.execute(db);
  }
  await sql`
    create table rollup_dirty (
      level text not null,
      bucket_ms integer not null,
      end_ms integer not null,
      primary key (level, bucket_ms)
    ) without rowid`.execute(db);
  await sql`
    create table events (
      id integer primary key,
      at_ms integer not null,
      session_id integer,
      kind text not null,
      start_ms integer,
      end_ms integer,
      detail text
    )`.execute(db);
  await sql`create index events_by_time on events (at_ms)`.execute(db);
  // Retention progress: bit 1 = per-IP delta rows pruned, bit 2 = per-flow delta rows pruned.
  await sql`alter table batches add column pruned integer not null default 0`.execute(db);
  await sql`create index batches_unpruned on batches (start_ms) where pruned != 3`.execute(db);

  for (const [v, t] of [['v_ip_1m', 'ip_1m'], ['v_ip_1h', 'ip_1h'], ['v_ip_1d', 'ip_1d']]) {
    await sql`
      create view ${sql.raw(v)} as
      select strftime('%Y-%m-%dT%H:%M:%SZ', r.bucket_ms / 1000, 'unixepoch') as bucket_utc, a.text as ip,
             r.tx_packets, r.tx_bytes, r.rx_packets, r.rx_bytes
      from ${sql.raw(t)} r join addresses a on a.id = r.ip_id`.execute(db);
  }
  for (const [v, t] of [['v_flow_1m', 'flow_1m'], ['v_flow_1h', 'flow_1h']]) {
    await sql`
      create view ${sql.raw(v)} as
      select strftime('%Y-%m-%dT%H:%M:%SZ', r.bucket_ms / 1000, 'unixepoch') as bucket_utc,
             s.text as src, d.text as dst, r.proto, r.sport, r.dport, r.packets, r.bytes
      from ${sql.raw(t)} r join addresses s on s.id = r.src_id join addresses d on d.id = r.dst_id`.execute(db);
  }
}
