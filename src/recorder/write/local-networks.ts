/**
 * The local_networks rows of a session (migration 0005): this host's networks and when each
 * was local. Written by the recorder only, inside its transactions; tc-query reads them to
 * split traffic into local and remote (src/query/local.ts).
 */
import type Database from 'better-sqlite3';
import { build, run } from '../../schema/database';

/** A network of this host: an address of the capture interface with its prefix, or a line of --local-networks FILE. */
export interface LocalNetwork {
  /** The network's 4 or 16 bytes (the address masked to the prefix). */
  net: Uint8Array;
  prefix: number;
  /** CIDR text of the network. */
  network: string;
  /** The interface's own address in it (origin 'interface'), else null. */
  address: string | null;
  origin: 'interface' | 'file';
  /** The interface name, or the file's path. */
  source: string;
}

/** What tells two networks of a session apart: the interface's address with its prefix, or the network. */
export const networkKey = (n: LocalNetwork): string => (n.address === null ? n.network : `${n.address}/${n.prefix}`);

/** A network that became local (`add`) or stopped being local (`remove`) at `atMs`. */
export interface LocalNetworkChange {
  kind: 'add' | 'remove';
  net: LocalNetwork;
  atMs: number;
}

/** Rows for `nets`, local from `fromMs` on. */
export function addLocalNetworks(db: Database.Database, sessionId: number, nets: readonly LocalNetwork[], fromMs: number): void {
  for (const n of nets) {
    run(
      db,
      build.insertInto('local_networks').values({ session_id: sessionId, network: n.network, net: n.net, prefix: n.prefix, address: n.address, origin: n.origin, source: n.source, from_ms: fromMs }),
    );
  }
}

/** Ends the open row of `n` at `toMs`. */
function endLocalNetwork(db: Database.Database, sessionId: number, n: LocalNetwork, toMs: number): void {
  run(
    db,
    build
      .updateTable('local_networks')
      .set({ to_ms: toMs })
      .where('session_id', '=', sessionId)
      .where('to_ms', 'is', null)
      .where('network', '=', n.network)
      .where('address', n.address === null ? 'is' : '=', n.address),
  );
}

/** Records changes in their order. */
export function applyLocalNetworkChanges(db: Database.Database, sessionId: number, changes: readonly LocalNetworkChange[]): void {
  for (const c of changes) {
    if (c.kind === 'add') addLocalNetworks(db, sessionId, [c.net], c.atMs);
    else endLocalNetwork(db, sessionId, c.net, c.atMs);
  }
}

/**
 * At the end of a session: a live session's open rows end now; a replay's rows span its
 * capture's intervals (the capture's own times: from its first interval's start to its last
 * interval's end, whatever order the intervals were written in).
 */
export function closeLocalNetworks(db: Database.Database, sessionId: number, kind: 'live' | 'replay', nowMs: number): void {
  if (kind === 'live') {
    run(db, build.updateTable('local_networks').set({ to_ms: nowMs }).where('session_id', '=', sessionId).where('to_ms', 'is', null));
    return;
  }
  db.prepare(
    `update local_networks set from_ms = s.first, to_ms = s.last
     from (select min(start_ms) as first, max(end_ms) as last from batches where session_id = ?) s
     where session_id = ? and s.first is not null`,
  ).run(sessionId, sessionId);
}

/** A session that ended without closing its rows (killed): they end at `toMs`, its last interval's end. */
export function endOpenLocalNetworks(db: Database.Database, sessionId: number, toMs: number): void {
  run(db, build.updateTable('local_networks').set({ to_ms: toMs }).where('session_id', '=', sessionId).where('to_ms', 'is', null));
}

/** Removes a session's rows (the session is replaced). */
export function deleteLocalNetworks(db: Database.Database, sessionId: number): void {
  run(db, build.deleteFrom('local_networks').where('session_id', '=', sessionId));
}
