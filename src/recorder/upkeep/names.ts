/**
 * Names and the traffic of their addresses. A name row stays as long as a traffic row of its
 * address (per-IP or flow, any level) is kept, and a name whose address has no traffic stays
 * while its own sighting is as young as what retention keeps; the disk budget may shed names of
 * addresses without traffic (once the minute they were seen in is over) before the last copies of
 * the traffic totals. Whether an address has traffic rows is read from the traffic tables
 * themselves (they have no index by address: one pass over each, coarsest first, ending once no
 * address is left to look for), so these look-ups run in large sets and rarely: at a budget
 * compaction or names step, and once an hour for retention.
 */
import type Database from 'better-sqlite3';
import { ALL_LEVELS, LEVELS, MINUTE_MS } from '../../schema/levels';

/**
 * The tables and columns that refer to address ids with traffic, and the time of a row (its
 * bucket's or interval's start): the rollups coarsest first (a day holds every address of its
 * hours, so most look-ups end in the first), then the raw rows.
 */
const TRAFFIC_REFS: readonly { table: string; column: string; time: string; join: string }[] = [
  ...[...ALL_LEVELS]
    .sort((a, b) => LEVELS[b].ms - LEVELS[a].ms)
    .flatMap((l) => (LEVELS[l].family === 'ip' ? ['ip_id'] : ['src_id', 'dst_id']).map((column) => ({ table: l, column, time: 'r.bucket_ms', join: '' }))),
  ...[['ip_deltas', 'ip_id'], ['flow_deltas', 'src_id'], ['flow_deltas', 'dst_id']].map(([table, column]) => ({ table, column, time: 'b.start_ms', join: 'join batches b on b.id = r.batch_id' })),
];

/** Addresses looked up per step at most: one pass over every traffic table serves them all. */
const NAME_STEP_ADDRESSES = 65_536;

/** A temp table of address ids (created empty, or emptied). */
function idSet(db: Database.Database, name: string): string {
  db.exec(`create temp table if not exists ${name} (id integer primary key); delete from temp.${name};`);
  return `temp.${name}`;
}

/** A temp table of address ids found with traffic: the table found in and the start of the newest row found there (created empty, or emptied). */
function foundSet(db: Database.Database, name: string): string {
  db.exec(`create temp table if not exists ${name} (id integer primary key, in_table text not null, at_ms integer not null); delete from temp.${name};`);
  return `temp.${name}`;
}

/**
 * Moves the ids of `set` that some traffic row refers to into `found` (when given; otherwise
 * they are only removed from `set`), each with the start of the newest row found of it (of the
 * first table that holds it, coarsest first: a lower bound of its newest traffic): what is left
 * in `set` has no traffic in the file.
 */
export function withoutTraffic(db: Database.Database, set: string, found = foundSet(db, 'traffic_found')): void {
  const any = db.prepare(`select 1 from ${set} limit 1`).pluck();
  for (const r of TRAFFIC_REFS) {
    if (!any.get()) return;
    // An id leaves `set` once found, so no later table finds it again.
    db.prepare(`insert into ${found} select r.${r.column}, '${r.table}', max(${r.time}) from ${r.table} r ${r.join} where r.${r.column} in ${set} group by r.${r.column}`).run();
    db.prepare(`delete from ${set} where id in (select id from ${found})`).run();
  }
}

/** Removes the names among `ids` (name dictionary ids) that no `names` row refers to any more; returns how many. */
export function dropUnusedHostnames(db: Database.Database, ids: readonly number[]): number {
  if (ids.length === 0) return 0;
  return db.prepare('delete from hostnames where id in (select value from json_each(?)) and not exists (select 1 from names where name_id = hostnames.id)').run(JSON.stringify(ids)).changes;
}

/** What removing names took out: rows, the span of their last sightings, names no row uses any more. */
export interface NamesRemoved {
  rows: number;
  fromMs: number;
  toMs: number;
  hostnames: number;
}

/**
 * Deletes the name rows of the addresses in `set` that meet `cond` (SQL on `names`, binding
 * `params`), and the dictionary names no row uses any more.
 */
export function dropNamesOf(db: Database.Database, set: string, cond = '1', params: Record<string, number> = {}): NamesRemoved {
  const where = `ip_id in ${set} and (${cond})`;
  const span = db.prepare(`select count(*) as n, min(last_ms) as f, max(last_ms) as t from names where ${where}`).get(params) as { n: number; f: number | null; t: number | null };
  if (span.n === 0) return { rows: 0, fromMs: 0, toMs: 0, hostnames: 0 };
  const nameIds = db.prepare(`select distinct name_id from names where ${where}`).pluck().all(params) as number[];
  const rows = db.prepare(`delete from names where ${where}`).run(params).changes;
  return { rows, fromMs: span.f!, toMs: span.t!, hostnames: dropUnusedHostnames(db, nameIds) };
}

