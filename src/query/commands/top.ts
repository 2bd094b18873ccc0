/** `tc-query top` and `tc-query flows`: the top talkers or flows of a window. */
import type Database from 'better-sqlite3';
import { Duck, querySql, BIGINT, UTINYINT, USMALLINT, VARCHAR } from '../duck';
import { openReadOnly } from '../db';
import type { Window } from '../window';
import { counted, render, type Answer, type ColumnSpec, type Format } from '../output';
import { missingDetail, planWindow, readSegments, resolveWindow, SEGMENT_COLUMNS, SEGMENT_NAMES, type Family } from '../plan';
import { idsOfEvery, matchingIds, whereFor, type Filters } from '../filters';
import { addressKey, addRowKeys, fieldsOf, isKeyBy, loadAddressKeys, NAME_KEY, rowAddresses, rowKeys, type AddressRow, type KeyBy, type KeyContext, type KeySources } from '../keys';
import { nameAt, sightingsOf } from '../names';
import type { LabelTable } from '../labels';
import { coverage, completenessLine, completenessOf, emptyWindowNote, flowsNote, missingDetailNote } from '../coverage';
import type { ReadAhead } from '../prefetch';
import { checkSide, localSetOf, partialNote, type LocalSet, type Side } from '../local';
import { FLOW_COLS, IP_COLS, LOCAL_COL, rateCols, SIDE_COLS } from '../columns';
export { PROTO } from '../columns';
import { formatAddr, parseAddr } from '../../addr';

export type TopBy = 'ip' | 'src' | 'dst' | 'flow' | KeyBy;

export interface TopOptions {
  db: string;
  by: TopBy;
  window: Window;
  limit: number;
  format: Format;
  filters?: Filters;
  tz?: string;
  /** The window already planned (see prefetch.ts), read here while DuckDB starts. */
  prefetched?: ReadAhead;
  /** Labels, ASN table, prefixes: for --by label|asn|net, --label and the columns of --by ip rows. */
  keys?: KeySources;
  /** Only this host's addresses (local) or only its peers (remote); a flow by its source. */
  side?: Side;
}

const NO_KEYS: KeySources = { v4Prefix: 24, v6Prefix: 64 };


/** Loads addresses(id, text) for the dictionary ids the window's rows refer to; returns them (with their bytes, for keys). */
export async function loadAddresses(sqlite: Database.Database, duck: Duck, ids: Set<number>): Promise<AddressRow[]> {
  const stmt = sqlite.prepare('select id, addr, text from addresses where id in (select value from json_each(?))').raw(true);
  const rows = (stmt.all(JSON.stringify([...ids])) as [number, Buffer, string][]).map(([id, addr, text]) => ({ id, addr, text }));
  await duck.load('addresses', [{ name: 'id', sqlType: 'BIGINT', type: BIGINT }, { name: 'text', sqlType: 'VARCHAR', type: VARCHAR }], rows.map((a) => [BigInt(a.id), a.text]));
  return rows;
}

/** The DuckDB table of a family's window sums (the SQL headers of queries/ say what each holds). */
export const WINDOW_TABLE: Record<Family, string> = { ip: 'window_ip_sums', flow: 'window_flow_sums' };

/**
 * Loads the window's per-IP or per-flow sums into DuckDB as WINDOW_TABLE[family]: read from
 * SQLite summed per key (or already read ahead) and copied in as typed columns.
 */
export async function loadWindow(
  sqlite: Database.Database,
  duck: Duck,
  family: Family,
  w: Window,
  ids: Set<number>,
  where = '',
  params: unknown[] = [],
  preRead?: ReadAhead,
): Promise<void> {
  const rows = preRead?.rows ?? readSegments(sqlite, family, preRead ? preRead.segments : planWindow(sqlite, family, w), where, params);
  for (const id of rows.ids) ids.add(id);
  const cols = SEGMENT_COLUMNS[family];
  const names = SEGMENT_NAMES[family];
  // Per-segment sums fit 64 bits (SQLite's sum() refuses to overflow); DuckDB sums them as HUGEINT.
  const spec = cols.map((k, i) =>
    k === 'i64' ? { name: names[i], sqlType: 'BIGINT', type: BIGINT } : k === 'u8' ? { name: names[i], sqlType: 'UTINYINT', type: UTINYINT } : { name: names[i], sqlType: 'USMALLINT', type: USMALLINT },
  );
  await duck.loadColumns(WINDOW_TABLE[family], spec, [rows]);
}


/**
 * Keeps only the rows of one side: per-address rows by their address, flow rows by their
 * source (a flow sent by a local address is local). The overflow row is on neither side.
 */
