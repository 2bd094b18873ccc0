/**
 * 2026-12-01 0003: the disk budget's per-interval fold counts.
 *
 * - batches.budget_folded_ip_keys / budget_folded_flow_keys: keys of the interval that the disk
 *   budget folded into the overflow row (the interval kept its heaviest keys by bytes). Apart
 *   from ip_overflow_keys / flow_overflow_keys, which count keys first seen after the engine's
 *   in-memory table filled (--max-keys).
 * Frozen in time: never edited after release.
 */
import { Kysely, sql } from '../src/schema/kysely';

export async function up(db: Kysely<any>): Promise<void> {
  await sql`alter table batches add column budget_folded_ip_keys integer not null default 0`.execute(db);
  await sql`alter table batches add column budget_folded_flow_keys integer not null default 0`.execute(db);
}
