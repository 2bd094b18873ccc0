/**
 * 2026-12-02 0006: names seen in the traffic (DNS answers, TLS server names).
 *
 * - hostnames: the name dictionary (lower case, no trailing dot), as `addresses` is the
 *   address dictionary.
 * - names: one row per (session, address, name, source) with the first and the last interval
 *   it was seen in (their start, UTC epoch ms) and the position of its last sighting among the
 *   names of that interval (capture order), so "the name seen last" is exact within an
 *   interval. Part of the event log (written with its batch), not a projection.
 *   `traffic` = 1 once the address is known to have traffic rows (its batch had some, or the
 *   disk budget found some); `needed_ms`: the newest time the row is known to be needed (its
 *   last sighting, or when its address was last found to have traffic rows), what retention
 *   ages it by.
 * - v_names: readable rows for sqlite3 / DuckDB users.
 * Frozen in time: never edited after release.
 */
import { Kysely, sql } from '../src/schema/kysely';

export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    create table hostnames (
      id integer primary key,
      name text not null unique
    )`.execute(db);
  // Keyed by address first: every answer asks for the names of addresses.
  await sql`
    create table names (
      ip_id integer not null,
      name_id integer not null,
      source integer not null check (source in (0, 1)),
      session_id integer not null,
      first_ms integer not null,
      last_ms integer not null,
      last_pos integer not null,
      traffic integer not null,
      needed_ms integer not null,
      primary key (ip_id, name_id, source, session_id)
    ) without rowid`.execute(db);
  // `names --name`; the budget's candidates (small: the rows not known to have traffic). A
  // replaced session and retention's hourly look read the table whole: an index each would
  // cost every name written more than they save (bench/README.md).
  await sql`create index names_by_name on names (name_id)`.execute(db);
  await sql`create index names_without_traffic on names (last_ms) where traffic = 0`.execute(db);
  await sql`
    create view v_names as
    select a.text as ip, h.name, case n.source when 0 then 'dns' else 'sni' end as source,
           strftime('%Y-%m-%dT%H:%M:%fZ', n.first_ms / 1000.0, 'unixepoch') as first_utc,
           strftime('%Y-%m-%dT%H:%M:%fZ', n.last_ms / 1000.0, 'unixepoch') as last_utc,
           n.session_id
    from names n join addresses a on a.id = n.ip_id join hostnames h on h.id = n.name_id`.execute(db);
}