/**
 * The start of the minute of the newest interval: names seen since are never shed (the
 * traffic a DNS answer announces comes in the next moments, maybe the next interval).
 */
export function recentFrom(db: Database.Database): number {
  const newest = db.prepare('select max(start_ms) from batches').pluck().get() as number | null;
  return newest === null ? -8.64e15 : Math.floor(newest / MINUTE_MS) * MINUTE_MS;
}

/** What a budget names step removed. */
export interface NamesShed extends NamesRemoved {
  /** Addresses whose names went (they have no traffic rows). */
  addresses: number;
  /** Of those, the ones that left the `addresses` dictionary (no row refers to them any more). */
  addressesRemoved: number;
}

/**
 * One names step of the disk budget: the names of addresses without traffic, oldest sighting
 * first, seen before the newest minute. Candidates are the rows not yet known to have traffic;
 * those whose address turns out to have some are marked (and never candidates again), the
 * others go, with their addresses when nothing else refers to them. Undefined when no such
 * name is left.
 */
export function shedNames(db: Database.Database): NamesShed | undefined {
  const guard = recentFrom(db);
  // A few rounds: a round whose candidates all have traffic removes nothing but marks them.
  for (let round = 0; round < 8; round++) {
    const cand = idSet(db, 'names_cand');
    const n = db.prepare(`insert or ignore into ${cand} select ip_id from names where traffic = 0 and last_ms < ? order by last_ms limit ?`).run(guard, NAME_STEP_ADDRESSES).changes;
    if (n === 0) return undefined;
    const found = foundSet(db, 'names_found');
    withoutTraffic(db, cand, found);
    db.prepare(`update names set traffic = 1 where traffic = 0 and ip_id in (select id from ${found})`).run();
    const addresses = db.prepare(`select count(*) from ${cand}`).pluck().get() as number;
    const r = dropNamesOf(db, cand, 'last_ms < :guard', { guard });
    if (r.rows === 0) continue;
    const addressesRemoved = db.prepare(`delete from addresses where id in ${cand} and not exists (select 1 from names where ip_id = addresses.id)`).run().changes;
    return { ...r, addresses, addressesRemoved };
  }
  return undefined;
}

/**
 * One look of retention at the names (live). A row stays while `needed_ms` is within the
 * longest retention period (`longestMs`): its last sighting, or for an address found with
 * traffic, the time a sighting would have to be to stay as long as the newest row found of it
 * (its start plus how long its table keeps rows, `keepOf`). The rows past it whose address has
 * no traffic row left go; the others are kept that much longer. At most NAME_STEP_ADDRESSES
 * addresses; returns the rows removed and whether rows are left to look at.
 */
export function pruneNames(db: Database.Database, nowMs: number, longestMs: number, keepOf: (table: string) => number): { removed: NamesRemoved; more: boolean } {
  const cut = nowMs - longestMs;
  const cand = idSet(db, 'names_cand');
  const n = db.prepare(`insert or ignore into ${cand} select ip_id from names where needed_ms < ?`).run(cut).changes;
  if (n === 0) return { removed: { rows: 0, fromMs: 0, toMs: 0, hostnames: 0 }, more: false };
  db.prepare(`delete from ${cand} where id not in (select id from ${cand} order by id limit ?)`).run(NAME_STEP_ADDRESSES);
  const found = foundSet(db, 'names_found');
  withoutTraffic(db, cand, found);
  const set = db.prepare('update names set needed_ms = max(needed_ms, ?), traffic = 1 where ip_id = ? and needed_ms < ?');
  for (const [id, table, at] of db.prepare(`select id, in_table, at_ms from ${found}`).raw().all() as [number, string, number][]) {
    // Kept forever (a level without retention): past any cut. A row found that is itself past
    // its retention (the steps are removing it) is looked at again at the next look.
    const until = at + keepOf(table) - longestMs;
    set.run(Number.isFinite(until) ? Math.max(until, cut) : 8.64e15, id, cut);
  }
  // A look that could not take every candidate goes on at the next step.
  return { removed: dropNamesOf(db, cand, 'needed_ms < :cut', { cut }), more: n > NAME_STEP_ADDRESSES };
}