async function keepSide(duck: Duck, family: Family, side: Side, set: LocalSet, addrs: AddressRow[]): Promise<void> {
  const local = addrs.filter((a) => set.sideOf(a.addr) === true).map((a) => a.id);
  const none = addrs.filter((a) => set.sideOf(a.addr) === null).map((a) => a.id);
  const [table, col] = family === 'flow' ? [WINDOW_TABLE.flow, 'src_id'] : [WINDOW_TABLE.ip, 'ip_id'];
  const ids = (list: number[]) => ({ ids: JSON.stringify(list) });
  if (side === 'local') await duck.conn.run(`delete from ${table} where ${col} not in (select unnest($ids::bigint[]))`, ids(local));
  else await duck.conn.run(`delete from ${table} where ${col} in (select unnest($ids::bigint[]))`, ids([...local, ...none]));
}


export async function top(o: TopOptions): Promise<Answer> {
  const sqlite = openReadOnly(o.db);
  let duck: Duck | undefined;
  try {
    // A read-ahead window is read while DuckDB starts.
    const p = o.prefetched;
    ({ duck } = await Duck.openAlongside(() => {
      if (p) p.rows = readSegments(sqlite, p.family, p.segments, p.where, p.params);
      // The ASN table is parsed (or read from its cache) while DuckDB starts.
      o.keys?.asn?.();
    }));
    return await answerTop(sqlite, duck, o);
  } finally {
    duck?.close();
    sqlite.close();
  }
}

/** The top answer over an open database and DuckDB session. */
async function answerTop(sqlite: Database.Database, duck: Duck, o: TopOptions): Promise<Answer> {
  {
    const pre = o.prefetched;
    const ids = new Set<number>();
    const window = pre ? pre.window : resolveWindow(sqlite, o.window);
    const f = o.filters ?? {};
    const sources = o.keys ?? NO_KEYS;
    const match = pre ? pre.match : matchingIds(sqlite, f, sources.labels);
    const l4 = f.proto !== undefined || f.port !== undefined;
    // This host's networks of the window: --side needs some.
    checkSide(sqlite, o.side, window.fromMs, window.toMs, o.tz);
    const localSet = localSetOf(sqlite, window.fromMs, window.toMs);
    if (o.by === 'flow' || l4) {
      const w = whereFor('flow', match, f);
      await loadWindow(sqlite, duck, 'flow', window, ids, w.where, w.params, pre);
      if (o.by !== 'flow') {
        await duck.conn.run(querySql('ip_from_flows'));
        if (match) await duck.conn.run(`delete from ${WINDOW_TABLE.ip} where ip_id not in (select unnest($ids::bigint[]))`, { ids: JSON.stringify(idsOfEvery(match)) });
      }
    } else {
      const w = whereFor('ip', match, f);
      await loadWindow(sqlite, duck, 'ip', window, ids, w.where, w.params, pre);
    }
    const addrs = await loadAddresses(sqlite, duck, ids);
    if (o.side) await keepSide(duck, o.by === 'flow' ? 'flow' : 'ip', o.side, localSet, addrs);
    const ctx = { sqlite, window };
    const limit = o.limit === 0 ? null : o.limit;
    // --by label|asn|net: the window's addresses keyed, summed per key; else per address or flow.
    const key = isKeyBy(o.by) ? addressKey(o.by, sources) : undefined;
    const keys = key ? await loadAddressKeys(duck, key, addrs, ctx) : [];
    await duck.lockDown();
    let rows: Record<string, unknown>[];
    let extra: ColumnSpec[] = [];
    if (key) {
      rows = (await duck.rows(querySql('top_key'), { limit })).map(({ key: k, ...sums }) => ({ ...fieldsOf(key, k === null ? null : keys[k as number]), ...sums }));
    } else {
      rows = await duck.rows(querySql({ ip: 'top_ip', src: 'top_src', dst: 'top_dst', flow: 'top_flow' }[o.by as 'ip' | 'src' | 'dst' | 'flow']), { limit });
      if (o.by === 'flow') extra = addFlowNames(rows, addrs, ctx, f, sources.labels);
      else {
        // Per-address rows gain their label and AS as columns (appended in json and csv),
        // whether the address is local, and its name.
        const annotate = rowKeys(sources);
        const mine = rowAddresses(rows, addrs);
        addRowKeys(rows, annotate, mine, ctx);
        extra = annotate.flatMap((k) => k.fields);
        rows.forEach((r, i) => (r.local = localSet.sideOf(mine[i]?.addr ?? new Uint8Array(0))));
        extra.push(LOCAL_COL);
        addRowKeys(rows, [NAME_KEY], mine, ctx);
        extra.push(...NAME_KEY.fields);
      }
    }
    const cov = coverage(sqlite, window);
    const completeness = completenessOf(cov, window);
    const empty = emptyWindowNote(sqlite, cov, window, o.tz);
    const noFlows = o.by === 'flow' || l4 ? flowsNote(cov) : undefined;
    const family: Family = o.by === 'flow' || l4 ? 'flow' : 'ip';
    const missing = empty ? undefined : missingDetailNote(missingDetail(sqlite, family, planWindow(sqlite, family, window)), family === 'ip' ? 'per-address detail' : 'per-flow detail', family === 'ip' ? 'widen --since/--until to whole hours or days there' : 'flows of that time cannot be answered', o.tz);
    const partial = o.side && !empty ? partialNote(sqlite, window.fromMs, window.toMs) : undefined;
    const notes = [empty, noFlows, missing, partial].filter((n): n is string => n !== undefined);
    const facts = { window, coverage: cov, completeness };
    // No table where there is nothing to show: the notes say why.
    if (o.format === 'table' && (empty || (noFlows && cov.flow_intervals === 0))) return { out: '', notes, ...facts };
    // Average rates over the time the recorded intervals cover.
    const secs = cov.covered_ms / 1000;
    const rates = rateCols(secs);
    const base = key ? [...key.fields, ...IP_COLS.slice(1)] : o.by === 'flow' ? FLOW_COLS : o.by === 'ip' ? IP_COLS : SIDE_COLS;
    // json and csv: the new fields after the existing ones; a table shows them beside the address
    // (the name first), a flow's names beside its two addresses.
    if (o.format !== 'table') return { out: render(o.format, [...base, ...extra], rows), notes, ...facts };
    const shownExtra = extra.filter((c) => !c.dataOnly);
    const beside = [...shownExtra.filter((c) => c.key === NAME_KEY.fields[0].key), ...shownExtra.filter((c) => c.key !== NAME_KEY.fields[0].key)];
    const cols =
      o.by === 'flow'
        ? [base[0], ...shownExtra.filter((c) => c.key === 'src_name'), base[1], ...shownExtra.filter((c) => c.key === 'dst_name'), ...base.slice(2), ...rates]
        : [base[0], ...beside, ...base.slice(1), ...rates];
    const footer = [completenessLine(cov, o.tz)];
    const total = rows.length > 0 ? Number(rows[0].total_rows) : 0;
    const noun: [string, string] = key ? key.noun : o.by === 'flow' ? ['flow', 'flows'] : ['address', 'addresses'];
    if (total > rows.length) footer.unshift(`${rows.length} of ${counted(total, ...noun)} (--limit 0 for all)`);
    if (rows.length === 0) return { out: `${footer.join('\n')}\n`, notes, ...facts };
    // The row of addresses without a key is named in the table (null in json and csv).
    const shown = key ? rows.map((r) => (key.fields.every((f) => r[f.key] === null) ? { ...r, [key.fields[0].key]: key.none } : r)) : rows;
    return { out: render('table', cols, shown, footer.join('\n')), notes, ...facts };
  }
}

