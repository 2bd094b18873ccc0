/**
 * Appends interval batches to the event log, inside the sink's transactions (each holds whole
 * batches): prepared multi-row INSERTs, an in-memory address dictionary. The only writer of the
 * database.
 */
import type Database from 'better-sqlite3';
import { formatAddr } from '../../addr';
import { u64At, type Batch } from '../../native';
import { U32Map } from '../typed-arrays/u32map';
import { Bytes16Map } from '../typed-arrays/bytes16map';
import { putNum, putU64, RowInsert } from './rows';
import { BATCH_COUNTERS, BUDGET_COUNTERS } from '../../schema/counters';
import type { StoredBatch } from '../budget/fold';
import { all, build, get, run } from '../../schema/database';
import { FLOW_DELTA_COLUMNS, IP_DELTA_COLUMNS } from '../../schema/columns';
import { byFlowKey, byIpId } from '../typed-arrays/order';
import { Rollups } from '../rollups/rollups';
import { bucketOf, LEVELS } from '../../schema/levels';
import { TcError } from '../../errors';
import { dropUnusedHostnames } from '../upkeep/names';
import { deleteLocalNetworks, endOpenLocalNetworks } from './local-networks';

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
/** The dictionary cache is cleared when it grows past this many addresses (bounded memory). */
export const DICT_CACHE_MAX = 500_000;
/** What the dictionary cache holds at most (IPv6 keys are the larger; U32Map's are 3 x 8 bytes). */
export const DICT_CACHE_BYTES = DICT_CACHE_MAX * Bytes16Map.BYTES_PER_KEY;
/**
 * Names the name dictionary's cache holds at most (it is cleared past it; a miss is one look-up
 * in the dictionary's index): a host's recurring names, within the 512 MiB the defaults hold.
 */
export const NAME_CACHE_MAX = 2_500;
/** What the name cache holds at most: a name is at most 253 one-byte characters, with its string header and Map entry. */
export const NAME_CACHE_BYTES = NAME_CACHE_MAX * (253 + 64);

/** New addresses inserted by one statement (two parameters each). */
const ADDR_ROWS_PER_INSERT = 256;

/** The `addresses.addr` blob of the address of family `f` at `off` of `bytes` (the overflow address: empty). */
function addrBlob(f: number, bytes: Uint8Array, off: number): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset + off, f === 4 ? 4 : f === 6 ? 16 : 0);
}

/** JS number when exact, BigInt otherwise (better-sqlite3 binds both as INTEGER). */
function int(v: bigint): number | bigint {
  return v <= MAX_SAFE ? Number(v) : v;
}

/** A `batches` row: the interval, its counters (BATCH_COUNTERS), then what the writer adds. */
const BATCH_COLUMNS = ['session_id', 'seq', 'start_ms', 'end_ms', ...BATCH_COUNTERS.map((k) => k.column), 'ip_rows', 'flow_rows', 'last', 'written_at', ...BUDGET_COUNTERS.map((k) => k.column)];

export interface SessionSpec {
  key: string;
  kind: 'live' | 'replay';
  source: string;
  intervalMs: number;
  flows: boolean;
  options: Record<string, unknown>;
}

/** Running per-address sums the writer adds each per-IP row to (rollups.ts's minute sums). */
export interface RowSums {
  /** Ids up to U32Map.MAX_VALUE and values below 2^53. */
  add(id: number, txPackets: number, txBytes: number, rxPackets: number, rxBytes: number): void;
  /** A row could not be added exactly: the sums are not to be used. */
  spoil(): void;
}

/** Running per-flow sums the writer adds each flow row to (flowsums.ts). */
export interface FlowRowSums {
  /** Ids below 2^32, `ports` = sport << 16 | dport, values below 2^53. */
  add(src: number, dst: number, proto: number, ports: number, packets: number, bytes: number): void;
  spoil(): void;
}

export interface WriteResult {
  /** False when the batch was already in the log (an idempotent re-append). */
  written: boolean;
  batchId: number;
  ipRows: number;
  flowRows: number;
}

/** Words `o`, `o + 1` of `w` = `v`, an integer below 2^32 (a protocol or a port). */
function putSmall(w: Uint32Array, o: number, v: number): void {
  w[o] = v;
  w[o + 1] = 0;
}

