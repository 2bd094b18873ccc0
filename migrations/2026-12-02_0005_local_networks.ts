/**
 * 2026-12-02 0005: the local networks of each session: this host's own networks, which
 * `tc-query top --side local|remote` and `series --side` split traffic by.
 *
 * - local_networks: one row per network and the time it was local, of one session: live
 *   capture's interface addresses with their prefixes (origin 'interface', `address` the
 *   interface's own address) at the start and as they change, or the networks of
 *   `--local-networks FILE` (origin 'file'). `network` is the CIDR text, `net`/`prefix` the
 *   network's 4 or 16 bytes and length. Times are UTC epoch ms: a live row from when the
 *   recorder saw the address to when it saw it gone or the session stopped; a replay's rows
 *   span the capture's intervals. `to_ms` NULL: still local (the session runs, or was stopped
 *   before it could close the row; its last interval ends it then).
 * - v_local_networks: the same with the session's source and readable UTC times.
 * Frozen in time: never edited after release.
 */
import { Kysely, sql } from '../src/schema/kysely';

export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    create table local_networks (
      id integer primary key,
      session_id integer not null references sessions(id),
      network text not null,
      net blob not null,
      prefix integer not null,
      address text,
      origin text not null check (origin in ('interface', 'file')),
      source text not null,
      from_ms integer not null,
      to_ms integer
    )`.execute(db);
  await sql`create index local_networks_by_session on local_networks (session_id)`.execute(db);
  await sql`
    create view v_local_networks as
    select n.session_id, s.kind, s.source as session_source, n.network, n.address, n.origin, n.source,
           strftime('%Y-%m-%dT%H:%M:%fZ', n.from_ms / 1000.0, 'unixepoch') as from_utc,
           strftime('%Y-%m-%dT%H:%M:%fZ', n.to_ms / 1000.0, 'unixepoch') as to_utc,
           n.from_ms, n.to_ms
    from local_networks n join sessions s on s.id = n.session_id`.execute(db);
}