const nameCol = (key: string): ColumnSpec => ({ key, align: 'left', human: (v) => (v === null || v === undefined ? '' : String(v)) });

/**
 * Flow rows gain the names of their two ends (src_name, dst_name) and, when an address
 * condition picks the flows (--ip, --label), `name`: the name of the row's other end, the peer
 * (json and csv only: the table shows both ends' names). Returns the columns added.
 */
function addFlowNames(rows: Record<string, unknown>[], addrs: AddressRow[], ctx: KeyContext, f: Filters, labels: LabelTable | undefined): ColumnSpec[] {
  const byText = new Map(addrs.map((a) => [a.text, a]));
  const shown = [...new Set(rows.flatMap((r) => [r.src as string, r.dst as string]))].map((t) => byText.get(t)!).filter((a) => a !== undefined);
  const seen = sightingsOf(ctx.sqlite, shown.map((a) => a.id));
  const nameOf = (text: string) => nameAt(seen.get(byText.get(text)?.id ?? -1), ctx.window.toMs);
  const peerOf = peer(f, labels);
  for (const r of rows) {
    r.src_name = nameOf(r.src as string);
    r.dst_name = nameOf(r.dst as string);
    if (peerOf) {
      const p = peerOf(r.src as string, r.dst as string, byText);
      r.name = p === null ? null : nameOf(p);
    }
  }
  return [nameCol('src_name'), nameCol('dst_name'), ...(peerOf ? [{ ...nameCol('name'), dataOnly: true }] : [])];
}

/**
 * The end of a flow that is not the address asked for: with --ip, the end other than it (a flow
 * from the address to itself: the address); with --label alone, the one end outside the label
 * (null when both or neither are in it). Undefined without an address condition.
 */
function peer(f: Filters, labels: LabelTable | undefined): ((src: string, dst: string, byText: Map<string, AddressRow>) => string | null) | undefined {
  if (f.ip !== undefined) {
    const a = parseAddr(f.ip);
    const same = (t: string) => a !== undefined && formatAddr(a) === t;
    return (src, dst) => (same(src) ? dst : same(dst) ? src : null);
  }
  if (f.label !== undefined && labels) {
    const inLabel = (t: string, byText: Map<string, AddressRow>) => {
      const row = byText.get(t);
      return row !== undefined && labels.labelOf(row.addr) === f.label;
    };
    return (src, dst, byText) => {
      const s = inLabel(src, byText);
      const d = inLabel(dst, byText);
      return s === d ? null : s ? dst : src;
    };
  }
  return undefined;
}