/** Adds row `i` of a batch's per-IP columns to `sums`, or spoils them when it cannot be added exactly. */
function addIpRow(sums: RowSums, id: number, tp: Uint32Array, tb: Uint32Array, rp: Uint32Array, rb: Uint32Array, i: number): void {
  const lo = 2 * i;
  if ((tp[lo + 1] | tb[lo + 1] | rp[lo + 1] | rb[lo + 1]) === 0) {
    // Every value below 2^32: summed exactly as small integers.
    if (id <= U32Map.MAX_VALUE) sums.add(id, tp[lo], tb[lo], rp[lo], rb[lo]);
    else sums.spoil();
    return;
  }
  const txp = u64At(tp, i);
  const txb = u64At(tb, i);
  const rxp = u64At(rp, i);
  const rxb = u64At(rb, i);
  if (typeof txp === 'number' && typeof txb === 'number' && typeof rxp === 'number' && typeof rxb === 'number' && id <= U32Map.MAX_VALUE) {
    sums.add(id, txp, txb, rxp, rxb);
  } else sums.spoil();
}

export class BatchWriter {
  readonly sessionId: number;
  private seq: number;
  /** Address -> dictionary id: IPv4 by its 32-bit value, IPv6 by its 16 bytes. */
  private readonly v4 = new U32Map();
  private readonly v6 = new Bytes16Map();
  private overflowId: number | undefined;
  /** Whether the maps hold the whole dictionary (then a miss is a new address, no SELECT). */
  private complete = false;
  /** Name -> name dictionary id (a cache: a miss is looked up). */
  private readonly hostnames = new Map<string, number>();
  private readonly stmts;
  private readonly addrPuts = new Map<number, Database.Statement>();

  constructor(private readonly db: Database.Database, nodeId: string, spec: SessionSpec) {
    run(
      db,
      build
        .insertInto('sessions')
        .orIgnore()
        .values({
          session_key: spec.key,
          node_id: nodeId,
          kind: spec.kind,
          source: spec.source,
          interval_ms: spec.intervalMs,
          flows: spec.flows ? 1 : 0,
          started_at: Date.now(),
          options: JSON.stringify(spec.options),
        }),
    );
    this.sessionId = get(db, build.selectFrom('sessions').select('id').where('session_key', '=', spec.key))!.id;
    // A session appended to again (a replay of the same content) starts over at sequence 0:
    // batches already in the log are skipped, so nothing is counted twice.
    this.seq = 0;
    this.stmts = {
      batch: db.prepare(`insert or ignore into batches (${BATCH_COLUMNS.join(', ')}) values (${BATCH_COLUMNS.map(() => '?').join(', ')})`),
      ip: new RowInsert(db, 'ip_deltas', IP_DELTA_COLUMNS),
      flow: new RowInsert(db, 'flow_deltas', FLOW_DELTA_COLUMNS),
      addrGet: db.prepare('select id from addresses where addr = ?').pluck(),
      addrPut: db.prepare('insert into addresses (addr, text) values (?, ?)'),
      nameGet: db.prepare('select id from hostnames where name = ?').pluck(),
      namePut: db.prepare('insert into hostnames (name) values (?)'),
      // A pair seen again keeps its first interval and moves its last sighting forward (never
      // back: a batch of an earlier interval written later leaves a later sighting as it is).
      name: db.prepare(`insert into names (ip_id, name_id, source, session_id, first_ms, last_ms, last_pos, traffic, needed_ms)
        values (?, ?, ?, ?, ?, ?, ?, ?, ?)
        on conflict (ip_id, name_id, source, session_id) do update set
          first_ms = min(first_ms, excluded.first_ms),
          last_pos = case when (excluded.last_ms, excluded.last_pos) > (last_ms, last_pos) then excluded.last_pos else last_pos end,
          last_ms = max(last_ms, excluded.last_ms),
          traffic = max(traffic, excluded.traffic),
          needed_ms = max(needed_ms, excluded.needed_ms)`),
    };
    this.loadDictionary(db);
  }

