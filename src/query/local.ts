/**
 * Local and remote: this host's networks (the recorder's local_networks table, migration 0005)
 * for a span of time, and which addresses of an answer lie in them.
 *
 * Which networks apply to a span [from, to): every network of the file's sessions that was
 * local at some time of it, i.e. from_ms < to and its end > from, where the end is to_ms, or
 * for a row still open (its session runs, or was killed before the next start closed it) the
 * end of that session's last interval. A live session's rows hold the times the recorder saw
 * the interface's addresses come and go; a replay's span its capture's intervals. The networks
 * of every session of the span together make its local set: an address is local when one of
 * them holds it (nested and overlapping networks count once), remote otherwise. The overflow
 * row (keys folded past --max-keys or by the disk budget) is on neither side: its addresses are
 * not known.
 */
import type Database from 'better-sqlite3';
import { TcError } from '../errors';
import { formatTime } from './time';
import { counted } from './output';
import { flattenNets, netOf, rangesOf, wordsOf, type Net, type RangeTable } from './ranges';

export const SIDES = ['local', 'remote'] as const;
export type Side = (typeof SIDES)[number];

/** A network of a session and the time it was local (its end resolved as the rule above says). */
export interface LocalNetworkRow {
  session_id: number;
  network: string;
  net: Buffer;
  prefix: number;
  address: string | null;
  origin: 'interface' | 'file';
  source: string;
  from_ms: number;
  to_ms: number;
  /** False while the row is open (the session runs or was killed): `to_ms` is then its last interval's end. */
  closed: boolean;
}

/**
 * The rows of local_networks with their ends resolved (the rule above): columns as
 * LocalNetworkRow (`closed` 0 or 1); binds nothing.
 */
export const LOCAL_NETWORKS_SQL = `select * from (
  select n.id, n.session_id, n.network, n.net, n.prefix, n.address, n.origin, n.source, n.from_ms,
         -- an open row: its session's last interval (by the (session_id, seq) index)
         coalesce(n.to_ms, (select b.end_ms from batches b where b.session_id = n.session_id order by b.seq desc limit 1), n.from_ms) as to_ms,
         n.to_ms is not null as closed
  from local_networks n)`;

function rows(db: Database.Database, where: string, params: unknown[]): LocalNetworkRow[] {
  return (db.prepare(`${LOCAL_NETWORKS_SQL} where ${where} order by session_id, from_ms, id`).all(...params) as (Omit<LocalNetworkRow, 'closed'> & { closed: number })[]).map((r) => ({ ...r, closed: r.closed === 1 }));
}

/** The networks local at some time of [fromMs, toMs). */
export function networksOf(db: Database.Database, fromMs: number, toMs: number): LocalNetworkRow[] {
  return rows(db, 'from_ms < ? and to_ms > ?', [toMs, fromMs]);
}

/** Every session's networks (for `status`), by session id. */
export function networksBySession(db: Database.Database): Map<number, LocalNetworkRow[]> {
  const out = new Map<number, LocalNetworkRow[]>();
  for (const r of rows(db, 'true', [])) out.set(r.session_id, [...(out.get(r.session_id) ?? []), r]);
  return out;
}

/** A set of networks: whether an address lies in one of them, and their union as address ranges. */
export class LocalSet {
  private readonly v4: RangeTable;
  private readonly v6: RangeTable;
  readonly networks: string[];

  constructor(nets: readonly { net: Uint8Array; prefix: number; network: string }[]) {
    const by: Record<4 | 16, Map<string, Net>> = { 4: new Map(), 16: new Map() };
    // The same network of several sessions (or addresses) is one range.
    for (const n of nets) if (n.net.length === 4 || n.net.length === 16) by[n.net.length as 4 | 16].set(n.network, netOf(n.net, n.prefix, 0, 0));
    const internal = () => new TcError('a local network was listed twice (a bug)', 'ERR_TC_INTERNAL');
    this.v4 = flattenNets([...by[4].values()], 1, internal);
    this.v6 = flattenNets([...by[16].values()], 4, internal);
    this.networks = [...by[4].keys(), ...by[16].keys()];
  }

  get empty(): boolean {
    return this.networks.length === 0;
  }

  /** True: `addr` (4 or 16 bytes) lies in a network of the set; false: it does not; null: no side (no networks, or the overflow row). */
  sideOf(addr: Uint8Array): boolean | null {
    if (this.empty || (addr.length !== 4 && addr.length !== 16)) return null;
    return (addr.length === 4 ? this.v4 : this.v6).find(wordsOf(addr)) >= 0;
  }

  /** The set as disjoint address ranges (inclusive, 4- or 16-byte). */
  ranges(): { lo: Uint8Array; hi: Uint8Array }[] {
    return [...rangesOf(this.v4), ...rangesOf(this.v6)];
  }
}

/** The local set of [fromMs, toMs). */
export function localSetOf(db: Database.Database, fromMs: number, toMs: number): LocalSet {
  return new LocalSet(networksOf(db, fromMs, toMs));
}

/**
 * Refuses `--side` over a window (resolved) that holds intervals but no local networks; a window
 * without intervals is answered by its note instead.
 */
export function checkSide(db: Database.Database, side: Side | undefined, fromMs: number, toMs: number, tz?: string): void {
  if (side === undefined || networksOf(db, fromMs, toMs).length > 0) return;
  if (db.prepare('select 1 from batches where start_ms >= ? and start_ms < ? limit 1').get(fromMs, toMs) !== undefined) throw noLocalNetworks(side, fromMs, toMs, tz);
}

/** The refusal of `--side` over a window whose intervals have no local networks. */
function noLocalNetworks(side: Side, fromMs: number, toMs: number, tz?: string): TcError {
  return new TcError(
    `--side ${side}: the file has no local networks for ${formatTime(fromMs, tz)} to ${formatTime(toMs, tz)} (its intervals there were replayed without --local-networks, or recorded before local networks were stored); ` +
      'record them with `traffic-counter record --local-networks FILE` (one CIDR a line; live capture stores the interface\'s own networks without it), or ask about a time that has them (`tc-query status` lists each session\'s)',
    'ERR_TC_NO_LOCAL_NETWORKS',
  );
}

/**
 * A note when some of the window's intervals come from sessions without local networks (a
 * replay without --local-networks beside ones with it): the others' networks classify their
 * addresses too. Undefined when every interval's session has some.
 */
export function partialNote(db: Database.Database, fromMs: number, toMs: number): string | undefined {
  const r = db
    .prepare(
      `select count(*) as n, coalesce(sum(not exists (select 1 from local_networks n where n.session_id = b.session_id)), 0) as without
       from batches b where b.start_ms >= ? and b.start_ms < ?`,
    )
    .get(fromMs, toMs) as { n: number; without: number };
  if (r.without === 0 || r.without === r.n) return undefined;
  return `${counted(r.without, 'interval')} of the window's ${counted(r.n, 'interval')} come from sessions without local networks (replays without --local-networks): the other sessions' networks tell local from remote for their addresses too`;
}
