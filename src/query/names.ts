/**
 * The names seen for addresses (DNS answers and TLS server names the recorder read from the
 * traffic), and the one rule that picks the name of an address at a time: what `--by ip` rows,
 * flow rows, `top --by name` and the name columns of exports show.
 *
 * The rule: the name most recently seen for the address up to that time (a window's end, an
 * export row's end), several in one interval: the last in capture order. A pair (address, name)
 * is stored with its first and last interval only, so this is exact when the time is at or after
 * the pair's last sighting (the default window, --all, a window ending now); a pair seen both
 * before and after the time counts as seen at that time, above every pair last seen before it,
 * and among several such pairs the one first seen latest wins.
 */
import type Database from 'better-sqlite3';
import { TcError } from '../errors';
import { NAME_SOURCES } from '../schema/columns';

/** A name seen for an address (one row of `names`, or the rows of several sessions merged). */
export interface Sighting {
  name: string;
  firstMs: number;
  lastMs: number;
  lastPos: number;
}

/** Whether `a` ranks above `b` as the name at `endMs` (both first seen before it). */
function above(a: Sighting, b: Sighting, endMs: number): boolean {
  const spanA = a.lastMs >= endMs;
  const spanB = b.lastMs >= endMs;
  if (spanA !== spanB) return spanA;
  if (spanA) return a.firstMs !== b.firstMs ? a.firstMs > b.firstMs : a.name < b.name;
  if (a.lastMs !== b.lastMs) return a.lastMs > b.lastMs;
  if (a.lastPos !== b.lastPos) return a.lastPos > b.lastPos;
  return a.name < b.name;
}

/** The name of an address at `endMs` among its sightings (the rule above), or null. */
export function nameAt(sightings: readonly Sighting[] | undefined, endMs: number): string | null {
  let best: Sighting | undefined;
  for (const s of sightings ?? []) if (s.firstMs < endMs && (!best || above(s, best, endMs))) best = s;
  return best?.name ?? null;
}

/**
 * The sightings of the addresses `ids` (every address without `ids`), by address id: one per
 * row of `names` (a name recorded by several sessions has a row each; the rule reads them all).
 */
export function sightingsOf(db: Database.Database, ids?: readonly number[]): Map<number, Sighting[]> {
  const sql = `select n.ip_id, h.name, n.first_ms, n.last_ms, n.last_pos from names n join hostnames h on h.id = n.name_id${ids ? ' where n.ip_id in (select value from json_each(?))' : ''}`;
  const stmt = db.prepare(sql).raw(true);
  const out = new Map<number, Sighting[]>();
  for (const [ipId, name, firstMs, lastMs, lastPos] of stmt.iterate(...(ids ? [JSON.stringify(ids)] : [])) as Iterable<[number, string, number, number, number]>) {
    let list = out.get(ipId);
    if (!list) out.set(ipId, (list = []));
    list.push({ name, firstMs, lastMs, lastPos });
  }
  return out;
}

/** Sightings by address text (for rows that carry the address as text: exports, flows). */
export function sightingsByText(db: Database.Database, ids?: readonly number[]): Map<string, Sighting[]> {
  const byId = sightingsOf(db, ids);
  if (byId.size === 0) return new Map();
  const text = db.prepare('select id, text from addresses where id in (select value from json_each(?))').raw(true).all(JSON.stringify([...byId.keys()])) as [number, string][];
  return new Map(text.map(([id, t]) => [t, byId.get(id)!]));
}

/** A `--name` pattern: a name, or `*.` and a name (every name below it, not the name itself). */
export interface NamePattern {
  text: string;
  /** SQL condition on `h.name` and its parameter. */
  where: string;
  param: string;
}

const LABEL = /^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?$/;

/**
 * Parses `names --name`: lower-cased, a trailing dot dropped; `*.example.com` matches the names
 * below example.com. Refused with what a name may be.
 */
export function parseNamePattern(v: string): NamePattern {
  const s = v.trim().toLowerCase().replace(/\.$/, '');
  const wild = s.startsWith('*.');
  const base = wild ? s.slice(2) : s;
  const labels = base.split('.');
  if (base === '' || base.length > 253 || !labels.every((l) => l.length <= 63 && LABEL.test(l))) {
    throw new TcError(
      `--name ${JSON.stringify(v)} is not a name: give a host name (example.com, www.example.com) or *. and a name for every name below it (*.example.com); letters, digits, "-" and "_" between dots, no other wildcard`,
      'ERR_TC_USAGE',
    );
  }
  // A name holds none of GLOB's special characters (*, ?, [).
  return wild ? { text: s, where: "h.name glob ?", param: `*.${base}` } : { text: s, where: 'h.name = ?', param: base };
}

/** The source of a `names` row as stored (0, 1) in words. */
export const sourceName = (s: number): string => NAME_SOURCES[s] ?? String(s);