  private loadDictionary(db: Database.Database): void {
    const n = db.prepare('select count(*) from addresses').pluck().get() as number;
    if (n > DICT_CACHE_MAX / 2) return;
    for (const [id, addr] of db.prepare('select id, addr from addresses').raw().iterate() as Iterable<[number, Buffer]>) {
      this.remember(addr.length === 4 ? 4 : addr.length === 16 ? 6 : 0, addr.length === 4 ? addr.readUInt32BE(0) : 0, addr, 0, id);
    }
    this.complete = true;
  }

  /**
   * Dictionary ids of the batch's addresses (inserting the new ones). The batch's addresses are
   * distinct and sorted, so the new ones go in ADDR_ROWS_PER_INSERT to a statement: one
   * statement per new address cost ~1.5 us each, most of a replay's dictionary time.
   */
  private resolve(b: Batch): number[] {
    const { count, fam, bytes } = b.addr;
    // A plain array of small integers: the parameter arrays built from it stay unboxed.
    const ids = new Array<number>(count);
    const fresh: number[] = [];
    for (let i = 0; i < count; i++) {
      const id = this.knownId(fam[i], bytes, i * 16);
      if (id === undefined) fresh.push(i);
      else ids[i] = id;
    }
    for (let k = 0; k < fresh.length; k += ADDR_ROWS_PER_INSERT) {
      const chunk = fresh.slice(k, k + ADDR_ROWS_PER_INSERT);
      const values: (Buffer | string)[] = [];
      for (const i of chunk) values.push(addrBlob(fam[i], bytes, i * 16), fam[i] === 0 ? 'overflow' : formatAddr(bytes, i * 16, fam[i]));
      const last = Number(this.addrPutMany(chunk.length).run(values).lastInsertRowid);
      // A rowid table without AUTOINCREMENT numbers the rows of one INSERT one past the largest
      // rowid, in order (https://www.sqlite.org/autoinc.html): the chunk's ids are consecutive.
      chunk.forEach((i, j) => this.learn(fam[i], bytes, i * 16, last - chunk.length + 1 + j));
      chunk.forEach((i, j) => (ids[i] = last - chunk.length + 1 + j));
    }
    return ids;
  }

  /** A multi-row INSERT into `addresses` of `n` rows (prepared once per size). */
  private addrPutMany(n: number): Database.Statement {
    let st = this.addrPuts.get(n);
    if (!st) this.addrPuts.set(n, (st = this.db.prepare(`insert into addresses (addr, text) values ${new Array(n).fill('(?, ?)').join(', ')}`)));
    return st;
  }

  /** The dictionary id of the address of family `f` (4, 6; 0 = overflow) at `off` of `bytes`, or undefined when it is new. */
  private knownId(f: number, bytes: Uint8Array, off: number): number | undefined {
    let id: number | undefined;
    let v4 = 0;
    if (f === 4) {
      v4 = ((bytes[off] << 24) | (bytes[off + 1] << 16) | (bytes[off + 2] << 8) | bytes[off + 3]) >>> 0;
      id = this.v4.get(v4) || undefined;
    } else if (f === 6) {
      id = this.v6.get(bytes, off) || undefined;
    } else {
      id = this.overflowId;
    }
    if (id === undefined && !this.complete) {
      id = this.stmts.addrGet.get(addrBlob(f, bytes, off)) as number | undefined;
      if (id !== undefined) this.learn(f, bytes, off, id);
    }
    return id;
  }

  /** The dictionary id of the address of family `f` (4, 6; 0 = overflow) at `off` of `bytes`, inserted when new. */
  private addressId(f: number, bytes: Uint8Array, off: number): number {
    let id = this.knownId(f, bytes, off);
    if (id === undefined) {
      id = Number(this.stmts.addrPut.run(addrBlob(f, bytes, off), f === 0 ? 'overflow' : formatAddr(bytes, off, f)).lastInsertRowid);
      this.learn(f, bytes, off, id);
    }
    return id;
  }

  /** Caches the id of an address just looked up or inserted, within the cache's bound. */
  private learn(f: number, bytes: Uint8Array, off: number, id: number): void {
    if (this.v4.size + this.v6.size >= DICT_CACHE_MAX) this.forgetCache();
    const v4 = f === 4 ? ((bytes[off] << 24) | (bytes[off + 1] << 16) | (bytes[off + 2] << 8) | bytes[off + 3]) >>> 0 : 0;
    this.remember(f, v4, bytes, off, id);
  }

