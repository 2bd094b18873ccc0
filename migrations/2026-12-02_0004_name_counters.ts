/**
 * 2026-12-02 0004: the names engine's per-interval counts (src/schema/counters.ts).
 *
 * - batches.names_recorded: (address, name, source) pairs the interval's batch carried.
 * - batches.names_overflowed: estimated distinct new pairs refused past --max-names.
 * - batches.names_malformed: DNS messages and ClientHellos skipped as malformed or hostile.
 * - batches.names_incomplete: ClientHellos split over TCP segments given up (a bound, a gap,
 *   the timeout).
 * Intervals recorded before this migration read 0.
 * Frozen in time: never edited after release.
 */
import { Kysely, sql } from '../src/schema/kysely';

export async function up(db: Kysely<any>): Promise<void> {
  for (const column of ['names_recorded', 'names_overflowed', 'names_malformed', 'names_incomplete']) {
    await sql`alter table batches add column ${sql.raw(column)} integer not null default 0`.execute(db);
  }
}
