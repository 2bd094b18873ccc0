/**
 * `tc-query names --ip A` (every name seen for an address) and `tc-query names --name N`
 * (every address seen for a name; `*.example.com` for the names below example.com): the names
 * the recorder read from DNS answers and TLS server names, each with the first and the last
 * interval it was seen in, over every session of the file.
 */
import type Database from 'better-sqlite3';
import { openReadOnly } from '../db';
import type { Window } from '../window';
import { counted, render, type Answer, type ColumnSpec, type Format } from '../output';
import { formatTime } from '../time';
import { parseAddr } from '../../addr';
import { sourceName, type NamePattern } from '../names';
import { resolveWindow, span } from '../plan';
import { completenessOf, coverage } from '../coverage';

export interface NamesOptions {
  db: string;
  /** Exactly one of ip and name. */
  ip?: string;
  name?: NamePattern;
  window: Window;
  format: Format;
  tz?: string;
}

interface Row {
  ip: string;
  name: string;
  source: number;
  first: number;
  last: number;
}

/**
 * The pairs of the address or name that were seen in the window: first seen before its end
 * and last seen at or after its start (a pair is known by its first and last interval).
 * Most recently seen first, by the last interval then the position in it (capture order), as
 * the name rule ranks them (src/query/names.ts), so the first row of `--ip` is the name `top` shows.
 * Binds (what, from, to).
 */
const pairsSql = (cond: string) => `
  select a.text as ip, h.name, n.source, min(n.first_ms) as first, max(n.last_ms) as last,
    (select max(p.last_pos) from names p
     where p.ip_id = n.ip_id and p.name_id = n.name_id and p.source = n.source and p.last_ms = max(n.last_ms)) as pos
  from names n join hostnames h on h.id = n.name_id join addresses a on a.id = n.ip_id
  where ${cond} and n.last_ms >= ? and n.first_ms < ?
  group by n.ip_id, n.name_id, n.source
  order by last desc, pos desc, h.name, length(a.addr), a.addr, n.source`;

export function names(o: NamesOptions): Answer {
  const db = openReadOnly(o.db);
  try {
    const [cond, param, what] = o.ip !== undefined
      ? ['n.ip_id = (select id from addresses where addr = ?)', Buffer.from(parseAddr(o.ip)!), o.ip]
      : [o.name!.where, o.name!.param, o.name!.text];
    const from = o.window.all ? -8.64e15 : o.window.fromMs;
    const to = o.window.all ? 8.64e15 : o.window.toMs;
    const rows = db.prepare(pairsSql(cond)).all(param, from, to) as Row[];
    const t = (ms: number) => formatTime(ms, o.format === 'table' ? o.tz : undefined);
    const out = rows.map((r) => ({ ip: r.ip, name: r.name, source: sourceName(r.source), first: t(r.first), last: t(r.last) }));
    const notes = rows.length === 0 ? [emptyNote(db, o, what, from, to)] : [];
    const resolved = resolveWindow(db, o.window);
    const completeness = completenessOf(coverage(db, resolved), resolved);
    if (o.format !== 'table') return { out: render(o.format, COLS, out), notes, completeness };
    if (rows.length === 0) return { out: '', notes, completeness };
    const noun = o.ip !== undefined ? counted(rows.length, 'name') : counted(rows.length, 'address', 'addresses');
    return { out: render('table', COLS, out, `${noun}; first and last: the start of the first and the last interval seen in`), notes, completeness };
  } finally {
    db.close();
  }
}

const COLS: ColumnSpec[] = [
  { key: 'ip', align: 'left' },
  { key: 'name', align: 'left' },
  { key: 'source', align: 'left' },
  { key: 'first', align: 'left' },
  { key: 'last', align: 'left' },
];

/** What the file does hold when nothing matched: no names at all, or names of other addresses or times. */
function emptyNote(db: Database.Database, o: NamesOptions, what: string, from: number, to: number): string {
  // Whole seconds, as every other time printed: a window relative to now carries milliseconds.
  const sec = (ms: number) => Math.floor(ms / 1000) * 1000;
  const range = (a: number, b: number) => `${formatTime(sec(a), o.tz)} to ${formatTime(sec(b), o.tz)}`;
  const held = db.prepare('select count(distinct ip_id) as addresses, count(distinct name_id) as names, min(first_ms) as first, max(last_ms) as last from names').get() as {
    addresses: number;
    names: number;
    first: number | null;
    last: number | null;
  };
  if (held.first === null) {
    const sp = span(db);
    return `the file holds no names (the recorder reads them from the DNS answers and TLS ClientHellos in the traffic it counts)${sp ? `; it covers ${range(sp.fromMs, sp.toMs)}` : ' and no intervals yet'}`;
  }
  const has = `the file has ${counted(held.names, 'name')} of ${counted(held.addresses, 'address', 'addresses')} seen ${range(held.first, held.last!)}`;
  const subject = o.ip !== undefined ? `no names seen for ${what}` : `no address seen for ${what}`;
  if (o.window.all) return `${subject} in the file; ${has}`;
  return `${subject} from ${range(from, to)}; ${has}; widen the window, or try --all`;
}