  /** The name dictionary's id of `name`, inserted when new. */
  private nameId(name: string): number {
    let id = this.hostnames.get(name);
    if (id === undefined) {
      id = (this.stmts.nameGet.get(name) as number | undefined) ?? Number(this.stmts.namePut.run(name).lastInsertRowid);
      if (this.hostnames.size >= NAME_CACHE_MAX) this.hostnames.clear();
      this.hostnames.set(name, id);
    }
    return id;
  }

  /** Caches `id` for an IPv4 address (`v4`) or the IPv6 address at `off` of `bytes`. */
  private remember(fam: number, v4: number, bytes: Uint8Array, off: number, id: number): void {
    if (id > U32Map.MAX_VALUE) return;
    if (fam === 4) this.v4.set(v4, id);
    else if (fam === 6) this.v6.set(bytes, off, id);
    else this.overflowId = id;
  }

  /**
   * Appends one batch; the appender (appender.ts) calls it inside its transaction, then
   * `advance()`, and sets `sequence` back if the transaction rolls back.
   * Appending a batch already in the log (same session and sequence) is a no-op. The per-IP
   * and flow rows written are also added to `sums` and `flowSums` (the running sums of the
   * batch's minute).
   */
  write(b: StoredBatch, sums?: RowSums, flowSums?: FlowRowSums): WriteResult {
    const batchId = this.insertBatchRow(b);
    if (batchId === undefined) return { written: false, batchId: 0, ipRows: 0, flowRows: 0 };
    const ids = this.resolve(b);
    this.insertIpRows(b, batchId, ids, sums);
    this.insertFlowRows(b, batchId, ids, flowSums);
    this.insertNames(b, ids);
    return { written: true, batchId, ipRows: b.ip.count, flowRows: b.flow.count };
  }

  /** The batch's `batches` row: its id, or undefined when the log already holds it. */
  private insertBatchRow(b: StoredBatch): number | undefined {
    const c = b.counters;
    const values: (number | bigint | null)[] = [this.sessionId, this.seq, b.startMs, b.endMs];
    for (const k of BATCH_COUNTERS) values.push(k.presentIf && !b[k.presentIf] ? null : int(c[k.name]));
    values.push(b.ip.count, b.flow.count, b.last ? 1 : 0, Date.now());
    for (const k of BUDGET_COUNTERS) values.push(b[k.name] ?? 0);
    const r = this.stmts.batch.run(values);
    return r.changes === 0 ? undefined : Number(r.lastInsertRowid);
  }

  /**
   * The per-IP rows, in primary-key order: the delta tables' B-trees then grow by appends
   * (rows in dictionary-id arrival order halve the write rate).
   */
  private insertIpRows(b: Batch, batchId: number, ids: number[], sums: RowSums | undefined): void {
    const ip = b.ip;
    const rowIds = new Array<number>(ip.count);
    for (let i = 0; i < ip.count; i++) rowIds[i] = ids[ip.idx[i]];
    const order = byIpId(rowIds);
    const rows = this.stmts.ip.start();
    const w = rows.words;
    const { batch_id, ip_id, tx_packets, tx_bytes, rx_packets, rx_bytes } = rows.col;
    const { txPackets: tp, txBytes: tb, rxPackets: rp, rxBytes: rb } = ip;
    for (let k = 0; k < ip.count; k++) {
      const i = order ? order[k] : k;
      const id = rowIds[i];
      const o = rows.row();
      putNum(w, o + batch_id, batchId);
      putNum(w, o + ip_id, id);
      putU64(w, o + tx_packets, tp, i);
      putU64(w, o + tx_bytes, tb, i);
      putU64(w, o + rx_packets, rp, i);
      putU64(w, o + rx_bytes, rb, i);
      if (sums) addIpRow(sums, id, tp, tb, rp, rb, i);
    }
    rows.end();
  }

  /** The flow rows, in primary-key order (as the per-IP rows). */
  private insertFlowRows(b: Batch, batchId: number, ids: number[], flowSums: FlowRowSums | undefined): void {
    const f = b.flow;
    const order = byFlowKey(f, ids);
    const rows = this.stmts.flow.start();
    const w = rows.words;
    const { batch_id, src_id, dst_id, proto, sport, dport, packets, bytes } = rows.col;
    for (let k = 0; k < f.count; k++) {
      const i = order ? order[k] : k;
      const src = ids[f.src[i]];
      const dst = ids[f.dst[i]];
      const o = rows.row();
      putNum(w, o + batch_id, batchId);
      putNum(w, o + src_id, src);
      putNum(w, o + dst_id, dst);
      putSmall(w, o + proto, f.proto[i]);
      putSmall(w, o + sport, f.sport[i]);
      putSmall(w, o + dport, f.dport[i]);
      putU64(w, o + packets, f.packets, i);
      putU64(w, o + bytes, f.bytes, i);
      if (!flowSums) continue;
      const p = u64At(f.packets, i);
      const n = u64At(f.bytes, i);
      if (typeof p === 'number' && typeof n === 'number' && src <= 0xffffffff && dst <= 0xffffffff) {
        flowSums.add(src, dst, f.proto[i], ((f.sport[i] << 16) | f.dport[i]) >>> 0, p, n);
      } else flowSums.spoil();
    }
    rows.end();
  }

  /**
   * The batch's names: each (address, name, source) of the interval as a row of this session,
   * or the row it already has moved forward. An entry's position in the batch is the capture
   * order of its last sighting in the interval.
   */
  private insertNames(b: Batch, ids: number[]): void {
    const n = b.names;
    if (n.name.length === 0) return;
    // Every address of the batch has a traffic row in it (the engine lists only those).
    const withTraffic = new Set(ids);
    for (let i = 0; i < n.name.length; i++) {
      const ipId = this.addressId(n.fam[i], n.addr, i * 16);
      this.stmts.name.run(ipId, this.nameId(n.name[i]), n.source[i], this.sessionId, b.startMs, b.startMs, i, withTraffic.has(ipId) ? 1 : 0, b.startMs);
    }
  }

  /** After `write`: the next batch takes the next sequence number. */
  advance(): void {
    this.seq++;
  }

  /** The sequence number the next batch takes; set back when a transaction rolled back. */
  get sequence(): number {
    return this.seq;
  }

  set sequence(seq: number) {
    this.seq = seq;
  }

  /** The overflow address's id (added to the dictionary when the file has none yet). */
  overflowAddressId(): number {
    if (this.overflowId === undefined) {
      const none = Buffer.alloc(0);
      this.overflowId = (this.stmts.addrGet.get(none) as number | undefined) ?? Number(this.stmts.addrPut.run(none, 'overflow').lastInsertRowid);
    }
    return this.overflowId;
  }

  /** After a failed transaction: cached dictionary ids may name rows that were rolled back. */
  forgetCache(): void {
    this.v4.clear();
    this.v6.clear();
    this.hostnames.clear();
    this.overflowId = undefined;
    this.complete = false;
  }

  /** After names left the name dictionary (retention): the cached name ids may name them. */
  forgetNames(): void {
    this.hostnames.clear();
  }

  /** After addresses left the `addresses` table (budget shedding): the cached ids may name them. */
  reloadDictionary(): void {
    this.forgetCache();
    this.loadDictionary(this.db);
  }

  /** Adds an event of this session to the `events` table. */
  event(kind: string, detail: string | null, startMs: number | null, endMs: number | null): void {
    run(this.db, build.insertInto('events').values({ at_ms: Date.now(), session_id: this.sessionId, kind, start_ms: startMs, end_ms: endMs, detail }));
  }

  end(): void {
    run(this.db, build.updateTable('sessions').set({ ended_at: Date.now() }).where('id', '=', this.sessionId));
  }
}

/** Newest interval end in the log (0 when it is empty). */
export function newestEndMs(db: Database.Database): number {
  return get(db, build.selectFrom('batches').select((e) => e.fn.max('end_ms').as('end')))?.end ?? 0;
}

/** A session as the replay's "already recorded" check reads it. */
export interface PriorSession {
  id: number;
  session_key: string;
  source: string;
  started_at: number;
  /** NULL: the replay was stopped or killed before the end of the file. */
  ended_at: number | null;
  options: string;
}

const priorSessions = () => build.selectFrom('sessions').select(['id', 'session_key', 'source', 'started_at', 'ended_at', 'options']);

/** The session with this key, if any. */
export function sessionByKey(db: Database.Database, key: string): PriorSession | undefined {
  return get(db, priorSessions().where('session_key', '=', key));
}

/**
 * Marks the live sessions that never ended, other than `currentId`, as unclean shutdowns (a
 * gap): an event each, and the session ended at its last interval. Call under the writer lock,
 * so that none of them is still running. Returns the events' details.
 */
export function endUncleanSessions(db: Database.Database, currentId: number): string[] {
  const rows = all(
    db,
    build
      .selectFrom('sessions as s')
      .select((e) => ['s.id', 's.source', e.selectFrom('batches as b').select((b) => b.fn.max('b.end_ms').as('m')).whereRef('b.session_id', '=', 's.id').as('last_end')])
      .where('s.kind', '=', 'live')
      .where('s.ended_at', 'is', null)
      .where('s.id', '!=', currentId),
  );
  return rows.map((r) => {
    const detail = `session ${r.id} on ${r.source} ended without a clean stop (killed or crashed); the interval in flight was lost`;
    const last = r.last_end as number | null;
    db.transaction(() => {
      run(db, build.insertInto('events').values({ at_ms: Date.now(), session_id: r.id, kind: 'unclean-shutdown', start_ms: last, end_ms: Date.now(), detail }));
      run(db, build.updateTable('sessions').set((e) => ({ ended_at: e.fn.coalesce(e.val(last), 'started_at') })).where('id', '=', r.id));
      // Its networks were local up to its last interval.
      endOpenLocalNetworks(db, r.id, last ?? Date.now());
    })();
    return detail;
  });
}

/**
 * Removes a session and every row of it (batches, per-IP and flow deltas, names, events, local
 * networks), and marks every rollup bucket it touched dirty, so that closing them recomputes
 * them from what is left in the log. Call inside a transaction. Refused when retention already removed raw rows in the
 * days it touched: those buckets could then not be recomputed.
 */
export function deleteSession(db: Database.Database, sessionId: number): void {
  const touched = db.prepare('select distinct start_ms, ip_rows > 0 as ip, flow_rows > 0 as flow from batches where session_id = ?').all(sessionId) as { start_ms: number; ip: number; flow: number }[];
  if (touched.length > 0) {
    const from = bucketOf(Math.min(...touched.map((t) => t.start_ms)), 'ip_1d');
    const to = bucketOf(Math.max(...touched.map((t) => t.start_ms)), 'ip_1d') + LEVELS.ip_1d.ms;
    const pruned = db.prepare('select count(*) from batches where pruned != 0 and start_ms >= ? and start_ms < ?').pluck().get(from, to) as number;
    if (pruned > 0) {
      throw new TcError(
        `session ${sessionId} cannot be replaced: retention removed the raw rows of ${pruned} interval(s) of the days it covers, so their minute, hour and day sums cannot be recomputed without it; replay into another file instead`,
        'ERR_TC_REPLACE',
      );
    }
  }
  const batches = 'select id from batches where session_id = ?';
  db.prepare(`delete from ip_deltas where batch_id in (${batches})`).run(sessionId);
  db.prepare(`delete from flow_deltas where batch_id in (${batches})`).run(sessionId);
  db.prepare('delete from batches where session_id = ?').run(sessionId);
  // Its names go with it (the names of the new session come with its batches); a name no
  // other session saw leaves the dictionary.
  const nameIds = db.prepare('select distinct name_id from names where session_id = ?').pluck().all(sessionId) as number[];
  db.prepare('delete from names where session_id = ?').run(sessionId);
  dropUnusedHostnames(db, nameIds);
  run(db, build.deleteFrom('events').where('session_id', '=', sessionId));
  deleteLocalNetworks(db, sessionId);
  run(db, build.deleteFrom('sessions').where('id', '=', sessionId));
  const rollups = new Rollups(db);
  for (const t of touched) rollups.markBatch(t.start_ms, t.ip === 1, t.flow === 1);
}

